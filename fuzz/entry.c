/* fuzz/entry.c — libFuzzer harness for RCD2 cache entries (src/dns/entry.c).
 *
 * The input is a value as read from Redis: anything a foreign or broken writer may have
 * stored. Beyond memory safety it checks the properties the read and write paths rely on:
 * an entry always serves its own question, and re-encoding a decoded entry gives back an
 * entry with the same question, rcode and records (its OPT excepted).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "dns/dns.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ASSERT(c)                                                                             \
    do {                                                                                           \
        if (!(c)) __builtin_trap();                                                                \
    } while (0)

static struct dns_rr fuzz_rrs[DNS_RR_MAX];
static struct dns_rr fuzz_rrs2[DNS_RR_MAX];
static uint8_t fuzz_out[DNS_ENTRY_MAX];

/* example.com A IN, no EDNS, CD clear. */
static void fuzz_fixed_question(struct dns_question *q)
{
    static const uint8_t name[] = "\x07"
                                  "example\x03"
                                  "com";
    memset(q, 0, sizeof(*q));
    memcpy(q->name, name, sizeof(name));
    memcpy(q->name_lc, name, sizeof(name));
    q->name_len = sizeof(name);
    q->qtype = DNS_T_A;
    q->qclass = DNS_C_IN;
}

static bool fuzz_same_qname(const struct dns_msg *a, const struct dns_msg *b)
{
    uint8_t x[DNS_NAME_MAX], y[DNS_NAME_MAX];
    size_t xl = 0, yl = 0, next = 0;
    if (dns_name_unpack(a->buf, a->len, a->qname_off, x, &xl, &next) != DNS_OK) return false;
    if (dns_name_unpack(b->buf, b->len, b->qname_off, y, &yl, &next) != DNS_OK) return false;
    return xl == yl && memcmp(x, y, xl) == 0;
}

/* Whether the name at `pa` of `a` (its own bytes ending by `ea`) expands as the one at `pb`
 * of `b`. */
static bool fuzz_same_name(const struct dns_msg *a, size_t pa, size_t ea, const struct dns_msg *b,
                           size_t pb, size_t eb, size_t *na, size_t *nb)
{
    uint8_t x[DNS_NAME_MAX], y[DNS_NAME_MAX];
    size_t xl = 0, yl = 0;
    enum dns_err ex = dns_name_unpack(a->buf, ea, pa, x, &xl, na);
    enum dns_err ey = dns_name_unpack(b->buf, eb, pb, y, &yl, nb);
    if (ex != DNS_OK || ey != DNS_OK) return ex == ey;
    return xl == yl && memcmp(x, y, xl) == 0;
}

/* Every record of `a` but its OPT is the record of `b` at the same place (OPT skipped), with
 * the same owner and the same names inside its RDATA (dns_rdata_names). */
static bool fuzz_same_records(const struct dns_msg *a, const struct dns_msg *b)
{
    size_t j = 0;
    for (size_t i = 0; i < a->nrr; i++) {
        const struct dns_rr *x = &a->rr[i];
        if (x->type == DNS_T_OPT) continue;
        if (j >= b->nrr) return false;
        const struct dns_rr *y = &b->rr[j++];
        size_t na = 0, nb = 0;
        if (x->type != y->type || x->rdlen != y->rdlen) return false;
        if (!fuzz_same_name(a, x->owner, a->len, b, y->owner, b->len, &na, &nb)) return false;
        struct dns_rdata_names d;
        if (!dns_rdata_names(x->type, a->buf + x->rdata, x->rdlen, &d)) continue;
        size_t pa = (size_t)x->rdata + d.first, pb = (size_t)y->rdata + d.first;
        size_t ea = (size_t)x->rdata + x->rdlen, eb = (size_t)y->rdata + y->rdlen;
        for (unsigned k = 0; k < d.count && pa < ea; k++) {
            if (!fuzz_same_name(a, pa, ea, b, pb, eb, &na, &nb)) return false;
            pa = na, pb = nb;
        }
    }
    return j == b->nrr;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct dns_entry e;
    enum dns_entry_status st = dns_entry_decode(&e, data, size, fuzz_rrs, DNS_RR_MAX);
    FUZZ_ASSERT(st == DNS_ENTRY_OK || st == DNS_ENTRY_MALFORMED);

    struct dns_question fixed;
    fuzz_fixed_question(&fixed);
    enum dns_entry_status cst = dns_entry_check(&e, &fixed);
    if (st != DNS_ENTRY_OK) {
        FUZZ_ASSERT(cst == DNS_ENTRY_MALFORMED);
        FUZZ_ASSERT(e.err != DNS_OK);
        return 0;
    }
    FUZZ_ASSERT(e.err == DNS_OK);
    FUZZ_ASSERT(cst <= DNS_ENTRY_TRUNCATED && cst != DNS_ENTRY_MALFORMED);

    const struct dns_msg *m = &e.msg;
    if (m->count[DNS_SEC_QUESTION] != 1) {
        FUZZ_ASSERT(cst == DNS_ENTRY_COLLISION);
        return 0;
    }

    /* The entry's own question, with the DO and CD it was stored under. */
    struct dns_question own;
    FUZZ_ASSERT(dns_question_from_msg(&own, m) == DNS_OK);
    own.do_bit = e.do_bit;
    own.cd = (m->flags & DNS_F_CD) != 0;
    enum dns_entry_status ost = dns_entry_check(&e, &own);
    if (m->flags & DNS_F_QR)
        FUZZ_ASSERT(ost == ((m->flags & DNS_F_TC) ? DNS_ENTRY_TRUNCATED : DNS_ENTRY_OK));
    else
        FUZZ_ASSERT(ost == DNS_ENTRY_COLLISION);

    if (dns_msg_check_rdata(m) != DNS_OK) return 0;

    size_t n = 0;
    enum dns_err err = dns_entry_encode(fuzz_out, sizeof(fuzz_out), &n, m, &own);
    /* A parsed message with well-formed RDATA is always stored: its pointers aim only at
     * names (the parser's rule), so cutting the OPT out, wherever it is, keeps every name. */
    FUZZ_ASSERT(err == DNS_OK);
    FUZZ_ASSERT(n >= DNS_ENTRY_HEADER_LEN + DNS_HEADER_LEN && n <= DNS_ENTRY_MAX);
    FUZZ_ASSERT(memcmp(fuzz_out, DNS_ENTRY_MAGIC, DNS_ENTRY_MAGIC_LEN) == 0);
    FUZZ_ASSERT((fuzz_out[4] & ~DNS_ENTRY_FLAG_DO) == 0);

    struct dns_entry e2;
    FUZZ_ASSERT(dns_entry_decode(&e2, fuzz_out, n, fuzz_rrs2, DNS_RR_MAX) == DNS_ENTRY_OK);
    const struct dns_msg *m2 = &e2.msg;
    FUZZ_ASSERT(!e2.legacy);
    FUZZ_ASSERT(!m2->has_edns);
    FUZZ_ASSERT(e2.do_bit == (m->has_edns && m->edns_do));
    FUZZ_ASSERT(m2->count[DNS_SEC_QUESTION] == 1);
    FUZZ_ASSERT(m2->qtype == m->qtype && m2->qclass == m->qclass);
    FUZZ_ASSERT(fuzz_same_qname(m, m2));
    FUZZ_ASSERT((m2->flags & DNS_F_RCODE_MASK) == (m->flags & DNS_F_RCODE_MASK));
    FUZZ_ASSERT(m2->flags & DNS_F_QR);
    FUZZ_ASSERT(m2->nrr == m->nrr - (m->opt >= 0 ? 1 : 0));
    FUZZ_ASSERT(dns_msg_check_rdata(m2) == DNS_OK);
    FUZZ_ASSERT(fuzz_same_records(m, m2));

    /* The stored entry serves the question it was written for (with the response's DO). */
    own.do_bit = e2.do_bit;
    enum dns_entry_status st2 = dns_entry_check(&e2, &own);
    FUZZ_ASSERT(st2 == ((m->flags & DNS_F_TC) ? DNS_ENTRY_TRUNCATED : DNS_ENTRY_OK));
    return 0;
}
