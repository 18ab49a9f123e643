/* src/topology/breaker.c — the circuit breaker of a node's pool (SPEC §3) and its probe.
 *
 * Each request's outcome (its first command) counts: a timeout or a connection error
 * increments a counter, any reply resets it. At `breaker_threshold` the breaker opens with
 * the kind of the failure that tripped it: every request fails at once ("breaker open for
 * host:port"), all connections are closed, and a probe (connect + PING) runs on the retries
 * backoff schedule; its success closes the breaker and its connection joins the pool.
 *
 * Closing connections must not happen inside their own callbacks, so opening the breaker
 * only kicks the pool's housekeeping, which calls topo_breaker_maintain.
 *
 * With a hub (SPEC §3: breaker state is one per process) the counter, the state and the
 * reason live in the node's shared topo_health, so N workers' pools trip it together and
 * only one of them probes. The protocol, every step an atomic:
 *  - open: CAS open CLOSED->OPEN; the winner stores kind and msg, then bumps epoch (odd);
 *  - close (the prober only): fails = 0, epoch++ (even), open = CLOSED, probing = false.
 * So an odd epoch means "open and its reason readable", and the hot path of a closed breaker
 * is one load. The probe belongs to whoever holds `probing` (CAS false->true): the opener
 * first; when the holder is freed it lets go, and any pool that sees the breaker open with
 * nobody probing (on a request or in its periodic housekeeping) claims it — a breaker
 * cannot stay open unprobed while a pool of the node still runs its loop.
 */
#include <ev.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "topology/pool_internal.h"
#include "topology/topology.h"

/* Only the holder of a shared probe may probe: one probe per node per process. */
static bool may_probe(const struct topo_pool *p)
{
    if (p->closing || p->breaker != TOPO_BREAKER_OPEN) return false;
    return !p->health || p->probe_owner;
}

static void probe_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct topo_pool *p = w->data;
    if (!topo_breaker_is_open(p) || !may_probe(p) || p->probe_pc) return;
    topo_pconn_open(p, true);
}

void topo_breaker_init(struct topo_pool *p)
{
    ev_init(&p->probe_timer, probe_cb);
    p->probe_timer.data = p;
}

void topo_breaker_stop(struct topo_pool *p)
{
    ev_timer_stop(p->loop, &p->probe_timer);
    if (p->probe_owner) {
        /* another pool's sync claims it; keeping it would leave the node unprobed */
        p->probe_owner = false;
        atomic_store(&p->health->probing, false);
    }
}

/* ---- shared state (hub) ------------------------------------------------------------- */

static void shared_claim(struct topo_pool *p)
{
    bool idle = false;
    if (p->closing || !atomic_compare_exchange_strong(&p->health->probing, &idle, true)) return;
    p->probe_owner = true;
    p->probe_n = 0;
    if (!p->probe_pc) topo_probe_schedule(p);
}

bool topo_breaker_sync(struct topo_pool *p)
{
    struct topo_health *h = p->health;
    unsigned e = atomic_load_explicit(&h->epoch, memory_order_acquire);
    if (!(e & 1u) || atomic_load(&h->open) != TOPO_BREAKER_OPEN) {
        if (p->breaker == TOPO_BREAKER_OPEN) {
            /* another pool's probe closed it: connect again as usual, unpaced */
            p->breaker = TOPO_BREAKER_CLOSED;
            p->probe_n = 0;
            p->connect_fails = 0;
            p->pace_until = 0;
            topo_pool_kick(p); /* min_idle */
        }
        return false;
    }
    if (p->breaker != TOPO_BREAKER_OPEN || e != p->seen_epoch) {
        /* the lock once per epoch, so that failing fast takes none */
        char why[sizeof h->msg];
        topo_health_msg_get(p->hub, h, why, sizeof why);
        resp_err_set(&p->breaker_err, (enum resp_err_kind)atomic_load(&h->kind),
                     "breaker open for %s: %s", p->name, why);
        p->seen_epoch = e;
        p->breaker = TOPO_BREAKER_OPEN;
        topo_pool_kick(p); /* closing connections must not happen inside their callbacks */
    }
    if (!p->probe_owner && !atomic_load_explicit(&h->probing, memory_order_relaxed))
        shared_claim(p);
    return true;
}

static void shared_open(struct topo_pool *p, const struct resp_err *why)
{
    struct topo_health *h = p->health;
    int closed = TOPO_BREAKER_CLOSED;
    if (!atomic_compare_exchange_strong(&h->open, &closed, TOPO_BREAKER_OPEN)) return;
    atomic_store(&h->kind, (int)(why ? why->kind : RESP_EK_CONNECTION));
    topo_health_msg_set(p->hub, h, why ? why->msg : "");
    atomic_fetch_add_explicit(&h->epoch, 1, memory_order_release); /* odd: reason readable */
    topo_breaker_sync(p); /* our copy, the kick that closes our connections, the probe */
}

/* The probe answered. Only its owner closes the shared breaker (so that epochs alternate). */
static void shared_close(struct topo_pool *p)
{
    struct topo_health *h = p->health;
    p->breaker = TOPO_BREAKER_CLOSED;
    if (!p->probe_owner) return;
    atomic_store(&h->fails, 0);
    atomic_fetch_add_explicit(&h->epoch, 1, memory_order_release); /* even: closed */
    atomic_store(&h->open, TOPO_BREAKER_CLOSED);
    p->probe_owner = false;
    atomic_store(&h->probing, false);
}

static void shared_account(struct topo_pool *p, enum resp_err_kind kind, const struct resp_err *err)
{
    struct topo_health *h = p->health;
    if (topo_breaker_is_open(p)) return;
    if (kind == RESP_EK_TIMEOUT || kind == RESP_EK_CONNECTION) {
        unsigned n = atomic_fetch_add(&h->fails, 1) + 1;
        if (p->o.pool.breaker_threshold && n >= p->o.pool.breaker_threshold) shared_open(p, err);
    } else if (kind == RESP_EK_NONE) {
        /* a load first: replies on every worker must not all write one cache line */
        if (atomic_load_explicit(&h->fails, memory_order_relaxed)) atomic_store(&h->fails, 0);
    }
}

enum topo_breaker_state topo_breaker_state(const struct topo_pool *p)
{
    if (!p->health) return p->breaker;
    unsigned e = atomic_load_explicit(&p->health->epoch, memory_order_acquire);
    return (e & 1u) && atomic_load(&p->health->open) == TOPO_BREAKER_OPEN ? TOPO_BREAKER_OPEN
                                                                          : TOPO_BREAKER_CLOSED;
}

/* ---- the pool's own state ----------------------------------------------------------- */

static void breaker_open(struct topo_pool *p, const struct resp_err *why)
{
    p->breaker = TOPO_BREAKER_OPEN;
    p->probe_n = 0;
    resp_err_set(&p->breaker_err, why ? why->kind : RESP_EK_CONNECTION, "breaker open for %s: %s",
                 p->name, why ? why->msg : "");
    topo_pool_kick(p); /* closing connections must not happen inside their callbacks */
}

void topo_breaker_account(struct topo_pool *p, enum resp_err_kind kind, const struct resp_err *err)
{
    if (p->closing) return;
    if (p->health) {
        shared_account(p, kind, err);
        return;
    }
    if (p->breaker == TOPO_BREAKER_OPEN) return;
    if (kind == RESP_EK_TIMEOUT || kind == RESP_EK_CONNECTION) {
        p->fails++;
        if (p->o.pool.breaker_threshold && p->fails >= p->o.pool.breaker_threshold)
            breaker_open(p, err);
    } else if (kind == RESP_EK_NONE) {
        p->fails = 0;
    }
}

void topo_breaker_maintain(struct topo_pool *p)
{
    struct pconn *pc = p->conns, *next;
    for (; pc; pc = next) {
        next = pc->next;
        if (!pc->probe) topo_pconn_close(pc, &p->breaker_err);
    }
    struct preq_list l = p->waitq;
    memset(&p->waitq, 0, sizeof p->waitq);
    struct preq *r;
    while ((r = preq_list_pop(&l))) {
        ev_timer_stop(p->loop, &r->timer);
        r->state = REQ_NEW;
        topo_preq_fail(r, &p->breaker_err, false);
    }
    if (!p->probe_pc && !ev_is_active(&p->probe_timer)) topo_probe_schedule(p);
}

void topo_probe_schedule(struct topo_pool *p)
{
    if (!may_probe(p)) return;
    double d = topo_pool_backoff(p, p->probe_n);
    if (p->probe_n < 64) p->probe_n++;
    ev_timer_stop(p->loop, &p->probe_timer);
    ev_timer_set(&p->probe_timer, d, 0);
    ev_timer_start(p->loop, &p->probe_timer);
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
        if (p->health) {
            shared_close(p);
        } else {
            p->breaker = TOPO_BREAKER_CLOSED;
            p->fails = 0;
        }
        p->probe_n = 0;
        p->connect_fails = 0;
        p->pace_until = 0;
        topo_pool_kick(p);
        return;
    }
    if (pc->c && !pc->closing) {
        struct resp_err e;
        if (err)
            e = *err;
        else
            resp_err_set(&e, RESP_EK_OTHER, "probe %s: error reply", p->name);
        topo_pconn_close(pc, &e); /* on_close schedules the next probe */
    }
}

void topo_probe_ready(struct pconn *pc)
{
    struct topo_pool *p = pc->pool;
    static const char *const argv[] = {"PING"};
    static const size_t lens[] = {4};
    struct resp_cmd cmd = {1, argv, lens};
    double deadline = ev_now(p->loop) + p->o.conn.connect_timeout;
    if (resp_conn_send(pc->c, &cmd, 1, deadline, probe_reply, pc) == 0) {
        pc->in_flight++;
    } else {
        struct resp_err e;
        resp_err_set(&e, RESP_EK_CONNECTION, "probe %s: send failed", p->name);
        topo_pconn_close(pc, &e);
    }
}
