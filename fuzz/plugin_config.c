/* fuzz/plugin_config.c — the redis_cache directive's parser under arbitrary Corefile text.
 *
 * Input starting with "redis_cache" is parsed as it is; anything else gets "redis_cache "
 * in front (so the bytes are zones, or a block when they start with "{"). On success the
 * configuration's invariants hold (TTL bounds ordered, ports set, no mode conflicts,
 * credentials and TLS pairs complete, zones normalized); on failure the error is at a line
 * of the input, in the file, and reads "redis_cache: ...".
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/plugin.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) abort();                                                                         \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_addrs(const struct rcp_addr *a, size_t n)
{
    CHECK(n <= RCP_ADDRS_MAX);
    for (size_t i = 0; i < n; i++) {
        CHECK(a[i].port != 0);
        CHECK(a[i].host[0] != '\0');
        CHECK(a[i].line >= 1);
    }
}

static void check_config(const struct rcp_config *cfg)
{
    CHECK(cfg->success_min <= cfg->success_max && cfg->success_max <= 2147483647u);
    CHECK(cfg->denial_min <= cfg->denial_max && cfg->denial_max <= 2147483647u);
    CHECK(cfg->endpoint.port != 0 && cfg->endpoint.host[0]);
    check_addrs(cfg->read_endpoints, cfg->n_read_endpoints);
    check_addrs(cfg->sentinels, cfg->n_sentinels);
    check_addrs(cfg->cluster_seeds, cfg->n_cluster_seeds);
    switch (cfg->mode) {
    case RCP_MODE_CLUSTER:
        CHECK(cfg->n_cluster_seeds >= 1);
        CHECK(!cfg->endpoint_set && cfg->n_read_endpoints == 0 && cfg->n_sentinels == 0);
        CHECK(cfg->db == 0);
        CHECK(!cfg->sentinel_username_set && !cfg->sentinel_password_set);
        break;
    case RCP_MODE_SENTINEL:
        CHECK(cfg->n_sentinels >= 1 && cfg->sentinel_master[0]);
        CHECK(!cfg->endpoint_set && cfg->n_read_endpoints == 0 && cfg->n_cluster_seeds == 0);
        CHECK(!cfg->read_from_set);
        break;
    case RCP_MODE_STANDALONE:
        CHECK(cfg->n_sentinels == 0 && cfg->n_cluster_seeds == 0);
        CHECK(!cfg->read_from_set && !cfg->sentinel_username_set && !cfg->sentinel_password_set);
        break;
    default: CHECK(0);
    }
    CHECK(cfg->db >= 0);
    CHECK(!cfg->username_set || cfg->password_set);
    CHECK(!cfg->sentinel_username_set || cfg->sentinel_password_set);
    CHECK((cfg->tls_cert[0] != 0) == (cfg->tls_key[0] != 0));
    if (cfg->tls_cert[0] || cfg->tls_ca[0] || !cfg->tls_verify_chain || !cfg->tls_verify_hostname)
        CHECK(cfg->tls);
    CHECK(cfg->key_prefix_len == strlen(cfg->key_prefix));
    CHECK(cfg->connect_timeout > 0 && cfg->read_timeout > 0 && cfg->write_timeout > 0);
    CHECK(cfg->tcp_keepalive >= 0);
    CHECK(cfg->pool.min_backoff >= 0 && cfg->pool.min_backoff <= cfg->pool.max_backoff);
    CHECK(cfg->pool.max_idle_time >= 0 && cfg->pool.max_lifetime >= 0);
    CHECK(cfg->pool.wait_timeout >= 0);
    CHECK(cfg->nzones <= RCP_ZONES_MAX);
    for (size_t i = 0; i < cfg->nzones; i++) {
        size_t l = strlen(cfg->zones[i]);
        CHECK(l >= 1 && l <= 254 && cfg->zones[i][l - 1] == '.');
        for (size_t k = 0; k < l; k++) CHECK(!isupper((unsigned char)cfg->zones[i][k]));
    }
    if (cfg->resolver[0]) CHECK(strchr(cfg->resolver, ':') != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char prefix[] = "redis_cache ";
    if (size > 1 << 20) return 0;
    unsigned lines = 1;
    for (size_t i = 0; i < size; i++) lines += data[i] == '\n';

    bool whole = size >= 11 && memcmp(data, "redis_cache", 11) == 0;
    size_t plen = whole ? 0 : sizeof prefix - 1;
    char *src = malloc(plen + size + 1);
    if (!src) return 0;
    memcpy(src, prefix, plen);
    if (size) memcpy(src + plen, data, size);

    struct cfg_tokens t;
    struct cfg_error err;
    memset(&err, 0, sizeof err);
    if (cfg_lex(&t, "fuzz", src, plen + size, &err) != 0) {
        free(src);
        return 0;
    }
    free(src);
    CHECK(t.n >= 1);

    struct cfg_cursor c = {&t, 0};
    static struct rcp_config cfg;
    if (!cfg_is(&t.tok[0], "redis_cache")) {
        /* "redis_cachefoo...": not the directive; the parser must say so */
        CHECK(rcp_config_parse(&c, &cfg, &err) == -1);
        CHECK(strncmp(err.msg, "redis_cache: ", 13) == 0);
        cfg_tokens_free(&t);
        return 0;
    }
    memset(&err, 0, sizeof err);
    if (rcp_config_parse(&c, &cfg, &err) == 0) {
        CHECK(c.pos > 0 && c.pos <= t.n);
        CHECK(strcmp(cfg.file, "fuzz") == 0 && cfg.line == 1);
        check_config(&cfg);
    } else {
        CHECK(err.line >= 1 && err.line <= lines);
        CHECK(strcmp(err.file, "fuzz") == 0);
        CHECK(strncmp(err.msg, "redis_cache: ", 13) == 0);
        for (const char *q = err.msg; *q; q++) CHECK((unsigned char)*q >= 0x20);
        char buf[700];
        cfg_error_format(&err, buf, sizeof buf);
        CHECK(strstr(buf, "fuzz:") == buf);
    }
    cfg_tokens_free(&t);
    return 0;
}
