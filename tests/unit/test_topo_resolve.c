/* tests/unit/test_topo_resolve.c — the stub resolver of src/topology/resolve.c.
 *
 * Files (hosts, resolv.conf) are temp files; DNS servers are sockets of this test on
 * loopback that read the resolver's queries and answer them by hand, so every rule (search
 * order, ndots, RFC 5452 checks, TC -> TCP, next nameserver, deadline, cancel) is checked
 * byte for byte without any outside server. The libev loop is real.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
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

#include "dns/dns.h"
#include "topology/topology.h"

/* ---- fixtures: temp files, loop, callback results ---- */

#define TMPF_MAX 8
static char tmp_paths[TMPF_MAX][64];
static int ntmp;

static const char *tmp_file(const char *content)
{
    assert_true(ntmp < TMPF_MAX);
    char *path = tmp_paths[ntmp++];
    snprintf(path, 64, "/tmp/rc-resolve-test.XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(content);
    assert_int_equal(write(fd, content, len), (ssize_t)len);
    close(fd);
    return path;
}

static int teardown(void **state)
{
    for (int i = 0; i < ntmp; i++) unlink(tmp_paths[i]);
    ntmp = 0;
    return 0;
}

struct res {
    int calls;
    bool ok;
    struct topo_addrs addrs;
    struct resp_err err;
};

static void on_result(void *priv, const struct topo_addrs *addrs, const struct resp_err *err)
{
    struct res *r = priv;
    r->calls++;
    r->ok = addrs != NULL;
    if (addrs) {
        assert_null(err);
        assert_true(addrs->n >= 1 && addrs->n <= TOPO_ADDRS_MAX);
        r->addrs = *addrs;
    } else {
        assert_non_null(err);
        r->err = *err;
    }
}

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs the loop until the callback ran or `secs` passed. */
static void pump(struct ev_loop *loop, struct res *r, double secs)
{
    double end = mono() + secs;
    while (r->calls == 0 && mono() < end) {
        ev_run(loop, EVRUN_NOWAIT);
        usleep(500);
    }
}

static void pump_for(struct ev_loop *loop, double secs)
{
    double end = mono() + secs;
    while (mono() < end) {
        ev_run(loop, EVRUN_NOWAIT);
        usleep(500);
    }
}

static struct topo_resolver *new_resolver(struct ev_loop *loop, const char *ns, const char *resolv,
                                          const char *hosts, uint16_t conf_port, double timeout)
{
    struct topo_resolver_opts o = {0};
    o.nameserver = ns;
    o.resolv_conf = resolv ? resolv : "/nonexistent/resolv.conf";
    o.hosts_file = hosts ? hosts : "/nonexistent/hosts";
    o.resolv_conf_port = conf_port;
    o.timeout = timeout;
    struct resp_err err = {0};
    struct topo_resolver *r = topo_resolver_new(loop, &o, &err);
    if (!r) fail_msg("topo_resolver_new: %s", err.msg);
    return r;
}

static void addr_text(const struct topo_addrs *a, size_t i, char *out, size_t cap, uint16_t *port)
{
    const struct sockaddr_storage *ss = &a->addr[i];
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in4 = (const void *)ss;
        assert_int_equal(a->len[i], sizeof *in4);
        inet_ntop(AF_INET, &in4->sin_addr, out, (socklen_t)cap);
        *port = ntohs(in4->sin_port);
    } else {
        const struct sockaddr_in6 *in6 = (const void *)ss;
        assert_int_equal(ss->ss_family, AF_INET6);
        assert_int_equal(a->len[i], sizeof *in6);
        inet_ntop(AF_INET6, &in6->sin6_addr, out, (socklen_t)cap);
        *port = ntohs(in6->sin6_port);
    }
}

/* The result holds exactly the addresses of `want` (NULL-terminated), in order, on port. */
static void assert_addrs(const struct res *r, uint16_t port, const char *const *want)
{
    if (!r->ok) fail_msg("lookup failed: %s", r->err.msg);
    size_t n = 0;
    while (want[n]) n++;
    assert_int_equal(r->addrs.n, n);
    for (size_t i = 0; i < n; i++) {
        char ip[INET6_ADDRSTRLEN];
        uint16_t p;
        addr_text(&r->addrs, i, ip, sizeof ip, &p);
        assert_string_equal(ip, want[i]);
        assert_int_equal(p, port);
    }
}

static void assert_err(const struct res *r, const char *part)
{
    assert_int_equal(r->calls, 1);
    if (r->ok) fail_msg("lookup succeeded, expected an error with \"%s\"", part);
    assert_int_equal(r->err.kind, RESP_EK_CONNECTION);
    if (!strstr(r->err.msg, part)) fail_msg("\"%s\" lacks \"%s\"", r->err.msg, part);
}

/* ---- a hand-driven DNS server on loopback ---- */

struct fake {
    int udp, tcp;
    uint16_t port;
};

/* UDP and TCP on ip:port (port 0: any port free for both). False when taken. */
static bool fake_try_open(struct fake *f, const char *ip, uint16_t port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, ip, &sa.sin_addr);
    f->udp = socket(AF_INET, SOCK_DGRAM, 0);
    f->tcp = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(f->udp >= 0 && f->tcp >= 0);
    int one = 1;
    setsockopt(f->tcp, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    socklen_t sl = sizeof sa;
    if (bind(f->udp, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        getsockname(f->udp, (struct sockaddr *)&sa, &sl) != 0 ||
        bind(f->tcp, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(f->tcp, 4) != 0) {
        close(f->udp);
        close(f->tcp);
        return false;
    }
    f->port = ntohs(sa.sin_port);
    return true;
}

static void fake_open(struct fake *f, const char *ip, uint16_t port)
{
    /* the UDP port picked by the kernel may be taken for TCP by another test: pick again */
    for (int i = 0; i < 100; i++)
        if (fake_try_open(f, ip, port)) return;
    fail_msg("no free port on %s", ip);
}

static void fake_close(struct fake *f)
{
    close(f->udp);
    close(f->tcp);
}

struct fq {
    uint8_t buf[600];
    size_t len;
    struct sockaddr_storage from;
    socklen_t fromlen;
    uint16_t id, qtype, flags, qend;
    bool edns;
    char qname[DNS_NAME_TEXT_MAX];
};

static void fq_parse(struct fq *q)
{
    struct dns_rr rrs[4];
    struct dns_msg m;
    assert_int_equal(dns_msg_parse(&m, q->buf, q->len, rrs, 4), DNS_OK);
    assert_int_equal(m.count[0], 1);
    q->id = m.id;
    q->flags = m.flags;
    q->qtype = m.qtype;
    q->qend = m.qend;
    q->edns = m.has_edns;
    uint8_t wire[DNS_NAME_MAX];
    size_t wl, next;
    assert_int_equal(dns_name_unpack(q->buf, q->len, m.qname_off, wire, &wl, &next), DNS_OK);
    size_t n = dns_name_to_text(wire, wl, q->qname, sizeof q->qname - 1, false);
    q->qname[n] = '\0';
    assert_int_equal(m.qclass, DNS_C_IN);
}

/* Waits up to ms for one UDP query. */
static bool fake_recv(struct fake *f, struct fq *q, int ms)
{
    struct pollfd p = {.fd = f->udp, .events = POLLIN};
    if (poll(&p, 1, ms) != 1) return false;
    q->fromlen = sizeof q->from;
    ssize_t n =
        recvfrom(f->udp, q->buf, sizeof q->buf, 0, (struct sockaddr *)&q->from, &q->fromlen);
    assert_true(n > 0);
    q->len = (size_t)n;
    fq_parse(q);
    return true;
}

/* Receives the A and the AAAA query of one name (either order): out[0] A, out[1] AAAA. */
static void fake_recv_pair(struct fake *f, struct fq out[2])
{
    struct fq q;
    bool got[2] = {false, false};
    for (int i = 0; i < 2; i++) {
        if (!fake_recv(f, &q, 2000)) fail_msg("no query (got %d of 2)", i);
        int k = q.qtype == DNS_T_A ? 0 : 1;
        if (k == 1) assert_int_equal(q.qtype, DNS_T_AAAA);
        assert_false(got[k]);
        got[k] = true;
        out[k] = q;
    }
    assert_string_equal(out[0].qname, out[1].qname);
}

struct ans {
    const char *owner; /* NULL: the question's name */
    uint16_t type;
    const char *data; /* an IP for A/AAAA, a name for CNAME */
};

static size_t put_name(uint8_t *p, const char *text)
{
    size_t o = 0;
    while (*text) {
        const char *dot = strchr(text, '.');
        size_t l = dot ? (size_t)(dot - text) : strlen(text);
        p[o++] = (uint8_t)l;
        memcpy(p + o, text, l);
        o += l;
        text += l + (dot ? 1 : 0);
    }
    p[o++] = 0;
    return o;
}

enum { R_PLAIN = 0, R_TC = 1, R_WRONG_QNAME = 2 };

static size_t build_reply(uint8_t *out, const struct fq *q, uint16_t id, unsigned rcode, int how,
                          const struct ans *an, size_t nan)
{
    dns_put16(out, id);
    dns_put16(out + 2,
              (uint16_t)(DNS_F_QR | DNS_F_RD | DNS_F_RA | (how == R_TC ? DNS_F_TC : 0) | rcode));
    dns_put16(out + 4, 1);
    dns_put16(out + 6, (uint16_t)nan);
    dns_put16(out + 8, 0);
    dns_put16(out + 10, 0);
    size_t o = DNS_HEADER_LEN;
    if (how == R_WRONG_QNAME) {
        o += put_name(out + o, "wrong-question.invalid");
        dns_put16(out + o, q->qtype);
        dns_put16(out + o + 2, DNS_C_IN);
        o += 4;
    } else {
        memcpy(out + o, q->buf + DNS_HEADER_LEN, q->qend - DNS_HEADER_LEN);
        o += q->qend - DNS_HEADER_LEN;
    }
    for (size_t i = 0; i < nan; i++) {
        if (an[i].owner) {
            o += put_name(out + o, an[i].owner);
        } else {
            dns_put16(out + o, 0xC00C);
            o += 2;
        }
        dns_put16(out + o, an[i].type);
        dns_put16(out + o + 2, DNS_C_IN);
        dns_put32(out + o + 4, 60);
        uint8_t *rdlen = out + o + 8;
        o += 10;
        size_t rl;
        if (an[i].type == DNS_T_A) {
            assert_int_equal(inet_pton(AF_INET, an[i].data, out + o), 1);
            rl = 4;
        } else if (an[i].type == DNS_T_AAAA) {
            assert_int_equal(inet_pton(AF_INET6, an[i].data, out + o), 1);
            rl = 16;
        } else {
            rl = put_name(out + o, an[i].data);
        }
        dns_put16(rdlen, (uint16_t)rl);
        o += rl;
    }
    return o;
}

static void fake_reply_from(int fd, const struct fq *q, uint16_t id, unsigned rcode, int how,
                            const struct ans *an, size_t nan)
{
    uint8_t out[1500];
    size_t n = build_reply(out, q, id, rcode, how, an, nan);
    assert_int_equal(sendto(fd, out, n, 0, (const struct sockaddr *)&q->from, q->fromlen),
                     (ssize_t)n);
}

static void fake_reply(struct fake *f, const struct fq *q, unsigned rcode, const struct ans *an,
                       size_t nan)
{
    fake_reply_from(f->udp, q, q->id, rcode, R_PLAIN, an, nan);
}

/* ---- the fast paths: IP literals and the hosts file ---- */

static void test_ip_literals_complete_at_once(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct topo_resolver *r = new_resolver(loop, NULL, NULL, NULL, 0, 0);
    struct res a = {0};
    assert_null(topo_resolve(r, "10.1.2.3", 6379, ev_now(loop) + 1, on_result, &a));
    assert_int_equal(a.calls, 1);
    assert_addrs(&a, 6379, (const char *const[]){"10.1.2.3", NULL});

    struct res b = {0};
    assert_null(topo_resolve(r, "2001:db8::7", 7000, ev_now(loop) + 1, on_result, &b));
    assert_int_equal(b.calls, 1);
    assert_addrs(&b, 7000, (const char *const[]){"2001:db8::7", NULL});

    struct res c = {0};
    assert_null(topo_resolve(r, "fe80::1%lo", 1, ev_now(loop) + 1, on_result, &c));
    assert_int_equal(c.calls, 1);
    assert_addrs(&c, 1, (const char *const[]){"fe80::1", NULL});
    const struct sockaddr_in6 *in6 = (const void *)&c.addrs.addr[0];
    assert_int_equal(in6->sin6_scope_id, if_nametoindex("lo"));

    struct res d = {0};
    assert_null(topo_resolve(r, "fe80::2%7", 1, ev_now(loop) + 1, on_result, &d));
    in6 = (const void *)&d.addrs.addr[0];
    assert_int_equal(in6->sin6_scope_id, 7);

    /* a literal needs neither a nameserver nor time: even a past deadline works */
    struct res e = {0};
    assert_null(topo_resolve(r, "127.0.0.1", 2, ev_now(loop) - 5, on_result, &e));
    assert_addrs(&e, 2, (const char *const[]){"127.0.0.1", NULL});

    topo_resolver_free(r);
    ev_loop_destroy(loop);
}

static void test_hosts_file(void **state)
{
    const char *hosts =
        tmp_file("# a comment line with 10.9.9.9 commented.test\n"
                 "127.0.0.1\tlocalhost\n"
                 "::1 localhost ip6-localhost\n"
                 "10.0.0.5   Redis.Test redis-alias   other # trailing comment x.test\n"
                 "10.0.0.6 redis.test\r\n"
                 "2001:db8::5 redis.test\n"
                 "   \n"
                 "not-an-ip bogus.test\n"
                 "10.0.0.300 bogus.test\n"
                 "fe80::9%lo linklocal.test\n"
                 "10.0.0.7 dotted.test.\n"
                 "10.0.0.8 last.test"); /* no final newline */
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct topo_resolver *r = new_resolver(loop, NULL, NULL, hosts, 0, 0);
    double dl = ev_now(loop) + 1;

    struct res a = {0};
    assert_null(topo_resolve(r, "REDIS.test", 6379, dl, on_result, &a));
    assert_int_equal(a.calls, 1);
    assert_addrs(&a, 6379, (const char *const[]){"10.0.0.5", "10.0.0.6", "2001:db8::5", NULL});

    struct res b = {0};
    assert_null(topo_resolve(r, "redis.test.", 1, dl, on_result, &b));
    assert_addrs(&b, 1, (const char *const[]){"10.0.0.5", "10.0.0.6", "2001:db8::5", NULL});

    struct res c = {0};
    assert_null(topo_resolve(r, "redis-alias", 2, dl, on_result, &c));
    assert_addrs(&c, 2, (const char *const[]){"10.0.0.5", NULL});
    struct res c2 = {0};
    assert_null(topo_resolve(r, "other", 2, dl, on_result, &c2));
    assert_addrs(&c2, 2, (const char *const[]){"10.0.0.5", NULL});

    /* IPv4 first even when the IPv6 line comes first */
    struct res d = {0};
    assert_null(topo_resolve(r, "localhost", 3, dl, on_result, &d));
    assert_addrs(&d, 3, (const char *const[]){"127.0.0.1", "::1", NULL});

    struct res e = {0};
    assert_null(topo_resolve(r, "ip6-localhost", 3, dl, on_result, &e));
    assert_addrs(&e, 3, (const char *const[]){"::1", NULL});

    struct res f = {0};
    assert_null(topo_resolve(r, "linklocal.test", 3, dl, on_result, &f));
    assert_addrs(&f, 3, (const char *const[]){"fe80::9", NULL});
    assert_int_equal(((const struct sockaddr_in6 *)&f.addrs.addr[0])->sin6_scope_id,
                     if_nametoindex("lo"));

    struct res g = {0};
    assert_null(topo_resolve(r, "dotted.test", 3, dl, on_result, &g));
    assert_addrs(&g, 3, (const char *const[]){"10.0.0.7", NULL});
    struct res h = {0};
    assert_null(topo_resolve(r, "last.test", 3, dl, on_result, &h));
    assert_addrs(&h, 3, (const char *const[]){"10.0.0.8", NULL});

    /* not in the file (commented out, malformed lines): on to DNS, which is missing here */
    const char *absent[] = {"commented.test", "x.test", "bogus.test", "redis", "test"};
    for (size_t i = 0; i < sizeof absent / sizeof absent[0]; i++) {
        struct res z = {0};
        assert_null(topo_resolve(r, absent[i], 3, dl, on_result, &z));
        assert_err(&z, "no nameserver");
    }
    topo_resolver_free(r);
    ev_loop_destroy(loop);
}

static void test_hosts_many_addresses_capped(void **state)
{
    char text[4096] = "";
    for (int i = 0; i < 40; i++) {
        char line[64];
        snprintf(line, sizeof line, "%s10.1.0.%d many.test\n", i % 2 ? "" : " ", i + 1);
        strcat(text, line);
    }
    const char *hosts = tmp_file(text);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct topo_resolver *r = new_resolver(loop, NULL, NULL, hosts, 0, 0);
    struct res a = {0};
    assert_null(topo_resolve(r, "many.test", 9, ev_now(loop) + 1, on_result, &a));
    assert_true(a.ok);
    assert_int_equal(a.addrs.n, TOPO_ADDRS_MAX);
    char ip[64];
    uint16_t port;
    addr_text(&a.addrs, 0, ip, sizeof ip, &port);
    assert_string_equal(ip, "10.1.0.1"); /* file order kept */
    addr_text(&a.addrs, TOPO_ADDRS_MAX - 1, ip, sizeof ip, &port);
    assert_string_equal(ip, "10.1.0.16");
    topo_resolver_free(r);
    ev_loop_destroy(loop);
}

/* ---- errors known at once ---- */

static void test_no_nameserver(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct topo_resolver *r = new_resolver(loop, NULL, "/nonexistent/resolv.conf", NULL, 0, 0);
    struct res a = {0};
    assert_null(topo_resolve(r, "redis.test", 6379, ev_now(loop) + 1, on_result, &a));
    assert_err(&a, "resolve redis.test: no nameserver: /nonexistent/resolv.conf missing and no "
                   "resolver set");
    topo_resolver_free(r);

    const char *conf = tmp_file("# nothing useful\nsearch a.test\nnameserver bogus\n");
    r = new_resolver(loop, NULL, conf, NULL, 0, 0);
    struct res b = {0};
    assert_null(topo_resolve(r, "redis.test", 6379, ev_now(loop) + 1, on_result, &b));
    assert_err(&b, "has no nameserver line and no resolver set");
    topo_resolver_free(r);
    ev_loop_destroy(loop);
}

static void test_bad_resolver_option(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    const char *bad[] = {"dns.example", "1.2.3.4:0", "1.2.3.4:99999", "", "[::1", "1.2.3.4 5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct topo_resolver_opts o = {
            .nameserver = bad[i], .resolv_conf = "/nonexistent", .hosts_file = "/nonexistent"};
        struct resp_err err = {0};
        struct topo_resolver *r = topo_resolver_new(loop, &o, &err);
        if (r) fail_msg("resolver \"%s\" accepted", bad[i]);
        assert_true(strstr(err.msg, "resolver") != NULL);
    }
    const char *good[] = {"10.0.0.10", "10.0.0.10:5353", "[::1]:5353", "::1", "fe80::1%lo"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        struct topo_resolver_opts o = {
            .nameserver = good[i], .resolv_conf = "/nonexistent", .hosts_file = "/nonexistent"};
        struct resp_err err = {0};
        struct topo_resolver *r = topo_resolver_new(loop, &o, &err);
        if (!r) fail_msg("resolver \"%s\" rejected: %s", good[i], err.msg);
        topo_resolver_free(r);
    }
    /* an unreadable hosts file that was asked for is an error (a directory here) */
    struct topo_resolver_opts o = {.resolv_conf = "/nonexistent", .hosts_file = "/tmp"};
    struct resp_err err = {0};
    assert_null(topo_resolver_new(loop, &o, &err));
    assert_non_null(strstr(err.msg, "/tmp"));
    ev_loop_destroy(loop);
}

static void test_invalid_names_and_past_deadline(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct topo_resolver *r = new_resolver(loop, "127.0.0.1:9", NULL, NULL, 0, 0);
    const char *bad[] = {"", "a..b", ".a", "a b", "a\tb", ".", "a..", "x\x01y"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct res a = {0};
        assert_null(topo_resolve(r, bad[i], 1, ev_now(loop) + 1, on_result, &a));
        assert_err(&a, "invalid host name");
    }
    char longname[300];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    struct res b = {0};
    assert_null(topo_resolve(r, longname, 1, ev_now(loop) + 1, on_result, &b));
    assert_err(&b, "invalid host name");
    for (int i = 0; i < 4; i++) longname[i * 64 + 63] = '.'; /* labels of 63, 256 bytes */
    longname[255] = '\0';
    struct res c = {0};
    assert_null(topo_resolve(r, longname, 1, ev_now(loop) + 1, on_result, &c));
    assert_err(&c, "invalid host name");

    struct res d = {0};
    assert_null(topo_resolve(r, "redis.test", 1, ev_now(loop) - 0.001, on_result, &d));
    assert_err(&d, "timed out");
    topo_resolver_free(r);
    ev_loop_destroy(loop);
}

/* ---- DNS ---- */

static void test_dns_a_and_aaaa(void **state)
{
    struct fake f;
    fake_open(&f, "127.0.0.1", 0);
    char ns[32];
    snprintf(ns, sizeof ns, "127.0.0.1:%u", f.port);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct topo_resolver *r = new_resolver(loop, ns, NULL, NULL, 0, 2);
    struct res a = {0};
    ev_now_update(loop);
    struct topo_resolve_req *req =
        topo_resolve(r, "Redis.Test", 6379, ev_now(loop) + 3, on_result, &a);
    assert_non_null(req);
    assert_int_equal(a.calls, 0);
    struct fq q[2];
    fake_recv_pair(&f, q);
    assert_string_equal(q[0].qname, "Redis.Test."); /* as given: no search list here */
    for (int i = 0; i < 2; i++) {
        assert_true(q[i].flags & DNS_F_RD);
        assert_false(q[i].flags & DNS_F_QR);
        assert_true(q[i].edns);
    }
    /* a fresh socket per query: the source ports differ */
    assert_int_not_equal(((struct sockaddr_in *)&q[0].from)->sin_port,
                         ((struct sockaddr_in *)&q[1].from)->sin_port);

    struct ans a4[] = {{NULL, DNS_T_A, "10.0.0.1"}, {NULL, DNS_T_A, "10.0.0.2"}};
    struct ans a6[] = {{NULL, DNS_T_AAAA, "2001:db8::1"}};
    fake_reply(&f, &q[1], 0, a6, 1); /* AAAA first: the result still lists A first */
    pump_for(loop, 0.02);
    assert_int_equal(a.calls, 0);
    fake_reply(&f, &q[0], 0, a4, 2);
    pump(loop, &a, 2);
    assert_int_equal(a.calls, 1);
    assert_addrs(&a, 6379, (const char *const[]){"10.0.0.1", "10.0.0.2", "2001:db8::1", NULL});
    topo_resolver_free(r);
    ev_loop_destroy(loop);
    fake_close(&f);
}

/* Expects the pair for `name`, answers both with rcode (and no records). */
static void expect_pair(struct fake *f, const char *name, unsigned rcode)
{
    struct fq q[2];
    fake_recv_pair(f, q);
    if (strcmp(q[0].qname, name) != 0) fail_msg("asked %s, expected %s", q[0].qname, name);
    fake_reply(f, &q[0], rcode, NULL, 0);
    fake_reply(f, &q[1], rcode, NULL, 0);
}

static void test_search_list_and_ndots(void **state)
{
    struct fake f;
    fake_open(&f, "127.0.0.1", 0);
    char ns[32];
    snprintf(ns, sizeof ns, "127.0.0.1:%u", f.port);
    /* the nameserver line is replaced by the resolver option; the search list stays */
    const char *conf = tmp_file("nameserver 192.0.2.1\n"
                                "domain ignored.test\n"
                                "search a.test. b.test\n"
                                "options ndots:2 timeout:1\n");
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct topo_resolver *r = new_resolver(loop, ns, conf, NULL, 0, 2);

    /* one dot < ndots 2: the search list first, the name itself last */
    struct res a = {0};
    ev_now_update(loop);
    assert_non_null(topo_resolve(r, "x.y", 1, ev_now(loop) + 5, on_result, &a));
    expect_pair(&f, "x.y.a.test.", DNS_RCODE_NXDOMAIN);
    pump_for(loop, 0.02);
    expect_pair(&f, "x.y.b.test.", DNS_RCODE_NOERROR); /* NODATA moves on as well */
    pump_for(loop, 0.02);
    struct fq q[2];
    fake_recv_pair(&f, q);
    assert_string_equal(q[0].qname, "x.y.");
    struct ans a4[] = {{NULL, DNS_T_A, "10.0.0.3"}};
    fake_reply(&f, &q[0], 0, a4, 1);
    fake_reply(&f, &q[1], 0, NULL, 0);
    pump(loop, &a, 2);
    assert_addrs(&a, 1, (const char *const[]){"10.0.0.3", NULL});

    /* two dots: as given first, then the search list; every candidate missing */
    struct res b = {0};
    ev_now_update(loop);
    assert_non_null(topo_resolve(r, "x.y.z", 1, ev_now(loop) + 5, on_result, &b));
    expect_pair(&f, "x.y.z.", DNS_RCODE_NXDOMAIN);
    pump_for(loop, 0.02);
    expect_pair(&f, "x.y.z.a.test.", DNS_RCODE_NXDOMAIN);
    pump_for(loop, 0.02);
    expect_pair(&f, "x.y.z.b.test.", DNS_RCODE_NXDOMAIN);
    pump(loop, &b, 2);
    assert_err(&b, "resolve x.y.z: NXDOMAIN");

    /* trailing dot: absolute, the search list is not used; NODATA reported as such */
    struct res c = {0};
    ev_now_update(loop);
    assert_non_null(topo_resolve(r, "single.", 1, ev_now(loop) + 5, on_result, &c));
    expect_pair(&f, "single.", DNS_RCODE_NOERROR);
    pump(loop, &c, 2);
    assert_err(&c, "resolve single.: no address records");
    struct fq extra;
    assert_false(fake_recv(&f, &extra, 50));

    topo_resolver_free(r);
    ev_loop_destroy(loop);
    fake_close(&f);
}

static void test_default_ndots_is_one(void **state)
{
    struct fake f;
    fake_open(&f, "127.0.0.1", 0);
    char ns[32];
    snprintf(ns, sizeof ns, "127.0.0.1:%u", f.port);
    const char *conf = tmp_file("search svc.test\n");
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct topo_resolver *r = new_resolver(loop, ns, conf, NULL, 0, 2);
    struct res a = {0}, b = {0};
    ev_now_update(loop);
    assert_non_null(topo_resolve(r, "redis", 1, ev_now(loop) + 5, on_result, &a));
    expect_pair(&f, "redis.svc.test.", DNS_RCODE_NXDOMAIN);
    pump_for(loop, 0.02);
    expect_pair(&f, "redis.", DNS_RCODE_NXDOMAIN);
    pump(loop, &a, 2);
    assert_err(&a, "NXDOMAIN");
    assert_non_null(topo_resolve(r, "redis.x", 1, ev_now(loop) + 5, on_result, &b));
    expect_pair(&f, "redis.x.", DNS_RCODE_NXDOMAIN);
    pump_for(loop, 0.02);
    expect_pair(&f, "redis.x.svc.test.", DNS_RCODE_NXDOMAIN);
    pump(loop, &b, 2);
    assert_err(&b, "NXDOMAIN");
    topo_resolver_free(r);
    ev_loop_destroy(loop);
    fake_close(&f);
}

static void test_cname_chain_followed(void **state)
{
    struct fake f;
    fake_open(&f, "127.0.0.1", 0);
    char ns[32];
    snprintf(ns, sizeof ns, "127.0.0.1:%u", f.port);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct topo_resolver *r = new_resolver(loop, ns, NULL, NULL, 0, 2);
    struct res a = {0};
    ev_now_update(loop);
    assert_non_null(topo_resolve(r, "alias.test", 80, ev_now(loop) + 5, on_result, &a));
    struct fq q[2];
    fake_recv_pair(&f, q);
    /* out of order on purpose, with a decoy A for another name */
    struct ans an[] = {{"mid.test", DNS_T_CNAME, "final.test"},
                       {"other.test", DNS_T_A, "10.9.9.9"},
                       {"FINAL.test", DNS_T_A, "10.0.0.42"},
                       {NULL, DNS_T_CNAME, "mid.test"}};
    fake_reply(&f, &q[0], 0, an, 4);
    /* AAAA: a CNAME to a name without records in the answer is NODATA */
    struct ans an6[] = {{NULL, DNS_T_CNAME, "nowhere.test"}};
    fake_reply(&f, &q[1], 0, an6, 1);
    pump(loop, &a, 2);
    assert_addrs(&a, 80, (const char *const[]){"10.0.0.42", NULL});
    topo_resolver_free(r);
    ev_loop_destroy(loop);
    fake_close(&f);
}

static void test_mismatched_answers_ignored(void **state)
{
    struct fake f;
    fake_open(&f, "127.0.0.1", 0);
    int other = socket(AF_INET, SOCK_DGRAM, 0); /* same IP, another port: not the server */
    char ns[32];
    snprintf(ns, sizeof ns, "127.0.0.1:%u", f.port);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct topo_resolver *r = new_resolver(loop, ns, NULL, NULL, 0, 2);
    struct res a = {0};
    ev_now_update(loop);
    assert_non_null(topo_resolve(r, "redis.test", 1, ev_now(loop) + 5, on_result, &a));
    struct fq q[2];
    fake_recv_pair(&f, q);
    struct ans bad4[] = {{NULL, DNS_T_A, "6.6.6.6"}};
    struct ans bad6[] = {{NULL, DNS_T_AAAA, "::6"}};
    for (int i = 0; i < 2; i++) {
        const struct ans *bad = i == 0 ? bad4 : bad6;
        fake_reply_from(f.udp, &q[i], (uint16_t)(q[i].id + 1), 0, R_PLAIN, bad, 1);
        fake_reply_from(f.udp, &q[i], q[i].id, 0, R_WRONG_QNAME, bad, 1);
        fake_reply_from(other, &q[i], q[i].id, 0, R_PLAIN, bad, 1);
        /* even an NXDOMAIN with a wrong ID must not end the lookup */
        fake_reply_from(f.udp, &q[i], (uint16_t)(q[i].id ^ 0x100), DNS_RCODE_NXDOMAIN, R_PLAIN,
                        NULL, 0);
    }
    /* a question of the other type for the same name */
    struct fq swapped = q[0];
    swapped.qtype = DNS_T_AAAA;
    dns_put16(swapped.buf + swapped.qend - 4, DNS_T_AAAA);
    fake_reply_from(f.udp, &swapped, q[0].id, 0, R_PLAIN, bad6, 1);
    pump_for(loop, 0.05);
    assert_int_equal(a.calls, 0);
    struct ans good[] = {{NULL, DNS_T_A, "10.0.0.1"}};
    fake_reply(&f, &q[0], 0, good, 1);
    fake_reply(&f, &q[1], 0, NULL, 0);
    pump(loop, &a, 2);
    assert_addrs(&a, 1, (const char *const[]){"10.0.0.1", NULL});
    close(other);
    topo_resolver_free(r);
    ev_loop_destroy(loop);
    fake_close(&f);
}

/* Two nameservers from resolv.conf (127.0.0.1 and 127.0.0.2, same port) */
struct two {
    struct fake f1, f2;
    const char *conf;
};

static void two_open(struct two *t, const char *options)
{
    for (int i = 0;; i++) {
        fake_open(&t->f1, "127.0.0.1", 0);
        if (fake_try_open(&t->f2, "127.0.0.2", t->f1.port)) break;
        fake_close(&t->f1);
        if (i == 100) fail_msg("no port free on both 127.0.0.1 and 127.0.0.2");
    }
    char text[200];
    snprintf(text, sizeof text, "nameserver 127.0.0.1\nnameserver 127.0.0.2\n%s\n", options);
    t->conf = tmp_file(text);
}

static void test_servfail_moves_to_next_nameserver(void **state)
{
    struct two t;
    two_open(&t, "");
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct topo_resolver *r = new_resolver(loop, NULL, t.conf, NULL, t.f1.port, 2);
    struct res a = {0};
    ev_now_update(loop);
    assert_non_null(topo_resolve(r, "redis.test", 5, ev_now(loop) + 5, on_result, &a));
    struct fq q[2];
    fake_recv_pair(&t.f1, q);
    fake_reply(&t.f1, &q[0], DNS_RCODE_SERVFAIL, NULL, 0);
    fake_reply(&t.f1, &q[1], DNS_RCODE_REFUSED, NULL, 0);
    pump_for(loop, 0.02);
    fake_recv_pair(&t.f2, q);
    struct ans a6[] = {{NULL, DNS_T_AAAA, "::1"}};
    fake_reply(&t.f2, &q[0], 0, NULL, 0);
    fake_reply(&t.f2, &q[1], 0, a6, 1);
    pump(loop, &a, 2);
    assert_addrs(&a, 5, (const char *const[]){"::1", NULL});
    topo_resolver_free(r);

    /* every server refuses, for every round: one error naming the last answer */
    r = new_resolver(loop, NULL, t.conf, NULL, t.f1.port, 2);
    struct res b = {0};
    assert_non_null(topo_resolve(r, "redis.test", 5, ev_now(loop) + 5, on_result, &b));
    for (int round = 0; round < 2; round++) {
        struct fake *fs[2] = {&t.f1, &t.f2};
        for (int s = 0; s < 2; s++) {
            fake_recv_pair(fs[s], q);
            fake_reply(fs[s], &q[0], DNS_RCODE_REFUSED, NULL, 0);
            fake_reply(fs[s], &q[1], DNS_RCODE_REFUSED, NULL, 0);
            pump_for(loop, 0.02);
        }
    }
    pump(loop, &b, 2);
    char want[64];
    snprintf(want, sizeof want, "last: REFUSED from 127.0.0.2:%u", t.f1.port);
    assert_err(&b, want);
    topo_resolver_free(r);
    ev_loop_destroy(loop);
    fake_close(&t.f1);
    fake_close(&t.f2);
}

static void test_timeouts_attempts_and_deadline(void **state)
{
    struct two t;
    two_open(&t, "options attempts:3");
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    /* first server silent: the second answers after one timeout (0.1 s) */
    struct topo_resolver *r = new_resolver(loop, NULL, t.conf, NULL, t.f1.port, 0.1);
    struct res a = {0};
    ev_now_update(loop);
    double t0 = mono();
    assert_non_null(topo_resolve(r, "redis.test", 5, ev_now(loop) + 5, on_result, &a));
    struct fq q[2];
    fake_recv_pair(&t.f1, q);
    pump_for(loop, 0.15);
    fake_recv_pair(&t.f2, q);
    assert_true(mono() - t0 >= 0.1);
    struct ans a4[] = {{NULL, DNS_T_A, "10.0.0.2"}};
    fake_reply(&t.f2, &q[0], 0, a4, 1);
    fake_reply(&t.f2, &q[1], 0, NULL, 0);
    pump(loop, &a, 2);
    assert_addrs(&a, 5, (const char *const[]){"10.0.0.2", NULL});
    topo_resolver_free(r);

    /* both silent: attempts (3, from resolv.conf) rounds over both, then "timed out" */
    r = new_resolver(loop, NULL, t.conf, NULL, t.f1.port, 0.05);
    struct res b = {0};
    ev_now_update(loop);
    assert_non_null(topo_resolve(r, "redis.test", 5, ev_now(loop) + 5, on_result, &b));
    pump(loop, &b, 3);
    assert_err(&b, "timed out");
    int n1 = 0, n2 = 0;
    struct fq x;
    while (fake_recv(&t.f1, &x, 0)) n1++;
    while (fake_recv(&t.f2, &x, 0)) n2++;
    assert_int_equal(n1, 6); /* 3 rounds x (A + AAAA) */
    assert_int_equal(n2, 6);
    topo_resolver_free(r);

    /* the deadline beats the attempts */
    r = new_resolver(loop, NULL, t.conf, NULL, t.f1.port, 1);
    struct res c = {0};
    ev_now_update(loop);
    t0 = mono();
    assert_non_null(topo_resolve(r, "redis.test", 5, ev_now(loop) + 0.2, on_result, &c));
    pump(loop, &c, 3);
    double took = mono() - t0;
    assert_err(&c, "resolve redis.test: timed out");
    assert_true(took >= 0.15 && took < 0.6);
    topo_resolver_free(r);
    while (fake_recv(&t.f1, &x, 0)) continue; /* its unanswered queries */

    /* at the deadline, a family already answered is used */
    r = new_resolver(loop, NULL, t.conf, NULL, t.f1.port, 1);
    struct res d = {0};
    ev_now_update(loop);
    assert_non_null(topo_resolve(r, "redis.test", 5, ev_now(loop) + 0.2, on_result, &d));
    fake_recv_pair(&t.f1, q);
    fake_reply(&t.f1, &q[0], 0, a4, 1); /* AAAA never answered */
    pump(loop, &d, 3);
    assert_addrs(&d, 5, (const char *const[]){"10.0.0.2", NULL});
    topo_resolver_free(r);

    ev_loop_destroy(loop);
    fake_close(&t.f1);
    fake_close(&t.f2);
}

static void test_truncated_retried_over_tcp(void **state)
{
    struct fake f;
    fake_open(&f, "127.0.0.1", 0);
    char ns[32];
    snprintf(ns, sizeof ns, "127.0.0.1:%u", f.port);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct topo_resolver *r = new_resolver(loop, ns, NULL, NULL, 0, 2);
    struct res a = {0};
    ev_now_update(loop);
    assert_non_null(topo_resolve(r, "big.test", 5, ev_now(loop) + 5, on_result, &a));
    struct fq q[2];
    fake_recv_pair(&f, q);
    fake_reply_from(f.udp, &q[0], q[0].id, 0, R_TC, NULL, 0);
    fake_reply(&f, &q[1], 0, NULL, 0);
    pump_for(loop, 0.05);
    assert_int_equal(a.calls, 0);

    struct pollfd p = {.fd = f.tcp, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 2000), 1);
    int c = accept(f.tcp, NULL, NULL);
    assert_true(c >= 0);
    uint8_t in[600];
    size_t got = 0;
    while (got < 2 || got < 2u + dns_get16(in)) {
        pump_for(loop, 0.005);
        ssize_t n = recv(c, in + got, sizeof in - got, MSG_DONTWAIT);
        if (n > 0)
            got += (size_t)n;
        else
            assert_true(n < 0 && errno == EAGAIN);
    }
    struct fq tq = {0};
    tq.len = dns_get16(in);
    memcpy(tq.buf, in + 2, tq.len);
    fq_parse(&tq);
    assert_int_equal(tq.qtype, DNS_T_A);
    assert_string_equal(tq.qname, "big.test.");
    struct ans many[20];
    char ips[20][16];
    for (int i = 0; i < 20; i++) {
        snprintf(ips[i], sizeof ips[i], "10.2.0.%d", i + 1);
        many[i] = (struct ans){NULL, DNS_T_A, ips[i]};
    }
    uint8_t out[2 + 1500];
    size_t n = build_reply(out + 2, &tq, tq.id, 0, R_PLAIN, many, 20);
    dns_put16(out, (uint16_t)n);
    /* in two writes, split inside the length prefix */
    assert_int_equal(send(c, out, 1, 0), 1);
    pump_for(loop, 0.02);
    assert_int_equal(send(c, out + 1, n + 1, 0), (ssize_t)n + 1);
    pump(loop, &a, 2);
    assert_true(a.ok);
    assert_int_equal(a.addrs.n, TOPO_ADDRS_MAX);
    char ip[64];
    uint16_t port;
    addr_text(&a.addrs, 15, ip, sizeof ip, &port);
    assert_string_equal(ip, "10.2.0.16");
    close(c);
    topo_resolver_free(r);
    ev_loop_destroy(loop);
    fake_close(&f);
}

static void test_cancel_and_free_pending(void **state)
{
    struct fake f;
    fake_open(&f, "127.0.0.1", 0);
    char ns[32];
    snprintf(ns, sizeof ns, "127.0.0.1:%u", f.port);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct topo_resolver *r = new_resolver(loop, ns, NULL, NULL, 0, 0.05);
    struct res a = {0}, b = {0}, c = {0};
    ev_now_update(loop);
    struct topo_resolve_req *ra = topo_resolve(r, "a.test", 1, ev_now(loop) + 1, on_result, &a);
    struct topo_resolve_req *rb = topo_resolve(r, "b.test", 1, ev_now(loop) + 1, on_result, &b);
    assert_non_null(ra);
    assert_non_null(rb);
    struct fq q[2];
    fake_recv_pair(&f, q);
    topo_resolve_cancel(ra);
    struct ans a4[] = {{NULL, DNS_T_A, "10.0.0.1"}};
    fake_reply(&f, &q[0], 0, a4, 1);
    fake_reply(&f, &q[1], 0, NULL, 0);
    topo_resolve_cancel(NULL);
    assert_non_null(topo_resolve(r, "c.test", 1, ev_now(loop) + 1, on_result, &c));
    pump_for(loop, 0.3); /* well past every timeout */
    assert_int_equal(a.calls, 0);
    assert_int_equal(b.calls, 1); /* b timed out on its own */
    assert_int_equal(c.calls, 1);
    struct res d = {0};
    assert_non_null(topo_resolve(r, "d.test", 1, ev_now(loop) + 1, on_result, &d));
    topo_resolver_free(r); /* d pending: no callback, nothing leaked (ASan) */
    pump_for(loop, 0.1);
    assert_int_equal(d.calls, 0);
    ev_loop_destroy(loop);
    fake_close(&f);
}

struct free_in_cb {
    struct topo_resolver *r;
    int calls;
};

static void free_resolver_cb(void *priv, const struct topo_addrs *addrs, const struct resp_err *err)
{
    struct free_in_cb *s = priv;
    s->calls++;
    topo_resolver_free(s->r);
}

static void test_callback_may_free_resolver(void **state)
{
    struct fake f;
    fake_open(&f, "127.0.0.1", 0);
    char ns[32];
    snprintf(ns, sizeof ns, "127.0.0.1:%u", f.port);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct free_in_cb s = {new_resolver(loop, ns, NULL, NULL, 0, 2), 0};
    struct res other = {0};
    ev_now_update(loop);
    assert_non_null(topo_resolve(s.r, "a.test", 1, ev_now(loop) + 2, free_resolver_cb, &s));
    assert_non_null(topo_resolve(s.r, "b.test", 1, ev_now(loop) + 2, on_result, &other));
    struct fq q[2];
    fake_recv_pair(&f, q);
    if (strcmp(q[0].qname, "a.test.") != 0) fake_recv_pair(&f, q);
    assert_string_equal(q[0].qname, "a.test.");
    fake_reply(&f, &q[0], DNS_RCODE_NXDOMAIN, NULL, 0);
    fake_reply(&f, &q[1], DNS_RCODE_NXDOMAIN, NULL, 0);
    double end = mono() + 2;
    while (s.calls == 0 && mono() < end) {
        ev_run(loop, EVRUN_NOWAIT);
        usleep(500);
    }
    assert_int_equal(s.calls, 1);
    pump_for(loop, 0.05);
    assert_int_equal(other.calls, 0); /* freed with the resolver, silently */
    ev_loop_destroy(loop);
    fake_close(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_ip_literals_complete_at_once, teardown),
        cmocka_unit_test_teardown(test_hosts_file, teardown),
        cmocka_unit_test_teardown(test_hosts_many_addresses_capped, teardown),
        cmocka_unit_test_teardown(test_no_nameserver, teardown),
        cmocka_unit_test_teardown(test_bad_resolver_option, teardown),
        cmocka_unit_test_teardown(test_invalid_names_and_past_deadline, teardown),
        cmocka_unit_test_teardown(test_dns_a_and_aaaa, teardown),
        cmocka_unit_test_teardown(test_search_list_and_ndots, teardown),
        cmocka_unit_test_teardown(test_default_ndots_is_one, teardown),
        cmocka_unit_test_teardown(test_cname_chain_followed, teardown),
        cmocka_unit_test_teardown(test_mismatched_answers_ignored, teardown),
        cmocka_unit_test_teardown(test_servfail_moves_to_next_nameserver, teardown),
        cmocka_unit_test_teardown(test_timeouts_attempts_and_deadline, teardown),
        cmocka_unit_test_teardown(test_truncated_retried_over_tcp, teardown),
        cmocka_unit_test_teardown(test_cancel_and_free_pending, teardown),
        cmocka_unit_test_teardown(test_callback_may_free_resolver, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
