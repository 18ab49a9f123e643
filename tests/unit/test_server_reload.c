/* tests/unit/test_server_reload.c — the pure decisions of a reload (src/server/reload.c)
 * and the directives that drive it (corefile.c): Go durations, `reload [INTERVAL [JITTER]]`
 * with CoreDNS's bounds and defaults, the check period, the file checksum, `health {
 * lameduck D }`, which parts a new Corefile keeps (blocks matched by keys; cache, forward
 * and redis_cache compared ignoring where they were written), and counters carried over. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "plugin/plugin.h"
#include "server/server.h"

static void parse_ok(struct srv_config *cfg, const char *text)
{
    struct cfg_error errs[4];
    size_t n = 0;
    if (srv_config_parse(cfg, "Corefile", text, strlen(text), errs, 4, &n) != 0) {
        char line[512] = "?";
        if (n) cfg_error_format(&errs[0], line, sizeof line);
        fail_msg("rejected: %s\n%s", line, text);
    }
}

/* The text fails with one error at `line` containing `why`. */
static void parse_fails(const char *text, unsigned line, const char *why)
{
    struct srv_config cfg;
    struct cfg_error errs[4];
    size_t n = 0;
    if (srv_config_parse(&cfg, "Corefile", text, strlen(text), errs, 4, &n) == 0)
        fail_msg("accepted:\n%s", text);
    char msg[512];
    cfg_error_format(&errs[0], msg, sizeof msg);
    char want[64];
    snprintf(want, sizeof want, "Corefile:%u: ", line);
    if (n != 1 || strncmp(msg, want, strlen(want)) != 0 || !strstr(msg, why))
        fail_msg("%zu errors, first \"%s\"; want line %u and \"%s\"", n, msg, line, why);
}

/* ---- durations and the reload directive ---------------------------------------------- */

static void test_duration_parse(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        double v;
    } good[] = {{"2s", 2},       {"1m30s", 90}, {"500ms", 0.5},   {"1.5h", 5400},
                {"0", 0},        {"+0", 0},     {"1h2m3s", 3723}, {"250us", 0.00025},
                {"100ns", 1e-7}, {"0.5s", 0.5}, {"30s", 30},      {"+3s", 3}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        double v = -1;
        if (!srv_duration_parse(good[i].s, &v)) fail_msg("rejected %s", good[i].s);
        if (v < good[i].v - 1e-12 || v > good[i].v + 1e-12)
            fail_msg("%s gave %g, want %g", good[i].s, v, good[i].v);
    }
    static const char *const bad[] = {"",    "5",   "-1s", "1x",    "s",    "1.2.3s", ".s",
                                      "1s2", "ten", "1 s", "0x10s", "1e3s", "+"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        double v = 7;
        if (srv_duration_parse(bad[i], &v)) fail_msg("accepted \"%s\" as %g", bad[i], v);
    }
}

static void test_reload_args_defaults_and_bounds(void **state)
{
    (void)state;
    static const struct {
        const char *i, *j;
        double iv, jt;
    } good[] = {
        {NULL, NULL, 30, 15},  /* CoreDNS's defaults */
        {"10s", NULL, 10, 5},  /* the default jitter is capped at half the interval */
        {"2s", "0", 2, 0},     /* the minimum interval; jitter off */
        {"10s", "8s", 10, 5},  /* capped */
        {"1m", "10s", 60, 10}, /* as given */
        {"2s", "1s", 2, 1},    /* the minimum jitter */
    };
    for (size_t k = 0; k < sizeof good / sizeof good[0]; k++) {
        double iv = -1, jt = -1;
        const char *why = srv_reload_args(good[k].i, good[k].j, &iv, &jt);
        if (why) fail_msg("reload %s %s: %s", good[k].i, good[k].j, why);
        assert_true(iv == good[k].iv);
        assert_true(jt == good[k].jt);
    }
    static const struct {
        const char *i, *j, *why;
    } bad[] = {
        {"1s", NULL, "at least 2s"},        {"0s", NULL, "at least 2s"},
        {"foo", NULL, "invalid interval"},  {"10s", "foo", "invalid jitter"},
        {"3s", "0.5s", "0 or at least 1s"}, {"3s", "-1s", "invalid jitter"},
        {"1999ms", NULL, "at least 2s"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        double iv = 0, jt = 0;
        const char *why = srv_reload_args(bad[k].i, bad[k].j, &iv, &jt);
        if (!why || !strstr(why, bad[k].why))
            fail_msg("reload %s %s: got \"%s\", want \"%s\"", bad[k].i, bad[k].j,
                     why ? why : "(accepted)", bad[k].why);
    }
}

static void test_reload_period_within_jitter(void **state)
{
    (void)state;
    assert_true(srv_reload_period(30, 15, 0.5) == 30);
    assert_true(srv_reload_period(30, 15, 0.0) == 22.5);
    double hi = srv_reload_period(30, 15, 0.9999999);
    assert_true(hi < 37.5 && hi > 37.4);
    assert_true(srv_reload_period(2, 0, 0.9) == 2); /* jitter 0: exactly the interval */
    /* out-of-range randomness is clamped: never below interval - jitter/2 */
    assert_true(srv_reload_period(10, 4, -3) == 8);
    assert_true(srv_reload_period(10, 4, 7) < 12);
}

static void test_checksum_detects_edits(void **state)
{
    (void)state;
    const char a[] = ".:1053 {\n forward . 127.0.0.1\n}\n";
    char b[sizeof a];
    memcpy(b, a, sizeof a);
    assert_true(srv_reload_checksum(a, strlen(a)) == srv_reload_checksum(b, strlen(b)));
    b[strlen(b) - 4] = '2'; /* one byte */
    assert_true(srv_reload_checksum(a, strlen(a)) != srv_reload_checksum(b, strlen(b)));
    assert_true(srv_reload_checksum(a, strlen(a)) != srv_reload_checksum(a, strlen(a) - 1));
}

static void test_reload_directive_in_corefile(void **state)
{
    (void)state;
    struct srv_config cfg;
    parse_ok(&cfg, ".:1053 {\n forward . 127.0.0.1\n}\n");
    assert_false(cfg.has_reload);
    srv_config_free(&cfg);

    parse_ok(&cfg, ".:1053 {\n reload\n}\n");
    assert_true(cfg.has_reload);
    assert_true(cfg.reload_interval == 30 && cfg.reload_jitter == 15);
    srv_config_free(&cfg);

    parse_ok(&cfg, "a.org:1053 {\n reload 5s 1s\n}\nb.org:1053 {\n reload 5s 1s\n}\n");
    assert_true(cfg.reload_interval == 5 && cfg.reload_jitter == 1);
    srv_config_free(&cfg);

    parse_fails(".:1053 {\n\n reload 1s\n}\n", 3, "reload: interval must be at least 2s");
    parse_fails(".:1053 {\n reload 10s 0.5s\n}\n", 2, "reload: jitter must be 0 or at least 1s");
    parse_fails(".:1053 {\n reload 10s 2s 3s\n}\n", 2, "reload: expected at most");
    parse_fails(".:1053 {\n reload\n reload\n}\n", 3, "only one reload per server block");
    parse_fails(".:1053 {\n reload {\n }\n}\n", 2, "a block is not supported");
    parse_fails("a.org {\n reload 5s\n}\nb.org {\n reload 6s\n}\n", 5,
                "reload: differs from an earlier reload");
}

static void test_health_lameduck_in_corefile(void **state)
{
    (void)state;
    struct srv_config cfg;
    parse_ok(&cfg, ".:1053 {\n health 127.0.0.1:8080\n}\n");
    assert_true(cfg.health_lameduck == 0);
    srv_config_free(&cfg);

    parse_ok(&cfg, ".:1053 {\n health 127.0.0.1:8080 {\n  lameduck 5s\n }\n}\n");
    assert_true(cfg.has_health);
    assert_int_equal(cfg.health.port, 8080);
    assert_true(cfg.health_lameduck == 5);
    srv_config_free(&cfg);

    parse_ok(&cfg, ".:1053 {\n health {\n  lameduck 1500ms\n }\n}\n");
    assert_int_equal(cfg.health.port, 8080); /* CoreDNS's default address */
    assert_true(cfg.health_lameduck == 1.5);
    srv_config_free(&cfg);

    /* every block serves one health listener: the largest lameduck applies */
    parse_ok(&cfg, "a.org {\n health :8080 {\n  lameduck 2s\n }\n}\n"
                   "b.org {\n health :8080 {\n  lameduck 7s\n }\n}\n");
    assert_true(cfg.health_lameduck == 7);
    srv_config_free(&cfg);

    parse_fails(".:1053 {\n health {\n  lameduck\n }\n}\n", 3, "expected one duration");
    parse_fails(".:1053 {\n health {\n  lameduck 5\n }\n}\n", 3, "invalid duration");
    parse_fails(".:1053 {\n health {\n  lameduck 2h\n }\n}\n", 3, "0 to 1h");
    parse_fails(".:1053 {\n health {\n  lameduck 1s 2s\n }\n}\n", 3, "expected one duration");
    parse_fails(".:1053 {\n health {\n\n  linger 5s\n }\n}\n", 4,
                "health: unknown option \"linger\"");
}

/* ---- what a new Corefile keeps ---------------------------------------------------------- */

static const char base[] = "a.test:1053 {\n"
                           " bind 127.0.0.1\n"
                           " cache 60\n"
                           " redis_cache {\n"
                           "  endpoint 127.0.0.1:6380\n"
                           "  read_endpoint 127.0.0.2:6380\n"
                           " }\n"
                           " forward . 127.0.0.1:5300 127.0.0.2:5300\n"
                           "}\n"
                           "b.test:1053 {\n"
                           " cache\n"
                           " forward . 127.0.0.1:5301\n"
                           "}\n";

static void plan(const char *old_text, const char *new_text, struct srv_reload_keep *keep,
                 size_t *nblocks)
{
    struct srv_config o, n;
    parse_ok(&o, old_text);
    parse_ok(&n, new_text);
    srv_reload_plan(&o, &n, keep);
    *nblocks = n.nblocks;
    srv_config_free(&o);
    srv_config_free(&n);
}

static void test_same_text_keeps_everything(void **state)
{
    (void)state;
    /* the same directives on other lines (comments and blank lines in front) */
    char moved[2048];
    snprintf(moved, sizeof moved, "# moved down\n\n\n%s", base);
    struct srv_reload_keep keep[SRV_BLOCKS_MAX];
    size_t n = 0;
    plan(base, moved, keep, &n);
    assert_int_equal(n, 2);
    assert_int_equal(keep[0].from, 0);
    assert_true(keep[0].l1 && keep[0].redis && keep[0].forward);
    assert_int_equal(keep[1].from, 1);
    assert_true(keep[1].l1 && keep[1].forward);
    assert_false(keep[1].redis); /* it has none */
}

static void test_changed_parts_are_rebuilt(void **state)
{
    (void)state;
    struct srv_reload_keep keep[SRV_BLOCKS_MAX];
    size_t n = 0;
    char t[2048];
    /* the upstream of block a changes: forward rebuilt, the rest kept */
    snprintf(t, sizeof t, "%s", base);
    memcpy(strstr(t, "127.0.0.2:5300"), "127.0.0.3:5300", 14);
    plan(base, t, keep, &n);
    assert_true(keep[0].l1 && keep[0].redis && !keep[0].forward);
    assert_true(keep[1].l1 && keep[1].forward);

    /* cache 60 -> cache 61 */
    snprintf(t, sizeof t, "%s", base);
    memcpy(strstr(t, "cache 60"), "cache 61", 8);
    plan(base, t, keep, &n);
    assert_true(!keep[0].l1 && keep[0].redis && keep[0].forward);

    /* a redis_cache option added */
    const char *more = "a.test:1053 {\n bind 127.0.0.1\n cache 60\n redis_cache {\n"
                       "  endpoint 127.0.0.1:6380\n  read_endpoint 127.0.0.2:6380\n"
                       "  success 120\n }\n forward . 127.0.0.1:5300 127.0.0.2:5300\n}\n"
                       "b.test:1053 {\n cache\n forward . 127.0.0.1:5301\n}\n";
    plan(base, more, keep, &n);
    assert_true(keep[0].l1 && !keep[0].redis && keep[0].forward);

    /* another read endpoint port */
    snprintf(t, sizeof t, "%s", base);
    memcpy(strstr(t, "127.0.0.2:6380"), "127.0.0.2:6381", 14);
    plan(base, t, keep, &n);
    assert_true(!keep[0].redis);

    /* cache removed from block b, then added back */
    const char *nocache = "a.test:1053 {\n bind 127.0.0.1\n cache 60\n redis_cache {\n"
                          "  endpoint 127.0.0.1:6380\n  read_endpoint 127.0.0.2:6380\n }\n"
                          " forward . 127.0.0.1:5300 127.0.0.2:5300\n}\n"
                          "b.test:1053 {\n forward . 127.0.0.1:5301\n}\n";
    plan(base, nocache, keep, &n);
    assert_int_equal(keep[1].from, 1);
    assert_false(keep[1].l1);
    plan(nocache, base, keep, &n);
    assert_false(keep[1].l1);
}

static void test_blocks_matched_by_keys(void **state)
{
    (void)state;
    struct srv_reload_keep keep[SRV_BLOCKS_MAX];
    size_t n = 0;
    /* the blocks swapped in the file: matched by their keys, not their place */
    const char *swapped = "b.test:1053 {\n cache\n forward . 127.0.0.1:5301\n}\n"
                          "a.test:1053 {\n bind 127.0.0.1\n cache 60\n redis_cache {\n"
                          "  endpoint 127.0.0.1:6380\n  read_endpoint 127.0.0.2:6380\n }\n"
                          " forward . 127.0.0.1:5300 127.0.0.2:5300\n}\n";
    plan(base, swapped, keep, &n);
    assert_int_equal(keep[0].from, 1);
    assert_int_equal(keep[1].from, 0);
    assert_true(keep[0].l1 && keep[0].forward);
    assert_true(keep[1].l1 && keep[1].redis && keep[1].forward);

    /* another port, another bind, another zone: a new block, nothing kept */
    const char *other[] = {"a.test:1054 {\n bind 127.0.0.1\n cache 60\n}\n",
                           "a.test:1053 {\n bind 127.0.0.2\n cache 60\n}\n",
                           "a.test:1053 {\n cache 60\n}\n",
                           "x.test:1053 {\n bind 127.0.0.1\n cache 60\n}\n",
                           "a.test:1053 c.test:1053 {\n bind 127.0.0.1\n cache 60\n}\n"};
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
        plan(base, other[i], keep, &n);
        if (keep[0].from != -1) fail_msg("matched: %s", other[i]);
        assert_false(keep[0].l1 || keep[0].redis || keep[0].forward);
    }
    /* no old config (the first generation): nothing kept */
    struct srv_config c;
    parse_ok(&c, base);
    srv_reload_plan(NULL, &c, keep);
    assert_int_equal(keep[0].from, -1);
    assert_int_equal(keep[1].from, -1);
    srv_config_free(&c);
}

static void test_option_comparisons_ignore_where(void **state)
{
    (void)state;
    struct srv_config a, b;
    parse_ok(&a, base);
    parse_ok(&b, base);
    /* the same options at other places compare equal... */
    struct rcp_config r = *b.blocks[0].redis_cache;
    snprintf(r.file, sizeof r.file, "elsewhere");
    r.line = 99;
    r.endpoint.line = 42;
    r.read_endpoints[0].line = 43;
    assert_true(srv_rcp_config_same(a.blocks[0].redis_cache, &r));
    struct l1_opts l = b.blocks[0].cache;
    snprintf(l.file, sizeof l.file, "elsewhere");
    l.line = 7;
    assert_true(srv_l1_opts_same(&a.blocks[0].cache, &l));
    struct fwd_opts f = b.blocks[0].forward;
    snprintf(f.file, sizeof f.file, "elsewhere");
    f.line = 8;
    assert_true(srv_fwd_opts_same(&a.blocks[0].forward, &f));
    /* ...and any option makes a difference */
    r.db = 3;
    assert_false(srv_rcp_config_same(a.blocks[0].redis_cache, &r));
    r = *b.blocks[0].redis_cache;
    snprintf(r.password, sizeof r.password, "s3cret");
    assert_false(srv_rcp_config_same(a.blocks[0].redis_cache, &r));
    r = *b.blocks[0].redis_cache;
    r.pool.size = 4;
    assert_false(srv_rcp_config_same(a.blocks[0].redis_cache, &r));
    l.keepttl = !l.keepttl;
    assert_false(srv_l1_opts_same(&a.blocks[0].cache, &l));
    f.force_tcp = !f.force_tcp;
    assert_false(srv_fwd_opts_same(&a.blocks[0].forward, &f));
    assert_true(srv_rcp_config_same(NULL, NULL));
    assert_false(srv_rcp_config_same(a.blocks[0].redis_cache, NULL));
    srv_config_free(&a);
    srv_config_free(&b);
}

/* SPEC §3: pool limits are per process, split across the workers, at least 1 each. */
static void test_pool_limits_split_across_workers(void **state)
{
    (void)state;
    struct topo_pool_opts p;
    topo_pool_opts_init(&p);
    p.size = 10;
    p.max_active = 7;
    p.max_idle = 4;
    p.min_idle = 1;
    srv_pool_split(&p, 4);
    assert_int_equal(p.size, 2);
    assert_int_equal(p.max_active, 1);
    assert_int_equal(p.max_idle, 1);
    assert_int_equal(p.min_idle, 1); /* at least 1 each */
    topo_pool_opts_init(&p);         /* defaults: size 0 = 10 x CPUs; 0 limits stay 0 */
    srv_pool_split(&p, 1);
    assert_int_equal(p.size, 10 * srv_cpu_count());
    assert_int_equal(p.max_active, 0);
    assert_int_equal(p.max_idle, 0);
    assert_int_equal(p.min_idle, 0);
    p.size = 64;
    srv_pool_split(&p, 3);
    assert_int_equal(p.size, 21);
}

/* ---- counters ----------------------------------------------------------------------------- */

static void test_counters_carried_for_kept_blocks(void **state)
{
    (void)state;
    struct srv_config o, n;
    parse_ok(&o, base);
    /* block b stays (moved first), block a is gone, block c is new */
    parse_ok(&n, "b.test:1053 {\n cache\n forward . 127.0.0.1:5301\n}\n"
                 "c.test:1053 {\n forward . 127.0.0.1:5301\n}\n");
    struct srv_stats so, sn;
    assert_int_equal(srv_stats_init(&so, &o), 0);
    assert_int_equal(srv_stats_init(&sn, &n), 0);
    size_t ob = srv_slot_base(&o, 1); /* old block b: its zone row, then "dropped" */
    so.zones[ob].requests[0][0][1] = 11;
    so.zones[ob + 1].responses[5][0] = 3;
    so.zones[srv_slot_base(&o, 0)].requests[0][0][1] = 99; /* block a: not carried */
    so.blocks[1].cache_hits[0] = 7;
    so.blocks[1].cache_hits[1] = 2;
    so.blocks[1].cache_misses = 5;
    so.blocks[0].cache_misses = 1000;
    struct srv_reload_keep keep[SRV_BLOCKS_MAX];
    srv_reload_plan(&o, &n, keep);
    srv_stats_carry(&sn, &n, &so, &o, keep);
    size_t nb = srv_slot_base(&n, 0);
    assert_int_equal(sn.zones[nb].requests[0][0][1], 11);
    assert_int_equal(sn.zones[nb + 1].responses[5][0], 3);
    assert_int_equal(sn.blocks[0].cache_hits[0], 7);
    assert_int_equal(sn.blocks[0].cache_hits[1], 2);
    assert_int_equal(sn.blocks[0].cache_misses, 5);
    size_t nc = srv_slot_base(&n, 1);
    assert_int_equal(sn.zones[nc].requests[0][0][1], 0); /* the new block starts at zero */
    assert_int_equal(sn.blocks[1].cache_misses, 0);
    srv_stats_free(&so);
    srv_stats_free(&sn);
    srv_config_free(&o);
    srv_config_free(&n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duration_parse),
        cmocka_unit_test(test_reload_args_defaults_and_bounds),
        cmocka_unit_test(test_reload_period_within_jitter),
        cmocka_unit_test(test_checksum_detects_edits),
        cmocka_unit_test(test_reload_directive_in_corefile),
        cmocka_unit_test(test_health_lameduck_in_corefile),
        cmocka_unit_test(test_same_text_keeps_everything),
        cmocka_unit_test(test_changed_parts_are_rebuilt),
        cmocka_unit_test(test_blocks_matched_by_keys),
        cmocka_unit_test(test_option_comparisons_ignore_where),
        cmocka_unit_test(test_pool_limits_split_across_workers),
        cmocka_unit_test(test_counters_carried_for_kept_blocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
