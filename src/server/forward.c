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
    "except",
    "expire",
    "max_fails",
    "health_check",
    "max_concurrent",
    "tls",
    "tls_servername",
    "next",
    "failfast_all_unhealthy_upstreams",
    "failover",
    NULL,
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

struct fwd_req {
    struct fwd *f;
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

struct fwd {
    struct ev_loop *loop;
    struct fwd_opts o;
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
    free(r->tbuf);
    r->tbuf = NULL;
    r->tlen = r->toff = 0;
    r->tphase = FWD_TP_CONNECT;
}

/* Ends the request: every waiter gets st (and the reply for FWD_OK), in join order. The
 * request leaves the in-flight table first, so a callback may start the same query anew. */
static void req_finish(struct fwd_req *r, enum fwd_status st, const uint8_t *resp, size_t len)
{
    struct fwd *f = r->f;
    req_unlink(f, r);
    ev_io_stop(f->loop, &r->io);
    ev_timer_stop(f->loop, &r->try_t);
    ev_timer_stop(f->loop, &r->total_t);
    if (r->fd >= 0) close(r->fd);
    r->fd = -1;
    if (st == FWD_FAILED) f->st.failures++;
    uint8_t *tbuf = r->tbuf; /* resp may point into it: freed after the callbacks */
    r->tbuf = NULL;
    struct fwd_waiter *w = &r->first;
    while (w) {
        struct fwd_waiter *next = w->next;
        w->fn(w->priv, st, st == FWD_OK ? resp : NULL, st == FWD_OK ? len : 0);
        if (w != &r->first) waiter_put(f, w);
        w = next;
    }
    free(tbuf);
    req_put(f, r);
}

static void try_next(struct fwd_req *r);

/* A try that failed without waiting (socket error, refused, reset): the next one starts
 * from the loop (never from inside fwd_query or a callback chain), through the try timer. */
static void try_fail_fast(struct fwd_req *r)
{
    try_close(r);
    r->fast_fails++;
    r->failed_fast = true;
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

static void try_start(struct fwd_req *r);

/* A reply passed the checks: count it; TC over UDP asks the same upstream over TCP. */
static void got_reply(struct fwd_req *r, const uint8_t *buf, size_t len, unsigned rcode, bool tc)
{
    struct fwd *f = r->f;
    if (rcode < FWD_RCODES) f->st.responses[r->up][rcode]++;
    if (tc && r->proto == FWD_UDP) {
        try_close(r);
        r->proto = FWD_TCP;
        try_start(r);
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
    if (!r->failed_fast) r->fast_fails = 0;
    r->failed_fast = false;
    try_close(r);
    try_next(r);
}

static void on_total_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    req_finish(w->data, FWD_FAILED, NULL, 0);
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

/* Starts a try on r->up over r->proto: a fresh socket and a fresh ID. */
static void try_start(struct fwd_req *r)
{
    struct fwd *f = r->f;
    const struct fwd_upstream *u = &f->o.up[r->up];
    r->id = (uint16_t)fwd_rand(f);
    dns_put16(r->wire + 2, r->id);
    f->st.requests[r->up]++;
    r->fd = open_socket(u, r->proto == FWD_UDP ? SOCK_DGRAM : SOCK_STREAM);
    if (r->fd < 0) {
        try_fail_fast(r);
        return;
    }
    r->toff = 0;
    r->tlen = 0;
    r->tphase = FWD_TP_CONNECT;
    if (r->proto == FWD_UDP) {
        if (send(r->fd, r->wire + 2, r->qlen, 0) != (ssize_t)r->qlen) {
            try_fail_fast(r);
            return;
        }
        ev_io_set(&r->io, r->fd, EV_READ);
    } else {
        ev_io_set(&r->io, r->fd, EV_WRITE);
    }
    ev_io_start(f->loop, &r->io);
    ev_timer_set(&r->try_t, f->o.try_timeout, 0.);
    ev_timer_start(f->loop, &r->try_t);
}

/* The next upstream in the request's order (starting over after the last). A whole round
 * of tries that failed at once ends the request: nothing is listening anywhere. */
static void try_next(struct fwd_req *r)
{
    struct fwd *f = r->f;
    if (r->fast_fails >= f->o.nup) {
        req_finish(r, FWD_FAILED, NULL, 0);
        return;
    }
    r->up = r->order[r->pos % f->o.nup];
    r->pos++;
    r->proto = r->start_tcp ? FWD_TCP : FWD_UDP;
    try_start(r);
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

struct fwd *fwd_new(struct ev_loop *loop, const struct fwd_opts *o, char *err, size_t errlen)
{
    const char *why = NULL;
    if (!loop || !o)
        why = "no loop or options";
    else if (o->nup == 0)
        why = "no upstreams";
    else if (o->nup > FWD_UPSTREAMS_MAX)
        why = "too many upstreams";
    else if (!(o->try_timeout > 0) || !(o->total_timeout > 0))
        why = "timeouts must be > 0";
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
    while (f->all) req_finish(f->all, FWD_FAILED, NULL, 0);
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
        return 0;
    }

    struct fwd_req *r = f->free_reqs;
    if (r) {
        f->free_reqs = r->next;
        f->nfree_reqs--;
    } else if (!(r = malloc(sizeof *r))) {
        f->st.failures++;
        fn(priv, FWD_FAILED, NULL, 0);
        return 0;
    }
    r->f = f;
    r->key = key;
    memcpy(r->name, q->name, q->name_len);
    r->name_len = q->name_len;
    r->qtype = q->qtype;
    r->qclass = q->qclass;
    r->do_bit = q->do_bit;
    r->cd = q->cd;
    r->first.fn = fn;
    r->first.priv = priv;
    r->first.next = NULL;
    r->wtail = &r->first;
    build_query(r, q);
    make_order(f, r);
    r->pos = 0;
    r->fast_fails = 0;
    r->failed_fast = false;
    /* force_tcp wins over prefer_udp, as in CoreDNS; else a TCP client is asked over TCP */
    r->start_tcp = f->o.force_tcp || (client_tcp && !f->o.prefer_udp);
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

    r->hnext = *b;
    *b = r;
    r->prev = NULL;
    r->next = f->all;
    if (f->all) f->all->prev = r;
    f->all = r;

    ev_timer_start(f->loop, &r->total_t);
    try_next(r);
    return 0;
}

void fwd_stats(const struct fwd *f, struct fwd_stats *st)
{
    *st = f->st;
}
