/* tests/integration/itest_cluster.c — Cluster routers sharing one hub (src/topology/
 * cluster_share.c) at library level, under ASan+UBSan, against the real 6-node cluster
 * tests/integration/cluster.sh starts (node ports in CL_PORTS, space separated). Each router
 * runs on its own ev_loop in its own thread, as the server's workers do: one discovery for
 * both (CLUSTER SHARDS/SLOTS counted on the nodes against a router alone), keys routed
 * straight to their slot's primary by the follower too, the follower taking over when the
 * leader is freed, and a follower's MOVED making the leader refresh.
 *
 * Server-side facts (INFO commandstats / errorstats, slot moves) go over a plain blocking
 * socket from the main thread, so they never disturb what the routers see. Run before the
 * script's servers start: nothing else asks the cluster for its topology meanwhile.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <cmocka.h>

#include <ev.h>

#include "resp/resp.h"
#include "topology/topology.h"

#include "support/loop_thread.h"
#include "support/raw_redis.h"

#define NKEYS 200

static int ports[6];
static size_t nports;

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* `field:` followed by `key=NUMBER` in an INFO section of one node (0 when absent). */
static long long info_num(int port, const char *section, const char *field, const char *key)
{
    char *t = raw_cmd(port, "INFO %s", section);
    assert_non_null(t);
    long long v = 0;
    char *p = strstr(t, field);
    if (p) {
        char *eol = strstr(p, "\r\n");
        char *k = strstr(p, key);
        if (k && (!eol || k < eol)) v = strtoll(k + strlen(key), NULL, 10);
    }
    free(t);
    return v;
}

/* Topology asks summed over the cluster: CLUSTER SHARDS and CLUSTER SLOTS. */
static long long discoveries(void)
{
    long long s = 0;
    for (size_t i = 0; i < nports; i++)
        s += info_num(ports[i], "commandstats", "cmdstat_cluster|shards:", "calls=") +
             info_num(ports[i], "commandstats", "cmdstat_cluster|slots:", "calls=");
    return s;
}

static long long moved_errors(void)
{
    long long s = 0;
    for (size_t i = 0; i < nports; i++)
        s += info_num(ports[i], "errorstats", "errorstat_MOVED:", "count=");
    return s;
}

static bool is_primary(int port)
{
    char *t = raw_cmd(port, "INFO replication");
    assert_non_null(t);
    bool m = strstr(t, "role:master") != NULL;
    free(t);
    return m;
}

/* The primary that serves key (a plain GET elsewhere answers MOVED), or 0. */
static int owner_of(const char *key)
{
    for (size_t i = 0; i < nports; i++) {
        if (!is_primary(ports[i])) continue;
        char *t = raw_cmd(ports[i], "GET %s", key);
        bool mine = t && strncmp(t, "MOVED", 5) != 0;
        free(t);
        if (mine) return ports[i];
    }
    return 0;
}

static void setslot_all(int slot, const char *how, int first, int second, const char *id)
{
    int order[6];
    size_t n = 0;
    order[n++] = first;
    order[n++] = second;
    for (size_t i = 0; i < nports; i++)
        if (ports[i] != first && ports[i] != second && is_primary(ports[i])) order[n++] = ports[i];
    for (size_t i = 0; i < n; i++) {
        char *t = raw_cmd(order[i], "CLUSTER SETSLOT %d %s %s", slot, how, id);
        assert_non_null(t);
        assert_string_equal(t, "OK");
        free(t);
    }
}

/* Moves the empty slot of key from its owner src to dst the way resharding does
 * (IMPORTING, MIGRATING, then NODE everywhere: the new owner's epoch is bumped, so gossip
 * keeps it), and waits until every primary redirects the key to dst. */
static void move_slot(const char *key, int src, int dst)
{
    int slot = (int)topo_cluster_slot(key, strlen(key));
    char *src_id = raw_cmd(src, "CLUSTER MYID"), *dst_id = raw_cmd(dst, "CLUSTER MYID");
    assert_non_null(src_id);
    assert_non_null(dst_id);
    char *t = raw_cmd(dst, "CLUSTER SETSLOT %d IMPORTING %s", slot, src_id);
    assert_string_equal(t, "OK");
    free(t);
    t = raw_cmd(src, "CLUSTER SETSLOT %d MIGRATING %s", slot, dst_id);
    assert_string_equal(t, "OK");
    free(t);
    setslot_all(slot, "NODE", dst, src, dst_id);
    char want[64];
    snprintf(want, sizeof want, "MOVED %d 127.0.0.1:%d", slot, dst);
    double end = mono() + 10;
    bool agreed = false;
    while (!agreed && mono() < end) {
        agreed = owner_of(key) == dst;
        for (size_t i = 0; i < nports && agreed; i++) {
            if (ports[i] == dst || !is_primary(ports[i])) continue;
            t = raw_cmd(ports[i], "GET %s", key);
            agreed = t && strcmp(t, want) == 0;
            free(t);
        }
        if (!agreed) nap(0.1);
    }
    free(src_id);
    free(dst_id);
    if (!agreed) fail_msg("slot %d did not move to :%d", slot, dst);
}

/* A key (with the given prefix) whose slot holds no key yet, and that slot. */
static int empty_slot_key(const char *prefix, char *key, size_t cap)
{
    for (int i = 0; i < 100000; i++) {
        snprintf(key, cap, "%s:%d", prefix, i);
        int o = owner_of(key);
        if (!o) continue;
        unsigned slot = topo_cluster_slot(key, strlen(key));
        char *t = raw_cmd(o, "CLUSTER COUNTKEYSINSLOT %u", slot);
        assert_non_null(t);
        long long n = strtoll(t, NULL, 10);
        free(t);
        if (n == 0) return (int)slot;
    }
    fail_msg("no empty slot found");
    return -1;
}

static int other_primary(int not )
{
    for (size_t i = 0; i < nports; i++)
        if (ports[i] != not &&is_primary(ports[i])) return ports[i];
    fail_msg("no other primary");
    return 0;
}

/* ---- a worker: one loop, one router, in its own thread -------------------------------- */

enum job { JOB_NONE = 0, JOB_READY, JOB_WRITE_READ, JOB_SET, JOB_FREE };

struct worker {
    pthread_t th;
    struct topo_hub *hub;
    const char *name;
    struct ev_loop *loop;
    struct topo_router *r;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    enum job job;    /* posted by the main thread, cleared when done */
    const char *arg; /* JOB_WRITE_READ: key prefix; JOB_SET: key */
    int ok, total;   /* the job's outcome */
    char why[640];   /* the first failure */
};

struct res {
    bool done;
    bool ok;
    char text[256];
};

static void res_cb(void *priv, size_t idx, const struct resp_value *reply,
                   const struct resp_err *err)
{
    struct res *x = priv;
    (void)idx;
    x->done = true;
    x->ok = !err && reply->type != RESP_ERROR && reply->type != RESP_BULK_ERROR;
    if (err)
        snprintf(x->text, sizeof x->text, "%s", err->msg);
    else if (reply->type == RESP_NULL)
        snprintf(x->text, sizeof x->text, "(nil)");
    else
        snprintf(x->text, sizeof x->text, "%.*s", (int)reply->len, reply->str ? reply->str : "");
}

static void exec_cmd(struct worker *w, bool write, struct res *x, const char *a0, const char *a1,
                     const char *a2)
{
    const char *argv[3] = {a0, a1, a2};
    size_t lens[3] = {strlen(a0), strlen(a1), a2 ? strlen(a2) : 0};
    struct resp_cmd cmd = {.argc = a2 ? 3 : 2, .argv = argv, .lens = lens};
    memset(x, 0, sizeof *x);
    ev_now_update(w->loop);
    topo_router_exec(w->r, a1, strlen(a1), write, &cmd, 1, ev_now(w->loop) + 3.0, 0, res_cb, x);
}

static void keepalive_cb(struct ev_loop *l, ev_timer *t, int revents)
{
    (void)l, (void)t, (void)revents;
}

/* Runs the worker's loop until all n results are in or secs pass. */
static bool run_results(struct worker *w, struct res *xs, size_t n, double secs)
{
    double end = mono() + secs;
    for (;;) {
        size_t done = 0;
        for (size_t i = 0; i < n; i++) done += xs[i].done;
        if (done == n) return true;
        if (mono() > end) return false;
        ev_run(w->loop, EVRUN_ONCE);
    }
}

static void fail_job(struct worker *w, const char *fmt, const char *a, const char *b)
{
    if (!w->why[0]) snprintf(w->why, sizeof w->why, fmt, a, b);
}

/* Until a GET goes through: the leader has discovered, a follower has applied its view. */
static void job_ready(struct worker *w)
{
    double end = mono() + 10;
    struct res x;
    while (mono() < end) {
        exec_cmd(w, false, &x, "GET", "itc:probe", NULL);
        if (run_results(w, &x, 1, 3) && x.ok) {
            w->ok = 1;
            return;
        }
        double until = mono() + 0.05;
        while (mono() < until) ev_run(w->loop, EVRUN_ONCE);
    }
    fail_job(w, "%s: no slot table: %s", w->name, x.text);
}

static void job_write_read(struct worker *w)
{
    static struct res xs[NKEYS];
    static char keys[NKEYS][64], vals[NKEYS][64];
    for (int i = 0; i < NKEYS; i++) {
        snprintf(keys[i], sizeof keys[i], "%s:%d", w->arg, i);
        snprintf(vals[i], sizeof vals[i], "v-%s-%d", w->arg, i);
        exec_cmd(w, true, &xs[i], "SET", keys[i], vals[i]);
    }
    if (!run_results(w, xs, NKEYS, 10)) fail_job(w, "%s: SETs not all answered%s", w->name, "");
    for (int i = 0; i < NKEYS; i++)
        if (!xs[i].ok) fail_job(w, "SET %s: %s", keys[i], xs[i].text);
    for (int i = 0; i < NKEYS; i++) exec_cmd(w, false, &xs[i], "GET", keys[i], NULL);
    if (!run_results(w, xs, NKEYS, 10)) fail_job(w, "%s: GETs not all answered%s", w->name, "");
    w->total = NKEYS;
    for (int i = 0; i < NKEYS; i++) {
        if (xs[i].ok && strcmp(xs[i].text, vals[i]) == 0)
            w->ok++;
        else
            fail_job(w, "GET %s: %s", keys[i], xs[i].text);
    }
}

static void job_set(struct worker *w)
{
    struct res x;
    exec_cmd(w, true, &x, "SET", w->arg, "moved-value");
    if (run_results(w, &x, 1, 5) && x.ok)
        w->ok = 1;
    else
        fail_job(w, "SET %s: %s", w->arg, x.done ? x.text : "no answer");
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    w->loop = ev_loop_new(EVFLAG_AUTO);
    struct topo_hostport seeds[2];
    for (size_t i = 0; i < 2; i++) {
        snprintf(seeds[i].host, sizeof seeds[i].host, "127.0.0.1");
        seeds[i].port = (uint16_t)ports[i];
    }
    struct topo_cluster_opts o;
    memset(&o, 0, sizeof o);
    o.seeds = seeds;
    o.nseeds = 2;
    o.read_from = TOPO_READ_PRIMARY;
    resp_conn_opts_init(&o.data.conn);
    topo_pool_opts_init(&o.data.pool);
    o.data.pool.size = 4;
    o.data.hub = w->hub;
    w->r = topo_cluster_new(w->loop, NULL, &o); /* IP literals: no resolver */
    if (!w->r) snprintf(w->why, sizeof w->why, "%s: topo_cluster_new failed", w->name);
    /* the loop turns while no job runs: the hub's wakeups (on_lead, refresh) land here */
    ev_timer ka;
    ev_timer_init(&ka, keepalive_cb, 0.01, 0.01);
    ev_timer_start(w->loop, &ka);
    bool quit = false;
    while (!quit) {
        pthread_mutex_lock(&w->mu);
        enum job j = w->job;
        pthread_mutex_unlock(&w->mu);
        if (j == JOB_NONE) {
            ev_run(w->loop, EVRUN_ONCE);
            continue;
        }
        w->ok = w->total = 0;
        w->why[0] = '\0';
        if (!w->r && j != JOB_FREE) j = JOB_NONE; /* topo_cluster_new failed: ok stays 0 */
        switch (j) {
        case JOB_READY: job_ready(w); break;
        case JOB_WRITE_READ: job_write_read(w); break;
        case JOB_SET: job_set(w); break;
        case JOB_FREE:
            topo_router_free(w->r);
            w->r = NULL;
            quit = true;
            break;
        case JOB_NONE: break;
        }
        pthread_mutex_lock(&w->mu);
        w->job = JOB_NONE;
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
    }
    ev_timer_stop(w->loop, &ka);
    ev_loop_destroy(w->loop);
    return NULL;
}

static void worker_start(struct worker *w, const char *name, struct topo_hub *hub)
{
    memset(w, 0, sizeof *w);
    w->name = name;
    w->hub = hub;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    assert_int_equal(pthread_create(&w->th, NULL, worker_main, w), 0);
}

/* Posts a job and waits for it; the worker's outcome is then in ok/total/why. */
static void worker_do(struct worker *w, enum job j, const char *arg)
{
    pthread_mutex_lock(&w->mu);
    w->arg = arg;
    w->job = j;
    while (w->job != JOB_NONE) pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

static void worker_ready(struct worker *w)
{
    worker_do(w, JOB_READY, NULL);
    if (!w->ok) fail_msg("%s", w->why);
}

static void worker_stop(struct worker *w)
{
    worker_do(w, JOB_FREE, NULL);
    pthread_join(w->th, NULL);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
}

/* The discovery count once it stops moving (replies already sent are counted). */
static long long settled_discoveries(void)
{
    long long a = discoveries();
    for (;;) {
        nap(0.3);
        long long b = discoveries();
        if (b == a) return b;
        a = b;
    }
}

static bool grows_within(long long from, double secs, long long *now)
{
    double end = mono() + secs;
    do {
        *now = discoveries();
        if (*now > from) return true;
        nap(0.1);
    } while (mono() < end);
    return false;
}

/* ---- tests ---------------------------------------------------------------------------- */

static void test_two_routers_one_hub_one_discovery_keys_on_their_primaries(void **state)
{
    (void)state;
    /* a router alone: how many topology asks one discovery costs here */
    long long d0 = settled_discoveries();
    struct worker solo;
    worker_start(&solo, "solo", NULL);
    worker_ready(&solo);
    long long d1 = settled_discoveries();
    worker_stop(&solo);
    long long alone = d1 - d0;
    assert_true(alone >= 1);

    struct topo_hub *hub = topo_hub_new();
    assert_non_null(hub);
    struct worker a, b;
    long long m0 = moved_errors();
    d0 = settled_discoveries();
    worker_start(&a, "A", hub);
    worker_start(&b, "B", hub);
    worker_ready(&a);
    worker_ready(&b);
    worker_do(&a, JOB_WRITE_READ, "itc:a");
    if (a.ok != NKEYS) fail_msg("A: %d of %d read back: %s", a.ok, a.total, a.why);
    worker_do(&b, JOB_WRITE_READ, "itc:b");
    if (b.ok != NKEYS) fail_msg("B: %d of %d read back: %s", b.ok, b.total, b.why);
    long long shared = settled_discoveries() - d0;
    /* straight to each slot's owner: no request of either met MOVED */
    assert_int_equal(moved_errors(), m0);
    if (shared != alone)
        fail_msg("two routers on one hub asked %lld times, one router alone %lld", shared, alone);
    /* and the keys are where the cluster says: on the primary of their slot */
    for (int i = 0; i < NKEYS; i += 7) {
        char key[64], want[64];
        const char *pre = (i & 1) ? "itc:b" : "itc:a";
        snprintf(key, sizeof key, "%s:%d", pre, i);
        snprintf(want, sizeof want, "v-%s-%d", pre, i);
        int o = owner_of(key);
        assert_true(o != 0);
        char *t = raw_cmd(o, "GET %s", key);
        assert_non_null(t);
        assert_string_equal(t, want);
        free(t);
    }
    worker_stop(&b);
    worker_stop(&a);
    topo_hub_unref(hub);
}

static void test_leader_freed_follower_takes_over_and_follows_a_moved_slot(void **state)
{
    (void)state;
    struct topo_hub *hub = topo_hub_new();
    assert_non_null(hub);
    struct worker a, b;
    worker_start(&a, "A", hub);
    worker_ready(&a); /* A joined first: A leads */
    worker_start(&b, "B", hub);
    worker_ready(&b);
    long long d0 = settled_discoveries(), d1;
    worker_stop(&a);
    /* B leads now: it discovers at once */
    if (!grows_within(d0, 5, &d1)) fail_msg("no discovery after the leader left (%lld)", d0);

    char key[64];
    (void)empty_slot_key("itc:mig", key, sizeof key);
    int src = owner_of(key), dst = other_primary(src);
    settled_discoveries();
    move_slot(key, src, dst);
    long long m0 = moved_errors(), d2 = settled_discoveries(), d3;
    worker_do(&b, JOB_SET, key);
    if (!b.ok) fail_msg("%s", b.why);
    assert_true(moved_errors() > m0); /* B's table was stale: it met MOVED and followed it */
    char *t = raw_cmd(dst, "GET %s", key);
    assert_non_null(t);
    assert_string_equal(t, "moved-value");
    free(t);
    /* ... and, leading, it refreshes the table after a MOVED */
    if (!grows_within(d2, 3, &d3)) fail_msg("no refresh after MOVED on the new leader");
    worker_stop(&b);
    topo_hub_unref(hub);
    /* the slot back where it was, for the script's later checks */
    t = raw_cmd(dst, "DEL %s", key);
    free(t);
    move_slot(key, dst, src);
}

static void test_follower_moved_makes_the_leader_refresh(void **state)
{
    (void)state;
    struct topo_hub *hub = topo_hub_new();
    assert_non_null(hub);
    struct worker a, b;
    worker_start(&a, "A", hub);
    worker_ready(&a);
    worker_start(&b, "B", hub);
    worker_ready(&b);
    char key[64], key2[80];
    int slot = empty_slot_key("itc:fm", key, sizeof key);
    int src = owner_of(key), dst = other_primary(src);
    move_slot(key, src, dst);
    long long d0 = settled_discoveries(), d1;
    long long m0 = moved_errors();
    worker_do(&b, JOB_SET, key); /* B follows: its MOVED goes to A as a refresh request */
    if (!b.ok) fail_msg("%s", b.why);
    assert_true(moved_errors() > m0);
    if (!grows_within(d0, 3, &d1)) fail_msg("the leader did not refresh after B's MOVED");
    settled_discoveries();
    /* A, which met no MOVED itself, now routes the slot to its new owner directly */
    long long m1 = moved_errors();
    snprintf(key2, sizeof key2, "{%s}:2", key);
    assert_int_equal(topo_cluster_slot(key2, strlen(key2)), slot);
    worker_do(&a, JOB_SET, key2);
    if (!a.ok) fail_msg("%s", a.why);
    assert_int_equal(moved_errors(), m1);
    char *t = raw_cmd(dst, "GET %s", key2);
    assert_non_null(t);
    assert_string_equal(t, "moved-value");
    free(t);
    worker_stop(&b);
    worker_stop(&a);
    topo_hub_unref(hub);
    t = raw_cmd(dst, "DEL %s %s", key, key2);
    free(t);
    move_slot(key, dst, src);
}

int main(void)
{
    const char *v = getenv("CL_PORTS");
    if (!v || !*v) {
        fprintf(stderr, "CL_PORTS is not set (run through cluster.sh)\n");
        return 1;
    }
    char *s = strdup(v), *save = NULL;
    for (char *p = strtok_r(s, " ,", &save); p && nports < 6; p = strtok_r(NULL, " ,", &save))
        ports[nports++] = atoi(p);
    free(s);
    if (nports != 6) {
        fprintf(stderr, "CL_PORTS: want 6 ports\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_routers_one_hub_one_discovery_keys_on_their_primaries),
        cmocka_unit_test(test_leader_freed_follower_takes_over_and_follows_a_moved_slot),
        cmocka_unit_test(test_follower_moved_makes_the_leader_refresh),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
