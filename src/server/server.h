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
};

void fwd_opts_init(struct fwd_opts *o);

/* Parses `forward FROM TO... [{ ... }]` at c->pos. TO: IP[:PORT], dns://IP[:PORT], [v6]:port,
 * or a resolv.conf-style file path (its nameserver lines). Options of CoreDNS's forward
 * that this server does not implement yet are rejected with a clear message. Errors
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
    FWD_OK = 0, /* resp/len: the upstream's response (its ID, our question case) */
    FWD_FAILED, /* every try failed or timed out: answer SERVFAIL */
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
 * allocation failure (FWD_FAILED). Returns 0 or -1 (no callback: bad arguments, or inside
 * fwd_free).
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
};
void fwd_stats(const struct fwd *f, struct fwd_stats *st);

#endif /* RC_SERVER_H */
