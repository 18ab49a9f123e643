/* tests/integration/itest_http.c — the HTTP endpoints' server (src/server/http.c) on a real
 * libev loop with real sockets. Driven by tests/integration/http.sh.
 *
 *   itest_http            cmocka tests: the loop runs in the main thread while a client
 *                         thread speaks raw HTTP over TCP (statuses, headers, bodies, large
 *                         bodies to a slow reader, split requests, limits, timeouts,
 *                         concurrent clients, addresses, free with live connections).
 *   itest_http serve      serves the test handler on 127.0.0.1 (port 0), prints the port on
 *                         stdout, and runs until stdin closes (http.sh fetches with curl).
 *
 * The test handler: /metrics a small exposition, /health "OK", /ready 503, /big 4 MiB,
 * /echo the path it got, anything else 404.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "server/server.h"

#define BIG_SIZE (4u << 20)

static int handler(void *priv, const char *path, void (*append)(void *ctx, const char *s, size_t n),
                   void *ctx)
{
    unsigned *calls = priv;
    if (calls) (*calls)++;
    if (strcmp(path, "/metrics") == 0) {
        const char *m = "# HELP test_up Up.\n# TYPE test_up gauge\ntest_up 1\n";
        append(ctx, m, strlen(m));
        return 200;
    }
    if (strcmp(path, "/health") == 0) {
        append(ctx, "OK", 2);
        return 200;
    }
    if (strcmp(path, "/ready") == 0) {
        append(ctx, "not ready", 9);
        return 503;
    }
    if (strcmp(path, "/big") == 0) {
        char chunk[1000];
        for (size_t i = 0; i < BIG_SIZE; i += sizeof chunk) {
            for (size_t k = 0; k < sizeof chunk; k++) chunk[k] = (char)('a' + (i + k) % 26);
            size_t n = BIG_SIZE - i < sizeof chunk ? BIG_SIZE - i : sizeof chunk;
            append(ctx, chunk, n);
        }
        return 200;
    }
    if (strcmp(path, "/echo") == 0 || strncmp(path, "/echo/", 6) == 0) {
        append(ctx, path, strlen(path));
        return 200;
    }
    return 404;
}

/* ---- a client thread against the loop ---------------------------------------------------- */

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int dial(int family, uint16_t port)
{
    int fd = socket(family, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    int rc;
    if (family == AF_INET6) {
        struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
        sa.sin6_addr = in6addr_loopback;
        rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    } else {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    }
    if (rc != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static bool send_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w <= 0) return false;
        s += w;
        n -= (size_t)w;
    }
    return true;
}

/* Reads until EOF (or error/timeout); returns the bytes (malloc'd, NUL-terminated). */
static char *read_all(int fd, size_t *len, bool *eof)
{
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap + 1);
    *eof = false;
    for (;;) {
        if (n == cap) {
            cap *= 2;
            b = realloc(b, cap + 1);
        }
        ssize_t r = recv(fd, b + n, cap - n, 0);
        if (r == 0) {
            *eof = true;
            break;
        }
        if (r < 0) {
            if (errno == EINTR) continue;
            break;
        }
        n += (size_t)r;
    }
    b[n] = '\0';
    *len = n;
    return b;
}

struct resp {
    int status;
    char head[2048];
    char *body;
    size_t body_len;
    bool eof;       /* the server closed */
    bool connected; /* connect worked */
    double seconds; /* from connect to EOF */
};

static void resp_parse(struct resp *r, char *raw, size_t n)
{
    r->status = -1;
    char *sep = strstr(raw, "\r\n\r\n");
    if (!sep) {
        r->body = raw;
        r->body_len = 0;
        return;
    }
    size_t hl = (size_t)(sep - raw);
    snprintf(r->head, sizeof r->head, "%.*s", (int)(hl < sizeof r->head ? hl : sizeof r->head - 1),
             raw);
    sscanf(raw, "HTTP/1.1 %d", &r->status);
    r->body_len = n - hl - 4;
    memmove(raw, sep + 4, r->body_len + 1);
    r->body = raw;
}

/* One exchange: send each part (pausing `gap` seconds between them), optionally read slowly. */
struct exchange {
    int family;
    uint16_t port;
    const char *parts[4];
    double gap;
    bool slow_reader; /* wait 300 ms before reading (the server must not block) */
    struct resp r;
};

static void exchange_run(struct exchange *x)
{
    memset(&x->r, 0, sizeof x->r);
    x->r.status = -1;
    double t0 = mono();
    int fd = dial(x->family ? x->family : AF_INET, x->port);
    if (fd < 0) return;
    x->r.connected = true;
    for (int i = 0; i < 4 && x->parts[i]; i++) {
        if (i && x->gap > 0) usleep((useconds_t)(x->gap * 1e6));
        if (!send_all(fd, x->parts[i], strlen(x->parts[i]))) break;
    }
    if (x->slow_reader) usleep(300000);
    size_t n;
    char *raw = read_all(fd, &n, &x->r.eof);
    x->r.seconds = mono() - t0;
    close(fd);
    resp_parse(&x->r, raw, n);
}

/* The loop runs in this thread; `n` exchanges run concurrently in their own threads. */
struct world {
    struct ev_loop *loop;
    ev_async done;
    struct exchange *x;
    size_t n, finished;
    pthread_mutex_t mu;
};

struct job {
    struct world *w;
    struct exchange *x;
};

static void *job_main(void *arg)
{
    struct job *j = arg;
    exchange_run(j->x);
    pthread_mutex_lock(&j->w->mu);
    j->w->finished++;
    pthread_mutex_unlock(&j->w->mu);
    ev_async_send(j->w->loop, &j->w->done);
    return NULL;
}

static void done_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    struct world *w = a->data;
    pthread_mutex_lock(&w->mu);
    bool all = w->finished == w->n;
    pthread_mutex_unlock(&w->mu);
    if (all) ev_break(loop, EVBREAK_ALL);
}

static void guard_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    ev_break(loop, EVBREAK_ALL);
}

/* Runs the exchanges concurrently against the loop (which serves `h`). */
static void run(struct ev_loop *loop, struct exchange *x, size_t n)
{
    struct world w = {.loop = loop, .x = x, .n = n};
    pthread_mutex_init(&w.mu, NULL);
    ev_async_init(&w.done, done_cb);
    w.done.data = &w;
    ev_async_start(loop, &w.done);
    ev_timer guard;
    ev_timer_init(&guard, guard_cb, 30.0, 0.0);
    ev_timer_start(loop, &guard);
    pthread_t th[8];
    struct job jobs[8];
    assert_true(n <= 8);
    for (size_t i = 0; i < n; i++) {
        jobs[i] = (struct job){&w, &x[i]};
        assert_int_equal(pthread_create(&th[i], NULL, job_main, &jobs[i]), 0);
    }
    ev_run(loop, 0);
    for (size_t i = 0; i < n; i++) pthread_join(th[i], NULL);
    ev_timer_stop(loop, &guard);
    ev_async_stop(loop, &w.done);
    pthread_mutex_destroy(&w.mu);
    assert_int_equal(w.finished, n);
}

struct fixture {
    struct ev_loop *loop;
    struct srv_http *h;
    uint16_t port;
    unsigned calls;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    struct srv_http_addr a = {"127.0.0.1", 0};
    char err[256];
    f->h = srv_http_new(f->loop, &a, handler, &f->calls, err, sizeof err);
    if (!f->h) fail_msg("srv_http_new: %s", err);
    f->port = srv_http_port(f->h);
    assert_true(f->port > 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    srv_http_free(f->h);
    ev_loop_destroy(f->loop);
    free(f);
    return 0;
}

static void resp_free(struct resp *r)
{
    free(r->body);
    r->body = NULL;
}

/* One GET-like request (raw text) through the fixture's loop. */
static void one(struct fixture *f, const char *req, struct resp *out)
{
    struct exchange x = {.port = f->port, .parts = {req}};
    run(f->loop, &x, 1);
    *out = x.r;
}

static void assert_header(const struct resp *r, const char *line)
{
    if (!strstr(r->head, line)) fail_msg("header \"%s\" missing in:\n%s", line, r->head);
}

/* ---- tests ----------------------------------------------------------------------------- */

static void test_get_endpoints(void **state)
{
    struct fixture *f = *state;
    struct resp r;
    one(f, "GET /metrics HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n", &r);
    assert_true(r.eof);
    assert_int_equal(r.status, 200);
    assert_true(strncmp(r.head, "HTTP/1.1 200 OK\r\n", 17) == 0);
    assert_header(&r, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8");
    assert_header(&r, "\r\nConnection: close");
    char cl[64];
    snprintf(cl, sizeof cl, "\r\nContent-Length: %zu", r.body_len);
    assert_header(&r, cl);
    assert_string_equal(r.body, "# HELP test_up Up.\n# TYPE test_up gauge\ntest_up 1\n");
    resp_free(&r);

    one(f, "GET /health HTTP/1.0\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "OK");
    assert_header(&r, "Content-Length: 2");
    resp_free(&r);

    one(f, "GET /ready HTTP/1.1\r\n\r\n", &r);
    assert_int_equal(r.status, 503);
    assert_true(strncmp(r.head, "HTTP/1.1 503 Service Unavailable", 32) == 0);
    assert_string_equal(r.body, "not ready");
    resp_free(&r);

    /* bare LF line ends */
    one(f, "GET /health HTTP/1.1\nHost: x\n\n", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "OK");
    resp_free(&r);
    assert_int_equal(f->calls, 4);
}

static void test_not_found_and_query(void **state)
{
    struct fixture *f = *state;
    struct resp r;
    one(f, "GET /nope HTTP/1.1\r\n\r\n", &r);
    assert_int_equal(r.status, 404);
    assert_true(strncmp(r.head, "HTTP/1.1 404 Not Found", 22) == 0);
    assert_string_equal(r.body, "404 page not found\n");
    resp_free(&r);

    one(f, "GET /metrics/ HTTP/1.1\r\n\r\n", &r);
    assert_int_equal(r.status, 404);
    resp_free(&r);

    /* the query string and fragment are not part of the path */
    one(f, "GET /echo?x=1&y=2 HTTP/1.1\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "/echo");
    resp_free(&r);
    one(f, "GET /echo/a%20b#frag HTTP/1.1\r\n\r\n", &r);
    assert_string_equal(r.body, "/echo/a%20b");
    resp_free(&r);
}

static void test_methods_and_bad_requests(void **state)
{
    struct fixture *f = *state;
    struct resp r;
    const char *methods[] = {"POST", "HEAD", "PUT", "DELETE", "get"};
    for (size_t i = 0; i < 5; i++) {
        char req[128];
        snprintf(req, sizeof req, "%s /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
                 methods[i]);
        one(f, req, &r);
        if (r.status != 405) fail_msg("%s: status %d", methods[i], r.status);
        assert_header(&r, "\r\nAllow: GET");
        assert_true(r.eof);
        resp_free(&r);
    }
    const char *bad[] = {
        "GET /metrics\r\n\r\n",         "GET  /metrics HTTP/1.1\r\n\r\n",
        "GET /metrics HTTP/2\r\n\r\n",  "GET metrics HTTP/1.1\r\n\r\n",
        "GET /a b HTTP/1.1\r\n\r\n",    "\r\n\r\n",
        "GET /metrics FTP/1.1\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        one(f, bad[i], &r);
        if (r.status != 400) fail_msg("\"%s\": status %d", bad[i], r.status);
        resp_free(&r);
    }
    assert_int_equal(f->calls, 0); /* the handler saw none of these */
}

static void test_request_too_large(void **state)
{
    struct fixture *f = *state;
    size_t n = 9000;
    char *req = malloc(n + 64);
    strcpy(req, "GET /metrics HTTP/1.1\r\nX-Pad: ");
    size_t l = strlen(req);
    memset(req + l, 'p', n - l);
    req[n] = '\0';
    struct resp r;
    one(f, req, &r);
    assert_int_equal(r.status, 431);
    assert_true(r.eof);
    resp_free(&r);
    free(req);

    /* just under the limit is fine */
    req = malloc(8192 + 1);
    strcpy(req, "GET /health HTTP/1.1\r\nX-Pad: ");
    l = strlen(req);
    memset(req + l, 'p', 8192 - l - 4);
    memcpy(req + 8192 - 4, "\r\n\r\n", 5);
    assert_int_equal(strlen(req), 8192);
    one(f, req, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    free(req);
}

static void test_split_request(void **state)
{
    struct fixture *f = *state;
    /* the blank line arrives across three writes */
    struct exchange x = {
        .port = f->port, .parts = {"GET /health HTTP/1.1\r", "\n\r", "\n"}, .gap = 0.1};
    run(f->loop, &x, 1);
    assert_int_equal(x.r.status, 200);
    assert_string_equal(x.r.body, "OK");
    resp_free(&x.r);
}

static void test_big_body_slow_reader(void **state)
{
    struct fixture *f = *state;
    struct exchange x = {
        .port = f->port, .parts = {"GET /big HTTP/1.1\r\n\r\n"}, .slow_reader = true};
    run(f->loop, &x, 1);
    assert_int_equal(x.r.status, 200);
    assert_int_equal(x.r.body_len, BIG_SIZE);
    for (size_t i = 0; i < BIG_SIZE; i += 4099)
        if (x.r.body[i] != (char)('a' + i % 26)) fail_msg("byte %zu differs", i);
    char cl[64];
    snprintf(cl, sizeof cl, "Content-Length: %u", BIG_SIZE);
    assert_header(&x.r, cl);
    resp_free(&x.r);
}

static void test_slow_client_timeout(void **state)
{
    struct fixture *f = *state;
    /* a client that never finishes its request is closed after 5 s, without a response;
     * another client meanwhile is served at once */
    struct exchange x[2] = {
        {.port = f->port, .parts = {"GET /health HTTP/1.1\r\nHost: slow\r\n"}},
        {.port = f->port, .parts = {"GET /metrics HTTP/1.1\r\n\r\n"}},
    };
    run(f->loop, x, 2);
    assert_true(x[0].r.eof);
    assert_int_equal(x[0].r.status, -1);
    assert_true(x[0].r.seconds > 4.5 && x[0].r.seconds < 8.0);
    assert_int_equal(x[1].r.status, 200);
    assert_true(x[1].r.seconds < 2.0);
    resp_free(&x[0].r);
    resp_free(&x[1].r);
    assert_int_equal(f->calls, 1);
}

static void test_concurrent_clients(void **state)
{
    struct fixture *f = *state;
    struct exchange x[6];
    const char *paths[] = {"/metrics", "/health", "/big", "/nope", "/echo", "/health"};
    char reqs[6][64];
    for (int i = 0; i < 6; i++) {
        snprintf(reqs[i], sizeof reqs[i], "GET %s HTTP/1.1\r\n\r\n", paths[i]);
        x[i] = (struct exchange){.port = f->port, .parts = {reqs[i]}, .slow_reader = i == 2};
    }
    /* two of them send in pieces, interleaving with the others */
    x[0].parts[0] = "GET /metrics HTTP/1.1\r\n";
    x[0].parts[1] = "\r\n";
    x[0].gap = 0.2;
    x[1].parts[0] = "GET /hea";
    x[1].parts[1] = "lth HTTP/1.1\r\n\r\n";
    x[1].gap = 0.2;
    run(f->loop, x, 6);
    int want[] = {200, 200, 200, 404, 200, 200};
    for (int i = 0; i < 6; i++) {
        if (x[i].r.status != want[i]) fail_msg("%s: status %d", paths[i], x[i].r.status);
        assert_true(x[i].r.eof);
    }
    assert_int_equal(x[2].r.body_len, BIG_SIZE);
    assert_string_equal(x[1].r.body, "OK");
    for (int i = 0; i < 6; i++) resp_free(&x[i].r);
}

static void test_client_goes_away(void **state)
{
    struct fixture *f = *state;
    /* connect and close at once, and close in the middle of a large response: the server
     * carries on (no SIGPIPE, no leak) */
    for (int i = 0; i < 3; i++) {
        int fd = dial(AF_INET, f->port);
        assert_true(fd >= 0);
        if (i == 1) send_all(fd, "GET /big HTTP/1.1\r\n\r\n", 21);
        if (i == 2) send_all(fd, "GET /big HTTP/1.1\r\n", 19);
        ev_run(f->loop, EVRUN_NOWAIT);
        struct linger lg = {1, 0};
        if (i == 1) setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg); /* RST */
        close(fd);
        for (int k = 0; k < 20; k++) {
            ev_run(f->loop, EVRUN_NOWAIT);
            usleep(5000);
        }
    }
    struct resp r;
    one(f, "GET /health HTTP/1.1\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
}

static void test_free_with_live_connections(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct srv_http_addr a = {"127.0.0.1", 0};
    char err[256];
    struct srv_http *h = srv_http_new(loop, &a, handler, NULL, err, sizeof err);
    assert_non_null(h);
    int fds[3];
    for (int i = 0; i < 3; i++) {
        fds[i] = dial(AF_INET, srv_http_port(h));
        assert_true(fds[i] >= 0);
    }
    send_all(fds[1], "GET /big HTTP/1.1\r\n\r\n", 21); /* large pending write */
    for (int k = 0; k < 20; k++) {
        ev_run(loop, EVRUN_NOWAIT);
        usleep(2000);
    }
    srv_http_free(h); /* closes everything; ASan checks for leaks */
    srv_http_free(NULL);
    for (int i = 0; i < 3; i++) {
        char buf[4096];
        struct pollfd p = {fds[i], POLLIN, 0};
        assert_int_equal(poll(&p, 1, 2000), 1);
        ssize_t r;
        while ((r = recv(fds[i], buf, sizeof buf, 0)) > 0) {
        }
        assert_true(r == 0 || (r < 0 && errno == ECONNRESET));
        close(fds[i]);
    }
    ev_loop_destroy(loop);
}

static bool have_v6(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    if (fd < 0) return false;
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6};
    sa.sin6_addr = in6addr_loopback;
    bool ok = bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

static void test_addresses(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    char err[256];

    /* "" = every address: reachable over IPv4 (and IPv6 when the host has it) */
    struct srv_http_addr any = {"", 0};
    struct srv_http *h = srv_http_new(loop, &any, handler, NULL, err, sizeof err);
    if (!h) fail_msg("any: %s", err);
    uint16_t port = srv_http_port(h);
    struct exchange x = {.port = port, .parts = {"GET /health HTTP/1.1\r\n\r\n"}};
    run(loop, &x, 1);
    assert_int_equal(x.r.status, 200);
    resp_free(&x.r);
    if (have_v6()) {
        x = (struct exchange){
            .family = AF_INET6, .port = port, .parts = {"GET /health HTTP/1.1\r\n\r\n"}};
        run(loop, &x, 1);
        assert_int_equal(x.r.status, 200);
        resp_free(&x.r);

        struct srv_http_addr v6 = {"::1", 0};
        struct srv_http *h6 = srv_http_new(loop, &v6, handler, NULL, err, sizeof err);
        if (!h6) fail_msg("::1: %s", err);
        x = (struct exchange){.family = AF_INET6,
                              .port = srv_http_port(h6),
                              .parts = {"GET /metrics HTTP/1.1\r\n\r\n"}};
        run(loop, &x, 1);
        assert_int_equal(x.r.status, 200);
        resp_free(&x.r);
        /* ::1 only: IPv4 is refused */
        int fd = dial(AF_INET, srv_http_port(h6));
        assert_true(fd < 0);
        srv_http_free(h6);
    } else {
        printf("# no IPv6 loopback: the IPv6 cases are skipped\n");
    }

    /* localhost is 127.0.0.1 */
    struct srv_http_addr lh = {"localhost", 0};
    struct srv_http *h2 = srv_http_new(loop, &lh, handler, NULL, err, sizeof err);
    if (!h2) fail_msg("localhost: %s", err);
    x = (struct exchange){.port = srv_http_port(h2), .parts = {"GET /health HTTP/1.1\r\n\r\n"}};
    run(loop, &x, 1);
    assert_int_equal(x.r.status, 200);
    resp_free(&x.r);

    /* a port in use: a clear error */
    struct srv_http_addr used = {"127.0.0.1", srv_http_port(h2)};
    assert_null(srv_http_new(loop, &used, handler, NULL, err, sizeof err));
    if (!strstr(err, "127.0.0.1:") || !strstr(err, "in use")) fail_msg("error: %s", err);
    struct srv_http_addr bad = {"example.org", 80};
    assert_null(srv_http_new(loop, &bad, handler, NULL, err, sizeof err));
    assert_non_null(strstr(err, "not an IP address"));
    assert_null(srv_http_new(loop, NULL, handler, NULL, err, sizeof err));
    assert_null(srv_http_new(loop, &lh, NULL, NULL, err, sizeof err));
    assert_int_equal(srv_http_port(NULL), 0);

    srv_http_free(h2);
    srv_http_free(h);
    ev_loop_destroy(loop);
}

/* ---- serve mode (for curl in http.sh) ----------------------------------------------------- */

static void stdin_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    char buf[256];
    ssize_t r = read(w->fd, buf, sizeof buf);
    if (r <= 0) ev_break(loop, EVBREAK_ALL);
}

static int serve(void)
{
    struct ev_loop *loop = ev_default_loop(0);
    struct srv_http_addr a = {"127.0.0.1", 0};
    char err[256];
    struct srv_http *h = srv_http_new(loop, &a, handler, NULL, err, sizeof err);
    if (!h) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    printf("%u\n", srv_http_port(h));
    fflush(stdout);
    ev_io in;
    ev_io_init(&in, stdin_cb, 0, EV_READ);
    ev_io_start(loop, &in);
    ev_run(loop, 0);
    ev_io_stop(loop, &in);
    srv_http_free(h);
    ev_loop_destroy(loop);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "serve") == 0) return serve();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get_endpoints, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_found_and_query, setup, teardown),
        cmocka_unit_test_setup_teardown(test_methods_and_bad_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_body_slow_reader, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_client_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_clients, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_goes_away, setup, teardown),
        cmocka_unit_test(test_free_with_live_connections),
        cmocka_unit_test(test_addresses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
