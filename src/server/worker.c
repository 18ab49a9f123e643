/* src/server/worker.c — the runtime of redis-cache-dns: workers, listeners and the query
 * path (DESIGN "One query, end to end").
 *
 * N workers, each a thread with its own libev loop, its own SO_REUSEPORT UDP and TCP
 * sockets on every listen address, and per server block its own L1 shard, redis_cache
 * handle and forwarder. Nothing on the query path is shared between workers: the route
 * tables are read-only after start, counters are the worker's own (a scrape asks the worker
 * for a snapshot through an ev_async; see srv_runtime_collect).
 *
 * One query: recvmmsg a batch; for each datagram parse the question once (dns_question_parse)
 * and compute the 64-bit key (dns_key_hash: the L1 hash and the coalescing key); QR=1 is
 * dropped, opcode != QUERY gets NOTIMP, malformed FORMERR, EDNS version > 0 BADVERS; route by
 * longest zone among the blocks of the listener (REFUSED when none); L1 hit -> the reply is
 * built straight into the batch's send slot. Otherwise the query takes a small fixed struct
 * from the worker's free list and goes to redis_cache (async GET+TTL; a hit fills L1 with the
 * remaining TTL) and on a miss to forward; the upstream's response has its TTLs set by
 * rcp_cache_store (SPEC §2) and the SET queued, fills L1, and is fitted for the client with
 * dns_reply_build. Immediate replies of a batch leave in one sendmmsg; async UDP replies
 * finished in one loop iteration are queued and leave in one sendmmsg before the loop polls.
 *
 * TCP (RFC 7766): 2-byte framing, several queries in flight per connection (replies in
 * completion order), an idle timeout, bounded buffers, and caps on in-flight queries per
 * connection and connections per worker.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "plugin/plugin.h"
#include "server/server.h"

#define UDP_BATCH        32
#define UDP_RX_MAX       4096
#define UDP_TX_MAX       4096 /* UDP replies never exceed max(512, our 1232) */
#define UDP_BATCHES_MAX  16   /* recvmmsg calls per wakeup before yielding to the loop */
#define OUR_UDP          DNS_UDP_DEFAULT
#define TCP_IDLE         10.0
#define TCP_INFLIGHT_MAX 64
#define TCP_WBUF_MAX     (256u * 1024u)
#define TCP_CONNS_MAX    1024  /* per worker */
#define QUERIES_MAX      65536 /* async queries in flight per worker */
#define QUERY_CHUNK      256
#define ROUTES_MAX       (SRV_BLOCKS_MAX * SRV_KEYS_MAX)

/* ---- the shared, read-only part: listen addresses and their routes -------------------- */

struct route {
    uint8_t zone[DNS_NAME_MAX]; /* lowercase wire form */
    uint16_t zone_len;
    uint16_t block, zidx;
};

struct laddr {
    struct sockaddr_storage sa;
    socklen_t salen;
    uint16_t port;
    bool v6;
    char text[80];
    struct route routes[ROUTES_MAX];
    size_t nroutes;
    int drop_block; /* the block whose "dropped" slot counts unrouted queries here */
};

struct worker;

struct srv_runtime {
    const struct srv_config *cfg;
    unsigned nworkers;
    struct laddr *addrs;
    size_t naddrs;
    struct worker **w;
    bool started;
};

/* ---- per worker ------------------------------------------------------------------------ */

struct zone_set {
    uint8_t zone[64][DNS_NAME_MAX];
    uint16_t len[64];
    size_t n;
};

struct wblock {
    const struct srv_block *b;
    struct l1_cache *l1;
    struct zone_set l1_zones;
    struct rcp_cache *rc;
    struct fwd *fwd;
    size_t slot_base;
};

struct ulistener {
    struct worker *w;
    const struct laddr *la;
    int fd;
    ev_io io;
};

struct tlistener {
    struct worker *w;
    const struct laddr *la;
    int fd;
    ev_io io;
};

struct tconn {
    struct worker *w;
    const struct laddr *la;
    int fd;
    ev_io rio, wio;
    ev_timer idle;
    uint8_t *rbuf;
    size_t rlen, rcap;
    uint8_t *wbuf;
    size_t wlen, woff, wcap;
    unsigned inflight; /* queries of this connection not answered yet */
    unsigned refs;     /* callers on the stack holding it */
    bool eof;          /* no more reads (peer closed, shutdown, or a framing error) */
    bool dead;         /* socket closed; freed when inflight reaches 0 */
    struct sockaddr_storage peer;
    socklen_t peerlen;
    struct tconn *prev, *next;
};

enum tier { TIER_NONE = 0, TIER_L1, TIER_L2, TIER_UPSTREAM };

struct query {
    struct query *next_free;
    struct worker *w;
    struct dns_question q;
    uint64_t key;
    uint16_t block;
    size_t slot;
    unsigned tidx;
    bool tcp, v6;
    double start;
    const struct laddr *la;
    struct ulistener *ul;
    struct tconn *conn;
    struct sockaddr_storage peer;
    socklen_t peerlen;
};

struct worker {
    struct srv_runtime *rt;
    unsigned id;
    struct ev_loop *loop;
    pthread_t thr;
    bool running, stopping, closing;
    double stop_budget;
    struct wblock blocks[SRV_BLOCKS_MAX];
    size_t nblocks;
    struct ulistener *ul;
    struct tlistener *tl;
    size_t nl;
    struct tconn *conns;
    size_t nconns;
    bool accepting;

    struct query *free_q;
    size_t nq; /* allocated */
    size_t inflight;
    void **chunks;
    size_t nchunks;

    /* UDP batch buffers */
    struct mmsghdr rx[UDP_BATCH], tx[UDP_BATCH];
    struct iovec rxiov[UDP_BATCH], txiov[UDP_BATCH];
    struct sockaddr_storage rxaddr[UDP_BATCH];
    uint8_t (*rxbuf)[UDP_RX_MAX];
    uint8_t (*txbuf)[UDP_TX_MAX];

    /* UDP replies of async queries (L2 hits, forwarded answers), queued during a loop
     * iteration and sent with one sendmmsg from an ev_prepare watcher (or when full) */
    struct mmsghdr atx[UDP_BATCH];
    struct iovec atxiov[UDP_BATCH];
    struct sockaddr_storage atxaddr[UDP_BATCH];
    int atxfd[UDP_BATCH];
    uint8_t (*atxbuf)[UDP_TX_MAX];
    unsigned natx;
    ev_prepare atx_flush;

    /* scratch for async completions */
    uint8_t *scratch; /* upstream response, TTLs rewritten */
    uint8_t *out;     /* reply (2 bytes of TCP framing room in front) */
    struct dns_rr *rrs, *rrs2;

    ev_async stop_async, snap_async;
    ev_timer drain_timer, deadline_timer;

    struct srv_stats live;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t snap_gen;
    struct srv_stats snap;
};

/* ---- names ---------------------------------------------------------------------------- */

/* Lowercase presentation name ("example.org.", ".") to wire; 0 on error. */
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

/* True when the lowercase wire name `name` is `zone` or below it. */
static bool name_in_zone(const uint8_t *name, size_t nlen, const uint8_t *zone, size_t zlen)
{
    if (zlen > nlen) return false;
    size_t at = nlen - zlen;
    if (memcmp(name + at, zone, zlen) != 0) return false;
    size_t p = 0;
    while (p < at) p += 1u + name[p];
    return p == at;
}

static bool zone_set_covers(const struct zone_set *zs, const struct dns_question *q)
{
    for (size_t i = 0; i < zs->n; i++)
        if (name_in_zone(q->name_lc, q->name_len, zs->zone[i], zs->len[i])) return true;
    return false;
}

/* The longest zone of the listener's blocks holding q; NULL for none. */
static const struct route *route_find(const struct laddr *la, const struct dns_question *q)
{
    const struct route *best = NULL;
    for (size_t i = 0; i < la->nroutes; i++) {
        const struct route *r = &la->routes[i];
        if ((!best || r->zone_len > best->zone_len) &&
            name_in_zone(q->name_lc, q->name_len, r->zone, r->zone_len))
            best = r;
    }
    return best;
}

/* ---- small replies built from the query ------------------------------------------------ */

static size_t put_opt(uint8_t *p, unsigned rcode, bool do_bit)
{
    p[0] = 0;
    dns_put16(p + 1, DNS_T_OPT);
    dns_put16(p + 3, OUR_UDP);
    p[5] = (uint8_t)(rcode >> 4);
    p[6] = 0;
    dns_put16(p + 7, do_bit ? DNS_EDNS_DO : 0);
    dns_put16(p + 9, 0);
    return 11;
}

/* Header + question (+ OPT when the query had one) with `rcode`. */
static size_t build_error(uint8_t *out, const struct dns_question *q, unsigned rcode)
{
    uint16_t f = (uint16_t)(DNS_F_QR | (q->flags & (DNS_F_OPCODE_MASK | DNS_F_RD | DNS_F_CD)) |
                            (rcode & 0xF));
    dns_put16(out, q->id);
    dns_put16(out + 2, f);
    dns_put16(out + 4, 1);
    dns_put16(out + 6, 0);
    dns_put16(out + 8, 0);
    dns_put16(out + 10, q->has_edns ? 1 : 0);
    size_t n = DNS_HEADER_LEN;
    memcpy(out + n, q->name, q->name_len);
    n += q->name_len;
    dns_put16(out + n, q->qtype);
    dns_put16(out + n + 2, q->qclass);
    n += 4;
    if (q->has_edns) n += put_opt(out + n, rcode, q->do_bit);
    return n;
}

/* Header only, for a query whose question cannot be read. */
static size_t build_header_error(uint8_t *out, const uint8_t *in, unsigned rcode)
{
    uint16_t fl = dns_get16(in + 2);
    memcpy(out, in, 2);
    dns_put16(out + 2, (uint16_t)(DNS_F_QR | (fl & (DNS_F_OPCODE_MASK | DNS_F_RD | DNS_F_CD)) |
                                  (rcode & 0xF)));
    memset(out + 4, 0, 8);
    return DNS_HEADER_LEN;
}

/* ---- accounting and logging ------------------------------------------------------------- */

static void fmt_addr(const struct sockaddr_storage *ss, char *buf, size_t cap)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &s->sin_addr, ip, sizeof ip);
        port = ntohs(s->sin_port);
        snprintf(buf, cap, "%s:%u", ip, port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof ip);
        port = ntohs(s->sin6_port);
        snprintf(buf, cap, "[%s]:%u", ip, port);
    } else {
        snprintf(buf, cap, "?");
    }
}

static const char *tier_name(enum tier t)
{
    static const char *const n[] = {"-", "L1", "L2", "upstream"};
    return n[t];
}

/* One line per query on stdout (the `log` directive): client name type rcode duration tier. */
static void log_query(const struct sockaddr_storage *peer, const struct dns_question *q,
                      unsigned rcode, double dur, enum tier tier, bool tcp)
{
    char line[1400], addr[96], name[DNS_NAME_TEXT_MAX + 1], tb[16];
    fmt_addr(peer, addr, sizeof addr);
    size_t nl = dns_name_to_text(q->name, q->name_len, name, DNS_NAME_TEXT_MAX, false);
    name[nl < DNS_NAME_TEXT_MAX ? nl : DNS_NAME_TEXT_MAX] = '\0';
    const char *tn = srv_type_name(q->qtype);
    if (!tn) {
        snprintf(tb, sizeof tb, "TYPE%u", q->qtype);
        tn = tb;
    }
    int n = snprintf(line, sizeof line, "%s %s %s %s %.6fs %s %s\n", addr, name, tn,
                     srv_rcode_name(rcode), dur, tier_name(tier), tcp ? "tcp" : "udp");
    if (n > 0) {
        ssize_t wr = write(STDOUT_FILENO, line, (size_t)n < sizeof line ? (size_t)n : sizeof line);
        (void)wr;
    }
}

static unsigned reply_rcode(const uint8_t *r, size_t len, unsigned hint)
{
    if (hint >= 16) return hint; /* extended rcodes are only ours (BADVERS) */
    return len >= 4 ? (r[3] & 0xFu) : hint;
}

static void account(struct worker *w, size_t slot, unsigned tidx, bool tcp, bool v6, unsigned rcode,
                    enum srv_plugin pl, double dur)
{
    struct srv_zone_stats *zs = &w->live.zones[slot];
    if (rcode >= SRV_RCODES) rcode = SRV_RCODES - 1;
    zs->responses[rcode][pl]++;
    zs->dur_buckets[tidx][srv_dur_bucket(dur)]++;
    zs->dur_count[tidx]++;
    zs->dur_sum[tidx] += dur;
    (void)tcp, (void)v6;
}

static void count_request(struct worker *w, size_t slot, unsigned tidx, bool tcp, bool v6)
{
    w->live.zones[slot].requests[tcp][v6][tidx]++;
}

/* ---- query structs ---------------------------------------------------------------------- */

static struct query *query_get(struct worker *w)
{
    if (!w->free_q) {
        if (w->nq >= QUERIES_MAX) return NULL;
        struct query *chunk = calloc(QUERY_CHUNK, sizeof *chunk);
        if (!chunk) return NULL;
        void **nc = realloc(w->chunks, (w->nchunks + 1) * sizeof *nc);
        if (!nc) {
            free(chunk);
            return NULL;
        }
        w->chunks = nc;
        w->chunks[w->nchunks++] = chunk;
        for (size_t i = 0; i < QUERY_CHUNK; i++) {
            chunk[i].next_free = w->free_q;
            w->free_q = &chunk[i];
        }
        w->nq += QUERY_CHUNK;
    }
    struct query *qs = w->free_q;
    w->free_q = qs->next_free;
    w->inflight++;
    return qs;
}

static void tconn_release(struct tconn *c);

static void query_put(struct query *qs)
{
    struct worker *w = qs->w;
    if (qs->conn) tconn_release(qs->conn);
    qs->conn = NULL;
    qs->next_free = w->free_q;
    w->free_q = qs;
    w->inflight--;
}

/* ---- TCP connections -------------------------------------------------------------------- */

static void tconn_close(struct tconn *c)
{
    struct worker *w = c->w;
    if (!c->dead) {
        ev_io_stop(w->loop, &c->rio);
        ev_io_stop(w->loop, &c->wio);
        ev_timer_stop(w->loop, &c->idle);
        close(c->fd);
        c->fd = -1;
        c->dead = true;
        c->eof = true;
    }
    if (c->inflight || c->refs) return; /* freed by the last query or holder */
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    w->nconns--;
    free(c->rbuf);
    free(c->wbuf);
    free(c);
    if (!w->accepting && !w->stopping && w->nconns < TCP_CONNS_MAX) {
        w->accepting = true;
        for (size_t i = 0; i < w->nl; i++)
            if (w->tl[i].fd >= 0) ev_io_start(w->loop, &w->tl[i].io);
    }
}

static void tconn_flush(struct tconn *c)
{
    while (!c->dead && c->woff < c->wlen) {
        ssize_t n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
        if (n > 0) {
            c->woff += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ev_io_start(c->w->loop, &c->wio);
            return;
        }
        if (n < 0 && errno == EINTR) continue;
        tconn_close(c);
        return;
    }
    if (c->dead) return;
    c->woff = c->wlen = 0;
    ev_io_stop(c->w->loop, &c->wio);
    if (c->eof && c->inflight == 0) tconn_close(c);
}

static void tconn_on_write(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop, (void)revents;
    tconn_flush(io->data);
}

/* Queues a framed reply; the caller flushes. False when the connection is gone or full. */
static bool tconn_queue(struct tconn *c, const uint8_t *msg, size_t len)
{
    if (c->dead) return false;
    size_t need = c->wlen + 2 + len;
    if (need > TCP_WBUF_MAX) {
        tconn_close(c); /* the client does not read its replies */
        return false;
    }
    if (need > c->wcap) {
        size_t cap = c->wcap ? c->wcap : 4096;
        while (cap < need) cap *= 2;
        if (c->woff) {
            memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
            c->wlen -= c->woff;
            c->woff = 0;
            need = c->wlen + 2 + len;
        }
        uint8_t *nb = realloc(c->wbuf, cap);
        if (!nb) return false;
        c->wbuf = nb;
        c->wcap = cap;
    }
    dns_put16(c->wbuf + c->wlen, (uint16_t)len);
    memcpy(c->wbuf + c->wlen + 2, msg, len);
    c->wlen += 2 + len;
    return true;
}

static void tconn_release(struct tconn *c)
{
    c->inflight--;
    if (c->dead) {
        if (c->inflight == 0) tconn_close(c);
        return;
    }
    if (!c->eof && c->inflight + 1 == TCP_INFLIGHT_MAX) {
        /* resume: frames already buffered are handled first (tconn_on_read) */
        ev_io_start(c->w->loop, &c->rio);
        ev_feed_event(c->w->loop, &c->rio, EV_READ);
    }
    if (c->eof && c->inflight == 0 && c->woff >= c->wlen) tconn_close(c);
}

/* ---- sending a finished reply ------------------------------------------------------------ */

/* Sends the queued async UDP replies: one sendmmsg per run of replies on one socket. */
static void udp_async_flush(struct worker *w)
{
    ev_prepare_stop(w->loop, &w->atx_flush);
    for (unsigned i = 0; i < w->natx;) {
        unsigned j = i + 1;
        while (j < w->natx && w->atxfd[j] == w->atxfd[i]) j++;
        for (unsigned sent = i; sent < j;) {
            int k = sendmmsg(w->atxfd[i], w->atx + sent, j - sent, MSG_DONTWAIT);
            if (k > 0) {
                sent += (unsigned)k;
                continue;
            }
            if (k < 0 && errno == EINTR) continue;
            sent++; /* skip the datagram the kernel refused (full buffer, bad address) */
        }
        i = j;
    }
    w->natx = 0;
}

static void udp_async_on_prepare(struct ev_loop *loop, ev_prepare *p, int revents)
{
    (void)loop, (void)revents;
    udp_async_flush(p->data);
}

static void send_async(struct query *qs, const uint8_t *msg, size_t len)
{
    if (qs->tcp) {
        struct tconn *c = qs->conn;
        if (c && !c->dead && tconn_queue(c, msg, len)) tconn_flush(c);
        return;
    }
    struct worker *w = qs->w;
    if (len > UDP_TX_MAX || w->closing) { /* no loop iteration left to flush a queue */
        ssize_t n;
        do
            n = sendto(qs->ul->fd, msg, len, MSG_DONTWAIT, (const struct sockaddr *)&qs->peer,
                       qs->peerlen);
        while (n < 0 && errno == EINTR);
        return;
    }
    /* Replies finished in this loop iteration leave together (DESIGN: batch syscalls). */
    if (w->natx == UDP_BATCH) udp_async_flush(w);
    unsigned i = w->natx++;
    memcpy(w->atxbuf[i], msg, len);
    memcpy(&w->atxaddr[i], &qs->peer, qs->peerlen);
    w->atxiov[i].iov_base = w->atxbuf[i];
    w->atxiov[i].iov_len = len;
    memset(&w->atx[i].msg_hdr, 0, sizeof w->atx[i].msg_hdr);
    w->atx[i].msg_hdr.msg_iov = &w->atxiov[i];
    w->atx[i].msg_hdr.msg_iovlen = 1;
    w->atx[i].msg_hdr.msg_name = &w->atxaddr[i];
    w->atx[i].msg_hdr.msg_namelen = qs->peerlen;
    w->atxfd[i] = qs->ul->fd;
    if (!ev_is_active(&w->atx_flush)) ev_prepare_start(w->loop, &w->atx_flush);
}

/* Accounting, log and send for an async query, then releases it. */
static void query_finish(struct query *qs, const uint8_t *msg, size_t len, unsigned rcode_hint,
                         enum srv_plugin pl, enum tier tier)
{
    struct worker *w = qs->w;
    unsigned rcode = reply_rcode(msg, len, rcode_hint);
    double dur = ev_now(w->loop) - qs->start;
    if (dur < 0) dur = 0;
    account(w, qs->slot, qs->tidx, qs->tcp, qs->v6, rcode, pl, dur);
    if (w->blocks[qs->block].b->log) log_query(&qs->peer, &qs->q, rcode, dur, tier, qs->tcp);
    send_async(qs, msg, len);
    query_put(qs);
}

/* ---- the miss path: forward -------------------------------------------------------------- */

static void fail_servfail(struct query *qs, const char *why)
{
    struct worker *w = qs->w;
    const struct srv_block *b = w->blocks[qs->block].b;
    if (b->errors) {
        char name[DNS_NAME_TEXT_MAX + 1], tb[16];
        size_t nl = dns_name_to_text(qs->q.name, qs->q.name_len, name, DNS_NAME_TEXT_MAX, false);
        name[nl < DNS_NAME_TEXT_MAX ? nl : DNS_NAME_TEXT_MAX] = '\0';
        const char *tn = srv_type_name(qs->q.qtype);
        if (!tn) snprintf(tb, sizeof tb, "TYPE%u", qs->q.qtype), tn = tb;
        fprintf(stderr, "[ERROR] plugin/errors: 2 %s %s: %s\n", name, tn, why);
    }
    size_t n = build_error(w->out + 2, &qs->q, DNS_RCODE_SERVFAIL);
    query_finish(qs, w->out + 2, n, DNS_RCODE_SERVFAIL, SRV_PL_FORWARD, TIER_UPSTREAM);
}

/* Copies the TTL of every non-OPT RR of `src` onto the same RR of the built reply (the
 * reply keeps RR order; fitting only drops additional RRs at the end). */
static void restore_ttls(struct worker *w, uint8_t *out, size_t len, const struct dns_msg *src)
{
    struct dns_msg m;
    if (dns_msg_parse(&m, out, len, w->rrs2, DNS_RR_MAX) != DNS_OK) return;
    size_t j = 0;
    for (size_t i = 0; i < m.nrr; i++) {
        if (m.rr[i].type == DNS_T_OPT) continue;
        while (j < src->nrr && src->rr[j].type == DNS_T_OPT) j++;
        if (j >= src->nrr) break;
        memcpy(out + m.rr[i].ttl_off, src->buf + src->rr[j].ttl_off, 4);
        j++;
    }
}

static void on_forward(void *priv, enum fwd_status st, const uint8_t *resp, size_t len)
{
    struct query *qs = priv;
    struct worker *w = qs->w;
    if (w->closing) {
        query_put(qs);
        return;
    }
    if (st == FWD_REFUSED) { /* max_concurrent reached */
        size_t n = build_error(w->out + 2, &qs->q, DNS_RCODE_REFUSED);
        query_finish(qs, w->out + 2, n, DNS_RCODE_REFUSED, SRV_PL_FORWARD, TIER_UPSTREAM);
        return;
    }
    if (st != FWD_OK || len > DNS_MSG_MAX) {
        fail_servfail(qs, "forward: no upstream answered");
        return;
    }
    struct wblock *wb = &w->blocks[qs->block];
    memcpy(w->scratch, resp, len);
    long ttl = -1;
    if (wb->rc && rcp_cache_covers(wb->rc, &qs->q))
        ttl = rcp_cache_store(wb->rc, &qs->q, w->scratch, len);

    struct dns_msg m;
    if (dns_msg_parse(&m, w->scratch, len, w->rrs, DNS_RR_MAX) != DNS_OK || m.count[0] != 1) {
        fail_servfail(qs, "forward: malformed upstream response");
        return;
    }
    double now = ev_now(w->loop);
    if (wb->l1 && zone_set_covers(&wb->l1_zones, &qs->q)) {
        struct dns_verdict v;
        dns_classify(&v, &m, &qs->q, (uint32_t)now);
        if (v.kind != DNS_KIND_NONE)
            l1_insert(wb->l1, qs->key, &qs->q, w->scratch, len,
                      ttl >= 0 ? (uint32_t)ttl : v.msg_ttl, v.kind, now);
    }
    size_t olen = 0;
    uint8_t *out = w->out + 2;
    if (dns_reply_build(out, DNS_MSG_MAX, &olen, &m, &qs->q, ttl >= 0 ? (uint32_t)ttl : 0, OUR_UDP,
                        qs->tcp) != DNS_OK) {
        fail_servfail(qs, "forward: response does not fit");
        return;
    }
    if (ttl < 0) restore_ttls(w, out, olen, &m);
    out[2] = (uint8_t)((out[2] & ~0x04) | (w->scratch[2] & 0x04)); /* the upstream's AA */
    query_finish(qs, out, olen, out[3] & DNS_F_RCODE_MASK, SRV_PL_FORWARD, TIER_UPSTREAM);
}

static void start_forward(struct query *qs)
{
    struct wblock *wb = &qs->w->blocks[qs->block];
    if (!wb->fwd || !fwd_handles(wb->fwd, &qs->q)) {
        fail_servfail(qs, "no next plugin found");
        return;
    }
    if (fwd_query(wb->fwd, &qs->q, qs->key, qs->tcp, on_forward, qs) != 0)
        fail_servfail(qs, "forward: cannot send");
}

/* ---- L2 ---------------------------------------------------------------------------------- */

static void on_lookup(void *priv, enum rcp_lookup_status st, const uint8_t *reply, size_t len)
{
    struct query *qs = priv;
    struct worker *w = qs->w;
    if (w->closing) {
        query_put(qs);
        return;
    }
    if (st != RCP_LOOKUP_HIT) {
        start_forward(qs);
        return;
    }
    struct wblock *wb = &w->blocks[qs->block];
    if (wb->l1 && zone_set_covers(&wb->l1_zones, &qs->q) && len <= DNS_MSG_MAX) {
        /* Fill L1 with the remaining TTL the hit carries. */
        struct dns_msg m;
        if (dns_msg_parse(&m, reply, len, w->rrs, DNS_RR_MAX) == DNS_OK) {
            int first = -1;
            for (size_t i = 0; i < m.nrr && first < 0; i++)
                if (m.rr[i].type != DNS_T_OPT) first = (int)i;
            if (first >= 0) {
                double now = ev_now(w->loop);
                struct dns_verdict v;
                dns_classify(&v, &m, &qs->q, (uint32_t)now);
                uint32_t ttl = dns_ttl_read(dns_get32(reply + m.rr[first].ttl_off));
                if (v.kind != DNS_KIND_NONE)
                    l1_insert(wb->l1, qs->key, &qs->q, reply, len, ttl, v.kind, now);
            }
        }
    }
    query_finish(qs, reply, len, 0, SRV_PL_REDIS, TIER_L2);
}

/* ---- one query --------------------------------------------------------------------------- */

enum qres { Q_DROP = 0, Q_REPLY, Q_ASYNC };

/* Handles one query read from `la`. On Q_REPLY the reply is in out/out_len. On Q_ASYNC the
 * query was handed to a struct query that answers through ul/conn later. */
static enum qres handle_query(struct worker *w, const struct laddr *la, struct ulistener *ul,
                              struct tconn *conn, const struct sockaddr_storage *peer,
                              socklen_t peerlen, const uint8_t *in, size_t len, uint8_t *out,
                              size_t cap, size_t *out_len)
{
    bool tcp = conn != NULL, v6 = peer->ss_family == AF_INET6;
    double now = ev_now(w->loop);
    if (len < DNS_HEADER_LEN) return Q_DROP;
    uint16_t flags = dns_get16(in + 2);
    if (flags & DNS_F_QR) return Q_DROP;

    struct dns_question qbuf, *q = &qbuf;
    struct query *qs = NULL;
    enum dns_err perr = dns_question_parse(q, in, len);
    size_t drop_slot = w->blocks[la->drop_block].slot_base + w->blocks[la->drop_block].b->nzones;
    unsigned tidx = perr == DNS_OK ? srv_qtype_index(q->qtype) : 0;
    unsigned rcode;
    const struct srv_block *lb = w->blocks[la->drop_block].b;

    if (perr != DNS_OK || DNS_OPCODE(flags) != DNS_OPCODE_QUERY ||
        (q->has_edns && q->edns_version > 0)) {
        count_request(w, drop_slot, tidx, tcp, v6);
        if (DNS_OPCODE(flags) != DNS_OPCODE_QUERY) {
            rcode = DNS_RCODE_NOTIMP;
            *out_len =
                perr == DNS_OK ? build_error(out, q, rcode) : build_header_error(out, in, rcode);
        } else if (perr != DNS_OK) {
            rcode = DNS_RCODE_FORMERR;
            *out_len = build_header_error(out, in, rcode);
        } else {
            rcode = DNS_RCODE_BADVERS;
            *out_len = build_error(out, q, rcode);
        }
        account(w, drop_slot, tidx, tcp, v6, rcode, SRV_PL_NONE, 0);
        if (lb->log && perr == DNS_OK) log_query(peer, q, rcode, 0, TIER_NONE, tcp);
        return Q_REPLY;
    }

    const struct route *r = route_find(la, q);
    if (!r) {
        count_request(w, drop_slot, tidx, tcp, v6);
        *out_len = build_error(out, q, DNS_RCODE_REFUSED);
        account(w, drop_slot, tidx, tcp, v6, DNS_RCODE_REFUSED, SRV_PL_NONE, 0);
        if (lb->log) log_query(peer, q, DNS_RCODE_REFUSED, 0, TIER_NONE, tcp);
        return Q_REPLY;
    }
    struct wblock *wb = &w->blocks[r->block];
    size_t slot = wb->slot_base + r->zidx;
    count_request(w, slot, tidx, tcp, v6);
    uint64_t key = dns_key_hash(q, q->do_bit, 0);

    if (wb->l1 && zone_set_covers(&wb->l1_zones, q)) {
        size_t n = 0;
        if (l1_lookup(wb->l1, key, q, now, OUR_UDP, tcp, out, cap, &n)) {
            unsigned rc = out[3] & 0xFu;
            bool denial =
                rc == DNS_RCODE_NXDOMAIN ||
                (rc == DNS_RCODE_NOERROR && dns_get16(out + 6) == 0 && dns_get16(out + 8) > 0);
            w->live.blocks[r->block].cache_hits[denial]++;
            *out_len = n;
            account(w, slot, tidx, tcp, v6, rc, SRV_PL_CACHE, 0);
            if (wb->b->log) log_query(peer, q, rc, 0, TIER_L1, tcp);
            return Q_REPLY;
        }
        w->live.blocks[r->block].cache_misses++;
    }

    qs = query_get(w);
    if (!qs) {
        *out_len = build_error(out, q, DNS_RCODE_SERVFAIL);
        account(w, slot, tidx, tcp, v6, DNS_RCODE_SERVFAIL, SRV_PL_NONE, 0);
        return Q_REPLY;
    }
    qs->w = w;
    memcpy(&qs->q, q, sizeof *q);
    qs->key = key;
    qs->block = r->block;
    qs->slot = slot;
    qs->tidx = tidx;
    qs->tcp = tcp;
    qs->v6 = v6;
    qs->start = now;
    qs->la = la;
    qs->ul = ul;
    qs->conn = conn;
    if (conn) conn->inflight++;
    memcpy(&qs->peer, peer, peerlen);
    qs->peerlen = peerlen;

    if (wb->rc && rcp_cache_covers(wb->rc, q)) {
        if (rcp_cache_lookup(wb->rc, &qs->q, tcp, on_lookup, qs) == 0) return Q_ASYNC;
    }
    start_forward(qs);
    return Q_ASYNC;
}

/* ---- UDP ------------------------------------------------------------------------------- */

static void udp_on_read(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop, (void)revents;
    struct ulistener *ul = io->data;
    struct worker *w = ul->w;
    for (int round = 0; round < UDP_BATCHES_MAX && !w->stopping; round++) {
        for (int i = 0; i < UDP_BATCH; i++) {
            w->rxiov[i].iov_base = w->rxbuf[i];
            w->rxiov[i].iov_len = UDP_RX_MAX;
            memset(&w->rx[i].msg_hdr, 0, sizeof w->rx[i].msg_hdr);
            w->rx[i].msg_hdr.msg_iov = &w->rxiov[i];
            w->rx[i].msg_hdr.msg_iovlen = 1;
            w->rx[i].msg_hdr.msg_name = &w->rxaddr[i];
            w->rx[i].msg_hdr.msg_namelen = sizeof w->rxaddr[i];
        }
        int n = recvmmsg(ul->fd, w->rx, UDP_BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0) break;
        int nt = 0;
        for (int i = 0; i < n; i++) {
            size_t len = w->rx[i].msg_len;
            if (w->rx[i].msg_hdr.msg_flags & MSG_TRUNC) {
                /* Larger than any query we take: FORMERR when the header is readable. */
                if (len < DNS_HEADER_LEN || (dns_get16(w->rxbuf[i] + 2) & DNS_F_QR)) continue;
                len = build_header_error(w->txbuf[nt], w->rxbuf[i], DNS_RCODE_FORMERR);
            } else {
                size_t olen = 0;
                enum qres res =
                    handle_query(w, ul->la, ul, NULL, &w->rxaddr[i], w->rx[i].msg_hdr.msg_namelen,
                                 w->rxbuf[i], len, w->txbuf[nt], UDP_TX_MAX, &olen);
                if (res != Q_REPLY) continue;
                len = olen;
            }
            w->txiov[nt].iov_base = w->txbuf[nt];
            w->txiov[nt].iov_len = len;
            memset(&w->tx[nt].msg_hdr, 0, sizeof w->tx[nt].msg_hdr);
            w->tx[nt].msg_hdr.msg_iov = &w->txiov[nt];
            w->tx[nt].msg_hdr.msg_iovlen = 1;
            w->tx[nt].msg_hdr.msg_name = &w->rxaddr[i];
            w->tx[nt].msg_hdr.msg_namelen = w->rx[i].msg_hdr.msg_namelen;
            nt++;
        }
        for (int sent = 0; sent < nt;) {
            int k = sendmmsg(ul->fd, w->tx + sent, (unsigned)(nt - sent), MSG_DONTWAIT);
            if (k > 0) {
                sent += k;
                continue;
            }
            if (k < 0 && errno == EINTR) continue;
            sent++; /* skip the datagram the kernel refused (full buffer, bad address) */
        }
        if (n < UDP_BATCH) break;
    }
}

/* ---- TCP --------------------------------------------------------------------------------- */

static void tconn_on_idle(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop, (void)revents;
    struct tconn *c = t->data;
    if (c->inflight || c->woff < c->wlen) {
        ev_timer_again(c->w->loop, &c->idle);
        return;
    }
    tconn_close(c);
}

/* Handles every whole frame in the read buffer, up to the in-flight cap. */
static void tconn_frames(struct tconn *c)
{
    struct worker *w = c->w;
    size_t off = 0;
    while (c->rlen - off >= 2 && !c->dead && !c->w->stopping) {
        if (c->inflight >= TCP_INFLIGHT_MAX) {
            ev_io_stop(w->loop, &c->rio); /* resumed by tconn_release */
            break;
        }
        size_t flen = dns_get16(c->rbuf + off);
        if (c->rlen - off - 2 < flen) break;
        const uint8_t *msg = c->rbuf + off + 2;
        off += 2 + flen;
        size_t olen = 0;
        enum qres res = handle_query(w, c->la, NULL, c, &c->peer, c->peerlen, msg, flen, w->out + 2,
                                     DNS_MSG_MAX, &olen);
        if (res == Q_REPLY) tconn_queue(c, w->out + 2, olen);
    }
    if (off && !c->dead) {
        memmove(c->rbuf, c->rbuf + off, c->rlen - off);
        c->rlen -= off;
    }
}

static void tconn_read(struct tconn *c)
{
    struct worker *w = c->w;
    tconn_frames(c);
    for (int reads = 0; reads < 4 && !c->eof && !c->dead && c->inflight < TCP_INFLIGHT_MAX;
         reads++) {
        if (c->rcap - c->rlen < 4096 && c->rcap < 2 + DNS_MSG_MAX) {
            size_t cap = c->rcap * 2;
            if (cap > 2 + DNS_MSG_MAX) cap = 2 + DNS_MSG_MAX;
            uint8_t *nb = realloc(c->rbuf, cap);
            if (!nb) {
                tconn_close(c);
                return;
            }
            c->rbuf = nb;
            c->rcap = cap;
        }
        if (c->rlen == c->rcap) break;
        ssize_t n = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
        if (n == 0) {
            c->eof = true;
            ev_io_stop(w->loop, &c->rio);
            break;
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            tconn_close(c);
            return;
        }
        c->rlen += (size_t)n;
        ev_timer_again(w->loop, &c->idle);
        tconn_frames(c);
    }
    if (!c->dead) tconn_flush(c);
}

static void tconn_on_read(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop, (void)revents;
    struct tconn *c = io->data;
    c->refs++;
    tconn_read(c);
    c->refs--;
    if (c->dead) {
        if (!c->inflight && !c->refs) tconn_close(c);
    } else if (c->eof && !c->inflight && c->woff >= c->wlen) {
        tconn_close(c);
    }
}

static void tcp_on_accept(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop, (void)revents;
    struct tlistener *tl = io->data;
    struct worker *w = tl->w;
    for (int i = 0; i < 64; i++) {
        if (w->nconns >= TCP_CONNS_MAX) {
            ev_io_stop(w->loop, io);
            w->accepting = false;
            return;
        }
        struct sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        int fd = accept4(tl->fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        struct tconn *c = calloc(1, sizeof *c);
        if (!c || !(c->rbuf = malloc(4096))) {
            free(c);
            close(fd);
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->w = w;
        c->la = tl->la;
        c->fd = fd;
        c->rcap = 4096;
        c->peer = peer;
        c->peerlen = plen;
        ev_io_init(&c->rio, tconn_on_read, fd, EV_READ);
        ev_io_init(&c->wio, tconn_on_write, fd, EV_WRITE);
        ev_init(&c->idle, tconn_on_idle);
        c->idle.repeat = TCP_IDLE;
        c->rio.data = c->wio.data = c->idle.data = c;
        ev_io_start(w->loop, &c->rio);
        ev_timer_again(w->loop, &c->idle);
        c->next = w->conns;
        if (w->conns) w->conns->prev = c;
        w->conns = c;
        w->nconns++;
    }
}

/* ---- sockets ------------------------------------------------------------------------------ */

static int open_socket(const struct laddr *la, int type, char *err, size_t errlen)
{
    int fd = socket(la->sa.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket %s: %s", la->text, strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
        snprintf(err, errlen, "SO_REUSEPORT %s: %s", la->text, strerror(errno));
        close(fd);
        return -1;
    }
    if (la->v6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (type == SOCK_DGRAM) {
        int sz = 4 * 1024 * 1024;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    }
    if (bind(fd, (const struct sockaddr *)&la->sa, la->salen) != 0) {
        snprintf(err, errlen, "listen %s/%s: %s", la->text, type == SOCK_DGRAM ? "udp" : "tcp",
                 strerror(errno));
        close(fd);
        return -1;
    }
    if (type == SOCK_STREAM && listen(fd, 1024) != 0) {
        snprintf(err, errlen, "listen %s/tcp: %s", la->text, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* ---- worker lifecycle -------------------------------------------------------------------- */

static void worker_snapshot(struct worker *w)
{
    pthread_mutex_lock(&w->mu);
    struct srv_stats *s = &w->snap;
    srv_stats_reset(s);
    srv_stats_add(s, &w->live);
    for (size_t b = 0; b < w->nblocks; b++) {
        struct wblock *wb = &w->blocks[b];
        if (wb->l1) {
            struct l1_stats st;
            l1_stats(wb->l1, &st);
            s->blocks[b].cache_entries[0] = st.success_entries;
            s->blocks[b].cache_entries[1] = st.denial_entries;
        }
        if (wb->rc && s->blocks[b].redis) *s->blocks[b].redis = *rcp_cache_metrics(wb->rc);
        if (wb->fwd) fwd_stats(wb->fwd, &s->blocks[b].fwd);
    }
    w->snap_gen++;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void worker_on_snap(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)loop, (void)revents;
    worker_snapshot(a->data);
}

static bool worker_drained(struct worker *w)
{
    if (w->inflight || w->conns) return false;
    for (size_t b = 0; b < w->nblocks; b++)
        if (w->blocks[b].rc && rcp_cache_pending_writes(w->blocks[b].rc)) return false;
    return true;
}

static void worker_on_drain(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    if (worker_drained(t->data)) ev_break(loop, EVBREAK_ALL);
}

static void worker_on_deadline(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)t, (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

/* Stop reading and accepting; in-flight queries still answer through the open sockets. */
static void worker_on_stop(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)revents;
    struct worker *w = a->data;
    if (w->stopping) return;
    w->stopping = true;
    for (size_t i = 0; i < w->nl; i++) {
        ev_io_stop(loop, &w->ul[i].io);
        ev_io_stop(loop, &w->tl[i].io);
        if (w->tl[i].fd >= 0) close(w->tl[i].fd);
        w->tl[i].fd = -1;
    }
    w->accepting = false;
    for (struct tconn *c = w->conns, *next; c; c = next) {
        next = c->next;
        if (c->dead) continue;
        c->eof = true;
        ev_io_stop(loop, &c->rio);
        if (c->inflight == 0 && c->woff >= c->wlen) tconn_close(c);
    }
    ev_timer_start(loop, &w->drain_timer);
    ev_timer_set(&w->deadline_timer, w->stop_budget, 0);
    ev_timer_start(loop, &w->deadline_timer);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    ev_run(w->loop, 0);
    udp_async_flush(w); /* replies queued in the last iteration (the loop ended in a timer) */
    worker_snapshot(w);
    /* Teardown on this thread: callbacks of pending work see `closing` and only release. */
    w->closing = true;
    for (size_t b = 0; b < w->nblocks; b++) {
        if (w->blocks[b].rc) rcp_cache_free(w->blocks[b].rc);
        w->blocks[b].rc = NULL;
    }
    for (size_t b = 0; b < w->nblocks; b++) {
        if (w->blocks[b].fwd) fwd_free(w->blocks[b].fwd);
        w->blocks[b].fwd = NULL;
    }
    while (w->conns) {
        struct tconn *c = w->conns;
        c->inflight = 0;
        tconn_close(c);
    }
    return NULL;
}

static void worker_free(struct worker *w)
{
    if (!w) return;
    for (size_t b = 0; b < w->nblocks; b++) {
        if (w->blocks[b].rc) rcp_cache_free(w->blocks[b].rc);
        if (w->blocks[b].fwd) fwd_free(w->blocks[b].fwd);
        if (w->blocks[b].l1) l1_free(w->blocks[b].l1);
    }
    while (w->conns) {
        struct tconn *c = w->conns;
        c->inflight = 0;
        tconn_close(c);
    }
    for (size_t i = 0; i < w->nl; i++) {
        if (w->ul && w->ul[i].fd >= 0) close(w->ul[i].fd);
        if (w->tl && w->tl[i].fd >= 0) close(w->tl[i].fd);
    }
    free(w->ul);
    free(w->tl);
    for (size_t i = 0; i < w->nchunks; i++) free(w->chunks[i]);
    free(w->chunks);
    free(w->rxbuf);
    free(w->txbuf);
    free(w->atxbuf);
    free(w->scratch);
    free(w->out);
    free(w->rrs);
    free(w->rrs2);
    srv_stats_free(&w->live);
    srv_stats_free(&w->snap);
    if (w->loop) ev_loop_destroy(w->loop);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}

static struct worker *worker_new(struct srv_runtime *rt, unsigned id, char *err, size_t errlen)
{
    const struct srv_config *cfg = rt->cfg;
    struct worker *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->rt = rt;
    w->id = id;
    w->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
    w->rxbuf = malloc(UDP_BATCH * sizeof *w->rxbuf);
    w->txbuf = malloc(UDP_BATCH * sizeof *w->txbuf);
    w->atxbuf = malloc(UDP_BATCH * sizeof *w->atxbuf);
    w->scratch = malloc(DNS_MSG_MAX + 16);
    w->out = malloc(DNS_MSG_MAX + 16);
    w->rrs = malloc(DNS_RR_MAX * sizeof *w->rrs);
    w->rrs2 = malloc(DNS_RR_MAX * sizeof *w->rrs2);
    w->ul = calloc(rt->naddrs ? rt->naddrs : 1, sizeof *w->ul);
    w->tl = calloc(rt->naddrs ? rt->naddrs : 1, sizeof *w->tl);
    if (!w->loop || !w->rxbuf || !w->txbuf || !w->atxbuf || !w->scratch || !w->out || !w->rrs ||
        !w->rrs2 || !w->ul || !w->tl || srv_stats_init(&w->live, cfg) != 0 ||
        srv_stats_init(&w->snap, cfg) != 0) {
        snprintf(err, errlen, "out of memory");
        worker_free(w);
        return NULL;
    }
    for (size_t i = 0; i < rt->naddrs; i++) w->ul[i].fd = w->tl[i].fd = -1;

    unsigned n = rt->nworkers;
    for (size_t b = 0; b < cfg->nblocks; b++) {
        const struct srv_block *blk = &cfg->blocks[b];
        struct wblock *wb = &w->blocks[b];
        wb->b = blk;
        wb->slot_base = srv_slot_base(cfg, b);
        w->nblocks = b + 1;
        if (blk->has_cache) {
            struct l1_opts o = blk->cache;
            if (o.success_cap) o.success_cap = o.success_cap / n ? o.success_cap / n : 1;
            if (o.denial_cap) o.denial_cap = o.denial_cap / n ? o.denial_cap / n : 1;
            wb->l1 = l1_new(&o);
            if (!wb->l1) {
                snprintf(err, errlen, "%s:%u: cache: out of memory", blk->file, blk->line);
                worker_free(w);
                return NULL;
            }
            size_t nz = o.nzones ? o.nzones : blk->nzones;
            for (size_t z = 0; z < nz && z < 64; z++) {
                const char *t = o.nzones ? o.zones[z] : blk->zones[z];
                uint16_t l = text_to_wire(t, wb->l1_zones.zone[wb->l1_zones.n]);
                if (l) wb->l1_zones.len[wb->l1_zones.n++] = l;
            }
        }
        if (blk->redis_cache) {
            struct rcp_config rc = *blk->redis_cache;
            unsigned size = rc.pool.size ? rc.pool.size : 10 * srv_cpu_count();
            rc.pool.size = size / n ? size / n : 1;
            const char *zones[SRV_KEYS_MAX];
            for (size_t z = 0; z < blk->nzones; z++) zones[z] = blk->zones[z];
            char e[256];
            wb->rc = rcp_cache_new(w->loop, &rc, zones, blk->nzones, e, sizeof e);
            if (!wb->rc) {
                snprintf(err, errlen, "%s:%u: redis_cache: %s", blk->redis_cache->file,
                         blk->redis_cache->line, e);
                worker_free(w);
                return NULL;
            }
            rcp_cache_set_udp_size(wb->rc, OUR_UDP);
        }
        if (blk->has_forward) {
            char e[256];
            wb->fwd = fwd_new(w->loop, &blk->forward, e, sizeof e);
            if (!wb->fwd) {
                snprintf(err, errlen, "%s:%u: forward: %s", blk->forward.file, blk->forward.line,
                         e);
                worker_free(w);
                return NULL;
            }
        }
    }

    w->nl = rt->naddrs;
    for (size_t i = 0; i < rt->naddrs; i++) {
        const struct laddr *la = &rt->addrs[i];
        w->ul[i].w = w->tl[i].w = w;
        w->ul[i].la = w->tl[i].la = la;
        if ((w->ul[i].fd = open_socket(la, SOCK_DGRAM, err, errlen)) < 0 ||
            (w->tl[i].fd = open_socket(la, SOCK_STREAM, err, errlen)) < 0) {
            worker_free(w);
            return NULL;
        }
        ev_io_init(&w->ul[i].io, udp_on_read, w->ul[i].fd, EV_READ);
        w->ul[i].io.data = &w->ul[i];
        ev_io_start(w->loop, &w->ul[i].io);
        ev_io_init(&w->tl[i].io, tcp_on_accept, w->tl[i].fd, EV_READ);
        w->tl[i].io.data = &w->tl[i];
        ev_io_start(w->loop, &w->tl[i].io);
    }
    w->accepting = true;

    ev_async_init(&w->stop_async, worker_on_stop);
    w->stop_async.data = w;
    ev_async_start(w->loop, &w->stop_async);
    ev_async_init(&w->snap_async, worker_on_snap);
    w->snap_async.data = w;
    ev_async_start(w->loop, &w->snap_async);
    ev_prepare_init(&w->atx_flush, udp_async_on_prepare);
    w->atx_flush.data = w;
    ev_timer_init(&w->drain_timer, worker_on_drain, 0.005, 0.005);
    w->drain_timer.data = w;
    ev_timer_init(&w->deadline_timer, worker_on_deadline, 2.0, 0);
    w->deadline_timer.data = w;
    return w;
}

/* ---- the runtime --------------------------------------------------------------------------- */

static int laddr_fill(struct laddr *la, const char *host, uint16_t port)
{
    memset(la, 0, sizeof *la);
    la->port = port;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&la->sa;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&la->sa;
    char h[64];
    snprintf(h, sizeof h, "%s", host);
    size_t hl = strlen(h);
    if (h[0] == '[' && hl > 2 && h[hl - 1] == ']') {
        memmove(h, h + 1, hl - 2);
        h[hl - 2] = '\0';
    }
    if (inet_pton(AF_INET, h, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        la->salen = sizeof *s4;
        snprintf(la->text, sizeof la->text, "%s:%u", h, port);
        return 0;
    }
    if (inet_pton(AF_INET6, h, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        la->salen = sizeof *s6;
        la->v6 = true;
        snprintf(la->text, sizeof la->text, "[%s]:%u", h, port);
        return 0;
    }
    return -1;
}

static bool laddr_same(const struct laddr *a, const struct laddr *b)
{
    return a->salen == b->salen && memcmp(&a->sa, &b->sa, a->salen) == 0;
}

/* Does block `blk` listen on `la`? (its port, and one of its binds or no bind at all) */
static bool block_listens(const struct srv_block *blk, const struct laddr *la)
{
    if (blk->port != la->port) return false;
    if (blk->nbinds == 0) {
        /* wildcard: the any-address listeners, and every specific address of its port */
        return true;
    }
    for (size_t i = 0; i < blk->nbinds; i++) {
        struct laddr t;
        if (laddr_fill(&t, blk->binds[i], blk->port) == 0 && laddr_same(&t, la)) return true;
    }
    return false;
}

static int runtime_addrs(struct srv_runtime *rt, char *err, size_t errlen)
{
    const struct srv_config *cfg = rt->cfg;
    size_t cap = 0;
    for (size_t b = 0; b < cfg->nblocks; b++)
        cap += cfg->blocks[b].nbinds ? cfg->blocks[b].nbinds : 2;
    rt->addrs = calloc(cap ? cap : 1, sizeof *rt->addrs);
    if (!rt->addrs) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t b = 0; b < cfg->nblocks; b++) {
        const struct srv_block *blk = &cfg->blocks[b];
        const char *wild[2] = {"0.0.0.0", "::"};
        size_t nb = blk->nbinds ? blk->nbinds : 2;
        for (size_t i = 0; i < nb; i++) {
            struct laddr t;
            const char *h = blk->nbinds ? blk->binds[i] : wild[i];
            if (laddr_fill(&t, h, blk->port) != 0) {
                snprintf(err, errlen, "%s:%u: bind: not an IP address: %s", blk->file, blk->line,
                         h);
                return -1;
            }
            if (!blk->nbinds && t.v6) {
                /* Listen on :: only when the host has IPv6. */
                int fd = socket(AF_INET6, SOCK_DGRAM, 0);
                if (fd < 0) continue;
                close(fd);
            }
            size_t j;
            for (j = 0; j < rt->naddrs; j++)
                if (laddr_same(&rt->addrs[j], &t)) break;
            if (j == rt->naddrs) rt->addrs[rt->naddrs++] = t;
        }
    }
    for (size_t i = 0; i < rt->naddrs; i++) {
        struct laddr *la = &rt->addrs[i];
        la->drop_block = -1;
        for (size_t b = 0; b < cfg->nblocks; b++) {
            const struct srv_block *blk = &cfg->blocks[b];
            if (!block_listens(blk, la)) continue;
            if (la->drop_block < 0) la->drop_block = (int)b;
            for (size_t z = 0; z < blk->nzones && la->nroutes < ROUTES_MAX; z++) {
                struct route *r = &la->routes[la->nroutes];
                r->zone_len = text_to_wire(blk->zones[z], r->zone);
                if (!r->zone_len) continue;
                r->block = (uint16_t)b;
                r->zidx = (uint16_t)z;
                la->nroutes++;
            }
        }
        if (la->drop_block < 0) la->drop_block = 0;
    }
    return 0;
}

struct srv_runtime *srv_runtime_new(const struct srv_config *cfg, unsigned nworkers, char *err,
                                    size_t errlen)
{
    if (cfg->nblocks == 0) {
        snprintf(err, errlen, "no server blocks");
        return NULL;
    }
    struct srv_runtime *rt = calloc(1, sizeof *rt);
    if (!rt) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    rt->cfg = cfg;
    rt->nworkers = nworkers ? nworkers : 1;
    rt->w = calloc(rt->nworkers, sizeof *rt->w);
    if (!rt->w || runtime_addrs(rt, err, errlen) != 0) {
        if (!rt->w) snprintf(err, errlen, "out of memory");
        srv_runtime_free(rt);
        return NULL;
    }
    for (unsigned i = 0; i < rt->nworkers; i++) {
        rt->w[i] = worker_new(rt, i, err, errlen);
        if (!rt->w[i]) {
            srv_runtime_free(rt);
            return NULL;
        }
    }
    return rt;
}

int srv_runtime_start(struct srv_runtime *rt, char *err, size_t errlen)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = 0;
    for (unsigned i = 0; i < rt->nworkers; i++) {
        int e = pthread_create(&rt->w[i]->thr, NULL, worker_main, rt->w[i]);
        if (e != 0) {
            snprintf(err, errlen, "pthread_create: %s", strerror(e));
            rc = -1;
            break;
        }
        rt->w[i]->running = true;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    rt->started = true;
    return rc;
}

void srv_runtime_stop(struct srv_runtime *rt, double budget)
{
    for (unsigned i = 0; i < rt->nworkers; i++) {
        struct worker *w = rt->w[i];
        if (!w || !w->running) continue;
        w->stop_budget = budget;
        ev_async_send(w->loop, &w->stop_async);
    }
    for (unsigned i = 0; i < rt->nworkers; i++) {
        struct worker *w = rt->w[i];
        if (!w || !w->running) continue;
        pthread_join(w->thr, NULL);
        w->running = false;
    }
}

void srv_runtime_free(struct srv_runtime *rt)
{
    if (!rt) return;
    srv_runtime_stop(rt, 0.5);
    if (rt->w)
        for (unsigned i = 0; i < rt->nworkers; i++) worker_free(rt->w[i]);
    free(rt->w);
    free(rt->addrs);
    free(rt);
}

void srv_runtime_collect(struct srv_runtime *rt, struct srv_stats *sum)
{
    uint64_t gen[256];
    srv_stats_reset(sum);
    unsigned n = rt->nworkers < 256 ? rt->nworkers : 256;
    for (unsigned i = 0; i < n; i++) {
        struct worker *w = rt->w[i];
        pthread_mutex_lock(&w->mu);
        gen[i] = w->snap_gen;
        pthread_mutex_unlock(&w->mu);
        if (w->running) ev_async_send(w->loop, &w->snap_async);
    }
    for (unsigned i = 0; i < n; i++) {
        struct worker *w = rt->w[i];
        pthread_mutex_lock(&w->mu);
        if (w->running) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 200 * 1000 * 1000;
            if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
            while (w->snap_gen == gen[i])
                if (pthread_cond_timedwait(&w->cv, &w->mu, &ts) != 0) break;
        }
        srv_stats_add(sum, &w->snap);
        pthread_mutex_unlock(&w->mu);
    }
}

/* ---- CPUs ----------------------------------------------------------------------------------- */

/* cgroup v2 cpu.max "QUOTA PERIOD" (or "max PERIOD") of this process's cgroup; 0: no limit. */
static unsigned cgroup_cpus(void)
{
    char path[512] = "/sys/fs/cgroup/cpu.max", line[512];
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (f) {
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "0::", 3) == 0) {
                line[strcspn(line, "\n")] = '\0';
                if (strcmp(line + 3, "/") != 0)
                    snprintf(path, sizeof path, "/sys/fs/cgroup%.400s/cpu.max", line + 3);
            }
        }
        fclose(f);
    }
    const char *tries[2] = {path, "/sys/fs/cgroup/cpu.max"};
    for (int i = 0; i < 2; i++) {
        f = fopen(tries[i], "r");
        if (!f) continue;
        char q[64] = "";
        unsigned long period = 0;
        int got = fscanf(f, "%63s %lu", q, &period);
        fclose(f);
        if (got != 2 || strcmp(q, "max") == 0 || period == 0) return 0;
        unsigned long quota = strtoul(q, NULL, 10);
        if (!quota) return 0;
        return (unsigned)((quota + period - 1) / period);
    }
    return 0;
}

unsigned srv_cpu_count(void)
{
    unsigned n = 1;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int c = CPU_COUNT(&set);
        if (c > 0) n = (unsigned)c;
    } else {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        if (c > 0) n = (unsigned)c;
    }
    unsigned q = cgroup_cpus();
    if (q && q < n) n = q;
    return n ? n : 1;
}
