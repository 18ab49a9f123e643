/* include/redis_cache.h — the embedding API of libredis_cache.
 *
 * Everything runs on a libev loop that the host owns: the library starts no thread, keeps no
 * global state, and never blocks the loop (connections, TLS, AUTH and hostname resolution
 * all happen in the background). Two clients with different configurations can live in one
 * process, on one loop or on loops of different threads (one client is used from one
 * thread only: the thread running its loop).
 *
 * This header includes no internal header; the types it exposes are its own.
 */
#ifndef REDIS_CACHE_H
#define REDIS_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ev_loop;

/* ========================================================================================
 * Redis client
 *
 * A small asynchronous Redis client: a pool of pipelined connections per node with
 * retries, backoff and a circuit breaker, and the standalone topology (`endpoint` takes the
 * writes, and the reads unless read endpoints are given; one read endpoint takes every
 * read; with two or more each read picks one at random).
 *
 * Every command has a deadline (the read or the write timeout, counted from the call) that
 * covers the pool wait, connecting, retries and the reply; its callback runs exactly once,
 * at the latest at that deadline. A node that keeps timing out or refusing (5 requests in a
 * row by default) is skipped: commands to it fail at once until a background probe finds
 * it healthy again.
 *
 * Driving the client from the host's loop:
 *
 *     static void on_reply(void *priv, const struct rc_reply *r, const char *reason,
 *                          const char *errmsg)
 *     {
 *         if (reason) fprintf(stderr, "GET failed (%s): %s\n", reason, errmsg);
 *         else if (r->type == RC_REPLY_BULK) printf("%.*s\n", (int)r->len, r->str);
 *         else printf("(nil)\n");
 *     }
 *
 *     struct ev_loop *loop = ev_default_loop(0);
 *     struct rc_client_config cfg;
 *     rc_client_config_init(&cfg);
 *     cfg.endpoint = "10.0.0.1:6379";
 *     char err[256];
 *     struct rc_client *c = rc_client_new(loop, &cfg, err, sizeof err);  // never blocks
 *     if (!c) { fprintf(stderr, "%s\n", err); exit(1); }
 *     const char *argv[] = {"GET", "greeting"};
 *     size_t lens[] = {3, 8};
 *     rc_client_command(c, false, 2, argv, lens, on_reply, NULL);
 *     ev_run(loop, 0);   // or the host's own ev_run; the client is just more watchers
 *
 * A host with another event loop either runs the libev loop in a thread of its own (and
 * calls the client only from that thread), or calls, on every turn of its own poller,
 *
 *     ev_run(loop, EVRUN_NOWAIT);
 *
 * which runs every ready callback and returns without blocking; the host's poller must then
 * wake up at least every few milliseconds (its timeout bounds how late a reply or a
 * deadline is noticed). The housekeeping timer of
 * a client does not keep ev_run(loop, 0) alive by itself, but open connections do: call
 * rc_client_free (or ev_break) to end a loop that has nothing else to do.
 * ======================================================================================== */

/* Configuration. rc_client_config_init sets the defaults of the `redis_cache` directive;
 * strings are borrowed during rc_client_new only (the client copies what it keeps). */
struct rc_client_config {
    const char *endpoint;              /* "host", "host:port", "[v6]:port"; 127.0.0.1:6379 */
    const char *const *read_endpoints; /* replicas for reads; may be NULL */
    size_t n_read_endpoints;
    const char *username;    /* ACL user; NULL: none (AUTH with the password alone) */
    const char *password;    /* NULL: no AUTH */
    int db;                  /* SELECT when != 0 */
    const char *client_name; /* CLIENT SETNAME, best effort; NULL: none */

    bool tls;             /* TLS on every connection (the other tls_* imply it) */
    const char *tls_ca;   /* PEM CA file replacing the system trust store; NULL */
    const char *tls_cert; /* PEM client certificate (mTLS), with tls_key; NULL */
    const char *tls_key;
    bool tls_verify_chain;    /* true */
    bool tls_verify_hostname; /* true */

    double connect_timeout; /* seconds: TCP + TLS + AUTH/HELLO; 1 */
    double read_timeout;    /* seconds: the whole budget of a read command; 0.5 */
    double write_timeout;   /* seconds: the whole budget of a write command; 2 */
    double keepalive;       /* seconds between TCP keepalive probes; 0: system default */
    const char *resolver;   /* "IP[:port]" DNS server for hostnames; NULL: resolv.conf */

    struct {
        unsigned size;          /* max connections per node; 0: 10 x CPUs */
        unsigned min_idle;      /* opened at start (in the background) and kept; 0 */
        unsigned max_idle;      /* idle connections kept at most; 0: unlimited */
        unsigned max_active;    /* hard cap on connections per node; 0: size only */
        double max_idle_time;   /* seconds before an idle connection closes; 1800; 0 never */
        double max_lifetime;    /* seconds before a connection is recycled; 0: never */
        double wait_timeout;    /* seconds a command waits for a ready connection; 0.5 */
        unsigned pipeline_high; /* in flight per connection before another opens; 32 */
    } pool;
    struct {
        unsigned max;       /* retries of a command after a connection error; 1 */
        double min_backoff; /* seconds; 0.008 */
        double max_backoff; /* seconds; 0.512 */
    } retries;
    unsigned breaker_threshold; /* consecutive timeouts/connection errors; 5; 0: off */
};

void rc_client_config_init(struct rc_client_config *cfg);

/* A reply, as a view valid only during the callback. Types keep their RESP meaning. */
enum rc_reply_type {
    RC_REPLY_STRING = 1, /* simple string (+OK) */
    RC_REPLY_ERROR,      /* error reply (-ERR ...) */
    RC_REPLY_INTEGER,
    RC_REPLY_BULK,
    RC_REPLY_ARRAY,
    RC_REPLY_NULL, /* nil (GET of a missing key) */
    RC_REPLY_BOOL,
    RC_REPLY_DOUBLE,
    RC_REPLY_BIGNUM,
    RC_REPLY_BULK_ERROR,
    RC_REPLY_VERBATIM,
    RC_REPLY_MAP,
    RC_REPLY_SET,
    RC_REPLY_PUSH,
};

struct rc_reply {
    int type;              /* enum rc_reply_type */
    const char *str;       /* strings and errors (not NUL-terminated); digits of numbers */
    size_t len;            /* length of str */
    long long integer;     /* RC_REPLY_INTEGER; RC_REPLY_BOOL 0/1 */
    double dbl;            /* RC_REPLY_DOUBLE */
    size_t elements;       /* aggregates: entries (a map of n pairs has 2n, key then value) */
    const void *internal_; /* for rc_reply_element */
};

/* Fills *out with entry i of an aggregate reply. 0, or -1 when there is no such entry. */
int rc_reply_element(const struct rc_reply *r, size_t i, struct rc_reply *out);

/* Called exactly once per command. Success: reason NULL, errmsg NULL, reply set. A server
 * error reply (WRONGTYPE, NOPERM...): reply set (type RC_REPLY_ERROR), reason "other",
 * errmsg its text. A failure: reply NULL, reason "timeout" (deadline, pool wait, breaker
 * opened by timeouts, write queue full), "connection" (refused, reset, EOF, TLS,
 * resolution, breaker opened by those) or "other" (auth, protocol), errmsg for logs. */
typedef void rc_reply_cb(void *priv, const struct rc_reply *reply, const char *reason,
                         const char *errmsg);

struct rc_client;

/* Creates a client on `loop` (the host's). Never blocks and never fails because Redis is
 * down: connections are made in the background. NULL with a message in err on a bad
 * configuration (unparsable endpoint, unreadable TLS file) or out of memory. */
struct rc_client *rc_client_new(struct ev_loop *loop, const struct rc_client_config *cfg, char *err,
                                size_t errlen);

/* Sends one command (argc binary-safe arguments; argv[1] is its key) to the write endpoint
 * (write true) or a read endpoint, with the write or read timeout as its deadline. The
 * arguments are copied before this returns. Returns 0 and the callback runs exactly once
 * (possibly before this returns, e.g. when the node's breaker is open); -1 only for
 * invalid arguments (no callback). */
int rc_client_command(struct rc_client *c, bool write, size_t argc, const char *const *argv,
                      const size_t *lens, rc_reply_cb *cb, void *priv);

/* Per node counters (write endpoint first, then the read endpoints), for metrics and tests.
 * Returns the number of nodes (at most cap filled). */
struct rc_node_stats {
    char name[280];     /* "host:port" */
    unsigned open;      /* connections open (connecting included) */
    unsigned ready;     /* ... of which usable */
    unsigned in_flight; /* commands awaiting replies */
    unsigned waiting;   /* commands waiting for a connection */
    bool breaker_open;  /* the node is being skipped */
    uint64_t connects;  /* connection attempts */
    uint64_t retries;   /* commands retried */
};
size_t rc_client_nodes(const struct rc_client *c, struct rc_node_stats *out, size_t cap);

/* Fails every pending command (reason "connection", "shutting down"), closes the
 * connections and frees the client. Not from inside one of its callbacks. */
void rc_client_free(struct rc_client *c);

/* ========================================================================================
 * Cache
 *
 * The `redis_cache` directive as a library: a shared L2 DNS cache in Redis. The host parses
 * DNS queries off the wire, asks the cache, and on a miss asks its upstream and hands the
 * response to the cache, which fixes its TTLs and writes it to Redis in the background.
 * Keys and values are those of the CoreDNS plugin (`<key_prefix>:<xxh64 hex>`, RCD2
 * values), so a fleet may mix both on one Redis.
 *
 *     static void on_lookup(void *priv, int status, const uint8_t *reply, size_t len)
 *     {
 *         struct query *qr = priv;
 *         if (status == RC_CACHE_HIT) send_to_client(qr, reply, len);  // copy if kept
 *         else forward_upstream(qr);  // MISS, ERROR (Redis failed) or SKIP (not our zone)
 *     }
 *     // ... and when the upstream answered (resp in the host's own buffer):
 *     long ttl = rc_cache_store(cache, qr->query, qr->qlen, resp, resp_len);
 *     send_to_client(qr, resp, resp_len);  // TTLs already rewritten when ttl >= 0
 *
 *     const char text[] = "redis_cache example.org { endpoint 10.0.0.1:6379 }";
 *     struct rc_cache_config *cfg;
 *     char err[512];
 *     if (rc_cache_config_parse(text, sizeof text - 1, "Corefile", &cfg, err, sizeof err)) {
 *         fprintf(stderr, "%s\n", err);  // "Corefile:1: redis_cache: ..."
 *         exit(1);
 *     }
 *     struct ev_loop *loop = ev_default_loop(0);
 *     struct rc_cache *cache = rc_cache_new(loop, cfg, NULL, 0, err, sizeof err);
 *     rc_cache_config_free(cfg);  // the cache keeps what it needs
 *     if (!cache) { fprintf(stderr, "%s\n", err); exit(1); }
 *     rc_cache_lookup(cache, query, query_len, false, on_lookup, qr);
 *     ev_run(loop, 0);
 *
 * Like the client, a cache lives on one loop and is used from the thread running it; it
 * never blocks (Redis down at start only makes lookups fail fast with RC_CACHE_ERROR).
 * ======================================================================================== */

/* A parsed `redis_cache` directive. Opaque; owned by the caller of rc_cache_config_parse. */
struct rc_cache_config;

/* Parses `len` bytes of `text`: one whole `redis_cache [ZONES...] [{ ... }]` directive in
 * Corefile syntax (comments, quotes, `\` continuations and {$ENV} work as in a Corefile).
 * `filename` names the text in messages. Returns 0 with *out set (free it with
 * rc_cache_config_free), or -1 with err = "FILE:LINE: redis_cache: WHAT" (NUL-terminated,
 * truncated to errlen). TLS files are read by rc_cache_new, not here. */
int rc_cache_config_parse(const char *text, size_t len, const char *filename,
                          struct rc_cache_config **out, char *err, size_t errlen);
void rc_cache_config_free(struct rc_cache_config *cfg);

struct rc_cache;

/* Creates a cache on `loop` for cfg (which may be freed right after). `zones` (presentation
 * form, e.g. "example.org."; NULL when nzones is 0) are the host's zones, used when the
 * directive names none; with neither, every name is cached. Never blocks and never fails
 * because Redis is down. NULL with a message in err on a bad configuration (unreadable TLS
 * file, bad zone, a mode not available yet) or out of memory. */
struct rc_cache *rc_cache_new(struct ev_loop *loop, const struct rc_cache_config *cfg,
                              const char *const *zones, size_t nzones, char *err, size_t errlen);

/* Caches of one configuration on several loops (a server's worker threads, one cache each)
 * share their topology state through a share: one Sentinel or Cluster discovery and one
 * circuit breaker per Redis node for all of them, while each keeps its own connections.
 * Create the share, build every cache with rc_cache_new_shared and the same cfg, then free
 * the share (each cache holds a reference). Thread-safe. */
struct rc_cache_share;
struct rc_cache_share *rc_cache_share_new(void); /* NULL without memory */
void rc_cache_share_free(struct rc_cache_share *share);
/* rc_cache_new with a share (NULL: none, the same as rc_cache_new). */
struct rc_cache *rc_cache_new_shared(struct ev_loop *loop, const struct rc_cache_config *cfg,
                                     const char *const *zones, size_t nzones,
                                     struct rc_cache_share *share, char *err, size_t errlen);

/* Our EDNS UDP payload size in hit replies (and the size they are fitted to, with the
 * client's); default 1232, at least 512. */
void rc_cache_set_udp_size(struct rc_cache *cache, uint16_t size);

enum rc_cache_status {
    RC_CACHE_HIT = 0, /* reply/len: the finished reply for this query */
    RC_CACHE_MISS,    /* not cached (or a bad or foreign entry, now being evicted) */
    RC_CACHE_ERROR,   /* Redis failed or timed out: treat as a miss */
    RC_CACHE_SKIP,    /* the name is outside the zones (or not a plain QUERY): Redis not asked */
};

/* Called exactly once per lookup. On RC_CACHE_HIT, reply/len is the reply for the client
 * (its ID, its question's letter case, TTLs from Redis, fitted to its size limit), valid
 * only during the call. The callback may start lookups and stores, but not free the cache. */
typedef void rc_cache_cb(void *priv, int status, const uint8_t *reply, size_t len);

/* Looks up the DNS query `query` (wire form, `len` bytes, borrowed during the call). `tcp`:
 * the query came over TCP (no size limit on the reply). Concurrent lookups of one key share
 * one Redis read. Returns 0 and the callback runs once (possibly before this returns: SKIP,
 * or ERROR when Redis is known to be down); -1 with no callback when the query is
 * malformed (the host answers FORMERR), is a response (QR=1), or memory runs out. */
int rc_cache_lookup(struct rc_cache *cache, const uint8_t *query, size_t len, bool tcp,
                    rc_cache_cb *cb, void *priv);

/* After the upstream answered `query` with `resp` (`rlen` bytes in the caller's buffer,
 * modified in place): sets every TTL of resp (OPT excepted) to the cache duration of its
 * kind (success or denial bounds) and, when the response may be cached, writes it to Redis
 * in the background (never awaited; a write of a key already being written is dropped).
 * Returns that TTL, or -1 when resp was left unchanged (a never-cached rcode such as
 * SERVFAIL, a malformed query or response, or a name outside the zones). */
long rc_cache_store(struct rc_cache *cache, const uint8_t *query, size_t qlen, uint8_t *resp,
                    size_t rlen);

/* Background writes and evictions still in flight (a host that exits waits for 0). */
size_t rc_cache_pending_writes(const struct rc_cache *cache);

/* Writes the coredns_redis_cache_* metrics of this cache in Prometheus text format 0.0.4,
 * with server="<server_label>" on every series. Returns the length (without the NUL);
 * when it is >= cap the text was cut (like snprintf): call again with a larger buffer. */
size_t rc_cache_metrics_text(const struct rc_cache *cache, const char *server_label, char *buf,
                             size_t cap);

/* Pending lookups complete with RC_CACHE_ERROR, pending writes are dropped, connections
 * close. Not from inside one of its callbacks. */
void rc_cache_free(struct rc_cache *cache);

#ifdef __cplusplus
}
#endif

#endif /* REDIS_CACHE_H */
