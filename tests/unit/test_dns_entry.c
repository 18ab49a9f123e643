/* tests/unit/test_dns_entry.c — RCD2 cache entries (SPEC §1.2, §1.3): encode, decode, the
 * read checks, and copying a message without its OPT RR.
 *
 * Messages are either real captures (support/fixtures.h) or built byte by byte here, so a
 * mistake in our own encoder cannot hide behind itself.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "dns/dns.h"
#include "support/fixtures.h"

/* ---- a byte-by-byte message builder ---- */

struct mb {
    uint8_t buf[DNS_ENTRY_MAX + 16];
    size_t len;
};

static void mb_u8(struct mb *b, uint8_t v)
{
    assert_true(b->len < sizeof(b->buf));
    b->buf[b->len++] = v;
}

static void mb_u16(struct mb *b, uint16_t v)
{
    mb_u8(b, (uint8_t)(v >> 8));
    mb_u8(b, (uint8_t)v);
}

static void mb_u32(struct mb *b, uint32_t v)
{
    mb_u16(b, (uint16_t)(v >> 16));
    mb_u16(b, (uint16_t)v);
}

static void mb_bytes(struct mb *b, const void *p, size_t n)
{
    assert_true(b->len + n <= sizeof(b->buf));
    memcpy(b->buf + b->len, p, n);
    b->len += n;
}

/* Labels of a dotted name ("" is the root), then either the root byte or, when ptr is
 * non-zero, a compression pointer to `ptr`. Returns the name's offset. */
static size_t mb_name_ptr(struct mb *b, const char *text, size_t ptr)
{
    size_t at = b->len;
    const char *s = text;
    while (*s) {
        const char *dot = strchr(s, '.');
        size_t n = dot ? (size_t)(dot - s) : strlen(s);
        mb_u8(b, (uint8_t)n);
        mb_bytes(b, s, n);
        s += n;
        if (*s == '.') s++;
    }
    if (ptr)
        mb_u16(b, (uint16_t)(0xC000u | ptr));
    else
        mb_u8(b, 0);
    return at;
}

static size_t mb_name(struct mb *b, const char *text)
{
    return mb_name_ptr(b, text, 0);
}

static void mb_header(struct mb *b, uint16_t flags, uint16_t qd, uint16_t an, uint16_t ns,
                      uint16_t ar)
{
    b->len = 0;
    mb_u16(b, 0x1234);
    mb_u16(b, flags);
    mb_u16(b, qd);
    mb_u16(b, an);
    mb_u16(b, ns);
    mb_u16(b, ar);
}

static void mb_question(struct mb *b, const char *name, uint16_t qtype, uint16_t qclass)
{
    mb_name(b, name);
    mb_u16(b, qtype);
    mb_u16(b, qclass);
}

/* Type, class, TTL and RDLENGTH after an owner already written. */
static void mb_rr_fixed(struct mb *b, uint16_t type, uint16_t rclass, uint32_t ttl, uint16_t rdlen)
{
    mb_u16(b, type);
    mb_u16(b, rclass);
    mb_u32(b, ttl);
    mb_u16(b, rdlen);
}

/* An A RR whose owner is a pointer to the question name (offset 12). */
static void mb_rr_a(struct mb *b, uint32_t ttl, uint8_t last)
{
    mb_u16(b, 0xC00C);
    mb_rr_fixed(b, DNS_T_A, DNS_C_IN, ttl, 4);
    const uint8_t addr[4] = {192, 0, 2, last};
    mb_bytes(b, addr, 4);
}

static void mb_opt(struct mb *b, bool do_bit)
{
    mb_u8(b, 0);
    mb_rr_fixed(b, DNS_T_OPT, 1232, do_bit ? DNS_EDNS_DO : 0, 0);
}

/* Patches RDLENGTH at `at` to the bytes written since `at + 2`. */
static void mb_fix_rdlen(struct mb *b, size_t at)
{
    size_t n = b->len - at - 2;
    b->buf[at] = (uint8_t)(n >> 8);
    b->buf[at + 1] = (uint8_t)n;
}

/* example.com A response: flags as given, one A, optionally an OPT (last). */
static void mb_a_response(struct mb *b, uint16_t flags, bool opt, bool do_bit)
{
    mb_header(b, flags, 1, 1, 0, opt ? 1 : 0);
    mb_question(b, "example.com", DNS_T_A, DNS_C_IN);
    mb_rr_a(b, 300, 1);
    if (opt) mb_opt(b, do_bit);
}

static void make_question(struct dns_question *q, const char *name, uint16_t qtype, uint16_t qclass,
                          bool do_bit, bool cd)
{
    struct mb b = {.len = 0};
    memset(q, 0, sizeof(*q));
    mb_name(&b, name);
    memcpy(q->name, b.buf, b.len);
    for (size_t i = 0; i < b.len; i++)
        q->name_lc[i] = (uint8_t)((b.buf[i] >= 'A' && b.buf[i] <= 'Z') ? b.buf[i] + 32 : b.buf[i]);
    q->name_len = (uint16_t)b.len;
    q->qtype = qtype;
    q->qclass = qclass;
    q->do_bit = do_bit;
    q->has_edns = do_bit;
    q->cd = cd;
}

#define RESP_FLAGS (DNS_F_QR | DNS_F_AA | DNS_F_RD)

static struct dns_rr rrs_a[DNS_RR_MAX];
static struct dns_rr rrs_b[DNS_RR_MAX];

static void parse_ok(struct dns_msg *m, const uint8_t *buf, size_t len, struct dns_rr *rrs)
{
    enum dns_err err = dns_msg_parse(m, buf, len, rrs, DNS_RR_MAX);
    if (err != DNS_OK) fail_msg("parse: %s", dns_strerror(err));
}

/* Encodes `resp` for `q` into `out`, asserting success. */
static size_t encode_ok(uint8_t *out, size_t cap, const struct mb *resp,
                        const struct dns_question *q)
{
    struct dns_msg m;
    parse_ok(&m, resp->buf, resp->len, rrs_a);
    size_t n = 0;
    enum dns_err err = dns_entry_encode(out, cap, &n, &m, q);
    if (err != DNS_OK) fail_msg("encode: %s", dns_strerror(err));
    return n;
}

static enum dns_err encode_err(const struct mb *resp, const struct dns_question *q, size_t cap)
{
    static uint8_t out[DNS_ENTRY_MAX];
    struct dns_msg m;
    parse_ok(&m, resp->buf, resp->len, rrs_a);
    size_t n = 0;
    return dns_entry_encode(out, cap, &n, &m, q);
}

static void decode_ok(struct dns_entry *e, const uint8_t *val, size_t len)
{
    enum dns_entry_status st = dns_entry_decode(e, val, len, rrs_b, DNS_RR_MAX);
    if (st != DNS_ENTRY_OK)
        fail_msg("decode: %s (%s)", dns_entry_status_str(st), dns_strerror(e->err));
}

/* An RCD2 value built by hand: magic, flags, message. */
static size_t make_value(uint8_t *out, uint8_t flags, const struct mb *msg)
{
    memcpy(out, "RCD2", 4);
    out[4] = flags;
    memcpy(out + 5, msg->buf, msg->len);
    return 5 + msg->len;
}

/* ---- encode ---- */

static void encode_value_starts_with_magic_and_do_flag(void **state)
{
    struct mb r;
    struct dns_question q;
    uint8_t out[1024];
    make_question(&q, "example.com", DNS_T_A, DNS_C_IN, true, false);

    mb_a_response(&r, RESP_FLAGS, true, true);
    size_t n = encode_ok(out, sizeof(out), &r, &q);
    assert_true(n > 5);
    assert_memory_equal(out, "RCD2", 4);
    assert_int_equal(out[4], 0x01);

    mb_a_response(&r, RESP_FLAGS, true, false);
    encode_ok(out, sizeof(out), &r, &q);
    assert_int_equal(out[4], 0x00);
}

static void encode_flag_is_zero_without_opt(void **state)
{
    struct mb r;
    struct dns_question q;
    uint8_t out[1024];
    /* Even a DO query: the write keys on the response's DO, and there is no OPT. */
    make_question(&q, "example.com", DNS_T_A, DNS_C_IN, true, false);
    mb_a_response(&r, RESP_FLAGS, false, false);
    size_t n = encode_ok(out, sizeof(out), &r, &q);
    assert_int_equal(out[4], 0x00);
    /* Nothing to remove: the message is stored byte for byte. */
    assert_int_equal(n, 5 + r.len);
    assert_memory_equal(out + 5, r.buf, r.len);
}

static void encode_removes_opt_and_decrements_arcount(void **state)
{
    struct mb r, plain;
    struct dns_question q;
    uint8_t out[1024];
    make_question(&q, "example.com", DNS_T_A, DNS_C_IN, false, false);
    mb_a_response(&r, RESP_FLAGS, true, false);
    mb_a_response(&plain, RESP_FLAGS, false, false);

    size_t n = encode_ok(out, sizeof(out), &r, &q);
    assert_int_equal(n, 5 + r.len - 11);
    assert_int_equal(dns_get16(out + 5 + 10), 0);
    assert_memory_equal(out + 5, plain.buf, plain.len);

    struct dns_entry e;
    decode_ok(&e, out, n);
    assert_false(e.msg.has_edns);
    assert_int_equal(e.msg.opt, -1);
    assert_int_equal(e.msg.nrr, 1);
}

static void encode_keeps_other_additional_records(void **state)
{
    struct mb r;
    struct dns_question q;
    uint8_t out[1024];
    make_question(&q, "example.com", DNS_T_A, DNS_C_IN, false, false);
    mb_header(&r, RESP_FLAGS, 1, 1, 0, 2);
    mb_question(&r, "example.com", DNS_T_A, DNS_C_IN);
    mb_rr_a(&r, 300, 1);
    mb_rr_a(&r, 300, 2);
    mb_opt(&r, false);

    size_t n = encode_ok(out, sizeof(out), &r, &q);
    struct dns_entry e;
    decode_ok(&e, out, n);
    assert_int_equal(e.msg.count[DNS_SEC_ADDITIONAL], 1);
    assert_int_equal(e.msg.nrr, 2);
    assert_int_equal(e.msg.rr[1].type, DNS_T_A);
    assert_int_equal(e.msg.buf[e.msg.rr[1].rdata + 3], 2);
}

static void encode_sets_qr(void **state)
{
    struct mb r;
    struct dns_question q;
    uint8_t out[1024];
    make_question(&q, "example.com", DNS_T_A, DNS_C_IN, false, false);
    mb_a_response(&r, DNS_F_AA | DNS_F_RD, false, false);
    encode_ok(out, sizeof(out), &r, &q);
    assert_true(dns_get16(out + 5 + 2) & DNS_F_QR);
}

static void encode_sets_cd_from_query(void **state)
{
    struct mb r;
    struct dns_question q;
    uint8_t out[1024];
    make_question(&q, "example.com", DNS_T_A, DNS_C_IN, false, true);
    mb_a_response(&r, RESP_FLAGS, false, false);
    encode_ok(out, sizeof(out), &r, &q);
    assert_int_equal(dns_get16(out + 5 + 2), RESP_FLAGS | DNS_F_CD);
}

static void encode_clears_cd_from_query(void **state)
{
    struct mb r;
    struct dns_question q;
    uint8_t out[1024];
    make_question(&q, "example.com", DNS_T_A, DNS_C_IN, false, false);
    mb_a_response(&r, RESP_FLAGS | DNS_F_CD, false, false);
    encode_ok(out, sizeof(out), &r, &q);
    assert_int_equal(dns_get16(out + 5 + 2), RESP_FLAGS);
}

static void encode_keeps_flags_rcode_and_ttls(void **state)
{
    struct mb r;
    struct dns_question q;
    uint8_t out[1024];
    uint16_t flags = DNS_F_QR | DNS_F_RD | DNS_F_RA | DNS_F_AD | DNS_RCODE_NXDOMAIN;
    make_question(&q, "example.com", DNS_T_A, DNS_C_IN, false, false);
    mb_a_response(&r, flags, true, false);
    size_t n = encode_ok(out, sizeof(out), &r, &q);
    assert_int_equal(dns_get16(out + 5 + 2), flags);

    struct dns_entry e;
    decode_ok(&e, out, n);
    assert_int_equal(dns_get32(e.msg.buf + e.msg.rr[0].ttl_off), 300);
}

static void encode_rejects_qdcount_not_one(void **state)
{
    struct mb r;
    struct dns_question q;
    make_question(&q, "example.com", DNS_T_A, DNS_C_IN, false, false);

    mb_header(&r, RESP_FLAGS, 2, 0, 0, 0);
    mb_question(&r, "example.com", DNS_T_A, DNS_C_IN);
    mb_question(&r, "example.org", DNS_T_A, DNS_C_IN);
    assert_int_equal(encode_err(&r, &q, DNS_ENTRY_MAX), DNS_ERR_NO_QUESTION);

    mb_header(&r, RESP_FLAGS, 0, 0, 0, 0);
    assert_int_equal(encode_err(&r, &q, DNS_ENTRY_MAX), DNS_ERR_NO_QUESTION);
}

static void encode_rejects_bad_a_rdata(void **state)
{
    struct mb r;
    struct dns_question q;
    make_question(&q, "example.com", DNS_T_A, DNS_C_IN, false, false);
    mb_header(&r, RESP_FLAGS, 1, 1, 0, 0);
    mb_question(&r, "example.com", DNS_T_A, DNS_C_IN);
    mb_u16(&r, 0xC00C);
    mb_rr_fixed(&r, DNS_T_A, DNS_C_IN, 300, 3);
    mb_bytes(&r, "\xc0\x00\x02", 3);
    assert_int_equal(encode_err(&r, &q, DNS_ENTRY_MAX), DNS_ERR_BAD_RDATA);
}

static void encode_rejects_small_buffer(void **state)
{
    struct mb r;
    struct dns_question q;
    uint8_t out[1024];
    make_question(&q, "example.com", DNS_T_A, DNS_C_IN, false, false);
    mb_a_response(&r, RESP_FLAGS, true, false);
    size_t need = encode_ok(out, sizeof(out), &r, &q);

    assert_int_equal(encode_err(&r, &q, need - 1), DNS_ERR_NO_SPACE);
    assert_int_equal(encode_err(&r, &q, 4), DNS_ERR_NO_SPACE);
    assert_int_equal(encode_err(&r, &q, 0), DNS_ERR_NO_SPACE);
    assert_int_equal(encode_err(&r, &q, need), DNS_OK);
}

/* ---- decode ---- */

static void decode_rcd2_takes_do_from_flags_bit0_only(void **state)
{
    struct mb r;
    uint8_t val[256];
    struct dns_entry e;
    mb_a_response(&r, RESP_FLAGS, false, false);

    decode_ok(&e, val, make_value(val, 0x01, &r));
    assert_true(e.do_bit);
    assert_false(e.legacy);
    decode_ok(&e, val, make_value(val, 0xFE, &r));
    assert_false(e.do_bit);
    decode_ok(&e, val, make_value(val, 0xFF, &r));
    assert_true(e.do_bit);
    assert_int_equal(e.msg.len, r.len);
    assert_ptr_equal(e.msg.buf, val + 5);
}

static void decode_legacy_takes_do_from_its_opt(void **state)
{
    struct mb r;
    struct dns_entry e;

    mb_a_response(&r, RESP_FLAGS, true, true);
    decode_ok(&e, r.buf, r.len);
    assert_true(e.legacy);
    assert_true(e.do_bit);
    assert_ptr_equal(e.msg.buf, r.buf);

    mb_a_response(&r, RESP_FLAGS, true, false);
    decode_ok(&e, r.buf, r.len);
    assert_true(e.legacy);
    assert_false(e.do_bit);

    mb_a_response(&r, RESP_FLAGS, false, false);
    decode_ok(&e, r.buf, r.len);
    assert_true(e.legacy);
    assert_false(e.do_bit);
}

static void assert_malformed(const uint8_t *val, size_t len)
{
    struct dns_entry e;
    assert_int_equal(dns_entry_decode(&e, val, len, rrs_b, DNS_RR_MAX), DNS_ENTRY_MALFORMED);
    assert_int_not_equal(e.err, DNS_OK);
    /* A failed decode can never pass the read checks. */
    struct dns_question q;
    make_question(&q, "example.com", DNS_T_A, DNS_C_IN, false, false);
    assert_int_not_equal(dns_entry_check(&e, &q), DNS_ENTRY_OK);
}

static void decode_empty_is_malformed(void **state)
{
    assert_malformed((const uint8_t *)"", 0);
}

static void decode_magic_alone_is_malformed(void **state)
{
    assert_malformed((const uint8_t *)"RCD2", 4);
}

static void decode_magic_and_flags_alone_is_malformed(void **state)
{
    assert_malformed((const uint8_t *)"RCD2\x01", 5);
}

static void decode_magic_with_garbage_is_malformed(void **state)
{
    const char *v = "RCD2\x00garbage that is no DNS message at all";
    assert_malformed((const uint8_t *)v, strlen("RCD2") + 1 + strlen(v + 5));
}

static void decode_rcd2_message_under_12_bytes_is_malformed(void **state)
{
    struct mb r;
    uint8_t val[64];
    mb_a_response(&r, RESP_FLAGS, false, false);
    make_value(val, 0, &r);
    for (size_t cut = 5; cut < 5 + DNS_HEADER_LEN; cut++) assert_malformed(val, cut);
}

static void decode_truncated_message_is_malformed(void **state)
{
    struct mb r;
    uint8_t val[256];
    mb_a_response(&r, RESP_FLAGS, true, false);
    size_t n = make_value(val, 0, &r);
    /* Every cut short of the full length loses part of a counted record. */
    for (size_t cut = 5 + DNS_HEADER_LEN; cut < n; cut++) assert_malformed(val, cut);
    for (size_t cut = 1; cut < r.len; cut++) assert_malformed(r.buf, cut);
}

static void decode_reports_the_parse_error(void **state)
{
    struct mb r;
    uint8_t val[256];
    struct dns_entry e;
    mb_a_response(&r, RESP_FLAGS, false, false);
    size_t n = make_value(val, 0, &r);
    assert_int_equal(dns_entry_decode(&e, val, n - 1, rrs_b, DNS_RR_MAX), DNS_ENTRY_MALFORMED);
    struct dns_msg m;
    assert_int_equal(e.err, dns_msg_parse(&m, val + 5, n - 6, rrs_a, DNS_RR_MAX));
}

/* A 65535-byte message: example.com A with one opaque RR filling the rest. */
static void mb_max_message(struct mb *r)
{
    mb_header(r, RESP_FLAGS, 1, 1, 0, 0);
    mb_question(r, "example.com", DNS_T_A, DNS_C_IN);
    mb_u16(r, 0xC00C);
    size_t rdlen = DNS_MSG_MAX - r->len - 10;
    mb_rr_fixed(r, 65280, DNS_C_IN, 300, (uint16_t)rdlen);
    memset(r->buf + r->len, 0xAB, rdlen);
    r->len += rdlen;
    assert_int_equal(r->len, DNS_MSG_MAX);
}

static void decode_accepts_value_of_65540_bytes(void **state)
{
    static struct mb r;
    static uint8_t val[DNS_ENTRY_MAX + 1];
    struct dns_entry e;
    mb_max_message(&r);
    size_t n = make_value(val, 0, &r);
    assert_int_equal(n, DNS_ENTRY_MAX);
    decode_ok(&e, val, n);
}

static void decode_over_65540_bytes_is_malformed(void **state)
{
    static struct mb r;
    static uint8_t val[DNS_ENTRY_MAX + 1];
    mb_max_message(&r);
    make_value(val, 0, &r);
    val[DNS_ENTRY_MAX] = 0;
    assert_malformed(val, DNS_ENTRY_MAX + 1);
}

static void decode_legacy_over_65535_bytes_is_malformed(void **state)
{
    static struct mb r;
    mb_max_message(&r);
    r.buf[r.len++] = 0;
    assert_malformed(r.buf, r.len);
}

/* ---- check ---- */

static enum dns_entry_status check_value(const struct mb *r, uint8_t flags,
                                         const struct dns_question *q)
{
    static uint8_t val[1024];
    struct dns_entry e;
    decode_ok(&e, val, make_value(val, flags, r));
    return dns_entry_check(&e, q);
}

static void check_matching_entry_is_ok(void **state)
{
    struct mb r;
    struct dns_question q;
    mb_a_response(&r, RESP_FLAGS, false, false);
    make_question(&q, "example.com", DNS_T_A, DNS_C_IN, false, false);
    assert_int_equal(check_value(&r, 0, &q), DNS_ENTRY_OK);
}

static void check_other_name_is_collision(void **state)
{
    struct mb r;
    struct dns_question q;
    mb_a_response(&r, RESP_FLAGS, false, false);
    make_question(&q, "example.org", DNS_T_A, DNS_C_IN, false, false);
    assert_int_equal(check_value(&r, 0, &q), DNS_ENTRY_COLLISION);
    make_question(&q, "www.example.com", DNS_T_A, DNS_C_IN, false, false);
    assert_int_equal(check_value(&r, 0, &q), DNS_ENTRY_COLLISION);
}

static void check_other_qtype_is_collision(void **state)
{
    struct mb r;
    struct dns_question q;
    mb_a_response(&r, RESP_FLAGS, false, false);
    make_question(&q, "example.com", DNS_T_AAAA, DNS_C_IN, false, false);
    assert_int_equal(check_value(&r, 0, &q), DNS_ENTRY_COLLISION);
}

static void check_other_qclass_is_collision(void **state)
{
    struct mb r;
    struct dns_question q;
    mb_a_response(&r, RESP_FLAGS, false, false);
    make_question(&q, "example.com", DNS_T_A, DNS_C_CH, false, false);
    assert_int_equal(check_value(&r, 0, &q), DNS_ENTRY_COLLISION);
}

static void check_other_do_is_collision(void **state)
{
    struct mb r;
    struct dns_question q;
    mb_a_response(&r, RESP_FLAGS, false, false);
    make_question(&q, "example.com", DNS_T_A, DNS_C_IN, true, false);
    assert_int_equal(check_value(&r, 0, &q), DNS_ENTRY_COLLISION);
    make_question(&q, "example.com", DNS_T_A, DNS_C_IN, false, false);
    assert_int_equal(check_value(&r, DNS_ENTRY_FLAG_DO, &q), DNS_ENTRY_COLLISION);
    make_question(&q, "example.com", DNS_T_A, DNS_C_IN, true, false);
    assert_int_equal(check_value(&r, DNS_ENTRY_FLAG_DO, &q), DNS_ENTRY_OK);
}

static void check_other_cd_is_collision(void **state)
{
    struct mb r;
    struct dns_question q;
    mb_a_response(&r, RESP_FLAGS, false, false);
    make_question(&q, "example.com", DNS_T_A, DNS_C_IN, false, true);
    assert_int_equal(check_value(&r, 0, &q), DNS_ENTRY_COLLISION);
    mb_a_response(&r, RESP_FLAGS | DNS_F_CD, false, false);
    make_question(&q, "example.com", DNS_T_A, DNS_C_IN, false, false);
    assert_int_equal(check_value(&r, 0, &q), DNS_ENTRY_COLLISION);
    make_question(&q, "example.com", DNS_T_A, DNS_C_IN, false, true);
    assert_int_equal(check_value(&r, 0, &q), DNS_ENTRY_OK);
}

static void check_query_message_qr0_is_collision(void **state)
{
    struct mb r;
    struct dns_question q;
    mb_a_response(&r, DNS_F_AA | DNS_F_RD, false, false);
    make_question(&q, "example.com", DNS_T_A, DNS_C_IN, false, false);
    assert_int_equal(check_value(&r, 0, &q), DNS_ENTRY_COLLISION);
}

static void check_two_questions_is_collision(void **state)
{
    struct mb r;
    struct dns_question q;
    mb_header(&r, RESP_FLAGS, 2, 0, 0, 0);
    mb_question(&r, "example.com", DNS_T_A, DNS_C_IN);
    mb_question(&r, "example.com", DNS_T_A, DNS_C_IN);
    make_question(&q, "example.com", DNS_T_A, DNS_C_IN, false, false);
    assert_int_equal(check_value(&r, 0, &q), DNS_ENTRY_COLLISION);
}

static void check_no_question_is_collision(void **state)
{
    struct mb r;
    struct dns_question q;
    mb_header(&r, RESP_FLAGS, 0, 0, 0, 0);
    make_question(&q, "example.com", DNS_T_A, DNS_C_IN, false, false);
    assert_int_equal(check_value(&r, 0, &q), DNS_ENTRY_COLLISION);
}

static void check_qname_differing_in_case_is_ok(void **state)
{
    struct mb r;
    struct dns_question q;
    mb_header(&r, RESP_FLAGS, 1, 1, 0, 0);
    mb_question(&r, "ExAmPle.COM", DNS_T_A, DNS_C_IN);
    mb_rr_a(&r, 300, 1);
    make_question(&q, "eXaMpLe.com", DNS_T_A, DNS_C_IN, false, false);
    assert_int_equal(check_value(&r, 0, &q), DNS_ENTRY_OK);
}

static void check_truncated_entry_is_truncated(void **state)
{
    struct mb r;
    struct dns_question q;
    mb_a_response(&r, RESP_FLAGS | DNS_F_TC, false, false);
    make_question(&q, "example.com", DNS_T_A, DNS_C_IN, false, false);
    assert_int_equal(check_value(&r, 0, &q), DNS_ENTRY_TRUNCATED);
    /* The identity checks come first: a TC entry of another question is a collision. */
    make_question(&q, "example.org", DNS_T_A, DNS_C_IN, false, false);
    assert_int_equal(check_value(&r, 0, &q), DNS_ENTRY_COLLISION);
}

static void check_servfail_entry_is_ok(void **state)
{
    struct mb r;
    struct dns_question q;
    mb_header(&r, RESP_FLAGS | DNS_RCODE_SERVFAIL, 1, 0, 0, 0);
    mb_question(&r, "example.com", DNS_T_A, DNS_C_IN);
    make_question(&q, "example.com", DNS_T_A, DNS_C_IN, false, false);
    assert_int_equal(check_value(&r, 0, &q), DNS_ENTRY_OK);
}

static void check_legacy_entry_uses_its_opt_do(void **state)
{
    struct mb r;
    struct dns_question q;
    struct dns_entry e;
    mb_a_response(&r, RESP_FLAGS, true, true);
    decode_ok(&e, r.buf, r.len);
    make_question(&q, "example.com", DNS_T_A, DNS_C_IN, true, false);
    assert_int_equal(dns_entry_check(&e, &q), DNS_ENTRY_OK);
    make_question(&q, "example.com", DNS_T_A, DNS_C_IN, false, false);
    assert_int_equal(dns_entry_check(&e, &q), DNS_ENTRY_COLLISION);
}

/* ---- copy without OPT ---- */

/* Asserts the names at `a` in ma and `b` in mb2 expand to the same wire bytes. */
static void assert_same_name(const struct dns_msg *ma, size_t a, const struct dns_msg *mb2,
                             size_t b)
{
    uint8_t x[DNS_NAME_MAX], y[DNS_NAME_MAX];
    size_t xl = 0, yl = 0, next = 0;
    assert_int_equal(dns_name_unpack(ma->buf, ma->len, a, x, &xl, &next), DNS_OK);
    assert_int_equal(dns_name_unpack(mb2->buf, mb2->len, b, y, &yl, &next), DNS_OK);
    assert_int_equal(xl, yl);
    assert_memory_equal(x, y, xl);
}

/* Offsets of the names in an RR's RDATA for the types the copy rewrites. */
static size_t rdata_names(const struct dns_msg *m, const struct dns_rr *rr, size_t *out)
{
    size_t next = 0, len = 0;
    switch (rr->type) {
    case DNS_T_NS:
    case DNS_T_CNAME:
    case DNS_T_PTR:
    case DNS_T_DNAME: out[0] = rr->rdata; return 1;
    case DNS_T_MX: out[0] = rr->rdata + 2u; return 1;
    case DNS_T_SRV: out[0] = rr->rdata + 6u; return 1;
    case DNS_T_SOA:
        out[0] = rr->rdata;
        assert_int_equal(dns_name_unpack(m->buf, m->len, out[0], NULL, &len, &next), DNS_OK);
        out[1] = next;
        return 2;
    default: return 0;
    }
}

/* Copies `src` without its OPT and checks the copy parses, has the same RRs but the OPT,
 * and every name (owners and RDATA names) expands the same. */
static void assert_copy_keeps_names(const struct mb *src)
{
    static uint8_t out[4096];
    struct dns_msg m, c;
    parse_ok(&m, src->buf, src->len, rrs_a);
    assert_true(m.has_edns);
    size_t n = 0;
    assert_int_equal(dns_msg_copy_without_opt(out, sizeof(out), &n, &m), DNS_OK);
    assert_int_equal(n, src->len - m.opt_len);
    parse_ok(&c, out, n, rrs_b);
    assert_false(c.has_edns);
    assert_int_equal(c.count[DNS_SEC_ADDITIONAL], m.count[DNS_SEC_ADDITIONAL] - 1);
    assert_int_equal(c.nrr, m.nrr - 1);
    assert_same_name(&m, m.qname_off, &c, c.qname_off);
    for (size_t i = 0, j = 0; i < m.nrr; i++) {
        if ((int)i == m.opt) continue;
        const struct dns_rr *a = &m.rr[i], *b = &c.rr[j++];
        assert_int_equal(a->type, b->type);
        assert_int_equal(a->section, b->section);
        assert_int_equal(a->rdlen, b->rdlen);
        assert_same_name(&m, a->owner, &c, b->owner);
        size_t na[2], nb[2];
        size_t k = rdata_names(&m, a, na);
        assert_int_equal(rdata_names(&c, b, nb), k);
        for (size_t x = 0; x < k; x++) assert_same_name(&m, na[x], &c, nb[x]);
    }
}

static void copy_without_opt_cuts_last_opt(void **state)
{
    struct mb r, plain;
    static uint8_t out[1024];
    struct dns_msg m;
    mb_a_response(&r, RESP_FLAGS, true, true);
    mb_a_response(&plain, RESP_FLAGS, false, false);
    parse_ok(&m, r.buf, r.len, rrs_a);
    size_t n = 0;
    assert_int_equal(dns_msg_copy_without_opt(out, sizeof(out), &n, &m), DNS_OK);
    assert_int_equal(n, plain.len);
    assert_memory_equal(out, plain.buf, plain.len);
}

static void copy_without_opt_plain_copy_when_no_opt(void **state)
{
    struct mb r;
    static uint8_t out[1024];
    struct dns_msg m;
    mb_a_response(&r, RESP_FLAGS, false, false);
    parse_ok(&m, r.buf, r.len, rrs_a);
    size_t n = 0;
    assert_int_equal(dns_msg_copy_without_opt(out, sizeof(out), &n, &m), DNS_OK);
    assert_int_equal(n, r.len);
    assert_memory_equal(out, r.buf, r.len);
    assert_int_equal(dns_msg_copy_without_opt(out, r.len - 1, &n, &m), DNS_ERR_NO_SPACE);
}

static void copy_without_opt_rejects_small_buffer(void **state)
{
    struct mb r;
    static uint8_t out[1024];
    struct dns_msg m;
    mb_a_response(&r, RESP_FLAGS, true, false);
    parse_ok(&m, r.buf, r.len, rrs_a);
    size_t n = 0;
    assert_int_equal(dns_msg_copy_without_opt(out, r.len - 12, &n, &m), DNS_ERR_NO_SPACE);
    assert_int_equal(dns_msg_copy_without_opt(out, r.len - 11, &n, &m), DNS_OK);
}

/* The brief's case: additional = [OPT, A ns1.<qname>, AAAA <A's owner>]. */
static void copy_without_middle_opt_moves_pointers_back(void **state)
{
    struct mb r;
    mb_header(&r, RESP_FLAGS, 1, 1, 0, 3);
    mb_question(&r, "example.com", DNS_T_NS, DNS_C_IN);
    mb_u16(&r, 0xC00C);
    mb_rr_fixed(&r, DNS_T_NS, DNS_C_IN, 300, 6);
    mb_name_ptr(&r, "ns1", 12);
    mb_opt(&r, true);
    size_t a_owner = mb_name_ptr(&r, "ns1", 12);
    mb_rr_fixed(&r, DNS_T_A, DNS_C_IN, 300, 4);
    mb_bytes(&r, "\xc0\x00\x02\x35", 4);
    mb_u16(&r, (uint16_t)(0xC000u | a_owner));
    mb_rr_fixed(&r, DNS_T_AAAA, DNS_C_IN, 300, 16);
    mb_bytes(&r, "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x35", 16);
    assert_copy_keeps_names(&r);

    /* And the pointer really moved by the OPT's 11 bytes. */
    static uint8_t out[1024];
    struct dns_msg m;
    parse_ok(&m, r.buf, r.len, rrs_a);
    size_t n = 0;
    assert_int_equal(dns_msg_copy_without_opt(out, sizeof(out), &n, &m), DNS_OK);
    assert_int_equal(dns_get16(out + n - 28), 0xC000u | (a_owner - 11));
}

/* Every RDATA name kind after a middle OPT, each pointing past the OPT. */
static void copy_without_middle_opt_rewrites_rdata_names(void **state)
{
    struct mb r;
    mb_header(&r, RESP_FLAGS, 1, 0, 0, 8);
    mb_question(&r, "example.com", DNS_T_ANY, DNS_C_IN);
    mb_opt(&r, false);
    size_t host = mb_name_ptr(&r, "host", 12);
    mb_rr_fixed(&r, DNS_T_A, DNS_C_IN, 60, 4);
    mb_bytes(&r, "\xc0\x00\x02\x01", 4);
    size_t rl;

    /* owner www.<host>, CNAME -> <host> */
    size_t www = mb_name_ptr(&r, "www", host);
    mb_rr_fixed(&r, DNS_T_CNAME, DNS_C_IN, 60, 0);
    rl = r.len - 2;
    mb_name_ptr(&r, "", host);
    mb_fix_rdlen(&r, rl);

    mb_u16(&r, (uint16_t)(0xC000u | host));
    mb_rr_fixed(&r, DNS_T_MX, DNS_C_IN, 60, 0);
    rl = r.len - 2;
    mb_u16(&r, 10);
    mb_name_ptr(&r, "mx", www);
    mb_fix_rdlen(&r, rl);

    mb_u16(&r, (uint16_t)(0xC000u | host));
    mb_rr_fixed(&r, DNS_T_SOA, DNS_C_IN, 60, 0);
    rl = r.len - 2;
    mb_name_ptr(&r, "ns", host);
    mb_name_ptr(&r, "hostmaster", www);
    for (int i = 0; i < 5; i++) mb_u32(&r, (uint32_t)i + 1);
    mb_fix_rdlen(&r, rl);

    mb_name_ptr(&r, "_dns._udp", host);
    mb_rr_fixed(&r, DNS_T_SRV, DNS_C_IN, 60, 0);
    rl = r.len - 2;
    mb_u16(&r, 1);
    mb_u16(&r, 2);
    mb_u16(&r, 53);
    mb_name_ptr(&r, "", www);
    mb_fix_rdlen(&r, rl);

    mb_u16(&r, (uint16_t)(0xC000u | www));
    mb_rr_fixed(&r, DNS_T_PTR, DNS_C_IN, 60, 0);
    rl = r.len - 2;
    mb_name_ptr(&r, "p", host);
    mb_fix_rdlen(&r, rl);

    mb_u16(&r, (uint16_t)(0xC000u | host));
    mb_rr_fixed(&r, DNS_T_NS, DNS_C_IN, 60, 0);
    rl = r.len - 2;
    mb_name_ptr(&r, "", www);
    mb_fix_rdlen(&r, rl);
    assert_copy_keeps_names(&r);
}

/* A message whose name is made of bytes that are not a name (bytes that run into or vanish
 * with the OPT) never gets as far as dns_msg_copy_without_opt: the parser refuses the
 * pointer, so such a response is never stored and such a value is never served. */
static void assert_parser_refuses_pointer(const struct mb *r)
{
    struct dns_msg m;
    struct dns_entry e;
    assert_int_equal(dns_msg_parse(&m, r->buf, r->len, rrs_a, DNS_RR_MAX), DNS_ERR_BAD_POINTER);
    assert_int_equal(dns_entry_decode(&e, r->buf, r->len, rrs_a, DNS_RR_MAX), DNS_ENTRY_MALFORMED);
    assert_int_equal(e.err, DNS_ERR_BAD_POINTER);
}

static void copy_without_opt_never_meets_pointer_into_opt(void **state)
{
    struct mb r;
    mb_header(&r, RESP_FLAGS, 1, 0, 0, 2);
    mb_question(&r, "example.com", DNS_T_A, DNS_C_IN);
    size_t opt = r.len;
    mb_opt(&r, false);
    /* Owner "x" + pointer to the OPT's root owner byte: a legal name, root-terminated. */
    mb_name_ptr(&r, "x", opt);
    mb_rr_fixed(&r, DNS_T_A, DNS_C_IN, 60, 4);
    mb_bytes(&r, "\xc0\x00\x02\x01", 4);
    assert_parser_refuses_pointer(&r);
}

static void copy_without_opt_never_meets_name_running_into_opt(void **state)
{
    struct mb r;
    mb_header(&r, RESP_FLAGS, 1, 0, 0, 2);
    mb_question(&r, "example.com", DNS_T_A, DNS_C_IN);
    /* The qclass low byte (1) read as a label length swallows the OPT's root owner byte, and
     * the OPT type's high byte ends the name: legal before, other bytes once the OPT goes. */
    size_t qclass_low = r.len - 1;
    mb_opt(&r, false);
    mb_name_ptr(&r, "x", qclass_low);
    mb_rr_fixed(&r, DNS_T_A, DNS_C_IN, 60, 4);
    mb_bytes(&r, "\xc0\x00\x02\x01", 4);
    assert_parser_refuses_pointer(&r);
}

static void copy_without_last_opt_never_meets_earlier_name_running_into_it(void **state)
{
    struct mb r;
    mb_header(&r, RESP_FLAGS, 1, 2, 0, 1);
    mb_question(&r, "example.com", DNS_T_A, DNS_C_IN);
    /* An opaque RDATA ending in 15: as a label length it swallows the next RR but its last
     * byte, 3, which swallows the OPT's first 3 bytes; the OPT's 4 and then 0 end the name.
     * The next RR's owner points there: a legal name that reads the OPT. */
    mb_u16(&r, 0xC00C);
    mb_rr_fixed(&r, 65280, DNS_C_IN, 60, 1);
    size_t label = r.len;
    mb_u8(&r, 15);
    mb_u16(&r, (uint16_t)(0xC000u | label));
    mb_rr_fixed(&r, DNS_T_A, DNS_C_IN, 60, 4);
    mb_bytes(&r, "\xc0\x00\x02\x03", 4);
    mb_opt(&r, false);
    assert_parser_refuses_pointer(&r);
}

static void copy_without_opt_never_meets_pointer_through_opaque_rdata(void **state)
{
    struct mb r;
    mb_header(&r, RESP_FLAGS, 1, 0, 0, 4);
    mb_question(&r, "example.com", DNS_T_A, DNS_C_IN);
    mb_opt(&r, false);
    size_t host = mb_name_ptr(&r, "host", 12);
    mb_rr_fixed(&r, DNS_T_A, DNS_C_IN, 60, 4);
    mb_bytes(&r, "\xc0\x00\x02\x01", 4);
    /* An opaque type whose RDATA happens to hold a name pointing past the OPT: its pointer
     * is not ours to rewrite, so a later name reaching it would change meaning. */
    mb_u16(&r, 0xC00C);
    mb_rr_fixed(&r, 65280, DNS_C_IN, 60, 0);
    size_t rl = r.len - 2;
    size_t opaque = mb_name_ptr(&r, "foo", host);
    mb_fix_rdlen(&r, rl);
    mb_u16(&r, (uint16_t)(0xC000u | opaque));
    mb_rr_fixed(&r, DNS_T_A, DNS_C_IN, 60, 4);
    mb_bytes(&r, "\xc0\x00\x02\x02", 4);
    assert_parser_refuses_pointer(&r);
}

/* fuzz/corpus/entry/regress_nsec_bad_label_after_opt: an NSEC whose next name holds a bad
 * label type, after a middle OPT. The parser leaves that RDATA opaque (no pointer may aim
 * at it), so cutting the OPT keeps its bytes as they are, like the same message with the OPT
 * last. dns_entry_encode refuses it all the same: the Go library cannot unpack that NSEC. */
static void copy_without_opt_keeps_malformed_nsec_name_as_is(void **state)
{
    struct mb r;
    static uint8_t out[1024];
    struct dns_question q;
    make_question(&q, "example.com", DNS_T_A, DNS_C_IN, false, false);
    mb_header(&r, RESP_FLAGS, 1, 1, 0, 3);
    mb_question(&r, "example.com", DNS_T_A, DNS_C_IN);
    mb_rr_a(&r, 300, 1);
    mb_opt(&r, false);
    size_t host = mb_name_ptr(&r, "host", 12);
    mb_rr_fixed(&r, DNS_T_A, DNS_C_IN, 60, 4);
    mb_bytes(&r, "\xc0\x00\x02\x02", 4);
    mb_u16(&r, (uint16_t)(0xC000u | host));
    mb_rr_fixed(&r, DNS_T_NSEC, DNS_C_IN, 60, 0);
    size_t rl = r.len - 2;
    size_t next = r.len;
    mb_bytes(&r, "\1a\101\0\0\1\100", 7); /* "a", then a 0x41 length byte; a bitmap */
    mb_fix_rdlen(&r, rl);
    assert_int_equal(encode_err(&r, &q, sizeof(out)), DNS_ERR_BAD_LABEL_TYPE);

    struct dns_msg m;
    parse_ok(&m, r.buf, r.len, rrs_a);
    size_t n = 0;
    assert_int_equal(dns_msg_copy_without_opt(out, sizeof(out), &n, &m), DNS_OK);
    struct dns_msg c;
    parse_ok(&c, out, n, rrs_b);
    assert_int_equal(c.nrr, 3);
    assert_int_equal(c.rr[2].type, DNS_T_NSEC);
    assert_int_equal(c.rr[2].rdlen, 7);
    assert_memory_equal(c.buf + c.rr[2].rdata, r.buf + next, 7);
    /* The owners moved with it (the NSEC owner points at "host", after the OPT). */
    assert_same_name(&m, m.rr[3].owner, &c, c.rr[2].owner);
}

static void encode_with_middle_opt_decodes_with_same_names(void **state)
{
    struct mb r;
    static uint8_t out[1024];
    struct dns_question q;
    make_question(&q, "example.com", DNS_T_A, DNS_C_IN, false, false);
    mb_header(&r, RESP_FLAGS, 1, 1, 0, 2);
    mb_question(&r, "example.com", DNS_T_A, DNS_C_IN);
    mb_rr_a(&r, 300, 1);
    mb_opt(&r, true);
    size_t owner = mb_name_ptr(&r, "sub", 12);
    mb_rr_fixed(&r, DNS_T_CNAME, DNS_C_IN, 60, 2);
    mb_u16(&r, (uint16_t)(0xC000u | owner));
    size_t n = encode_ok(out, sizeof(out), &r, &q);
    assert_int_equal(out[4], DNS_ENTRY_FLAG_DO);
    struct dns_entry e;
    decode_ok(&e, out, n);
    assert_int_equal(e.msg.nrr, 2);
    struct dns_msg m;
    parse_ok(&m, r.buf, r.len, rrs_a);
    assert_same_name(&m, m.rr[2].rdata, &e.msg, e.msg.rr[1].rdata);
}

/* ---- real captures ---- */

static void round_trip_of_every_fixture_checks_ok(void **state)
{
    static uint8_t out[DNS_ENTRY_MAX];
    size_t tried = 0;
    for (const struct dns_fixture *f = dns_fixtures; f->name; f++) {
        if (!f->resp || !f->query) continue;
        struct dns_question q;
        struct dns_msg m;
        assert_int_equal(dns_question_parse(&q, f->query, f->query_len), DNS_OK);
        parse_ok(&m, f->resp, f->resp_len, rrs_a);
        size_t n = 0;
        enum dns_err err = dns_entry_encode(out, sizeof(out), &n, &m, &q);
        if (err != DNS_OK) fail_msg("%s: encode: %s", f->name, dns_strerror(err));
        assert_memory_equal(out, "RCD2", 4);
        assert_int_equal(out[4], m.has_edns && m.edns_do ? 1 : 0);

        struct dns_entry e;
        enum dns_entry_status st = dns_entry_decode(&e, out, n, rrs_b, DNS_RR_MAX);
        if (st != DNS_ENTRY_OK) fail_msg("%s: decode: %s", f->name, dns_strerror(e.err));
        assert_false(e.msg.has_edns);
        assert_int_equal(e.msg.nrr, m.nrr - (m.opt >= 0 ? 1 : 0));
        assert_int_equal(e.msg.flags & DNS_F_RCODE_MASK, m.flags & DNS_F_RCODE_MASK);
        /* knotd answers with the query's DO, so the entry serves the same query. */
        st = dns_entry_check(&e, &q);
        if (st != DNS_ENTRY_OK) fail_msg("%s: check: %s", f->name, dns_entry_status_str(st));

        /* The legacy form of the same capture serves the same query, unless its header CD
         * differs: knotd does not echo CD, and a legacy entry keeps the upstream header. */
        st = dns_entry_decode(&e, f->resp, f->resp_len, rrs_b, DNS_RR_MAX);
        assert_int_equal(st, DNS_ENTRY_OK);
        assert_true(e.legacy);
        bool cd_same = ((m.flags & DNS_F_CD) != 0) == q.cd;
        st = dns_entry_check(&e, &q);
        if (st != (cd_same ? DNS_ENTRY_OK : DNS_ENTRY_COLLISION))
            fail_msg("%s: legacy check: %s", f->name, dns_entry_status_str(st));
        tried++;
    }
    assert_true(tried >= 10);
}

static void round_trip_keeps_bytes_but_flags_and_opt(void **state)
{
    static uint8_t out[DNS_ENTRY_MAX];
    const struct dns_fixture *f = fixture("mx_example_com");
    struct dns_question q;
    struct dns_msg m;
    assert_int_equal(dns_question_parse(&q, f->query, f->query_len), DNS_OK);
    parse_ok(&m, f->resp, f->resp_len, rrs_a);
    assert_true(m.has_edns);
    size_t n = 0;
    assert_int_equal(dns_entry_encode(out, sizeof(out), &n, &m, &q), DNS_OK);
    assert_int_equal(n, 5 + f->resp_len - m.opt_len);
    /* Header ID and counts but ARCOUNT, question and records: the capture's bytes. */
    assert_memory_equal(out + 5, f->resp, 2);
    assert_memory_equal(out + 5 + 4, f->resp + 4, 6);
    assert_int_equal(dns_get16(out + 5 + 10), m.count[DNS_SEC_ADDITIONAL] - 1);
    assert_memory_equal(out + 5 + 12, f->resp + 12, m.opt_off - 12);
}

static void round_trip_cd_fixture_stores_cd(void **state)
{
    static uint8_t out[DNS_ENTRY_MAX];
    const struct dns_fixture *f = fixture("a_example_com_cd");
    struct dns_question q;
    struct dns_msg m;
    assert_int_equal(dns_question_parse(&q, f->query, f->query_len), DNS_OK);
    assert_true(q.cd);
    parse_ok(&m, f->resp, f->resp_len, rrs_a);
    size_t n = 0;
    assert_int_equal(dns_entry_encode(out, sizeof(out), &n, &m, &q), DNS_OK);
    assert_true(dns_get16(out + 5 + 2) & DNS_F_CD);
    struct dns_entry e;
    decode_ok(&e, out, n);
    assert_int_equal(dns_entry_check(&e, &q), DNS_ENTRY_OK);
    q.cd = false;
    assert_int_equal(dns_entry_check(&e, &q), DNS_ENTRY_COLLISION);
}

static void round_trip_do_fixture_stores_do_flag(void **state)
{
    static uint8_t out[DNS_ENTRY_MAX];
    const struct dns_fixture *f = fixture("signed_a_do");
    struct dns_question q;
    struct dns_msg m;
    assert_int_equal(dns_question_parse(&q, f->query, f->query_len), DNS_OK);
    parse_ok(&m, f->resp, f->resp_len, rrs_a);
    assert_true(m.edns_do);
    size_t n = 0;
    assert_int_equal(dns_entry_encode(out, sizeof(out), &n, &m, &q), DNS_OK);
    assert_int_equal(out[4], DNS_ENTRY_FLAG_DO);
    struct dns_entry e;
    decode_ok(&e, out, n);
    assert_true(e.do_bit);
}

static void round_trip_mixed_case_query_matches_lowercase(void **state)
{
    static uint8_t out[DNS_ENTRY_MAX];
    const struct dns_fixture *lower = fixture("a_example_com");
    const struct dns_fixture *mixed = fixture("a_mixed_case");
    struct dns_question ql, qm;
    struct dns_msg m;
    assert_int_equal(dns_question_parse(&ql, lower->query, lower->query_len), DNS_OK);
    assert_int_equal(dns_question_parse(&qm, mixed->query, mixed->query_len), DNS_OK);
    parse_ok(&m, mixed->resp, mixed->resp_len, rrs_a);
    size_t n = 0;
    assert_int_equal(dns_entry_encode(out, sizeof(out), &n, &m, &qm), DNS_OK);
    struct dns_entry e;
    decode_ok(&e, out, n);
    assert_int_equal(dns_entry_check(&e, &ql), DNS_ENTRY_OK);
}

static void status_strings_are_distinct(void **state)
{
    const char *s[4] = {
        dns_entry_status_str(DNS_ENTRY_OK), dns_entry_status_str(DNS_ENTRY_MALFORMED),
        dns_entry_status_str(DNS_ENTRY_COLLISION), dns_entry_status_str(DNS_ENTRY_TRUNCATED)};
    for (int i = 0; i < 4; i++) {
        assert_non_null(s[i]);
        for (int j = 0; j < i; j++) assert_string_not_equal(s[i], s[j]);
    }
    assert_non_null(dns_entry_status_str((enum dns_entry_status)99));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(encode_value_starts_with_magic_and_do_flag),
        cmocka_unit_test(encode_flag_is_zero_without_opt),
        cmocka_unit_test(encode_removes_opt_and_decrements_arcount),
        cmocka_unit_test(encode_keeps_other_additional_records),
        cmocka_unit_test(encode_sets_qr),
        cmocka_unit_test(encode_sets_cd_from_query),
        cmocka_unit_test(encode_clears_cd_from_query),
        cmocka_unit_test(encode_keeps_flags_rcode_and_ttls),
        cmocka_unit_test(encode_rejects_qdcount_not_one),
        cmocka_unit_test(encode_rejects_bad_a_rdata),
        cmocka_unit_test(encode_rejects_small_buffer),
        cmocka_unit_test(encode_with_middle_opt_decodes_with_same_names),
        cmocka_unit_test(copy_without_opt_keeps_malformed_nsec_name_as_is),
        cmocka_unit_test(decode_rcd2_takes_do_from_flags_bit0_only),
        cmocka_unit_test(decode_legacy_takes_do_from_its_opt),
        cmocka_unit_test(decode_empty_is_malformed),
        cmocka_unit_test(decode_magic_alone_is_malformed),
        cmocka_unit_test(decode_magic_and_flags_alone_is_malformed),
        cmocka_unit_test(decode_magic_with_garbage_is_malformed),
        cmocka_unit_test(decode_rcd2_message_under_12_bytes_is_malformed),
        cmocka_unit_test(decode_truncated_message_is_malformed),
        cmocka_unit_test(decode_reports_the_parse_error),
        cmocka_unit_test(decode_accepts_value_of_65540_bytes),
        cmocka_unit_test(decode_over_65540_bytes_is_malformed),
        cmocka_unit_test(decode_legacy_over_65535_bytes_is_malformed),
        cmocka_unit_test(check_matching_entry_is_ok),
        cmocka_unit_test(check_other_name_is_collision),
        cmocka_unit_test(check_other_qtype_is_collision),
        cmocka_unit_test(check_other_qclass_is_collision),
        cmocka_unit_test(check_other_do_is_collision),
        cmocka_unit_test(check_other_cd_is_collision),
        cmocka_unit_test(check_query_message_qr0_is_collision),
        cmocka_unit_test(check_two_questions_is_collision),
        cmocka_unit_test(check_no_question_is_collision),
        cmocka_unit_test(check_qname_differing_in_case_is_ok),
        cmocka_unit_test(check_truncated_entry_is_truncated),
        cmocka_unit_test(check_servfail_entry_is_ok),
        cmocka_unit_test(check_legacy_entry_uses_its_opt_do),
        cmocka_unit_test(copy_without_opt_cuts_last_opt),
        cmocka_unit_test(copy_without_opt_plain_copy_when_no_opt),
        cmocka_unit_test(copy_without_opt_rejects_small_buffer),
        cmocka_unit_test(copy_without_middle_opt_moves_pointers_back),
        cmocka_unit_test(copy_without_middle_opt_rewrites_rdata_names),
        cmocka_unit_test(copy_without_opt_never_meets_pointer_into_opt),
        cmocka_unit_test(copy_without_opt_never_meets_name_running_into_opt),
        cmocka_unit_test(copy_without_last_opt_never_meets_earlier_name_running_into_it),
        cmocka_unit_test(copy_without_opt_never_meets_pointer_through_opaque_rdata),
        cmocka_unit_test(round_trip_of_every_fixture_checks_ok),
        cmocka_unit_test(round_trip_keeps_bytes_but_flags_and_opt),
        cmocka_unit_test(round_trip_cd_fixture_stores_cd),
        cmocka_unit_test(round_trip_do_fixture_stores_do_flag),
        cmocka_unit_test(round_trip_mixed_case_query_matches_lowercase),
        cmocka_unit_test(status_strings_are_distinct),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
