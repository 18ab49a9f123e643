/* src/topology/addr.c — configured addresses ("host", "host:port", "[v6]:port", a bare IPv6
 * literal) split into a host and a port (SPEC §4 "Addresses").
 *
 * Strict on purpose: a config typo must fail at load time with a clear message rather than
 * become a name the resolver asks DNS about. Hostnames are limited to letters, digits, '-',
 * '_' and non-empty dot-separated labels of at most 63 bytes (one trailing dot allowed);
 * brackets only ever hold an IPv6 literal (optionally with a %zone).
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "topology/topology.h"

static int fail(char *err, size_t errlen, const char *s, const char *why)
{
    /* the input is cut so that the reason always fits a log line */
    if (err && errlen)
        snprintf(err, errlen, "bad address \"%.64s%s\": %s", s, strlen(s) > 64 ? "..." : "", why);
    return -1;
}

/* An IPv6 literal, optionally followed by "%zone" (interface name or number). */
static int is_ipv6_literal(const char *s, size_t len)
{
    char buf[INET6_ADDRSTRLEN + 1];
    const char *pct = memchr(s, '%', len);
    size_t alen = pct ? (size_t)(pct - s) : len;
    if (alen == 0 || alen >= sizeof buf) return 0;
    if (pct) {
        size_t zlen = len - alen - 1;
        if (zlen == 0 || zlen >= 16) return 0; /* IF_NAMESIZE */
        for (size_t i = 0; i < zlen; i++) {
            unsigned char c = (unsigned char)pct[1 + i];
            if (c <= ' ' || c >= 0x7f || c == '%' || c == ']' || c == '[') return 0;
        }
    }
    memcpy(buf, s, alen);
    buf[alen] = '\0';
    unsigned char a[16];
    return inet_pton(AF_INET6, buf, a) == 1;
}

/* A hostname or dotted IPv4: labels of [A-Za-z0-9_-], 1..63 bytes, one optional final dot. */
static const char *hostname_problem(const char *s, size_t len)
{
    if (len == 0) return "missing host";
    if (len > 254 || (len == 254 && s[253] != '.')) return "host name too long";
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (label == 0) return "empty label in host name";
            label = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return "invalid character in host name";
        if (++label > 63) return "host name label over 63 bytes";
    }
    return NULL;
}

static int parse_port(const char *p, uint16_t *port)
{
    size_t n = strlen(p);
    if (n == 0 || n > 5) return -1;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return -1;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    if (v == 0 || v > 65535) return -1;
    *port = (uint16_t)v;
    return 0;
}

int topo_parse_hostport(const char *s, uint16_t default_port, char host[TOPO_HOST_MAX],
                        uint16_t *port, char *err, size_t errlen)
{
    if (!s || !*s) return fail(err, errlen, s ? s : "", "missing host");
    for (const char *c = s; *c; c++)
        if ((unsigned char)*c <= ' ' || (unsigned char)*c == 0x7f)
            return fail(err, errlen, s, "contains whitespace or a control character");

    size_t len = strlen(s);
    const char *h;
    size_t hlen;
    const char *portstr = NULL;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close) return fail(err, errlen, s, "missing ']'");
        h = s + 1;
        hlen = (size_t)(close - h);
        if (hlen == 0) return fail(err, errlen, s, "missing host");
        if (!is_ipv6_literal(h, hlen))
            return fail(err, errlen, s, "brackets must hold an IPv6 address");
        if (close[1] == ':') {
            portstr = close + 2;
        } else if (close[1] != '\0') {
            return fail(err, errlen, s, "unexpected text after ']'");
        }
    } else {
        const char *colon = strchr(s, ':');
        if (colon && strchr(colon + 1, ':')) {
            /* Two colons or more: only a bare IPv6 literal. */
            if (!is_ipv6_literal(s, len))
                return fail(err, errlen, s, "not an IPv6 address (use [v6]:port)");
            h = s;
            hlen = len;
        } else {
            h = s;
            hlen = colon ? (size_t)(colon - s) : len;
            if (colon) portstr = colon + 1;
            if (strchr(s, '[') || strchr(s, ']')) return fail(err, errlen, s, "stray bracket");
            const char *why = hostname_problem(h, hlen);
            if (why) return fail(err, errlen, s, why);
        }
    }
    if (hlen >= TOPO_HOST_MAX) return fail(err, errlen, s, "host name too long");

    uint16_t p = default_port;
    if (portstr && parse_port(portstr, &p) != 0)
        return fail(err, errlen, s, "bad port (expected 1-65535)");

    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = p;
    return 0;
}
