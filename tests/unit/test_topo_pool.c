/* tests/unit/test_topo_pool.c — the pool, the standalone router and rc_client without a
 * Redis server: backoff math, option defaults, configuration errors, the reply view, and
 * pool behaviour against loopback sockets the test controls (a port nobody listens on, a
 * listener that never answers): fail-fast breaker, pool wait, deadlines, the background
 * bound, shutdown, and read/write routing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>

#include <ev.h>

#include "redis_cache.h"
#include "resp/resp.h"
#include "topology/topology.h"

/* ---- backoff -------------------------------------------------------------------------- */

static void test_backoff_first_retry_is_min(void **state)
{
    assert_true(topo_backoff(0.008, 0.512, 0, 0.0) == 0.008);
    assert_true(topo_backoff(0.008, 0.512, 0, 0.99) == 0.008);
}

static void test_backoff_grows_exponentially_with_jitter(void **state)
{
    /* attempt 3: ceiling 8 ms * 8 = 64 ms, jittered in [32, 64) ms */
    double lo = topo_backoff(0.008, 0.512, 3, 0.0);
    double hi = topo_backoff(0.008, 0.512, 3, 0.999);
    assert_true(lo >= 0.032 - 1e-12 && lo < 0.0321);
    assert_true(hi > 0.063 && hi <= 0.064);
    assert_true(topo_backoff(0.008, 0.512, 3, 0.5) > lo);
    /* monotone ceilings: the upper end doubles until the cap */
    double prev = 0;
    for (unsigned a = 0; a < 7; a++) {
        double d = topo_backoff(0.008, 0.512, a, 0.999);
        assert_true(d > prev);
        prev = d;
    }
}

static void test_backoff_stays_within_min_and_max(void **state)
{
    const double us[] = {0.0, 0.25, 0.5, 0.75, 0.999999, 1.0, -1.0};
    for (unsigned a = 0; a < 100; a++) {
        for (size_t i = 0; i < sizeof us / sizeof us[0]; i++) {
            double d = topo_backoff(0.008, 0.512, a, us[i]);
            assert_true(d >= 0.008 && d <= 0.512);
        }
    }
    /* far attempts sit in [max/2, max] */
    assert_true(topo_backoff(0.008, 0.512, 1000, 0.0) >= 0.256);
    assert_true(topo_backoff(0.008, 0.512, 1000, 0.999) <= 0.512);
    /* zero min disables; max below min is lifted to min */
    assert_true(topo_backoff(0, 0.512, 5, 0.5) == 0);
    assert_true(topo_backoff(0.1, 0.05, 3, 0.5) == 0.1);
}

/* ---- defaults and configuration ---------------------------------------------------------- */

static void test_pool_opts_defaults(void **state)
{
    struct topo_pool_opts o;
    memset(&o, 0xff, sizeof o);
    topo_pool_opts_init(&o);
    assert_int_equal(o.size, 0); /* 10 x CPUs at creation */
    assert_int_equal(o.min_idle, 0);
    assert_int_equal(o.max_idle, 0);
    assert_int_equal(o.max_active, 0);
    assert_true(o.max_idle_time == 1800);
    assert_true(o.max_lifetime == 0);
    assert_true(o.wait_timeout == 0.5);
    assert_int_equal(o.retries, 1);
    assert_true(o.min_backoff == 0.008);
    assert_true(o.max_backoff == 0.512);
    assert_int_equal(o.pipeline_high, 32);
    assert_int_equal(o.breaker_threshold, 5);
    assert_int_equal(o.max_background, 10000);
    assert_int_equal(o.max_background_bytes, 64u * 1024 * 1024);
}

static void test_client_config_defaults(void **state)
{
    struct rc_client_config c;
    memset(&c, 0xff, sizeof c);
    rc_client_config_init(&c);
    assert_string_equal(c.endpoint, "127.0.0.1:6379");
    assert_null(c.read_endpoints);
    assert_int_equal(c.n_read_endpoints, 0);
    assert_null(c.username);
    assert_null(c.password);
    assert_int_equal(c.db, 0);
    assert_false(c.tls);
    assert_true(c.tls_verify_chain);
    assert_true(c.tls_verify_hostname);
    assert_true(c.connect_timeout == 1.0);
    assert_true(c.read_timeout == 0.5);
    assert_true(c.write_timeout == 2.0);
    assert_true(c.pool.max_idle_time == 1800);
    assert_true(c.pool.wait_timeout == 0.5);
    assert_int_equal(c.pool.size, 0);
    assert_int_equal(c.retries.max, 1);
    assert_true(c.retries.min_backoff == 0.008);
    assert_true(c.retries.max_backoff == 0.512);
    assert_int_equal(c.breaker_threshold, 5);
}

static void expect_rejected(struct rc_client_config *cfg, const char *needle)
{
    struct ev_loop *loop = ev_loop_new(0);
    char err[256] = "";
    assert_null(rc_client_new(loop, cfg, err, sizeof err));
    if (!strstr(err, needle)) fail_msg("error \"%s\" lacks \"%s\"", err, needle);
    ev_loop_destroy(loop);
}

static void test_client_config_errors(void **state)
{
    struct rc_client_config c;
    rc_client_config_init(&c);
    c.endpoint = "";
    expect_rejected(&c, "endpoint");
    rc_client_config_init(&c);
    c.endpoint = "127.0.0.1:99999";
    expect_rejected(&c, "127.0.0.1:99999");
    rc_client_config_init(&c);
    const char *reads[] = {"10.0.0.1:6379", "10.0.0.2:bad"};
    c.read_endpoints = reads;
    c.n_read_endpoints = 2;
    expect_rejected(&c, "10.0.0.2:bad");
    rc_client_config_init(&c);
    c.retries.min_backoff = 1;
    c.retries.max_backoff = 0.5;
    expect_rejected(&c, "min_backoff");
    rc_client_config_init(&c);
    c.username = "alice";
    expect_rejected(&c, "username without password");
    rc_client_config_init(&c);
    c.read_timeout = 0;
    expect_rejected(&c, "timeout");
    rc_client_config_init(&c);
    c.tls_cert = "/tmp/x.pem";
    expect_rejected(&c, "tls_key");
}

static void test_reply_view_elements(void **state)
{
    struct resp_value kids[2];
    memset(kids, 0, sizeof kids);
    kids[0].type = RESP_BULK;
    kids[0].str = "abc";
    kids[0].len = 3;
    kids[1].type = RESP_INTEGER;
    kids[1].str = "42";
    kids[1].len = 2;
    kids[1].integer = 42;
    struct resp_value arr;
    memset(&arr, 0, sizeof arr);
    arr.type = RESP_ARRAY;
    arr.len = 2;
    arr.elems = kids;
    struct rc_reply r = {.type = RC_REPLY_ARRAY, .elements = 2, .internal_ = &arr};
    struct rc_reply e;
    assert_int_equal(rc_reply_element(&r, 0, &e), 0);
    assert_int_equal(e.type, RC_REPLY_BULK);
    assert_int_equal(e.len, 3);
    assert_memory_equal(e.str, "abc", 3);
    assert_int_equal(rc_reply_element(&r, 1, &e), 0);
    assert_int_equal(e.type, RC_REPLY_INTEGER);
    assert_int_equal(e.integer, 42);
    assert_int_equal(rc_reply_element(&r, 2, &e), -1);
    struct rc_reply scalar = {.type = RC_REPLY_BULK, .internal_ = &kids[0]};
    assert_int_equal(rc_reply_element(&scalar, 0, &e), -1);
}

/* ---- pools against sockets the test controls ------------------------------------------- */

/* A loopback listener that never accepts: TCP connects complete (the backlog), the Redis
 * handshake never does — a stuck server. Returns the fd, port in *port. */
static int silent_listener(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 128), 0);
    socklen_t len = sizeof sa;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

/* A loopback port nobody listens on (bound, then closed). */
static uint16_t refused_port(void)
{
    uint16_t port;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t len = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &len);
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

static void node(struct topo_node_opts *n, uint16_t port)
{
    memset(n, 0, sizeof *n);
    snprintf(n->host, sizeof n->host, "127.0.0.1");
    n->port = port;
    resp_conn_opts_init(&n->conn);
    n->conn.connect_timeout = 5;
    topo_pool_opts_init(&n->pool);
}

struct out {
    int calls;
    size_t idx[4];
    enum resp_err_kind kind[4];
    char msg[4][192];
    double at[4];
};

static void out_cb(void *priv, size_t idx, const struct resp_value *reply,
                   const struct resp_err *err)
{
    struct out *o = priv;
    assert_null(reply);
    assert_non_null(err);
    assert_true(o->calls < 4);
    o->idx[o->calls] = idx;
    o->kind[o->calls] = err->kind;
    snprintf(o->msg[o->calls], sizeof o->msg[0], "%s", err->msg);
    o->calls++;
}

static void tick(struct ev_loop *loop, ev_timer *w, int revents) {}

static void run_until_calls(struct ev_loop *loop, struct out *o, int n, double secs)
{
    ev_timer t;
    ev_timer_init(&t, tick, 0.005, 0.005);
    ev_timer_start(loop, &t);
    ev_now_update(loop);
    double end = ev_now(loop) + secs;
    while (o->calls < n && ev_now(loop) < end) ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &t);
}

static const char *get_argv[] = {"GET", "k"};
static const size_t get_lens[] = {3, 1};
static const struct resp_cmd get_cmd = {2, get_argv, get_lens};

static void test_refused_node_opens_breaker_and_fails_fast(void **state)
{
    struct ev_loop *loop = ev_loop_new(0);
    struct topo_node_opts n;
    node(&n, refused_port());
    struct topo_pool *p = topo_pool_new(loop, NULL, &n);
    assert_non_null(p);
    struct topo_pool_stats st;
    for (int i = 0; i < 5; i++) {
        topo_pool_stats(p, &st);
        assert_int_equal(st.breaker, TOPO_BREAKER_CLOSED);
        struct out o = {0};
        ev_now_update(loop);
        topo_pool_exec(p, &get_cmd, 1, ev_now(loop) + 0.5, 0, out_cb, &o);
        run_until_calls(loop, &o, 1, 2);
        assert_int_equal(o.calls, 1);
        assert_int_equal(o.kind[0], RESP_EK_CONNECTION);
    }
    topo_pool_stats(p, &st);
    assert_int_equal(st.breaker, TOPO_BREAKER_OPEN);
    uint64_t connects = st.connects;
    assert_true(connects >= 1 && connects <= 5); /* paced: not one per retry and request */
    /* open: fails before exec returns, with the reason that opened it */
    struct out o = {0};
    topo_pool_exec(p, &get_cmd, 1, ev_now(loop) + 0.5, 0, out_cb, &o);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.kind[0], RESP_EK_CONNECTION);
    assert_non_null(strstr(o.msg[0], "breaker open for 127.0.0.1:"));
    /* two commands: both fail, in order */
    struct resp_cmd two[2] = {get_cmd, get_cmd};
    memset(&o, 0, sizeof o);
    topo_pool_exec(p, two, 2, ev_now(loop) + 0.5, 0, out_cb, &o);
    assert_int_equal(o.calls, 2);
    assert_int_equal(o.idx[0], 0);
    assert_int_equal(o.idx[1], 1);
    topo_pool_free(p);
    ev_loop_destroy(loop);
}

static void test_stuck_node_pool_wait_then_breaker_by_timeouts(void **state)
{
    struct ev_loop *loop = ev_loop_new(0);
    uint16_t port;
    int lfd = silent_listener(&port);
    struct topo_node_opts n;
    node(&n, port);
    n.pool.wait_timeout = 0.05;
    struct topo_pool *p = topo_pool_new(loop, NULL, &n);
    for (int i = 0; i < 5; i++) {
        struct out o = {0};
        ev_now_update(loop);
        double t0 = ev_now(loop);
        topo_pool_exec(p, &get_cmd, 1, t0 + 1, 0, out_cb, &o);
        run_until_calls(loop, &o, 1, 2);
        assert_int_equal(o.calls, 1);
        assert_int_equal(o.kind[0], RESP_EK_TIMEOUT);
        assert_non_null(strstr(o.msg[0], "pool wait"));
        ev_now_update(loop);
        assert_true(ev_now(loop) - t0 >= 0.045 && ev_now(loop) - t0 < 0.5);
    }
    run_until_calls(loop, &(struct out){0}, 1, 0.02);
    struct topo_pool_stats st;
    topo_pool_stats(p, &st);
    assert_int_equal(st.breaker, TOPO_BREAKER_OPEN);
    assert_int_equal(st.waiting, 0);
    struct out o = {0};
    topo_pool_exec(p, &get_cmd, 1, ev_now(loop) + 1, 0, out_cb, &o);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.kind[0], RESP_EK_TIMEOUT); /* opened by timeouts */
    topo_pool_free(p);
    close(lfd);
    ev_loop_destroy(loop);
}

static void test_deadline_bounds_the_wait(void **state)
{
    struct ev_loop *loop = ev_loop_new(0);
    uint16_t port;
    int lfd = silent_listener(&port);
    struct topo_node_opts n;
    node(&n, port);
    n.pool.wait_timeout = 10;
    struct topo_pool *p = topo_pool_new(loop, NULL, &n);
    struct out o = {0};
    ev_now_update(loop);
    double t0 = ev_now(loop);
    topo_pool_exec(p, &get_cmd, 1, t0 + 0.08, 0, out_cb, &o);
    run_until_calls(loop, &o, 1, 2);
    ev_now_update(loop);
    assert_int_equal(o.kind[0], RESP_EK_TIMEOUT);
    assert_true(ev_now(loop) - t0 >= 0.075 && ev_now(loop) - t0 < 0.3);
    /* a deadline already past fails at once */
    memset(&o, 0, sizeof o);
    topo_pool_exec(p, &get_cmd, 1, ev_now(loop) - 1, 0, out_cb, &o);
    assert_int_equal(o.calls, 1);
    assert_int_equal(o.kind[0], RESP_EK_TIMEOUT);
    topo_pool_free(p);
    close(lfd);
    ev_loop_destroy(loop);
}

static void test_background_bounds_and_shutdown(void **state)
{
    struct ev_loop *loop = ev_loop_new(0);
    uint16_t port;
    int lfd = silent_listener(&port);
    struct topo_node_opts n;
    node(&n, port);
    n.pool.max_background = 2;
    struct topo_pool *p = topo_pool_new(loop, NULL, &n);
    struct out bg = {0}, fg = {0};
    ev_now_update(loop);
    double dl = ev_now(loop) + 5;
    topo_pool_exec(p, &get_cmd, 1, dl, TOPO_BACKGROUND, out_cb, &bg);
    topo_pool_exec(p, &get_cmd, 1, dl, TOPO_BACKGROUND, out_cb, &bg);
    assert_int_equal(bg.calls, 0);
    topo_pool_exec(p, &get_cmd, 1, dl, TOPO_BACKGROUND, out_cb, &bg);
    assert_int_equal(bg.calls, 1);
    assert_int_equal(bg.kind[0], RESP_EK_TIMEOUT);
    assert_non_null(strstr(bg.msg[0], "write queue full"));
    /* foreground requests are not bounded by it */
    topo_pool_exec(p, &get_cmd, 1, dl, 0, out_cb, &fg);
    assert_int_equal(fg.calls, 0);
    struct topo_pool_stats st;
    topo_pool_stats(p, &st);
    assert_int_equal(st.background, 2);
    assert_int_equal(st.background_bytes, 2 * strlen("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"));
    assert_int_equal(st.waiting, 3);
    assert_int_equal(st.open, 1); /* one connect under way serves them all */
    /* freeing fails everything still pending */
    topo_pool_free(p);
    assert_int_equal(bg.calls, 3);
    assert_int_equal(fg.calls, 1);
    assert_int_equal(fg.kind[0], RESP_EK_CONNECTION);
    assert_non_null(strstr(fg.msg[0], "shutting down"));
    close(lfd);
    ev_loop_destroy(loop);
}

static void test_standalone_routes_reads_and_writes(void **state)
{
    struct ev_loop *loop = ev_loop_new(0);
    uint16_t pw, pr1, pr2;
    int f1 = silent_listener(&pw), f2 = silent_listener(&pr1), f3 = silent_listener(&pr2);
    struct topo_node_opts w, r[2];
    node(&w, pw);
    node(&r[0], pr1);
    node(&r[1], pr2);
    w.pool.wait_timeout = r[0].pool.wait_timeout = r[1].pool.wait_timeout = 10;
    struct topo_router *rt = topo_standalone_new(loop, NULL, &w, r, 2);
    assert_non_null(rt);
    struct topo_pool *pools[4];
    assert_int_equal(topo_standalone_pools(rt, pools, 4), 3);
    char want[64];
    snprintf(want, sizeof want, "127.0.0.1:%u", pw);
    assert_string_equal(topo_pool_name(pools[0]), want);
    snprintf(want, sizeof want, "127.0.0.1:%u", pr2);
    assert_string_equal(topo_pool_name(pools[2]), want);
    static struct out sink[300];
    memset(sink, 0, sizeof sink);
    ev_now_update(loop);
    double dl = ev_now(loop) + 30;
    for (int i = 0; i < 200; i++)
        topo_router_exec(rt, "k", 1, false, &get_cmd, 1, dl, 0, out_cb, &sink[i]);
    for (int i = 200; i < 210; i++)
        topo_router_exec(rt, "k", 1, true, &get_cmd, 1, dl, 0, out_cb, &sink[i]);
    struct topo_pool_stats s0, s1, s2;
    topo_pool_stats(pools[0], &s0);
    topo_pool_stats(pools[1], &s1);
    topo_pool_stats(pools[2], &s2);
    assert_int_equal(s0.waiting, 10);
    assert_int_equal(s1.waiting + s2.waiting, 200);
    assert_true(s1.waiting >= 50 && s2.waiting >= 50); /* random, P(fail) ~ 1e-12 */
    topo_router_free(rt);
    for (int i = 0; i < 210; i++) assert_int_equal(sink[i].calls, 1);
    /* one read endpoint takes all reads */
    rt = topo_standalone_new(loop, NULL, &w, r, 1);
    assert_int_equal(topo_standalone_pools(rt, pools, 4), 2);
    memset(sink, 0, sizeof sink);
    for (int i = 0; i < 20; i++)
        topo_router_exec(rt, "k", 1, false, &get_cmd, 1, dl, 0, out_cb, &sink[i]);
    topo_pool_stats(pools[0], &s0);
    topo_pool_stats(pools[1], &s1);
    assert_int_equal(s0.waiting, 0);
    assert_int_equal(s1.waiting, 20);
    topo_router_free(rt);
    /* none: the endpoint takes reads too */
    rt = topo_standalone_new(loop, NULL, &w, NULL, 0);
    assert_int_equal(topo_standalone_pools(rt, pools, 4), 1);
    memset(sink, 0, sizeof sink);
    for (int i = 0; i < 5; i++)
        topo_router_exec(rt, "k", 1, false, &get_cmd, 1, dl, 0, out_cb, &sink[i]);
    topo_pool_stats(pools[0], &s0);
    assert_int_equal(s0.waiting, 5);
    topo_router_free(rt);
    close(f1);
    close(f2);
    close(f3);
    ev_loop_destroy(loop);
}

static void test_min_idle_connects_in_background(void **state)
{
    struct ev_loop *loop = ev_loop_new(0);
    uint16_t port;
    int lfd = silent_listener(&port);
    struct topo_node_opts n;
    node(&n, port);
    n.pool.min_idle = 3;
    n.pool.size = 2; /* min_idle is capped by size */
    struct topo_pool *p = topo_pool_new(loop, NULL, &n);
    struct topo_pool_stats st;
    topo_pool_stats(p, &st);
    assert_int_equal(st.open, 2);
    assert_int_equal(st.ready, 0);
    assert_int_equal(st.connects, 2);
    topo_pool_free(p);
    close(lfd);
    ev_loop_destroy(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_first_retry_is_min),
        cmocka_unit_test(test_backoff_grows_exponentially_with_jitter),
        cmocka_unit_test(test_backoff_stays_within_min_and_max),
        cmocka_unit_test(test_pool_opts_defaults),
        cmocka_unit_test(test_client_config_defaults),
        cmocka_unit_test(test_client_config_errors),
        cmocka_unit_test(test_reply_view_elements),
        cmocka_unit_test(test_refused_node_opens_breaker_and_fails_fast),
        cmocka_unit_test(test_stuck_node_pool_wait_then_breaker_by_timeouts),
        cmocka_unit_test(test_deadline_bounds_the_wait),
        cmocka_unit_test(test_background_bounds_and_shutdown),
        cmocka_unit_test(test_standalone_routes_reads_and_writes),
        cmocka_unit_test(test_min_idle_connects_in_background),
    };
    return cmocka_run_group_tests_name("topo_pool", tests, NULL, NULL);
}
