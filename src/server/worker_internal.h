/* src/server/worker_internal.h — shared by the files of the runtime (worker.c, query.c,
 * udp.c, tcp.c): the listen addresses and their routes, the per-worker state, the
 * per-query struct, and the functions one file calls in another. Not an interface:
 * src/server/server.h is.
 */
#ifndef SRV_WORKER_INTERNAL_H
#define SRV_WORKER_INTERNAL_H

#include <ev.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "plugin/plugin.h"
#include "server/server.h"

#define UDP_BATCH        32
#define UDP_RX_MAX       4096
#define UDP_TX_MAX       4096 /* UDP replies never exceed max(512, our 1232) */
#define UDP_BATCHES_MAX  16   /* recvmmsg calls per wakeup before yielding to the loop */
#define OUR_UDP          DNS_UDP_DEFAULT
#define TCP_INFLIGHT_MAX 64
#define TCP_WBUF_MAX     (256u * 1024u)
#define TCP_CONNS_MAX    1024  /* per worker */
#define QUERIES_MAX      65536 /* async queries in flight per worker */
#define QUERY_CHUNK      256
#define ROUTES_MAX       (SRV_BLOCKS_MAX * SRV_KEYS_MAX)

/* ---- the shared, read-only part: listen addresses and their routes -------------------- */

struct route {
    uint8_t zone[DNS_NAME_MAX]; /* lowercase wire form */
    uint16_t zone_len;
    uint16_t block, zidx;
};

struct laddr {
    struct sockaddr_storage sa;
    socklen_t salen;
    uint16_t port;
    bool v6;
    char text[80];
    struct route routes[ROUTES_MAX];
    size_t nroutes;
    int drop_block; /* the block whose "dropped" slot counts unrouted queries here */
};

struct worker;

/* Where a UDP query arrived, for sockets bound to a wildcard address (IP_PKTINFO /
 * IPV6_RECVPKTINFO): the reply leaves from that address, or a client that asked 127.0.0.2
 * would get its answer from 127.0.0.1 and drop it. family 0: none (a bound address). */
struct srv_pktinfo {
    sa_family_t family;
    int ifindex;
    union {
        struct in_addr v4;
        struct in6_addr v6;
    } addr;
};

/* Control buffer room for one pktinfo message (IPv6's is the larger). */
#define SRV_PKTINFO_CMSG 64

/* udp.c: reads the pktinfo of a received message (family 0 when it has none); writes the
 * control message that makes a reply leave from it, returning its length (0: none). */
void srv_pktinfo_read(struct msghdr *m, struct srv_pktinfo *pi);
size_t srv_pktinfo_write(const struct srv_pktinfo *pi, uint8_t *buf, size_t cap);

/* One configuration generation of the process: the parsed config and the listen addresses
 * with their routes, shared read-only by the workers. Reference counted (the runtime holds
 * one for the current generation, each worker generation one); the last release frees it
 * with its config, on whichever thread that happens. */
struct rgen {
    struct srv_config *cfg;
    struct laddr *addrs;
    size_t naddrs;
    _Atomic unsigned refs;
    struct topo_hub *hub[SRV_BLOCKS_MAX]; /* per redis_cache block: the workers' shared state */
};

/* Builds the listen addresses of rg->cfg into rg->addrs (worker.c). */
int srv_rgen_addrs(struct rgen *rg, char *err, size_t errlen);
void srv_rgen_release(struct rgen *rg);
bool srv_laddr_same(const struct laddr *a, const struct laddr *b);
/* A nonblocking SO_REUSEPORT socket bound to la (and listening, for SOCK_STREAM). */
int srv_open_socket(const struct laddr *la, int type, char *err, size_t errlen);
/* True for 0.0.0.0 and :: (UDP sockets on them receive pktinfo). */
bool srv_laddr_wildcard(const struct laddr *la);

struct srv_runtime {
    struct rgen *rg; /* the current generation */
    unsigned nworkers;
    struct worker **w;
    bool started;
};

/* ---- per worker ------------------------------------------------------------------------ */

struct zone_set {
    uint8_t zone[64][DNS_NAME_MAX];
    uint16_t len[64];
    size_t n;
};

struct wblock {
    const struct srv_block *b;
    struct l1_cache *l1;
    struct zone_set l1_zones;
    struct rcp_cache *rc;
    struct fwd *fwd;
    size_t slot_base;
    /* Which of l1/rc/fwd this generation frees: a part kept by a reload belongs to the
     * newer generation (generations are freed oldest first, so it outlives this one). */
    bool own_l1, own_rc, own_fwd;
};

struct ulistener {
    struct worker *w;
    const struct laddr *la;
    int fd;
    bool own; /* closes fd when its generation is freed (false: handed to a newer one) */
    ev_io io;
};

struct tlistener {
    struct worker *w;
    const struct laddr *la;
    int fd;
    bool own;
    ev_io io;
};

/* A worker's view of one configuration generation: its blocks (L1, redis_cache, forward)
 * and listeners. The current one serves new queries; a retired one lives until the
 * queries that started on it are done (reload_gen.c). */
struct wgen {
    struct wgen *next; /* w->gens, oldest first */
    struct rgen *rg;   /* one reference */
    struct wblock blocks[SRV_BLOCKS_MAX];
    size_t nblocks;
    struct ulistener *ul;
    struct tlistener *tl;
    size_t nl;
    size_t inflight; /* struct query taken while this generation was current */
    double retired_at;
    /* built, not yet swapped in: the counters shaped for this generation */
    struct srv_stats live, snap;
    struct srv_reload_keep keep[SRV_BLOCKS_MAX];
};

struct tconn {
    struct worker *w;
    const struct laddr *la;
    int fd;
    ev_io rio, wio;
    ev_timer idle;
    uint8_t *rbuf;
    size_t rlen, rcap;
    uint8_t *wbuf;
    size_t wlen, woff, wcap;
    unsigned inflight; /* queries of this connection not answered yet */
    unsigned refs;     /* callers on the stack holding it */
    bool eof;          /* no more reads (peer closed, shutdown, or a framing error) */
    bool dead;         /* socket closed; freed when inflight reaches 0 */
    /* deadlines (tcp.c's top comment): timeouts in seconds, and since when */
    bool got_query, wblocked;
    double rto, wto, ito;
    double rstart, wstart, last;
    struct sockaddr_storage peer;
    socklen_t peerlen;
    struct tconn *prev, *next;
};

enum tier { TIER_NONE = 0, TIER_L1, TIER_L2, TIER_UPSTREAM };

struct query {
    struct query *next_free;
    struct worker *w;
    struct wgen *gen; /* the generation it started on: qs->block indexes gen->blocks */
    struct dns_question q;
    uint64_t key;
    uint16_t block;
    size_t slot;
    unsigned tidx;
    bool tcp, v6;
    /* L1 depth (query.c): a background refresh without a client (prefetch, serve_stale
     * immediate); a client query whose stale L1 entry answers if the refresh fails
     * (serve_stale verify); the TTL an L2 hit must beat for a refresh to take it. */
    bool refresh, verify_stale;
    uint32_t l2_above;
    double start;
    const struct laddr *la;
    struct ulistener *ul;
    struct tconn *conn;
    struct sockaddr_storage peer;
    socklen_t peerlen;
    struct srv_pktinfo pkt; /* UDP on a wildcard socket: where the query arrived */
};

struct worker {
    struct srv_runtime *rt;
    unsigned id;
    struct ev_loop *loop;
    pthread_t thr;
    bool running, stopping, closing;
    double stop_budget;
    /* the current generation; blocks/ul/tl/nl are its arrays */
    struct wgen *gen;
    struct wgen *gens; /* every generation, oldest first; the last one is gen */
    ev_timer gc_timer; /* frees retired generations once drained */
    struct wblock *blocks;
    size_t nblocks;
    struct ulistener *ul;
    struct tlistener *tl;
    size_t nl;
    struct tconn *conns;
    size_t nconns;
    bool accepting;

    struct query *free_q;
    size_t nq; /* allocated */
    size_t inflight;
    void **chunks;
    size_t nchunks;

    /* UDP batch buffers */
    struct mmsghdr rx[UDP_BATCH], tx[UDP_BATCH];
    struct iovec rxiov[UDP_BATCH], txiov[UDP_BATCH];
    struct sockaddr_storage rxaddr[UDP_BATCH];
    uint8_t rxctl[UDP_BATCH][SRV_PKTINFO_CMSG], txctl[UDP_BATCH][SRV_PKTINFO_CMSG];
    struct srv_pktinfo rxpkt[UDP_BATCH];
    const struct srv_pktinfo *cur_pkt; /* the datagram srv_handle_query is handling */
    uint8_t (*rxbuf)[UDP_RX_MAX];
    uint8_t (*txbuf)[UDP_TX_MAX];

    /* UDP replies of async queries (L2 hits, forwarded answers), queued during a loop
     * iteration and sent with one sendmmsg from an ev_prepare watcher (or when full) */
    struct mmsghdr atx[UDP_BATCH];
    struct iovec atxiov[UDP_BATCH];
    struct sockaddr_storage atxaddr[UDP_BATCH];
    uint8_t atxctl[UDP_BATCH][SRV_PKTINFO_CMSG];
    int atxfd[UDP_BATCH];
    uint8_t (*atxbuf)[UDP_TX_MAX];
    unsigned natx;
    ev_prepare atx_flush;

    /* scratch for async completions */
    uint8_t *scratch; /* upstream response, TTLs rewritten */
    uint8_t *out;     /* reply (2 bytes of TCP framing room in front) */
    struct dns_rr *rrs, *rrs2;

    ev_async stop_async, snap_async;
    ev_timer drain_timer, deadline_timer;

    struct srv_stats live;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t snap_gen;
    struct srv_stats snap;

    /* reload handshake with the main thread (under mu; reload_gen.c) */
    ev_async reload_async;
    int rl_cmd, rl_state;
    struct rgen *rl_rg;    /* the generation to build */
    int (*rl_fds)[2];      /* [rl_rg->naddrs]: new sockets (udp, tcp), -1: keep this one's */
    struct wgen *rl_built; /* built, waiting for commit or abort */
    char rl_err[512];
};

/* ---- reload_gen.c: generations -------------------------------------------------------- */

/* Builds generation rg for w on the calling thread (w's loop thread, or before start):
 * blocks per srv_reload_plan against w->gen (NULL: all new), counters, listener arrays.
 * NULL with err on failure. */
struct wgen *srv_wgen_build(struct worker *w, struct rgen *rg, char *err, size_t errlen);
/* Makes g current: takes the kept parts and the sockets (fds[i]: new ones, or -1 for the
 * current generation's socket of the same address), starts its listeners, moves TCP
 * connections to the new addresses (or lets them finish), carries counters, retires the
 * old generation. */
void srv_wgen_commit(struct worker *w, struct wgen *g, int (*fds)[2]);
/* Frees g and what it owns (an uncommitted g, or a drained retired one). */
void srv_wgen_free(struct worker *w, struct wgen *g);
/* ev_async callback: the reload commands of the main thread. */
void srv_worker_on_reload(struct ev_loop *loop, ev_async *a, int revents);
/* Frees drained retired generations (gc_timer's callback). */
void srv_worker_on_gc(struct ev_loop *loop, ev_timer *t, int revents);

/* ---- query.c: the per-query pipeline ------------------------------------------------- */

enum qres { Q_DROP = 0, Q_REPLY, Q_ASYNC };

/* Handles one query read from `la`. On Q_REPLY the reply is in out/out_len. On Q_ASYNC the
 * query was handed to a struct query that answers through ul/conn later. */
enum qres srv_handle_query(struct worker *w, const struct laddr *la, struct ulistener *ul,
                           struct tconn *conn, const struct sockaddr_storage *peer,
                           socklen_t peerlen, const uint8_t *in, size_t len, uint8_t *out,
                           size_t cap, size_t *out_len);
/* A header-only error reply to `in` (its ID, opcode and RD); the length written. */
size_t srv_build_header_error(uint8_t *out, const uint8_t *in, unsigned rcode);

/* ---- udp.c: batched UDP and the async reply queue --------------------------------------- */

void srv_udp_on_read(struct ev_loop *loop, ev_io *io, int revents);
void srv_udp_async_flush(struct worker *w);
void srv_udp_async_on_prepare(struct ev_loop *loop, ev_prepare *p, int revents);
/* Sends the reply of an async query: queued on its TCP connection, or in the worker's
 * UDP queue that leaves with one sendmmsg before the loop polls. */
void srv_send_async(struct query *qs, const uint8_t *msg, size_t len);

/* ---- tcp.c: RFC 7766 connections ---------------------------------------------------------- */

void srv_tcp_on_accept(struct ev_loop *loop, ev_io *io, int revents);
void srv_tconn_close(struct tconn *c);
/* A query of c is answered (or dropped): may resume reading or close c. */
void srv_tconn_release(struct tconn *c);
/* Queues a framed reply; the caller flushes. False when the connection is gone or full. */
bool srv_tconn_queue(struct tconn *c, const uint8_t *msg, size_t len);
void srv_tconn_flush(struct tconn *c);

#endif
