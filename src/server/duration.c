/* src/server/duration.c — Go durations (time.ParseDuration) for the Corefile directives of
 * the server: `cache` (prefetch, serve_stale, servfail), `forward` (health_check, expire),
 * `reload`, `timeouts`, `health { lameduck }`. One parser, so that every directive takes
 * the same spellings.
 */
#include <string.h>

#include "server/server.h"

enum srv_dur srv_duration_parse_max(const char *s, double max, double *out)
{
    static const struct {
        const char *name;
        double secs;
    } units[] = {{"ns", 1e-9}, {"us", 1e-6}, {"\xc2\xb5s", 1e-6}, {"\xce\xbcs", 1e-6},
                 {"ms", 1e-3}, {"s", 1.0},   {"m", 60.0},         {"h", 3600.0}};
    if (!s) return SRV_DUR_SYNTAX;
    bool neg = false;
    if (*s == '+' || *s == '-') neg = *s++ == '-';
    if (strcmp(s, "0") == 0) { /* the one number that needs no unit */
        *out = 0;
        return SRV_DUR_OK;
    }
    if (!*s) return SRV_DUR_SYNTAX;
    double total = 0;
    while (*s) {
        /* a number: digits with at most one dot, at least one digit */
        double whole = 0, frac = 0, scale = 1;
        bool digits = false, dot = false;
        for (; (*s >= '0' && *s <= '9') || *s == '.'; s++) {
            if (*s == '.') {
                if (dot) return SRV_DUR_SYNTAX;
                dot = true;
                continue;
            }
            digits = true;
            if (dot) {
                scale /= 10;
                frac += (*s - '0') * scale;
            } else {
                whole = whole * 10 + (*s - '0');
            }
        }
        if (!digits) return SRV_DUR_SYNTAX;
        size_t best = 0, bestlen = 0; /* the longest unit that matches: "ms" before "m" */
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
            size_t n = strlen(units[i].name);
            if (n > bestlen && strncmp(s, units[i].name, n) == 0) best = i, bestlen = n;
        }
        if (!bestlen) return SRV_DUR_SYNTAX; /* Go: "missing unit" / "unknown unit" */
        total += (whole + frac) * units[best].secs;
        s += bestlen;
        if (total > max) return neg ? SRV_DUR_NEGATIVE : SRV_DUR_RANGE;
    }
    if (neg && total > 0) return SRV_DUR_NEGATIVE;
    *out = total;
    return SRV_DUR_OK;
}

bool srv_duration_parse(const char *s, double *out)
{
    return srv_duration_parse_max(s, 1e9, out) == SRV_DUR_OK;
}
