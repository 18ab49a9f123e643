/* src/server/server.h — the interface of src/server: redis-cache-dns, the DNS server that
 * hosts the cache (SPEC §5).
 *
 * l1.c        the `cache` plugin: a per-worker in-process cache of wire responses (L1),
 *             CoreDNS semantics, hit path by patching stored bytes (l1_opts.c: its
 *             directive).
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

/* ---- the `cache` directive and the L1 (l1_opts.c, l1.c) ----------------------------- */

#define L1_CAP_MAX 16777216u   /* entries per kind: keeps every index in 32 bits */
#define L1_TTL_MAX 2147483647u /* RFC 2181 §8 */

/* CoreDNS's `cache [TTL] [ZONES...] { success CAPACITY [TTL] [MINTTL]; denial CAPACITY [TTL]
 * [MINTTL]; prefetch AMOUNT [DURATION [PERCENTAGE%]]; serve_stale [DURATION
 * [immediate|verify]]; servfail DURATION; keepttl }` with CoreDNS's defaults: success 9984
 * entries, TTL 3600, MINTTL 5; denial 9984, TTL 1800, MINTTL 5; no prefetch (when given:
 * DURATION 1m, PERCENTAGE 10); no serve_stale (when given: 1h, immediate); servfail 5s. A
 * TTL argument right after `cache` sets both maxima. */
struct l1_opts {
    unsigned success_cap, denial_cap;
    uint32_t success_max_ttl, success_min_ttl;
    uint32_t denial_max_ttl, denial_min_ttl;
    bool keepttl; /* serve the TTL the entry was stored with, not the remaining one */
    /* prefetch: an entry hit at least `prefetch` times with no gap of prefetch_window
     * seconds or more between hits, whose remaining TTL is at most ceil(prefetch_pct% of
     * its lifetime), is refreshed in the background. prefetch 0: off. */
    unsigned prefetch;
    double prefetch_window;
    unsigned prefetch_pct; /* 10..90 */
    /* serve_stale: expired entries stay servable for `stale` seconds (0: off). */
    uint32_t stale;
    bool stale_verify;     /* verify: refresh first, serve stale only when that fails */
    uint32_t servfail_ttl; /* seconds a SERVFAIL is kept (0..300; 0: not cached) */
    char zones[64][256];   /* lowercase presentation, trailing dot; none: the block's zones */
    size_t nzones;
    char file[256]; /* where the directive is, for messages */
    unsigned line;
};

void l1_opts_init(struct l1_opts *o);

/* Parses the directive at c->pos ("cache") and its block; leaves c->pos past it. Errors
 * "FILE:LINE: cache: WHAT" (err->msg starts with "cache: "). `disable`, which this server
 * does not implement yet, is rejected with a clear message, never silently ignored. `o` is
 * reset with l1_opts_init first. TTLs are bare whole seconds as in CoreDNS (TTL > 0,
 * MINTTL >= 0, at most 2^31-1); CAPACITY 0..16777216, 0 storing nothing of that kind.
 * DURATIONs are Go durations (`30s`, `1m30s`, `500ms`, bare `0`), cut to whole seconds;
 * AMOUNT >= 0; PERCENTAGE 10..90 with its `%`; servfail at most 5m; a later line replaces
 * an earlier one. */
int l1_opts_parse(struct cfg_cursor *c, struct l1_opts *o, struct cfg_error *err);

struct l1_cache;

/* One per worker; the capacities are this shard's (the server divides by the workers).
 * Allocates everything at once (l1.c's top comment has the memory bound); NULL when out of
 * memory. Inserts and lookups never allocate. */
struct l1_cache *l1_new(const struct l1_opts *o);
void l1_free(struct l1_cache *c);

enum l1_status {
    L1_MISS = 0, /* nothing to serve: ask below */
    L1_HIT,      /* fresh: the reply is in out */
    L1_STALE,    /* expired within serve_stale, immediate mode: the stale reply is in out */
    L1_VERIFY,   /* expired within serve_stale, verify mode: nothing in out; ask below, and
                  * when that fails build the stale reply with l1_lookup_stale */
};

/* What a lookup that found an entry says about it. */
struct l1_hit {
    enum dns_kind kind; /* POSITIVE or NEGATIVE (a cached SERVFAIL is NEGATIVE, as CoreDNS
                         * keeps it in its denial cache) */
    bool refresh;       /* the caller starts a background refresh now (prefetch due, or a stale
                         * entry served in immediate mode); the entry is marked refreshing
                         * (no other refresh is asked for it) until l1_refresh_done */
    uint32_t l2_above;  /* the refresh may take an L2 answer only when its TTL is above this
                         * (the entry's remaining TTL plus the prefetch threshold; 0 for a
                         * stale entry); otherwise it goes upstream */
};

/* Looks up the question `q` under `key` (its dns_key_hash) at time `now` (seconds, the
 * loop's clock). An entry whose question matches (name ignoring case, type, class, DO, CD)
 * is turned into the reply for `q` in `out` (dns_reply_build: the client's ID and case, the
 * remaining TTL (the stored one with keepttl), OPT, fitted to the size limit):
 * - fresh: L1_HIT; with prefetch on, the hit is counted in the entry's frequency window
 *   and `hit->refresh` says when it is due;
 * - expired less than `stale` seconds ago (serve_stale; never a cached SERVFAIL): L1_STALE
 *   with TTL 0 as CoreDNS answers (the stored TTL with keepttl) and `hit->refresh` unless a
 *   refresh is in flight, or L1_VERIFY in verify mode (nothing built);
 * - otherwise L1_MISS (an entry past its last use is dropped).
 * `hit` may be NULL only when neither prefetch nor serve_stale is on. Counts hits (HIT,
 * STALE, VERIFY) and misses. No allocation, no system call. */
enum l1_status l1_lookup(struct l1_cache *c, uint64_t key, const struct dns_question *q, double now,
                         uint16_t our_udp, bool tcp, uint8_t *out, size_t cap, size_t *out_len,
                         struct l1_hit *hit);

/* After L1_VERIFY, when the refresh failed: the reply from the entry if it is still there,
 * matches and is servable (fresh: remaining TTL; stale: TTL 0). Counts nothing. */
bool l1_lookup_stale(struct l1_cache *c, uint64_t key, const struct dns_question *q, double now,
                     uint16_t our_udp, bool tcp, uint8_t *out, size_t cap, size_t *out_len);

/* The refresh asked by a lookup for `key` is over (whatever its outcome): the entry may be
 * refreshed again. Call it before storing the refresh's answer. */
void l1_refresh_done(struct l1_cache *c, uint64_t key);

/* Stores the response `msg` (wire, TTLs already as the client got them) for q under key.
 * `ttl` is the TTL the entry lives for, before this cache's own bounds: the entry keeps
 * max(min, min(ttl, max)) of its kind (positive / negative per dns_classify's kind; kind
 * NONE is not stored). When full, an entry of the same kind is evicted (CoreDNS evicts at
 * random). Returns true when stored. The stored form is the message without OPT, with the
 * TTL offsets found once, so that hits only patch bytes. Not stored: a message that does
 * not parse, is not a response, has TC=1, or whose question is not q's (name ignoring case,
 * type, class); a lifetime of 0. The entry answers q's DO and CD (lookups compare them). A
 * key already present is replaced; its prefetch hit count carries over (as CoreDNS carries
 * it over a prefetch). */
bool l1_insert(struct l1_cache *c, uint64_t key, const struct dns_question *q, const uint8_t *msg,
               size_t len, uint32_t ttl, enum dns_kind kind, double now);

/* Stores a SERVFAIL response (the upstream's, or the server's own after a failed forward)
 * for `servfail_ttl` seconds, in the denial capacity. Not stored when servfail is 0, when
 * `msg` is not a SERVFAIL answering q (same checks as l1_insert), or when the key holds an
 * answer that is still servable (fresh or within serve_stale): a failed refresh never
 * replaces what serve_stale could serve. Never prefetched, never served stale. */
bool l1_insert_servfail(struct l1_cache *c, uint64_t key, const struct dns_question *q,
                        const uint8_t *msg, size_t len, double now);

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
    uint64_t udp_ports;    /* UDP source ports opened (forward_udp.c) */
    uint64_t late;         /* UDP replies to queries that had already ended, dropped */
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
 * forward). Directives: bind ADDR...; errors; log; health [ADDR] [{ lameduck D }]; ready
 * [ADDR]; prometheus [ADDR] (default localhost:9153; one listener per address shared by
 * all blocks); reload [INTERVAL [JITTER]]; loop; timeouts { read D; write D; idle D };
 * cache; redis_cache; forward; `import` and snippets expanded on tokens before (src/config,
 * cfg_lex_expand). Options not
 * written yet are rejected as "not supported yet" rather than ignored.
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
    /* `loop` (loop.c: forwarding-loop probe at start); `timeouts { read D; write D; idle D
     * }` for TCP (seconds; 0: the default of tcp.c, CoreDNS's 3 s, 5 s, 10 s). */
    bool loop;
    double tcp_read, tcp_write, tcp_idle;
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
    /* `health { lameduck D }`: seconds to keep serving after SIGTERM/SIGINT (0: none; the
     * largest when several blocks give one). */
    double health_lameduck;
    /* `reload [INTERVAL [JITTER]]` (reload.c: srv_reload_args): one setting per process. */
    bool has_reload;
    double reload_interval, reload_jitter;
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
    uint64_t cache_prefetch, cache_stale; /* refreshes started; stale answers served */
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

/* Opens every socket (so bind errors show before serving) and builds each worker. Takes
 * `cfg` (heap, from srv_config_parse) on success: the runtime frees it when no worker
 * uses it any more; on failure the caller keeps it. NULL with a message on failure. */
struct srv_runtime *srv_runtime_new(struct srv_config *cfg, unsigned nworkers, char *err,
                                    size_t errlen);
/* The configuration serving now (main thread; valid until the next reload). */
const struct srv_config *srv_runtime_config(const struct srv_runtime *rt);

/* Reload (reload_gen.c), main thread only, between start and stop. Opens the sockets of
 * the new listen addresses, then every worker builds the new blocks on its own loop
 * (keeping what srv_reload_plan allows) and, when all succeeded, swaps to them in one
 * loop callback: sockets whose address is unchanged are handed over (never closed or
 * rebound), removed addresses stop reading (TCP connections on them finish their queries
 * and close), queries in flight finish on the generation they started on, which is freed
 * when its last query is done (and its pending Redis writes are, within 2 s). On success
 * takes `cfg` (heap) and fills `rep`; on failure (bind, building a plugin) nothing
 * changed, the caller keeps cfg and err says why ("FILE:LINE: NAME: WHAT" for plugins). */
struct srv_reload_report {
    unsigned blocks, kept_l1, kept_redis, kept_forward;
    unsigned addrs_kept, addrs_added, addrs_removed;
};
int srv_runtime_reload(struct srv_runtime *rt, struct srv_config *cfg,
                       struct srv_reload_report *rep, char *err, size_t errlen);
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

/* ---- reload decisions (reload.c) ------------------------------------------------------ */

/* CoreDNS's reload: check every INTERVAL (default 30 s, at least 2 s) +- JITTER/2 (default
 * 15 s; 0, or at least 1 s; capped at INTERVAL/2). */
#define SRV_RELOAD_INTERVAL     30.0
#define SRV_RELOAD_JITTER       15.0
#define SRV_RELOAD_MIN_INTERVAL 2.0
#define SRV_RELOAD_MIN_JITTER   1.0

/* duration.c: a Go duration (time.ParseDuration: an optional sign, then numbers (digits,
 * at most one dot) each with a unit ns, us, µs, ms, s, m or h; a bare "0" needs none), in
 * seconds. Negative values (other than 0) are SRV_DUR_NEGATIVE, more than `max` seconds
 * SRV_DUR_RANGE. srv_duration_parse: OK or not, with a max of 1e9 s. */
enum srv_dur { SRV_DUR_OK = 0, SRV_DUR_SYNTAX, SRV_DUR_NEGATIVE, SRV_DUR_RANGE };
enum srv_dur srv_duration_parse_max(const char *s, double max, double *out);
bool srv_duration_parse(const char *s, double *out);
/* `reload [INTERVAL [JITTER]]` arguments (NULL: absent): NULL with *iv and *jt set, or why not. */
const char *srv_reload_args(const char *interval, const char *jitter, double *iv, double *jt);
/* The time to the next check: interval + jitter * (rnd01 - 0.5), rnd01 in [0, 1). */
double srv_reload_period(double interval, double jitter, double rnd01);
/* The checksum that decides whether the Corefile changed. */
uint64_t srv_reload_checksum(const void *p, size_t n);

/* Equal ignoring where they were written (file, line). */
bool srv_l1_opts_same(const struct l1_opts *a, const struct l1_opts *b);
bool srv_fwd_opts_same(const struct fwd_opts *a, const struct fwd_opts *b);
bool srv_rcp_config_same(const struct rcp_config *a, const struct rcp_config *b);
/* SPEC §3: the `pool` limits are per process per node, split across the workers (at least 1
 * each; 0, "no limit", stays 0): size (default 10 x CPUs), max_active, max_idle,
 * min_idle. */
struct topo_pool_opts;
void srv_pool_split(struct topo_pool_opts *p, unsigned nworkers);
/* The same block: same zones (in order), port and bind addresses. */
bool srv_block_same_keys(const struct srv_block *a, const struct srv_block *b);

/* For each block of the new config: the old block it continues (from, -1 for none) and
 * which of its plugins are kept. */
struct srv_reload_keep {
    int from;
    bool l1, redis, forward;
};
void srv_reload_plan(const struct srv_config *old, const struct srv_config *nw,
                     struct srv_reload_keep *keep);
/* Copies the counters of every block continued (keep[b].from >= 0) from src (shaped for
 * ocfg) into dst (shaped for ncfg): its zone rows and its own block counters (cache hits,
 * misses...), not what scrapes read from the plugins (entries, redis_cache, forward). */
void srv_stats_carry(struct srv_stats *dst, const struct srv_config *ncfg,
                     const struct srv_stats *src, const struct srv_config *ocfg,
                     const struct srv_reload_keep *keep);

/* ---- the `loop` directive (loop.c) ---------------------------------------------------- */

/* Main thread, once the workers serve: starts the forwarding-loop probe of every block
 * with `loop` on `loop` (CoreDNS's: HINFO queries for random names under the block's zone
 * to its own listener). 0, or -1 when out of memory. */
int srv_loop_start(struct ev_loop *loop, const struct srv_config *cfg);
/* Stops the probes (main thread, before its loop goes away). */
void srv_loop_stop(void);
/* The query path's hook (any worker): a probe name seen more than twice is a loop; logs
 * CoreDNS's "[FATAL] plugin/loop: Loop (FROM -> TO) detected for zone ..." and exits 1.
 * Costs a type compare, and one atomic load per HINFO query when no probe runs. */
void srv_loop_observe(const struct dns_question *q, const struct sockaddr_storage *peer);

#endif /* RC_SERVER_H */
