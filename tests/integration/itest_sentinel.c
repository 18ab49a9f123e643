/* tests/integration/itest_sentinel.c — the Sentinel router (src/topology/sentinel*.c) at
 * library level, under ASan+UBSan, against the real topology tests/integration/sentinel.sh
 * starts (master + replica + 3 sentinels; ports in SN_* variables): discovery past a dead
 * first sentinel, writes on the master and reads on the replica (commandstats), requests
 * failing at once with the reason while no master is known (unknown name, no sentinel
 * reachable), a SENTINEL FAILOVER under a stream of writes (every callback by its
 * deadline, the new master taken within 10 s), and freeing the router mid-discovery and
 * with requests in flight. Then routers sharing one hub, each on its own worker thread as
 * in the server: one discovery and one subscription between them (CLIENT LIST on the
 * sentinels, by client name), a follower's READONLY making the leader run a round (ROLE
 * counted on the master), the leader's reason reaching a follower, and the follower taking
 * over when the leader is freed, then following a second failover.
 *
 * Server-side facts (INFO commandstats, SENTINEL FAILOVER) go over a plain blocking socket
 * outside the loop, so they never disturb what the router sees. */
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
#include <cmocka.h>

#include <ev.h>

#include "resp/resp.h"
#include "topology/topology.h"

#include "support/loop_thread.h"
#include "support/raw_redis.h"

static int env_int(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v) fail_msg("environment variable %s is not set (run through sentinel.sh)", name);
    return atoi(v);
}

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long long get_calls(int port)
{
    char *t = raw_cmd(port, "INFO commandstats");
    assert_non_null(t);
    char *p = strstr(t, "cmdstat_get:calls=");
    long long v = p ? strtoll(p + 18, NULL, 10) : 0;
    free(t);
    return v;
}

/* ---- the router under test ------------------------------------------------------------ */

static struct ev_loop *loop;

struct router_cfg {
    struct topo_hub *hub;
    const char *sentinel_name; /* CLIENT SETNAME on the sentinel connections, or NULL */
    const char *data_name;     /* ... on the master's and replicas' */
    unsigned retries;
};

static struct topo_router *router_new_on(struct ev_loop *l, const char *master, const int *ports,
                                         size_t n, const struct router_cfg *cfg)
{
    struct topo_hostport hp[8];
    if (n > 8) return NULL;
    for (size_t i = 0; i < n; i++) {
        snprintf(hp[i].host, sizeof hp[i].host, "127.0.0.1");
        hp[i].port = (uint16_t)ports[i];
    }
    struct topo_sentinel_opts o;
    memset(&o, 0, sizeof o);
    snprintf(o.master, sizeof o.master, "%s", master);
    o.sentinels = hp;
    o.nsentinels = n;
    resp_conn_opts_init(&o.sentinel_conn);
    resp_conn_opts_init(&o.data.conn);
    topo_pool_opts_init(&o.data.pool);
    o.data.pool.size = 4;
    if (cfg) {
        o.data.hub = cfg->hub;
        o.sentinel_conn.client_name = cfg->sentinel_name;
        o.data.conn.client_name = cfg->data_name;
        o.data.pool.retries = cfg->retries;
    }
    return topo_sentinel_new(l, NULL, &o); /* IP literals: no resolver */
}

static struct topo_router *router_new(const char *master, const int *ports, size_t n)
{
    struct topo_router *r = router_new_on(loop, master, ports, n, NULL);
    assert_non_null(r);
    return r;
}

static void tick_cb(struct ev_loop *l, ev_timer *w, int revents)
{
    (void)l, (void)w, (void)revents;
}

/* Runs the loop until pred(arg) or `secs` pass; returns pred's last value. */
static bool run_until(bool (*pred)(void *), void *arg, double secs)
{
    ev_timer t;
    ev_timer_init(&t, tick_cb, 0.01, 0.01);
    ev_timer_start(loop, &t);
    double end = mono() + secs;
    bool ok;
    while (!(ok = pred(arg)) && mono() < end) ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &t);
    return ok;
}

static bool never(void *arg)
{
    (void)arg;
    return false;
}

struct want_master {
    struct topo_router *r;
    int port;
    size_t replicas;
};

static bool master_is(void *arg)
{
    struct want_master *w = arg;
    struct topo_hostport hp, reps[4];
    return topo_sentinel_master(w->r, &hp) == 0 && hp.port == w->port &&
           topo_sentinel_replicas(w->r, reps, 4) == w->replicas;
}

/* One request's outcome. */
struct res {
    int calls;
    bool done;
    bool sync; /* completed before topo_router_exec returned */
    enum resp_err_kind kind;
    char text[256];
    double started, took, deadline;
};

static void res_cb(void *priv, size_t idx, const struct resp_value *reply,
                   const struct resp_err *err)
{
    struct res *x = priv;
    (void)idx;
    x->calls++;
    x->done = true;
    x->took = mono() - x->started;
    x->kind = err ? err->kind : RESP_EK_NONE;
    if (err)
        snprintf(x->text, sizeof x->text, "%s", err->msg);
    else if (reply->type == RESP_NULL)
        snprintf(x->text, sizeof x->text, "(nil)");
    else
        snprintf(x->text, sizeof x->text, "%.*s", (int)reply->len, reply->str ? reply->str : "");
}

static void exec1_on(struct ev_loop *l, struct topo_router *r, bool write, struct res *x,
                     double budget, const char *a0, const char *a1, const char *a2)
{
    const char *argv[3] = {a0, a1, a2};
    size_t lens[3] = {strlen(a0), a1 ? strlen(a1) : 0, a2 ? strlen(a2) : 0};
    struct resp_cmd cmd = {.argc = a2 ? 3 : a1 ? 2 : 1, .argv = argv, .lens = lens};
    memset(x, 0, sizeof *x);
    x->started = mono();
    ev_now_update(l);
    x->deadline = ev_now(l) + budget;
    topo_router_exec(r, a1, a1 ? strlen(a1) : 0, write, &cmd, 1, x->deadline, 0, res_cb, x);
    x->sync = x->done;
}

static void exec1(struct topo_router *r, bool write, struct res *x, double budget, const char *a0,
                  const char *a1, const char *a2)
{
    exec1_on(loop, r, write, x, budget, a0, a1, a2);
}

static bool res_done(void *arg)
{
    return ((struct res *)arg)->done;
}

/* ---- tests ---------------------------------------------------------------------------- */

static void test_discovers_master_and_replica_past_a_dead_sentinel(void **state)
{
    (void)state;
    int ports[] = {env_int("SN_DEAD_PORT"), env_int("SN_S1_PORT"), env_int("SN_S2_PORT")};
    struct topo_router *r = router_new("mymaster", ports, 3);
    struct want_master w = {r, env_int("SN_M_PORT"), 1};
    assert_true(run_until(master_is, &w, 10));
    struct topo_hostport reps[4];
    assert_int_equal(topo_sentinel_replicas(r, reps, 4), 1);
    assert_int_equal(reps[0].port, env_int("SN_R_PORT"));
    topo_router_free(r);
}

static void test_writes_on_master_reads_on_replica(void **state)
{
    (void)state;
    int ports[] = {env_int("SN_S1_PORT"), env_int("SN_S2_PORT"), env_int("SN_S3_PORT")};
    int mport = env_int("SN_M_PORT"), rport = env_int("SN_R_PORT");
    struct topo_router *r = router_new("mymaster", ports, 3);
    struct want_master w = {r, mport, 1};
    assert_true(run_until(master_is, &w, 10));
    struct res x;
    exec1(r, true, &x, 2.0, "SET", "itest:sentinel:k", "v1");
    assert_true(run_until(res_done, &x, 5));
    assert_int_equal(x.kind, RESP_EK_NONE);
    assert_string_equal(x.text, "OK");
    long long m0 = get_calls(mport), r0 = get_calls(rport);
    /* the replica may lag a moment: read until it has the value */
    int reads = 0;
    for (int i = 0; i < 50; i++) {
        exec1(r, false, &x, 2.0, "GET", "itest:sentinel:k", NULL);
        assert_true(run_until(res_done, &x, 5));
        reads++;
        if (strcmp(x.text, "v1") == 0) break;
        run_until(never, NULL, 0.05);
    }
    assert_string_equal(x.text, "v1");
    assert_int_equal(get_calls(mport), m0);         /* no read on the master */
    assert_int_equal(get_calls(rport), r0 + reads); /* every read on the replica */
    topo_router_free(r);
}

static void test_unknown_master_fails_at_once_naming_it(void **state)
{
    (void)state;
    int ports[] = {env_int("SN_S1_PORT"), env_int("SN_S2_PORT"), env_int("SN_S3_PORT")};
    struct topo_router *r = router_new("nosuchmaster", ports, 3);
    struct res x;
    exec1(r, false, &x, 0.5, "GET", "k", NULL);
    assert_true(x.sync); /* no waiting for discovery */
    assert_int_equal(x.calls, 1);
    assert_int_equal(x.kind, RESP_EK_CONNECTION);
    assert_non_null(strstr(x.text, "nosuchmaster"));
    bool said = false;
    double end = mono() + 10;
    while (!said && mono() < end) {
        run_until(never, NULL, 0.1);
        exec1(r, true, &x, 0.5, "SET", "k", "v");
        assert_true(x.sync);
        assert_int_equal(x.kind, RESP_EK_CONNECTION);
        said = strstr(x.text, "no sentinel knows master nosuchmaster") != NULL;
    }
    if (!said) fail_msg("last message: %s", x.text);
    topo_router_free(r);
}

static void test_no_sentinel_reachable(void **state)
{
    (void)state;
    int ports[] = {env_int("SN_DEAD_PORT"), env_int("SN_DEAD_PORT2")};
    struct topo_router *r = router_new("mymaster", ports, 2);
    struct res x;
    bool said = false;
    double end = mono() + 10;
    while (!said && mono() < end) {
        run_until(never, NULL, 0.1);
        exec1(r, false, &x, 0.5, "GET", "k", NULL);
        assert_true(x.sync);
        assert_int_equal(x.kind, RESP_EK_CONNECTION);
        said = strstr(x.text, "no sentinel reachable for mymaster") != NULL;
    }
    if (!said) fail_msg("last message: %s", x.text);
    topo_router_free(r);
}

static void test_free_mid_discovery_and_with_requests_in_flight(void **state)
{
    (void)state;
    int ports[] = {env_int("SN_S1_PORT"), env_int("SN_S2_PORT"), env_int("SN_S3_PORT")};
    /* freed before its first answers */
    struct topo_router *r = router_new("mymaster", ports, 3);
    topo_router_free(r);
    r = router_new("mymaster", ports, 3);
    ev_run(loop, EVRUN_NOWAIT);
    topo_router_free(r);

    /* freed with 40 requests in flight: each gets exactly one callback */
    r = router_new("mymaster", ports, 3);
    struct want_master w = {r, env_int("SN_M_PORT"), 1};
    assert_true(run_until(master_is, &w, 10));
    struct res xs[40];
    for (int i = 0; i < 40; i++) {
        if (i % 2)
            exec1(r, true, &xs[i], 2.0, "SET", "itest:sentinel:f", "x");
        else
            exec1(r, false, &xs[i], 2.0, "GET", "itest:sentinel:f", NULL);
    }
    topo_router_free(r);
    for (int i = 0; i < 40; i++) {
        assert_int_equal(xs[i].calls, 1);
        assert_int_equal(xs[i].kind, RESP_EK_CONNECTION);
    }
}

/* A stream of writes through a SENTINEL FAILOVER: every one completes by its deadline (with
 * an error or not), and the router moves to the new master within 10 s of the sentinels. */
static void test_failover_under_writes(void **state)
{
    (void)state;
    int ports[] = {env_int("SN_S1_PORT"), env_int("SN_S2_PORT"), env_int("SN_S3_PORT")};
    int mport = env_int("SN_M_PORT"), rport = env_int("SN_R_PORT");
    struct topo_router *r = router_new("mymaster", ports, 3);
    struct want_master w = {r, mport, 1};
    assert_true(run_until(master_is, &w, 10));
    /* the sentinel may not judge the replica good yet (NOGOODSLAVE): ask again */
    char *ok = NULL;
    for (double until = mono() + 20; mono() < until; run_until(never, NULL, 0.5)) {
        free(ok);
        ok = raw_cmd(ports[0], "SENTINEL FAILOVER mymaster");
        if (ok && strcmp(ok, "OK") == 0) break;
    }
    assert_non_null(ok);
    assert_string_equal(ok, "OK");
    free(ok);
    double budget = 0.5, end = mono() + 30, switched = 0;
    int n = 0, late = 0, errors = 0, landed = 0;
    struct topo_hostport hp;
    while (mono() < end && landed < 5) {
        struct res x;
        char val[32];
        snprintf(val, sizeof val, "%d", n++);
        exec1(r, true, &x, budget, "SET", "itest:sentinel:fo", val);
        assert_true(run_until(res_done, &x, 5));
        assert_int_equal(x.calls, 1);
        if (x.took > budget + 1.0) late++; /* generous: the box is noisy */
        if (x.kind != RESP_EK_NONE || strcmp(x.text, "OK") != 0) errors++;
        if (topo_sentinel_master(r, &hp) == 0 && hp.port == rport) {
            if (!switched) switched = mono();
            if (x.kind == RESP_EK_NONE && strcmp(x.text, "OK") == 0) landed++;
        }
        run_until(never, NULL, 0.02);
    }
    print_message("failover: %d writes, %d failed, %d late\n", n, errors, late);
    assert_true(switched > 0);
    assert_int_equal(late, 0);
    assert_true(landed >= 5);
    char *v = raw_cmd(rport, "GET itest:sentinel:fo");
    assert_non_null(v);
    char want[32];
    snprintf(want, sizeof want, "%d", n - 1);
    assert_string_equal(v, want); /* the last write is on the new master */
    free(v);
    /* the old master is drained; the new replica list follows (the old master, demoted) */
    struct want_master w2 = {r, rport, 1};
    assert_true(run_until(master_is, &w2, 20));
    topo_router_free(r);
}

/* ---- routers sharing a hub, each on its own worker thread ------------------------------ */
/*
 * The server's shape: one loop per worker thread, one router per worker, one hub per
 * configuration. Everything a router does runs on its worker's thread: the test hands the
 * worker a function and waits for it (the handshake orders the memory too), and polls
 * router state that way.
 */

struct worker {
    struct test_worker tw; /* tw.data: this */
    struct topo_router *r;
};

static void worker_start(struct worker *wk)
{
    wk->r = NULL;
    test_worker_start(&wk->tw, wk);
}

static void w_free_router(struct test_worker *tw, void *arg)
{
    struct worker *wk = tw->data;
    (void)arg;
    topo_router_free(wk->r);
    wk->r = NULL;
}

static void worker_stop(struct worker *wk)
{
    if (wk->r) test_worker_run(&wk->tw, w_free_router, NULL);
    test_worker_stop(&wk->tw);
}

struct new_arg {
    const char *master;
    const int *ports;
    size_t n;
    struct router_cfg cfg;
};

static void w_new_router(struct test_worker *tw, void *arg)
{
    struct worker *wk = tw->data;
    struct new_arg *a = arg;
    wk->r = router_new_on(tw->loop, a->master, a->ports, a->n, &a->cfg);
}

/* A router for `master` on wk's thread sharing `hub`; its connections named NAME-s (to
 * the sentinels) and NAME-d (to the data nodes), so the servers can tell whose they are. */
static void worker_router(struct worker *wk, struct topo_hub *hub, const char *master,
                          const char *name, unsigned retries)
{
    int ports[] = {env_int("SN_S1_PORT"), env_int("SN_S2_PORT"), env_int("SN_S3_PORT")};
    char sname[64], dname[64];
    snprintf(sname, sizeof sname, "%s-s", name);
    snprintf(dname, sizeof dname, "%s-d", name);
    struct new_arg a = {master, ports, 3, {hub, sname, dname, retries}};
    test_worker_run(&wk->tw, w_new_router, &a);
    assert_non_null(wk->r);
}

struct state_arg {
    int master; /* port, or -1 */
    size_t replicas;
    int replica; /* the first one's port */
};

static void w_state(struct test_worker *tw, void *arg)
{
    struct worker *wk = tw->data;
    struct state_arg *a = arg;
    struct topo_hostport hp, reps[4];
    a->master = topo_sentinel_master(wk->r, &hp) == 0 ? hp.port : -1;
    a->replicas = topo_sentinel_replicas(wk->r, reps, 4);
    a->replica = a->replicas ? reps[0].port : -1;
}

/* Polls the router on wk until its master is `port` (any when 0) with `replicas`
 * replicas (any when ANY); the state seen last. */
#define ANY SIZE_MAX
static struct state_arg worker_wait_master(struct worker *wk, int port, size_t replicas,
                                           double secs)
{
    struct state_arg a;
    double end = mono() + secs;
    do {
        test_worker_run(&wk->tw, w_state, &a);
        if (a.master > 0 && (port == 0 || a.master == port) &&
            (replicas == ANY || a.replicas == replicas))
            break;
        nap(0.01);
    } while (mono() < end);
    return a;
}

struct wexec {
    bool write;
    const char *a0, *a1, *a2;
    double budget;
    struct res *x;
};

static void w_exec(struct test_worker *tw, void *arg)
{
    struct worker *wk = tw->data;
    struct wexec *e = arg;
    exec1_on(tw->loop, wk->r, e->write, e->x, e->budget, e->a0, e->a1, e->a2);
}

static void w_done(struct test_worker *tw, void *arg)
{
    (void)tw;
    struct res *x = arg;
    x->sync = x->done; /* reused: read back under the handshake */
}

/* One request through the router on wk, waited for (at most 5 s). */
static void worker_exec(struct worker *wk, bool write, struct res *x, const char *a0,
                        const char *a1, const char *a2)
{
    struct wexec e = {write, a0, a1, a2, 2.0, x};
    test_worker_run(&wk->tw, w_exec, &e);
    for (double end = mono() + 5; mono() < end; nap(0.005)) {
        test_worker_run(&wk->tw, w_done, x);
        if (x->sync) return;
    }
    fail_msg("request %s %s got no answer", a0, a1 ? a1 : "");
}

/* Connections on the server at `port` named `name`: all of them, and those subscribed to
 * a channel or a pattern (CLIENT LIST: sub=N psub=N). */
static int clients_named(int port, const char *name, bool subscribed)
{
    char *t = raw_cmd(port, "CLIENT LIST");
    assert_non_null(t);
    char want[80];
    snprintf(want, sizeof want, " name=%s ", name);
    int n = 0;
    for (char *line = strtok(t, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strstr(line, want)) continue;
        const char *sub = strstr(line, " sub="), *psub = strstr(line, " psub=");
        bool subbed = (sub && atoi(sub + 5) > 0) || (psub && atoi(psub + 6) > 0);
        if (!subscribed || subbed) n++;
    }
    free(t);
    return n;
}

static int sentinels_clients_named(const char *name, bool subscribed)
{
    return clients_named(env_int("SN_S1_PORT"), name, subscribed) +
           clients_named(env_int("SN_S2_PORT"), name, subscribed) +
           clients_named(env_int("SN_S3_PORT"), name, subscribed);
}

static long long cmd_calls(int port, const char *cmd)
{
    char *t = raw_cmd(port, "INFO commandstats");
    assert_non_null(t);
    char key[64];
    snprintf(key, sizeof key, "cmdstat_%s:calls=", cmd);
    char *p = strstr(t, key);
    long long v = p ? strtoll(p + strlen(key), NULL, 10) : 0;
    free(t);
    return v;
}

/* Waits until the sentinels see `want` subscribed connections named `name`. */
static bool wait_subscribed(const char *name, int want, double secs)
{
    double end = mono() + secs;
    int n;
    while ((n = sentinels_clients_named(name, true)) != want && mono() < end) nap(0.05);
    return n == want;
}

/* The master's port as the sentinel at sport sees it (SENTINEL get-master-addr-by-name). */
static int sentinel_says_master(int sport)
{
    int fd = raw_connect(sport);
    int port = -1;
    if (fd >= 0) {
        static const char q[] = "SENTINEL get-master-addr-by-name mymaster\r\n";
        assert_int_equal(write(fd, q, sizeof q - 1), (ssize_t)(sizeof q - 1));
        char buf[512];
        size_t len = 0;
        int crlf = 0;
        while (crlf < 5 && len + 1 < sizeof buf) { /* *2, $len, host, $len, port */
            ssize_t r = read(fd, buf + len, sizeof buf - 1 - len);
            if (r <= 0) break;
            len += (size_t)r;
            buf[len] = '\0';
            crlf = 0;
            for (const char *p = buf; (p = strstr(p, "\r\n")); p += 2) crlf++;
        }
        if (crlf >= 5) {
            buf[len - 2] = '\0';
            const char *last = strrchr(buf, '\n');
            port = last ? atoi(last + 1) : -1;
        }
        close(fd);
    }
    return port;
}

static char *failover_until_ok(int sport)
{
    /* the sentinel may not judge the replica good yet (NOGOODSLAVE): ask again */
    char *ok = NULL;
    for (double until = mono() + 20; mono() < until; nap(0.5)) {
        free(ok);
        ok = raw_cmd(sport, "SENTINEL FAILOVER mymaster");
        if (ok && strcmp(ok, "OK") == 0) break;
    }
    return ok;
}

/* Two workers, one hub: the first router leads (its sentinel connections, its one
 * subscription), the second has no connection to any sentinel at all, yet both write to the
 * master and read from the replica, each through its own pools. */
static void test_two_workers_share_one_discovery_and_one_subscription(void **state)
{
    (void)state;
    int mport = env_int("SN_M_PORT"), rport = env_int("SN_R_PORT");
    struct topo_hub *hub = topo_hub_new();
    assert_non_null(hub);
    struct worker w1, w2;
    worker_start(&w1);
    worker_start(&w2);
    worker_router(&w1, hub, "mymaster", "itsn-share-1", 1);
    worker_router(&w2, hub, "mymaster", "itsn-share-2", 1);
    struct state_arg s1 = worker_wait_master(&w1, mport, 1, 10);
    struct state_arg s2 = worker_wait_master(&w2, mport, 1, 10);
    assert_int_equal(s1.master, mport);
    assert_int_equal(s2.master, mport);
    assert_int_equal(s2.replicas, 1);
    assert_int_equal(s2.replica, rport);

    /* one subscription, the leader's; the follower never talks to a sentinel */
    assert_true(wait_subscribed("itsn-share-1-s", 1, 5));
    nap(0.5); /* a second one would have come by now */
    assert_int_equal(sentinels_clients_named("itsn-share-1-s", true), 1);
    assert_true(sentinels_clients_named("itsn-share-1-s", false) >= 1);
    assert_int_equal(sentinels_clients_named("itsn-share-2-s", false), 0);

    /* the follower writes to the master, both read from the replica */
    struct res x;
    worker_exec(&w2, true, &x, "SET", "itest:sentinel:hub", "h1");
    assert_int_equal(x.kind, RESP_EK_NONE);
    assert_string_equal(x.text, "OK");
    char *v = raw_cmd(mport, "GET itest:sentinel:hub");
    assert_non_null(v);
    assert_string_equal(v, "h1");
    free(v);
    long long m0 = get_calls(mport), r0 = get_calls(rport);
    int reads = 0;
    struct worker *ws[] = {&w1, &w2};
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < 50; i++) {
            worker_exec(ws[k], false, &x, "GET", "itest:sentinel:hub", NULL);
            reads++;
            if (strcmp(x.text, "h1") == 0) break;
            nap(0.05);
        }
        assert_string_equal(x.text, "h1");
    }
    assert_int_equal(get_calls(mport), m0);
    assert_int_equal(get_calls(rport), r0 + reads);
    /* connections belong to a worker: the follower has its own on the master and replica */
    assert_true(clients_named(mport, "itsn-share-2-d", false) >= 1);
    assert_true(clients_named(rport, "itsn-share-2-d", false) >= 1);
    assert_true(clients_named(rport, "itsn-share-1-d", false) >= 1);
    assert_int_equal(sentinels_clients_named("itsn-share-2-s", false), 0);

    worker_stop(&w2);
    worker_stop(&w1);
    topo_hub_unref(hub);
}

/* A follower's reason to rediscover (here a READONLY reply to a write, as a demoted master
 * gives) reaches the leader, which runs a round at once: each round verifies the master
 * with ROLE through the leader's pool, so the master counts the rounds. */
static void test_follower_readonly_makes_the_leader_run_a_round(void **state)
{
    (void)state;
    int mport = env_int("SN_M_PORT");
    struct topo_hub *hub = topo_hub_new();
    struct worker w1, w2;
    worker_start(&w1);
    worker_start(&w2);
    worker_router(&w1, hub, "mymaster", "itsn-ask-1", 1);
    worker_router(&w2, hub, "mymaster", "itsn-ask-2", 1);
    assert_int_equal(worker_wait_master(&w1, mport, 1, 10).master, mport);
    assert_int_equal(worker_wait_master(&w2, mport, 1, 10).master, mport);
    assert_true(wait_subscribed("itsn-ask-1-s", 1, 5));
    nap(0.3); /* the first round's details are in */

    /* 8 asks 0.4 s apart: 8 rounds. Without them, 3.2 s hold at most one periodic round
     * each from this leader and the servers A and B (5 s apart each). */
    long long role0 = cmd_calls(mport, "role");
    const int asks = 8;
    for (int i = 0; i < asks; i++) {
        struct res x;
        worker_exec(&w2, true, &x, "EVAL", "return redis.error_reply('READONLY itest')", "0");
        assert_int_equal(x.kind, RESP_EK_NONE);
        assert_non_null(strstr(x.text, "READONLY itest"));
        nap(0.4);
    }
    long long rounds = cmd_calls(mport, "role") - role0;
    print_message("ROLE on the master during the asks: %lld\n", rounds);
    assert_true(rounds >= asks);
    assert_int_equal(sentinels_clients_named("itsn-ask-2-s", false), 0); /* not its own */
    assert_int_equal(worker_wait_master(&w2, mport, 1, 1).master, mport);

    worker_stop(&w2);
    worker_stop(&w1);
    topo_hub_unref(hub);
}

/* While no master is known a follower fails at once with the leader's reason. */
static void test_follower_fails_at_once_with_the_leaders_reason(void **state)
{
    (void)state;
    struct topo_hub *hub = topo_hub_new();
    struct worker w1, w2;
    worker_start(&w1);
    worker_start(&w2);
    worker_router(&w1, hub, "nosuchmaster", "itsn-down-1", 1);
    worker_router(&w2, hub, "nosuchmaster", "itsn-down-2", 1);
    struct res x;
    bool said = false;
    for (double end = mono() + 10; !said && mono() < end; nap(0.1)) {
        struct wexec e = {false, "GET", "k", NULL, 0.5, &x};
        test_worker_run(&w2.tw, w_exec, &e);
        assert_true(x.sync); /* answered before exec returned */
        assert_int_equal(x.kind, RESP_EK_CONNECTION);
        said = strstr(x.text, "no sentinel knows master nosuchmaster") != NULL;
    }
    if (!said) fail_msg("last message: %s", x.text);
    assert_int_equal(sentinels_clients_named("itsn-down-2-s", false), 0);
    assert_true(sentinels_clients_named("itsn-down-1-s", false) >= 1);
    worker_stop(&w2);
    worker_stop(&w1);
    topo_hub_unref(hub);
}

/* The leader is freed: the follower takes over discovery (its own sentinel connections and
 * subscription appear) and follows a SENTINEL FAILOVER afterwards within 10 s. */
static void test_leader_freed_follower_leads_and_follows_a_failover(void **state)
{
    (void)state;
    int ports[] = {env_int("SN_S1_PORT"), env_int("SN_S2_PORT"), env_int("SN_S3_PORT")};
    int a = env_int("SN_M_PORT"), b = env_int("SN_R_PORT");
    struct topo_hub *hub = topo_hub_new();
    struct worker w1, w2;
    worker_start(&w1);
    worker_start(&w2);
    worker_router(&w1, hub, "mymaster", "itsn-lead-1", 1);
    worker_router(&w2, hub, "mymaster", "itsn-lead-2", 1);
    /* whichever the earlier tests left as master */
    struct state_arg st = worker_wait_master(&w2, 0, 1, 10);
    assert_true(st.master == a || st.master == b);
    int from = st.master, to = from == a ? b : a;
    assert_int_equal(worker_wait_master(&w1, from, 1, 5).master, from);
    assert_true(wait_subscribed("itsn-lead-1-s", 1, 5));
    assert_int_equal(sentinels_clients_named("itsn-lead-2-s", false), 0);

    test_worker_run(&w1.tw, w_free_router, NULL);
    assert_true(wait_subscribed("itsn-lead-2-s", 1, 5)); /* the follower leads now */
    double end = mono() + 5;
    while (sentinels_clients_named("itsn-lead-1-s", false) != 0 && mono() < end) nap(0.05);
    assert_int_equal(sentinels_clients_named("itsn-lead-1-s", false), 0);

    char *ok = failover_until_ok(ports[0]);
    assert_non_null(ok);
    assert_string_equal(ok, "OK");
    free(ok);
    end = mono() + 30;
    while (sentinel_says_master(ports[0]) != to && mono() < end) nap(0.05);
    assert_int_equal(sentinel_says_master(ports[0]), to);
    double t0 = mono();
    st = worker_wait_master(&w2, to, ANY, 10);
    print_message("new master taken %.2f s after the sentinel named it\n", mono() - t0);
    assert_int_equal(st.master, to);
    assert_true(mono() - t0 <= 10.5);
    struct res x;
    worker_exec(&w2, true, &x, "SET", "itest:sentinel:hubfo", "after");
    assert_int_equal(x.kind, RESP_EK_NONE);
    char *v = raw_cmd(to, "GET itest:sentinel:hubfo");
    assert_non_null(v);
    assert_string_equal(v, "after");
    free(v);

    worker_stop(&w2);
    worker_stop(&w1);
    topo_hub_unref(hub);
}

int main(void)
{
    loop = ev_loop_new(EVFLAG_AUTO);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_discovers_master_and_replica_past_a_dead_sentinel),
        cmocka_unit_test(test_writes_on_master_reads_on_replica),
        cmocka_unit_test(test_unknown_master_fails_at_once_naming_it),
        cmocka_unit_test(test_no_sentinel_reachable),
        cmocka_unit_test(test_free_mid_discovery_and_with_requests_in_flight),
        cmocka_unit_test(test_two_workers_share_one_discovery_and_one_subscription),
        cmocka_unit_test(test_follower_readonly_makes_the_leader_run_a_round),
        cmocka_unit_test(test_follower_fails_at_once_with_the_leaders_reason),
        cmocka_unit_test(test_failover_under_writes),
        cmocka_unit_test(test_leader_freed_follower_leads_and_follows_a_failover),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    ev_loop_destroy(loop);
    return rc;
}
