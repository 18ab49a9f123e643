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
#define TCP_IDLE         10.0
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

struct srv_runtime {
    const struct srv_config *cfg;
    unsigned nworkers;
    struct laddr *addrs;
    size_t naddrs;
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
};

struct ulistener {
    struct worker *w;
    const struct laddr *la;
    int fd;
    ev_io io;
};

struct tlistener {
    struct worker *w;
    const struct laddr *la;
    int fd;
    ev_io io;
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
    struct sockaddr_storage peer;
    socklen_t peerlen;
    struct tconn *prev, *next;
};

enum tier { TIER_NONE = 0, TIER_L1, TIER_L2, TIER_UPSTREAM };

struct query {
    struct query *next_free;
    struct worker *w;
    struct dns_question q;
    uint64_t key;
    uint16_t block;
    size_t slot;
    unsigned tidx;
    bool tcp, v6;
    double start;
    const struct laddr *la;
    struct ulistener *ul;
    struct tconn *conn;
    struct sockaddr_storage peer;
    socklen_t peerlen;
};

struct worker {
    struct srv_runtime *rt;
    unsigned id;
    struct ev_loop *loop;
    pthread_t thr;
    bool running, stopping, closing;
    double stop_budget;
    struct wblock blocks[SRV_BLOCKS_MAX];
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
    uint8_t (*rxbuf)[UDP_RX_MAX];
    uint8_t (*txbuf)[UDP_TX_MAX];

    /* UDP replies of async queries (L2 hits, forwarded answers), queued during a loop
     * iteration and sent with one sendmmsg from an ev_prepare watcher (or when full) */
    struct mmsghdr atx[UDP_BATCH];
    struct iovec atxiov[UDP_BATCH];
    struct sockaddr_storage atxaddr[UDP_BATCH];
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
};

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
