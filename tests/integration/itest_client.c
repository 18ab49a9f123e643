/* tests/integration/itest_client.c — the public rc_client (include/redis_cache.h) end to end
 * against real servers started by tests/integration/client.sh (ports, pids, directories in
 * RC_* variables):
 *
 *   - a hostname endpoint resolved through `resolver` = the test DNS server (testdns.py):
 *     the query reaches it, an unknown name fails with reason "connection" naming the name,
 *     and after a restart of Redis at a new address (the A record changed) the client
 *     resolves the name again and follows it;
 *   - TLS: server-only with tls_ca, the system store against a private CA, mTLS with and
 *     without a client certificate, a certificate for another name (verify_hostname on/off,
 *     an unrelated CA with verify_hostname off), verify_chain off, a TLS client against a
 *     plaintext port, and a hostname from DNS checked against the certificate;
 *   - an ACL user with its password (and a wrong password, and none), and `db 3` (client.sh
 *     then checks the key with redis-cli -n 3).
 *
 * Every failure must come back through the callback with a reason of the seed's buckets:
 * TLS and resolution failures are "connection", RESP errors (NOAUTH, WRONGPASS) "other".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <cmocka.h>

#include <ev.h>

#include "redis_cache.h"

/* ---- environment -------------------------------------------------------------------- */

static const char *env(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v) fail_msg("environment variable %s is not set (run through client.sh)", name);
    return v;
}

static int env_int(const char *name)
{
    return atoi(env(name));
}

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char str_buf[16][512];
static int str_next;

/* printf into one of a ring of static buffers (valid for the next 15 calls). */
static const char *fmt(const char *f, ...)
{
    char *b = str_buf[str_next++ % 16];
    va_list ap;
    va_start(ap, f);
    vsnprintf(b, sizeof str_buf[0], f, ap);
    va_end(ap);
    return b;
}

static const char *tls_file(const char *name)
{
    return fmt("%s/%s", env("RC_TLS_DIR"), name);
}

/* ---- the test DNS server's control channel ------------------------------------------ */

static const char *dns_ctl(const char *f, ...)
{
    static char reply[256];
    char line[256];
    va_list ap;
    va_start(ap, f);
    vsnprintf(line, sizeof line - 1, f, ap);
    va_end(ap);
    strcat(line, "\n");
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)env_int("RC_DNS_CTL"))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) fail_msg("testdns control port");
    assert_int_equal(write(fd, line, strlen(line)), (ssize_t)strlen(line));
    size_t n = 0;
    while (n < sizeof reply - 1) {
        ssize_t got = read(fd, reply + n, 1);
        if (got <= 0 || reply[n] == '\n') break;
        n++;
    }
    reply[n] = '\0';
    close(fd);
    if (strncmp(reply, "err", 3) == 0) fail_msg("testdns: %s-> %s", line, reply);
    return reply;
}

static long dns_count(const char *name, const char *type)
{
    return strtol(dns_ctl("count %s %s", name, type), NULL, 10);
}

/* ---- a loop and synchronous commands ------------------------------------------------ */

struct res {
    int done;
    int type; /* 0: no reply (a failure) */
    char reason[16];
    char text[512];
    double took, started;
};

static void res_cb(void *priv, const struct rc_reply *r, const char *reason, const char *errmsg)
{
    struct res *x = priv;
    x->done++;
    x->took = mono() - x->started;
    x->type = r ? r->type : 0;
    snprintf(x->reason, sizeof x->reason, "%s", reason ? reason : "");
    if (errmsg)
        snprintf(x->text, sizeof x->text, "%s", errmsg);
    else if (r && r->str)
        snprintf(x->text, sizeof x->text, "%.*s", (int)r->len, r->str);
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents) {}

static void run_until(struct ev_loop *loop, const int *flag, double secs)
{
    ev_timer t;
    ev_timer_init(&t, tick_cb, 0.01, 0.01);
    ev_timer_start(loop, &t);
    double end = mono() + secs;
    while (!*flag && mono() < end) ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &t);
}

static void run_for(struct ev_loop *loop, double secs)
{
    int never = 0;
    run_until(loop, &never, secs);
}

/* Splits `line` on spaces into a command, runs it to completion (exactly one callback). */
static void cmd(struct ev_loop *loop, struct rc_client *c, bool write, const char *line,
                struct res *x)
{
    char copy[256];
    snprintf(copy, sizeof copy, "%s", line);
    const char *argv[16];
    size_t lens[16], argc = 0;
    for (char *save = NULL, *tok = strtok_r(copy, " ", &save); tok && argc < 16;
         tok = strtok_r(NULL, " ", &save)) {
        argv[argc] = tok;
        lens[argc++] = strlen(tok);
    }
    memset(x, 0, sizeof *x);
    x->started = mono();
    assert_int_equal(rc_client_command(c, write, argc, argv, lens, res_cb, x), 0);
    run_until(loop, &x->done, 10);
    assert_int_equal(x->done, 1);
}

/* The command succeeds with a reply of `type` whose text is `text` (NULL: not checked). */
static void expect_ok(struct ev_loop *loop, struct rc_client *c, bool write, const char *line,
                      int type, const char *text)
{
    struct res x;
    cmd(loop, c, write, line, &x);
    if (x.reason[0]) fail_msg("%s: failed (%s): %s", line, x.reason, x.text);
    assert_int_equal(x.type, type);
    if (text) assert_string_equal(x.text, text);
}

/* The command fails with no reply, reason `reason`, and a message containing `part`. */
static void expect_fail(struct ev_loop *loop, struct rc_client *c, const char *line,
                        const char *reason, const char *part)
{
    struct res x;
    cmd(loop, c, false, line, &x);
    if (x.type != 0)
        fail_msg("%s: expected a failure, got reply type %d \"%s\"", line, x.type, x.text);
    if (strcmp(x.reason, reason) != 0)
        fail_msg("%s: reason \"%s\" (%s), expected \"%s\"", line, x.reason, x.text, reason);
    if (part && !strstr(x.text, part)) fail_msg("%s: \"%s\" lacks \"%s\"", line, x.text, part);
}

/* Generous budgets for what must work (ASan, a busy machine); failures come back sooner. */
static void config(struct rc_client_config *cfg, const char *endpoint)
{
    rc_client_config_init(cfg);
    cfg->endpoint = endpoint;
    cfg->connect_timeout = 2;
    cfg->read_timeout = 3;
    cfg->write_timeout = 3;
    cfg->pool.wait_timeout = 3;
}

static struct rc_client *client(struct ev_loop *loop, const struct rc_client_config *cfg)
{
    char err[256];
    struct rc_client *c = rc_client_new(loop, cfg, err, sizeof err);
    if (!c) fail_msg("rc_client_new: %s", err);
    return c;
}

static struct rc_node_stats node0(const struct rc_client *c)
{
    struct rc_node_stats st[2];
    assert_int_equal(rc_client_nodes(c, st, 2), 1);
    return st[0];
}

static const char *resolver(void)
{
    return fmt("127.0.0.1:%d", env_int("RC_DNS_PORT"));
}

/* ---- hostnames through `resolver` --------------------------------------------------- */

static pid_t start_redis(const char *bind, int port, const char *dir)
{
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execlp("redis-server", "redis-server", "--port", ps, "--bind", bind, "--dir", dir, "--save",
               "", "--appendonly", "no", "--daemonize", "no", "--logfile", "/dev/null",
               (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void test_hostname_through_resolver(void **state)
{
    int port = env_int("RC_HOST_PORT");
    dns_ctl("reset");
    struct ev_loop *loop = ev_loop_new(0);
    struct rc_client_config cfg;
    config(&cfg, fmt("redis.test:%d", port));
    cfg.resolver = resolver();
    struct rc_client *c = client(loop, &cfg);
    assert_string_equal(node0(c).name, fmt("redis.test:%d", port));
    expect_ok(loop, c, true, "SET itest:client:host resolved", RC_REPLY_STRING, "OK");
    expect_ok(loop, c, false, "GET itest:client:host", RC_REPLY_BULK, "resolved");
    long before = dns_count("redis.test.", "A");
    assert_true(before > 0); /* the name went to our DNS server, not elsewhere */

    /* Redis restarts at another address and the record follows it: only a client that
     * resolves the name again on reconnect can find it. */
    pid_t old = (pid_t)env_int("RC_HOST_PID");
    assert_int_equal(kill(old, SIGKILL), 0);
    for (int i = 0; i < 100 && kill(old, 0) == 0; i++) usleep(20000);
    dns_ctl("del redis.test. A");
    dns_ctl("add redis.test. 60 IN A 127.0.0.2");
    struct res x;
    cmd(loop, c, false, "GET itest:client:host", &x);
    assert_string_equal(x.reason, "connection"); /* nobody at the old address */
    const char *dir = env("RC_HOST_DIR");
    pid_t np = start_redis("127.0.0.2", port, dir);
    FILE *pf = fopen(fmt("%s/host.pid", env("RC_TMP")), "w"); /* client.sh's cleanup */
    if (pf) {
        fprintf(pf, "%d\n", (int)np);
        fclose(pf);
    }
    double t0 = mono();
    bool ok = false;
    while (!ok && mono() - t0 < 8) {
        cmd(loop, c, true, "SET itest:client:host moved", &x);
        ok = x.reason[0] == '\0';
        if (!ok) run_for(loop, 0.05);
    }
    if (!ok) fail_msg("no success after the restart at 127.0.0.2: %s (%s)", x.text, x.reason);
    print_message("# reconnected to 127.0.0.2 %.2f s after the restart\n", mono() - t0);
    expect_ok(loop, c, false, "GET itest:client:host", RC_REPLY_BULK, "moved");
    assert_true(dns_count("redis.test.", "A") > before);
    assert_string_equal(node0(c).name, fmt("redis.test:%d", port));
    rc_client_free(c);
    ev_loop_destroy(loop);
    kill(np, SIGTERM);
    waitpid(np, NULL, 0);
}

static void test_unknown_name_is_connection_error(void **state)
{
    dns_ctl("reset");
    struct ev_loop *loop = ev_loop_new(0);
    struct rc_client_config cfg;
    config(&cfg, fmt("nx.test:%d", env_int("RC_PLAIN_PORT")));
    cfg.resolver = resolver();
    cfg.read_timeout = 1;
    cfg.pool.wait_timeout = 1;
    struct rc_client *c = client(loop, &cfg); /* never fails for an unresolvable name */
    struct res x;
    for (int i = 0; i < 3; i++) {
        cmd(loop, c, i == 1, i == 1 ? "SET itest:client:nx v" : "GET itest:client:nx", &x);
        assert_int_equal(x.type, 0);
        if (strcmp(x.reason, "connection") != 0 || !strstr(x.text, "nx.test"))
            fail_msg("attempt %d: reason \"%s\", message \"%s\"", i, x.reason, x.text);
        assert_true(x.took < cfg.read_timeout + 0.1);
    }
    print_message("# %s\n", x.text);
    assert_true(dns_count("nx.test.", "A") > 0);
    rc_client_free(c);
    ev_loop_destroy(loop);
}

/* ---- TLS ---------------------------------------------------------------------------- */

/* One client with cfg: PING answers PONG, or it fails with `reason`. Returns the failure's
 * message (static; "" on success). */
static const char *tls_case(const struct rc_client_config *cfg, const char *reason, const char *why)
{
    static char msg[512];
    struct ev_loop *loop = ev_loop_new(0);
    struct rc_client *c = client(loop, cfg);
    struct res x;
    cmd(loop, c, false, "PING", &x);
    if (!reason) {
        if (x.reason[0]) fail_msg("%s: failed (%s): %s", why, x.reason, x.text);
        assert_int_equal(x.type, RC_REPLY_STRING);
        assert_string_equal(x.text, "PONG");
    } else {
        if (x.type != 0 || strcmp(x.reason, reason) != 0)
            fail_msg("%s: expected a failure (%s), got reason \"%s\" type %d: %s", why, reason,
                     x.reason, x.type, x.text);
        print_message("# %s: %s\n", why, x.text);
    }
    snprintf(msg, sizeof msg, "%s", reason ? x.text : "");
    rc_client_free(c);
    ev_loop_destroy(loop);
    return msg;
}

static void test_tls_server_only(void **state)
{
    int port = env_int("RC_TLS_PORT");
    struct ev_loop *loop = ev_loop_new(0);
    struct rc_client_config cfg;
    config(&cfg, fmt("127.0.0.1:%d", port));
    cfg.tls = true;
    cfg.tls_ca = tls_file("ca.crt");
    struct rc_client *c = client(loop, &cfg);
    expect_ok(loop, c, true, "SET itest:client:tls yes", RC_REPLY_STRING, "OK");
    expect_ok(loop, c, false, "GET itest:client:tls", RC_REPLY_BULK, "yes");
    rc_client_free(c);
    ev_loop_destroy(loop);

    /* tls_ca alone implies tls; "localhost" comes from the hosts file, matched by DNS SAN */
    config(&cfg, fmt("localhost:%d", port));
    cfg.tls_ca = tls_file("ca.crt");
    tls_case(&cfg, NULL, "tls_ca without tls, localhost");

    /* the system trust store does not know our CA */
    config(&cfg, fmt("127.0.0.1:%d", port));
    cfg.tls = true;
    tls_case(&cfg, "connection", "system store, private CA");
}

static void test_mtls(void **state)
{
    struct rc_client_config cfg;
    config(&cfg, fmt("127.0.0.1:%d", env_int("RC_MTLS_PORT")));
    cfg.tls_ca = tls_file("ca.crt");
    tls_case(&cfg, "connection", "mTLS without a client certificate");
    cfg.tls_cert = tls_file("client.crt");
    cfg.tls_key = tls_file("client.key");
    tls_case(&cfg, NULL, "mTLS with a client certificate");
}

static void test_tls_hostname_and_chain(void **state)
{
    struct rc_client_config cfg;
    config(&cfg, fmt("127.0.0.1:%d", env_int("RC_WRONG_PORT")));
    cfg.tls_ca = tls_file("ca.crt");
    tls_case(&cfg, "connection", "SAN wrong.example, verify_hostname on");
    config(&cfg, fmt("localhost:%d", env_int("RC_WRONG_PORT")));
    cfg.tls_ca = tls_file("ca.crt");
    tls_case(&cfg, "connection", "SAN wrong.example dialed as localhost");
    cfg.tls_verify_hostname = false;
    tls_case(&cfg, NULL, "SAN wrong.example, verify_hostname off");
    /* the chain is still verified with verify_hostname off */
    cfg.tls_ca = tls_file("other-ca.crt");
    tls_case(&cfg, "connection", "unrelated CA, verify_hostname off");
    config(&cfg, fmt("127.0.0.1:%d", env_int("RC_TLS_PORT")));
    cfg.tls_ca = tls_file("other-ca.crt");
    cfg.tls_verify_hostname = false;
    tls_case(&cfg, "connection", "good name, unrelated CA, verify_hostname off");
}

static void test_tls_verify_chain_off(void **state)
{
    struct rc_client_config cfg;
    /* wrong name and an unrelated CA: nothing is checked */
    config(&cfg, fmt("127.0.0.1:%d", env_int("RC_WRONG_PORT")));
    cfg.tls_ca = tls_file("other-ca.crt");
    cfg.tls_verify_chain = false;
    tls_case(&cfg, NULL, "verify_chain off, wrong name, unrelated CA");
    /* the system store and verify_hostname left on: verify_chain off turns off both */
    config(&cfg, fmt("127.0.0.1:%d", env_int("RC_WRONG_PORT")));
    cfg.tls = true;
    cfg.tls_verify_chain = false;
    tls_case(&cfg, NULL, "verify_chain off, system store");
    /* but it is still TLS: a client certificate is still required by an mTLS server */
    config(&cfg, fmt("127.0.0.1:%d", env_int("RC_MTLS_PORT")));
    cfg.tls = true;
    cfg.tls_verify_chain = false;
    const char *m =
        tls_case(&cfg, "connection", "verify_chain off, mTLS server without a certificate");
    /* nothing was verified, so no verification result may be blamed */
    if (strstr(m, "self-signed") || strstr(m, "verify failed"))
        fail_msg("verification blamed with verify_chain off: %s", m);
}

static void test_tls_client_against_plaintext(void **state)
{
    struct ev_loop *loop = ev_loop_new(0);
    struct rc_client_config cfg;
    config(&cfg, fmt("127.0.0.1:%d", env_int("RC_PLAIN_PORT")));
    cfg.tls_ca = tls_file("ca.crt");
    cfg.connect_timeout = 0.5;
    cfg.read_timeout = 1;
    cfg.pool.wait_timeout = 1;
    struct rc_client *c = client(loop, &cfg);
    for (int i = 0; i < 3; i++) {
        struct res x;
        cmd(loop, c, i == 0, i == 0 ? "SET itest:client:plain tls" : "PING", &x);
        if (x.type != 0 || (strcmp(x.reason, "timeout") != 0 && strcmp(x.reason, "connection")))
            fail_msg("TLS to a plaintext port: reason \"%s\" type %d: %s", x.reason, x.type,
                     x.text);
        assert_true(x.took < cfg.read_timeout + 0.2);
        if (i == 0) print_message("# %s: %s\n", x.reason, x.text);
    }
    rc_client_free(c);
    ev_loop_destroy(loop);
}

static void test_tls_hostname_from_dns(void **state)
{
    struct rc_client_config cfg;
    /* a certificate for tls.test, the name resolved through our DNS server */
    config(&cfg, fmt("tls.test:%d", env_int("RC_TLSNAME_PORT")));
    cfg.resolver = resolver();
    cfg.tls_ca = tls_file("ca.crt");
    tls_case(&cfg, NULL, "tls.test with a certificate for tls.test");
    /* the name checked is the configured one, not the address it resolved to: server.crt
     * holds IP:127.0.0.1 but not tls.test */
    config(&cfg, fmt("tls.test:%d", env_int("RC_TLS_PORT")));
    cfg.resolver = resolver();
    cfg.tls_ca = tls_file("ca.crt");
    tls_case(&cfg, "connection", "tls.test against a certificate for localhost/127.0.0.1");
    cfg.tls_verify_hostname = false;
    tls_case(&cfg, NULL, "tls.test against server.crt, verify_hostname off");
}

/* ---- ACL and db ------------------------------------------------------------------- */

static void test_acl_user(void **state)
{
    const char *ep = fmt("127.0.0.1:%d", env_int("RC_ACL_PORT"));
    struct ev_loop *loop = ev_loop_new(0);
    struct rc_client_config cfg;
    config(&cfg, ep);
    cfg.username = "alice";
    cfg.password = "apass";
    struct rc_client *c = client(loop, &cfg);
    expect_ok(loop, c, false, "ACL WHOAMI", RC_REPLY_BULK, "alice");
    expect_ok(loop, c, true, "SET itest:client:acl by-alice", RC_REPLY_STRING, "OK");
    expect_ok(loop, c, false, "GET itest:client:acl", RC_REPLY_BULK, "by-alice");
    rc_client_free(c);

    /* a wrong password: the server's WRONGPASS, reason other, never a fallback to no auth */
    config(&cfg, ep);
    cfg.username = "alice";
    cfg.password = "not-apass";
    cfg.read_timeout = 1;
    c = client(loop, &cfg);
    for (int i = 0; i < 3; i++) expect_fail(loop, c, "GET itest:client:acl", "other", NULL);
    rc_client_free(c);

    /* no credentials: the default user is off, so the command is refused (NOAUTH) */
    config(&cfg, ep);
    c = client(loop, &cfg);
    struct res x;
    cmd(loop, c, false, "GET itest:client:acl", &x);
    assert_string_equal(x.reason, "other");
    if (x.type != 0) {
        assert_int_equal(x.type, RC_REPLY_ERROR);
        assert_non_null(strstr(x.text, "NOAUTH"));
    }
    rc_client_free(c);
    ev_loop_destroy(loop);
}

static void test_db3(void **state)
{
    const char *ep = fmt("127.0.0.1:%d", env_int("RC_PLAIN_PORT"));
    struct ev_loop *loop = ev_loop_new(0);
    struct rc_client_config cfg;
    config(&cfg, ep);
    cfg.db = 3;
    struct rc_client *c3 = client(loop, &cfg);
    config(&cfg, ep);
    struct rc_client *c0 = client(loop, &cfg);
    expect_ok(loop, c3, true, "SET itest:client:db3 in-three", RC_REPLY_STRING, "OK");
    expect_ok(loop, c3, false, "GET itest:client:db3", RC_REPLY_BULK, "in-three");
    expect_ok(loop, c0, false, "GET itest:client:db3", RC_REPLY_NULL, NULL);
    rc_client_free(c3);
    rc_client_free(c0);
    ev_loop_destroy(loop);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hostname_through_resolver),
        cmocka_unit_test(test_unknown_name_is_connection_error),
        cmocka_unit_test(test_tls_server_only),
        cmocka_unit_test(test_mtls),
        cmocka_unit_test(test_tls_hostname_and_chain),
        cmocka_unit_test(test_tls_verify_chain_off),
        cmocka_unit_test(test_tls_client_against_plaintext),
        cmocka_unit_test(test_tls_hostname_from_dns),
        cmocka_unit_test(test_acl_user),
        cmocka_unit_test(test_db3),
    };
    return cmocka_run_group_tests_name("itest_client", tests, NULL, NULL);
}
