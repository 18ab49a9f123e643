/* tests/unit/test_dns_policy.c — cacheability and message TTL (SPEC §2, src/dns/policy.c).
 *
 * Responses are real: knotd captures from support/fixtures.h (some with header bits or fields
 * edited in a copy), or messages written here byte by byte for what a well-behaved
 * authoritative never sends (forked chains, ECS scopes, odd opcodes, top-bit TTLs).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "dns/dns.h"
#include "support/fixtures.h"

#define RR_CAP 256

/* ---- parsing and classifying ---- */

static void parse_msg(struct dns_msg *m, struct dns_rr *rrs, const uint8_t *buf, size_t len)
{
    assert_int_equal(dns_msg_parse(m, buf, len, rrs, RR_CAP), DNS_OK);
}

static struct dns_verdict classify(const uint8_t *query, size_t qlen, const uint8_t *resp,
                                   size_t rlen, uint32_t now)
{
    struct dns_question q;
    struct dns_msg m;
    struct dns_rr rrs[RR_CAP];
    struct dns_verdict v;

    assert_int_equal(dns_question_parse(&q, query, qlen), DNS_OK);
    parse_msg(&m, rrs, resp, rlen);
    /* Poison the verdict so a field left unset cannot pass by luck. */
    memset(&v, 0xA5, sizeof v);
    dns_classify(&v, &m, &q, now);
    return v;
}

static struct dns_verdict classify_fixture(const char *name, uint32_t now)
{
    const struct dns_fixture *f = fixture(name);
    return classify(f->query, f->query_len, f->resp, f->resp_len, now);
}

static void assert_verdict(struct dns_verdict v, enum dns_kind kind, enum dns_nocache why,
                           uint32_t ttl)
{
    assert_int_equal(v.kind, kind);
    assert_string_equal(dns_nocache_str(v.why), dns_nocache_str(why));
    assert_int_equal(v.why, why);
    assert_int_equal(v.msg_ttl, ttl);
}

/* ---- editing copies of fixtures ---- */

struct copy {
    uint8_t b[2048];
    size_t n;
};

static void copy_resp(struct copy *c, const char *name)
{
    const struct dns_fixture *f = fixture(name);
    assert_true(f->resp_len <= sizeof c->b);
    memcpy(c->b, f->resp, f->resp_len);
    c->n = f->resp_len;
}

static void copy_query(struct copy *c, const char *name)
{
    const struct dns_fixture *f = fixture(name);
    assert_true(f->query_len <= sizeof c->b);
    memcpy(c->b, f->query, f->query_len);
    c->n = f->query_len;
}

static void set_rcode(struct copy *c, unsigned rcode)
{
    c->b[3] = (uint8_t)((c->b[3] & 0xF0) | (rcode & 0x0F));
}

static void set_qtype(struct copy *c, uint16_t qtype)
{
    struct dns_msg m;
    parse_msg(&m, NULL, c->b, c->n);
    dns_put16(c->b + m.qend - 4, qtype);
}

static void set_qclass(struct copy *c, uint16_t qclass)
{
    struct dns_msg m;
    parse_msg(&m, NULL, c->b, c->n);
    dns_put16(c->b + m.qend - 2, qclass);
}

/* The first RR of `type` in a parsed copy. */
static struct dns_rr find_rr(const struct copy *c, uint16_t type)
{
    struct dns_msg m;
    struct dns_rr rrs[RR_CAP];
    parse_msg(&m, rrs, c->b, c->n);
    for (uint16_t i = 0; i < m.nrr; i++)
        if (rrs[i].type == type) return rrs[i];
    fail_msg("no RR of type %u", type);
    return rrs[0];
}

static void set_rrsig_times(struct copy *c, uint32_t inception, uint32_t expiration)
{
    struct dns_rr sig = find_rr(c, DNS_T_RRSIG);
    dns_put32(c->b + sig.rdata + 8, expiration);
    dns_put32(c->b + sig.rdata + 12, inception);
}

static uint32_t rrsig_field(const char *name, size_t at)
{
    struct copy c;
    copy_resp(&c, name);
    return dns_get32(c.b + find_rr(&c, DNS_T_RRSIG).rdata + at);
}

static struct dns_verdict classify_copies(const struct copy *query, const struct copy *resp,
                                          uint32_t now)
{
    return classify(query->b, query->n, resp->b, resp->n, now);
}

static struct dns_verdict classify_resp_copy(const char *name, const struct copy *resp,
                                             uint32_t now)
{
    const struct dns_fixture *f = fixture(name);
    return classify(f->query, f->query_len, resp->b, resp->n, now);
}

/* ---- writing messages byte by byte ---- */

struct wire {
    uint8_t b[4096];
    size_t n;
};

static void w8(struct wire *w, unsigned v)
{
    assert_true(w->n < sizeof w->b);
    w->b[w->n++] = (uint8_t)v;
}

static void w16(struct wire *w, unsigned v)
{
    w8(w, v >> 8);
    w8(w, v);
}

static void w32(struct wire *w, uint32_t v)
{
    w16(w, v >> 16);
    w16(w, v & 0xFFFF);
}

static void wbytes(struct wire *w, const void *p, size_t n)
{
    assert_true(n <= sizeof w->b - w->n);
    memcpy(w->b + w->n, p, n);
    w->n += n;
}

/* A wire name from a string literal: the literal's NUL is the root label. */
#define WNAME(w, lit) wbytes((w), (lit), sizeof(lit))
/* A compression pointer to offset `off`. */
#define WPTR(w, off) w16((w), 0xC000u | (off))

/* Offsets in every message written here: the question name www.example.com at 12. */
#define OFF_WWW     12
#define OFF_EXAMPLE 16
#define QNAME       "\3www\7example\3com"

#define F_QR 0x8000u
#define F_RD 0x0100u
#define F_RA 0x0080u

static void whead(struct wire *w, unsigned flags, unsigned qd, unsigned an, unsigned ns,
                  unsigned ar)
{
    w->n = 0;
    w16(w, 0x1234);
    w16(w, flags);
    w16(w, qd);
    w16(w, an);
    w16(w, ns);
    w16(w, ar);
}

static void wquestion(struct wire *w, uint16_t qtype)
{
    WNAME(w, QNAME);
    w16(w, qtype);
    w16(w, DNS_C_IN);
}

/* Owner already written; the fixed fields of an RR. */
static void wrr(struct wire *w, uint16_t type, uint32_t ttl, unsigned rdlen)
{
    w16(w, type);
    w16(w, DNS_C_IN);
    w32(w, ttl);
    w16(w, rdlen);
}

/* "www.example.com A <ttl> 192.0.2.1" with a compressed owner at `owner_off`. */
static void wa(struct wire *w, unsigned owner_off, uint32_t ttl)
{
    WPTR(w, owner_off);
    wrr(w, DNS_T_A, ttl, 4);
    w32(w, 0xC0000201);
}

/* OPT with DO as given and `opts` (already encoded options) as RDATA. */
static void wopt(struct wire *w, bool do_bit, const uint8_t *opts, size_t optlen)
{
    w8(w, 0);
    w16(w, DNS_T_OPT);
    w16(w, 1232);
    w32(w, do_bit ? DNS_EDNS_DO : 0);
    w16(w, (unsigned)optlen);
    if (optlen) wbytes(w, opts, optlen);
}

/* SOA for example.com (owner: pointer to the question's "example"), names compressed. */
static void wsoa(struct wire *w, uint32_t ttl, uint32_t minimum)
{
    WPTR(w, OFF_EXAMPLE);
    /* "\3ns1" + ptr (6) and "\12hostmaster" + ptr (13), then 20 bytes. */
    wrr(w, DNS_T_SOA, ttl, 6 + 13 + 20);
    wbytes(w, "\3ns1", 4);
    WPTR(w, OFF_EXAMPLE);
    wbytes(w, "\12hostmaster", 11);
    WPTR(w, OFF_EXAMPLE);
    w32(w, 2026112801);
    w32(w, 7200);
    w32(w, 3600);
    w32(w, 1209600);
    w32(w, minimum);
}

/* A query for www.example.com `qtype`, with an OPT (DO as given). */
static void wquery(struct wire *w, uint16_t qtype, unsigned flags, bool do_bit)
{
    whead(w, flags, 1, 0, 0, 1);
    wquestion(w, qtype);
    wopt(w, do_bit, NULL, 0);
}

static struct dns_verdict classify_wire(const struct wire *query, const struct wire *resp,
                                        uint32_t now)
{
    return classify(query->b, query->n, resp->b, resp->n, now);
}

/* Response to www.example.com A whose answer is the given RRs; query with RD, no DO. */
static struct dns_verdict classify_a_answer(const struct wire *resp)
{
    struct wire q;
    wquery(&q, DNS_T_A, F_RD, false);
    return classify_wire(&q, resp, 0);
}

/* ---- kinds ---- */

static void test_classify_noerror_answer_is_positive(void **state)
{
    (void)state;
    assert_verdict(classify_fixture("a_example_com", 0), DNS_KIND_POSITIVE, DNS_NC_OK, 300);
    assert_verdict(classify_fixture("many_a", 0), DNS_KIND_POSITIVE, DNS_NC_OK, 200);
}

static void test_classify_referral_is_positive(void **state)
{
    (void)state;
    assert_verdict(classify_fixture("referral", 0), DNS_KIND_POSITIVE, DNS_NC_OK, 3600);
}

static void test_classify_nxdomain_is_negative(void **state)
{
    (void)state;
    assert_verdict(classify_fixture("nxdomain", 0), DNS_KIND_NEGATIVE, DNS_NC_OK, 300);
}

static void test_classify_nodata_with_soa_is_negative(void **state)
{
    (void)state;
    assert_verdict(classify_fixture("nodata", 0), DNS_KIND_NEGATIVE, DNS_NC_OK, 300);
}

static void test_classify_empty_noerror_is_positive_with_ttl_5(void **state)
{
    (void)state;
    struct wire r;
    whead(&r, F_QR | F_RD | F_RA, 1, 0, 0, 1);
    wquestion(&r, DNS_T_A);
    wopt(&r, false, NULL, 0);
    assert_verdict(classify_a_answer(&r), DNS_KIND_POSITIVE, DNS_NC_OK, 5);

    /* Additional RRs do not change it: the rule looks at answer and authority only. */
    whead(&r, F_QR | F_RD | F_RA, 1, 0, 0, 1);
    wquestion(&r, DNS_T_A);
    wa(&r, OFF_WWW, 1000);
    assert_verdict(classify_a_answer(&r), DNS_KIND_POSITIVE, DNS_NC_OK, 5);

    /* Without an OPT too. */
    whead(&r, F_QR | F_RD | F_RA, 1, 0, 0, 0);
    wquestion(&r, DNS_T_A);
    assert_verdict(classify_a_answer(&r), DNS_KIND_POSITIVE, DNS_NC_OK, 5);
}

static void test_classify_noerror_authority_without_soa_or_ns_is_positive(void **state)
{
    (void)state;
    struct wire r;
    whead(&r, F_QR | F_RD | F_RA, 1, 0, 1, 0);
    wquestion(&r, DNS_T_A);
    WPTR(&r, OFF_WWW);
    wrr(&r, DNS_T_NSEC, 77, 3);
    w8(&r, 0);  /* next name: root */
    w16(&r, 0); /* empty type bitmap window, enough for us */
    assert_verdict(classify_a_answer(&r), DNS_KIND_POSITIVE, DNS_NC_OK, 77);
}

static void test_classify_error_rcodes_are_kind_none(void **state)
{
    (void)state;
    assert_verdict(classify_fixture("refused", 0), DNS_KIND_NONE, DNS_NC_RCODE, 0);

    const unsigned rcodes[] = {DNS_RCODE_FORMERR, DNS_RCODE_SERVFAIL, DNS_RCODE_NOTIMP,
                               DNS_RCODE_REFUSED, 6 /* YXDOMAIN */,   9 /* NOTAUTH */};
    for (size_t i = 0; i < sizeof rcodes / sizeof rcodes[0]; i++) {
        struct copy r;
        copy_resp(&r, "a_example_com");
        set_rcode(&r, rcodes[i]);
        assert_verdict(classify_resp_copy("a_example_com", &r, 0), DNS_KIND_NONE, DNS_NC_RCODE, 0);
    }
}

static void test_classify_extended_rcode_is_kind_none(void **state)
{
    (void)state;
    /* BADVERS: header rcode 0 with 1 in the OPT's upper rcode bits, i.e. 16. */
    struct copy r;
    copy_resp(&r, "a_example_com");
    struct dns_rr opt = find_rr(&r, DNS_T_OPT);
    r.b[opt.ttl_off] = 1;
    assert_verdict(classify_resp_copy("a_example_com", &r, 0), DNS_KIND_NONE, DNS_NC_RCODE, 0);

    /* Upper bits on an NXDOMAIN make rcode 19, not NXDOMAIN. */
    copy_resp(&r, "nxdomain");
    opt = find_rr(&r, DNS_T_OPT);
    r.b[opt.ttl_off] = 1;
    assert_verdict(classify_resp_copy("nxdomain", &r, 0), DNS_KIND_NONE, DNS_NC_RCODE, 0);
}

/* ---- never written ---- */

static void test_classify_rejects_qdcount_not_one(void **state)
{
    (void)state;
    struct wire q, r;
    wquery(&q, DNS_T_A, F_RD, false);

    whead(&r, F_QR | F_RD | F_RA, 0, 1, 0, 0);
    wbytes(&r, QNAME, sizeof QNAME);
    wrr(&r, DNS_T_A, 60, 4);
    w32(&r, 0xC0000201);
    assert_verdict(classify_wire(&q, &r, 0), DNS_KIND_POSITIVE, DNS_NC_QDCOUNT, 60);

    whead(&r, F_QR | F_RD | F_RA, 2, 1, 0, 0);
    wquestion(&r, DNS_T_A);
    wquestion(&r, DNS_T_AAAA);
    wa(&r, OFF_WWW, 60);
    assert_verdict(classify_wire(&q, &r, 0), DNS_KIND_POSITIVE, DNS_NC_QDCOUNT, 60);
}

static void test_classify_rejects_truncated(void **state)
{
    (void)state;
    struct copy r;
    copy_resp(&r, "a_example_com");
    r.b[2] |= 0x02; /* TC */
    assert_verdict(classify_resp_copy("a_example_com", &r, 0), DNS_KIND_POSITIVE, DNS_NC_TC, 300);
}

static void test_classify_rejects_opcode_other_than_query(void **state)
{
    (void)state;
    const unsigned opcodes[] = {1 /* IQUERY */, 2 /* STATUS */, 4 /* NOTIFY */, 5 /* UPDATE */};
    for (size_t i = 0; i < sizeof opcodes / sizeof opcodes[0]; i++) {
        struct copy r;
        copy_resp(&r, "a_example_com");
        r.b[2] = (uint8_t)((r.b[2] & 0x87) | (opcodes[i] << 3));
        assert_verdict(classify_resp_copy("a_example_com", &r, 0), DNS_KIND_POSITIVE, DNS_NC_OPCODE,
                       300);
    }
}

static void test_classify_rejects_zone_transfers(void **state)
{
    (void)state;
    const uint16_t types[] = {DNS_T_AXFR, DNS_T_IXFR};
    for (size_t i = 0; i < 2; i++) {
        struct copy q, r;
        copy_query(&q, "a_example_com");
        copy_resp(&r, "a_example_com");
        set_qtype(&q, types[i]);
        set_qtype(&r, types[i]);
        assert_verdict(classify_copies(&q, &r, 0), DNS_KIND_POSITIVE, DNS_NC_XFR, 300);
    }
}

static void test_classify_rejects_nxdomain_with_answer(void **state)
{
    (void)state;
    /* NXDOMAIN with a CNAME in the answer and the SOA in authority (RFC 6604 style). */
    struct wire r;
    whead(&r, F_QR | F_RD | F_RA | DNS_RCODE_NXDOMAIN, 1, 1, 1, 0);
    wquestion(&r, DNS_T_A);
    WPTR(&r, OFF_WWW);
    wrr(&r, DNS_T_CNAME, 300, 6);
    wbytes(&r, "\3web", 4);
    WPTR(&r, OFF_EXAMPLE);
    wsoa(&r, 300, 300);
    assert_verdict(classify_a_answer(&r), DNS_KIND_NEGATIVE, DNS_NC_NXDOMAIN_ANSWER, 300);

    /* The real dangling answer with its rcode made NXDOMAIN: answer outranks no SOA. */
    struct copy c;
    copy_resp(&c, "cname_dangling");
    set_rcode(&c, DNS_RCODE_NXDOMAIN);
    struct dns_verdict v = classify_resp_copy("cname_dangling", &c, 0);
    assert_int_equal(v.kind, DNS_KIND_NEGATIVE);
    assert_int_equal(v.why, DNS_NC_NXDOMAIN_ANSWER);
}

static void test_classify_rejects_nxdomain_without_soa(void **state)
{
    (void)state;
    struct wire r;
    whead(&r, F_QR | F_RD | F_RA | DNS_RCODE_NXDOMAIN, 1, 0, 0, 1);
    wquestion(&r, DNS_T_A);
    wopt(&r, false, NULL, 0);
    assert_verdict(classify_a_answer(&r), DNS_KIND_NEGATIVE, DNS_NC_NXDOMAIN_NO_SOA, 0);

    /* An SOA in the additional section is not one in authority. */
    whead(&r, F_QR | F_RD | F_RA | DNS_RCODE_NXDOMAIN, 1, 0, 0, 1);
    wquestion(&r, DNS_T_A);
    wsoa(&r, 300, 300);
    struct dns_verdict v = classify_a_answer(&r);
    assert_int_equal(v.kind, DNS_KIND_NEGATIVE);
    assert_int_equal(v.why, DNS_NC_NXDOMAIN_NO_SOA);
}

static void test_classify_accepts_cname_chain_ending_in_qtype(void **state)
{
    (void)state;
    /* www CNAME web (600), web A (120). */
    assert_verdict(classify_fixture("cname_chain", 0), DNS_KIND_POSITIVE, DNS_NC_OK, 120);
}

static void test_classify_rejects_dangling_cname(void **state)
{
    (void)state;
    assert_verdict(classify_fixture("cname_dangling", 0), DNS_KIND_POSITIVE, DNS_NC_CNAME_CHAIN,
                   300);

    /* An answer holding only an RR for another name does not end the chain either. */
    struct wire r;
    whead(&r, F_QR | F_RD | F_RA, 1, 1, 0, 0);
    wquestion(&r, DNS_T_A);
    wbytes(&r, "\3ftp", 4);
    WPTR(&r, OFF_EXAMPLE);
    wrr(&r, DNS_T_A, 60, 4);
    w32(&r, 0xC0000201);
    assert_verdict(classify_a_answer(&r), DNS_KIND_POSITIVE, DNS_NC_CNAME_CHAIN, 60);
}

static void test_classify_rejects_cname_loop(void **state)
{
    (void)state;
    assert_verdict(classify_fixture("cname_loop", 0), DNS_KIND_POSITIVE, DNS_NC_CNAME_CHAIN, 300);

    /* A CNAME to itself. */
    struct wire r;
    whead(&r, F_QR | F_RD | F_RA, 1, 1, 0, 0);
    wquestion(&r, DNS_T_A);
    WPTR(&r, OFF_WWW);
    wrr(&r, DNS_T_CNAME, 60, 2);
    WPTR(&r, OFF_WWW);
    assert_verdict(classify_a_answer(&r), DNS_KIND_POSITIVE, DNS_NC_CNAME_CHAIN, 60);
}

static void test_classify_rejects_forked_cname_chain(void **state)
{
    (void)state;
    /* www CNAME a.example.com and www CNAME b.example.com, both ending in an A. */
    struct wire r;
    whead(&r, F_QR | F_RD | F_RA, 1, 4, 0, 0);
    wquestion(&r, DNS_T_A);
    WPTR(&r, OFF_WWW);
    wrr(&r, DNS_T_CNAME, 60, 4);
    size_t a_off = r.n;
    wbytes(&r, "\1a", 2);
    WPTR(&r, OFF_EXAMPLE);
    WPTR(&r, OFF_WWW);
    wrr(&r, DNS_T_CNAME, 60, 4);
    size_t b_off = r.n;
    wbytes(&r, "\1b", 2);
    WPTR(&r, OFF_EXAMPLE);
    wa(&r, (unsigned)a_off, 60);
    wa(&r, (unsigned)b_off, 60);
    assert_verdict(classify_a_answer(&r), DNS_KIND_POSITIVE, DNS_NC_CNAME_CHAIN, 60);
}

static void test_classify_cname_chain_ignores_case_and_compression(void **state)
{
    (void)state;
    /* www CNAME "WEB" + pointer; the A's owner is "wEb.EXAMPLE.CoM" written out. */
    struct wire r;
    whead(&r, F_QR | F_RD | F_RA, 1, 2, 0, 0);
    wquestion(&r, DNS_T_A);
    WPTR(&r, OFF_WWW);
    wrr(&r, DNS_T_CNAME, 600, 6);
    wbytes(&r, "\3WEB", 4);
    WPTR(&r, OFF_EXAMPLE);
    WNAME(&r, "\3wEb\7EXAMPLE\3CoM");
    wrr(&r, DNS_T_A, 120, 4);
    w32(&r, 0xC0000250);
    assert_verdict(classify_a_answer(&r), DNS_KIND_POSITIVE, DNS_NC_OK, 120);
}

static void test_classify_cname_chain_not_required_for_any_and_cname(void **state)
{
    (void)state;
    const uint16_t types[] = {DNS_T_ANY, DNS_T_CNAME};
    for (size_t i = 0; i < 2; i++) {
        struct copy q, r;
        copy_query(&q, "cname_dangling");
        copy_resp(&r, "cname_dangling");
        set_qtype(&q, types[i]);
        set_qtype(&r, types[i]);
        assert_verdict(classify_copies(&q, &r, 0), DNS_KIND_POSITIVE, DNS_NC_OK, 300);
    }
    /* Not even a forked answer: two CNAMEs at the qname of a CNAME query. */
    struct wire fq, fr;
    wquery(&fq, DNS_T_CNAME, F_RD, false);
    whead(&fr, F_QR | F_RD | F_RA, 1, 2, 0, 0);
    wquestion(&fr, DNS_T_CNAME);
    for (int i = 0; i < 2; i++) {
        WPTR(&fr, OFF_WWW);
        wrr(&fr, DNS_T_CNAME, 60, 4);
        wbytes(&fr, i ? "\1b" : "\1a", 2);
        WPTR(&fr, OFF_EXAMPLE);
    }
    assert_verdict(classify_wire(&fq, &fr, 0), DNS_KIND_POSITIVE, DNS_NC_OK, 60);

    /* Nor an answer with nothing at the qname. */
    whead(&fr, F_QR | F_RD | F_RA, 1, 1, 0, 0);
    wquestion(&fr, DNS_T_CNAME);
    wbytes(&fr, "\3ftp", 4);
    WPTR(&fr, OFF_EXAMPLE);
    wrr(&fr, DNS_T_CNAME, 70, 2);
    WPTR(&fr, OFF_WWW);
    assert_verdict(classify_wire(&fq, &fr, 0), DNS_KIND_POSITIVE, DNS_NC_OK, 70);

    /* The same dangling answer to qtype A is refused. */
    struct copy q, r;
    copy_query(&q, "cname_dangling");
    copy_resp(&r, "cname_dangling");
    assert_int_equal(classify_copies(&q, &r, 0).why, DNS_NC_CNAME_CHAIN);
}

static void test_classify_cname_chain_not_required_with_soa(void **state)
{
    (void)state;
    /* www CNAME nowhere.example.com, whose NODATA comes with the SOA. */
    struct wire r;
    whead(&r, F_QR | F_RD | F_RA, 1, 1, 1, 0);
    wquestion(&r, DNS_T_A);
    WPTR(&r, OFF_WWW);
    wrr(&r, DNS_T_CNAME, 500, 10);
    wbytes(&r, "\7nowhere", 8);
    WPTR(&r, OFF_EXAMPLE);
    wsoa(&r, 400, 450);
    assert_verdict(classify_a_answer(&r), DNS_KIND_POSITIVE, DNS_NC_OK, 400);
}

/* "\4" and four digits, then example.com by pointer. */
static void wnum_name(struct wire *w, unsigned k)
{
    w8(w, 4);
    w8(w, '0' + k / 1000 % 10);
    w8(w, '0' + k / 100 % 10);
    w8(w, '0' + k / 10 % 10);
    w8(w, '0' + k % 10);
    WPTR(w, OFF_EXAMPLE);
}

/* www -> 0001 -> ... -> <n>, written last link first; <n> has an A unless `loop_back`,
 * where <n> CNAMEs back to 0001. */
static void build_long_chain(struct wire *r, unsigned n, bool loop_back)
{
    whead(r, F_QR | F_RD | F_RA, 1, n + 1, 0, 0);
    wquestion(r, DNS_T_A);
    wnum_name(r, n);
    if (loop_back) {
        wrr(r, DNS_T_CNAME, 60, 7);
        wnum_name(r, 1);
    } else {
        wrr(r, DNS_T_A, 60, 4);
        w32(r, 0xC0000201);
    }
    for (unsigned k = n - 1; k >= 1; k--) {
        wnum_name(r, k);
        wrr(r, DNS_T_CNAME, 60 + k, 7);
        wnum_name(r, k + 1);
    }
    WPTR(r, OFF_WWW);
    wrr(r, DNS_T_CNAME, 60, 7);
    wnum_name(r, 1);
}

static void test_classify_long_cname_chain_followed_to_its_end(void **state)
{
    (void)state;
    struct wire r;
    build_long_chain(&r, 150, false);
    assert_verdict(classify_a_answer(&r), DNS_KIND_POSITIVE, DNS_NC_OK, 60);
    build_long_chain(&r, 150, true);
    assert_verdict(classify_a_answer(&r), DNS_KIND_POSITIVE, DNS_NC_CNAME_CHAIN, 60);
}

static void test_classify_rrsig_in_window_is_cacheable(void **state)
{
    (void)state;
    assert_verdict(classify_fixture("signed_a_do", fixture_capture_time), DNS_KIND_POSITIVE,
                   DNS_NC_OK, 300);
    assert_verdict(classify_fixture("signed_nx_do", fixture_capture_time), DNS_KIND_NEGATIVE,
                   DNS_NC_OK, 300);

    /* The window's ends are inside it. */
    uint32_t inc = rrsig_field("signed_a_do", 12), exp = rrsig_field("signed_a_do", 8);
    assert_int_equal(classify_fixture("signed_a_do", inc).why, DNS_NC_OK);
    assert_int_equal(classify_fixture("signed_a_do", exp).why, DNS_NC_OK);
}

static void test_classify_rejects_rrsig_after_expiration(void **state)
{
    (void)state;
    uint32_t exp = rrsig_field("signed_a_do", 8);
    assert_verdict(classify_fixture("signed_a_do", exp + 1), DNS_KIND_POSITIVE, DNS_NC_RRSIG_WINDOW,
                   0);

    uint32_t nx_exp = rrsig_field("signed_nx_do", 8);
    struct dns_verdict v = classify_fixture("signed_nx_do", nx_exp + 1);
    assert_int_equal(v.kind, DNS_KIND_NEGATIVE);
    assert_int_equal(v.why, DNS_NC_RRSIG_WINDOW);
}

static void test_classify_rejects_rrsig_before_inception(void **state)
{
    (void)state;
    uint32_t inc = rrsig_field("signed_a_do", 12);
    assert_verdict(classify_fixture("signed_a_do", inc - 1), DNS_KIND_POSITIVE, DNS_NC_RRSIG_WINDOW,
                   300);
}

static void test_classify_rrsig_window_uses_serial_arithmetic(void **state)
{
    (void)state;
    /* A window across the 32-bit wrap: inception 2^32-256, expiration 256. */
    struct copy r;
    copy_resp(&r, "signed_a_do");
    set_rrsig_times(&r, 0xFFFFFF00u, 0x100u);
    assert_verdict(classify_resp_copy("signed_a_do", &r, 0x10), DNS_KIND_POSITIVE, DNS_NC_OK, 0xF0);
    assert_verdict(classify_resp_copy("signed_a_do", &r, 0xFFFFFFF0u), DNS_KIND_POSITIVE, DNS_NC_OK,
                   0x110);
    assert_int_equal(classify_resp_copy("signed_a_do", &r, 0xFFFFFE00u).why, DNS_NC_RRSIG_WINDOW);
    assert_int_equal(classify_resp_copy("signed_a_do", &r, 0x200).why, DNS_NC_RRSIG_WINDOW);
}

static void test_classify_rrsig_window_only_checked_with_do(void **state)
{
    (void)state;
    uint32_t exp = rrsig_field("signed_a_do", 8);
    struct copy r;
    copy_resp(&r, "signed_a_do");
    struct dns_rr opt = find_rr(&r, DNS_T_OPT);
    r.b[opt.ttl_off + 2] &= 0x7F; /* DO off in the response's OPT */
    struct dns_verdict v = classify_resp_copy("signed_a_do", &r, exp + 1);
    assert_int_equal(v.why, DNS_NC_OK);
    /* The expiry still bounds the TTL. */
    assert_int_equal(v.msg_ttl, 0);
}

static void test_classify_rejects_ecs_with_scope(void **state)
{
    (void)state;
    /* ECS: code 8, length 7, FAMILY 1, SOURCE 24, SCOPE 24, 192.0.2. */
    const uint8_t ecs_scoped[] = {0, 8, 0, 7, 0, 1, 24, 24, 192, 0, 2};
    const uint8_t ecs_unscoped[] = {0, 8, 0, 7, 0, 1, 24, 0, 192, 0, 2};
    /* A cookie option before the ECS one. */
    const uint8_t cookie_then_ecs[] = {0, 10, 0, 8, 1, 2, 3, 4, 5, 6,
                                       7, 8,  0, 8, 0, 4, 0, 1, 0, 16};
    /* An ECS option too short to hold its scope. */
    const uint8_t ecs_short[] = {0, 8, 0, 2, 0, 1};
    struct {
        const uint8_t *opts;
        size_t len;
        enum dns_nocache why;
    } cases[] = {
        {ecs_scoped, sizeof ecs_scoped, DNS_NC_ECS_SCOPE},
        {ecs_unscoped, sizeof ecs_unscoped, DNS_NC_OK},
        {cookie_then_ecs, sizeof cookie_then_ecs, DNS_NC_ECS_SCOPE},
        {ecs_short, sizeof ecs_short, DNS_NC_ECS_SCOPE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct wire r;
        whead(&r, F_QR | F_RD | F_RA, 1, 1, 0, 1);
        wquestion(&r, DNS_T_A);
        wa(&r, OFF_WWW, 90);
        wopt(&r, false, cases[i].opts, cases[i].len);
        assert_verdict(classify_a_answer(&r), DNS_KIND_POSITIVE, cases[i].why, 90);
    }
}

static void test_classify_rejects_question_mismatch(void **state)
{
    (void)state;
    const struct dns_fixture *a = fixture("a_example_com");
    const struct dns_fixture *aaaa = fixture("aaaa_example_com");
    const struct dns_fixture *www = fixture("cname_chain");

    /* qtype differs. */
    assert_verdict(classify(aaaa->query, aaaa->query_len, a->resp, a->resp_len, 0),
                   DNS_KIND_POSITIVE, DNS_NC_MISMATCH, 300);
    /* qname differs. */
    assert_verdict(classify(www->query, www->query_len, a->resp, a->resp_len, 0), DNS_KIND_POSITIVE,
                   DNS_NC_MISMATCH, 300);
    /* qclass differs. */
    struct copy r;
    copy_resp(&r, "a_example_com");
    set_qclass(&r, DNS_C_CH);
    assert_int_equal(classify_resp_copy("a_example_com", &r, 0).why, DNS_NC_MISMATCH);
}

static void test_classify_qname_compared_ignoring_case(void **state)
{
    (void)state;
    const struct dns_fixture *mixed = fixture("a_mixed_case");
    const struct dns_fixture *a = fixture("a_example_com");
    assert_verdict(classify_fixture("a_mixed_case", 0), DNS_KIND_POSITIVE, DNS_NC_OK, 300);
    assert_verdict(classify(mixed->query, mixed->query_len, a->resp, a->resp_len, 0),
                   DNS_KIND_POSITIVE, DNS_NC_OK, 300);
}

static void test_classify_rejects_cd_mismatch(void **state)
{
    (void)state;
    /* knotd answers a CD=1 query with CD=0: that response must not be stored under CD=1. */
    assert_verdict(classify_fixture("a_example_com_cd", 0), DNS_KIND_POSITIVE, DNS_NC_MISMATCH,
                   300);

    struct copy r;
    copy_resp(&r, "a_example_com_cd");
    r.b[3] |= 0x10; /* CD echoed */
    assert_verdict(classify_resp_copy("a_example_com_cd", &r, 0), DNS_KIND_POSITIVE, DNS_NC_OK,
                   300);

    /* CD=1 in the response to a CD=0 query. */
    copy_resp(&r, "a_example_com");
    r.b[3] |= 0x10;
    assert_int_equal(classify_resp_copy("a_example_com", &r, 0).why, DNS_NC_MISMATCH);
}

/* ---- precedence ---- */

enum {
    BRK_QDCOUNT = 1 << 0,
    BRK_MISMATCH = 1 << 1,
    BRK_OPCODE = 1 << 2,
    BRK_TC = 1 << 3,
    BRK_XFR = 1 << 4,
    BRK_RCODE = 1 << 5,
    BRK_CHAIN = 1 << 6,
    BRK_RRSIG = 1 << 7,
    BRK_ECS = 1 << 8,
};

#define PREC_NOW 1000000u

/* A DO=1 response to www.example.com that breaks the rules selected in `brk`: answer
 * www CNAME web, web A (unless BRK_CHAIN), an RRSIG, an OPT with an ECS option. */
static void build_broken(struct wire *q, struct wire *r, unsigned brk)
{
    uint16_t qtype = (brk & BRK_XFR) ? DNS_T_AXFR : DNS_T_A;
    unsigned flags = F_QR | F_RD | F_RA;
    if (brk & BRK_MISMATCH) flags |= DNS_F_CD;
    if (brk & BRK_OPCODE) flags |= 2u << 11;
    if (brk & BRK_TC) flags |= DNS_F_TC;
    if (brk & BRK_RCODE) flags |= DNS_RCODE_SERVFAIL;

    wquery(q, qtype, F_RD, true);

    unsigned an = (brk & BRK_CHAIN) ? 2 : 3;
    whead(r, flags, (brk & BRK_QDCOUNT) ? 2 : 1, an, 0, 1);
    wquestion(r, qtype);
    if (brk & BRK_QDCOUNT) wquestion(r, qtype);
    WPTR(r, OFF_WWW);
    wrr(r, DNS_T_CNAME, 300, 6);
    size_t web = r->n;
    wbytes(r, "\3web", 4);
    WPTR(r, OFF_EXAMPLE);
    if (!(brk & BRK_CHAIN)) wa(r, (unsigned)web, 300);
    /* RRSIG over the CNAME: covered, alg, labels, orig TTL, expiration, inception, tag,
     * signer "example.com" written out. */
    WPTR(r, OFF_WWW);
    wrr(r, DNS_T_RRSIG, 300, 18 + 13);
    w16(r, DNS_T_CNAME);
    w8(r, 13);
    w8(r, 3);
    w32(r, 300);
    w32(r, (brk & BRK_RRSIG) ? PREC_NOW - 1 : PREC_NOW + 3600);
    w32(r, PREC_NOW - 3600);
    w16(r, 4242);
    WNAME(r, "\7example\3com");
    const uint8_t ecs[] = {0, 8, 0, 7, 0, 1, 24, (brk & BRK_ECS) ? 24 : 0, 192, 0, 2};
    wopt(r, true, ecs, sizeof ecs);
}

static void test_classify_precedence_order(void **state)
{
    (void)state;
    const struct {
        unsigned brk;
        enum dns_nocache why;
    } order[] = {
        {BRK_QDCOUNT, DNS_NC_QDCOUNT},   {BRK_MISMATCH, DNS_NC_MISMATCH},
        {BRK_OPCODE, DNS_NC_OPCODE},     {BRK_TC, DNS_NC_TC},
        {BRK_XFR, DNS_NC_XFR},           {BRK_RCODE, DNS_NC_RCODE},
        {BRK_CHAIN, DNS_NC_CNAME_CHAIN}, {BRK_RRSIG, DNS_NC_RRSIG_WINDOW},
        {BRK_ECS, DNS_NC_ECS_SCOPE},
    };
    size_t n = sizeof order / sizeof order[0];
    unsigned all = 0;
    for (size_t i = 0; i < n; i++) all |= order[i].brk;

    /* With every rule broken the first reason wins; mending it reveals the next. */
    unsigned brk = all;
    for (size_t i = 0; i < n; i++) {
        struct wire q, r;
        build_broken(&q, &r, brk);
        struct dns_verdict v = classify_wire(&q, &r, PREC_NOW);
        assert_string_equal(dns_nocache_str(v.why), dns_nocache_str(order[i].why));
        assert_int_equal(v.kind, (brk & BRK_RCODE) ? DNS_KIND_NONE : DNS_KIND_POSITIVE);
        brk &= ~order[i].brk;
    }
    struct wire q, r;
    build_broken(&q, &r, 0);
    assert_verdict(classify_wire(&q, &r, PREC_NOW), DNS_KIND_POSITIVE, DNS_NC_OK, 300);

    /* Each rule alone gives its own reason. */
    for (size_t i = 0; i < n; i++) {
        build_broken(&q, &r, order[i].brk);
        assert_int_equal(classify_wire(&q, &r, PREC_NOW).why, order[i].why);
    }
}

static void test_classify_nxdomain_answer_outranks_missing_soa(void **state)
{
    (void)state;
    struct wire r;
    whead(&r, F_QR | F_RD | F_RA | DNS_RCODE_NXDOMAIN, 1, 1, 0, 0);
    wquestion(&r, DNS_T_A);
    wa(&r, OFF_WWW, 60);
    assert_int_equal(classify_a_answer(&r).why, DNS_NC_NXDOMAIN_ANSWER);
}

/* ---- message TTL ---- */

static void test_msg_ttl_is_min_over_all_sections(void **state)
{
    (void)state;
    /* MX 3600 in the answer, glue A 300 in additional. */
    assert_verdict(classify_fixture("mx_example_com", 0), DNS_KIND_POSITIVE, DNS_NC_OK, 300);

    /* Smallest in authority. */
    struct wire r;
    whead(&r, F_QR | F_RD | F_RA, 1, 1, 1, 1);
    wquestion(&r, DNS_T_A);
    wa(&r, OFF_WWW, 500);
    WPTR(&r, OFF_EXAMPLE);
    wrr(&r, DNS_T_NS, 40, 6);
    wbytes(&r, "\3ns1", 4);
    WPTR(&r, OFF_EXAMPLE);
    wa(&r, OFF_WWW, 700);
    assert_verdict(classify_a_answer(&r), DNS_KIND_POSITIVE, DNS_NC_OK, 40);
}

static void test_msg_ttl_ignores_opt(void **state)
{
    (void)state;
    /* The OPT's TTL field carries flags (DO=1 reads as 32768, rcode bits make it larger):
     * a small one must not lower the message TTL either. a_example_com's OPT TTL field is
     * 0 while its A has 300. */
    assert_int_equal(classify_fixture("a_example_com", 0).msg_ttl, 300);

    struct wire r;
    whead(&r, F_QR | F_RD | F_RA, 1, 1, 0, 1);
    wquestion(&r, DNS_T_A);
    wa(&r, OFF_WWW, 900);
    w8(&r, 0);
    wrr(&r, DNS_T_OPT, 7, 0); /* version 0, flags 7: TTL field 7 */
    assert_verdict(classify_a_answer(&r), DNS_KIND_POSITIVE, DNS_NC_OK, 900);
}

static void test_msg_ttl_top_bit_reads_as_max_signed(void **state)
{
    (void)state;
    struct wire r;
    whead(&r, F_QR | F_RD | F_RA, 1, 2, 0, 0);
    wquestion(&r, DNS_T_A);
    wa(&r, OFF_WWW, 0x80000000u);
    wa(&r, OFF_WWW, 0xFFFFFFFFu);
    assert_verdict(classify_a_answer(&r), DNS_KIND_POSITIVE, DNS_NC_OK, 0x7FFFFFFFu);

    /* 2^31 reads above 2^31-2, so the smaller wins. */
    whead(&r, F_QR | F_RD | F_RA, 1, 2, 0, 0);
    wquestion(&r, DNS_T_A);
    wa(&r, OFF_WWW, 0x80000001u);
    wa(&r, OFF_WWW, 0x7FFFFFFEu);
    assert_verdict(classify_a_answer(&r), DNS_KIND_POSITIVE, DNS_NC_OK, 0x7FFFFFFEu);

    assert_int_equal(dns_ttl_read(0x80000000u), 0x7FFFFFFFu);
    assert_int_equal(dns_ttl_read(0x7FFFFFFFu), 0x7FFFFFFFu);
    assert_int_equal(dns_ttl_read(42), 42);
}

static void test_msg_ttl_never_past_rrsig_expiration(void **state)
{
    (void)state;
    uint32_t exp = rrsig_field("signed_a_do", 8);
    assert_verdict(classify_fixture("signed_a_do", exp - 100), DNS_KIND_POSITIVE, DNS_NC_OK, 100);
    assert_verdict(classify_fixture("signed_a_do", exp - 299), DNS_KIND_POSITIVE, DNS_NC_OK, 299);
    assert_verdict(classify_fixture("signed_a_do", exp - 301), DNS_KIND_POSITIVE, DNS_NC_OK, 300);
    assert_int_equal(classify_fixture("signed_a_do", exp + 1000).msg_ttl, 0);
}

static void test_msg_ttl_earliest_of_several_rrsigs(void **state)
{
    (void)state;
    /* Two RRSIGs, the second expiring first. */
    struct wire r;
    whead(&r, F_QR | F_RD | F_RA, 1, 3, 0, 1);
    wquestion(&r, DNS_T_A);
    wa(&r, OFF_WWW, 3000);
    const uint32_t exps[] = {PREC_NOW + 2000, PREC_NOW + 50};
    for (size_t i = 0; i < 2; i++) {
        WPTR(&r, OFF_WWW);
        wrr(&r, DNS_T_RRSIG, 3000, 18 + 13);
        w16(&r, DNS_T_A);
        w8(&r, 13);
        w8(&r, 3);
        w32(&r, 3000);
        w32(&r, exps[i]);
        w32(&r, PREC_NOW - 10);
        w16(&r, (unsigned)i);
        WNAME(&r, "\7example\3com");
    }
    wopt(&r, true, NULL, 0);
    struct wire q;
    wquery(&q, DNS_T_A, F_RD, true);
    assert_verdict(classify_wire(&q, &r, PREC_NOW), DNS_KIND_POSITIVE, DNS_NC_OK, 50);
}

static void test_negative_ttl_is_soa_minimum_when_smaller(void **state)
{
    (void)state;
    struct wire r;
    whead(&r, F_QR | F_RD | F_RA | DNS_RCODE_NXDOMAIN, 1, 0, 1, 0);
    wquestion(&r, DNS_T_A);
    wsoa(&r, 3600, 60);
    assert_verdict(classify_a_answer(&r), DNS_KIND_NEGATIVE, DNS_NC_OK, 60);
}

static void test_negative_ttl_is_soa_ttl_when_smaller(void **state)
{
    (void)state;
    struct wire r;
    whead(&r, F_QR | F_RD | F_RA, 1, 0, 1, 0); /* NODATA */
    wquestion(&r, DNS_T_A);
    wsoa(&r, 30, 600);
    assert_verdict(classify_a_answer(&r), DNS_KIND_NEGATIVE, DNS_NC_OK, 30);
}

static void test_negative_ttl_uses_first_soa_only(void **state)
{
    (void)state;
    /* Other RRs' TTLs do not count, a second SOA neither. */
    struct wire r;
    whead(&r, F_QR | F_RD | F_RA | DNS_RCODE_NXDOMAIN, 1, 0, 2, 1);
    wquestion(&r, DNS_T_A);
    wsoa(&r, 900, 800);
    wsoa(&r, 10, 10);
    wa(&r, OFF_WWW, 5);
    assert_verdict(classify_a_answer(&r), DNS_KIND_NEGATIVE, DNS_NC_OK, 800);
}

static void test_negative_ttl_top_bit_soa_fields(void **state)
{
    (void)state;
    struct wire r;
    whead(&r, F_QR | F_RD | F_RA | DNS_RCODE_NXDOMAIN, 1, 0, 1, 0);
    wquestion(&r, DNS_T_A);
    wsoa(&r, 0x90000000u, 0xF0000000u);
    assert_verdict(classify_a_answer(&r), DNS_KIND_NEGATIVE, DNS_NC_OK, 0x7FFFFFFFu);

    whead(&r, F_QR | F_RD | F_RA | DNS_RCODE_NXDOMAIN, 1, 0, 1, 0);
    wquestion(&r, DNS_T_A);
    wsoa(&r, 0x90000000u, 120);
    assert_verdict(classify_a_answer(&r), DNS_KIND_NEGATIVE, DNS_NC_OK, 120);
}

static void test_classify_never_sets_zero_ttl(void **state)
{
    (void)state;
    /* CHAOS version.server answers with TTL 0: the message TTL is 0, the verdict still OK;
     * whether 0 survives the bounds is the caller's call. */
    assert_verdict(classify_fixture("chaos_version", 0), DNS_KIND_POSITIVE, DNS_NC_OK, 0);
}

static void test_classify_handles_large_answers(void **state)
{
    (void)state;
    assert_verdict(classify_fixture("large_txt", 0), DNS_KIND_POSITIVE, DNS_NC_OK, 900);
    assert_verdict(classify_fixture("txt_example_com", 0), DNS_KIND_POSITIVE, DNS_NC_OK, 600);
}

/* ---- clamp ---- */

static void test_ttl_clamp_keeps_ttl_inside_bounds(void **state)
{
    (void)state;
    assert_int_equal(dns_ttl_clamp(300, 0, 3600), 300);
    assert_int_equal(dns_ttl_clamp(300, 300, 300), 300);
}

static void test_ttl_clamp_zero_ttl_with_zero_min_stays_zero(void **state)
{
    (void)state;
    assert_int_equal(dns_ttl_clamp(0, 0, 3600), 0);
    assert_int_equal(dns_ttl_clamp(300, 0, 0), 0);
}

static void test_ttl_clamp_min_raises(void **state)
{
    (void)state;
    assert_int_equal(dns_ttl_clamp(0, 30, 3600), 30);
    assert_int_equal(dns_ttl_clamp(10, 60, 3600), 60);
    /* MIN above MAX: MIN wins, as max(min, min(ttl, max)) says. */
    assert_int_equal(dns_ttl_clamp(10, 60, 20), 60);
}

static void test_ttl_clamp_max_above_one_hour_honoured(void **state)
{
    (void)state;
    assert_int_equal(dns_ttl_clamp(86400, 0, 86400), 86400);
    assert_int_equal(dns_ttl_clamp(7200, 0, 9984), 7200);
    assert_int_equal(dns_ttl_clamp(100000, 0, 86400), 86400);
    assert_int_equal(dns_ttl_clamp(0x7FFFFFFFu, 0, 86400), 86400);
}

/* ---- strings ---- */

static void test_nocache_str_names_every_reason(void **state)
{
    (void)state;
    const char *seen[DNS_NC_ZERO_TTL + 1];
    for (int i = 0; i <= DNS_NC_ZERO_TTL; i++) {
        seen[i] = dns_nocache_str((enum dns_nocache)i);
        assert_non_null(seen[i]);
        assert_true(strlen(seen[i]) > 0);
        assert_string_not_equal(seen[i], "unknown reason");
        for (int j = 0; j < i; j++) assert_string_not_equal(seen[i], seen[j]);
    }
    assert_string_equal(dns_nocache_str((enum dns_nocache)(DNS_NC_ZERO_TTL + 1)), "unknown reason");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify_noerror_answer_is_positive),
        cmocka_unit_test(test_classify_referral_is_positive),
        cmocka_unit_test(test_classify_nxdomain_is_negative),
        cmocka_unit_test(test_classify_nodata_with_soa_is_negative),
        cmocka_unit_test(test_classify_empty_noerror_is_positive_with_ttl_5),
        cmocka_unit_test(test_classify_noerror_authority_without_soa_or_ns_is_positive),
        cmocka_unit_test(test_classify_error_rcodes_are_kind_none),
        cmocka_unit_test(test_classify_extended_rcode_is_kind_none),
        cmocka_unit_test(test_classify_rejects_qdcount_not_one),
        cmocka_unit_test(test_classify_rejects_truncated),
        cmocka_unit_test(test_classify_rejects_opcode_other_than_query),
        cmocka_unit_test(test_classify_rejects_zone_transfers),
        cmocka_unit_test(test_classify_rejects_nxdomain_with_answer),
        cmocka_unit_test(test_classify_rejects_nxdomain_without_soa),
        cmocka_unit_test(test_classify_accepts_cname_chain_ending_in_qtype),
        cmocka_unit_test(test_classify_rejects_dangling_cname),
        cmocka_unit_test(test_classify_rejects_cname_loop),
        cmocka_unit_test(test_classify_rejects_forked_cname_chain),
        cmocka_unit_test(test_classify_cname_chain_ignores_case_and_compression),
        cmocka_unit_test(test_classify_cname_chain_not_required_for_any_and_cname),
        cmocka_unit_test(test_classify_cname_chain_not_required_with_soa),
        cmocka_unit_test(test_classify_long_cname_chain_followed_to_its_end),
        cmocka_unit_test(test_classify_rrsig_in_window_is_cacheable),
        cmocka_unit_test(test_classify_rejects_rrsig_after_expiration),
        cmocka_unit_test(test_classify_rejects_rrsig_before_inception),
        cmocka_unit_test(test_classify_rrsig_window_uses_serial_arithmetic),
        cmocka_unit_test(test_classify_rrsig_window_only_checked_with_do),
        cmocka_unit_test(test_classify_rejects_ecs_with_scope),
        cmocka_unit_test(test_classify_rejects_question_mismatch),
        cmocka_unit_test(test_classify_qname_compared_ignoring_case),
        cmocka_unit_test(test_classify_rejects_cd_mismatch),
        cmocka_unit_test(test_classify_precedence_order),
        cmocka_unit_test(test_classify_nxdomain_answer_outranks_missing_soa),
        cmocka_unit_test(test_msg_ttl_is_min_over_all_sections),
        cmocka_unit_test(test_msg_ttl_ignores_opt),
        cmocka_unit_test(test_msg_ttl_top_bit_reads_as_max_signed),
        cmocka_unit_test(test_msg_ttl_never_past_rrsig_expiration),
        cmocka_unit_test(test_msg_ttl_earliest_of_several_rrsigs),
        cmocka_unit_test(test_negative_ttl_is_soa_minimum_when_smaller),
        cmocka_unit_test(test_negative_ttl_is_soa_ttl_when_smaller),
        cmocka_unit_test(test_negative_ttl_uses_first_soa_only),
        cmocka_unit_test(test_negative_ttl_top_bit_soa_fields),
        cmocka_unit_test(test_classify_never_sets_zero_ttl),
        cmocka_unit_test(test_classify_handles_large_answers),
        cmocka_unit_test(test_ttl_clamp_keeps_ttl_inside_bounds),
        cmocka_unit_test(test_ttl_clamp_zero_ttl_with_zero_min_stays_zero),
        cmocka_unit_test(test_ttl_clamp_min_raises),
        cmocka_unit_test(test_ttl_clamp_max_above_one_hour_honoured),
        cmocka_unit_test(test_nocache_str_names_every_reason),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
