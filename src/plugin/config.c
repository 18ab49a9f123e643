/* src/plugin/config.c — the `redis_cache [ZONES...] { ... }` directive: tokens to a
 * validated struct rcp_config (the seed's directive list, SPEC §4).
 *
 * Lines are read in order; a later endpoint/db/username/password/TTL line replaces the
 * earlier one, read_endpoint, sentinel and cluster addresses accumulate. A topology
 * conflict is reported at the line of the directive that makes it: the later of the two
 * (cluster after endpoint: at cluster; endpoint after cluster: at endpoint). Rules that
 * depend on the whole block (read_from needs cluster, sentinel credentials need sentinel,
 * username needs password, tls_cert needs tls_key) are checked after the block, at the
 * line of the directive that is wrong. Every message starts with "redis_cache: " and says
 * what was expected.
 */
#include <arpa/inet.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "plugin/plugin.h"
#include "resp/resp.h"

#define TTL_MAX   2147483647u /* RFC 2181 §8 */
#define COUNT_MAX 1000000u    /* pool sizes and retries: anything above is a typo */

struct pstate {
    const struct cfg_tokens *t;
    struct rcp_config *cfg;
    struct cfg_error *err;
    /* where each directive that takes part in a cross-check was last seen */
    const struct cfg_token *at_endpoint, *at_read_endpoint, *at_sentinel, *at_cluster, *at_db;
    const struct cfg_token *at_read_from, *at_username, *at_password;
    const struct cfg_token *at_sentinel_username, *at_sentinel_password;
    const struct cfg_token *at_tls_cert, *at_tls_key, *at_min_backoff, *at_max_backoff;
};

void rcp_config_init(struct rcp_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->success_max = 3600;
    cfg->denial_max = 1800;
    cfg->mode = RCP_MODE_STANDALONE;
    snprintf(cfg->endpoint.host, sizeof cfg->endpoint.host, "127.0.0.1");
    cfg->endpoint.port = 6379;
    memcpy(cfg->key_prefix, "cdrc", 5);
    cfg->key_prefix_len = 4;
    cfg->read_from = RCP_READ_LATENCY;
    cfg->connect_timeout = 1.0;
    cfg->read_timeout = 0.5;
    cfg->write_timeout = 2.0;
    topo_pool_opts_init(&cfg->pool);
    cfg->tls_verify_chain = true;
    cfg->tls_verify_hostname = true;
}

/* ---- messages ----------------------------------------------------------------------- */

/* Sets the error at `at` as "redis_cache: " + the message, control characters shown as '?'
 * (a quoted token may hold newlines; the message stays one line). */
__attribute__((format(printf, 3, 4))) static int fail(struct pstate *p, const struct cfg_token *at,
                                                      const char *fmt, ...)
{
    char m[sizeof p->err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    for (char *q = m; *q; q++)
        if ((unsigned char)*q < 0x20 || (unsigned char)*q == 0x7f) *q = '?';
    cfg_error_at(p->err, at, "redis_cache: %s", m);
    return -1;
}

/* A token's text for a message: at most 64 bytes, "..." when cut. */
struct shown {
    char s[72];
};
static struct shown show(const struct cfg_token *t)
{
    struct shown r;
    if (t->len > 64)
        snprintf(r.s, sizeof r.s, "%.64s...", t->text);
    else
        snprintf(r.s, sizeof r.s, "%s", t->text);
    return r;
}
#define SHOW(t) (show(t).s)

static int need_args(struct pstate *p, const struct cfg_token *d, size_t n, size_t min, size_t max,
                     const char *what)
{
    if (n < min) return fail(p, d, "%s: missing %s", d->text, what);
    if (n > max) return fail(p, d, "%s: too many arguments (expected %s)", d->text, what);
    return 0;
}

/* ---- values ------------------------------------------------------------------------- */

enum dur_status { DUR_OK = 0, DUR_SYNTAX, DUR_NEGATIVE, DUR_NO_UNIT, DUR_RANGE };

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Go's time.ParseDuration syntax: [+-] then number[.fraction]unit repeated, units ns, us
 * (µs, μs), ms, s, m, h; "0" alone needs no unit. The value in nanoseconds, at most
 * INT64_MAX. A leading '-' before anything number-like is DUR_NEGATIVE. */
static enum dur_status parse_unsigned_duration(const char *s, size_t len, uint64_t *ns);

static enum dur_status parse_go_duration(const char *s, size_t len, uint64_t *ns)
{
    if (len && (s[0] == '-' || s[0] == '+')) {
        uint64_t v = 0;
        enum dur_status st = parse_unsigned_duration(s + 1, len - 1, &v);
        if (s[0] == '+' || st == DUR_SYNTAX) {
            if (st == DUR_OK) *ns = v;
            return st;
        }
        return DUR_NEGATIVE; /* "-5s", "-1", "-1e99h": negative whatever else */
    }
    return parse_unsigned_duration(s, len, ns);
}

static enum dur_status parse_unsigned_duration(const char *s, size_t len, uint64_t *ns)
{
    static const struct {
        const char *name;
        uint64_t ns;
    } units[] = {
        {"ns", 1ULL},           {"us", 1000ULL},
        {"\xc2\xb5s", 1000ULL}, /* U+00B5 micro sign */
        {"\xce\xbcs", 1000ULL}, /* U+03BC Greek mu */
        {"ms", 1000000ULL},     {"s", 1000000000ULL},
        {"m", 60000000000ULL},  {"h", 3600000000000ULL},
    };
    const uint64_t limit = (uint64_t)INT64_MAX;
    size_t i = 0;
    if (len == 0) return DUR_SYNTAX;
    if (len == 1 && s[0] == '0') {
        *ns = 0;
        return DUR_OK;
    }
    uint64_t total = 0;
    while (i < len) {
        uint64_t v = 0, f = 0;
        double scale = 1;
        bool digits = false;
        while (i < len && is_digit(s[i])) {
            if (v > (limit - 9) / 10) return DUR_RANGE;
            v = v * 10 + (uint64_t)(s[i++] - '0');
            digits = true;
        }
        if (i < len && s[i] == '.') {
            i++;
            while (i < len && is_digit(s[i])) {
                if (f < 100000000000000000ULL) { /* further digits cannot matter */
                    f = f * 10 + (uint64_t)(s[i] - '0');
                    scale *= 10;
                }
                i++;
                digits = true;
            }
        }
        if (!digits) return DUR_SYNTAX;
        size_t u = i;
        while (i < len && s[i] != '.' && !is_digit(s[i])) i++;
        if (u == i) return DUR_NO_UNIT;
        uint64_t unit = 0;
        for (size_t k = 0; k < sizeof units / sizeof units[0]; k++)
            if (strlen(units[k].name) == i - u && memcmp(units[k].name, s + u, i - u) == 0)
                unit = units[k].ns;
        if (!unit) return DUR_SYNTAX;
        if (v > limit / unit) return DUR_RANGE;
        v *= unit;
        if (f) {
            double add = (double)f * ((double)unit / scale);
            if (add >= (double)limit) return DUR_RANGE;
            v += (uint64_t)add;
            if (v > limit) return DUR_RANGE;
        }
        if (v > limit - total) return DUR_RANGE;
        total += v;
    }
    *ns = total;
    return DUR_OK;
}

static bool all_digits(const struct cfg_token *t)
{
    if (t->len == 0) return false;
    for (size_t i = 0; i < t->len; i++)
        if (!is_digit(t->text[i])) return false;
    return true;
}

/* A TTL bound: a duration coming to whole seconds, or bare seconds. */
static int ttl_arg(struct pstate *p, const struct cfg_token *d, const char *what,
                   const struct cfg_token *a, uint32_t *out)
{
    uint64_t secs = 0;
    if (all_digits(a)) {
        for (size_t i = 0; i < a->len; i++) {
            secs = secs * 10 + (uint64_t)(a->text[i] - '0');
            if (secs > TTL_MAX) break;
        }
    } else {
        uint64_t ns = 0;
        switch (parse_go_duration(a->text, a->len, &ns)) {
        case DUR_OK: break;
        case DUR_NEGATIVE: return fail(p, d, "%s: %s %s is negative", d->text, what, SHOW(a));
        case DUR_RANGE: secs = UINT64_MAX; break;
        default:
            return fail(p, d, "%s: bad %s \"%s\": expected a duration (30s, 1h30m) or seconds",
                        d->text, what, SHOW(a));
        }
        if (secs == 0) {
            if (ns % 1000000000ULL)
                return fail(p, d, "%s: %s %s is not a whole number of seconds", d->text, what,
                            SHOW(a));
            secs = ns / 1000000000ULL;
        }
    }
    if (secs > TTL_MAX)
        return fail(p, d, "%s: %s %s is over %u seconds", d->text, what, SHOW(a), TTL_MAX);
    *out = (uint32_t)secs;
    return 0;
}

/* A duration with a unit (bare "0" allowed), in seconds. `label` names the setting. */
static int dur_arg(struct pstate *p, const struct cfg_token *d, const char *label,
                   const struct cfg_token *a, bool positive, double *out)
{
    uint64_t ns = 0;
    switch (parse_go_duration(a->text, a->len, &ns)) {
    case DUR_OK: break;
    case DUR_NEGATIVE: return fail(p, d, "%s: %s is negative", label, SHOW(a));
    case DUR_NO_UNIT:
        return fail(p, d, "%s: %s needs a unit (e.g. 500ms, 2s, 1.5s)", label, SHOW(a));
    case DUR_RANGE: return fail(p, d, "%s: %s is too large", label, SHOW(a));
    default:
        return fail(p, d, "%s: bad duration \"%s\" (expected e.g. 500ms, 2s, 1.5s)", label,
                    SHOW(a));
    }
    if (positive && ns == 0) return fail(p, d, "%s: must be greater than 0", label);
    *out = (double)ns / 1e9;
    return 0;
}

static int uint_arg(struct pstate *p, const struct cfg_token *d, const char *label,
                    const struct cfg_token *a, uint64_t max, uint64_t *out)
{
    if (a->len && a->text[0] == '-') return fail(p, d, "%s: %s is negative", label, SHOW(a));
    if (!all_digits(a))
        return fail(p, d, "%s: \"%s\" is not a non-negative integer", label, SHOW(a));
    uint64_t v = 0;
    for (size_t i = 0; i < a->len; i++) {
        uint64_t dgt = (uint64_t)(a->text[i] - '0');
        if (v > (max - dgt) / 10)
            return fail(p, d, "%s: %s is too large (at most %llu)", label, SHOW(a),
                        (unsigned long long)max);
        v = v * 10 + dgt;
    }
    *out = v;
    return 0;
}

static int str_arg(struct pstate *p, const struct cfg_token *d, const struct cfg_token *a,
                   char *buf, size_t cap)
{
    if (a->len >= cap)
        return fail(p, d, "%s: value too long (at most %zu bytes)", d->text, cap - 1);
    memcpy(buf, a->text, a->len);
    buf[a->len] = '\0';
    return 0;
}

static int add_addrs(struct pstate *p, const struct cfg_token *d, const struct cfg_token *a,
                     size_t n, uint16_t default_port, struct rcp_addr *arr, size_t *count)
{
    for (size_t i = 0; i < n; i++) {
        if (*count >= RCP_ADDRS_MAX)
            return fail(p, d, "%s: too many addresses (at most %d)", d->text, RCP_ADDRS_MAX);
        struct rcp_addr *ad = &arr[*count];
        char why[160];
        if (topo_parse_hostport(a[i].text, default_port, ad->host, &ad->port, why, sizeof why))
            return fail(p, d, "%s: %s", d->text, why);
        ad->line = d->line;
        (*count)++;
    }
    return 0;
}

static int parse_zones(struct pstate *p, const struct cfg_token *d, const struct cfg_token *a,
                       size_t n)
{
    struct rcp_config *cfg = p->cfg;
    for (size_t i = 0; i < n; i++) {
        char z[DNS_ZONE_TEXT_MAX];
        const char *why = dns_zone_normalize(a[i].text, a[i].len, z);
        if (why) return fail(p, d, "bad zone \"%s\": %s", SHOW(&a[i]), why);
        bool dup = false;
        for (size_t k = 0; k < cfg->nzones && !dup; k++) dup = strcmp(cfg->zones[k], z) == 0;
        if (dup) continue;
        if (cfg->nzones >= RCP_ZONES_MAX)
            return fail(p, d, "too many zones (at most %d)", RCP_ZONES_MAX);
        memcpy(cfg->zones[cfg->nzones++], z, strlen(z) + 1);
    }
    return 0;
}

/* ---- directives --------------------------------------------------------------------- */

typedef int directive_fn(struct pstate *p, const struct cfg_token *d, const struct cfg_token *a,
                         size_t n);

static int d_ttl(struct pstate *p, const struct cfg_token *d, const struct cfg_token *a, size_t n)
{
    if (need_args(p, d, n, 1, 2, "MAX_TTL [MIN_TTL]")) return -1;
    uint32_t max = 0, min = 0;
    if (ttl_arg(p, d, "MAX_TTL", &a[0], &max)) return -1;
    if (n == 2 && ttl_arg(p, d, "MIN_TTL", &a[1], &min)) return -1;
    if (min > max)
        return fail(p, d, "%s: MIN_TTL %s is greater than MAX_TTL %s", d->text, SHOW(&a[1]),
                    SHOW(&a[0]));
    if (cfg_is(d, "success")) {
        p->cfg->success_max = max;
        p->cfg->success_min = min;
    } else {
        p->cfg->denial_max = max;
        p->cfg->denial_min = min;
    }
    return 0;
}

static int d_endpoint(struct pstate *p, const struct cfg_token *d, const struct cfg_token *a,
                      size_t n)
{
    if (need_args(p, d, n, 1, 1, "ENDPOINT")) return -1;
    if (p->at_cluster)
        return fail(p, d, "endpoint: not allowed in cluster mode (cluster at line %u)",
                    p->at_cluster->line);
    if (p->at_sentinel)
        return fail(p, d, "endpoint: not allowed in sentinel mode (sentinel at line %u)",
                    p->at_sentinel->line);
    struct rcp_addr ad;
    size_t one = 0;
    if (add_addrs(p, d, a, 1, 6379, &ad, &one)) return -1;
    p->cfg->endpoint = ad;
    p->cfg->endpoint_set = true;
    p->at_endpoint = d;
    return 0;
}

static int d_read_endpoint(struct pstate *p, const struct cfg_token *d, const struct cfg_token *a,
                           size_t n)
{
    if (need_args(p, d, n, 1, SIZE_MAX, "ENDPOINT [ENDPOINT...]")) return -1;
    if (p->at_cluster)
        return fail(p, d, "read_endpoint: not allowed in cluster mode (cluster at line %u)",
                    p->at_cluster->line);
    if (p->at_sentinel)
        return fail(p, d, "read_endpoint: not allowed in sentinel mode (sentinel at line %u)",
                    p->at_sentinel->line);
    p->at_read_endpoint = d;
    return add_addrs(p, d, a, n, 6379, p->cfg->read_endpoints, &p->cfg->n_read_endpoints);
}

static int d_key_prefix(struct pstate *p, const struct cfg_token *d, const struct cfg_token *a,
                        size_t n)
{
    if (need_args(p, d, n, 1, 1, "STRING (\"\" for none)")) return -1;
    size_t len = a->len;
    if (len && a->text[len - 1] == ':') len--;
    if (len >= sizeof p->cfg->key_prefix)
        return fail(p, d, "key_prefix: too long (at most %zu bytes)",
                    sizeof p->cfg->key_prefix - 1);
    memcpy(p->cfg->key_prefix, a->text, len);
    p->cfg->key_prefix[len] = '\0';
    p->cfg->key_prefix_len = len;
    return 0;
}

static int d_db(struct pstate *p, const struct cfg_token *d, const struct cfg_token *a, size_t n)
{
    if (need_args(p, d, n, 1, 1, "NUMBER")) return -1;
    uint64_t v;
    if (uint_arg(p, d, "db", a, INT_MAX, &v)) return -1;
    if (p->at_cluster && v != 0)
        return fail(p, d, "db: cluster mode supports only db 0 (cluster at line %u)",
                    p->at_cluster->line);
    p->cfg->db = (int)v;
    p->at_db = d;
    return 0;
}

static bool plain_name(const struct cfg_token *t)
{
    if (t->len == 0) return false;
    for (size_t i = 0; i < t->len; i++)
        if ((unsigned char)t->text[i] <= ' ' || (unsigned char)t->text[i] == 0x7f) return false;
    return true;
}

static int d_sentinel(struct pstate *p, const struct cfg_token *d, const struct cfg_token *a,
                      size_t n)
{
    struct rcp_config *cfg = p->cfg;
    if (n == 0) return fail(p, d, "sentinel: missing MASTER_NAME SENTINEL_ADDR [SENTINEL_ADDR...]");
    if (n == 1)
        return fail(p, d, "sentinel: missing SENTINEL_ADDR after the master name %s", SHOW(a));
    if (p->at_cluster)
        return fail(p, d, "sentinel: not allowed in cluster mode (cluster at line %u)",
                    p->at_cluster->line);
    if (p->at_endpoint)
        return fail(p, d, "sentinel: sentinel mode does not take endpoint (line %u)",
                    p->at_endpoint->line);
    if (p->at_read_endpoint)
        return fail(p, d, "sentinel: sentinel mode does not take read_endpoint (line %u)",
                    p->at_read_endpoint->line);
    if (!plain_name(a) || a->len >= sizeof cfg->sentinel_master)
        return fail(p, d, "sentinel: bad master name \"%s\"", SHOW(a));
    if (p->at_sentinel && !cfg_is(a, cfg->sentinel_master))
        return fail(p, d, "sentinel: master %s differs from %s (line %u): one master per block",
                    SHOW(a), cfg->sentinel_master, p->at_sentinel->line);
    memcpy(cfg->sentinel_master, a->text, a->len + 1);
    if (add_addrs(p, d, a + 1, n - 1, 26379, cfg->sentinels, &cfg->n_sentinels)) return -1;
    cfg->mode = RCP_MODE_SENTINEL;
    p->at_sentinel = d;
    return 0;
}

static int d_cluster(struct pstate *p, const struct cfg_token *d, const struct cfg_token *a,
                     size_t n)
{
    struct rcp_config *cfg = p->cfg;
    if (need_args(p, d, n, 1, SIZE_MAX, "SEED_ADDR [SEED_ADDR...]")) return -1;
    if (p->at_endpoint)
        return fail(p, d, "cluster: cluster mode does not take endpoint (line %u)",
                    p->at_endpoint->line);
    if (p->at_read_endpoint)
        return fail(p, d, "cluster: cluster mode does not take read_endpoint (line %u)",
                    p->at_read_endpoint->line);
    if (p->at_sentinel)
        return fail(p, d, "cluster: not allowed with sentinel (line %u)", p->at_sentinel->line);
    if (cfg->db != 0)
        return fail(p, d, "cluster: cluster mode supports only db 0 (db %d at line %u)", cfg->db,
                    p->at_db ? p->at_db->line : 0);
    if (add_addrs(p, d, a, n, 6379, cfg->cluster_seeds, &cfg->n_cluster_seeds)) return -1;
    cfg->mode = RCP_MODE_CLUSTER;
    p->at_cluster = d;
    return 0;
}

static int d_read_from(struct pstate *p, const struct cfg_token *d, const struct cfg_token *a,
                       size_t n)
{
    if (need_args(p, d, n, 1, 1, "latency|random|primary")) return -1;
    if (cfg_is(a, "latency"))
        p->cfg->read_from = RCP_READ_LATENCY;
    else if (cfg_is(a, "random"))
        p->cfg->read_from = RCP_READ_RANDOM;
    else if (cfg_is(a, "primary"))
        p->cfg->read_from = RCP_READ_PRIMARY;
    else
        return fail(p, d, "read_from: \"%s\": expected latency, random or primary", SHOW(a));
    p->cfg->read_from_set = true;
    p->at_read_from = d;
    return 0;
}

/* username, password, sentinel_username, sentinel_password. An empty value ("" or an unset
 * {$ENV}) means "not set", as an empty string does in go-redis. */
static int d_credential(struct pstate *p, const struct cfg_token *d, const struct cfg_token *a,
                        size_t n)
{
    struct rcp_config *cfg = p->cfg;
    char *buf;
    bool *set;
    const struct cfg_token **at;
    if (cfg_is(d, "username")) {
        buf = cfg->username, set = &cfg->username_set, at = &p->at_username;
    } else if (cfg_is(d, "password")) {
        buf = cfg->password, set = &cfg->password_set, at = &p->at_password;
    } else if (cfg_is(d, "sentinel_username")) {
        buf = cfg->sentinel_username, set = &cfg->sentinel_username_set;
        at = &p->at_sentinel_username;
    } else {
        buf = cfg->sentinel_password, set = &cfg->sentinel_password_set;
        at = &p->at_sentinel_password;
    }
    bool is_user = strstr(d->text, "username") != NULL;
    if (need_args(p, d, n, 1, 1, is_user ? "USERNAME" : "PASSWORD")) return -1;
    if (str_arg(p, d, a, buf, 256)) return -1;
    *set = a->len > 0;
    *at = a->len > 0 ? d : NULL;
    return 0;
}

static int d_tcp_keepalive(struct pstate *p, const struct cfg_token *d, const struct cfg_token *a,
                           size_t n)
{
    if (need_args(p, d, n, 1, 1, "DURATION")) return -1;
    return dur_arg(p, d, "tcp_keepalive", a, false, &p->cfg->tcp_keepalive);
}

static int d_tls(struct pstate *p, const struct cfg_token *d, const struct cfg_token *a, size_t n)
{
    if (n)
        return fail(p, d, "tls: takes no arguments (use tls_cert, tls_key and tls_ca for files)");
    p->cfg->tls = true;
    return 0;
}

static int d_tls_file(struct pstate *p, const struct cfg_token *d, const struct cfg_token *a,
                      size_t n)
{
    struct rcp_config *cfg = p->cfg;
    if (need_args(p, d, n, 1, 1, "PATH")) return -1;
    if (a->len == 0) return fail(p, d, "%s: empty PATH", d->text);
    char *buf = cfg_is(d, "tls_cert")  ? cfg->tls_cert
                : cfg_is(d, "tls_key") ? cfg->tls_key
                                       : cfg->tls_ca;
    if (str_arg(p, d, a, buf, sizeof cfg->tls_cert)) return -1;
    if (cfg_is(d, "tls_cert")) p->at_tls_cert = d;
    if (cfg_is(d, "tls_key")) p->at_tls_key = d;
    cfg->tls = true;
    return 0;
}

static int bool_of(const struct cfg_token *a, bool *out)
{
    static const char *const yes[] = {"on", "true", "yes", "1"};
    static const char *const no[] = {"off", "false", "no", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (a->len == strlen(yes[i]) && strncasecmp(a->text, yes[i], a->len) == 0) {
            *out = true;
            return 0;
        }
        if (a->len == strlen(no[i]) && strncasecmp(a->text, no[i], a->len) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

static int d_tls_bool(struct pstate *p, const struct cfg_token *d, const struct cfg_token *a,
                      size_t n)
{
    if (need_args(p, d, n, 1, 1, "BOOL (on/off, true/false, yes/no, 1/0)")) return -1;
    bool v;
    if (bool_of(a, &v))
        return fail(p, d, "%s: \"%s\": expected on/off, true/false, yes/no or 1/0", d->text,
                    SHOW(a));
    if (cfg_is(d, "tls_verify_chain"))
        p->cfg->tls_verify_chain = v;
    else
        p->cfg->tls_verify_hostname = v;
    p->cfg->tls = true;
    return 0;
}

/* The resolver must be an IP (with an optional port): it cannot resolve its own name.
 * node-local-dns's `__PILLAR__CLUSTER__DNS__` placeholder is substituted before the server
 * reads the file; left unsubstituted it is a name and is rejected. */
static int d_resolver(struct pstate *p, const struct cfg_token *d, const struct cfg_token *a,
                      size_t n)
{
    if (need_args(p, d, n, 1, 1, "ADDRESS (an IP, port 53 by default)")) return -1;
    char host[TOPO_HOST_MAX], why[160];
    uint16_t port;
    if (topo_parse_hostport(a->text, 53, host, &port, why, sizeof why))
        return fail(p, d, "resolver: %s", why);
    unsigned char bin[16];
    if (inet_pton(AF_INET, host, bin) == 1) {
        snprintf(p->cfg->resolver, sizeof p->cfg->resolver, "%s:%u", host, port);
    } else if (inet_pton(AF_INET6, host, bin) == 1) {
        snprintf(p->cfg->resolver, sizeof p->cfg->resolver, "[%s]:%u", host, port);
    } else {
        return fail(p, d,
                    "resolver: \"%s\" is not an IP address (the resolver's own name cannot be "
                    "resolved)",
                    SHOW(a));
    }
    return 0;
}

static int d_key_hash_seed(struct pstate *p, const struct cfg_token *d, const struct cfg_token *a,
                           size_t n)
{
    if (need_args(p, d, n, 1, 1, "N (unsigned 64-bit)")) return -1;
    uint64_t v;
    if (uint_arg(p, d, "key_hash_seed", a, UINT64_MAX, &v)) return -1;
    p->cfg->key_hash_seed = v;
    return 0;
}

/* ---- timeout { }, pool { }, retries { } ---------------------------------------------- */

typedef int setting_fn(struct pstate *p, const struct cfg_token *key, const struct cfg_token *v);

static int s_timeout(struct pstate *p, const struct cfg_token *k, const struct cfg_token *v)
{
    struct rcp_config *cfg = p->cfg;
    double *dst = cfg_is(k, "connect") ? &cfg->connect_timeout
                  : cfg_is(k, "read")  ? &cfg->read_timeout
                                       : &cfg->write_timeout;
    char label[40];
    snprintf(label, sizeof label, "timeout %s", k->text);
    return dur_arg(p, k, label, v, true, dst);
}

static int s_pool(struct pstate *p, const struct cfg_token *k, const struct cfg_token *v)
{
    struct topo_pool_opts *o = &p->cfg->pool;
    char label[40];
    snprintf(label, sizeof label, "pool %s", k->text);
    unsigned *count = cfg_is(k, "size")         ? &o->size
                      : cfg_is(k, "min_idle")   ? &o->min_idle
                      : cfg_is(k, "max_idle")   ? &o->max_idle
                      : cfg_is(k, "max_active") ? &o->max_active
                                                : NULL;
    if (count) {
        uint64_t n;
        if (uint_arg(p, k, label, v, COUNT_MAX, &n)) return -1;
        *count = (unsigned)n;
        return 0;
    }
    double *dst = cfg_is(k, "max_idle_time")  ? &o->max_idle_time
                  : cfg_is(k, "max_lifetime") ? &o->max_lifetime
                                              : &o->wait_timeout;
    return dur_arg(p, k, label, v, false, dst);
}

static int s_retries(struct pstate *p, const struct cfg_token *k, const struct cfg_token *v)
{
    struct topo_pool_opts *o = &p->cfg->pool;
    char label[40];
    snprintf(label, sizeof label, "retries %s", k->text);
    if (cfg_is(k, "max")) {
        uint64_t n;
        if (uint_arg(p, k, label, v, COUNT_MAX, &n)) return -1;
        o->retries = (unsigned)n;
        return 0;
    }
    double d;
    if (dur_arg(p, k, label, v, false, &d)) return -1;
    if (cfg_is(k, "min_backoff")) {
        if (p->at_max_backoff && d > o->max_backoff)
            return fail(p, k, "retries: min_backoff %s exceeds max_backoff (%gs, line %u)", SHOW(v),
                        o->max_backoff, p->at_max_backoff->line);
        o->min_backoff = d;
        p->at_min_backoff = k;
    } else {
        if (p->at_min_backoff && d < o->min_backoff)
            return fail(p, k, "retries: max_backoff %s is below min_backoff (%gs, line %u)",
                        SHOW(v), o->min_backoff, p->at_min_backoff->line);
        o->max_backoff = d;
        p->at_max_backoff = k;
    }
    return 0;
}

struct group {
    const char *name;
    const char *const *keys;
    const char *usage;
    setting_fn *fn;
};

static const char *const timeout_keys[] = {"connect", "read", "write", NULL};
static const char *const pool_keys[] = {
    "size",          "min_idle",     "max_idle",     "max_active",
    "max_idle_time", "max_lifetime", "wait_timeout", NULL};
static const char *const retries_keys[] = {"max", "min_backoff", "max_backoff", NULL};

static const struct group groups[] = {
    {"timeout", timeout_keys, "connect|read|write DURATION", s_timeout},
    {"pool", pool_keys,
     "size|min_idle|max_idle|max_active N or max_idle_time|max_lifetime|wait_timeout DURATION",
     s_pool},
    {"retries", retries_keys, "max N or min_backoff|max_backoff DURATION", s_retries},
};

static int group_setting(struct pstate *p, const struct group *g, const struct cfg_token *k,
                         const struct cfg_token *v, size_t nv)
{
    bool known = false;
    for (size_t i = 0; g->keys[i] && !known; i++) known = cfg_is(k, g->keys[i]);
    if (!known)
        return fail(p, k, "%s: unknown setting \"%s\" (expected %s)", g->name, SHOW(k), g->usage);
    if (nv == 0) return fail(p, k, "%s %s: missing value", g->name, k->text);
    if (nv > 1)
        return fail(p, k, "%s %s: too many arguments (one value expected)", g->name, k->text);
    return g->fn(p, k, v);
}

/* `NAME KEY VALUE` on one line, and/or `NAME { KEY VALUE ... }`. */
static int parse_group(struct pstate *p, const struct group *g, const struct cfg_token *d,
                       const struct cfg_token *a, size_t n, size_t open, size_t close)
{
    const struct cfg_tokens *t = p->t;
    if (n == 0 && open == SIZE_MAX)
        return fail(p, d, "%s: missing settings (expected %s, or a block of them)", g->name,
                    g->usage);
    if (n == 1) return group_setting(p, g, &a[0], NULL, 0);
    if (n > 2)
        return fail(p, d, "%s: too many arguments (one setting per line: %s KEY VALUE)", g->name,
                    g->name);
    if (n == 2 && group_setting(p, g, &a[0], &a[1], 1)) return -1;
    if (open == SIZE_MAX) return 0;
    size_t i = open + 1;
    while (i < close) {
        struct cfg_cursor cc = {t, i};
        size_t end = cfg_args_end(&cc);
        if (cfg_is_open(&t->tok[i]) || (end < close && cfg_is_open(&t->tok[end])))
            return fail(p, &t->tok[i], "%s: unexpected block", g->name);
        if (group_setting(p, g, &t->tok[i], &t->tok[i + 1], end - i - 1)) return -1;
        i = end;
    }
    return 0;
}

static const struct {
    const char *name;
    directive_fn *fn;
} directives[] = {
    {"success", d_ttl},
    {"denial", d_ttl},
    {"endpoint", d_endpoint},
    {"read_endpoint", d_read_endpoint},
    {"key_prefix", d_key_prefix},
    {"db", d_db},
    {"sentinel", d_sentinel},
    {"cluster", d_cluster},
    {"read_from", d_read_from},
    {"username", d_credential},
    {"password", d_credential},
    {"sentinel_username", d_credential},
    {"sentinel_password", d_credential},
    {"tcp_keepalive", d_tcp_keepalive},
    {"tls", d_tls},
    {"tls_cert", d_tls_file},
    {"tls_key", d_tls_file},
    {"tls_ca", d_tls_file},
    {"tls_verify_chain", d_tls_bool},
    {"tls_verify_hostname", d_tls_bool},
    {"resolver", d_resolver},
    {"key_hash_seed", d_key_hash_seed},
};

/* The directives between the unquoted braces at `open` and `close`. */
static int parse_block(struct pstate *p, size_t open, size_t close)
{
    const struct cfg_tokens *t = p->t;
    size_t i = open + 1;
    while (i < close) {
        const struct cfg_token *d = &t->tok[i];
        if (cfg_is_open(d)) return fail(p, d, "unexpected '{' (expected a directive)");
        struct cfg_cursor cc = {t, i};
        size_t end = cfg_args_end(&cc);
        size_t bopen = SIZE_MAX, bclose = SIZE_MAX, next = end;
        if (end < close && cfg_is_open(&t->tok[end])) {
            bopen = end;
            bclose = cfg_block_end(t, end); /* inside [open, close]: the braces balance */
            next = bclose + 1;
        }
        const struct cfg_token *a = &t->tok[i + 1];
        size_t n = end - i - 1;

        const struct group *g = NULL;
        for (size_t k = 0; k < sizeof groups / sizeof groups[0] && !g; k++)
            if (cfg_is(d, groups[k].name)) g = &groups[k];
        if (g) {
            if (parse_group(p, g, d, a, n, bopen, bclose)) return -1;
        } else {
            directive_fn *fn = NULL;
            for (size_t k = 0; k < sizeof directives / sizeof directives[0] && !fn; k++)
                if (cfg_is(d, directives[k].name)) fn = directives[k].fn;
            if (!fn) return fail(p, d, "unknown directive \"%s\"", SHOW(d));
            if (bopen != SIZE_MAX) return fail(p, d, "%s: takes no block", d->text);
            if (fn(p, d, a, n)) return -1;
        }
        i = next;
    }
    return 0;
}

/* Rules about the whole block, reported at the line of the directive that is wrong. */
static int check_block(struct pstate *p)
{
    struct rcp_config *cfg = p->cfg;
    if (p->at_read_from && cfg->mode != RCP_MODE_CLUSTER)
        return fail(p, p->at_read_from, "read_from: only valid in cluster mode (set cluster)");
    if (p->at_sentinel_username && cfg->mode != RCP_MODE_SENTINEL)
        return fail(p, p->at_sentinel_username,
                    "sentinel_username: only valid in sentinel mode (set sentinel)");
    if (p->at_sentinel_password && cfg->mode != RCP_MODE_SENTINEL)
        return fail(p, p->at_sentinel_password,
                    "sentinel_password: only valid in sentinel mode (set sentinel)");
    if (p->at_username && !cfg->password_set)
        return fail(p, p->at_username, "username: needs a password (add password PASSWORD)");
    if (p->at_sentinel_username && !cfg->sentinel_password_set)
        return fail(p, p->at_sentinel_username,
                    "sentinel_username: needs a password (add sentinel_password PASSWORD)");
    if (p->at_tls_cert && !p->at_tls_key)
        return fail(p, p->at_tls_cert, "tls_cert: needs tls_key (the client certificate's key)");
    if (p->at_tls_key && !p->at_tls_cert)
        return fail(p, p->at_tls_key, "tls_key: needs tls_cert (the client certificate)");
    /* One backoff bound set against the other's default: the default gives way. */
    struct topo_pool_opts *o = &cfg->pool;
    if (o->min_backoff > o->max_backoff) {
        if (p->at_min_backoff && !p->at_max_backoff)
            o->max_backoff = o->min_backoff;
        else
            o->min_backoff = o->max_backoff;
    }
    return 0;
}

int rcp_config_parse(struct cfg_cursor *c, struct rcp_config *cfg, struct cfg_error *err)
{
    rcp_config_init(cfg);
    struct pstate p;
    memset(&p, 0, sizeof p);
    p.t = c->t;
    p.cfg = cfg;
    p.err = err;

    const struct cfg_token *d = cfg_cur(c);
    if (!d) {
        if (err) {
            err->file[0] = '\0';
            err->line = 0;
        }
        return fail(&p, NULL, "missing directive");
    }
    if (!cfg_is(d, "redis_cache"))
        return fail(&p, d, "expected the redis_cache directive, not \"%s\"", SHOW(d));
    snprintf(cfg->file, sizeof cfg->file, "%s", d->file ? d->file : "");
    cfg->line = d->line;

    const struct cfg_tokens *t = c->t;
    size_t end, open, close;
    if (cfg_directive_span(c, &end, &open, &close) != 0)
        return fail(&p, &t->tok[open], "missing '}' to close the block opened here");
    if (parse_zones(&p, d, d + 1, end - (size_t)(d - t->tok) - 1)) return -1;
    if (open != SIZE_MAX && parse_block(&p, open, close)) return -1;
    return check_block(&p);
}

int rcp_config_check_files(const struct rcp_config *cfg, struct cfg_error *err)
{
    if (!cfg->tls) return 0;
    struct resp_tls_opts o;
    resp_tls_opts_init(&o);
    o.ca_file = cfg->tls_ca[0] ? cfg->tls_ca : NULL;
    o.cert_file = cfg->tls_cert[0] ? cfg->tls_cert : NULL;
    o.key_file = cfg->tls_key[0] ? cfg->tls_key : NULL;
    o.verify_chain = cfg->tls_verify_chain;
    o.verify_hostname = cfg->tls_verify_hostname;
    struct resp_err re;
    memset(&re, 0, sizeof re);
    struct ssl_ctx_st *ctx = resp_tls_ctx_new(&o, &re);
    if (!ctx) {
        if (err) {
            snprintf(err->file, sizeof err->file, "%s", cfg->file);
            err->line = cfg->line;
            snprintf(err->msg, sizeof err->msg, "redis_cache: %s", re.msg);
        }
        return -1;
    }
    resp_tls_ctx_free(ctx);
    return 0;
}
