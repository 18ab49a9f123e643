/* tests/integration/itest_resolve.c — topo_resolve against real DNS servers (testdns.py),
 * on a real libev loop. Driven by tests/integration/resolve.sh, which starts:
 *
 *   server 1: 127.0.0.1 and ::1, port RS_PORT, control RS_CTL1 (answers normally)
 *   server 2: 127.0.0.2, the same port, control RS_CTL2 (each test sets its misbehaviour)
 *   optionally server 53: RS_DNS53 (an address) port 53, for resolv.conf without a port
 *
 * with the zone test. (redis A 127.0.0.1 + AAAA ::1, cname -> redis, big with 100 A records,
 * v6only AAAA ::1). RS_TMP is a scratch directory.
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

#include "topology/topology.h"

static uint16_t port;
static int ctl1, ctl2;
static const char *dns53;
static const char *tmpdir;

/* ---- helpers ---- */

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One control command to testdns; returns its reply line (static buffer). */
static const char *ctl(int ctlport, const char *fmt, ...)
{
    static char reply[256];
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

static long count(int ctlport, const char *name, const char *type, const char *proto)
{
    const char *reply = *proto ? ctl(ctlport, "count %s %s %s", name, type, proto)
                               : ctl(ctlport, "count %s %s", name, type);
    return strtol(reply, NULL, 10);
}

static void reset_servers(void)
{
    ctl(ctl1, "reset");
    ctl(ctl2, "reset");
}

static const char *write_tmp(const char *name, const char *text)
{
    static char paths[8][512];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, 512, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return p;
}

struct res {
    int calls;
    bool ok;
    struct topo_addrs addrs;
    struct resp_err err;
    double took;
};

static void on_result(void *priv, const struct topo_addrs *addrs, const struct resp_err *err)
{
    struct res *r = priv;
    r->calls++;
    r->ok = addrs != NULL;
    if (addrs)
        r->addrs = *addrs;
    else
        r->err = *err;
}

struct env {
    struct ev_loop *loop;
    struct topo_resolver *r;
};

static void env_new(struct env *e, const char *ns, const char *resolv, const char *hosts,
                    uint16_t conf_port, double timeout, int attempts)
{
    e->loop = ev_loop_new(EVFLAG_AUTO);
    struct topo_resolver_opts o = {.nameserver = ns,
                                   .resolv_conf = resolv ? resolv : "/nonexistent/resolv.conf",
                                   .hosts_file = hosts ? hosts : "/nonexistent/hosts",
                                   .timeout = timeout,
                                   .attempts = attempts,
                                   .resolv_conf_port = conf_port};
    struct resp_err err = {0};
    e->r = topo_resolver_new(e->loop, &o, &err);
    if (!e->r) fail_msg("topo_resolver_new: %s", err.msg);
}

static void env_free(struct env *e)
{
    topo_resolver_free(e->r);
    ev_loop_destroy(e->loop);
}

static void run_until(struct env *e, struct res *r, double secs)
{
    double end = mono() + secs;
    while (r->calls == 0 && mono() < end) {
        ev_run(e->loop, EVRUN_NOWAIT);
        usleep(300);
    }
}

/* Resolves host and waits for the answer (at most the deadline + 1 s). */
static void resolve(struct env *e, const char *host, double deadline_in, struct res *r)
{
    memset(r, 0, sizeof *r);
    ev_now_update(e->loop);
    double t0 = mono();
    topo_resolve(e->r, host, 6379, ev_now(e->loop) + deadline_in, on_result, r);
    run_until(e, r, deadline_in + 1);
    r->took = mono() - t0;
    assert_int_equal(r->calls, 1);
}

static void assert_addrs(const struct res *r, const char *const *want)
{
    if (!r->ok) fail_msg("lookup failed: %s", r->err.msg);
    size_t n = 0;
    while (want[n]) n++;
    assert_int_equal(r->addrs.n, n);
    for (size_t i = 0; i < n; i++) {
        char ip[INET6_ADDRSTRLEN];
        const struct sockaddr_storage *ss = &r->addrs.addr[i];
        uint16_t p;
        if (ss->ss_family == AF_INET) {
            const struct sockaddr_in *in4 = (const void *)ss;
            inet_ntop(AF_INET, &in4->sin_addr, ip, sizeof ip);
            p = ntohs(in4->sin_port);
        } else {
            const struct sockaddr_in6 *in6 = (const void *)ss;
            inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
            p = ntohs(in6->sin6_port);
        }
        assert_string_equal(ip, want[i]);
        assert_int_equal(p, 6379);
    }
}

static void assert_err(const struct res *r, const char *part)
{
    if (r->ok) fail_msg("lookup succeeded, expected \"%s\"", part);
    assert_int_equal(r->err.kind, RESP_EK_CONNECTION);
    if (!strstr(r->err.msg, part)) fail_msg("\"%s\" lacks \"%s\"", r->err.msg, part);
}

static const char *const REDIS[] = {"127.0.0.1", "::1", NULL};

static const char *ns1(void)
{
    static char s[32];
    snprintf(s, sizeof s, "127.0.0.1:%u", port);
    return s;
}

static const char *ns2(void)
{
    static char s[32];
    snprintf(s, sizeof s, "127.0.0.2:%u", port);
    return s;
}

/* resolv.conf listing server 2 first, then server 1 (the same port, given separately) */
static const char *two_servers_conf(void)
{
    return write_tmp("resolv.two", "nameserver 127.0.0.2\nnameserver 127.0.0.1\n");
}

/* ---- tests ---- */

static void test_resolver_option(void **state)
{
    reset_servers();
    struct env e;
    env_new(&e, ns1(), NULL, NULL, 0, 1, 0);
    struct res r;
    resolve(&e, "redis.test", 2, &r);
    assert_addrs(&r, REDIS);
    assert_int_equal(count(ctl1, "redis.test", "A", "udp"), 1);
    assert_int_equal(count(ctl1, "redis.test", "AAAA", "udp"), 1);
    resolve(&e, "REDIS.Test.", 2, &r);
    assert_addrs(&r, REDIS);
    resolve(&e, "v6only.test", 2, &r);
    assert_addrs(&r, (const char *const[]){"::1", NULL});
    env_free(&e);

    char v6[40];
    snprintf(v6, sizeof v6, "[::1]:%u", port);
    env_new(&e, v6, NULL, NULL, 0, 1, 0);
    resolve(&e, "redis.test", 2, &r);
    assert_addrs(&r, REDIS);
    env_free(&e);
}

static void test_cname(void **state)
{
    struct env e;
    env_new(&e, ns1(), NULL, NULL, 0, 1, 0);
    struct res r;
    resolve(&e, "cname.test", 2, &r);
    assert_addrs(&r, REDIS);
    env_free(&e);
}

static void test_truncated_goes_tcp(void **state)
{
    reset_servers();
    struct env e;
    env_new(&e, ns1(), NULL, NULL, 0, 1, 0);
    struct res r;
    resolve(&e, "big.test", 3, &r);
    assert_true(r.ok);
    assert_int_equal(r.addrs.n, TOPO_ADDRS_MAX);
    assert_int_equal(count(ctl1, "big.test", "A", "udp"), 1);
    assert_int_equal(count(ctl1, "big.test", "A", "tcp"), 1);
    assert_int_equal(count(ctl1, "big.test", "AAAA", "tcp"), 0);

    /* the tc mode: TC over UDP for a small answer too */
    ctl(ctl1, "mode redis.test tc");
    resolve(&e, "redis.test", 3, &r);
    assert_addrs(&r, REDIS);
    assert_int_equal(count(ctl1, "redis.test", "*", "tcp"), 2);
    ctl(ctl1, "mode redis.test normal");
    env_free(&e);
}

static void test_nxdomain(void **state)
{
    struct env e;
    env_new(&e, ns1(), NULL, NULL, 0, 1, 0);
    struct res r;
    resolve(&e, "nx.test", 2, &r);
    assert_err(&r, "resolve nx.test: NXDOMAIN");
    assert_true(r.took < 0.5);
    env_free(&e);
}

static void test_search_and_ndots(void **state)
{
    reset_servers();
    const char *conf =
        write_tmp("resolv.search", "search sub.test test\noptions ndots:2 attempts:1\n");
    struct env e;
    env_new(&e, ns1(), conf, NULL, 0, 1, 0);
    struct res r;
    resolve(&e, "redis", 2, &r);
    assert_addrs(&r, REDIS);
    assert_int_equal(count(ctl1, "redis.sub.test", "A", "udp"), 1);
    assert_int_equal(count(ctl1, "redis.test", "A", "udp"), 1);
    assert_int_equal(count(ctl1, "redis", "*", "udp"), 0); /* found before the bare name */

    /* "redis.test" has 1 dot < ndots 2: the search list first, found as itself last */
    reset_servers();
    resolve(&e, "redis.test", 2, &r);
    assert_addrs(&r, REDIS);
    assert_int_equal(count(ctl1, "redis.test.sub.test", "A", "udp"), 1);
    assert_int_equal(count(ctl1, "redis.test.test", "A", "udp"), 1);
    assert_int_equal(count(ctl1, "redis.test", "A", "udp"), 1);

    /* a trailing dot: only the name itself */
    reset_servers();
    resolve(&e, "redis.test.", 2, &r);
    assert_addrs(&r, REDIS);
    assert_int_equal(count(ctl1, "*", "*", "udp"), 2);
    env_free(&e);
}

static void test_hosts_file_wins(void **state)
{
    reset_servers();
    const char *hosts = write_tmp("hosts", "# test hosts\n127.0.0.9 Redis.Test redis-alias\n");
    struct env e;
    env_new(&e, ns1(), NULL, hosts, 0, 1, 0);
    struct res r;
    resolve(&e, "redis.test", 2, &r);
    assert_addrs(&r, (const char *const[]){"127.0.0.9", NULL});
    resolve(&e, "redis-alias", 2, &r);
    assert_addrs(&r, (const char *const[]){"127.0.0.9", NULL});
    assert_int_equal(count(ctl1, "*", "*", ""), 0);
    /* a name not in the file still goes to DNS */
    resolve(&e, "cname.test", 2, &r);
    assert_addrs(&r, REDIS);
    env_free(&e);
}

static void test_dead_first_nameserver(void **state)
{
    reset_servers();
    ctl(ctl2, "mode * silent");
    struct env e;
    env_new(&e, NULL, two_servers_conf(), NULL, port, 0.3, 0);
    struct res r;
    resolve(&e, "redis.test", 3, &r);
    assert_addrs(&r, REDIS);
    assert_true(r.took >= 0.29 && r.took < 1.5);
    assert_int_equal(count(ctl2, "redis.test", "A", "udp"), 1);
    assert_int_equal(count(ctl1, "redis.test", "A", "udp"), 1);
    env_free(&e);
    ctl(ctl2, "mode * normal");
}

static void test_servfail_and_refused_move_on_at_once(void **state)
{
    const char *modes[] = {"servfail", "refused"};
    for (int i = 0; i < 2; i++) {
        reset_servers();
        ctl(ctl2, "mode redis.test %s", modes[i]);
        struct env e;
        env_new(&e, NULL, two_servers_conf(), NULL, port, 3, 0);
        struct res r;
        resolve(&e, "redis.test", 5, &r);
        assert_addrs(&r, REDIS);
        assert_true(r.took < 1); /* no timeout waited */
        assert_int_equal(count(ctl2, "redis.test", "A", "udp"), 1);
        env_free(&e);
        ctl(ctl2, "reset");
    }
}

static void test_forged_answers_ignored(void **state)
{
    const char *modes[] = {"wrong_id", "wrong_question", "garbage"};
    for (int i = 0; i < 3; i++) {
        reset_servers();
        ctl(ctl2, "mode redis.test %s", modes[i]);
        struct env e;
        /* server 2 misbehaves: its answers are dropped, it times out, server 1 answers */
        env_new(&e, NULL, two_servers_conf(), NULL, port, 0.3, 0);
        struct res r;
        resolve(&e, "redis.test", 3, &r);
        assert_addrs(&r, REDIS);
        assert_true(r.took >= 0.29);
        assert_int_equal(count(ctl2, "redis.test", "A", "udp"), 1);
        env_free(&e);

        /* server 2 alone: nothing acceptable ever comes */
        env_new(&e, ns2(), NULL, NULL, 0, 0.2, 2);
        resolve(&e, "redis.test", 3, &r);
        assert_err(&r, "timed out");
        assert_true(r.took >= 0.39 && r.took < 1.5);
        assert_int_equal(count(ctl2, "redis.test", "A", "udp"), 1 + 2);
        env_free(&e);
    }
    ctl(ctl2, "reset");
}

static void test_silent_server_deadline(void **state)
{
    reset_servers();
    ctl(ctl2, "mode * silent");
    struct env e;
    env_new(&e, ns2(), NULL, NULL, 0, 5, 0);
    struct res r;
    resolve(&e, "redis.test", 0.4, &r);
    assert_err(&r, "resolve redis.test: timed out");
    assert_true(r.took >= 0.38 && r.took < 0.9);
    env_free(&e);
    ctl(ctl2, "reset");
}

static void test_cancel(void **state)
{
    reset_servers();
    ctl(ctl2, "mode * slow 100");
    struct env e;
    env_new(&e, ns2(), NULL, NULL, 0, 1, 0);
    struct res r = {0};
    ev_now_update(e.loop);
    struct topo_resolve_req *req =
        topo_resolve(e.r, "redis.test", 6379, ev_now(e.loop) + 2, on_result, &r);
    assert_non_null(req);
    run_until(&e, &r, 0.03);
    assert_int_equal(r.calls, 0);
    topo_resolve_cancel(req);
    run_until(&e, &r, 0.4); /* the slow answers arrive to closed sockets */
    assert_int_equal(r.calls, 0);
    assert_int_equal(count(ctl2, "redis.test", "*", "udp"), 2);

    /* cancel right after the call, and free with one pending */
    req = topo_resolve(e.r, "cname.test", 6379, ev_now(e.loop) + 2, on_result, &r);
    assert_non_null(req);
    topo_resolve_cancel(req);
    struct res r2 = {0};
    assert_non_null(topo_resolve(e.r, "cname.test", 6379, ev_now(e.loop) + 2, on_result, &r2));
    env_free(&e);
    assert_int_equal(r.calls + r2.calls, 0);
    ctl(ctl2, "reset");
}

static void test_resolv_conf_port_53(void **state)
{
    if (!dns53 || !*dns53) {
        print_message("skip: no test DNS server on port 53 (port taken or not root)\n");
        skip();
    }
    char text[128];
    snprintf(text, sizeof text, "nameserver %s\n", dns53);
    struct env e;
    env_new(&e, NULL, write_tmp("resolv.53", text), NULL, 0, 1, 0);
    struct res r;
    resolve(&e, "redis.test", 2, &r);
    assert_addrs(&r, REDIS);
    env_free(&e);
}

static void test_no_nameserver(void **state)
{
    struct env e;
    env_new(&e, NULL, NULL, NULL, 0, 1, 0);
    struct res r;
    resolve(&e, "redis.test", 2, &r);
    assert_err(&r, "no nameserver: /nonexistent/resolv.conf missing and no resolver set");
    resolve(&e, "127.0.0.1", 2, &r);
    assert_addrs(&r, (const char *const[]){"127.0.0.1", NULL});
    env_free(&e);
}

int main(void)
{
    const char *p = getenv("RS_PORT"), *c1 = getenv("RS_CTL1"), *c2 = getenv("RS_CTL2");
    tmpdir = getenv("RS_TMP");
    dns53 = getenv("RS_DNS53");
    if (!p || !c1 || !c2 || !tmpdir) {
        fprintf(stderr, "itest_resolve: run through tests/integration/resolve.sh\n");
        return 1;
    }
    port = (uint16_t)atoi(p);
    ctl1 = atoi(c1);
    ctl2 = atoi(c2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resolver_option),
        cmocka_unit_test(test_cname),
        cmocka_unit_test(test_truncated_goes_tcp),
        cmocka_unit_test(test_nxdomain),
        cmocka_unit_test(test_search_and_ndots),
        cmocka_unit_test(test_hosts_file_wins),
        cmocka_unit_test(test_dead_first_nameserver),
        cmocka_unit_test(test_servfail_and_refused_move_on_at_once),
        cmocka_unit_test(test_forged_answers_ignored),
        cmocka_unit_test(test_silent_server_deadline),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_resolv_conf_port_53),
        cmocka_unit_test(test_no_nameserver),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
