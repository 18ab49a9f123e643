/* src/server/metrics.c — the server's metrics registry: per-worker counter shapes, their
 * sums, and the Prometheus text (format 0.0.4) of CoreDNS's families plus the redis_cache
 * ones (src/plugin/metrics.c writes those). One registry per process: every family is
 * written once with HELP and TYPE, with the workers' counters summed at scrape.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/plugin.h"
#include "server/server.h"

/* ---- names ------------------------------------------------------------------------------ */

static const uint16_t srv_qtypes[SRV_QTYPES] = {
    0,         DNS_T_A,    DNS_T_AAAA,     DNS_T_CNAME, DNS_T_DNSKEY, DNS_T_DS,    DNS_T_HTTPS,
    DNS_T_MX,  DNS_T_NSEC, 50 /* NSEC3 */, DNS_T_NS,    DNS_T_PTR,    DNS_T_RRSIG, DNS_T_SOA,
    DNS_T_SRV, DNS_T_TXT,  DNS_T_IXFR,     DNS_T_AXFR,  DNS_T_ANY,
};

unsigned srv_qtype_index(uint16_t qtype)
{
    switch (qtype) {
    case DNS_T_A: return 1;
    case DNS_T_AAAA: return 2;
    case DNS_T_CNAME: return 3;
    case DNS_T_DNSKEY: return 4;
    case DNS_T_DS: return 5;
    case DNS_T_HTTPS: return 6;
    case DNS_T_MX: return 7;
    case DNS_T_NSEC: return 8;
    case 50: return 9;
    case DNS_T_NS: return 10;
    case DNS_T_PTR: return 11;
    case DNS_T_RRSIG: return 12;
    case DNS_T_SOA: return 13;
    case DNS_T_SRV: return 14;
    case DNS_T_TXT: return 15;
    case DNS_T_IXFR: return 16;
    case DNS_T_AXFR: return 17;
    case DNS_T_ANY: return 18;
    default: return 0;
    }
}

const char *srv_type_name(uint16_t qtype)
{
    switch (qtype) {
    case DNS_T_A: return "A";
    case DNS_T_NS: return "NS";
    case DNS_T_CNAME: return "CNAME";
    case DNS_T_SOA: return "SOA";
    case DNS_T_PTR: return "PTR";
    case DNS_T_MX: return "MX";
    case DNS_T_TXT: return "TXT";
    case DNS_T_AAAA: return "AAAA";
    case DNS_T_SRV: return "SRV";
    case DNS_T_NAPTR: return "NAPTR";
    case DNS_T_DNAME: return "DNAME";
    case DNS_T_OPT: return "OPT";
    case DNS_T_DS: return "DS";
    case DNS_T_RRSIG: return "RRSIG";
    case DNS_T_NSEC: return "NSEC";
    case DNS_T_DNSKEY: return "DNSKEY";
    case 50: return "NSEC3";
    case DNS_T_SVCB: return "SVCB";
    case DNS_T_HTTPS: return "HTTPS";
    case DNS_T_IXFR: return "IXFR";
    case DNS_T_AXFR: return "AXFR";
    case DNS_T_ANY: return "ANY";
    default: return NULL;
    }
}

const char *srv_rcode_name(unsigned rcode)
{
    static const char *const n[SRV_RCODES] = {
        "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP",  "REFUSED", "YXDOMAIN", "YXRRSET",
        "NXRRSET", "NOTAUTH", "NOTZONE",  "RCODE11",  "RCODE12", "RCODE13", "RCODE14",  "RCODE15",
        "BADVERS", "BADKEY",  "BADTIME",  "BADMODE",  "BADNAME", "BADALG",  "BADTRUNC", "BADCOOKIE",
    };
    return rcode < SRV_RCODES ? n[rcode] : "RCODE?";
}

unsigned srv_dur_bucket(double seconds)
{
    double le = 0.00025;
    for (unsigned i = 0; i < SRV_DUR_BUCKETS; i++, le *= 2)
        if (seconds <= le) return i;
    return SRV_DUR_BUCKETS;
}

/* ---- shapes and sums -------------------------------------------------------------------- */

size_t srv_slot_base(const struct srv_config *cfg, size_t b)
{
    size_t base = 0;
    for (size_t i = 0; i < b && i < cfg->nblocks; i++) base += cfg->blocks[i].nzones + 1;
    return base;
}

int srv_stats_init(struct srv_stats *s, const struct srv_config *cfg)
{
    memset(s, 0, sizeof *s);
    s->nblocks = cfg->nblocks;
    s->nslots = srv_slot_base(cfg, cfg->nblocks);
    s->zones = calloc(s->nslots ? s->nslots : 1, sizeof *s->zones);
    s->blocks = calloc(s->nblocks ? s->nblocks : 1, sizeof *s->blocks);
    s->redis = calloc(s->nblocks ? s->nblocks : 1, sizeof *s->redis);
    if (!s->zones || !s->blocks || !s->redis) {
        srv_stats_free(s);
        return -1;
    }
    for (size_t b = 0; b < s->nblocks; b++)
        if (cfg->blocks[b].redis_cache) s->blocks[b].redis = &s->redis[b];
    return 0;
}

void srv_stats_free(struct srv_stats *s)
{
    free(s->zones);
    free(s->blocks);
    free(s->redis);
    memset(s, 0, sizeof *s);
}

void srv_stats_reset(struct srv_stats *s)
{
    memset(s->zones, 0, s->nslots * sizeof *s->zones);
    for (size_t b = 0; b < s->nblocks; b++) {
        struct rcp_metrics *r = s->blocks[b].redis;
        memset(&s->blocks[b], 0, sizeof s->blocks[b]);
        s->blocks[b].redis = r;
    }
    memset(s->redis, 0, s->nblocks * sizeof *s->redis);
}

static void srv_add_u64(uint64_t *d, const uint64_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++) d[i] += s[i];
}

void srv_stats_add(struct srv_stats *dst, const struct srv_stats *src)
{
    for (size_t i = 0; i < dst->nslots && i < src->nslots; i++) {
        struct srv_zone_stats *d = &dst->zones[i];
        const struct srv_zone_stats *s = &src->zones[i];
        srv_add_u64(&d->requests[0][0][0], &s->requests[0][0][0], 2 * 2 * SRV_QTYPES);
        srv_add_u64(&d->responses[0][0], &s->responses[0][0], SRV_RCODES * SRV_PLUGINS);
        srv_add_u64(&d->dur_buckets[0][0], &s->dur_buckets[0][0],
                    SRV_QTYPES * (SRV_DUR_BUCKETS + 1));
        srv_add_u64(d->dur_count, s->dur_count, SRV_QTYPES);
        for (size_t t = 0; t < SRV_QTYPES; t++) d->dur_sum[t] += s->dur_sum[t];
    }
    for (size_t b = 0; b < dst->nblocks && b < src->nblocks; b++) {
        struct srv_block_stats *d = &dst->blocks[b];
        const struct srv_block_stats *s = &src->blocks[b];
        srv_add_u64(d->cache_hits, s->cache_hits, 2);
        d->cache_misses += s->cache_misses;
        d->cache_prefetch += s->cache_prefetch;
        d->cache_stale += s->cache_stale;
        srv_add_u64(d->cache_entries, s->cache_entries, 2);
        if (d->redis && s->redis) rcp_metrics_add(d->redis, s->redis);
        srv_add_u64(d->fwd.requests, s->fwd.requests, FWD_UPSTREAMS_MAX);
        srv_add_u64(&d->fwd.responses[0][0], &s->fwd.responses[0][0], FWD_UPSTREAMS_MAX * 24);
        d->fwd.mismatches += s->fwd.mismatches;
        d->fwd.coalesced += s->fwd.coalesced;
        d->fwd.failures += s->fwd.failures;
        srv_add_u64(d->fwd.up_down, s->fwd.up_down, FWD_UPSTREAMS_MAX);
        srv_add_u64(d->fwd.up_fails, s->fwd.up_fails, FWD_UPSTREAMS_MAX);
        srv_add_u64(d->fwd.hc_sent, s->fwd.hc_sent, FWD_UPSTREAMS_MAX);
        srv_add_u64(d->fwd.hc_failures, s->fwd.hc_failures, FWD_UPSTREAMS_MAX);
        d->fwd.all_down += s->fwd.all_down;
        d->fwd.refused += s->fwd.refused;
        d->fwd.tcp_connects += s->fwd.tcp_connects;
        d->fwd.tcp_reused += s->fwd.tcp_reused;
        d->fwd.tcp_expired += s->fwd.tcp_expired;
        d->fwd.udp_ports += s->fwd.udp_ports;
        d->fwd.late += s->fwd.late;
    }
}

/* ---- text ------------------------------------------------------------------------------- */

struct srv_out {
    void (*append)(void *ctx, const char *s, size_t n);
    void *ctx;
};

__attribute__((format(printf, 2, 3))) static void out_f(struct srv_out *o, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n >= sizeof buf) n = (int)sizeof buf - 1;
    o->append(o->ctx, buf, (size_t)n);
}

static void out_head(struct srv_out *o, const char *name, const char *type, const char *help)
{
    out_f(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The zone label of slot z of block b ("dropped" for the block's extra slot). */
static const char *zone_label(const struct srv_block *blk, size_t z)
{
    return z < blk->nzones ? blk->zones[z] : "dropped";
}

static const char *type_label(size_t t, char buf[16])
{
    if (t == 0) return "other";
    const char *n = srv_type_name(srv_qtypes[t]);
    if (n) return n;
    snprintf(buf, 16, "TYPE%u", srv_qtypes[t]);
    return buf;
}

static const char *plugin_label(size_t p)
{
    static const char *const n[SRV_PLUGINS] = {"", "cache", "redis_cache", "forward"};
    return n[p];
}

/* The `zones` label of a block's cache: its own zones, else the block's, joined by ','. */
static void cache_zones_label(const struct srv_block *blk, char *out, size_t cap)
{
    size_t n = blk->cache.nzones ? blk->cache.nzones : blk->nzones, len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && len + 1 < cap; i++) {
        const char *z = blk->cache.nzones ? blk->cache.zones[i] : blk->zones[i];
        int w = snprintf(out + len, cap - len, "%s%s", i ? "," : "", z);
        if (w < 0) break;
        len += (size_t)w;
    }
}

static void write_dns_families(struct srv_out *o, const struct srv_config *cfg,
                               const struct srv_stats *s)
{
    static const char *const proto[2] = {"udp", "tcp"};
    char tb[16];

    out_head(o, "coredns_dns_requests_total", "counter",
             "Counter of DNS requests made per zone, protocol and family.");
    for (size_t b = 0; b < cfg->nblocks; b++) {
        const struct srv_block *blk = &cfg->blocks[b];
        size_t base = srv_slot_base(cfg, b);
        for (size_t z = 0; z <= blk->nzones; z++) {
            const struct srv_zone_stats *zs = &s->zones[base + z];
            for (int p = 0; p < 2; p++)
                for (int f = 0; f < 2; f++)
                    for (size_t t = 0; t < SRV_QTYPES; t++) {
                        uint64_t v = zs->requests[p][f][t];
                        if (!v) continue;
                        out_f(o,
                              "coredns_dns_requests_total{server=\"%s\",zone=\"%s\",view=\"\","
                              "proto=\"%s\",family=\"%d\",type=\"%s\"} %llu\n",
                              blk->server_label, zone_label(blk, z), proto[p], f + 1,
                              type_label(t, tb), (unsigned long long)v);
                    }
        }
    }

    out_head(o, "coredns_dns_responses_total", "counter", "Counter of response status codes.");
    for (size_t b = 0; b < cfg->nblocks; b++) {
        const struct srv_block *blk = &cfg->blocks[b];
        size_t base = srv_slot_base(cfg, b);
        for (size_t z = 0; z <= blk->nzones; z++) {
            const struct srv_zone_stats *zs = &s->zones[base + z];
            for (unsigned r = 0; r < SRV_RCODES; r++)
                for (size_t p = 0; p < SRV_PLUGINS; p++) {
                    uint64_t v = zs->responses[r][p];
                    if (!v) continue;
                    out_f(o,
                          "coredns_dns_responses_total{server=\"%s\",zone=\"%s\",view=\"\","
                          "rcode=\"%s\",plugin=\"%s\"} %llu\n",
                          blk->server_label, zone_label(blk, z), srv_rcode_name(r), plugin_label(p),
                          (unsigned long long)v);
                }
        }
    }

    out_head(o, "coredns_dns_request_duration_seconds", "histogram",
             "Histogram of the time (in seconds) each request took per zone.");
    for (size_t b = 0; b < cfg->nblocks; b++) {
        const struct srv_block *blk = &cfg->blocks[b];
        size_t base = srv_slot_base(cfg, b);
        for (size_t z = 0; z <= blk->nzones; z++) {
            const struct srv_zone_stats *zs = &s->zones[base + z];
            for (size_t t = 0; t < SRV_QTYPES; t++) {
                if (!zs->dur_count[t]) continue;
                const char *tl = type_label(t, tb);
                uint64_t cum = 0;
                double le = 0.00025;
                for (unsigned k = 0; k <= SRV_DUR_BUCKETS; k++, le *= 2) {
                    cum += zs->dur_buckets[t][k];
                    char lb[32];
                    if (k == SRV_DUR_BUCKETS)
                        snprintf(lb, sizeof lb, "+Inf");
                    else
                        snprintf(lb, sizeof lb, "%g", le);
                    out_f(o,
                          "coredns_dns_request_duration_seconds_bucket{server=\"%s\",zone=\"%s\","
                          "view=\"\",type=\"%s\",le=\"%s\"} %llu\n",
                          blk->server_label, zone_label(blk, z), tl, lb, (unsigned long long)cum);
                }
                out_f(o,
                      "coredns_dns_request_duration_seconds_sum{server=\"%s\",zone=\"%s\","
                      "view=\"\",type=\"%s\"} %.9g\n",
                      blk->server_label, zone_label(blk, z), tl, zs->dur_sum[t]);
                out_f(o,
                      "coredns_dns_request_duration_seconds_count{server=\"%s\",zone=\"%s\","
                      "view=\"\",type=\"%s\"} %llu\n",
                      blk->server_label, zone_label(blk, z), tl,
                      (unsigned long long)zs->dur_count[t]);
            }
        }
    }
}

static void write_cache_families(struct srv_out *o, const struct srv_config *cfg,
                                 const struct srv_stats *s)
{
    static const char *const kind[2] = {"success", "denial"};
    char zl[1024];

    out_head(o, "coredns_cache_entries", "gauge", "The number of elements in the cache.");
    for (size_t b = 0; b < cfg->nblocks; b++) {
        const struct srv_block *blk = &cfg->blocks[b];
        if (!blk->has_cache) continue;
        cache_zones_label(blk, zl, sizeof zl);
        for (int k = 0; k < 2; k++)
            out_f(
                o, "coredns_cache_entries{server=\"%s\",type=\"%s\",zones=\"%s\",view=\"\"} %llu\n",
                blk->server_label, kind[k], zl, (unsigned long long)s->blocks[b].cache_entries[k]);
    }
    out_head(o, "coredns_cache_hits_total", "counter", "The count of cache hits.");
    for (size_t b = 0; b < cfg->nblocks; b++) {
        const struct srv_block *blk = &cfg->blocks[b];
        if (!blk->has_cache) continue;
        cache_zones_label(blk, zl, sizeof zl);
        for (int k = 0; k < 2; k++)
            out_f(
                o,
                "coredns_cache_hits_total{server=\"%s\",type=\"%s\",zones=\"%s\",view=\"\"} %llu\n",
                blk->server_label, kind[k], zl, (unsigned long long)s->blocks[b].cache_hits[k]);
    }
    out_head(o, "coredns_cache_misses_total", "counter", "The count of cache misses.");
    for (size_t b = 0; b < cfg->nblocks; b++) {
        const struct srv_block *blk = &cfg->blocks[b];
        if (!blk->has_cache) continue;
        cache_zones_label(blk, zl, sizeof zl);
        out_f(o, "coredns_cache_misses_total{server=\"%s\",zones=\"%s\",view=\"\"} %llu\n",
              blk->server_label, zl, (unsigned long long)s->blocks[b].cache_misses);
    }
    out_head(o, "coredns_cache_prefetch_total", "counter",
             "The number of times the cache has prefetched a cached item.");
    for (size_t b = 0; b < cfg->nblocks; b++) {
        const struct srv_block *blk = &cfg->blocks[b];
        if (!blk->has_cache) continue;
        cache_zones_label(blk, zl, sizeof zl);
        out_f(o, "coredns_cache_prefetch_total{server=\"%s\",zones=\"%s\",view=\"\"} %llu\n",
              blk->server_label, zl, (unsigned long long)s->blocks[b].cache_prefetch);
    }
    out_head(o, "coredns_cache_served_stale_total", "counter",
             "The number of requests served from stale cache entries.");
    for (size_t b = 0; b < cfg->nblocks; b++) {
        const struct srv_block *blk = &cfg->blocks[b];
        if (!blk->has_cache) continue;
        cache_zones_label(blk, zl, sizeof zl);
        out_f(o, "coredns_cache_served_stale_total{server=\"%s\",zones=\"%s\",view=\"\"} %llu\n",
              blk->server_label, zl, (unsigned long long)s->blocks[b].cache_stale);
    }
}

/* The first (block, upstream) with upstream u's name: forward counters are per upstream
 * name (`to`), summed over the blocks that share one, and written once at the first. */
static bool fwd_first_of_name(const struct srv_config *cfg, size_t b, size_t u)
{
    const char *name = cfg->blocks[b].forward.up[u].name;
    for (size_t b2 = 0; b2 <= b; b2++) {
        if (!cfg->blocks[b2].has_forward) continue;
        const struct fwd_opts *f2 = &cfg->blocks[b2].forward;
        for (size_t u2 = 0; u2 < f2->nup && (b2 < b || u2 < u); u2++)
            if (strcmp(f2->up[u2].name, name) == 0) return false;
    }
    return true;
}

/* Sums n counters at offset off of struct fwd_stats for every upstream named `name`. The
 * offset points at the upstream's first counter; per-upstream arrays step by stride. */
static void fwd_sum_by_name(const struct srv_config *cfg, const struct srv_stats *s,
                            const char *name, size_t off, size_t stride, uint64_t *v, size_t n)
{
    for (size_t b2 = 0; b2 < cfg->nblocks && b2 < s->nblocks; b2++) {
        if (!cfg->blocks[b2].has_forward) continue;
        const struct fwd_opts *f2 = &cfg->blocks[b2].forward;
        const char *base = (const char *)&s->blocks[b2].fwd + off;
        for (size_t u2 = 0; u2 < f2->nup; u2++)
            if (strcmp(f2->up[u2].name, name) == 0)
                srv_add_u64(v, (const uint64_t *)(const void *)(base + u2 * stride), n);
    }
}

/* One counter family with a `to` label: one series per upstream name. */
static void write_fwd_per_to(struct srv_out *o, const struct srv_config *cfg,
                             const struct srv_stats *s, const char *family, size_t off)
{
    for (size_t b = 0; b < cfg->nblocks; b++) {
        const struct fwd_opts *fo = &cfg->blocks[b].forward;
        if (!cfg->blocks[b].has_forward) continue;
        for (size_t u = 0; u < fo->nup; u++) {
            if (!fwd_first_of_name(cfg, b, u)) continue;
            uint64_t v = 0;
            fwd_sum_by_name(cfg, s, fo->up[u].name, off, sizeof(uint64_t), &v, 1);
            out_f(o, "%s{to=\"%s\"} %llu\n", family, fo->up[u].name, (unsigned long long)v);
        }
    }
}

/* The forward families as CoreDNS's forward plugin names them (1.8-1.10, before they moved
 * to coredns_proxy_*). Each worker has its own forward instance: everything is summed. */
static void write_forward_families(struct srv_out *o, const struct srv_config *cfg,
                                   const struct srv_stats *s)
{
    out_head(o, "coredns_forward_requests_total", "counter",
             "Counter of requests made per upstream.");
    write_fwd_per_to(o, cfg, s, "coredns_forward_requests_total",
                     offsetof(struct fwd_stats, requests));
    out_head(o, "coredns_forward_responses_total", "counter",
             "Counter of responses received per upstream.");
    for (size_t b = 0; b < cfg->nblocks; b++) {
        const struct fwd_opts *fo = &cfg->blocks[b].forward;
        if (!cfg->blocks[b].has_forward) continue;
        for (size_t u = 0; u < fo->nup; u++) {
            if (!fwd_first_of_name(cfg, b, u)) continue;
            uint64_t v[24] = {0};
            fwd_sum_by_name(cfg, s, fo->up[u].name, offsetof(struct fwd_stats, responses),
                            sizeof s->blocks[0].fwd.responses[0], v, 24);
            for (unsigned r = 0; r < 24; r++)
                if (v[r])
                    out_f(o, "coredns_forward_responses_total{to=\"%s\",rcode=\"%s\"} %llu\n",
                          fo->up[u].name, srv_rcode_name(r), (unsigned long long)v[r]);
        }
    }
    out_head(o, "coredns_forward_healthcheck_failures_total", "counter",
             "Counter of the number of failed healthchecks.");
    write_fwd_per_to(o, cfg, s, "coredns_forward_healthcheck_failures_total",
                     offsetof(struct fwd_stats, hc_failures));
    uint64_t broken = 0, rejects = 0;
    for (size_t b = 0; b < cfg->nblocks && b < s->nblocks; b++) {
        if (!cfg->blocks[b].has_forward) continue;
        broken += s->blocks[b].fwd.all_down;
        rejects += s->blocks[b].fwd.refused;
    }
    out_head(o, "coredns_forward_healthcheck_broken_total", "counter",
             "Counter of the number of complete failures of the healthchecks.");
    out_f(o, "coredns_forward_healthcheck_broken_total %llu\n", (unsigned long long)broken);
    out_head(o, "coredns_forward_max_concurrent_rejects_total", "counter",
             "Counter of the number of queries rejected because the concurrent queries were "
             "at maximum.");
    out_f(o, "coredns_forward_max_concurrent_rejects_total %llu\n", (unsigned long long)rejects);
}

static void write_redis_families(struct srv_out *o, const struct srv_config *cfg,
                                 const struct srv_stats *s)
{
    struct rcp_metrics_series ser[SRV_BLOCKS_MAX];
    struct rcp_metrics agg[SRV_BLOCKS_MAX];
    size_t n = 0;
    for (size_t b = 0; b < cfg->nblocks && b < s->nblocks; b++) {
        if (!s->blocks[b].redis) continue;
        /* Blocks with one server label share a series. */
        size_t j;
        for (j = 0; j < n; j++)
            if (strcmp(ser[j].server, cfg->blocks[b].server_label) == 0) break;
        if (j == n) {
            if (n == SRV_BLOCKS_MAX) break;
            memset(&agg[n], 0, sizeof agg[n]);
            ser[n].server = cfg->blocks[b].server_label;
            ser[n].m = &agg[n];
            n++;
        }
        rcp_metrics_add(&agg[j], s->blocks[b].redis);
    }
    if (!n) return;
    size_t need = rcp_metrics_write(NULL, 0, ser, n);
    char *buf = malloc(need + 1);
    if (!buf) return;
    size_t len = rcp_metrics_write(buf, need + 1, ser, n);
    o->append(o->ctx, buf, len < need ? len : need);
    free(buf);
}

void srv_metrics_write(const struct srv_config *cfg, const struct srv_stats *sum,
                       void (*append)(void *ctx, const char *s, size_t n), void *ctx)
{
    struct srv_out o = {append, ctx};
    write_dns_families(&o, cfg, sum);
    write_cache_families(&o, cfg, sum);
    write_forward_families(&o, cfg, sum);
    write_redis_families(&o, cfg, sum);
    out_head(&o, "coredns_build_info", "gauge",
             "A metric with a constant '1' value labeled by version, revision, and goversion "
             "from which CoreDNS was built.");
    out_f(&o, "coredns_build_info{version=\"%s\",revision=\"\",goversion=\"none\"} 1\n",
          RC_VERSION);
}
