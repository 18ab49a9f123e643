/* src/server/server.h — the interface of src/server: redis-cache-dns, the DNS server that
 * hosts the cache (SPEC §5).
 *
 * l1.c        the `cache` plugin: a per-worker in-process cache of wire responses (L1),
 *             CoreDNS semantics, hit path by patching stored bytes.
 * forward.c   the `forward` plugin: upstream queries over UDP/TCP with policies, failover,
 *             RFC 5452 checks and coalescing of identical in-flight queries.
 * (later)     Corefile server blocks, listeners and workers, prometheus, health, ready,
 *             log, errors, signals.
 *
 * Everything here runs on one worker's libev loop; nothing is shared between workers on
 * the query path.
 */
#ifndef RC_SERVER_H
#define RC_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config/config.h"
#include "dns/dns.h"

struct ev_loop;

/* ---- the `cache` directive and the L1 (l1.c) ---------------------------------------- */

/* CoreDNS's `cache [TTL] [ZONES...] { success CAPACITY [TTL] [MINTTL]; denial CAPACITY [TTL]
 * [MINTTL]; keepttl; ... }` with CoreDNS's defaults: success 9984 entries, TTL 3600, MINTTL 5;
 * denial 9984, TTL 1800, MINTTL 5. A TTL argument right after `cache` sets both maxima. */
struct l1_opts {
    unsigned success_cap, denial_cap;
    uint32_t success_max_ttl, success_min_ttl;
    uint32_t denial_max_ttl, denial_min_ttl;
    bool keepttl;        /* serve the TTL the entry was stored with, not the remaining one */
    char zones[64][256]; /* lowercase presentation, trailing dot; none: the block's zones */
    size_t nzones;
    char file[256]; /* where the directive is, for messages */
    unsigned line;
};

void l1_opts_init(struct l1_opts *o);

/* Parses the directive at c->pos ("cache") and its block; leaves c->pos past it. Errors
 * "FILE:LINE: cache: WHAT" (err->msg starts with "cache: "). Directives of CoreDNS's cache
 * that this server does not implement yet are rejected with a clear message, never
 * silently ignored. `o` is reset with l1_opts_init first. TTLs are bare whole seconds as
 * in CoreDNS (TTL > 0, MINTTL >= 0, at most 2^31-1); CAPACITY 0..16777216, 0 storing
 * nothing of that kind. */
int l1_opts_parse(struct cfg_cursor *c, struct l1_opts *o, struct cfg_error *err);

struct l1_cache;

/* One per worker; the capacities are this shard's (the server divides by the workers).
 * Allocates everything at once (l1.c's top comment has the memory bound); NULL when out of
 * memory. Inserts and lookups never allocate. */
struct l1_cache *l1_new(const struct l1_opts *o);
void l1_free(struct l1_cache *c);

/* Looks up the question `q` under `key` (its dns_key_hash) at time `now` (seconds, the
 * loop's clock). A fresh entry whose question matches (name ignoring case, type, class, DO,
 * CD) is turned into the reply for `q` in `out` (dns_reply_build: the client's ID and case,
 * remaining TTL (or the stored one with keepttl), OPT, fitted to the size limit) and true
 * is returned. Expired entries are misses (and may be dropped). Counts hits and misses. */
bool l1_lookup(struct l1_cache *c, uint64_t key, const struct dns_question *q, double now,
               uint16_t our_udp, bool tcp, uint8_t *out, size_t cap, size_t *out_len);

/* Stores the response `msg` (wire, TTLs already as the client got them) for q under key.
 * `ttl` is the TTL the entry lives for, before this cache's own bounds: the entry keeps
 * max(min, min(ttl, max)) of its kind (positive / negative per dns_classify's kind; kind
 * NONE is not stored). When full, an entry of the same kind is evicted (CoreDNS evicts at
 * random). Returns true when stored. The stored form is the message without OPT, with the
 * TTL offsets found once, so that hits only patch bytes. Not stored: a message that does
 * not parse, is not a response, has TC=1, or whose question is not q's (name ignoring case,
 * type, class); a lifetime of 0. The entry answers q's DO and CD (lookups compare them). A
 * key already present is replaced. */
bool l1_insert(struct l1_cache *c, uint64_t key, const struct dns_question *q, const uint8_t *msg,
               size_t len, uint32_t ttl, enum dns_kind kind, double now);

struct l1_stats {
    size_t success_entries, denial_entries;
    uint64_t hits, misses;
};
void l1_stats(const struct l1_cache *c, struct l1_stats *st);

/* ---- the `forward` directive (forward.c) -------------------------------------------- */

enum fwd_policy { FWD_POLICY_RANDOM = 0, FWD_POLICY_ROUND_ROBIN, FWD_POLICY_SEQUENTIAL };

#define FWD_UPSTREAMS_MAX 15
#define FWD_EXCEPT_MAX    32

struct fwd_upstream {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char name[64]; /* "IP:port" as CoreDNS labels it in metrics (`to`) */
};

struct fwd_opts {
    char from[256]; /* the zone forwarded, lowercase presentation, trailing dot */
    struct fwd_upstream up[FWD_UPSTREAMS_MAX];
    size_t nup;
    enum fwd_policy policy; /* default random */
    bool force_tcp, prefer_udp;
    double try_timeout;   /* seconds per upstream try before failing over; default 2 */
    double total_timeout; /* seconds for the whole query; default 5 */
    char file[256];
    unsigned line;
    /* `max_fails N` (default 2; 0: never down, never health checked), `health_check D
     * [no_rec] [domain NAME]` (default 0.5s, `. IN NS` with RD; 0: no health checks, never
     * down), `expire D` (idle pooled TCP connections closed after D; default 10s; 0: no
     * pooling), `max_concurrent N` (default 0: no limit), `except ZONES...` (accumulate). */
    unsigned max_fails;
    double health_check;
    bool hc_no_rec;
    char hc_domain[256]; /* lowercase presentation, trailing dot; default "." */
    double expire;
    unsigned max_concurrent;
    char except[FWD_EXCEPT_MAX][256]; /* lowercase presentation, trailing dot */
    size_t nexcept;
};

void fwd_opts_init(struct fwd_opts *o);

/* Parses `forward FROM TO... [{ ... }]` at c->pos. TO: IP[:PORT], dns://IP[:PORT], [v6]:port,
 * or a resolv.conf-style file path (its nameserver lines). Options: policy, force_tcp,
 * prefer_udp, max_fails, health_check, expire, max_concurrent, except (durations as Go
 * writes them: 500ms, 1.5s, 1m30s; bare 0). Options of CoreDNS's forward that this server
 * does not implement yet (tls, tls_servername, next, failover,
 * failfast_all_unhealthy_upstreams) are rejected with a clear message. Errors
 * "FILE:LINE: forward: WHAT". Call fwd_opts_init first: try_timeout and total_timeout are
 * not directive options and keep what the caller set. force_tcp and prefer_udp may both be
 * set; force_tcp wins (CoreDNS). At most FWD_UPSTREAMS_MAX upstreams, files included. */
int fwd_opts_parse(struct cfg_cursor *c, struct fwd_opts *o, struct cfg_error *err);

struct fwd;

struct fwd *fwd_new(struct ev_loop *loop, const struct fwd_opts *o, char *err, size_t errlen);
/* Pending queries complete with FWD_FAILED (their callbacks run inside fwd_free; a
 * fwd_query they make returns -1). Never call it from a fwd_fn. */
void fwd_free(struct fwd *f);

enum fwd_status {
    FWD_OK = 0,  /* resp/len: the upstream's response (its ID, our question case) */
    FWD_FAILED,  /* every try failed or timed out: answer SERVFAIL */
    FWD_REFUSED, /* max_concurrent queries already in flight: answer REFUSED (counted) */
};

/* resp is valid only during the call. The caller patches the ID and question case for its
 * client (each coalesced waiter gets the same bytes). */
typedef void fwd_fn(void *priv, enum fwd_status st, const uint8_t *resp, size_t len);

/* Sends q upstream: our own query (fresh random ID, fresh source port per query, the
 * client's question, a fresh OPT: size 1232, DO and CD copied, no client options). UDP with
 * a retry over TCP when TC=1 (TCP only with force_tcp; prefer_udp keeps UDP for TCP
 * clients); per-try timeout and failover to the next upstream by policy. A reply whose ID,
 * source or question (case-insensitive name, type, class) does not match is dropped and
 * counted, and the query keeps waiting (RFC 5452). Identical in-flight queries (same key)
 * coalesce into one upstream query. The callback may run before this returns only on
 * allocation failure (FWD_FAILED) or with FWD_REFUSED when max_concurrent queries (client
 * queries, coalesced ones included, as CoreDNS counts them) are already in flight.
 *
 * Health (CoreDNS's): a failed try starts health checking of its upstream if not running:
 * a probe (`health_check` domain, default `. IN NS`, RD unless no_rec; TCP with
 * force_tcp) at once, then every health_check interval while probes fail; a probe fails
 * when no reply comes within 1 s (any reply passing the ID/question checks is healthy,
 * whatever its rcode). Each failed probe adds one fail, a good one clears them and stops
 * the probing. An upstream is down when it has more than max_fails fails; the walk skips
 * down upstreams, and when all are down it asks one picked at random anyway. TCP
 * connections are pooled per upstream: after a good reply the connection is kept idle and
 * the next TCP try to that upstream reuses it (one query at a time, no pipelining); idle
 * ones are closed after `expire`. A pooled connection the upstream closed meanwhile is
 * replaced by a fresh one within the same try. Returns 0 or -1 (no callback: bad arguments, or
 * inside fwd_free).
 *
 * Details: RD of our query is the first caller's; coalesced waiters get the first caller's
 * question case (and the transport it chose: replies are whole either way, TC being retried
 * over TCP). Any good reply ends the query whatever its rcode: SERVFAIL and REFUSED are
 * relayed as FWD_OK, not failed over, as CoreDNS's forward does. After the last upstream the
 * walk starts over until total_timeout; a whole round of tries that failed at once (refused,
 * unreachable) ends it early with FWD_FAILED. A fwd_fn may call fwd_query (also for the
 * same question: it starts a new upstream query). */
int fwd_query(struct fwd *f, const struct dns_question *q, uint64_t key, bool client_tcp,
              fwd_fn *fn, void *priv);

struct fwd_stats {
    uint64_t requests[FWD_UPSTREAMS_MAX];      /* per upstream: queries sent */
    uint64_t responses[FWD_UPSTREAMS_MAX][24]; /* per upstream and rcode (0..23) */
    uint64_t mismatches;                       /* replies dropped by the RFC 5452 checks */
    uint64_t coalesced;                        /* queries that joined one in flight */
    uint64_t failures;                         /* queries answered FWD_FAILED */
    /* health (max_fails / health_check): per upstream */
    /* each worker has its own forward instance and health state: summed over workers,
     * up_down counts the workers that see the upstream down */
    uint64_t up_down[FWD_UPSTREAMS_MAX];     /* 1 when marked down now (a gauge) */
    uint64_t up_fails[FWD_UPSTREAMS_MAX];    /* consecutive failed health checks now (gauge) */
    uint64_t hc_sent[FWD_UPSTREAMS_MAX];     /* health probes sent */
    uint64_t hc_failures[FWD_UPSTREAMS_MAX]; /* health probes failed (timeout, error):
                                              * coredns_forward_healthcheck_failures_total */
    uint64_t all_down;                       /* queries sent although every upstream was down:
                                              * coredns_forward_healthcheck_broken_total */
    uint64_t refused;                        /* queries answered FWD_REFUSED (max_concurrent):
                                              * coredns_forward_max_concurrent_rejects_total */
    uint64_t tcp_connects; /* TCP connections opened to upstreams (tries and probes) */
    uint64_t tcp_reused;   /* TCP tries on a pooled connection */
    uint64_t tcp_expired;  /* pooled connections closed after `expire` unused */
};
void fwd_stats(const struct fwd *f, struct fwd_stats *st);

/* True when this forward takes q: its name is FROM or below, and not at or below an
 * `except` zone (FROM itself is always taken, as in CoreDNS). Compares q->name_lc. */
bool fwd_handles(const struct fwd *f, const struct dns_question *q);

/* ---- the Corefile (corefile.c) ------------------------------------------------------ */
/*
 * SPEC §5: server blocks `[dns://]ZONE[:PORT] [more keys...] { directives }` (port 53 when
 * none), tokens from the lexer of src/config; the plugin order is fixed whatever the order
 * in the block (reload, prometheus, errors, log, health, ready, loop, cache, redis_cache,
 * forward). Directives: bind ADDR...; errors; log; health [ADDR]; ready [ADDR]; prometheus
 * [ADDR] (default localhost:9153; one listener per address shared by all blocks); cache;
 * redis_cache; forward. Directives of the server-depth issue (reload, loop, import,
 * snippets, `health { lameduck }`) are rejected as "not supported yet" until they exist.
 * Unknown directives are errors: "FILE:LINE: NAME: unknown directive".
 */

#define SRV_BLOCKS_MAX    32
#define SRV_KEYS_MAX      16
#define SRV_BINDS_MAX     8
#define SRV_LISTENERS_MAX 8

struct rcp_config;

struct srv_block {
    /* Keys: zones (lowercase presentation, trailing dot) sharing one port. */
    char zones[SRV_KEYS_MAX][256];
    size_t nzones;
    /* The same zones in lowercase wire form, for srv_config_route. */
    uint8_t zone_wire[SRV_KEYS_MAX][255];
    uint8_t zone_wire_len[SRV_KEYS_MAX];
    uint16_t port;
    /* `bind`: IP literals to listen on; none: every address (0.0.0.0 and ::). */
    char binds[SRV_BINDS_MAX][64];
    size_t nbinds;
    bool errors, log;
    bool has_cache, has_forward;
    struct l1_opts cache;
    struct rcp_config *redis_cache; /* heap (rcp_config is large); NULL when absent */
    struct fwd_opts forward;
    /* CoreDNS's `server` metric label: "dns://:1053", or "dns://127.0.0.1:1053" with bind
     * (the first bind address). */
    char server_label[128];
    char file[256];
    unsigned line;
};

/* An HTTP listener address ("127.0.0.1:9153", "[::1]:8080", ":8181" = all addresses). */
struct srv_http_addr {
    char host[64];
    uint16_t port;
};

struct srv_config {
    struct srv_block *blocks; /* heap array of nblocks */
    size_t nblocks;
    struct srv_http_addr prometheus[SRV_LISTENERS_MAX]; /* distinct addresses */
    size_t nprometheus;
    bool has_health, has_ready;
    struct srv_http_addr health, ready; /* defaults :8080 and :8181 as CoreDNS */
    char file[256];
};

/* The embedded default Corefile of SPEC §5 (used without -conf and without ./Corefile). */
extern const char srv_default_corefile[];

/* Parses a whole Corefile (text of `len` bytes named `file`). On error returns -1 and fills
 * errs[0..*nerrs) (up to max) with every error found (`-check` prints them all; parsing
 * continues with the next server block after an error). Zones are checked: a block's zones
 * must be distinct from other blocks on the same port. Free with srv_config_free.
 *
 * Details (corefile.c's top comment has the full list): on error nothing stays allocated
 * (srv_config_free is still safe); errs may be NULL with max 0, nerrs may be NULL. An empty
 * Corefile is an error ("no server blocks"). `cache` and `redis_cache` without zones get
 * the block's zones filled in (cache.nzones / redis_cache->nzones >= 1 on success). HTTP
 * hosts are "" (all), an IP literal (IPv6 without brackets) or "127.0.0.1" for localhost;
 * every block naming health (ready) must give the same address; one address serves one
 * endpoint. A lone block may omit its braces (Caddy). */
int srv_config_parse(struct srv_config *cfg, const char *file, const char *text, size_t len,
                     struct cfg_error *errs, size_t max, size_t *nerrs);
void srv_config_free(struct srv_config *cfg);

/* The block that serves `q` arriving on `port`: longest zone suffix match among the blocks
 * listening on that port (case-insensitive); NULL when none (REFUSED). */
const struct srv_block *srv_config_route(const struct srv_config *cfg, uint16_t port,
                                         const struct dns_question *q);

/* ---- HTTP endpoints (http.c): /metrics, /health, /ready ----------------------------- */
/*
 * A tiny HTTP/1.1 server on a libev loop (the main thread's): GET only, one request per
 * connection (Connection: close), bounded request size and time, 404 otherwise. The body of
 * /metrics is produced by a callback at each scrape (the registry sums the workers).
 */

struct srv_http;

/* Writes the body for `path` into a growable buffer via the append function; returns the
 * HTTP status (200, 503, 404). */
typedef int srv_http_handler(void *priv, const char *path,
                             void (*append)(void *ctx, const char *s, size_t n), void *ctx);

struct srv_http *srv_http_new(struct ev_loop *loop, const struct srv_http_addr *addr,
                              srv_http_handler *h, void *priv, char *err, size_t errlen);
void srv_http_free(struct srv_http *h);
/* addr->host: "" = all addresses ([::] dual stack, 0.0.0.0 without IPv6), an IPv4 or IPv6
 * literal (no brackets), or "localhost" (127.0.0.1). The handler runs on the loop, once per
 * GET, with the path without query string; a 404 with an empty body gets "404 page not
 * found". Limits: request head 8 KiB (431), 5 s to send it, 5 s per stalled write, 256
 * connections. srv_http_free closes every connection. NULL with err filled on failure
 * ("http: listen on 127.0.0.1:9153: Address already in use"). */
/* The port actually bound (for addr port 0 in tests). */
uint16_t srv_http_port(const struct srv_http *h);

/* ---- the runtime: workers, listeners, queries, metrics (main.c, worker.c, ...) ------ */
/* Declared here by the files that implement them. */

/* Per-worker counters (worker.c writes them on its own thread only; a scrape asks each
 * worker for a snapshot through its loop, so the query path takes no lock and no atomic).
 * "Slots" are the metric rows of the CoreDNS families: for block b, slots slot_base(b) +
 * 0..nzones-1 are its zones and slot_base(b) + nzones is "dropped" (queries that reached a
 * listener of the block but no zone, or were malformed). */
#define SRV_QTYPES      19 /* index 0: "other"; see srv_qtype_index */
#define SRV_RCODES      24
#define SRV_DUR_BUCKETS 16 /* CoreDNS: 0.00025 s doubling, 16 buckets, then +Inf */

enum srv_plugin { SRV_PL_NONE = 0, SRV_PL_CACHE, SRV_PL_REDIS, SRV_PL_FORWARD, SRV_PLUGINS };

struct srv_zone_stats {
    uint64_t requests[2][2][SRV_QTYPES]; /* [udp,tcp][family 1,2][type] */
    uint64_t responses[SRV_RCODES][SRV_PLUGINS];
    uint64_t dur_buckets[SRV_QTYPES][SRV_DUR_BUCKETS + 1]; /* per bucket, not cumulative */
    uint64_t dur_count[SRV_QTYPES];
    double dur_sum[SRV_QTYPES];
};

struct srv_block_stats {
    uint64_t cache_hits[2]; /* success, denial */
    uint64_t cache_misses;
    uint64_t cache_entries[2];
    struct rcp_metrics *redis; /* NULL without redis_cache (points into srv_stats) */
    struct fwd_stats fwd;
};

struct srv_stats {
    size_t nslots, nblocks;
    struct srv_zone_stats *zones;   /* nslots */
    struct srv_block_stats *blocks; /* nblocks */
    struct rcp_metrics *redis;      /* nblocks */
};

/* Allocates zeroed stats shaped for cfg (metrics.c); -1 when out of memory. */
int srv_stats_init(struct srv_stats *s, const struct srv_config *cfg);
void srv_stats_free(struct srv_stats *s);
void srv_stats_reset(struct srv_stats *s);
/* dst += src (same shape). */
void srv_stats_add(struct srv_stats *dst, const struct srv_stats *src);
/* The first slot of block b. */
size_t srv_slot_base(const struct srv_config *cfg, size_t b);
/* CoreDNS's monitored types: A, AAAA, CNAME, DNSKEY, DS, HTTPS, MX, NSEC, NSEC3, NS, PTR,
 * RRSIG, SOA, SRV, TXT, IXFR, AXFR, ANY; everything else is 0 ("other"). */
unsigned srv_qtype_index(uint16_t qtype);
/* "A", "NXDOMAIN"... for logs and labels (type names: a static table, else NULL). */
const char *srv_type_name(uint16_t qtype);
const char *srv_rcode_name(unsigned rcode);
/* The duration bucket of `seconds` (0..SRV_DUR_BUCKETS; the last is +Inf). */
unsigned srv_dur_bucket(double seconds);

/* Writes the whole Prometheus text (every family once with HELP and TYPE): the CoreDNS
 * families from `sum`, the redis_cache families and coredns_build_info. */
void srv_metrics_write(const struct srv_config *cfg, const struct srv_stats *sum,
                       void (*append)(void *ctx, const char *s, size_t n), void *ctx);

/* The process: N workers (worker.c), each with its own loop thread, SO_REUSEPORT UDP and
 * TCP sockets on every listen address, L1 shards, redis_cache handles and forwarders. */
struct srv_runtime;

/* Opens every socket (so bind errors show before serving) and builds each worker; the
 * config must outlive the runtime. NULL with a message on failure. */
struct srv_runtime *srv_runtime_new(const struct srv_config *cfg, unsigned nworkers, char *err,
                                    size_t errlen);
/* Starts the worker threads (with every signal blocked in them). 0 or -1. */
int srv_runtime_start(struct srv_runtime *rt, char *err, size_t errlen);
/* Graceful stop: workers stop reading and accepting, finish in-flight queries and flush
 * pending Redis writes within `budget` seconds, then exit; joins them. */
void srv_runtime_stop(struct srv_runtime *rt, double budget);
void srv_runtime_free(struct srv_runtime *rt);
/* Sums every worker's snapshot into `sum` (shaped by srv_stats_init). Waits at most ~0.2 s
 * per worker for a fresh snapshot (a stopped worker gives its last). Main thread only. */
void srv_runtime_collect(struct srv_runtime *rt, struct srv_stats *sum);

/* CPUs this process may use: sched_getaffinity, limited by the cgroup v2 cpu.max quota. */
unsigned srv_cpu_count(void);

#endif /* RC_SERVER_H */
