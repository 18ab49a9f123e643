/* src/server/forward_config.c — the `forward` directive: `forward FROM TO... { ... }` into a
 * struct fwd_opts (fwd_opts_init, fwd_opts_parse). FROM is a zone, TO an address, a
 * dns:// URL or a resolv.conf-style file; durations are written as Go writes them, as in
 * CoreDNS's Corefile. The upstream client is forward.c.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "server/server.h"
#include "topology/topology.h"

#define FWD_DEFAULT_PORT 53
#define FWD_RESOLV_MAX   (64u * 1024) /* a resolv.conf bigger than this is an error */

void fwd_opts_init(struct fwd_opts *o)
{
    memset(o, 0, sizeof *o);
    o->policy = FWD_POLICY_RANDOM;
    o->try_timeout = 2.0;
    o->total_timeout = 5.0;
    snprintf(o->from, sizeof o->from, ".");
    o->max_fails = 2;
    o->health_check = 0.5;
    snprintf(o->hc_domain, sizeof o->hc_domain, ".");
    o->expire = 10.0;
}

/* FROM: a domain name ("." for all), optionally dns://, stored lowercase with a trailing
 * dot. Labels of letters, digits, '-', '_' (CIDR reverse zones are not supported). */
static const char *parse_from(const char *s, char out[256])
{
    if (strncasecmp(s, "dns://", 6) == 0) s += 6;
    if (!*s) return "empty FROM";
    if (strcmp(s, ".") == 0) {
        snprintf(out, 256, ".");
        return NULL;
    }
    size_t o = 0, label = 0;
    for (size_t i = 0; s[i]; i++) {
        char ch = s[i];
        if (ch == '.') {
            if (label == 0) return "empty label in FROM";
            label = 0;
        } else {
            if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '-' || ch == '_'))
                return "FROM is not a domain name";
            if (++label > DNS_LABEL_MAX) return "label over 63 bytes in FROM";
            if (ch >= 'A' && ch <= 'Z') ch = (char)(ch - 'A' + 'a');
        }
        if (o >= 253) return "FROM too long";
        out[o++] = ch;
    }
    if (out[o - 1] != '.') out[o++] = '.';
    out[o] = '\0';
    return NULL;
}

/* An IPv4 or IPv6 (optionally %zone) literal into a sockaddr; false when it is not one. */
static bool ip_literal(const char *host, uint16_t port, struct sockaddr_storage *ss, socklen_t *len)
{
    char buf[INET6_ADDRSTRLEN + 1 + IF_NAMESIZE + 1];
    size_t n = strlen(host);
    if (n == 0 || n >= sizeof buf) return false;
    memcpy(buf, host, n + 1);
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    if (!strchr(buf, '%') && inet_pton(AF_INET, buf, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        *len = sizeof *in4;
        return true;
    }
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    uint32_t scope = 0;
    char *pct = strchr(buf, '%');
    if (pct) {
        *pct = '\0';
        const char *zone = pct + 1;
        char *end;
        unsigned long v = strtoul(zone, &end, 10);
        if (*zone >= '0' && *zone <= '9' && *end == '\0' && v <= UINT32_MAX)
            scope = (uint32_t)v;
        else if ((scope = if_nametoindex(zone)) == 0)
            return false;
    }
    if (inet_pton(AF_INET6, buf, &in6->sin6_addr) != 1) return false;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    in6->sin6_scope_id = scope;
    *len = sizeof *in6;
    return true;
}

static int add_upstream(struct fwd_opts *o, const char *host, uint16_t port,
                        const struct sockaddr_storage *ss, socklen_t len)
{
    if (o->nup >= FWD_UPSTREAMS_MAX) return -1;
    struct fwd_upstream *u = &o->up[o->nup++];
    memset(u, 0, sizeof *u);
    memcpy(&u->addr, ss, len);
    u->addrlen = len;
    /* as net.JoinHostPort writes it, which is how CoreDNS labels `to` */
    if (strchr(host, ':'))
        snprintf(u->name, sizeof u->name, "[%.50s]:%u", host, port);
    else
        snprintf(u->name, sizeof u->name, "%.50s:%u", host, port);
    return 0;
}

#define TOO_MANY "more than %d upstreams"

/* The nameserver lines of a resolv.conf-style file (port 53; the format has no port). */
static int add_resolv_conf(struct fwd_opts *o, const char *path, const struct cfg_token *t,
                           struct cfg_error *err)
{
    FILE *fp = fopen(path, "r");
    if (!fp) {
        cfg_error_at(err, t, "forward: cannot read \"%s\": %s", path, strerror(errno));
        return -1;
    }
    char line[512];
    size_t total = 0, found = 0;
    int rc = 0;
    while (fgets(line, sizeof line, fp)) {
        total += strlen(line);
        if (total > FWD_RESOLV_MAX) {
            cfg_error_at(err, t, "forward: \"%s\" is over %u bytes", path, FWD_RESOLV_MAX);
            rc = -1;
            break;
        }
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (strncmp(p, "nameserver", 10) != 0 || (p[10] != ' ' && p[10] != '\t')) continue;
        p += 10;
        while (*p == ' ' || *p == '\t') p++;
        size_t n = strcspn(p, " \t\r\n#;");
        if (n == 0) continue;
        p[n] = '\0';
        struct sockaddr_storage ss;
        socklen_t len;
        if (!ip_literal(p, FWD_DEFAULT_PORT, &ss, &len)) {
            cfg_error_at(err, t, "forward: bad nameserver \"%.64s\" in \"%s\"", p, path);
            rc = -1;
            break;
        }
        if (add_upstream(o, p, FWD_DEFAULT_PORT, &ss, len) != 0) {
            cfg_error_at(err, t, "forward: " TOO_MANY, FWD_UPSTREAMS_MAX);
            rc = -1;
            break;
        }
        found++;
    }
    fclose(fp);
    if (rc == 0 && found == 0) {
        cfg_error_at(err, t, "forward: no nameservers found in \"%s\"", path);
        rc = -1;
    }
    return rc;
}

/* One TO: dns://IP[:PORT], IP[:PORT], [v6]:port, a bare IPv6 literal, or a file. */
static int parse_to(struct fwd_opts *o, const struct cfg_token *t, struct cfg_error *err)
{
    const char *s = t->text;
    bool scheme = false;
    if (strncasecmp(s, "dns://", 6) == 0) {
        s += 6;
        scheme = true;
    } else if (strncasecmp(s, "tls://", 6) == 0) {
        cfg_error_at(err, t, "forward: tls:// upstreams are not supported yet");
        return -1;
    } else if (strstr(s, "://")) {
        cfg_error_at(err, t, "forward: unsupported protocol in \"%.64s\"", s);
        return -1;
    }
    char host[TOPO_HOST_MAX], why[160] = "";
    uint16_t port = FWD_DEFAULT_PORT;
    struct sockaddr_storage ss;
    socklen_t len;
    if (topo_parse_hostport(s, FWD_DEFAULT_PORT, host, &port, why, sizeof why) == 0 &&
        ip_literal(host, port, &ss, &len)) {
        if (add_upstream(o, host, port, &ss, len) != 0) {
            cfg_error_at(err, t, "forward: " TOO_MANY, FWD_UPSTREAMS_MAX);
            return -1;
        }
        return 0;
    }
    struct stat st;
    if (!scheme && *s && stat(s, &st) == 0) {
        if (!S_ISREG(st.st_mode)) {
            cfg_error_at(err, t, "forward: \"%.64s\" is not a regular file", s);
            return -1;
        }
        return add_resolv_conf(o, s, t, err);
    }
    cfg_error_at(err, t, "forward: bad upstream \"%.64s\": not an IP address or a file", s);
    return -1;
}

/* The options of CoreDNS's forward that this server does not implement yet: refused,
 * never silently ignored. */
static const char *const fwd_not_yet[] = {
    "tls", "tls_servername", "next", "failfast_all_unhealthy_upstreams", "failover", NULL,
};

static int parse_option(struct fwd_opts *o, const struct cfg_tokens *tl, size_t i, size_t end,
                        struct cfg_error *err)
{
    const struct cfg_token *t = &tl->tok[i];
    size_t nargs = end - i - 1;
    for (size_t k = 0; fwd_not_yet[k]; k++) {
        if (cfg_is(t, fwd_not_yet[k])) {
            cfg_error_at(err, t, "forward: %s is not supported yet", fwd_not_yet[k]);
            return -1;
        }
    }
    if (cfg_is(t, "force_tcp") || cfg_is(t, "prefer_udp")) {
        if (nargs) {
            cfg_error_at(err, &tl->tok[i + 1], "forward: %s takes no arguments", t->text);
            return -1;
        }
        if (cfg_is(t, "force_tcp"))
            o->force_tcp = true;
        else
            o->prefer_udp = true;
        return 0;
    }
    if (cfg_is(t, "policy")) {
        if (nargs != 1) {
            cfg_error_at(err, t, "forward: policy takes one of random, round_robin, sequential");
            return -1;
        }
        const struct cfg_token *a = &tl->tok[i + 1];
        if (cfg_is(a, "random"))
            o->policy = FWD_POLICY_RANDOM;
        else if (cfg_is(a, "round_robin"))
            o->policy = FWD_POLICY_ROUND_ROBIN;
        else if (cfg_is(a, "sequential"))
            o->policy = FWD_POLICY_SEQUENTIAL;
        else {
            cfg_error_at(err, a, "forward: unknown policy \"%.64s\"", a->text);
            return -1;
        }
        return 0;
    }
    if (cfg_is(t, "max_fails") || cfg_is(t, "max_concurrent")) {
        if (nargs != 1) {
            cfg_error_at(err, t, "forward: %s takes one number", t->text);
            return -1;
        }
        const struct cfg_token *a = &tl->tok[i + 1];
        char *e;
        errno = 0;
        unsigned long long v = strtoull(a->text, &e, 10);
        if (!(a->text[0] >= '0' && a->text[0] <= '9') || *e || errno || v > UINT32_MAX) {
            cfg_error_at(err, a, "forward: %s: bad number \"%.64s\"", t->text, a->text);
            return -1;
        }
        if (cfg_is(t, "max_fails"))
            o->max_fails = (unsigned)v;
        else
            o->max_concurrent = (unsigned)v;
        return 0;
    }
    if (cfg_is(t, "expire") || cfg_is(t, "health_check")) {
        bool hc = cfg_is(t, "health_check");
        if (nargs < 1 || (!hc && nargs != 1)) {
            cfg_error_at(err, t,
                         hc ? "forward: health_check takes DURATION [no_rec] [domain NAME]"
                            : "forward: expire takes one duration");
            return -1;
        }
        const struct cfg_token *a = &tl->tok[i + 1];
        double d;
        if (a->text[0] == '-') {
            cfg_error_at(err, a, "forward: %s can't be negative: \"%.64s\"", t->text, a->text);
            return -1;
        }
        if (!srv_duration_parse(a->text, &d)) {
            cfg_error_at(err, a, "forward: %s: bad duration \"%.64s\"", t->text, a->text);
            return -1;
        }
        if (!hc) {
            o->expire = d;
            return 0;
        }
        o->health_check = d;
        o->hc_no_rec = false;
        snprintf(o->hc_domain, sizeof o->hc_domain, ".");
        for (size_t k = i + 2; k < end; k++) {
            const struct cfg_token *h = &tl->tok[k];
            if (cfg_is(h, "no_rec")) {
                o->hc_no_rec = true;
            } else if (cfg_is(h, "domain")) {
                if (k + 1 >= end) {
                    cfg_error_at(err, h, "forward: health_check: domain needs a name");
                    return -1;
                }
                const char *why = parse_from(tl->tok[k + 1].text, o->hc_domain);
                if (why) {
                    cfg_error_at(err, &tl->tok[k + 1],
                                 "forward: health_check: bad domain \"%.64s\"",
                                 tl->tok[k + 1].text);
                    return -1;
                }
                k++;
            } else {
                cfg_error_at(err, h, "forward: health_check: unknown option \"%.64s\"", h->text);
                return -1;
            }
        }
        return 0;
    }
    if (cfg_is(t, "except")) {
        if (nargs == 0) {
            cfg_error_at(err, t, "forward: except takes at least one zone");
            return -1;
        }
        for (size_t k = i + 1; k < end; k++) {
            if (o->nexcept >= FWD_EXCEPT_MAX) {
                cfg_error_at(err, &tl->tok[k], "forward: more than %d except zones",
                             FWD_EXCEPT_MAX);
                return -1;
            }
            if (parse_from(tl->tok[k].text, o->except[o->nexcept])) {
                cfg_error_at(err, &tl->tok[k], "forward: except: bad zone \"%.64s\"",
                             tl->tok[k].text);
                return -1;
            }
            o->nexcept++;
        }
        return 0;
    }
    cfg_error_at(err, t, "forward: unknown property \"%.64s\"", t->text);
    return -1;
}

int fwd_opts_parse(struct cfg_cursor *c, struct fwd_opts *o, struct cfg_error *err)
{
    const struct cfg_tokens *tl = c->t;
    const struct cfg_token *dir = cfg_cur(c);
    if (!dir) {
        cfg_error_at(err, NULL, "forward: missing directive");
        return -1;
    }
    snprintf(o->file, sizeof o->file, "%s", dir->file ? dir->file : "");
    o->line = dir->line;
    size_t end = cfg_args_end(c);
    size_t nargs = end - c->pos - 1;
    if (nargs < 2) {
        cfg_error_at(err, dir, "forward: expected FROM and at least one TO");
        return -1;
    }
    const char *why = parse_from(tl->tok[c->pos + 1].text, o->from);
    if (why) {
        cfg_error_at(err, &tl->tok[c->pos + 1], "forward: %s: \"%.64s\"", why,
                     tl->tok[c->pos + 1].text);
        return -1;
    }
    o->nup = 0;
    for (size_t i = c->pos + 2; i < end; i++)
        if (parse_to(o, &tl->tok[i], err) != 0) return -1;

    if (end < tl->n && cfg_is_open(&tl->tok[end])) {
        size_t close = cfg_block_end(tl, end);
        if (close >= tl->n) {
            cfg_error_at(err, &tl->tok[end], "forward: block is not closed");
            return -1;
        }
        size_t i = end + 1;
        while (i < close) {
            const struct cfg_token *t = &tl->tok[i];
            if (cfg_is_open(t) || cfg_is_close(t)) {
                cfg_error_at(err, t, "forward: unexpected \"%s\"", t->text);
                return -1;
            }
            struct cfg_cursor sub = {tl, i};
            size_t oend = cfg_args_end(&sub);
            if (oend < close && cfg_is_open(&tl->tok[oend])) {
                cfg_error_at(err, &tl->tok[oend], "forward: %s takes no block", t->text);
                return -1;
            }
            if (parse_option(o, tl, i, oend, err) != 0) return -1;
            i = oend;
        }
        c->pos = close + 1;
    } else {
        c->pos = end;
    }
    return 0;
}
