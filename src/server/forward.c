/* src/server/forward.c — the `forward` plugin: the directive (`forward FROM TO... { ... }`)
 * and the upstream client of one worker.
 *
 * One in-flight request per distinct question (key + name ignoring case + type + class +
 * DO + CD): later identical queries join it as waiters (coalescing). A request walks the
 * upstreams in its policy's order, one try at a time: a fresh socket per try (so a fresh
 * source port, connect()ed so the kernel drops datagrams from other sources), a fresh
 * random ID per try, UDP first unless TCP is asked for, and the same upstream again over
 * TCP when the UDP reply has TC=1. A try ends with a reply that passes the RFC 5452 checks
 * (ID, QR, opcode, exactly our question), an error, or the per-try timeout; replies that do
 * not pass are dropped and counted while the try keeps waiting. The request ends with the
 * first good reply (whatever its rcode: like CoreDNS, SERVFAIL and REFUSED are relayed, not
 * failed over) or FWD_FAILED at the total timeout. After the last upstream the walk starts
 * over (CoreDNS does the same until its deadline); when a whole round of tries failed at
 * once (refused, unreachable, no socket) the request fails without spinning.
 *
 * Health (max_fails, health_check) as CoreDNS: a failed try starts probing its upstream
 * (a probe is a request with no waiters, one try, FWD_HC_TIMEOUT); failed probes count
 * fails, a reply clears them; more than max_fails marks the upstream down and the walk
 * skips it (all down: one at random). TCP connections are pooled per upstream after a good
 * reply and closed after `expire` unused. max_concurrent bounds the client queries waiting
 * (FWD_REFUSED beyond). Every worker has its own instance, so its own health state.
 *
 * Nothing blocks: nonblocking sockets, libev watchers, timers on every wait. Random numbers
 * come from getrandom() in batches. Requests and waiters are recycled through small free
 * lists; UDP replies are read into one buffer per instance.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "server/server.h"
#include "topology/topology.h"

#define FWD_DEFAULT_PORT  53
#define FWD_RESOLV_MAX    (64u * 1024) /* a resolv.conf bigger than this is an error */
#define FWD_BUCKETS       1024         /* in-flight table (power of two) */
#define FWD_QUERY_MAX     (DNS_HEADER_LEN + DNS_NAME_MAX + 4 + 11)
#define FWD_FREE_REQS_MAX 64
#define FWD_FREE_WAIT_MAX 256
#define FWD_UDP_BURST     32 /* datagrams read per wakeup, bounding a flood */
#define FWD_OUR_UDP       1232
#define FWD_RCODES        24
#define FWD_POOL_MAX      8   /* idle TCP connections kept per upstream */
#define FWD_HC_TIMEOUT    1.0 /* a health probe without a reply by then failed (CoreDNS: 1s) */

/* ====================================================================================== */
/* the directive                                                                           */
/* ====================================================================================== */

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

/* A duration as Go's time.ParseDuration writes it ("500ms", "1.5s", "1m30s", "2h"; units
 * ns us µs ms s m h), or a bare "0". Negative values are refused here. Returns false when
 * it is not one. */
static bool parse_duration(const char *s, double *out)
{
    if (strcmp(s, "0") == 0) {
        *out = 0;
        return true;
    }
    if (*s == '+') s++;
    if (!*s) return false;
    double total = 0;
    while (*s) {
        if (!((*s >= '0' && *s <= '9') || *s == '.')) return false;
        char *end;
        double v = strtod(s, &end);
        if (end == s || v < 0) return false;
        /* strtod takes exponents, hex and inf: only digits and one dot are Go's */
        for (const char *k = s; k < end; k++)
            if (!((*k >= '0' && *k <= '9') || *k == '.')) return false;
        s = end;
        static const struct {
            const char *u;
            double mul;
        } units[] = {{"ns", 1e-9}, {"us", 1e-6}, {"\xc2\xb5s", 1e-6}, {"ms", 1e-3},
                     {"s", 1},     {"m", 60},    {"h", 3600}};
        size_t best = 0, bestlen = 0;
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
            size_t n = strlen(units[i].u);
            if (n > bestlen && strncmp(s, units[i].u, n) == 0) {
                best = i;
                bestlen = n;
            }
        }
        if (!bestlen) return false; /* "missing unit" */
        total += v * units[best].mul;
        s += bestlen;
    }
    if (total > 1e9) return false;
    *out = total;
    return true;
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
        if (!parse_duration(a->text, &d)) {
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

/* ====================================================================================== */
/* the upstream client                                                                     */
/* ====================================================================================== */

enum fwd_proto { FWD_UDP, FWD_TCP };

struct fwd_waiter {
    fwd_fn *fn;
    void *priv;
    struct fwd_waiter *next;
};

struct fwd_host;

struct fwd_req {
    struct fwd *f;
    struct fwd_host *probe;      /* a health probe of this upstream (no waiters, not coalesced) */
    struct fwd_req *hnext;       /* in-flight table chain */
    struct fwd_req *prev, *next; /* every request in flight (fwd_free) */
    uint64_t key;

    /* the question, as the first client asked it */
    uint8_t name[DNS_NAME_MAX];
    uint16_t name_len, qtype, qclass;
    bool do_bit, cd;

    struct fwd_waiter first; /* the first waiter needs no allocation */
    struct fwd_waiter *wtail;

    /* our query, behind 2 bytes of TCP length */
    uint8_t wire[2 + FWD_QUERY_MAX];
    uint16_t qlen, id;

    /* the walk over the upstreams */
    uint8_t order[FWD_UPSTREAMS_MAX];
    unsigned pos;        /* tries started (order[pos % nup] is next) */
    unsigned fast_fails; /* tries in a row that failed at once (no timeout) */
    bool failed_fast;    /* the try timer is armed at 0 after such a failure */
    bool start_tcp;      /* each upstream is asked over TCP first */
    bool reused;         /* the current TCP try runs on a pooled connection */
    bool restart;        /* the try timer restarts the same try on a fresh connection */
    int up;              /* upstream of the current try, -1 none */
    enum fwd_proto proto;

    /* the current try */
    int fd;
    ev_io io;
    ev_timer try_t, total_t;
    enum { FWD_TP_CONNECT, FWD_TP_WRITE, FWD_TP_READ } tphase; /* TCP */
    size_t toff;     /* TCP: bytes of wire written, then bytes of the reply read */
    uint8_t thdr[2]; /* TCP: reply length */
    uint8_t *tbuf;   /* TCP: reply (malloc, freed at the end of the try) */
    size_t tlen;
};

/* An upstream's state: health and idle TCP connections. */
struct fwd_host {
    struct fwd *f;
    int idx;
    uint32_t fails;         /* consecutive failed probes */
    bool probing;           /* a probe is in flight or hc_t waits for the next */
    ev_timer hc_t;          /* the wait between probes */
    int idle[FWD_POOL_MAX]; /* oldest first */
    double idle_used[FWD_POOL_MAX];
    size_t nidle;
};

struct fwd {
    struct ev_loop *loop;
    struct fwd_opts o;
    struct fwd_host host[FWD_UPSTREAMS_MAX];
    ev_timer expire_t; /* closes idle TCP connections unused for o.expire */
    size_t inflight;   /* client queries waiting (max_concurrent) */
    uint8_t from_wire[DNS_NAME_MAX];
    uint16_t from_len;
    uint8_t except_wire[FWD_EXCEPT_MAX][DNS_NAME_MAX];
    uint16_t except_len[FWD_EXCEPT_MAX];
    struct fwd_req *buckets[FWD_BUCKETS];
    struct fwd_req *all;
    struct fwd_req *free_reqs;
    size_t nfree_reqs;
    struct fwd_waiter *free_waiters;
    size_t nfree_waiters;
    unsigned robin;
    bool closing; /* in fwd_free: no new queries (a callback might start one) */
    uint8_t rpool[256];
    size_t rpos;
    uint64_t rstate; /* fallback when getrandom fails */
    struct fwd_stats st;
    uint8_t rbuf[DNS_MSG_MAX + 1]; /* UDP replies (one over the max: oversize is garbage) */
};

/* ---- random numbers: getrandom() in batches ---- */

static uint32_t fwd_rand(struct fwd *f)
{
    if (f->rpos + 4 > sizeof f->rpool) {
        size_t got = 0;
        while (got < sizeof f->rpool) {
            ssize_t n = getrandom(f->rpool + got, sizeof f->rpool - got, GRND_NONBLOCK);
            if (n > 0) {
                got += (size_t)n;
            } else if (n < 0 && errno == EINTR) {
                continue;
            } else {
                /* no entropy source: splitmix64 seeded from the clock and our address */
                for (; got < sizeof f->rpool; got++) {
                    uint64_t z = (f->rstate += 0x9e3779b97f4a7c15ull);
                    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
                    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
                    f->rpool[got] = (uint8_t)(z ^ (z >> 31));
                }
            }
        }
        f->rpos = 0;
    }
    uint32_t v;
    memcpy(&v, f->rpool + f->rpos, 4);
    f->rpos += 4;
    return v;
}

/* ---- requests and waiters ---- */

static struct fwd_waiter *waiter_get(struct fwd *f)
{
    struct fwd_waiter *w = f->free_waiters;
    if (w) {
        f->free_waiters = w->next;
        f->nfree_waiters--;
        return w;
    }
    return malloc(sizeof *w);
}

static void waiter_put(struct fwd *f, struct fwd_waiter *w)
{
    if (f->nfree_waiters < FWD_FREE_WAIT_MAX) {
        w->next = f->free_waiters;
        f->free_waiters = w;
        f->nfree_waiters++;
    } else {
        free(w);
    }
}

static void req_put(struct fwd *f, struct fwd_req *r)
{
    if (f->nfree_reqs < FWD_FREE_REQS_MAX) {
        r->next = f->free_reqs;
        f->free_reqs = r;
        f->nfree_reqs++;
    } else {
        free(r);
    }
}

static struct fwd_req **bucket(struct fwd *f, uint64_t key)
{
    return &f->buckets[key & (FWD_BUCKETS - 1)];
}

static void req_unlink(struct fwd *f, struct fwd_req *r)
{
    for (struct fwd_req **p = bucket(f, r->key); *p; p = &(*p)->hnext) {
        if (*p == r) {
            *p = r->hnext;
            break;
        }
    }
    if (r->prev)
        r->prev->next = r->next;
    else
        f->all = r->next;
    if (r->next) r->next->prev = r->prev;
    r->prev = r->next = r->hnext = NULL;
}

/* Ends the current try: its socket, its watchers, its TCP buffer. */
static void try_close(struct fwd_req *r)
{
    struct fwd *f = r->f;
    ev_io_stop(f->loop, &r->io);
    ev_timer_stop(f->loop, &r->try_t);
    if (r->fd >= 0) close(r->fd);
    r->fd = -1;
    r->reused = false;
    free(r->tbuf);
    r->tbuf = NULL;
    r->tlen = r->toff = 0;
    r->tphase = FWD_TP_CONNECT;
}

/* ---- pooled TCP connections (expire) ---- */

static void expire_arm(struct fwd *f, double after)
{
    ev_timer_stop(f->loop, &f->expire_t);
    ev_timer_set(&f->expire_t, after > 0.001 ? after : 0.001, 0.);
    ev_timer_start(f->loop, &f->expire_t);
}

/* Closes the idle connections unused for o.expire; re-arms for the oldest left. */
static void on_expire(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct fwd *f = w->data;
    double now = ev_now(loop), next = -1;
    for (size_t i = 0; i < f->o.nup; i++) {
        struct fwd_host *h = &f->host[i];
        size_t keep = 0;
        for (size_t k = 0; k < h->nidle; k++) {
            if (now - h->idle_used[k] >= f->o.expire - 0.001) {
                close(h->idle[k]);
                f->st.tcp_expired++;
                continue;
            }
            double at = h->idle_used[k] + f->o.expire;
            if (next < 0 || at < next) next = at;
            h->idle[keep] = h->idle[k];
            h->idle_used[keep++] = h->idle_used[k];
        }
        h->nidle = keep;
    }
    if (next >= 0) expire_arm(f, next - now);
}

/* The newest idle connection to h that is still usable (unexpired, not closed by the
 * upstream, nothing unread), or -1. */
static int pool_take(struct fwd_host *h)
{
    struct fwd *f = h->f;
    double now = ev_now(f->loop);
    while (h->nidle > 0) {
        h->nidle--;
        int fd = h->idle[h->nidle];
        if (now - h->idle_used[h->nidle] >= f->o.expire) {
            close(fd);
            f->st.tcp_expired++;
            continue;
        }
        uint8_t b;
        ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return fd;
        close(fd); /* EOF, an error, or bytes we did not ask for */
    }
    return -1;
}

static void pool_put(struct fwd_host *h, int fd)
{
    struct fwd *f = h->f;
    if (!(f->o.expire > 0) || f->closing) {
        close(fd);
        return;
    }
    if (h->nidle == FWD_POOL_MAX) { /* the oldest goes */
        close(h->idle[0]);
        memmove(h->idle, h->idle + 1, (FWD_POOL_MAX - 1) * sizeof h->idle[0]);
        memmove(h->idle_used, h->idle_used + 1, (FWD_POOL_MAX - 1) * sizeof h->idle_used[0]);
        h->nidle--;
    }
    h->idle[h->nidle] = fd;
    h->idle_used[h->nidle++] = ev_now(f->loop);
    if (!ev_is_active(&f->expire_t)) expire_arm(f, f->o.expire);
}

static void pool_close(struct fwd_host *h)
{
    for (size_t k = 0; k < h->nidle; k++) close(h->idle[k]);
    h->nidle = 0;
}

/* ---- health (max_fails, health_check) ---- */

static bool host_down(const struct fwd *f, int i)
{
    return f->o.max_fails > 0 && f->host[i].fails > f->o.max_fails;
}

static void probe_start(struct fwd_host *h);

/* A client try on upstream i failed (timeout, refused, reset): health checking starts
 * unless it runs already, as CoreDNS's proxy.Healthcheck(). */
static void host_failed(struct fwd *f, int i)
{
    struct fwd_host *h = &f->host[i];
    if (f->o.max_fails == 0 || !(f->o.health_check > 0) || f->closing || h->probing) return;
    h->probing = true;
    probe_start(h);
}

static void probe_done(struct fwd_host *h, bool ok)
{
    struct fwd *f = h->f;
    if (ok) {
        h->fails = 0;
        h->probing = false;
        return;
    }
    if (h->fails < UINT32_MAX) h->fails++;
    f->st.hc_failures[h->idx]++;
    if (f->closing) {
        h->probing = false;
        return;
    }
    ev_timer_set(&h->hc_t, f->o.health_check, 0.);
    ev_timer_start(f->loop, &h->hc_t);
}

static void on_hc_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    probe_start(w->data);
}

/* Ends the request: every waiter gets st (and the reply for FWD_OK), in join order. The
 * request leaves the in-flight table first, so a callback may start the same query anew.
 * A clean TCP connection goes back to its upstream's pool. */
static void req_finish(struct fwd_req *r, enum fwd_status st, const uint8_t *resp, size_t len)
{
    struct fwd *f = r->f;
    req_unlink(f, r);
    ev_io_stop(f->loop, &r->io);
    ev_timer_stop(f->loop, &r->try_t);
    ev_timer_stop(f->loop, &r->total_t);
    if (r->fd >= 0) {
        if (st == FWD_OK && !r->probe && r->proto == FWD_TCP && r->tphase == FWD_TP_READ)
            pool_put(&f->host[r->up], r->fd);
        else
            close(r->fd);
    }
    r->fd = -1;
    uint8_t *tbuf = r->tbuf; /* resp may point into it: freed after the callbacks */
    r->tbuf = NULL;
    if (r->probe) {
        struct fwd_host *h = r->probe;
        free(tbuf);
        req_put(f, r);
        probe_done(h, st == FWD_OK);
        return;
    }
    if (st == FWD_FAILED) f->st.failures++;
    struct fwd_waiter *w = &r->first;
    while (w) {
        struct fwd_waiter *next = w->next;
        if (f->inflight) f->inflight--;
        w->fn(w->priv, st, st == FWD_OK ? resp : NULL, st == FWD_OK ? len : 0);
        if (w != &r->first) waiter_put(f, w);
        w = next;
    }
    free(tbuf);
    req_put(f, r);
}

static void try_next(struct fwd_req *r);

/* A try that failed without waiting (socket error, refused, reset): the next one starts
 * from the loop (never from inside fwd_query or a callback chain), through the try timer.
 * On a pooled connection (the upstream may have closed it meanwhile), the same try starts
 * again on a fresh connection instead. */
static void try_fail_fast(struct fwd_req *r)
{
    bool retry = r->reused;
    try_close(r);
    if (retry) {
        r->restart = true;
    } else {
        r->fast_fails++;
        r->failed_fast = true;
        if (!r->probe) host_failed(r->f, r->up);
    }
    ev_timer_set(&r->try_t, 0., 0.);
    ev_timer_start(r->f->loop, &r->try_t);
}

/* The RFC 5452 checks: our ID, QR=1, opcode QUERY, exactly our question (name ignoring
 * case, type, class), and a message that parses whole. Sets *rcode (extended with the
 * OPT's upper bits) and *tc. */
static bool reply_ok(const struct fwd_req *r, const uint8_t *buf, size_t len, unsigned *rcode,
                     bool *tc)
{
    if (len < DNS_HEADER_LEN || dns_get16(buf) != r->id) return false;
    struct dns_msg m;
    if (dns_msg_parse(&m, buf, len, NULL, 0) != DNS_OK) return false;
    if (!(m.flags & DNS_F_QR) || DNS_OPCODE(m.flags) != DNS_OPCODE_QUERY) return false;
    if (m.count[0] != 1 || m.qtype != r->qtype || m.qclass != r->qclass) return false;
    uint8_t name[DNS_NAME_MAX];
    size_t nlen = 0, next = 0;
    if (dns_name_unpack(buf, len, m.qname_off, name, &nlen, &next) != DNS_OK) return false;
    if (!dns_name_equal_nocase(name, nlen, r->name, r->name_len)) return false;
    *rcode = (m.flags & DNS_F_RCODE_MASK) | (m.has_edns ? (unsigned)m.edns_ext_rcode << 4 : 0);
    *tc = (m.flags & DNS_F_TC) != 0;
    return true;
}

static void try_start(struct fwd_req *r, bool may_reuse);

/* A reply passed the checks: count it; TC over UDP asks the same upstream over TCP. Any
 * reply to a probe is health. */
static void got_reply(struct fwd_req *r, const uint8_t *buf, size_t len, unsigned rcode, bool tc)
{
    struct fwd *f = r->f;
    if (r->probe) {
        req_finish(r, FWD_OK, buf, len);
        return;
    }
    if (rcode < FWD_RCODES) f->st.responses[r->up][rcode]++;
    if (tc && r->proto == FWD_UDP) {
        try_close(r);
        r->proto = FWD_TCP;
        try_start(r, true);
        return;
    }
    req_finish(r, FWD_OK, buf, len);
}

static void udp_readable(struct fwd_req *r)
{
    struct fwd *f = r->f;
    for (int i = 0; i < FWD_UDP_BURST; i++) {
        ssize_t n = recv(r->fd, f->rbuf, sizeof f->rbuf, 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
            try_fail_fast(r); /* ECONNREFUSED (ICMP port unreachable) and the like */
            return;
        }
        unsigned rcode = 0;
        bool tc = false;
        if ((size_t)n > DNS_MSG_MAX || !reply_ok(r, f->rbuf, (size_t)n, &rcode, &tc)) {
            f->st.mismatches++;
            continue;
        }
        got_reply(r, f->rbuf, (size_t)n, rcode, tc);
        return;
    }
}

static void tcp_io(struct fwd_req *r, int revents)
{
    struct fwd *f = r->f;
    if (r->tphase == FWD_TP_CONNECT) {
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (getsockopt(r->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
            try_fail_fast(r);
            return;
        }
        r->tphase = FWD_TP_WRITE;
    }
    if (r->tphase == FWD_TP_WRITE) {
        size_t wlen = 2u + r->qlen;
        ssize_t n = send(r->fd, r->wire + r->toff, wlen - r->toff, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
            try_fail_fast(r);
            return;
        }
        r->toff += (size_t)n;
        if (r->toff < wlen) return;
        r->toff = 0;
        r->tphase = FWD_TP_READ;
        ev_io_stop(f->loop, &r->io);
        ev_io_set(&r->io, r->fd, EV_READ);
        ev_io_start(f->loop, &r->io);
        return;
    }
    if (!(revents & EV_READ)) return;
    for (;;) {
        uint8_t *dst = r->tbuf ? r->tbuf + r->toff : r->thdr + r->toff;
        size_t want = r->tbuf ? r->tlen - r->toff : 2 - r->toff;
        ssize_t n = recv(r->fd, dst, want, 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
            try_fail_fast(r);
            return;
        }
        if (n == 0) { /* closed before a good reply */
            try_fail_fast(r);
            return;
        }
        r->toff += (size_t)n;
        if (!r->tbuf) {
            if (r->toff < 2) continue;
            r->toff = 0;
            r->tlen = dns_get16(r->thdr);
            if (r->tlen == 0) { /* an empty frame is no reply; the stream stays framed */
                f->st.mismatches++;
                continue;
            }
            if (!(r->tbuf = malloc(r->tlen))) {
                try_fail_fast(r);
                return;
            }
            continue;
        }
        if (r->toff < r->tlen) continue;
        unsigned rcode = 0;
        bool tc = false;
        if (reply_ok(r, r->tbuf, r->tlen, &rcode, &tc)) {
            got_reply(r, r->tbuf, r->tlen, rcode, tc);
            return;
        }
        f->st.mismatches++; /* dropped; keep reading the connection until the try ends */
        free(r->tbuf);
        r->tbuf = NULL;
        r->tlen = r->toff = 0;
    }
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    struct fwd_req *r = w->data;
    if (r->proto == FWD_UDP) {
        if (revents & EV_READ) udp_readable(r);
    } else {
        tcp_io(r, revents);
    }
}

/* The per-try timer: a timeout (fail over), or the deferred start after a fast failure. */
static void on_try_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct fwd_req *r = w->data;
    if (r->restart) { /* a pooled connection failed: the same try on a fresh one */
        r->restart = false;
        try_start(r, false);
        return;
    }
    bool timeout = !r->failed_fast;
    if (timeout) r->fast_fails = 0;
    r->failed_fast = false;
    try_close(r);
    if (timeout && !r->probe && r->up >= 0) host_failed(r->f, r->up);
    try_next(r);
}

static void on_total_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct fwd_req *r = w->data;
    if (r->fd >= 0 && !r->probe && r->up >= 0) host_failed(r->f, r->up); /* a try cut short */
    req_finish(r, FWD_FAILED, NULL, 0);
}

static int open_socket(const struct fwd_upstream *u, int type)
{
    int fd = socket(u->addr.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (connect(fd, (const struct sockaddr *)&u->addr, u->addrlen) != 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Starts a try on r->up over r->proto: a fresh ID, and a fresh socket (UDP) or a pooled
 * connection when one is idle (TCP, unless may_reuse is false). */
static void try_start(struct fwd_req *r, bool may_reuse)
{
    struct fwd *f = r->f;
    const struct fwd_upstream *u = &f->o.up[r->up];
    r->id = (uint16_t)fwd_rand(f);
    dns_put16(r->wire + 2, r->id);
    if (r->probe)
        f->st.hc_sent[r->up]++;
    else
        f->st.requests[r->up]++;
    r->toff = 0;
    r->tlen = 0;
    r->tphase = FWD_TP_CONNECT;
    r->reused = false;
    if (r->proto == FWD_UDP) {
        r->fd = open_socket(u, SOCK_DGRAM);
        if (r->fd < 0 || send(r->fd, r->wire + 2, r->qlen, 0) != (ssize_t)r->qlen) {
            try_fail_fast(r);
            return;
        }
        ev_io_set(&r->io, r->fd, EV_READ);
    } else {
        r->fd = may_reuse && !r->probe ? pool_take(&f->host[r->up]) : -1;
        if (r->fd >= 0) {
            r->reused = true;
            r->tphase = FWD_TP_WRITE;
            f->st.tcp_reused++;
        } else {
            r->fd = open_socket(u, SOCK_STREAM);
            if (r->fd < 0) {
                try_fail_fast(r);
                return;
            }
            f->st.tcp_connects++;
        }
        ev_io_set(&r->io, r->fd, EV_WRITE);
    }
    ev_io_start(f->loop, &r->io);
    ev_timer_set(&r->try_t, r->probe ? FWD_HC_TIMEOUT : f->o.try_timeout, 0.);
    ev_timer_start(f->loop, &r->try_t);
}

/* The next upstream in the request's order (starting over after the last), skipping the
 * ones marked down; when every upstream is down, one at random (CoreDNS: "assume health
 * checking is broken"). A whole round of tries that failed at once ends the request:
 * nothing is listening anywhere. A probe makes one try only. */
static void try_next(struct fwd_req *r)
{
    struct fwd *f = r->f;
    if (r->probe) {
        if (r->pos++ > 0) {
            req_finish(r, FWD_FAILED, NULL, 0);
            return;
        }
        r->up = r->probe->idx;
        r->proto = r->start_tcp ? FWD_TCP : FWD_UDP;
        try_start(r, false);
        return;
    }
    if (r->fast_fails >= f->o.nup) {
        req_finish(r, FWD_FAILED, NULL, 0);
        return;
    }
    int up = -1;
    for (size_t k = 0; k < f->o.nup && up < 0; k++) {
        int c = r->order[r->pos % f->o.nup];
        r->pos++;
        if (!host_down(f, c)) up = c;
    }
    if (up < 0) {
        up = (int)(fwd_rand(f) % f->o.nup);
        f->st.all_down++;
    }
    r->up = up;
    r->proto = r->start_tcp ? FWD_TCP : FWD_UDP;
    try_start(r, true);
}

/* Our query: random ID (set per try), RD as the client's, CD copied, opcode QUERY, the
 * client's question, and an OPT of our own: UDP size 1232, version 0, DO copied, no
 * options. */
static void build_query(struct fwd_req *r, const struct dns_question *q)
{
    uint8_t *p = r->wire + 2;
    uint16_t flags = (uint16_t)((q->flags & DNS_F_RD) | (q->cd ? DNS_F_CD : 0));
    dns_put16(p, 0);
    dns_put16(p + 2, flags);
    dns_put16(p + 4, 1);
    dns_put16(p + 6, 0);
    dns_put16(p + 8, 0);
    dns_put16(p + 10, 1);
    size_t o = DNS_HEADER_LEN;
    memcpy(p + o, q->name, q->name_len);
    o += q->name_len;
    dns_put16(p + o, q->qtype);
    dns_put16(p + o + 2, q->qclass);
    o += 4;
    p[o++] = 0; /* root owner */
    dns_put16(p + o, DNS_T_OPT);
    dns_put16(p + o + 2, FWD_OUR_UDP);
    dns_put32(p + o + 4, q->do_bit ? DNS_EDNS_DO : 0); /* ext rcode 0, version 0 */
    dns_put16(p + o + 8, 0);
    o += 10;
    r->qlen = (uint16_t)o;
    dns_put16(r->wire, r->qlen);
}

static void make_order(struct fwd *f, struct fwd_req *r)
{
    size_t n = f->o.nup;
    switch (f->o.policy) {
    case FWD_POLICY_SEQUENTIAL:
        for (size_t i = 0; i < n; i++) r->order[i] = (uint8_t)i;
        break;
    case FWD_POLICY_ROUND_ROBIN: {
        unsigned start = f->robin++ % (unsigned)n;
        for (size_t i = 0; i < n; i++) r->order[i] = (uint8_t)((start + i) % n);
        break;
    }
    case FWD_POLICY_RANDOM:
    default:
        for (size_t i = 0; i < n; i++) r->order[i] = (uint8_t)i;
        for (size_t i = n - 1; i > 0; i--) {
            size_t j = fwd_rand(f) % (i + 1);
            uint8_t t = r->order[i];
            r->order[i] = r->order[j];
            r->order[j] = t;
        }
        break;
    }
}

/* Presentation (lowercase, trailing dot) to wire form; 0 when it does not fit. */
static uint16_t text_to_wire(const char *t, uint8_t *out)
{
    size_t n = 0;
    if (t[0] == '.' && t[1] == '\0') {
        out[0] = 0;
        return 1;
    }
    while (*t) {
        const char *dot = strchr(t, '.');
        size_t l = dot ? (size_t)(dot - t) : strlen(t);
        if (l == 0 || l > DNS_LABEL_MAX || n + 1 + l + 1 > DNS_NAME_MAX) return 0;
        out[n++] = (uint8_t)l;
        for (size_t i = 0; i < l; i++) {
            char c = t[i];
            out[n++] = (uint8_t)((c >= 'A' && c <= 'Z') ? c + 32 : c);
        }
        t += l;
        if (*t == '.') t++;
    }
    out[n++] = 0;
    return (uint16_t)n;
}

/* True when the lowercase wire name is zone or below it. */
static bool name_in_zone(const uint8_t *name, size_t nlen, const uint8_t *zone, size_t zlen)
{
    if (zlen > nlen) return false;
    size_t at = nlen - zlen;
    if (memcmp(name + at, zone, zlen) != 0) return false;
    size_t p = 0;
    while (p < at) p += 1u + name[p];
    return p == at;
}

bool fwd_handles(const struct fwd *f, const struct dns_question *q)
{
    if (!f || !q) return false;
    if (!name_in_zone(q->name_lc, q->name_len, f->from_wire, f->from_len)) return false;
    if (q->name_len == f->from_len) return true; /* FROM itself, even if excepted */
    for (size_t i = 0; i < f->o.nexcept; i++)
        if (f->except_len[i] &&
            name_in_zone(q->name_lc, q->name_len, f->except_wire[i], f->except_len[i]))
            return false;
    return true;
}

/* Fills a fresh request: the question, no waiters, the timers and watchers. */
static void req_init(struct fwd *f, struct fwd_req *r, const struct dns_question *q, uint64_t key)
{
    r->f = f;
    r->probe = NULL;
    r->key = key;
    memcpy(r->name, q->name, q->name_len);
    r->name_len = q->name_len;
    r->qtype = q->qtype;
    r->qclass = q->qclass;
    r->do_bit = q->do_bit;
    r->cd = q->cd;
    r->first.fn = NULL;
    r->first.priv = NULL;
    r->first.next = NULL;
    r->wtail = &r->first;
    build_query(r, q);
    r->pos = 0;
    r->fast_fails = 0;
    r->failed_fast = false;
    r->reused = false;
    r->restart = false;
    r->start_tcp = false;
    r->up = -1;
    r->fd = -1;
    r->tphase = FWD_TP_CONNECT;
    r->toff = r->tlen = 0;
    r->tbuf = NULL;
    ev_io_init(&r->io, on_io, -1, EV_READ);
    r->io.data = r;
    ev_timer_init(&r->try_t, on_try_timer, f->o.try_timeout, 0.);
    r->try_t.data = r;
    ev_timer_init(&r->total_t, on_total_timer, f->o.total_timeout, 0.);
    r->total_t.data = r;
    r->hnext = NULL;
    r->prev = NULL;
    r->next = f->all;
    if (f->all) f->all->prev = r;
    f->all = r;
}

static struct fwd_req *req_get(struct fwd *f)
{
    struct fwd_req *r = f->free_reqs;
    if (r) {
        f->free_reqs = r->next;
        f->nfree_reqs--;
        return r;
    }
    return malloc(sizeof *r);
}

/* One health probe of h: the health_check domain, type NS, RD unless no_rec, over TCP
 * with force_tcp; one try of FWD_HC_TIMEOUT. */
static void probe_start(struct fwd_host *h)
{
    struct fwd *f = h->f;
    struct fwd_req *r = f->closing ? NULL : req_get(f);
    if (!r) {
        h->probing = false;
        return;
    }
    struct dns_question q;
    memset(&q, 0, sizeof q);
    q.name_len = text_to_wire(f->o.hc_domain, q.name);
    if (q.name_len == 0) q.name_len = 1; /* "." */
    memcpy(q.name_lc, q.name, q.name_len);
    q.qtype = DNS_T_NS;
    q.qclass = DNS_C_IN;
    q.flags = f->o.hc_no_rec ? 0 : DNS_F_RD;
    req_init(f, r, &q, 0);
    r->probe = h;
    r->start_tcp = f->o.force_tcp;
    try_next(r);
}

struct fwd *fwd_new(struct ev_loop *loop, const struct fwd_opts *o, char *err, size_t errlen)
{
    const char *why = NULL;
    if (!loop || !o)
        why = "no loop or options";
    else if (o->nup == 0)
        why = "no upstreams";
    else if (o->nup > FWD_UPSTREAMS_MAX)
        why = "too many upstreams";
    else if (o->nexcept > FWD_EXCEPT_MAX)
        why = "too many except zones";
    else if (!(o->try_timeout > 0) || !(o->total_timeout > 0))
        why = "timeouts must be > 0";
    else if (!(o->health_check >= 0) || !(o->expire >= 0))
        why = "health_check and expire must be >= 0";
    if (why) {
        if (err && errlen) snprintf(err, errlen, "forward: %s", why);
        return NULL;
    }
    struct fwd *f = calloc(1, sizeof *f);
    if (!f) {
        if (err && errlen) snprintf(err, errlen, "forward: out of memory");
        return NULL;
    }
    f->loop = loop;
    f->o = *o;
    f->from_len = text_to_wire(o->from, f->from_wire);
    if (f->from_len == 0) {
        free(f);
        if (err && errlen) snprintf(err, errlen, "forward: bad FROM");
        return NULL;
    }
    for (size_t i = 0; i < o->nexcept; i++)
        f->except_len[i] = text_to_wire(o->except[i], f->except_wire[i]);
    for (size_t i = 0; i < o->nup; i++) {
        struct fwd_host *h = &f->host[i];
        h->f = f;
        h->idx = (int)i;
        ev_timer_init(&h->hc_t, on_hc_timer, 1., 0.);
        h->hc_t.data = h;
    }
    ev_timer_init(&f->expire_t, on_expire, 1., 0.);
    f->expire_t.data = f;
    f->rpos = sizeof f->rpool; /* filled on first use */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    f->rstate = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)f;
    return f;
}

void fwd_free(struct fwd *f)
{
    if (!f) return;
    f->closing = true;
    for (size_t i = 0; i < f->o.nup; i++) ev_timer_stop(f->loop, &f->host[i].hc_t);
    while (f->all) req_finish(f->all, FWD_FAILED, NULL, 0);
    ev_timer_stop(f->loop, &f->expire_t);
    for (size_t i = 0; i < f->o.nup; i++) pool_close(&f->host[i]);
    while (f->free_reqs) {
        struct fwd_req *r = f->free_reqs;
        f->free_reqs = r->next;
        free(r);
    }
    while (f->free_waiters) {
        struct fwd_waiter *w = f->free_waiters;
        f->free_waiters = w->next;
        free(w);
    }
    free(f);
}

static bool same_question(const struct fwd_req *r, uint64_t key, const struct dns_question *q)
{
    return r->key == key && r->qtype == q->qtype && r->qclass == q->qclass &&
           r->do_bit == q->do_bit && r->cd == q->cd &&
           dns_name_equal_nocase(r->name, r->name_len, q->name, q->name_len);
}

int fwd_query(struct fwd *f, const struct dns_question *q, uint64_t key, bool client_tcp,
              fwd_fn *fn, void *priv)
{
    if (!f || !q || !fn || q->name_len == 0 || q->name_len > DNS_NAME_MAX || f->closing) return -1;

    if (f->o.max_concurrent && f->inflight >= f->o.max_concurrent) {
        f->st.refused++;
        fn(priv, FWD_REFUSED, NULL, 0);
        return 0;
    }
    struct fwd_req **b = bucket(f, key);
    for (struct fwd_req *r = *b; r; r = r->hnext) {
        if (!same_question(r, key, q)) continue;
        struct fwd_waiter *w = waiter_get(f);
        if (!w) {
            f->st.failures++;
            fn(priv, FWD_FAILED, NULL, 0);
            return 0;
        }
        w->fn = fn;
        w->priv = priv;
        w->next = NULL;
        r->wtail->next = w;
        r->wtail = w;
        f->st.coalesced++;
        f->inflight++;
        return 0;
    }

    struct fwd_req *r = req_get(f);
    if (!r) {
        f->st.failures++;
        fn(priv, FWD_FAILED, NULL, 0);
        return 0;
    }
    req_init(f, r, q, key);
    r->first.fn = fn;
    r->first.priv = priv;
    make_order(f, r);
    /* force_tcp wins over prefer_udp, as in CoreDNS; else a TCP client is asked over TCP */
    r->start_tcp = f->o.force_tcp || (client_tcp && !f->o.prefer_udp);
    r->hnext = *b;
    *b = r;
    f->inflight++;

    ev_timer_start(f->loop, &r->total_t);
    try_next(r);
    return 0;
}

void fwd_stats(const struct fwd *f, struct fwd_stats *st)
{
    *st = f->st;
    for (size_t i = 0; i < f->o.nup; i++) {
        st->up_down[i] = host_down(f, (int)i) ? 1 : 0;
        st->up_fails[i] = f->host[i].fails;
    }
}
