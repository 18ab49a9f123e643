/* src/server/corefile.c — the Corefile of redis-cache-dns: server blocks and their
 * directives (SPEC §5), parsed from the tokens of src/config into struct srv_config.
 *
 * A server block is `KEY... { directives }`; a key is `[dns://]ZONE[:PORT]` (port 53 when
 * none, zone "." when empty, as in `:1053`). Keys may also be separated by commas and
 * continue on the next line after a trailing comma (Caddy's form). A lone block without
 * braces runs to the end of the file (Caddy allows it when it is the only block).
 *
 * `import` and `(snippets)` are expanded on tokens first (src/config/import.c), so nothing
 * here sees them; tokens keep their own file and line, and errors name the imported file.
 *
 * The directives' own parsers live with their plugins (cache: l1.c, forward: forward.c,
 * redis_cache: src/plugin/config.c); this file walks the blocks, dispatches, enforces the
 * rules across directives and blocks, and collects every error: after an error the rest of
 * that block is skipped and parsing goes on with the next block, so `-check` lists them all.
 *
 * Choices where CoreDNS leaves room or does more than we do yet:
 *   - keys of one block must share a port (CoreDNS splits such a block; we reject it);
 *   - the same zone on the same port twice is an error whatever `bind` says;
 *   - cache, forward, redis_cache, errors, health, ready, prometheus, loop and timeouts
 *     may appear once per block (CoreDNS's plugin.ErrOnce); log may repeat; bind
 *     accumulates (duplicates dropped);
 *   - HTTP addresses need a port (net.SplitHostPort, as CoreDNS); the host is empty (all
 *     addresses), an IP literal, or `localhost`, stored as 127.0.0.1;
 *   - health and ready are one listener each per process: every block naming them must
 *     name the same address; prometheus addresses are collected once each;
 *   - `cache` and `redis_cache` without zones get the block's zones filled in here.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "plugin/plugin.h"
#include "server/server.h"

const char srv_default_corefile[] = ".:1053 {\n"
                                    "    bind 127.0.0.1\n"
                                    "    errors\n"
                                    "    cache\n"
                                    "    redis_cache\n"
                                    "    forward . /etc/resolv.conf\n"
                                    "    prometheus 127.0.0.1:9153\n"
                                    "}\n";

/* Where a process-wide listener was first configured. */
struct http_site {
    struct srv_http_addr addr;
    const char *what; /* "health", "ready", "prometheus" */
    unsigned line;
};

struct pstate {
    struct srv_config *cfg;
    const struct cfg_tokens *t;
    struct cfg_error *errs;
    size_t max, nerrs;
    size_t cap; /* of cfg->blocks */
    unsigned health_line, ready_line;
    struct http_site sites[SRV_LISTENERS_MAX + 2];
    size_t nsites;
};

static void add_err(struct pstate *p, const struct cfg_error *e)
{
    if (p->errs && p->nerrs < p->max) p->errs[p->nerrs] = *e;
    p->nerrs++;
}

/* Records an error at token `t` (or at line 1 of the file without one). Returns -1. */
static int perr(struct pstate *p, const struct cfg_token *t, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int perr(struct pstate *p, const struct cfg_token *t, const char *fmt, ...)
{
    struct cfg_error e;
    memset(&e, 0, sizeof e);
    if (t) {
        snprintf(e.file, sizeof e.file, "%s", t->file ? t->file : "");
        e.line = t->line;
    } else {
        snprintf(e.file, sizeof e.file, "%s", p->cfg->file);
        e.line = 1;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.msg, sizeof e.msg, fmt, ap);
    va_end(ap);
    add_err(p, &e);
    return -1;
}

/* A token's text for messages: at most 64 bytes. */
#define SHOW(t) (int)((t)->len > 64 ? 64 : (t)->len), (t)->text

/* ---- zones and keys ------------------------------------------------------------------ */

/* Normalizes `in` (n bytes) to lowercase presentation with a trailing dot in out[256] and
 * its wire form in wire[255]. Returns NULL or why it is not a zone we accept. */
static const char *zone_norm(const char *in, size_t n, char *out, uint8_t *wire, size_t *wlen)
{
    if (n == 0 || (n == 1 && in[0] == '.')) {
        strcpy(out, ".");
        wire[0] = 0;
        *wlen = 1;
        return NULL;
    }
    if (memchr(in, '/', n)) return "reverse zones in CIDR form are not supported yet";
    if (n > 254 || (n == 254 && in[n - 1] != '.')) return "zone name too long";
    size_t o = 0, w = 0, lab = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)in[i];
        if (ch == '.') {
            if (i == 0 || in[i - 1] == '.') return "empty label in zone name";
            out[o++] = '.';
            continue;
        }
        if (ch == '\\' || ch <= ' ' || ch >= 0x7f || ch == '"' || ch == '\'' || ch == '(' ||
            ch == ')' || ch == ';' || ch == '@' || ch == '[' || ch == ']' || ch == ':' ||
            ch == '{' || ch == '}')
            return "invalid character in zone name";
        out[o++] = (char)tolower(ch);
    }
    if (out[o - 1] != '.') out[o++] = '.';
    out[o] = '\0';
    /* wire form */
    for (size_t i = 0; i < o; i = lab + 1) {
        lab = i;
        while (out[lab] != '.') lab++;
        size_t ll = lab - i;
        if (ll > 63) return "zone label longer than 63 characters";
        if (w + 1 + ll + 1 > 255) return "zone name too long";
        wire[w++] = (uint8_t)ll;
        memcpy(wire + w, out + i, ll);
        w += ll;
    }
    wire[w++] = 0;
    *wlen = w;
    return NULL;
}

static bool parse_port(const char *s, size_t n, uint16_t *port)
{
    if (n == 0 || n > 5) return false;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v == 0 || v > 65535) return false;
    *port = (uint16_t)v;
    return true;
}

/* Adds one key (text, n bytes) to block b. Returns 0 or -1 (error recorded). */
static int add_key(struct pstate *p, struct srv_block *b, const struct cfg_token *t, const char *s,
                   size_t n, bool first)
{
    const char *k = s;
    size_t kn = n;
    if (kn >= 6 && strncasecmp(k, "dns://", 6) == 0) {
        k += 6;
        kn -= 6;
    } else {
        const char *sch = NULL;
        for (size_t i = 0; i + 2 < kn; i++)
            if (k[i] == ':' && k[i + 1] == '/' && k[i + 2] == '/') {
                sch = k + i;
                break;
            }
        if (sch)
            return perr(p, t, "%.*s: only dns:// server blocks are supported (not %.*s://)",
                        (int)(n > 64 ? 64 : n), s, (int)(sch - k > 16 ? 16 : sch - k), k);
    }
    uint16_t port = 53;
    const char *colon = memchr(k, ':', kn);
    size_t zn = kn;
    if (colon) {
        zn = (size_t)(colon - k);
        if (!parse_port(colon + 1, kn - zn - 1, &port))
            return perr(p, t, "%.*s: invalid port \"%.*s\" (1-65535)", (int)(n > 64 ? 64 : n), s,
                        (int)(kn - zn - 1 > 16 ? 16 : kn - zn - 1), colon + 1);
    }
    if (!first && port != b->port)
        return perr(p, t,
                    "%.*s: the keys of one server block must share a port (%u here, %u for "
                    "%s)",
                    (int)(n > 64 ? 64 : n), s, port, b->port, b->zones[0]);
    if (b->nzones >= SRV_KEYS_MAX)
        return perr(p, t, "%.*s: too many keys in one server block (at most %d)",
                    (int)(n > 64 ? 64 : n), s, SRV_KEYS_MAX);
    char z[256];
    uint8_t wire[255];
    size_t wl = 0;
    const char *why = zone_norm(k, zn, z, wire, &wl);
    if (why) return perr(p, t, "%.*s: %s", (int)(n > 64 ? 64 : n), s, why);
    for (size_t i = 0; i < b->nzones; i++)
        if (strcmp(b->zones[i], z) == 0)
            return perr(p, t, "%.*s: zone %s appears twice in this server block",
                        (int)(n > 64 ? 64 : n), s, z);
    b->port = port;
    memcpy(b->zones[b->nzones], z, strlen(z) + 1);
    memcpy(b->zone_wire[b->nzones], wire, wl);
    b->zone_wire_len[b->nzones] = (uint8_t)wl;
    b->nzones++;
    return 0;
}

/* ---- HTTP addresses ------------------------------------------------------------------- */

/* "HOST:PORT", ":PORT", "[V6]:PORT"; HOST empty, an IP literal or localhost. */
static const char *http_addr_parse(const char *s, struct srv_http_addr *a)
{
    memset(a, 0, sizeof *a);
    size_t n = strlen(s);
    const char *host = s, *port;
    size_t hn;
    if (n > 0 && s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':') return "expected [IPv6]:PORT";
        host = s + 1;
        hn = (size_t)(rb - host);
        port = rb + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon) return "expected HOST:PORT or :PORT (the port is required)";
        hn = (size_t)(colon - s);
        if (memchr(s, ':', hn)) return "an IPv6 host needs brackets: [V6]:PORT";
        port = colon + 1;
    }
    if (!parse_port(port, strlen(port), &a->port)) return "invalid port (1-65535)";
    if (hn >= sizeof a->host) return "host too long";
    memcpy(a->host, host, hn);
    a->host[hn] = '\0';
    if (hn == 0) return NULL;
    if (strcasecmp(a->host, "localhost") == 0) {
        strcpy(a->host, "127.0.0.1");
        return NULL;
    }
    unsigned char buf[16];
    bool v6 = s[0] == '[';
    if (inet_pton(v6 ? AF_INET6 : AF_INET, a->host, buf) != 1)
        return v6 ? "not an IPv6 address" : "host must be an IP address or localhost";
    return NULL;
}

static bool http_addr_eq(const struct srv_http_addr *a, const struct srv_http_addr *b)
{
    return a->port == b->port && strcmp(a->host, b->host) == 0;
}

static void http_addr_show(const struct srv_http_addr *a, char *buf, size_t cap)
{
    if (strchr(a->host, ':'))
        snprintf(buf, cap, "[%s]:%u", a->host, a->port);
    else
        snprintf(buf, cap, "%s:%u", a->host, a->port);
}

/* Registers a listener `what` at `a`; an address already used by another endpoint is an
 * error (one listener serves one endpoint). Returns 0 or -1 (error recorded). */
static int site_claim(struct pstate *p, const struct cfg_token *d, const char *what,
                      const struct srv_http_addr *a)
{
    for (size_t i = 0; i < p->nsites; i++) {
        if (!http_addr_eq(&p->sites[i].addr, a)) continue;
        if (strcmp(p->sites[i].what, what) == 0) return 0;
        char b[96];
        http_addr_show(a, b, sizeof b);
        return perr(p, d, "%s: address %s is already used by %s (line %u)", what, b,
                    p->sites[i].what, p->sites[i].line);
    }
    if (p->nsites >= sizeof p->sites / sizeof p->sites[0])
        return perr(p, d, "%s: too many HTTP listeners", what);
    p->sites[p->nsites].addr = *a;
    p->sites[p->nsites].what = what;
    p->sites[p->nsites].line = d->line;
    p->nsites++;
    return 0;
}

/* ---- directives ----------------------------------------------------------------------- */

/* Per-block directive bookkeeping: the line each once-only directive was first seen at. */
struct seen {
    unsigned errors, health, ready, prometheus, cache, forward, redis_cache, loop, timeouts;
    unsigned reload;
};

static int once(struct pstate *p, const struct cfg_token *d, unsigned *first)
{
    if (*first)
        return perr(p, d, "%.*s: only one %.*s per server block (first at line %u)", SHOW(d),
                    SHOW(d), *first);
    *first = d->line;
    return 0;
}

/* Directives that take no block: returns -1 (error recorded) when one follows. */
static int no_block(struct pstate *p, const struct cfg_token *d, size_t end, size_t close)
{
    if (end < close && cfg_is_open(&p->t->tok[end]))
        return perr(p, d, "%.*s: a block is not supported yet", SHOW(d));
    return 0;
}

/* health / ready / prometheus [ADDR] */
static int http_directive(struct pstate *p, const struct cfg_token *d, size_t nargs,
                          const char *def, struct srv_http_addr *out)
{
    if (nargs > 1) return perr(p, d, "%.*s: expected at most one address", SHOW(d));
    const char *s = nargs ? d[1].text : def;
    const char *why = http_addr_parse(s, out);
    if (why) return perr(p, nargs ? &d[1] : d, "%.*s: \"%.64s\": %s", SHOW(d), s, why);
    return 0;
}

static int d_bind(struct pstate *p, struct srv_block *b, const struct cfg_token *d, size_t nargs)
{
    if (nargs == 0) return perr(p, d, "bind: expected at least one address");
    for (size_t i = 1; i <= nargs; i++) {
        const struct cfg_token *a = &d[i];
        unsigned char buf[16];
        if (a->len >= sizeof b->binds[0] ||
            (inet_pton(AF_INET, a->text, buf) != 1 && inet_pton(AF_INET6, a->text, buf) != 1))
            return perr(p, a,
                        "bind: \"%.*s\" is not an IP address (interface names are not "
                        "supported yet)",
                        SHOW(a));
        bool dup = false;
        for (size_t k = 0; k < b->nbinds; k++) dup |= strcmp(b->binds[k], a->text) == 0;
        if (dup) continue;
        if (b->nbinds >= SRV_BINDS_MAX)
            return perr(p, a, "bind: too many addresses (at most %d)", SRV_BINDS_MAX);
        memcpy(b->binds[b->nbinds++], a->text, a->len + 1);
    }
    return 0;
}

static int d_health_ready(struct pstate *p, const struct cfg_token *d, size_t nargs, bool health)
{
    struct srv_http_addr a;
    if (http_directive(p, d, nargs, health ? ":8080" : ":8181", &a)) return -1;
    struct srv_config *cfg = p->cfg;
    bool *has = health ? &cfg->has_health : &cfg->has_ready;
    struct srv_http_addr *cur = health ? &cfg->health : &cfg->ready;
    unsigned *line = health ? &p->health_line : &p->ready_line;
    const char *what = health ? "health" : "ready";
    if (*has && !http_addr_eq(cur, &a)) {
        char b1[96], b2[96];
        http_addr_show(&a, b1, sizeof b1);
        http_addr_show(cur, b2, sizeof b2);
        return perr(p, d, "%s: %s differs from %s at line %u (one %s listener per process)", what,
                    b1, b2, *line, what);
    }
    if (site_claim(p, d, what, &a)) return -1;
    if (!*has) {
        *has = true;
        *cur = a;
        *line = d->line;
    }
    return 0;
}

static int d_prometheus(struct pstate *p, const struct cfg_token *d, size_t nargs)
{
    struct srv_http_addr a;
    if (http_directive(p, d, nargs, "localhost:9153", &a)) return -1;
    struct srv_config *cfg = p->cfg;
    if (site_claim(p, d, "prometheus", &a)) return -1;
    for (size_t i = 0; i < cfg->nprometheus; i++)
        if (http_addr_eq(&cfg->prometheus[i], &a)) return 0;
    if (cfg->nprometheus >= SRV_LISTENERS_MAX)
        return perr(p, d, "prometheus: too many addresses (at most %d)", SRV_LISTENERS_MAX);
    cfg->prometheus[cfg->nprometheus++] = a;
    return 0;
}

/* `timeouts { read D; write D; idle D }` (CoreDNS's; here for the TCP listener): D a Go
 * duration or bare seconds, 1s..24h; at least one option. CoreDNS's newer `max_queries`
 * is rejected rather than ignored. */
static int d_timeouts(struct pstate *p, struct srv_block *b, const struct cfg_token *d,
                      size_t nargs, size_t end, size_t close)
{
    const struct cfg_tokens *t = p->t;
    if (nargs) return perr(p, &d[1], "timeouts: arguments are not supported (use a block)");
    if (end >= close || !cfg_is_open(&t->tok[end]))
        return perr(p, d, "timeouts: a block with read, write or idle is required");
    struct cfg_tokens view = {t->tok, close, NULL};
    size_t bclose = cfg_block_end(&view, end);
    size_t i = end + 1, n = 0;
    while (i < bclose) {
        const struct cfg_token *o = &t->tok[i];
        struct cfg_cursor c = {&view, i};
        size_t oend = cfg_args_end(&c);
        if (oend < bclose && cfg_is_open(&t->tok[oend]))
            return perr(p, o, "timeouts: %.*s: takes no block", SHOW(o));
        double *dst = cfg_is(o, "read")    ? &b->tcp_read
                      : cfg_is(o, "write") ? &b->tcp_write
                      : cfg_is(o, "idle")  ? &b->tcp_idle
                                           : NULL;
        if (!dst) return perr(p, o, "timeouts: unknown option \"%.*s\"", SHOW(o));
        if (oend - i != 2) return perr(p, o, "timeouts: %.*s: expected one duration", SHOW(o));
        const struct cfg_token *v = &t->tok[i + 1];
        double secs = -1;
        size_t k = 0;
        while (k < v->len && v->text[k] >= '0' && v->text[k] <= '9') k++;
        if (k == v->len && k > 0 && k < 10)
            secs = strtod(v->text, NULL); /* bare seconds, as CoreDNS */
        else if (!srv_duration_parse(v->text, &secs))
            secs = -1;
        if (secs < 0) return perr(p, v, "timeouts: invalid duration \"%.*s\"", SHOW(v));
        if (secs < 1 || secs > 86400)
            return perr(p, v, "timeouts: %.*s: %.*s must be between 1s and 24h", SHOW(o), SHOW(v));
        *dst = secs;
        n++;
        i = oend;
    }
    if (n == 0) return perr(p, d, "timeouts: a block with no timeouts");
    return 0;
}

/* `reload [INTERVAL [JITTER]]` (srv_reload_args): one timer per process, so every block
 * naming it must give the same values. */
static int d_reload(struct pstate *p, const struct cfg_token *d, size_t nargs)
{
    if (nargs > 2) return perr(p, &d[3], "reload: expected at most INTERVAL and JITTER");
    double iv = 0, jt = 0;
    const char *why =
        srv_reload_args(nargs > 0 ? d[1].text : NULL, nargs > 1 ? d[2].text : NULL, &iv, &jt);
    if (why) return perr(p, nargs ? &d[1] : d, "reload: %s", why);
    struct srv_config *cfg = p->cfg;
    if (cfg->has_reload && (cfg->reload_interval != iv || cfg->reload_jitter != jt))
        return perr(p, d, "reload: differs from an earlier reload (one setting per process)");
    cfg->has_reload = true;
    cfg->reload_interval = iv;
    cfg->reload_jitter = jt;
    return 0;
}

/* health's block: `lameduck DURATION` (CoreDNS's only option); the largest one applies. */
static int d_health_block(struct pstate *p, const struct cfg_token *d, size_t open, size_t close)
{
    const struct cfg_tokens *t = p->t;
    struct cfg_tokens view = {t->tok, close, NULL};
    size_t bclose = cfg_block_end(&view, open);
    (void)d;
    for (size_t i = open + 1; i < bclose;) {
        const struct cfg_token *o = &t->tok[i];
        struct cfg_cursor c = {&view, i};
        size_t oend = cfg_args_end(&c);
        if (oend < bclose && cfg_is_open(&t->tok[oend]))
            return perr(p, o, "health: %.*s: takes no block", SHOW(o));
        if (!cfg_is(o, "lameduck"))
            return perr(p, o, "health: unknown option \"%.*s\" (only lameduck)", SHOW(o));
        if (oend - i != 2) return perr(p, o, "health: lameduck: expected one duration");
        const struct cfg_token *v = &t->tok[i + 1];
        double secs = 0;
        if (!srv_duration_parse(v->text, &secs) || secs > 3600)
            return perr(p, v, "health: lameduck: invalid duration \"%.*s\" (0 to 1h: 5s, 500ms)",
                        SHOW(v));
        if (secs > p->cfg->health_lameduck) p->cfg->health_lameduck = secs;
        i = oend;
    }
    return 0;
}

/* Parses the directives of tokens [i, close) into b. Returns 0 or -1 (error recorded). */
static int parse_directives(struct pstate *p, struct srv_block *b, size_t i, size_t close)
{
    const struct cfg_tokens *t = p->t;
    struct seen seen;
    memset(&seen, 0, sizeof seen);
    /* The directive parsers see only this block's tokens: a view ending at `close`. */
    struct cfg_tokens view = {t->tok, close, NULL};
    while (i < close) {
        const struct cfg_token *d = &t->tok[i];
        if (cfg_is_open(d) || cfg_is_close(d))
            return perr(p, d, "unexpected \"%.*s\" (expected a directive)", SHOW(d));
        struct cfg_cursor c = {&view, i};
        size_t end = cfg_args_end(&c);
        size_t nargs = end - i - 1;
        size_t next = end;
        if (end < close && cfg_is_open(&t->tok[end])) {
            size_t bclose = cfg_block_end(&view, end);
            if (bclose >= close)
                return perr(p, &t->tok[end], "%.*s: missing '}' to close the block opened here",
                            SHOW(d));
            next = bclose + 1;
        }
        int rc = 0;
        if (cfg_is(d, "bind")) {
            rc = no_block(p, d, end, close) || d_bind(p, b, d, nargs);
        } else if (cfg_is(d, "errors")) {
            rc = once(p, d, &seen.errors) || no_block(p, d, end, close);
            if (!rc && nargs) rc = perr(p, &d[1], "errors: arguments are not supported yet");
            b->errors = true;
        } else if (cfg_is(d, "log")) {
            rc = no_block(p, d, end, close);
            if (!rc && nargs) rc = perr(p, &d[1], "log: arguments are not supported yet");
            b->log = true;
        } else if (cfg_is(d, "health")) {
            rc = once(p, d, &seen.health) || d_health_ready(p, d, nargs, true);
            if (!rc && end < close && cfg_is_open(&t->tok[end]))
                rc = d_health_block(p, d, end, close);
        } else if (cfg_is(d, "ready")) {
            rc = once(p, d, &seen.ready) || no_block(p, d, end, close) ||
                 d_health_ready(p, d, nargs, false);
        } else if (cfg_is(d, "prometheus")) {
            rc = once(p, d, &seen.prometheus) || no_block(p, d, end, close) ||
                 d_prometheus(p, d, nargs);
        } else if (cfg_is(d, "cache")) {
            rc = once(p, d, &seen.cache);
            if (!rc) {
                struct cfg_error e;
                memset(&e, 0, sizeof e);
                if (l1_opts_parse(&c, &b->cache, &e)) {
                    add_err(p, &e);
                    rc = -1;
                }
                b->has_cache = true;
            }
        } else if (cfg_is(d, "forward")) {
            rc = once(p, d, &seen.forward);
            if (!rc) {
                struct cfg_error e;
                memset(&e, 0, sizeof e);
                fwd_opts_init(&b->forward);
                if (fwd_opts_parse(&c, &b->forward, &e)) {
                    add_err(p, &e);
                    rc = -1;
                }
                b->has_forward = true;
            }
        } else if (cfg_is(d, "redis_cache")) {
            if (seen.redis_cache)
                rc = perr(p, d,
                          "redis_cache: only one redis_cache per server block (first at line "
                          "%u)",
                          seen.redis_cache);
            if (!rc) {
                seen.redis_cache = d->line;
                b->redis_cache = malloc(sizeof *b->redis_cache);
                if (!b->redis_cache) return perr(p, d, "redis_cache: out of memory");
                struct cfg_error e;
                memset(&e, 0, sizeof e);
                if (rcp_config_parse(&c, b->redis_cache, &e)) {
                    add_err(p, &e);
                    rc = -1;
                }
            }
        } else if (cfg_is(d, "loop")) {
            rc = once(p, d, &seen.loop) || no_block(p, d, end, close);
            if (!rc && nargs) rc = perr(p, &d[1], "loop: takes no arguments");
            b->loop = true;
        } else if (cfg_is(d, "timeouts")) {
            rc = once(p, d, &seen.timeouts) || d_timeouts(p, b, d, nargs, end, close);
        } else if (cfg_is(d, "reload")) {
            rc = once(p, d, &seen.reload) || no_block(p, d, end, close) || d_reload(p, d, nargs);
        } else {
            rc = perr(p, d, "%.*s: unknown directive", SHOW(d));
        }
        if (rc) return -1;
        i = next;
    }
    return 0;
}

/* ---- blocks ---------------------------------------------------------------------------- */

static void block_free(struct srv_block *b)
{
    free(b->redis_cache);
    b->redis_cache = NULL;
}

static void fill_label(struct srv_block *b)
{
    if (b->nbinds == 0)
        snprintf(b->server_label, sizeof b->server_label, "dns://:%u", b->port);
    else if (strchr(b->binds[0], ':'))
        snprintf(b->server_label, sizeof b->server_label, "dns://[%s]:%u", b->binds[0], b->port);
    else
        snprintf(b->server_label, sizeof b->server_label, "dns://%s:%u", b->binds[0], b->port);
}

/* cache and redis_cache without zones serve the block's zones. */
static void fill_zones(struct srv_block *b)
{
    if (b->has_cache && b->cache.nzones == 0) {
        for (size_t i = 0; i < b->nzones; i++)
            memcpy(b->cache.zones[i], b->zones[i], strlen(b->zones[i]) + 1);
        b->cache.nzones = b->nzones;
    }
    struct rcp_config *r = b->redis_cache;
    if (r && r->nzones == 0) {
        for (size_t i = 0; i < b->nzones && i < RCP_ZONES_MAX; i++)
            snprintf(r->zones[i], sizeof r->zones[i], "%s", b->zones[i]);
        r->nzones = b->nzones;
    }
}

/* A zone+port already served by an earlier block is an error at this block's key line. */
static int check_dups(struct pstate *p, const struct srv_block *b, const struct cfg_token *kt)
{
    const struct srv_config *cfg = p->cfg;
    for (size_t k = 0; k < cfg->nblocks; k++) {
        const struct srv_block *o = &cfg->blocks[k];
        if (o->port != b->port) continue;
        for (size_t i = 0; i < b->nzones; i++)
            for (size_t j = 0; j < o->nzones; j++)
                if (strcmp(b->zones[i], o->zones[j]) == 0)
                    return perr(p, kt,
                                "dns://%s:%u: zone already served by the server block at line "
                                "%u",
                                b->zones[i], b->port, o->line);
    }
    return 0;
}

static int append_block(struct pstate *p, struct srv_block *b, const struct cfg_token *kt)
{
    struct srv_config *cfg = p->cfg;
    if (cfg->nblocks >= SRV_BLOCKS_MAX)
        return perr(p, kt, "too many server blocks (at most %d)", SRV_BLOCKS_MAX);
    if (cfg->nblocks == p->cap) {
        size_t ncap = p->cap ? p->cap * 2 : 2;
        if (ncap > SRV_BLOCKS_MAX) ncap = SRV_BLOCKS_MAX;
        struct srv_block *nb = realloc(cfg->blocks, ncap * sizeof *nb);
        if (!nb) return perr(p, kt, "out of memory");
        cfg->blocks = nb;
        p->cap = ncap;
    }
    cfg->blocks[cfg->nblocks++] = *b;
    return 0;
}

/* Parses the server block whose keys start at *pos; leaves *pos past it (past its '}', or
 * at the end). Returns 0 or -1 (errors recorded). */
static int parse_block(struct pstate *p, size_t *pos, struct srv_block *b)
{
    const struct cfg_tokens *t = p->t;
    size_t i = *pos;
    const struct cfg_token *kt = &t->tok[i];
    memset(b, 0, sizeof *b);
    snprintf(b->file, sizeof b->file, "%s", kt->file ? kt->file : "");
    b->line = kt->line;

    if (cfg_is_open(kt)) {
        size_t close = cfg_block_end(t, i);
        *pos = close < t->n ? close + 1 : t->n;
        return perr(p, kt, "expected server block keys before '{'");
    }

    /* Keys: until an unquoted '{' (or the end of their logical line when no comma asks for
     * more). */
    size_t open = SIZE_MAX;
    int rc = 0;
    bool more = true;
    while (i < t->n && more) {
        struct cfg_cursor c = {t, i};
        size_t end = cfg_args_end(&c);
        more = false;
        for (size_t k = i; k < end; k++) {
            const struct cfg_token *tk = &t->tok[k];
            if (cfg_is_close(tk)) {
                rc = perr(p, tk, "unexpected '}' (no server block open)");
                *pos = k + 1;
                return -1;
            }
            size_t n = tk->len;
            bool comma = n > 0 && tk->text[n - 1] == ',';
            if (comma) n--;
            if (!rc && n > 0) {
                rc = add_key(p, b, tk, tk->text, n, b->nzones == 0);
            } else if (!rc && !comma) {
                rc = perr(p, tk, "empty server block key");
            }
            if (k == end - 1 && comma) more = true;
        }
        i = end;
    }
    if (i < t->n && cfg_is_open(&t->tok[i])) {
        open = i;
    } else if (!rc && b->nzones == 0) {
        rc = perr(p, kt, "expected server block keys");
    }
    if (open == SIZE_MAX && i < t->n && cfg_is_close(&t->tok[i])) {
        /* keys followed by '}' on the same line */
        rc = rc ? rc : perr(p, &t->tok[i], "unexpected '}' (no server block open)");
        *pos = i + 1;
        return -1;
    }

    size_t body, close;
    if (open != SIZE_MAX) {
        close = cfg_block_end(t, open);
        body = open + 1;
        if (close >= t->n) {
            if (!rc) rc = perr(p, &t->tok[open], "missing '}' to close the server block");
            *pos = t->n;
            return -1;
        }
        *pos = close + 1;
    } else {
        /* Without braces the block runs to the end: only as the file's only block. */
        if (rc) {
            *pos = i; /* a bad key line: go on with the next line */
            return -1;
        }
        body = i;
        close = t->n;
        *pos = t->n;
        if (p->cfg->nblocks > 0)
            return perr(p, kt,
                        "expected '{' after the server block keys (only a lone block "
                        "may omit the braces)");
    }
    if (rc) return -1;
    if (b->nzones == 0) return perr(p, kt, "expected server block keys");
    if (check_dups(p, b, kt)) return -1;
    if (parse_directives(p, b, body, close)) return -1;
    fill_label(b);
    fill_zones(b);
    return 0;
}

int srv_config_parse(struct srv_config *cfg, const char *file, const char *text, size_t len,
                     struct cfg_error *errs, size_t max, size_t *nerrs)
{
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->file, sizeof cfg->file, "%s", file ? file : "");
    if (nerrs) *nerrs = 0;
    struct pstate p;
    memset(&p, 0, sizeof p);
    p.cfg = cfg;
    p.errs = errs;
    p.max = max;

    struct cfg_tokens toks;
    struct cfg_error e;
    memset(&e, 0, sizeof e);
    if (cfg_lex_expand(&toks, cfg->file, text ? text : "", text ? len : 0, &e) != 0) {
        add_err(&p, &e);
        if (nerrs) *nerrs = p.nerrs < max ? p.nerrs : max;
        return -1;
    }
    p.t = &toks;
    struct srv_block *b = malloc(sizeof *b);
    if (!b) {
        cfg_tokens_free(&toks);
        perr(&p, NULL, "out of memory");
        if (nerrs) *nerrs = p.nerrs < max ? p.nerrs : max;
        return -1;
    }
    size_t pos = 0;
    while (pos < toks.n) {
        size_t before = pos;
        const struct cfg_token *kt = &toks.tok[pos];
        if (parse_block(&p, &pos, b) == 0) {
            if (append_block(&p, b, kt)) block_free(b);
        } else {
            block_free(b);
        }
        if (pos <= before) pos = before + 1; /* never loops */
    }
    free(b);
    if (p.nerrs == 0 && cfg->nblocks == 0) perr(&p, NULL, "no server blocks");
    cfg_tokens_free(&toks);
    if (nerrs) *nerrs = p.nerrs < max ? p.nerrs : max;
    if (p.nerrs) {
        srv_config_free(cfg);
        return -1;
    }
    return 0;
}

void srv_config_free(struct srv_config *cfg)
{
    if (!cfg) return;
    for (size_t i = 0; i < cfg->nblocks; i++) block_free(&cfg->blocks[i]);
    free(cfg->blocks);
    cfg->blocks = NULL;
    cfg->nblocks = 0;
}

/* ---- routing --------------------------------------------------------------------------- */

const struct srv_block *srv_config_route(const struct srv_config *cfg, uint16_t port,
                                         const struct dns_question *q)
{
    const struct srv_block *best = NULL;
    size_t best_len = 0;
    size_t L = q->name_len;
    if (L == 0 || L > DNS_NAME_MAX) return NULL;
    for (size_t k = 0; k < cfg->nblocks; k++) {
        const struct srv_block *b = &cfg->blocks[k];
        if (b->port != port) continue;
        for (size_t z = 0; z < b->nzones; z++) {
            size_t Z = b->zone_wire_len[z];
            if (Z > L || (best && Z <= best_len)) continue;
            /* Walk the name's label boundaries to the one Z bytes from the end. */
            size_t off = 0;
            while (off < L && L - off > Z) off += (size_t)q->name_lc[off] + 1;
            if (off < L && L - off == Z && memcmp(q->name_lc + off, b->zone_wire[z], Z) == 0) {
                best = b;
                best_len = Z;
            }
        }
    }
    return best;
}
