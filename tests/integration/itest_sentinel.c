/* tests/integration/itest_sentinel.c — the Sentinel router (src/topology/sentinel*.c) at
 * library level, under ASan+UBSan, against the real topology tests/integration/sentinel.sh
 * starts (master + replica + 3 sentinels; ports in SN_* variables): discovery past a dead
 * first sentinel, writes on the master and reads on the replica (commandstats), requests
 * failing at once with the reason while no master is known (unknown name, no sentinel
 * reachable), a SENTINEL FAILOVER under a stream of writes (every callback by its
 * deadline, the new master taken within 10 s), and freeing the router mid-discovery and
 * with requests in flight.
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
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>

#include <ev.h>

#include "resp/resp.h"
#include "topology/topology.h"

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

/* An inline command to 127.0.0.1:port; the reply's first line or bulk payload (caller
 * frees), NULL when nothing answers. */
static char *raw_cmd(int port, const char *cmd)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return NULL;
    }
    char line[256];
    int n = snprintf(line, sizeof line, "%s\r\n", cmd);
    assert_int_equal(write(fd, line, (size_t)n), n);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    char *out = NULL;
    for (;;) {
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r <= 0) break;
        len += (size_t)r;
        buf[len] = '\0';
        char *crlf = strstr(buf, "\r\n");
        if (!crlf) continue;
        if (buf[0] == '$') {
            long want = strtol(buf + 1, NULL, 10);
            size_t hdr = (size_t)(crlf - buf) + 2;
            if (want < 0 || len >= hdr + (size_t)want + 2) {
                out = want < 0 ? strdup("") : strndup(buf + hdr, (size_t)want);
                break;
            }
        } else {
            out = strndup(buf + 1, (size_t)(crlf - buf - 1));
            break;
        }
        if (len + 1 >= cap) break;
    }
    free(buf);
    close(fd);
    return out;
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

static struct topo_router *router_new(const char *master, const int *ports, size_t n)
{
    struct topo_hostport hp[8];
    assert_true(n <= 8);
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
    struct topo_router *r = topo_sentinel_new(loop, NULL, &o); /* IP literals: no resolver */
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

static void exec1(struct topo_router *r, bool write, struct res *x, double budget, const char *a0,
                  const char *a1, const char *a2)
{
    const char *argv[3] = {a0, a1, a2};
    size_t lens[3] = {strlen(a0), a1 ? strlen(a1) : 0, a2 ? strlen(a2) : 0};
    struct resp_cmd cmd = {.argc = a2 ? 3 : a1 ? 2 : 1, .argv = argv, .lens = lens};
    memset(x, 0, sizeof *x);
    x->started = mono();
    x->deadline = ev_now(loop) + budget;
    ev_now_update(loop);
    topo_router_exec(r, a1, a1 ? strlen(a1) : 0, write, &cmd, 1, ev_now(loop) + budget, 0, res_cb,
                     x);
    x->sync = x->done;
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

int main(void)
{
    loop = ev_loop_new(EVFLAG_AUTO);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_discovers_master_and_replica_past_a_dead_sentinel),
        cmocka_unit_test(test_writes_on_master_reads_on_replica),
        cmocka_unit_test(test_unknown_master_fails_at_once_naming_it),
        cmocka_unit_test(test_no_sentinel_reachable),
        cmocka_unit_test(test_free_mid_discovery_and_with_requests_in_flight),
        cmocka_unit_test(test_failover_under_writes),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    ev_loop_destroy(loop);
    return rc;
}
