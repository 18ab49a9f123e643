/* src/dns/entry.c — RCD2 cache entries (SPEC §1.2, §1.3): decoding a value read from Redis
 * (RCD2 or a legacy raw message), checking it against the query, encoding an upstream
 * response for writing, and copying a message without its OPT RR.
 *
 * The RCD2 value is the Go plugin's format, so every byte decision here is an interop
 * decision: compression pointers count from the message start (value byte 5), which lets
 * the message be copied verbatim. Only removing the OPT can change a name's meaning: an
 * OPT that is not the last RR moves the bytes later pointers refer to; those pointers are
 * moved back by dns_msg_copy_without_opt, nothing else is rewritten. (A name made of bytes
 * that run into the OPT cannot exist: dns_msg_parse only lets pointers aim at names.)
 */
#include "dns/dns.h"

#include <string.h>

const char *dns_entry_status_str(enum dns_entry_status st)
{
    switch (st) {
    case DNS_ENTRY_OK: return "ok";
    case DNS_ENTRY_MALFORMED: return "malformed";
    case DNS_ENTRY_COLLISION: return "collision";
    case DNS_ENTRY_TRUNCATED: return "truncated";
    }
    return "unknown";
}

static enum dns_entry_status entry_malformed(struct dns_entry *e, enum dns_err err)
{
    e->err = err;
    return DNS_ENTRY_MALFORMED;
}

enum dns_entry_status dns_entry_decode(struct dns_entry *e, const uint8_t *val, size_t len,
                                       struct dns_rr *rrs, size_t cap)
{
    memset(e, 0, sizeof(*e));
    e->msg.opt = -1;
    if (len == 0) return entry_malformed(e, DNS_ERR_SHORT_HEADER);
    if (len > DNS_ENTRY_MAX) return entry_malformed(e, DNS_ERR_TOO_BIG);

    const uint8_t *msg = val;
    size_t msg_len = len;
    bool rcd2 =
        len >= DNS_ENTRY_MAGIC_LEN && memcmp(val, DNS_ENTRY_MAGIC, DNS_ENTRY_MAGIC_LEN) == 0;
    if (rcd2) {
        /* Bare "RCD2" has no flags byte; SPEC §1.2 calls it malformed, not legacy. */
        if (len < DNS_ENTRY_HEADER_LEN) return entry_malformed(e, DNS_ERR_SHORT_HEADER);
        msg = val + DNS_ENTRY_HEADER_LEN;
        msg_len = len - DNS_ENTRY_HEADER_LEN;
    } else if (len > DNS_MSG_MAX) {
        /* A legacy value is a bare message, which can never exceed 65535 bytes. */
        return entry_malformed(e, DNS_ERR_TOO_BIG);
    }
    if (msg_len < DNS_HEADER_LEN) return entry_malformed(e, DNS_ERR_SHORT_HEADER);

    enum dns_err err = dns_msg_parse(&e->msg, msg, msg_len, rrs, cap);
    if (err != DNS_OK) return entry_malformed(e, err);

    e->legacy = !rcd2;
    /* Other flag bits are reserved: ignored on read so a future writer stays readable. */
    e->do_bit = rcd2 ? (val[DNS_ENTRY_MAGIC_LEN] & DNS_ENTRY_FLAG_DO) != 0
                     : (e->msg.has_edns && e->msg.edns_do);
    e->err = DNS_OK;
    return DNS_ENTRY_OK;
}

enum dns_entry_status dns_entry_check(const struct dns_entry *e, const struct dns_question *q)
{
    const struct dns_msg *m = &e->msg;
    /* A failed decode leaves no message worth comparing. */
    if (e->err != DNS_OK || m->buf == NULL) return DNS_ENTRY_MALFORMED;

    if (m->count[DNS_SEC_QUESTION] != 1) return DNS_ENTRY_COLLISION;
    if (!(m->flags & DNS_F_QR)) return DNS_ENTRY_COLLISION;
    if (m->qtype != q->qtype || m->qclass != q->qclass) return DNS_ENTRY_COLLISION;
    if (e->do_bit != q->do_bit) return DNS_ENTRY_COLLISION;
    if (((m->flags & DNS_F_CD) != 0) != q->cd) return DNS_ENTRY_COLLISION;

    uint8_t name[DNS_NAME_MAX];
    size_t name_len = 0, next = 0;
    if (dns_name_unpack(m->buf, m->len, m->qname_off, name, &name_len, &next) != DNS_OK)
        return DNS_ENTRY_MALFORMED;
    if (!dns_name_equal_nocase(name, name_len, q->name, q->name_len)) return DNS_ENTRY_COLLISION;

    /* Checked after the identity checks: a TC entry of another question is a collision. */
    if (m->flags & DNS_F_TC) return DNS_ENTRY_TRUNCATED;
    return DNS_ENTRY_OK;
}

/* ---- copying without the OPT RR ---- */

/* The removed OPT RR: [start, end) in the source message. */
struct opt_cut {
    size_t start, end;
};

/* Fixes the one compression pointer (if any) of the name whose bytes start at `p` in `src`
 * (bounded by `limit`), writing the fixed pointer into `dst` at p - cut length. Only names
 * after the cut are passed here. A name that cannot be walked gives `bad`, which says
 * whether it was an owner or RDATA. */
static enum dns_err copy_fix_name(const uint8_t *src, size_t limit, size_t p, uint8_t *dst,
                                  const struct opt_cut *cut, enum dns_err bad)
{
    size_t shift = cut->end - cut->start;
    for (;;) {
        if (p >= limit) return bad;
        uint8_t c = src[p];
        if (c == 0) return DNS_OK;
        if ((c & 0xC0) == 0xC0) {
            if (p + 1 >= limit) return bad;
            size_t target = dns_get16(src + p) & 0x3FFFu;
            /* The OPT owner is the root and its RDATA holds no names, so no valid name can
             * end inside it; such a pointer has no meaning once the OPT is gone. */
            if (target >= cut->start && target < cut->end) return DNS_ERR_BAD_POINTER;
            if (target >= cut->end)
                dns_put16(dst + (p - shift), (uint16_t)(0xC000u | (target - shift)));
            return DNS_OK;
        }
        if (c & 0xC0) return bad;
        p += 1u + c;
    }
}

/* Checks that the name at `p` in the source expands exactly as the name at p - shift in the
 * copy. Every pointer of a parsed message aims at a name the parser read, whose pointers
 * were moved here too, so this holds by construction; it is checked all the same because a
 * name that silently changed would be wrong data served from the cache. `bad` is the
 * source's own error. */
static enum dns_err copy_verify_name(const struct dns_msg *m, const uint8_t *out, size_t out_len,
                                     size_t p, size_t shift, enum dns_err bad)
{
    uint8_t a[DNS_NAME_MAX], b[DNS_NAME_MAX];
    size_t a_len = 0, b_len = 0, next = 0;
    if (dns_name_unpack(m->buf, m->len, p, a, &a_len, &next) != DNS_OK) return bad;
    if (dns_name_unpack(out, out_len, p - shift, b, &b_len, &next) != DNS_OK)
        return DNS_ERR_BAD_POINTER;
    if (a_len != b_len || memcmp(a, b, a_len) != 0) return DNS_ERR_BAD_POINTER;
    return DNS_OK;
}

/* Rewrites (then verifies) the names of one RR that followed the cut: its owner and the
 * names inside its RDATA that the parser read (dns_rdata_names). Like the parser, a
 * name in RDATA that is malformed ends the names: it and what follows are opaque bytes that
 * no pointer may aim at. A pointer in its own bytes (the name failed only past it, too long
 * or looping) is still moved, so the copy is exactly as malformed as the source. */
static enum dns_err copy_fix_rr(const struct dns_msg *m, const struct dns_rr *rr, uint8_t *out,
                                size_t out_len, const struct opt_cut *cut)
{
    size_t shift = cut->end - cut->start;
    /* The owner was read whole by the parser, bounded by the fixed fields. */
    enum dns_err err = copy_fix_name(m->buf, (size_t)rr->ttl_off - 4u, rr->owner, out, cut,
                                     DNS_ERR_NAME_TRUNCATED);
    if (err == DNS_OK)
        err = copy_verify_name(m, out, out_len, rr->owner, shift, DNS_ERR_NAME_TRUNCATED);
    if (err != DNS_OK) return err;

    struct dns_rdata_names d;
    if (!dns_rdata_names(rr->type, m->buf + rr->rdata, rr->rdlen, &d)) return DNS_OK;
    /* DNS_RDATA_NO_NAME lands at or past `end`. */
    size_t end = (size_t)rr->rdata + rr->rdlen, off = (size_t)rr->rdata + d.first;
    for (unsigned i = 0; i < d.count && off < end; i++) {
        err = copy_fix_name(m->buf, end, off, out, cut, DNS_ERR_BAD_RDATA);
        if (err == DNS_ERR_BAD_RDATA) break; /* no pointer in its bytes: nothing to move */
        if (err != DNS_OK) return err;
        size_t name_len = 0, next = 0;
        if (dns_name_unpack(m->buf, end, off, NULL, &name_len, &next) != DNS_OK) break;
        err = copy_verify_name(m, out, out_len, off, shift, DNS_ERR_BAD_RDATA);
        if (err != DNS_OK) return err;
        off = next;
    }
    return DNS_OK;
}

/* `out` must not overlap the message. *out_len is set only on success; after a refusal the
 * bytes in `out` mean nothing. */
enum dns_err dns_msg_copy_without_opt(uint8_t *out, size_t cap, size_t *out_len,
                                      const struct dns_msg *m)
{
    if (!m->has_edns) {
        if (m->len > cap) return DNS_ERR_NO_SPACE;
        memcpy(out, m->buf, m->len);
        *out_len = m->len;
        return DNS_OK;
    }

    struct opt_cut cut = {m->opt_off, (size_t)m->opt_off + m->opt_len};
    if (cut.end > m->len || cut.start < DNS_HEADER_LEN || m->count[DNS_SEC_ADDITIONAL] == 0)
        return DNS_ERR_RR_TRUNCATED;
    /* Without the RR list the names around the OPT cannot be found. */
    if (m->rr == NULL || m->opt < 0) return DNS_ERR_TOO_MANY_RRS;
    bool last = cut.end == m->len;

    size_t n = m->len - m->opt_len;
    if (n > cap) return DNS_ERR_NO_SPACE;
    enum dns_err err;
    memcpy(out, m->buf, cut.start);
    memcpy(out + cut.start, m->buf + cut.end, m->len - cut.end);
    dns_put16(out + 10, (uint16_t)(m->count[DNS_SEC_ADDITIONAL] - 1u));

    if (!last) {
        for (size_t i = (size_t)m->opt + 1; i < m->nrr; i++) {
            err = copy_fix_rr(m, &m->rr[i], out, n, &cut);
            if (err != DNS_OK) return err;
        }
    }
    *out_len = n;
    return DNS_OK;
}

/* ---- encoding ---- */

enum dns_err dns_entry_encode(uint8_t *out, size_t cap, size_t *out_len, const struct dns_msg *resp,
                              const struct dns_question *q)
{
    if (resp->count[DNS_SEC_QUESTION] != 1) return DNS_ERR_NO_QUESTION;
    size_t rrs = (size_t)resp->count[DNS_SEC_ANSWER] + resp->count[DNS_SEC_AUTHORITY] +
                 resp->count[DNS_SEC_ADDITIONAL];
    /* RDATA cannot be checked without the recorded RRs. */
    if (rrs > 0 && (resp->rr == NULL || resp->nrr != rrs)) return DNS_ERR_TOO_MANY_RRS;

    enum dns_err err = dns_msg_check_rdata(resp);
    if (err != DNS_OK) return err;
    if (cap < DNS_ENTRY_HEADER_LEN + DNS_HEADER_LEN) return DNS_ERR_NO_SPACE;

    size_t n = 0;
    err =
        dns_msg_copy_without_opt(out + DNS_ENTRY_HEADER_LEN, cap - DNS_ENTRY_HEADER_LEN, &n, resp);
    if (err != DNS_OK) return err;

    memcpy(out, DNS_ENTRY_MAGIC, DNS_ENTRY_MAGIC_LEN);
    /* Writes key on the response's DO (SPEC §1.1), so the flag records that one. */
    out[DNS_ENTRY_MAGIC_LEN] = resp->has_edns && resp->edns_do ? DNS_ENTRY_FLAG_DO : 0;

    uint16_t flags = (uint16_t)(resp->flags | DNS_F_QR);
    flags = (uint16_t)(q->cd ? flags | DNS_F_CD : flags & ~DNS_F_CD);
    dns_put16(out + DNS_ENTRY_HEADER_LEN + 2, flags);

    *out_len = DNS_ENTRY_HEADER_LEN + n;
    return DNS_OK;
}
