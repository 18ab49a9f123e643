/* tests/unit/test_dns_key.c — the cache key (SPEC §1.1): every vector of the spec's table,
 * computed from a wire query built byte by byte, then parsed and hashed as the hit path does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "dns/dns.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

struct qbuf {
    uint8_t b[1024];
    size_t n;
};

static void qb_byte(struct qbuf *q, uint8_t v)
{
    assert_true(q->n < sizeof(q->b));
    q->b[q->n++] = v;
}

static void qb_16(struct qbuf *q, uint16_t v)
{
    qb_byte(q, (uint8_t)(v >> 8));
    qb_byte(q, (uint8_t)v);
}

/* Header of a query with one question; flags as given, ARCOUNT 1 when `edns`. */
static void qb_header(struct qbuf *q, uint16_t flags, bool edns)
{
    q->n = 0;
    qb_16(q, 0x1234);
    qb_16(q, flags);
    qb_16(q, 1);
    qb_16(q, 0);
    qb_16(q, 0);
    qb_16(q, edns ? 1 : 0);
}

static void qb_label(struct qbuf *q, const void *data, size_t len)
{
    qb_byte(q, (uint8_t)len);
    for (size_t i = 0; i < len; i++) qb_byte(q, ((const uint8_t *)data)[i]);
}

static void qb_opt(struct qbuf *q, bool do_bit)
{
    qb_byte(q, 0);
    qb_16(q, DNS_T_OPT);
    qb_16(q, 1232);
    qb_16(q, 0);                   /* ext rcode, version */
    qb_16(q, do_bit ? 0x8000 : 0); /* DO */
    qb_16(q, 0);
}

/* A query for the dotted ASCII name `name` ("" or "." for the root). */
static void qb_query(struct qbuf *q, const char *name, uint16_t type, uint16_t qclass, bool do_bit,
                     bool cd)
{
    qb_header(q, (uint16_t)(0x0100 | (cd ? DNS_F_CD : 0)), true);
    const char *p = name;
    while (*p && strcmp(p, ".") != 0) {
        const char *dot = strchr(p, '.');
        size_t l = dot ? (size_t)(dot - p) : strlen(p);
        qb_label(q, p, l);
        p += l;
        if (*p == '.') p++;
    }
    qb_byte(q, 0);
    qb_16(q, type);
    qb_16(q, qclass);
    qb_opt(q, do_bit);
}

/* Parses the query, hashes with the query's DO, formats with prefix "cdrc". */
static void key_of(const struct qbuf *qb, uint64_t seed, char *out, size_t cap)
{
    struct dns_question q;
    assert_int_equal(dns_question_parse(&q, qb->b, qb->n), DNS_OK);
    uint64_t h = dns_key_hash(&q, q.do_bit, seed);
    assert_int_equal(dns_key_format(out, cap, "cdrc", 4, h), 4 + 1 + 16);
}

static void assert_key(const struct qbuf *qb, uint64_t seed, const char *want)
{
    char key[64];
    key_of(qb, seed, key, sizeof(key));
    assert_string_equal(key, want);
}

static void test_key_example_com_a(void **state)
{
    struct qbuf qb;
    qb_query(&qb, "example.com", DNS_T_A, DNS_C_IN, false, false);
    assert_key(&qb, 0, "cdrc:fdef38255ee550ba");
}

static void test_key_uppercase_equals_lowercase(void **state)
{
    struct qbuf qb;
    qb_query(&qb, "EXAMPLE.COM", DNS_T_A, DNS_C_IN, false, false);
    assert_key(&qb, 0, "cdrc:fdef38255ee550ba");
    qb_query(&qb, "ExAmPlE.cOm", DNS_T_A, DNS_C_IN, false, false);
    assert_key(&qb, 0, "cdrc:fdef38255ee550ba");
}

static void test_key_do_bit(void **state)
{
    struct qbuf qb;
    qb_query(&qb, "example.com", DNS_T_A, DNS_C_IN, true, false);
    assert_key(&qb, 0, "cdrc:f683c51c295893b6");
}

static void test_key_cd_bit(void **state)
{
    struct qbuf qb;
    qb_query(&qb, "example.com", DNS_T_A, DNS_C_IN, false, true);
    assert_key(&qb, 0, "cdrc:c67d238979651d44");
}

static void test_key_aaaa(void **state)
{
    struct qbuf qb;
    qb_query(&qb, "example.com", DNS_T_AAAA, DNS_C_IN, false, false);
    assert_key(&qb, 0, "cdrc:162a08d167302bde");
}

static void test_key_root_ns(void **state)
{
    struct qbuf qb;
    qb_query(&qb, ".", DNS_T_NS, DNS_C_IN, false, false);
    assert_key(&qb, 0, "cdrc:236fb91508e7d01f");
}

static void test_key_chaos_class(void **state)
{
    struct qbuf qb;
    qb_query(&qb, "version.bind", DNS_T_TXT, DNS_C_CH, false, false);
    assert_key(&qb, 0, "cdrc:459714b3f6d4c964");
}

static void test_key_long_subdomain(void **state)
{
    struct qbuf qb;
    qb_query(&qb, "www.some-long-subdomain.example.org", DNS_T_A, DNS_C_IN, false, false);
    assert_key(&qb, 0, "cdrc:6b7484ff55b5caa5");
}

static void test_key_seed(void **state)
{
    struct qbuf qb;
    qb_query(&qb, "example.com", DNS_T_A, DNS_C_IN, false, false);
    assert_key(&qb, 0x9e3779b97f4a7c15ull, "cdrc:c2a5dc566be14503");
}

/* A query whose first label is the raw bytes `label` followed by "example". */
static void qb_query_label(struct qbuf *q, const void *label, size_t len)
{
    qb_header(q, 0x0100, true);
    qb_label(q, label, len);
    qb_label(q, "example", 7);
    qb_byte(q, 0);
    qb_16(q, DNS_T_A);
    qb_16(q, DNS_C_IN);
    qb_opt(q, false);
}

static void test_key_escaped_dot(void **state)
{
    struct qbuf qb;
    qb_query_label(&qb, "a.b", 3);
    assert_key(&qb, 0, "cdrc:2d1a395f0912f4ae");
}

static void test_key_escaped_space(void **state)
{
    struct qbuf qb;
    qb_query_label(&qb, "a b", 3);
    assert_key(&qb, 0, "cdrc:b776b4cfc133100b");
}

static void test_key_control_byte_ddd(void **state)
{
    struct qbuf qb;
    qb_query_label(&qb, "x\x01y", 3);
    assert_key(&qb, 0, "cdrc:909d7c6d4bda74f6");
}

static void test_key_high_byte_ddd(void **state)
{
    struct qbuf qb;
    qb_query_label(&qb, "x\xff", 2);
    assert_key(&qb, 0, "cdrc:cfb764c16f2aa1a5");
}

static void test_key_escaped_specials(void **state)
{
    struct qbuf qb;
    const char label[] = "a@b;c(d)e\"f\\g'h";
    qb_query_label(&qb, label, sizeof(label) - 1);
    assert_key(&qb, 0, "cdrc:5165e8c97ca4781f");
}

static void test_key_unescaped_punctuation_folded(void **state)
{
    struct qbuf qb;
    qb_query_label(&qb, "Mixed$Case~!*", 13);
    assert_key(&qb, 0, "cdrc:d404dae5c4834bf5");
}

/* The key is a hash of exactly the bytes SPEC §1.1 lists, nothing else. */
static void test_key_hash_matches_spec_bytes(void **state)
{
    struct qbuf qb;
    qb_query(&qb, "WWW.Example.com", DNS_T_AAAA, DNS_C_IN, true, true);
    struct dns_question q;
    assert_int_equal(dns_question_parse(&q, qb.b, qb.n), DNS_OK);
    const uint8_t want[] = {0,   1,   0,   28,  1,   1,   'w', 'w', 'w', '.', 'e',
                            'x', 'a', 'm', 'p', 'l', 'e', '.', 'c', 'o', 'm', '.'};
    assert_true(dns_key_hash(&q, true, 7) == XXH64(want, sizeof(want), 7));
}

/* A 255-byte wire name: 3 labels of 63 'a' and a last label of 61 bytes starting with 4
 * spaces (2 text bytes each), so its text is 258 bytes: text bytes 255 and 256 are the last
 * label's bytes 59 and 60, given here. */
static void qb_long(struct qbuf *q, uint8_t b59, uint8_t b60)
{
    uint8_t label[63];
    qb_header(q, 0x0100, false);
    memset(label, 'a', sizeof(label));
    for (int l = 0; l < 3; l++) qb_label(q, label, 63);
    memset(label, ' ', 4);
    label[59] = b59;
    label[60] = b60;
    qb_label(q, label, 61);
    qb_byte(q, 0);
    qb_16(q, DNS_T_A);
    qb_16(q, DNS_C_IN);
}

static uint64_t long_key(uint8_t b59, uint8_t b60)
{
    struct qbuf qb;
    struct dns_question q;
    char text[DNS_NAME_TEXT_MAX];
    qb_long(&qb, b59, b60);
    assert_int_equal(dns_question_parse(&q, qb.b, qb.n), DNS_OK);
    assert_int_equal(q.name_len, 255);
    size_t n = dns_name_to_text(q.name, q.name_len, text, sizeof(text), true);
    assert_int_equal(n, 258);
    assert_int_equal(text[255], b59 >= 'A' && b59 <= 'Z' ? b59 + 32 : b59);
    assert_int_equal(text[256], b60 >= 'A' && b60 <= 'Z' ? b60 + 32 : b60);
    return dns_key_hash(&q, false, 0);
}

static void test_key_name_text_cut_at_256(void **state)
{
    /* Differing only at text byte 256 (the 257th): same key. */
    assert_true(long_key('a', 'x') == long_key('a', 'y'));
}

static void test_key_name_text_differs_before_256(void **state)
{
    /* Text byte 255 is the last one hashed. */
    assert_true(long_key('x', 'a') != long_key('y', 'a'));
    assert_true(long_key('X', 'a') == long_key('x', 'a'));
}

static void test_key_prefix_trims_one_colon(void **state)
{
    assert_int_equal(dns_key_prefix_len("mycache:", 8), 7);
    assert_int_equal(dns_key_prefix_len("mycache", 7), 7);
    assert_int_equal(dns_key_prefix_len("a::", 3), 2);
    assert_int_equal(dns_key_prefix_len(":", 1), 0);
    assert_int_equal(dns_key_prefix_len("", 0), 0);
}

static void test_key_format_trimmed_prefix(void **state)
{
    char out[64];
    size_t pl = dns_key_prefix_len("mycache:", 8);
    assert_int_equal(dns_key_format(out, sizeof(out), "mycache:", pl, 0xfdef38255ee550baull),
                     7 + 1 + 16);
    assert_string_equal(out, "mycache:fdef38255ee550ba");
}

static void test_key_format_empty_prefix_is_bare_hex(void **state)
{
    char out[32];
    assert_int_equal(dns_key_format(out, sizeof(out), "", 0, 0x0123456789abcdefull), 16);
    assert_string_equal(out, "0123456789abcdef");
}

static void test_key_format_big_endian_zero_padded(void **state)
{
    char out[32];
    assert_int_equal(dns_key_format(out, sizeof(out), "p", 1, 0xAull), 18);
    assert_string_equal(out, "p:000000000000000a");
    assert_int_equal(dns_key_format(out, sizeof(out), "p", 1, UINT64_MAX), 18);
    assert_string_equal(out, "p:ffffffffffffffff");
}

static void test_key_format_needs_room_for_nul(void **state)
{
    char out[32];
    memset(out, 'Z', sizeof(out));
    assert_int_equal(dns_key_format(out, 21, "cdrc", 4, 1), 0);
    assert_int_equal(dns_key_format(out, 22, "cdrc", 4, 1), 21);
    assert_string_equal(out, "cdrc:0000000000000001");
    assert_int_equal(dns_key_format(out, 16, "", 0, 1), 0);
    assert_int_equal(dns_key_format(out, 17, "", 0, 1), 16);
}

static void test_key_seed_changes_key(void **state)
{
    struct qbuf qb;
    struct dns_question q;
    qb_query(&qb, "example.com", DNS_T_A, DNS_C_IN, false, false);
    assert_int_equal(dns_question_parse(&q, qb.b, qb.n), DNS_OK);
    assert_true(dns_key_hash(&q, false, 0) != dns_key_hash(&q, false, 1));
    assert_true(dns_key_hash(&q, false, 1) == dns_key_hash(&q, false, 1));
}

static void test_key_do_is_the_argument_not_the_query(void **state)
{
    /* Writes hash with the response's DO: the argument wins over q->do_bit. */
    struct qbuf qb;
    struct dns_question q;
    char key[64];
    qb_query(&qb, "example.com", DNS_T_A, DNS_C_IN, false, false);
    assert_int_equal(dns_question_parse(&q, qb.b, qb.n), DNS_OK);
    assert_false(q.do_bit);
    dns_key_format(key, sizeof(key), "cdrc", 4, dns_key_hash(&q, true, 0));
    assert_string_equal(key, "cdrc:f683c51c295893b6");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_example_com_a),
        cmocka_unit_test(test_key_uppercase_equals_lowercase),
        cmocka_unit_test(test_key_do_bit),
        cmocka_unit_test(test_key_cd_bit),
        cmocka_unit_test(test_key_aaaa),
        cmocka_unit_test(test_key_root_ns),
        cmocka_unit_test(test_key_chaos_class),
        cmocka_unit_test(test_key_long_subdomain),
        cmocka_unit_test(test_key_seed),
        cmocka_unit_test(test_key_escaped_dot),
        cmocka_unit_test(test_key_escaped_space),
        cmocka_unit_test(test_key_control_byte_ddd),
        cmocka_unit_test(test_key_high_byte_ddd),
        cmocka_unit_test(test_key_escaped_specials),
        cmocka_unit_test(test_key_unescaped_punctuation_folded),
        cmocka_unit_test(test_key_hash_matches_spec_bytes),
        cmocka_unit_test(test_key_name_text_cut_at_256),
        cmocka_unit_test(test_key_name_text_differs_before_256),
        cmocka_unit_test(test_key_prefix_trims_one_colon),
        cmocka_unit_test(test_key_format_trimmed_prefix),
        cmocka_unit_test(test_key_format_empty_prefix_is_bare_hex),
        cmocka_unit_test(test_key_format_big_endian_zero_padded),
        cmocka_unit_test(test_key_format_needs_room_for_nul),
        cmocka_unit_test(test_key_seed_changes_key),
        cmocka_unit_test(test_key_do_is_the_argument_not_the_query),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
