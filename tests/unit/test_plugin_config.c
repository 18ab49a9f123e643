/* tests/unit/test_plugin_config.c — the `redis_cache` directive's parser and validation
 * (src/plugin/config.c): every example block of the seed, defaults, repeats, and each
 * rejection with its line and "FILE:LINE: redis_cache: WHAT" text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "plugin/plugin.h"

/* Lexes src as file "Corefile" and parses the first `redis_cache` directive in it. Returns
 * rcp_config_parse's result; *next_text is the text of the token after the directive. */
static int parse_src(const char *src, struct rcp_config *cfg, struct cfg_error *err,
                     char *next_text, size_t next_cap)
{
    struct cfg_tokens t;
    memset(err, 0, sizeof *err);
    if (cfg_lex(&t, "Corefile", src, strlen(src), err) != 0) fail_msg("lex failed: %s", err->msg);
    struct cfg_cursor c = {&t, 0};
    while (c.pos < t.n && !cfg_is(&t.tok[c.pos], "redis_cache")) c.pos++;
    if (c.pos == t.n) fail_msg("no redis_cache in the source");
    int rc = rcp_config_parse(&c, cfg, err);
    if (next_text) snprintf(next_text, next_cap, "%s", c.pos < t.n ? t.tok[c.pos].text : "<end>");
    cfg_tokens_free(&t);
    return rc;
}

static struct rcp_config *accept_cfg(const char *src)
{
    static struct rcp_config cfg;
    struct cfg_error err;
    if (parse_src(src, &cfg, &err, NULL, 0) != 0) {
        char buf[700];
        cfg_error_format(&err, buf, sizeof buf);
        fail_msg("rejected: %s\n--- source:\n%s", buf, src);
    }
    return &cfg;
}

/* Rejected at `line` with a message starting "redis_cache: " and containing `want`. */
static void reject(const char *src, unsigned line, const char *want)
{
    struct rcp_config cfg;
    struct cfg_error err;
    if (parse_src(src, &cfg, &err, NULL, 0) == 0) fail_msg("accepted:\n%s", src);
    char buf[700];
    cfg_error_format(&err, buf, sizeof buf);
    if (strncmp(err.msg, "redis_cache: ", 13) != 0) fail_msg("bad prefix: %s", buf);
    if (!strstr(err.msg, want)) fail_msg("\"%s\" lacks \"%s\"", buf, want);
    if (err.line != line) fail_msg("\"%s\": line %u, want %u", buf, err.line, line);
    assert_string_equal(err.file, "Corefile");
}

/* The exact formatted error. */
static void reject_exact(const char *src, const char *want)
{
    struct rcp_config cfg;
    struct cfg_error err;
    if (parse_src(src, &cfg, &err, NULL, 0) == 0) fail_msg("accepted:\n%s", src);
    char buf[700];
    cfg_error_format(&err, buf, sizeof buf);
    assert_string_equal(buf, want);
}

/* ---- defaults and the seed's examples ------------------------------------------------ */

static void test_bare_directive_gets_every_default(void **state)
{
    char next[64];
    struct rcp_config cfg;
    struct cfg_error err;
    assert_int_equal(parse_src("redis_cache\nforward . 1.1.1.1", &cfg, &err, next, sizeof next), 0);
    assert_string_equal(next, "forward");
    assert_string_equal(cfg.file, "Corefile");
    assert_int_equal(cfg.line, 1);
    assert_int_equal(cfg.nzones, 0);
    assert_int_equal(cfg.success_max, 3600);
    assert_int_equal(cfg.success_min, 0);
    assert_int_equal(cfg.denial_max, 1800);
    assert_int_equal(cfg.denial_min, 0);
    assert_int_equal(cfg.mode, RCP_MODE_STANDALONE);
    assert_string_equal(cfg.endpoint.host, "127.0.0.1");
    assert_int_equal(cfg.endpoint.port, 6379);
    assert_false(cfg.endpoint_set);
    assert_int_equal(cfg.n_read_endpoints, 0);
    assert_string_equal(cfg.key_prefix, "cdrc");
    assert_int_equal(cfg.key_prefix_len, 4);
    assert_int_equal(cfg.key_hash_seed, 0);
    assert_int_equal(cfg.db, 0);
    assert_int_equal(cfg.read_from, RCP_READ_LATENCY);
    assert_false(cfg.username_set);
    assert_false(cfg.password_set);
    assert_true(cfg.connect_timeout == 1.0);
    assert_true(cfg.read_timeout == 0.5);
    assert_true(cfg.write_timeout == 2.0);
    assert_int_equal(cfg.pool.size, 0);
    assert_true(cfg.pool.max_idle_time == 1800);
    assert_true(cfg.pool.wait_timeout == 0.5);
    assert_int_equal(cfg.pool.retries, 1);
    assert_true(cfg.pool.min_backoff == 0.008);
    assert_true(cfg.pool.max_backoff == 0.512);
    assert_true(cfg.tcp_keepalive == 0);
    assert_false(cfg.tls);
    assert_true(cfg.tls_verify_chain);
    assert_true(cfg.tls_verify_hostname);
    assert_string_equal(cfg.resolver, "");
}

static void test_seed_standalone_example_in_a_server_block(void **state)
{
    const char *src = ". {\n"
                      "    cache {\n"
                      "        success 9984 30\n"
                      "        denial 9984 5\n"
                      "    }\n"
                      "    redis_cache {\n"
                      "        endpoint redis.cache.svc.cluster.local:6379\n"
                      "        success 1h 1m\n"
                      "        denial 30m 30s\n"
                      "    }\n"
                      "    forward . 8.8.8.8:53\n"
                      "}\n";
    char next[64];
    struct rcp_config cfg;
    struct cfg_error err;
    assert_int_equal(parse_src(src, &cfg, &err, next, sizeof next), 0);
    assert_string_equal(next, "forward");
    assert_int_equal(cfg.line, 6);
    assert_string_equal(cfg.endpoint.host, "redis.cache.svc.cluster.local");
    assert_int_equal(cfg.endpoint.port, 6379);
    assert_int_equal(cfg.endpoint.line, 7);
    assert_true(cfg.endpoint_set);
    assert_int_equal(cfg.success_max, 3600);
    assert_int_equal(cfg.success_min, 60);
    assert_int_equal(cfg.denial_max, 1800);
    assert_int_equal(cfg.denial_min, 30);
}

static void test_seed_read_endpoints_example(void **state)
{
    struct rcp_config *cfg = accept_cfg("redis_cache {\n"
                                        "    endpoint 10.0.0.1:6379\n"
                                        "    read_endpoint 10.0.0.2:6379 10.0.0.3:6379\n"
                                        "    password secretPass\n"
                                        "}\n");
    assert_int_equal(cfg->mode, RCP_MODE_STANDALONE);
    assert_string_equal(cfg->endpoint.host, "10.0.0.1");
    assert_int_equal(cfg->n_read_endpoints, 2);
    assert_string_equal(cfg->read_endpoints[0].host, "10.0.0.2");
    assert_string_equal(cfg->read_endpoints[1].host, "10.0.0.3");
    assert_int_equal(cfg->read_endpoints[1].port, 6379);
    assert_int_equal(cfg->read_endpoints[1].line, 3);
    assert_true(cfg->password_set);
    assert_string_equal(cfg->password, "secretPass");
    assert_false(cfg->username_set);
}

static void test_seed_sentinel_example(void **state)
{
    struct rcp_config *cfg =
        accept_cfg("redis_cache {\n"
                   "    sentinel mymaster 10.0.0.1:26379 10.0.0.2:26379 10.0.0.3:26379\n"
                   "    password masterReplicaPass\n"
                   "    sentinel_password sentinelPass\n"
                   "}\n");
    assert_int_equal(cfg->mode, RCP_MODE_SENTINEL);
    assert_string_equal(cfg->sentinel_master, "mymaster");
    assert_int_equal(cfg->n_sentinels, 3);
    assert_string_equal(cfg->sentinels[2].host, "10.0.0.3");
    assert_int_equal(cfg->sentinels[2].port, 26379);
    assert_string_equal(cfg->password, "masterReplicaPass");
    assert_true(cfg->sentinel_password_set);
    assert_string_equal(cfg->sentinel_password, "sentinelPass");
}

static void test_seed_acl_example(void **state)
{
    struct rcp_config *cfg = accept_cfg("redis_cache {\n"
                                        "    endpoint redis.cache.svc.cluster.local:6379\n"
                                        "    username dns-cache\n"
                                        "    password s3cret\n"
                                        "}\n");
    assert_true(cfg->username_set);
    assert_string_equal(cfg->username, "dns-cache");
    assert_string_equal(cfg->password, "s3cret");
}

static void test_seed_cluster_example(void **state)
{
    struct rcp_config *cfg =
        accept_cfg("redis_cache {\n"
                   "    cluster valkey-cluster-0:6379 valkey-cluster-1:6379 valkey-cluster-2:6379\n"
                   "    password secretPass\n"
                   "    read_from latency\n"
                   "}\n");
    assert_int_equal(cfg->mode, RCP_MODE_CLUSTER);
    assert_int_equal(cfg->n_cluster_seeds, 3);
    assert_string_equal(cfg->cluster_seeds[1].host, "valkey-cluster-1");
    assert_true(cfg->read_from_set);
    assert_int_equal(cfg->read_from, RCP_READ_LATENCY);
}

static void test_seed_tls_os_trust_store_example(void **state)
{
    struct rcp_config *cfg = accept_cfg("redis_cache {\n"
                                        "    endpoint redis.example.com:6380\n"
                                        "    tls\n"
                                        "    password s3cret\n"
                                        "}\n");
    assert_true(cfg->tls);
    assert_int_equal(cfg->endpoint.port, 6380);
    assert_string_equal(cfg->tls_ca, "");
}

static void test_seed_tls_internal_ca_example(void **state)
{
    struct rcp_config *cfg = accept_cfg("redis_cache {\n"
                                        "    endpoint redis.example.com:6380\n"
                                        "    tls_ca /etc/ssl/certs/redis-ca.pem\n"
                                        "    password s3cret\n"
                                        "}\n");
    assert_true(cfg->tls);
    assert_string_equal(cfg->tls_ca, "/etc/ssl/certs/redis-ca.pem");
}

static void test_seed_mtls_example(void **state)
{
    struct rcp_config *cfg = accept_cfg("redis_cache {\n"
                                        "    endpoint redis.cache.svc.cluster.local:6379\n"
                                        "    username dns-cache\n"
                                        "    password s3cret\n"
                                        "    tls_cert /etc/redis/tls/client.crt\n"
                                        "    tls_key  /etc/redis/tls/client.key\n"
                                        "    tls_ca   /etc/redis/tls/ca.pem\n"
                                        "}\n");
    assert_true(cfg->tls);
    assert_string_equal(cfg->tls_cert, "/etc/redis/tls/client.crt");
    assert_string_equal(cfg->tls_key, "/etc/redis/tls/client.key");
    assert_string_equal(cfg->tls_ca, "/etc/redis/tls/ca.pem");
}

static void test_seed_cluster_per_pod_certs_example_with_continuations(void **state)
{
    struct rcp_config *cfg = accept_cfg(
        "redis_cache {\n"
        "    cluster redis-cluster-0.redis-cluster-headless.cache.svc.cluster.local:6379 \\\n"
        "            redis-cluster-1.redis-cluster-headless.cache.svc.cluster.local:6379 \\\n"
        "            redis-cluster-2.redis-cluster-headless.cache.svc.cluster.local:6379\n"
        "    tls_ca              /etc/redis/tls/ca.pem\n"
        "    tls_verify_hostname off\n"
        "    password            s3cret\n"
        "}\n");
    assert_int_equal(cfg->mode, RCP_MODE_CLUSTER);
    assert_int_equal(cfg->n_cluster_seeds, 3);
    assert_string_equal(cfg->cluster_seeds[2].host,
                        "redis-cluster-2.redis-cluster-headless.cache.svc.cluster.local");
    assert_int_equal(cfg->cluster_seeds[2].line, 2);
    assert_true(cfg->tls);
    assert_false(cfg->tls_verify_hostname);
    assert_true(cfg->tls_verify_chain);
}

/* node-local-dns substitutes __PILLAR__CLUSTER__DNS__ (and __PILLAR__UPSTREAM__SERVERS__)
 * before the server reads the file; this is the example as the server sees it. */
static void test_seed_node_local_dns_example_after_substitution(void **state)
{
    const char *src = ".:53 {\n"
                      "    errors\n"
                      "    cache {\n"
                      "        success 9984 30\n"
                      "        denial 9984 5\n"
                      "    }\n"
                      "    redis_cache {\n"
                      "        endpoint "
                      "k8s-dns-cache-redis-master.k8s-dns-cache.svc.cluster.local:6379\n"
                      "        read_endpoint "
                      "k8s-dns-cache-redis-replicas.k8s-dns-cache.svc.cluster.local:6379\n"
                      "        password secretPass\n"
                      "        success 1h 1m\n"
                      "        denial 30m 30s\n"
                      "        resolver 10.96.0.10\n"
                      "    }\n"
                      "    forward . 10.96.0.10\n"
                      "}\n";
    struct rcp_config cfg;
    struct cfg_error err;
    char next[64];
    assert_int_equal(parse_src(src, &cfg, &err, next, sizeof next), 0);
    assert_string_equal(next, "forward");
    assert_string_equal(cfg.resolver, "10.96.0.10:53");
    assert_int_equal(cfg.n_read_endpoints, 1);
    assert_int_equal(cfg.success_min, 60);
}

/* The raw placeholder is a name, and the resolver is what resolves names: rejected. */
static void test_unsubstituted_node_local_dns_placeholder_is_rejected(void **state)
{
    reject("redis_cache {\n    resolver __PILLAR__CLUSTER__DNS__\n}\n", 2,
           "resolver: \"__PILLAR__CLUSTER__DNS__\" is not an IP address");
}

/* ---- values ----------------------------------------------------------------------------- */

static void test_ttl_bare_seconds_and_durations(void **state)
{
    struct rcp_config *cfg = accept_cfg("redis_cache {\n success 10\n denial 2000ms\n}");
    assert_int_equal(cfg->success_max, 10);
    assert_int_equal(cfg->success_min, 0);
    assert_int_equal(cfg->denial_max, 2);
    cfg = accept_cfg("redis_cache {\n success 3600 0\n denial 1h30m 1.5m\n}");
    assert_int_equal(cfg->success_max, 3600);
    assert_int_equal(cfg->success_min, 0);
    assert_int_equal(cfg->denial_max, 5400);
    assert_int_equal(cfg->denial_min, 90);
    cfg = accept_cfg("redis_cache {\n success 1.5h 0s\n}");
    assert_int_equal(cfg->success_max, 5400);
    cfg = accept_cfg("redis_cache {\n success 0\n}");
    assert_int_equal(cfg->success_max, 0);
}

static void test_ttl_later_line_replaces_earlier(void **state)
{
    struct rcp_config *cfg = accept_cfg("redis_cache {\n success 1h 1m\n success 30s\n}");
    assert_int_equal(cfg->success_max, 30);
    assert_int_equal(cfg->success_min, 0);
}

static void test_ttl_sub_second_rejected(void **state)
{
    reject("redis_cache {\n success 500ms\n}", 2, "success: MAX_TTL 500ms is not a whole");
    reject("redis_cache {\n success 1h 500ms\n}", 2, "success: MIN_TTL 500ms is not a whole");
    reject("redis_cache {\n denial 1500ms\n}", 2, "denial: MAX_TTL 1500ms is not a whole");
    reject("redis_cache {\n success 0.5s\n}", 2, "not a whole number of seconds");
}

static void test_ttl_garbage_rejected(void **state)
{
    reject_exact("redis_cache {\n denial aaa\n}",
                 "Corefile:2: redis_cache: denial: bad MAX_TTL \"aaa\": expected a duration "
                 "(30s, 1h30m) or seconds");
    reject("redis_cache {\n success 1h30\n}", 2, "bad MAX_TTL \"1h30\"");
    reject("redis_cache {\n success 10x\n}", 2, "bad MAX_TTL");
    reject("redis_cache {\n success \"\"\n}", 2, "bad MAX_TTL");
    reject("redis_cache {\n success 1.5\n}", 2, "bad MAX_TTL");
}

static void test_ttl_min_above_max_rejected(void **state)
{
    reject_exact("redis_cache {\n success 30s 1h\n}",
                 "Corefile:2: redis_cache: success: MIN_TTL 1h is greater than MAX_TTL 30s");
    reject("redis_cache {\n\n denial 10s 5m\n}", 3,
           "denial: MIN_TTL 5m is greater than MAX_TTL 10s");
}

static void test_ttl_negative_rejected(void **state)
{
    reject("redis_cache {\n success 1h -1\n}", 2, "success: MIN_TTL -1 is negative");
    reject("redis_cache {\n success 1h -5s\n}", 2, "MIN_TTL -5s is negative");
    reject("redis_cache {\n denial -30m\n}", 2, "MAX_TTL -30m is negative");
}

static void test_ttl_too_large_and_arguments(void **state)
{
    reject("redis_cache {\n success 2147483648\n}", 2, "is over 2147483647 seconds");
    reject("redis_cache {\n success 99999999999999999999999h\n}", 2, "is over");
    reject("redis_cache {\n success\n}", 2, "success: missing MAX_TTL [MIN_TTL]");
    reject("redis_cache {\n denial 1 2 3\n}", 2, "denial: too many arguments");
}

static void test_endpoint_forms(void **state)
{
    struct rcp_config *cfg = accept_cfg("redis_cache {\n endpoint 127.0.0.3\n}");
    assert_string_equal(cfg->endpoint.host, "127.0.0.3");
    assert_int_equal(cfg->endpoint.port, 6379);
    cfg = accept_cfg("redis_cache {\n endpoint redis.local\n}");
    assert_string_equal(cfg->endpoint.host, "redis.local");
    cfg = accept_cfg("redis_cache {\n endpoint [::1]:7000\n}");
    assert_string_equal(cfg->endpoint.host, "::1");
    assert_int_equal(cfg->endpoint.port, 7000);
    cfg = accept_cfg("redis_cache {\n endpoint ::1\n}");
    assert_string_equal(cfg->endpoint.host, "::1");
    assert_int_equal(cfg->endpoint.port, 6379);
}

static void test_endpoint_later_line_replaces_earlier(void **state)
{
    struct rcp_config *cfg = accept_cfg("redis_cache {\n endpoint a:1\n endpoint b:2\n}");
    assert_string_equal(cfg->endpoint.host, "b");
    assert_int_equal(cfg->endpoint.port, 2);
    assert_int_equal(cfg->endpoint.line, 3);
}

static void test_endpoint_bad_address_rejected(void **state)
{
    reject_exact("redis_cache {\n endpoint :1:1:6379\n}",
                 "Corefile:2: redis_cache: endpoint: bad address \":1:1:6379\": not an IPv6 "
                 "address (use [v6]:port)");
    reject("redis_cache {\n endpoint host:0\n}", 2, "bad port");
    reject("redis_cache {\n endpoint\n}", 2, "endpoint: missing ENDPOINT");
    reject("redis_cache {\n endpoint a b\n}", 2, "endpoint: too many arguments");
}

static void test_read_endpoints_accumulate(void **state)
{
    struct rcp_config *cfg =
        accept_cfg("redis_cache {\n read_endpoint a\n read_endpoint b:1 [::2]:3\n endpoint w\n}");
    assert_int_equal(cfg->n_read_endpoints, 3);
    assert_string_equal(cfg->read_endpoints[0].host, "a");
    assert_int_equal(cfg->read_endpoints[0].port, 6379);
    assert_string_equal(cfg->read_endpoints[2].host, "::2");
    assert_int_equal(cfg->read_endpoints[2].line, 3);
}

static void test_key_prefix(void **state)
{
    struct rcp_config *cfg = accept_cfg("redis_cache {\n key_prefix mycache:\n}");
    assert_string_equal(cfg->key_prefix, "mycache");
    assert_int_equal(cfg->key_prefix_len, 7);
    cfg = accept_cfg("redis_cache {\n key_prefix mycache\n}");
    assert_string_equal(cfg->key_prefix, "mycache");
    cfg = accept_cfg("redis_cache {\n key_prefix \"\"\n}");
    assert_string_equal(cfg->key_prefix, "");
    assert_int_equal(cfg->key_prefix_len, 0);
    /* only one ':' is trimmed */
    cfg = accept_cfg("redis_cache {\n key_prefix a::\n}");
    assert_string_equal(cfg->key_prefix, "a:");
    reject("redis_cache {\n key_prefix\n}", 2, "key_prefix: missing STRING");
}

static void test_db(void **state)
{
    struct rcp_config *cfg = accept_cfg("redis_cache {\n db 3\n db 5\n}");
    assert_int_equal(cfg->db, 5);
    reject("redis_cache {\n db -1\n}", 2, "db: -1 is negative");
    reject("redis_cache {\n db x\n}", 2, "not a non-negative integer");
    reject("redis_cache {\n db 2147483648\n}", 2, "too large");
}

static void test_key_hash_seed(void **state)
{
    struct rcp_config *cfg = accept_cfg("redis_cache {\n key_hash_seed 18446744073709551615\n}");
    assert_true(cfg->key_hash_seed == UINT64_MAX);
    reject("redis_cache {\n key_hash_seed 18446744073709551616\n}", 2, "too large");
    reject("redis_cache {\n key_hash_seed -1\n}", 2, "negative");
    reject("redis_cache {\n key_hash_seed 0x10\n}", 2, "not a non-negative integer");
}

static void test_zones_normalized(void **state)
{
    struct rcp_config *cfg = accept_cfg("redis_cache Example.ORG other.org. . example.org {\n}");
    assert_int_equal(cfg->nzones, 3);
    assert_string_equal(cfg->zones[0], "example.org.");
    assert_string_equal(cfg->zones[1], "other.org.");
    assert_string_equal(cfg->zones[2], ".");
}

static void test_zones_garbage_rejected(void **state)
{
    reject("redis_cache \"exa mple\"", 1, "bad zone \"exa mple\": invalid character");
    reject("redis_cache dns://example.org", 1, "invalid character");
    reject("redis_cache a..b", 1, "empty label");
    reject("redis_cache "
           "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.org",
           1, "label over 63 bytes");
    reject("redis_cache \"\"", 1, "empty zone");
}

/* ---- topology ----------------------------------------------------------------------- */

static void test_sentinel_needs_an_address(void **state)
{
    reject_exact("redis_cache {\n sentinel mymaster\n}",
                 "Corefile:2: redis_cache: sentinel: missing SENTINEL_ADDR after the master name "
                 "mymaster");
    reject("redis_cache {\n sentinel\n}", 2, "sentinel: missing MASTER_NAME");
}

static void test_sentinel_addresses_accumulate_same_master(void **state)
{
    struct rcp_config *cfg =
        accept_cfg("redis_cache {\n sentinel m a\n sentinel m b:1 c\n sentinel_username u\n"
                   " sentinel_password p\n}");
    assert_int_equal(cfg->n_sentinels, 3);
    assert_int_equal(cfg->sentinels[0].port, 26379);
    assert_int_equal(cfg->sentinels[1].port, 1);
    assert_string_equal(cfg->sentinel_username, "u");
    reject("redis_cache {\n sentinel m a\n sentinel other b\n}", 3,
           "sentinel: master other differs from m (line 2)");
}

static void test_cluster_needs_seeds(void **state)
{
    reject("redis_cache {\n cluster\n}", 2, "cluster: missing SEED_ADDR");
}

static void test_cluster_bad_seed_rejected(void **state)
{
    reject("redis_cache {\n cluster :::6379\n}", 2, "cluster: bad address \":::6379\"");
}

static void test_cluster_seeds_accumulate(void **state)
{
    struct rcp_config *cfg = accept_cfg("redis_cache {\n cluster a b\n cluster c:7000\n db 0\n}");
    assert_int_equal(cfg->n_cluster_seeds, 3);
    assert_int_equal(cfg->cluster_seeds[0].port, 6379);
    assert_int_equal(cfg->cluster_seeds[2].port, 7000);
}

static void test_cluster_conflicts_at_the_later_line(void **state)
{
    reject_exact("redis_cache {\n cluster a\n endpoint b\n}",
                 "Corefile:3: redis_cache: endpoint: not allowed in cluster mode (cluster at "
                 "line 2)");
    reject("redis_cache {\n endpoint b\n cluster a\n}", 3,
           "cluster: cluster mode does not take endpoint (line 2)");
    reject("redis_cache {\n cluster a\n read_endpoint b\n}", 3,
           "read_endpoint: not allowed in cluster mode");
    reject("redis_cache {\n read_endpoint b\n\n cluster a\n}", 4,
           "does not take read_endpoint (line 2)");
    reject("redis_cache {\n cluster a\n sentinel m b\n}", 3, "sentinel: not allowed in cluster");
    reject("redis_cache {\n sentinel m b\n cluster a\n}", 3, "cluster: not allowed with sentinel");
    reject("redis_cache {\n cluster a\n db 5\n}", 3, "db: cluster mode supports only db 0");
    reject("redis_cache {\n db 5\n cluster a\n}", 3, "cluster: cluster mode supports only db 0");
}

static void test_sentinel_conflicts_at_the_later_line(void **state)
{
    reject("redis_cache {\n sentinel m a\n endpoint b\n}", 3,
           "endpoint: not allowed in sentinel mode (sentinel at line 2)");
    reject("redis_cache {\n endpoint b\n sentinel m a\n}", 3,
           "sentinel: sentinel mode does not take endpoint (line 2)");
    reject("redis_cache {\n sentinel m a\n read_endpoint b\n}", 3,
           "read_endpoint: not allowed in sentinel mode");
    reject("redis_cache {\n read_endpoint b\n sentinel m a\n}", 3, "does not take read_endpoint");
}

static void test_read_from(void **state)
{
    struct rcp_config *cfg = accept_cfg("redis_cache {\n read_from random\n cluster a\n}");
    assert_int_equal(cfg->read_from, RCP_READ_RANDOM);
    cfg = accept_cfg("redis_cache {\n cluster a\n read_from primary\n}");
    assert_int_equal(cfg->read_from, RCP_READ_PRIMARY);
    reject("redis_cache {\n endpoint a\n read_from latency\n}", 3,
           "read_from: only valid in cluster mode");
    reject("redis_cache {\n read_from latency\n sentinel m a\n}", 2, "only valid in cluster mode");
    reject("redis_cache {\n cluster a\n read_from elsewhere\n}", 3,
           "read_from: \"elsewhere\": expected latency, random or primary");
}

static void test_sentinel_credentials_need_sentinel(void **state)
{
    reject("redis_cache {\n sentinel_username u\n sentinel_password p\n}", 2,
           "sentinel_username: only valid in sentinel mode");
    reject("redis_cache {\n endpoint a\n sentinel_password p\n}", 3,
           "sentinel_password: only valid in sentinel mode");
    reject("redis_cache {\n cluster a\n sentinel_password p\n}", 3, "only valid in sentinel");
    reject("redis_cache {\n sentinel m a\n sentinel_username u\n}", 3,
           "sentinel_username: needs a password");
}

/* ---- credentials -------------------------------------------------------------------- */

static void test_username_needs_password(void **state)
{
    reject("redis_cache {\n username u\n}", 2, "username: needs a password");
    reject("redis_cache {\n username u\n password \"\"\n}", 2, "username: needs a password");
    struct rcp_config *cfg = accept_cfg("redis_cache {\n password only\n}");
    assert_true(cfg->password_set);
    assert_false(cfg->username_set);
    cfg = accept_cfg("redis_cache {\n password a\n password b\n username u\n}");
    assert_string_equal(cfg->password, "b");
}

static void test_missing_arguments(void **state)
{
    reject("redis_cache {\n username\n}", 2, "username: missing USERNAME");
    reject("redis_cache {\n password\n}", 2, "password: missing PASSWORD");
    reject("redis_cache {\n tls_cert\n tls_key k\n}", 2, "tls_cert: missing PATH");
    reject("redis_cache {\n tls_verify_chain\n}", 2, "tls_verify_chain: missing BOOL");
    reject("redis_cache {\n resolver\n}", 2, "resolver: missing ADDRESS");
    reject("redis_cache {\n tcp_keepalive\n}", 2, "tcp_keepalive: missing DURATION");
    reject("redis_cache {\n read_endpoint\n}", 2, "read_endpoint: missing ENDPOINT");
    reject("redis_cache {\n timeout\n}", 2, "timeout: missing settings");
    reject("redis_cache {\n pool {\n  size\n }\n}", 3, "pool size: missing value");
}

static void test_extra_arguments_rejected(void **state)
{
    reject("redis_cache {\n username a b\n}", 2, "username: too many arguments");
    reject("redis_cache {\n db 1 2\n}", 2, "db: too many arguments");
    reject("redis_cache {\n key_prefix a b\n}", 2, "key_prefix: too many arguments");
    reject("redis_cache {\n retries {\n  max 1 2\n }\n}", 3, "retries max: too many arguments");
}

static void test_unknown_directive_is_named(void **state)
{
    reject_exact("redis_cache {\n endpoint a\n expire 5\n}",
                 "Corefile:3: redis_cache: unknown directive \"expire\"");
    reject("redis_cache {\n timeout {\n  idle 1s\n }\n}", 3,
           "timeout: unknown setting \"idle\" (expected connect|read|write DURATION)");
}

/* ---- timeout, pool, retries, keepalive ----------------------------------------------- */

static void test_timeout_block_and_inline(void **state)
{
    struct rcp_config *cfg = accept_cfg("redis_cache {\n timeout {\n  connect 2s\n  read 250ms\n"
                                        "  write 1.5s\n }\n}");
    assert_true(cfg->connect_timeout == 2.0);
    assert_true(cfg->read_timeout == 0.25);
    assert_true(cfg->write_timeout == 1.5);
    cfg = accept_cfg("redis_cache {\n timeout read 100ms\n}");
    assert_true(cfg->read_timeout == 0.1);
    assert_true(cfg->connect_timeout == 1.0);
}

static void test_timeout_needs_a_unit_and_positive_value(void **state)
{
    reject("redis_cache {\n timeout connect 500\n}", 2,
           "timeout connect: 500 needs a unit (e.g. 500ms, 2s, 1.5s)");
    reject("redis_cache {\n timeout {\n  read 0\n }\n}", 3, "timeout read: must be greater than 0");
    reject("redis_cache {\n timeout write 0s\n}", 2, "must be greater than 0");
    reject("redis_cache {\n timeout write -1s\n}", 2, "timeout write: -1s is negative");
    reject("redis_cache {\n timeout write 1y\n}", 2, "timeout write: bad duration \"1y\"");
}

static void test_pool_settings(void **state)
{
    struct rcp_config *cfg =
        accept_cfg("redis_cache {\n pool {\n  size 0\n  min_idle 2\n  max_idle 4\n"
                   "  max_active 8\n  max_idle_time 4m\n  max_lifetime 0\n"
                   "  wait_timeout 100ms\n }\n}");
    assert_int_equal(cfg->pool.size, 0); /* 0: the default */
    assert_int_equal(cfg->pool.min_idle, 2);
    assert_int_equal(cfg->pool.max_idle, 4);
    assert_int_equal(cfg->pool.max_active, 8);
    assert_true(cfg->pool.max_idle_time == 240);
    assert_true(cfg->pool.max_lifetime == 0);
    assert_true(cfg->pool.wait_timeout == 0.1);
    cfg = accept_cfg("redis_cache {\n pool size 20\n}");
    assert_int_equal(cfg->pool.size, 20);
}

static void test_pool_rejections(void **state)
{
    reject("redis_cache {\n pool max_idle_time 240\n}", 2, "pool max_idle_time: 240 needs a unit");
    reject("redis_cache {\n pool size -1\n}", 2, "pool size: -1 is negative");
    reject("redis_cache {\n pool size 1.5\n}", 2, "not a non-negative integer");
    reject("redis_cache {\n pool {\n  wait_timeout -1s\n }\n}", 3, "negative");
    reject("redis_cache {\n pool size 1 max_idle 2\n}", 2, "pool: too many arguments");
    reject("redis_cache {\n pool {\n  size 1 {\n  }\n }\n}", 3, "pool: unexpected block");
}

static void test_retries(void **state)
{
    struct rcp_config *cfg = accept_cfg("redis_cache {\n retries {\n  max 0\n }\n}");
    assert_int_equal(cfg->pool.retries, 0);
    cfg = accept_cfg(
        "redis_cache {\n retries {\n  max 3\n  min_backoff 10ms\n  max_backoff 1s\n }\n}");
    assert_int_equal(cfg->pool.retries, 3);
    assert_true(cfg->pool.min_backoff == 0.01);
    assert_true(cfg->pool.max_backoff == 1.0);
    /* one bound past the other's default: the default gives way */
    cfg = accept_cfg("redis_cache {\n retries min_backoff 1s\n}");
    assert_true(cfg->pool.min_backoff == 1.0);
    assert_true(cfg->pool.max_backoff == 1.0);
    cfg = accept_cfg("redis_cache {\n retries max_backoff 1ms\n}");
    assert_true(cfg->pool.min_backoff == 0.001);
    assert_true(cfg->pool.max_backoff == 0.001);
}

static void test_retries_rejections(void **state)
{
    reject("redis_cache {\n retries max -1\n}", 2, "retries max: -1 is negative");
    reject("redis_cache {\n retries min_backoff 100\n}", 2,
           "retries min_backoff: 100 needs a unit");
    reject("redis_cache {\n retries {\n  min_backoff 1s\n  max_backoff 100ms\n }\n}", 4,
           "retries: max_backoff 100ms is below min_backoff (1s, line 3)");
    reject("redis_cache {\n retries {\n  max_backoff 100ms\n  min_backoff 1s\n }\n}", 4,
           "retries: min_backoff 1s exceeds max_backoff");
}

static void test_tcp_keepalive(void **state)
{
    struct rcp_config *cfg = accept_cfg("redis_cache {\n tcp_keepalive 30s\n}");
    assert_true(cfg->tcp_keepalive == 30);
    cfg = accept_cfg("redis_cache {\n tcp_keepalive 0\n}");
    assert_true(cfg->tcp_keepalive == 0);
    reject("redis_cache {\n tcp_keepalive 30\n}", 2, "tcp_keepalive: 30 needs a unit");
    reject("redis_cache {\n tcp_keepalive -1\n}", 2, "tcp_keepalive: -1 is negative");
}

/* ---- TLS, resolver ------------------------------------------------------------------ */

static void test_tls_takes_no_arguments(void **state)
{
    reject("redis_cache {\n tls /a /b\n}", 2, "tls: takes no arguments");
}

static void test_tls_bools(void **state)
{
    struct rcp_config *cfg = accept_cfg("redis_cache {\n tls_verify_chain no\n}");
    assert_true(cfg->tls);
    assert_false(cfg->tls_verify_chain);
    const char *yes[] = {"on", "true", "yes", "1", "ON", "True"};
    const char *no[] = {"off", "false", "no", "0"};
    char src[128];
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        snprintf(src, sizeof src,
                 "redis_cache {\n tls_verify_hostname off\n"
                 " tls_verify_hostname %s\n}",
                 yes[i]);
        assert_true(accept_cfg(src)->tls_verify_hostname);
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        snprintf(src, sizeof src, "redis_cache {\n tls_verify_hostname %s\n}", no[i]);
        assert_false(accept_cfg(src)->tls_verify_hostname);
    }
    reject_exact("redis_cache {\n tls_verify_chain maybe\n}",
                 "Corefile:2: redis_cache: tls_verify_chain: \"maybe\": expected on/off, "
                 "true/false, yes/no or 1/0");
}

static void test_tls_cert_and_key_must_be_paired(void **state)
{
    reject("redis_cache {\n tls_cert /c.pem\n}", 2, "tls_cert: needs tls_key");
    reject("redis_cache {\n endpoint a\n tls_key /k.pem\n}", 3, "tls_key: needs tls_cert");
    reject("redis_cache {\n tls_ca \"\"\n}", 2, "tls_ca: empty PATH");
}

static void test_resolver(void **state)
{
    struct rcp_config *cfg = accept_cfg("redis_cache {\n resolver 10.96.0.10\n}");
    assert_string_equal(cfg->resolver, "10.96.0.10:53");
    cfg = accept_cfg("redis_cache {\n resolver 10.96.0.10:5353\n}");
    assert_string_equal(cfg->resolver, "10.96.0.10:5353");
    cfg = accept_cfg("redis_cache {\n resolver [fd00::a]:5353\n}");
    assert_string_equal(cfg->resolver, "[fd00::a]:5353");
    cfg = accept_cfg("redis_cache {\n resolver fd00::a\n}");
    assert_string_equal(cfg->resolver, "[fd00::a]:53");
    reject("redis_cache {\n resolver kube-dns.kube-system\n}", 2, "is not an IP address");
    reject("redis_cache {\n resolver 10.0.0.1:99999\n}", 2, "resolver: bad address");
}

/* ---- structure ---------------------------------------------------------------------- */

static void test_block_on_one_line_and_unclosed_block(void **state)
{
    struct rcp_config *cfg = accept_cfg("redis_cache { endpoint a:7 }");
    assert_int_equal(cfg->endpoint.port, 7);
    reject_exact("redis_cache {\n endpoint a\n",
                 "Corefile:1: redis_cache: missing '}' to close the block opened here");
    reject("redis_cache {\n endpoint a {\n }\n}", 2, "endpoint: takes no block");
}

/* The server's rule: one redis_cache per server block. It walks the block's directives with
 * cfg_args_end / cfg_block_end and rejects a second `redis_cache` at the second's line with
 * cfg_error_at(err, tok, "redis_cache: ..."); this driver does the same. */
static int server_block_directives(const struct cfg_tokens *t, struct cfg_error *err)
{
    struct cfg_cursor c = {t, 0};
    const struct cfg_token *first = NULL;
    struct rcp_config cfg;
    while (c.pos < t->n) {
        const struct cfg_token *d = cfg_cur(&c);
        if (cfg_is(d, "redis_cache")) {
            if (first) {
                cfg_error_at(err, d,
                             "redis_cache: only one redis_cache per server block (first at line "
                             "%u)",
                             first->line);
                return -1;
            }
            first = d;
            if (rcp_config_parse(&c, &cfg, err) != 0) return -1;
            continue;
        }
        size_t end = cfg_args_end(&c);
        c.pos = end < t->n && cfg_is_open(&t->tok[end]) ? cfg_block_end(t, end) + 1 : end;
    }
    return 0;
}

static void test_second_redis_cache_in_a_server_block_rejected(void **state)
{
    struct cfg_tokens t;
    struct cfg_error err;
    memset(&err, 0, sizeof err);
    const char *src = "redis_cache\nredis_cache";
    assert_int_equal(cfg_lex(&t, "Corefile", src, strlen(src), &err), 0);
    assert_int_equal(server_block_directives(&t, &err), -1);
    char buf[700];
    cfg_error_format(&err, buf, sizeof buf);
    assert_string_equal(buf, "Corefile:2: redis_cache: only one redis_cache per server block "
                             "(first at line 1)");
    cfg_tokens_free(&t);

    src = "errors\nredis_cache {\n endpoint a\n}\ncache\nredis_cache b.org {\n}\n";
    assert_int_equal(cfg_lex(&t, "Corefile", src, strlen(src), &err), 0);
    assert_int_equal(server_block_directives(&t, &err), -1);
    assert_int_equal(err.line, 6);
    cfg_tokens_free(&t);

    src = "errors\nredis_cache {\n endpoint a\n}\ncache\n";
    assert_int_equal(cfg_lex(&t, "Corefile", src, strlen(src), &err), 0);
    assert_int_equal(server_block_directives(&t, &err), 0);
    cfg_tokens_free(&t);
}

static void test_env_values_are_arguments(void **state)
{
    setenv("RC_TEST_REDIS_PASS", "from env", 1);
    unsetenv("RC_TEST_UNSET");
    struct rcp_config *cfg =
        accept_cfg("redis_cache {\n password {$RC_TEST_REDIS_PASS}\n username {$RC_TEST_UNSET}\n}");
    assert_string_equal(cfg->password, "from env");
    assert_false(cfg->username_set); /* empty: not set */
}

/* ---- rcp_config_check_files ---------------------------------------------------------- */

static char tmpdir[64];

static void write_pair(const char *cert_path, const char *key_path)
{
    EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(pk);
    X509 *x = X509_new();
    assert_non_null(x);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, pk);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"test", -1, -1, 0);
    X509_set_issuer_name(x, n);
    assert_true(X509_sign(x, pk, EVP_sha256()) > 0);
    FILE *f = fopen(cert_path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, x), 1);
    fclose(f);
    f = fopen(key_path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL), 1);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(pk);
}

static int files_setup(void **state)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/rc_cfg_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int files_teardown(void **state)
{
    const char *names[] = {"c.pem", "k.pem", "junk.pem"};
    char p[128];
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", tmpdir, names[i]);
        unlink(p);
    }
    rmdir(tmpdir);
    return 0;
}

static void test_check_files_loads_tls_files(void **state)
{
    char cert[128], key[128], junk[128], src[512];
    snprintf(cert, sizeof cert, "%s/c.pem", tmpdir);
    snprintf(key, sizeof key, "%s/k.pem", tmpdir);
    snprintf(junk, sizeof junk, "%s/junk.pem", tmpdir);
    write_pair(cert, key);
    FILE *f = fopen(junk, "w");
    assert_non_null(f);
    fputs("not a certificate\n", f);
    fclose(f);

    struct cfg_error err;
    memset(&err, 0, sizeof err);
    /* no TLS: nothing to load */
    assert_int_equal(rcp_config_check_files(accept_cfg("redis_cache"), &err), 0);

    snprintf(src, sizeof src, "redis_cache {\n tls_cert %s\n tls_key %s\n tls_ca %s\n}", cert, key,
             cert);
    assert_int_equal(rcp_config_check_files(accept_cfg(src), &err), 0);

    snprintf(src, sizeof src, "\nredis_cache {\n tls_ca %s/missing.pem\n}", tmpdir);
    assert_int_equal(rcp_config_check_files(accept_cfg(src), &err), -1);
    assert_int_equal(err.line, 2);
    assert_string_equal(err.file, "Corefile");
    assert_int_equal(strncmp(err.msg, "redis_cache: tls_ca ", 20), 0);
    assert_non_null(strstr(err.msg, "missing.pem"));

    snprintf(src, sizeof src, "redis_cache {\n tls_cert %s\n tls_key %s\n}", junk, key);
    assert_int_equal(rcp_config_check_files(accept_cfg(src), &err), -1);
    assert_non_null(strstr(err.msg, "tls_cert"));
    assert_non_null(strstr(err.msg, "junk.pem"));

    snprintf(src, sizeof src, "redis_cache {\n tls_cert %s\n tls_key %s\n}", cert, junk);
    assert_int_equal(rcp_config_check_files(accept_cfg(src), &err), -1);
    assert_non_null(strstr(err.msg, "tls_key"));
    assert_non_null(strstr(err.msg, "junk.pem"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bare_directive_gets_every_default),
        cmocka_unit_test(test_seed_standalone_example_in_a_server_block),
        cmocka_unit_test(test_seed_read_endpoints_example),
        cmocka_unit_test(test_seed_sentinel_example),
        cmocka_unit_test(test_seed_acl_example),
        cmocka_unit_test(test_seed_cluster_example),
        cmocka_unit_test(test_seed_tls_os_trust_store_example),
        cmocka_unit_test(test_seed_tls_internal_ca_example),
        cmocka_unit_test(test_seed_mtls_example),
        cmocka_unit_test(test_seed_cluster_per_pod_certs_example_with_continuations),
        cmocka_unit_test(test_seed_node_local_dns_example_after_substitution),
        cmocka_unit_test(test_unsubstituted_node_local_dns_placeholder_is_rejected),
        cmocka_unit_test(test_ttl_bare_seconds_and_durations),
        cmocka_unit_test(test_ttl_later_line_replaces_earlier),
        cmocka_unit_test(test_ttl_sub_second_rejected),
        cmocka_unit_test(test_ttl_garbage_rejected),
        cmocka_unit_test(test_ttl_min_above_max_rejected),
        cmocka_unit_test(test_ttl_negative_rejected),
        cmocka_unit_test(test_ttl_too_large_and_arguments),
        cmocka_unit_test(test_endpoint_forms),
        cmocka_unit_test(test_endpoint_later_line_replaces_earlier),
        cmocka_unit_test(test_endpoint_bad_address_rejected),
        cmocka_unit_test(test_read_endpoints_accumulate),
        cmocka_unit_test(test_key_prefix),
        cmocka_unit_test(test_db),
        cmocka_unit_test(test_key_hash_seed),
        cmocka_unit_test(test_zones_normalized),
        cmocka_unit_test(test_zones_garbage_rejected),
        cmocka_unit_test(test_sentinel_needs_an_address),
        cmocka_unit_test(test_sentinel_addresses_accumulate_same_master),
        cmocka_unit_test(test_cluster_needs_seeds),
        cmocka_unit_test(test_cluster_bad_seed_rejected),
        cmocka_unit_test(test_cluster_seeds_accumulate),
        cmocka_unit_test(test_cluster_conflicts_at_the_later_line),
        cmocka_unit_test(test_sentinel_conflicts_at_the_later_line),
        cmocka_unit_test(test_read_from),
        cmocka_unit_test(test_sentinel_credentials_need_sentinel),
        cmocka_unit_test(test_username_needs_password),
        cmocka_unit_test(test_missing_arguments),
        cmocka_unit_test(test_extra_arguments_rejected),
        cmocka_unit_test(test_unknown_directive_is_named),
        cmocka_unit_test(test_timeout_block_and_inline),
        cmocka_unit_test(test_timeout_needs_a_unit_and_positive_value),
        cmocka_unit_test(test_pool_settings),
        cmocka_unit_test(test_pool_rejections),
        cmocka_unit_test(test_retries),
        cmocka_unit_test(test_retries_rejections),
        cmocka_unit_test(test_tcp_keepalive),
        cmocka_unit_test(test_tls_takes_no_arguments),
        cmocka_unit_test(test_tls_bools),
        cmocka_unit_test(test_tls_cert_and_key_must_be_paired),
        cmocka_unit_test(test_resolver),
        cmocka_unit_test(test_block_on_one_line_and_unclosed_block),
        cmocka_unit_test(test_second_redis_cache_in_a_server_block_rejected),
        cmocka_unit_test(test_env_values_are_arguments),
        cmocka_unit_test_setup_teardown(test_check_files_loads_tls_files, files_setup,
                                        files_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
