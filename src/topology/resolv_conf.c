/* src/topology/resolv_conf.c — what the resolver knows before it asks anything: the
 * `resolver` directive's nameserver, /etc/resolv.conf (nameservers, search list, ndots,
 * timeout, attempts) and the hosts file, read once when the resolver is created (never on
 * the loop per lookup), and the hosts-file lookup. The lookups themselves and the DNS
 * transport are in resolve.c.
 *
 * Parsing follows glibc where it matters for Redis hostnames: at most three nameservers,
 * the last `search` or `domain` line wins, `options ndots: timeout: attempts:` capped as
 * glibc caps them; hosts-file names are case-insensitive, aliases included, and a name keeps
 * its addresses in file order.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "topology/resolve_internal.h"
#include "topology/topology.h"

#define RS_NDOTS_MAX     15 /* glibc's cap */
#define RS_TIMEOUT_MAX   30 /* seconds, glibc's cap for options timeout: */
#define RS_ATTEMPTS_MAX  5  /* glibc's cap for options attempts: */
#define RS_RESOLV_MAX    (64u * 1024)
#define RS_HOSTS_MAX     (16u * 1024 * 1024)
#define RS_HOSTS_ENT_MAX (1u << 20)
#define RS_DEFAULT_TMO   1.0
#define RS_DEFAULT_TRIES 2

/* ---- small helpers ------------------------------------------------------------------- */

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static void lower_str(char *s)
{
    for (; *s; s++) *s = lower(*s);
}

bool topo_rs_ip_literal(const char *s, size_t len, uint16_t port, struct sockaddr_storage *ss,
                        socklen_t *sslen)
{
    char buf[INET6_ADDRSTRLEN + 1 + IF_NAMESIZE + 1];
    if (len == 0 || len >= sizeof buf) return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    if (!memchr(buf, '%', len) && inet_pton(AF_INET, buf, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        *sslen = sizeof *in4;
        return true;
    }
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    char *pct = strchr(buf, '%');
    uint32_t scope = 0;
    if (pct) {
        *pct = '\0';
        const char *zone = pct + 1;
        if (!*zone) return false;
        char *end;
        unsigned long v = strtoul(zone, &end, 10);
        if (*end == '\0' && zone[0] >= '0' && zone[0] <= '9' && v <= UINT32_MAX) {
            scope = (uint32_t)v;
        } else {
            scope = if_nametoindex(zone);
            if (scope == 0) return false;
        }
    }
    if (inet_pton(AF_INET6, buf, &in6->sin6_addr) != 1) return false;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    in6->sin6_scope_id = scope;
    *sslen = sizeof *in6;
    return true;
}

void topo_rs_sockaddr_from(struct sockaddr_storage *ss, socklen_t *len, int family,
                           const uint8_t *addr, uint32_t scope, uint16_t port)
{
    memset(ss, 0, sizeof *ss);
    if (family == AF_INET) {
        struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        memcpy(&in4->sin_addr, addr, 4);
        *len = sizeof *in4;
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        memcpy(&in6->sin6_addr, addr, 16);
        in6->sin6_scope_id = scope;
        *len = sizeof *in6;
    }
}

/* Reads a whole regular file of at most `max` bytes, NUL-terminated. Returns NULL with errno
 * set (EFBIG when too large). */
static char *read_file(const char *path, size_t max, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0) goto fail;
    if (S_ISDIR(st.st_mode)) {
        errno = EISDIR;
        goto fail;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) goto fail;
    for (;;) {
        if (n == cap) {
            if (cap >= max) {
                free(buf);
                errno = EFBIG;
                goto fail;
            }
            size_t ncap = cap * 2 > max ? max : cap * 2;
            char *nb = realloc(buf, ncap + 1);
            if (!nb) {
                free(buf);
                goto fail;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t got = read(fd, buf + n, cap - n);
        if (got < 0) {
            if (errno == EINTR) continue;
            free(buf);
            goto fail;
        }
        if (got == 0) break;
        n += (size_t)got;
    }
    close(fd);
    buf[n] = '\0';
    *len = n;
    return buf;
fail : {
    int e = errno;
    close(fd);
    errno = e;
    return NULL;
}
}

/* Next whitespace-separated token of the line [*p, end) as [tok, tok+len); false at the end
 * of the line or at a comment. */
static bool next_token(const char **p, const char *end, const char **tok, size_t *len)
{
    const char *s = *p;
    while (s < end && (*s == ' ' || *s == '\t' || *s == '\r')) s++;
    if (s == end || *s == '#' || *s == ';') {
        *p = end;
        return false;
    }
    const char *e = s;
    while (e < end && *e != ' ' && *e != '\t' && *e != '\r') e++;
    *tok = s;
    *len = (size_t)(e - s);
    *p = e;
    return true;
}

static bool tok_is(const char *tok, size_t len, const char *word)
{
    return strlen(word) == len && memcmp(tok, word, len) == 0;
}

/* ---- resolv.conf --------------------------------------------------------------------- */

struct rs_conf {
    unsigned ndots, timeout, attempts; /* 0: unset (ndots: has_ndots) */
    bool has_ndots;
};

static unsigned opt_value(const char *v, size_t len, unsigned cap)
{
    unsigned n = 0;
    for (size_t i = 0; i < len && v[i] >= '0' && v[i] <= '9'; i++) {
        n = n * 10 + (unsigned)(v[i] - '0');
        if (n > cap) return cap;
    }
    return n;
}

static void search_set(struct topo_resolver *r, const char *tok, size_t len)
{
    while (len && tok[len - 1] == '.') len--; /* "example.com." is the same suffix */
    if (len == 0 || len >= TOPO_HOST_MAX || r->nsearch == RS_SEARCH_MAX) return;
    memcpy(r->search[r->nsearch], tok, len);
    r->search[r->nsearch][len] = '\0';
    r->nsearch++;
}

static void parse_resolv_conf(struct topo_resolver *r, const char *text, size_t len,
                              uint16_t ns_port, bool keep_ns, struct rs_conf *c)
{
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *tok;
        size_t tl;
        const char *cur = p;
        p = nl ? nl + 1 : end;
        if (!next_token(&cur, le, &tok, &tl)) continue;
        if (tok_is(tok, tl, "nameserver")) {
            if (!keep_ns || !next_token(&cur, le, &tok, &tl) || r->nns == RS_NS_MAX) continue;
            if (topo_rs_ip_literal(tok, tl, ns_port, &r->ns[r->nns], &r->nslen[r->nns])) r->nns++;
        } else if (tok_is(tok, tl, "search") || tok_is(tok, tl, "domain")) {
            /* the last search or domain line wins */
            bool domain = tok_is(tok, tl, "domain");
            r->nsearch = 0;
            while (next_token(&cur, le, &tok, &tl)) {
                search_set(r, tok, tl);
                if (domain) break;
            }
        } else if (tok_is(tok, tl, "options")) {
            while (next_token(&cur, le, &tok, &tl)) {
                if (tl > 6 && memcmp(tok, "ndots:", 6) == 0) {
                    c->ndots = opt_value(tok + 6, tl - 6, RS_NDOTS_MAX);
                    c->has_ndots = true;
                } else if (tl > 8 && memcmp(tok, "timeout:", 8) == 0) {
                    c->timeout = opt_value(tok + 8, tl - 8, RS_TIMEOUT_MAX);
                } else if (tl > 9 && memcmp(tok, "attempts:", 9) == 0) {
                    c->attempts = opt_value(tok + 9, tl - 9, RS_ATTEMPTS_MAX);
                }
            }
        }
    }
}

/* ---- hosts file ---------------------------------------------------------------------- */

static int host_cmp(const void *a, const void *b)
{
    const struct rs_host *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c) return c;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Parses the hosts file in place: names are lowercased and NUL-terminated inside `text`. */
static int parse_hosts(struct topo_resolver *r, char *text, size_t len)
{
    size_t cap = 0;
    char *p = text, *end = text + len;
    uint32_t seq = 0;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *le = nl ? nl : end;
        char *line = p;
        p = nl ? nl + 1 : end;
        char *hash = memchr(line, '#', (size_t)(le - line));
        if (hash) le = hash;
        const char *tok;
        size_t tl;
        const char *cur = line;
        if (!next_token(&cur, le, &tok, &tl)) continue;
        struct sockaddr_storage ss;
        socklen_t sl;
        if (!topo_rs_ip_literal(tok, tl, 0, &ss, &sl)) continue;
        while (next_token(&cur, le, &tok, &tl)) {
            if (tl >= TOPO_HOST_MAX) continue;
            if (r->nhosts == RS_HOSTS_ENT_MAX) return 0;
            if (r->nhosts == cap) {
                size_t ncap = cap ? cap * 2 : 64;
                struct rs_host *nh = realloc(r->hosts, ncap * sizeof *nh);
                if (!nh) return -1;
                r->hosts = nh;
                cap = ncap;
            }
            struct rs_host *h = &r->hosts[r->nhosts++];
            memset(h, 0, sizeof *h);
            char *name = (char *)tok;
            /* Terminated in place: the byte overwritten is a separator, '#', '\n' or the
             * final NUL (read_file adds it), never part of a name. */
            name[tl] = '\0';
            while (tl > 1 && name[tl - 1] == '.') name[--tl] = '\0';
            lower_str(name);
            h->name = name;
            h->seq = seq++;
            if (ss.ss_family == AF_INET) {
                h->family = AF_INET;
                memcpy(h->addr, &((struct sockaddr_in *)&ss)->sin_addr, 4);
            } else {
                struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
                h->family = AF_INET6;
                memcpy(h->addr, &in6->sin6_addr, 16);
                h->scope = in6->sin6_scope_id;
            }
            if (cur >= le) break; /* the terminator replaced the line end */
            cur++;
        }
    }
    if (r->nhosts) qsort(r->hosts, r->nhosts, sizeof *r->hosts, host_cmp);
    return 0;
}

bool topo_rs_hosts_lookup(const struct topo_resolver *r, const char *name, uint16_t port,
                          struct topo_addrs *out)
{
    char key[TOPO_HOST_MAX];
    size_t n = strlen(name);
    if (n >= sizeof key) return false;
    memcpy(key, name, n + 1);
    while (n > 1 && key[n - 1] == '.') key[--n] = '\0';
    lower_str(key);
    size_t lo = 0, hi = r->nhosts;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(r->hosts[mid].name, key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    out->n = 0;
    for (int pass = 0; pass < 2; pass++) {
        int fam = pass == 0 ? AF_INET : AF_INET6;
        for (size_t i = lo; i < r->nhosts && strcmp(r->hosts[i].name, key) == 0; i++) {
            const struct rs_host *h = &r->hosts[i];
            if (h->family != fam || out->n == TOPO_ADDRS_MAX) continue;
            topo_rs_sockaddr_from(&out->addr[out->n], &out->len[out->n], fam, h->addr, h->scope,
                                  port);
            out->n++;
        }
    }
    return out->n > 0;
}

/* ---- loading ------------------------------------------------------------------------- */

int topo_rs_conf_load(struct topo_resolver *r, const struct topo_resolver_opts *o,
                      struct resp_err *err)
{
    r->ndots = 1;

    if (o->nameserver) {
        char host[TOPO_HOST_MAX], why[160];
        uint16_t port;
        if (topo_parse_hostport(o->nameserver, 53, host, &port, why, sizeof why) != 0) {
            resp_err_set(err, RESP_EK_OTHER, "resolver: %s", why);
            return -1;
        }
        if (!topo_rs_ip_literal(host, strlen(host), port, &r->ns[0], &r->nslen[0])) {
            resp_err_set(err, RESP_EK_OTHER, "resolver \"%s\": not an IP address", o->nameserver);
            return -1;
        }
        r->nns = 1;
    }

    const char *rpath = o->resolv_conf ? o->resolv_conf : "/etc/resolv.conf";
    struct rs_conf conf = {0};
    size_t len;
    char *text = read_file(rpath, RS_RESOLV_MAX, &len);
    if (text) {
        parse_resolv_conf(r, text, len, o->resolv_conf_port ? o->resolv_conf_port : 53,
                          !o->nameserver, &conf);
        free(text);
        if (r->nns == 0)
            snprintf(r->no_ns, sizeof r->no_ns,
                     "no nameserver: %s has no nameserver line and no resolver set", rpath);
    } else if (errno == ENOENT) {
        if (r->nns == 0)
            snprintf(r->no_ns, sizeof r->no_ns, "no nameserver: %s missing and no resolver set",
                     rpath);
    } else {
        if (r->nns == 0)
            snprintf(r->no_ns, sizeof r->no_ns, "no nameserver: %s: %s and no resolver set", rpath,
                     strerror(errno));
    }
    if (conf.has_ndots) r->ndots = conf.ndots;
    r->timeout = o->timeout > 0 ? o->timeout : conf.timeout ? conf.timeout : RS_DEFAULT_TMO;
    r->attempts = o->attempts > 0 ? (unsigned)o->attempts
                  : conf.attempts ? conf.attempts
                                  : RS_DEFAULT_TRIES;

    const char *hpath = o->hosts_file ? o->hosts_file : "/etc/hosts";
    r->hosts_text = read_file(hpath, RS_HOSTS_MAX, &len);
    if (r->hosts_text) {
        if (parse_hosts(r, r->hosts_text, len) != 0) {
            resp_err_set(err, RESP_EK_OTHER, "resolver: out of memory reading %s", hpath);
            return -1;
        }
    } else if (errno != ENOENT) {
        resp_err_set(err, RESP_EK_OTHER, "resolver: %s: %s", hpath, strerror(errno));
        return -1;
    }
    return 0;
}

void topo_rs_conf_free(struct topo_resolver *r)
{
    free(r->hosts);
    free(r->hosts_text);
    r->hosts = NULL;
    r->hosts_text = NULL;
    r->nhosts = 0;
}
