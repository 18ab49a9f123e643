/* tests/unit/test_topo_breaker_shared.c — one circuit breaker per node per process (SPEC §3):
 * pools of the same node on different loops (workers) share it through a hub. Against
 * loopback sockets the test controls: a refused port, and a tiny RESP server (a thread) that
 * answers PING with +PONG and anything else with a null, or holds the commands unanswered
 * (a stuck node) until told to answer. Most tests drive two loops alternately from one
 * thread; one runs each pool on its own thread. */
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>

#include <ev.h>

#include "resp/resp.h"
#include "topology/topology.h"

#include "support/raw_redis.h"

/* ---- a tiny RESP server on its own thread ------------------------------------------------ */

enum { SRV_ANSWER = 1, SRV_HOLD = 0 };
#define SRV_CLIENTS 64

struct srv {
    int lfd;
    uint16_t port;
    pthread_t th;
    atomic_bool stop;
    atomic_int mode;     /* SRV_ANSWER or SRV_HOLD (read and keep, answer later) */
    atomic_int accepted; /* connections accepted so far */
};

struct srv_client {
    int fd;
    size_t len;
    char buf[8192];
};

/* One complete command at b: its length (0: incomplete), whether it is PING. */
static size_t parse_cmd(const char *b, size_t len, bool *ping)
{
    const char *q = b, *end = b + len;
    const char *nl = memchr(q, '\n', (size_t)(end - q));
    if (!nl) return 0;
    long n = strtol(q + 1, NULL, 10);
    q = nl + 1;
    *ping = false;
    for (long i = 0; i < n; i++) {
        if (q >= end || !(nl = memchr(q, '\n', (size_t)(end - q)))) return 0;
        long l = strtol(q + 1, NULL, 10);
        q = nl + 1;
        if (end - q < l + 2) return 0;
        if (i == 0 && l == 4 && strncasecmp(q, "PING", 4) == 0) *ping = true;
        q += l + 2;
    }
    return (size_t)(q - b);
}

static void srv_answer(struct srv_client *c)
{
    size_t off = 0, k;
    bool ping;
    while ((k = parse_cmd(c->buf + off, c->len - off, &ping)) > 0) {
        const char *r = ping ? "+PONG\r\n" : "$-1\r\n";
        if (write(c->fd, r, strlen(r)) < 0) break;
        off += k;
    }
    memmove(c->buf, c->buf + off, c->len - off);
    c->len -= off;
}

static void *srv_main(void *arg)
{
    struct srv *s = arg;
    struct srv_client *cl = calloc(SRV_CLIENTS, sizeof *cl);
    if (!cl) return NULL;
    size_t n = 0;
    while (!atomic_load(&s->stop)) {
        struct pollfd pf[SRV_CLIENTS + 1];
        pf[0] = (struct pollfd){.fd = s->lfd, .events = POLLIN};
        for (size_t i = 0; i < n; i++)
            pf[i + 1] = (struct pollfd){.fd = cl[i].fd, .events = POLLIN};
        if (poll(pf, n + 1, 2) < 0) continue;
        for (size_t i = n; i-- > 0;) {
            struct srv_client *c = &cl[i];
            if (pf[i + 1].revents) {
                ssize_t r = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
                if (r <= 0) {
                    close(c->fd);
                    cl[i] = cl[--n];
                    continue;
                }
                c->len += (size_t)r;
            }
            if (atomic_load(&s->mode) == SRV_ANSWER) srv_answer(c);
        }
        if (pf[0].revents & POLLIN) {
            int fd = accept(s->lfd, NULL, NULL);
            if (fd < 0) continue;
            atomic_fetch_add(&s->accepted, 1);
            if (n == SRV_CLIENTS) {
                close(fd);
                continue;
            }
            cl[n].fd = fd;
            cl[n].len = 0;
            n++;
        }
    }
    for (size_t i = 0; i < n; i++) close(cl[i].fd);
    free(cl);
    return NULL;
}

/* Listens on 127.0.0.1:port (0: any) and serves from a thread. */
static void srv_start(struct srv *s, uint16_t port, int mode)
{
    memset(s, 0, sizeof *s);
    atomic_init(&s->stop, false);
    atomic_init(&s->mode, mode);
    atomic_init(&s->accepted, 0);
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->lfd >= 0);
    int one = 1;
    setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(s->lfd, 128), 0);
    socklen_t len = sizeof sa;
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&sa, &len), 0);
    s->port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&s->th, NULL, srv_main, s), 0);
}

static void srv_stop(struct srv *s)
{
    atomic_store(&s->stop, true);
    pthread_join(s->th, NULL);
    close(s->lfd);
}

/* ---- pools and requests -------------------------------------------------------------- */

static void node(struct topo_node_opts *n, uint16_t port, struct topo_hub *hub)
{
    memset(n, 0, sizeof *n);
    snprintf(n->host, sizeof n->host, "127.0.0.1");
    n->port = port;
    resp_conn_opts_init(&n->conn);
    n->conn.connect_timeout = 1;
    n->conn.resp3 = 0; /* no handshake: the test server speaks only PING and GET */
    topo_pool_opts_init(&n->pool);
    n->pool.min_backoff = 0.004; /* quick probes */
    n->pool.max_backoff = 0.032;
    n->hub = hub;
}

struct res {
    int calls;
    bool ok;
    enum resp_err_kind kind;
    char msg[192];
};

static void res_cb(void *priv, size_t idx, const struct resp_value *reply,
                   const struct resp_err *err)
{
    struct res *r = priv;
    r->calls++;
    if (err) {
        r->kind = err->kind;
        snprintf(r->msg, sizeof r->msg, "%s", err->msg);
    } else {
        r->ok = reply && reply->type != RESP_ERROR && reply->type != RESP_BULK_ERROR;
    }
}

static const char *get_argv[] = {"GET", "k"};
static const size_t get_lens[] = {3, 1};
static const struct resp_cmd get_cmd = {2, get_argv, get_lens};

typedef bool done_fn(const void *arg);

/* Runs every loop in turn (without blocking) until done or secs pass. */
static void drive(struct ev_loop *const *loops, size_t n, double secs, done_fn *done,
                  const void *arg)
{
    double end = ev_time() + secs;
    while (!(done && done(arg)) && ev_time() < end) {
        for (size_t i = 0; i < n; i++)
            if (loops[i]) ev_run(loops[i], EVRUN_NOWAIT);
        usleep(300);
    }
}

static bool answered(const void *arg)
{
    return ((const struct res *)arg)->calls > 0;
}

/* One GET on p (whose loop is loops[i] for some i) with `secs` of deadline; drives all loops
 * until it completed. */
static struct res request(struct topo_pool *p, struct ev_loop *loop, struct ev_loop *const *loops,
                          size_t n, double secs)
{
    struct res r = {0};
    ev_now_update(loop);
    topo_pool_exec(p, &get_cmd, 1, ev_now(loop) + secs, 0, res_cb, &r);
    drive(loops, n, secs + 2, answered, &r);
    assert_int_equal(r.calls, 1);
    return r;
}

static enum topo_breaker_state breaker(const struct topo_pool *p)
{
    struct topo_pool_stats st;
    topo_pool_stats(p, &st);
    return st.breaker;
}

static uint64_t connects(const struct topo_pool *p)
{
    struct topo_pool_stats st;
    topo_pool_stats(p, &st);
    return st.connects;
}

static bool is_closed(const void *arg)
{
    return breaker(arg) == TOPO_BREAKER_CLOSED;
}

/* A failed request that did not fail fast. */
static void assert_connection_failure(const struct res *r)
{
    assert_false(r->ok);
    assert_int_equal(r->kind, RESP_EK_CONNECTION);
    assert_null(strstr(r->msg, "breaker open"));
}

/* exec on a pool whose breaker is open: fails before returning, with the reason. */
static void assert_fails_fast(struct topo_pool *p, struct ev_loop *loop, enum resp_err_kind kind)
{
    struct res r = {0};
    ev_now_update(loop);
    topo_pool_exec(p, &get_cmd, 1, ev_now(loop) + 1, 0, res_cb, &r);
    assert_int_equal(r.calls, 1);
    assert_false(r.ok);
    assert_int_equal(r.kind, kind);
    char want[64];
    snprintf(want, sizeof want, "breaker open for %s: ", topo_pool_name(p));
    if (!strstr(r.msg, want)) fail_msg("\"%s\" lacks \"%s\"", r.msg, want);
}

struct two {
    struct ev_loop *loops[2];
    struct topo_pool *a, *b;
    struct topo_hub *hub;
};

static void two_new(struct two *t, uint16_t port, bool shared)
{
    t->hub = shared ? topo_hub_new() : NULL;
    if (shared) assert_non_null(t->hub);
    struct topo_node_opts n;
    node(&n, port, t->hub);
    t->loops[0] = ev_loop_new(0);
    t->loops[1] = ev_loop_new(0);
    t->a = topo_pool_new(t->loops[0], NULL, &n);
    t->b = topo_pool_new(t->loops[1], NULL, &n);
    assert_non_null(t->a);
    assert_non_null(t->b);
    topo_hub_unref(t->hub); /* the pools hold their own references */
}

static void two_free(struct two *t)
{
    topo_pool_free(t->a);
    topo_pool_free(t->b);
    for (int i = 0; i < 2; i++)
        if (t->loops[i]) ev_loop_destroy(t->loops[i]);
}

static struct res req_a(struct two *t)
{
    return request(t->a, t->loops[0], t->loops, 2, 0.5);
}

static struct res req_b(struct two *t)
{
    return request(t->b, t->loops[1], t->loops, 2, 0.5);
}

/* n requests on pool A (on_a) or B, each a connection failure that did not fail fast. */
static void fail_requests(struct two *t, bool on_a, int n)
{
    for (int i = 0; i < n; i++) {
        struct res r = on_a ? req_a(t) : req_b(t);
        assert_connection_failure(&r);
    }
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_failures_split_between_pools_open_the_breaker_for_both(void **state)
{
    struct two t;
    two_new(&t, refused_port(), true);
    fail_requests(&t, true, 3);
    struct res r = req_b(&t);
    assert_connection_failure(&r);
    assert_int_equal(breaker(t.a), TOPO_BREAKER_CLOSED); /* 4 of 5 */
    assert_int_equal(breaker(t.b), TOPO_BREAKER_CLOSED);
    r = req_b(&t); /* the 5th failure, B's second */
    assert_connection_failure(&r);
    assert_int_equal(breaker(t.a), TOPO_BREAKER_OPEN);
    assert_int_equal(breaker(t.b), TOPO_BREAKER_OPEN);
    /* A failed only 3 times itself, yet fails fast, with the kind that opened it */
    uint64_t ca = connects(t.a);
    assert_fails_fast(t.a, t.loops[0], RESP_EK_CONNECTION);
    assert_fails_fast(t.b, t.loops[1], RESP_EK_CONNECTION);
    assert_int_equal(connects(t.a), ca);
    two_free(&t);
}

static void test_pools_without_a_hub_keep_their_own_breakers(void **state)
{
    struct two t;
    two_new(&t, refused_port(), false);
    fail_requests(&t, true, 5);
    assert_int_equal(breaker(t.a), TOPO_BREAKER_OPEN);
    assert_int_equal(breaker(t.b), TOPO_BREAKER_CLOSED);
    assert_fails_fast(t.a, t.loops[0], RESP_EK_CONNECTION);
    struct res r = req_b(&t); /* B still tries the node itself */
    assert_connection_failure(&r);
    assert_int_equal(breaker(t.b), TOPO_BREAKER_CLOSED);
    two_free(&t);
}

static void test_any_reply_resets_the_shared_count_and_timeouts_open_with_timeout_kind(void **s)
{
    struct srv srv;
    srv_start(&srv, 0, SRV_ANSWER);
    struct two t;
    two_new(&t, srv.port, true);
    struct res r = req_a(&t);
    assert_true(r.ok);
    atomic_store(&srv.mode, SRV_HOLD); /* stuck: commands time out */
    for (int i = 0; i < 2; i++) {
        r = request(t.a, t.loops[0], t.loops, 2, 0.05);
        assert_int_equal(r.kind, RESP_EK_TIMEOUT);
    }
    r = request(t.b, t.loops[1], t.loops, 2, 0.05);
    assert_int_equal(r.kind, RESP_EK_TIMEOUT);
    /* 3 timeouts so far; B's reply resets the count for both pools */
    atomic_store(&srv.mode, SRV_ANSWER);
    r = req_b(&t);
    assert_true(r.ok);
    atomic_store(&srv.mode, SRV_HOLD);
    for (int i = 0; i < 4; i++) {
        r = request(i % 2 ? t.b : t.a, t.loops[i % 2], t.loops, 2, 0.05);
        assert_int_equal(r.kind, RESP_EK_TIMEOUT);
    }
    assert_int_equal(breaker(t.a), TOPO_BREAKER_CLOSED); /* 4 since the reply, not 7 */
    r = request(t.a, t.loops[0], t.loops, 2, 0.05);
    assert_int_equal(r.kind, RESP_EK_TIMEOUT);
    assert_int_equal(breaker(t.b), TOPO_BREAKER_OPEN);
    assert_fails_fast(t.b, t.loops[1], RESP_EK_TIMEOUT);
    two_free(&t);
    srv_stop(&srv);
}

static unsigned open_conns(const struct topo_pool *p)
{
    struct topo_pool_stats st;
    topo_pool_stats(p, &st);
    return st.open;
}

static void test_a_pool_that_sees_the_shared_breaker_open_closes_its_connections(void **state)
{
    struct srv srv;
    srv_start(&srv, 0, SRV_ANSWER);
    struct two t;
    two_new(&t, srv.port, true);
    struct res r = req_a(&t);
    assert_true(r.ok);
    r = req_b(&t);
    assert_true(r.ok);
    assert_int_equal(open_conns(t.b), 1);
    atomic_store(&srv.mode, SRV_HOLD);
    for (int i = 0; i < 5; i++) {
        r = request(t.a, t.loops[0], t.loops, 2, 0.05);
        assert_int_equal(r.kind, RESP_EK_TIMEOUT);
    }
    assert_int_equal(breaker(t.b), TOPO_BREAKER_OPEN);
    /* B's next request learns it (its housekeeping would, within a second) */
    assert_fails_fast(t.b, t.loops[1], RESP_EK_TIMEOUT);
    assert_int_equal(open_conns(t.b), 1); /* not from inside exec: deferred */
    drive(t.loops, 2, 0.05, NULL, NULL);
    assert_int_equal(open_conns(t.b), 0);
    two_free(&t);
    srv_stop(&srv);
}

static void test_only_one_pool_probes_while_open(void **state)
{
    struct two t;
    two_new(&t, refused_port(), true);
    fail_requests(&t, true, 5);
    assert_int_equal(breaker(t.b), TOPO_BREAKER_OPEN);
    uint64_t ca = connects(t.a), cb = connects(t.b);
    /* B keeps getting requests, which fail fast and connect nowhere; A probes */
    double end = ev_time() + 0.3;
    int fast = 0;
    while (ev_time() < end) {
        assert_fails_fast(t.b, t.loops[1], RESP_EK_CONNECTION);
        fast++;
        drive(t.loops, 2, 0.002, NULL, NULL);
    }
    assert_true(fast > 10);
    assert_int_equal(connects(t.b), cb);
    assert_true(connects(t.a) >= ca + 3); /* probes every 4..32 ms, refused each time */
    assert_int_equal(breaker(t.a), TOPO_BREAKER_OPEN);
    two_free(&t);
}

static void test_probe_success_closes_the_breaker_for_both_pools(void **state)
{
    uint16_t port = refused_port();
    struct two t;
    two_new(&t, port, true);
    fail_requests(&t, false, 5);
    assert_fails_fast(t.a, t.loops[0], RESP_EK_CONNECTION);
    uint64_t ca = connects(t.a);
    struct srv srv;
    srv_start(&srv, port, SRV_ANSWER); /* the node comes back */
    drive(t.loops, 2, 3, is_closed, t.a);
    assert_int_equal(breaker(t.a), TOPO_BREAKER_CLOSED);
    assert_int_equal(breaker(t.b), TOPO_BREAKER_CLOSED);
    assert_int_equal(connects(t.a), ca); /* B's probe did it */
    struct res r = req_a(&t);
    assert_true(r.ok);
    r = req_b(&t);
    assert_true(r.ok);
    two_free(&t);
    srv_stop(&srv);
}

static void test_freeing_the_probing_pool_hands_the_probe_to_another(void **state)
{
    uint16_t port = refused_port();
    struct two t;
    two_new(&t, port, true);
    fail_requests(&t, true, 5);
    assert_fails_fast(t.b, t.loops[1], RESP_EK_CONNECTION);
    drive(t.loops, 2, 0.05, NULL, NULL); /* A's probe under way, B idle */
    uint64_t cb = connects(t.b);
    topo_pool_free(t.a); /* the worker stops */
    ev_loop_destroy(t.loops[0]);
    t.a = NULL;
    t.loops[0] = NULL;
    struct srv srv;
    srv_start(&srv, port, SRV_ANSWER);
    /* no request on B: its housekeeping finds the probe orphaned and runs it */
    drive(t.loops, 2, 4, is_closed, t.b);
    assert_int_equal(breaker(t.b), TOPO_BREAKER_CLOSED);
    assert_true(connects(t.b) > cb);
    struct res r = req_b(&t);
    assert_true(r.ok);
    two_free(&t);
    srv_stop(&srv);
}

/* ---- two worker threads ------------------------------------------------------------------ */

struct worker {
    struct topo_hub *hub;
    uint16_t port;
    pthread_barrier_t *bar;
    pthread_t th;
    int own_fails; /* connection failures before it saw the breaker open */
    bool saw_open, ok, wrong_msg;
};

static struct res thread_request(struct topo_pool *p, struct ev_loop *loop)
{
    struct res r = {0};
    ev_now_update(loop);
    topo_pool_exec(p, &get_cmd, 1, ev_now(loop) + 0.5, 0, res_cb, &r);
    struct ev_loop *loops[1] = {loop};
    drive(loops, 1, 3, answered, &r);
    return r;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct ev_loop *loop = ev_loop_new(0);
    struct topo_node_opts n;
    node(&n, w->port, w->hub);
    struct topo_pool *p = topo_pool_new(loop, NULL, &n);
    char want[64];
    snprintf(want, sizeof want, "breaker open for 127.0.0.1:%u: ", (unsigned)w->port);
    pthread_barrier_wait(w->bar); /* both pools exist: fail together */
    double end = ev_time() + 5;
    while (p && !w->saw_open && ev_time() < end) {
        struct res r = thread_request(p, loop);
        if (strstr(r.msg, "breaker open"))
            w->saw_open = true;
        else if (r.calls && r.kind == RESP_EK_CONNECTION)
            w->own_fails++;
        if (w->saw_open && !strstr(r.msg, want)) w->wrong_msg = true;
    }
    pthread_barrier_wait(w->bar); /* the main thread starts the server */
    pthread_barrier_wait(w->bar);
    end = ev_time() + 5;
    while (p && !w->ok && ev_time() < end) {
        struct res r = thread_request(p, loop);
        w->ok = r.ok;
        struct ev_loop *loops[1] = {loop};
        if (!w->ok) drive(loops, 1, 0.002, NULL, NULL); /* the probe's timers and sockets */
    }
    topo_pool_free(p);
    ev_loop_destroy(loop);
    return NULL;
}

static void test_two_worker_threads_share_one_breaker_and_its_close(void **state)
{
    uint16_t port = refused_port();
    struct topo_hub *hub = topo_hub_new();
    assert_non_null(hub);
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 3);
    struct worker w[2];
    for (int i = 0; i < 2; i++) {
        w[i] = (struct worker){.hub = hub, .port = port, .bar = &bar};
        assert_int_equal(pthread_create(&w[i].th, NULL, worker_main, &w[i]), 0);
    }
    pthread_barrier_wait(&bar);
    pthread_barrier_wait(&bar); /* both saw it open */
    struct srv srv;
    srv_start(&srv, port, SRV_ANSWER);
    pthread_barrier_wait(&bar);
    for (int i = 0; i < 2; i++) pthread_join(w[i].th, NULL);
    srv_stop(&srv);
    pthread_barrier_destroy(&bar);
    topo_hub_unref(hub);
    for (int i = 0; i < 2; i++) {
        assert_true(w[i].saw_open);
        assert_false(w[i].wrong_msg);
        assert_true(w[i].ok);
    }
    /* one count: one pool saw it open before failing 5 times itself (each on its own would
     * need 5). The total is 5, plus the other's request in flight when it opened, plus any
     * that fail in the instant between the opener's CAS and its publishing the reason. */
    int total = w[0].own_fails + w[1].own_fails;
    int least = w[0].own_fails < w[1].own_fails ? w[0].own_fails : w[1].own_fails;
    if (least >= 5)
        fail_msg("%d + %d failures before both saw it open", w[0].own_fails, w[1].own_fails);
    assert_true(total >= 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_failures_split_between_pools_open_the_breaker_for_both),
        cmocka_unit_test(test_pools_without_a_hub_keep_their_own_breakers),
        cmocka_unit_test(
            test_any_reply_resets_the_shared_count_and_timeouts_open_with_timeout_kind),
        cmocka_unit_test(test_a_pool_that_sees_the_shared_breaker_open_closes_its_connections),
        cmocka_unit_test(test_only_one_pool_probes_while_open),
        cmocka_unit_test(test_probe_success_closes_the_breaker_for_both_pools),
        cmocka_unit_test(test_freeing_the_probing_pool_hands_the_probe_to_another),
        cmocka_unit_test(test_two_worker_threads_share_one_breaker_and_its_close),
    };
    return cmocka_run_group_tests_name("topo_breaker_shared", tests, NULL, NULL);
}
