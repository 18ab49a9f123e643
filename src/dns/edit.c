/* src/dns/edit.c — building the reply to a cache hit from a stored message (SPEC §1.4).
 *
 * The hit path copies the stored bytes and patches them: header, the question name (the
 * client's letter case), the TTL of every RR at the offsets the parse recorded, and a fresh
 * OPT at the end. Names are re-encoded only by the one compression an uncompressed entry
 * gets when it does not fit the client's limit (dns_msg_compress shares that code).
 */
#include <string.h>

#include "dns/dns.h"

#define EDIT_OPT_LEN 11 /* root owner, type, class, TTL, RDLENGTH 0 */
/* Pointer targets are 14 bits; names written past this offset cannot be pointed at. */
#define EDIT_PTR_LIMIT 0x4000u
/* Offsets of names (and name suffixes) already written, for compression. A bounded table
 * keeps the work per name bounded; names past it are simply written in full. */
#define EDIT_COMPR_SLOTS 128

/* ---- limits and TTLs ---- */

void dns_msg_set_ttl(uint8_t *buf, const struct dns_msg *m, uint32_t ttl)
{
    for (size_t i = 0; i < m->nrr; i++)
        if (m->rr[i].type != DNS_T_OPT) dns_put32(buf + m->rr[i].ttl_off, ttl);
}

/* Static so that the hit path inlines it (an exported function may be interposed). */
static inline size_t edit_limit(const struct dns_question *q, uint16_t our_udp, bool tcp)
{
    if (tcp) return DNS_MSG_MAX;
    if (!q->has_edns) return DNS_UDP_MIN;
    size_t lim = q->udp_size < our_udp ? q->udp_size : our_udp;
    return lim < DNS_UDP_MIN ? DNS_UDP_MIN : lim;
}

size_t dns_reply_limit(const struct dns_question *q, uint16_t our_udp, bool tcp)
{
    return edit_limit(q, our_udp, tcp);
}

/* ---- compression ---- */

struct edit_writer {
    uint8_t *out;
    size_t len;
    size_t end; /* writes stop here: the caller's room or the reply's limit */
    unsigned nslots;
    uint16_t slot_off[EDIT_COMPR_SLOTS];
    uint8_t slot_len[EDIT_COMPR_SLOTS]; /* expanded length of the name at slot_off */
};

static bool edit_put(struct edit_writer *w, const uint8_t *p, size_t n)
{
    if (n > w->end - w->len) return false;
    memcpy(w->out + w->len, p, n);
    w->len += n;
    return true;
}

/* Whether the name we wrote at `off` expands to exactly `name` (byte for byte: compression
 * must not change a name's letter case). Everything at `off` was written by us, so its
 * pointers are valid and point backwards. */
static bool edit_name_at_equals(const uint8_t *out, size_t off, const uint8_t *name, size_t len)
{
    size_t i = 0;
    for (unsigned hops = 0; hops <= DNS_PTR_HOPS_MAX;) {
        uint8_t b = out[off];
        if (b >= 0xC0) {
            off = ((size_t)(b & 0x3F) << 8) | out[off + 1];
            hops++;
            continue;
        }
        if ((size_t)b + 1 > len - i || memcmp(out + off, name + i, (size_t)b + 1) != 0)
            return false;
        if (b == 0) return i + 1 == len;
        i += (size_t)b + 1;
        off += (size_t)b + 1;
    }
    return false;
}

/* Writes the uncompressed wire name `name` (`len` bytes, valid). With `compress`, the
 * longest suffix already in the table becomes a pointer. Every label written becomes a
 * candidate target either way: pointing into any name is legal. */
static bool edit_put_name(struct edit_writer *w, const uint8_t *name, size_t len, bool compress)
{
    size_t pos = 0;
    while (name[pos] != 0) {
        size_t suffix = len - pos;
        for (unsigned k = 0; compress && k < w->nslots; k++) {
            if (w->slot_len[k] != suffix ||
                !edit_name_at_equals(w->out, w->slot_off[k], name + pos, suffix))
                continue;
            uint8_t ptr[2] = {(uint8_t)(0xC0 | (w->slot_off[k] >> 8)), (uint8_t)w->slot_off[k]};
            return edit_put(w, ptr, 2);
        }
        if (w->len < EDIT_PTR_LIMIT && w->nslots < EDIT_COMPR_SLOTS) {
            w->slot_off[w->nslots] = (uint16_t)w->len;
            w->slot_len[w->nslots] = (uint8_t)suffix;
            w->nslots++;
        }
        size_t label = (size_t)name[pos] + 1;
        if (!edit_put(w, name + pos, label)) return false;
        pos += label;
    }
    return edit_put(w, name + pos, 1);
}

/* Reads the name at `off` of `m`, which must end inside the RDATA ending at `end`, and
 * writes it. */
static enum dns_err edit_copy_name(struct edit_writer *w, const struct dns_msg *m, size_t *off,
                                   size_t end, bool compress)
{
    uint8_t name[DNS_NAME_MAX];
    size_t len, next;
    enum dns_err err = dns_name_unpack(m->buf, m->len, *off, name, &len, &next);
    if (err != DNS_OK) return err;
    if (next > end) return DNS_ERR_BAD_RDATA;
    *off = next;
    return edit_put_name(w, name, len, compress) ? DNS_OK : DNS_ERR_NO_SPACE;
}

static enum dns_err edit_copy_bytes(struct edit_writer *w, const struct dns_msg *m, size_t *off,
                                    size_t end, size_t n)
{
    if (n > end - *off) return DNS_ERR_BAD_RDATA;
    if (!edit_put(w, m->buf + *off, n)) return DNS_ERR_NO_SPACE;
    *off += n;
    return DNS_OK;
}

/* RDATA of the types of dns_rdata_names: their fixed fields as they are, their names
 * re-encoded: compressed only where miekg/dns and RFC 3597 §4 compress them (NS, MD, MF,
 * CNAME, MB, MG, MR, PTR, MX, SOA, MINFO); every other one (SRV, DNAME, NAPTR, SVCB, the
 * RRSIG signer...: RFC 2782, RFC 6672 §2.5, RFC 4034 §3.1.7 and others forbid it) expanded,
 * which keeps a sender's stray pointer meaningful where copying it would aim it at other
 * bytes of the new message; then the tail as it is. A known type's RDATA must hold exactly
 * its fields (else DNS_ERR_BAD_RDATA). Other types, and an empty RDATA (an update-style RR),
 * hold no name to move: copied as they are. */
static enum dns_err edit_copy_rdata(struct edit_writer *w, const struct dns_msg *m,
                                    const struct dns_rr *rr)
{
    size_t off = rr->rdata, end = (size_t)rr->rdata + rr->rdlen;
    struct dns_rdata_names d;
    if (rr->rdlen == 0 || !dns_rdata_names(rr->type, m->buf + off, rr->rdlen, &d))
        return edit_copy_bytes(w, m, &off, end, rr->rdlen);
    if (d.first == DNS_RDATA_NO_NAME) return DNS_ERR_BAD_RDATA;

    enum dns_err err = edit_copy_bytes(w, m, &off, end, d.first);
    if (d.count == DNS_RDATA_NAMES_TO_END)
        while (err == DNS_OK && off < end) err = edit_copy_name(w, m, &off, end, d.compress);
    else
        for (size_t i = 0; i < d.count && err == DNS_OK; i++)
            err = edit_copy_name(w, m, &off, end, d.compress);
    if (err != DNS_OK) return err;
    size_t after = d.tail == DNS_RDATA_TAIL_REST  ? end - off
                   : d.tail == DNS_RDATA_TAIL_SOA ? 20
                                                  : 0;
    if (after) err = edit_copy_bytes(w, m, &off, end, after);
    if (err == DNS_OK && off != end) err = DNS_ERR_BAD_RDATA;
    return err;
}

/* How far a bounded compression got: the RRs written whole and where they end. */
struct edit_progress {
    size_t rrs; /* RRs written whole (a skipped OPT not counted) */
    size_t end; /* offset just past them (past the question when rrs is 0) */
};

/* Compresses `m` into `w`. With `skip_opt` the OPT RR is left out and ARCOUNT lowered; with
 * `ttl` every RR but OPT gets that TTL. Stops with DNS_ERR_NO_SPACE when `w` is full, `pr`
 * telling how many RRs were written whole: a prefix of RRs is a valid message because a
 * pointer only ever refers to earlier bytes. */
static enum dns_err edit_compress(struct edit_writer *w, const struct dns_msg *m, bool skip_opt,
                                  const uint32_t *ttl, struct edit_progress *pr)
{
    size_t total = (size_t)m->count[1] + m->count[2] + m->count[3];
    pr->rrs = 0;
    pr->end = 0;
    if (m->rr == NULL || m->nrr != total) return DNS_ERR_TOO_MANY_RRS;
    if (m->len < DNS_HEADER_LEN) return DNS_ERR_SHORT_HEADER;

    if (!edit_put(w, m->buf, DNS_HEADER_LEN)) return DNS_ERR_NO_SPACE;
    if (skip_opt && m->opt >= 0) dns_put16(w->out + 10, (uint16_t)(m->count[3] - 1));

    size_t off = m->count[0] ? m->qname_off : DNS_HEADER_LEN;
    for (unsigned i = 0; i < m->count[0]; i++) {
        enum dns_err err = edit_copy_name(w, m, &off, m->qend, true);
        if (err == DNS_OK) err = edit_copy_bytes(w, m, &off, m->qend, 4);
        if (err != DNS_OK) return err == DNS_ERR_BAD_RDATA ? DNS_ERR_QUESTION_TRUNCATED : err;
    }
    if (off != m->qend) return DNS_ERR_QUESTION_TRUNCATED;
    pr->end = w->len;

    for (size_t i = 0; i < m->nrr; i++) {
        const struct dns_rr *rr = &m->rr[i];
        if (skip_opt && (int)i == m->opt) continue;
        size_t rr_off = rr->owner;
        enum dns_err err = edit_copy_name(w, m, &rr_off, rr->ttl_off - 4, true);
        if (err != DNS_OK) return err;
        size_t fixed = w->len;
        /* type, class, TTL and RDLENGTH; RDLENGTH is rewritten once RDATA is. */
        if (!edit_put(w, m->buf + rr->ttl_off - 4, 10)) return DNS_ERR_NO_SPACE;
        if (ttl != NULL && rr->type != DNS_T_OPT) dns_put32(w->out + fixed + 4, *ttl);
        err = edit_copy_rdata(w, m, rr);
        if (err != DNS_OK) return err;
        dns_put16(w->out + fixed + 8, (uint16_t)(w->len - fixed - 10));
        pr->rrs++;
        pr->end = w->len;
    }
    return DNS_OK;
}

enum dns_err dns_msg_compress(uint8_t *out, size_t cap, size_t *out_len, const struct dns_msg *m)
{
    struct edit_writer w;
    struct edit_progress pr;
    w.out = out;
    w.len = 0;
    w.end = cap < DNS_MSG_MAX ? cap : DNS_MSG_MAX;
    w.nslots = 0;
    enum dns_err err = edit_compress(&w, m, false, NULL, &pr);
    /* Only an already compressed input can grow (its pointers into RDATA of other types,
     * or SRV and DNAME targets, are expanded). */
    if (err == DNS_ERR_NO_SPACE && cap > DNS_MSG_MAX) err = DNS_ERR_TOO_BIG;
    if (err != DNS_OK) return err;
    *out_len = w.len;
    return DNS_OK;
}

/* ---- the hit reply ---- */

/* The stored question name must be uncompressed at offset 12 and as long as the query's,
 * so that the client's bytes can be copied over it. Nothing precedes it, so the parser lets
 * no pointer through in it (one into its own labels is a cycle); checked all the same, as
 * the bytes about to be overwritten must be exactly the name. */
static enum dns_err edit_check_question(const struct dns_msg *m, const struct dns_question *q)
{
    if (m->count[0] != 1 || m->qname_off != DNS_HEADER_LEN || m->qend > m->len ||
        m->qend < DNS_HEADER_LEN + 5)
        return DNS_ERR_NO_QUESTION;
    size_t p = DNS_HEADER_LEN, end = (size_t)m->qend - 4;
    while (p < end && m->buf[p] != 0) {
        if (m->buf[p] > DNS_LABEL_MAX) return DNS_ERR_BAD_POINTER;
        p += (size_t)m->buf[p] + 1;
    }
    if (p + 1 != end || q->name_len != end - DNS_HEADER_LEN) return DNS_ERR_NO_QUESTION;
    return DNS_OK;
}

/* What is kept of the stored message: its first `len` bytes, with these section counts. */
struct edit_cut {
    size_t len;
    uint16_t an, ns, ar; /* ar: without our OPT */
    bool tc;
};

/* An uncompressed entry over the limit: compress it straight into `out`, stopping at the
 * limit, and keep what fits. DNS_ERR_NO_SPACE when `cap` is too small; any other error
 * means a record could not be re-encoded. */
static enum dns_err edit_cut_compressed(uint8_t *out, size_t cap, const struct dns_msg *src,
                                        uint32_t ttl, size_t limit, size_t reserve,
                                        struct edit_cut *cut)
{
    size_t first_ar = (size_t)src->count[1] + src->count[2];
    struct edit_writer w;
    struct edit_progress pr;
    w.out = out;
    w.len = 0;
    w.end = (cap < limit ? cap : limit) - reserve;
    w.nslots = 0;

    enum dns_err err = edit_compress(&w, src, true, &ttl, &pr);
    if (err == DNS_ERR_NO_SPACE) {
        /* Cut by the caller's room rather than the client's limit: not ours to fix. */
        if (cap < limit) return DNS_ERR_NO_SPACE;
        /* The question alone always fits 512 bytes; answer and authority must fit whole. */
        if (pr.end == 0) return DNS_ERR_NO_SPACE;
    } else if (err != DNS_OK) {
        return err;
    }
    cut->tc = pr.rrs < first_ar;
    if (cut->tc) {
        /* The question is never compressed (nothing precedes it): it is the entry's bytes. */
        cut->len = src->qend;
        cut->an = cut->ns = cut->ar = 0;
    } else {
        cut->len = pr.end;
        cut->an = src->count[1];
        cut->ns = src->count[2];
        cut->ar = (uint16_t)(pr.rrs - first_ar);
    }
    return DNS_OK;
}

/* Where the first `n` RRs of `m` end once its OPT is taken out. */
static size_t edit_rrs_end(const struct dns_msg *m, size_t n)
{
    if (n == 0) return m->qend;
    const struct dns_rr *last = &m->rr[n - 1];
    size_t end = (size_t)last->rdata + last->rdlen;
    if (m->opt >= 0 && (int)n - 1 >= m->opt) end -= m->opt_len;
    return end;
}

/* The hit path: copy the stored bytes that fit (additional RRs go whole from the end, RFC
 * 2181 §9: no TC; TC only when answer or authority do not fit) and set the TTLs. */
static enum dns_err edit_cut_copy(uint8_t *out, size_t cap, const struct dns_msg *src, uint32_t ttl,
                                  size_t limit, size_t reserve, struct edit_cut *cut)
{
    size_t first_ar = (size_t)src->count[1] + src->count[2];
    size_t n = src->nrr;
    while (n > first_ar && edit_rrs_end(src, n) + reserve > limit) n--;
    size_t len = edit_rrs_end(src, n);
    bool tc = len + reserve > limit;
    if (tc) n = 0, len = src->qend;
    if (len + reserve > cap) return DNS_ERR_NO_SPACE;

    const struct dns_rr *rr = src->rr;
    size_t opt = src->opt >= 0 && (size_t)src->opt < n ? (size_t)src->opt : n;
    if (opt < n) {
        /* A legacy entry's OPT sits before records we keep: later pointers must move. */
        size_t full;
        enum dns_err err = dns_msg_copy_without_opt(out, cap, &full, src);
        if (err != DNS_OK) return err;
        for (size_t i = opt + 1; i < n; i++) dns_put32(out + rr[i].ttl_off - src->opt_len, ttl);
    } else {
        memcpy(out, src->buf, len);
    }
    for (size_t i = 0; i < opt; i++) dns_put32(out + rr[i].ttl_off, ttl);

    cut->len = len;
    cut->tc = tc;
    cut->an = tc ? 0 : src->count[1];
    cut->ns = tc ? 0 : src->count[2];
    cut->ar = tc ? 0 : (uint16_t)(n - first_ar - (opt < n ? 1 : 0));
    return DNS_OK;
}

/* Header, question name and OPT of the reply in `out`, whose first cut->len bytes hold the
 * stored message's header, question and the RRs kept. Returns the reply's length. */
static size_t edit_finish(uint8_t *out, const struct edit_cut *cut, const struct dns_msg *src,
                          const struct dns_question *q, uint16_t our_udp)
{
    uint16_t keep =
        (uint16_t)(src->flags & ~(DNS_F_OPCODE_MASK | DNS_F_RD | DNS_F_CD | DNS_F_AD | DNS_F_TC));
    uint16_t flags =
        (uint16_t)(keep | (q->flags & (DNS_F_OPCODE_MASK | DNS_F_RD)) | DNS_F_QR | DNS_F_AA);
    if (q->cd) flags |= DNS_F_CD;
    if (q->do_bit || (q->flags & DNS_F_AD)) flags |= src->flags & DNS_F_AD;
    if (cut->tc) flags |= DNS_F_TC;

    dns_put16(out, q->id);
    dns_put16(out + 2, flags);
    dns_put16(out + 6, cut->an);
    dns_put16(out + 8, cut->ns);
    dns_put16(out + 10, (uint16_t)(cut->ar + (q->has_edns ? 1 : 0)));
    memcpy(out + DNS_HEADER_LEN, q->name, q->name_len);
    if (!q->has_edns) return cut->len;

    uint8_t *opt = out + cut->len;
    opt[0] = 0;
    dns_put16(opt + 1, DNS_T_OPT);
    dns_put16(opt + 3, our_udp);
    dns_put32(opt + 5, q->do_bit ? DNS_EDNS_DO : 0); /* ext-rcode 0, version 0 */
    dns_put16(opt + 9, 0);
    return cut->len + EDIT_OPT_LEN;
}

enum dns_err dns_reply_build(uint8_t *out, size_t cap, size_t *out_len, const struct dns_msg *src,
                             const struct dns_question *q, uint32_t ttl, uint16_t our_udp, bool tcp)
{
    enum dns_err err = edit_check_question(src, q);
    if (err != DNS_OK) return err;
    if (src->rr == NULL || src->nrr != (size_t)src->count[1] + src->count[2] + src->count[3])
        return DNS_ERR_TOO_MANY_RRS;

    size_t reserve = q->has_edns ? EDIT_OPT_LEN : 0;
    /* The smallest reply (TC: header, question, OPT); every write below can count on it. */
    if (cap < (size_t)src->qend + reserve) return DNS_ERR_NO_SPACE;
    size_t limit = edit_limit(q, our_udp, tcp);
    struct edit_cut cut;
    bool compressed = false;
    if (edit_rrs_end(src, src->nrr) + reserve > limit && !src->compressed) {
        err = edit_cut_compressed(out, cap, src, ttl, limit, reserve, &cut);
        if (err == DNS_ERR_NO_SPACE) return err;
        /* Any other error: some RDATA could not be re-encoded; go on uncompressed. */
        compressed = err == DNS_OK;
    }
    if (!compressed) {
        err = edit_cut_copy(out, cap, src, ttl, limit, reserve, &cut);
        if (err != DNS_OK) return err;
    }
    *out_len = edit_finish(out, &cut, src, q, our_udp);
    return DNS_OK;
}
