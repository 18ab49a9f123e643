/* tests/unit/test_server_forward.c — the `forward` directive (fwd_opts_parse): FROM, the TO
 * forms (IP, IP:port, dns://, [v6]:port, bare IPv6, resolv.conf files), policies,
 * force_tcp / prefer_udp, max_fails, health_check, expire, max_concurrent, except (and
 * fwd_handles, REFUSED beyond max_concurrent), options not supported yet, limits and errors with
 * their lines; and fwd_new / fwd_query argument checks. The network side is
 * tests/integration/forward.sh. */
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
#include <unistd.h>
#include <cmocka.h>

#include "server/server.h"

struct parsed {
    struct cfg_tokens toks;
    struct cfg_cursor c;
    struct fwd_opts o;
    struct cfg_error err;
    int rc;
    char msg[700];
};

/* Lexes text (as file "Corefile"), points the cursor at the token `at`, parses. */
static void parse_at(struct parsed *p, const char *text, size_t at)
{
    memset(p, 0, sizeof *p);
    struct cfg_error lerr;
    if (cfg_lex(&p->toks, "Corefile", text, strlen(text), &lerr) != 0)
        fail_msg("lex failed: %s", lerr.msg);
    p->c.t = &p->toks;
    p->c.pos = at;
    fwd_opts_init(&p->o);
    p->rc = fwd_opts_parse(&p->c, &p->o, &p->err);
    if (p->rc != 0) cfg_error_format(&p->err, p->msg, sizeof p->msg);
}

static void parse(struct parsed *p, const char *text)
{
    parse_at(p, text, 0);
}

static void done(struct parsed *p)
{
    cfg_tokens_free(&p->toks);
}

static void assert_ok(struct parsed *p, const char *text)
{
    parse(p, text);
    if (p->rc != 0) fail_msg("\"%s\" rejected: %s", text, p->msg);
}

/* Rejected with "Corefile:LINE: forward: ..." containing `why`. */
static void assert_rejects(const char *text, unsigned line, const char *why)
{
    struct parsed p;
    parse(&p, text);
    if (p.rc == 0) fail_msg("\"%s\" accepted", text);
    assert_int_equal(p.rc, -1);
    char want[64];
    snprintf(want, sizeof want, "Corefile:%u: forward: ", line);
    if (strncmp(p.msg, want, strlen(want)) != 0)
        fail_msg("\"%s\": message \"%s\" does not start with \"%s\"", text, p.msg, want);
    if (!strstr(p.msg, why)) fail_msg("\"%s\": message \"%s\" lacks \"%s\"", text, p.msg, why);
    done(&p);
}

static void assert_v4(const struct fwd_upstream *u, const char *ip, uint16_t port, const char *name)
{
    assert_int_equal(u->addr.ss_family, AF_INET);
    assert_int_equal(u->addrlen, sizeof(struct sockaddr_in));
    const struct sockaddr_in *in = (const struct sockaddr_in *)&u->addr;
    char buf[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &in->sin_addr, buf, sizeof buf);
    assert_string_equal(buf, ip);
    assert_int_equal(ntohs(in->sin_port), port);
    assert_string_equal(u->name, name);
}

static void assert_v6(const struct fwd_upstream *u, const char *ip, uint16_t port, const char *name)
{
    assert_int_equal(u->addr.ss_family, AF_INET6);
    assert_int_equal(u->addrlen, sizeof(struct sockaddr_in6));
    const struct sockaddr_in6 *in = (const struct sockaddr_in6 *)&u->addr;
    char buf[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, &in->sin6_addr, buf, sizeof buf);
    assert_string_equal(buf, ip);
    assert_int_equal(ntohs(in->sin6_port), port);
    assert_string_equal(u->name, name);
}

/* ---- defaults and the simple forms ---- */

static void test_defaults(void **state)
{
    struct fwd_opts o;
    memset(&o, 0xA5, sizeof o);
    fwd_opts_init(&o);
    assert_int_equal(o.nup, 0);
    assert_int_equal(o.policy, FWD_POLICY_RANDOM);
    assert_false(o.force_tcp);
    assert_false(o.prefer_udp);
    assert_true(o.try_timeout == 2.0);
    assert_true(o.total_timeout == 5.0);
    assert_int_equal(o.max_fails, 2);
    assert_true(o.health_check == 0.5);
    assert_false(o.hc_no_rec);
    assert_string_equal(o.hc_domain, ".");
    assert_true(o.expire == 10.0);
    assert_int_equal(o.max_concurrent, 0);
    assert_int_equal(o.nexcept, 0);
}

static void test_ip(void **state)
{
    struct parsed p;
    assert_ok(&p, "forward . 127.0.0.1\n");
    assert_string_equal(p.o.from, ".");
    assert_int_equal(p.o.nup, 1);
    assert_v4(&p.o.up[0], "127.0.0.1", 53, "127.0.0.1:53");
    assert_int_equal(p.o.policy, FWD_POLICY_RANDOM);
    assert_false(p.o.force_tcp);
    assert_false(p.o.prefer_udp);
    assert_string_equal(p.o.file, "Corefile");
    assert_int_equal(p.o.line, 1);
    assert_int_equal(p.c.pos, p.toks.n);
    done(&p);
}

static void test_ip_port_and_scheme(void **state)
{
    struct parsed p;
    assert_ok(&p, "forward example.org 10.0.0.1:5353 dns://10.0.0.2 DNS://10.0.0.3:54\n");
    assert_string_equal(p.o.from, "example.org.");
    assert_int_equal(p.o.nup, 3);
    assert_v4(&p.o.up[0], "10.0.0.1", 5353, "10.0.0.1:5353");
    assert_v4(&p.o.up[1], "10.0.0.2", 53, "10.0.0.2:53");
    assert_v4(&p.o.up[2], "10.0.0.3", 54, "10.0.0.3:54");
    done(&p);
}

static void test_ipv6(void **state)
{
    struct parsed p;
    assert_ok(&p, "forward . [::1]:5353 ::1 dns://[2001:db8::1]:53 2001:db8::53\n");
    assert_int_equal(p.o.nup, 4);
    assert_v6(&p.o.up[0], "::1", 5353, "[::1]:5353");
    assert_v6(&p.o.up[1], "::1", 53, "[::1]:53");
    assert_v6(&p.o.up[2], "2001:db8::1", 53, "[2001:db8::1]:53");
    assert_v6(&p.o.up[3], "2001:db8::53", 53, "[2001:db8::53]:53");
    done(&p);
}

static void test_from_forms(void **state)
{
    struct parsed p;
    assert_ok(&p, "forward Example.ORG. 1.1.1.1\n");
    assert_string_equal(p.o.from, "example.org.");
    done(&p);
    assert_ok(&p, "forward dns://Sub.Example.org 1.1.1.1\n");
    assert_string_equal(p.o.from, "sub.example.org.");
    done(&p);
    assert_ok(&p, "forward dns://. 1.1.1.1\n");
    assert_string_equal(p.o.from, ".");
    done(&p);
    assert_rejects("forward exa..mple 1.1.1.1\n", 1, "empty label");
    assert_rejects("forward 10.0.0.0/8 1.1.1.1\n", 1, "not a domain name");
    assert_rejects("forward \"\" 1.1.1.1\n", 1, "empty FROM");
}

/* ---- resolv.conf ---- */

static char *write_temp(const char *content)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/fwd-resolv.XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
    close(fd);
    return path;
}

static void test_resolv_conf(void **state)
{
    char *path = write_temp("# a comment\n"
                            "search example.com corp.example\n"
                            "nameserver 192.0.2.1\n"
                            "  nameserver\t2001:db8::2 # trailing comment\n"
                            "; another comment\n"
                            "options ndots:2\n"
                            "nameserver 192.0.2.3\n");
    char text[256];
    snprintf(text, sizeof text, "forward . 127.0.0.1:5300 %s\n", path);
    struct parsed p;
    assert_ok(&p, text);
    assert_int_equal(p.o.nup, 4);
    assert_v4(&p.o.up[0], "127.0.0.1", 5300, "127.0.0.1:5300");
    assert_v4(&p.o.up[1], "192.0.2.1", 53, "192.0.2.1:53");
    assert_v6(&p.o.up[2], "2001:db8::2", 53, "[2001:db8::2]:53");
    assert_v4(&p.o.up[3], "192.0.2.3", 53, "192.0.2.3:53");
    done(&p);
    unlink(path);
}

static void test_resolv_conf_errors(void **state)
{
    char text[256];
    char *path = write_temp("search example.com\n# nameserver 1.2.3.4\n");
    snprintf(text, sizeof text, "forward . %s\n", path);
    assert_rejects(text, 1, "no nameservers found");
    unlink(path);

    path = write_temp("nameserver not-an-ip\n");
    snprintf(text, sizeof text, "\nforward . %s\n", path);
    assert_rejects(text, 2, "bad nameserver \"not-an-ip\"");
    unlink(path);

    assert_rejects("forward . /nonexistent/resolv.conf\n", 1, "not an IP address or a file");
    assert_rejects("forward . /tmp\n", 1, "not a regular file");
    /* dns:// is always an address, never a file */
    path = write_temp("nameserver 192.0.2.1\n");
    snprintf(text, sizeof text, "forward . dns://%s\n", path);
    assert_rejects(text, 1, "not an IP address");
    unlink(path);
}

/* ---- policies and flags ---- */

static void test_policies(void **state)
{
    static const struct {
        const char *name;
        enum fwd_policy want;
    } cases[] = {
        {"random", FWD_POLICY_RANDOM},
        {"round_robin", FWD_POLICY_ROUND_ROBIN},
        {"sequential", FWD_POLICY_SEQUENTIAL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[128];
        snprintf(text, sizeof text, "forward . 1.1.1.1 2.2.2.2 {\n    policy %s\n}\n",
                 cases[i].name);
        struct parsed p;
        assert_ok(&p, text);
        assert_int_equal(p.o.policy, cases[i].want);
        assert_int_equal(p.o.nup, 2);
        assert_int_equal(p.c.pos, p.toks.n);
        done(&p);
    }
    assert_rejects("forward . 1.1.1.1 {\n  policy least_used\n}\n", 2,
                   "unknown policy \"least_used\"");
    assert_rejects("forward . 1.1.1.1 {\n  policy\n}\n", 2, "policy takes one of");
    assert_rejects("forward . 1.1.1.1 {\n\n  policy random sequential\n}\n", 3,
                   "policy takes one of");
}

static void test_force_tcp_prefer_udp(void **state)
{
    struct parsed p;
    assert_ok(&p, "forward . 1.1.1.1 {\n  force_tcp\n}\n");
    assert_true(p.o.force_tcp);
    assert_false(p.o.prefer_udp);
    done(&p);
    assert_ok(&p, "forward . 1.1.1.1 {\n  prefer_udp\n}\n");
    assert_false(p.o.force_tcp);
    assert_true(p.o.prefer_udp);
    done(&p);
    /* both: accepted, force_tcp wins at query time (CoreDNS) */
    assert_ok(&p, "forward . 1.1.1.1 { force_tcp\n prefer_udp\n policy sequential }\n");
    assert_true(p.o.force_tcp);
    assert_true(p.o.prefer_udp);
    assert_int_equal(p.o.policy, FWD_POLICY_SEQUENTIAL);
    done(&p);
    assert_rejects("forward . 1.1.1.1 {\n  force_tcp yes\n}\n", 2, "force_tcp takes no arguments");
    assert_rejects("forward . 1.1.1.1 {\n  prefer_udp 1\n}\n", 2, "prefer_udp takes no arguments");
}

/* ---- what is not supported yet, and other errors ---- */

static void test_not_supported_yet(void **state)
{
    static const char *const opts[] = {
        "tls cert key ca",   "tls_servername dns.example",
        "next NXDOMAIN",     "failfast_all_unhealthy_upstreams",
        "failover SERVFAIL",
    };
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        char text[160], why[80];
        snprintf(text, sizeof text, "forward . 1.1.1.1 {\n  policy random\n  %s\n}\n", opts[i]);
        size_t n = strcspn(opts[i], " ");
        snprintf(why, sizeof why, "forward: %.*s is not supported yet", (int)n, opts[i]);
        assert_rejects(text, 3, why);
    }
    assert_rejects("forward . tls://9.9.9.9\n", 1, "tls:// upstreams are not supported yet");
}

/* ---- max_fails, health_check, expire, max_concurrent, except ---- */

static void test_max_fails_max_concurrent(void **state)
{
    struct parsed p;
    assert_ok(&p, "forward . 1.1.1.1 {\n max_fails 5\n max_concurrent 1000\n}\n");
    assert_int_equal(p.o.max_fails, 5);
    assert_int_equal(p.o.max_concurrent, 1000);
    done(&p);
    assert_ok(&p, "forward . 1.1.1.1 {\n max_fails 0\n max_concurrent 0\n}\n");
    assert_int_equal(p.o.max_fails, 0);
    assert_int_equal(p.o.max_concurrent, 0);
    done(&p);
    assert_ok(&p, "forward . 1.1.1.1 {\n max_fails 4294967295\n}\n");
    assert_int_equal(p.o.max_fails, 4294967295u);
    done(&p);
    assert_rejects("forward . 1.1.1.1 {\n max_fails\n}\n", 2, "max_fails takes one number");
    assert_rejects("forward . 1.1.1.1 {\n max_fails 1 2\n}\n", 2, "max_fails takes one number");
    assert_rejects("forward . 1.1.1.1 {\n max_fails -1\n}\n", 2, "max_fails: bad number \"-1\"");
    assert_rejects("forward . 1.1.1.1 {\n\n max_fails x\n}\n", 3, "bad number \"x\"");
    assert_rejects("forward . 1.1.1.1 {\n max_fails 4294967296\n}\n", 2, "bad number");
    assert_rejects("forward . 1.1.1.1 {\n max_concurrent 1.5\n}\n", 2,
                   "max_concurrent: bad number \"1.5\"");
    assert_rejects("forward . 1.1.1.1 {\n max_concurrent -3\n}\n", 2, "bad number \"-3\"");
    assert_rejects("forward . 1.1.1.1 {\n max_concurrent\n}\n", 2,
                   "max_concurrent takes one number");
}

static void test_durations(void **state)
{
    static const struct {
        const char *text;
        double secs;
    } ok[] = {{"0", 0},        {"500ms", 0.5}, {"1.5s", 1.5},      {"2s", 2},
              {"1m30s", 90},   {"1h", 3600},   {"250000us", 0.25}, {"0s", 0},
              {"100ns", 1e-7}, {".5s", 0.5},   {"1h1m1s", 3661}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char text[160];
        snprintf(text, sizeof text, "forward . 1.1.1.1 {\n expire %s\n health_check %s\n}\n",
                 ok[i].text, ok[i].text);
        struct parsed p;
        assert_ok(&p, text);
        if (!(p.o.expire > ok[i].secs - 1e-9 && p.o.expire < ok[i].secs + 1e-9))
            fail_msg("%s: expire %g", ok[i].text, p.o.expire);
        if (!(p.o.health_check > ok[i].secs - 1e-9 && p.o.health_check < ok[i].secs + 1e-9))
            fail_msg("%s: health_check %g", ok[i].text, p.o.health_check);
        done(&p);
    }
    static const char *const bad[] = {"5",   "1.5", "s",  "5x",  "1e3s", "0x10s",
                                      "inf", "5 s", "ms", "1s2", "nan"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[160];
        snprintf(text, sizeof text, "forward . 1.1.1.1 {\n expire \"%s\"\n}\n", bad[i]);
        assert_rejects(text, 2, "expire: bad duration");
        snprintf(text, sizeof text, "forward . 1.1.1.1 {\n\n health_check \"%s\"\n}\n", bad[i]);
        assert_rejects(text, 3, "health_check: bad duration");
    }
    assert_rejects("forward . 1.1.1.1 {\n expire -1s\n}\n", 2, "expire can't be negative");
    assert_rejects("forward . 1.1.1.1 {\n health_check -1s\n}\n", 2,
                   "health_check can't be negative");
    assert_rejects("forward . 1.1.1.1 {\n expire\n}\n", 2, "expire takes one duration");
    assert_rejects("forward . 1.1.1.1 {\n expire 1s 2s\n}\n", 2, "expire takes one duration");
    assert_rejects("forward . 1.1.1.1 {\n health_check\n}\n", 2,
                   "health_check takes DURATION [no_rec] [domain NAME]");
}

static void test_health_check_options(void **state)
{
    struct parsed p;
    assert_ok(&p, "forward . 1.1.1.1 {\n health_check 1s no_rec domain Example.ORG\n}\n");
    assert_true(p.o.health_check == 1.0);
    assert_true(p.o.hc_no_rec);
    assert_string_equal(p.o.hc_domain, "example.org.");
    done(&p);
    assert_ok(&p, "forward . 1.1.1.1 {\n health_check 2s domain a.b. no_rec\n}\n");
    assert_true(p.o.hc_no_rec);
    assert_string_equal(p.o.hc_domain, "a.b.");
    done(&p);
    /* a later health_check line starts over: RD and "." again */
    assert_ok(&p, "forward . 1.1.1.1 {\n health_check 2s no_rec domain a.b\n health_check 3s\n}\n");
    assert_true(p.o.health_check == 3.0);
    assert_false(p.o.hc_no_rec);
    assert_string_equal(p.o.hc_domain, ".");
    done(&p);
    assert_rejects("forward . 1.1.1.1 {\n health_check 1s domain\n}\n", 2,
                   "health_check: domain needs a name");
    assert_rejects("forward . 1.1.1.1 {\n health_check 1s domain a..b\n}\n", 2,
                   "health_check: bad domain \"a..b\"");
    assert_rejects("forward . 1.1.1.1 {\n health_check 1s recursion\n}\n", 2,
                   "health_check: unknown option \"recursion\"");
}

static void test_except(void **state)
{
    struct parsed p;
    assert_ok(&p, "forward . 1.1.1.1 {\n except Example.org b.test.\n except dns://c.test\n}\n");
    assert_int_equal(p.o.nexcept, 3);
    assert_string_equal(p.o.except[0], "example.org.");
    assert_string_equal(p.o.except[1], "b.test.");
    assert_string_equal(p.o.except[2], "c.test.");
    done(&p);
    assert_rejects("forward . 1.1.1.1 {\n except\n}\n", 2, "except takes at least one zone");
    assert_rejects("forward . 1.1.1.1 {\n except a.test\n except b..test\n}\n", 3,
                   "except: bad zone \"b..test\"");
    assert_rejects("forward . 1.1.1.1 {\n except a/b\n}\n", 2, "except: bad zone");
    char text[2048];
    size_t n = (size_t)snprintf(text, sizeof text, "forward . 1.1.1.1 {\n except");
    for (int i = 0; i <= FWD_EXCEPT_MAX; i++)
        n += (size_t)snprintf(text + n, sizeof text - n, " z%d.test", i);
    snprintf(text + n, sizeof text - n, "\n}\n");
    assert_rejects(text, 2, "more than 32 except zones");
}

/* A question for `name` (dotted, any case). */
static void question(struct dns_question *q, const char *name)
{
    memset(q, 0, sizeof *q);
    size_t o = 0;
    const char *s = name;
    while (*s) {
        size_t l = strcspn(s, ".");
        q->name[o] = (uint8_t)l;
        memcpy(q->name + o + 1, s, l);
        o += 1 + l;
        s += l;
        if (*s == '.') s++;
    }
    q->name[o++] = 0;
    q->name_len = (uint16_t)o;
    for (size_t i = 0; i < o; i++)
        q->name_lc[i] =
            (uint8_t)((q->name[i] >= 'A' && q->name[i] <= 'Z') ? q->name[i] + 32 : q->name[i]);
    q->qtype = DNS_T_A;
    q->qclass = DNS_C_IN;
}

static void test_handles(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct parsed p;
    assert_ok(&p, "forward example.org 1.1.1.1 {\n except skip.example.org other.net\n}\n");
    char why[128];
    struct fwd *f = fwd_new(loop, &p.o, why, sizeof why);
    assert_non_null(f);
    struct dns_question q;
    question(&q, "www.Example.ORG");
    assert_true(fwd_handles(f, &q));
    question(&q, "example.org");
    assert_true(fwd_handles(f, &q));
    question(&q, "skip.example.org");
    assert_false(fwd_handles(f, &q));
    question(&q, "a.SKIP.example.org");
    assert_false(fwd_handles(f, &q));
    question(&q, "noskip.example.org");
    assert_true(fwd_handles(f, &q));
    question(&q, "other.net"); /* not under FROM */
    assert_false(fwd_handles(f, &q));
    question(&q, "xexample.org");
    assert_false(fwd_handles(f, &q));
    question(&q, "org");
    assert_false(fwd_handles(f, &q));
    fwd_free(f);
    done(&p);

    /* FROM excepted: only FROM itself is still taken (CoreDNS's isAllowedDomain) */
    assert_ok(&p, "forward example.org 1.1.1.1 {\n except example.org\n}\n");
    f = fwd_new(loop, &p.o, why, sizeof why);
    question(&q, "Example.org");
    assert_true(fwd_handles(f, &q));
    question(&q, "www.example.org");
    assert_false(fwd_handles(f, &q));
    fwd_free(f);
    done(&p);

    /* `.` takes everything but the excepted zones */
    assert_ok(&p, "forward . 1.1.1.1 {\n except lan\n}\n");
    f = fwd_new(loop, &p.o, why, sizeof why);
    question(&q, "a.lan");
    assert_false(fwd_handles(f, &q));
    question(&q, "LAN");
    assert_false(fwd_handles(f, &q));
    question(&q, "a.lanx");
    assert_true(fwd_handles(f, &q));
    question(&q, "");
    assert_true(fwd_handles(f, &q));
    assert_false(fwd_handles(NULL, &q));
    fwd_free(f);
    done(&p);
    ev_loop_destroy(loop);
}

static void on_refused(void *priv, enum fwd_status st, const uint8_t *resp, size_t len)
{
    int *calls = priv;
    (*calls)++;
    assert_int_equal(st, FWD_REFUSED);
    assert_null(resp);
    assert_int_equal(len, 0);
}

static void on_never(void *priv, enum fwd_status st, const uint8_t *resp, size_t len)
{
    int *calls = priv;
    (*calls)++;
}

/* max_concurrent 2 against a black hole (no loop run): the third query is refused at once;
 * a coalesced one counts too. */
static void test_max_concurrent_refused(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct parsed p;
    assert_ok(&p, "forward . 192.0.2.1 {\n max_concurrent 2\n}\n");
    char why[128];
    struct fwd *f = fwd_new(loop, &p.o, why, sizeof why);
    assert_non_null(f);
    struct dns_question q1, q2;
    question(&q1, "a.test");
    question(&q2, "b.test");
    int c1 = 0, c2 = 0, c3 = 0, c4 = 0;
    assert_int_equal(fwd_query(f, &q1, 1, false, on_never, &c1), 0);
    assert_int_equal(fwd_query(f, &q1, 1, false, on_never, &c2), 0); /* coalesced: counts */
    assert_int_equal(fwd_query(f, &q2, 2, false, on_refused, &c3), 0);
    assert_int_equal(c3, 1);
    assert_int_equal(fwd_query(f, &q1, 1, false, on_refused, &c4), 0);
    assert_int_equal(c4, 1);
    struct fwd_stats st;
    fwd_stats(f, &st);
    assert_int_equal(st.refused, 2);
    assert_int_equal(st.coalesced, 1);
    assert_int_equal(c1 + c2, 0);
    fwd_free(f);
    assert_int_equal(c1, 1);
    assert_int_equal(c2, 1);
    done(&p);
    ev_loop_destroy(loop);
}

static void test_errors(void **state)
{
    assert_rejects("forward\n", 1, "expected FROM and at least one TO");
    assert_rejects("forward .\n", 1, "expected FROM and at least one TO");
    assert_rejects("\n\nforward . {\n}\n", 3, "expected FROM and at least one TO");
    assert_rejects("forward . 1.1.1.1 {\n  frobnicate\n}\n", 2, "unknown property \"frobnicate\"");
    assert_rejects("forward . 1.1.1.1 {\n  policy random {\n  }\n}\n", 2, "takes no block");
    assert_rejects("forward . 1.1.1.1 {\n  force_tcp\n", 1, "block is not closed");
    assert_rejects("forward . https://1.1.1.1\n", 1, "unsupported protocol");
    assert_rejects("forward . dns.google\n", 1, "bad upstream \"dns.google\"");
    assert_rejects("forward . 1.2.3\n", 1, "bad upstream \"1.2.3\"");
    assert_rejects("forward . 1.1.1.1:99999\n", 1, "bad upstream");
    assert_rejects("forward . 1.1.1.1:0\n", 1, "bad upstream");
    assert_rejects("forward . [1.1.1.1]:53\n", 1, "bad upstream");
    assert_rejects("forward . 1.1.1.1\\\n  2.2.2.2 x\n", 2, "bad upstream \"x\"");
}

static void test_upstream_limit(void **state)
{
    char text[1024];
    size_t o = (size_t)snprintf(text, sizeof text, "forward .");
    for (int i = 1; i <= FWD_UPSTREAMS_MAX; i++)
        o += (size_t)snprintf(text + o, sizeof text - o, " 10.0.0.%d", i);
    snprintf(text + o, sizeof text - o, "\n");
    struct parsed p;
    assert_ok(&p, text);
    assert_int_equal(p.o.nup, FWD_UPSTREAMS_MAX);
    assert_v4(&p.o.up[14], "10.0.0.15", 53, "10.0.0.15:53");
    done(&p);

    text[strlen(text) - 1] = '\0';
    strcat(text, " 10.0.0.16\n");
    assert_rejects(text, 1, "more than 15 upstreams");

    /* a resolv.conf that brings the count over the limit */
    char *path = write_temp("nameserver 192.0.2.1\nnameserver 192.0.2.2\n");
    o = (size_t)snprintf(text, sizeof text, "forward .");
    for (int i = 1; i < FWD_UPSTREAMS_MAX; i++)
        o += (size_t)snprintf(text + o, sizeof text - o, " 10.0.0.%d", i);
    snprintf(text + o, sizeof text - o, " %s\n", path);
    assert_rejects(text, 1, "more than 15 upstreams");
    unlink(path);
}

/* ---- the cursor: where parsing leaves it ---- */

static void test_cursor_after(void **state)
{
    struct parsed p;
    parse_at(&p, "cache 30\nforward . 1.1.1.1\nlog\n", 2);
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.o.line, 2);
    assert_true(cfg_is(cfg_cur(&p.c), "log"));
    done(&p);

    parse_at(&p, "forward . 1.1.1.1 {\n force_tcp\n}\nerrors\n", 0);
    assert_int_equal(p.rc, 0);
    assert_true(cfg_is(cfg_cur(&p.c), "errors"));
    done(&p);

    /* inside a server block: the block's closing brace is left to the caller */
    parse_at(&p, ".:53 {\n  forward . 1.1.1.1 }\n", 2);
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.o.nup, 1);
    assert_true(cfg_is_close(cfg_cur(&p.c)));
    done(&p);
}

/* ---- fwd_new / fwd_query argument checks ---- */

static int calls, requery_rc;
static struct fwd *cur_fwd;
static void count_cb(void *priv, enum fwd_status st, const uint8_t *resp, size_t len)
{
    calls++;
    assert_int_equal(st, FWD_FAILED);
    assert_null(resp);
    assert_int_equal(len, 0);
    /* a query started from a callback inside fwd_free is refused */
    if (priv) requery_rc = fwd_query(cur_fwd, priv, 1, false, count_cb, priv);
}

static void test_new_and_query_args(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    assert_non_null(loop);
    struct fwd_opts o;
    fwd_opts_init(&o);
    char err[128] = "";
    assert_null(fwd_new(loop, &o, err, sizeof err));
    assert_non_null(strstr(err, "no upstreams"));

    struct parsed p;
    assert_ok(&p, "forward . 127.0.0.1:9\n");
    p.o.try_timeout = 0;
    assert_null(fwd_new(loop, &p.o, err, sizeof err));
    assert_non_null(strstr(err, "timeouts must be > 0"));
    p.o.try_timeout = 1;
    struct fwd *f = fwd_new(loop, &p.o, err, sizeof err);
    assert_non_null(f);

    struct dns_question q;
    memset(&q, 0, sizeof q);
    calls = 0;
    assert_int_equal(fwd_query(f, &q, 1, false, count_cb, NULL), -1); /* no name */
    q.name_len = 1;
    assert_int_equal(fwd_query(f, &q, 1, false, NULL, NULL), -1);
    assert_int_equal(calls, 0);

    /* a pending query completes with FWD_FAILED when the instance is freed */
    q.qtype = DNS_T_A;
    q.qclass = DNS_C_IN;
    cur_fwd = f;
    requery_rc = 0;
    assert_int_equal(fwd_query(f, &q, 1, false, count_cb, NULL), 0);
    assert_int_equal(fwd_query(f, &q, 1, false, count_cb, &q), 0);
    assert_int_equal(calls, 0);
    struct fwd_stats st;
    fwd_stats(f, &st);
    assert_int_equal(st.coalesced, 1);
    fwd_free(f);
    assert_int_equal(calls, 2);
    assert_int_equal(requery_rc, -1);
    done(&p);
    ev_loop_destroy(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_ip),
        cmocka_unit_test(test_ip_port_and_scheme),
        cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_from_forms),
        cmocka_unit_test(test_resolv_conf),
        cmocka_unit_test(test_resolv_conf_errors),
        cmocka_unit_test(test_policies),
        cmocka_unit_test(test_force_tcp_prefer_udp),
        cmocka_unit_test(test_not_supported_yet),
        cmocka_unit_test(test_max_fails_max_concurrent),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_health_check_options),
        cmocka_unit_test(test_except),
        cmocka_unit_test(test_handles),
        cmocka_unit_test(test_max_concurrent_refused),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_upstream_limit),
        cmocka_unit_test(test_cursor_after),
        cmocka_unit_test(test_new_and_query_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
