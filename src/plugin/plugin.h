/* src/plugin/plugin.h — the interface of src/plugin: the `redis_cache` directive.
 *
 * config.c   parses and validates a `redis_cache [ZONES...] { ... }` block from Corefile
 *            tokens (src/config) into struct rcp_config (seed + SPEC §4).
 * cache.c    the cache handle on a libev loop: lookup (SPEC §1.3-1.4: GET+TTL pipelined under
 *            one `timeout read` deadline, decode, verify, hit reply; collisions and bad
 *            entries evicted) and store (SPEC §2: classify, clamp, encode, SET EX fire and
 *            forget), miss coalescing, write collapsing, background eviction.
 * metrics.c  the seed's coredns_redis_cache_* counters and histogram, and their Prometheus
 *            text (format 0.0.4).
 *
 * The server (src/server) uses this internal interface with questions it already parsed;
 * embedders use the public wrapper in include/redis_cache.h.
 */
#ifndef RC_PLUGIN_H
#define RC_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "dns/dns.h"
#include "topology/topology.h"

/* ---- configuration (config.c) ------------------------------------------------------- */

enum rcp_mode { RCP_MODE_STANDALONE = 0, RCP_MODE_SENTINEL, RCP_MODE_CLUSTER };
enum rcp_read_from { RCP_READ_LATENCY = 0, RCP_READ_RANDOM, RCP_READ_PRIMARY };

struct rcp_addr {
    char host[TOPO_HOST_MAX]; /* hostname or IP literal (no brackets) */
    uint16_t port;
    unsigned line; /* where it was configured, for messages */
};

#define RCP_ZONES_MAX 64
#define RCP_ADDRS_MAX 64

struct rcp_config {
    /* Where the block starts (file name and line), for messages. */
    char file[256];
    unsigned line;

    /* ZONES: lowercase presentation form with a trailing dot ("example.org.", "." for
     * the root). nzones 0: the server block's zones apply (the host fills them in). */
    char zones[RCP_ZONES_MAX][DNS_NAME_TEXT_MAX / 4];
    size_t nzones;

    /* TTL bounds in seconds (SPEC §2 clamp): success 3600/0, denial 1800/0. */
    uint32_t success_max, success_min;
    uint32_t denial_max, denial_min;

    enum rcp_mode mode;
    struct rcp_addr endpoint; /* default 127.0.0.1:6379 */
    bool endpoint_set;
    struct rcp_addr read_endpoints[RCP_ADDRS_MAX];
    size_t n_read_endpoints;

    char key_prefix[256]; /* trimmed of one trailing ':'; default "cdrc"; may be "" */
    size_t key_prefix_len;
    uint64_t key_hash_seed; /* default 0 */
    int db;                 /* default 0 */

    char sentinel_master[256];
    struct rcp_addr sentinels[RCP_ADDRS_MAX]; /* port default 26379 */
    size_t n_sentinels;
    struct rcp_addr cluster_seeds[RCP_ADDRS_MAX];
    size_t n_cluster_seeds;
    enum rcp_read_from read_from; /* cluster only; default latency */
    bool read_from_set;

    char username[256], password[256]; /* "" when unset */
    bool username_set, password_set;
    char sentinel_username[256], sentinel_password[256];
    bool sentinel_username_set, sentinel_password_set;

    double connect_timeout, read_timeout, write_timeout; /* 1, 0.5, 2 seconds */
    struct topo_pool_opts pool;                          /* the seed's pool/retries knobs */
    double tcp_keepalive;                                /* 0: system default */

    bool tls; /* set by `tls` or implied by any tls_* directive */
    char tls_cert[1024], tls_key[1024], tls_ca[1024];
    bool tls_verify_chain, tls_verify_hostname; /* true, true */

    char resolver[TOPO_HOST_MAX + 8]; /* "IP[:port]" or "" */
};

/* Sets every default of the seed and SPEC §4. */
void rcp_config_init(struct rcp_config *cfg);

/* Parses the directive at c->pos (the token "redis_cache") and its block, leaving c->pos
 * just past it. Returns 0, or -1 with err = "FILE:LINE: redis_cache: WHAT" parts filled
 * (err->msg starts with "redis_cache: "), at the line of the directive that is wrong or
 * that makes a conflict. Does not touch files (see rcp_config_check_files).
 * cfg is reset with rcp_config_init first. One `redis_cache` per server block is the
 * server's rule: while walking a block's directives it remembers the first `redis_cache`
 * token and reports a second at its own line with cfg_error_at(err, tok, "redis_cache: only
 * one redis_cache per server block (first at line %u)", first->line). */
int rcp_config_parse(struct cfg_cursor *c, struct rcp_config *cfg, struct cfg_error *err);

/* Loads the TLS files (as `-check` must): 0, or -1 with err naming the file. */
int rcp_config_check_files(const struct rcp_config *cfg, struct cfg_error *err);

/* ---- metrics (metrics.c) ------------------------------------------------------------ */

enum rcp_reason { RCP_REASON_TIMEOUT = 0, RCP_REASON_CONNECTION, RCP_REASON_OTHER, RCP_REASONS };

/* Histogram buckets (seconds): 0.00025 doubling to 2.048 (14 buckets) and +Inf. */
#define RCP_HIST_BUCKETS 14

struct rcp_metrics {
    uint64_t hits;
    uint64_t get_errors[RCP_REASONS];
    uint64_t set_errors[RCP_REASONS];
    uint64_t encode_errors;
    uint64_t response_mismatches;
    uint64_t collisions;
    uint64_t duration_buckets[RCP_HIST_BUCKETS + 1]; /* per bucket (not cumulative), +Inf */
    uint64_t duration_count;
    double duration_sum;
};

enum rcp_reason rcp_reason_of(enum resp_err_kind kind);
void rcp_metrics_observe(struct rcp_metrics *m, double seconds);
/* dst += src, for summing workers. */
void rcp_metrics_add(struct rcp_metrics *dst, const struct rcp_metrics *src);

/* Writes every coredns_redis_cache_* family once (HELP and TYPE once per family), with one
 * series per (server label, metrics) pair. Returns the length written (without NUL), or
 * the length needed when cap is too small (like snprintf). */
struct rcp_metrics_series {
    const char *server; /* "dns://:1053" */
    const struct rcp_metrics *m;
};
size_t rcp_metrics_write(char *buf, size_t cap, const struct rcp_metrics_series *s, size_t n);

/* ---- the cache (cache.c) ------------------------------------------------------------ */

struct rcp_cache;

/* Creates the cache on `loop`: builds the topology for cfg (standalone now; Sentinel and
 * Cluster arrive with their issues — until then rcp_cache_new fails for them with a clear
 * message) and starts connecting in the background; never blocks. `zones` (lowercase
 * presentation, trailing dot) are the server block's zones, used when cfg->nzones is 0.
 * NULL with a message in err on failure. */
struct rcp_cache *rcp_cache_new(struct ev_loop *loop, const struct rcp_config *cfg,
                                const char *const *zones, size_t nzones, char *err, size_t errlen);
/* The same, sharing topology state with every other cache built with the same hub (one per
 * configuration per process; the caches may live on different loops and threads): one
 * discovery (Sentinel, Cluster) and one breaker per node for all of them, as SPEC §3 asks
 * of the server's workers. The cache holds its own reference to hub; NULL hub: no sharing. */
struct rcp_cache *rcp_cache_new_shared(struct ev_loop *loop, const struct rcp_config *cfg,
                                       const char *const *zones, size_t nzones,
                                       struct topo_hub *hub, char *err, size_t errlen);
/* Frees the cache: pending lookups complete with RCP_LOOKUP_ERROR; background writes
 * still in flight are dropped (a host that wants them written waits until
 * rcp_cache_pending_writes is 0, bounded by its own shutdown budget). */
void rcp_cache_free(struct rcp_cache *c);

/* True when q's name is inside the cache's zones (longest suffix match, case-insensitive). */
bool rcp_cache_covers(const struct rcp_cache *c, const struct dns_question *q);

enum rcp_lookup_status {
    RCP_LOOKUP_HIT = 0, /* reply holds the answer for the client */
    RCP_LOOKUP_MISS,    /* not cached (or bad entry, collision, TC entry) */
    RCP_LOOKUP_ERROR,   /* Redis failed (reason set): treat as a miss */
    RCP_LOOKUP_SKIP,    /* outside the zones: Redis not asked */
};

/* Called once per lookup. On HIT, reply/len is the finished reply (ID, flags, question case,
 * TTLs, OPT, size fitted per SPEC §1.4), valid only during the call. */
typedef void rcp_lookup_fn(void *priv, enum rcp_lookup_status st, const uint8_t *reply, size_t len);

/* Looks q up (its key computed from q with the cache's prefix and seed). `tcp` selects the
 * size limit. Concurrent lookups of one key share one TTL+GET request (each gets its own
 * reply). The callback may run before this returns (SKIP, breaker open). Returns 0, or -1
 * on allocation failure (no callback). */
int rcp_cache_lookup(struct rcp_cache *c, const struct dns_question *q, bool tcp, rcp_lookup_fn *fn,
                     void *priv);

/* After the upstream answered q with `resp` (`len` bytes, in the caller's buffer): checks
 * and classifies it, sets every RR TTL (OPT excepted) of `resp` in place to the cache
 * duration of its kind (unless the kind is NONE), and when it may be written queues a SET
 * key value EX ttl on the write side (fire and forget; concurrent writes of one key
 * collapse). Returns the TTL the reply now carries, or -1 when TTLs were left unchanged
 * (never-cached rcode, unparsable response). Counts mismatches and encode errors. */
long rcp_cache_store(struct rcp_cache *c, const struct dns_question *q, uint8_t *resp, size_t len);

/* Background writes and evictions still in flight. */
size_t rcp_cache_pending_writes(const struct rcp_cache *c);

const struct rcp_metrics *rcp_cache_metrics(const struct rcp_cache *c);

/* Our EDNS UDP size in hit replies (SPEC §1.4 "a library parameter"): default 1232
 * (DNS_UDP_DEFAULT); values under 512 are raised to 512. */
void rcp_cache_set_udp_size(struct rcp_cache *c, uint16_t size);

/* Writes dropped because a write of the same key was still in flight (SPEC §2: concurrent
 * writes of one key collapse; the later one is dropped). */
size_t rcp_cache_collapsed_writes(const struct rcp_cache *c);

#endif /* RC_PLUGIN_H */
