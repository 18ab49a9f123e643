/* tests/integration/itest_pool.c — the connection pool, the standalone router and the
 * public rc_client against real redis-server processes started by tests/integration/pool.sh
 * (ports and pids in RC_* variables): round trips, a pipelined GET+TTL, reads on replicas
 * only (commandstats), one read endpoint, a killed server (fast failures, breaker, recovery
 * after a restart on the same port), a SIGSTOPped server (deadlines, breaker by timeouts,
 * probe), startup with the server down, wait_timeout, growth under load up to size and
 * max_active, max_idle_time, the background bound, a retry after the server dropped our
 * connections, and a wrong password (reason other, paced reconnects).
 *
 * Server-side facts (INFO, CLIENT LIST) are read over a plain blocking socket outside the
 * loop, so they never disturb what the client under test sees. */
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
#include <errno.h>
#include <sys/wait.h>
#include <cmocka.h>

#include <ev.h>

#include "redis_cache.h"
#include "resp/resp.h"
#include "topology/topology.h"

#include "support/raw_redis.h"

/* ---- environment and time --------------------------------------------------------- */

static const char *env(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v) fail_msg("environment variable %s is not set (run through pool.sh)", name);
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

static char addr_buf[8][64];
static const char *addr(int slot, int port)
{
    snprintf(addr_buf[slot], sizeof addr_buf[slot], "127.0.0.1:%d", port);
    return addr_buf[slot];
}

/* ---- blocking helper for server-side facts ------------------------------------------ */

/* The AUTH password info_num sends first (while a test sets a password on the server), or
 * NULL. */
static const char *raw_auth;

/* A numeric "field:value" or "field:calls=N" of INFO section; -1 when absent. */
static long long info_num(int port, const char *section, const char *field)
{
    char *t = raw_cmd_auth(port, raw_auth, "INFO %s", section);
    assert_non_null(t);
    long long v = -1;
    char pat[96];
    snprintf(pat, sizeof pat, "%s:", field);
    char *p = strstr(t, pat);
    if (p) {
        p += strlen(pat);
        if (strncmp(p, "calls=", 6) == 0) p += 6;
        v = strtoll(p, NULL, 10);
    } else if (strcmp(section, "commandstats") == 0) {
        v = 0; /* never called */
    }
    free(t);
    return v;
}

/* Connections on the server whose CLIENT SETNAME is `name`. */
static int clients_named(int port, const char *name)
{
    char *t = raw_cmd(port, "CLIENT LIST");
    assert_non_null(t);
    char pat[96];
    snprintf(pat, sizeof pat, " name=%s ", name);
    int n = 0;
    for (char *p = t; (p = strstr(p, pat)); p++) n++;
    free(t);
    return n;
}

/* ---- a loop and synchronous commands -------------------------------------------------- */

struct res {
    int done;
    int type;
    char reason[16];
    char text[256];
    long long integer;
    double took;
    double started;
};

static void res_cb(void *priv, const struct rc_reply *r, const char *reason, const char *errmsg)
{
    struct res *x = priv;
    x->done = 1;
    x->took = mono() - x->started;
    x->type = r ? r->type : 0;
    snprintf(x->reason, sizeof x->reason, "%s", reason ? reason : "");
    if (errmsg)
        snprintf(x->text, sizeof x->text, "%s", errmsg);
    else if (r && r->str)
        snprintf(x->text, sizeof x->text, "%.*s", (int)r->len, r->str);
    if (r) x->integer = r->integer;
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents) {}

/* Runs the loop until *flag becomes nonzero or `secs` pass. Returns *flag. */
static int run_until(struct ev_loop *loop, const int *flag, double secs)
{
    ev_timer t;
    ev_timer_init(&t, tick_cb, 0.01, 0.01);
    ev_timer_start(loop, &t);
    double end = mono() + secs;
    while (!*flag && mono() < end) ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &t);
    return *flag;
}

static void run_for(struct ev_loop *loop, double secs)
{
    int never = 0;
    run_until(loop, &never, secs);
}

/* Splits `line` on spaces into a command and runs it to completion. */
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
    assert_true(run_until(loop, &x->done, 10));
}

static struct rc_client *client(struct ev_loop *loop, struct rc_client_config *cfg)
{
    char err[256];
    struct rc_client *c = rc_client_new(loop, cfg, err, sizeof err);
    if (!c) fail_msg("rc_client_new: %s", err);
    return c;
}

static struct rc_node_stats node0(struct rc_client *c)
{
    struct rc_node_stats st[4];
    assert_true(rc_client_nodes(c, st, 4) >= 1);
    return st[0];
}

/* ---- tests ------------------------------------------------------------------------ */

static void test_round_trip(void **state)
{
    struct ev_loop *loop = ev_loop_new(0);
    struct rc_client_config cfg;
    rc_client_config_init(&cfg);
    cfg.endpoint = addr(0, env_int("RC_M_PORT"));
    struct rc_client *c = client(loop, &cfg);
    struct res x;
    cmd(loop, c, true, "SET pool:rt hello EX 60", &x);
    assert_string_equal(x.reason, "");
    assert_int_equal(x.type, RC_REPLY_STRING);
    assert_string_equal(x.text, "OK");
    cmd(loop, c, false, "GET pool:rt", &x);
    assert_string_equal(x.reason, "");
    assert_int_equal(x.type, RC_REPLY_BULK);
    assert_string_equal(x.text, "hello");
    cmd(loop, c, false, "GET pool:missing", &x);
    assert_int_equal(x.type, RC_REPLY_NULL);
    cmd(loop, c, false, "TTL pool:rt", &x);
    assert_int_equal(x.type, RC_REPLY_INTEGER);
    assert_true(x.integer > 0 && x.integer <= 60);
    /* a server error reply is reason other with the reply and its text */
    cmd(loop, c, false, "INCR pool:rt", &x);
    assert_string_equal(x.reason, "other");
    assert_int_equal(x.type, RC_REPLY_ERROR);
    assert_non_null(strstr(x.text, "not an integer"));
    rc_client_free(c);
    ev_loop_destroy(loop);
}

struct pipe2 {
    int n;
    int types[2];
    size_t idx[2];
    char text[2][64];
    long long integer[2];
};

static void pipe2_cb(void *priv, size_t idx, const struct resp_value *reply,
                     const struct resp_err *err)
{
    struct pipe2 *p = priv;
    assert_null(err);
    assert_true(p->n < 2);
    p->idx[p->n] = idx;
    p->types[p->n] = reply->type;
    if (reply->type == RESP_BULK) snprintf(p->text[p->n], 64, "%.*s", (int)reply->len, reply->str);
    if (reply->type == RESP_INTEGER) p->integer[p->n] = reply->integer;
    p->n++;
}

static struct topo_pool *raw_pool(struct ev_loop *loop, int port, struct topo_pool_opts *po)
{
    struct topo_node_opts no;
    memset(&no, 0, sizeof no);
    snprintf(no.host, sizeof no.host, "127.0.0.1");
    no.port = (uint16_t)port;
    resp_conn_opts_init(&no.conn);
    no.conn.client_name = "itest-raw";
    if (po)
        no.pool = *po;
    else
        topo_pool_opts_init(&no.pool);
    struct topo_pool *p = topo_pool_new(loop, NULL, &no);
    assert_non_null(p);
    return p;
}

static void test_pipelined_get_ttl(void **state)
{
    struct ev_loop *loop = ev_loop_new(0);
    int port = env_int("RC_M_PORT");
    char *r = raw_cmd(port, "SET pool:pipe value EX 100");
    assert_string_equal(r, "OK");
    free(r);
    struct topo_pool *p = raw_pool(loop, port, NULL);
    assert_string_equal(topo_pool_name(p), addr(0, port));
    const char *get[] = {"GET", "pool:pipe"}, *ttl[] = {"TTL", "pool:pipe"};
    const size_t lens[] = {3, 9};
    struct resp_cmd cmds[2] = {{2, get, lens}, {2, ttl, lens}};
    struct pipe2 x = {0};
    assert_int_equal(topo_pool_exec(p, cmds, 2, ev_now(loop) + 2, 0, pipe2_cb, &x), 0);
    for (double end = mono() + 5; x.n < 2 && mono() < end;) ev_run(loop, EVRUN_ONCE);
    assert_int_equal(x.n, 2);
    assert_int_equal(x.idx[0], 0);
    assert_int_equal(x.idx[1], 1);
    assert_int_equal(x.types[0], RESP_BULK);
    assert_string_equal(x.text[0], "value");
    assert_int_equal(x.types[1], RESP_INTEGER);
    assert_true(x.integer[1] > 90 && x.integer[1] <= 100);
    struct topo_pool_stats st;
    topo_pool_stats(p, &st);
    assert_int_equal(st.open, 1); /* one connection carried both */
    assert_int_equal(st.in_flight, 0);
    topo_pool_free(p);
    ev_loop_destroy(loop);
}

static void resetstat(int port)
{
    char *r = raw_cmd(port, "CONFIG RESETSTAT");
    assert_string_equal(r, "OK");
    free(r);
}

static void test_reads_on_replicas(void **state)
{
    int m = env_int("RC_M_PORT"), r1 = env_int("RC_R1_PORT"), r2 = env_int("RC_R2_PORT");
    struct ev_loop *loop = ev_loop_new(0);
    struct rc_client_config cfg;
    rc_client_config_init(&cfg);
    cfg.endpoint = addr(0, m);
    const char *reads[] = {addr(1, r1), addr(2, r2)};
    cfg.read_endpoints = reads;
    cfg.n_read_endpoints = 2;
    struct rc_client *c = client(loop, &cfg);
    resetstat(m);
    resetstat(r1);
    resetstat(r2);
    struct res x;
    for (int i = 0; i < 10; i++) {
        cmd(loop, c, true, "SET pool:rep v EX 60", &x);
        assert_string_equal(x.reason, "");
    }
    for (int i = 0; i < 100; i++) {
        cmd(loop, c, false, "GET pool:rep", &x);
        assert_string_equal(x.reason, "");
    }
    long long gm = info_num(m, "commandstats", "cmdstat_get");
    long long g1 = info_num(r1, "commandstats", "cmdstat_get");
    long long g2 = info_num(r2, "commandstats", "cmdstat_get");
    long long sm = info_num(m, "commandstats", "cmdstat_set");
    print_message("# GETs: master %lld, replica1 %lld, replica2 %lld; SETs on master %lld\n", gm,
                  g1, g2, sm);
    assert_int_equal(gm, 0);
    assert_int_equal(g1 + g2, 100);
    assert_true(g1 >= 10 && g2 >= 10); /* random: P(< 10 of 100) is ~1e-17 */
    assert_int_equal(sm, 10);
    struct rc_node_stats st[4];
    assert_int_equal(rc_client_nodes(c, st, 4), 3);
    assert_string_equal(st[0].name, addr(0, m));
    assert_string_equal(st[1].name, addr(1, r1));
    rc_client_free(c);

    /* one read endpoint takes every read */
    cfg.n_read_endpoints = 1;
    c = client(loop, &cfg);
    resetstat(m);
    resetstat(r1);
    resetstat(r2);
    for (int i = 0; i < 20; i++) cmd(loop, c, false, "GET pool:rep", &x);
    assert_int_equal(info_num(r1, "commandstats", "cmdstat_get"), 20);
    assert_int_equal(info_num(r2, "commandstats", "cmdstat_get"), 0);
    assert_int_equal(info_num(m, "commandstats", "cmdstat_get"), 0);
    rc_client_free(c);

    /* no read endpoint: the endpoint serves reads */
    cfg.n_read_endpoints = 0;
    c = client(loop, &cfg);
    resetstat(m);
    for (int i = 0; i < 5; i++) cmd(loop, c, false, "GET pool:rep", &x);
    assert_int_equal(info_num(m, "commandstats", "cmdstat_get"), 5);
    rc_client_free(c);
    ev_loop_destroy(loop);
}

static pid_t start_redis(int port, const char *dir)
{
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execlp("redis-server", "redis-server", "--port", ps, "--bind", "127.0.0.1", "--dir", dir,
               "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", "/dev/null",
               (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void test_killed_server_fails_fast_and_recovers(void **state)
{
    int port = env_int("RC_V_PORT");
    pid_t pid = (pid_t)env_int("RC_V_PID");
    struct ev_loop *loop = ev_loop_new(0);
    struct rc_client_config cfg;
    rc_client_config_init(&cfg);
    cfg.endpoint = addr(0, port);
    struct rc_client *c = client(loop, &cfg);
    struct res x;
    cmd(loop, c, true, "SET pool:kill v", &x);
    assert_string_equal(x.reason, "");

    assert_int_equal(kill(pid, SIGKILL), 0);
    usleep(100000);
    int fast_after_open = 0;
    for (int i = 0; i < 30; i++) {
        cmd(loop, c, false, "GET pool:kill", &x);
        assert_string_equal(x.reason, "connection");
        assert_true(x.took < cfg.read_timeout + 0.05); /* never past the deadline */
        if (node0(c).breaker_open && i >= 5) {
            assert_true(x.took < 0.02); /* breaker open: no connect attempt */
            assert_non_null(strstr(x.text, "breaker open for"));
            fast_after_open++;
        }
    }
    assert_true(fast_after_open >= 20);
    assert_true(node0(c).breaker_open);
    uint64_t connects = node0(c).connects;
    run_for(loop, 0.5);
    /* probes only, on the backoff schedule: a few, not one per query or per loop turn */
    assert_true(node0(c).connects - connects <= 10);

    char dir[512];
    snprintf(dir, sizeof dir, "%s", env("RC_V_DIR"));
    pid_t np = start_redis(port, dir);
    double t0 = mono();
    int ok = 0;
    while (mono() - t0 < 4 && !ok) {
        cmd(loop, c, false, "GET pool:kill", &x);
        if (x.reason[0] == '\0') ok = 1;
        if (!ok) run_for(loop, 0.05);
    }
    double took = mono() - t0;
    print_message("# recovered %.2f s after the restart\n", took);
    assert_true(ok);
    assert_true(took < 3.0);
    assert_false(node0(c).breaker_open);
    rc_client_free(c);
    kill(np, SIGTERM);
    waitpid(np, NULL, 0);
    ev_loop_destroy(loop);
}

static void test_stopped_server_times_out_then_breaker(void **state)
{
    int port = env_int("RC_S_PORT");
    pid_t pid = (pid_t)env_int("RC_S_PID");
    struct ev_loop *loop = ev_loop_new(0);
    struct rc_client_config cfg;
    rc_client_config_init(&cfg);
    cfg.endpoint = addr(0, port);
    cfg.read_timeout = 0.3;
    cfg.connect_timeout = 0.3;
    struct rc_client *c = client(loop, &cfg);
    struct res x;
    cmd(loop, c, true, "SET pool:stop v", &x);
    assert_string_equal(x.reason, "");

    assert_int_equal(kill(pid, SIGSTOP), 0);
    for (int i = 0; i < 5; i++) {
        assert_false(node0(c).breaker_open);
        cmd(loop, c, false, "GET pool:stop", &x);
        assert_string_equal(x.reason, "timeout");
        assert_true(x.took >= 0.25 && x.took < 0.3 + 0.1);
    }
    run_for(loop, 0.01); /* the breaker closes connections from a deferred callback */
    assert_true(node0(c).breaker_open);
    for (int i = 0; i < 10; i++) {
        cmd(loop, c, false, "GET pool:stop", &x);
        assert_string_equal(x.reason, "timeout");
        assert_true(x.took < 0.02);
        assert_non_null(strstr(x.text, "breaker open for"));
    }
    assert_int_equal(kill(pid, SIGCONT), 0);
    double t0 = mono();
    int ok = 0;
    while (mono() - t0 < 5 && !ok) {
        cmd(loop, c, false, "GET pool:stop", &x);
        if (x.reason[0] == '\0') ok = 1;
        if (!ok) run_for(loop, 0.05);
    }
    print_message("# breaker closed %.2f s after SIGCONT\n", mono() - t0);
    assert_true(ok);
    assert_string_equal(x.text, "v");
    rc_client_free(c);
    ev_loop_destroy(loop);
}

static void test_startup_with_server_down(void **state)
{
    int port = env_int("RC_FREE_PORT");
    struct ev_loop *loop = ev_loop_new(0);
    struct rc_client_config cfg;
    rc_client_config_init(&cfg);
    cfg.endpoint = addr(0, port);
    cfg.pool.min_idle = 2; /* connects at once, in the background */
    double t0 = mono();
    struct rc_client *c = client(loop, &cfg);
    assert_true(mono() - t0 < 0.05);
    struct res x;
    cmd(loop, c, false, "GET k", &x);
    assert_string_equal(x.reason, "connection");
    assert_true(x.took < cfg.read_timeout);
    rc_client_free(c);
    ev_loop_destroy(loop);
}

static void test_wait_timeout_while_server_stuck_at_startup(void **state)
{
    int port = env_int("RC_W_PORT");
    pid_t pid = (pid_t)env_int("RC_W_PID");
    assert_int_equal(kill(pid, SIGSTOP), 0);
    struct ev_loop *loop = ev_loop_new(0);
    struct rc_client_config cfg;
    rc_client_config_init(&cfg);
    cfg.endpoint = addr(0, port);
    cfg.read_timeout = 1.0;
    cfg.connect_timeout = 2.0;
    cfg.pool.wait_timeout = 0.2;
    double t0 = mono();
    struct rc_client *c = client(loop, &cfg);
    assert_true(mono() - t0 < 0.05);
    struct res x;
    cmd(loop, c, false, "GET k", &x);
    assert_string_equal(x.reason, "timeout");
    assert_non_null(strstr(x.text, "pool wait"));
    assert_true(x.took >= 0.18 && x.took < 0.3);
    /* the deadline wins over a longer wait_timeout */
    rc_client_free(c);
    cfg.pool.wait_timeout = 5;
    cfg.read_timeout = 0.15;
    c = client(loop, &cfg);
    cmd(loop, c, false, "GET k", &x);
    assert_string_equal(x.reason, "timeout");
    assert_true(x.took >= 0.13 && x.took < 0.25);
    rc_client_free(c);
    kill(pid, SIGCONT);
    ev_loop_destroy(loop);
}

struct load {
    struct rc_client *c;
    int outstanding, issued, ok, failed;
    int stop;
};

static void load_cb(void *priv, const struct rc_reply *r, const char *reason, const char *errmsg);

static void load_one(struct load *l)
{
    static const char *argv[] = {"GET", "pool:load"};
    static const size_t lens[] = {3, 9};
    l->outstanding++;
    l->issued++;
    rc_client_command(l->c, false, 2, argv, lens, load_cb, l);
}

static void load_cb(void *priv, const struct rc_reply *r, const char *reason, const char *errmsg)
{
    struct load *l = priv;
    l->outstanding--;
    if (reason)
        l->failed++;
    else
        l->ok++;
    if (!l->stop) load_one(l);
}

/* Keeps `inflight` requests in flight for `secs`; returns the most connections seen. */
static unsigned run_load(struct ev_loop *loop, struct rc_client *c, int inflight, double secs,
                         int port, const char *name, int *server_max)
{
    struct load l = {.c = c};
    for (int i = 0; i < inflight; i++) load_one(&l);
    unsigned most = 0;
    *server_max = 0;
    double end = mono() + secs;
    while (mono() < end) {
        ev_run(loop, EVRUN_ONCE);
        struct rc_node_stats st = node0(c);
        if (st.open > most) most = st.open;
    }
    int n = clients_named(port, name);
    if (n > *server_max) *server_max = n;
    l.stop = 1;
    for (double drain = mono() + 10; l.outstanding > 0 && mono() < drain;) ev_run(loop, EVRUN_ONCE);
    assert_int_equal(l.outstanding, 0);
    print_message("# %d requests, %d ok, %d failed, most connections %u (server saw %d)\n",
                  l.issued, l.ok, l.failed, most, *server_max);
    assert_int_equal(l.failed, 0);
    assert_true(l.ok > inflight);
    return most;
}

static void test_pool_grows_under_load_within_limits(void **state)
{
    int port = env_int("RC_M_PORT");
    struct ev_loop *loop = ev_loop_new(0);
    struct rc_client_config cfg;
    rc_client_config_init(&cfg);
    cfg.endpoint = addr(0, port);
    cfg.client_name = "itest-grow";
    cfg.read_timeout = 5;
    cfg.pool.size = 4;
    cfg.pool.pipeline_high = 32;
    struct rc_client *c = client(loop, &cfg);
    struct res x;
    cmd(loop, c, false, "GET pool:load", &x);
    assert_int_equal(node0(c).open, 1); /* one request, one connection */
    int server = 0;
    unsigned most = run_load(loop, c, 5000, 1.0, port, "itest-grow", &server);
    assert_int_equal(most, 4);
    assert_int_equal(server, 4);
    rc_client_free(c);

    /* max_active caps below size */
    cfg.pool.size = 8;
    cfg.pool.max_active = 2;
    cfg.client_name = "itest-cap";
    c = client(loop, &cfg);
    most = run_load(loop, c, 5000, 0.7, port, "itest-cap", &server);
    assert_int_equal(most, 2);
    assert_int_equal(server, 2);
    rc_client_free(c);

    /* light load stays on one connection (pipelining, not a socket per request) */
    cfg.pool.max_active = 0;
    cfg.client_name = "itest-light";
    c = client(loop, &cfg);
    most = run_load(loop, c, 16, 0.3, port, "itest-light", &server);
    assert_int_equal(most, 1);
    rc_client_free(c);
    ev_loop_destroy(loop);
}

static void test_max_idle_time_closes_idle_connections(void **state)
{
    int port = env_int("RC_M_PORT");
    struct ev_loop *loop = ev_loop_new(0);
    struct rc_client_config cfg;
    rc_client_config_init(&cfg);
    cfg.endpoint = addr(0, port);
    cfg.client_name = "itest-idle";
    cfg.read_timeout = 5;
    cfg.pool.size = 3;
    cfg.pool.pipeline_high = 4;
    cfg.pool.max_idle_time = 0.5;
    cfg.pool.min_idle = 1;
    struct rc_client *c = client(loop, &cfg);
    int server = 0;
    unsigned most = run_load(loop, c, 200, 0.4, port, "itest-idle", &server);
    assert_int_equal(most, 3);
    assert_int_equal(clients_named(port, "itest-idle"), 3);
    run_for(loop, 1.2);
    assert_int_equal(node0(c).open, 1); /* min_idle stays */
    run_for(loop, 0.05);
    assert_int_equal(clients_named(port, "itest-idle"), 1);
    struct res x;
    cmd(loop, c, false, "GET pool:idle", &x);
    assert_string_equal(x.reason, "");
    rc_client_free(c);
    ev_loop_destroy(loop);
}

static void test_max_lifetime_recycles_and_max_idle_trims(void **state)
{
    int port = env_int("RC_M_PORT");
    struct ev_loop *loop = ev_loop_new(0);
    struct rc_client_config cfg;
    rc_client_config_init(&cfg);
    cfg.endpoint = addr(0, port);
    cfg.client_name = "itest-life";
    cfg.pool.max_lifetime = 0.3;
    cfg.pool.min_idle = 1;
    struct rc_client *c = client(loop, &cfg);
    double t0 = mono();
    unsigned most = 0;
    int n = 0;
    while (mono() - t0 < 1.2) {
        struct res x;
        cmd(loop, c, false, "GET pool:life", &x);
        assert_string_equal(x.reason, ""); /* recycling never fails a request */
        n++;
        if (node0(c).open > most) most = node0(c).open;
        run_for(loop, 0.02);
    }
    print_message("# %d requests, %llu connects, at most %u open\n", n,
                  (unsigned long long)node0(c).connects, most);
    assert_true(node0(c).connects >= 3);
    assert_true(most <= 2);
    rc_client_free(c);

    /* max_idle: idle connections beyond it close even long before max_idle_time */
    rc_client_config_init(&cfg);
    cfg.endpoint = addr(0, port);
    cfg.client_name = "itest-maxidle";
    cfg.read_timeout = 5;
    cfg.pool.size = 3;
    cfg.pool.pipeline_high = 4;
    cfg.pool.max_idle = 1;
    c = client(loop, &cfg);
    int server = 0;
    assert_int_equal(run_load(loop, c, 200, 0.4, port, "itest-maxidle", &server), 3);
    run_for(loop, 1.2);
    assert_int_equal(node0(c).open, 1);
    rc_client_free(c);
    ev_loop_destroy(loop);
}

static int bg_done, bg_timeouts;
static char bg_msg[192];
static void bg_cb(void *priv, size_t idx, const struct resp_value *reply,
                  const struct resp_err *err)
{
    bg_done++;
    if (err && err->kind == RESP_EK_TIMEOUT) {
        bg_timeouts++;
        snprintf(bg_msg, sizeof bg_msg, "%s", err->msg);
    }
}

static void test_background_bound_overflow_is_timeout(void **state)
{
    int port = env_int("RC_M_PORT");
    struct ev_loop *loop = ev_loop_new(0);
    struct topo_pool_opts po;
    topo_pool_opts_init(&po);
    po.max_background = 3;
    po.max_background_bytes = 1 << 20;
    struct topo_pool *p = raw_pool(loop, port, &po);
    const char *set[] = {"SET", "pool:bg", "v", "EX", "60"};
    const size_t lens[] = {3, 7, 1, 2, 2};
    struct resp_cmd cmd1 = {5, set, lens};
    bg_done = bg_timeouts = 0;
    for (int i = 0; i < 4; i++)
        assert_int_equal(
            topo_pool_exec(p, &cmd1, 1, ev_now(loop) + 2, TOPO_BACKGROUND, bg_cb, NULL), 0);
    assert_int_equal(bg_done, 1); /* the fourth failed at once */
    assert_int_equal(bg_timeouts, 1);
    assert_non_null(strstr(bg_msg, "write queue full"));
    struct topo_pool_stats st;
    topo_pool_stats(p, &st);
    assert_int_equal(st.background, 3);
    assert_true(st.background_bytes > 0);
    for (double end = mono() + 5; bg_done < 4 && mono() < end;) ev_run(loop, EVRUN_ONCE);
    assert_int_equal(bg_done, 4);
    assert_int_equal(bg_timeouts, 1);
    topo_pool_stats(p, &st);
    assert_int_equal(st.background, 0);
    assert_int_equal(st.background_bytes, 0);
    /* room again; the byte bound counts too */
    po.max_background_bytes = 60;
    topo_pool_free(p);
    p = raw_pool(loop, port, &po);
    bg_done = bg_timeouts = 0;
    for (int i = 0; i < 2; i++)
        topo_pool_exec(p, &cmd1, 1, ev_now(loop) + 2, TOPO_BACKGROUND, bg_cb, NULL);
    assert_int_equal(bg_done, 1); /* one SET is 49 bytes: the second does not fit */
    assert_int_equal(bg_timeouts, 1);
    for (double end = mono() + 5; bg_done < 2 && mono() < end;) ev_run(loop, EVRUN_ONCE);
    topo_pool_free(p);
    ev_loop_destroy(loop);
}

static void test_retry_after_server_dropped_connection(void **state)
{
    int port = env_int("RC_M_PORT");
    struct ev_loop *loop = ev_loop_new(0);
    struct rc_client_config cfg;
    rc_client_config_init(&cfg);
    cfg.endpoint = addr(0, port);
    cfg.client_name = "itest-retry";
    struct rc_client *c = client(loop, &cfg);
    struct res x;
    cmd(loop, c, false, "GET pool:retry", &x);
    assert_string_equal(x.reason, "");
    /* the server drops our connection; the loop has not noticed yet */
    char *r = raw_cmd(port, "CLIENT KILL TYPE normal SKIPME yes");
    assert_non_null(r);
    free(r);
    usleep(50000);
    cmd(loop, c, false, "GET pool:retry", &x);
    assert_string_equal(x.reason, "");
    assert_int_equal(x.type, RC_REPLY_NULL);
    print_message("# retries %llu\n", (unsigned long long)node0(c).retries);
    assert_true(node0(c).retries >= 1);
    rc_client_free(c);

    /* with retries off the same drop is a connection error */
    cfg.retries.max = 0;
    c = client(loop, &cfg);
    cmd(loop, c, false, "GET pool:retry", &x);
    r = raw_cmd(port, "CLIENT KILL TYPE normal SKIPME yes");
    free(r);
    usleep(50000);
    cmd(loop, c, false, "GET pool:retry", &x);
    assert_string_equal(x.reason, "connection");
    assert_int_equal(node0(c).retries, 0);
    rc_client_free(c);
    ev_loop_destroy(loop);
}

static void test_wrong_password_is_other_and_paced(void **state)
{
    int port = env_int("RC_A_PORT");
    struct ev_loop *loop = ev_loop_new(0);
    struct rc_client_config cfg;
    rc_client_config_init(&cfg);
    cfg.endpoint = addr(0, port);
    cfg.password = "wrong";
    raw_auth = "s3cret";
    long long before = info_num(port, "stats", "total_connections_received");
    struct rc_client *c = client(loop, &cfg);
    double t0 = mono();
    int n = 0;
    while (mono() - t0 < 1.0) {
        struct res x;
        cmd(loop, c, false, "GET k", &x);
        assert_string_equal(x.reason, "other");
        assert_true(x.took < cfg.read_timeout);
        n++;
        run_for(loop, 0.01);
    }
    long long after = info_num(port, "stats", "total_connections_received");
    raw_auth = NULL;
    /* minus the two INFO connections of this test */
    long long ours = after - before - 1;
    print_message("# %d requests, %lld connections in 1 s\n", n, ours);
    assert_true(n > 20);
    assert_true(ours >= 1 && ours <= 12);
    assert_false(node0(c).breaker_open); /* auth errors are not the node being down */
    rc_client_free(c);

    /* the right password works */
    cfg.password = "s3cret";
    c = client(loop, &cfg);
    struct res x;
    cmd(loop, c, true, "SET pool:auth v", &x);
    assert_string_equal(x.reason, "");
    rc_client_free(c);
    ev_loop_destroy(loop);
}

static void test_bad_config_is_rejected(void **state)
{
    struct ev_loop *loop = ev_loop_new(0);
    struct rc_client_config cfg;
    rc_client_config_init(&cfg);
    cfg.endpoint = "127.0.0.1:notaport";
    char err[256];
    assert_null(rc_client_new(loop, &cfg, err, sizeof err));
    assert_non_null(strstr(err, "notaport"));
    rc_client_config_init(&cfg);
    cfg.tls_ca = "/nonexistent/ca.pem";
    assert_null(rc_client_new(loop, &cfg, err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/ca.pem"));
    ev_loop_destroy(loop);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_pipelined_get_ttl),
        cmocka_unit_test(test_reads_on_replicas),
        cmocka_unit_test(test_killed_server_fails_fast_and_recovers),
        cmocka_unit_test(test_stopped_server_times_out_then_breaker),
        cmocka_unit_test(test_startup_with_server_down),
        cmocka_unit_test(test_wait_timeout_while_server_stuck_at_startup),
        cmocka_unit_test(test_pool_grows_under_load_within_limits),
        cmocka_unit_test(test_max_idle_time_closes_idle_connections),
        cmocka_unit_test(test_max_lifetime_recycles_and_max_idle_trims),
        cmocka_unit_test(test_background_bound_overflow_is_timeout),
        cmocka_unit_test(test_retry_after_server_dropped_connection),
        cmocka_unit_test(test_wrong_password_is_other_and_paced),
        cmocka_unit_test(test_bad_config_is_rejected),
    };
    return cmocka_run_group_tests_name("itest_pool", tests, NULL, NULL);
}
