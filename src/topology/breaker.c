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
 */
#include <ev.h>
#include <string.h>

#include "topology/pool_internal.h"
#include "topology/topology.h"

static void probe_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct topo_pool *p = w->data;
    if (p->closing || p->breaker != TOPO_BREAKER_OPEN || p->probe_pc) return;
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
}

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
    if (p->closing || p->breaker == TOPO_BREAKER_OPEN) return;
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
    if (p->closing || p->breaker != TOPO_BREAKER_OPEN) return;
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
        p->breaker = TOPO_BREAKER_CLOSED;
        p->fails = 0;
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
