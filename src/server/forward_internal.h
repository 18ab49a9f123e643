/* src/server/forward_internal.h — shared by the files of the forward client (forward.c,
 * forward_health.c, forward_tcp.c): the request, upstream and instance structs, and the
 * functions one file calls in another. Not an interface: src/server/server.h is.
 */
#ifndef SRV_FORWARD_INTERNAL_H
#define SRV_FORWARD_INTERNAL_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#include "server/server.h"

#define FWD_BUCKETS    1024 /* in-flight table (power of two) */
#define FWD_QUERY_MAX  (DNS_HEADER_LEN + DNS_NAME_MAX + 4 + 11)
#define FWD_POOL_MAX   8   /* idle TCP connections kept per upstream */
#define FWD_HC_TIMEOUT 1.0 /* a health probe without a reply by then failed (CoreDNS: 1s) */
#define FWD_UDP_BURST  32  /* datagrams read per wakeup, bounding a flood */

/* UDP source ports (forward_udp.c): live sockets per upstream, and the queries and seconds
 * a port serves before it is retired for a fresh one */
#ifndef FWD_PORTS
#define FWD_PORTS 2
#endif
#ifndef FWD_PORT_QUERIES
#define FWD_PORT_QUERIES 100
#endif
#define FWD_PORT_AGE   1.0
#define FWD_PORT_SLOTS 256 /* ID table per port: a power of two >= 2 x FWD_PORT_QUERIES */

enum fwd_proto { FWD_UDP, FWD_TCP };

struct fwd_waiter {
    fwd_fn *fn;
    void *priv;
    struct fwd_waiter *next;
};

struct fwd_host;
struct fwd_port;

struct fwd_req {
    struct fwd *f;
    struct fwd_host *probe;      /* a health probe of this upstream (no waiters, not coalesced) */
    struct fwd_req *hnext;       /* in-flight table chain */
    struct fwd_req *prev, *next; /* every request in flight (fwd_free) */
    uint64_t key;

    /* the question, as the first client asked it */
    uint8_t name[DNS_NAME_MAX];
    uint16_t name_len, qtype, qclass;
    bool do_bit, cd;

    struct fwd_waiter first; /* the first waiter needs no allocation */
    struct fwd_waiter *wtail;

    /* our query, behind 2 bytes of TCP length */
    uint8_t wire[2 + FWD_QUERY_MAX];
    uint16_t qlen, id;

    /* the walk over the upstreams */
    uint8_t order[FWD_UPSTREAMS_MAX];
    unsigned pos;        /* tries started (order[pos % nup] is next) */
    unsigned fast_fails; /* tries in a row that failed at once (no timeout) */
    bool failed_fast;    /* the try timer is armed at 0 after such a failure */
    bool start_tcp;      /* each upstream is asked over TCP first */
    bool reused;         /* the current TCP try runs on a pooled connection */
    bool restart;        /* the try timer restarts the same try on a fresh connection */
    int up;              /* upstream of the current try, -1 none */
    enum fwd_proto proto;

    /* the current try */
    struct fwd_port *port; /* UDP: the source port it went out on */
    uint16_t pslot;        /* UDP: its slot in the port's ID table */
    int fd;                /* TCP */
    ev_io io;
    ev_timer try_t, total_t;
    enum { FWD_TP_CONNECT, FWD_TP_WRITE, FWD_TP_READ } tphase; /* TCP */
    size_t toff;     /* TCP: bytes of wire written, then bytes of the reply read */
    uint8_t thdr[2]; /* TCP: reply length */
    uint8_t *tbuf;   /* TCP: reply (malloc, freed at the end of the try) */
    size_t tlen;
};

/* An upstream's state: health and idle TCP connections. */
struct fwd_host {
    struct fwd *f;
    int idx;
    uint32_t fails;         /* consecutive failed probes */
    bool probing;           /* a probe is in flight or hc_t waits for the next */
    ev_timer hc_t;          /* the wait between probes */
    int idle[FWD_POOL_MAX]; /* oldest first */
    double idle_used[FWD_POOL_MAX];
    size_t nidle;
    struct fwd_port *live[FWD_PORTS]; /* UDP ports taking new queries */
    struct fwd_port *retired;         /* UDP ports waiting for their last query */
};

/* A UDP source port: one connect()ed socket and the queries in flight on it, by ID. */
struct fwd_port {
    struct fwd_host *h;
    struct fwd_port *next; /* the host's retired list, or the free list */
    int fd;
    ev_io io;
    ev_tstamp born;
    uint16_t sent, inflight;
    bool retired; /* takes no new query; closed when inflight reaches 0 */
    bool busy;    /* a loop over it is running: not freed until it ends */
    bool used[FWD_PORT_SLOTS];
    uint16_t id[FWD_PORT_SLOTS];
    struct fwd_req *req[FWD_PORT_SLOTS]; /* NULL once the query ended (its ID stays used) */
};

struct fwd {
    struct ev_loop *loop;
    struct fwd_opts o;
    struct fwd_host host[FWD_UPSTREAMS_MAX];
    ev_timer expire_t; /* closes idle TCP connections unused for o.expire */
    ev_timer port_t;   /* retires UDP ports past FWD_PORT_AGE */
    struct fwd_port *free_ports;
    size_t nfree_ports;
    size_t inflight; /* client queries waiting (max_concurrent) */
    uint8_t from_wire[DNS_NAME_MAX];
    uint16_t from_len;
    uint8_t except_wire[FWD_EXCEPT_MAX][DNS_NAME_MAX];
    uint16_t except_len[FWD_EXCEPT_MAX];
    struct fwd_req *buckets[FWD_BUCKETS];
    struct fwd_req *all;
    struct fwd_req *free_reqs;
    size_t nfree_reqs;
    struct fwd_waiter *free_waiters;
    size_t nfree_waiters;
    unsigned robin;
    bool closing; /* in fwd_free: no new queries (a callback might start one) */
    uint8_t rpool[256];
    size_t rpos;
    uint64_t rstate; /* fallback when getrandom fails */
    struct fwd_stats st;
    uint8_t rbuf[DNS_MSG_MAX + 1]; /* UDP replies (one over the max: oversize is garbage) */
};

/* forward.c: requests and tries */
struct fwd_req *fwd_req_get(struct fwd *f);
void fwd_req_init(struct fwd *f, struct fwd_req *r, const struct dns_question *q, uint64_t key);
void fwd_try_next(struct fwd_req *r);
void fwd_try_fail_fast(struct fwd_req *r);
bool fwd_reply_ok(const struct fwd_req *r, const uint8_t *buf, size_t len, unsigned *rcode,
                  bool *tc);
void fwd_got_reply(struct fwd_req *r, const uint8_t *buf, size_t len, unsigned rcode, bool tc);
/* 32 random bits (getrandom in batches; the per-worker pool) */
uint32_t fwd_rand(struct fwd *f);

/* forward_health.c: max_fails and health_check */
bool fwd_host_down(const struct fwd *f, int i);
void fwd_host_failed(struct fwd *f, int i);
void fwd_probe_done(struct fwd_host *h, bool ok);
void fwd_on_hc_timer(struct ev_loop *loop, ev_timer *w, int revents);

/* forward_tcp.c: TCP tries and pooled connections */
void fwd_tcp_io(struct fwd_req *r, int revents);
int fwd_pool_take(struct fwd_host *h);
void fwd_pool_put(struct fwd_host *h, int fd);
void fwd_pool_close(struct fwd_host *h);
void fwd_on_expire(struct ev_loop *loop, ev_timer *w, int revents);

/* forward_udp.c: UDP source ports. fwd_udp_send sends r's query with a fresh ID on a port
 * of r->up (-1: no socket, or the port failed); fwd_udp_detach ends r's use of its port. */
int fwd_udp_send(struct fwd_req *r);
void fwd_udp_detach(struct fwd_req *r);
void fwd_on_port_timer(struct ev_loop *loop, ev_timer *w, int revents);
void fwd_udp_close(struct fwd *f);

#endif
