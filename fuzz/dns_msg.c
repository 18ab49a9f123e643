/* fuzz/dns_msg.c — libFuzzer harness for the message parser and the hit-reply editor.
 *
 * Whatever parses is taken as a stored entry: a reply is built for several kinds of client
 * (no EDNS, small and large EDNS sizes, TCP, DO on and off, the qname in another letter
 * case) and must itself parse, fit the limit, echo the question, carry our TTL and OPT, and
 * only set TC when answer or authority had to go. dns_msg_compress must give a message with
 * the same records under the same names. Any broken rule traps.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dns/dns.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) __builtin_trap();                                                             \
    } while (0)

struct fuzz_client {
    bool edns;
    uint16_t udp;
    bool do_bit;
    bool tcp;
    uint16_t our_udp;
};

static const struct fuzz_client fuzz_clients[] = {
    {false, 0, false, false, DNS_UDP_DEFAULT},
    {true, 1232, true, false, DNS_UDP_DEFAULT},
    {true, 512, false, false, 4096},
    {true, 4096, true, false, DNS_UDP_DEFAULT},
    {true, 4096, false, true, DNS_UDP_DEFAULT},
    {false, 0, false, true, DNS_UDP_DEFAULT},
};

static size_t fuzz_owner(const struct dns_msg *m, size_t i, uint8_t name[DNS_NAME_MAX])
{
    size_t len = 0, next = 0;
    FUZZ_CHECK(dns_name_unpack(m->buf, m->len, m->rr[i].owner, name, &len, &next) == DNS_OK);
    return len;
}

/* The i-th RR that is not an OPT, or -1. */
static long fuzz_nth_non_opt(const struct dns_msg *m, size_t n)
{
    for (size_t i = 0; i < m->nrr; i++) {
        if (m->rr[i].type == DNS_T_OPT) continue;
        if (n-- == 0) return (long)i;
    }
    return -1;
}

/* Expands the names inside the RDATA of rr[i] (dns_rdata_names, the first FUZZ_NAMES);
 * returns how many could be read, stopping at the first malformed one. */
#define FUZZ_NAMES 4
static size_t fuzz_rdata_names(const struct dns_msg *m, size_t i,
                               uint8_t names[FUZZ_NAMES][DNS_NAME_MAX], size_t lens[FUZZ_NAMES])
{
    const struct dns_rr *rr = &m->rr[i];
    struct dns_rdata_names d;
    if (rr->type == DNS_T_OPT || !dns_rdata_names(rr->type, m->buf + rr->rdata, rr->rdlen, &d))
        return 0;
    size_t off = (size_t)rr->rdata + d.first, end = (size_t)rr->rdata + rr->rdlen;
    size_t n = 0;
    while (n < d.count && n < FUZZ_NAMES && off < end) {
        size_t next = 0;
        if (dns_name_unpack(m->buf, end, off, names[n], &lens[n], &next) != DNS_OK) break;
        off = next;
        n++;
    }
    return n;
}

/* Patching the TTLs in place (what the hit path does) must leave every name of the message
 * as it was, and the message must still parse: the parser lets pointers aim only at names,
 * never at a TTL field. Any message that parses has this property. */
static void fuzz_check_ttl_edit_keeps_names(const struct dns_msg *m, uint32_t ttl)
{
    static uint8_t edited[DNS_MSG_MAX];
    static struct dns_rr rrs[DNS_RR_MAX];
    memcpy(edited, m->buf, m->len);
    dns_msg_set_ttl(edited, m, ttl);
    struct dns_msg e;
    FUZZ_CHECK(dns_msg_parse(&e, edited, m->len, rrs, DNS_RR_MAX) == DNS_OK);
    FUZZ_CHECK(e.nrr == m->nrr && e.qtype == m->qtype && e.qclass == m->qclass);
    for (size_t i = 0; i < m->nrr; i++) {
        uint8_t a[DNS_NAME_MAX], b[DNS_NAME_MAX];
        size_t la = fuzz_owner(&e, i, a), lb = fuzz_owner(m, i, b);
        FUZZ_CHECK(la == lb && memcmp(a, b, la) == 0);
        FUZZ_CHECK(e.rr[i].type == m->rr[i].type && e.rr[i].rclass == m->rr[i].rclass);
        uint8_t x[FUZZ_NAMES][DNS_NAME_MAX], y[FUZZ_NAMES][DNS_NAME_MAX];
        size_t lx[FUZZ_NAMES], ly[FUZZ_NAMES];
        size_t nx = fuzz_rdata_names(&e, i, x, lx), ny = fuzz_rdata_names(m, i, y, ly);
        FUZZ_CHECK(nx == ny);
        for (size_t k = 0; k < nx; k++)
            FUZZ_CHECK(lx[k] == ly[k] && memcmp(x[k], y[k], lx[k]) == 0);
    }
}

static void fuzz_reply(const struct dns_msg *src, const struct dns_question *base,
                       const struct fuzz_client *c, uint32_t ttl)
{
    static uint8_t out[DNS_MSG_MAX];
    static struct dns_rr rrs[DNS_RR_MAX];
    struct dns_question q = *base;
    q.id = (uint16_t)(q.id ^ 0x5A5A);
    q.has_edns = c->edns;
    q.udp_size = c->edns ? c->udp : 0;
    q.do_bit = c->edns && c->do_bit;
    /* 0x20: the client asks in another letter case than the entry holds. */
    for (size_t i = 0; i < q.name_len; i++) {
        uint8_t b = q.name[i];
        if ((b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z')) q.name[i] = b ^ 0x20;
    }

    size_t n = 0;
    enum dns_err err = dns_reply_build(out, sizeof out, &n, src, &q, ttl, c->our_udp, c->tcp);
    if (err != DNS_OK) {
        /* Only two things make an entry unusable: a question name that is compressed (into
         * its own labels), and a legacy OPT that cannot be cut out (a later name's pointers
         * cannot be followed). */
        size_t tmp;
        if (src->qend - DNS_HEADER_LEN - 4 != q.name_len)
            FUZZ_CHECK(err == DNS_ERR_BAD_POINTER);
        else
            FUZZ_CHECK(src->opt >= 0 &&
                       dns_msg_copy_without_opt(out, sizeof out, &tmp, src) == err);
        return;
    }
    FUZZ_CHECK(n <= dns_reply_limit(&q, c->our_udp, c->tcp));

    struct dns_msg r;
    FUZZ_CHECK(dns_msg_parse(&r, out, n, rrs, DNS_RR_MAX) == DNS_OK);
    FUZZ_CHECK(r.id == q.id);
    FUZZ_CHECK((r.flags & (DNS_F_QR | DNS_F_AA)) == (DNS_F_QR | DNS_F_AA));
    FUZZ_CHECK(r.count[0] == 1 && r.qtype == src->qtype && r.qclass == src->qclass);
    FUZZ_CHECK(r.qend == DNS_HEADER_LEN + q.name_len + 4);
    FUZZ_CHECK(memcmp(out + DNS_HEADER_LEN, q.name, q.name_len) == 0);

    FUZZ_CHECK(r.has_edns == q.has_edns);
    if (r.has_edns) {
        FUZZ_CHECK(r.edns_udp == c->our_udp && r.edns_do == q.do_bit);
        FUZZ_CHECK(r.edns_version == 0 && r.edns_ext_rcode == 0);
    }
    size_t src_opt = src->opt >= 0 ? 1 : 0;
    FUZZ_CHECK(r.nrr <= src->nrr - src_opt + (q.has_edns ? 1 : 0));

    if (r.flags & DNS_F_TC) {
        FUZZ_CHECK(src->count[1] + src->count[2] > 0);
        FUZZ_CHECK(r.count[1] == 0 && r.count[2] == 0 && r.nrr == (q.has_edns ? 1 : 0));
    } else {
        FUZZ_CHECK(r.count[1] == src->count[1] && r.count[2] == src->count[2]);
    }

    /* The records kept are the entry's first ones, in order, under the same names (the
     * letter case may follow the question's through a pointer). */
    for (size_t i = 0; i < r.nrr; i++) {
        if (rrs[i].type == DNS_T_OPT) continue;
        FUZZ_CHECK(dns_get32(out + rrs[i].ttl_off) == ttl);
        long j = fuzz_nth_non_opt(src, i);
        FUZZ_CHECK(j >= 0);
        FUZZ_CHECK(rrs[i].type == src->rr[j].type && rrs[i].section == src->rr[j].section);
        uint8_t a[DNS_NAME_MAX], b[DNS_NAME_MAX];
        size_t la = fuzz_owner(&r, i, a), lb = fuzz_owner(src, (size_t)j, b);
        FUZZ_CHECK(dns_name_equal_nocase(a, la, b, lb));
        /* So do the names inside RDATA (the reply may be the compressed form). */
        uint8_t x[FUZZ_NAMES][DNS_NAME_MAX], y[FUZZ_NAMES][DNS_NAME_MAX];
        size_t lx[FUZZ_NAMES], ly[FUZZ_NAMES];
        size_t nx = fuzz_rdata_names(&r, i, x, lx), ny = fuzz_rdata_names(src, (size_t)j, y, ly);
        FUZZ_CHECK(nx == ny);
        for (size_t k = 0; k < nx; k++) FUZZ_CHECK(dns_name_equal_nocase(x[k], lx[k], y[k], ly[k]));
    }
}

static void fuzz_compress(const struct dns_msg *m)
{
    static uint8_t out[DNS_MSG_MAX];
    static struct dns_rr rrs[DNS_RR_MAX];
    size_t n = 0;
    enum dns_err err = dns_msg_compress(out, sizeof out, &n, m);
    if (err == DNS_ERR_NO_SPACE || err == DNS_ERR_TOO_BIG) {
        /* Only expanding pointers can make it grow. */
        FUZZ_CHECK(m->compressed);
        return;
    }
    if (err != DNS_OK) return; /* RDATA of a known type that holds no valid name */
    FUZZ_CHECK(m->compressed || n <= m->len);

    struct dns_msg c;
    FUZZ_CHECK(dns_msg_parse(&c, out, n, rrs, DNS_RR_MAX) == DNS_OK);
    FUZZ_CHECK(c.nrr == m->nrr && c.count[0] == m->count[0]);
    FUZZ_CHECK(c.flags == m->flags && c.id == m->id);
    for (size_t i = 0; i < c.nrr; i++) {
        uint8_t a[DNS_NAME_MAX], b[DNS_NAME_MAX];
        size_t la = fuzz_owner(&c, i, a), lb = fuzz_owner(m, i, b);
        FUZZ_CHECK(la == lb && memcmp(a, b, la) == 0);
        FUZZ_CHECK(rrs[i].type == m->rr[i].type && rrs[i].rclass == m->rr[i].rclass);
        FUZZ_CHECK(dns_get32(out + rrs[i].ttl_off) == dns_get32(m->buf + m->rr[i].ttl_off));
        /* RDATA names: the same, and written in full where they must not be compressed. */
        uint8_t x[FUZZ_NAMES][DNS_NAME_MAX], y[FUZZ_NAMES][DNS_NAME_MAX];
        size_t lx[FUZZ_NAMES], ly[FUZZ_NAMES];
        size_t nx = fuzz_rdata_names(&c, i, x, lx), ny = fuzz_rdata_names(m, i, y, ly);
        FUZZ_CHECK(nx == ny);
        for (size_t k = 0; k < nx; k++)
            FUZZ_CHECK(lx[k] == ly[k] && memcmp(x[k], y[k], lx[k]) == 0);
        struct dns_rdata_names d;
        if (rrs[i].rdlen && dns_rdata_names(rrs[i].type, out + rrs[i].rdata, rrs[i].rdlen, &d) &&
            !d.compress) {
            size_t p = (size_t)rrs[i].rdata + d.first, end = (size_t)rrs[i].rdata + rrs[i].rdlen;
            for (size_t k = 0; k < nx && p < end; k++) {
                while (p < end && out[p] != 0) {
                    FUZZ_CHECK(out[p] <= DNS_LABEL_MAX);
                    p += 1u + out[p];
                }
                p++;
            }
        }
    }
    /* What the message says must not change. */
    if (dns_msg_check_rdata(m) == DNS_OK) FUZZ_CHECK(dns_msg_check_rdata(&c) == DNS_OK);
}

/* A caller's buffer of any size, exactly that size (so that ASan sees a write past it):
 * the reply fits in it or the build says there is no room. */
static void fuzz_reply_small(const struct dns_msg *src, const struct dns_question *q, size_t cap)
{
    uint8_t *out = malloc(cap ? cap : 1);
    FUZZ_CHECK(out != NULL);
    size_t n = 0;
    enum dns_err err = dns_reply_build(out, cap, &n, src, q, 60, DNS_UDP_DEFAULT, false);
    FUZZ_CHECK(err != DNS_OK || n <= cap);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct dns_rr rrs[DNS_RR_MAX];
    struct dns_msg m;
    if (dns_msg_parse(&m, data, size, rrs, DNS_RR_MAX) != DNS_OK) return 0;
    fuzz_compress(&m);

    fuzz_check_ttl_edit_keeps_names(&m, 0x7F6E5D4Cu);

    struct dns_question q;
    if (m.count[0] != 1 || dns_question_from_msg(&q, &m) != DNS_OK) return 0;
    for (size_t i = 0; i < sizeof fuzz_clients / sizeof fuzz_clients[0]; i++)
        fuzz_reply(&m, &q, &fuzz_clients[i], 0x01020304u * (uint32_t)(i + 1));
    fuzz_reply_small(&m, &q, (size_t)data[size - 1] * 5);
    return 0;
}
