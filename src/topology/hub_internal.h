/* src/topology/hub_internal.h — private to src/topology: how the routers of one
 * configuration, each on its own worker's loop, share one topology state per process
 * (SPEC §3: discovery, subscriptions, slot table and breaker state are one per process;
 * connections belong to a worker).
 *
 * A router joins the hub given in its options as a member. The first member to join is the
 * leader: it alone runs discovery (Sentinel rounds and the +switch-master subscription,
 * CLUSTER SHARDS) and publishes what it found as an immutable view (a blob whose layout
 * the router kind defines). Followers run no discovery: before routing a request they
 * compare the hub's version with the one they applied last (one atomic load) and, when it
 * moved, apply the new view to their own nodes and pools. A follower that sees a reason to
 * refresh (READONLY, MOVED, a dead master) asks the leader, which runs a round on its loop.
 * When the leader leaves (its router is freed), the next member is told, through its loop,
 * to lead; until it has published, followers keep the last view.
 *
 * Breaker state is shared per node name (topo_hub_health): every worker's pool for a node
 * counts into the same consecutive-failure counter and sees the same open/closed state;
 * the pool that opened the breaker runs the probe.
 *
 * Locking: one mutex per hub, held only to join, leave, publish, fetch a view, ask for a
 * refresh or find a node's health; never on the request path (the version check and the
 * health fields are atomics).
 */
#ifndef RC_TOPOLOGY_HUB_INTERNAL_H
#define RC_TOPOLOGY_HUB_INTERNAL_H

#include <ev.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "topology/topology.h"

/* An immutable view published by the leader: `len` bytes of router-defined data. */
struct topo_view {
    atomic_uint refs;
    uint64_t version;
    size_t len;
    _Alignas(16) unsigned char data[];
};

struct topo_hub_member;
typedef void topo_hub_member_fn(struct topo_hub_member *m);

/* Embedded in a router. Fields below `hub` are the hub's. */
struct topo_hub_member {
    struct topo_hub *hub;
    struct ev_loop *loop;
    topo_hub_member_fn *on_lead;    /* now the leader: start discovery (on m's loop) */
    topo_hub_member_fn *on_refresh; /* leader: a follower asked for a discovery round */
    void *priv;                     /* the router */
    bool leader;                    /* touched on m's loop only */
    uint64_t seen;                  /* version of the last view applied */
    ev_async async;
    atomic_bool want_lead, want_refresh;
    struct topo_hub_member *next;
};

/* Joins m (its hub, loop, callbacks and priv set) to its hub; on m's loop thread. Returns
 * true when m is the leader (it starts discovery itself; on_lead is not called for
 * that). */
bool topo_hub_join(struct topo_hub_member *m);
/* Leaves the hub (on m's loop thread, before the router is freed); a leader hands over to
 * the next member. */
void topo_hub_leave(struct topo_hub_member *m);

/* Leader: publishes a copy of data as the current view. 0, or -1 without memory. */
int topo_hub_publish(struct topo_hub_member *m, const void *data, size_t len);
/* The current view when its version differs from m->seen (m->seen is then updated), else
 * NULL. The caller applies it and releases it with topo_view_put. */
struct topo_view *topo_hub_view(struct topo_hub_member *m);
void topo_view_put(struct topo_view *v);
/* True when a view newer than m->seen exists (one atomic load). */
bool topo_hub_changed(const struct topo_hub_member *m);

/* Follower: asks the leader for a discovery round (coalesced: one wakeup however many
 * ask). A leader calling this runs on_refresh itself. */
void topo_hub_want_refresh(struct topo_hub_member *m);

/* ---- shared breaker state ---- */

struct topo_health {
    atomic_uint fails;   /* consecutive timeouts / connection errors, all workers */
    atomic_int open;     /* enum topo_breaker_state */
    atomic_int kind;     /* enum resp_err_kind that opened it */
    atomic_uint epoch;   /* bumps at every open and close */
    atomic_bool probing; /* a pool (the one that opened it) runs the probe */
    char msg[160];       /* why it opened: read and written under the hub's lock only (a
                          * pool keeps a copy per epoch) */
    struct topo_health *next;
    char name[]; /* "host:port" */
};

/* The shared health of the node `name` ("host:port"), created at first use; it lives as
 * long as the hub. NULL without memory. */
struct topo_health *topo_hub_health(struct topo_hub *h, const char *name);
/* msg under the hub's lock: copy out (into buf of len) / set. */
void topo_health_msg_get(struct topo_hub *h, const struct topo_health *hl, char *buf, size_t len);
void topo_health_msg_set(struct topo_hub *h, struct topo_health *hl, const char *msg);

#endif /* RC_TOPOLOGY_HUB_INTERNAL_H */
