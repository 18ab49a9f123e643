/* src/topology/sentinel_internal.h — private to the Sentinel router: the state that
 * sentinel.c (data nodes, request routing, draining, life cycle), sentinel_watch.c
 * (discovery rounds, the pub/sub subscription, the periodic refresh) and sentinel_share.c
 * (one discovery per process through the hub) share.
 */
#ifndef RC_TOPOLOGY_SENTINEL_INTERNAL_H
#define RC_TOPOLOGY_SENTINEL_INTERNAL_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "resp/resp.h"
#include "topology/hub_internal.h"
#include "topology/topology.h"

#define SN_SENTINELS_MAX 32   /* configured + discovered sentinels kept */
#define SN_REPLICAS_MAX  64   /* usable replicas taken from one SENTINEL replicas reply */
#define SN_REFRESH       5.0  /* seconds between safety-net rounds */
#define SN_ROUND_MIN     0.25 /* seconds between the starts of two triggered rounds */
#define SN_BACKOFF_MIN   0.1  /* after a failed round or subscription */
#define SN_BACKOFF_MAX   2.0
#define SN_PARK          86400.0 /* a parked timer (see sn_timer_arm) */

/* A data node: the master or a replica, with its own pool. Retired nodes (an old master, a
 * replica gone from the list) take no new requests and are freed once their requests have
 * completed or the latest of their deadlines has passed. */
struct sn_node {
    struct sn_node *next;
    struct topo_pool *pool;
    struct topo_hostport hp;
    unsigned refs;        /* requests (ours and the callers') in flight */
    double last_deadline; /* the latest deadline among them */
    bool retired;
};

struct sn_sentinel {
    struct topo_hostport hp;
    struct topo_pool *pool; /* SENTINEL queries (size 2, the sentinel_conn template) */
};

/* One caller's request routed through a node (free list: no malloc per request). */
struct sn_ctx {
    struct sn_ctx *next_free;
    struct sentinel *s;
    struct sn_node *node;
    topo_reply_fn *fn;
    void *priv;
    size_t n;
    bool write;
};

/* The routing state the leader publishes through the hub; a plain blob (no pointers), cut
 * after the `nrep` replicas in use. Built from zeroed memory so equal states compare equal
 * byte for byte. */
struct sn_view {
    uint32_t has_master;
    uint32_t nrep;
    int32_t down_kind; /* enum resp_err_kind */
    char down_msg[sizeof(((struct resp_err *)0)->msg)];
    struct topo_hostport master;
    struct topo_hostport replicas[SN_REPLICAS_MAX];
};

enum sn_phase { SN_IDLE = 0, SN_ASK, SN_VERIFY, SN_DETAILS };

struct sentinel {
    struct topo_router r; /* first: the router pointer is the struct pointer */
    struct ev_loop *loop;
    struct topo_resolver *resolver;
    char name[256]; /* the master group name */

    /* templates, with owned copies of their strings */
    struct resp_conn_opts sconn;
    char *s_user, *s_pass, *s_cname;
    struct topo_node_opts data;
    char *d_user, *d_pass, *d_cname;
    double qtimeout; /* deadline of one SENTINEL/ROLE query, seconds */

    struct sn_sentinel *sentinels[SN_SENTINELS_MAX]; /* the front one answered last */
    size_t nsent;

    struct sn_node *nodes;  /* every node, retired ones included */
    struct sn_node *master; /* NULL until known */
    struct sn_node *replicas[SN_REPLICAS_MAX];
    size_t nrep;

    /* discovery rounds (sentinel_watch.c) */
    enum sn_phase phase;
    unsigned gen;   /* bumps with each round: late answers of older rounds are dropped */
    unsigned epoch; /* bumps with each +switch-master taken */
    unsigned round_epoch;
    unsigned pending, nil_answers;
    bool again; /* another round was asked for while one ran */
    unsigned fails;
    double last_start;
    char last_err[160];
    struct resp_err down; /* what requests get while no master is known */
    char logged[200];     /* the last state line written to stderr */
    ev_timer round_timer, refresh_timer, reap_timer;

    /* the subscription */
    struct resp_conn *sub;
    struct topo_resolve_req *sub_rreq;
    struct topo_addrs sub_addrs;
    size_t sub_ai, sub_idx;
    unsigned sub_fails;
    bool sub_ok, sub_resolving;
    ev_timer sub_timer;

    /* one discovery per process (sentinel_share.c); hub NULL: this router discovers alone */
    struct topo_hub *hub;
    struct topo_hub_member member; /* valid once joined */
    bool joined;
    struct sn_view *pub; /* leader: the last view published, to skip repeats */
    size_t publen;
    double asked; /* follower: when it last asked the leader for a round */

    uint64_t rng;
    struct sn_ctx *free_ctx;
    size_t nfree;
    bool closing;
};

/* ---- sentinel.c --------------------------------------------------------------------- */

/* The live node for an address, created (with its pool) when there is none; NULL without
 * memory. */
struct sn_node *sn_node_get(struct sentinel *s, const struct topo_hostport *hp);
/* Takes requests off a node for good; it is freed once drained (reap timer). */
void sn_node_retire(struct sentinel *s, struct sn_node *n);
/* Retires the live nodes that are neither the master nor a usable replica. */
void sn_nodes_gc(struct sentinel *s);
/* A reference held by a request in flight (ours or a caller's). */
void sn_node_hold(struct sentinel *s, struct sn_node *n, double deadline);
void sn_node_release(struct sentinel *s, struct sn_node *n);
/* Arms a parked repeating timer to fire in `delay` seconds unless it fires sooner already. */
void sn_timer_arm(struct sentinel *s, ev_timer *w, double delay);
void sn_timer_park(struct sentinel *s, ev_timer *w);
double sn_rand_unit(struct sentinel *s);
/* One line on stderr when the state it describes differs from the last one written; only
 * the router that discovers writes them (one line per change per process). */
void sn_log(struct sentinel *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Starts what only the discovering router runs: the first round and the periodic refresh. */
void sn_lead(struct sentinel *s);

/* ---- sentinel_share.c --------------------------------------------------------------- */

/* True when this router runs discovery: it has no hub, or it leads the hub's members. */
static inline bool sn_leads(const struct sentinel *s)
{
    return !s->hub || s->member.leader;
}
/* Joins s->hub on the constructor's thread (s->member.leader then says whether it leads). */
void sn_share_join(struct sentinel *s);
/* Leader: publishes the routing state when it differs from the last view published. */
void sn_share_publish(struct sentinel *s);
/* Follower: applies the hub's current view (nodes, master switch with the old one drained,
 * the down error) when it is newer than the one applied last. */
void sn_share_apply(struct sentinel *s);
/* The request path's check: one atomic load unless a newer view exists. */
static inline void sn_share_sync(struct sentinel *s)
{
    if (s->hub && s->joined && !s->closing && topo_hub_changed(&s->member)) sn_share_apply(s);
}
/* Follower: asks the leader for a discovery round (throttled like sn_trigger). */
void sn_share_ask(struct sentinel *s);

/* ---- sentinel_watch.c --------------------------------------------------------------- */

void sn_watch_start(struct sentinel *s);
void sn_watch_stop(struct sentinel *s); /* closes the subscription, cancels lookups */
/* Asks for a discovery round soon (coalesced with a running one, throttled). */
void sn_trigger(struct sentinel *s);
void sn_round_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
void sn_refresh_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
void sn_sub_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
/* Adds a sentinel (configured or discovered) with its pool: 0, 1 when known already or the
 * list is full, -1 without memory. */
int sn_sentinel_add(struct sentinel *s, const struct topo_hostport *hp);

#endif /* RC_TOPOLOGY_SENTINEL_INTERNAL_H */
