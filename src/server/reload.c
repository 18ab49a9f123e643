/* src/server/reload.c — the pure decisions of a configuration reload (SPEC §5): which parts
 * of the running configuration survive a new Corefile, the `reload` directive's arguments
 * and timing, the file checksum, and carrying counters over to the reshaped registry.
 *
 * What survives a reload (the runtime in reload_gen.c acts on these answers):
 *   - a server block of the new file is "the same block" as one of the old file when its
 *     keys (zones, in order), port and bind addresses are the same (srv_block_same_keys);
 *   - within the same block, the L1 shard is kept when the parsed `cache` options are equal
 *     ignoring where they were written (file, line); the redis_cache handle (and so its
 *     Redis connections) when the parsed `redis_cache` options are equal likewise; the
 *     forwarder (with its health state and pooled TCP connections) when the `forward`
 *     options are. `cache` and `forward` options are compared bytewise (their parsers zero
 *     the structs first and write strings whole: a stray byte could only cause a rebuild,
 *     never a wrong keep), `redis_cache` field by field (its parser keeps lines per
 *     address). TLS files are compared by name: new certificates under the same names
 *     need a change of the block (or a restart) to be loaded;
 *   - counters of the CoreDNS request/response/duration families and the cache counters
 *     (hits, misses, ...) of the same block carry over; a block that is new or whose keys changed
 *     starts from zero. The redis_cache families live in the handle and reset only when
 *     it is rebuilt; the forward families likewise with the forwarder.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/plugin.h"
#include "server/server.h"

/* ---- the `reload` directive ------------------------------------------------------------- */

const char *srv_reload_args(const char *interval, const char *jitter, double *iv, double *jt)
{
    double i = SRV_RELOAD_INTERVAL, j = SRV_RELOAD_JITTER;
    if (interval && !srv_duration_parse(interval, &i)) return "invalid interval (want 30s, 1m...)";
    if (i < SRV_RELOAD_MIN_INTERVAL) return "interval must be at least 2s";
    if (jitter) {
        if (!srv_duration_parse(jitter, &j)) return "invalid jitter (want 15s, 1s, 0...)";
        if (j != 0 && j < SRV_RELOAD_MIN_JITTER) return "jitter must be 0 or at least 1s";
    }
    if (j > i / 2) j = i / 2; /* as CoreDNS: never more than half the interval */
    *iv = i;
    *jt = j;
    return NULL;
}

double srv_reload_period(double interval, double jitter, double rnd01)
{
    if (rnd01 < 0) rnd01 = 0;
    if (rnd01 >= 1) rnd01 = 0.999999;
    return interval + jitter * (rnd01 - 0.5);
}

uint64_t srv_reload_checksum(const void *p, size_t n)
{
    /* FNV-1a, 64 bits: detects edits of the file, not adversaries */
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* ---- comparisons --------------------------------------------------------------------------- */

/* Bytes of *a and *b equal outside [skip_from, skip_to). */
static bool same_outside(const void *a, const void *b, size_t size, size_t skip_from,
                         size_t skip_to)
{
    const unsigned char *x = a, *y = b;
    return memcmp(x, y, skip_from) == 0 && memcmp(x + skip_to, y + skip_to, size - skip_to) == 0;
}

#define SAME_IGNORING_WHERE(type, a, b)                                                            \
    same_outside((a), (b), sizeof(type), offsetof(type, file),                                     \
                 offsetof(type, line) + sizeof((a)->line))

bool srv_l1_opts_same(const struct l1_opts *a, const struct l1_opts *b)
{
    _Static_assert(offsetof(struct l1_opts, line) > offsetof(struct l1_opts, file),
                   "file before line");
    return SAME_IGNORING_WHERE(struct l1_opts, a, b);
}

bool srv_fwd_opts_same(const struct fwd_opts *a, const struct fwd_opts *b)
{
    _Static_assert(offsetof(struct fwd_opts, line) > offsetof(struct fwd_opts, file),
                   "file before line");
    return SAME_IGNORING_WHERE(struct fwd_opts, a, b);
}

static bool addr_same(const struct rcp_addr *a, const struct rcp_addr *b)
{
    return a->port == b->port && strcmp(a->host, b->host) == 0; /* not where (line) */
}

static bool addrs_same(const struct rcp_addr *a, size_t na, const struct rcp_addr *b, size_t nb)
{
    if (na != nb) return false;
    for (size_t i = 0; i < na; i++)
        if (!addr_same(&a[i], &b[i])) return false;
    return true;
}

#define STR_SAME(f) (strcmp(a->f, b->f) == 0)
#define VAL_SAME(f) (a->f == b->f)

/* Field by field: its parser leaves bytes after strings and the lines of addresses that
 * differ between two parses of one text. A field added to struct rcp_config must be
 * compared here: the check below fails the build when one is appended after `resolver`. */
bool srv_rcp_config_same(const struct rcp_config *a, const struct rcp_config *b)
{
    _Static_assert(sizeof(struct rcp_config) - offsetof(struct rcp_config, resolver) -
                           sizeof(((const struct rcp_config *)0)->resolver) <
                       8,
                   "struct rcp_config grew: compare the new field in srv_rcp_config_same");
    if (!a || !b) return a == b;
    if (!VAL_SAME(nzones)) return false;
    for (size_t i = 0; i < a->nzones && i < RCP_ZONES_MAX; i++)
        if (!STR_SAME(zones[i])) return false;
    return VAL_SAME(success_max) && VAL_SAME(success_min) && VAL_SAME(denial_max) &&
           VAL_SAME(denial_min) && VAL_SAME(mode) && addr_same(&a->endpoint, &b->endpoint) &&
           VAL_SAME(endpoint_set) &&
           addrs_same(a->read_endpoints, a->n_read_endpoints, b->read_endpoints,
                      b->n_read_endpoints) &&
           STR_SAME(key_prefix) && VAL_SAME(key_prefix_len) && VAL_SAME(key_hash_seed) &&
           VAL_SAME(db) && STR_SAME(sentinel_master) &&
           addrs_same(a->sentinels, a->n_sentinels, b->sentinels, b->n_sentinels) &&
           addrs_same(a->cluster_seeds, a->n_cluster_seeds, b->cluster_seeds, b->n_cluster_seeds) &&
           VAL_SAME(read_from) && VAL_SAME(read_from_set) && STR_SAME(username) &&
           STR_SAME(password) && VAL_SAME(username_set) && VAL_SAME(password_set) &&
           STR_SAME(sentinel_username) && STR_SAME(sentinel_password) &&
           VAL_SAME(sentinel_username_set) && VAL_SAME(sentinel_password_set) &&
           VAL_SAME(connect_timeout) && VAL_SAME(read_timeout) && VAL_SAME(write_timeout) &&
           memcmp(&a->pool, &b->pool, sizeof a->pool) == 0 && VAL_SAME(tcp_keepalive) &&
           VAL_SAME(tls) && STR_SAME(tls_cert) && STR_SAME(tls_key) && STR_SAME(tls_ca) &&
           VAL_SAME(tls_verify_chain) && VAL_SAME(tls_verify_hostname) && STR_SAME(resolver);
}

bool srv_block_same_keys(const struct srv_block *a, const struct srv_block *b)
{
    if (a->port != b->port || a->nzones != b->nzones || a->nbinds != b->nbinds) return false;
    for (size_t i = 0; i < a->nzones; i++)
        if (strcmp(a->zones[i], b->zones[i]) != 0) return false;
    for (size_t i = 0; i < a->nbinds; i++)
        if (strcmp(a->binds[i], b->binds[i]) != 0) return false;
    return true;
}

void srv_reload_plan(const struct srv_config *old, const struct srv_config *nw,
                     struct srv_reload_keep *keep)
{
    for (size_t b = 0; b < nw->nblocks; b++) {
        struct srv_reload_keep *k = &keep[b];
        memset(k, 0, sizeof *k);
        k->from = -1;
        for (size_t o = 0; old && o < old->nblocks && k->from < 0; o++)
            if (srv_block_same_keys(&old->blocks[o], &nw->blocks[b])) k->from = (int)o;
        if (k->from < 0) continue;
        const struct srv_block *ob = &old->blocks[k->from], *nb = &nw->blocks[b];
        k->l1 = ob->has_cache && nb->has_cache && srv_l1_opts_same(&ob->cache, &nb->cache);
        k->redis = ob->redis_cache && nb->redis_cache &&
                   srv_rcp_config_same(ob->redis_cache, nb->redis_cache);
        k->forward =
            ob->has_forward && nb->has_forward && srv_fwd_opts_same(&ob->forward, &nb->forward);
    }
}

/* ---- counters ------------------------------------------------------------------------------ */

void srv_stats_carry(struct srv_stats *dst, const struct srv_config *ncfg,
                     const struct srv_stats *src, const struct srv_config *ocfg,
                     const struct srv_reload_keep *keep)
{
    for (size_t b = 0; b < ncfg->nblocks && b < dst->nblocks; b++) {
        int o = keep[b].from;
        if (o < 0 || (size_t)o >= src->nblocks || (size_t)o >= ocfg->nblocks) continue;
        size_t nz = ncfg->blocks[b].nzones + 1; /* the zones and "dropped" */
        if (ocfg->blocks[o].nzones + 1 != nz) continue;
        size_t nbase = srv_slot_base(ncfg, b), obase = srv_slot_base(ocfg, (size_t)o);
        if (nbase + nz > dst->nslots || obase + nz > src->nslots) continue;
        memcpy(&dst->zones[nbase], &src->zones[obase], nz * sizeof *dst->zones);
        /* the block's own counters; what a scrape reads from the plugins (entries, the
         * redis_cache and forward families) is not the worker's to carry */
        struct rcp_metrics *redis = dst->blocks[b].redis;
        dst->blocks[b] = src->blocks[o];
        dst->blocks[b].redis = redis;
        memset(dst->blocks[b].cache_entries, 0, sizeof dst->blocks[b].cache_entries);
        memset(&dst->blocks[b].fwd, 0, sizeof dst->blocks[b].fwd);
    }
}
