/* tests/unit/test_dns_edit.c — the hit reply (SPEC §1.4): header and question patching, TTLs,
 * the fresh OPT, fitting to the client's limit (compression, dropping additional, TC), and
 * dns_msg_compress. Real knotd messages from the fixtures, plus messages built byte by byte
 * here for the shapes knotd never sends (uncompressed names, an OPT before other RRs). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "dns/dns.h"
#include "support/fixtures.h"

#define TEST_RRS 512
#define TTL      4242u
#define OUR_UDP  1232

/* ---- building messages byte by byte ---- */

struct mb {
    uint8_t b[8192];
    size_t n;
};

static void mb_u8(struct mb *m, uint8_t v)
{
    assert_true(m->n < sizeof m->b);
    m->b[m->n++] = v;
}

static void mb_u16(struct mb *m, uint16_t v)
{
    mb_u8(m, (uint8_t)(v >> 8));
    mb_u8(m, (uint8_t)v);
}

static void mb_u32(struct mb *m, uint32_t v)
{
    mb_u16(m, (uint16_t)(v >> 16));
    mb_u16(m, (uint16_t)v);
}

static void mb_header(struct mb *m, uint16_t id, uint16_t flags, uint16_t qd, uint16_t an,
                      uint16_t ns, uint16_t ar)
{
    m->n = 0;
    mb_u16(m, id);
    mb_u16(m, flags);
    mb_u16(m, qd);
    mb_u16(m, an);
    mb_u16(m, ns);
    mb_u16(m, ar);
}

/* An uncompressed name from dotted text ("www.example.com"; "" is the root). */
static void mb_name(struct mb *m, const char *text)
{
    while (*text) {
        const char *dot = strchr(text, '.');
        size_t len = dot ? (size_t)(dot - text) : strlen(text);
        mb_u8(m, (uint8_t)len);
        for (size_t i = 0; i < len; i++) mb_u8(m, (uint8_t)text[i]);
        text += len + (dot ? 1 : 0);
    }
    mb_u8(m, 0);
}

static void mb_ptr(struct mb *m, uint16_t off)
{
    mb_u16(m, (uint16_t)(0xC000u | off));
}

/* Fixed RR fields after the owner; returns where RDLENGTH goes (see mb_rr_end). */
static size_t mb_rr(struct mb *m, uint16_t type, uint16_t rclass, uint32_t ttl)
{
    mb_u16(m, type);
    mb_u16(m, rclass);
    mb_u32(m, ttl);
    size_t at = m->n;
    mb_u16(m, 0);
    return at;
}

static void mb_rr_end(struct mb *m, size_t at)
{
    dns_put16(m->b + at, (uint16_t)(m->n - at - 2));
}

static void mb_a(struct mb *m, const char *owner, uint32_t addr)
{
    mb_name(m, owner);
    size_t at = mb_rr(m, DNS_T_A, DNS_C_IN, 300);
    mb_u32(m, addr);
    mb_rr_end(m, at);
}

static void mb_opt(struct mb *m, uint16_t udp, bool do_bit)
{
    mb_u8(m, 0);
    size_t at = mb_rr(m, DNS_T_OPT, udp, do_bit ? DNS_EDNS_DO : 0);
    mb_rr_end(m, at);
}

/* A query for `name` A: flags as given, an OPT when udp is not 0. */
static void query(struct dns_question *q, uint16_t id, uint16_t flags, const char *name,
                  uint16_t udp, bool do_bit)
{
    struct mb m;
    mb_header(&m, id, flags, 1, 0, 0, udp ? 1 : 0);
    mb_name(&m, name);
    mb_u16(&m, DNS_T_A);
    mb_u16(&m, DNS_C_IN);
    if (udp) mb_opt(&m, udp, do_bit);
    assert_int_equal(dns_question_parse(q, m.b, m.n), DNS_OK);
}

/* ---- parsing what we have ---- */

struct parsed {
    struct dns_msg m;
    struct dns_rr rr[TEST_RRS];
};

static void parse(struct parsed *p, const uint8_t *buf, size_t len)
{
    assert_int_equal(dns_msg_parse(&p->m, buf, len, p->rr, TEST_RRS), DNS_OK);
}

static void fixture_query(struct dns_question *q, const char *name)
{
    const struct dns_fixture *f = fixture(name);
    assert_int_equal(dns_question_parse(q, f->query, f->query_len), DNS_OK);
}

static void fixture_resp(struct parsed *p, const char *name)
{
    const struct dns_fixture *f = fixture(name);
    parse(p, f->resp, f->resp_len);
}

struct reply {
    uint8_t b[DNS_MSG_MAX];
    size_t n;
    struct parsed p;
};

static void build(struct reply *r, const struct dns_msg *src, const struct dns_question *q,
                  bool tcp)
{
    assert_int_equal(dns_reply_build(r->b, sizeof r->b, &r->n, src, q, TTL, OUR_UDP, tcp), DNS_OK);
    assert_true(r->n <= dns_reply_limit(q, OUR_UDP, tcp));
    parse(&r->p, r->b, r->n);
}

static size_t count_type(const struct parsed *p, uint16_t type)
{
    size_t n = 0;
    for (size_t i = 0; i < p->m.nrr; i++) n += p->rr[i].type == type;
    return n;
}

/* Expanded owner of rr[i]. */
static size_t owner(const struct parsed *p, size_t i, uint8_t out[DNS_NAME_MAX])
{
    size_t len, next;
    assert_int_equal(dns_name_unpack(p->m.buf, p->m.len, p->rr[i].owner, out, &len, &next), DNS_OK);
    return len;
}

/* ---- header ---- */

static void test_reply_copies_id_rd_cd_and_opcode_from_query(void **state)
{
    struct parsed s;
    struct dns_question q;
    struct reply r;
    fixture_resp(&s, "a_example_com"); /* RD=0, CD=0, opcode 0 in the stored header */
    /* opcode 2 (STATUS) is not something we answer, but the editor must carry it as is. */
    query(&q, 0xBEEF, DNS_F_RD | DNS_F_CD | (2u << 11), "example.com", 1232, false);
    build(&r, &s.m, &q, false);
    assert_int_equal(r.p.m.id, 0xBEEF);
    assert_true(r.p.m.flags & DNS_F_RD);
    assert_true(r.p.m.flags & DNS_F_CD);
    assert_int_equal(DNS_OPCODE(r.p.m.flags), 2);

    query(&q, 7, 0, "example.com", 1232, false);
    uint8_t stored[512];
    memcpy(stored, fixture("a_example_com")->resp, fixture("a_example_com")->resp_len);
    stored[2] |= DNS_F_RD >> 8;
    stored[3] |= DNS_F_CD;
    parse(&s, stored, fixture("a_example_com")->resp_len);
    build(&r, &s.m, &q, false);
    assert_int_equal(r.p.m.id, 7);
    assert_false(r.p.m.flags & (DNS_F_RD | DNS_F_CD));
}

static void test_reply_sets_qr_and_aa_keeps_ra_and_rcode(void **state)
{
    const struct dns_fixture *f = fixture("nxdomain");
    uint8_t stored[512];
    memcpy(stored, f->resp, f->resp_len);
    stored[2] &= (uint8_t) ~((DNS_F_AA | DNS_F_QR) >> 8); /* a recursor's answer: AA=0 */
    stored[3] |= DNS_F_RA;
    struct parsed s;
    parse(&s, stored, f->resp_len);
    struct dns_question q;
    fixture_query(&q, "nxdomain");
    struct reply r;
    build(&r, &s.m, &q, false);
    assert_true(r.p.m.flags & DNS_F_QR);
    assert_true(r.p.m.flags & DNS_F_AA);
    assert_true(r.p.m.flags & DNS_F_RA);
    assert_int_equal(r.p.m.flags & DNS_F_RCODE_MASK, DNS_RCODE_NXDOMAIN);
}

/* A stored entry with AD=1, asked with the given query flags / DO. */
static bool reply_ad(uint16_t qflags, bool do_bit, uint16_t udp)
{
    const struct dns_fixture *f = fixture("a_example_com");
    uint8_t stored[512];
    memcpy(stored, f->resp, f->resp_len);
    stored[3] |= DNS_F_AD;
    struct parsed s;
    parse(&s, stored, f->resp_len);
    struct dns_question q;
    query(&q, 1, qflags, "example.com", udp, do_bit);
    struct reply r;
    build(&r, &s.m, &q, false);
    return (r.p.m.flags & DNS_F_AD) != 0;
}

static void test_reply_keeps_ad_when_query_has_do(void **state)
{
    assert_true(reply_ad(DNS_F_RD, true, 1232));
}

static void test_reply_keeps_ad_when_query_has_ad(void **state)
{
    assert_true(reply_ad(DNS_F_RD | DNS_F_AD, false, 0));
}

static void test_reply_clears_ad_otherwise(void **state)
{
    assert_false(reply_ad(DNS_F_RD, false, 1232));
    assert_false(reply_ad(DNS_F_RD, false, 0));
}

static void test_reply_never_sets_ad_the_entry_lacks(void **state)
{
    struct parsed s;
    fixture_resp(&s, "a_example_com");
    assert_false(s.m.flags & DNS_F_AD);
    struct dns_question q;
    query(&q, 1, DNS_F_AD, "example.com", 1232, true);
    struct reply r;
    build(&r, &s.m, &q, false);
    assert_false(r.p.m.flags & DNS_F_AD);
}

/* ---- question ---- */

static void test_reply_echoes_client_qname_case(void **state)
{
    struct parsed s;
    fixture_resp(&s, "a_example_com"); /* stored in lowercase */
    struct dns_question q;
    fixture_query(&q, "a_mixed_case");
    struct reply r;
    build(&r, &s.m, &q, false);
    assert_int_equal(r.p.m.qend, DNS_HEADER_LEN + q.name_len + 4);
    assert_memory_equal(r.b + DNS_HEADER_LEN, q.name, q.name_len);
    assert_memory_not_equal(r.b + DNS_HEADER_LEN, s.m.buf + DNS_HEADER_LEN, q.name_len);
    assert_int_equal(r.p.m.qtype, DNS_T_A);
    assert_int_equal(r.p.m.qclass, DNS_C_IN);
}

static void test_reply_rejects_query_name_of_other_length(void **state)
{
    struct parsed s;
    fixture_resp(&s, "a_example_com");
    struct dns_question q;
    query(&q, 1, 0, "www.example.com", 1232, false);
    uint8_t out[1024];
    size_t n;
    assert_int_not_equal(dns_reply_build(out, sizeof out, &n, &s.m, &q, TTL, OUR_UDP, false),
                         DNS_OK);
}

/* Nothing precedes the question, yet its name can point into one of its own labels (here
 * into the middle of one): the parser refuses it, so no entry whose question name could not
 * be overwritten with the client's bytes ever reaches dns_reply_build. */
static void test_reply_never_sees_entry_whose_question_name_is_compressed(void **state)
{
    static const uint8_t name[] = {5, 'a', 'b', 1, 'c', 0, 0xC0, 15};
    struct mb m;
    mb_header(&m, 1, DNS_F_QR, 1, 0, 0, 0);
    for (size_t i = 0; i < sizeof name; i++) mb_u8(&m, name[i]);
    mb_u16(&m, DNS_T_A);
    mb_u16(&m, DNS_C_IN);
    struct parsed s;
    assert_int_equal(dns_msg_parse(&s.m, m.b, m.n, s.rr, TEST_RRS), DNS_ERR_BAD_POINTER);
    struct dns_entry e;
    assert_int_equal(dns_entry_decode(&e, m.b, m.n, s.rr, TEST_RRS), DNS_ENTRY_MALFORMED);
    assert_int_equal(e.err, DNS_ERR_BAD_POINTER);
}

/* ---- TTLs ---- */

static void test_reply_sets_ttl_on_every_rr_but_opt(void **state)
{
    struct parsed s;
    fixture_resp(&s, "signed_nx_do"); /* authority SOA, NSEC and RRSIGs */
    struct dns_question q;
    fixture_query(&q, "signed_nx_do");
    struct reply r;
    build(&r, &s.m, &q, false);
    assert_true(r.p.m.nrr > 3);
    for (size_t i = 0; i < r.p.m.nrr; i++) {
        uint32_t ttl = dns_get32(r.b + r.p.rr[i].ttl_off);
        if (r.p.rr[i].type == DNS_T_OPT)
            assert_int_equal(ttl, DNS_EDNS_DO);
        else
            assert_int_equal(ttl, TTL);
    }
}

static void test_set_ttl_skips_opt(void **state)
{
    const struct dns_fixture *f = fixture("mx_example_com");
    uint8_t buf[512];
    memcpy(buf, f->resp, f->resp_len);
    struct parsed s;
    parse(&s, buf, f->resp_len);
    assert_true(s.m.opt >= 0);
    uint32_t opt_ttl = dns_get32(buf + s.rr[s.m.opt].ttl_off);
    dns_msg_set_ttl(buf, &s.m, 77);
    for (size_t i = 0; i < s.m.nrr; i++)
        assert_int_equal(dns_get32(buf + s.rr[i].ttl_off), (int)i == s.m.opt ? opt_ttl : 77u);
}

/* ---- OPT ---- */

static void test_reply_appends_opt_with_our_size_and_query_do(void **state)
{
    struct parsed s;
    fixture_resp(&s, "a_example_com_do");
    struct dns_question q;
    query(&q, 1, 0, "example.com", 4096, true);
    struct reply r;
    build(&r, &s.m, &q, false);
    assert_true(r.p.m.has_edns);
    assert_int_equal(r.p.m.edns_udp, OUR_UDP);
    assert_true(r.p.m.edns_do);
    assert_int_equal(r.p.m.edns_version, 0);
    assert_int_equal(r.p.m.edns_ext_rcode, 0);
    assert_int_equal(r.p.rr[r.p.m.opt].rdlen, 0);
    assert_int_equal(r.p.m.opt, r.p.m.nrr - 1);

    query(&q, 1, 0, "example.com", 4096, false);
    build(&r, &s.m, &q, false);
    assert_true(r.p.m.has_edns);
    assert_false(r.p.m.edns_do);
}

static void test_reply_has_no_opt_without_query_edns(void **state)
{
    struct parsed s;
    fixture_resp(&s, "a_example_com"); /* knotd's response carries an OPT */
    assert_true(s.m.has_edns);
    struct dns_question q;
    fixture_query(&q, "a_example_com_noedns");
    struct reply r;
    build(&r, &s.m, &q, false);
    assert_false(r.p.m.has_edns);
    assert_int_equal(r.p.m.count[3], s.m.count[3] - 1);
}

static void test_reply_replaces_stored_opt_by_ours(void **state)
{
    struct parsed s;
    fixture_resp(&s, "mx_example_com"); /* glue, then knotd's OPT */
    struct dns_question q;
    query(&q, 1, 0, "example.com", 1400, false);
    q.qtype = DNS_T_MX;
    struct reply r;
    build(&r, &s.m, &q, false);
    assert_int_equal(count_type(&r.p, DNS_T_OPT), 1);
    assert_int_equal(r.p.m.edns_udp, OUR_UDP);
    assert_int_equal(r.p.m.count[3], s.m.count[3]);
    assert_int_equal(r.n, s.m.len);
}

/* A legacy entry whose OPT is followed by a record that points back past it. */
static void test_reply_drops_stored_opt_before_other_records(void **state)
{
    struct mb m;
    mb_header(&m, 1, DNS_F_QR | DNS_F_AA, 1, 1, 0, 3);
    mb_name(&m, "example.com");
    mb_u16(&m, DNS_T_MX);
    mb_u16(&m, DNS_C_IN);
    mb_ptr(&m, 12);
    size_t at = mb_rr(&m, DNS_T_MX, DNS_C_IN, 300);
    mb_u16(&m, 10);
    mb_u8(&m, 4);
    mb_u8(&m, 'm');
    mb_u8(&m, 'a');
    mb_u8(&m, 'i');
    mb_u8(&m, 'l');
    mb_ptr(&m, 12);
    mb_rr_end(&m, at);
    mb_opt(&m, 4096, false);
    size_t glue = m.n;
    mb_u8(&m, 5); /* "mail2.example.com" via a pointer to "example.com" */
    for (const char *c = "mail2"; *c; c++) mb_u8(&m, (uint8_t)*c);
    mb_ptr(&m, 12);
    at = mb_rr(&m, DNS_T_A, DNS_C_IN, 300);
    mb_u32(&m, 0x01020304);
    mb_rr_end(&m, at);
    mb_ptr(&m, (uint16_t)glue); /* mail2.example.com again, pointing past the OPT */
    at = mb_rr(&m, DNS_T_A, DNS_C_IN, 300);
    mb_u32(&m, 0x05060708);
    mb_rr_end(&m, at);

    struct parsed s;
    parse(&s, m.b, m.n);
    assert_int_equal(s.m.opt, 1);
    struct dns_question q;
    query(&q, 9, 0, "EXAMPLE.com", 0, false);
    q.qtype = DNS_T_MX;
    struct reply r;
    build(&r, &s.m, &q, false);
    assert_false(r.p.m.has_edns);
    assert_int_equal(r.p.m.count[3], 2);
    assert_int_equal(r.n, m.n - 11);
    uint8_t a[DNS_NAME_MAX], b[DNS_NAME_MAX];
    size_t la = owner(&r.p, 1, a), lb = owner(&r.p, 2, b);
    assert_int_equal(la, lb);
    assert_memory_equal(a, b, la);
    for (size_t i = 0; i < r.p.m.nrr; i++)
        assert_int_equal(dns_get32(r.b + r.p.rr[i].ttl_off), TTL);
}

/* ---- limits ---- */

static void test_limit_is_512_without_edns(void **state)
{
    struct dns_question q;
    query(&q, 1, 0, "example.com", 0, false);
    assert_int_equal(dns_reply_limit(&q, 4096, false), 512);
}

static void test_limit_is_smaller_of_client_and_ours_at_least_512(void **state)
{
    struct dns_question q;
    query(&q, 1, 0, "example.com", 4096, false);
    assert_int_equal(dns_reply_limit(&q, 1232, false), 1232);
    query(&q, 1, 0, "example.com", 1000, false);
    assert_int_equal(dns_reply_limit(&q, 1232, false), 1000);
    query(&q, 1, 0, "example.com", 100, false);
    assert_int_equal(dns_reply_limit(&q, 1232, false), 512);
    query(&q, 1, 0, "example.com", 4096, false);
    assert_int_equal(dns_reply_limit(&q, 300, false), 512);
}

static void test_limit_is_65535_over_tcp(void **state)
{
    struct dns_question q;
    query(&q, 1, 0, "example.com", 0, false);
    assert_int_equal(dns_reply_limit(&q, 1232, true), 65535);
    query(&q, 1, 0, "example.com", 1232, false);
    assert_int_equal(dns_reply_limit(&q, 1232, true), 65535);
}

/* `n` A records for one long owner, written uncompressed (as some writers store them). */
static void uncompressed_many_a(struct mb *m, unsigned n)
{
    const char *name = "a-rather-long-label-for-compression.example.com";
    mb_header(m, 1, DNS_F_QR | DNS_F_AA, 1, (uint16_t)n, 0, 0);
    mb_name(m, name);
    mb_u16(m, DNS_T_A);
    mb_u16(m, DNS_C_IN);
    for (unsigned i = 0; i < n; i++) mb_a(m, name, 0x0A000000u + i);
}

static void test_reply_compresses_uncompressed_entry_that_fits_only_compressed(void **state)
{
    struct mb m;
    uncompressed_many_a(&m, 20);
    assert_true(m.n > 512);
    struct parsed s;
    parse(&s, m.b, m.n);
    assert_false(s.m.compressed);
    struct dns_question q;
    query(&q, 3, 0, "a-rather-long-label-for-compression.example.COM", 0, false);
    struct reply r;
    build(&r, &s.m, &q, false);
    assert_true(r.n <= 512);
    assert_false(r.p.m.flags & DNS_F_TC);
    assert_true(r.p.m.compressed);
    assert_int_equal(r.p.m.count[1], 20);
    for (size_t i = 0; i < r.p.m.nrr; i++) {
        uint8_t name[DNS_NAME_MAX];
        size_t len = owner(&r.p, i, name);
        /* Owners point at the question, which now has the client's case. */
        assert_int_equal(len, q.name_len);
        assert_memory_equal(name, q.name, len);
        assert_int_equal(dns_get32(r.b + r.p.rr[i].ttl_off), TTL);
        assert_int_equal(r.p.rr[i].rdlen, 4);
        assert_int_equal(dns_get32(r.b + r.p.rr[i].rdata), 0x0A000000u + i);
    }
}

static void test_reply_leaves_entry_that_fits_uncompressed(void **state)
{
    struct mb m;
    uncompressed_many_a(&m, 3);
    struct parsed s;
    parse(&s, m.b, m.n);
    struct dns_question q;
    query(&q, 3, 0, "a-rather-long-label-for-compression.example.com", 0, false);
    struct reply r;
    build(&r, &s.m, &q, false);
    assert_int_equal(r.n, m.n);
    assert_false(r.p.m.compressed);
}

/* A compressed answer of one A record and `glue` additional A records of distinct names. */
static void compressed_with_glue(struct mb *m, unsigned glue)
{
    mb_header(m, 1, DNS_F_QR | DNS_F_AA, 1, 1, 0, (uint16_t)glue);
    mb_name(m, "example.com");
    mb_u16(m, DNS_T_A);
    mb_u16(m, DNS_C_IN);
    mb_ptr(m, 12);
    size_t at = mb_rr(m, DNS_T_A, DNS_C_IN, 300);
    mb_u32(m, 0x01010101);
    mb_rr_end(m, at);
    for (unsigned i = 0; i < glue; i++) {
        mb_u8(m, 6);
        mb_u8(m, 'g');
        mb_u8(m, 'l');
        mb_u8(m, 'u');
        mb_u8(m, 'e');
        mb_u8(m, (uint8_t)('0' + i / 10));
        mb_u8(m, (uint8_t)('0' + i % 10));
        mb_ptr(m, 12);
        at = mb_rr(m, DNS_T_A, DNS_C_IN, 300);
        mb_u32(m, 0x0A000000u + i);
        mb_rr_end(m, at);
    }
}

static void test_reply_drops_additional_whole_without_tc(void **state)
{
    struct mb m;
    compressed_with_glue(&m, 40); /* 45 + 40 * 23 bytes */
    struct parsed s;
    parse(&s, m.b, m.n);
    assert_true(s.m.compressed);
    struct dns_question q;
    query(&q, 3, 0, "example.com", 0, false);
    struct reply r;
    build(&r, &s.m, &q, false);
    assert_false(r.p.m.flags & DNS_F_TC);
    assert_int_equal(r.p.m.count[1], 1);
    size_t kept = r.p.m.count[3];
    assert_true(kept > 0 && kept < 40);
    /* As many as fit, and the next one would not. */
    assert_true(r.n + 23 > 512);
    /* The kept ones are the first ones, unchanged but for their TTL. */
    for (size_t i = 1; i <= kept; i++) {
        assert_int_equal(dns_get32(r.b + r.p.rr[i].rdata), 0x0A000000u + i - 1);
        assert_int_equal(dns_get32(r.b + r.p.rr[i].ttl_off), TTL);
    }
}

static void test_reply_keeps_our_opt_when_dropping_additional(void **state)
{
    struct mb m;
    compressed_with_glue(&m, 40);
    struct parsed s;
    parse(&s, m.b, m.n);
    struct dns_question q;
    query(&q, 3, 0, "example.com", 600, true);
    struct reply r;
    build(&r, &s.m, &q, false);
    assert_false(r.p.m.flags & DNS_F_TC);
    assert_true(r.n <= 600 && r.n + 23 > 600);
    assert_true(r.p.m.has_edns);
    assert_int_equal(r.p.m.opt, r.p.m.nrr - 1);
    assert_true(r.p.m.edns_do);
}

static void test_reply_compresses_then_drops_additional(void **state)
{
    struct mb m;
    mb_header(&m, 1, DNS_F_QR | DNS_F_AA, 1, 1, 0, 30);
    mb_name(&m, "example.com");
    mb_u16(&m, DNS_T_A);
    mb_u16(&m, DNS_C_IN);
    mb_a(&m, "example.com", 0x01010101);
    char name[32];
    for (unsigned i = 0; i < 30; i++) {
        name[0] = 'g', name[1] = (char)('0' + i / 10), name[2] = (char)('0' + i % 10);
        memcpy(name + 3, ".example.com", sizeof ".example.com");
        mb_a(&m, name, 0x0A000000u + i);
    }
    struct parsed s;
    parse(&s, m.b, m.n);
    assert_false(s.m.compressed);
    struct dns_question q;
    query(&q, 3, 0, "example.com", 0, false);
    struct reply r;
    build(&r, &s.m, &q, false);
    assert_false(r.p.m.flags & DNS_F_TC);
    assert_true(r.p.m.compressed);
    /* Compressed glue takes 20 bytes, uncompressed 31: more fit than without compression. */
    assert_true(r.p.m.count[3] > (512 - 56) / 31);
    assert_true(r.p.m.count[3] < 30);
    assert_true(r.n + 20 > 512);
}

static void test_reply_is_header_question_opt_with_tc_when_answer_does_not_fit(void **state)
{
    struct parsed s;
    fixture_resp(&s, "large_txt");
    struct dns_question q;
    fixture_query(&q, "large_txt");
    q.udp_size = 512;
    struct reply r;
    build(&r, &s.m, &q, false);
    assert_true(r.p.m.flags & DNS_F_TC);
    assert_int_equal(r.p.m.count[0], 1);
    assert_int_equal(r.p.m.count[1], 0);
    assert_int_equal(r.p.m.count[2], 0);
    assert_int_equal(r.p.m.count[3], 1);
    assert_true(r.p.m.has_edns);
    assert_int_equal(r.n, s.m.qend + 11);
    assert_memory_equal(r.b + DNS_HEADER_LEN, q.name, q.name_len);
}

static void test_reply_tc_without_edns_has_no_opt(void **state)
{
    struct parsed s;
    fixture_resp(&s, "many_a");
    struct dns_question q;
    fixture_query(&q, "many_a");
    q.has_edns = false, q.do_bit = false, q.udp_size = 0;
    struct reply r;
    build(&r, &s.m, &q, false);
    assert_true(r.p.m.flags & DNS_F_TC);
    assert_int_equal(r.p.m.nrr, 0);
    assert_int_equal(r.n, s.m.qend);
}

static void test_reply_over_tcp_is_whole(void **state)
{
    struct parsed s;
    fixture_resp(&s, "large_txt");
    struct dns_question q;
    fixture_query(&q, "large_txt");
    q.has_edns = false, q.do_bit = false, q.udp_size = 0;
    struct reply r;
    build(&r, &s.m, &q, true);
    assert_false(r.p.m.flags & DNS_F_TC);
    assert_int_equal(r.p.m.count[1], s.m.count[1]);
    assert_int_equal(r.n, s.m.len - s.m.opt_len);
}

static void test_reply_fails_when_out_too_small(void **state)
{
    struct parsed s;
    fixture_resp(&s, "ns_example_com");
    struct dns_question q;
    fixture_query(&q, "ns_example_com");
    uint8_t out[64];
    size_t n;
    assert_int_equal(dns_reply_build(out, sizeof out, &n, &s.m, &q, TTL, OUR_UDP, false),
                     DNS_ERR_NO_SPACE);
}

static void test_reply_fails_when_out_too_small_to_compress_into(void **state)
{
    struct mb m;
    uncompressed_many_a(&m, 20);
    struct parsed s;
    parse(&s, m.b, m.n);
    struct dns_question q;
    query(&q, 3, 0, "a-rather-long-label-for-compression.example.com", 1232, false);
    uint8_t out[8];
    size_t n;
    assert_int_equal(dns_reply_build(out, sizeof out, &n, &s.m, &q, TTL, 512, false),
                     DNS_ERR_NO_SPACE);
}

/* Every fixture, every kind of client: the reply parses, fits, and answers the question. */
static void test_reply_always_reparses(void **state)
{
    static const uint16_t udp[] = {0, 512, 1232, 4096};
    for (const struct dns_fixture *f = dns_fixtures; f->name; f++) {
        struct parsed s;
        parse(&s, f->resp, f->resp_len);
        for (size_t i = 0; i < sizeof udp / sizeof udp[0] * 2 + 1; i++) {
            struct dns_question q;
            assert_int_equal(dns_question_parse(&q, f->query, f->query_len), DNS_OK);
            q.has_edns = udp[i % 4] != 0;
            q.udp_size = udp[i % 4];
            q.do_bit = q.has_edns && i >= 4;
            struct reply r;
            build(&r, &s.m, &q, i == 8);
            assert_int_equal(r.p.m.count[0], 1);
            assert_memory_equal(r.b + DNS_HEADER_LEN, q.name, q.name_len);
            assert_int_equal(r.p.m.has_edns, q.has_edns);
            if (!(r.p.m.flags & DNS_F_TC)) {
                assert_int_equal(r.p.m.count[1], s.m.count[1]);
                assert_int_equal(r.p.m.count[2], s.m.count[2]);
            }
        }
    }
}

/* ---- compression ---- */

static void assert_same_names(const struct parsed *a, const struct parsed *b)
{
    assert_int_equal(a->m.nrr, b->m.nrr);
    for (size_t i = 0; i < a->m.nrr; i++) {
        uint8_t na[DNS_NAME_MAX], nb[DNS_NAME_MAX];
        size_t la = owner(a, i, na), lb = owner(b, i, nb);
        assert_int_equal(la, lb);
        assert_memory_equal(na, nb, la);
        assert_int_equal(a->rr[i].type, b->rr[i].type);
        assert_int_equal(dns_get32(a->m.buf + a->rr[i].ttl_off),
                         dns_get32(b->m.buf + b->rr[i].ttl_off));
    }
}

static void test_compress_shrinks_repeated_names_and_keeps_them(void **state)
{
    struct mb m;
    uncompressed_many_a(&m, 10);
    struct parsed s;
    parse(&s, m.b, m.n);
    uint8_t out[4096];
    size_t n;
    assert_int_equal(dns_msg_compress(out, sizeof out, &n, &s.m), DNS_OK);
    assert_true(n < m.n);
    struct parsed c;
    parse(&c, out, n);
    assert_true(c.m.compressed);
    assert_same_names(&s, &c);
    assert_memory_equal(out + DNS_HEADER_LEN, m.b + DNS_HEADER_LEN, s.m.qend - DNS_HEADER_LEN);
}

static void test_compress_keeps_rdata_names(void **state)
{
    struct mb m;
    mb_header(&m, 1, DNS_F_QR, 1, 2, 1, 1);
    mb_name(&m, "example.com");
    mb_u16(&m, DNS_T_MX);
    mb_u16(&m, DNS_C_IN);
    mb_name(&m, "example.com");
    size_t at = mb_rr(&m, DNS_T_MX, DNS_C_IN, 60);
    mb_u16(&m, 10);
    mb_name(&m, "mail.example.com");
    mb_rr_end(&m, at);
    mb_name(&m, "example.com");
    at = mb_rr(&m, DNS_T_SRV, DNS_C_IN, 60);
    mb_u16(&m, 1), mb_u16(&m, 2), mb_u16(&m, 3);
    mb_name(&m, "mail.example.com");
    mb_rr_end(&m, at);
    mb_name(&m, "example.com");
    at = mb_rr(&m, DNS_T_SOA, DNS_C_IN, 60);
    mb_name(&m, "ns.example.com");
    mb_name(&m, "Hostmaster.example.com");
    for (int i = 0; i < 5; i++) mb_u32(&m, (uint32_t)i + 100);
    mb_rr_end(&m, at);
    mb_a(&m, "mail.example.com", 0x01020304);

    struct parsed s;
    parse(&s, m.b, m.n);
    uint8_t out[4096];
    size_t n;
    assert_int_equal(dns_msg_compress(out, sizeof out, &n, &s.m), DNS_OK);
    assert_true(n < m.n);
    struct parsed c;
    parse(&c, out, n);
    assert_int_equal(dns_msg_check_rdata(&c.m), DNS_OK);
    assert_same_names(&s, &c);

    /* RDATA names expand to the same bytes; fixed fields are unchanged. */
    static const size_t name_at[] = {2, 6, 0};
    for (size_t i = 0; i < 3; i++) {
        uint8_t a[DNS_NAME_MAX], b[DNS_NAME_MAX];
        size_t la, lb, na, nb;
        assert_int_equal(dns_name_unpack(m.b, m.n, s.rr[i].rdata + name_at[i], a, &la, &na),
                         DNS_OK);
        assert_int_equal(dns_name_unpack(out, n, c.rr[i].rdata + name_at[i], b, &lb, &nb), DNS_OK);
        assert_int_equal(la, lb);
        assert_memory_equal(a, b, la);
        assert_memory_equal(out + c.rr[i].rdata, m.b + s.rr[i].rdata, name_at[i]);
        if (i == 2) { /* SOA: the second name and the 20 fixed bytes */
            assert_int_equal(dns_name_unpack(m.b, m.n, na, a, &la, &na), DNS_OK);
            assert_int_equal(dns_name_unpack(out, n, nb, b, &lb, &nb), DNS_OK);
            assert_int_equal(la, lb);
            assert_memory_equal(a, b, la); /* the letter case too */
            assert_memory_equal(out + nb, m.b + na, 20);
        }
    }
}

/* RFC 2782 and RFC 6672 §2.5: these targets are never sent compressed. */
static void test_compress_never_compresses_srv_and_dname_targets(void **state)
{
    struct mb m;
    mb_header(&m, 1, DNS_F_QR, 1, 2, 0, 0);
    mb_name(&m, "example.com");
    mb_u16(&m, DNS_T_SRV);
    mb_u16(&m, DNS_C_IN);
    mb_name(&m, "example.com");
    size_t at = mb_rr(&m, DNS_T_SRV, DNS_C_IN, 60);
    mb_u16(&m, 1), mb_u16(&m, 2), mb_u16(&m, 3);
    mb_name(&m, "example.com");
    mb_rr_end(&m, at);
    mb_name(&m, "d.example.com");
    at = mb_rr(&m, DNS_T_DNAME, DNS_C_IN, 60);
    mb_name(&m, "example.com");
    mb_rr_end(&m, at);

    struct parsed s;
    parse(&s, m.b, m.n);
    uint8_t out[512];
    size_t n;
    assert_int_equal(dns_msg_compress(out, sizeof out, &n, &s.m), DNS_OK);
    struct parsed c;
    parse(&c, out, n);
    assert_true(n < m.n); /* the owners were compressed */
    assert_int_equal(c.rr[0].rdlen, s.rr[0].rdlen);
    assert_memory_equal(out + c.rr[0].rdata, m.b + s.rr[0].rdata, s.rr[0].rdlen);
    assert_int_equal(c.rr[1].rdlen, s.rr[1].rdlen);
    assert_memory_equal(out + c.rr[1].rdata, m.b + s.rr[1].rdata, s.rr[1].rdlen);
}

/* RFC 4034 forbids a compressed signer name, but a pointer there must still mean the same
 * name once every offset has moved. */
static void test_compress_expands_a_stray_pointer_in_rrsig_signer(void **state)
{
    struct mb m;
    mb_header(&m, 1, DNS_F_QR, 1, 2, 0, 0);
    mb_name(&m, "www.example.com");
    mb_u16(&m, DNS_T_A);
    mb_u16(&m, DNS_C_IN);
    mb_a(&m, "www.example.com", 0x01020304);
    mb_name(&m, "www.example.com");
    size_t at = mb_rr(&m, DNS_T_RRSIG, DNS_C_IN, 60);
    for (int i = 0; i < 18; i++) mb_u8(&m, (uint8_t)i);
    mb_ptr(&m, 16); /* example.com, inside the question */
    for (int i = 0; i < 8; i++) mb_u8(&m, 0xA0);
    mb_rr_end(&m, at);

    struct parsed s;
    parse(&s, m.b, m.n);
    assert_int_equal(dns_msg_check_rdata(&s.m), DNS_ERR_BAD_RDATA);
    uint8_t out[512];
    size_t n;
    assert_int_equal(dns_msg_compress(out, sizeof out, &n, &s.m), DNS_OK);
    struct parsed c;
    parse(&c, out, n);
    assert_int_equal(dns_msg_check_rdata(&c.m), DNS_OK); /* the signer is whole now */
    uint8_t a[DNS_NAME_MAX], b[DNS_NAME_MAX];
    size_t la, lb, na, nb;
    assert_int_equal(dns_name_unpack(m.b, m.n, s.rr[1].rdata + 18, a, &la, &na), DNS_OK);
    assert_int_equal(dns_name_unpack(out, n, c.rr[1].rdata + 18, b, &lb, &nb), DNS_OK);
    assert_int_equal(la, lb);
    assert_memory_equal(a, b, la);
    assert_int_equal(nb - c.rr[1].rdata - 18, la); /* written in full */
    assert_memory_equal(out + c.rr[1].rdata, m.b + s.rr[1].rdata, 18);
    assert_memory_equal(out + nb, m.b + na, 8);
}

static void test_compress_recompresses_fixtures_to_same_names(void **state)
{
    for (const struct dns_fixture *f = dns_fixtures; f->name; f++) {
        struct parsed s;
        parse(&s, f->resp, f->resp_len);
        uint8_t out[DNS_MSG_MAX];
        size_t n;
        assert_int_equal(dns_msg_compress(out, sizeof out, &n, &s.m), DNS_OK);
        struct parsed c;
        parse(&c, out, n);
        assert_same_names(&s, &c);
        assert_int_equal(c.m.has_edns, s.m.has_edns);
        assert_int_equal(dns_msg_check_rdata(&c.m), dns_msg_check_rdata(&s.m));
    }
}

static void test_compress_fails_when_out_too_small(void **state)
{
    struct parsed s;
    fixture_resp(&s, "ns_example_com");
    uint8_t out[40];
    size_t n;
    assert_int_equal(dns_msg_compress(out, sizeof out, &n, &s.m), DNS_ERR_NO_SPACE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reply_copies_id_rd_cd_and_opcode_from_query),
        cmocka_unit_test(test_reply_sets_qr_and_aa_keeps_ra_and_rcode),
        cmocka_unit_test(test_reply_keeps_ad_when_query_has_do),
        cmocka_unit_test(test_reply_keeps_ad_when_query_has_ad),
        cmocka_unit_test(test_reply_clears_ad_otherwise),
        cmocka_unit_test(test_reply_never_sets_ad_the_entry_lacks),
        cmocka_unit_test(test_reply_echoes_client_qname_case),
        cmocka_unit_test(test_reply_rejects_query_name_of_other_length),
        cmocka_unit_test(test_reply_never_sees_entry_whose_question_name_is_compressed),
        cmocka_unit_test(test_reply_sets_ttl_on_every_rr_but_opt),
        cmocka_unit_test(test_set_ttl_skips_opt),
        cmocka_unit_test(test_reply_appends_opt_with_our_size_and_query_do),
        cmocka_unit_test(test_reply_has_no_opt_without_query_edns),
        cmocka_unit_test(test_reply_replaces_stored_opt_by_ours),
        cmocka_unit_test(test_reply_drops_stored_opt_before_other_records),
        cmocka_unit_test(test_limit_is_512_without_edns),
        cmocka_unit_test(test_limit_is_smaller_of_client_and_ours_at_least_512),
        cmocka_unit_test(test_limit_is_65535_over_tcp),
        cmocka_unit_test(test_reply_compresses_uncompressed_entry_that_fits_only_compressed),
        cmocka_unit_test(test_reply_leaves_entry_that_fits_uncompressed),
        cmocka_unit_test(test_reply_drops_additional_whole_without_tc),
        cmocka_unit_test(test_reply_keeps_our_opt_when_dropping_additional),
        cmocka_unit_test(test_reply_compresses_then_drops_additional),
        cmocka_unit_test(test_reply_is_header_question_opt_with_tc_when_answer_does_not_fit),
        cmocka_unit_test(test_reply_tc_without_edns_has_no_opt),
        cmocka_unit_test(test_reply_over_tcp_is_whole),
        cmocka_unit_test(test_reply_fails_when_out_too_small),
        cmocka_unit_test(test_reply_fails_when_out_too_small_to_compress_into),
        cmocka_unit_test(test_reply_always_reparses),
        cmocka_unit_test(test_compress_shrinks_repeated_names_and_keeps_them),
        cmocka_unit_test(test_compress_keeps_rdata_names),
        cmocka_unit_test(test_compress_never_compresses_srv_and_dname_targets),
        cmocka_unit_test(test_compress_expands_a_stray_pointer_in_rrsig_signer),
        cmocka_unit_test(test_compress_recompresses_fixtures_to_same_names),
        cmocka_unit_test(test_compress_fails_when_out_too_small),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
