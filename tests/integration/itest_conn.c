/* tests/integration/itest_conn.c — one resp_conn against real redis-server processes
 * started by tests/integration/conn.sh (ports, pids and certificate paths in RC_* env
 * variables): round trips, pipelining, auth and ACLs, SELECT, the HELLO fallback, TLS
 * (server-only, mTLS, hostname and chain checks), connect errors and timeouts, deadlines
 * and tombstones against a SIGSTOPped server, stall, a server killed mid-pipeline, and
 * freeing the connection from inside its own callbacks (ASan checks the last). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>

#include <ev.h>

#include "resp/resp.h"

/* ---- environment ---------------------------------------------------------------- */

static const char *env(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v) fail_msg("environment variable %s is not set (run through conn.sh)", name);
    return v;
}

static int env_int(const char *name)
{
    return atoi(env(name));
}

static char tls_path_buf[8][512];
static const char *tls_path(int slot, const char *file)
{
    snprintf(tls_path_buf[slot], sizeof tls_path_buf[slot], "%s/%s", env("RC_TLS_DIR"), file);
    return tls_path_buf[slot];
}

/* ---- a connection under test ------------------------------------------------------ */

struct reply {
    int done;
    int type; /* resp_type, 0 for an error callback */
    enum resp_err_kind kind;
    char text[256]; /* string payload, error message, or err->msg */
    long long integer;
    size_t len;
    double at; /* ev_now() when the callback ran */
};

struct tc {
    struct ev_loop *loop;
    struct resp_conn *c;
    int ready, closed;
    struct resp_err why;
    double closed_at;
    int pushes;
    char last_push[128];
    /* actions taken from inside callbacks */
    int free_on_close;
    int free_in_ready;
};

static void on_ready(struct resp_conn *c, void *priv)
{
    struct tc *t = priv;
    t->ready++;
    if (t->free_in_ready) {
        resp_conn_free(c);
        t->c = NULL;
    }
}

static void on_close(struct resp_conn *c, const struct resp_err *why, void *priv)
{
    struct tc *t = priv;
    t->closed++;
    t->why = *why;
    t->closed_at = ev_now(t->loop);
    if (t->free_on_close) {
        resp_conn_free(c);
        t->c = NULL;
    }
}

static void on_push(struct resp_conn *c, const struct resp_value *v, void *priv)
{
    struct tc *t = priv;
    t->pushes++;
    if (v->len >= 1 && (v->elems[0].type == RESP_BULK || v->elems[0].type == RESP_STRING))
        snprintf(t->last_push, sizeof t->last_push, "%.*s", (int)v->elems[0].len, v->elems[0].str);
}

static const struct resp_conn_events events = {on_ready, on_close, on_push};

static void record(struct reply *r, const struct resp_value *v, const struct resp_err *err,
                   double now)
{
    r->done++;
    r->at = now;
    if (err) {
        r->type = 0;
        r->kind = err->kind;
        snprintf(r->text, sizeof r->text, "%s", err->msg);
        return;
    }
    r->type = v->type;
    r->kind = RESP_EK_NONE;
    r->len = v->len;
    r->integer = v->type == RESP_INTEGER ? v->integer : 0;
    if (v->type == RESP_STRING || v->type == RESP_BULK || v->type == RESP_ERROR ||
        v->type == RESP_BULK_ERROR || v->type == RESP_VERBATIM)
        snprintf(r->text, sizeof r->text, "%.*s", (int)(v->len < 255 ? v->len : 255), v->str);
    else
        r->text[0] = 0;
}

/* Replies of one batch land in an array of struct reply; priv points at a batch. */
struct batch {
    struct tc *t;
    struct reply *r;
};

static void batch_cb(void *priv, size_t idx, const struct resp_value *v, const struct resp_err *err)
{
    struct batch *b = priv;
    record(&b->r[idx], v, err, ev_now(b->t->loop));
}

static void wake_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)w, (void)revents;
}

/* Runs the loop until *flag >= want or `secs` pass. Returns 1 when the flag got there. */
static int run_until(struct ev_loop *loop, const int *flag, int want, double secs)
{
    ev_timer wake;
    ev_timer_init(&wake, wake_cb, 0.01, 0.01);
    ev_timer_start(loop, &wake);
    ev_now_update(loop);
    double end = ev_now(loop) + secs;
    while (*flag < want && ev_now(loop) < end) ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &wake);
    return *flag >= want;
}

static void run_for(struct ev_loop *loop, double secs)
{
    int never = 0;
    run_until(loop, &never, 1, secs);
}

static void addr_v4(struct sockaddr_in *a, int port)
{
    memset(a, 0, sizeof *a);
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
}

static struct sockaddr_in addr4;

/* Opts for 127.0.0.1:port, host "localhost". */
static void opts_for(struct resp_conn_opts *o, int port)
{
    resp_conn_opts_init(o);
    addr_v4(&addr4, port);
    o->addr = (const struct sockaddr *)&addr4;
    o->addrlen = sizeof addr4;
    o->host = "localhost";
    o->connect_timeout = 2.0;
}

static void tc_start(struct tc *t, const struct resp_conn_opts *o)
{
    memset(t, 0, sizeof *t);
    t->loop = ev_loop_new(EVFLAG_AUTO);
    assert_non_null(t->loop);
    struct resp_err err = {0};
    t->c = resp_conn_new(t->loop, o, &events, t, &err);
    assert_non_null(t->c);
}

static void tc_end(struct tc *t)
{
    if (t->c) resp_conn_free(t->c);
    t->c = NULL;
    ev_loop_destroy(t->loop);
}

/* Connects and waits for READY. */
static void tc_connect(struct tc *t, const struct resp_conn_opts *o)
{
    tc_start(t, o);
    run_until(t->loop, &t->ready, 1, 3.0);
    if (!t->ready) fail_msg("not ready: closed=%d why=%s", t->closed, t->why.msg);
    assert_int_equal(resp_conn_state(t->c), RESP_CONN_READY);
}

/* Connects and expects a close before READY; returns the seconds it took. */
static double tc_expect_fail(struct tc *t, const struct resp_conn_opts *o, enum resp_err_kind kind,
                             const char *needle)
{
    tc_start(t, o);
    double t0 = ev_time();
    run_until(t->loop, &t->closed, 1, 5.0);
    double took = ev_time() - t0;
    if (!t->closed) fail_msg("expected a close (%s)", needle ? needle : "");
    assert_int_equal(t->ready, 0);
    print_message("    closed: [%s] %s\n", resp_err_kind_name(t->why.kind), t->why.msg);
    assert_int_equal(t->why.kind, kind);
    if (needle && !strstr(t->why.msg, needle))
        fail_msg("message '%s' lacks '%s'", t->why.msg, needle);
    assert_int_equal(resp_conn_state(t->c), RESP_CONN_CLOSED);
    assert_int_equal(t->closed, 1);
    return took;
}

/* Sends one command (words separated by spaces, no binary) and waits for its reply. */
static void cmd(struct tc *t, struct reply *r, double timeout, const char *line)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", line);
    const char *argv[16];
    size_t lens[16], argc = 0;
    for (char *s = strtok(buf, " "); s && argc < 16; s = strtok(NULL, " ")) {
        argv[argc] = s;
        lens[argc++] = strlen(s);
    }
    struct resp_cmd c = {argc, argv, lens};
    static struct batch b;
    b.t = t;
    b.r = r;
    memset(r, 0, sizeof *r);
    assert_int_equal(resp_conn_send(t->c, &c, 1, ev_now(t->loop) + timeout, batch_cb, &b), 0);
    run_until(t->loop, &r->done, 1, timeout + 1.0);
    assert_int_equal(r->done, 1);
}

static void expect_text(struct tc *t, const char *line, int type, const char *want)
{
    struct reply r;
    cmd(t, &r, 2.0, line);
    if (r.type != type || strcmp(r.text, want) != 0)
        fail_msg("%s: got type %d '%s' (kind %s), want type %d '%s'", line, r.type, r.text,
                 resp_err_kind_name(r.kind), type, want);
}

/* ---- plain round trips and pipelining ---------------------------------------------- */

static void test_plain_set_get_resp3(void **state)
{
    struct resp_conn_opts o;
    opts_for(&o, env_int("RC_PLAIN_PORT"));
    o.client_name = "itest-conn";
    struct tc t;
    tc_connect(&t, &o);
    assert_int_equal(resp_conn_protocol(t.c), 3);
    assert_true(resp_conn_ready_at(t.c) > 0);
    expect_text(&t, "SET itest:k hello", RESP_STRING, "OK");
    expect_text(&t, "GET itest:k", RESP_BULK, "hello");
    expect_text(&t, "CLIENT GETNAME", RESP_BULK, "itest-conn");
    /* RESP3 types: a map for HGETALL, a null for a missing key */
    struct reply r;
    cmd(&t, &r, 2.0, "DEL itest:h");
    cmd(&t, &r, 2.0, "HSET itest:h f v");
    cmd(&t, &r, 2.0, "HGETALL itest:h");
    assert_int_equal(r.type, RESP_MAP);
    assert_int_equal(r.len, 2);
    cmd(&t, &r, 2.0, "GET itest:missing");
    assert_int_equal(r.type, RESP_NULL);
    assert_true(resp_conn_last_reply_at(&*t.c) >= resp_conn_ready_at(t.c));
    assert_int_equal(resp_conn_pending(t.c), 0);
    assert_int_equal(resp_conn_unsent(t.c), 0);
    tc_end(&t);
}

static void test_resp2_when_asked(void **state)
{
    struct resp_conn_opts o;
    opts_for(&o, env_int("RC_PLAIN_PORT"));
    o.resp3 = 0;
    o.client_name = "itest-resp2";
    struct tc t;
    tc_connect(&t, &o);
    assert_int_equal(resp_conn_protocol(t.c), 2);
    struct reply r;
    cmd(&t, &r, 2.0, "HSET itest:h2 f v");
    cmd(&t, &r, 2.0, "HGETALL itest:h2");
    assert_int_equal(r.type, RESP_ARRAY);
    expect_text(&t, "CLIENT GETNAME", RESP_BULK, "itest-resp2");
    tc_end(&t);
}

#define NPIPE 10000

struct order {
    struct tc *t;
    size_t next; /* the sequence number expected next */
    size_t bad;
    int done;
};

static void incr_cb(void *priv, size_t idx, const struct resp_value *v, const struct resp_err *err)
{
    struct order *o = priv;
    /* every INCR of one fresh key: reply k+1 for the k-th command sent */
    if (err || v->type != RESP_INTEGER || v->integer != (long long)o->next + 1) o->bad++;
    o->next++;
    if (o->next == NPIPE) o->done = 1;
}

static void test_ten_thousand_pipelined_in_order(void **state)
{
    struct resp_conn_opts o;
    opts_for(&o, env_int("RC_PLAIN_PORT"));
    struct tc t;
    tc_connect(&t, &o);
    struct reply r;
    cmd(&t, &r, 2.0, "DEL itest:ctr");
    struct order ord = {&t, 0, 0, 0};
    const char *argv[] = {"INCR", "itest:ctr"};
    const size_t lens[] = {4, 9};
    struct resp_cmd c = {2, argv, lens};
    double dl = ev_now(t.loop) + 10;
    for (size_t i = 0; i < NPIPE; i++)
        assert_int_equal(resp_conn_send(t.c, &c, 1, dl, incr_cb, &ord), 0);
    assert_int_equal(resp_conn_pending(t.c), NPIPE);
    assert_true(resp_conn_unsent(t.c) > 0); /* nothing leaves before the loop runs */
    run_until(t.loop, &ord.done, 1, 10.0);
    assert_int_equal(ord.next, NPIPE);
    assert_int_equal(ord.bad, 0);
    expect_text(&t, "GET itest:ctr", RESP_BULK, "10000");
    tc_end(&t);
}

static void test_batch_and_encoded(void **state)
{
    struct resp_conn_opts o;
    opts_for(&o, env_int("RC_PLAIN_PORT"));
    struct tc t;
    tc_start(&t, &o);
    /* queued before READY: wait and go out after the handshake, in order */
    const char *a1[] = {"SET", "itest:b", "1"}, *a2[] = {"GET", "itest:b"};
    const size_t l1[] = {3, 7, 1}, l2[] = {3, 7};
    struct resp_cmd cmds[] = {{3, a1, l1}, {2, a2, l2}};
    struct reply rs[4] = {{0}};
    struct batch b = {&t, rs};
    assert_int_equal(resp_conn_send(t.c, cmds, 2, ev_now(t.loop) + 2, batch_cb, &b), 0);
    static const char enc[] = "*2\r\n$4\r\nECHO\r\n$1\r\nx\r\n*1\r\n$4\r\nPING\r\n";
    struct batch b2 = {&t, rs + 2};
    assert_int_equal(
        resp_conn_send_encoded(t.c, enc, sizeof enc - 1, 2, ev_now(t.loop) + 2, batch_cb, &b2), 0);
    run_until(t.loop, &rs[3].done, 1, 3.0);
    assert_int_equal(t.ready, 1);
    assert_string_equal(rs[0].text, "OK");
    assert_string_equal(rs[1].text, "1");
    assert_string_equal(rs[2].text, "x");
    assert_string_equal(rs[3].text, "PONG");
    for (int i = 0; i < 4; i++) assert_int_equal(rs[i].done, 1);
    tc_end(&t);
}

/* ---- auth, ACL, SELECT, HELLO fallback ---------------------------------------------- */

static void test_requirepass_right(void **state)
{
    struct resp_conn_opts o;
    opts_for(&o, env_int("RC_AUTH_PORT"));
    o.password = "s3cret";
    struct tc t;
    tc_connect(&t, &o);
    assert_int_equal(resp_conn_protocol(t.c), 3);
    expect_text(&t, "PING", RESP_STRING, "PONG");
    tc_end(&t);
}

static void test_requirepass_wrong(void **state)
{
    struct resp_conn_opts o;
    opts_for(&o, env_int("RC_AUTH_PORT"));
    o.password = "nope";
    struct tc t;
    tc_start(&t, &o);
    struct reply r[1] = {{0}};
    struct batch b = {&t, r};
    const char *argv[] = {"PING"};
    const size_t lens[] = {4};
    struct resp_cmd c = {1, argv, lens};
    assert_int_equal(resp_conn_send(t.c, &c, 1, ev_now(t.loop) + 2, batch_cb, &b), 0);
    run_until(t.loop, &t.closed, 1, 3.0);
    assert_int_equal(t.closed, 1);
    assert_int_equal(t.ready, 0);
    assert_int_equal(t.why.kind, RESP_EK_OTHER);
    assert_non_null(strstr(t.why.msg, "WRONGPASS"));
    /* the queued command completed with the same error, before on_close */
    assert_int_equal(r[0].done, 1);
    assert_int_equal(r[0].kind, RESP_EK_OTHER);
    assert_non_null(strstr(r[0].text, "WRONGPASS"));
    /* closed means closed: no reconnect, sends refused, nothing more happens */
    assert_int_equal(resp_conn_send(t.c, &c, 1, ev_now(t.loop) + 2, batch_cb, &b), -1);
    run_for(t.loop, 0.3);
    assert_int_equal(t.closed, 1);
    assert_int_equal(r[0].done, 1);
    tc_end(&t);
}

static void test_requirepass_missing(void **state)
{
    struct resp_conn_opts o;
    opts_for(&o, env_int("RC_AUTH_PORT"));
    struct tc t;
    tc_expect_fail(&t, &o, RESP_EK_OTHER, "NOAUTH");
    tc_end(&t);
}

static void test_acl_user(void **state)
{
    struct resp_conn_opts o;
    opts_for(&o, env_int("RC_ACL_PORT"));
    o.username = "alice";
    o.password = "apass";
    struct tc t;
    tc_connect(&t, &o);
    expect_text(&t, "ACL WHOAMI", RESP_BULK, "alice");
    tc_end(&t);

    o.password = "bad";
    tc_expect_fail(&t, &o, RESP_EK_OTHER, "WRONGPASS");
    tc_end(&t);
}

static void test_acl_user_without_set_gets_noperm_reply(void **state)
{
    struct resp_conn_opts o;
    opts_for(&o, env_int("RC_ACL_PORT"));
    o.username = "noset";
    o.password = "npass";
    struct tc t;
    tc_connect(&t, &o);
    struct reply r;
    cmd(&t, &r, 2.0, "SET itest:noset x");
    assert_int_equal(r.type, RESP_ERROR);
    assert_int_equal(strncmp(r.text, "NOPERM", 6), 0);
    assert_int_equal(resp_conn_state(t.c), RESP_CONN_READY);
    expect_text(&t, "ACL WHOAMI", RESP_BULK, "noset");
    assert_int_equal(t.closed, 0);
    tc_end(&t);
}

static void test_select_db(void **state)
{
    struct resp_conn_opts o;
    opts_for(&o, env_int("RC_PLAIN_PORT"));
    o.db = 3;
    struct tc t;
    tc_connect(&t, &o);
    expect_text(&t, "SET itest:db3 in-three", RESP_STRING, "OK");
    tc_end(&t);
    /* db 0 does not see it (conn.sh checks db 3 with redis-cli -n 3) */
    opts_for(&o, env_int("RC_PLAIN_PORT"));
    tc_connect(&t, &o);
    struct reply r;
    cmd(&t, &r, 2.0, "GET itest:db3");
    assert_int_equal(r.type, RESP_NULL);
    tc_end(&t);
    /* an index out of range closes with the server's reason */
    opts_for(&o, env_int("RC_PLAIN_PORT"));
    o.db = 999;
    tc_expect_fail(&t, &o, RESP_EK_OTHER, "SELECT 999");
    tc_end(&t);
}

static void test_no_hello_falls_back_to_resp2_auth(void **state)
{
    struct resp_conn_opts o;
    opts_for(&o, env_int("RC_NOHELLO_PORT"));
    o.password = "s3cret";
    o.db = 2;
    o.client_name = "itest-fallback";
    struct tc t;
    tc_connect(&t, &o);
    assert_int_equal(resp_conn_protocol(t.c), 2);
    expect_text(&t, "PING", RESP_STRING, "PONG");
    expect_text(&t, "CLIENT GETNAME", RESP_BULK, "itest-fallback");
    struct reply r;
    cmd(&t, &r, 2.0, "CLIENT INFO");
    assert_non_null(strstr(r.text, "db=2"));
    tc_end(&t);
    /* the fallback still refuses a wrong password */
    o.password = "wrong";
    tc_expect_fail(&t, &o, RESP_EK_OTHER, "AUTH");
    assert_non_null(strstr(t.why.msg, "WRONGPASS"));
    tc_end(&t);
}

static void test_ipv6(void **state)
{
    struct sockaddr_in6 a6;
    memset(&a6, 0, sizeof a6);
    a6.sin6_family = AF_INET6;
    a6.sin6_port = htons((uint16_t)env_int("RC_PLAIN_PORT"));
    a6.sin6_addr = in6addr_loopback;
    struct resp_conn_opts o;
    resp_conn_opts_init(&o);
    o.addr = (const struct sockaddr *)&a6;
    o.addrlen = sizeof a6;
    o.host = "::1";
    struct tc t;
    tc_connect(&t, &o);
    expect_text(&t, "PING", RESP_STRING, "PONG");
    tc_end(&t);
}

/* ---- pub/sub ------------------------------------------------------------------------ */

static void subscribe_case(int resp3)
{
    struct resp_conn_opts o;
    opts_for(&o, env_int("RC_PLAIN_PORT"));
    o.resp3 = resp3;
    struct tc sub, pub;
    tc_connect(&sub, &o);
    o.resp3 = 1;
    tc_connect(&pub, &o);
    const char *argv[] = {"SUBSCRIBE", "itest:ch1", "itest:ch2"};
    const size_t lens[] = {9, 9, 9};
    struct resp_cmd c = {3, argv, lens};
    struct reply r[1] = {{0}};
    struct batch b = {&sub, r};
    assert_int_equal(resp_conn_send(sub.c, &c, 1, ev_now(sub.loop) + 2, batch_cb, &b), 0);
    run_until(sub.loop, &sub.pushes, 1, 2.0); /* the second channel's confirmation */
    assert_int_equal(r[0].done, 1);
    assert_int_equal(r[0].type, resp3 ? RESP_PUSH : RESP_ARRAY);
    assert_int_equal(sub.pushes, 1);
    assert_string_equal(sub.last_push, "subscribe");
    assert_int_equal(resp_conn_pending(sub.c), 0);
    struct reply pr;
    cmd(&pub, &pr, 2.0, "PUBLISH itest:ch2 hi");
    assert_int_equal(pr.integer, 1);
    run_until(sub.loop, &sub.pushes, 2, 2.0);
    assert_int_equal(sub.pushes, 2);
    assert_string_equal(sub.last_push, "message");
    /* UNSUBSCRIBE of both: first confirmation to the callback, second to on_push, and the
     * FIFO stays aligned for a PING after it */
    const char *uargv[] = {"UNSUBSCRIBE", "itest:ch1", "itest:ch2"};
    const size_t ulens[] = {11, 9, 9};
    struct resp_cmd u = {3, uargv, ulens};
    struct reply ur[1] = {{0}};
    struct batch ub = {&sub, ur};
    assert_int_equal(resp_conn_send(sub.c, &u, 1, ev_now(sub.loop) + 2, batch_cb, &ub), 0);
    run_until(sub.loop, &sub.pushes, 3, 2.0);
    assert_int_equal(ur[0].done, 1);
    assert_int_equal(sub.pushes, 3);
    assert_string_equal(sub.last_push, "unsubscribe");
    expect_text(&sub, "PING", RESP_STRING, "PONG");
    assert_int_equal(sub.closed, 0);
    tc_end(&sub);
    tc_end(&pub);
}

static void test_subscribe_resp3(void **state)
{
    subscribe_case(1);
}

static void test_subscribe_resp2(void **state)
{
    subscribe_case(0);
}

/* ---- TLS ---------------------------------------------------------------------------- */

static struct ssl_ctx_st *tls_ctx(const char *ca, const char *cert, const char *key,
                                  int verify_chain)
{
    struct resp_tls_opts to;
    resp_tls_opts_init(&to);
    to.ca_file = ca;
    to.cert_file = cert;
    to.key_file = key;
    to.verify_chain = verify_chain;
    struct resp_err err = {0};
    struct ssl_ctx_st *ctx = resp_tls_ctx_new(&to, &err);
    if (!ctx) fail_msg("resp_tls_ctx_new: %s", err.msg);
    return ctx;
}

static void test_tls_ctx_errors(void **state)
{
    struct resp_tls_opts to;
    resp_tls_opts_init(&to);
    struct resp_err err = {0};
    to.ca_file = "/nonexistent/ca.pem";
    assert_null(resp_tls_ctx_new(&to, &err));
    assert_non_null(strstr(err.msg, "/nonexistent/ca.pem"));
    resp_tls_opts_init(&to);
    to.cert_file = tls_path(0, "client.crt");
    assert_null(resp_tls_ctx_new(&to, &err));
    assert_non_null(strstr(err.msg, "tls_key"));
    to.key_file = tls_path(1, "server.key"); /* not the key of client.crt */
    assert_null(resp_tls_ctx_new(&to, &err));
    print_message("    %s\n", err.msg);
    assert_non_null(strstr(err.msg, "server.key"));
    assert_non_null(strstr(err.msg, "mismatch"));
}

static void test_tls_server_only(void **state)
{
    struct ssl_ctx_st *ctx = tls_ctx(tls_path(0, "ca.crt"), NULL, NULL, 1);
    struct resp_conn_opts o;
    opts_for(&o, env_int("RC_TLS_PORT"));
    o.tls = ctx;
    struct tc t;
    tc_connect(&t, &o);
    assert_int_equal(resp_conn_protocol(t.c), 3);
    expect_text(&t, "SET itest:tls yes", RESP_STRING, "OK");
    expect_text(&t, "GET itest:tls", RESP_BULK, "yes");
    tc_end(&t);
    /* dialled by IP literal: matched against the certificate's IP SAN */
    o.host = "127.0.0.1";
    tc_connect(&t, &o);
    expect_text(&t, "PING", RESP_STRING, "PONG");
    tc_end(&t);
    resp_tls_ctx_free(ctx);
}

/* Many large replies through TLS: records bigger than one read, decrypted bytes left in
 * OpenSSL between reads (SSL_pending) must still be delivered without new socket data. */
struct big {
    size_t n, bad, want_len;
    int done;
};

static void big_cb(void *priv, size_t idx, const struct resp_value *v, const struct resp_err *err)
{
    struct big *b = priv;
    if (err || v->type != RESP_BULK || v->len != b->want_len || v->str[v->len - 1] != 'z') b->bad++;
    if (++b->n == 200) b->done = 1;
}

static void test_tls_large_pipelined_replies(void **state)
{
    struct ssl_ctx_st *ctx = tls_ctx(tls_path(0, "ca.crt"), NULL, NULL, 1);
    struct resp_conn_opts o;
    opts_for(&o, env_int("RC_TLS_PORT"));
    o.tls = ctx;
    struct tc t;
    tc_connect(&t, &o);
    size_t vlen = 100000;
    char *val = malloc(vlen);
    memset(val, 'a', vlen);
    val[vlen - 1] = 'z';
    const char *sa[] = {"SET", "itest:big", val};
    const size_t sl[] = {3, 9, vlen};
    struct resp_cmd set = {3, sa, sl};
    struct reply r[1] = {{0}};
    struct batch b = {&t, r};
    assert_int_equal(resp_conn_send(t.c, &set, 1, ev_now(t.loop) + 5, batch_cb, &b), 0);
    run_until(t.loop, &r[0].done, 1, 5.0);
    assert_string_equal(r[0].text, "OK");
    free(val);
    struct big bg = {0, 0, vlen, 0};
    const char *ga[] = {"GET", "itest:big"};
    const size_t gl[] = {3, 9};
    struct resp_cmd get = {2, ga, gl};
    for (int i = 0; i < 200; i++)
        assert_int_equal(resp_conn_send(t.c, &get, 1, ev_now(t.loop) + 10, big_cb, &bg), 0);
    run_until(t.loop, &bg.done, 1, 10.0);
    assert_int_equal(bg.n, 200);
    assert_int_equal(bg.bad, 0);
    tc_end(&t);
    resp_tls_ctx_free(ctx);
}

static void test_mtls(void **state)
{
    struct resp_conn_opts o;
    opts_for(&o, env_int("RC_MTLS_PORT"));
    struct tc t;
    /* without a client certificate the server refuses (TLS 1.3: after the client thinks
     * the handshake is done; either way a connection error, never plaintext) */
    struct ssl_ctx_st *noc = tls_ctx(tls_path(0, "ca.crt"), NULL, NULL, 1);
    o.tls = noc;
    tc_expect_fail(&t, &o, RESP_EK_CONNECTION, "tls");
    tc_end(&t);
    resp_tls_ctx_free(noc);
    struct ssl_ctx_st *withc =
        tls_ctx(tls_path(0, "ca.crt"), tls_path(1, "client.crt"), tls_path(2, "client.key"), 1);
    o.tls = withc;
    tc_connect(&t, &o);
    expect_text(&t, "PING", RESP_STRING, "PONG");
    tc_end(&t);
    resp_tls_ctx_free(withc);
}

static void test_tls_hostname_mismatch(void **state)
{
    struct resp_conn_opts o;
    opts_for(&o, env_int("RC_WRONG_PORT"));
    struct tc t;
    struct ssl_ctx_st *ctx = tls_ctx(tls_path(0, "ca.crt"), NULL, NULL, 1);
    o.tls = ctx;
    tc_expect_fail(&t, &o, RESP_EK_CONNECTION, "hostname mismatch");
    tc_end(&t);
    o.host = "127.0.0.1"; /* IP literal: checked against IP SANs, there are none */
    tc_expect_fail(&t, &o, RESP_EK_CONNECTION, "mismatch");
    tc_end(&t);
    /* verify_hostname off: the chain is still checked, and it is good */
    o.host = "localhost";
    o.tls_verify_hostname = 0;
    tc_connect(&t, &o);
    expect_text(&t, "PING", RESP_STRING, "PONG");
    tc_end(&t);
    resp_tls_ctx_free(ctx);
}

static void test_tls_os_store_rejects_private_ca(void **state)
{
    struct resp_conn_opts o;
    opts_for(&o, env_int("RC_TLS_PORT"));
    struct tc t;
    struct ssl_ctx_st *ctx = tls_ctx(NULL, NULL, NULL, 1);
    o.tls = ctx;
    tc_expect_fail(&t, &o, RESP_EK_CONNECTION, "certificate verify failed");
    tc_end(&t);
    o.tls_verify_hostname = 0; /* the chain is still verified */
    tc_expect_fail(&t, &o, RESP_EK_CONNECTION, "certificate verify failed");
    tc_end(&t);
    resp_tls_ctx_free(ctx);
    /* an unrelated CA fails the same way */
    ctx = tls_ctx(tls_path(0, "other-ca.crt"), NULL, NULL, 1);
    o.tls = ctx;
    tc_expect_fail(&t, &o, RESP_EK_CONNECTION, "certificate verify failed");
    tc_end(&t);
    resp_tls_ctx_free(ctx);
}

static void test_tls_verify_chain_off(void **state)
{
    struct resp_conn_opts o;
    struct tc t;
    struct ssl_ctx_st *ctx = tls_ctx(tls_path(0, "other-ca.crt"), NULL, NULL, 0);
    opts_for(&o, env_int("RC_WRONG_PORT"));
    o.tls = ctx;
    tc_connect(&t, &o); /* wrong name and an unrelated CA: nothing is checked */
    expect_text(&t, "PING", RESP_STRING, "PONG");
    tc_end(&t);
    opts_for(&o, env_int("RC_TLS_PORT"));
    o.tls = ctx;
    tc_connect(&t, &o);
    expect_text(&t, "PING", RESP_STRING, "PONG");
    tc_end(&t);
    resp_tls_ctx_free(ctx);
}

static void test_tls_to_plaintext_server_fails(void **state)
{
    struct ssl_ctx_st *ctx = tls_ctx(tls_path(0, "ca.crt"), NULL, NULL, 1);
    struct resp_conn_opts o;
    opts_for(&o, env_int("RC_PLAIN_PORT"));
    o.tls = ctx;
    o.connect_timeout = 0.4;
    struct tc t;
    /* Redis takes the ClientHello for the start of an inline command and waits: the
     * handshake times out, and nothing is ever sent in plaintext */
    tc_expect_fail(&t, &o, RESP_EK_TIMEOUT, "tls handshake");
    tc_end(&t);
    resp_tls_ctx_free(ctx);
}

/* ---- connect failures and timeouts -------------------------------------------------- */

static void test_connection_refused(void **state)
{
    struct resp_conn_opts o;
    opts_for(&o, env_int("RC_REFUSED_PORT"));
    struct tc t;
    double took = tc_expect_fail(&t, &o, RESP_EK_CONNECTION, "refused");
    assert_true(took < 0.5);
    tc_end(&t);
}

static void test_connect_timeout_silent_server(void **state)
{
    struct resp_conn_opts o;
    opts_for(&o, env_int("RC_SILENT_PORT"));
    o.connect_timeout = 0.4;
    struct tc t;
    /* accepts TCP, never answers HELLO */
    double took = tc_expect_fail(&t, &o, RESP_EK_TIMEOUT, "redis handshake");
    assert_true(took >= 0.35 && took < 1.5);
    tc_end(&t);
    /* never answers the TLS ClientHello */
    struct ssl_ctx_st *ctx = tls_ctx(tls_path(0, "ca.crt"), NULL, NULL, 1);
    o.tls = ctx;
    took = tc_expect_fail(&t, &o, RESP_EK_TIMEOUT, "tls handshake");
    assert_true(took >= 0.35 && took < 1.5);
    tc_end(&t);
    resp_tls_ctx_free(ctx);
}

/* ---- deadlines, tombstones, stall, kill ---------------------------------------------- */

static void sig(const char *pidvar, int s)
{
    assert_int_equal(kill((pid_t)env_int(pidvar), s), 0);
}

static void test_stopped_server_deadlines_and_tombstones(void **state)
{
    struct resp_conn_opts o;
    opts_for(&o, env_int("RC_STOP_PORT"));
    o.stall_timeout = 10;
    struct tc t;
    tc_connect(&t, &o);
    expect_text(&t, "SET itest:a A", RESP_STRING, "OK");
    expect_text(&t, "SET itest:b B", RESP_STRING, "OK");
    sig("RC_STOP_PID", SIGSTOP);
    /* five commands, each with its own deadline */
    const char *ga[] = {"GET", "itest:a"};
    const size_t gl[] = {3, 7};
    struct resp_cmd get = {2, ga, gl};
    struct reply r[5];
    memset(r, 0, sizeof r);
    struct batch b[5];
    double t0 = ev_now(t.loop);
    for (int i = 0; i < 5; i++) {
        b[i].t = &t;
        b[i].r = &r[i];
        assert_int_equal(resp_conn_send(t.c, &get, 1, t0 + 0.1 + 0.05 * i, batch_cb, &b[i]), 0);
    }
    run_until(t.loop, &r[4].done, 1, 2.0);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(r[i].done, 1);
        assert_int_equal(r[i].kind, RESP_EK_TIMEOUT);
        double late = r[i].at - (t0 + 0.1 + 0.05 * i);
        if (late < -0.001 || late > 0.1) fail_msg("slot %d completed %.3fs off", i, late);
    }
    assert_int_equal(resp_conn_pending(t.c), 0);
    assert_int_equal(resp_conn_state(t.c), RESP_CONN_READY);
    sig("RC_STOP_PID", SIGCONT);
    /* the late replies ("A" x5) are swallowed; these get their own */
    expect_text(&t, "GET itest:b", RESP_BULK, "B");
    expect_text(&t, "ECHO after", RESP_BULK, "after");
    for (int i = 0; i < 5; i++) assert_int_equal(r[i].done, 1);
    assert_int_equal(t.closed, 0);
    tc_end(&t);
}

static void test_stall_closes(void **state)
{
    struct resp_conn_opts o;
    opts_for(&o, env_int("RC_STOP_PORT"));
    o.stall_timeout = 0.3;
    struct tc t;
    tc_connect(&t, &o);
    sig("RC_STOP_PID", SIGSTOP);
    struct reply r[2] = {{0}};
    struct batch b = {&t, r};
    const char *pa[] = {"PING"};
    const size_t pl[] = {4};
    struct resp_cmd ping = {1, pa, pl};
    double t0 = ev_now(t.loop);
    assert_int_equal(resp_conn_send(t.c, &ping, 1, t0 + 0.1, batch_cb, &b), 0);
    struct batch b1 = {&t, r + 1};
    assert_int_equal(resp_conn_send(t.c, &ping, 1, t0 + 5, batch_cb, &b1), 0);
    run_until(t.loop, &t.closed, 1, 3.0);
    sig("RC_STOP_PID", SIGCONT);
    assert_int_equal(t.closed, 1);
    assert_int_equal(t.why.kind, RESP_EK_TIMEOUT);
    double at = t.closed_at - t0;
    if (at < 0.38 || at > 0.8) fail_msg("stall close after %.3fs, want ~0.4", at);
    assert_int_equal(r[0].kind, RESP_EK_TIMEOUT);
    assert_int_equal(r[1].done, 1); /* the live one failed with the close */
    assert_int_equal(r[1].kind, RESP_EK_TIMEOUT);
    tc_end(&t);
}

struct killrec {
    int n, conn_errs, order_bad;
};

static void kill_cb(void *priv, size_t idx, const struct resp_value *v, const struct resp_err *err)
{
    struct killrec *k = priv;
    if ((size_t)k->n != idx) k->order_bad++;
    k->n++;
    if (err && err->kind == RESP_EK_CONNECTION) k->conn_errs++;
}

static void test_server_killed_mid_pipeline(void **state)
{
    struct resp_conn_opts o;
    opts_for(&o, env_int("RC_KILL_PORT"));
    struct tc t;
    tc_connect(&t, &o);
    sig("RC_KILL_PID", SIGSTOP);
    enum { N = 100 };
    const char *pa[] = {"PING"};
    const size_t pl[] = {4};
    struct resp_cmd cmds[N];
    for (int i = 0; i < N; i++) cmds[i] = (struct resp_cmd){1, pa, pl};
    struct killrec k = {0};
    assert_int_equal(resp_conn_send(t.c, cmds, N, ev_now(t.loop) + 10, kill_cb, &k), 0);
    run_for(t.loop, 0.1); /* sent, unanswered */
    assert_int_equal(resp_conn_pending(t.c), N);
    sig("RC_KILL_PID", SIGKILL);
    run_until(t.loop, &t.closed, 1, 3.0);
    run_for(t.loop, 0.1);
    assert_int_equal(t.closed, 1);
    assert_int_equal(t.why.kind, RESP_EK_CONNECTION);
    assert_int_equal(k.n, N);
    assert_int_equal(k.conn_errs, N);
    assert_int_equal(k.order_bad, 0);
    tc_end(&t);
}

/* ---- re-entrancy: free and close from inside callbacks ------------------------------- */

struct reent {
    struct tc *t;
    int calls, errs, after_free_sends;
    int action; /* 0 free at idx 1, 1 close at idx 1, 2 send more at idx 0 */
};

static void reent_cb(void *priv, size_t idx, const struct resp_value *v, const struct resp_err *err)
{
    struct reent *r = priv;
    r->calls++;
    if (err) r->errs++;
    if (idx == 1 && r->action == 0 && r->t->c) {
        struct resp_conn *c = r->t->c;
        r->t->c = NULL;
        resp_conn_free(c);
        resp_conn_free(c); /* twice: still only marked */
        const char *pa[] = {"PING"};
        const size_t pl[] = {4};
        struct resp_cmd ping = {1, pa, pl};
        /* the connection is closing: send refuses (it is still valid memory until we
         * return) */
        if (resp_conn_send(c, &ping, 1, 0, reent_cb, r) == -1) r->after_free_sends++;
    }
    if (idx == 1 && r->action == 1 && r->t->c) resp_conn_close(r->t->c, NULL);
}

static void test_free_inside_reply_callback(void **state)
{
    struct resp_conn_opts o;
    opts_for(&o, env_int("RC_PLAIN_PORT"));
    struct tc t;
    tc_connect(&t, &o);
    const char *pa[] = {"PING"};
    const size_t pl[] = {4};
    struct resp_cmd cmds[10];
    for (int i = 0; i < 10; i++) cmds[i] = (struct resp_cmd){1, pa, pl};
    struct reent r = {&t, 0, 0, 0, 0};
    assert_int_equal(resp_conn_send(t.c, cmds, 10, ev_now(t.loop) + 2, reent_cb, &r), 0);
    run_until(t.loop, &r.calls, 10, 2.0);
    run_for(t.loop, 0.1);
    assert_null(t.c);
    assert_int_equal(r.calls, 10); /* every slot exactly once */
    assert_int_equal(r.errs, 8);   /* 2..9 failed by the free */
    assert_int_equal(r.after_free_sends, 1);
    assert_int_equal(t.closed, 0); /* free: no on_close */
    tc_end(&t);
}

static void test_close_inside_reply_callback_then_free_in_on_close(void **state)
{
    struct resp_conn_opts o;
    opts_for(&o, env_int("RC_PLAIN_PORT"));
    struct tc t;
    tc_connect(&t, &o);
    t.free_on_close = 1;
    const char *pa[] = {"PING"};
    const size_t pl[] = {4};
    struct resp_cmd cmds[10];
    for (int i = 0; i < 10; i++) cmds[i] = (struct resp_cmd){1, pa, pl};
    struct reent r = {&t, 0, 0, 0, 1};
    assert_int_equal(resp_conn_send(t.c, cmds, 10, ev_now(t.loop) + 2, reent_cb, &r), 0);
    run_until(t.loop, &t.closed, 1, 2.0);
    run_for(t.loop, 0.1);
    assert_int_equal(t.closed, 1);
    assert_int_equal(t.why.kind, RESP_EK_CONNECTION);
    assert_null(t.c);
    assert_int_equal(r.calls, 10);
    assert_int_equal(r.errs, 8);
    tc_end(&t);
}

static void test_free_inside_on_ready_and_on_close(void **state)
{
    struct resp_conn_opts o;
    opts_for(&o, env_int("RC_PLAIN_PORT"));
    struct tc t;
    tc_start(&t, &o);
    t.free_in_ready = 1;
    struct reply r[1] = {{0}};
    struct batch b = {&t, r};
    const char *pa[] = {"PING"};
    const size_t pl[] = {4};
    struct resp_cmd ping = {1, pa, pl};
    assert_int_equal(resp_conn_send(t.c, &ping, 1, ev_now(t.loop) + 2, batch_cb, &b), 0);
    run_until(t.loop, &t.ready, 1, 2.0);
    run_for(t.loop, 0.1);
    assert_null(t.c);
    assert_int_equal(r[0].done, 1); /* failed by the free */
    assert_int_equal(r[0].kind, RESP_EK_CONNECTION);
    tc_end(&t);
    /* free inside on_close of a failed connect */
    opts_for(&o, env_int("RC_REFUSED_PORT"));
    tc_start(&t, &o);
    t.free_on_close = 1;
    run_until(t.loop, &t.closed, 1, 2.0);
    assert_null(t.c);
    tc_end(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain_set_get_resp3),
        cmocka_unit_test(test_resp2_when_asked),
        cmocka_unit_test(test_ten_thousand_pipelined_in_order),
        cmocka_unit_test(test_batch_and_encoded),
        cmocka_unit_test(test_requirepass_right),
        cmocka_unit_test(test_requirepass_wrong),
        cmocka_unit_test(test_requirepass_missing),
        cmocka_unit_test(test_acl_user),
        cmocka_unit_test(test_acl_user_without_set_gets_noperm_reply),
        cmocka_unit_test(test_select_db),
        cmocka_unit_test(test_no_hello_falls_back_to_resp2_auth),
        cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_subscribe_resp3),
        cmocka_unit_test(test_subscribe_resp2),
        cmocka_unit_test(test_tls_ctx_errors),
        cmocka_unit_test(test_tls_server_only),
        cmocka_unit_test(test_tls_large_pipelined_replies),
        cmocka_unit_test(test_mtls),
        cmocka_unit_test(test_tls_hostname_mismatch),
        cmocka_unit_test(test_tls_os_store_rejects_private_ca),
        cmocka_unit_test(test_tls_verify_chain_off),
        cmocka_unit_test(test_tls_to_plaintext_server_fails),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_connect_timeout_silent_server),
        cmocka_unit_test(test_stopped_server_deadlines_and_tombstones),
        cmocka_unit_test(test_stall_closes),
        cmocka_unit_test(test_server_killed_mid_pipeline),
        cmocka_unit_test(test_free_inside_reply_callback),
        cmocka_unit_test(test_close_inside_reply_callback_then_free_in_on_close),
        cmocka_unit_test(test_free_inside_on_ready_and_on_close),
    };
    return cmocka_run_group_tests_name("itest_conn", tests, NULL, NULL);
}
