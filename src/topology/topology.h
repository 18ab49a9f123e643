/* src/topology/topology.h — the interface of src/topology: where commands go.
 *
 * Address resolution without blocking the loop (resolve.c, resolv_conf.c), a pool of
 * connections per Redis node with retries and backoff (pool.c, request.c) and a circuit
 * breaker (breaker.c), and the routers that pick a node for a read or a write of a key:
 * standalone (standalone.c), Sentinel (sentinel.c) and Cluster (cluster.c), each
 * implementing struct topo_router.
 *
 * Everything here runs on one libev loop (a worker's). Nothing blocks: hostnames are
 * resolved with our own DNS client (src/dns codec) against the `resolver` directive's
 * server or the nameservers of resolv.conf, never getaddrinfo.
 */
#ifndef RC_TOPOLOGY_H
#define RC_TOPOLOGY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "resp/resp.h"

/* ---- addresses ---------------------------------------------------------------------- */

#define TOPO_HOST_MAX  256
#define TOPO_ADDRS_MAX 16

/* "host", "host:port", "[v6]:port" or a bare IPv6 literal; the port defaults to
 * default_port. Returns 0, or -1 with a message in err ("missing host", "bad port"...). */
int topo_parse_hostport(const char *s, uint16_t default_port, char host[TOPO_HOST_MAX],
                        uint16_t *port, char *err, size_t errlen);

struct topo_addrs {
    size_t n;
    struct sockaddr_storage addr[TOPO_ADDRS_MAX];
    socklen_t len[TOPO_ADDRS_MAX];
};

/* ---- resolution (resolve.c) --------------------------------------------------------- */
/*
 * IP literals complete at once. Other names: the hosts file first, then DNS with the
 * resolv.conf search list and ndots, A and AAAA asked in parallel over UDP (TCP when TC),
 * each nameserver tried in turn; `nameserver` (the `resolver` directive) replaces the
 * resolv.conf nameservers. With no resolv.conf and no nameserver, names fail with one clear
 * error. Files are read when the resolver is created (never on the loop per lookup).
 */
struct topo_resolver_opts {
    const char *nameserver;  /* "IP" or "IP:port" (port 53), or NULL: resolv.conf's */
    const char *resolv_conf; /* NULL: /etc/resolv.conf */
    const char *hosts_file;  /* NULL: /etc/hosts */
    double timeout;          /* per attempt, seconds; 0: 1 s */
    int attempts;            /* rounds over the nameservers; 0: 2 */
    /* Port used for resolv.conf's nameservers (whose syntax has no port); 0: 53. For tests
     * that run a DNS server on loopback without owning port 53. */
    uint16_t resolv_conf_port;
};

struct topo_resolver;
struct topo_resolve_req;

/* Called once: addrs non-NULL with n >= 1 on success, else err (RESP_EK_CONNECTION:
 * "resolve redis.local: NXDOMAIN" / "no nameserver"). */
typedef void topo_resolve_fn(void *priv, const struct topo_addrs *addrs,
                             const struct resp_err *err);

struct topo_resolver *topo_resolver_new(struct ev_loop *loop, const struct topo_resolver_opts *o,
                                        struct resp_err *err);
void topo_resolver_free(struct topo_resolver *r); /* cancels pending lookups (no callbacks) */

/* Resolves host for port. When the answer is known at once (IP literal, hosts file) the
 * callback runs before this returns and the result is NULL. Otherwise returns a handle
 * valid until the callback runs. `deadline` is absolute (ev_now based). On allocation
 * failure the callback runs at once with an error and NULL is returned; so do errors known
 * at once (invalid name, no nameserver, deadline already past). Addresses come IPv4 (A)
 * first, then IPv6 (AAAA), each in answer (or hosts file) order, at most TOPO_ADDRS_MAX.
 * When the deadline passes with one family answered and the other still pending, what was
 * found is returned. The callback may free the resolver or start new lookups. */
struct topo_resolve_req *topo_resolve(struct topo_resolver *r, const char *host, uint16_t port,
                                      double deadline, topo_resolve_fn *fn, void *priv);
void topo_resolve_cancel(struct topo_resolve_req *req); /* no callback afterwards */

/* ---- a pool of connections to one node (pool.c) -------------------------------------- */

/* The backoff before retry number `attempt` (0-based) given a uniform u in [0,1): the
 * ceiling c = min_backoff * 2^attempt capped at max_backoff, then a value in [c/2, c), never
 * below min_backoff nor above max_backoff (request.c; also paces reconnects and probes). */
double topo_backoff(double min_backoff, double max_backoff, unsigned attempt, double u);

struct topo_pool_opts {
    unsigned size;               /* max sockets; 0: 10 x CPUs (the seed's default) */
    unsigned min_idle;           /* connections kept open and ready even without traffic */
    unsigned max_idle;           /* 0: unlimited */
    unsigned max_active;         /* hard cap incl. in use; 0: unlimited (size still applies) */
    double max_idle_time;        /* seconds; default 1800; 0: never */
    double max_lifetime;         /* seconds; 0: no limit */
    double wait_timeout;         /* seconds a request waits for a usable connection; 0.5 */
    unsigned retries;            /* retries per request on transient errors; default 1 */
    double min_backoff;          /* 0.008 */
    double max_backoff;          /* 0.512 */
    unsigned pipeline_high;      /* open another connection when every open one has this many
                                    commands in flight (and size allows); default 32 */
    unsigned breaker_threshold;  /* consecutive timeouts/connection errors; default 5 */
    size_t max_background;       /* background (fire-and-forget) requests in flight;
                                    default 10000; overflow fails at once (timeout) */
    size_t max_background_bytes; /* their bytes; default 64 MiB */
};

/* Sets the defaults above. */
void topo_pool_opts_init(struct topo_pool_opts *o);

/* ---- one topology state per process (hub.c) ------------------------------------------ */
/*
 * SPEC §3: discovery, subscriptions, slot table and breaker state are one per process;
 * connections belong to a worker. The host creates one hub per configuration and gives it
 * to the router (through topo_node_opts.hub) it builds on each worker's loop: the routers
 * then share one discovery (the first one's; the others apply its published views) and one
 * breaker per node. Thread-safe; refcounted (each router holds a reference). Without a
 * hub a router keeps all of it to itself, as a lone embedder wants.
 */
struct topo_hub;
struct topo_hub *topo_hub_new(void); /* NULL without memory; one reference */
void topo_hub_ref(struct topo_hub *h);
void topo_hub_unref(struct topo_hub *h);

struct topo_node_opts {
    char host[TOPO_HOST_MAX]; /* hostname or IP literal, as configured */
    uint16_t port;
    struct resp_conn_opts conn; /* template: addr/addrlen/host are filled per connection */
    struct topo_pool_opts pool;
    struct topo_hub *hub; /* shared state (breaker per node; a router's discovery), or NULL */
};

struct topo_pool;

/* Per command of a request, like resp_reply_fn; called once per command in order. */
typedef resp_reply_fn topo_reply_fn;

enum topo_exec_flags {
    TOPO_BACKGROUND = 1, /* fire-and-forget write: counted against the background bounds */
};

struct topo_pool *topo_pool_new(struct ev_loop *loop, struct topo_resolver *resolver,
                                const struct topo_node_opts *o);
/* Fails everything pending (RESP_EK_CONNECTION "shutting down") and frees. */
void topo_pool_free(struct topo_pool *p);

/* Sends the n commands of one request on one connection, pipelined, under `deadline`
 * (absolute). Picks the least loaded ready connection; opens more as load demands; waits up
 * to wait_timeout (and never past the deadline) when none is ready. A failure before any
 * reply of the request (connection lost, connect failed) is retried on another connection
 * up to `retries` times with jittered exponential backoff, inside the deadline. A node whose
 * breaker is open fails at once with the reason that opened it. Returns 0; errors are
 * always reported through fn (possibly before this returns). */
int topo_pool_exec(struct topo_pool *p, const struct resp_cmd *cmds, size_t n, double deadline,
                   unsigned flags, topo_reply_fn *fn, void *priv);

enum topo_breaker_state { TOPO_BREAKER_CLOSED = 0, TOPO_BREAKER_OPEN };

struct topo_pool_stats {
    unsigned open;      /* connections open (any state) */
    unsigned ready;     /* ... of which READY */
    unsigned in_flight; /* commands awaiting replies */
    unsigned waiting;   /* requests waiting for a connection */
    enum topo_breaker_state breaker;
    uint64_t connects; /* connection attempts so far */
    uint64_t retries;  /* requests retried */
    size_t background, background_bytes;
};
void topo_pool_stats(const struct topo_pool *p, struct topo_pool_stats *st);
const char *topo_pool_name(const struct topo_pool *p); /* "host:port" */

/* ---- routers ------------------------------------------------------------------------- */
/*
 * A router sends a request for a key to the right node: topo_router_exec(r, key, write...).
 * Standalone: writes go to `endpoint`; reads to it too with no read endpoints, to the one
 * read endpoint, or to one picked at random per request among two or more. Sentinel and
 * Cluster implement the same operations later.
 */
struct topo_router;

struct topo_router_ops {
    int (*exec)(struct topo_router *r, const void *key, size_t keylen, bool write,
                const struct resp_cmd *cmds, size_t n, double deadline, unsigned flags,
                topo_reply_fn *fn, void *priv);
    void (*free)(struct topo_router *r);
};

struct topo_router {
    const struct topo_router_ops *ops;
};

static inline int topo_router_exec(struct topo_router *r, const void *key, size_t keylen,
                                   bool write, const struct resp_cmd *cmds, size_t n,
                                   double deadline, unsigned flags, topo_reply_fn *fn, void *priv)
{
    return r->ops->exec(r, key, keylen, write, cmds, n, deadline, flags, fn, priv);
}
static inline void topo_router_free(struct topo_router *r)
{
    if (r) r->ops->free(r);
}

/* Standalone: `write` is the endpoint; `reads` (may be 0) the read endpoints. Each node gets
 * its own pool built from `tmpl` (host/port replaced). */
struct topo_router *topo_standalone_new(struct ev_loop *loop, struct topo_resolver *resolver,
                                        const struct topo_node_opts *write,
                                        const struct topo_node_opts *reads, size_t nreads);

/* For tests and metrics: the pools of a standalone router (write first, then reads). */
size_t topo_standalone_pools(struct topo_router *r, struct topo_pool **out, size_t cap);

/* ---- Sentinel (sentinel.c) ------------------------------------------------------------ */
/*
 * `sentinel MASTER_NAME ADDR...`: the master and its replicas discovered through Sentinel
 * and followed across failovers (the Redis Sentinel client guidelines). Writes go to the
 * master; reads to a replica picked at random per request (the master when none is usable).
 * Discovery and the +switch-master subscription run in the background on the loop; until a
 * master is known, requests fail at once (RESP_EK_CONNECTION, a message naming the master
 * and why) and never wait past their deadline.
 */
struct topo_hostport {
    char host[TOPO_HOST_MAX];
    uint16_t port;
};

struct topo_sentinel_opts {
    char master[256];                      /* the master group name */
    const struct topo_hostport *sentinels; /* in configured order */
    size_t nsentinels;
    /* Template for connections to the sentinels: the Sentinel API's username/password,
     * TLS, connect timeout (addr/host filled per connection; db is ignored). */
    struct resp_conn_opts sentinel_conn;
    /* Template for the master and replica pools (host/port replaced per node). */
    struct topo_node_opts data;
};

struct topo_router *topo_sentinel_new(struct ev_loop *loop, struct topo_resolver *resolver,
                                      const struct topo_sentinel_opts *o);

/* For tests and logs: the master in use (0, or -1 while none is known or r is not a
 * Sentinel router), and the usable replicas (their count; at most cap copied). */
int topo_sentinel_master(struct topo_router *r, struct topo_hostport *out);
size_t topo_sentinel_replicas(struct topo_router *r, struct topo_hostport *out, size_t cap);

/* ---- Cluster (cluster.c) --------------------------------------------------------------- */
/*
 * `cluster SEED...` with `read_from`: the slot table from CLUSTER SHARDS (CLUSTER SLOTS
 * when the server lacks it), routing by CRC16 hash slot, MOVED/ASK/TRYAGAIN/CLUSTERDOWN
 * handled inside the request's deadline, replica reads per read_from.
 */
enum topo_read_from { TOPO_READ_LATENCY = 0, TOPO_READ_RANDOM, TOPO_READ_PRIMARY };

#define TOPO_CLUSTER_SLOTS 16384

/* The hash slot of a key: CRC16-XMODEM of the key (or of its first non-empty {hash tag})
 * mod 16384, as Redis Cluster defines it. */
unsigned topo_cluster_slot(const void *key, size_t len);

struct topo_cluster_opts {
    const struct topo_hostport *seeds;
    size_t nseeds;
    enum topo_read_from read_from;
    unsigned max_redirects; /* MOVED/ASK followed per request; 0: 5 */
    /* Template for every node's pool (host/port replaced per node; db is 0). */
    struct topo_node_opts data;
};

struct topo_router *topo_cluster_new(struct ev_loop *loop, struct topo_resolver *resolver,
                                     const struct topo_cluster_opts *o);

#endif /* RC_TOPOLOGY_H */
