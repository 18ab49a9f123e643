/* tests/unit/test_server_forward.c — the `forward` directive (fwd_opts_parse): FROM, the TO
 * forms (IP, IP:port, dns://, [v6]:port, bare IPv6, resolv.conf files), policies,
 * force_tcp / prefer_udp, options not supported yet, limits and errors with their lines;
 * and fwd_new / fwd_query argument checks. The network side is tests/integration/forward.sh. */
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
        "except example.org",         "expire 10s",          "max_fails 3",
        "health_check 0.5s",          "max_concurrent 1000", "tls cert key ca",
        "tls_servername dns.example", "next NXDOMAIN",       "failfast_all_unhealthy_upstreams",
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
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_upstream_limit),
        cmocka_unit_test(test_cursor_after),
        cmocka_unit_test(test_new_and_query_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
