/* src/server/l1.c — the `cache` directive: a per-worker in-process cache of wire responses
 * (the L1), with CoreDNS's cache semantics and a hit path that only copies and patches bytes.
 *
 * Layout (all of it allocated once by l1_new; nothing is allocated by lookups or inserts):
 *
 *   slot table   open addressing, linear probing, a power of two >= 2 x (success + denial
 *                capacity) so the load stays <= 1/2. A slot is 40 bytes: the 64-bit key
 *                (the caller's dns_key_hash, used as the hash itself), the loop time the
 *                entry was stored, its lifetime (the kind's clamped TTL), the offset of its
 *                record in the arena, its index in its kind's list, its kind (0: empty),
 *                flags (a cached SERVFAIL; a refresh in flight) and prefetch's frequency
 *                window (the time of the last counted hit and the hits in the window).
 *                Deletion shifts later slots of the probe run back (no tombstones), so a
 *                miss stops at the first empty slot.
 *   kind lists   per kind (success, denial) a dense array of the slot indexes of its entries,
 *                so the entry count per kind is exact and a random victim is one draw.
 *   arena        one ring of bytes holding the records: a header (key, sizes, section
 *                counts, flags, question type/class/DO/CD), the dns_rr array the parse
 *                found (so a hit never re-parses), then the message bytes without OPT, in
 *                compressed form, its question name lowercased. Records are appended at the
 *                head; when the head needs room it reclaims the oldest records at the tail
 *                (evicting those still live), so the arena is a FIFO by bytes behind the
 *                per-kind count bounds. Records of removed entries (expired, replaced,
 *                evicted) stay as dead bytes until the tail passes them.
 *
 * Memory bound per cache: arena max(256 KiB, 2 KiB x (success + denial capacity)), at most
 * 2 GiB (32-bit offsets; its pages are touched only as the head first passes them) + slots
 * 40 B x pow2(2 x capacity) + 4 B x capacity for the lists + ~160 KiB of scratch for
 * inserts. With CoreDNS's defaults (9984 + 9984) that is 39 MiB + 2.5 MiB + 80 KiB + 160 KiB;
 * the server divides the capacities by the workers. A typical record (one or a few RRs) is
 * 100-300 bytes, so the count bounds bind long before the arena does; traffic of large
 * responses (DNSSEC, big TXT) makes the arena the bound instead, oldest first.
 *
 * Eviction: when a kind holds its capacity, a random entry of that kind goes (as CoreDNS).
 * Expired entries are removed lazily: when a lookup finds them, when their key is stored
 * again, when they are drawn as victims, or when the arena's tail reaches them.
 *
 * Time: `now` is the loop's clock in seconds. An entry stored at S with lifetime T is served
 * while now - S < T, with TTL T - floor(now - S) (CoreDNS: origTTL minus whole seconds
 * elapsed), or T itself with keepttl.
 *
 * serve_stale D: an entry stays until now - S >= T + D; past T it is served with TTL 0
 * (CoreDNS's stale TTL; T with keepttl, as CoreDNS) and the caller is asked to refresh it
 * (immediate), or asked to refresh first (verify). A cached SERVFAIL is never stale.
 *
 * prefetch N W P: CoreDNS's frequency window per entry: a fresh hit more than W seconds
 * after the previous counted one restarts the count at 1, else adds 1. When the count is
 * at least N and the remaining TTL is at most ceil(P% x T), the hit asks for a refresh.
 * The count carries over when the key is stored again (the refresh's answer). One refresh
 * per entry at a time: the REFRESHING flag is set when a lookup asks for one and cleared
 * by l1_refresh_done (or when the entry is replaced).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

#define L1_ARENA_MIN       (256u * 1024u)
#define L1_ARENA_MAX       (2048u * 1024u * 1024u)
#define L1_BYTES_PER_ENTRY 2048u

/* ---- the cache ----------------------------------------------------------------------- */

enum { L1_KINDS = 3 }; /* indexed by enum dns_kind; NONE (0) marks an empty slot */

enum {
    L1_F_SERVFAIL = 1,   /* a cached SERVFAIL: fixed lifetime, never stale, never prefetched */
    L1_F_REFRESHING = 2, /* a refresh asked by a lookup is in flight */
};

struct l1_slot {
    uint64_t key;
    double stored; /* loop time of the insert */
    uint32_t ttl;  /* lifetime: the kind's clamped TTL, seconds */
    uint32_t off;  /* record offset in the arena */
    uint32_t pos;  /* index in list[kind] */
    float last;    /* prefetch: the last counted hit, seconds after `stored` (< 0: before) */
    uint16_t hits; /* prefetch: hits counted in the window (0: none yet) */
    uint8_t kind;  /* enum dns_kind; DNS_KIND_NONE: empty */
    uint8_t flags; /* L1_F_* */
};

/* A record in the arena, 8-aligned: this header, rr[nrr], then len message bytes. */
struct l1_rec {
    uint64_t key;  /* to find the slot when the tail reclaims the record */
    uint32_t size; /* whole record, multiple of 8 */
    uint16_t len;  /* message bytes */
    uint16_t nrr;
    uint16_t count[4];
    uint16_t flags, qend, qtype, qclass;
    uint8_t do_bit, cd, compressed;
};

struct l1_cache {
    struct l1_slot *slot;
    size_t mask;
    uint32_t *list[L1_KINDS];
    size_t n[L1_KINDS], cap[L1_KINDS];
    uint32_t min_ttl[L1_KINDS], max_ttl[L1_KINDS];
    bool keepttl;
    unsigned prefetch, prefetch_pct;
    double prefetch_window;
    uint32_t stale; /* seconds; 0: off */
    bool stale_verify;
    uint32_t servfail_ttl;

    uint8_t *arena;
    size_t size;    /* arena bytes */
    size_t head;    /* next record goes here */
    size_t tail;    /* oldest record */
    size_t lap_end; /* when wrapped: where the older lap's records end */
    bool wrapped;   /* records are [tail, lap_end) and [0, head); else [tail, head) */

    uint64_t rng;
    uint64_t hits, misses;

    /* Insert scratch: the message without OPT, its compressed form, the parse's RRs. */
    uint8_t buf[2][DNS_MSG_MAX];
    struct dns_rr rrs[DNS_RR_MAX];
};

static inline struct l1_rec *l1_rec_at(const struct l1_cache *c, size_t off)
{
    return (struct l1_rec *)(void *)(c->arena + off);
}

static inline struct dns_rr *l1_rec_rrs(struct l1_rec *r)
{
    return (struct dns_rr *)(void *)(r + 1);
}

static inline uint8_t *l1_rec_msg(struct l1_rec *r)
{
    return (uint8_t *)(l1_rec_rrs(r) + r->nrr);
}

struct l1_cache *l1_new(const struct l1_opts *o)
{
    if (o->success_cap > L1_CAP_MAX || o->denial_cap > L1_CAP_MAX) return NULL;
    struct l1_cache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->cap[DNS_KIND_POSITIVE] = o->success_cap;
    c->cap[DNS_KIND_NEGATIVE] = o->denial_cap;
    c->max_ttl[DNS_KIND_POSITIVE] = o->success_max_ttl;
    c->min_ttl[DNS_KIND_POSITIVE] = o->success_min_ttl;
    c->max_ttl[DNS_KIND_NEGATIVE] = o->denial_max_ttl;
    c->min_ttl[DNS_KIND_NEGATIVE] = o->denial_min_ttl;
    c->keepttl = o->keepttl;
    c->prefetch = o->prefetch;
    c->prefetch_window = o->prefetch_window;
    c->prefetch_pct = o->prefetch_pct;
    c->stale = o->stale;
    c->stale_verify = o->stale_verify;
    c->servfail_ttl = o->servfail_ttl;

    size_t total = (size_t)o->success_cap + o->denial_cap;
    size_t slots = 16;
    while (slots < 2 * total) slots <<= 1;
    c->mask = slots - 1;
    c->size = total * L1_BYTES_PER_ENTRY;
    if (c->size < L1_ARENA_MIN) c->size = L1_ARENA_MIN;
    if (c->size > L1_ARENA_MAX) c->size = L1_ARENA_MAX; /* offsets are 32-bit */
    c->slot = calloc(slots, sizeof *c->slot);
    c->arena = malloc(c->size);
    for (int k = DNS_KIND_POSITIVE; k <= DNS_KIND_NEGATIVE; k++)
        c->list[k] = malloc((c->cap[k] ? c->cap[k] : 1) * sizeof(uint32_t));
    if (!c->slot || !c->arena || !c->list[DNS_KIND_POSITIVE] || !c->list[DNS_KIND_NEGATIVE]) {
        l1_free(c);
        return NULL;
    }
    c->rng = ((uint64_t)(uintptr_t)c ^ 0x9E3779B97F4A7C15ull) | 1;
    return c;
}

void l1_free(struct l1_cache *c)
{
    if (!c) return;
    free(c->slot);
    free(c->arena);
    free(c->list[DNS_KIND_POSITIVE]);
    free(c->list[DNS_KIND_NEGATIVE]);
    free(c);
}

void l1_stats(const struct l1_cache *c, struct l1_stats *st)
{
    st->success_entries = c->n[DNS_KIND_POSITIVE];
    st->denial_entries = c->n[DNS_KIND_NEGATIVE];
    st->hits = c->hits;
    st->misses = c->misses;
}

/* The slot holding key, or SIZE_MAX. */
static inline size_t l1_find(const struct l1_cache *c, uint64_t key)
{
    for (size_t i = (size_t)key & c->mask;; i = (i + 1) & c->mask) {
        const struct l1_slot *s = &c->slot[i];
        if (s->kind == DNS_KIND_NONE) return SIZE_MAX;
        if (s->key == key) return i;
    }
}

/* Drops the entry in slot i: out of its kind's list, then the rest of the probe run shifts
 * back over the hole (an entry moves when the hole lies between its home and its place). */
static void l1_remove(struct l1_cache *c, size_t i)
{
    struct l1_slot *s = &c->slot[i];
    uint32_t *list = c->list[s->kind];
    size_t last = --c->n[s->kind];
    if (s->pos != last) {
        list[s->pos] = list[last];
        c->slot[list[s->pos]].pos = s->pos;
    }
    for (size_t j = (i + 1) & c->mask;; j = (j + 1) & c->mask) {
        struct l1_slot *m = &c->slot[j];
        if (m->kind == DNS_KIND_NONE) break;
        size_t home = (size_t)m->key & c->mask;
        if (((j - home) & c->mask) >= ((j - i) & c->mask)) {
            c->slot[i] = *m;
            c->list[m->kind][m->pos] = (uint32_t)i;
            i = j;
        }
    }
    c->slot[i].kind = DNS_KIND_NONE;
}

/* The record at the tail leaves the arena; its entry goes with it if still live. */
static void l1_reclaim_tail(struct l1_cache *c)
{
    struct l1_rec *r = l1_rec_at(c, c->tail);
    size_t i = l1_find(c, r->key);
    if (i != SIZE_MAX && c->slot[i].off == c->tail) l1_remove(c, i);
    c->tail += r->size;
}

/* Room for `need` bytes at the head (need <= size, a multiple of 8); returns its offset. */
static size_t l1_alloc(struct l1_cache *c, size_t need)
{
    for (;;) {
        if (!c->wrapped) {
            if (c->size - c->head >= need) break;
            if (c->tail == c->head) {
                c->tail = c->head = 0; /* empty: start over */
                continue;
            }
            c->lap_end = c->head;
            c->head = 0;
            c->wrapped = true;
            continue;
        }
        if (c->tail - c->head >= need) break;
        l1_reclaim_tail(c);
        if (c->tail == c->lap_end) {
            c->tail = 0;
            c->wrapped = false;
        }
    }
    size_t off = c->head;
    c->head += need;
    return off;
}

static inline uint64_t l1_rand(struct l1_cache *c)
{
    uint64_t x = c->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    c->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* Seconds since the entry was stored (0 when the clock stepped back: count from now). */
static inline double l1_age(const struct l1_slot *s, double now)
{
    double age = now - s->stored;
    return age >= 0 ? age : 0;
}

/* Whether the entry can still answer at `age`: fresh, or (answers only) within serve_stale. */
static inline bool l1_servable(const struct l1_cache *c, const struct l1_slot *s, double age)
{
    double limit = (double)s->ttl;
    if (!(s->flags & L1_F_SERVFAIL)) limit += (double)c->stale;
    return age < limit;
}

/* Stores msg for q under key with lifetime `life` (> 0), kind and flags. */
static bool l1_store(struct l1_cache *c, uint64_t key, const struct dns_question *q,
                     const uint8_t *msg, size_t len, enum dns_kind kind, uint32_t life,
                     uint8_t flags, double now)
{
    /* The response must answer exactly q; truncated responses are never kept. */
    struct dns_msg m;
    if (dns_msg_parse(&m, msg, len, c->rrs, DNS_RR_MAX) != DNS_OK) return false;
    if (m.count[0] != 1 || !(m.flags & DNS_F_QR) || (m.flags & DNS_F_TC)) return false;
    if (m.qname_off != DNS_HEADER_LEN || m.qtype != q->qtype || m.qclass != q->qclass) return false;
    size_t qlen = (size_t)m.qend - 4 - DNS_HEADER_LEN;
    if (!dns_name_equal_nocase(msg + DNS_HEADER_LEN, qlen, q->name_lc, q->name_len)) return false;

    /* The stored form: no OPT, compressed once if it was not. */
    size_t n = len;
    if (m.opt >= 0) {
        if (dns_msg_copy_without_opt(c->buf[0], sizeof c->buf[0], &n, &m) != DNS_OK) return false;
        if (dns_msg_parse(&m, c->buf[0], n, c->rrs, DNS_RR_MAX) != DNS_OK) return false;
    }
    if (!m.compressed && m.nrr > 0) {
        size_t cn;
        uint8_t *dst = m.buf == c->buf[0] ? c->buf[1] : c->buf[0];
        if (dns_msg_compress(dst, DNS_MSG_MAX, &cn, &m) == DNS_OK && cn < m.len) {
            struct dns_msg cm;
            if (dns_msg_parse(&cm, dst, cn, c->rrs, DNS_RR_MAX) == DNS_OK)
                m = cm;
            else if (dns_msg_parse(&m, m.buf, m.len, c->rrs, DNS_RR_MAX) != DNS_OK)
                return false; /* not reached: it parsed a moment ago */
        }
    }

    size_t need = sizeof(struct l1_rec) + (size_t)m.nrr * sizeof(struct dns_rr) + m.len;
    need = (need + 7) & ~(size_t)7;
    if (need > c->size) return false;

    /* The key's prefetch count carries over to its new answer (CoreDNS does so after a
     * prefetch), as the absolute time of its last counted hit. */
    uint16_t hits = 0;
    double last = now;
    size_t i = l1_find(c, key);
    if (i != SIZE_MAX) {
        hits = c->slot[i].hits;
        last = c->slot[i].stored + (double)c->slot[i].last;
        l1_remove(c, i);
    }
    if (c->n[kind] >= c->cap[kind]) {
        uint32_t victim = c->list[kind][l1_rand(c) % c->n[kind]];
        l1_remove(c, victim);
    }

    size_t off = l1_alloc(c, need);
    struct l1_rec *r = l1_rec_at(c, off);
    r->key = key;
    r->size = (uint32_t)need;
    r->len = (uint16_t)m.len;
    r->nrr = m.nrr;
    memcpy(r->count, m.count, sizeof r->count);
    r->flags = m.flags;
    r->qend = m.qend;
    r->qtype = m.qtype;
    r->qclass = m.qclass;
    r->do_bit = q->do_bit;
    r->cd = q->cd;
    r->compressed = m.compressed;
    memcpy(l1_rec_rrs(r), m.rr, (size_t)m.nrr * sizeof(struct dns_rr));
    uint8_t *p = l1_rec_msg(r);
    memcpy(p, m.buf, m.len);
    /* Lookups compare the question name with memcmp; replies write the client's over it. */
    memcpy(p + DNS_HEADER_LEN, q->name_lc, q->name_len);

    i = (size_t)key & c->mask;
    while (c->slot[i].kind != DNS_KIND_NONE) i = (i + 1) & c->mask;
    struct l1_slot *s = &c->slot[i];
    s->key = key;
    s->stored = now;
    s->ttl = life;
    s->off = (uint32_t)off;
    s->kind = (uint8_t)kind;
    s->flags = flags;
    s->hits = hits;
    s->last = (float)(last - now);
    s->pos = (uint32_t)c->n[kind];
    c->list[kind][c->n[kind]++] = (uint32_t)i;
    return true;
}

bool l1_insert(struct l1_cache *c, uint64_t key, const struct dns_question *q, const uint8_t *msg,
               size_t len, uint32_t ttl, enum dns_kind kind, double now)
{
    if (kind != DNS_KIND_POSITIVE && kind != DNS_KIND_NEGATIVE) return false;
    if (c->cap[kind] == 0) return false;
    uint32_t life = dns_ttl_clamp(ttl, c->min_ttl[kind], c->max_ttl[kind]);
    if (life == 0) return false;
    return l1_store(c, key, q, msg, len, kind, life, 0, now);
}

bool l1_insert_servfail(struct l1_cache *c, uint64_t key, const struct dns_question *q,
                        const uint8_t *msg, size_t len, double now)
{
    if (c->servfail_ttl == 0 || c->cap[DNS_KIND_NEGATIVE] == 0) return false;
    if (len < DNS_HEADER_LEN || (msg[3] & DNS_F_RCODE_MASK) != DNS_RCODE_SERVFAIL) return false;
    size_t i = l1_find(c, key);
    if (i != SIZE_MAX && !(c->slot[i].flags & L1_F_SERVFAIL) &&
        l1_servable(c, &c->slot[i], l1_age(&c->slot[i], now)))
        return false; /* what serve_stale (or the cache) can still answer stays */
    return l1_store(c, key, q, msg, len, DNS_KIND_NEGATIVE, c->servfail_ttl, L1_F_SERVFAIL, now);
}

/* Whether the record answers q (same key, but maybe another question: a hash collision, or
 * DO/CD/type/class). */
static inline bool l1_matches(struct l1_rec *r, const struct dns_question *q)
{
    return r->qtype == q->qtype && r->qclass == q->qclass && r->do_bit == q->do_bit &&
           r->cd == q->cd && (size_t)r->qend - 4 - DNS_HEADER_LEN == q->name_len &&
           memcmp(l1_rec_msg(r) + DNS_HEADER_LEN, q->name_lc, q->name_len) == 0;
}

/* The reply for q from the record, every RR with `ttl`. */
static bool l1_reply(struct l1_rec *r, const struct dns_question *q, uint32_t ttl, uint16_t our_udp,
                     bool tcp, uint8_t *out, size_t cap, size_t *out_len)
{
    struct dns_msg m;
    memset(&m, 0, sizeof m);
    m.buf = l1_rec_msg(r);
    m.len = r->len;
    m.flags = r->flags;
    memcpy(m.count, r->count, sizeof m.count);
    m.qname_off = DNS_HEADER_LEN;
    m.qtype = r->qtype;
    m.qclass = r->qclass;
    m.qend = r->qend;
    m.rr = l1_rec_rrs(r);
    m.nrr = r->nrr;
    m.opt = -1;
    m.compressed = r->compressed;
    return dns_reply_build(out, cap, out_len, &m, q, ttl, our_udp, tcp) == DNS_OK;
}

/* The TTL a reply from slot s carries at `age`: the remaining whole seconds, 0 once stale,
 * the stored lifetime with keepttl (CoreDNS fakes its clock back to the store time). */
static inline uint32_t l1_reply_ttl(const struct l1_cache *c, const struct l1_slot *s, double age)
{
    if (c->keepttl) return s->ttl;
    if (age >= (double)s->ttl) return 0;
    return s->ttl - (uint32_t)age;
}

/* prefetch: counts a fresh hit in the entry's frequency window and says whether a refresh
 * is due (CoreDNS's shouldPrefetch); fills the L2 threshold. */
static bool l1_prefetch_due(const struct l1_cache *c, struct l1_slot *s, double now, double age,
                            uint32_t *l2_above)
{
    double last = s->stored + (double)s->last;
    if (s->hits == 0 || now - last > c->prefetch_window)
        s->hits = 1;
    else if (s->hits < UINT16_MAX)
        s->hits++;
    s->last = (float)(now - s->stored);
    uint32_t remaining = s->ttl - (uint32_t)age;
    uint32_t threshold = (uint32_t)(((uint64_t)c->prefetch_pct * s->ttl + 99) / 100);
    if (s->hits < c->prefetch || remaining > threshold) return false;
    *l2_above = remaining + threshold;
    return true;
}

enum l1_status l1_lookup(struct l1_cache *c, uint64_t key, const struct dns_question *q, double now,
                         uint16_t our_udp, bool tcp, uint8_t *out, size_t cap, size_t *out_len,
                         struct l1_hit *hit)
{
    size_t i = l1_find(c, key);
    if (i == SIZE_MAX) goto miss;
    struct l1_slot *s = &c->slot[i];
    double age = l1_age(s, now);
    if (!l1_servable(c, s, age)) {
        l1_remove(c, i);
        goto miss;
    }
    struct l1_rec *r = l1_rec_at(c, s->off);
    /* Same key, other question: a miss, and the entry stays for the question it answers. */
    if (!l1_matches(r, q)) goto miss;

    bool stale = age >= (double)s->ttl;
    if (hit) {
        hit->kind = (enum dns_kind)s->kind;
        hit->refresh = false;
        hit->l2_above = 0;
    }
    if (stale && c->stale_verify) {
        c->hits++;
        return L1_VERIFY;
    }
    if (!l1_reply(r, q, l1_reply_ttl(c, s, age), our_udp, tcp, out, cap, out_len)) goto miss;
    c->hits++;
    if (!hit) return stale ? L1_STALE : L1_HIT;
    if (stale) {
        if (!(s->flags & L1_F_REFRESHING)) {
            s->flags |= L1_F_REFRESHING;
            hit->refresh = true;
        }
        return L1_STALE;
    }
    if (c->prefetch && !(s->flags & L1_F_SERVFAIL) &&
        l1_prefetch_due(c, s, now, age, &hit->l2_above) && !(s->flags & L1_F_REFRESHING)) {
        s->flags |= L1_F_REFRESHING;
        hit->refresh = true;
    }
    return L1_HIT;
miss:
    c->misses++;
    return L1_MISS;
}

bool l1_lookup_stale(struct l1_cache *c, uint64_t key, const struct dns_question *q, double now,
                     uint16_t our_udp, bool tcp, uint8_t *out, size_t cap, size_t *out_len)
{
    size_t i = l1_find(c, key);
    if (i == SIZE_MAX) return false;
    const struct l1_slot *s = &c->slot[i];
    double age = l1_age(s, now);
    struct l1_rec *r = l1_rec_at(c, s->off);
    if (!l1_servable(c, s, age) || !l1_matches(r, q)) return false;
    return l1_reply(r, q, l1_reply_ttl(c, s, age), our_udp, tcp, out, cap, out_len);
}

void l1_refresh_done(struct l1_cache *c, uint64_t key)
{
    size_t i = l1_find(c, key);
    if (i != SIZE_MAX) c->slot[i].flags &= (uint8_t)~L1_F_REFRESHING;
}
