/* src/server/l1_opts.c — the `cache` directive's text: CoreDNS's syntax, defaults and
 * limits, parsed into struct l1_opts (the cache itself is l1.c).
 *
 *   cache [TTL] [ZONES...] {
 *       success CAPACITY [TTL [MINTTL]]      9984, 3600, 5
 *       denial CAPACITY [TTL [MINTTL]]       9984, 1800, 5
 *       prefetch AMOUNT [DURATION [PERCENTAGE%]]   off; 1m, 10% (10..90 as CoreDNS)
 *       serve_stale [DURATION [immediate|verify]]  off; 1h, immediate
 *       servfail DURATION                    5s; at most 5m; 0 turns it off
 *       keepttl
 *   }
 *
 * TTLs and capacities are bare integers as CoreDNS reads them (strconv.Atoi); the DURATION
 * arguments are Go durations (time.ParseDuration: "30s", "1m30s", "500ms", bare "0"). The
 * cache works in whole seconds, so durations are cut to whole seconds as CoreDNS does
 * (int(d.Seconds())). Errors read "FILE:LINE: cache: WHAT".
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server/server.h"

/* ---- options -------------------------------------------------------------------------- */

void l1_opts_init(struct l1_opts *o)
{
    memset(o, 0, sizeof *o);
    o->success_cap = 9984;
    o->success_max_ttl = 3600;
    o->success_min_ttl = 5;
    o->denial_cap = 9984;
    o->denial_max_ttl = 1800;
    o->denial_min_ttl = 5;
    o->prefetch = 0;
    o->prefetch_window = 60;
    o->prefetch_pct = 10;
    o->stale = 0;
    o->stale_verify = false;
    o->servfail_ttl = 5;
}

__attribute__((format(printf, 3, 4))) static int
l1_fail(struct cfg_error *err, const struct cfg_token *at, const char *fmt, ...)
{
    char m[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    for (char *p = m; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f) *p = '?';
    cfg_error_at(err, at, "cache: %s", m);
    return -1;
}

/* A token for a message: at most 64 bytes. */
static const char *l1_show(const struct cfg_token *t, char buf[72])
{
    if (t->len > 64)
        snprintf(buf, 72, "%.64s...", t->text);
    else
        snprintf(buf, 72, "%s", t->text);
    return buf;
}

/* Whether the token reads as an integer the way Go's strconv.Atoi does: an optional sign and
 * decimal digits. Such a token right after `cache` is its TTL, never a zone. */
static bool l1_is_int(const struct cfg_token *t)
{
    size_t i = (t->len > 0 && (t->text[0] == '+' || t->text[0] == '-')) ? 1 : 0;
    if (i == t->len) return false;
    for (; i < t->len; i++)
        if (t->text[i] < '0' || t->text[i] > '9') return false;
    return true;
}

enum l1_num { L1_NUM_OK, L1_NUM_SYNTAX, L1_NUM_NEGATIVE, L1_NUM_RANGE };

/* An integer token in [0, max]; a leading '+' is accepted as Atoi does. */
static enum l1_num l1_uint(const struct cfg_token *t, uint32_t max, uint32_t *out)
{
    if (!l1_is_int(t)) return L1_NUM_SYNTAX;
    size_t i = 0;
    bool neg = t->text[0] == '-';
    if (t->text[0] == '+' || neg) i = 1;
    uint64_t v = 0;
    for (; i < t->len; i++) {
        v = v * 10 + (uint64_t)(t->text[i] - '0');
        if (v > (uint64_t)max + 1) v = (uint64_t)max + 1; /* saturate: still "too large" */
    }
    if (neg && v != 0) return L1_NUM_NEGATIVE;
    if (v > max) return L1_NUM_RANGE;
    *out = (uint32_t)v;
    return L1_NUM_OK;
}

/* A TTL argument: whole seconds, 1..2^31-1 (`what` names it in messages; the property's
 * name leads them, none for the TTL right after `cache`). */
static int l1_ttl_arg(struct cfg_error *err, const struct cfg_token *d, const char *what,
                      const struct cfg_token *a, bool zero_ok, uint32_t *out)
{
    char b[72], who[80] = "";
    if (!cfg_is(d, "cache")) snprintf(who, sizeof who, "%s: ", d->text);
    switch (l1_uint(a, L1_TTL_MAX, out)) {
    case L1_NUM_OK: break;
    case L1_NUM_SYNTAX:
        return l1_fail(err, d, "%s%s \"%s\" is not a whole number of seconds", who, what,
                       l1_show(a, b));
    case L1_NUM_NEGATIVE:
        return l1_fail(err, d, "%s%s %s can not be negative", who, what, l1_show(a, b));
    case L1_NUM_RANGE:
        return l1_fail(err, d, "%s%s %s is over %u", who, what, l1_show(a, b), L1_TTL_MAX);
    }
    if (*out == 0 && !zero_ok)
        return l1_fail(err, d, "%s%s can not be zero or negative", who, what);
    return 0;
}

/* `success|denial CAPACITY [TTL] [MINTTL]`. */
static int l1_kind_line(struct cfg_error *err, const struct cfg_token *d, const struct cfg_token *a,
                        size_t n, unsigned *cap, uint32_t *max_ttl, uint32_t *min_ttl)
{
    char b[72];
    if (n == 0) return l1_fail(err, d, "%s: missing CAPACITY [TTL] [MINTTL]", d->text);
    if (n > 3)
        return l1_fail(err, d, "%s: too many arguments (expected CAPACITY [TTL] [MINTTL])",
                       d->text);
    uint32_t v = 0;
    switch (l1_uint(&a[0], L1_CAP_MAX, &v)) {
    case L1_NUM_OK: break;
    case L1_NUM_SYNTAX:
        return l1_fail(err, d, "%s: CAPACITY \"%s\" is not a whole number", d->text,
                       l1_show(&a[0], b));
    case L1_NUM_NEGATIVE:
        return l1_fail(err, d, "%s: CAPACITY %s can not be negative", d->text, l1_show(&a[0], b));
    case L1_NUM_RANGE:
        return l1_fail(err, d, "%s: CAPACITY %s is over %u", d->text, l1_show(&a[0], b),
                       L1_CAP_MAX);
    }
    uint32_t max = *max_ttl, min = *min_ttl;
    if (n > 1 && l1_ttl_arg(err, d, "TTL", &a[1], false, &max)) return -1;
    if (n > 2 && l1_ttl_arg(err, d, "MINTTL", &a[2], true, &min)) return -1;
    *cap = v;
    *max_ttl = max;
    *min_ttl = min;
    return 0;
}

static int l1_zones(struct cfg_error *err, const struct cfg_token *d, const struct cfg_token *a,
                    size_t n, struct l1_opts *o)
{
    char b[72];
    const size_t max = sizeof o->zones / sizeof o->zones[0];
    for (size_t i = 0; i < n; i++) {
        char z[DNS_ZONE_TEXT_MAX];
        const char *why = dns_zone_normalize(a[i].text, a[i].len, z);
        if (why) return l1_fail(err, d, "bad zone \"%s\": %s", l1_show(&a[i], b), why);
        bool dup = false;
        for (size_t k = 0; k < o->nzones && !dup; k++) dup = strcmp(o->zones[k], z) == 0;
        if (dup) continue;
        if (o->nzones >= max) return l1_fail(err, d, "too many zones (at most %zu)", max);
        memcpy(o->zones[o->nzones++], z, strlen(z) + 1);
    }
    return 0;
}

/* A DURATION argument of property d, in seconds (the fraction kept; callers cut it). */
static int l1_dur_arg(struct cfg_error *err, const struct cfg_token *d, const struct cfg_token *a,
                      double *out)
{
    char b[72];
    switch (srv_duration_parse_max(a->text, (double)L1_TTL_MAX, out)) {
    case SRV_DUR_OK: return 0;
    case SRV_DUR_SYNTAX:
        return l1_fail(err, d, "%s: DURATION \"%s\" is not a duration (such as 30s, 5m, 1h)",
                       d->text, l1_show(a, b));
    case SRV_DUR_NEGATIVE:
        return l1_fail(err, d, "%s: DURATION %s can not be negative", d->text, l1_show(a, b));
    case SRV_DUR_RANGE:
        return l1_fail(err, d, "%s: DURATION %s is over %us", d->text, l1_show(a, b), L1_TTL_MAX);
    }
    return -1;
}

/* `prefetch AMOUNT [DURATION [PERCENTAGE%]]`. */
static int l1_prefetch_line(struct cfg_error *err, const struct cfg_token *d,
                            const struct cfg_token *a, size_t n, struct l1_opts *o)
{
    char b[72];
    if (n == 0) return l1_fail(err, d, "prefetch: missing AMOUNT [DURATION [PERCENTAGE%%]]");
    if (n > 3)
        return l1_fail(err, d,
                       "prefetch: too many arguments (expected AMOUNT [DURATION [PERCENTAGE%%]])");
    uint32_t amount = 0;
    switch (l1_uint(&a[0], 65535, &amount)) {
    case L1_NUM_OK: break;
    case L1_NUM_SYNTAX:
        return l1_fail(err, d, "prefetch: AMOUNT \"%s\" is not a whole number", l1_show(&a[0], b));
    case L1_NUM_NEGATIVE:
        return l1_fail(err, d, "prefetch: AMOUNT %s can not be negative", l1_show(&a[0], b));
    case L1_NUM_RANGE:
        return l1_fail(err, d, "prefetch: AMOUNT %s is over 65535", l1_show(&a[0], b));
    }
    double window = 60;
    if (n > 1 && l1_dur_arg(err, d, &a[1], &window)) return -1;
    uint32_t pct = 10;
    if (n > 2) {
        const struct cfg_token *p = &a[2];
        if (p->len == 0 || p->text[p->len - 1] != '%')
            return l1_fail(err, d, "prefetch: PERCENTAGE \"%s\" must end with %%", l1_show(p, b));
        struct cfg_token num = *p;
        char digits[72];
        snprintf(digits, sizeof digits, "%.*s", (int)(p->len - 1 < 64 ? p->len - 1 : 64), p->text);
        num.text = digits;
        num.len = strlen(digits);
        if (l1_uint(&num, 1000, &pct) != L1_NUM_OK || pct < 10 || pct > 90)
            return l1_fail(err, d, "prefetch: PERCENTAGE %s is not a whole number in 10%%..90%%",
                           l1_show(p, b));
    }
    o->prefetch = amount;
    o->prefetch_window = window;
    o->prefetch_pct = pct;
    return 0;
}

/* `serve_stale [DURATION [immediate|verify]]`. */
static int l1_stale_line(struct cfg_error *err, const struct cfg_token *d,
                         const struct cfg_token *a, size_t n, struct l1_opts *o)
{
    char b[72];
    if (n > 2)
        return l1_fail(err, d,
                       "serve_stale: too many arguments (expected [DURATION [immediate|verify]])");
    double stale = 3600;
    if (n > 0 && l1_dur_arg(err, d, &a[0], &stale)) return -1;
    bool verify = false;
    if (n > 1) {
        if (strcasecmp(a[1].text, "verify") == 0)
            verify = true;
        else if (strcasecmp(a[1].text, "immediate") != 0)
            return l1_fail(err, d, "serve_stale: refresh mode \"%s\" is not immediate or verify",
                           l1_show(&a[1], b));
    }
    o->stale = (uint32_t)stale; /* whole seconds, as CoreDNS compares them */
    o->stale_verify = verify;
    return 0;
}

/* `servfail DURATION`: at most 5m (RFC 2308 §7.1); 0 turns SERVFAIL caching off. */
static int l1_servfail_line(struct cfg_error *err, const struct cfg_token *d,
                            const struct cfg_token *a, size_t n, struct l1_opts *o)
{
    char b[72];
    if (n != 1) return l1_fail(err, d, "servfail: expected one DURATION");
    double v = 0;
    if (l1_dur_arg(err, d, &a[0], &v)) return -1;
    if (v > 300)
        return l1_fail(err, d, "servfail: DURATION %s is over 5m (RFC 2308)", l1_show(&a[0], b));
    o->servfail_ttl = (uint32_t)v;
    return 0;
}

/* CoreDNS options that come with a later issue: refused by name, never ignored. */
static const char *const l1_later[] = {"disable"};

static int l1_block(struct cfg_error *err, const struct cfg_tokens *t, size_t open, size_t close,
                    struct l1_opts *o)
{
    char b[72];
    size_t i = open + 1;
    while (i < close) {
        const struct cfg_token *d = &t->tok[i];
        if (cfg_is_open(d)) return l1_fail(err, d, "unexpected '{' (expected a property)");
        struct cfg_cursor cc = {t, i};
        size_t end = cfg_args_end(&cc);
        if (end < close && cfg_is_open(&t->tok[end]))
            return l1_fail(err, d, "%s: takes no block", l1_show(d, b));
        const struct cfg_token *a = &t->tok[i + 1];
        size_t n = end - i - 1;
        if (cfg_is(d, "success")) {
            if (l1_kind_line(err, d, a, n, &o->success_cap, &o->success_max_ttl,
                             &o->success_min_ttl))
                return -1;
        } else if (cfg_is(d, "denial")) {
            if (l1_kind_line(err, d, a, n, &o->denial_cap, &o->denial_max_ttl, &o->denial_min_ttl))
                return -1;
        } else if (cfg_is(d, "prefetch")) {
            if (l1_prefetch_line(err, d, a, n, o)) return -1;
        } else if (cfg_is(d, "serve_stale")) {
            if (l1_stale_line(err, d, a, n, o)) return -1;
        } else if (cfg_is(d, "servfail")) {
            if (l1_servfail_line(err, d, a, n, o)) return -1;
        } else if (cfg_is(d, "keepttl")) {
            if (n) return l1_fail(err, d, "keepttl: takes no arguments");
            o->keepttl = true;
        } else {
            for (size_t k = 0; k < sizeof l1_later / sizeof l1_later[0]; k++)
                if (cfg_is(d, l1_later[k]))
                    return l1_fail(err, d, "%s is not supported yet", l1_later[k]);
            return l1_fail(err, d, "unknown property \"%s\"", l1_show(d, b));
        }
        i = end;
    }
    return 0;
}

int l1_opts_parse(struct cfg_cursor *c, struct l1_opts *o, struct cfg_error *err)
{
    l1_opts_init(o);
    char b[72];
    const struct cfg_tokens *t = c->t;
    const struct cfg_token *d = cfg_cur(c);
    if (!d) return l1_fail(err, NULL, "missing directive");
    if (!cfg_is(d, "cache"))
        return l1_fail(err, d, "expected the cache directive, not \"%s\"", l1_show(d, b));
    snprintf(o->file, sizeof o->file, "%s", d->file ? d->file : "");
    o->line = d->line;

    size_t end, open, close;
    if (cfg_directive_span(c, &end, &open, &close) != 0)
        return l1_fail(err, &t->tok[open], "missing '}' to close the block opened here");

    const struct cfg_token *a = d + 1;
    size_t n = end - (size_t)(d - t->tok) - 1;
    if (n > 0 && l1_is_int(&a[0])) {
        uint32_t ttl = 0;
        if (l1_ttl_arg(err, d, "TTL", &a[0], false, &ttl)) return -1;
        o->success_max_ttl = o->denial_max_ttl = ttl;
        a++;
        n--;
    }
    if (l1_zones(err, d, a, n, o)) return -1;
    if (open != SIZE_MAX && l1_block(err, t, open, close, o)) return -1;
    return 0;
}
