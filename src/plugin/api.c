/* src/plugin/api.c — the "Cache" section of include/redis_cache.h: a thin wrapper that
 * parses a directive text with the Corefile lexer and the plugin's parser, parses the wire
 * queries the host hands over, and adapts the internal cache (cache.c) and metrics
 * (metrics.c) to the public types. All the behaviour lives in cache.c.
 */
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "plugin/plugin.h"
#include "redis_cache.h"

_Static_assert((int)RC_CACHE_HIT == (int)RCP_LOOKUP_HIT &&
                   (int)RC_CACHE_MISS == (int)RCP_LOOKUP_MISS &&
                   (int)RC_CACHE_ERROR == (int)RCP_LOOKUP_ERROR &&
                   (int)RC_CACHE_SKIP == (int)RCP_LOOKUP_SKIP,
               "rc_cache_status mirrors rcp_lookup_status");

#define CTX_FREE_MAX 1024

struct rc_cache_config {
    struct rcp_config cfg;
};

/* One lookup's public callback, between the internal callback and the host's. */
struct lookup_ctx {
    struct lookup_ctx *next;
    struct rc_cache *cache;
    rc_cache_cb *cb;
    void *priv;
};

struct rc_cache {
    struct rcp_cache *c;
    struct lookup_ctx *free_ctx;
    size_t nfree;
};

/* ---- configuration -------------------------------------------------------------------- */

static void format_error(const struct cfg_error *ce, char *err, size_t errlen)
{
    if (!err || errlen == 0) return;
    static const char pfx[] = "redis_cache: ";
    if (strncmp(ce->msg, pfx, sizeof pfx - 1) == 0) {
        cfg_error_format(ce, err, errlen);
        return;
    }
    /* lexer errors do not name the directive: the public API always does */
    struct cfg_error e = *ce;
    size_t n = strnlen(ce->msg, sizeof e.msg - sizeof pfx);
    memcpy(e.msg, pfx, sizeof pfx - 1);
    memcpy(e.msg + sizeof pfx - 1, ce->msg, n);
    e.msg[sizeof pfx - 1 + n] = '\0';
    cfg_error_format(&e, err, errlen);
}

int rc_cache_config_parse(const char *text, size_t len, const char *filename,
                          struct rc_cache_config **out, char *err, size_t errlen)
{
    if (err && errlen) err[0] = '\0';
    if (!out) return -1;
    *out = NULL;
    if (!filename) filename = "(config)";
    if (!text) len = 0;

    struct cfg_error ce;
    memset(&ce, 0, sizeof ce);
    struct cfg_tokens toks;
    if (cfg_lex(&toks, filename, text ? text : "", len, &ce) != 0) {
        format_error(&ce, err, errlen);
        return -1;
    }
    struct rc_cache_config *rc = malloc(sizeof *rc);
    if (!rc) {
        if (err && errlen) snprintf(err, errlen, "%s:1: redis_cache: out of memory", filename);
        cfg_tokens_free(&toks);
        return -1;
    }
    rcp_config_init(&rc->cfg);
    struct cfg_cursor cur = {&toks, 0};
    int rv = -1;
    if (toks.n == 0) {
        snprintf(ce.file, sizeof ce.file, "%s", filename);
        ce.line = 1;
        snprintf(ce.msg, sizeof ce.msg, "redis_cache: no redis_cache directive");
    } else if (!cfg_is(&toks.tok[0], "redis_cache")) {
        cfg_error_at(&ce, &toks.tok[0],
                     "redis_cache: expected the redis_cache directive, not \"%s\"",
                     toks.tok[0].text);
    } else if (rcp_config_parse(&cur, &rc->cfg, &ce) == 0) {
        if (cur.pos < toks.n)
            cfg_error_at(&ce, &toks.tok[cur.pos],
                         "redis_cache: unexpected \"%s\" after the directive",
                         toks.tok[cur.pos].text);
        else
            rv = 0;
    }
    if (rv != 0) {
        format_error(&ce, err, errlen);
        free(rc);
    } else {
        *out = rc;
    }
    cfg_tokens_free(&toks);
    return rv;
}

void rc_cache_config_free(struct rc_cache_config *cfg)
{
    free(cfg);
}

/* ---- the cache ------------------------------------------------------------------------ */

struct rc_cache_share {
    struct topo_hub *hub;
};

struct rc_cache_share *rc_cache_share_new(void)
{
    struct rc_cache_share *sh = calloc(1, sizeof *sh);
    if (sh && !(sh->hub = topo_hub_new())) {
        free(sh);
        return NULL;
    }
    return sh;
}

void rc_cache_share_free(struct rc_cache_share *share)
{
    if (!share) return;
    topo_hub_unref(share->hub);
    free(share);
}

struct rc_cache *rc_cache_new(struct ev_loop *loop, const struct rc_cache_config *cfg,
                              const char *const *zones, size_t nzones, char *err, size_t errlen)
{
    return rc_cache_new_shared(loop, cfg, zones, nzones, NULL, err, errlen);
}

struct rc_cache *rc_cache_new_shared(struct ev_loop *loop, const struct rc_cache_config *cfg,
                                     const char *const *zones, size_t nzones,
                                     struct rc_cache_share *share, char *err, size_t errlen)
{
    if (!cfg) {
        if (err && errlen) snprintf(err, errlen, "redis_cache: no configuration");
        return NULL;
    }
    struct rc_cache *rc = calloc(1, sizeof *rc);
    if (!rc) {
        if (err && errlen) snprintf(err, errlen, "redis_cache: out of memory");
        return NULL;
    }
    rc->c = rcp_cache_new_shared(loop, &cfg->cfg, zones, zones ? nzones : 0,
                                 share ? share->hub : NULL, err, errlen);
    if (!rc->c) {
        free(rc);
        return NULL;
    }
    return rc;
}

void rc_cache_set_udp_size(struct rc_cache *cache, uint16_t size)
{
    rcp_cache_set_udp_size(cache->c, size);
}

static void ctx_put(struct rc_cache *rc, struct lookup_ctx *x)
{
    if (rc->nfree >= CTX_FREE_MAX) {
        free(x);
        return;
    }
    x->next = rc->free_ctx;
    rc->free_ctx = x;
    rc->nfree++;
}

static void on_lookup(void *priv, enum rcp_lookup_status st, const uint8_t *reply, size_t len)
{
    struct lookup_ctx *x = priv;
    rc_cache_cb *cb = x->cb;
    void *upriv = x->priv;
    ctx_put(x->cache, x); /* first: the callback may start another lookup */
    cb(upriv, (int)st, reply, len);
}

int rc_cache_lookup(struct rc_cache *cache, const uint8_t *query, size_t len, bool tcp,
                    rc_cache_cb *cb, void *priv)
{
    if (!cache || !query || !cb) return -1;
    struct dns_question q;
    if (dns_question_parse(&q, query, len) != DNS_OK) return -1;
    if (q.flags & DNS_F_QR) return -1;
    /* not a plain query the cache can answer: NOTIMP / BADVERS are the host's to send */
    if (DNS_OPCODE(q.flags) != DNS_OPCODE_QUERY || (q.has_edns && q.edns_version > 0)) {
        cb(priv, RC_CACHE_SKIP, NULL, 0);
        return 0;
    }
    struct lookup_ctx *x = cache->free_ctx;
    if (x) {
        cache->free_ctx = x->next;
        cache->nfree--;
    } else {
        x = malloc(sizeof *x);
        if (!x) return -1;
    }
    x->cache = cache;
    x->cb = cb;
    x->priv = priv;
    if (rcp_cache_lookup(cache->c, &q, tcp, on_lookup, x) != 0) {
        ctx_put(cache, x);
        return -1;
    }
    return 0;
}

long rc_cache_store(struct rc_cache *cache, const uint8_t *query, size_t qlen, uint8_t *resp,
                    size_t rlen)
{
    if (!cache || !query || !resp) return -1;
    struct dns_question q;
    if (dns_question_parse(&q, query, qlen) != DNS_OK) return -1;
    return rcp_cache_store(cache->c, &q, resp, rlen);
}

size_t rc_cache_pending_writes(const struct rc_cache *cache)
{
    return rcp_cache_pending_writes(cache->c);
}

size_t rc_cache_metrics_text(const struct rc_cache *cache, const char *server_label, char *buf,
                             size_t cap)
{
    struct rcp_metrics_series s = {server_label ? server_label : "", rcp_cache_metrics(cache->c)};
    return rcp_metrics_write(buf, cap, &s, 1);
}

void rc_cache_free(struct rc_cache *cache)
{
    if (!cache) return;
    rcp_cache_free(cache->c); /* pending lookups call back (ERROR) through on_lookup */
    while (cache->free_ctx) {
        struct lookup_ctx *x = cache->free_ctx;
        cache->free_ctx = x->next;
        free(x);
    }
    free(cache);
}
