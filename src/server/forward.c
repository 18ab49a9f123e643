/* src/server/forward.c — the `forward` plugin's upstream client of one worker: requests,
 * tries, coalescing. The directive is parsed in forward_config.c, health (max_fails,
 * health_check) lives in forward_health.c, TCP tries and pooling in forward_tcp.c, UDP
 * source ports in forward_udp.c; what they share is in forward_internal.h.
 *
 * One in-flight request per distinct question (key + name ignoring case + type + class +
 * DO + CD): later identical queries join it as waiters (coalescing). A request walks the
 * upstreams in its policy's order, one try at a time: a fresh random ID per try from a
 * random source port (UDP: one of the upstream's rotating connect()ed ports, see
 * forward_udp.c), UDP first unless TCP is asked for, and the same upstream again over
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
#include <errno.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "server/forward_internal.h"

/* Recycled requests and waiters kept per worker: enough for a saturated worker's queries in
 * flight (bench/server keeps 800), so the forward path does not malloc per query under
 * load; beyond that, bursts are freed back. */
#define FWD_FREE_REQS_MAX 1024
#define FWD_FREE_WAIT_MAX 1024
#define FWD_OUR_UDP       1232
#define FWD_RCODES        24

/* ---- random numbers: getrandom() in batches ---- */

uint32_t fwd_rand(struct fwd *f)
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
    fwd_udp_detach(r);
    if (r->fd >= 0) close(r->fd);
    r->fd = -1;
    r->reused = false;
    free(r->tbuf);
    r->tbuf = NULL;
    r->tlen = r->toff = 0;
    r->tphase = FWD_TP_CONNECT;
}

/* Ends the request: every waiter gets st (and the reply for FWD_OK), in join order. The
 * request leaves the in-flight table first, so a callback may start the same query anew.
 * A clean TCP connection goes back to its upstream's pool. */
static void req_finish(struct fwd_req *r, enum fwd_status st, const uint8_t *resp, size_t len)
{
    struct fwd *f = r->f;
    req_unlink(f, r);
    fwd_udp_detach(r);
    ev_io_stop(f->loop, &r->io);
    ev_timer_stop(f->loop, &r->try_t);
    ev_timer_stop(f->loop, &r->total_t);
    if (r->fd >= 0) {
        if (st == FWD_OK && !r->probe && r->proto == FWD_TCP && r->tphase == FWD_TP_READ)
            fwd_pool_put(&f->host[r->up], r->fd);
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
        fwd_probe_done(h, st == FWD_OK);
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

/* A try that failed without waiting (socket error, refused, reset): the next one starts
 * from the loop (never from inside fwd_query or a callback chain), through the try timer.
 * On a pooled connection (the upstream may have closed it meanwhile), the same try starts
 * again on a fresh connection instead. */
void fwd_try_fail_fast(struct fwd_req *r)
{
    bool retry = r->reused;
    try_close(r);
    if (retry) {
        r->restart = true;
    } else {
        r->fast_fails++;
        r->failed_fast = true;
        if (!r->probe) fwd_host_failed(r->f, r->up);
    }
    ev_timer_set(&r->try_t, 0., 0.);
    ev_timer_start(r->f->loop, &r->try_t);
}

/* The RFC 5452 checks: our ID, QR=1, opcode QUERY, exactly our question (name ignoring
 * case, type, class), and a message that parses whole. Sets *rcode (extended with the
 * OPT's upper bits) and *tc. */
bool fwd_reply_ok(const struct fwd_req *r, const uint8_t *buf, size_t len, unsigned *rcode,
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
void fwd_got_reply(struct fwd_req *r, const uint8_t *buf, size_t len, unsigned rcode, bool tc)
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

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    struct fwd_req *r = w->data;
    fwd_tcp_io(r, revents); /* UDP tries are read by their port (forward_udp.c) */
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
    if (timeout && !r->probe && r->up >= 0) fwd_host_failed(r->f, r->up);
    fwd_try_next(r);
}

static void on_total_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct fwd_req *r = w->data;
    if ((r->fd >= 0 || r->port) && !r->probe && r->up >= 0)
        fwd_host_failed(r->f, r->up); /* a try cut short */
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

/* Starts a try on r->up over r->proto: a fresh ID, on one of the upstream's UDP source
 * ports (forward_udp.c), or over TCP on a pooled connection when one is idle (unless
 * may_reuse is false) else a new one. */
static void try_start(struct fwd_req *r, bool may_reuse)
{
    struct fwd *f = r->f;
    const struct fwd_upstream *u = &f->o.up[r->up];
    if (r->probe)
        f->st.hc_sent[r->up]++;
    else
        f->st.requests[r->up]++;
    r->toff = 0;
    r->tlen = 0;
    r->tphase = FWD_TP_CONNECT;
    r->reused = false;
    if (r->proto == FWD_UDP) {
        if (fwd_udp_send(r) != 0) {
            fwd_try_fail_fast(r);
            return;
        }
    } else {
        r->id = (uint16_t)fwd_rand(f);
        dns_put16(r->wire + 2, r->id);
        r->fd = may_reuse && !r->probe ? fwd_pool_take(&f->host[r->up]) : -1;
        if (r->fd >= 0) {
            r->reused = true;
            r->tphase = FWD_TP_WRITE;
            f->st.tcp_reused++;
        } else {
            r->fd = open_socket(u, SOCK_STREAM);
            if (r->fd < 0) {
                fwd_try_fail_fast(r);
                return;
            }
            f->st.tcp_connects++;
        }
        ev_io_set(&r->io, r->fd, EV_WRITE);
        ev_io_start(f->loop, &r->io);
    }
    ev_timer_set(&r->try_t, r->probe ? FWD_HC_TIMEOUT : f->o.try_timeout, 0.);
    ev_timer_start(f->loop, &r->try_t);
}

/* The next upstream in the request's order (starting over after the last), skipping the
 * ones marked down; when every upstream is down, one at random (CoreDNS: "assume health
 * checking is broken"). A whole round of tries that failed at once ends the request:
 * nothing is listening anywhere. A probe makes one try only. */
void fwd_try_next(struct fwd_req *r)
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
        if (!fwd_host_down(f, c)) up = c;
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

bool fwd_handles(const struct fwd *f, const struct dns_question *q)
{
    if (!f || !q) return false;
    if (!dns_name_in_zone(q->name_lc, q->name_len, f->from_wire, f->from_len)) return false;
    if (q->name_len == f->from_len) return true; /* FROM itself, even if excepted */
    for (size_t i = 0; i < f->o.nexcept; i++)
        if (f->except_len[i] &&
            dns_name_in_zone(q->name_lc, q->name_len, f->except_wire[i], f->except_len[i]))
            return false;
    return true;
}

/* Fills a fresh request: the question, no waiters, the timers and watchers. */
void fwd_req_init(struct fwd *f, struct fwd_req *r, const struct dns_question *q, uint64_t key)
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
    r->port = NULL;
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

struct fwd_req *fwd_req_get(struct fwd *f)
{
    struct fwd_req *r = f->free_reqs;
    if (r) {
        f->free_reqs = r->next;
        f->nfree_reqs--;
        return r;
    }
    return malloc(sizeof *r);
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
    f->from_len = (uint16_t)dns_name_from_text(o->from, f->from_wire);
    if (f->from_len == 0) {
        free(f);
        if (err && errlen) snprintf(err, errlen, "forward: bad FROM");
        return NULL;
    }
    for (size_t i = 0; i < o->nexcept; i++)
        f->except_len[i] = (uint16_t)dns_name_from_text(o->except[i], f->except_wire[i]);
    for (size_t i = 0; i < o->nup; i++) {
        struct fwd_host *h = &f->host[i];
        h->f = f;
        h->idx = (int)i;
        ev_timer_init(&h->hc_t, fwd_on_hc_timer, 1., 0.);
        h->hc_t.data = h;
    }
    ev_timer_init(&f->expire_t, fwd_on_expire, 1., 0.);
    f->expire_t.data = f;
    ev_timer_init(&f->port_t, fwd_on_port_timer, FWD_PORT_AGE, FWD_PORT_AGE);
    f->port_t.data = f;
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
    for (size_t i = 0; i < f->o.nup; i++) fwd_pool_close(&f->host[i]);
    fwd_udp_close(f);
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

    struct fwd_req *r = fwd_req_get(f);
    if (!r) {
        f->st.failures++;
        fn(priv, FWD_FAILED, NULL, 0);
        return 0;
    }
    fwd_req_init(f, r, q, key);
    r->first.fn = fn;
    r->first.priv = priv;
    make_order(f, r);
    /* force_tcp wins over prefer_udp, as in CoreDNS; else a TCP client is asked over TCP */
    r->start_tcp = f->o.force_tcp || (client_tcp && !f->o.prefer_udp);
    r->hnext = *b;
    *b = r;
    f->inflight++;

    ev_timer_start(f->loop, &r->total_t);
    fwd_try_next(r);
    return 0;
}

void fwd_stats(const struct fwd *f, struct fwd_stats *st)
{
    *st = f->st;
    for (size_t i = 0; i < f->o.nup; i++) {
        st->up_down[i] = fwd_host_down(f, (int)i) ? 1 : 0;
        st->up_fails[i] = f->host[i].fails;
    }
}
