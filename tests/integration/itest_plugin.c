/* tests/integration/itest_plugin.c — the redis_cache cache (src/plugin/cache.c) and its public
 * wrapper (include/redis_cache.h, "Cache") against real redis-server processes started by
 * tests/integration/plugin.sh (ports and pids in RC_* variables). Upstream responses are
 * real DNS messages captured from knotd (tests/unit/support/fixtures.h).
 *
 * Covers: the round trip (store, then a hit with the second query's ID and letter case and
 * the TTL Redis reports); misses and zones; a collision planted under another name's key;
 * garbage, empty, bare "RCD2" and TC values; a legacy raw-wire entry; DO/CD/class isolation
 * and the exact key names (SPEC §1.1 vectors, key_prefix, key_hash_seed); TTL clamping;
 * NXDOMAIN cached with its SOA; what is never written (SERVFAIL, REFUSED, mismatch, bad
 * RDATA); miss coalescing and write collapsing (commandstats); Redis down at start, killed
 * and restarted, stopped (timeouts), refusing SET; the metrics text; freeing with lookups
 * pending.
 *
 * Server-side facts are read over a plain blocking socket outside the loop. */
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
#include <sys/wait.h>
#include <cmocka.h>

#include <ev.h>

#include "plugin/plugin.h"
#include "redis_cache.h"
#include "support/fixtures.h"
#include "support/raw_redis.h"

/* ---- environment and time --------------------------------------------------------- */

static const char *env(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v) fail_msg("environment variable %s is not set (run through plugin.sh)", name);
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

/* ---- a blocking, binary-safe Redis client for server-side facts -------------------- */

struct rr {
    char type;   /* '$' bulk, '_' nil, ':' integer, '+' status, '-' error, '*' array */
    char *s;     /* bulk payload / line text / array elements joined by '\n' (malloc'd) */
    size_t len;  /* of s */
    long long n; /* integer; array: element count */
};

static void rr_free(struct rr *r)
{
    free(r->s);
    r->s = NULL;
}

/* Parses one reply at buf[*pos]; 1 when complete, 0 when more bytes are needed. */
static int parse_reply(const char *buf, size_t len, size_t *pos, struct rr *out)
{
    size_t p = *pos;
    const char *crlf = memmem(buf + p, len - p, "\r\n", 2);
    if (!crlf) return 0;
    size_t line_end = (size_t)(crlf - buf);
    char t = buf[p];
    out->type = t;
    if (t == '$') {
        long long want = strtoll(buf + p + 1, NULL, 10);
        if (want < 0) {
            out->type = '_';
            out->s = strdup("");
            *pos = line_end + 2;
            return 1;
        }
        if (len < line_end + 2 + (size_t)want + 2) return 0;
        out->s = malloc((size_t)want + 1);
        memcpy(out->s, buf + line_end + 2, (size_t)want);
        out->s[want] = '\0';
        out->len = (size_t)want;
        *pos = line_end + 2 + (size_t)want + 2;
        return 1;
    }
    if (t == '*') {
        long long n = strtoll(buf + p + 1, NULL, 10);
        size_t q = line_end + 2;
        char *joined = strdup("");
        size_t jl = 0;
        for (long long i = 0; i < n; i++) {
            struct rr e = {0};
            if (!parse_reply(buf, len, &q, &e)) {
                free(joined);
                return 0;
            }
            joined = realloc(joined, jl + e.len + 2);
            memcpy(joined + jl, e.s, e.len);
            jl += e.len;
            joined[jl++] = '\n';
            joined[jl] = '\0';
            rr_free(&e);
        }
        out->s = joined;
        out->len = jl;
        out->n = n < 0 ? 0 : n;
        *pos = q;
        return 1;
    }
    out->s = strndup(buf + p + 1, line_end - p - 1);
    out->len = strlen(out->s);
    if (t == ':') out->n = strtoll(out->s, NULL, 10);
    *pos = line_end + 2;
    return 1;
}

static struct rr rexec(int port, size_t argc, const char *const *argv, const size_t *lens)
{
    int fd = raw_connect(port);
    assert_true(fd >= 0);
    size_t cap = 64;
    for (size_t i = 0; i < argc; i++) cap += lens[i] + 32;
    char *cmd = malloc(cap);
    size_t n = (size_t)snprintf(cmd, cap, "*%zu\r\n", argc);
    for (size_t i = 0; i < argc; i++) {
        n += (size_t)snprintf(cmd + n, cap - n, "$%zu\r\n", lens[i]);
        memcpy(cmd + n, argv[i], lens[i]);
        n += lens[i];
        cmd[n++] = '\r';
        cmd[n++] = '\n';
    }
    assert_int_equal(write(fd, cmd, n), (ssize_t)n);
    free(cmd);
    size_t bcap = 1 << 16, blen = 0;
    char *buf = malloc(bcap);
    struct rr out = {0};
    for (;;) {
        if (blen + 1 >= bcap) {
            bcap *= 2;
            buf = realloc(buf, bcap);
        }
        ssize_t r = read(fd, buf + blen, bcap - blen - 1);
        assert_true(r > 0);
        blen += (size_t)r;
        size_t pos = 0;
        memset(&out, 0, sizeof out);
        if (parse_reply(buf, blen, &pos, &out)) break;
    }
    free(buf);
    close(fd);
    return out;
}

/* A command of space-separated words (no binary data). */
static struct rr rcmd(int port, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static struct rr rcmd(int port, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    const char *argv[16];
    size_t lens[16], argc = 0;
    for (char *tok = strtok(line, " "); tok && argc < 16; tok = strtok(NULL, " ")) {
        argv[argc] = tok;
        lens[argc++] = strlen(tok);
    }
    return rexec(port, argc, argv, lens);
}

static long long rint_(int port, const char *fmt, const char *key)
{
    struct rr r = rcmd(port, fmt, key);
    assert_int_equal(r.type, ':');
    long long v = r.n;
    rr_free(&r);
    return v;
}

static void rset(int port, const char *key, const void *val, size_t len)
{
    const char *argv[] = {"SET", key, val};
    size_t lens[] = {3, strlen(key), len};
    struct rr r = rexec(port, 3, argv, lens);
    assert_string_equal(r.s, "OK");
    rr_free(&r);
}

static struct rr rget(int port, const char *key)
{
    return rcmd(port, "GET %s", key);
}

static void flushall(int port)
{
    struct rr r = rcmd(port, "FLUSHALL");
    rr_free(&r);
    r = rcmd(port, "CONFIG RESETSTAT");
    rr_free(&r);
}

/* cmdstat_NAME calls, 0 when the command never ran. */
static long long cmdstat(int port, const char *name)
{
    struct rr r = rcmd(port, "INFO commandstats");
    char pat[64];
    snprintf(pat, sizeof pat, "cmdstat_%s:calls=", name);
    const char *p = strstr(r.s, pat);
    long long v = p ? strtoll(p + strlen(pat), NULL, 10) : 0;
    rr_free(&r);
    return v;
}

/* Every key, sorted, joined by '\n'. */
static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static char *all_keys(int port)
{
    struct rr r = rcmd(port, "KEYS *");
    assert_int_equal(r.type, '*');
    char *parts[64];
    size_t n = 0;
    for (char *t = strtok(r.s, "\n"); t && n < 64; t = strtok(NULL, "\n")) parts[n++] = t;
    qsort(parts, n, sizeof parts[0], cmp_str);
    char *out = calloc(1, 4096);
    for (size_t i = 0; i < n; i++) {
        strcat(out, parts[i]);
        strcat(out, "\n");
    }
    rr_free(&r);
    return out;
}

static pid_t start_redis(int port, const char *dir, const char *extra1, const char *extra2)
{
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execlp("redis-server", "redis-server", "--port", ps, "--bind", "127.0.0.1", "--dir", dir,
               "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", "/dev/null",
               extra1, extra2, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* ---- the loop ------------------------------------------------------------------------ */

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)w;
    (void)revents;
}

typedef bool cond_fn(void *arg);

static bool run_until(struct ev_loop *loop, cond_fn *cond, void *arg, double secs)
{
    ev_timer t;
    ev_timer_init(&t, tick_cb, 0.005, 0.005);
    ev_timer_start(loop, &t);
    double end = mono() + secs;
    while (!cond(arg) && mono() < end) ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &t);
    return cond(arg);
}

static bool never(void *arg)
{
    (void)arg;
    return false;
}

static void run_for(struct ev_loop *loop, double secs)
{
    run_until(loop, never, NULL, secs);
}

static bool no_pending(void *arg)
{
    return rcp_cache_pending_writes(arg) == 0;
}

static void drain(struct ev_loop *loop, struct rcp_cache *c)
{
    assert_true(run_until(loop, no_pending, c, 3.0));
}

/* ---- caches, questions, lookups ---------------------------------------------------- */

static struct rcp_config cfg; /* large: static, set up per test */

static void cfg_for(int port)
{
    rcp_config_init(&cfg);
    snprintf(cfg.endpoint.host, sizeof cfg.endpoint.host, "127.0.0.1");
    cfg.endpoint.port = (uint16_t)port;
    cfg.endpoint_set = true;
}

static struct rcp_cache *cache_new(struct ev_loop *loop)
{
    char err[256];
    struct rcp_cache *c = rcp_cache_new(loop, &cfg, NULL, 0, err, sizeof err);
    if (!c) fail_msg("rcp_cache_new: %s", err);
    return c;
}

static struct dns_question question(const char *fixture_name)
{
    const struct dns_fixture *f = fixture(fixture_name);
    struct dns_question q;
    assert_int_equal(dns_question_parse(&q, f->query, f->query_len), DNS_OK);
    return q;
}

/* The Redis key of q with DO `do_bit`, for the cache's default prefix and seed. */
static const char *key_of(const struct dns_question *q, bool do_bit, char *buf, size_t cap)
{
    uint64_t h = dns_key_hash(q, do_bit, 0);
    assert_true(dns_key_format(buf, cap, "cdrc", 4, h) > 0);
    return buf;
}

struct lres {
    bool done;
    enum rcp_lookup_status st;
    uint8_t reply[66000];
    size_t len;
    int calls;
};

static void on_lookup(void *priv, enum rcp_lookup_status st, const uint8_t *reply, size_t len)
{
    struct lres *r = priv;
    r->done = true;
    r->st = st;
    r->calls++;
    r->len = len;
    if (reply && len <= sizeof r->reply) memcpy(r->reply, reply, len);
}

static bool lres_done(void *arg)
{
    return ((struct lres *)arg)->done;
}

static enum rcp_lookup_status lookup_q(struct ev_loop *loop, struct rcp_cache *c,
                                       const struct dns_question *q, struct lres *r)
{
    memset(r, 0, sizeof *r);
    assert_int_equal(rcp_cache_lookup(c, q, false, on_lookup, r), 0);
    assert_true(run_until(loop, lres_done, r, 3.0));
    assert_int_equal(r->calls, 1);
    return r->st;
}

static enum rcp_lookup_status lookup(struct ev_loop *loop, struct rcp_cache *c, const char *name,
                                     struct lres *r)
{
    struct dns_question q = question(name);
    return lookup_q(loop, c, &q, r);
}

/* Stores the fixture's response for its own query; returns the TTL and leaves the edited
 * response in out (when given). */
static long store_fixture(struct rcp_cache *c, const char *name, uint8_t *out)
{
    const struct dns_fixture *f = fixture(name);
    uint8_t buf[4096];
    assert_true(f->resp_len <= sizeof buf);
    memcpy(buf, f->resp, f->resp_len);
    struct dns_question q = question(name);
    long ttl = rcp_cache_store(c, &q, buf, f->resp_len);
    if (out) memcpy(out, buf, f->resp_len);
    return ttl;
}

/* TTL of the first RR of a message, and its rcode / counts. */
struct view {
    struct dns_msg m;
    struct dns_rr rr[64];
};

static void parse_view(struct view *v, const uint8_t *buf, size_t len)
{
    assert_int_equal(dns_msg_parse(&v->m, buf, len, v->rr, 64), DNS_OK);
}

static uint32_t first_ttl(const uint8_t *buf, size_t len)
{
    struct view v;
    parse_view(&v, buf, len);
    assert_true(v.m.nrr > 0);
    return dns_get32(buf + v.rr[0].ttl_off);
}

/* Sets every TTL (OPT excepted) of a copy of a fixture's response. */
static size_t with_ttl(const char *name, uint32_t ttl, uint8_t *buf)
{
    const struct dns_fixture *f = fixture(name);
    memcpy(buf, f->resp, f->resp_len);
    struct view v;
    parse_view(&v, buf, f->resp_len);
    dns_msg_set_ttl(buf, &v.m, ttl);
    return f->resp_len;
}

/* The metrics text of one cache contains `line` (a whole line). */
static void assert_metric(struct rcp_cache *c, const char *line)
{
    static char buf[16384];
    struct rcp_metrics_series s = {"dns://:1053", rcp_cache_metrics(c)};
    size_t n = rcp_metrics_write(buf, sizeof buf, &s, 1);
    assert_true(n < sizeof buf);
    char want[512];
    snprintf(want, sizeof want, "\n%s\n", line);
    if (!strstr(buf, want)) fail_msg("metrics text lacks \"%s\":\n%s", line, buf);
}

static bool key_gone(void *arg)
{
    const char *const *a = arg;
    struct rr r = rcmd(atoi(a[0]), "EXISTS %s", a[1]);
    bool gone = r.n == 0;
    rr_free(&r);
    if (!gone) usleep(20000);
    return gone;
}

static bool wait_key_gone(struct ev_loop *loop, int port, const char *key, double secs)
{
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    const char *a[2] = {ps, key};
    return run_until(loop, key_gone, (void *)a, secs);
}

/* ---- tests --------------------------------------------------------------------------- */

static void test_round_trip(void **state)
{
    (void)state;
    int port = env_int("RC_PORT");
    flushall(port);
    struct ev_loop *loop = ev_loop_new(0);
    cfg_for(port);
    struct rcp_cache *c = cache_new(loop);

    uint8_t edited[512];
    assert_int_equal(store_fixture(c, "a_example_com", edited), 300);
    assert_int_equal(first_ttl(edited, fixture("a_example_com")->resp_len), 300);
    assert_true(rcp_cache_pending_writes(c) >= 1); /* queued, never awaited */
    drain(loop, c);

    /* SPEC §1.1 vector: example.com. A, DO 0, CD 0 */
    assert_int_equal(rint_(port, "EXISTS %s", "cdrc:fdef38255ee550ba"), 1);
    long long t = rint_(port, "TTL %s", "cdrc:fdef38255ee550ba");
    assert_true(t >= 299 && t <= 300);
    /* the value: RCD2, DO 0, the message without OPT, the upstream's TTLs */
    struct rr v = rget(port, "cdrc:fdef38255ee550ba");
    assert_int_equal(v.type, '$');
    assert_int_equal(v.len, 5 + fixture("a_example_com")->resp_len - 11);
    assert_memory_equal(v.s, "RCD2\0", 5);
    assert_int_equal(dns_get16((const uint8_t *)v.s + 5 + 10), 0); /* ARCOUNT */
    assert_int_equal(first_ttl((const uint8_t *)v.s + 5, v.len - 5), 300);
    rr_free(&v);

    /* a hit for the mixed-case query: its ID, its case, the TTL Redis reports */
    const struct dns_fixture *mq = fixture("a_mixed_case");
    struct lres r;
    assert_int_equal(lookup(loop, c, "a_mixed_case", &r), RCP_LOOKUP_HIT);
    assert_memory_equal(r.reply, mq->query, 2);
    struct dns_question q = question("a_mixed_case");
    assert_memory_equal(r.reply + 12, mq->query + 12, q.qend - 12);
    struct view rv;
    parse_view(&rv, r.reply, r.len);
    assert_true(rv.m.flags & DNS_F_QR);
    assert_true(rv.m.flags & DNS_F_AA);
    assert_int_equal(rv.m.flags & DNS_F_RCODE_MASK, DNS_RCODE_NOERROR);
    assert_true(rv.m.has_edns);
    assert_int_equal(rv.m.edns_udp, 1232);
    assert_int_equal(rv.m.count[1], 1);
    assert_memory_equal(r.reply + rv.rr[0].rdata, "\x5d\xb8\xd8\x22", 4);
    uint32_t ttl = dns_get32(r.reply + rv.rr[0].ttl_off);
    assert_true(ttl >= 298 && ttl <= 300);

    /* the TTL comes from Redis: shorten it there, and without one it is 0 */
    struct rr x = rcmd(port, "EXPIRE cdrc:fdef38255ee550ba 100");
    rr_free(&x);
    assert_int_equal(lookup(loop, c, "a_example_com", &r), RCP_LOOKUP_HIT);
    ttl = first_ttl(r.reply, r.len);
    assert_true(ttl >= 99 && ttl <= 100);
    assert_memory_equal(r.reply, fixture("a_example_com")->query, 2);
    x = rcmd(port, "PERSIST cdrc:fdef38255ee550ba");
    rr_free(&x);
    assert_int_equal(lookup(loop, c, "a_example_com", &r), RCP_LOOKUP_HIT);
    assert_int_equal(first_ttl(r.reply, r.len), 0);

    /* over TCP the same; without EDNS no OPT */
    assert_int_equal(lookup(loop, c, "a_example_com_noedns", &r), RCP_LOOKUP_HIT);
    parse_view(&rv, r.reply, r.len);
    assert_false(rv.m.has_edns);

    const struct rcp_metrics *m = rcp_cache_metrics(c);
    assert_int_equal(m->hits, 4);
    assert_int_equal(m->duration_count, 4);
    for (int i = 0; i < RCP_REASONS; i++) {
        assert_int_equal(m->get_errors[i], 0);
        assert_int_equal(m->set_errors[i], 0);
    }
    assert_metric(c, "coredns_redis_cache_hits_total{server=\"dns://:1053\"} 4");
    assert_metric(c,
                  "coredns_redis_cache_request_duration_seconds_count{server=\"dns://:1053\"} 4");
    assert_metric(
        c,
        "coredns_redis_cache_request_duration_seconds_bucket{server=\"dns://:1053\",le=\"+Inf\"} "
        "4");
    rcp_cache_free(c);
    ev_loop_destroy(loop);
}

static void test_miss_and_zones(void **state)
{
    (void)state;
    int port = env_int("RC_PORT");
    flushall(port);
    struct ev_loop *loop = ev_loop_new(0);
    cfg_for(port);
    struct rcp_cache *c = cache_new(loop);
    struct lres r;
    assert_int_equal(lookup(loop, c, "aaaa_example_com", &r), RCP_LOOKUP_MISS);
    assert_int_equal(r.len, 0);
    const struct rcp_metrics *m = rcp_cache_metrics(c);
    assert_int_equal(m->hits, 0);
    assert_int_equal(m->duration_count, 1);
    assert_int_equal(m->get_errors[RCP_REASON_OTHER], 0);
    assert_int_equal(cmdstat(port, "get"), 1);
    assert_int_equal(cmdstat(port, "ttl"), 1);
    rcp_cache_free(c);

    /* zones: example.org only (from the host, then from the directive) */
    const char *host_zones[] = {"Example.ORG."};
    char err[256];
    c = rcp_cache_new(loop, &cfg, host_zones, 1, err, sizeof err);
    assert_non_null(c);
    struct dns_question q = question("a_example_com");
    memset(&r, 0, sizeof r);
    assert_int_equal(rcp_cache_lookup(c, &q, false, on_lookup, &r), 0);
    assert_true(r.done); /* at once */
    assert_int_equal(r.st, RCP_LOOKUP_SKIP);
    assert_false(rcp_cache_covers(c, &q));
    uint8_t buf[512];
    const struct dns_fixture *f = fixture("a_example_com");
    memcpy(buf, f->resp, f->resp_len);
    assert_int_equal(rcp_cache_store(c, &q, buf, f->resp_len), -1);
    assert_memory_equal(buf, f->resp, f->resp_len); /* untouched */
    assert_int_equal(rcp_cache_pending_writes(c), 0);
    assert_int_equal(rcp_cache_metrics(c)->duration_count, 0);
    rcp_cache_free(c);

    cfg.nzones = 2;
    snprintf(cfg.zones[0], sizeof cfg.zones[0], "org.");
    snprintf(cfg.zones[1], sizeof cfg.zones[1], "example.com.");
    c = rcp_cache_new(loop, &cfg, host_zones, 1, err, sizeof err); /* the directive wins */
    assert_non_null(c);
    assert_true(rcp_cache_covers(c, &q));
    struct dns_question qm = question("a_mixed_case"); /* ExAmPlE.CoM: case-insensitive */
    assert_true(rcp_cache_covers(c, &qm));
    struct dns_question qt = question("txt_example_com"); /* a name below the zone */
    assert_true(rcp_cache_covers(c, &qt));
    struct dns_question qs = question("signed_a_do"); /* signed.test */
    assert_false(rcp_cache_covers(c, &qs));
    rcp_cache_free(c);
    assert_int_equal(cmdstat(port, "get"), 1);
    ev_loop_destroy(loop);
}

static void test_collision_evicted(void **state)
{
    (void)state;
    int port = env_int("RC_PORT");
    flushall(port);
    struct ev_loop *loop = ev_loop_new(0);
    cfg_for(port);
    struct rcp_cache *c = cache_new(loop);

    /* B's value, planted under A's key */
    assert_int_equal(store_fixture(c, "txt_example_com", NULL), 600);
    drain(loop, c);
    struct dns_question qa = question("a_example_com"), qb = question("txt_example_com");
    char ka[64], kb[64];
    key_of(&qa, false, ka, sizeof ka);
    key_of(&qb, false, kb, sizeof kb);
    struct rr vb = rget(port, kb);
    assert_int_equal(vb.type, '$');
    rset(port, ka, vb.s, vb.len);
    rr_free(&vb);

    struct lres r;
    assert_int_equal(lookup(loop, c, "a_example_com", &r), RCP_LOOKUP_MISS);
    const struct rcp_metrics *m = rcp_cache_metrics(c);
    assert_int_equal(m->collisions, 1);
    assert_int_equal(m->hits, 0);
    assert_int_equal(m->get_errors[RCP_REASON_OTHER], 0);
    assert_true(wait_key_gone(loop, port, ka, 2.0));
    assert_int_equal(rint_(port, "EXISTS %s", kb), 1);
    assert_int_equal(cmdstat(port, "expire"), 1);
    assert_metric(c, "coredns_redis_cache_collisions_total{server=\"dns://:1053\"} 1");

    /* B itself is fine */
    assert_int_equal(lookup(loop, c, "txt_example_com", &r), RCP_LOOKUP_HIT);
    assert_int_equal(m->hits, 1);
    rcp_cache_free(c);
    ev_loop_destroy(loop);
}

static void test_bad_values_evicted(void **state)
{
    (void)state;
    int port = env_int("RC_PORT");
    flushall(port);
    struct ev_loop *loop = ev_loop_new(0);
    cfg_for(port);
    struct rcp_cache *c = cache_new(loop);
    struct dns_question qa = question("a_example_com");
    char ka[64];
    key_of(&qa, false, ka, sizeof ka);
    struct {
        const char *v;
        size_t len;
    } bad[] = {{"this is not a DNS message", 25}, {"", 0}, {"RCD2", 4}, {"RCD2\0\1\2", 7}};
    const struct rcp_metrics *m = rcp_cache_metrics(c);
    struct lres r;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rset(port, ka, bad[i].v, bad[i].len);
        assert_int_equal(lookup(loop, c, "a_example_com", &r), RCP_LOOKUP_MISS);
        assert_int_equal(m->get_errors[RCP_REASON_OTHER], i + 1);
        assert_true(wait_key_gone(loop, port, ka, 2.0));
    }
    assert_int_equal(m->collisions, 0);
    assert_int_equal(m->hits, 0);
    char line[128];
    snprintf(line, sizeof line,
             "coredns_redis_cache_get_errors_total{server=\"dns://:1053\",reason=\"other\"} %zu",
             sizeof bad / sizeof bad[0]);
    assert_metric(c, line);

    /* a TC entry (a foreign writer's): a miss counted other, but kept */
    assert_int_equal(store_fixture(c, "a_example_com", NULL), 300);
    drain(loop, c);
    struct rr v = rget(port, ka);
    v.s[5 + 2] |= 0x02; /* TC */
    rset(port, ka, v.s, v.len);
    rr_free(&v);
    assert_int_equal(lookup(loop, c, "a_example_com", &r), RCP_LOOKUP_MISS);
    assert_int_equal(m->get_errors[RCP_REASON_OTHER], sizeof bad / sizeof bad[0] + 1);
    run_for(loop, 0.2);
    assert_int_equal(rint_(port, "EXISTS %s", ka), 1);
    assert_int_equal(rcp_cache_pending_writes(c), 0);

    /* a Redis-side error (WRONGTYPE): ERROR, reason other, not evicted */
    struct rr x = rcmd(port, "DEL %s", ka);
    rr_free(&x);
    x = rcmd(port, "LPUSH %s a", ka);
    rr_free(&x);
    assert_int_equal(lookup(loop, c, "a_example_com", &r), RCP_LOOKUP_ERROR);
    assert_int_equal(m->get_errors[RCP_REASON_OTHER], sizeof bad / sizeof bad[0] + 2);
    run_for(loop, 0.1);
    assert_int_equal(rint_(port, "EXISTS %s", ka), 1);
    rcp_cache_free(c);
    ev_loop_destroy(loop);
}

static void test_legacy_entry_served(void **state)
{
    (void)state;
    int port = env_int("RC_PORT");
    flushall(port);
    struct ev_loop *loop = ev_loop_new(0);
    cfg_for(port);
    struct rcp_cache *c = cache_new(loop);
    /* the whole upstream message, OPT included, as a legacy writer stored it */
    const struct dns_fixture *f = fixture("a_example_com");
    rset(port, "cdrc:fdef38255ee550ba", f->resp, f->resp_len);
    struct rr x = rcmd(port, "EXPIRE cdrc:fdef38255ee550ba 250");
    rr_free(&x);
    struct lres r;
    assert_int_equal(lookup(loop, c, "a_mixed_case", &r), RCP_LOOKUP_HIT);
    struct view rv;
    parse_view(&rv, r.reply, r.len);
    assert_int_equal(rv.m.count[1], 1);
    assert_int_equal(rv.m.count[3], 1); /* one OPT: ours, the stored one dropped */
    assert_int_equal(rv.m.edns_udp, 1232);
    assert_memory_equal(r.reply + rv.rr[0].rdata, "\x5d\xb8\xd8\x22", 4);
    uint32_t ttl = dns_get32(r.reply + rv.rr[0].ttl_off);
    assert_true(ttl >= 249 && ttl <= 250);
    assert_memory_equal(r.reply, fixture("a_mixed_case")->query, 2);

    /* a legacy DO=0 entry is not served to a DO=1 query (different key anyway) */
    assert_int_equal(lookup(loop, c, "a_example_com_do", &r), RCP_LOOKUP_MISS);
    assert_int_equal(rcp_cache_metrics(c)->hits, 1);
    rcp_cache_free(c);
    ev_loop_destroy(loop);
}

static void test_key_isolation_and_names(void **state)
{
    (void)state;
    int port = env_int("RC_PORT");
    flushall(port);
    struct ev_loop *loop = ev_loop_new(0);
    cfg_for(port);
    struct rcp_cache *c = cache_new(loop);
    struct lres r;

    assert_int_equal(store_fixture(c, "a_example_com", NULL), 300);
    drain(loop, c);
    /* DO, CD and the type are in the key: all misses */
    assert_int_equal(lookup(loop, c, "a_example_com_do", &r), RCP_LOOKUP_MISS);
    assert_int_equal(lookup(loop, c, "a_example_com_cd", &r), RCP_LOOKUP_MISS);
    assert_int_equal(lookup(loop, c, "aaaa_example_com", &r), RCP_LOOKUP_MISS);

    assert_true(store_fixture(c, "a_example_com_do", NULL) > 0);
    drain(loop, c);
    /* knot (authoritative) clears CD in its answer: a CD mismatch, never written... */
    assert_int_equal(store_fixture(c, "a_example_com_cd", NULL), 300);
    assert_int_equal(rcp_cache_metrics(c)->response_mismatches, 1);
    assert_int_equal(rcp_cache_pending_writes(c), 0);
    /* ...while a resolver's answer copies it (RFC 4035 §3.2.2) */
    const struct dns_fixture *fcd = fixture("a_example_com_cd");
    uint8_t cdbuf[512];
    memcpy(cdbuf, fcd->resp, fcd->resp_len);
    cdbuf[3] |= 0x10;
    struct dns_question qcd = question("a_example_com_cd");
    assert_int_equal(rcp_cache_store(c, &qcd, cdbuf, fcd->resp_len), 300);
    assert_true(store_fixture(c, "aaaa_example_com", NULL) > 0);
    /* knot answers CHAOS with TTL 0: not written; with 60 s it is */
    assert_int_equal(store_fixture(c, "chaos_version", NULL), 0);
    drain(loop, c);
    uint8_t chbuf[512];
    size_t chlen = with_ttl("chaos_version", 60, chbuf);
    struct dns_question qch0 = question("chaos_version");
    assert_int_equal(rcp_cache_store(c, &qch0, chbuf, chlen), 60);
    drain(loop, c);

    struct dns_question qch = question("chaos_version");
    assert_int_equal(qch.qclass, DNS_C_CH);
    char kch[64], want[512];
    key_of(&qch, false, kch, sizeof kch);
    snprintf(want, sizeof want,
             "cdrc:162a08d167302bde\ncdrc:c67d238979651d44\ncdrc:f683c51c295893b6\n"
             "cdrc:fdef38255ee550ba\n");
    /* the CH key, in sorted position */
    char *keys = all_keys(port);
    assert_non_null(strstr(keys, kch));
    char *p = strstr(keys, kch);
    memmove(p, p + strlen(kch) + 1, strlen(p + strlen(kch) + 1) + 1);
    assert_string_equal(keys, want);
    free(keys);
    /* the same name in class IN is another key */
    struct dns_question qin = qch;
    qin.qclass = DNS_C_IN;
    char kin[64];
    assert_string_not_equal(key_of(&qin, false, kin, sizeof kin), kch);

    assert_int_equal(lookup(loop, c, "a_example_com_do", &r), RCP_LOOKUP_HIT);
    struct view rv;
    parse_view(&rv, r.reply, r.len);
    assert_true(rv.m.edns_do);
    assert_int_equal(lookup(loop, c, "a_example_com_cd", &r), RCP_LOOKUP_HIT);
    parse_view(&rv, r.reply, r.len);
    assert_true(rv.m.flags & DNS_F_CD);
    assert_int_equal(lookup(loop, c, "a_example_com", &r), RCP_LOOKUP_HIT);
    parse_view(&rv, r.reply, r.len);
    assert_false(rv.m.flags & DNS_F_CD);
    assert_false(rv.m.edns_do);
    assert_int_equal(lookup(loop, c, "chaos_version", &r), RCP_LOOKUP_HIT);
    assert_int_equal(rcp_cache_metrics(c)->collisions, 0);

    /* writes take DO from the response: a DO=1 response to a DO=0 query goes to the DO=1
     * key (SPEC §1.1) */
    flushall(port);
    const struct dns_fixture *fdo = fixture("a_example_com_do");
    uint8_t buf[512];
    memcpy(buf, fdo->resp, fdo->resp_len);
    struct dns_question q0 = question("a_example_com");
    assert_int_equal(rcp_cache_store(c, &q0, buf, fdo->resp_len), 300);
    drain(loop, c);
    keys = all_keys(port);
    assert_string_equal(keys, "cdrc:f683c51c295893b6\n");
    free(keys);
    struct rr v = rget(port, "cdrc:f683c51c295893b6");
    assert_memory_equal(v.s, "RCD2\1", 5);
    rr_free(&v);
    rcp_cache_free(c);
    ev_loop_destroy(loop);
}

/* The public API from a directive text: key_prefix (trailing ':' trimmed), key_hash_seed,
 * TTL bounds, metrics text, error messages. */
struct pres {
    bool done;
    int status;
    uint8_t reply[4096];
    size_t len;
};

static void on_public(void *priv, int status, const uint8_t *reply, size_t len)
{
    struct pres *r = priv;
    r->done = true;
    r->status = status;
    r->len = len;
    if (reply && len <= sizeof r->reply) memcpy(r->reply, reply, len);
}

static bool pres_done(void *arg)
{
    return ((struct pres *)arg)->done;
}

static bool public_no_pending(void *arg)
{
    return rc_cache_pending_writes(arg) == 0;
}

static struct rc_cache *public_cache(struct ev_loop *loop, const char *text)
{
    struct rc_cache_config *pc = NULL;
    char err[512];
    if (rc_cache_config_parse(text, strlen(text), "test.conf", &pc, err, sizeof err) != 0)
        fail_msg("parse: %s", err);
    struct rc_cache *rc = rc_cache_new(loop, pc, NULL, 0, err, sizeof err);
    rc_cache_config_free(pc);
    if (!rc) fail_msg("rc_cache_new: %s", err);
    return rc;
}

static int public_lookup(struct ev_loop *loop, struct rc_cache *rc, const char *name,
                         struct pres *r)
{
    const struct dns_fixture *f = fixture(name);
    memset(r, 0, sizeof *r);
    assert_int_equal(rc_cache_lookup(rc, f->query, f->query_len, false, on_public, r), 0);
    assert_true(run_until(loop, pres_done, r, 3.0));
    return r->status;
}

static long public_store(struct rc_cache *rc, const char *name, uint8_t *buf)
{
    const struct dns_fixture *f = fixture(name);
    memcpy(buf, f->resp, f->resp_len);
    return rc_cache_store(rc, f->query, f->query_len, buf, f->resp_len);
}

/* Two caches (two workers' loops) built with one rc_cache_share: the breaker of a dead
 * Redis is one per process, so after A's five connection failures B fails at once, before
 * rc_cache_lookup returns, without a connection attempt of its own. Without a share, B
 * still tries (its callback comes later, from its loop). */
static void share_case(bool shared)
{
    char text[256];
    snprintf(text, sizeof text, "redis_cache {\n    endpoint 127.0.0.1:%d\n}\n", refused_port());
    struct rc_cache_config *pc = NULL;
    char err[512];
    if (rc_cache_config_parse(text, strlen(text), "test.conf", &pc, err, sizeof err) != 0)
        fail_msg("parse: %s", err);
    struct rc_cache_share *sh = shared ? rc_cache_share_new() : NULL;
    if (shared) assert_non_null(sh);
    struct ev_loop *la = ev_loop_new(0), *lb = ev_loop_new(0);
    struct rc_cache *a = rc_cache_new_shared(la, pc, NULL, 0, sh, err, sizeof err);
    struct rc_cache *b = rc_cache_new_shared(lb, pc, NULL, 0, sh, err, sizeof err);
    rc_cache_config_free(pc);
    rc_cache_share_free(sh); /* each cache holds its own reference */
    assert_non_null(a);
    assert_non_null(b);
    struct pres r;
    for (int i = 0; i < 5; i++) assert_int_equal(public_lookup(la, a, "a_example_com", &r), 2);
    const struct dns_fixture *f = fixture("a_example_com");
    memset(&r, 0, sizeof r);
    assert_int_equal(rc_cache_lookup(b, f->query, f->query_len, false, on_public, &r), 0);
    assert_int_equal(r.done, shared);
    assert_true(run_until(lb, pres_done, &r, 3.0));
    assert_int_equal(r.status, 2); /* RC_CACHE_ERROR */
    char m[16384];
    rc_cache_metrics_text(b, "dns://:53", m, sizeof m);
    assert_non_null(strstr(m, "reason=\"connection\"} 1"));
    rc_cache_free(a);
    rc_cache_free(b);
    ev_loop_destroy(la);
    ev_loop_destroy(lb);
}

static void test_public_share_one_breaker_for_every_cache(void **state)
{
    (void)state;
    share_case(true);
}

static void test_public_without_share_each_cache_tries_itself(void **state)
{
    (void)state;
    share_case(false);
}

static void test_public_api_prefix_seed(void **state)
{
    (void)state;
    int port = env_int("RC_PORT");
    flushall(port);
    struct ev_loop *loop = ev_loop_new(0);
    char text[512];
    snprintf(text, sizeof text,
             "redis_cache {\n    endpoint 127.0.0.1:%d\n    key_prefix mycache:\n"
             "    key_hash_seed 11400714819323198485\n}\n",
             port);
    struct rc_cache *rc = public_cache(loop, text);
    uint8_t buf[512];
    assert_int_equal(public_store(rc, "a_example_com", buf), 300);
    assert_true(run_until(loop, public_no_pending, rc, 3.0));
    /* SPEC §1.1: example.com. A with seed 0x9e3779b97f4a7c15 */
    char *keys = all_keys(port);
    assert_string_equal(keys, "mycache:c2a5dc566be14503\n");
    free(keys);
    struct pres r;
    assert_int_equal(public_lookup(loop, rc, "a_mixed_case", &r), RC_CACHE_HIT);
    assert_memory_equal(r.reply, fixture("a_mixed_case")->query, 2);
    assert_int_equal(public_lookup(loop, rc, "aaaa_example_com", &r), RC_CACHE_MISS);
    /* a malformed query: -1, no callback; a response: -1 */
    memset(&r, 0, sizeof r);
    assert_int_equal(rc_cache_lookup(rc, (const uint8_t *)"\1\2\3", 3, false, on_public, &r), -1);
    const struct dns_fixture *f = fixture("a_example_com");
    assert_int_equal(rc_cache_lookup(rc, f->resp, f->resp_len, false, on_public, &r), -1);
    assert_false(r.done);
    assert_int_equal(rc_cache_store(rc, (const uint8_t *)"\1\2\3", 3, buf, f->resp_len), -1);

    static char mt[16384];
    size_t n = rc_cache_metrics_text(rc, "dns://:1053", mt, sizeof mt);
    assert_true(n > 0 && n < sizeof mt);
    assert_non_null(strstr(mt, "\ncoredns_redis_cache_hits_total{server=\"dns://:1053\"} 1\n"));
    assert_non_null(strstr(
        mt, "\ncoredns_redis_cache_request_duration_seconds_count{server=\"dns://:1053\"} 2\n"));
    assert_non_null(strstr(mt, "coredns_redis_cache_set_errors_total{server=\"dns://:1053\","
                               "reason=\"timeout\"} 0\n"));
    assert_int_equal(rc_cache_metrics_text(rc, "x", NULL, 0),
                     rc_cache_metrics_text(rc, "x", mt, sizeof mt));
    rc_cache_free(rc);

    /* an empty prefix: bare hex keys */
    flushall(port);
    snprintf(text, sizeof text, "redis_cache {\n    endpoint 127.0.0.1:%d\n    key_prefix \"\"\n}",
             port);
    rc = public_cache(loop, text);
    assert_int_equal(public_store(rc, "a_example_com", buf), 300);
    assert_true(run_until(loop, public_no_pending, rc, 3.0));
    keys = all_keys(port);
    assert_string_equal(keys, "fdef38255ee550ba\n");
    free(keys);
    assert_int_equal(public_lookup(loop, rc, "a_example_com", &r), RC_CACHE_HIT);
    rc_cache_free(rc);

    /* zones in the directive: outside them SKIP at once */
    snprintf(text, sizeof text, "redis_cache example.org {\n    endpoint 127.0.0.1:%d\n}", port);
    rc = public_cache(loop, text);
    memset(&r, 0, sizeof r);
    assert_int_equal(rc_cache_lookup(rc, f->query, f->query_len, false, on_public, &r), 0);
    assert_true(r.done);
    assert_int_equal(r.status, RC_CACHE_SKIP);
    rc_cache_free(rc);

    /* errors name the file and line */
    struct rc_cache_config *pc = (struct rc_cache_config *)1;
    char err[512];
    const char *bad = "redis_cache {\n    endpoint 127.0.0.1:1\n    bogus 1\n}\n";
    assert_int_equal(rc_cache_config_parse(bad, strlen(bad), "test.conf", &pc, err, sizeof err),
                     -1);
    assert_null(pc);
    assert_true(strncmp(err, "test.conf:3: redis_cache: ", 26) == 0);
    const char *extra = "redis_cache\nforward . 1.1.1.1\n";
    assert_int_equal(rc_cache_config_parse(extra, strlen(extra), "test.conf", &pc, err, sizeof err),
                     -1);
    assert_true(strncmp(err, "test.conf:2: redis_cache: ", 26) == 0);
    const char *quote = "redis_cache {\n  key_prefix \"open\n}\n";
    assert_int_equal(rc_cache_config_parse(quote, strlen(quote), "test.conf", &pc, err, sizeof err),
                     -1);
    assert_true(strncmp(err, "test.conf:2: redis_cache: ", 26) == 0);
    const char *tls = "redis_cache {\n  tls_ca /nonexistent/ca.pem\n}\n";
    assert_int_equal(rc_cache_config_parse(tls, strlen(tls), "test.conf", &pc, err, sizeof err), 0);
    assert_null(rc_cache_new(loop, pc, NULL, 0, err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/ca.pem"));
    rc_cache_config_free(pc);
    ev_loop_destroy(loop);
}

static void test_ttl_clamp_and_nxdomain(void **state)
{
    (void)state;
    int port = env_int("RC_PORT");
    flushall(port);
    struct ev_loop *loop = ev_loop_new(0);
    char text[512];
    snprintf(text, sizeof text,
             "redis_cache {\n    endpoint 127.0.0.1:%d\n    success 1h 1m\n    denial 2m\n}\n",
             port);
    struct rc_cache *rc = public_cache(loop, text);
    const struct dns_fixture *f = fixture("a_example_com");
    uint8_t buf[4096];

    /* a 10 s record is cached for the success minimum of 60 s, and carries 60 s */
    size_t n = with_ttl("a_example_com", 10, buf);
    assert_int_equal(rc_cache_store(rc, f->query, f->query_len, buf, n), 60);
    assert_int_equal(first_ttl(buf, n), 60);
    assert_true(run_until(loop, public_no_pending, rc, 3.0));
    long long t = rint_(port, "TTL %s", "cdrc:fdef38255ee550ba");
    assert_true(t >= 59 && t <= 60);
    /* the value keeps the upstream's TTL */
    struct rr v = rget(port, "cdrc:fdef38255ee550ba");
    assert_int_equal(first_ttl((const uint8_t *)v.s + 5, v.len - 5), 10);
    rr_free(&v);

    /* a day is capped at the success maximum of 1 h */
    n = with_ttl("a_example_com", 86400, buf);
    assert_int_equal(rc_cache_store(rc, f->query, f->query_len, buf, n), 3600);
    assert_true(run_until(loop, public_no_pending, rc, 3.0));
    t = rint_(port, "TTL %s", "cdrc:fdef38255ee550ba");
    assert_true(t >= 3599 && t <= 3600);

    /* NXDOMAIN: min(SOA TTL 3600, MINIMUM 300) = 300, capped by denial 2m */
    const struct dns_fixture *nx = fixture("nxdomain");
    memcpy(buf, nx->resp, nx->resp_len);
    assert_int_equal(rc_cache_store(rc, nx->query, nx->query_len, buf, nx->resp_len), 120);
    assert_true(run_until(loop, public_no_pending, rc, 3.0));
    struct dns_question qnx = question("nxdomain");
    char knx[64];
    key_of(&qnx, false, knx, sizeof knx);
    t = rint_(port, "TTL %s", knx);
    assert_true(t >= 119 && t <= 120);
    struct pres r;
    assert_int_equal(public_lookup(loop, rc, "nxdomain", &r), RC_CACHE_HIT);
    struct view rv;
    parse_view(&rv, r.reply, r.len);
    assert_int_equal(rv.m.flags & DNS_F_RCODE_MASK, DNS_RCODE_NXDOMAIN);
    assert_int_equal(rv.m.count[1], 0);
    assert_int_equal(rv.m.count[2], 1);
    assert_int_equal(rv.rr[0].type, DNS_T_SOA);
    uint32_t ttl = dns_get32(r.reply + rv.rr[0].ttl_off);
    assert_true(ttl >= 119 && ttl <= 120);

    /* NODATA (SOA, no answer) is a denial too */
    const struct dns_fixture *nd = fixture("nodata");
    memcpy(buf, nd->resp, nd->resp_len);
    assert_int_equal(rc_cache_store(rc, nd->query, nd->query_len, buf, nd->resp_len), 120);
    rc_cache_free(rc);
    ev_loop_destroy(loop);
}

/* A response to `q` built byte by byte: NOERROR, one A record with RDATA of `rdlen` bytes. */
static size_t bad_rdata_response(const struct dns_fixture *f, uint8_t *out, uint16_t rdlen)
{
    struct dns_question q;
    assert_int_equal(dns_question_parse(&q, f->query, f->query_len), DNS_OK);
    size_t n = 0;
    memcpy(out, f->query, q.qend);
    dns_put16(out + 2, 0x8180);
    dns_put16(out + 6, 1);
    dns_put16(out + 10, 0);
    n = q.qend;
    const uint8_t rr[] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 1, 0x2c};
    memcpy(out + n, rr, sizeof rr);
    n += sizeof rr;
    dns_put16(out + n, rdlen);
    n += 2;
    memset(out + n, 7, rdlen);
    return n + rdlen;
}

static void test_never_written(void **state)
{
    (void)state;
    int port = env_int("RC_PORT");
    flushall(port);
    struct ev_loop *loop = ev_loop_new(0);
    cfg_for(port);
    struct rcp_cache *c = cache_new(loop);
    const struct rcp_metrics *m = rcp_cache_metrics(c);
    const struct dns_fixture *f = fixture("a_example_com");
    struct dns_question q = question("a_example_com");
    uint8_t buf[512], orig[512];

    /* SERVFAIL: never written, TTLs unchanged */
    memcpy(buf, f->resp, f->resp_len);
    buf[3] = (uint8_t)((buf[3] & 0xF0) | DNS_RCODE_SERVFAIL);
    memcpy(orig, buf, f->resp_len);
    assert_int_equal(rcp_cache_store(c, &q, buf, f->resp_len), -1);
    assert_memory_equal(buf, orig, f->resp_len);
    assert_int_equal(rcp_cache_pending_writes(c), 0);
    /* REFUSED as knot sent it */
    assert_int_equal(store_fixture(c, "refused", NULL), -1);
    /* TC: not written, but the reply carries the cache duration */
    memcpy(buf, f->resp, f->resp_len);
    buf[2] |= 0x02;
    assert_int_equal(rcp_cache_store(c, &q, buf, f->resp_len), 300);
    /* a response to another question: a mismatch, not written, TTL still set */
    struct dns_question qaaaa = question("aaaa_example_com");
    memcpy(buf, f->resp, f->resp_len);
    assert_int_equal(rcp_cache_store(c, &qaaaa, buf, f->resp_len), 300);
    assert_int_equal(m->response_mismatches, 1);
    /* A with 3 bytes of RDATA: cannot be encoded for the Go library */
    size_t n = bad_rdata_response(f, buf, 3);
    assert_int_equal(rcp_cache_store(c, &q, buf, n), 300);
    assert_int_equal(m->encode_errors, 1);
    /* a dangling CNAME chain */
    assert_int_equal(store_fixture(c, "cname_dangling", NULL), 300);
    /* garbage */
    assert_int_equal(rcp_cache_store(c, &q, (uint8_t *)"\0\0\0", 3), -1);

    assert_int_equal(rcp_cache_pending_writes(c), 0);
    run_for(loop, 0.1);
    char *keys = all_keys(port);
    assert_string_equal(keys, "");
    free(keys);
    assert_int_equal(cmdstat(port, "set"), 0);
    assert_metric(c, "coredns_redis_cache_response_mismatches_total{server=\"dns://:1053\"} 1");
    assert_metric(c, "coredns_redis_cache_encode_errors_total{server=\"dns://:1053\"} 1");
    for (int i = 0; i < RCP_REASONS; i++) assert_int_equal(m->set_errors[i], 0);
    rcp_cache_free(c);
    ev_loop_destroy(loop);
}

static void test_coalescing_and_collapse(void **state)
{
    (void)state;
    int port = env_int("RC_PORT");
    flushall(port);
    struct ev_loop *loop = ev_loop_new(0);
    cfg_for(port);
    struct rcp_cache *c = cache_new(loop);
    const struct rcp_metrics *m = rcp_cache_metrics(c);

    /* two writes of one key back to back: one SET */
    assert_int_equal(store_fixture(c, "a_example_com", NULL), 300);
    assert_int_equal(store_fixture(c, "a_mixed_case", NULL), 300);
    assert_int_equal(rcp_cache_pending_writes(c), 1);
    assert_int_equal(rcp_cache_collapsed_writes(c), 1);
    drain(loop, c);
    assert_int_equal(cmdstat(port, "set"), 1);
    /* once done, the next write goes out */
    assert_int_equal(store_fixture(c, "a_example_com", NULL), 300);
    drain(loop, c);
    assert_int_equal(cmdstat(port, "set"), 2);

    /* three lookups of one key at once: one GET + TTL, three replies of their own */
    static struct lres r[3];
    const char *names[3] = {"a_example_com", "a_mixed_case", "a_example_com_noedns"};
    memset(r, 0, sizeof r);
    for (int i = 0; i < 3; i++) {
        struct dns_question q = question(names[i]);
        assert_int_equal(rcp_cache_lookup(c, &q, i == 2, on_lookup, &r[i]), 0);
    }
    for (int i = 0; i < 3; i++) assert_true(run_until(loop, lres_done, &r[i], 3.0));
    assert_int_equal(cmdstat(port, "get"), 1);
    assert_int_equal(cmdstat(port, "ttl"), 1);
    for (int i = 0; i < 3; i++) {
        const struct dns_fixture *f = fixture(names[i]);
        struct dns_question q = question(names[i]);
        assert_int_equal(r[i].st, RCP_LOOKUP_HIT);
        assert_int_equal(r[i].calls, 1);
        assert_memory_equal(r[i].reply, f->query, 2);
        assert_memory_equal(r[i].reply + 12, f->query + 12, q.qend - 12);
    }
    assert_int_equal(m->hits, 3);
    assert_int_equal(m->duration_count, 3);

    /* a miss shared the same way */
    memset(r, 0, sizeof r);
    struct dns_question qa = question("aaaa_example_com");
    for (int i = 0; i < 2; i++)
        assert_int_equal(rcp_cache_lookup(c, &qa, false, on_lookup, &r[i]), 0);
    for (int i = 0; i < 2; i++) assert_true(run_until(loop, lres_done, &r[i], 3.0));
    assert_int_equal(r[0].st, RCP_LOOKUP_MISS);
    assert_int_equal(r[1].st, RCP_LOOKUP_MISS);
    assert_int_equal(cmdstat(port, "get"), 2);
    assert_int_equal(m->duration_count, 5);
    rcp_cache_free(c);
    ev_loop_destroy(loop);
}

static void test_redis_down_at_start(void **state)
{
    (void)state;
    int port = env_int("RC_FREE_PORT");
    struct ev_loop *loop = ev_loop_new(0);
    cfg_for(port);
    double t0 = mono();
    struct rcp_cache *c = cache_new(loop);
    assert_true(mono() - t0 < 0.05);
    const struct rcp_metrics *m = rcp_cache_metrics(c);
    struct lres r;
    for (int i = 0; i < 8; i++) {
        t0 = mono();
        assert_int_equal(lookup(loop, c, "a_example_com", &r), RCP_LOOKUP_ERROR);
        assert_true(mono() - t0 < cfg.read_timeout + 0.1);
    }
    assert_int_equal(m->get_errors[RCP_REASON_CONNECTION], 8);
    assert_int_equal(m->duration_count, 8);
    /* the store returns at once; the write fails in the background */
    t0 = mono();
    assert_int_equal(store_fixture(c, "a_example_com", NULL), 300);
    assert_true(mono() - t0 < 0.01);
    drain(loop, c);
    assert_int_equal(m->set_errors[RCP_REASON_CONNECTION], 1);
    assert_metric(
        c, "coredns_redis_cache_get_errors_total{server=\"dns://:1053\",reason=\"connection\"} 8");
    assert_metric(
        c, "coredns_redis_cache_set_errors_total{server=\"dns://:1053\",reason=\"connection\"} 1");
    rcp_cache_free(c);
    ev_loop_destroy(loop);
}

static bool not_error(void *arg)
{
    void **a = arg;
    struct ev_loop *loop = a[0];
    struct rcp_cache *c = a[1];
    struct lres r;
    return lookup(loop, c, "a_example_com", &r) != RCP_LOOKUP_ERROR;
}

static void test_killed_then_restarted(void **state)
{
    (void)state;
    int port = env_int("RC_V_PORT");
    pid_t pid = (pid_t)env_int("RC_V_PID");
    struct ev_loop *loop = ev_loop_new(0);
    cfg_for(port);
    struct rcp_cache *c = cache_new(loop);
    const struct rcp_metrics *m = rcp_cache_metrics(c);
    struct lres r;
    assert_int_equal(store_fixture(c, "a_example_com", NULL), 300);
    drain(loop, c);
    assert_int_equal(lookup(loop, c, "a_example_com", &r), RCP_LOOKUP_HIT);

    assert_int_equal(kill(pid, SIGKILL), 0);
    usleep(100000);
    for (int i = 0; i < 10; i++) {
        double t0 = mono();
        assert_int_equal(lookup(loop, c, "a_example_com", &r), RCP_LOOKUP_ERROR);
        assert_true(mono() - t0 < cfg.read_timeout + 0.1);
    }
    assert_int_equal(m->get_errors[RCP_REASON_CONNECTION], 10);
    assert_int_equal(m->get_errors[RCP_REASON_TIMEOUT], 0);
    assert_int_equal(store_fixture(c, "a_example_com", NULL), 300);
    drain(loop, c);
    assert_int_equal(m->set_errors[RCP_REASON_CONNECTION], 1);

    pid_t np = start_redis(port, env("RC_V_DIR"), "--loglevel", "warning");
    double t0 = mono();
    void *arg[2] = {loop, c};
    assert_true(run_until(loop, not_error, arg, 5.0));
    print_message("# recovered %.2f s after the restart\n", mono() - t0);
    /* the data died with the server: a miss, then a new round trip */
    assert_int_equal(lookup(loop, c, "a_example_com", &r), RCP_LOOKUP_MISS);
    assert_int_equal(store_fixture(c, "a_example_com", NULL), 300);
    drain(loop, c);
    assert_int_equal(lookup(loop, c, "a_example_com", &r), RCP_LOOKUP_HIT);
    rcp_cache_free(c);
    kill(np, SIGTERM);
    waitpid(np, NULL, 0);
    ev_loop_destroy(loop);
}

static void test_timeouts_and_free_with_pending(void **state)
{
    (void)state;
    int port = env_int("RC_S_PORT");
    pid_t pid = (pid_t)env_int("RC_S_PID");
    struct ev_loop *loop = ev_loop_new(0);
    cfg_for(port);
    cfg.read_timeout = 0.2;
    cfg.write_timeout = 0.3;
    struct rcp_cache *c = cache_new(loop);
    const struct rcp_metrics *m = rcp_cache_metrics(c);
    struct lres r;
    assert_int_equal(lookup(loop, c, "a_example_com", &r), RCP_LOOKUP_MISS); /* connected */

    assert_int_equal(kill(pid, SIGSTOP), 0);
    double t0 = mono();
    assert_int_equal(lookup(loop, c, "a_example_com", &r), RCP_LOOKUP_ERROR);
    double took = mono() - t0;
    assert_true(took >= 0.15 && took < 0.2 + 0.1);
    assert_int_equal(m->get_errors[RCP_REASON_TIMEOUT], 1);
    assert_int_equal(store_fixture(c, "a_example_com", NULL), 300);
    drain(loop, c);
    assert_int_equal(m->set_errors[RCP_REASON_TIMEOUT], 1);
    assert_metric(
        c, "coredns_redis_cache_get_errors_total{server=\"dns://:1053\",reason=\"timeout\"} 1");
    assert_metric(
        c, "coredns_redis_cache_set_errors_total{server=\"dns://:1053\",reason=\"timeout\"} 1");

    /* freed with a lookup and a write pending: the lookup gets ERROR, nothing leaks */
    memset(&r, 0, sizeof r);
    struct dns_question q = question("aaaa_example_com");
    assert_int_equal(rcp_cache_lookup(c, &q, false, on_lookup, &r), 0);
    assert_int_equal(store_fixture(c, "aaaa_example_com", NULL), 300);
    assert_false(r.done);
    rcp_cache_free(c);
    assert_true(r.done);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.st, RCP_LOOKUP_ERROR);
    assert_int_equal(kill(pid, SIGCONT), 0);
    ev_loop_destroy(loop);
}

static void test_set_refused_is_other(void **state)
{
    (void)state;
    int port = env_int("RC_NS_PORT"); /* rename-command SET "" */
    struct ev_loop *loop = ev_loop_new(0);
    cfg_for(port);
    struct rcp_cache *c = cache_new(loop);
    const struct rcp_metrics *m = rcp_cache_metrics(c);
    assert_int_equal(store_fixture(c, "a_example_com", NULL), 300);
    drain(loop, c);
    assert_int_equal(m->set_errors[RCP_REASON_OTHER], 1);
    assert_metric(
        c, "coredns_redis_cache_set_errors_total{server=\"dns://:1053\",reason=\"other\"} 1");
    struct lres r;
    assert_int_equal(lookup(loop, c, "a_example_com", &r), RCP_LOOKUP_MISS);
    rcp_cache_free(c);
    ev_loop_destroy(loop);
}

static void test_udp_size_and_truncation(void **state)
{
    (void)state;
    int port = env_int("RC_PORT");
    flushall(port);
    struct ev_loop *loop = ev_loop_new(0);
    cfg_for(port);
    struct rcp_cache *c = cache_new(loop);
    /* 40 A records (~700 bytes): fit our default 1232, not 512 */
    assert_int_equal(store_fixture(c, "many_a", NULL), 200);
    assert_int_equal(store_fixture(c, "large_txt", NULL), 900);
    drain(loop, c);
    struct lres r;
    struct view rv;
    assert_int_equal(lookup(loop, c, "many_a", &r), RCP_LOOKUP_HIT);
    parse_view(&rv, r.reply, r.len);
    assert_false(rv.m.flags & DNS_F_TC);
    assert_int_equal(rv.m.count[1], 40);
    assert_true(r.len > 512);
    rcp_cache_set_udp_size(c, 512);
    assert_int_equal(lookup(loop, c, "many_a", &r), RCP_LOOKUP_HIT);
    parse_view(&rv, r.reply, r.len);
    assert_true(rv.m.flags & DNS_F_TC);
    assert_true(r.len <= 512);
    assert_int_equal(rv.m.edns_udp, 512);
    rcp_cache_set_udp_size(c, 1232);
    /* ~1,300 bytes of TXT: truncated over UDP, whole over TCP */
    assert_int_equal(lookup(loop, c, "large_txt", &r), RCP_LOOKUP_HIT);
    parse_view(&rv, r.reply, r.len);
    assert_true(rv.m.flags & DNS_F_TC);
    assert_true(r.len <= 1232);
    struct dns_question q = question("large_txt");
    memset(&r, 0, sizeof r);
    assert_int_equal(rcp_cache_lookup(c, &q, true, on_lookup, &r), 0);
    assert_true(run_until(loop, lres_done, &r, 3.0));
    assert_int_equal(r.st, RCP_LOOKUP_HIT);
    parse_view(&rv, r.reply, r.len);
    assert_false(rv.m.flags & DNS_F_TC);
    assert_true(r.len > 1232);
    rcp_cache_free(c);
    ev_loop_destroy(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_miss_and_zones),
        cmocka_unit_test(test_collision_evicted),
        cmocka_unit_test(test_bad_values_evicted),
        cmocka_unit_test(test_legacy_entry_served),
        cmocka_unit_test(test_key_isolation_and_names),
        cmocka_unit_test(test_public_api_prefix_seed),
        cmocka_unit_test(test_ttl_clamp_and_nxdomain),
        cmocka_unit_test(test_never_written),
        cmocka_unit_test(test_coalescing_and_collapse),
        cmocka_unit_test(test_udp_size_and_truncation),
        cmocka_unit_test(test_redis_down_at_start),
        cmocka_unit_test(test_killed_then_restarted),
        cmocka_unit_test(test_timeouts_and_free_with_pending),
        cmocka_unit_test(test_set_refused_is_other),
        cmocka_unit_test(test_public_share_one_breaker_for_every_cache),
        cmocka_unit_test(test_public_without_share_each_cache_tries_itself),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
