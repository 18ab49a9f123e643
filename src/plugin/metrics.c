/* src/plugin/metrics.c — the seed's coredns_redis_cache_* metrics: the error reason of a
 * failure, the request-duration histogram, summing per-worker counters, and the Prometheus
 * text exposition (format 0.0.4) of them all.
 *
 * The text is written into a caller's buffer like snprintf: what fits is written, the full
 * length is returned, so a scrape sizes its buffer once and never allocates here.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/plugin.h"

#define M_PREFIX "coredns_redis_cache_"

/* The upper bounds of the histogram buckets as Prometheus prints them (shortest form). */
static const char *const bucket_le[RCP_HIST_BUCKETS] = {
    "0.00025", "0.0005", "0.001", "0.002", "0.004", "0.008", "0.016",
    "0.032",   "0.064",  "0.128", "0.256", "0.512", "1.024", "2.048",
};

static const char *const reason_label[RCP_REASONS] = {"timeout", "connection", "other"};

enum rcp_reason rcp_reason_of(enum resp_err_kind kind)
{
    switch (kind) {
    case RESP_EK_TIMEOUT: return RCP_REASON_TIMEOUT;
    case RESP_EK_CONNECTION: return RCP_REASON_CONNECTION;
    default: return RCP_REASON_OTHER;
    }
}

void rcp_metrics_observe(struct rcp_metrics *m, double seconds)
{
    if (!(seconds >= 0)) seconds = 0; /* NaN or a clock step backwards */
    double bound = 0.00025;
    size_t i = 0;
    for (; i < RCP_HIST_BUCKETS; i++, bound *= 2)
        if (seconds <= bound) break; /* `le` is inclusive */
    m->duration_buckets[i]++;
    m->duration_count++;
    m->duration_sum += seconds;
}

void rcp_metrics_add(struct rcp_metrics *dst, const struct rcp_metrics *src)
{
    dst->hits += src->hits;
    for (size_t i = 0; i < RCP_REASONS; i++) {
        dst->get_errors[i] += src->get_errors[i];
        dst->set_errors[i] += src->set_errors[i];
    }
    dst->encode_errors += src->encode_errors;
    dst->response_mismatches += src->response_mismatches;
    dst->collisions += src->collisions;
    for (size_t i = 0; i <= RCP_HIST_BUCKETS; i++)
        dst->duration_buckets[i] += src->duration_buckets[i];
    dst->duration_count += src->duration_count;
    dst->duration_sum += src->duration_sum;
}

/* ---- a bounded appender -------------------------------------------------------------- */

struct out {
    char *buf;
    size_t cap;
    size_t len; /* the full length, even past cap */
};

static void put_n(struct out *o, const char *s, size_t n)
{
    if (o->len < o->cap) {
        size_t room = o->cap - o->len;
        memcpy(o->buf + o->len, s, n < room ? n : room);
    }
    o->len += n;
}

static void put(struct out *o, const char *s)
{
    put_n(o, s, strlen(s));
}

static void put_u64(struct out *o, uint64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
    put_n(o, tmp, (size_t)n);
}

/* A float as Go's strconv.FormatFloat(v, 'g', -1, 64) would (the shortest text that reads
 * back as the same double), which is what the Prometheus Go client writes. */
static void put_double(struct out *o, double v)
{
    if (isnan(v)) {
        put(o, "NaN");
        return;
    }
    if (isinf(v)) {
        put(o, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    char tmp[40];
    int n = 0;
    for (int p = 1; p <= 17; p++) {
        n = snprintf(tmp, sizeof tmp, "%.*g", p, v);
        if (strtod(tmp, NULL) == v) break;
    }
    put_n(o, tmp, (size_t)n);
}

/* A label value: backslash, double quote and line feed escaped (format 0.0.4). */
static void put_label_value(struct out *o, const char *s)
{
    const char *run = s;
    for (; *s; s++) {
        const char *esc = NULL;
        if (*s == '\\') esc = "\\\\";
        if (*s == '"') esc = "\\\"";
        if (*s == '\n') esc = "\\n";
        if (!esc) continue;
        put_n(o, run, (size_t)(s - run));
        put(o, esc);
        run = s + 1;
    }
    put_n(o, run, (size_t)(s - run));
}

static void family(struct out *o, const char *name, const char *type, const char *help)
{
    put(o, "# HELP " M_PREFIX);
    put(o, name);
    put(o, " ");
    put(o, help);
    put(o, "\n# TYPE " M_PREFIX);
    put(o, name);
    put(o, " ");
    put(o, type);
    put(o, "\n");
}

/* NAME{server="S"[,EXTRA="V"]} */
static void series(struct out *o, const char *name, const char *server, const char *extra,
                   const char *extra_value)
{
    put(o, M_PREFIX);
    put(o, name);
    put(o, "{server=\"");
    put_label_value(o, server ? server : "");
    put(o, "\"");
    if (extra) {
        put(o, ",");
        put(o, extra);
        put(o, "=\"");
        put_label_value(o, extra_value);
        put(o, "\"");
    }
    put(o, "} ");
}

static void counter_family(struct out *o, const char *name, const char *help,
                           const struct rcp_metrics_series *s, size_t n, size_t field)
{
    family(o, name, "counter", help);
    for (size_t i = 0; i < n; i++) {
        uint64_t v;
        memcpy(&v, (const char *)s[i].m + field, sizeof v);
        series(o, name, s[i].server, NULL, NULL);
        put_u64(o, v);
        put(o, "\n");
    }
}

static void reason_family(struct out *o, const char *name, const char *help,
                          const struct rcp_metrics_series *s, size_t n, bool set)
{
    family(o, name, "counter", help);
    for (size_t i = 0; i < n; i++) {
        const uint64_t *v = set ? s[i].m->set_errors : s[i].m->get_errors;
        for (size_t r = 0; r < RCP_REASONS; r++) {
            series(o, name, s[i].server, "reason", reason_label[r]);
            put_u64(o, v[r]);
            put(o, "\n");
        }
    }
}

static void histogram_family(struct out *o, const struct rcp_metrics_series *s, size_t n)
{
    static const char name[] = "request_duration_seconds";
    family(o, name, "histogram", "Histogram of the time (in seconds) each cache lookup took.");
    for (size_t i = 0; i < n; i++) {
        const struct rcp_metrics *m = s[i].m;
        uint64_t cum = 0;
        for (size_t b = 0; b <= RCP_HIST_BUCKETS; b++) {
            cum += m->duration_buckets[b];
            series(o, "request_duration_seconds_bucket", s[i].server, "le",
                   b < RCP_HIST_BUCKETS ? bucket_le[b] : "+Inf");
            put_u64(o, cum);
            put(o, "\n");
        }
        series(o, "request_duration_seconds_sum", s[i].server, NULL, NULL);
        put_double(o, m->duration_sum);
        put(o, "\n");
        series(o, "request_duration_seconds_count", s[i].server, NULL, NULL);
        put_u64(o, m->duration_count);
        put(o, "\n");
    }
}

size_t rcp_metrics_write(char *buf, size_t cap, const struct rcp_metrics_series *s, size_t n)
{
    struct out o = {buf, cap, 0};
    counter_family(&o, "hits_total", "The count of cache hits from Redis.", s, n,
                   offsetof(struct rcp_metrics, hits));
    histogram_family(&o, s, n);
    reason_family(&o, "get_errors_total",
                  "The count of errors when reading entries from Redis, by reason.", s, n, false);
    reason_family(&o, "set_errors_total",
                  "The count of errors when adding entries to Redis, by reason.", s, n, true);
    counter_family(&o, "encode_errors_total",
                   "The count of DNS messages that could not be serialized to wire format and "
                   "so were not cached.",
                   s, n, offsetof(struct rcp_metrics, encode_errors));
    counter_family(&o, "response_mismatches_total",
                   "The count of upstream replies whose question did not match the original "
                   "request and were therefore refused for caching.",
                   s, n, offsetof(struct rcp_metrics, response_mismatches));
    counter_family(&o, "collisions_total",
                   "The count of cache hits whose stored entry did not match the request.", s, n,
                   offsetof(struct rcp_metrics, collisions));
    if (cap > 0) buf[o.len < cap ? o.len : cap - 1] = '\0';
    return o.len;
}
