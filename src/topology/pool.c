/* src/topology/pool.c — a pool of connections to one Redis node.
 *
 * Requests (one or more commands that must stay adjacent on one connection) are pipelined
 * on the least loaded READY connection; another connection is opened only when every open
 * one already has `pipeline_high` commands in flight, one connect at a time, up to
 * min(size, max_active). With no READY connection a request waits in a FIFO until one is
 * ready, wait_timeout passes or its deadline does ("pool wait", a timeout).
 *
 * Retries: a request whose first reply has not been delivered and that failed with a
 * connection error (lost connection, failed connect) is sent again after a jittered
 * exponential backoff, at most `retries` times and only when the backoff ends before the
 * deadline. Timeouts are never retried: the deadline is the caller's whole budget, and a
 * timed-out command may still be executing on a stuck server. RESP error replies and
 * protocol/auth errors (RESP_EK_OTHER) are final too. Every request keeps its commands
 * RESP-encoded in its own buffer so a retry sends the same bytes again.
 *
 * Circuit breaker: each request's outcome (its first command) counts: a timeout or a
 * connection error increments a counter, any reply resets it. At `breaker_threshold` the
 * breaker opens with the kind of the failure that tripped it: every request fails at once
 * ("breaker open for host:port"), all connections are closed, and a probe (connect + PING)
 * runs on the retries backoff schedule; its success closes the breaker and its connection
 * joins the pool. Failures to connect also pace reconnects (same backoff, reset by a
 * READY connection); while paced with nothing connecting, requests fail at once with the
 * last connect error instead of waiting — that is what keeps a wrong password (other) or
 * a refused port (connection) from costing the whole wait_timeout, and from turning into
 * a tight reconnect loop.
 *
 * Housekeeping runs from a periodic timer (not keeping the loop alive): max_lifetime marks
 * connections draining (no new requests, closed once empty), max_idle_time and max_idle
 * close idle connections above min_idle, and min_idle is topped up. Work that must not run
 * inside a connection's callbacks (closing connections when the breaker opens) is deferred
 * to a zero-delay "kick" timer.
 *
 * Requests come from a per-pool free list; steady state allocates nothing per request.
 * topo_pool_free must not be called from inside one of the pool's own reply callbacks.
 */
#include <arpa/inet.h>
#include <ev.h>
#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "topology/topology.h"

/* Exported for tests/unit/test_topo_pool.c (not part of topology.h): the backoff before
 * retry number `attempt` (0-based) given a uniform u in [0,1): the ceiling c = min_backoff *
 * 2^attempt capped at max_backoff, then a value in [c/2, c), never below min_backoff nor
 * above max_backoff. */
double topo_backoff(double min_backoff, double max_backoff, unsigned attempt, double u);

#define REQ_INLINE    256             /* encoded bytes kept inline in a request */
#define REQ_FREE_MAX  1024            /* requests kept on the free list */
#define REQ_KEEP_HEAP ((size_t)16384) /* heap buffers up to this size stay with the request */

enum { REQ_FREE = 0, REQ_WAITING, REQ_BACKOFF, REQ_SENT, REQ_NEW };
enum { PC_RESOLVING = 0, PC_CONNECTING, PC_READY };

struct preq;

struct preq_list {
    struct preq *head, *tail;
    unsigned n;
};

struct preq {
    struct preq *next, *prev;
    struct topo_pool *pool;
    struct pconn *pc; /* the connection of the current attempt */
    topo_reply_fn *fn;
    void *priv;
    double deadline;
    double backoff; /* chosen by req_can_retry */
    unsigned flags;
    size_t n;         /* commands */
    size_t delivered; /* callbacks given to fn */
    size_t seen;      /* callbacks received from the current attempt */
    unsigned attempts;
    int state;
    bool abandon;   /* swallowing the rest of a failed attempt, then retrying */
    ev_timer timer; /* pool wait or retry backoff */
    char *buf;      /* inline_buf or heap */
    size_t len, cap;
    char inline_buf[REQ_INLINE];
};

struct pconn {
    struct pconn *next, *prev;
    struct topo_pool *pool;
    struct resp_conn *c;
    struct topo_resolve_req *rreq;
    struct topo_addrs addrs;
    size_t ai; /* address being tried */
    int state;
    bool probe, draining, closing, in_resolve, resolved, resolve_ok;
    struct resp_err rerr;
    double opened_at, last_used;
    unsigned in_flight;
};

struct topo_pool {
    struct ev_loop *loop;
    struct topo_resolver *resolver;
    struct topo_node_opts o;
    char *username, *password, *client_name; /* owned copies of the template's strings */
    char name[TOPO_HOST_MAX + 16];
    unsigned cap; /* min(size, max_active) */

    struct pconn *conns;
    unsigned nconns;
    struct preq_list waitq, backoffq, freeq;

    enum topo_breaker_state breaker;
    unsigned fails; /* consecutive timeouts / connection errors */
    struct resp_err breaker_err;
    unsigned probe_n;
    struct pconn *probe_pc;
    ev_timer probe_timer;

    unsigned connect_fails; /* consecutive failed connects (pacing) */
    double pace_until;
    struct resp_err connect_err;
    ev_timer pace_timer;

    ev_timer maint, kick;
    uint64_t rng;
    uint64_t connects, retries;
    size_t bg, bg_bytes;
    bool closing;
};

/* ---- small helpers ------------------------------------------------------------------ */

double topo_backoff(double min_backoff, double max_backoff, unsigned attempt, double u)
{
    if (min_backoff <= 0) return 0;
    if (max_backoff < min_backoff) max_backoff = min_backoff;
    double c = min_backoff;
    for (unsigned i = 0; i < attempt && c < max_backoff; i++) c *= 2;
    if (c > max_backoff) c = max_backoff;
    if (u < 0) u = 0;
    if (u >= 1) u = 0.999999;
    double d = c / 2 + u * (c / 2);
    if (d < min_backoff) d = min_backoff;
    if (d > max_backoff) d = max_backoff;
    return d;
}

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64*: plenty for jitter; seeded from getrandom */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static double rng_unit(uint64_t *s)
{
    return (double)(rng_next(s) >> 11) / 9007199254740992.0; /* 2^53 */
}

static uint64_t rng_seed(const void *salt)
{
    uint64_t s = 0;
    if (getrandom(&s, sizeof s, GRND_NONBLOCK) != (ssize_t)sizeof s) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        s = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)salt;
    }
    return s ? s : 0x9E3779B97F4A7C15ULL;
}

static double pool_backoff(struct topo_pool *p, unsigned attempt)
{
    return topo_backoff(p->o.pool.min_backoff, p->o.pool.max_backoff, attempt, rng_unit(&p->rng));
}

static void list_push(struct preq_list *l, struct preq *r)
{
    r->next = NULL;
    r->prev = l->tail;
    if (l->tail)
        l->tail->next = r;
    else
        l->head = r;
    l->tail = r;
    l->n++;
}

static void list_unlink(struct preq_list *l, struct preq *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        l->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        l->tail = r->prev;
    r->next = r->prev = NULL;
    l->n--;
}

static struct preq *list_pop(struct preq_list *l)
{
    struct preq *r = l->head;
    if (r) list_unlink(l, r);
    return r;
}

/* ---- options ------------------------------------------------------------------------ */

void topo_pool_opts_init(struct topo_pool_opts *o)
{
    memset(o, 0, sizeof *o);
    o->size = 0; /* 10 x CPUs, resolved by topo_pool_new */
    o->max_idle_time = 1800;
    o->wait_timeout = 0.5;
    o->retries = 1;
    o->min_backoff = 0.008;
    o->max_backoff = 0.512;
    o->pipeline_high = 32;
    o->breaker_threshold = 5;
    o->max_background = 10000;
    o->max_background_bytes = (size_t)64 * 1024 * 1024;
}

static unsigned default_size(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) n = 1;
    if (n > 1024) n = 1024;
    return (unsigned)(10 * n);
}

/* ---- requests ----------------------------------------------------------------------- */

static void req_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

static struct preq *req_get(struct topo_pool *p)
{
    struct preq *r = list_pop(&p->freeq);
    if (!r) {
        r = malloc(sizeof *r);
        if (!r) return NULL;
        r->buf = r->inline_buf;
        r->cap = sizeof r->inline_buf;
        ev_init(&r->timer, req_timer_cb);
        r->timer.data = r;
    }
    r->next = r->prev = NULL;
    r->pool = p;
    r->pc = NULL;
    r->len = 0;
    r->delivered = r->seen = 0;
    r->attempts = 0;
    r->abandon = false;
    r->state = REQ_NEW;
    return r;
}

static void req_drop_buf(struct preq *r)
{
    if (r->buf != r->inline_buf) free(r->buf);
    r->buf = r->inline_buf;
    r->cap = sizeof r->inline_buf;
}

static void req_release(struct preq *r)
{
    struct topo_pool *p = r->pool;
    if (r->flags & TOPO_BACKGROUND) {
        p->bg--;
        p->bg_bytes -= r->len;
    }
    r->flags = 0;
    r->state = REQ_FREE;
    r->fn = NULL;
    if (r->cap > REQ_KEEP_HEAP) req_drop_buf(r);
    if (p->freeq.n >= REQ_FREE_MAX) {
        req_drop_buf(r);
        free(r);
        return;
    }
    list_push(&p->freeq, r);
}

static size_t dec_len(size_t v)
{
    size_t n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

static char *put_num(char *o, char tag, size_t v)
{
    char tmp[24];
    size_t k = 0;
    do {
        tmp[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    *o++ = tag;
    while (k) *o++ = tmp[--k];
    *o++ = '\r';
    *o++ = '\n';
    return o;
}

/* Encodes the commands as RESP arrays of bulk strings into r->buf. 0 or -1 (no memory). */
static int req_encode(struct preq *r, const struct resp_cmd *cmds, size_t n)
{
    size_t need = 0;
    for (size_t i = 0; i < n; i++) {
        need += 3 + dec_len(cmds[i].argc);
        for (size_t j = 0; j < cmds[i].argc; j++)
            need += 3 + dec_len(cmds[i].lens[j]) + cmds[i].lens[j] + 2;
    }
    if (need > r->cap) {
        char *b = malloc(need);
        if (!b) return -1;
        req_drop_buf(r);
        r->buf = b;
        r->cap = need;
    }
    char *o = r->buf;
    for (size_t i = 0; i < n; i++) {
        o = put_num(o, '*', cmds[i].argc);
        for (size_t j = 0; j < cmds[i].argc; j++) {
            o = put_num(o, '$', cmds[i].lens[j]);
            if (cmds[i].lens[j]) memcpy(o, cmds[i].argv[j], cmds[i].lens[j]);
            o += cmds[i].lens[j];
            *o++ = '\r';
            *o++ = '\n';
        }
    }
    r->len = (size_t)(o - r->buf);
    return 0;
}

/* Gives one callback to the caller; the last one releases the request first (the caller
 * may issue new requests from its callback). */
static void req_deliver(struct preq *r, size_t idx, const struct resp_value *reply,
                        const struct resp_err *err)
{
    topo_reply_fn *fn = r->fn;
    void *priv = r->priv;
    r->delivered++;
    if (r->delivered >= r->n) req_release(r);
    fn(priv, idx, reply, err);
}

static void breaker_open(struct topo_pool *p, const struct resp_err *why);
static void pool_kick(struct topo_pool *p);

/* A request's outcome for the breaker: kind of its first command's error, or NONE. */
static void account(struct topo_pool *p, enum resp_err_kind kind, const struct resp_err *err)
{
    if (p->closing || p->breaker == TOPO_BREAKER_OPEN) return;
    if (kind == RESP_EK_TIMEOUT || kind == RESP_EK_CONNECTION) {
        p->fails++;
        if (p->o.pool.breaker_threshold && p->fails >= p->o.pool.breaker_threshold)
            breaker_open(p, err);
    } else if (kind == RESP_EK_NONE) {
        p->fails = 0;
    }
}

/* Fails every command not yet delivered with err; `count` says whether the outcome is
 * about the node's health (and so counts for the breaker). */
static void req_fail(struct preq *r, const struct resp_err *err, bool count)
{
    struct topo_pool *p = r->pool;
    if (count && r->delivered == 0) account(p, err->kind, err);
    size_t n = r->n;
    for (size_t i = r->delivered; i < n; i++) req_deliver(r, i, NULL, err);
}

static bool req_can_retry(struct preq *r, const struct resp_err *err)
{
    struct topo_pool *p = r->pool;
    if (err->kind != RESP_EK_CONNECTION || r->delivered != 0) return false;
    if (r->attempts >= p->o.pool.retries || p->closing || p->breaker == TOPO_BREAKER_OPEN)
        return false;
    r->backoff = pool_backoff(p, r->attempts);
    return ev_now(p->loop) + r->backoff < r->deadline;
}

static void req_retry(struct preq *r)
{
    struct topo_pool *p = r->pool;
    r->attempts++;
    p->retries++;
    r->state = REQ_BACKOFF;
    list_push(&p->backoffq, r);
    ev_timer_set(&r->timer, r->backoff, 0);
    ev_timer_start(p->loop, &r->timer);
}

/* An attempt that never reached a connection failed (connect failure while waiting). */
static void req_attempt_failed(struct preq *r, const struct resp_err *err)
{
    if (req_can_retry(r, err))
        req_retry(r);
    else
        req_fail(r, err, true);
}

/* ---- connections -------------------------------------------------------------------- */

static void pc_on_ready(struct resp_conn *c, void *priv);
static void pc_on_close(struct resp_conn *c, const struct resp_err *why, void *priv);
static const struct resp_conn_events pc_events = {
    .on_ready = pc_on_ready,
    .on_close = pc_on_close,
    .on_push = NULL,
};

static unsigned count_connecting(const struct topo_pool *p)
{
    unsigned n = 0;
    for (const struct pconn *pc = p->conns; pc; pc = pc->next)
        if (pc->state != PC_READY && !pc->probe && !pc->closing) n++;
    return n;
}

static unsigned count_ready(const struct topo_pool *p)
{
    unsigned n = 0;
    for (const struct pconn *pc = p->conns; pc; pc = pc->next)
        if (pc->state == PC_READY && !pc->probe && !pc->closing && !pc->draining) n++;
    return n;
}

static struct pconn *pick(struct topo_pool *p)
{
    struct pconn *best = NULL;
    for (struct pconn *pc = p->conns; pc; pc = pc->next) {
        if (pc->state != PC_READY || pc->probe || pc->closing || pc->draining) continue;
        if (!best || pc->in_flight < best->in_flight) best = pc;
    }
    return best;
}

static void pc_unlink_free(struct pconn *pc)
{
    struct topo_pool *p = pc->pool;
    if (pc->prev)
        pc->prev->next = pc->next;
    else
        p->conns = pc->next;
    if (pc->next) pc->next->prev = pc->prev;
    p->nconns--;
    if (p->probe_pc == pc) p->probe_pc = NULL;
    if (pc->rreq) topo_resolve_cancel(pc->rreq);
    free(pc);
}

static void pc_close(struct pconn *pc, const struct resp_err *why)
{
    if (pc->closing) return;
    pc->closing = true;
    if (pc->c) {
        resp_conn_close(pc->c, why); /* on_close unlinks and frees pc */
    } else {
        pc_unlink_free(pc);
    }
}

static void probe_failed(struct topo_pool *p)
{
    if (p->closing || p->breaker != TOPO_BREAKER_OPEN) return;
    double d = pool_backoff(p, p->probe_n);
    if (p->probe_n < 64) p->probe_n++;
    ev_timer_stop(p->loop, &p->probe_timer);
    ev_timer_set(&p->probe_timer, d, 0);
    ev_timer_start(p->loop, &p->probe_timer);
}

static void dispatch(struct preq *r);

static void drain_waiting(struct topo_pool *p)
{
    while (p->waitq.head && pick(p)) {
        struct preq *r = list_pop(&p->waitq);
        ev_timer_stop(p->loop, &r->timer);
        r->state = REQ_NEW;
        dispatch(r);
    }
}

/* A connection (or its resolution) could not be established. */
static void pc_failed(struct pconn *pc, const struct resp_err *err)
{
    struct topo_pool *p = pc->pool;
    bool probe = pc->probe, by_us = pc->closing;
    pc_unlink_free(pc);
    if (p->closing) return;
    if (probe) {
        probe_failed(p);
        return;
    }
    if (by_us) return;
    if (p->connect_fails < 64) p->connect_fails++;
    p->connect_err = *err;
    double d = pool_backoff(p, p->connect_fails - 1);
    p->pace_until = ev_now(p->loop) + d;
    ev_timer_stop(p->loop, &p->pace_timer);
    ev_timer_set(&p->pace_timer, d, 0);
    ev_timer_start(p->loop, &p->pace_timer);
    if (pick(p) || count_connecting(p)) return;
    /* Nobody can serve the waiting requests soon: they fail (or retry) now. */
    struct preq_list l = p->waitq;
    memset(&p->waitq, 0, sizeof p->waitq);
    struct preq *r;
    while ((r = list_pop(&l))) {
        ev_timer_stop(p->loop, &r->timer);
        r->state = REQ_NEW;
        req_attempt_failed(r, err);
    }
}

static void pc_try_connect(struct pconn *pc)
{
    struct topo_pool *p = pc->pool;
    struct resp_err err;
    resp_err_set(&err, RESP_EK_CONNECTION, "connect %s: no address", p->name);
    while (pc->ai < pc->addrs.n) {
        struct resp_conn_opts co = p->o.conn;
        co.addr = (const struct sockaddr *)&pc->addrs.addr[pc->ai];
        co.addrlen = (unsigned)pc->addrs.len[pc->ai];
        co.host = p->o.host;
        co.username = p->username;
        co.password = p->password;
        co.client_name = p->client_name;
        pc->state = PC_CONNECTING;
        struct resp_conn *c = resp_conn_new(p->loop, &co, &pc_events, pc, &err);
        if (c) {
            pc->c = c;
            return;
        }
        pc->ai++;
    }
    pc_failed(pc, &err);
}

static void pc_after_resolve(struct pconn *pc)
{
    if (!pc->resolve_ok) {
        struct resp_err e = pc->rerr;
        pc_failed(pc, &e);
        return;
    }
    pc->ai = 0;
    pc_try_connect(pc);
}

static void pc_on_resolved(void *priv, const struct topo_addrs *addrs, const struct resp_err *err)
{
    struct pconn *pc = priv;
    if (addrs && addrs->n > 0) {
        pc->addrs = *addrs;
        if (pc->addrs.n > TOPO_ADDRS_MAX) pc->addrs.n = TOPO_ADDRS_MAX;
        pc->resolve_ok = true;
    } else if (err) {
        pc->rerr = *err;
        if (pc->rerr.kind == RESP_EK_NONE) pc->rerr.kind = RESP_EK_CONNECTION;
    } else {
        resp_err_set(&pc->rerr, RESP_EK_CONNECTION, "resolve %s: no address", pc->pool->o.host);
    }
    pc->resolved = true;
    if (pc->in_resolve) return; /* topo_resolve is still on the stack: it continues */
    pc->rreq = NULL;
    pc_after_resolve(pc);
}

/* Without a resolver only IP literals work (tests, embedders that resolve themselves). */
static void resolve_literal(struct pconn *pc)
{
    struct topo_pool *p = pc->pool;
    struct topo_addrs a;
    memset(&a, 0, sizeof a);
    struct sockaddr_in *s4 = (struct sockaddr_in *)&a.addr[0];
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a.addr[0];
    if (inet_pton(AF_INET, p->o.host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(p->o.port);
        a.len[0] = sizeof *s4;
        a.n = 1;
    } else if (inet_pton(AF_INET6, p->o.host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(p->o.port);
        a.len[0] = sizeof *s6;
        a.n = 1;
    }
    struct resp_err e;
    resp_err_set(&e, RESP_EK_CONNECTION, "resolve %s: no resolver for a hostname", p->o.host);
    pc_on_resolved(pc, a.n ? &a : NULL, &e);
}

/* Opens a connection in the background: resolve (again, every time), then connect. May
 * fail synchronously (then pc_failed already ran). */
static void pc_open(struct topo_pool *p, bool probe)
{
    struct pconn *pc = calloc(1, sizeof *pc);
    if (!pc) {
        struct resp_err e;
        resp_err_set(&e, RESP_EK_CONNECTION, "connect %s: out of memory", p->name);
        if (probe) probe_failed(p);
        return;
    }
    pc->pool = p;
    pc->probe = probe;
    pc->state = PC_RESOLVING;
    pc->opened_at = pc->last_used = ev_now(p->loop);
    pc->next = p->conns;
    if (p->conns) p->conns->prev = pc;
    p->conns = pc;
    p->nconns++;
    p->connects++;
    if (probe) p->probe_pc = pc;
    pc->in_resolve = true;
    if (p->resolver) {
        double deadline = ev_now(p->loop) + p->o.conn.connect_timeout;
        struct topo_resolve_req *rr =
            topo_resolve(p->resolver, p->o.host, p->o.port, deadline, pc_on_resolved, pc);
        pc->in_resolve = false;
        if (!pc->resolved) {
            pc->rreq = rr;
            return;
        }
    } else {
        resolve_literal(pc);
        pc->in_resolve = false;
    }
    pc_after_resolve(pc);
}

/* Opens another connection if load or waiting requests call for it and limits allow. */
static void maybe_grow(struct topo_pool *p)
{
    if (p->closing || p->breaker == TOPO_BREAKER_OPEN) return;
    if (p->nconns >= p->cap || count_connecting(p) > 0) return;
    if (p->connect_fails && ev_now(p->loop) < p->pace_until) return; /* pace timer will */
    struct pconn *best = pick(p);
    if (best && best->in_flight < p->o.pool.pipeline_high) return;
    if (!best && !p->waitq.head) return;
    pc_open(p, false);
}

static void probe_reply(void *priv, size_t idx, const struct resp_value *reply,
                        const struct resp_err *err)
{
    struct pconn *pc = priv;
    struct topo_pool *p = pc->pool;
    if (pc->in_flight) pc->in_flight--;
    if (reply && reply->type != RESP_ERROR && reply->type != RESP_BULK_ERROR && !p->closing) {
        /* the node answers: close the breaker; the probe becomes an ordinary connection */
        pc->probe = false;
        pc->last_used = ev_now(p->loop);
        p->probe_pc = NULL;
        p->breaker = TOPO_BREAKER_CLOSED;
        p->fails = 0;
        p->probe_n = 0;
        p->connect_fails = 0;
        p->pace_until = 0;
        pool_kick(p);
        return;
    }
    if (pc->c && !pc->closing) {
        struct resp_err e;
        if (err)
            e = *err;
        else
            resp_err_set(&e, RESP_EK_OTHER, "probe %s: error reply", p->name);
        pc_close(pc, &e); /* on_close schedules the next probe */
    }
}

static void pc_on_ready(struct resp_conn *c, void *priv)
{
    struct pconn *pc = priv;
    struct topo_pool *p = pc->pool;
    pc->c = c;
    pc->state = PC_READY;
    pc->last_used = ev_now(p->loop);
    if (pc->closing || p->closing) return;
    if (pc->probe) {
        static const char *const argv[] = {"PING"};
        static const size_t lens[] = {4};
        struct resp_cmd cmd = {1, argv, lens};
        double deadline = ev_now(p->loop) + p->o.conn.connect_timeout;
        if (resp_conn_send(c, &cmd, 1, deadline, probe_reply, pc) == 0) {
            pc->in_flight++;
        } else {
            struct resp_err e;
            resp_err_set(&e, RESP_EK_CONNECTION, "probe %s: send failed", p->name);
            pc_close(pc, &e);
        }
        return;
    }
    p->connect_fails = 0;
    p->pace_until = 0;
    drain_waiting(p);
    maybe_grow(p);
}

static void pc_on_close(struct resp_conn *c, const struct resp_err *why, void *priv)
{
    struct pconn *pc = priv;
    struct topo_pool *p = pc->pool;
    struct resp_err e;
    if (why)
        e = *why;
    else
        resp_err_set(&e, RESP_EK_CONNECTION, "connection to %s closed", p->name);
    bool was_ready = pc->state == PC_READY;
    resp_conn_free(c);
    pc->c = NULL;
    if (!was_ready && !pc->closing && !p->closing) {
        /* connect or handshake failed: the next address, unless the server refused us */
        pc->ai++;
        if (e.kind != RESP_EK_OTHER && pc->ai < pc->addrs.n) {
            pc_try_connect(pc);
            return;
        }
        pc_failed(pc, &e);
        return;
    }
    bool probe = pc->probe;
    pc_unlink_free(pc);
    if (p->closing) return;
    if (probe) probe_failed(p);
    pool_kick(p); /* top up min_idle, serve waiting requests */
}

/* ---- sending ------------------------------------------------------------------------ */

static void req_on_reply(void *priv, size_t idx, const struct resp_value *reply,
                         const struct resp_err *err)
{
    struct preq *r = priv;
    struct topo_pool *p = r->pool;
    struct pconn *pc = r->pc;
    if (pc) {
        if (pc->in_flight) pc->in_flight--;
        pc->last_used = ev_now(p->loop);
        if (pc->draining && pc->in_flight == 0) pool_kick(p);
    }
    r->seen++;
    bool last = r->seen >= r->n;
    if (last) r->pc = NULL;
    if (r->abandon) {
        if (last) {
            r->abandon = false;
            req_retry(r);
        }
        return;
    }
    if (err && idx == 0 && req_can_retry(r, err)) {
        if (last)
            req_retry(r);
        else
            r->abandon = true;
        return;
    }
    if (idx == 0 && r->delivered == 0) account(p, err ? err->kind : RESP_EK_NONE, err);
    req_deliver(r, idx, reply, err);
}

static void send_on(struct pconn *pc, struct preq *r)
{
    struct topo_pool *p = pc->pool;
    r->pc = pc;
    r->seen = 0;
    r->state = REQ_SENT;
    if (resp_conn_send_encoded(pc->c, r->buf, r->len, r->n, r->deadline, req_on_reply, r) != 0) {
        struct resp_err e;
        resp_err_set(&e, RESP_EK_CONNECTION, "send to %s failed", p->name);
        r->pc = NULL;
        r->state = REQ_NEW;
        req_attempt_failed(r, &e);
        return;
    }
    pc->in_flight += (unsigned)r->n;
    pc->last_used = ev_now(p->loop);
}

static void dispatch(struct preq *r)
{
    struct topo_pool *p = r->pool;
    struct resp_err e;
    double now = ev_now(p->loop);
    if (p->closing) {
        resp_err_set(&e, RESP_EK_CONNECTION, "%s: shutting down", p->name);
        req_fail(r, &e, false);
        return;
    }
    if (p->breaker == TOPO_BREAKER_OPEN) {
        req_fail(r, &p->breaker_err, false);
        return;
    }
    if (now >= r->deadline) {
        resp_err_set(&e, RESP_EK_TIMEOUT, "%s: deadline passed before sending", p->name);
        req_fail(r, &e, false);
        return;
    }
    struct pconn *best = pick(p);
    if (best) {
        send_on(best, r);
        maybe_grow(p);
        return;
    }
    if (p->connect_fails && now < p->pace_until && !count_connecting(p)) {
        /* the node just refused us and no connect is under way: fail fast */
        e = p->connect_err;
        req_fail(r, &e, true);
        return;
    }
    double wait = p->o.pool.wait_timeout;
    if (now + wait > r->deadline) wait = r->deadline - now;
    r->state = REQ_WAITING;
    list_push(&p->waitq, r);
    ev_timer_set(&r->timer, wait, 0);
    ev_timer_start(p->loop, &r->timer);
    maybe_grow(p);
}

static void req_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct preq *r = w->data;
    struct topo_pool *p = r->pool;
    if (r->state == REQ_WAITING) {
        list_unlink(&p->waitq, r);
        r->state = REQ_NEW;
        struct resp_err e;
        resp_err_set(&e, RESP_EK_TIMEOUT, "pool wait: no connection to %s ready in time", p->name);
        req_fail(r, &e, true);
    } else if (r->state == REQ_BACKOFF) {
        list_unlink(&p->backoffq, r);
        r->state = REQ_NEW;
        dispatch(r);
    }
}

int topo_pool_exec(struct topo_pool *p, const struct resp_cmd *cmds, size_t n, double deadline,
                   unsigned flags, topo_reply_fn *fn, void *priv)
{
    struct resp_err e;
    if (n == 0) return 0;
    struct preq *r = req_get(p);
    if (!r || req_encode(r, cmds, n) != 0) {
        if (r) {
            r->n = 0;
            r->flags = 0;
            req_release(r);
        }
        resp_err_set(&e, RESP_EK_OTHER, "%s: out of memory", p->name);
        for (size_t i = 0; i < n; i++) fn(priv, i, NULL, &e);
        return 0;
    }
    r->fn = fn;
    r->priv = priv;
    r->n = n;
    r->deadline = deadline;
    r->flags = 0;
    if (flags & TOPO_BACKGROUND) {
        if (p->bg + 1 > p->o.pool.max_background ||
            p->bg_bytes + r->len > p->o.pool.max_background_bytes) {
            resp_err_set(&e, RESP_EK_TIMEOUT, "%s: write queue full", p->name);
            req_fail(r, &e, false);
            return 0;
        }
        r->flags = TOPO_BACKGROUND;
        p->bg++;
        p->bg_bytes += r->len;
    }
    dispatch(r);
    return 0;
}

/* ---- breaker, pacing, housekeeping -------------------------------------------------- */

static void breaker_open(struct topo_pool *p, const struct resp_err *why)
{
    p->breaker = TOPO_BREAKER_OPEN;
    p->probe_n = 0;
    resp_err_set(&p->breaker_err, why ? why->kind : RESP_EK_CONNECTION, "breaker open for %s: %s",
                 p->name, why ? why->msg : "");
    pool_kick(p); /* closing connections must not happen inside their callbacks */
}

static void pool_kick(struct topo_pool *p)
{
    if (p->closing || ev_is_active(&p->kick)) return;
    ev_timer_set(&p->kick, 0, 0);
    ev_timer_start(p->loop, &p->kick);
}

static void maintain(struct topo_pool *p)
{
    double now = ev_now(p->loop);
    if (p->closing) return;
    if (p->breaker == TOPO_BREAKER_OPEN) {
        struct pconn *pc = p->conns, *next;
        for (; pc; pc = next) {
            next = pc->next;
            if (!pc->probe) pc_close(pc, &p->breaker_err);
        }
        struct preq_list l = p->waitq;
        memset(&p->waitq, 0, sizeof p->waitq);
        struct preq *r;
        while ((r = list_pop(&l))) {
            ev_timer_stop(p->loop, &r->timer);
            r->state = REQ_NEW;
            req_fail(r, &p->breaker_err, false);
        }
        if (!p->probe_pc && !ev_is_active(&p->probe_timer)) probe_failed(p);
        return;
    }
    /* lifetime, drained connections, idle limits */
    unsigned ready = count_ready(p);
    unsigned idle = 0;
    for (struct pconn *pc = p->conns; pc; pc = pc->next)
        if (pc->state == PC_READY && !pc->probe && !pc->closing && !pc->draining &&
            pc->in_flight == 0)
            idle++;
    struct pconn *pc = p->conns, *next;
    for (; pc; pc = next) {
        next = pc->next;
        if (pc->state != PC_READY || pc->probe || pc->closing) continue;
        struct resp_err e;
        if (!pc->draining && p->o.pool.max_lifetime > 0 &&
            now - pc->opened_at >= p->o.pool.max_lifetime) {
            pc->draining = true;
            ready--;
            if (pc->in_flight == 0) idle--;
        }
        if (pc->draining) {
            if (pc->in_flight == 0) {
                resp_err_set(&e, RESP_EK_CONNECTION, "%s: connection recycled", p->name);
                pc_close(pc, &e);
            }
            continue;
        }
        if (pc->in_flight != 0 || ready <= p->o.pool.min_idle) continue;
        bool too_old =
            p->o.pool.max_idle_time > 0 && now - pc->last_used >= p->o.pool.max_idle_time;
        bool too_many = p->o.pool.max_idle > 0 && idle > p->o.pool.max_idle;
        if (too_old || too_many) {
            resp_err_set(&e, RESP_EK_CONNECTION, "%s: idle connection closed", p->name);
            ready--;
            idle--;
            pc_close(pc, &e);
        }
    }
    /* min_idle and waiting requests */
    if (p->connect_fails && now < p->pace_until) return;
    unsigned want = p->o.pool.min_idle;
    if (p->waitq.head && want < 1) want = 1;
    while (count_ready(p) + count_connecting(p) < want && p->nconns < p->cap &&
           !(p->connect_fails && ev_now(p->loop) < p->pace_until)) {
        uint64_t before = p->connects;
        pc_open(p, false);
        if (p->connects == before || p->breaker == TOPO_BREAKER_OPEN) break;
        if (p->connect_fails) break; /* a synchronous failure: the pace timer retries */
    }
    drain_waiting(p);
}

static void kick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    maintain(w->data);
}

static void maint_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    maintain(w->data);
}

static void pace_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct topo_pool *p = w->data;
    if (p->waitq.head || count_ready(p) + count_connecting(p) < p->o.pool.min_idle) {
        p->pace_until = 0; /* the backoff has passed: one more attempt */
        maintain(p);
    }
}

static void probe_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct topo_pool *p = w->data;
    if (p->closing || p->breaker != TOPO_BREAKER_OPEN || p->probe_pc) return;
    pc_open(p, true);
}

/* ---- life cycle --------------------------------------------------------------------- */

static char *dup_or_null(const char *s, bool *oom)
{
    if (!s) return NULL;
    char *d = strdup(s);
    if (!d) *oom = true;
    return d;
}

struct topo_pool *topo_pool_new(struct ev_loop *loop, struct topo_resolver *resolver,
                                const struct topo_node_opts *o)
{
    struct topo_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->loop = loop;
    p->resolver = resolver;
    p->o = *o;
    p->o.host[TOPO_HOST_MAX - 1] = '\0';
    bool oom = false;
    p->username = dup_or_null(o->conn.username, &oom);
    p->password = dup_or_null(o->conn.password, &oom);
    p->client_name = dup_or_null(o->conn.client_name, &oom);
    if (oom) {
        free(p->username);
        free(p->password);
        free(p->client_name);
        free(p);
        return NULL;
    }
    p->o.conn.username = p->o.conn.password = p->o.conn.client_name = NULL;
    p->o.conn.host = NULL;
    p->o.conn.addr = NULL;
    if (strchr(p->o.host, ':'))
        snprintf(p->name, sizeof p->name, "[%s]:%u", p->o.host, (unsigned)p->o.port);
    else
        snprintf(p->name, sizeof p->name, "%s:%u", p->o.host, (unsigned)p->o.port);
    struct topo_pool_opts *po = &p->o.pool;
    if (po->size == 0) po->size = default_size();
    p->cap = po->size;
    if (po->max_active && po->max_active < p->cap) p->cap = po->max_active;
    if (po->min_idle > p->cap) po->min_idle = p->cap;
    if (po->pipeline_high == 0) po->pipeline_high = 1;
    if (po->max_backoff < po->min_backoff) po->max_backoff = po->min_backoff;
    if (p->o.conn.connect_timeout <= 0) p->o.conn.connect_timeout = 1;
    p->rng = rng_seed(p);

    ev_init(&p->kick, kick_cb);
    p->kick.data = p;
    ev_init(&p->pace_timer, pace_cb);
    p->pace_timer.data = p;
    ev_init(&p->probe_timer, probe_cb);
    p->probe_timer.data = p;
    double iv = 1.0;
    if (po->max_idle_time > 0 && po->max_idle_time / 4 < iv) iv = po->max_idle_time / 4;
    if (po->max_lifetime > 0 && po->max_lifetime / 4 < iv) iv = po->max_lifetime / 4;
    if (iv < 0.01) iv = 0.01;
    ev_timer_init(&p->maint, maint_cb, iv, iv);
    p->maint.data = p;
    ev_timer_start(loop, &p->maint);
    ev_unref(loop); /* housekeeping alone does not keep the host's loop running */

    /* min_idle connections, in the background */
    for (unsigned i = 0; i < po->min_idle && p->nconns < p->cap; i++) {
        pc_open(p, false);
        if (p->connect_fails) break;
    }
    return p;
}

void topo_pool_free(struct topo_pool *p)
{
    if (!p) return;
    p->closing = true;
    ev_ref(p->loop);
    ev_timer_stop(p->loop, &p->maint);
    ev_timer_stop(p->loop, &p->kick);
    ev_timer_stop(p->loop, &p->pace_timer);
    ev_timer_stop(p->loop, &p->probe_timer);
    struct resp_err e;
    resp_err_set(&e, RESP_EK_CONNECTION, "%s: shutting down", p->name);
    struct preq *r;
    while ((r = list_pop(&p->waitq)) || (r = list_pop(&p->backoffq))) {
        ev_timer_stop(p->loop, &r->timer);
        r->state = REQ_NEW;
        req_fail(r, &e, false);
    }
    while (p->conns) {
        struct pconn *pc = p->conns;
        pc->closing = true;
        if (pc->c) {
            struct resp_conn *c = pc->c;
            resp_conn_close(c, &e); /* fails its commands; on_close frees pc */
            if (p->conns == pc && pc->c == c) {
                pc->c = NULL;
                resp_conn_free(c);
                pc_unlink_free(pc);
            }
        } else {
            pc_unlink_free(pc);
        }
    }
    while ((r = list_pop(&p->freeq))) {
        req_drop_buf(r);
        free(r);
    }
    free(p->username);
    free(p->password);
    free(p->client_name);
    free(p);
}

void topo_pool_stats(const struct topo_pool *p, struct topo_pool_stats *st)
{
    memset(st, 0, sizeof *st);
    for (const struct pconn *pc = p->conns; pc; pc = pc->next) {
        st->open++;
        if (pc->state == PC_READY) st->ready++;
        st->in_flight += pc->in_flight;
    }
    st->waiting = p->waitq.n;
    st->breaker = p->breaker;
    st->connects = p->connects;
    st->retries = p->retries;
    st->background = p->bg;
    st->background_bytes = p->bg_bytes;
}

const char *topo_pool_name(const struct topo_pool *p)
{
    return p->name;
}
