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
 * protocol/auth errors (RESP_EK_OTHER) are final too. The requests themselves (free list,
 * encoding, delivery, the retry decision and the backoff) are in request.c.
 *
 * Circuit breaker (breaker.c): consecutive timeouts or connection errors open it; while it
 * is open every request fails at once and a probe (connect + PING) closes it again. Given a
 * hub (topo_node_opts.hub), it is one per node for all the pools of the process.
 * Failures to connect also pace reconnects (the retries backoff, reset by a READY
 * connection); while paced with nothing connecting, requests fail at once with the last
 * connect error instead of waiting — that is what keeps a wrong password (other) or a
 * refused port (connection) from costing the whole wait_timeout, and from turning into a
 * tight reconnect loop.
 *
 * Housekeeping runs from a periodic timer (not keeping the loop alive): max_lifetime marks
 * connections draining (no new requests, closed once empty), max_idle_time and max_idle
 * close idle connections above min_idle, and min_idle is topped up. Work that must not run
 * inside a connection's callbacks (closing connections when the breaker opens) is deferred
 * to a zero-delay "kick" timer.
 *
 * topo_pool_free must not be called from inside one of the pool's own reply callbacks.
 */
#include <arpa/inet.h>
#include <ev.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "topology/pool_internal.h"
#include "topology/topology.h"

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

void topo_pconn_close(struct pconn *pc, const struct resp_err *why)
{
    if (pc->closing) return;
    pc->closing = true;
    if (pc->c) {
        resp_conn_close(pc->c, why); /* on_close unlinks and frees pc */
    } else {
        pc_unlink_free(pc);
    }
}

static void dispatch(struct preq *r);

static void drain_waiting(struct topo_pool *p)
{
    while (p->waitq.head && pick(p)) {
        struct preq *r = preq_list_pop(&p->waitq);
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
        topo_probe_schedule(p);
        return;
    }
    if (by_us) return;
    if (p->connect_fails < 64) p->connect_fails++;
    p->connect_err = *err;
    double d = topo_pool_backoff(p, p->connect_fails - 1);
    p->pace_until = ev_now(p->loop) + d;
    ev_timer_stop(p->loop, &p->pace_timer);
    ev_timer_set(&p->pace_timer, d, 0);
    ev_timer_start(p->loop, &p->pace_timer);
    if (pick(p) || count_connecting(p)) return;
    /* Nobody can serve the waiting requests soon: they fail (or retry) now. */
    struct preq_list l = p->waitq;
    memset(&p->waitq, 0, sizeof p->waitq);
    struct preq *r;
    while ((r = preq_list_pop(&l))) {
        ev_timer_stop(p->loop, &r->timer);
        r->state = REQ_NEW;
        topo_preq_attempt_failed(r, err);
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
void topo_pconn_open(struct topo_pool *p, bool probe)
{
    struct pconn *pc = calloc(1, sizeof *pc);
    if (!pc) {
        struct resp_err e;
        resp_err_set(&e, RESP_EK_CONNECTION, "connect %s: out of memory", p->name);
        if (probe) topo_probe_schedule(p);
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
    if (p->closing || topo_breaker_is_open(p)) return;
    if (p->nconns >= p->cap || count_connecting(p) > 0) return;
    if (p->connect_fails && ev_now(p->loop) < p->pace_until) return; /* pace timer will */
    struct pconn *best = pick(p);
    if (best && best->in_flight < p->o.pool.pipeline_high) return;
    if (!best && !p->waitq.head) return;
    topo_pconn_open(p, false);
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
        topo_probe_ready(pc);
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
    if (probe) topo_probe_schedule(p);
    topo_pool_kick(p); /* top up min_idle, serve waiting requests */
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
        if (pc->draining && pc->in_flight == 0) topo_pool_kick(p);
    }
    r->seen++;
    bool last = r->seen >= r->n;
    if (last) r->pc = NULL;
    if (r->abandon) {
        if (last) {
            r->abandon = false;
            topo_preq_retry(r);
        }
        return;
    }
    if (err && idx == 0 && topo_preq_can_retry(r, err)) {
        if (last)
            topo_preq_retry(r);
        else
            r->abandon = true;
        return;
    }
    if (idx == 0 && r->delivered == 0) topo_breaker_account(p, err ? err->kind : RESP_EK_NONE, err);
    topo_preq_deliver(r, idx, reply, err);
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
        topo_preq_attempt_failed(r, &e);
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
        topo_preq_fail(r, &e, false);
        return;
    }
    if (topo_breaker_is_open(p)) {
        topo_preq_fail(r, &p->breaker_err, false);
        return;
    }
    if (now >= r->deadline) {
        resp_err_set(&e, RESP_EK_TIMEOUT, "%s: deadline passed before sending", p->name);
        topo_preq_fail(r, &e, false);
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
        topo_preq_fail(r, &e, true);
        return;
    }
    double wait = p->o.pool.wait_timeout;
    if (now + wait > r->deadline) wait = r->deadline - now;
    r->state = REQ_WAITING;
    preq_list_push(&p->waitq, r);
    ev_timer_set(&r->timer, wait, 0);
    ev_timer_start(p->loop, &r->timer);
    maybe_grow(p);
}

void topo_preq_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct preq *r = w->data;
    struct topo_pool *p = r->pool;
    if (r->state == REQ_WAITING) {
        preq_list_unlink(&p->waitq, r);
        r->state = REQ_NEW;
        struct resp_err e;
        resp_err_set(&e, RESP_EK_TIMEOUT, "pool wait: no connection to %s ready in time", p->name);
        topo_preq_fail(r, &e, true);
    } else if (r->state == REQ_BACKOFF) {
        preq_list_unlink(&p->backoffq, r);
        r->state = REQ_NEW;
        dispatch(r);
    }
}

int topo_pool_exec(struct topo_pool *p, const struct resp_cmd *cmds, size_t n, double deadline,
                   unsigned flags, topo_reply_fn *fn, void *priv)
{
    struct resp_err e;
    if (n == 0) return 0;
    struct preq *r = topo_preq_get(p);
    if (!r || topo_preq_encode(r, cmds, n) != 0) {
        if (r) {
            r->n = 0;
            r->flags = 0;
            topo_preq_release(r);
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
            topo_preq_fail(r, &e, false);
            return 0;
        }
        r->flags = TOPO_BACKGROUND;
        p->bg++;
        p->bg_bytes += r->len;
    }
    dispatch(r);
    return 0;
}

/* ---- pacing, housekeeping ----------------------------------------------------------- */

void topo_pool_kick(struct topo_pool *p)
{
    if (p->closing || ev_is_active(&p->kick)) return;
    ev_timer_set(&p->kick, 0, 0);
    ev_timer_start(p->loop, &p->kick);
}

static void maintain(struct topo_pool *p)
{
    double now = ev_now(p->loop);
    if (p->closing) return;
    if (topo_breaker_is_open(p)) {
        topo_breaker_maintain(p);
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
                topo_pconn_close(pc, &e);
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
            topo_pconn_close(pc, &e);
        }
    }
    /* min_idle and waiting requests */
    if (p->connect_fails && now < p->pace_until) return;
    unsigned want = p->o.pool.min_idle;
    if (p->waitq.head && want < 1) want = 1;
    while (count_ready(p) + count_connecting(p) < want && p->nconns < p->cap &&
           !(p->connect_fails && ev_now(p->loop) < p->pace_until)) {
        uint64_t before = p->connects;
        topo_pconn_open(p, false);
        if (p->connects == before || topo_breaker_is_open(p)) break;
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
    p->o.hub = NULL; /* p->hub holds the reference */
    if (o->hub) {
        p->health = topo_hub_health(o->hub, p->name);
        if (!p->health) {
            free(p->username);
            free(p->password);
            free(p->client_name);
            free(p);
            return NULL;
        }
        topo_hub_ref(o->hub);
        p->hub = o->hub;
    }
    struct topo_pool_opts *po = &p->o.pool;
    if (po->size == 0) po->size = default_size();
    p->cap = po->size;
    if (po->max_active && po->max_active < p->cap) p->cap = po->max_active;
    if (po->min_idle > p->cap) po->min_idle = p->cap;
    if (po->pipeline_high == 0) po->pipeline_high = 1;
    if (po->max_backoff < po->min_backoff) po->max_backoff = po->min_backoff;
    if (p->o.conn.connect_timeout <= 0) p->o.conn.connect_timeout = 1;
    p->rng = topo_pool_rng_seed(p);

    ev_init(&p->kick, kick_cb);
    p->kick.data = p;
    ev_init(&p->pace_timer, pace_cb);
    p->pace_timer.data = p;
    topo_breaker_init(p);
    double iv = 1.0;
    if (po->max_idle_time > 0 && po->max_idle_time / 4 < iv) iv = po->max_idle_time / 4;
    if (po->max_lifetime > 0 && po->max_lifetime / 4 < iv) iv = po->max_lifetime / 4;
    if (iv < 0.01) iv = 0.01;
    ev_timer_init(&p->maint, maint_cb, iv, iv);
    p->maint.data = p;
    ev_timer_start(loop, &p->maint);
    ev_unref(loop); /* housekeeping alone does not keep the host's loop running */

    /* min_idle connections, in the background (not to a node another worker found dead) */
    for (unsigned i = 0; i < po->min_idle && p->nconns < p->cap && !topo_breaker_is_open(p); i++) {
        topo_pconn_open(p, false);
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
    topo_breaker_stop(p);
    struct resp_err e;
    resp_err_set(&e, RESP_EK_CONNECTION, "%s: shutting down", p->name);
    struct preq *r;
    while ((r = preq_list_pop(&p->waitq)) || (r = preq_list_pop(&p->backoffq))) {
        ev_timer_stop(p->loop, &r->timer);
        r->state = REQ_NEW;
        topo_preq_fail(r, &e, false);
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
    while ((r = preq_list_pop(&p->freeq))) topo_preq_destroy(r);
    free(p->username);
    free(p->password);
    free(p->client_name);
    topo_hub_unref(p->hub);
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
    st->breaker = topo_breaker_state(p);
    st->connects = p->connects;
    st->retries = p->retries;
    st->background = p->bg;
    st->background_bytes = p->bg_bytes;
}

const char *topo_pool_name(const struct topo_pool *p)
{
    return p->name;
}
