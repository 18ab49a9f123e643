/* tests/unit/test_server_corefile.c — the Corefile model (src/server/corefile.c): the
 * embedded default, server block keys (schemes, ports, normalization, commas, several keys,
 * brace-less lone block), every directive (bind, errors, log, health, ready, prometheus,
 * cache, redis_cache, forward) and their rules across blocks, what is not supported yet,
 * unknown directives, errors with FILE:LINE, all errors collected, metric labels and
 * routing by the longest zone suffix; import of files, globs and snippets (nesting, cycles,
 * depth, error positions inside imported files), loop and timeouts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "plugin/plugin.h"
#include "server/server.h"

#define MAXERR 16

struct parsed {
    struct srv_config cfg;
    struct cfg_error errs[MAXERR];
    size_t nerrs;
    int rc;
    char msg[MAXERR][700];
};

static void parse(struct parsed *p, const char *text)
{
    memset(p, 0, sizeof *p);
    p->rc = srv_config_parse(&p->cfg, "Corefile", text, strlen(text), p->errs, MAXERR, &p->nerrs);
    for (size_t i = 0; i < p->nerrs && i < MAXERR; i++)
        cfg_error_format(&p->errs[i], p->msg[i], sizeof p->msg[i]);
}

static void assert_ok(struct parsed *p, const char *text)
{
    parse(p, text);
    if (p->rc != 0) fail_msg("rejected (%zu errors): %s\n%s", p->nerrs, p->msg[0], text);
    assert_int_equal(p->nerrs, 0);
}

/* Rejected with exactly one error "Corefile:LINE: ..." containing `why`. */
static void assert_rejects(const char *text, unsigned line, const char *why)
{
    struct parsed p;
    parse(&p, text);
    if (p.rc == 0) fail_msg("accepted:\n%s", text);
    assert_int_equal(p.rc, -1);
    if (p.nerrs != 1) fail_msg("%zu errors (first: %s) for:\n%s", p.nerrs, p.msg[0], text);
    char want[64];
    snprintf(want, sizeof want, "Corefile:%u: ", line);
    if (strncmp(p.msg[0], want, strlen(want)) != 0)
        fail_msg("message \"%s\" does not start with \"%s\" for:\n%s", p.msg[0], want, text);
    if (!strstr(p.msg[0], why)) fail_msg("message \"%s\" lacks \"%s\"", p.msg[0], why);
    /* a failed parse leaves nothing to free */
    assert_null(p.cfg.blocks);
    assert_int_equal(p.cfg.nblocks, 0);
    srv_config_free(&p.cfg);
}

/* n labels of `len` 'a's joined by dots into out. */
static void labels(char *out, int n, int len)
{
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        if (i) out[o++] = '.';
        memset(out + o, 'a', (size_t)len);
        o += (size_t)len;
    }
    out[o] = '\0';
}

/* ---- the embedded default -------------------------------------------------------------- */

static void test_default_corefile(void **state)
{
    assert_non_null(strstr(srv_default_corefile, ".:1053 {"));
    struct parsed p;
    assert_ok(&p, srv_default_corefile);
    assert_int_equal(p.cfg.nblocks, 1);
    const struct srv_block *b = &p.cfg.blocks[0];
    assert_int_equal(b->nzones, 1);
    assert_string_equal(b->zones[0], ".");
    assert_int_equal(b->port, 1053);
    assert_int_equal(b->nbinds, 1);
    assert_string_equal(b->binds[0], "127.0.0.1");
    assert_true(b->errors);
    assert_false(b->log);
    assert_true(b->has_cache);
    assert_int_equal(b->cache.success_cap, 9984);
    assert_non_null(b->redis_cache);
    assert_int_equal(b->redis_cache->endpoint.port, 6379);
    assert_true(b->has_forward);
    assert_string_equal(b->forward.from, ".");
    assert_true(b->forward.nup >= 1); /* /etc/resolv.conf's nameservers */
    assert_int_equal(p.cfg.nprometheus, 1);
    assert_string_equal(p.cfg.prometheus[0].host, "127.0.0.1");
    assert_int_equal(p.cfg.prometheus[0].port, 9153);
    assert_false(p.cfg.has_health);
    assert_false(p.cfg.has_ready);
    assert_string_equal(b->server_label, "dns://127.0.0.1:1053");
    assert_string_equal(b->file, "Corefile");
    assert_int_equal(b->line, 1);
    assert_string_equal(p.cfg.file, "Corefile");
    srv_config_free(&p.cfg);
    srv_config_free(&p.cfg); /* idempotent */
}

/* ---- keys ------------------------------------------------------------------------------ */

static void one_key(const char *text, const char *zone, uint16_t port, const char *label)
{
    struct parsed p;
    assert_ok(&p, text);
    assert_int_equal(p.cfg.nblocks, 1);
    assert_int_equal(p.cfg.blocks[0].nzones, 1);
    assert_string_equal(p.cfg.blocks[0].zones[0], zone);
    assert_int_equal(p.cfg.blocks[0].port, port);
    assert_string_equal(p.cfg.blocks[0].server_label, label);
    srv_config_free(&p.cfg);
}

static void test_keys(void **state)
{
    one_key(".:1053 {\n}\n", ".", 1053, "dns://:1053");
    one_key(". {\n}\n", ".", 53, "dns://:53");
    one_key("dns://.:53 {\n}\n", ".", 53, "dns://:53");
    one_key("DNS://.:5300 {\n}\n", ".", 5300, "dns://:5300");
    one_key(":1053 {\n}\n", ".", 1053, "dns://:1053");
    one_key("example.org:1053 {\n}\n", "example.org.", 1053, "dns://:1053");
    one_key("Example.ORG. {\n}\n", "example.org.", 53, "dns://:53");
    one_key("dns://example.org {\n}\n", "example.org.", 53, "dns://:53");
    one_key("\"example.org:1053\" {\n}\n", "example.org.", 1053, "dns://:1053");
    one_key("_tcp.x-y.example.org:65535 {\n}\n", "_tcp.x-y.example.org.", 65535, "dns://:65535");
    one_key(".:1053 { }", ".", 1053, "dns://:1053");
    one_key("# comment\n\n.:1053 { # here\n} # there\n", ".", 1053, "dns://:1053");

    /* 63-character labels and a 253-character name are fine */
    char big[400], label63[64];
    memset(label63, 'a', 63);
    label63[63] = '\0';
    snprintf(big, sizeof big, "%s.example {\n}\n", label63);
    struct parsed p;
    assert_ok(&p, big);
    srv_config_free(&p.cfg);
    char name[300];
    labels(name, 4, 62);
    /* 4 x 62 + 3 dots = 251 characters */
    snprintf(big, sizeof big, "%s.b {\n}\n", name);
    assert_ok(&p, big);
    assert_int_equal(strlen(p.cfg.blocks[0].zones[0]), 254);
    srv_config_free(&p.cfg);
}

static void test_several_keys(void **state)
{
    struct parsed p;
    assert_ok(&p, "example.org:1053 EXAMPLE.net:1053 dns://example.com:1053 {\n}\n");
    assert_int_equal(p.cfg.nblocks, 1);
    const struct srv_block *b = &p.cfg.blocks[0];
    assert_int_equal(b->nzones, 3);
    assert_string_equal(b->zones[0], "example.org.");
    assert_string_equal(b->zones[1], "example.net.");
    assert_string_equal(b->zones[2], "example.com.");
    assert_int_equal(b->port, 1053);
    srv_config_free(&p.cfg);

    /* Caddy's commas, also continuing the keys on the next line */
    assert_ok(&p, "a.org, b.org,\n  c.org {\n}\n");
    assert_int_equal(p.cfg.blocks[0].nzones, 3);
    assert_string_equal(p.cfg.blocks[0].zones[2], "c.org.");
    assert_int_equal(p.cfg.blocks[0].port, 53);
    srv_config_free(&p.cfg);

    /* `\` continuation */
    assert_ok(&p, "a.org \\\n b.org {\n}\n");
    assert_int_equal(p.cfg.blocks[0].nzones, 2);
    srv_config_free(&p.cfg);

    /* {$ENV} */
    setenv("RC_TEST_COREFILE_PORT", "1054", 1);
    assert_ok(&p, ".:{$RC_TEST_COREFILE_PORT} {\n}\n");
    assert_int_equal(p.cfg.blocks[0].port, 1054);
    srv_config_free(&p.cfg);
    unsetenv("RC_TEST_COREFILE_PORT");
}

static void test_key_errors(void **state)
{
    assert_rejects("example.org example.net:1053 {\n}\n", 1, "must share a port");
    assert_rejects("example.org:1053 example.net {\n}\n", 1, "must share a port");
    assert_rejects("tls://.:853 {\n}\n", 1, "only dns:// server blocks are supported");
    assert_rejects("grpc://.:443 {\n}\n", 1, "only dns://");
    assert_rejects("https://.:443 {\n}\n", 1, "only dns://");
    assert_rejects(".:0 {\n}\n", 1, "invalid port");
    assert_rejects(".:65536 {\n}\n", 1, "invalid port");
    assert_rejects(".:53a {\n}\n", 1, "invalid port");
    assert_rejects(".: {\n}\n", 1, "invalid port");
    assert_rejects("example.org:53:53 {\n}\n", 1, "invalid port");
    assert_rejects("\n\na..b {\n}\n", 3, "empty label");
    assert_rejects(".example.org {\n}\n", 1, "empty label");
    assert_rejects("example.org.. {\n}\n", 1, "empty label");
    assert_rejects("10.0.0.0/8 {\n}\n", 1, "CIDR form are not supported yet");
    assert_rejects("a\\.b {\n}\n", 1, "invalid character");
    assert_rejects("[::1]:53 {\n}\n", 1, "invalid");
    assert_rejects("example.org example.org. {\n}\n", 1, "appears twice");
    assert_rejects("\"\" {\n}\n", 1, "empty server block key");

    char big[512], label64[65];
    memset(label64, 'a', 64);
    label64[64] = '\0';
    snprintf(big, sizeof big, "%s.example {\n}\n", label64);
    assert_rejects(big, 1, "longer than 63");
    char name[400];
    labels(name, 5, 60);
    snprintf(big, sizeof big, "%s {\n}\n", name); /* 304 characters */
    assert_rejects(big, 1, "too long");

    char many[1024] = "";
    for (int i = 0; i < SRV_KEYS_MAX + 1; i++) {
        char k[32];
        snprintf(k, sizeof k, "z%d.org ", i);
        strcat(many, k);
    }
    strcat(many, "{\n}\n");
    assert_rejects(many, 1, "too many keys");
}

static void test_block_structure_errors(void **state)
{
    assert_rejects("", 1, "no server blocks");
    assert_rejects("# only a comment\n\n", 1, "no server blocks");
    assert_rejects(".:1053 {\n  errors\n", 1, "missing '}'");
    assert_rejects(".:1053 {\n  errors\n}\n}\n", 4, "unexpected '}'");
    assert_rejects("{\n  errors\n}\n", 1, "expected server block keys");
    assert_rejects(".:1053 {\n  errors\n}\nexample.org:1053\nerrors\n", 4,
                   "expected '{' after the server block keys");
    assert_rejects(".:1053 {\n  forward . 127.0.0.1 {\n    force_tcp\n}\n", 1, "missing '}'");
    assert_rejects(".:1053 {\n  { errors }\n}\n", 2, "unexpected \"{\"");
    assert_rejects("(snip) {\n  errors\n.:1053 {\n}\n", 1,
                   "(snip): missing '}' to close the snippet");
    assert_rejects("import no-such-file.conf\n.:1053 {\n}\n", 1,
                   "import: cannot read no-such-file.conf: No such file or directory");
    assert_rejects(".:53 }\n", 1, "unexpected '}'");
}

static void test_braceless_lone_block(void **state)
{
    struct parsed p;
    assert_ok(&p, ".:1053\nerrors\nforward . 127.0.0.1:5300\n");
    assert_int_equal(p.cfg.nblocks, 1);
    assert_true(p.cfg.blocks[0].errors);
    assert_true(p.cfg.blocks[0].has_forward);
    assert_int_equal(p.cfg.blocks[0].forward.nup, 1);
    srv_config_free(&p.cfg);
    /* a brace-less block swallows the rest: what follows is directives */
    assert_rejects(".:1053\nerrors\nexample.org {\n}\n", 3, "example.org: unknown directive");
}

/* ---- directives ------------------------------------------------------------------------ */

static void test_bind(void **state)
{
    struct parsed p;
    assert_ok(&p, ".:1053 {\n bind 127.0.0.1 ::1\n bind 127.0.0.2 127.0.0.1\n}\n");
    const struct srv_block *b = &p.cfg.blocks[0];
    assert_int_equal(b->nbinds, 3);
    assert_string_equal(b->binds[0], "127.0.0.1");
    assert_string_equal(b->binds[1], "::1");
    assert_string_equal(b->binds[2], "127.0.0.2");
    assert_string_equal(b->server_label, "dns://127.0.0.1:1053");
    srv_config_free(&p.cfg);

    assert_ok(&p, "example.org {\n bind ::1\n}\n");
    assert_string_equal(p.cfg.blocks[0].server_label, "dns://[::1]:53");
    srv_config_free(&p.cfg);

    assert_rejects(".:1053 {\n bind\n}\n", 2, "bind: expected at least one address");
    assert_rejects(".:1053 {\n bind 127.0.0.1 eth0\n}\n", 2, "bind: \"eth0\" is not an IP");
    assert_rejects(".:1053 {\n bind localhost\n}\n", 2, "bind: \"localhost\" is not an IP");
    assert_rejects(".:1053 {\n bind 127.0.0.1 {\n except 127.0.0.2\n }\n}\n", 2,
                   "bind: a block is not supported yet");
    assert_rejects(".:1053 {\n bind 127.0.0.1 127.0.0.2 127.0.0.3 127.0.0.4 127.0.0.5 "
                   "127.0.0.6 127.0.0.7 127.0.0.8 127.0.0.9\n}\n",
                   2, "bind: too many addresses");
}

static void test_errors_log(void **state)
{
    struct parsed p;
    assert_ok(&p, ".:1053 {\n log\n log\n errors\n}\nexample.org {\n}\n");
    assert_true(p.cfg.blocks[0].log);
    assert_true(p.cfg.blocks[0].errors);
    assert_false(p.cfg.blocks[1].log);
    assert_false(p.cfg.blocks[1].errors);
    assert_false(p.cfg.blocks[1].has_cache);
    assert_false(p.cfg.blocks[1].has_forward);
    assert_null(p.cfg.blocks[1].redis_cache);
    srv_config_free(&p.cfg);

    assert_rejects(".:1053 {\n log . {combined}\n}\n", 2, "log: arguments are not supported yet");
    assert_rejects(".:1053 {\n log {\n class denial\n }\n}\n", 2,
                   "log: a block is not supported yet");
    assert_rejects(".:1053 {\n errors stdout\n}\n", 2, "errors: arguments are not supported yet");
    assert_rejects(".:1053 {\n errors {\n consolidate 5m \".*\"\n }\n}\n", 2,
                   "errors: a block is not supported yet");
    assert_rejects(".:1053 {\n errors\n\n errors\n}\n", 4,
                   "errors: only one errors per server block (first at line 2)");
}

static void test_http_directives(void **state)
{
    struct parsed p;
    assert_ok(&p, ".:1053 {\n health\n ready\n prometheus\n}\n");
    assert_true(p.cfg.has_health);
    assert_string_equal(p.cfg.health.host, "");
    assert_int_equal(p.cfg.health.port, 8080);
    assert_true(p.cfg.has_ready);
    assert_string_equal(p.cfg.ready.host, "");
    assert_int_equal(p.cfg.ready.port, 8181);
    assert_int_equal(p.cfg.nprometheus, 1);
    assert_string_equal(p.cfg.prometheus[0].host, "127.0.0.1"); /* localhost */
    assert_int_equal(p.cfg.prometheus[0].port, 9153);
    srv_config_free(&p.cfg);

    assert_ok(&p, ".:1053 {\n health 127.0.0.1:18080\n ready [::1]:18181\n"
                  " prometheus :19153\n}\n");
    assert_string_equal(p.cfg.health.host, "127.0.0.1");
    assert_int_equal(p.cfg.health.port, 18080);
    assert_string_equal(p.cfg.ready.host, "::1");
    assert_int_equal(p.cfg.ready.port, 18181);
    assert_string_equal(p.cfg.prometheus[0].host, "");
    assert_int_equal(p.cfg.prometheus[0].port, 19153);
    srv_config_free(&p.cfg);

    /* prometheus addresses once each across blocks; health/ready shared */
    assert_ok(&p, "a.org {\n prometheus localhost:9153\n health :8080\n}\n"
                  "b.org {\n prometheus 127.0.0.1:9153\n health\n}\n"
                  "c.org {\n prometheus :9154\n}\n");
    assert_int_equal(p.cfg.nblocks, 3);
    assert_int_equal(p.cfg.nprometheus, 2);
    assert_string_equal(p.cfg.prometheus[0].host, "127.0.0.1");
    assert_int_equal(p.cfg.prometheus[0].port, 9153);
    assert_string_equal(p.cfg.prometheus[1].host, "");
    assert_int_equal(p.cfg.prometheus[1].port, 9154);
    assert_true(p.cfg.has_health);
    assert_false(p.cfg.has_ready);
    srv_config_free(&p.cfg);

    assert_rejects(".:1053 {\n prometheus 127.0.0.1\n}\n", 2, "the port is required");
    assert_rejects(".:1053 {\n prometheus 127.0.0.1:0\n}\n", 2, "invalid port");
    assert_rejects(".:1053 {\n prometheus example.org:9153\n}\n", 2,
                   "prometheus: \"example.org:9153\": host must be an IP address or localhost");
    assert_rejects(".:1053 {\n prometheus ::1:9153\n}\n", 2, "needs brackets");
    assert_rejects(".:1053 {\n prometheus [::1:9153\n}\n", 2, "[IPv6]:PORT");
    assert_rejects(".:1053 {\n prometheus [127.0.0.1]:9153\n}\n", 2, "not an IPv6 address");
    assert_rejects(".:1053 {\n prometheus :1 :2\n}\n", 2, "at most one address");
    assert_rejects(".:1053 {\n prometheus\n prometheus :9154\n}\n", 3,
                   "prometheus: only one prometheus per server block (first at line 2)");
    assert_rejects(".:1053 {\n prometheus :9154 {\n }\n}\n", 2, "a block is not supported yet");
    /* health's block (lameduck) and reload: tests/unit/test_server_reload.c */
    assert_rejects(".:1053 {\n health {\n lameduck soon\n }\n}\n", 3,
                   "health: lameduck: invalid duration");
    assert_rejects(".:1053 {\n health\n health\n}\n", 3, "only one health");
    assert_rejects("a.org {\n health :8080\n}\nb.org {\n health :8081\n}\n", 5,
                   "health: :8081 differs from :8080 at line 2");
    assert_rejects("a.org {\n ready :8181\n}\nb.org {\n ready 127.0.0.1:8181\n}\n", 5,
                   "one ready listener per process");
    assert_rejects(".:1053 {\n health :9153\n prometheus :9153\n}\n", 3,
                   "prometheus: address :9153 is already used by health (line 2)");
    assert_rejects(".:1053 {\n ready\n health :8181\n}\n", 3, "already used by ready");

    char many[2048] = "";
    for (int i = 0; i < SRV_LISTENERS_MAX + 1; i++) {
        char blk[128];
        snprintf(blk, sizeof blk, "z%d.org {\n prometheus :%d\n}\n", i, 9000 + i);
        strcat(many, blk);
    }
    assert_rejects(many, 2 + 3 * SRV_LISTENERS_MAX, "prometheus: too many addresses");
}

static void test_cache_forward_redis(void **state)
{
    struct parsed p;
    assert_ok(&p, "example.org:1053 example.net:1053 {\n"
                  " cache 30 {\n  success 100\n }\n"
                  " redis_cache {\n  endpoint 127.0.0.1:6380\n }\n"
                  " forward . 127.0.0.1:5300 [::1]:5301 {\n  policy sequential\n }\n"
                  "}\n");
    const struct srv_block *b = &p.cfg.blocks[0];
    assert_true(b->has_cache);
    assert_int_equal(b->cache.success_max_ttl, 30);
    assert_int_equal(b->cache.success_cap, 100);
    assert_int_equal(b->cache.line, 2);
    /* zones filled with the block's */
    assert_int_equal(b->cache.nzones, 2);
    assert_string_equal(b->cache.zones[0], "example.org.");
    assert_string_equal(b->cache.zones[1], "example.net.");
    assert_non_null(b->redis_cache);
    assert_int_equal(b->redis_cache->endpoint.port, 6380);
    assert_int_equal(b->redis_cache->nzones, 2);
    assert_string_equal(b->redis_cache->zones[1], "example.net.");
    assert_int_equal(b->redis_cache->line, 5);
    assert_true(b->has_forward);
    assert_int_equal(b->forward.nup, 2);
    assert_int_equal(b->forward.policy, FWD_POLICY_SEQUENTIAL);
    assert_string_equal(b->forward.up[1].name, "[::1]:5301");
    srv_config_free(&p.cfg);

    /* explicit zones are kept; order in the block does not matter */
    assert_ok(&p, ".:1053 {\n forward . 127.0.0.1\n redis_cache sub.example.org\n"
                  " cache 10 example.org\n}\n");
    b = &p.cfg.blocks[0];
    assert_int_equal(b->cache.nzones, 1);
    assert_string_equal(b->cache.zones[0], "example.org.");
    assert_int_equal(b->redis_cache->nzones, 1);
    assert_string_equal(b->redis_cache->zones[0], "sub.example.org.");
    srv_config_free(&p.cfg);

    /* the plugins' own errors come through with their lines */
    assert_rejects(".:1053 {\n cache {\n  success 1 2 3 4 5\n }\n}\n", 3, "cache: ");
    assert_rejects(".:1053 {\n forward .\n}\n", 2, "forward: expected FROM and at least one TO");
    assert_rejects(".:1053 {\n forward . 127.0.0.1 {\n  bogus\n }\n}\n", 3, "forward: ");
    assert_rejects(".:1053 {\n redis_cache {\n  endpoint\n }\n}\n", 3, "redis_cache: ");
    assert_rejects(".:1053 {\n redis_cache {\n  nonsense 1\n }\n}\n", 3, "redis_cache: ");
    assert_rejects(".:1053 {\n redis_cache\n forward . 127.0.0.1\n\n redis_cache\n}\n", 5,
                   "redis_cache: only one redis_cache per server block (first at line 2)");
    assert_rejects(".:1053 {\n cache\n cache 10\n}\n", 3,
                   "cache: only one cache per server block (first at line 2)");
    assert_rejects(".:1053 {\n forward . 127.0.0.1\n forward . 127.0.0.2\n}\n", 3,
                   "forward: only one forward per server block (first at line 2)");
    /* a block that ends inside a directive: the directive parser sees only its block */
    assert_rejects(".:1053 {\n cache {\n}\n", 1, "missing '}'");
}

static void test_not_supported_and_unknown(void **state)
{
    assert_rejects(".:1053 {\n reload 1s\n}\n", 2, "reload: interval must be at least 2s");
    assert_rejects(".:1053 {\n\n whoami\n}\n", 3, "whoami: unknown directive");
    assert_rejects(".:1053 {\n kubernetes cluster.local\n}\n", 2, "kubernetes: unknown directive");
    assert_rejects(".:1053 {\n \"{\"\n}\n", 2, "{: unknown directive");
}

static void test_duplicate_zones(void **state)
{
    struct parsed p;
    /* same zone on another port, or another zone on the same port: fine */
    assert_ok(&p, ".:1053 {\n}\n.:1054 {\n}\nexample.org:1053 {\n}\n");
    assert_int_equal(p.cfg.nblocks, 3);
    srv_config_free(&p.cfg);

    assert_rejects(".:1053 {\n}\n\ndns://.:1053 {\n}\n", 4,
                   "dns://.:1053: zone already served by the server block at line 1");
    assert_rejects("a.org b.org {\n}\nc.org B.ORG. {\n}\n", 3, "dns://b.org.:53: zone already");
    /* bind does not make it another server */
    assert_rejects(".:1053 {\n bind 127.0.0.1\n}\n.:1053 {\n bind 127.0.0.2\n}\n", 4,
                   "already served");
}

static void test_all_errors_collected(void **state)
{
    const char *text = ".:1053 {\n"           /* 1 */
                       "  whoami\n"           /* 2: error */
                       "  bogus\n"            /* 3: same block: skipped */
                       "}\n"                  /* 4 */
                       "example.org:1053 {\n" /* 5: fine */
                       "  errors\n"           /* 6 */
                       "}\n"                  /* 7 */
                       "tls://.:853 {\n"      /* 8: error */
                       "  nonsense\n"         /* 9: skipped */
                       "}\n"                  /* 10 */
                       "example.net:1053 {\n" /* 11 */
                       "  cache -5\n"         /* 12: error */
                       "}\n"                  /* 13 */
                       "example.org:1053 {\n" /* 14: duplicate of line 5 */
                       "}\n"                  /* 15 */
                       "b.org {\n"            /* 16 */
                       "  health {\n"         /* 17: error */
                       "    lameduck\n"       /* 18 */
                       "  }\n"                /* 19 */
                       "}\n";                 /* 20 */
    struct parsed p;
    parse(&p, text);
    assert_int_equal(p.rc, -1);
    assert_int_equal(p.nerrs, 5);
    const unsigned lines[] = {2, 8, 12, 14, 18};
    const char *what[] = {"whoami: unknown directive", "only dns://", "cache: ", "already served",
                          "lameduck"};
    for (size_t i = 0; i < 5; i++) {
        char want[32];
        snprintf(want, sizeof want, "Corefile:%u: ", lines[i]);
        if (strncmp(p.msg[i], want, strlen(want)) != 0)
            fail_msg("error %zu: \"%s\" not at line %u", i, p.msg[i], lines[i]);
        if (!strstr(p.msg[i], what[i]))
            fail_msg("error %zu: \"%s\" lacks %s", i, p.msg[i], what[i]);
    }
    assert_null(p.cfg.blocks);

    /* at most `max` are stored; *nerrs says how many */
    struct srv_config cfg;
    struct cfg_error errs[2];
    size_t n = 99;
    assert_int_equal(srv_config_parse(&cfg, "Corefile", text, strlen(text), errs, 2, &n), -1);
    assert_int_equal(n, 2);
    assert_int_equal(errs[0].line, 2);
    assert_int_equal(errs[1].line, 8);
    /* no room at all is fine too */
    assert_int_equal(srv_config_parse(&cfg, "Corefile", text, strlen(text), NULL, 0, NULL), -1);

    /* a lexer error is the one error */
    parse(&p, ".:1053 {\n forward . \"127.0.0.1\n}\n");
    assert_int_equal(p.rc, -1);
    assert_int_equal(p.nerrs, 1);
    assert_int_equal(p.errs[0].line, 2);
    assert_string_equal(p.errs[0].file, "Corefile");
}

static void test_too_many_blocks(void **state)
{
    char text[4096] = "";
    for (int i = 0; i < SRV_BLOCKS_MAX + 1; i++) {
        char blk[64];
        snprintf(blk, sizeof blk, "z%d.org {\n}\n", i);
        strcat(text, blk);
    }
    assert_rejects(text, 1 + 2 * SRV_BLOCKS_MAX, "too many server blocks");
    text[0] = '\0';
    for (int i = 0; i < SRV_BLOCKS_MAX; i++) {
        char blk[64];
        snprintf(blk, sizeof blk, "z%d.org {\n}\n", i);
        strcat(text, blk);
    }
    struct parsed p;
    assert_ok(&p, text);
    assert_int_equal(p.cfg.nblocks, SRV_BLOCKS_MAX);
    assert_string_equal(p.cfg.blocks[SRV_BLOCKS_MAX - 1].zones[0], "z31.org.");
    srv_config_free(&p.cfg);
}

/* ---- routing --------------------------------------------------------------------------- */

static void question(struct dns_question *q, const char *name)
{
    memset(q, 0, sizeof *q);
    size_t w = 0;
    const char *s = name;
    while (*s && strcmp(s, ".") != 0) {
        const char *dot = strchr(s, '.');
        size_t n = dot ? (size_t)(dot - s) : strlen(s);
        q->name_lc[w++] = (uint8_t)n;
        for (size_t i = 0; i < n; i++) {
            char ch = s[i];
            q->name[w] = (uint8_t)ch;
            q->name_lc[w++] = (uint8_t)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
        }
        s += n + (dot ? 1 : 0);
    }
    q->name_lc[w++] = 0;
    q->name_len = (uint16_t)w;
    q->qtype = 1;
    q->qclass = 1;
}

static const struct srv_block *route(const struct srv_config *cfg, uint16_t port, const char *name)
{
    struct dns_question q;
    question(&q, name);
    return srv_config_route(cfg, port, &q);
}

static void test_route(void **state)
{
    struct parsed p;
    assert_ok(&p, "example.org:1053 {\n}\n"          /* 0 */
                  ".:1053 {\n}\n"                    /* 1 */
                  "sub.example.org:1053 {\n}\n"      /* 2 */
                  "example.net a.example.com {\n}\n" /* 3, port 53 */
                  "org:1054 {\n}\n");                /* 4 */
    const struct srv_config *c = &p.cfg;
    assert_ptr_equal(route(c, 1053, "www.sub.example.org."), &c->blocks[2]);
    assert_ptr_equal(route(c, 1053, "sub.example.org"), &c->blocks[2]);
    assert_ptr_equal(route(c, 1053, "xsub.example.org"), &c->blocks[0]);
    assert_ptr_equal(route(c, 1053, "www.example.org"), &c->blocks[0]);
    assert_ptr_equal(route(c, 1053, "WWW.Example.ORG"), &c->blocks[0]);
    assert_ptr_equal(route(c, 1053, "example.org"), &c->blocks[0]);
    assert_ptr_equal(route(c, 1053, "notexample.org"), &c->blocks[1]);
    assert_ptr_equal(route(c, 1053, "org"), &c->blocks[1]);
    assert_ptr_equal(route(c, 1053, "."), &c->blocks[1]);
    assert_ptr_equal(route(c, 53, "www.example.net"), &c->blocks[3]);
    assert_ptr_equal(route(c, 53, "b.a.example.com"), &c->blocks[3]);
    assert_null(route(c, 53, "example.com"));
    assert_null(route(c, 53, "www.example.org"));
    assert_null(route(c, 53, "."));
    assert_ptr_equal(route(c, 1054, "example.org"), &c->blocks[4]);
    assert_null(route(c, 1054, "example.com"));
    assert_null(route(c, 9999, "example.org"));
    /* a label holding the zone's bytes is not a suffix match */
    assert_null(route(c, 1054, "x.orgx"));
    struct dns_question q;
    memset(&q, 0, sizeof q); /* name_len 0: nothing */
    assert_null(srv_config_route(c, 1053, &q));
    srv_config_free(&p.cfg);
}

/* ---- import, snippets, loop, timeouts ----------------------------------------------------- */

/* A fresh directory for files to import; removed by rm_tree at the end of the test. */
static void mk_tree(char *dir, size_t cap)
{
    snprintf(dir, cap, "%s/rc-corefile-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(dir));
}

static void put_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *slash = strrchr(path, '/');
    if (slash > path + strlen(dir)) { /* a subdirectory */
        *slash = '\0';
        mkdir(path, 0700);
        *slash = '/';
    }
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void rm_tree(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* Parses `text` as DIR/Corefile. */
static void parse_in(struct parsed *p, const char *dir, const char *text)
{
    char file[512];
    snprintf(file, sizeof file, "%s/Corefile", dir);
    memset(p, 0, sizeof *p);
    p->rc = srv_config_parse(&p->cfg, file, text, strlen(text), p->errs, MAXERR, &p->nerrs);
    for (size_t i = 0; i < p->nerrs && i < MAXERR; i++)
        cfg_error_format(&p->errs[i], p->msg[i], sizeof p->msg[i]);
}

static void ok_in(struct parsed *p, const char *dir, const char *text)
{
    parse_in(p, dir, text);
    if (p->rc != 0) fail_msg("rejected: %s\n%s", p->msg[0], text);
}

/* Rejected with one error "DIR/FILE:LINE: ..." containing `why` (FILE relative to dir). */
static void rejects_in(const char *dir, const char *text, const char *file, unsigned line,
                       const char *why)
{
    struct parsed p;
    parse_in(&p, dir, text);
    if (p.rc == 0) fail_msg("accepted:\n%s", text);
    if (p.nerrs != 1) fail_msg("%zu errors (first: %s)", p.nerrs, p.msg[0]);
    char want[600];
    snprintf(want, sizeof want, "%s/%s:%u: ", dir, file, line);
    if (strncmp(p.msg[0], want, strlen(want)) != 0)
        fail_msg("message \"%s\" does not start with \"%s\"", p.msg[0], want);
    if (!strstr(p.msg[0], why)) fail_msg("message \"%s\" lacks \"%s\"", p.msg[0], why);
    assert_null(p.cfg.blocks);
}

static void test_import_file_into_block(void **state)
{
    char dir[256];
    mk_tree(dir, sizeof dir);
    put_file(dir, "common.conf", "errors\nlog\n");
    put_file(dir, "conf.d/fwd.conf", "forward . 127.0.0.1:5300\n");
    struct parsed p;
    ok_in(&p, dir,
          ".:1053 {\n import common.conf\n cache\n}\n"
          "example.org:1053 {\n import conf.d/fwd.conf\n}\n");
    assert_int_equal(p.cfg.nblocks, 2);
    assert_true(p.cfg.blocks[0].errors && p.cfg.blocks[0].log && p.cfg.blocks[0].has_cache);
    assert_false(p.cfg.blocks[0].has_forward);
    assert_true(p.cfg.blocks[1].has_forward);
    assert_false(p.cfg.blocks[1].errors);
    srv_config_free(&p.cfg);

    /* an absolute path works too */
    char text[600];
    snprintf(text, sizeof text, ".:1053 {\n import %s/common.conf\n}\n", dir);
    parse(&p, text);
    assert_int_equal(p.rc, 0);
    assert_true(p.cfg.blocks[0].errors && p.cfg.blocks[0].log);
    srv_config_free(&p.cfg);
    rm_tree(dir);
}

static void test_import_glob_in_sorted_order_and_empty_glob(void **state)
{
    char dir[256];
    mk_tree(dir, sizeof dir);
    /* server blocks imported at the top level, pasted in glob's sorted order */
    put_file(dir, "zones/b.conf", "b.example:1053 {\n log\n}\n");
    put_file(dir, "zones/a.conf", "a.example:1053 {\n errors\n}\n");
    put_file(dir, "zones/skip.txt", "this is not a Corefile {\n");
    struct parsed p;
    ok_in(&p, dir, "import zones/*.conf\n.:1053 {\n import nothing/*.conf\n}\n");
    assert_int_equal(p.cfg.nblocks, 3);
    assert_string_equal(p.cfg.blocks[0].zones[0], "a.example.");
    assert_true(p.cfg.blocks[0].errors);
    assert_string_equal(p.cfg.blocks[1].zones[0], "b.example.");
    assert_true(p.cfg.blocks[1].log);
    assert_string_equal(p.cfg.blocks[2].zones[0], ".");
    /* a block's file and line are where its keys are: the imported file */
    char want[512];
    snprintf(want, sizeof want, "%s/zones/a.conf", dir);
    assert_string_equal(p.cfg.blocks[0].file, want);
    assert_int_equal(p.cfg.blocks[0].line, 1);
    srv_config_free(&p.cfg);
    rm_tree(dir);
}

static void test_snippets_pasted_where_imported(void **state)
{
    struct parsed p;
    assert_ok(&p, "(common) {\n"
                  "    errors\n"
                  "    log\n"
                  "}\n"
                  "(one) { cache }\n"
                  ".:1053 {\n"
                  "    import common\n"
                  "    forward . 127.0.0.1\n"
                  "}\n"
                  "example.org:1053 {\n"
                  "    import one\n"
                  "    import common\n"
                  "}\n");
    assert_int_equal(p.cfg.nblocks, 2);
    assert_true(p.cfg.blocks[0].errors && p.cfg.blocks[0].log && p.cfg.blocks[0].has_forward);
    assert_false(p.cfg.blocks[0].has_cache);
    assert_true(p.cfg.blocks[1].has_cache && p.cfg.blocks[1].errors);
    srv_config_free(&p.cfg);

    /* a pasted line never joins the line after the import: forward gets one upstream and
     * the next line is its own directive */
    assert_ok(&p, "(fwd) {\n forward . 127.0.0.1\n}\n.:1053 {\n import fwd\n errors\n}\n");
    assert_int_equal(p.cfg.blocks[0].forward.nup, 1);
    assert_true(p.cfg.blocks[0].errors);
    srv_config_free(&p.cfg);

    /* inside a plugin's block */
    assert_ok(&p, "(opts) {\n force_tcp\n}\n.:1053 {\n forward . 127.0.0.1 {\n"
                  "  import opts\n }\n}\n");
    assert_true(p.cfg.blocks[0].forward.force_tcp);
    srv_config_free(&p.cfg);

    /* a snippet is known only after its definition: before it, the name is a file */
    assert_rejects(".:1053 {\n import later\n}\n(later) {\n errors\n}\n", 2,
                   "import: cannot read later: No such file or directory");
    assert_rejects("(s) {\n errors\n}\n(s) {\n log\n}\n.:1053 {\n}\n", 4,
                   "(s): snippet defined twice");
    assert_rejects("(s)\n.:1053 {\n}\n", 1, "(s): expected '{' after a snippet name");
    /* inside a server block, (name) is not a definition */
    assert_rejects(".:1053 {\n (s) {\n }\n}\n", 2, "(s): unknown directive");
}

static void test_nested_imports(void **state)
{
    char dir[256];
    mk_tree(dir, sizeof dir);
    /* snippet -> file -> file in a subdirectory (relative to the importing file) */
    put_file(dir, "sub/one.conf", "import two.conf\nerrors\n");
    put_file(dir, "sub/two.conf", "log\n");
    struct parsed p;
    ok_in(&p, dir, "(s) {\n import sub/one.conf\n}\n.:1053 {\n import s\n}\n");
    assert_true(p.cfg.blocks[0].errors && p.cfg.blocks[0].log);
    srv_config_free(&p.cfg);
    /* a file defining a snippet at the top level, used by the importer afterwards */
    put_file(dir, "snippets.conf", "(fwd) {\n forward . 127.0.0.1\n}\n");
    ok_in(&p, dir, "import snippets.conf\n.:1053 {\n import fwd\n}\n");
    assert_true(p.cfg.blocks[0].has_forward);
    srv_config_free(&p.cfg);
    rm_tree(dir);
}

static void test_import_cycles_and_depth_are_errors(void **state)
{
    char dir[256];
    mk_tree(dir, sizeof dir);
    put_file(dir, "a.conf", "errors\nimport b.conf\n");
    put_file(dir, "b.conf", "\nimport a.conf\n");
    rejects_in(dir, ".:1053 {\n import a.conf\n}\n", "b.conf", 2, "import: a.conf: import cycle");
    /* the Corefile importing itself */
    put_file(dir, "Corefile", ".:1053 {\n}\nimport Corefile\n");
    rejects_in(dir, ".:1053 {\n}\nimport Corefile\n", "Corefile", 3, "import cycle");
    /* a snippet importing itself, through another */
    assert_rejects("(x) {\n import y\n}\n(y) {\n import x\n}\n.:1053 {\n import x\n}\n", 5,
                   "import: x: import cycle (snippet x imports itself)");
    /* a chain deeper than CFG_IMPORT_DEPTH */
    for (int i = 0; i < CFG_IMPORT_DEPTH + 2; i++) {
        char name[32], text[64];
        snprintf(name, sizeof name, "d%d.conf", i);
        snprintf(text, sizeof text, "import d%d.conf\n", i + 1);
        put_file(dir, name, text);
    }
    put_file(dir, "d12.conf", "errors\n");
    struct parsed p;
    parse_in(&p, dir, ".:1053 {\n import d0.conf\n}\n");
    assert_int_equal(p.rc, -1);
    assert_non_null(strstr(p.msg[0], "imports nested more than 10 deep"));
    /* a short chain is fine */
    ok_in(&p, dir, ".:1053 {\n import d8.conf\n}\n");
    assert_true(p.cfg.blocks[0].errors);
    srv_config_free(&p.cfg);
    rm_tree(dir);

    /* runaway expansion without a cycle: 8^7 tokens */
    char text[2048];
    size_t n = (size_t)snprintf(text, sizeof text, "(s0) {\n a a a a a a a a\n}\n");
    for (int i = 1; i <= 6; i++) {
        n += (size_t)snprintf(text + n, sizeof text - n, "(s%d) {\n", i);
        for (int k = 0; k < 8; k++)
            n += (size_t)snprintf(text + n, sizeof text - n, " import s%d\n", i - 1);
        n += (size_t)snprintf(text + n, sizeof text - n, "}\n");
    }
    snprintf(text + n, sizeof text - n, ".:1053 {\n import s6\n}\n");
    parse(&p, text);
    assert_int_equal(p.rc, -1);
    assert_non_null(strstr(p.msg[0], "expands to more than 262144 tokens"));
}

static void test_errors_inside_imported_files_name_them(void **state)
{
    char dir[256];
    mk_tree(dir, sizeof dir);
    put_file(dir, "conf.d/x.conf", "errors\n\nwhoami\n");
    rejects_in(dir, ".:1053 {\n import conf.d/x.conf\n}\n", "conf.d/x.conf", 3,
               "whoami: unknown directive");
    put_file(dir, "quote.conf", "log\nforward . \"127.0.0.1\n");
    rejects_in(dir, ".:1053 {\n import quote.conf\n}\n", "quote.conf", 2,
               "unterminated quoted string");
    put_file(dir, "fwd.conf", "forward . 127.0.0.1 {\n  policy bogus\n}\n");
    rejects_in(dir, ".:1053 {\n import fwd.conf\n}\n", "fwd.conf", 2, "forward:");
    /* a missing plain file is an error at the import line */
    rejects_in(dir, ".:1053 {\n\n import missing.conf\n}\n", "Corefile", 3,
               "missing.conf: No such file or directory");
    /* a directory is not a file */
    rejects_in(dir, ".:1053 {\n import conf.d\n}\n", "Corefile", 2, "Is a directory");
    /* nor is a FIFO (reading it would stall the load) */
    char fifo[300];
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    rejects_in(dir, ".:1053 {\n import fifo\n}\n", "Corefile", 2, "fifo: not a regular file");
    rm_tree(dir);
    /* errors from a snippet's tokens point at its definition */
    assert_rejects("(s) {\n errors\n bogus\n}\n.:1053 {\n import s\n}\n", 3,
                   "bogus: unknown directive");
    assert_rejects(".:1053 {\n import\n}\n", 2, "import: expected one pattern");
    assert_rejects(".:1053 {\n import a b\n}\n", 2, "got 2 arguments");
    assert_rejects(".:1053 {\n import \"\"\n}\n", 2, "import: empty pattern");
}

static void test_loop_and_timeouts_directives(void **state)
{
    struct parsed p;
    assert_ok(&p, ".:1053 {\n loop\n forward . 127.0.0.1\n}\nexample.org:1053 {\n"
                  " timeouts {\n  read 2s\n  idle 1m\n  write 3\n }\n}\n");
    assert_true(p.cfg.blocks[0].loop);
    assert_true(p.cfg.blocks[0].tcp_read == 0 && p.cfg.blocks[0].tcp_idle == 0);
    assert_false(p.cfg.blocks[1].loop);
    assert_true(p.cfg.blocks[1].tcp_read == 2 && p.cfg.blocks[1].tcp_idle == 60 &&
                p.cfg.blocks[1].tcp_write == 3);
    srv_config_free(&p.cfg);
    assert_rejects(".:1053 {\n loop 10\n}\n", 2, "loop: takes no arguments");
    assert_rejects(".:1053 {\n loop\n loop\n}\n", 3, "only one loop per server block");
    assert_rejects(".:1053 {\n loop {\n }\n}\n", 2, "loop: a block is not supported");
    assert_rejects(".:1053 {\n timeouts\n}\n", 2, "timeouts: a block with read");
    assert_rejects(".:1053 {\n timeouts {\n }\n}\n", 2, "timeouts: a block with no timeouts");
    assert_rejects(".:1053 {\n timeouts {\n read 500ms\n }\n}\n", 3, "must be between 1s and 24h");
    assert_rejects(".:1053 {\n timeouts {\n idle 25h\n }\n}\n", 3, "between 1s and 24h");
    assert_rejects(".:1053 {\n timeouts {\n idle soon\n }\n}\n", 3, "invalid duration");
    assert_rejects(".:1053 {\n timeouts {\n max_queries 5\n }\n}\n", 3, "unknown option");
    assert_rejects(".:1053 {\n timeouts {\n read\n }\n}\n", 3, "read: expected one duration");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_corefile),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_several_keys),
        cmocka_unit_test(test_key_errors),
        cmocka_unit_test(test_block_structure_errors),
        cmocka_unit_test(test_braceless_lone_block),
        cmocka_unit_test(test_bind),
        cmocka_unit_test(test_errors_log),
        cmocka_unit_test(test_http_directives),
        cmocka_unit_test(test_cache_forward_redis),
        cmocka_unit_test(test_not_supported_and_unknown),
        cmocka_unit_test(test_duplicate_zones),
        cmocka_unit_test(test_all_errors_collected),
        cmocka_unit_test(test_too_many_blocks),
        cmocka_unit_test(test_route),
        cmocka_unit_test(test_import_file_into_block),
        cmocka_unit_test(test_import_glob_in_sorted_order_and_empty_glob),
        cmocka_unit_test(test_snippets_pasted_where_imported),
        cmocka_unit_test(test_nested_imports),
        cmocka_unit_test(test_import_cycles_and_depth_are_errors),
        cmocka_unit_test(test_errors_inside_imported_files_name_them),
        cmocka_unit_test(test_loop_and_timeouts_directives),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
