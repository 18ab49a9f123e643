/* tests/unit/test_resp_conn.c — resp_conn against an in-process fake server (a loopback
 * listener this test drives by hand): the exact handshake bytes and its fallbacks,
 * auto-pipelining, FIFO matching, push routing, deadlines and tombstones, protocol errors,
 * EOF; and the error helpers. The real servers are in tests/integration/itest_conn.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <poll.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <cmocka.h>

#include <ev.h>

#include "resp/resp.h"

/* ---- errors ------------------------------------------------------------------------ */

static void test_err_kind_names(void **state)
{
    assert_string_equal(resp_err_kind_name(RESP_EK_NONE), "");
    assert_string_equal(resp_err_kind_name(RESP_EK_TIMEOUT), "timeout");
    assert_string_equal(resp_err_kind_name(RESP_EK_CONNECTION), "connection");
    assert_string_equal(resp_err_kind_name(RESP_EK_OTHER), "other");
}

static void test_err_set_formats_and_truncates(void **state)
{
    struct resp_err e;
    resp_err_set(&e, RESP_EK_CONNECTION, "connect %s:%d: %s", "127.0.0.1", 6379, "refused");
    assert_int_equal(e.kind, RESP_EK_CONNECTION);
    assert_string_equal(e.msg, "connect 127.0.0.1:6379: refused");
    char big[400];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    resp_err_set(&e, RESP_EK_OTHER, "%s", big);
    assert_int_equal(strlen(e.msg), sizeof e.msg - 1);
    assert_string_equal(e.msg + sizeof e.msg - 4, "...");
}

/* ---- the fake server --------------------------------------------------------------- */

struct fx {
    struct ev_loop *loop;
    int lfd, sfd; /* listener, accepted server side */
    struct sockaddr_in addr;
    struct resp_conn *c;
    int ready, closed, pushes;
    struct resp_err why;
    char got[8192]; /* bytes the server received */
    size_t got_len;
};

static void on_ready(struct resp_conn *c, void *priv)
{
    ((struct fx *)priv)->ready++;
}

static void on_close(struct resp_conn *c, const struct resp_err *why, void *priv)
{
    struct fx *f = priv;
    f->closed++;
    f->why = *why;
}

static void on_push(struct resp_conn *c, const struct resp_value *v, void *priv)
{
    ((struct fx *)priv)->pushes++;
}

static const struct resp_conn_events events = {on_ready, on_close, on_push};

static void spin(struct fx *f, int n)
{
    for (int i = 0; i < n; i++) ev_run(f->loop, EVRUN_NOWAIT);
}

static void fx_start(struct fx *f, struct resp_conn_opts *o)
{
    memset(f, 0, sizeof *f);
    f->loop = ev_loop_new(EVFLAG_AUTO);
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(f->lfd >= 0);
    f->addr.sin_family = AF_INET;
    f->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&f->addr, sizeof f->addr), 0);
    socklen_t sl = sizeof f->addr;
    assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&f->addr, &sl), 0);
    assert_int_equal(listen(f->lfd, 4), 0);
    o->addr = (const struct sockaddr *)&f->addr;
    o->addrlen = sizeof f->addr;
    struct resp_err err;
    f->c = resp_conn_new(f->loop, o, &events, f, &err);
    assert_non_null(f->c);
    f->sfd = accept(f->lfd, NULL, NULL);
    assert_true(f->sfd >= 0);
    int one = 1; /* no Nagle: each serve() must arrive at once */
    setsockopt(f->sfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void fx_end(struct fx *f)
{
    if (f->c) resp_conn_free(f->c);
    if (f->sfd >= 0) close(f->sfd);
    close(f->lfd);
    ev_loop_destroy(f->loop);
}

/* Runs the client until the server has received exactly `want` (compared as bytes). */
static void expect_recv(struct fx *f, const char *want)
{
    size_t n = strlen(want);
    f->got_len = 0;
    for (int i = 0; i < 400 && f->got_len < n; i++) {
        spin(f, 1);
        struct pollfd p = {f->sfd, POLLIN, 0};
        if (poll(&p, 1, 5) == 1) {
            ssize_t r = read(f->sfd, f->got + f->got_len, sizeof f->got - 1 - f->got_len);
            if (r <= 0) break;
            f->got_len += (size_t)r;
        }
    }
    f->got[f->got_len] = 0;
    if (f->got_len != n || memcmp(f->got, want, n) != 0)
        fail_msg("server got '%s'\nwant '%s'", f->got, want);
}

static void serve(struct fx *f, const char *bytes)
{
    assert_int_equal(write(f->sfd, bytes, strlen(bytes)), (ssize_t)strlen(bytes));
    spin(f, 3);
}

static void opts(struct resp_conn_opts *o)
{
    resp_conn_opts_init(o);
    o->host = "localhost";
}

#define HELLO_FULL                                                                                 \
    "*7\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$5\r\nalice\r\n$2\r\npw\r\n$7\r\nSETNAME\r\n$"  \
    "2\r\nnm\r\n"
#define SELECT3   "*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n"
#define HELLO_MAP "%1\r\n$5\r\nproto\r\n:3\r\n"

static void test_opts_defaults(void **state)
{
    struct resp_conn_opts o;
    memset(&o, 0x55, sizeof o);
    resp_conn_opts_init(&o);
    assert_int_equal(o.resp3, 1);
    assert_true(o.connect_timeout == 1.0);
    assert_true(o.stall_timeout == 2.0);
    assert_int_equal(o.tls_verify_hostname, 1);
    assert_null(o.tls);
    assert_null(o.password);
    assert_int_equal(o.db, 0);
    assert_int_equal(o.limits.max_depth, RESP_DEFAULT_MAX_DEPTH);
}

static void test_handshake_hello_auth_setname_select_in_one_write(void **state)
{
    struct resp_conn_opts o;
    opts(&o);
    o.username = "alice";
    o.password = "pw";
    o.client_name = "nm";
    o.db = 3;
    struct fx f;
    fx_start(&f, &o);
    assert_int_equal(resp_conn_state(f.c), RESP_CONN_CONNECTING);
    expect_recv(&f, HELLO_FULL SELECT3);
    assert_int_equal(resp_conn_state(f.c), RESP_CONN_HANDSHAKE);
    assert_int_equal(resp_conn_protocol(f.c), 0);
    serve(&f, HELLO_MAP);
    assert_int_equal(f.ready, 0); /* SELECT still to come */
    serve(&f, "+OK\r\n");
    assert_int_equal(f.ready, 1);
    assert_int_equal(resp_conn_protocol(f.c), 3);
    fx_end(&f);
}

static void test_password_only_uses_default_user(void **state)
{
    struct resp_conn_opts o;
    opts(&o);
    o.password = "pw";
    struct fx f;
    fx_start(&f, &o);
    expect_recv(&f, "*5\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$2\r\npw\r\n");
    serve(&f, HELLO_MAP);
    assert_int_equal(f.ready, 1);
    fx_end(&f);
}

static void test_hello_unknown_falls_back_to_auth_resp2(void **state)
{
    struct resp_conn_opts o;
    opts(&o);
    o.username = "alice";
    o.password = "pw";
    o.client_name = "nm";
    o.db = 3;
    struct fx f;
    fx_start(&f, &o);
    expect_recv(&f, HELLO_FULL SELECT3);
    serve(&f, "-ERR unknown command 'HELLO'\r\n-NOAUTH Authentication required.\r\n");
    assert_int_equal(f.closed, 0);
    expect_recv(&f, "*3\r\n$4\r\nAUTH\r\n$5\r\nalice\r\n$2\r\npw\r\n" SELECT3
                    "*3\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n$2\r\nnm\r\n");
    serve(&f, "+OK\r\n+OK\r\n-ERR setname refused\r\n"); /* SETNAME is best effort */
    assert_int_equal(f.ready, 1);
    assert_int_equal(resp_conn_protocol(f.c), 2);
    fx_end(&f);
}

static void test_hello_noperm_falls_back_password_only(void **state)
{
    struct resp_conn_opts o;
    opts(&o);
    o.password = "pw";
    struct fx f;
    fx_start(&f, &o);
    expect_recv(&f, "*5\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$2\r\npw\r\n");
    serve(&f, "-NOPERM this user has no permissions to run the 'hello' command\r\n");
    expect_recv(&f, "*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n");
    serve(&f, "+OK\r\n");
    assert_int_equal(f.ready, 1);
    assert_int_equal(resp_conn_protocol(f.c), 2);
    fx_end(&f);
}

static void test_hello_wrongpass_closes_without_fallback(void **state)
{
    struct resp_conn_opts o;
    opts(&o);
    o.password = "pw";
    struct fx f;
    fx_start(&f, &o);
    expect_recv(&f, "*5\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$2\r\npw\r\n");
    serve(&f, "-WRONGPASS invalid username-password pair\r\n");
    assert_int_equal(f.closed, 1);
    assert_int_equal(f.why.kind, RESP_EK_OTHER);
    assert_non_null(strstr(f.why.msg, "WRONGPASS invalid username-password pair"));
    /* nothing else was sent: no AUTH retry */
    char b[64];
    assert_true(read(f.sfd, b, sizeof b) == 0); /* the client closed its end */
    fx_end(&f);
}

static void test_auth_error_closes_other(void **state)
{
    struct resp_conn_opts o;
    opts(&o);
    o.resp3 = 0;
    o.password = "pw";
    struct fx f;
    fx_start(&f, &o);
    expect_recv(&f, "*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n");
    serve(&f, "-ERR AUTH <password> called without any password configured\r\n");
    assert_int_equal(f.closed, 1);
    assert_int_equal(f.why.kind, RESP_EK_OTHER);
    assert_non_null(strstr(f.why.msg, "AUTH: ERR AUTH"));
    fx_end(&f);
}

static void test_resp2_nothing_to_say_is_ready_at_once(void **state)
{
    struct resp_conn_opts o;
    opts(&o);
    o.resp3 = 0;
    struct fx f;
    fx_start(&f, &o);
    for (int i = 0; i < 100 && !f.ready; i++) spin(&f, 1);
    assert_int_equal(f.ready, 1);
    assert_int_equal(resp_conn_protocol(f.c), 2);
    fx_end(&f);
}

/* ---- commands ---------------------------------------------------------------------- */

struct rec {
    int n;
    size_t idx[16];
    int kind[16];
    char text[16][32];
};

static void rec_cb(void *priv, size_t idx, const struct resp_value *v, const struct resp_err *err)
{
    struct rec *r = priv;
    int i = r->n++;
    r->idx[i] = idx;
    r->kind[i] = err ? (int)err->kind : 0;
    if (v)
        snprintf(r->text[i], sizeof r->text[i], "%.*s", (int)v->len, v->str ? v->str : "");
    else
        snprintf(r->text[i], sizeof r->text[i], "err");
}

static const char *ping_argv[] = {"PING"};
static const size_t ping_lens[] = {4};
static const struct resp_cmd ping = {1, ping_argv, ping_lens};
#define PING "*1\r\n$4\r\nPING\r\n"

/* A connection READY in RESP3 with no credentials. */
static void fx_ready(struct fx *f)
{
    struct resp_conn_opts o;
    opts(&o);
    fx_start(f, &o);
    expect_recv(f, "*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n");
    serve(f, HELLO_MAP);
    assert_int_equal(f->ready, 1);
}

static void test_queued_before_ready_go_after_handshake(void **state)
{
    struct resp_conn_opts o;
    opts(&o);
    struct fx f;
    fx_start(&f, &o);
    struct rec r = {0};
    assert_int_equal(resp_conn_send(f.c, &ping, 1, 0, rec_cb, &r), 0);
    assert_int_equal(resp_conn_unsent(f.c), strlen(PING));
    expect_recv(&f, "*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n"); /* HELLO only: PING waits */
    serve(&f, HELLO_MAP);
    expect_recv(&f, PING);
    serve(&f, "+PONG\r\n");
    assert_int_equal(r.n, 1);
    assert_string_equal(r.text[0], "PONG");
    fx_end(&f);
}

static void test_autopipelining_and_fifo(void **state)
{
    struct fx f;
    fx_ready(&f);
    struct rec r = {0};
    struct resp_cmd three[3] = {ping, ping, ping};
    assert_int_equal(resp_conn_send(f.c, three, 3, 0, rec_cb, &r), 0);
    assert_int_equal(resp_conn_send(f.c, &ping, 1, 0, rec_cb, &r), 0);
    static const char enc[] = "*2\r\n$4\r\nECHO\r\n$1\r\nz\r\n";
    assert_int_equal(resp_conn_send_encoded(f.c, enc, sizeof enc - 1, 1, 0, rec_cb, &r), 0);
    assert_int_equal(resp_conn_pending(f.c), 5);
    /* nothing is written until the loop turns, then everything at once */
    char b[8];
    assert_int_equal(recv(f.sfd, b, sizeof b, MSG_DONTWAIT), -1);
    ev_run(f.loop, EVRUN_NOWAIT);
    assert_int_equal(resp_conn_unsent(f.c), 0);
    expect_recv(&f, PING PING PING PING "*2\r\n$4\r\nECHO\r\n$1\r\nz\r\n");
    /* replies split at odd places, a push in the middle */
    serve(&f, "+a\r\n+b\r\n>2\r\n$7\r\nmessage\r\n$1\r\nx\r\n+");
    assert_int_equal(r.n, 2);
    assert_int_equal(f.pushes, 1);
    serve(&f, "c\r\n+d\r\n$1\r\nz\r\n");
    assert_int_equal(r.n, 5);
    const char *want[] = {"a", "b", "c", "d", "z"};
    const size_t idx[] = {0, 1, 2, 0, 0};
    for (int i = 0; i < 5; i++) {
        assert_string_equal(r.text[i], want[i]);
        assert_int_equal(r.idx[i], idx[i]);
    }
    assert_int_equal(resp_conn_pending(f.c), 0);
    fx_end(&f);
}

static void test_deadline_tombstone_swallows_late_reply(void **state)
{
    struct fx f;
    fx_ready(&f);
    struct rec r = {0};
    ev_now_update(f.loop);
    double now = ev_now(f.loop);
    assert_int_equal(resp_conn_send(f.c, &ping, 1, now + 0.05, rec_cb, &r), 0);
    assert_int_equal(resp_conn_send(f.c, &ping, 1, now + 0.05, rec_cb, &r), 0);
    expect_recv(&f, PING PING);
    /* wait for both deadlines */
    for (int i = 0; i < 200 && r.n < 2; i++) {
        usleep(2000);
        spin(&f, 1);
    }
    assert_int_equal(r.n, 2);
    assert_int_equal(r.kind[0], RESP_EK_TIMEOUT);
    assert_int_equal(r.kind[1], RESP_EK_TIMEOUT);
    assert_int_equal(resp_conn_pending(f.c), 0);
    assert_int_equal(resp_conn_send(f.c, &ping, 1, 0, rec_cb, &r), 0); /* no deadline */
    expect_recv(&f, PING);
    serve(&f, "+late1\r\n+late2\r\n+mine\r\n");
    assert_int_equal(r.n, 3);
    assert_string_equal(r.text[2], "mine");
    assert_int_equal(f.closed, 0);
    fx_end(&f);
}

static void test_stall_closes_with_timeout(void **state)
{
    struct resp_conn_opts o;
    opts(&o);
    o.stall_timeout = 0.05;
    struct fx f;
    fx_start(&f, &o);
    expect_recv(&f, "*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n");
    serve(&f, HELLO_MAP);
    struct rec r = {0};
    ev_now_update(f.loop);
    assert_int_equal(resp_conn_send(f.c, &ping, 1, ev_now(f.loop) + 0.02, rec_cb, &r), 0);
    for (int i = 0; i < 300 && !f.closed; i++) {
        usleep(2000);
        spin(&f, 1);
    }
    assert_int_equal(r.n, 1);
    assert_int_equal(r.kind[0], RESP_EK_TIMEOUT);
    assert_int_equal(f.closed, 1);
    assert_int_equal(f.why.kind, RESP_EK_TIMEOUT);
    assert_non_null(strstr(f.why.msg, "stalled"));
    fx_end(&f);
}

static void test_reply_without_command_is_protocol_error(void **state)
{
    struct fx f;
    fx_ready(&f);
    serve(&f, "+surprise\r\n");
    assert_int_equal(f.closed, 1);
    assert_int_equal(f.why.kind, RESP_EK_OTHER);
    fx_end(&f);
}

static void test_garbage_fails_pending_with_other(void **state)
{
    struct fx f;
    fx_ready(&f);
    struct rec r = {0};
    assert_int_equal(resp_conn_send(f.c, &ping, 1, 0, rec_cb, &r), 0);
    expect_recv(&f, PING);
    serve(&f, "?what\r\n");
    assert_int_equal(r.n, 1);
    assert_int_equal(r.kind[0], RESP_EK_OTHER);
    assert_int_equal(f.closed, 1);
    assert_int_equal(f.why.kind, RESP_EK_OTHER);
    assert_non_null(strstr(f.why.msg, "protocol"));
    assert_int_equal(resp_conn_send(f.c, &ping, 1, 0, rec_cb, &r), -1);
    fx_end(&f);
}

static void test_eof_fails_pending_with_connection(void **state)
{
    struct fx f;
    fx_ready(&f);
    struct rec r = {0};
    struct resp_cmd two[2] = {ping, ping};
    assert_int_equal(resp_conn_send(f.c, two, 2, 0, rec_cb, &r), 0);
    expect_recv(&f, PING PING);
    serve(&f, "+one\r\n");
    close(f.sfd);
    f.sfd = -1;
    spin(&f, 3);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.text[0], "one");
    assert_int_equal(r.kind[1], RESP_EK_CONNECTION);
    assert_int_equal(f.closed, 1);
    assert_int_equal(f.why.kind, RESP_EK_CONNECTION);
    fx_end(&f);
}

static void test_close_is_idempotent_and_fails_pending(void **state)
{
    struct fx f;
    fx_ready(&f);
    struct rec r = {0};
    assert_int_equal(resp_conn_send(f.c, &ping, 1, 0, rec_cb, &r), 0);
    struct resp_err why;
    resp_err_set(&why, RESP_EK_TIMEOUT, "pool says so");
    resp_conn_close(f.c, &why);
    resp_conn_close(f.c, NULL);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.kind[0], RESP_EK_TIMEOUT);
    assert_int_equal(f.closed, 1);
    assert_string_equal(f.why.msg, "pool says so");
    assert_int_equal(resp_conn_state(f.c), RESP_CONN_CLOSED);
    fx_end(&f);
}

static void test_priv_accessors(void **state)
{
    struct fx f;
    fx_ready(&f);
    assert_ptr_equal(resp_conn_priv(f.c), &f);
    int other;
    resp_conn_set_priv(f.c, &other);
    assert_ptr_equal(resp_conn_priv(f.c), &other);
    resp_conn_set_priv(f.c, &f);
    fx_end(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_err_kind_names),
        cmocka_unit_test(test_err_set_formats_and_truncates),
        cmocka_unit_test(test_opts_defaults),
        cmocka_unit_test(test_handshake_hello_auth_setname_select_in_one_write),
        cmocka_unit_test(test_password_only_uses_default_user),
        cmocka_unit_test(test_hello_unknown_falls_back_to_auth_resp2),
        cmocka_unit_test(test_hello_noperm_falls_back_password_only),
        cmocka_unit_test(test_hello_wrongpass_closes_without_fallback),
        cmocka_unit_test(test_auth_error_closes_other),
        cmocka_unit_test(test_resp2_nothing_to_say_is_ready_at_once),
        cmocka_unit_test(test_queued_before_ready_go_after_handshake),
        cmocka_unit_test(test_autopipelining_and_fifo),
        cmocka_unit_test(test_deadline_tombstone_swallows_late_reply),
        cmocka_unit_test(test_stall_closes_with_timeout),
        cmocka_unit_test(test_reply_without_command_is_protocol_error),
        cmocka_unit_test(test_garbage_fails_pending_with_other),
        cmocka_unit_test(test_eof_fails_pending_with_connection),
        cmocka_unit_test(test_close_is_idempotent_and_fails_pending),
        cmocka_unit_test(test_priv_accessors),
    };
    return cmocka_run_group_tests_name("resp_conn", tests, NULL, NULL);
}
