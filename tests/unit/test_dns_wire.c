/* tests/unit/test_dns_wire.c — the message parser (one test per rule and error), RDATA
 * checks, the question of a query, and acceptance of real knotd messages. Malformed messages
 * are built byte by byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "dns/dns.h"
#include "support/fixtures.h"

/* ---- a byte-by-byte message builder ---- */

struct mb {
    uint8_t b[4096];
    size_t n;
};

static void mb_byte(struct mb *m, uint8_t v)
{
    assert_true(m->n < sizeof(m->b));
    m->b[m->n++] = v;
}

static void mb_16(struct mb *m, uint16_t v)
{
    mb_byte(m, (uint8_t)(v >> 8));
    mb_byte(m, (uint8_t)v);
}

static void mb_32(struct mb *m, uint32_t v)
{
    mb_16(m, (uint16_t)(v >> 16));
    mb_16(m, (uint16_t)v);
}

static void mb_bytes(struct mb *m, const void *p, size_t len)
{
    for (size_t i = 0; i < len; i++) mb_byte(m, ((const uint8_t *)p)[i]);
}

static void mb_header(struct mb *m, uint16_t flags, uint16_t qd, uint16_t an, uint16_t ns,
                      uint16_t ar)
{
    m->n = 0;
    mb_16(m, 0xBEEF);
    mb_16(m, flags);
    mb_16(m, qd);
    mb_16(m, an);
    mb_16(m, ns);
    mb_16(m, ar);
}

/* Dotted ASCII name, uncompressed, root label included; "." is the root. */
static void mb_name(struct mb *m, const char *name)
{
    const char *p = name;
    while (*p && strcmp(p, ".") != 0) {
        const char *dot = strchr(p, '.');
        size_t l = dot ? (size_t)(dot - p) : strlen(p);
        mb_byte(m, (uint8_t)l);
        mb_bytes(m, p, l);
        p += l;
        if (*p == '.') p++;
    }
    mb_byte(m, 0);
}

static void mb_ptr(struct mb *m, uint16_t off)
{
    mb_16(m, (uint16_t)(0xC000 | off));
}

static void mb_question(struct mb *m, const char *name, uint16_t type)
{
    mb_name(m, name);
    mb_16(m, type);
    mb_16(m, DNS_C_IN);
}

/* Type, class, TTL and RDLENGTH after an owner already written. */
static void mb_rr_fixed(struct mb *m, uint16_t type, uint16_t rclass, uint32_t ttl, uint16_t rdlen)
{
    mb_16(m, type);
    mb_16(m, rclass);
    mb_32(m, ttl);
    mb_16(m, rdlen);
}

static void mb_a(struct mb *m, uint32_t ttl)
{
    mb_rr_fixed(m, DNS_T_A, DNS_C_IN, ttl, 4);
    mb_32(m, 0xC0000201);
}

/* OPT RR with root owner: UDP size, version, DO, no options. */
static void mb_opt(struct mb *m, uint16_t udp, uint8_t ext_rcode, uint8_t version, bool do_bit)
{
    mb_byte(m, 0);
    mb_16(m, DNS_T_OPT);
    mb_16(m, udp);
    mb_byte(m, ext_rcode);
    mb_byte(m, version);
    mb_16(m, do_bit ? DNS_EDNS_DO : 0);
    mb_16(m, 0);
}

static enum dns_err parse(const struct mb *m)
{
    struct dns_msg msg;
    struct dns_rr rrs[64];
    return dns_msg_parse(&msg, m->b, m->n, rrs, 64);
}

/* A query for example.com A: the starting point most tests corrupt. */
static void mb_query(struct mb *m)
{
    mb_header(m, DNS_F_RD, 1, 0, 0, 0);
    mb_question(m, "example.com", DNS_T_A);
}

/* ---- header, counts, framing ---- */

static void test_parse_rejects_short_header(void **state)
{
    struct mb m;
    mb_header(&m, 0, 0, 0, 0, 0);
    struct dns_msg msg;
    assert_int_equal(dns_msg_parse(&msg, m.b, 11, NULL, 0), DNS_ERR_SHORT_HEADER);
    assert_int_equal(dns_msg_parse(&msg, m.b, 0, NULL, 0), DNS_ERR_SHORT_HEADER);
}

static void test_parse_accepts_bare_header(void **state)
{
    struct mb m;
    mb_header(&m, DNS_F_QR | DNS_F_CD | 3, 0, 0, 0, 0);
    struct dns_msg msg;
    assert_int_equal(dns_msg_parse(&msg, m.b, m.n, NULL, 0), DNS_OK);
    assert_int_equal(msg.id, 0xBEEF);
    assert_int_equal(msg.flags, DNS_F_QR | DNS_F_CD | 3);
    assert_int_equal(msg.qend, DNS_HEADER_LEN);
    assert_int_equal(msg.opt, -1);
    assert_false(msg.has_edns);
}

static void test_parse_rejects_over_65535_bytes(void **state)
{
    static uint8_t big[DNS_MSG_MAX + 1];
    struct dns_msg msg;
    assert_int_equal(dns_msg_parse(&msg, big, sizeof(big), NULL, 0), DNS_ERR_TOO_BIG);
}

static void test_parse_rejects_trailing_bytes(void **state)
{
    struct mb m;
    mb_query(&m);
    assert_int_equal(parse(&m), DNS_OK);
    mb_byte(&m, 0);
    assert_int_equal(parse(&m), DNS_ERR_TRAILING_BYTES);
}

static void test_parse_rejects_count_beyond_data(void **state)
{
    /* ANCOUNT says 1 but the message ends after the question. */
    struct mb m;
    mb_header(&m, DNS_F_QR, 1, 1, 0, 0);
    mb_question(&m, "example.com", DNS_T_A);
    assert_int_equal(parse(&m), DNS_ERR_NAME_TRUNCATED);
}

static void test_parse_rejects_truncated_question(void **state)
{
    struct mb m;
    mb_query(&m);
    m.n -= 1; /* QCLASS cut in half */
    assert_int_equal(parse(&m), DNS_ERR_QUESTION_TRUNCATED);
    m.n -= 3; /* name complete, no type or class */
    assert_int_equal(parse(&m), DNS_ERR_QUESTION_TRUNCATED);
}

static void test_parse_rejects_truncated_rr(void **state)
{
    struct mb m;
    mb_header(&m, DNS_F_QR, 1, 1, 0, 0);
    mb_question(&m, "example.com", DNS_T_A);
    mb_ptr(&m, 12);
    mb_16(&m, DNS_T_A);
    mb_16(&m, DNS_C_IN);
    mb_32(&m, 300);
    mb_byte(&m, 0); /* half an RDLENGTH */
    assert_int_equal(parse(&m), DNS_ERR_RR_TRUNCATED);
}

static void test_parse_rejects_rdata_overrun(void **state)
{
    struct mb m;
    mb_header(&m, DNS_F_QR, 1, 1, 0, 0);
    mb_question(&m, "example.com", DNS_T_A);
    mb_ptr(&m, 12);
    mb_rr_fixed(&m, DNS_T_A, DNS_C_IN, 300, 5);
    mb_32(&m, 0x01020304);
    assert_int_equal(parse(&m), DNS_ERR_RDATA_OVERRUN);
    mb_byte(&m, 5);
    assert_int_equal(parse(&m), DNS_OK);
}

/* ---- names ---- */

static void test_parse_rejects_forward_pointer(void **state)
{
    struct mb m;
    mb_header(&m, 0, 1, 0, 0, 0);
    mb_ptr(&m, 18); /* points past itself */
    mb_16(&m, DNS_T_A);
    mb_16(&m, DNS_C_IN);
    mb_byte(&m, 0);
    assert_int_equal(parse(&m), DNS_ERR_BAD_POINTER);
}

static void test_parse_rejects_pointer_to_itself(void **state)
{
    struct mb m;
    mb_header(&m, 0, 1, 0, 0, 0);
    mb_ptr(&m, 12);
    mb_16(&m, DNS_T_A);
    mb_16(&m, DNS_C_IN);
    assert_int_equal(parse(&m), DNS_ERR_BAD_POINTER);
}

static void test_parse_rejects_pointer_into_header(void **state)
{
    struct mb m;
    mb_header(&m, DNS_F_QR, 1, 1, 0, 0);
    mb_question(&m, "example.com", DNS_T_A);
    mb_ptr(&m, 11); /* the last header byte happens to be 0 (ARCOUNT): a root name */
    mb_a(&m, 300);
    assert_int_equal(parse(&m), DNS_ERR_BAD_POINTER);
}

/* `nq` questions: the first is the root, each later one is a single pointer to the name of
 * the one before, so the last name follows nq-1 pointers, every one strictly backwards. */
static void mb_pointer_chain(struct mb *m, unsigned nq)
{
    mb_header(m, 0, (uint16_t)nq, 0, 0, 0);
    size_t prev = m->n;
    mb_byte(m, 0);
    mb_16(m, DNS_T_A);
    mb_16(m, DNS_C_IN);
    for (unsigned i = 1; i < nq; i++) {
        size_t here = m->n;
        mb_ptr(m, (uint16_t)prev);
        mb_16(m, DNS_T_A);
        mb_16(m, DNS_C_IN);
        prev = here;
    }
}

static void test_parse_rejects_pointer_chain_over_hop_bound(void **state)
{
    struct mb m;
    mb_pointer_chain(&m, DNS_PTR_HOPS_MAX + 2);
    assert_int_equal(parse(&m), DNS_ERR_POINTER_LOOP);
    /* Exactly DNS_PTR_HOPS_MAX hops is allowed. */
    mb_pointer_chain(&m, DNS_PTR_HOPS_MAX + 1);
    assert_int_equal(parse(&m), DNS_OK);
}

static void test_parse_rejects_label_pointer_cycle(void **state)
{
    /* "a" then a pointer back to the "a": backwards, but it would repeat forever; the name
     * grows by 2 bytes a turn and hits the 255 bound before the hop bound. */
    struct mb m;
    mb_header(&m, 0, 1, 0, 0, 0);
    mb_byte(&m, 1);
    mb_byte(&m, 'a');
    mb_ptr(&m, 12);
    mb_16(&m, DNS_T_A);
    mb_16(&m, DNS_C_IN);
    assert_int_equal(parse(&m), DNS_ERR_NAME_TOO_LONG);
}

/* ---- compression pointers aim only at names read earlier ---- */

/* A response to example.com A whose answer owner is a pointer to `target`, RDATA 4 bytes. */
static void mb_answer_owner_ptr(struct mb *m, uint16_t target)
{
    mb_ptr(m, target);
    mb_a(m, 60);
}

static void test_parse_rejects_pointer_into_ttl_field(void **state)
{
    /* The first answer's TTL is the bytes 01 'a' 00 00: read as a name, "a.". RFC 1035 lets a
     * pointer aim at any earlier byte, but a TTL patch would turn the second owner into
     * another name, so the parser refuses it. */
    struct mb m;
    mb_header(&m, DNS_F_QR, 1, 2, 0, 0);
    mb_question(&m, "example.com", DNS_T_A);
    mb_ptr(&m, 12);
    size_t ttl = m.n + 4;
    mb_rr_fixed(&m, DNS_T_A, DNS_C_IN, 0x01610000u, 4);
    mb_32(&m, 0xC0000201);
    mb_answer_owner_ptr(&m, (uint16_t)ttl);
    /* A legal pointer for the name reader on its own... */
    size_t len = 0, next = 0;
    assert_int_equal(dns_name_unpack(m.b, m.n, m.n - 16, NULL, &len, &next), DNS_OK);
    assert_int_equal(len, 3);
    /* ...but not in a message. */
    assert_int_equal(parse(&m), DNS_ERR_BAD_POINTER);
}

static void test_parse_rejects_pointer_into_qtype_qclass_bytes(void **state)
{
    /* QTYPE A and QCLASS IN are 00 01 00 01: each 00 reads as the root name. */
    struct mb m;
    for (size_t k = 0; k < 4; k++) {
        mb_header(&m, DNS_F_QR, 1, 1, 0, 0);
        mb_question(&m, "example.com", DNS_T_A);
        size_t qtype = m.n - 4;
        mb_answer_owner_ptr(&m, (uint16_t)(qtype + k));
        assert_int_equal(parse(&m), DNS_ERR_BAD_POINTER);
    }
}

static void test_parse_rejects_pointer_into_the_middle_of_a_label(void **state)
{
    /* The first label's bytes 01 'a' 00 read as the name "a."; only label starts count. */
    static const uint8_t qname[] = {3, 1, 'a', 0, 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0};
    struct mb m;
    for (uint16_t target = 12; target < 12 + sizeof qname; target++) {
        mb_header(&m, DNS_F_QR, 1, 1, 0, 0);
        mb_bytes(&m, qname, sizeof qname);
        mb_16(&m, DNS_T_A);
        mb_16(&m, DNS_C_IN);
        mb_answer_owner_ptr(&m, target);
        bool element = target == 12 || target == 16 || target == 24;
        assert_int_equal(parse(&m), element ? DNS_OK : DNS_ERR_BAD_POINTER);
    }
}

static void test_parse_rejects_pointer_into_rdata_of_unknown_type(void **state)
{
    /* RDATA of a type the parser does not read (opaque: TXT, A, a private type) may hold
     * bytes that look like a name; they are not one. */
    static const uint16_t types[] = {65280, DNS_T_TXT, DNS_T_A};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        struct mb m;
        mb_header(&m, DNS_F_QR, 1, 2, 0, 0);
        mb_question(&m, "example.com", DNS_T_A);
        mb_ptr(&m, 12);
        mb_rr_fixed(&m, types[i], DNS_C_IN, 60, 4);
        size_t rdata = m.n;
        mb_byte(&m, 2);
        mb_bytes(&m, "xy", 2);
        mb_byte(&m, 0);
        mb_answer_owner_ptr(&m, (uint16_t)rdata);
        assert_int_equal(parse(&m), DNS_ERR_BAD_POINTER);
    }
}

static void test_parse_accepts_pointer_to_mx_exchange_name(void **state)
{
    /* NS target "ns1" + ptr; the MX exchange is itself compressed against the NS target; the
     * additional A for the exchange points at the MX RDATA name: what encoders write. */
    struct mb m;
    mb_header(&m, DNS_F_QR, 1, 2, 0, 1);
    mb_question(&m, "example.com", DNS_T_MX);
    mb_ptr(&m, 12);
    mb_rr_fixed(&m, DNS_T_NS, DNS_C_IN, 60, 6);
    size_t ns = m.n;
    mb_byte(&m, 3);
    mb_bytes(&m, "ns1", 3);
    mb_ptr(&m, 12);
    mb_ptr(&m, 12);
    mb_rr_fixed(&m, DNS_T_MX, DNS_C_IN, 60, 4);
    mb_16(&m, 10);
    size_t exchange = m.n;
    mb_ptr(&m, (uint16_t)ns);
    mb_answer_owner_ptr(&m, (uint16_t)exchange);
    struct dns_msg msg;
    struct dns_rr rrs[4];
    assert_int_equal(dns_msg_parse(&msg, m.b, m.n, rrs, 4), DNS_OK);
    assert_int_equal(dns_msg_check_rdata(&msg), DNS_OK);
    uint8_t a[DNS_NAME_MAX], b[DNS_NAME_MAX];
    size_t la = 0, lb = 0, next = 0;
    assert_int_equal(dns_name_unpack(m.b, m.n, rrs[2].owner, a, &la, &next), DNS_OK);
    assert_int_equal(dns_name_unpack(m.b, m.n, ns, b, &lb, &next), DNS_OK);
    assert_int_equal(la, lb);
    assert_memory_equal(a, b, la);

    /* The MX exchange's own label, after the preference, is a target too. */
    mb_header(&m, DNS_F_QR, 1, 1, 0, 1);
    mb_question(&m, "example.com", DNS_T_MX);
    mb_ptr(&m, 12);
    mb_rr_fixed(&m, DNS_T_MX, DNS_C_IN, 60, 9);
    mb_16(&m, 10);
    exchange = m.n;
    mb_byte(&m, 4);
    mb_bytes(&m, "mail", 4);
    mb_ptr(&m, 12);
    mb_answer_owner_ptr(&m, (uint16_t)exchange);
    assert_int_equal(parse(&m), DNS_OK);
    /* Not the preference bytes before it. */
    m.n -= 16;
    mb_answer_owner_ptr(&m, (uint16_t)(exchange - 1));
    assert_int_equal(parse(&m), DNS_ERR_BAD_POINTER);
}

static void test_parse_accepts_pointer_to_a_pointer(void **state)
{
    /* The second owner points at the first owner, which is itself a pointer. */
    struct mb m;
    mb_header(&m, DNS_F_QR, 1, 2, 0, 0);
    mb_question(&m, "example.com", DNS_T_A);
    size_t first = m.n;
    mb_answer_owner_ptr(&m, 12);
    mb_answer_owner_ptr(&m, (uint16_t)first);
    struct dns_msg msg;
    struct dns_rr rrs[4];
    assert_int_equal(dns_msg_parse(&msg, m.b, m.n, rrs, 4), DNS_OK);
    uint8_t a[DNS_NAME_MAX];
    size_t la = 0, next = 0;
    assert_int_equal(dns_name_unpack(m.b, m.n, rrs[1].owner, a, &la, &next), DNS_OK);
    assert_int_equal(la, 13);
    assert_memory_equal(a, "\7example\3com", 13);
    /* A pointer to the second byte of that pointer is not. */
    m.n -= 16;
    mb_answer_owner_ptr(&m, (uint16_t)(first + 1));
    assert_int_equal(parse(&m), DNS_ERR_BAD_POINTER);
}

static void test_parse_accepts_pointers_to_names_in_every_name_rdata(void **state)
{
    /* One RR of each type whose RDATA names the parser reads, each RDATA name "<x>" + ptr
     * 12; then an A RR whose owner points at each of those names in turn. */
    static const struct {
        uint16_t type;
        size_t before; /* fixed bytes before the name */
        size_t after;  /* fixed bytes after it */
    } kinds[] = {
        {DNS_T_NS, 0, 0},    {DNS_T_CNAME, 0, 0},  {DNS_T_PTR, 0, 0},
        {DNS_T_DNAME, 0, 0}, {DNS_T_MX, 2, 0},     {DNS_T_SRV, 6, 0},
        {DNS_T_SOA, 0, 0},   {DNS_T_RRSIG, 18, 8}, {DNS_T_NSEC, 0, 6},
    };
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        struct mb m;
        mb_header(&m, DNS_F_QR, 1, 1, 0, 1);
        mb_question(&m, "example.com", DNS_T_A);
        mb_ptr(&m, 12);
        bool soa = kinds[k].type == DNS_T_SOA;
        size_t rdlen = kinds[k].before + 4 + kinds[k].after + (soa ? 4 + 20 : 0);
        mb_rr_fixed(&m, kinds[k].type, DNS_C_IN, 60, (uint16_t)rdlen);
        for (size_t i = 0; i < kinds[k].before; i++) mb_byte(&m, 0);
        size_t name = m.n;
        mb_byte(&m, 1);
        mb_byte(&m, 'x');
        mb_ptr(&m, 12);
        if (soa) {
            name = m.n; /* the second name: it points at the first */
            mb_byte(&m, 1);
            mb_byte(&m, 'y');
            mb_ptr(&m, (uint16_t)(name - 4));
            for (int i = 0; i < 20; i++) mb_byte(&m, 0);
        }
        for (size_t i = 0; i < kinds[k].after; i++) mb_byte(&m, 0);
        mb_answer_owner_ptr(&m, (uint16_t)name);
        if (parse(&m) != DNS_OK) fail_msg("type %u: %s", kinds[k].type, dns_strerror(parse(&m)));
    }
}

static void test_parse_rejects_pointer_to_malformed_rdata_name(void **state)
{
    /* The NS RDATA is "a" then a 0x41 byte (a bad label type): the message parses (check_rdata
     * is the judge of RDATA), but that is no name a pointer may aim at. */
    struct mb m;
    mb_header(&m, DNS_F_QR, 1, 1, 0, 0);
    mb_question(&m, "example.com", DNS_T_NS);
    mb_ptr(&m, 12);
    mb_rr_fixed(&m, DNS_T_NS, DNS_C_IN, 60, 4);
    size_t rdata = m.n;
    mb_bytes(&m, "\1a\101\0", 4);
    struct dns_msg msg;
    struct dns_rr rrs[4];
    assert_int_equal(dns_msg_parse(&msg, m.b, m.n, rrs, 4), DNS_OK);
    assert_int_equal(dns_msg_check_rdata(&msg), DNS_ERR_BAD_LABEL_TYPE);
    m.b[7] = 2; /* ANCOUNT */
    mb_answer_owner_ptr(&m, (uint16_t)rdata);
    assert_int_equal(parse(&m), DNS_ERR_BAD_POINTER);
}

static void test_parse_rejects_pointer_inside_rdata_name_to_other_bytes(void **state)
{
    /* A CNAME target that points into the answer's own TTL: pointers in RDATA names obey the
     * same rule, so a TTL patch cannot change the target either. */
    struct mb m;
    mb_header(&m, DNS_F_QR, 1, 1, 0, 0);
    mb_question(&m, "example.com", DNS_T_CNAME);
    mb_ptr(&m, 12);
    size_t ttl = m.n + 4;
    mb_rr_fixed(&m, DNS_T_CNAME, DNS_C_IN, 0x01610000u, 2);
    mb_ptr(&m, (uint16_t)ttl);
    assert_int_equal(parse(&m), DNS_ERR_BAD_POINTER);
}

static void test_parse_rejects_pointer_to_opt_owner(void **state)
{
    /* The OPT's root owner is a name on the wire, but the OPT is cut or replaced on every
     * hop: nothing may point at it. */
    struct mb m;
    mb_header(&m, DNS_F_QR, 1, 0, 0, 2);
    mb_question(&m, "example.com", DNS_T_A);
    size_t opt = m.n;
    mb_opt(&m, 1232, 0, 0, false);
    mb_byte(&m, 1);
    mb_byte(&m, 'x');
    mb_ptr(&m, (uint16_t)opt);
    mb_a(&m, 60);
    assert_int_equal(parse(&m), DNS_ERR_BAD_POINTER);
}

static void test_parse_rejects_fuzz_owner_into_question_label_bytes(void **state)
{
    /* fuzz/corpus/dns_msg/regress_owner_pointer_into_question_label_bytes: names that point
     * into the middle of the question's labels; the hit reply rewrites those bytes (the
     * client's letter case) and the reply said something else. */
    static const uint8_t msg[] = {
        0x00, 0x08, 0x84, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x03, 0x07, 0x65, 0x78,
        0x61, 0x6d, 0x4d, 0x00, 0x1c, 0x1c, 0x1c, 0x1c, 0x1c, 0x1c, 0x1c, 0x1c, 0x1c, 0x70, 0x6c,
        0x65, 0x03, 0x63, 0x6f, 0x6d, 0x00, 0x00, 0x0f, 0x00, 0x01, 0xc0, 0x0c, 0x00, 0x0f, 0x00,
        0x01, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x09, 0x00, 0x00, 0x01, 0x2b, 0x00, 0x00, 0x00, 0x03,
        0x07, 0x65, 0x78, 0x61, 0x6d, 0x4d, 0x00, 0x1c, 0x1c, 0x1c, 0x1c, 0x1c, 0x1c, 0x1c, 0x1c,
        0x1c, 0x70, 0x6c, 0x65, 0x03, 0x63, 0x6f, 0x6d, 0x00, 0x00, 0x0f, 0x00, 0x01, 0xc0, 0x0c,
        0x00, 0x0f, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x09, 0x00, 0x00, 0x00, 0x3c, 0x09,
        0x00, 0x01, 0x00, 0x00, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x02,
        0xc0, 0x49, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x29, 0x00, 0x00, 0x80, 0x00, 0x00, 0x0a, 0x40, 0x00, 0x08, 0x63,
        0x6f, 0x05, 0x6d, 0x61, 0x69, 0x6c, 0x32, 0xc0, 0x0c, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00,
        0x24, 0x00, 0x00, 0x01, 0x01, 0x01, 0x02, 0xc0, 0x6f, 0x73, 0x74, 0x6d, 0x61, 0x73, 0x74,
        0x65, 0x3c, 0x00, 0x04, 0x41, 0x00, 0x00, 0x03,
    };
    struct dns_msg m;
    struct dns_rr rrs[8];
    assert_int_equal(dns_msg_parse(&m, msg, sizeof msg, rrs, 8), DNS_ERR_BAD_POINTER);
}

static void test_parse_rejects_label_length_64(void **state)
{
    /* A length byte of 64 is 0b01000000: on the wire that is the 0x40 (extended) label
     * type, not a long label, so it is refused as a label type. */
    struct mb m;
    mb_header(&m, 0, 1, 0, 0, 0);
    mb_byte(&m, 64);
    for (int i = 0; i < 64; i++) mb_byte(&m, 'a');
    mb_byte(&m, 0);
    mb_16(&m, DNS_T_A);
    mb_16(&m, DNS_C_IN);
    assert_int_equal(parse(&m), DNS_ERR_BAD_LABEL_TYPE);
    /* 63 is fine. */
    mb_header(&m, 0, 1, 0, 0, 0);
    mb_byte(&m, 63);
    for (int i = 0; i < 63; i++) mb_byte(&m, 'a');
    mb_byte(&m, 0);
    mb_16(&m, DNS_T_A);
    mb_16(&m, DNS_C_IN);
    assert_int_equal(parse(&m), DNS_OK);
}

static void test_parse_rejects_0x40_label_type(void **state)
{
    struct mb m;
    mb_header(&m, 0, 1, 0, 0, 0);
    mb_byte(&m, 0x41); /* RFC 2673 binary label */
    mb_byte(&m, 8);
    mb_byte(&m, 0xFF);
    mb_byte(&m, 0);
    mb_16(&m, DNS_T_A);
    mb_16(&m, DNS_C_IN);
    assert_int_equal(parse(&m), DNS_ERR_BAD_LABEL_TYPE);
}

static void test_parse_rejects_0x80_label_type(void **state)
{
    struct mb m;
    mb_header(&m, 0, 1, 0, 0, 0);
    mb_byte(&m, 0x80);
    mb_byte(&m, 0);
    mb_16(&m, DNS_T_A);
    mb_16(&m, DNS_C_IN);
    assert_int_equal(parse(&m), DNS_ERR_BAD_LABEL_TYPE);
}

/* A question whose name is `wire_len` bytes on the wire (root included): labels of 63 then
 * one shorter label. wire_len >= 3. */
static void mb_query_name_len(struct mb *m, size_t wire_len)
{
    mb_header(m, 0, 1, 0, 0, 0);
    size_t left = wire_len - 1; /* bytes of labels with their length bytes */
    while (left > 0) {
        size_t l = left - 1 > 63 ? 63 : left - 1;
        if (left - (l + 1) == 1) l--; /* never leave a lone byte: it cannot be a label */
        mb_byte(m, (uint8_t)l);
        for (size_t i = 0; i < l; i++) mb_byte(m, 'x');
        left -= l + 1;
    }
    mb_byte(m, 0);
    mb_16(m, DNS_T_A);
    mb_16(m, DNS_C_IN);
}

static void test_parse_accepts_255_byte_name(void **state)
{
    struct mb m;
    mb_query_name_len(&m, 255);
    assert_int_equal(m.n, DNS_HEADER_LEN + 255 + 4);
    struct dns_question q;
    assert_int_equal(dns_question_parse(&q, m.b, m.n), DNS_OK);
    assert_int_equal(q.name_len, 255);
}

static void test_parse_rejects_256_byte_name(void **state)
{
    struct mb m;
    mb_query_name_len(&m, 256);
    assert_int_equal(m.n, DNS_HEADER_LEN + 256 + 4);
    assert_int_equal(parse(&m), DNS_ERR_NAME_TOO_LONG);
}

static void test_parse_rejects_256_byte_name_through_pointer(void **state)
{
    /* Each part is short; the expansion is 256 bytes. */
    struct mb m;
    mb_header(&m, DNS_F_QR, 1, 1, 0, 0);
    size_t qname = m.n;
    for (int i = 0; i < 3; i++) {
        mb_byte(&m, 63);
        for (int j = 0; j < 63; j++) mb_byte(&m, 'q');
    }
    mb_byte(&m, 0);
    mb_16(&m, DNS_T_A);
    mb_16(&m, DNS_C_IN);
    assert_int_equal(parse(&m), DNS_ERR_NAME_TRUNCATED); /* ANCOUNT 1, no answer yet */
    /* Owner: a 62-byte label + pointer to the 193-byte qname = 63 + 193 = 256. */
    mb_byte(&m, 62);
    for (int j = 0; j < 62; j++) mb_byte(&m, 'o');
    mb_ptr(&m, (uint16_t)qname);
    mb_a(&m, 1);
    assert_int_equal(parse(&m), DNS_ERR_NAME_TOO_LONG);
}

static void test_parse_rejects_truncated_name(void **state)
{
    struct mb m;
    mb_header(&m, 0, 1, 0, 0, 0);
    mb_byte(&m, 7);
    mb_bytes(&m, "exam", 4); /* label cut short */
    assert_int_equal(parse(&m), DNS_ERR_NAME_TRUNCATED);

    mb_header(&m, 0, 1, 0, 0, 0);
    mb_byte(&m, 3);
    mb_bytes(&m, "com", 3); /* no root byte */
    assert_int_equal(parse(&m), DNS_ERR_NAME_TRUNCATED);
}

static void test_parse_rejects_truncated_pointer(void **state)
{
    struct mb m;
    mb_header(&m, 0, 1, 0, 0, 0);
    mb_byte(&m, 0xC0); /* first byte of a pointer, then the end */
    assert_int_equal(parse(&m), DNS_ERR_NAME_TRUNCATED);
}

/* ---- sections, RR array, OPT ---- */

/* example.com A response: 2 answers, 1 authority NS, 1 additional A, optional OPT. */
static void mb_response(struct mb *m, bool opt)
{
    mb_header(m, DNS_F_QR | DNS_F_RD | DNS_F_RA, 1, 2, 1, opt ? 2 : 1);
    mb_question(m, "example.com", DNS_T_A);
    mb_ptr(m, 12);
    mb_a(m, 300);
    mb_ptr(m, 12);
    mb_a(m, 200);
    mb_ptr(m, 12);
    mb_rr_fixed(m, DNS_T_NS, DNS_C_IN, 3600, 6);
    mb_byte(m, 3);
    mb_bytes(m, "ns1", 3);
    mb_ptr(m, 12);
    mb_byte(m, 3);
    mb_bytes(m, "ns1", 3);
    mb_ptr(m, 12);
    mb_a(m, 3600);
    if (opt) mb_opt(m, 4096, 0, 0, true);
}

static void test_parse_records_rrs_in_order(void **state)
{
    struct mb m;
    mb_response(&m, true);
    struct dns_msg msg;
    struct dns_rr rrs[8];
    assert_int_equal(dns_msg_parse(&msg, m.b, m.n, rrs, 8), DNS_OK);
    assert_int_equal(msg.count[0], 1);
    assert_int_equal(msg.count[1], 2);
    assert_int_equal(msg.count[2], 1);
    assert_int_equal(msg.count[3], 2);
    assert_int_equal(msg.nrr, 5);
    assert_ptr_equal(msg.rr, rrs);
    const uint8_t want_sec[] = {1, 1, 2, 3, 3};
    const uint16_t want_type[] = {DNS_T_A, DNS_T_A, DNS_T_NS, DNS_T_A, DNS_T_OPT};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(rrs[i].section, want_sec[i]);
        assert_int_equal(rrs[i].type, want_type[i]);
    }
    assert_int_equal(msg.qname_off, 12);
    assert_int_equal(msg.qtype, DNS_T_A);
    assert_int_equal(msg.qclass, DNS_C_IN);
    assert_int_equal(msg.qend, 12 + 13 + 4);
    assert_int_equal(rrs[0].owner, msg.qend);
    assert_int_equal(rrs[0].ttl_off, msg.qend + 2 + 4);
    assert_int_equal(dns_get32(m.b + rrs[0].ttl_off), 300);
    assert_int_equal(dns_get32(m.b + rrs[1].ttl_off), 200);
    assert_int_equal(rrs[0].rdlen, 4);
    assert_int_equal(dns_get32(m.b + rrs[0].rdata), 0xC0000201);
    assert_int_equal(rrs[1].owner, rrs[0].rdata + 4);
    assert_int_equal(rrs[4].rdata + rrs[4].rdlen, m.n);
    assert_true(msg.compressed);
}

static void test_parse_reads_edns_fields(void **state)
{
    struct mb m;
    mb_header(&m, DNS_F_QR, 1, 0, 0, 1);
    mb_question(&m, "example.com", DNS_T_A);
    size_t opt_off = m.n;
    mb_byte(&m, 0);
    mb_16(&m, DNS_T_OPT);
    mb_16(&m, 1400);
    mb_byte(&m, 1); /* ext rcode: BADVERS with rcode 0 */
    mb_byte(&m, 2); /* version */
    mb_16(&m, 0x8000);
    mb_16(&m, 8); /* one ECS option */
    mb_16(&m, DNS_EDNS_OPT_ECS);
    mb_16(&m, 4);
    mb_32(&m, 0x00010000);
    struct dns_msg msg;
    struct dns_rr rrs[4];
    assert_int_equal(dns_msg_parse(&msg, m.b, m.n, rrs, 4), DNS_OK);
    assert_true(msg.has_edns);
    assert_int_equal(msg.edns_udp, 1400);
    assert_int_equal(msg.edns_ext_rcode, 1);
    assert_int_equal(msg.edns_version, 2);
    assert_true(msg.edns_do);
    assert_int_equal(msg.opt, 0);
    assert_int_equal(msg.opt_off, opt_off);
    assert_int_equal(msg.opt_len, m.n - opt_off);
    assert_int_equal(rrs[0].rclass, 1400);
    assert_int_equal(rrs[0].rdlen, 8);
}

static void test_parse_without_rr_array_still_reads_edns(void **state)
{
    struct mb m;
    mb_response(&m, true);
    struct dns_msg msg;
    assert_int_equal(dns_msg_parse(&msg, m.b, m.n, NULL, 0), DNS_OK);
    assert_int_equal(msg.nrr, 0);
    assert_null(msg.rr);
    assert_int_equal(msg.opt, -1);
    assert_true(msg.has_edns);
    assert_true(msg.edns_do);
    assert_int_equal(msg.edns_udp, 4096);
    assert_int_equal(msg.opt_off + msg.opt_len, m.n);
}

static void test_parse_rejects_too_many_rrs_for_cap(void **state)
{
    struct mb m;
    mb_response(&m, true); /* 5 RRs */
    struct dns_msg msg;
    struct dns_rr rrs[5];
    assert_int_equal(dns_msg_parse(&msg, m.b, m.n, rrs, 4), DNS_ERR_TOO_MANY_RRS);
    assert_int_equal(dns_msg_parse(&msg, m.b, m.n, rrs, 5), DNS_OK);
    assert_int_equal(dns_msg_parse(&msg, m.b, m.n, rrs, 0), DNS_ERR_TOO_MANY_RRS);
}

static void test_parse_rejects_opt_in_answer(void **state)
{
    struct mb m;
    mb_header(&m, DNS_F_QR, 1, 1, 0, 0);
    mb_question(&m, "example.com", DNS_T_A);
    mb_opt(&m, 1232, 0, 0, false);
    assert_int_equal(parse(&m), DNS_ERR_OPT_NOT_ADDITIONAL);
    struct dns_msg msg;
    assert_int_equal(dns_msg_parse(&msg, m.b, m.n, NULL, 0), DNS_ERR_OPT_NOT_ADDITIONAL);
}

static void test_parse_rejects_opt_in_authority(void **state)
{
    struct mb m;
    mb_header(&m, DNS_F_QR, 1, 0, 1, 0);
    mb_question(&m, "example.com", DNS_T_A);
    mb_opt(&m, 1232, 0, 0, false);
    assert_int_equal(parse(&m), DNS_ERR_OPT_NOT_ADDITIONAL);
}

static void test_parse_rejects_two_opts(void **state)
{
    struct mb m;
    mb_header(&m, 0, 1, 0, 0, 2);
    mb_question(&m, "example.com", DNS_T_A);
    mb_opt(&m, 1232, 0, 0, false);
    mb_opt(&m, 1232, 0, 0, false);
    assert_int_equal(parse(&m), DNS_ERR_OPT_DUPLICATE);
    struct dns_msg msg;
    assert_int_equal(dns_msg_parse(&msg, m.b, m.n, NULL, 0), DNS_ERR_OPT_DUPLICATE);
}

static void test_parse_rejects_opt_owner_not_root(void **state)
{
    struct mb m;
    mb_header(&m, 0, 1, 0, 0, 1);
    mb_question(&m, "example.com", DNS_T_A);
    mb_ptr(&m, 12);
    mb_16(&m, DNS_T_OPT);
    mb_16(&m, 1232);
    mb_32(&m, 0);
    mb_16(&m, 0);
    assert_int_equal(parse(&m), DNS_ERR_OPT_OWNER);
}

static void test_parse_sets_compressed_only_when_a_pointer_is_used(void **state)
{
    struct mb m;
    struct dns_msg msg;
    struct dns_rr rrs[4];
    /* Fully uncompressed response. */
    mb_header(&m, DNS_F_QR, 1, 1, 0, 1);
    mb_question(&m, "example.com", DNS_T_CNAME);
    mb_name(&m, "example.com");
    mb_rr_fixed(&m, DNS_T_CNAME, DNS_C_IN, 60, 8);
    mb_name(&m, "www.ex");
    mb_opt(&m, 1232, 0, 0, false);
    assert_int_equal(dns_msg_parse(&msg, m.b, m.n, rrs, 4), DNS_OK);
    assert_false(msg.compressed);

    /* Same, but the CNAME target ends in a pointer: only RDATA is compressed. */
    mb_header(&m, DNS_F_QR, 1, 1, 0, 0);
    mb_question(&m, "example.com", DNS_T_CNAME);
    mb_name(&m, "example.com");
    mb_rr_fixed(&m, DNS_T_CNAME, DNS_C_IN, 60, 6);
    mb_byte(&m, 3);
    mb_bytes(&m, "www", 3);
    mb_ptr(&m, 12);
    assert_int_equal(dns_msg_parse(&msg, m.b, m.n, rrs, 4), DNS_OK);
    assert_true(msg.compressed);
    assert_int_equal(dns_msg_check_rdata(&msg), DNS_OK);
}

static void test_parse_accepts_no_question_and_many_questions(void **state)
{
    struct mb m;
    struct dns_msg msg;
    mb_header(&m, 0, 2, 0, 0, 0);
    mb_question(&m, "a.example", DNS_T_A);
    mb_question(&m, "b.example", DNS_T_AAAA);
    assert_int_equal(dns_msg_parse(&msg, m.b, m.n, NULL, 0), DNS_OK);
    assert_int_equal(msg.count[0], 2);
    assert_int_equal(msg.qtype, DNS_T_A); /* the first question */
    assert_int_equal(msg.qend, m.n);
}

/* ---- RDATA checks ---- */

/* A response to example.com A with one answer RR of `type` whose RDATA is `rd`. */
static enum dns_err check_rdata(uint16_t type, const void *rd, size_t rdlen)
{
    struct mb m;
    mb_header(&m, DNS_F_QR, 1, 1, 0, 0);
    mb_question(&m, "example.com", DNS_T_A);
    mb_ptr(&m, 12);
    mb_rr_fixed(&m, type, DNS_C_IN, 60, (uint16_t)rdlen);
    mb_bytes(&m, rd, rdlen);
    struct dns_msg msg;
    struct dns_rr rrs[4];
    assert_int_equal(dns_msg_parse(&msg, m.b, m.n, rrs, 4), DNS_OK);
    return dns_msg_check_rdata(&msg);
}

/* The parse of the same message as check_rdata builds. */
static enum dns_err parse_rdata(uint16_t type, const void *rd, size_t rdlen)
{
    struct mb m;
    mb_header(&m, DNS_F_QR, 1, 1, 0, 0);
    mb_question(&m, "example.com", DNS_T_A);
    mb_ptr(&m, 12);
    mb_rr_fixed(&m, type, DNS_C_IN, 60, (uint16_t)rdlen);
    mb_bytes(&m, rd, rdlen);
    return parse(&m);
}

static void test_rdata_a_must_be_4_bytes(void **state)
{
    assert_int_equal(check_rdata(DNS_T_A, "\1\2\3\4", 4), DNS_OK);
    assert_int_equal(check_rdata(DNS_T_A, "\1\2\3", 3), DNS_ERR_BAD_RDATA);
    assert_int_equal(check_rdata(DNS_T_A, "\1\2\3\4\5", 5), DNS_ERR_BAD_RDATA);
    assert_int_equal(check_rdata(DNS_T_A, "", 0), DNS_ERR_BAD_RDATA);
}

static void test_rdata_aaaa_must_be_16_bytes(void **state)
{
    uint8_t v6[17] = {0x20, 0x01, 0x0d, 0xb8};
    assert_int_equal(check_rdata(DNS_T_AAAA, v6, 16), DNS_OK);
    assert_int_equal(check_rdata(DNS_T_AAAA, v6, 15), DNS_ERR_BAD_RDATA);
    assert_int_equal(check_rdata(DNS_T_AAAA, v6, 17), DNS_ERR_BAD_RDATA);
}

static void test_rdata_name_types_need_exactly_one_name(void **state)
{
    const uint16_t types[] = {DNS_T_NS, DNS_T_CNAME, DNS_T_PTR, DNS_T_DNAME};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        assert_int_equal(check_rdata(types[i], "\3www\300\14", 6), DNS_OK); /* compressed */
        assert_int_equal(check_rdata(types[i], "\3www\0", 5), DNS_OK);      /* plain */
        assert_int_equal(check_rdata(types[i], "\3www\0\0", 6), DNS_ERR_BAD_RDATA);
        assert_int_equal(check_rdata(types[i], "\3www", 4), DNS_ERR_NAME_TRUNCATED);
        assert_int_equal(check_rdata(types[i], "", 0), DNS_ERR_BAD_RDATA);
        /* A pointer to no earlier name: refused by the parser itself (see the pointer
         * tests below), so check_rdata never sees it. */
        assert_int_equal(parse_rdata(types[i], "\300\377", 2), DNS_ERR_BAD_POINTER);
        assert_int_equal(check_rdata(types[i], "\101\0", 2), DNS_ERR_BAD_LABEL_TYPE);
    }
}

static void test_rdata_name_may_not_run_into_the_next_rr(void **state)
{
    /* The CNAME's RDLENGTH stops inside its name; the bytes after it would complete the
     * name, but they belong to the next RR. */
    struct mb m;
    mb_header(&m, DNS_F_QR, 1, 2, 0, 0);
    mb_question(&m, "example.com", DNS_T_A);
    mb_ptr(&m, 12);
    mb_rr_fixed(&m, DNS_T_CNAME, DNS_C_IN, 60, 4);
    mb_byte(&m, 3);
    mb_bytes(&m, "www", 3);
    mb_byte(&m, 0); /* next RR's owner: the root */
    mb_a(&m, 60);
    struct dns_msg msg;
    struct dns_rr rrs[4];
    assert_int_equal(dns_msg_parse(&msg, m.b, m.n, rrs, 4), DNS_OK);
    assert_int_equal(dns_msg_check_rdata(&msg), DNS_ERR_NAME_TRUNCATED);
}

static void test_rdata_mx_is_preference_and_name(void **state)
{
    assert_int_equal(check_rdata(DNS_T_MX, "\0\12\4mail\300\14", 9), DNS_OK);
    assert_int_equal(check_rdata(DNS_T_MX, "\0\12\0", 3), DNS_OK);
    assert_int_equal(check_rdata(DNS_T_MX, "\0\12", 2), DNS_ERR_BAD_RDATA);
    assert_int_equal(check_rdata(DNS_T_MX, "\0\12\0\0", 4), DNS_ERR_BAD_RDATA);
}

static void test_rdata_srv_is_6_bytes_and_name(void **state)
{
    assert_int_equal(check_rdata(DNS_T_SRV, "\0\1\0\2\0\65\3sip\300\14", 12), DNS_OK);
    assert_int_equal(check_rdata(DNS_T_SRV, "\0\1\0\2\0\65", 6), DNS_ERR_BAD_RDATA);
    assert_int_equal(check_rdata(DNS_T_SRV, "\0\1\0\2\0\0\0", 7), DNS_OK);
    assert_int_equal(check_rdata(DNS_T_SRV, "\0\1\0\2\0\0\0\0", 8), DNS_ERR_BAD_RDATA);
}

static void test_rdata_soa_is_two_names_and_20_bytes(void **state)
{
    uint8_t rd[64];
    size_t n = 0;
    const uint8_t mname[] = {2, 'n', 's', 0xC0, 12};
    const uint8_t rname[] = {4, 'h', 'o', 's', 't', 0xC0, 12};
    memcpy(rd + n, mname, sizeof(mname));
    n += sizeof(mname);
    memcpy(rd + n, rname, sizeof(rname));
    n += sizeof(rname);
    for (int i = 0; i < 21; i++) rd[n + i] = (uint8_t)i;
    assert_int_equal(check_rdata(DNS_T_SOA, rd, n + 20), DNS_OK);
    assert_int_equal(check_rdata(DNS_T_SOA, rd, n + 19), DNS_ERR_BAD_RDATA);
    assert_int_equal(check_rdata(DNS_T_SOA, rd, n + 21), DNS_ERR_BAD_RDATA);
    /* Only one name: the serial's bytes cannot all be read as a second name. */
    assert_int_equal(check_rdata(DNS_T_SOA, mname, sizeof(mname)), DNS_ERR_BAD_RDATA);
}

static void test_rdata_rrsig_needs_uncompressed_signer(void **state)
{
    uint8_t rd[64] = {0, 1, 13, 2, 0, 0, 0, 60, 0x6A, 0, 0, 0, 0x69, 0, 0, 0, 0x12, 0x34};
    size_t n = 18;
    const uint8_t signer[] = {7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0};
    memcpy(rd + n, signer, sizeof(signer));
    n += sizeof(signer);
    memcpy(rd + n, "SIGNATURE", 9);
    assert_int_equal(check_rdata(DNS_T_RRSIG, rd, n + 9), DNS_OK);
    assert_int_equal(check_rdata(DNS_T_RRSIG, rd, n), DNS_OK); /* empty signature */
    assert_int_equal(check_rdata(DNS_T_RRSIG, rd, 18), DNS_ERR_BAD_RDATA);
    assert_int_equal(check_rdata(DNS_T_RRSIG, rd, 17), DNS_ERR_BAD_RDATA);
    assert_int_equal(check_rdata(DNS_T_RRSIG, rd, n - 1), DNS_ERR_NAME_TRUNCATED);
    /* Signer as a pointer to the qname: valid name, but compression is not allowed here. */
    rd[18] = 0xC0;
    rd[19] = 12;
    assert_int_equal(check_rdata(DNS_T_RRSIG, rd, 20), DNS_ERR_BAD_RDATA);
}

static void test_rdata_txt_strings_fill_rdata(void **state)
{
    assert_int_equal(check_rdata(DNS_T_TXT, "\3abc\0\1z", 7), DNS_OK);
    assert_int_equal(check_rdata(DNS_T_TXT, "", 0), DNS_OK);
    assert_int_equal(check_rdata(DNS_T_TXT, "\4abc", 4), DNS_ERR_BAD_RDATA);
    assert_int_equal(check_rdata(DNS_T_TXT, "\3abc\2z", 6), DNS_ERR_BAD_RDATA);
}

static void test_rdata_unknown_types_are_not_checked(void **state)
{
    assert_int_equal(check_rdata(99, "\377\377\377", 3), DNS_OK);
    assert_int_equal(check_rdata(DNS_T_DS, "", 0), DNS_OK);
}

/* ---- the question of a query ---- */

static void test_question_rejects_qdcount_not_1(void **state)
{
    struct mb m;
    struct dns_question q;
    mb_header(&m, DNS_F_RD, 0, 0, 0, 0);
    assert_int_equal(dns_question_parse(&q, m.b, m.n), DNS_ERR_NO_QUESTION);
    mb_header(&m, DNS_F_RD, 2, 0, 0, 0);
    mb_question(&m, "a.example", DNS_T_A);
    mb_question(&m, "b.example", DNS_T_A);
    assert_int_equal(dns_question_parse(&q, m.b, m.n), DNS_ERR_NO_QUESTION);
}

static void test_question_rejects_malformed_query(void **state)
{
    struct mb m;
    struct dns_question q;
    mb_query(&m);
    mb_byte(&m, 1);
    assert_int_equal(dns_question_parse(&q, m.b, m.n), DNS_ERR_TRAILING_BYTES);
    assert_int_equal(dns_question_parse(&q, m.b, 5), DNS_ERR_SHORT_HEADER);
}

static void test_question_reads_name_type_class_and_case(void **state)
{
    struct mb m;
    struct dns_question q;
    mb_header(&m, DNS_F_RD, 1, 0, 0, 0);
    mb_name(&m, "WwW.ExAmple.COM");
    mb_16(&m, DNS_T_AAAA);
    mb_16(&m, DNS_C_CH);
    assert_int_equal(dns_question_parse(&q, m.b, m.n), DNS_OK);
    assert_int_equal(q.name_len, 17);
    assert_memory_equal(q.name, "\3WwW\7ExAmple\3COM", 17);
    assert_memory_equal(q.name_lc, "\3www\7example\3com", 17);
    assert_int_equal(q.qtype, DNS_T_AAAA);
    assert_int_equal(q.qclass, DNS_C_CH);
    assert_int_equal(q.id, 0xBEEF);
    assert_int_equal(q.flags, DNS_F_RD);
    assert_int_equal(q.qend, m.n);
}

static void test_question_without_opt(void **state)
{
    struct mb m;
    struct dns_question q;
    mb_query(&m);
    assert_int_equal(dns_question_parse(&q, m.b, m.n), DNS_OK);
    assert_false(q.has_edns);
    assert_false(q.do_bit);
    assert_false(q.cd);
    assert_int_equal(q.udp_size, 0);
    assert_int_equal(q.edns_version, 0);
}

static void test_question_records_do_version_udp_and_cd(void **state)
{
    struct mb m;
    struct dns_question q;
    mb_header(&m, DNS_F_RD | DNS_F_CD, 1, 0, 0, 1);
    mb_question(&m, "example.com", DNS_T_A);
    mb_opt(&m, 4096, 0, 1, true);
    assert_int_equal(dns_question_parse(&q, m.b, m.n), DNS_OK);
    assert_true(q.has_edns);
    assert_true(q.do_bit);
    assert_true(q.cd);
    assert_int_equal(q.edns_version, 1);
    assert_int_equal(q.udp_size, 4096);
    assert_int_equal(q.qend, DNS_HEADER_LEN + 13 + 4);

    /* DO off, CD off, a UDP size below 512 kept as sent. */
    mb_header(&m, DNS_F_RD, 1, 0, 0, 1);
    mb_question(&m, "example.com", DNS_T_A);
    mb_opt(&m, 100, 0, 0, false);
    assert_int_equal(dns_question_parse(&q, m.b, m.n), DNS_OK);
    assert_false(q.do_bit);
    assert_false(q.cd);
    assert_int_equal(q.udp_size, 100);
}

static void test_question_from_msg_reads_first_question(void **state)
{
    /* A parsed message with no question is refused. */
    struct mb m;
    struct dns_msg msg;
    struct dns_question q;
    mb_header(&m, DNS_F_QR, 1, 0, 0, 0);
    mb_question(&m, "Example.com", DNS_T_MX);
    assert_int_equal(dns_msg_parse(&msg, m.b, m.n, NULL, 0), DNS_OK);
    assert_int_equal(dns_question_from_msg(&q, &msg), DNS_OK);
    assert_int_equal(q.qtype, DNS_T_MX);
    assert_memory_equal(q.name, "\7Example\3com", 13);
    assert_memory_equal(q.name_lc, "\7example\3com", 13);

    mb_header(&m, DNS_F_QR, 0, 0, 0, 0);
    assert_int_equal(dns_msg_parse(&msg, m.b, m.n, NULL, 0), DNS_OK);
    assert_int_equal(dns_question_from_msg(&q, &msg), DNS_ERR_NO_QUESTION);
}

/* ---- real messages (knotd) ---- */

/* Fails naming the fixture, so a regression on real traffic says which message. */
static void expect_ok(enum dns_err err, const char *fixture_name, const char *what)
{
    if (err != DNS_OK) fail_msg("%s %s: %s", fixture_name, what, dns_strerror(err));
}

static void test_fixtures_parse_and_pass_rdata_checks(void **state)
{
    int n = 0;
    for (const struct dns_fixture *f = dns_fixtures; f->name; f++, n++) {
        struct dns_msg msg;
        struct dns_rr rrs[DNS_RR_MAX];
        struct dns_question q, rq;
        expect_ok(dns_msg_parse(&msg, f->query, f->query_len, rrs, DNS_RR_MAX), f->name,
                  "query parse");
        assert_false(msg.flags & DNS_F_QR);
        expect_ok(dns_question_parse(&q, f->query, f->query_len), f->name, "question");

        expect_ok(dns_msg_parse(&msg, f->resp, f->resp_len, rrs, DNS_RR_MAX), f->name,
                  "response parse");
        assert_true(msg.flags & DNS_F_QR);
        assert_int_equal(msg.nrr, msg.count[1] + msg.count[2] + msg.count[3]);
        expect_ok(dns_msg_check_rdata(&msg), f->name, "rdata");
        /* The response answers the query's question. */
        expect_ok(dns_question_from_msg(&rq, &msg), f->name, "response question");
        assert_int_equal(rq.qtype, q.qtype);
        assert_int_equal(rq.qclass, q.qclass);
        assert_true(dns_name_equal_nocase(rq.name, rq.name_len, q.name, q.name_len));
    }
    assert_true(n >= 20);
}

static void test_fixture_counts_and_types(void **state)
{
    struct dns_msg msg;
    struct dns_rr rrs[DNS_RR_MAX];
    const struct dns_fixture *f = fixture("a_example_com");
    assert_int_equal(dns_msg_parse(&msg, f->resp, f->resp_len, rrs, DNS_RR_MAX), DNS_OK);
    assert_int_equal(msg.count[1], 1);
    assert_int_equal(rrs[0].type, DNS_T_A);
    assert_true(msg.has_edns);
    assert_int_equal(msg.opt, (int)msg.nrr - 1);
    assert_true(msg.compressed);

    f = fixture("a_example_com_noedns");
    assert_int_equal(dns_msg_parse(&msg, f->query, f->query_len, rrs, DNS_RR_MAX), DNS_OK);
    assert_false(msg.has_edns);
    assert_int_equal(msg.opt, -1);

    f = fixture("many_a");
    assert_int_equal(dns_msg_parse(&msg, f->resp, f->resp_len, rrs, DNS_RR_MAX), DNS_OK);
    assert_int_equal(msg.count[1], 40);
    for (int i = 0; i < 40; i++) assert_int_equal(rrs[i].type, DNS_T_A);

    f = fixture("cname_chain");
    assert_int_equal(dns_msg_parse(&msg, f->resp, f->resp_len, rrs, DNS_RR_MAX), DNS_OK);
    assert_int_equal(rrs[0].type, DNS_T_CNAME);
    assert_int_equal(rrs[0].section, DNS_SEC_ANSWER);

    f = fixture("nxdomain");
    assert_int_equal(dns_msg_parse(&msg, f->resp, f->resp_len, rrs, DNS_RR_MAX), DNS_OK);
    assert_int_equal(msg.flags & DNS_F_RCODE_MASK, DNS_RCODE_NXDOMAIN);
    assert_int_equal(msg.count[1], 0);
    assert_int_equal(rrs[0].type, DNS_T_SOA);
    assert_int_equal(rrs[0].section, DNS_SEC_AUTHORITY);

    f = fixture("signed_a_do");
    assert_int_equal(dns_msg_parse(&msg, f->resp, f->resp_len, rrs, DNS_RR_MAX), DNS_OK);
    assert_true(msg.edns_do);
    bool rrsig = false;
    for (int i = 0; i < msg.nrr; i++) rrsig |= rrs[i].type == DNS_T_RRSIG;
    assert_true(rrsig);

    f = fixture("a_example_com_cd");
    struct dns_question q;
    assert_int_equal(dns_question_parse(&q, f->query, f->query_len), DNS_OK);
    assert_true(q.cd);

    f = fixture("a_example_com_do");
    assert_int_equal(dns_question_parse(&q, f->query, f->query_len), DNS_OK);
    assert_true(q.do_bit);
    assert_int_equal(q.udp_size, 1232);
}

static void test_fixture_every_truncation_is_rejected(void **state)
{
    /* Cutting a valid message anywhere leaves counts that no longer fit. */
    for (const struct dns_fixture *f = dns_fixtures; f->name; f++) {
        for (size_t cut = 0; cut < f->resp_len; cut++) {
            struct dns_msg msg;
            struct dns_rr rrs[DNS_RR_MAX];
            assert_int_not_equal(dns_msg_parse(&msg, f->resp, cut, rrs, DNS_RR_MAX), DNS_OK);
        }
    }
}

static void test_strerror_names_every_error(void **state)
{
    for (int e = 0; e < DNS_ERR__COUNT; e++) {
        const char *s = dns_strerror((enum dns_err)e);
        assert_non_null(s);
        assert_true(strlen(s) > 0);
        assert_string_not_equal(s, "unknown error");
        for (int o = 0; o < e; o++) assert_string_not_equal(s, dns_strerror((enum dns_err)o));
    }
    assert_string_equal(dns_strerror(DNS_ERR__COUNT), "unknown error");
    assert_string_equal(dns_strerror((enum dns_err) - 1), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_rejects_short_header),
        cmocka_unit_test(test_parse_accepts_bare_header),
        cmocka_unit_test(test_parse_rejects_over_65535_bytes),
        cmocka_unit_test(test_parse_rejects_trailing_bytes),
        cmocka_unit_test(test_parse_rejects_count_beyond_data),
        cmocka_unit_test(test_parse_rejects_truncated_question),
        cmocka_unit_test(test_parse_rejects_truncated_rr),
        cmocka_unit_test(test_parse_rejects_rdata_overrun),
        cmocka_unit_test(test_parse_rejects_forward_pointer),
        cmocka_unit_test(test_parse_rejects_pointer_to_itself),
        cmocka_unit_test(test_parse_rejects_pointer_into_header),
        cmocka_unit_test(test_parse_rejects_pointer_chain_over_hop_bound),
        cmocka_unit_test(test_parse_rejects_label_pointer_cycle),
        cmocka_unit_test(test_parse_rejects_pointer_into_ttl_field),
        cmocka_unit_test(test_parse_rejects_pointer_into_qtype_qclass_bytes),
        cmocka_unit_test(test_parse_rejects_pointer_into_the_middle_of_a_label),
        cmocka_unit_test(test_parse_rejects_pointer_into_rdata_of_unknown_type),
        cmocka_unit_test(test_parse_accepts_pointer_to_mx_exchange_name),
        cmocka_unit_test(test_parse_accepts_pointer_to_a_pointer),
        cmocka_unit_test(test_parse_accepts_pointers_to_names_in_every_name_rdata),
        cmocka_unit_test(test_parse_rejects_pointer_to_malformed_rdata_name),
        cmocka_unit_test(test_parse_rejects_pointer_inside_rdata_name_to_other_bytes),
        cmocka_unit_test(test_parse_rejects_pointer_to_opt_owner),
        cmocka_unit_test(test_parse_rejects_fuzz_owner_into_question_label_bytes),
        cmocka_unit_test(test_parse_rejects_label_length_64),
        cmocka_unit_test(test_parse_rejects_0x40_label_type),
        cmocka_unit_test(test_parse_rejects_0x80_label_type),
        cmocka_unit_test(test_parse_accepts_255_byte_name),
        cmocka_unit_test(test_parse_rejects_256_byte_name),
        cmocka_unit_test(test_parse_rejects_256_byte_name_through_pointer),
        cmocka_unit_test(test_parse_rejects_truncated_name),
        cmocka_unit_test(test_parse_rejects_truncated_pointer),
        cmocka_unit_test(test_parse_records_rrs_in_order),
        cmocka_unit_test(test_parse_reads_edns_fields),
        cmocka_unit_test(test_parse_without_rr_array_still_reads_edns),
        cmocka_unit_test(test_parse_rejects_too_many_rrs_for_cap),
        cmocka_unit_test(test_parse_rejects_opt_in_answer),
        cmocka_unit_test(test_parse_rejects_opt_in_authority),
        cmocka_unit_test(test_parse_rejects_two_opts),
        cmocka_unit_test(test_parse_rejects_opt_owner_not_root),
        cmocka_unit_test(test_parse_sets_compressed_only_when_a_pointer_is_used),
        cmocka_unit_test(test_parse_accepts_no_question_and_many_questions),
        cmocka_unit_test(test_rdata_a_must_be_4_bytes),
        cmocka_unit_test(test_rdata_aaaa_must_be_16_bytes),
        cmocka_unit_test(test_rdata_name_types_need_exactly_one_name),
        cmocka_unit_test(test_rdata_name_may_not_run_into_the_next_rr),
        cmocka_unit_test(test_rdata_mx_is_preference_and_name),
        cmocka_unit_test(test_rdata_srv_is_6_bytes_and_name),
        cmocka_unit_test(test_rdata_soa_is_two_names_and_20_bytes),
        cmocka_unit_test(test_rdata_rrsig_needs_uncompressed_signer),
        cmocka_unit_test(test_rdata_txt_strings_fill_rdata),
        cmocka_unit_test(test_rdata_unknown_types_are_not_checked),
        cmocka_unit_test(test_question_rejects_qdcount_not_1),
        cmocka_unit_test(test_question_rejects_malformed_query),
        cmocka_unit_test(test_question_reads_name_type_class_and_case),
        cmocka_unit_test(test_question_without_opt),
        cmocka_unit_test(test_question_records_do_version_udp_and_cd),
        cmocka_unit_test(test_question_from_msg_reads_first_question),
        cmocka_unit_test(test_fixtures_parse_and_pass_rdata_checks),
        cmocka_unit_test(test_fixture_counts_and_types),
        cmocka_unit_test(test_fixture_every_truncation_is_rejected),
        cmocka_unit_test(test_strerror_names_every_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
