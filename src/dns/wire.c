/* src/dns/wire.c — the bounded DNS message parser: validates a whole message (header,
 * questions, every RR, the single OPT) and records offsets into the caller's buffer, plus the
 * RDATA checks that decide whether the Go DNS library could unpack what we store.
 *
 * Compression pointers. RFC 1035 lets a pointer name any earlier byte, so a hostile message
 * can make a name out of bytes that are not a name: a label that swallows the next RR's TTL,
 * the qtype, or a run of opaque RDATA. Such a name changes whenever the hit path patches
 * those bytes in place (TTLs, OPT, dropped RRs). So the parser only accepts a pointer to the
 * start of an element (label length byte, pointer, or root byte) of a name it has already
 * read: the questions, the owners, and the names inside the RDATA of the types whose names
 * we walk (dns_rdata_names: every type whose names the Go DNS library packs, as it lets later
 * names point into any of them). Encoders only ever point at names they wrote earlier, so
 * real messages are unaffected. The element starts are kept in a bitmap of the message.
 */
#include "dns/dns.h"

#include <string.h>

/* The name reader runs for every name of every parse (the hit path parses each stored
 * entry): inlined into the parse loop it costs about what the plain reader did. */
#if defined(__GNUC__)
#define WIRE_INLINE static inline __attribute__((always_inline))
#else
#define WIRE_INLINE static inline
#endif

/* One bit per message byte: set where an element of an already read name starts. 8 KiB on
 * the stack, of which a parse clears only the words under the message. */
struct wire_marks {
    uint64_t word[DNS_MSG_MAX / 64 + 1];
};

static inline bool wire_marked(const struct wire_marks *w, size_t off)
{
    return (w->word[off >> 6] >> (off & 63)) & 1u;
}

static inline void wire_mark(struct wire_marks *w, size_t off)
{
    w->word[off >> 6] |= (uint64_t)1 << (off & 63);
}

static inline void wire_unmark_one(struct wire_marks *w, size_t off)
{
    w->word[off >> 6] &= ~((uint64_t)1 << (off & 63));
}

/* Reads the name whose own bytes start at `off` and must end before `lim` (the message end,
 * or the end of the RDATA holding it), marking the start of each of those bytes' elements.
 * Same rules and errors as dns_name_unpack, plus: a pointer must aim at a marked element,
 * else DNS_ERR_BAD_POINTER. Every marked element is the start of a valid name suffix read
 * earlier (or an earlier label of this very name, which can only lead to a cycle and the
 * length or hop bound), so whatever a pointer reaches was already checked. Sets *next,
 * *name_len and, once a pointer is met in the name's own bytes, *ptr (even on failure). */
WIRE_INLINE enum dns_err wire_name(const uint8_t *buf, size_t lim, size_t off, struct wire_marks *w,
                                   size_t *next, size_t *name_len, bool *ptr)
{
    size_t pos = off;
    size_t n = 0;   /* expanded bytes so far, root label excluded */
    size_t end = 0; /* just past the name's own bytes, once a pointer is seen */
    unsigned hops = 0;

    for (;;) {
        if (pos >= lim) return DNS_ERR_NAME_TRUNCATED;
        uint8_t c = buf[pos];
        if (c == 0) {
            if (hops == 0) {
                wire_mark(w, pos);
                end = pos + 1;
            }
            *next = end;
            *name_len = n + 1;
            return DNS_OK;
        }
        if (c >= 0xC0) {
            if (pos + 1 >= lim) return DNS_ERR_NAME_TRUNCATED;
            size_t target = ((size_t)(c & 0x3F) << 8) | buf[pos + 1];
            if (hops == 0) *ptr = true;
            /* `target < pos` first: the bitmap is only cleared below the message's end. */
            if (target >= pos || !wire_marked(w, target)) return DNS_ERR_BAD_POINTER;
            if (++hops > DNS_PTR_HOPS_MAX) return DNS_ERR_POINTER_LOOP;
            if (hops == 1) {
                wire_mark(w, pos);
                end = pos + 2;
            }
            pos = target;
            continue;
        }
        if (c & 0xC0) return DNS_ERR_BAD_LABEL_TYPE;
        if (n + 1 + c + 1 > DNS_NAME_MAX) return DNS_ERR_NAME_TOO_LONG;
        if (pos + 1 + c > lim) return DNS_ERR_NAME_TRUNCATED;
        if (hops == 0) wire_mark(w, pos);
        n += 1 + (size_t)c;
        pos += 1 + (size_t)c;
    }
}

/* Takes back the marks of a name in RDATA that turned out malformed: no pointer may aim at
 * it. Its own bytes lie after every earlier name, so no other name's marks are touched. */
static void wire_unmark(const uint8_t *buf, size_t lim, size_t off, struct wire_marks *w)
{
    for (size_t p = off; p < lim; p += 1 + (size_t)buf[p]) {
        wire_unmark_one(w, p);
        if (buf[p] == 0 || buf[p] > DNS_LABEL_MAX) break;
    }
}

/* Reads the names in the RDATA [rdata, end) of an RR of `type` (dns_rdata_names) so that
 * later pointers may aim at them. A pointer to anything but an earlier name is refused here:
 * the parse fails. A name malformed in any other way is left unmarked and the RDATA is opaque
 * from then on; dns_msg_check_rdata judges it (the parser bounds RDATA, it does not judge
 * it). */
static enum dns_err wire_rdata_names(const uint8_t *buf, uint16_t type, size_t rdata, size_t end,
                                     struct wire_marks *w, bool *ptr)
{
    struct dns_rdata_names d;
    if (!dns_rdata_names(type, buf + rdata, end - rdata, &d)) return DNS_OK;
    size_t off = rdata + d.first; /* DNS_RDATA_NO_NAME lands past `end` */
    for (unsigned i = 0; i < d.count && off < end; i++) {
        size_t next = 0, name_len = 0;
        enum dns_err err = wire_name(buf, end, off, w, &next, &name_len, ptr);
        if (err == DNS_ERR_BAD_POINTER) return err;
        if (err != DNS_OK) {
            wire_unmark(buf, end, off, w);
            break;
        }
        off = next;
    }
    return DNS_OK;
}

enum dns_err dns_msg_parse(struct dns_msg *m, const uint8_t *buf, size_t len, struct dns_rr *rrs,
                           size_t cap)
{
    memset(m, 0, sizeof(*m));
    m->buf = buf;
    m->len = len;
    m->rr = rrs;
    m->opt = -1;
    if (len < DNS_HEADER_LEN) return DNS_ERR_SHORT_HEADER;
    /* Offsets are recorded in 16 bits. */
    if (len > DNS_MSG_MAX) return DNS_ERR_TOO_BIG;

    m->id = dns_get16(buf);
    m->flags = dns_get16(buf + 2);
    for (int i = 0; i < 4; i++) m->count[i] = dns_get16(buf + 4 + 2 * i);

    /* Only the bits of this message's bytes: a 200-byte message clears 4 words. */
    struct wire_marks marks;
    for (size_t i = 0, n = (len + 63) / 64; i < n; i++) marks.word[i] = 0;

    size_t pos = DNS_HEADER_LEN;
    size_t name_len = 0, next = 0;
    bool ptr = false; /* some name's own bytes hold a pointer */
    enum dns_err err;

    for (unsigned i = 0; i < m->count[0]; i++) {
        err = wire_name(buf, len, pos, &marks, &next, &name_len, &ptr);
        if (err != DNS_OK) return err;
        if (len - next < 4) return DNS_ERR_QUESTION_TRUNCATED;
        if (i == 0) {
            m->qname_off = (uint16_t)pos;
            m->qtype = dns_get16(buf + next);
            m->qclass = dns_get16(buf + next + 2);
        }
        pos = next + 4;
    }
    m->qend = (uint16_t)pos;

    uint16_t nrr = 0;
    for (unsigned sec = DNS_SEC_ANSWER; sec <= DNS_SEC_ADDITIONAL; sec++) {
        for (unsigned i = 0; i < m->count[sec]; i++) {
            size_t owner = pos;
            err = wire_name(buf, len, owner, &marks, &next, &name_len, &ptr);
            if (err != DNS_OK) return err;
            if (len - next < 10) return DNS_ERR_RR_TRUNCATED;
            uint16_t type = dns_get16(buf + next);
            uint16_t rclass = dns_get16(buf + next + 2);
            size_t ttl_off = next + 4;
            uint16_t rdlen = dns_get16(buf + next + 8);
            size_t rdata = next + 10;
            if (len - rdata < rdlen) return DNS_ERR_RDATA_OVERRUN;
            size_t end = rdata + rdlen;

            if (type == DNS_T_OPT) {
                if (sec != DNS_SEC_ADDITIONAL) return DNS_ERR_OPT_NOT_ADDITIONAL;
                if (m->has_edns) return DNS_ERR_OPT_DUPLICATE;
                if (name_len != 1) return DNS_ERR_OPT_OWNER;
                /* A pseudo-RR every hop removes or replaces: its owner is no name to point
                 * at (dns_msg_copy_without_opt could not keep such a pointer). The owner's
                 * own bytes are one element: a root byte or a pointer to one. */
                wire_unmark_one(&marks, owner);
                uint32_t ttl = dns_get32(buf + ttl_off);
                m->has_edns = true;
                m->edns_ext_rcode = (uint8_t)(ttl >> 24);
                m->edns_version = (uint8_t)(ttl >> 16);
                m->edns_do = (ttl & DNS_EDNS_DO) != 0;
                m->edns_udp = rclass;
                m->opt_off = (uint16_t)owner;
                m->opt_len = (uint16_t)(end - owner);
                if (rrs) m->opt = nrr;
            } else if (rdlen > 0) {
                err = wire_rdata_names(buf, type, rdata, end, &marks, &ptr);
                if (err != DNS_OK) return err;
            }

            if (rrs) {
                if (nrr >= cap) return DNS_ERR_TOO_MANY_RRS;
                struct dns_rr *rr = &rrs[nrr];
                rr->owner = (uint16_t)owner;
                rr->type = type;
                rr->rclass = rclass;
                rr->ttl_off = (uint16_t)ttl_off;
                rr->rdata = (uint16_t)rdata;
                rr->rdlen = rdlen;
                rr->section = (uint8_t)sec;
                nrr++;
            }
            pos = end;
        }
    }
    m->nrr = nrr;
    m->compressed = ptr;
    if (pos != len) return DNS_ERR_TRAILING_BYTES;
    return DNS_OK;
}

/* Validates a name inside RDATA [off, end) (pointers may reach back into the message) and
 * gives the offset just past its bytes. */
static enum dns_err dns_rdata_name(const struct dns_msg *m, size_t off, size_t end, size_t *next,
                                   bool allow_pointer)
{
    size_t name_len = 0;
    if (off >= end) return DNS_ERR_BAD_RDATA;
    /* Bounding the read at `end` keeps the name's own bytes inside the RDATA; pointers can
     * only go backwards, so they stay inside the message too. */
    enum dns_err err = dns_name_unpack(m->buf, end, off, NULL, &name_len, next);
    if (err != DNS_OK) return err;
    if (!allow_pointer && *next - off != name_len) return DNS_ERR_BAD_RDATA;
    return DNS_OK;
}

/* NSEC type bitmap [p, end) as Go unpacks it: windows strictly increasing, each 1..32 bytes
 * present in full. */
static bool check_nsec_bitmap(const uint8_t *buf, size_t p, size_t end)
{
    int last = -1;
    while (p < end) {
        if (end - p < 2) return false;
        int window = buf[p];
        size_t len = buf[p + 1];
        if (window <= last || len == 0 || len > 32 || len > end - p - 2) return false;
        last = window;
        p += 2 + len;
    }
    return true;
}

/* SvcParams [p, end) of SVCB/HTTPS as Go (miekg/dns 1.1.50) unpacks them: key, length,
 * value in full; keys strictly increasing; key 65535 refused; mandatory an even length,
 * alpn a run of character-strings filling it, no-default-alpn empty, port 2 bytes,
 * ipv4hint a non-zero multiple of 4, ipv6hint a non-zero multiple of 16 with no
 * IPv4-mapped address. */
static bool check_svcb_params(const uint8_t *buf, size_t p, size_t end)
{
    long last = -1;
    while (p < end) {
        if (end - p < 4) return false;
        uint16_t key = dns_get16(buf + p);
        size_t len = dns_get16(buf + p + 2);
        p += 4;
        if (len > end - p || key == 65535u || (long)key <= last) return false;
        last = key;
        const uint8_t *v = buf + p;
        switch (key) {
        case 0: /* mandatory */
            if (len % 2) return false;
            break;
        case 1: /* alpn */
            for (size_t i = 0; i < len; i += 1u + v[i])
                if ((size_t)v[i] >= len - i) return false;
            break;
        case 2: /* no-default-alpn */
            if (len != 0) return false;
            break;
        case 3: /* port */
            if (len != 2) return false;
            break;
        case 4: /* ipv4hint */
            if (len == 0 || len % 4) return false;
            break;
        case 6: /* ipv6hint */
            if (len == 0 || len % 16) return false;
            for (size_t i = 0; i < len; i += 16) {
                static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
                if (memcmp(v + i, mapped, 12) == 0) return false; /* Go: "got ipv4" */
            }
            break;
        default: break; /* ech, dohpath, others: any bytes */
        }
        p += len;
    }
    return true;
}

/* Skips `n` fixed bytes, then a 16-bit length and that many bytes. */
static bool check_skip_sized(const uint8_t *buf, size_t *p, size_t end, size_t n)
{
    if (n + 2 > end - *p) return false;
    *p += n;
    size_t len = dns_get16(buf + *p);
    *p += 2;
    if (len > end - *p) return false;
    *p += len;
    return true;
}

/* What follows the names of a TAIL_REST type, from `p` to `end`. */
static bool check_rdata_rest(const struct dns_msg *m, uint16_t type, size_t p, size_t end)
{
    switch (type) {
    case DNS_T_NSEC: return check_nsec_bitmap(m->buf, p, end);
    case DNS_T_SVCB:
    case DNS_T_HTTPS: return check_svcb_params(m->buf, p, end);
    case DNS_T_TKEY:
        /* inception, expiration, mode, error; key size + key; other len + other data. */
        return check_skip_sized(m->buf, &p, end, 12) && check_skip_sized(m->buf, &p, end, 0) &&
               p == end;
    case DNS_T_TSIG:
        /* time signed (6), fudge; MAC size + MAC; original ID, error; other len + data. */
        return check_skip_sized(m->buf, &p, end, 8) && check_skip_sized(m->buf, &p, end, 4) &&
               p == end;
    default: return true; /* SIG/RRSIG signature: any bytes */
    }
}

/* The RDATA of a type of dns_rdata_names: fixed fields, its names, its tail. */
static enum dns_err check_rdata_names(const struct dns_msg *m, const struct dns_rr *rr,
                                      const struct dns_rdata_names *d)
{
    size_t end = (size_t)rr->rdata + rr->rdlen;
    if (d->first == DNS_RDATA_NO_NAME || d->first > rr->rdlen) return DNS_ERR_BAD_RDATA;
    size_t off = (size_t)rr->rdata + d->first, next = 0;
    if (d->count == DNS_RDATA_NAMES_TO_END) {
        /* HIP rendezvous servers: any number, filling the RDATA exactly. */
        for (; off < end; off = next) {
            enum dns_err err = dns_rdata_name(m, off, end, &next, true);
            if (err != DNS_OK) return err;
        }
        return DNS_OK;
    }
    for (unsigned i = 0; i < d->count; i++) {
        enum dns_err err = dns_rdata_name(m, off, end, &next, !d->no_pointer);
        if (err != DNS_OK) return err;
        off = next;
    }
    switch (d->tail) {
    case DNS_RDATA_TAIL_NONE: return off == end ? DNS_OK : DNS_ERR_BAD_RDATA;
    case DNS_RDATA_TAIL_SOA: return end - off == 20 ? DNS_OK : DNS_ERR_BAD_RDATA;
    default: return check_rdata_rest(m, rr->type, off, end) ? DNS_OK : DNS_ERR_BAD_RDATA;
    }
}

static enum dns_err dns_check_one_rdata(const struct dns_msg *m, const struct dns_rr *rr)
{
    size_t rdata = rr->rdata, end = (size_t)rr->rdata + rr->rdlen;
    struct dns_rdata_names d;

    switch (rr->type) {
    case DNS_T_A: return rr->rdlen == 4 ? DNS_OK : DNS_ERR_BAD_RDATA;
    case DNS_T_AAAA: return rr->rdlen == 16 ? DNS_OK : DNS_ERR_BAD_RDATA;
    case DNS_T_TXT:
        /* A run of <length><bytes> strings filling the RDATA exactly; Go refuses a message
         * whose string overruns. */
        for (size_t p = rdata; p < end; p += 1 + (size_t)m->buf[p])
            if ((size_t)m->buf[p] >= end - p) return DNS_ERR_BAD_RDATA;
        return DNS_OK;
    default:
        /* The name-bearing types (dns.h lists their layouts), e.g. RRSIG: type covered,
         * algorithm, labels, original TTL, expiration, inception, key tag: 18 bytes; then
         * the signer's name, never compressed (RFC 4034 §3.1.7); then the signature. */
        if (dns_rdata_names(rr->type, m->buf + rdata, rr->rdlen, &d))
            return check_rdata_names(m, rr, &d);
        return DNS_OK;
    }
}

enum dns_err dns_msg_check_rdata(const struct dns_msg *m)
{
    if (!m->rr) return DNS_OK;
    for (uint16_t i = 0; i < m->nrr; i++) {
        enum dns_err err = dns_check_one_rdata(m, &m->rr[i]);
        if (err != DNS_OK) return err;
    }
    return DNS_OK;
}
