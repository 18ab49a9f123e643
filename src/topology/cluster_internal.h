/* src/topology/cluster_internal.h — private to the Cluster router: the pure parsers
 * (cluster_parse.c: CLUSTER SHARDS / CLUSTER SLOTS replies into a validated slot map,
 * MOVED / ASK / TRYAGAIN / CLUSTERDOWN error texts), the view a leader publishes to the
 * other workers (cluster_share.c), and the router's state shared by cluster.c (routing,
 * requests, redirects), cluster_discover.c (discovery, refresh, latency probes) and
 * cluster_share.c. Not part of the topology interface (topology.h).
 */
#ifndef RC_TOPOLOGY_CLUSTER_INTERNAL_H
#define RC_TOPOLOGY_CLUSTER_INTERNAL_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "resp/resp.h"
#include "topology/hub_internal.h"
#include "topology/topology.h"

/* CRC16-XMODEM (crc16.c); topo_cluster_slot is this mod 16384 of the key or its tag. */
uint16_t topo_crc16(const void *data, size_t len);

/* ---- the slot map a discovery reply describes (cluster_parse.c) --------------------- */

#define CL_NO_SHARD      0xFFFFu
#define CL_NODES_MAX     1024 /* distinct nodes accepted in one reply */
#define CL_REPLICAS_MAX  16   /* replicas kept per shard (more are ignored) */
#define CL_MAX_REDIRECTS 5    /* default of topo_cluster_opts.max_redirects */

struct cl_map_node {
    char host[TOPO_HOST_MAX];
    uint16_t port;
};

struct cl_map_shard {
    uint16_t primary; /* index into nodes */
    uint16_t nreplicas;
    uint16_t replicas[CL_REPLICAS_MAX]; /* usable for reads (health online) */
};

struct cl_map {
    struct cl_map_node *nodes;
    size_t nnodes, capnodes;
    struct cl_map_shard *shards;
    size_t nshards, capshards;
    size_t covered;                    /* slots with an owner */
    size_t not_online;                 /* replicas left out for their health (loading...) */
    uint16_t slot[TOPO_CLUSTER_SLOTS]; /* shard index, or CL_NO_SHARD */
};

/* How to read a reply: `reached` is the host the reply came from (used for endpoints that
 * are NULL, "" or "?"); `tls` picks a node's tls-port in CLUSTER SHARDS when it has one. */
struct cl_parse_opts {
    const char *reached;
    bool tls;
};

void cl_map_init(struct cl_map *m);
void cl_map_free(struct cl_map *m);

/* Parse a CLUSTER SHARDS reply (RESP2 arrays or RESP3 maps) / a CLUSTER SLOTS reply into m
 * (initialised by the caller, emptied first). Returns 0, or -1 with a message in err:
 * wrong shapes, slot ranges outside 0..16383 or reversed, a slot claimed twice, a shard
 * with slots but no usable primary, bad ports, too many nodes, no slot covered at all. */
int cl_parse_shards(const struct resp_value *v, const struct cl_parse_opts *o, struct cl_map *m,
                    char *err, size_t errlen);
int cl_parse_slots(const struct resp_value *v, const struct cl_parse_opts *o, struct cl_map *m,
                   char *err, size_t errlen);

enum cl_redir_kind {
    CL_REDIR_NONE = 0,    /* not a cluster error (or a malformed one): an ordinary reply */
    CL_REDIR_MOVED,       /* "MOVED slot host:port" */
    CL_REDIR_ASK,         /* "ASK slot host:port" */
    CL_REDIR_TRYAGAIN,    /* "TRYAGAIN ..." */
    CL_REDIR_CLUSTERDOWN, /* "CLUSTERDOWN ..." */
};

struct cl_redirect {
    enum cl_redir_kind kind;
    unsigned slot;
    char host[TOPO_HOST_MAX];
    uint16_t port;
};

/* Classifies an error reply's text (without the leading '-'). An empty host
 * ("MOVED 1 :7001") means `reached`. "[v6]:port" and "v6:port" (split at the last colon)
 * are both read. */
enum cl_redir_kind cl_parse_redirect(const char *s, size_t len, const char *reached,
                                     struct cl_redirect *out);

/* ---- the view shared through the hub (cluster_share.c) --------------------------------- */

/* A slot map (NULL: no table yet) and the last discovery error as one flat blob without
 * pointers (malloc'd, *len set), or NULL without memory. */
void *cl_view_encode(const struct cl_map *m, const struct resp_err *why, size_t *len);
/* Reads a blob of cl_view_encode into m (initialised by the caller, emptied first), why and
 * have_table. 0, or -1 for a short, long or inconsistent blob (m is then empty). */
int cl_view_decode(const void *data, size_t len, struct cl_map *m, struct resp_err *why,
                   bool *have_table);

/* ---- the router (cluster.c, cluster_discover.c, cluster_share.c)
 * ------------------------------------- */

#define CL_TRIES_MAX       5    /* TRYAGAIN / CLUSTERDOWN retries per request */
#define CL_REFRESH_MIN     1.0  /* seconds between two topology refreshes, at least */
#define CL_REFRESH_PERIOD  30.0 /* a refresh this often anyway */
#define CL_REFRESH_LOADING 2.0  /* ... this often while replicas are still loading */
#define CL_PROBE_IDLE      1.0  /* latency: PING a node with no sample for this long */
#define CL_BAD_FOR         1.0  /* reads avoid a node this long after it failed */
#define CL_NODE_GC_AFTER   60.0 /* a node out of the table and unused this long is dropped */
#define CL_EXPLORE         16   /* latency: one read in this many goes to any node of the shard */
#define CL_RTT_ALPHA       0.3  /* weight of a new RTT sample in the moving average */

struct cluster;

struct cl_node {
    struct cl_node *next;
    struct cluster *cl;
    char host[TOPO_HOST_MAX];
    uint16_t port;
    struct topo_pool *pool;
    double rtt;         /* moving average, seconds; < 0: not measured yet */
    double last_sample; /* ev_now of the last RTT sample */
    double ping_sent;
    double bad_until; /* reads avoid it until then */
    double last_used;
    unsigned busy;      /* our requests, discovery and PINGs in flight on it */
    unsigned share_idx; /* scratch of cl_share_publish */
    bool in_table, pinging;
};

struct cl_shard {
    struct cl_node *primary;
    unsigned nreplicas;
    struct cl_node *replicas[CL_REPLICAS_MAX];
};

struct cl_req;

struct cluster {
    struct topo_router r; /* first: the router pointer is the struct pointer */
    struct ev_loop *loop;
    struct topo_resolver *resolver;
    struct topo_node_opts tmpl; /* every node's pool: host/port replaced */
    char *username, *password, *client_name;
    enum topo_read_from read_from;
    unsigned max_redirects;
    struct topo_hostport *seeds;
    size_t nseeds;

    struct cl_node *nodes;
    size_t nnodes;
    struct cl_shard *shards;
    size_t nshards, capshards;
    uint16_t slot[TOPO_CLUSTER_SLOTS]; /* shard index, or CL_NO_SHARD */
    bool have_table;
    struct resp_err why; /* the last discovery error (the message while there is no table) */
    char logged_why[sizeof(((struct resp_err *)0)->msg)]; /* the last reason logged */
    uint64_t table_sig;                                   /* of the table last logged */

    /* discovery (cluster_discover.c) */
    ev_timer disc_timer, tick;
    bool disc_running, disc_again, disc_slots, use_slots;
    unsigned disc_fails;
    double disc_started, next_periodic;
    struct topo_hostport *cands; /* who to ask, in order */
    size_t ncands, capcands, candi;
    struct cl_node *disc_node;
    struct cl_map map; /* scratch for parsing */
    uint64_t refreshes;

    /* the hub (cluster_share.c): member.hub is NULL when the router keeps its state to
     * itself; else it holds a reference and follows member.leader */
    struct topo_hub_member member;
    bool joined;
    void *last_pub; /* leader: the blob published last (identical ones are not sent again) */
    size_t last_pub_len;

    struct cl_req *freel, *backoff; /* free list; requests waiting out a TRYAGAIN backoff */
    unsigned nfree;
    uint64_t rng;
    bool closing;
};

/* cluster.c */
struct cl_node *cl_node_get(struct cluster *cl, const char *host, uint16_t port);
void cl_rtt_sample(struct cl_node *n, double sample, double now);
double cl_rand_unit(struct cluster *cl);

/* cluster_discover.c */
/* Starts the tick, and discovery when `lead` (a router alone, or the hub's leader). */
void cl_discover_init(struct cluster *cl, bool lead);
/* A follower made leader: discovery from now on, the first round at once. */
void cl_discover_lead(struct cluster *cl);
void cl_discover_stop(struct cluster *cl);
/* A refresh as soon as the throttle allows (coalesced with one under way); a follower asks
 * the leader instead. */
void cl_refresh_soon(struct cluster *cl);
/* Replaces the table with the parsed map (nodes created as needed). 0 or -1 (no memory). */
int cl_install(struct cluster *cl, const struct cl_map *m);
/* Points a slot at a primary at once (MOVED). True when the table changed. */
bool cl_patch_slot(struct cluster *cl, unsigned slot, struct cl_node *primary);
/* What a log line is worth: the primaries and the slots they own. */
uint64_t cl_map_signature(const struct cl_map *m);

/* cluster_share.c */
/* Joins o->hub when there is one (a reference taken); true when this router leads
 * discovery (or has no hub). */
bool cl_share_join(struct cluster *cl, struct topo_hub *hub);
/* Leaves the hub (before timers and pools go) / drops the reference (at the very end). */
void cl_share_leave(struct cluster *cl);
void cl_share_release(struct cluster *cl);
/* True when this router runs no discovery (it follows a leader). */
static inline bool cl_follower(const struct cluster *cl)
{
    return cl->member.hub && !cl->member.leader;
}
/* Follower: applies the leader's latest view when it changed (one atomic load if not). */
void cl_share_sync(struct cluster *cl);
/* Leader: publishes the current table (or, without one, the discovery error). */
void cl_share_publish(struct cluster *cl);

#endif /* RC_TOPOLOGY_CLUSTER_INTERNAL_H */
