/* src/topology/pool_internal.h — private to the per-node pool: the structures and functions
 * that pool.c (connections, dispatch, housekeeping, life cycle), request.c (requests: free
 * list, encoding, delivery, failure, retries and their backoff) and breaker.c (the circuit
 * breaker and its probe) share. Not part of the topology interface (topology.h).
 */
#ifndef RC_TOPOLOGY_POOL_INTERNAL_H
#define RC_TOPOLOGY_POOL_INTERNAL_H

#include <ev.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "resp/resp.h"
#include "topology/hub_internal.h"
#include "topology/topology.h"

#define REQ_INLINE 256 /* encoded bytes kept inline in a request */

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
    double backoff; /* chosen by topo_preq_can_retry */
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

    /* Without a hub the breaker is the pool's own. With one (SPEC §3: one per node per
     * process) `health` is the truth and `breaker`/`breaker_err` are this pool's copy of it,
     * refreshed by topo_breaker_sync when the shared epoch moved, so that failing fast takes
     * no lock. */
    enum topo_breaker_state breaker;
    unsigned fails; /* consecutive timeouts / connection errors (no hub) */
    struct resp_err breaker_err;
    struct topo_hub *hub; /* a reference, or NULL */
    struct topo_health *health;
    unsigned seen_epoch; /* of health, when breaker_err was copied */
    bool probe_owner;    /* holds health->probing: this pool runs the probe */
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

/* ---- request lists ------------------------------------------------------------------ */

static inline void preq_list_push(struct preq_list *l, struct preq *r)
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

static inline void preq_list_unlink(struct preq_list *l, struct preq *r)
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

static inline struct preq *preq_list_pop(struct preq_list *l)
{
    struct preq *r = l->head;
    if (r) preq_list_unlink(l, r);
    return r;
}

/* ---- request.c ---------------------------------------------------------------------- */

/* A seed for the topology's generators (pool jitter, router picks): from getrandom, else
 * the clock and `salt`; never 0. */
uint64_t topo_pool_rng_seed(const void *salt);
/* xorshift64* on a per-owner state (no shared state between routers or pools): the next
 * 64 random bits, or a uniform double in [0,1). */
uint64_t topo_rng_next(uint64_t *state);
double topo_rng_unit(uint64_t *state);
/* The jittered backoff before retry `attempt` (0-based) with the pool's retries settings:
 * for requests, for paced reconnects and for the breaker's probe. */
double topo_pool_backoff(struct topo_pool *p, unsigned attempt);

/* A request from the free list (or malloc), state REQ_NEW; NULL without memory. */
struct preq *topo_preq_get(struct topo_pool *p);
/* Back to the free list (background bounds released); the request must be on no list. */
void topo_preq_release(struct preq *r);
/* Frees a request taken off the free list for good. */
void topo_preq_destroy(struct preq *r);
/* Encodes the commands as RESP arrays of bulk strings into r->buf. 0 or -1 (no memory). */
int topo_preq_encode(struct preq *r, const struct resp_cmd *cmds, size_t n);
/* Gives one callback to the caller; the last one releases the request first (the caller
 * may issue new requests from its callback). */
void topo_preq_deliver(struct preq *r, size_t idx, const struct resp_value *reply,
                       const struct resp_err *err);
/* Fails every command not yet delivered with err; `count` says whether the outcome is
 * about the node's health (and so counts for the breaker). */
void topo_preq_fail(struct preq *r, const struct resp_err *err, bool count);
/* Whether a failed attempt may be retried (choosing r->backoff); then topo_preq_retry. */
bool topo_preq_can_retry(struct preq *r, const struct resp_err *err);
void topo_preq_retry(struct preq *r);
/* An attempt that never reached a connection failed (connect failure while waiting). */
void topo_preq_attempt_failed(struct preq *r, const struct resp_err *err);

/* ---- pool.c ------------------------------------------------------------------------- */

/* A request's timer (pool wait or retry backoff) fired. */
void topo_preq_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
/* Runs housekeeping soon from a zero timer (never inside a connection's callbacks). */
void topo_pool_kick(struct topo_pool *p);
/* Opens a connection (or the probe) in the background: resolve, then connect. */
void topo_pconn_open(struct topo_pool *p, bool probe);
void topo_pconn_close(struct pconn *pc, const struct resp_err *why);

/* ---- breaker.c ---------------------------------------------------------------------- */

void topo_breaker_init(struct topo_pool *p);
/* Stops the probe; a pool that held the shared probe gives it up for another to claim. */
void topo_breaker_stop(struct topo_pool *p);
/* Shared breaker: refreshes the pool's copy from health (a new epoch: the message, closing
 * the connections through housekeeping; a close: reconnects as usual), claims the probe
 * when nobody runs it. Returns whether it is open. */
bool topo_breaker_sync(struct topo_pool *p);
/* Whether requests must fail fast now. Closed and shared, that costs one atomic load: the
 * epoch is odd exactly while the breaker is open and its reason published. */
static inline bool topo_breaker_is_open(struct topo_pool *p)
{
    if (!p->health) return p->breaker == TOPO_BREAKER_OPEN;
    if (p->breaker == TOPO_BREAKER_CLOSED &&
        !(atomic_load_explicit(&p->health->epoch, memory_order_acquire) & 1u))
        return false;
    return topo_breaker_sync(p);
}
/* The state for topo_pool_stats (the shared one with a hub), without side effects. */
enum topo_breaker_state topo_breaker_state(const struct topo_pool *p);
/* A request's outcome (the kind of its first command's error, or RESP_EK_NONE). */
void topo_breaker_account(struct topo_pool *p, enum resp_err_kind kind, const struct resp_err *err);
/* Housekeeping while open: closes the connections, fails the waiting requests and makes
 * sure a probe is under way or scheduled. */
void topo_breaker_maintain(struct topo_pool *p);
/* The probe connection is READY: it sends PING, whose answer closes the breaker. */
void topo_probe_ready(struct pconn *pc);
/* The probe failed (or could not start): the next one on the backoff schedule. */
void topo_probe_schedule(struct topo_pool *p);

#endif /* RC_TOPOLOGY_POOL_INTERNAL_H */
