/* tests/integration/itest_forward.c — the forward plugin (src/server/forward.c) against two
 * real test upstreams (tests/tools/testdns.py) on a real libev loop. Driven by
 * tests/integration/forward.sh, which starts, with the same zone `test.`:
 *
 *   server 1: 127.0.0.1 (and ::1 when FW_V6=1), port FW_PORT1, control FW_CTL1
 *   server 2: 127.0.0.1, port FW_PORT2, control FW_CTL2
 *
 * Each test resets both servers and sets the misbehaviour it needs per query name.
 * Upstream options come from a Corefile line through fwd_opts_parse, as the server does.
 */
#include <arpa/inet.h>
#include <ev.h>
#include <netinet/in.h>
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

#include "server/forward_internal.h"
#include "server/server.h"

static unsigned port1, port2;
static int ctl1, ctl2;
static bool have_v6;

#define CLIENT_ID 0xBEEF

/* ---- the test servers' control channel ---- */

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One control command; returns its reply line (static buffer). */
static const char *ctl(int ctlport, const char *fmt, ...)
{
    static char reply[512];
    char cmd[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd - 1, fmt, ap);
    va_end(ap);
    strcat(cmd, "\n");
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)ctlport)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) fail_msg("control port %d", ctlport);
    assert_int_equal(write(fd, cmd, strlen(cmd)), (ssize_t)strlen(cmd));
    size_t n = 0;
    while (n < sizeof reply - 1) {
        ssize_t got = read(fd, reply + n, 1);
        if (got <= 0 || reply[n] == '\n') break;
        n++;
    }
    reply[n] = '\0';
    close(fd);
    if (strncmp(reply, "err", 3) == 0) fail_msg("testdns: %s -> %s", cmd, reply);
    return reply;
}

static long count(int ctlport, const char *name, const char *proto)
{
    const char *reply =
        *proto ? ctl(ctlport, "count %s A %s", name, proto) : ctl(ctlport, "count %s A", name);
    return strtol(reply, NULL, 10);
}

static long total(int ctlport)
{
    return strtol(ctl(ctlport, "total"), NULL, 10);
}

/* The value of `field=` in the `last NAME` reply of a server, as a string. */
static const char *last_field(int ctlport, const char *name, const char *field)
{
    static char val[128];
    const char *reply = ctl(ctlport, "last %s", name);
    if (strcmp(reply, "none") == 0) fail_msg("no query for %s seen", name);
    char key[40];
    snprintf(key, sizeof key, " %s=", field);
    char line[520];
    snprintf(line, sizeof line, " %s", reply);
    const char *p = strstr(line, key);
    if (!p) fail_msg("no %s in \"%s\"", field, reply);
    p += strlen(key);
    size_t n = strcspn(p, " ");
    snprintf(val, sizeof val, "%.*s", (int)n, p);
    return val;
}

static long last_num(int ctlport, const char *name, const char *field)
{
    return strtol(last_field(ctlport, name, field), NULL, 10);
}

static void reset_servers(void)
{
    ctl(ctl1, "reset");
    ctl(ctl2, "reset");
}

/* ---- queries as a client would send them ---- */

struct cquery {
    uint8_t wire[512];
    size_t len;
    struct dns_question q;
    uint64_t key;
};

/* A client query for `name` (dotted, its case kept) type A with ID CLIENT_ID, RD, and when
 * edns an OPT of size 4096 carrying a cookie option that must never reach the upstream. */
static void make_query(struct cquery *c, const char *name, bool edns, bool do_bit, bool cd)
{
    uint8_t *p = c->wire;
    memset(p, 0, sizeof c->wire);
    dns_put16(p, CLIENT_ID);
    dns_put16(p + 2, (uint16_t)(DNS_F_RD | (cd ? DNS_F_CD : 0)));
    dns_put16(p + 4, 1);
    dns_put16(p + 10, edns ? 1 : 0);
    size_t o = DNS_HEADER_LEN;
    const char *s = name;
    while (*s) {
        size_t n = strcspn(s, ".");
        p[o++] = (uint8_t)n;
        memcpy(p + o, s, n);
        o += n;
        s += n;
        if (*s == '.') s++;
    }
    p[o++] = 0;
    dns_put16(p + o, DNS_T_A);
    dns_put16(p + o + 2, DNS_C_IN);
    o += 4;
    if (edns) {
        p[o++] = 0;
        dns_put16(p + o, DNS_T_OPT);
        dns_put16(p + o + 2, 4096);
        dns_put32(p + o + 4, do_bit ? DNS_EDNS_DO : 0);
        dns_put16(p + o + 8, 12); /* COOKIE option: code 10, 8 bytes of client cookie */
        o += 10;
        dns_put16(p + o, 10);
        dns_put16(p + o + 2, 8);
        memcpy(p + o + 4, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
        o += 12;
    }
    c->len = o;
    enum dns_err err = dns_question_parse(&c->q, c->wire, c->len);
    if (err != DNS_OK) fail_msg("query for %s: %s", name, dns_strerror(err));
    c->key = dns_key_hash(&c->q, c->q.do_bit, 0);
}

/* ---- one forward instance on its own loop ---- */

struct res {
    int calls;
    enum fwd_status st;
    uint8_t resp[4096];
    size_t len;
    double at; /* when the callback ran (mono) */
};

struct env {
    struct ev_loop *loop;
    struct fwd *f;
    struct fwd_opts o;
    int pending;
    ev_timer watchdog;
    bool expired;
};

static struct env *cur_env;

static void on_done(void *priv, enum fwd_status st, const uint8_t *resp, size_t len)
{
    struct res *r = priv;
    r->calls++;
    r->st = st;
    r->at = mono();
    r->len = 0;
    if (st == FWD_OK) {
        assert_non_null(resp);
        assert_true(len <= sizeof r->resp);
        memcpy(r->resp, resp, len);
        r->len = len;
    }
    cur_env->pending--;
}

/* A forward instance from `forward . TO... { BLOCK }` (%u in text: the ports). */
static void env_new(struct env *e, const char *corefile, double try_timeout, double total_timeout)
{
    memset(e, 0, sizeof *e);
    e->loop = ev_loop_new(EVFLAG_AUTO);
    assert_non_null(e->loop);
    struct cfg_tokens toks;
    struct cfg_error err;
    if (cfg_lex(&toks, "Corefile", corefile, strlen(corefile), &err) != 0)
        fail_msg("lex: %s", err.msg);
    struct cfg_cursor c = {&toks, 0};
    fwd_opts_init(&e->o);
    if (fwd_opts_parse(&c, &e->o, &err) != 0) {
        char msg[700];
        cfg_error_format(&err, msg, sizeof msg);
        fail_msg("%s", msg);
    }
    cfg_tokens_free(&toks);
    e->o.try_timeout = try_timeout;
    e->o.total_timeout = total_timeout;
    char why[128];
    e->f = fwd_new(e->loop, &e->o, why, sizeof why);
    if (!e->f) fail_msg("fwd_new: %s", why);
    cur_env = e;
}

static void env_free(struct env *e)
{
    fwd_free(e->f);
    ev_loop_destroy(e->loop);
    cur_env = NULL;
}

static void on_watchdog(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct env *e = w->data;
    e->expired = true;
    ev_break(loop, EVBREAK_ONE);
}

/* Runs the loop until every query issued has its callback, or `secs` pass. */
static void run(struct env *e, double secs)
{
    ev_now_update(e->loop);
    ev_timer_init(&e->watchdog, on_watchdog, secs, 0.);
    e->watchdog.data = e;
    e->expired = false;
    ev_timer_start(e->loop, &e->watchdog);
    while (e->pending > 0 && !e->expired) ev_run(e->loop, EVRUN_ONCE);
    ev_timer_stop(e->loop, &e->watchdog);
}

/* Runs the loop for `secs` (timers fire, late datagrams are read). */
static void spin(struct env *e, double secs)
{
    int pending = e->pending;
    e->pending = 1;
    run(e, secs);
    e->pending = pending;
}

static void ask(struct env *e, const struct cquery *c, bool client_tcp, struct res *r)
{
    memset(r, 0, sizeof *r);
    e->pending++;
    assert_int_equal(fwd_query(e->f, &c->q, c->key, client_tcp, on_done, r), 0);
}

/* One query, waited for. Returns the seconds it took. */
static double query1(struct env *e, const char *name, bool client_tcp, struct res *r)
{
    struct cquery c;
    make_query(&c, name, true, false, false);
    double t0 = mono();
    ask(e, &c, client_tcp, r);
    run(e, e->o.total_timeout + 2);
    assert_int_equal(r->calls, 1);
    return r->at - t0;
}

/* A reply for `name` A: parses, our question (its case as sent), rcode, answer count. */
static void assert_reply(const struct res *r, const char *name_as_sent, unsigned rcode,
                         unsigned ancount)
{
    if (r->st != FWD_OK) fail_msg("expected FWD_OK for %s, got FWD_FAILED", name_as_sent);
    struct dns_msg m;
    assert_int_equal(dns_msg_parse(&m, r->resp, r->len, NULL, 0), DNS_OK);
    assert_true(m.flags & DNS_F_QR);
    assert_false(m.flags & DNS_F_TC);
    assert_int_equal(m.flags & DNS_F_RCODE_MASK, rcode);
    assert_int_equal(m.count[0], 1);
    assert_int_equal(m.count[1], ancount);
    char text[300];
    uint8_t wire[DNS_NAME_MAX];
    size_t wlen, next;
    assert_int_equal(dns_name_unpack(r->resp, r->len, m.qname_off, wire, &wlen, &next), DNS_OK);
    size_t tl = dns_name_to_text(wire, wlen, text, sizeof text - 1, false);
    text[tl < sizeof text - 1 ? tl : sizeof text - 1] = '\0';
    char want[300];
    snprintf(want, sizeof want, "%s.", name_as_sent);
    assert_string_equal(text, want);
}

static char core[512];

static const char *corefile(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(core, sizeof core, fmt, ap);
    va_end(ap);
    return core;
}

/* ---- the query we send ---- */

static void test_relay_and_our_query(void **state)
{
    reset_servers();
    struct env e;
    env_new(&e, corefile("forward . 127.0.0.1:%u\n", port1), 1, 3);

    /* client: ID 0xBEEF, mixed case, DO and CD, OPT 4096 with a cookie option */
    struct cquery c;
    struct res r;
    make_query(&c, "A.TeSt", true, true, true);
    ask(&e, &c, false, &r);
    run(&e, 5);
    assert_int_equal(r.calls, 1);
    assert_reply(&r, "A.TeSt", DNS_RCODE_NOERROR, 1);
    assert_string_equal(last_field(ctl1, "a.test", "proto"), "udp");
    assert_string_equal(last_field(ctl1, "a.test", "qname"), "A.TeSt.");
    assert_int_equal(last_num(ctl1, "a.test", "rd"), 1);
    assert_int_equal(last_num(ctl1, "a.test", "cd"), 1);
    assert_int_equal(last_num(ctl1, "a.test", "edns"), 1);
    assert_int_equal(last_num(ctl1, "a.test", "udpsize"), 1232);
    assert_int_equal(last_num(ctl1, "a.test", "do"), 1);
    assert_int_equal(last_num(ctl1, "a.test", "version"), 0);
    assert_int_equal(last_num(ctl1, "a.test", "nopts"), 0);
    /* the reply carries our ID, which is what the upstream saw */
    assert_int_equal(dns_get16(r.resp), last_num(ctl1, "a.test", "id"));
    /* the reply keeps the upstream's OPT: removing it is the server's job */
    struct dns_msg m;
    assert_int_equal(dns_msg_parse(&m, r.resp, r.len, NULL, 0), DNS_OK);
    assert_true(m.has_edns);
    assert_true(m.edns_do);
    assert_true(m.flags & DNS_F_CD);

    /* a client without EDNS, DO or CD: we still send our OPT (DO 0), CD 0 */
    make_query(&c, "b.test", false, false, false);
    ask(&e, &c, false, &r);
    run(&e, 5);
    assert_reply(&r, "b.test", DNS_RCODE_NOERROR, 1);
    assert_int_equal(last_num(ctl1, "b.test", "edns"), 1);
    assert_int_equal(last_num(ctl1, "b.test", "udpsize"), 1232);
    assert_int_equal(last_num(ctl1, "b.test", "do"), 0);
    assert_int_equal(last_num(ctl1, "b.test", "cd"), 0);

    /* fresh IDs: three queries with the client's ID 0xBEEF never all keep it */
    long ids[3];
    const char *names[3] = {"c.test", "d.test", "e.test"};
    for (int i = 0; i < 3; i++) {
        query1(&e, names[i], false, &r);
        assert_reply(&r, names[i], DNS_RCODE_NOERROR, 1);
        ids[i] = last_num(ctl1, names[i], "id");
    }
    assert_false(ids[0] == CLIENT_ID && ids[1] == CLIENT_ID && ids[2] == CLIENT_ID);
    assert_false(ids[0] == ids[1] && ids[1] == ids[2]);

    struct fwd_stats st;
    fwd_stats(e.f, &st);
    assert_int_equal(st.requests[0], 5);
    assert_int_equal(st.responses[0][0], 5);
    assert_int_equal(st.mismatches, 0);
    assert_int_equal(st.failures, 0);
    env_free(&e);
}

/* UDP source ports (forward_udp.c): 450 queries in waves of 50 in flight go out from
 * random ports that each carry at most FWD_PORT_QUERIES of them, with IDs never repeated
 * on a port; a port past FWD_PORT_AGE takes no new query. */
#define PORT_WAVES 9
#define PORT_WAVE  50
static void test_udp_source_ports_rotate(void **state)
{
    reset_servers();
    struct env e;
    env_new(&e, corefile("forward . 127.0.0.1:%u\n", port1), 2, 5);
    static struct cquery c[PORT_WAVE];
    static struct res r[PORT_WAVE];
    static char from[PORT_WAVES * PORT_WAVE][64];
    static long id[PORT_WAVES * PORT_WAVE];
    char name[32];
    for (int w = 0; w < PORT_WAVES; w++) {
        for (int i = 0; i < PORT_WAVE; i++) {
            snprintf(name, sizeof name, "p%d.test", w * PORT_WAVE + i);
            make_query(&c[i], name, true, false, false);
            ask(&e, &c[i], false, &r[i]);
        }
        run(&e, 5);
        for (int i = 0; i < PORT_WAVE; i++) {
            int n = w * PORT_WAVE + i;
            snprintf(name, sizeof name, "p%d.test", n);
            assert_int_equal(r[i].calls, 1);
            assert_int_equal(r[i].st, FWD_OK); /* NXDOMAIN from the test zone */
            snprintf(from[n], sizeof from[n], "%s", last_field(ctl1, name, "from"));
            id[n] = last_num(ctl1, name, "id");
        }
    }
    int total_q = PORT_WAVES * PORT_WAVE, nports = 0, most = 0;
    for (int n = 0; n < total_q; n++) {
        bool seen = false;
        for (int k = 0; k < n && !seen; k++) seen = strcmp(from[k], from[n]) == 0;
        if (seen) continue;
        nports++;
        int uses = 0;
        for (int k = n; k < total_q; k++) {
            if (strcmp(from[k], from[n]) != 0) continue;
            uses++;
            for (int j = n; j < k; j++) /* an ID is never reused on its port */
                if (strcmp(from[j], from[n]) == 0 && id[j] == id[k])
                    fail_msg("ID %ld used twice on %s", id[k], from[n]);
        }
        if (uses > most) most = uses;
    }
    print_message("# %d queries from %d source ports, at most %d on one\n", total_q, nports, most);
    assert_true(most <= FWD_PORT_QUERIES);
    assert_true(nports >= (total_q + FWD_PORT_QUERIES - 1) / FWD_PORT_QUERIES);
    struct fwd_stats st;
    fwd_stats(e.f, &st);
    assert_int_equal(st.udp_ports, (uint64_t)nports);
    assert_int_equal(st.mismatches + st.late + st.failures, 0);

    /* past FWD_PORT_AGE, a query leaves from a port none of the above used */
    spin(&e, FWD_PORT_AGE + 0.2);
    struct res r1;
    query1(&e, "late-port.test", false, &r1);
    const char *lf = last_field(ctl1, "late-port.test", "from");
    for (int n = 0; n < total_q; n++) assert_string_not_equal(lf, from[n]);
    env_free(&e);
}

/* A reply that arrives after its query gave up is dropped as late: it never answers a
 * later query (IDs are not reused on a port) and is not counted as a spoof. */
static void test_late_reply_dropped(void **state)
{
    reset_servers();
    ctl(ctl1, "mode slow.test slow 400");
    struct env e;
    env_new(&e, corefile("forward . 127.0.0.1:%u\n", port1), 0.15, 0.35);
    struct res r;
    query1(&e, "slow.test", false, &r);
    assert_int_equal(r.st, FWD_FAILED);
    /* a quick query on the same ports while the slow replies come in */
    for (int i = 0; i < 6; i++) {
        char name[32];
        snprintf(name, sizeof name, "q%d.test", i);
        query1(&e, name, false, &r);
        assert_int_equal(r.st, FWD_OK);
        assert_reply(&r, name, DNS_RCODE_NXDOMAIN, 0);
    }
    spin(&e, 0.6); /* the last slow reply is due 0.4 s after the last try */
    struct fwd_stats st;
    fwd_stats(e.f, &st);
    assert_true(st.late >= 1);
    assert_int_equal(st.mismatches, 0);
    env_free(&e);
}

/* ---- transports ---- */

static void test_tc_retried_over_tcp(void **state)
{
    reset_servers();
    ctl(ctl1, "mode tc.test tc");
    struct env e;
    env_new(&e, corefile("forward . 127.0.0.1:%u\n", port1), 1, 3);
    struct res r;
    query1(&e, "tc.test", false, &r);
    assert_reply(&r, "tc.test", DNS_RCODE_NOERROR, 1);
    assert_int_equal(count(ctl1, "tc.test", "udp"), 1);
    assert_int_equal(count(ctl1, "tc.test", "tcp"), 1);
    assert_string_equal(last_field(ctl1, "tc.test", "proto"), "tcp");
    struct fwd_stats st;
    fwd_stats(e.f, &st);
    assert_int_equal(st.requests[0], 2);     /* the UDP try and the TCP one */
    assert_int_equal(st.responses[0][0], 2); /* the TC reply and the full one */

    /* a large answer truncated for real (over 1232 bytes) comes whole over TCP too */
    query1(&e, "big.test", false, &r);
    assert_reply(&r, "big.test", DNS_RCODE_NOERROR, 100);
    assert_int_equal(count(ctl1, "big.test", "udp"), 1);
    assert_int_equal(count(ctl1, "big.test", "tcp"), 1);
    env_free(&e);
}

static void test_force_tcp_and_client_proto(void **state)
{
    reset_servers();
    struct env e;
    env_new(&e, corefile("forward . 127.0.0.1:%u {\n force_tcp\n}\n", port1), 1, 3);
    struct res r;
    query1(&e, "a.test", false, &r);
    assert_reply(&r, "a.test", DNS_RCODE_NOERROR, 1);
    assert_int_equal(count(ctl1, "a.test", "udp"), 0);
    assert_int_equal(count(ctl1, "a.test", "tcp"), 1);
    /* our query over TCP is the same: our OPT, no client options */
    assert_int_equal(last_num(ctl1, "a.test", "udpsize"), 1232);
    assert_int_equal(last_num(ctl1, "a.test", "nopts"), 0);
    env_free(&e);

    /* default: a TCP client is forwarded over TCP, a UDP client over UDP */
    reset_servers();
    env_new(&e, corefile("forward . 127.0.0.1:%u\n", port1), 1, 3);
    query1(&e, "b.test", true, &r);
    assert_reply(&r, "b.test", DNS_RCODE_NOERROR, 1);
    assert_int_equal(count(ctl1, "b.test", "tcp"), 1);
    assert_int_equal(count(ctl1, "b.test", "udp"), 0);
    query1(&e, "c.test", false, &r);
    assert_int_equal(count(ctl1, "c.test", "tcp"), 0);
    assert_int_equal(count(ctl1, "c.test", "udp"), 1);
    env_free(&e);

    /* prefer_udp: a TCP client is forwarded over UDP */
    reset_servers();
    env_new(&e, corefile("forward . 127.0.0.1:%u {\n prefer_udp\n}\n", port1), 1, 3);
    query1(&e, "d.test", true, &r);
    assert_reply(&r, "d.test", DNS_RCODE_NOERROR, 1);
    assert_int_equal(count(ctl1, "d.test", "udp"), 1);
    assert_int_equal(count(ctl1, "d.test", "tcp"), 0);
    env_free(&e);
}

static void test_ipv6_upstream(void **state)
{
    if (!have_v6) skip();
    reset_servers();
    struct env e;
    env_new(&e, corefile("forward . [::1]:%u\n", port1), 1, 3);
    assert_string_equal(e.o.up[0].name, corefile("[::1]:%u", port1));
    struct res r;
    query1(&e, "a.test", false, &r);
    assert_reply(&r, "a.test", DNS_RCODE_NOERROR, 1);
    assert_true(strncmp(last_field(ctl1, "a.test", "from"), "::1:", 4) == 0);
    ctl(ctl1, "mode tc.test tc");
    query1(&e, "tc.test", false, &r); /* TCP over IPv6 too */
    assert_reply(&r, "tc.test", DNS_RCODE_NOERROR, 1);
    assert_int_equal(count(ctl1, "tc.test", "tcp"), 1);
    env_free(&e);
}

/* ---- failover ---- */

static void test_silent_fails_over(void **state)
{
    reset_servers();
    ctl(ctl1, "mode a.test silent");
    struct env e;
    env_new(
        &e,
        corefile("forward . 127.0.0.1:%u 127.0.0.1:%u {\n policy sequential\n}\n", port1, port2),
        1.0, 5); /* a try timeout well above a loaded machine's test upstream latency */
    struct res r;
    double took = query1(&e, "a.test", false, &r);
    assert_reply(&r, "a.test", DNS_RCODE_NOERROR, 1);
    assert_true(took >= 0.98);
    assert_true(took < 3.0);
    assert_int_equal(count(ctl1, "a.test", ""), 1); /* sequential: server 1 asked first */
    assert_int_equal(count(ctl2, "a.test", ""), 1);

    /* a name server 1 answers: server 2 is never asked */
    took = query1(&e, "b.test", false, &r);
    assert_reply(&r, "b.test", DNS_RCODE_NOERROR, 1);
    assert_true(took < 0.98);
    assert_int_equal(count(ctl1, "b.test", ""), 1);
    assert_int_equal(count(ctl2, "b.test", ""), 0);
    struct fwd_stats st;
    fwd_stats(e.f, &st);
    assert_int_equal(st.requests[0], 2);
    assert_int_equal(st.requests[1], 1);
    assert_int_equal(st.failures, 0);
    env_free(&e);
}

static void test_both_silent_fail_in_time(void **state)
{
    reset_servers();
    ctl(ctl1, "mode a.test silent");
    ctl(ctl2, "mode a.test silent");
    struct env e;
    env_new(
        &e,
        corefile("forward . 127.0.0.1:%u 127.0.0.1:%u {\n policy sequential\n}\n", port1, port2),
        0.2, 0.7);
    struct res r;
    double took = query1(&e, "a.test", false, &r);
    assert_int_equal(r.st, FWD_FAILED);
    assert_int_equal(r.len, 0);
    assert_true(took >= 0.68);
    assert_true(took < 1.2);
    /* tries at 0, 0.2, 0.4, 0.6: the walk starts over after the last upstream */
    assert_int_equal(count(ctl1, "a.test", ""), 2);
    assert_int_equal(count(ctl2, "a.test", ""), 2);
    struct fwd_stats st;
    fwd_stats(e.f, &st);
    assert_int_equal(st.failures, 1);
    assert_int_equal(st.requests[0] + st.requests[1], 4);
    env_free(&e);
}

/* Nothing listens: refused tries fail at once, and a whole round of them ends the query
 * long before the per-try timeout. */
static void test_refused_fails_fast(void **state)
{
    unsigned closed[2];
    for (int i = 0; i < 2; i++) {
        int fd = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
        socklen_t sl = sizeof sa;
        getsockname(fd, (struct sockaddr *)&sa, &sl);
        closed[i] = ntohs(sa.sin_port);
        close(fd);
    }
    struct env e;
    env_new(&e, corefile("forward . 127.0.0.1:%u 127.0.0.1:%u\n", closed[0], closed[1]), 2, 5);
    struct res r;
    double took = query1(&e, "a.test", false, &r);
    assert_int_equal(r.st, FWD_FAILED);
    assert_true(took < 1.0);
    env_free(&e);

    /* a refused upstream then a working one: answered without waiting a try timeout */
    reset_servers();
    env_new(&e,
            corefile("forward . 127.0.0.1:%u 127.0.0.1:%u {\n policy sequential\n}\n", closed[0],
                     port2),
            2, 5);
    took = query1(&e, "a.test", false, &r);
    assert_reply(&r, "a.test", DNS_RCODE_NOERROR, 1);
    assert_true(took < 1.0);
    assert_int_equal(count(ctl2, "a.test", ""), 1);
    env_free(&e);

    /* the same over TCP (connection refused) */
    reset_servers();
    env_new(&e,
            corefile("forward . 127.0.0.1:%u 127.0.0.1:%u {\n policy sequential\n force_tcp\n}\n",
                     closed[0], port2),
            2, 5);
    took = query1(&e, "a.test", false, &r);
    assert_reply(&r, "a.test", DNS_RCODE_NOERROR, 1);
    assert_true(took < 1.0);
    assert_int_equal(count(ctl2, "a.test", "tcp"), 1);
    env_free(&e);
}

/* ---- RFC 5452: replies that are not ours ---- */

/* Server 1 misbehaves with `mode` for a.test; sequential: the try on server 1 times out
 * after dropping the reply, server 2 answers. Then with server 1 alone: FWD_FAILED at the
 * total timeout, each try's reply counted. */
static void bad_reply_case(const char *mode, bool tcp)
{
    reset_servers();
    ctl(ctl1, "mode a.test %s", mode);
    struct env e;
    env_new(&e,
            corefile("forward . 127.0.0.1:%u 127.0.0.1:%u {\n policy sequential\n%s}\n", port1,
                     port2, tcp ? " force_tcp\n" : ""),
            1.0, 5); /* well above a loaded machine's test upstream latency */
    struct res r;
    double took = query1(&e, "a.test", false, &r);
    assert_reply(&r, "a.test", DNS_RCODE_NOERROR, 1);
    assert_true(took >= 0.98);
    assert_int_equal(count(ctl1, "a.test", ""), 1);
    assert_int_equal(count(ctl2, "a.test", ""), 1);
    struct fwd_stats st;
    fwd_stats(e.f, &st);
    assert_int_equal(st.mismatches, 1);
    assert_int_equal(st.failures, 0);
    env_free(&e);

    reset_servers();
    ctl(ctl1, "mode a.test %s", mode);
    env_new(&e, corefile("forward . 127.0.0.1:%u%s\n", port1, tcp ? " {\n force_tcp\n}" : ""), 0.3,
            1.0);
    took = query1(&e, "a.test", false, &r);
    assert_int_equal(r.st, FWD_FAILED);
    assert_true(took >= 0.98);
    assert_true(took < 1.5);
    fwd_stats(e.f, &st);
    long tries = count(ctl1, "a.test", "");
    assert_true(tries >= 3);
    assert_int_equal(st.mismatches, (uint64_t)tries);
    assert_int_equal(st.failures, 1);
    env_free(&e);
}

static void test_wrong_question_dropped(void **state)
{
    bad_reply_case("wrong_question", false);
}

static void test_wrong_id_dropped(void **state)
{
    bad_reply_case("wrong_id", false);
}

static void test_garbage_dropped(void **state)
{
    bad_reply_case("garbage", false);
}

static void test_wrong_id_over_tcp_dropped(void **state)
{
    bad_reply_case("wrong_id", true);
}

static void test_wrong_question_over_tcp_dropped(void **state)
{
    bad_reply_case("wrong_question", true);
}

/* ---- rcodes ---- */

static void test_servfail_relayed(void **state)
{
    reset_servers();
    ctl(ctl1, "mode a.test servfail");
    struct env e;
    env_new(
        &e,
        corefile("forward . 127.0.0.1:%u 127.0.0.1:%u {\n policy sequential\n}\n", port1, port2), 1,
        3);
    struct res r;
    query1(&e, "a.test", false, &r);
    assert_reply(&r, "a.test", DNS_RCODE_SERVFAIL, 0);
    assert_int_equal(count(ctl2, "a.test", ""), 0); /* no failover on SERVFAIL */
    query1(&e, "nope.test", false, &r);
    assert_reply(&r, "nope.test", DNS_RCODE_NXDOMAIN, 0);
    struct fwd_stats st;
    fwd_stats(e.f, &st);
    assert_int_equal(st.responses[0][DNS_RCODE_SERVFAIL], 1);
    assert_int_equal(st.responses[0][DNS_RCODE_NXDOMAIN], 1);
    assert_int_equal(st.responses[1][DNS_RCODE_SERVFAIL], 0);
    assert_int_equal(st.failures, 0);
    env_free(&e);
}

/* ---- policies ---- */

static void spread(const char *policy, int n, long *c1, long *c2)
{
    reset_servers();
    struct env e;
    env_new(
        &e,
        corefile("forward . 127.0.0.1:%u 127.0.0.1:%u {\n policy %s\n}\n", port1, port2, policy), 1,
        3);
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "n%d.test", i);
        struct res r;
        query1(&e, name, false, &r);
        assert_reply(&r, name, DNS_RCODE_NXDOMAIN, 0);
    }
    *c1 = total(ctl1);
    *c2 = total(ctl2);
    assert_int_equal(*c1 + *c2, n);
    struct fwd_stats st;
    fwd_stats(e.f, &st);
    assert_int_equal(st.requests[0], (uint64_t)*c1);
    assert_int_equal(st.requests[1], (uint64_t)*c2);
    env_free(&e);
}

static void test_round_robin(void **state)
{
    long c1, c2;
    spread("round_robin", 10, &c1, &c2);
    assert_int_equal(c1, 5);
    assert_int_equal(c2, 5);
}

static void test_random(void **state)
{
    long c1, c2;
    spread("random", 40, &c1, &c2);
    assert_true(c1 > 0); /* all 40 on one server: 2^-39 */
    assert_true(c2 > 0);
}

static void test_sequential(void **state)
{
    long c1, c2;
    spread("sequential", 6, &c1, &c2);
    assert_int_equal(c1, 6);
    assert_int_equal(c2, 0);
}

/* ---- coalescing ---- */

static void test_coalescing(void **state)
{
    reset_servers();
    ctl(ctl1, "mode a.test slow 200");
    struct env e;
    env_new(&e, corefile("forward . 127.0.0.1:%u\n", port1), 1, 3);
    enum { N = 50 };
    static struct res rs[N];
    for (int i = 0; i < N; i++) {
        struct cquery c;
        /* the case differs between clients: they still share the key and the query */
        make_query(&c, (i % 2) ? "a.test" : "A.TEST", true, false, false);
        ask(&e, &c, i % 3 == 0, &rs[i]);
    }
    /* another DO bit is another key: its own query */
    struct cquery cdo;
    struct res rdo;
    make_query(&cdo, "a.test", true, true, false);
    ask(&e, &cdo, false, &rdo);
    run(&e, 5);
    for (int i = 0; i < N; i++) {
        assert_int_equal(rs[i].calls, 1);
        assert_reply(&rs[i], "A.TEST", DNS_RCODE_NOERROR, 1); /* the first client's case */
        assert_memory_equal(rs[i].resp, rs[0].resp, rs[0].len);
        assert_int_equal(rs[i].len, rs[0].len);
    }
    assert_int_equal(rdo.calls, 1);
    assert_reply(&rdo, "a.test", DNS_RCODE_NOERROR, 1);
    assert_int_equal(count(ctl1, "a.test", ""), 2);
    struct fwd_stats st;
    fwd_stats(e.f, &st);
    assert_int_equal(st.coalesced, N - 1);
    assert_int_equal(st.requests[0], 2);

    /* once answered, the same question is asked again (nothing is cached here) */
    struct res r;
    query1(&e, "a.test", false, &r);
    assert_reply(&r, "a.test", DNS_RCODE_NOERROR, 1);
    assert_int_equal(count(ctl1, "a.test", ""), 3);
    env_free(&e);
}

/* A callback that asks the same question again while the first request completes. */
struct chain {
    struct env *e;
    struct cquery c;
    struct res second;
    int calls;
};
static void on_chain(void *priv, enum fwd_status st, const uint8_t *resp, size_t len)
{
    struct chain *ch = priv;
    ch->calls++;
    assert_int_equal(st, FWD_OK);
    ch->e->pending--;
    ask(ch->e, &ch->c, false, &ch->second);
}

static void test_query_from_callback(void **state)
{
    reset_servers();
    struct env e;
    env_new(&e, corefile("forward . 127.0.0.1:%u\n", port1), 1, 3);
    struct chain ch = {.e = &e};
    make_query(&ch.c, "a.test", true, false, false);
    e.pending++;
    assert_int_equal(fwd_query(e.f, &ch.c.q, ch.c.key, false, on_chain, &ch), 0);
    run(&e, 5);
    assert_int_equal(ch.calls, 1);
    assert_int_equal(ch.second.calls, 1);
    assert_reply(&ch.second, "a.test", DNS_RCODE_NOERROR, 1);
    assert_int_equal(count(ctl1, "a.test", ""), 2);
    env_free(&e);
}

static void test_free_with_pending(void **state)
{
    reset_servers();
    ctl(ctl1, "mode a.test silent");
    struct env e;
    env_new(&e, corefile("forward . 127.0.0.1:%u\n", port1), 1, 3);
    struct cquery c;
    make_query(&c, "a.test", true, false, false);
    struct res r1, r2;
    ask(&e, &c, false, &r1);
    ask(&e, &c, false, &r2);
    ev_run(e.loop, EVRUN_NOWAIT);
    assert_int_equal(r1.calls, 0);
    fwd_free(e.f);
    assert_int_equal(r1.calls, 1);
    assert_int_equal(r1.st, FWD_FAILED);
    assert_int_equal(r2.calls, 1);
    assert_int_equal(r2.st, FWD_FAILED);
    ev_loop_destroy(e.loop);
}

/* ---- health: max_fails, health_check ---- */

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents) {}

/* Runs the loop until pred(e) holds or secs pass; returns whether it held. */
static bool wait_for(struct env *e, double secs, bool (*pred)(struct env *))
{
    ev_timer tick;
    ev_timer_init(&tick, on_tick, 0.05, 0.05);
    ev_timer_start(e->loop, &tick);
    double end = mono() + secs;
    bool ok = pred(e);
    while (!ok && mono() < end) {
        ev_run(e->loop, EVRUN_ONCE);
        ok = pred(e);
    }
    ev_timer_stop(e->loop, &tick);
    return ok;
}

static bool up0_down(struct env *e)
{
    struct fwd_stats st;
    fwd_stats(e->f, &st);
    return st.up_down[0] == 1;
}

static bool up0_up(struct env *e)
{
    return !up0_down(e);
}

static bool both_down(struct env *e)
{
    struct fwd_stats st;
    fwd_stats(e->f, &st);
    return st.up_down[0] == 1 && st.up_down[1] == 1;
}

static long ns_probes(int ctlport)
{
    return strtol(ctl(ctlport, "count . NS"), NULL, 10);
}

/* Server 1 goes silent: a failed try starts probing, each failed probe is a fail, more than
 * max_fails fails mark it down, and traffic goes to server 2 alone (sequential would ask
 * server 1 first). Probes go on while it is down; once it answers again it comes back. */
static void test_health_down_and_back(void **state)
{
    reset_servers();
    ctl(ctl1, "mode * silent");
    struct env e;
    env_new(&e,
            corefile("forward . 127.0.0.1:%u 127.0.0.1:%u {\n policy sequential\n max_fails 1\n"
                     " health_check 0.2s\n}\n",
                     port1, port2),
            0.5, 4);
    struct res r;
    query1(&e, "a.test", false, &r);
    assert_reply(&r, "a.test", DNS_RCODE_NOERROR, 1);
    assert_int_equal(count(ctl2, "a.test", ""), 1);
    /* probe 1 fails after 1 s (fails 1, not down yet), probe 2 0.2 s later fails (down) */
    if (!wait_for(&e, 8, up0_down)) fail_msg("server 1 never marked down");
    struct fwd_stats st;
    fwd_stats(e.f, &st);
    assert_true(st.hc_sent[0] >= 2);
    assert_true(st.hc_failures[0] >= 2);
    assert_true(st.up_fails[0] >= 2);
    assert_int_equal(st.hc_sent[1], 0); /* server 2 never failed: never probed */
    long probes = ns_probes(ctl1);
    assert_true(probes >= 2);
    assert_int_equal(ns_probes(ctl2), 0);
    assert_string_equal(last_field(ctl1, ".", "rd"), "1"); /* RD by default */

    /* down: skipped, no waiting on it */
    double took = query1(&e, "b.test", false, &r);
    assert_reply(&r, "b.test", DNS_RCODE_NOERROR, 1);
    assert_int_equal(count(ctl1, "b.test", ""), 0);
    assert_int_equal(count(ctl2, "b.test", ""), 1);
    assert_true(took < 0.45);

    /* the probing goes on while it is down */
    ev_timer idle;
    ev_timer_init(&idle, on_tick, 1.5, 0.);
    ev_timer_start(e.loop, &idle);
    double end = mono() + 1.5;
    while (mono() < end) ev_run(e.loop, EVRUN_ONCE);
    assert_true(ns_probes(ctl1) > probes);
    assert_true(up0_down(&e));

    /* back: the next probe gets a reply within ~2 health intervals (plus a probe's wait) */
    ctl(ctl1, "mode * normal");
    if (!wait_for(&e, 4, up0_up)) fail_msg("server 1 never came back");
    fwd_stats(e.f, &st);
    assert_int_equal(st.up_fails[0], 0);
    query1(&e, "c.test", false, &r);
    assert_reply(&r, "c.test", DNS_RCODE_NOERROR, 1);
    assert_int_equal(count(ctl1, "c.test", ""), 1); /* sequential: server 1 again */
    assert_int_equal(count(ctl2, "c.test", ""), 0);
    assert_int_equal(st.all_down, 0);
    env_free(&e);
}

/* Both down: queries are still sent (one upstream at random), counted as all_down. */
static void test_all_down_still_tries(void **state)
{
    reset_servers();
    ctl(ctl1, "mode * silent");
    ctl(ctl2, "mode * silent");
    struct env e;
    env_new(
        &e,
        corefile(
            "forward . 127.0.0.1:%u 127.0.0.1:%u {\n max_fails 1\n health_check 0.2s no_rec\n}\n",
            port1, port2),
        0.3, 0.7);
    struct res r;
    query1(&e, "a.test", false, &r);
    assert_int_equal(r.st, FWD_FAILED);
    if (!wait_for(&e, 8, both_down)) fail_msg("both servers never marked down");
    assert_string_equal(last_field(ctl1, ".", "rd"), "0"); /* no_rec */
    /* probes (`.`) stay unanswered; b.test is answered again by both */
    ctl(ctl1, "mode b.test normal");
    ctl(ctl2, "mode b.test normal");
    query1(&e, "b.test", false, &r);
    assert_reply(&r, "b.test", DNS_RCODE_NOERROR, 1);
    assert_int_equal(count(ctl1, "b.test", "") + count(ctl2, "b.test", ""), 1);
    struct fwd_stats st;
    fwd_stats(e.f, &st);
    assert_true(st.all_down >= 1);
    assert_true(both_down(&e));
    env_free(&e);
}

/* max_fails 0: never probed, never down. */
static void test_max_fails_zero(void **state)
{
    reset_servers();
    ctl(ctl1, "mode * silent");
    struct env e;
    env_new(&e,
            corefile("forward . 127.0.0.1:%u 127.0.0.1:%u {\n policy sequential\n max_fails 0\n}\n",
                     port1, port2),
            0.3, 3);
    struct res r;
    for (int i = 0; i < 2; i++) {
        query1(&e, i ? "b.test" : "a.test", false, &r);
        assert_reply(&r, i ? "b.test" : "a.test", DNS_RCODE_NOERROR, 1);
    }
    assert_int_equal(count(ctl1, "b.test", ""), 1); /* still asked first */
    struct fwd_stats st;
    fwd_stats(e.f, &st);
    assert_int_equal(st.hc_sent[0], 0);
    assert_int_equal(st.up_down[0], 0);
    assert_int_equal(ns_probes(ctl1), 0);
    env_free(&e);
}

/* ---- max_concurrent, except ---- */

static void test_max_concurrent(void **state)
{
    reset_servers();
    ctl(ctl1, "mode a.test slow 1500");
    struct env e;
    env_new(&e,
            corefile("forward . 127.0.0.1:%u {\n max_concurrent 1\n except skip.test\n}\n", port1),
            3, 5);
    struct cquery ca, cb;
    make_query(&ca, "a.test", true, false, false);
    make_query(&cb, "b.test", true, false, false);
    struct res ra, rb;
    ask(&e, &ca, false, &ra);
    ask(&e, &cb, false, &rb); /* refused at once: the callback already ran */
    assert_int_equal(rb.calls, 1);
    assert_int_equal(rb.st, FWD_REFUSED);
    run(&e, 5);
    assert_int_equal(ra.calls, 1);
    assert_reply(&ra, "a.test", DNS_RCODE_NOERROR, 1);
    assert_int_equal(count(ctl1, "b.test", ""), 0);
    struct fwd_stats st;
    fwd_stats(e.f, &st);
    assert_int_equal(st.refused, 1);
    assert_int_equal(st.failures, 0);
    /* the slot is free again */
    query1(&e, "b.test", false, &rb);
    assert_reply(&rb, "b.test", DNS_RCODE_NOERROR, 1);

    /* except: not handled (the server does not call fwd_query for it) */
    struct cquery cs;
    make_query(&cs, "a.SKIP.test", true, false, false);
    assert_false(fwd_handles(e.f, &cs.q));
    assert_true(fwd_handles(e.f, &ca.q));
    env_free(&e);
}

/* ---- pooled TCP connections (expire) ---- */

static void test_tcp_pool_and_expire(void **state)
{
    reset_servers();
    struct env e;
    env_new(&e, corefile("forward . 127.0.0.1:%u {\n force_tcp\n expire 1s\n}\n", port1), 1, 3);
    struct res r;
    query1(&e, "a.test", false, &r);
    assert_reply(&r, "a.test", DNS_RCODE_NOERROR, 1);
    query1(&e, "b.test", false, &r);
    assert_reply(&r, "b.test", DNS_RCODE_NOERROR, 1);
    char from_a[64];
    snprintf(from_a, sizeof from_a, "%s", last_field(ctl1, "a.test", "from"));
    assert_string_equal(last_field(ctl1, "b.test", "from"), from_a); /* one connection */
    assert_int_equal(count(ctl1, "b.test", "tcp"), 1);
    struct fwd_stats st;
    fwd_stats(e.f, &st);
    assert_int_equal(st.tcp_connects, 1);
    assert_int_equal(st.tcp_reused, 1);
    assert_int_equal(st.tcp_expired, 0);

    /* unused for `expire`: closed; the next query connects anew */
    ev_timer idle;
    ev_timer_init(&idle, on_tick, 1.6, 0.);
    ev_timer_start(e.loop, &idle);
    double end = mono() + 1.6;
    while (mono() < end) ev_run(e.loop, EVRUN_ONCE);
    fwd_stats(e.f, &st);
    assert_int_equal(st.tcp_expired, 1);
    query1(&e, "c.test", false, &r);
    assert_reply(&r, "c.test", DNS_RCODE_NOERROR, 1);
    assert_string_not_equal(last_field(ctl1, "c.test", "from"), from_a);
    fwd_stats(e.f, &st);
    assert_int_equal(st.tcp_connects, 2);
    env_free(&e);

    /* expire 0: no pooling */
    reset_servers();
    env_new(&e, corefile("forward . 127.0.0.1:%u {\n force_tcp\n expire 0\n}\n", port1), 1, 3);
    query1(&e, "a.test", false, &r);
    query1(&e, "b.test", false, &r);
    assert_reply(&r, "b.test", DNS_RCODE_NOERROR, 1);
    fwd_stats(e.f, &st);
    assert_int_equal(st.tcp_connects, 2);
    assert_int_equal(st.tcp_reused, 0);
    env_free(&e);
}

int main(void)
{
    const char *p1 = getenv("FW_PORT1"), *p2 = getenv("FW_PORT2");
    const char *c1 = getenv("FW_CTL1"), *c2 = getenv("FW_CTL2"), *v6 = getenv("FW_V6");
    if (!p1 || !p2 || !c1 || !c2) {
        fprintf(stderr, "FW_PORT1, FW_PORT2, FW_CTL1, FW_CTL2 must be set (forward.sh)\n");
        return 2;
    }
    port1 = (unsigned)atoi(p1);
    port2 = (unsigned)atoi(p2);
    ctl1 = atoi(c1);
    ctl2 = atoi(c2);
    have_v6 = v6 && strcmp(v6, "1") == 0;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relay_and_our_query),
        cmocka_unit_test(test_udp_source_ports_rotate),
        cmocka_unit_test(test_late_reply_dropped),
        cmocka_unit_test(test_tc_retried_over_tcp),
        cmocka_unit_test(test_force_tcp_and_client_proto),
        cmocka_unit_test(test_ipv6_upstream),
        cmocka_unit_test(test_silent_fails_over),
        cmocka_unit_test(test_both_silent_fail_in_time),
        cmocka_unit_test(test_refused_fails_fast),
        cmocka_unit_test(test_wrong_question_dropped),
        cmocka_unit_test(test_wrong_id_dropped),
        cmocka_unit_test(test_garbage_dropped),
        cmocka_unit_test(test_wrong_id_over_tcp_dropped),
        cmocka_unit_test(test_wrong_question_over_tcp_dropped),
        cmocka_unit_test(test_servfail_relayed),
        cmocka_unit_test(test_round_robin),
        cmocka_unit_test(test_random),
        cmocka_unit_test(test_sequential),
        cmocka_unit_test(test_coalescing),
        cmocka_unit_test(test_query_from_callback),
        cmocka_unit_test(test_free_with_pending),
        cmocka_unit_test(test_health_down_and_back),
        cmocka_unit_test(test_all_down_still_tries),
        cmocka_unit_test(test_max_fails_zero),
        cmocka_unit_test(test_max_concurrent),
        cmocka_unit_test(test_tcp_pool_and_expire),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
