/* src/server/l1.c — the `cache` directive: a per-worker in-process cache of wire responses
 * (the L1), with CoreDNS's cache semantics and a hit path that only copies and patches bytes.
 *
 * Layout (all of it allocated once by l1_new; nothing is allocated by lookups or inserts):
 *
 *   slot table   open addressing, linear probing, a power of two >= 2 x (success + denial
 *                capacity) so the load stays <= 1/2. A slot is 32 bytes: the 64-bit key
 *                (the caller's dns_key_hash, used as the hash itself), the loop time the
 *                entry was stored, its lifetime (the kind's clamped TTL), the offset of its
 *                record in the arena, its index in its kind's list and its kind (0: empty).
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
 * 32 B x pow2(2 x capacity) + 4 B x capacity for the lists + ~160 KiB of scratch for
 * inserts. With CoreDNS's defaults (9984 + 9984) that is 39 MiB + 2 MiB + 80 KiB + 160 KiB;
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
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/server.h"

#define L1_ARENA_MIN       (256u * 1024u)
#define L1_ARENA_MAX       (2048u * 1024u * 1024u)
#define L1_BYTES_PER_ENTRY 2048u
#define L1_CAP_MAX         16777216u   /* entries per kind: keeps every index in 32 bits */
#define L1_TTL_MAX         2147483647u /* RFC 2181 §8 */

/* ---- options -------------------------------------------------------------------------- */

void l1_opts_init(struct l1_opts *o)
{
    memset(o, 0, sizeof *o);
    o->success_cap = 9984;
    o->success_max_ttl = 3600;
    o->success_min_ttl = 5;
    o->denial_cap = 9984;
    o->denial_max_ttl = 1800;
    o->denial_min_ttl = 5;
}

__attribute__((format(printf, 3, 4))) static int
l1_fail(struct cfg_error *err, const struct cfg_token *at, const char *fmt, ...)
{
    char m[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    for (char *p = m; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f) *p = '?';
    cfg_error_at(err, at, "cache: %s", m);
    return -1;
}

/* A token for a message: at most 64 bytes. */
static const char *l1_show(const struct cfg_token *t, char buf[72])
{
    if (t->len > 64)
        snprintf(buf, 72, "%.64s...", t->text);
    else
        snprintf(buf, 72, "%s", t->text);
    return buf;
}

/* Whether the token reads as an integer the way Go's strconv.Atoi does: an optional sign and
 * decimal digits. Such a token right after `cache` is its TTL, never a zone. */
static bool l1_is_int(const struct cfg_token *t)
{
    size_t i = (t->len > 0 && (t->text[0] == '+' || t->text[0] == '-')) ? 1 : 0;
    if (i == t->len) return false;
    for (; i < t->len; i++)
        if (t->text[i] < '0' || t->text[i] > '9') return false;
    return true;
}

enum l1_num { L1_NUM_OK, L1_NUM_SYNTAX, L1_NUM_NEGATIVE, L1_NUM_RANGE };

/* An integer token in [0, max]; a leading '+' is accepted as Atoi does. */
static enum l1_num l1_uint(const struct cfg_token *t, uint32_t max, uint32_t *out)
{
    if (!l1_is_int(t)) return L1_NUM_SYNTAX;
    size_t i = 0;
    bool neg = t->text[0] == '-';
    if (t->text[0] == '+' || neg) i = 1;
    uint64_t v = 0;
    for (; i < t->len; i++) {
        v = v * 10 + (uint64_t)(t->text[i] - '0');
        if (v > (uint64_t)max + 1) v = (uint64_t)max + 1; /* saturate: still "too large" */
    }
    if (neg && v != 0) return L1_NUM_NEGATIVE;
    if (v > max) return L1_NUM_RANGE;
    *out = (uint32_t)v;
    return L1_NUM_OK;
}

/* A TTL argument: whole seconds, 1..2^31-1 (`what` names it in messages; the property's
 * name leads them, none for the TTL right after `cache`). */
static int l1_ttl_arg(struct cfg_error *err, const struct cfg_token *d, const char *what,
                      const struct cfg_token *a, bool zero_ok, uint32_t *out)
{
    char b[72], who[80] = "";
    if (!cfg_is(d, "cache")) snprintf(who, sizeof who, "%s: ", d->text);
    switch (l1_uint(a, L1_TTL_MAX, out)) {
    case L1_NUM_OK: break;
    case L1_NUM_SYNTAX:
        return l1_fail(err, d, "%s%s \"%s\" is not a whole number of seconds", who, what,
                       l1_show(a, b));
    case L1_NUM_NEGATIVE:
        return l1_fail(err, d, "%s%s %s can not be negative", who, what, l1_show(a, b));
    case L1_NUM_RANGE:
        return l1_fail(err, d, "%s%s %s is over %u", who, what, l1_show(a, b), L1_TTL_MAX);
    }
    if (*out == 0 && !zero_ok)
        return l1_fail(err, d, "%s%s can not be zero or negative", who, what);
    return 0;
}

/* `success|denial CAPACITY [TTL] [MINTTL]`. */
static int l1_kind_line(struct cfg_error *err, const struct cfg_token *d, const struct cfg_token *a,
                        size_t n, unsigned *cap, uint32_t *max_ttl, uint32_t *min_ttl)
{
    char b[72];
    if (n == 0) return l1_fail(err, d, "%s: missing CAPACITY [TTL] [MINTTL]", d->text);
    if (n > 3)
        return l1_fail(err, d, "%s: too many arguments (expected CAPACITY [TTL] [MINTTL])",
                       d->text);
    uint32_t v = 0;
    switch (l1_uint(&a[0], L1_CAP_MAX, &v)) {
    case L1_NUM_OK: break;
    case L1_NUM_SYNTAX:
        return l1_fail(err, d, "%s: CAPACITY \"%s\" is not a whole number", d->text,
                       l1_show(&a[0], b));
    case L1_NUM_NEGATIVE:
        return l1_fail(err, d, "%s: CAPACITY %s can not be negative", d->text, l1_show(&a[0], b));
    case L1_NUM_RANGE:
        return l1_fail(err, d, "%s: CAPACITY %s is over %u", d->text, l1_show(&a[0], b),
                       L1_CAP_MAX);
    }
    uint32_t max = *max_ttl, min = *min_ttl;
    if (n > 1 && l1_ttl_arg(err, d, "TTL", &a[1], false, &max)) return -1;
    if (n > 2 && l1_ttl_arg(err, d, "MINTTL", &a[2], true, &min)) return -1;
    *cap = v;
    *max_ttl = max;
    *min_ttl = min;
    return 0;
}

static int l1_zones(struct cfg_error *err, const struct cfg_token *d, const struct cfg_token *a,
                    size_t n, struct l1_opts *o)
{
    char b[72];
    const size_t max = sizeof o->zones / sizeof o->zones[0];
    for (size_t i = 0; i < n; i++) {
        char z[DNS_ZONE_TEXT_MAX];
        const char *why = dns_zone_normalize(a[i].text, a[i].len, z);
        if (why) return l1_fail(err, d, "bad zone \"%s\": %s", l1_show(&a[i], b), why);
        bool dup = false;
        for (size_t k = 0; k < o->nzones && !dup; k++) dup = strcmp(o->zones[k], z) == 0;
        if (dup) continue;
        if (o->nzones >= max) return l1_fail(err, d, "too many zones (at most %zu)", max);
        memcpy(o->zones[o->nzones++], z, strlen(z) + 1);
    }
    return 0;
}

/* CoreDNS options that come with a later issue: refused by name, never ignored. */
static const char *const l1_later[] = {"prefetch", "serve_stale", "servfail", "disable"};

static int l1_block(struct cfg_error *err, const struct cfg_tokens *t, size_t open, size_t close,
                    struct l1_opts *o)
{
    char b[72];
    size_t i = open + 1;
    while (i < close) {
        const struct cfg_token *d = &t->tok[i];
        if (cfg_is_open(d)) return l1_fail(err, d, "unexpected '{' (expected a property)");
        struct cfg_cursor cc = {t, i};
        size_t end = cfg_args_end(&cc);
        if (end < close && cfg_is_open(&t->tok[end]))
            return l1_fail(err, d, "%s: takes no block", l1_show(d, b));
        const struct cfg_token *a = &t->tok[i + 1];
        size_t n = end - i - 1;
        if (cfg_is(d, "success")) {
            if (l1_kind_line(err, d, a, n, &o->success_cap, &o->success_max_ttl,
                             &o->success_min_ttl))
                return -1;
        } else if (cfg_is(d, "denial")) {
            if (l1_kind_line(err, d, a, n, &o->denial_cap, &o->denial_max_ttl, &o->denial_min_ttl))
                return -1;
        } else if (cfg_is(d, "keepttl")) {
            if (n) return l1_fail(err, d, "keepttl: takes no arguments");
            o->keepttl = true;
        } else {
            for (size_t k = 0; k < sizeof l1_later / sizeof l1_later[0]; k++)
                if (cfg_is(d, l1_later[k]))
                    return l1_fail(err, d, "%s is not supported yet", l1_later[k]);
            return l1_fail(err, d, "unknown property \"%s\"", l1_show(d, b));
        }
        i = end;
    }
    return 0;
}

int l1_opts_parse(struct cfg_cursor *c, struct l1_opts *o, struct cfg_error *err)
{
    l1_opts_init(o);
    char b[72];
    const struct cfg_tokens *t = c->t;
    const struct cfg_token *d = cfg_cur(c);
    if (!d) return l1_fail(err, NULL, "missing directive");
    if (!cfg_is(d, "cache"))
        return l1_fail(err, d, "expected the cache directive, not \"%s\"", l1_show(d, b));
    snprintf(o->file, sizeof o->file, "%s", d->file ? d->file : "");
    o->line = d->line;

    size_t end = cfg_args_end(c);
    size_t next = end, open = SIZE_MAX, close = SIZE_MAX;
    if (end < t->n && cfg_is_open(&t->tok[end])) {
        open = end;
        close = cfg_block_end(t, open);
        if (close >= t->n) {
            c->pos = t->n;
            return l1_fail(err, &t->tok[open], "missing '}' to close the block opened here");
        }
        next = close + 1;
    }
    c->pos = next;

    const struct cfg_token *a = d + 1;
    size_t n = end - (size_t)(d - t->tok) - 1;
    if (n > 0 && l1_is_int(&a[0])) {
        uint32_t ttl = 0;
        if (l1_ttl_arg(err, d, "TTL", &a[0], false, &ttl)) return -1;
        o->success_max_ttl = o->denial_max_ttl = ttl;
        a++;
        n--;
    }
    if (l1_zones(err, d, a, n, o)) return -1;
    if (open != SIZE_MAX && l1_block(err, t, open, close, o)) return -1;
    return 0;
}

/* ---- the cache ----------------------------------------------------------------------- */

enum { L1_KINDS = 3 }; /* indexed by enum dns_kind; NONE (0) marks an empty slot */

struct l1_slot {
    uint64_t key;
    double stored; /* loop time of the insert */
    uint32_t ttl;  /* lifetime: the kind's clamped TTL, seconds */
    uint32_t off;  /* record offset in the arena */
    uint32_t pos;  /* index in list[kind] */
    uint8_t kind;  /* enum dns_kind; DNS_KIND_NONE: empty */
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

bool l1_insert(struct l1_cache *c, uint64_t key, const struct dns_question *q, const uint8_t *msg,
               size_t len, uint32_t ttl, enum dns_kind kind, double now)
{
    if (kind != DNS_KIND_POSITIVE && kind != DNS_KIND_NEGATIVE) return false;
    if (c->cap[kind] == 0) return false;
    uint32_t life = dns_ttl_clamp(ttl, c->min_ttl[kind], c->max_ttl[kind]);
    if (life == 0) return false;

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

    size_t i = l1_find(c, key);
    if (i != SIZE_MAX) l1_remove(c, i);
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
    s->pos = (uint32_t)c->n[kind];
    c->list[kind][c->n[kind]++] = (uint32_t)i;
    return true;
}

bool l1_lookup(struct l1_cache *c, uint64_t key, const struct dns_question *q, double now,
               uint16_t our_udp, bool tcp, uint8_t *out, size_t cap, size_t *out_len)
{
    size_t i = l1_find(c, key);
    if (i == SIZE_MAX) goto miss;
    const struct l1_slot *s = &c->slot[i];
    double age = now - s->stored;
    if (!(age >= 0)) age = 0; /* the clock stepped back: count from now */
    if (age >= (double)s->ttl) {
        l1_remove(c, i);
        goto miss;
    }
    struct l1_rec *r = l1_rec_at(c, s->off);
    uint8_t *buf = l1_rec_msg(r);
    /* Same key, other question (a hash collision, or DO/CD/type/class): a miss, and the
     * entry stays for the question it answers. */
    if (r->qtype != q->qtype || r->qclass != q->qclass || r->do_bit != q->do_bit ||
        r->cd != q->cd || (size_t)r->qend - 4 - DNS_HEADER_LEN != q->name_len ||
        memcmp(buf + DNS_HEADER_LEN, q->name_lc, q->name_len) != 0)
        goto miss;

    struct dns_msg m;
    memset(&m, 0, sizeof m);
    m.buf = buf;
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
    uint32_t ttl = c->keepttl ? s->ttl : s->ttl - (uint32_t)age;
    if (dns_reply_build(out, cap, out_len, &m, q, ttl, our_udp, tcp) != DNS_OK) goto miss;
    c->hits++;
    return true;
miss:
    c->misses++;
    return false;
}
