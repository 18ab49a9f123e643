/* tests/unit/test_dns_rdata.c — names inside RDATA (dns_rdata_names) for every type the Go
 * DNS library packs names of: the parser lets later pointers aim at them (miekg/dns puts
 * every name it packs into its compression table) and refuses pointers into their other
 * bytes; dns_msg_check_rdata judges them as Go unpacks them; dns_msg_copy_without_opt moves
 * their pointers; dns_msg_compress compresses only the RFC 3597 §4 ones. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "dns/dns.h"

/* ---- a byte-by-byte message builder ---- */

struct mb {
    uint8_t b[2048];
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

static void mb_bytes(struct mb *m, const void *p, size_t len)
{
    for (size_t i = 0; i < len; i++) mb_byte(m, ((const uint8_t *)p)[i]);
}

static void mb_header(struct mb *m, uint16_t qd, uint16_t an, uint16_t ns, uint16_t ar)
{
    m->n = 0;
    mb_16(m, 0x1234);
    mb_16(m, DNS_F_QR | DNS_F_RD | DNS_F_RA);
    mb_16(m, qd);
    mb_16(m, an);
    mb_16(m, ns);
    mb_16(m, ar);
}

/* Dotted labels, then a root byte, or (ptr != 0) a pointer to `ptr`. Returns the offset. */
static size_t mb_name(struct mb *m, const char *labels, uint16_t ptr)
{
    size_t at = m->n;
    const char *p = labels;
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t l = dot ? (size_t)(dot - p) : strlen(p);
        mb_byte(m, (uint8_t)l);
        mb_bytes(m, p, l);
        p += l + (dot ? 1 : 0);
    }
    if (ptr)
        mb_16(m, (uint16_t)(0xC000u | ptr));
    else
        mb_byte(m, 0);
    return at;
}

/* Type, class, TTL, RDLENGTH 0 (fixed by mb_rdlen). Returns the RDLENGTH offset. */
static size_t mb_rr(struct mb *m, uint16_t type)
{
    mb_16(m, type);
    mb_16(m, DNS_C_IN);
    mb_16(m, 0);
    mb_16(m, 300);
    size_t at = m->n;
    mb_16(m, 0);
    return at;
}

static void mb_rdlen(struct mb *m, size_t at)
{
    uint16_t len = (uint16_t)(m->n - at - 2);
    m->b[at] = (uint8_t)(len >> 8);
    m->b[at + 1] = (uint8_t)len;
}

static void mb_a(struct mb *m)
{
    size_t rl = mb_rr(m, DNS_T_A);
    mb_bytes(m, "\xc0\x00\x02\x05", 4);
    mb_rdlen(m, rl);
}

static void mb_opt(struct mb *m)
{
    mb_byte(m, 0);
    mb_16(m, DNS_T_OPT);
    mb_16(m, 1232);
    mb_16(m, 0);
    mb_16(m, DNS_EDNS_DO);
    mb_16(m, 0);
}

/* ---- the types ---- */

struct rdcase {
    const char *name;
    uint16_t type;
    const char *lead; /* fixed fields before the names */
    size_t lead_len;
    unsigned names;
    const char *tail; /* fields after the names */
    size_t tail_len;
    bool compress;   /* dns_msg_compress may compress its names */
    bool no_pointer; /* a pointer in its names is malformed (signer) */
};

#define S(x)     x, sizeof(x) - 1
#define SOA_TAIL S("\0\0\0\1\0\0\x0e\x10\0\0\x07\x08\0\x09\x3a\x80\0\0\x01\x2c")
#define SIG_LEAD S("\0\1\x0d\2\0\0\x0e\x10\x70\0\0\0\x60\0\0\0\x12\x34")

static const struct rdcase cases[] = {
    {"NS", DNS_T_NS, S(""), 1, S(""), true, false},
    {"MD", DNS_T_MD, S(""), 1, S(""), true, false},
    {"MF", DNS_T_MF, S(""), 1, S(""), true, false},
    {"CNAME", DNS_T_CNAME, S(""), 1, S(""), true, false},
    {"SOA", DNS_T_SOA, S(""), 2, SOA_TAIL, true, false},
    {"MB", DNS_T_MB, S(""), 1, S(""), true, false},
    {"MG", DNS_T_MG, S(""), 1, S(""), true, false},
    {"MR", DNS_T_MR, S(""), 1, S(""), true, false},
    {"PTR", DNS_T_PTR, S(""), 1, S(""), true, false},
    {"MINFO", DNS_T_MINFO, S(""), 2, S(""), true, false},
    {"MX", DNS_T_MX, S("\0\x0a"), 1, S(""), true, false},
    {"RP", DNS_T_RP, S(""), 2, S(""), false, false},
    {"AFSDB", DNS_T_AFSDB, S("\0\1"), 1, S(""), false, false},
    {"RT", DNS_T_RT, S("\0\x0a"), 1, S(""), false, false},
    {"NSAPPTR", DNS_T_NSAPPTR, S(""), 1, S(""), false, false},
    {"SIG", DNS_T_SIG, SIG_LEAD, 1, S("sig"), false, true},
    {"PX", DNS_T_PX, S("\0\x0a"), 2, S(""), false, false},
    {"SRV", DNS_T_SRV, S("\0\1\0\2\x01\xbb"), 1, S(""), false, false},
    {"NAPTR", DNS_T_NAPTR, S("\0\x64\0\x0a\1U\7E2U+sip\0"), 1, S(""), false, false},
    {"KX", DNS_T_KX, S("\0\x0a"), 1, S(""), false, false},
    {"DNAME", DNS_T_DNAME, S(""), 1, S(""), false, false},
    {"RRSIG", DNS_T_RRSIG, SIG_LEAD, 1, S("sig"), false, true},
    {"NSEC", DNS_T_NSEC, S(""), 1, S("\0\1\x40"), false, false},
    {"HIP", DNS_T_HIP, S("\4\2\0\3HITTkey"), 2, S(""), false, false},
    {"TALINK", DNS_T_TALINK, S(""), 2, S(""), false, false},
    {"SVCB", DNS_T_SVCB, S("\0\1"), 1, S("\0\1\0\3\2h2\0\3\0\2\x01\xbb"), false, false},
    {"HTTPS", DNS_T_HTTPS, S("\0\1"), 1, S("\0\1\0\3\2h2\0\4\0\4\xc0\0\2\1"), false, false},
    {"LP", DNS_T_LP, S("\0\x0a"), 1, S(""), false, false},
    /* inception, expiration, mode, error, key size 2, key, other len 0 */
    {"TKEY", DNS_T_TKEY, S(""), 1, S("\0\0\0\1\0\0\0\2\0\3\0\0\0\2kk\0\0"), false, false},
    /* time signed, fudge, MAC size 2, MAC, original id, error, other len 0 */
    {"TSIG", DNS_T_TSIG, S(""), 1, S("\0\0\0\0\0\1\1\x2c\0\2mm\x12\x34\0\0\0\0"), false, false},
};
#define NCASES (sizeof(cases) / sizeof(cases[0]))

static const char *const name_labels[] = {"n0.example.net", "n1.example.net"};

/* Writes the RDATA of `c`: lead, names (each `n<i>` + a pointer to `ptr` when ptr != 0, else
 * in full), tail. Sets first_name (offset of the first name) and tail_at. */
static void mb_rdata(struct mb *m, const struct rdcase *c, uint16_t ptr, size_t *first_name,
                     size_t *tail_at)
{
    mb_bytes(m, c->lead, c->lead_len);
    for (unsigned i = 0; i < c->names; i++) {
        size_t at = ptr ? mb_name(m, i ? "n1" : "n0", ptr) : mb_name(m, name_labels[i], 0);
        if (i == 0) *first_name = at;
    }
    *tail_at = m->n;
    mb_bytes(m, c->tail, c->tail_len);
}

struct built {
    struct mb m;
    size_t rdata, first_name, tail_at;
};

/* Question svc.example.net A; answer: the type's RR, names in full; additional: an A whose
 * owner is "glue" + a pointer to `target` (an offset computed by `pick`). */
enum pick { PICK_NAME_SUFFIX, PICK_LABEL_BYTE, PICK_LEAD, PICK_TAIL };

static void build(struct built *o, const struct rdcase *c, enum pick pick)
{
    struct mb *m = &o->m;
    mb_header(m, 1, 1, 0, 1);
    mb_name(m, "svc.example.net", 0);
    mb_16(m, DNS_T_A);
    mb_16(m, DNS_C_IN);
    mb_name(m, "", DNS_HEADER_LEN);
    size_t rl = mb_rr(m, c->type);
    o->rdata = m->n;
    mb_rdata(m, c, 0, &o->first_name, &o->tail_at);
    mb_rdlen(m, rl);
    size_t target = 0;
    switch (pick) {
    case PICK_NAME_SUFFIX: target = o->first_name + 3; break; /* "example.net" */
    case PICK_LABEL_BYTE: target = o->first_name + 4; break;  /* the 'e' of example */
    case PICK_LEAD: target = o->rdata; break;
    case PICK_TAIL: target = o->tail_at; break;
    }
    mb_name(m, "glue", (uint16_t)target);
    mb_a(m);
}

static void expand(const uint8_t *buf, size_t len, size_t off, char *text)
{
    uint8_t w[DNS_NAME_MAX];
    size_t wl = 0, next = 0;
    assert_int_equal(dns_name_unpack(buf, len, off, w, &wl, &next), DNS_OK);
    size_t n = dns_name_to_text(w, wl, text, DNS_NAME_TEXT_MAX - 1, false);
    text[n] = 0;
}

/* ---- the parser ---- */

static void later_owner_may_point_into_every_rdata_name(void **state)
{
    for (size_t i = 0; i < NCASES; i++) {
        const struct rdcase *c = &cases[i];
        struct built o;
        struct dns_msg m;
        struct dns_rr rr[8];
        build(&o, c, PICK_NAME_SUFFIX);
        enum dns_err err = dns_msg_parse(&m, o.m.b, o.m.n, rr, 8);
        if (err != DNS_OK) fail_msg("%s: %s", c->name, dns_strerror(err));
        assert_int_equal(m.nrr, 2);
        assert_true(m.compressed);
        char text[DNS_NAME_TEXT_MAX];
        expand(m.buf, m.len, m.rr[1].owner, text);
        assert_string_equal(text, "glue.example.net.");
        err = dns_msg_check_rdata(&m);
        if (err != DNS_OK) fail_msg("%s check: %s", c->name, dns_strerror(err));
    }
}

static void pointer_into_other_rdata_bytes_is_refused(void **state)
{
    for (size_t i = 0; i < NCASES; i++) {
        const struct rdcase *c = &cases[i];
        struct built o;
        struct dns_msg m;
        struct dns_rr rr[8];
        build(&o, c, PICK_LABEL_BYTE);
        if (dns_msg_parse(&m, o.m.b, o.m.n, rr, 8) != DNS_ERR_BAD_POINTER)
            fail_msg("%s: pointer into a label's bytes accepted", c->name);
        if (c->lead_len) {
            build(&o, c, PICK_LEAD);
            if (dns_msg_parse(&m, o.m.b, o.m.n, rr, 8) != DNS_ERR_BAD_POINTER)
                fail_msg("%s: pointer into the fixed fields accepted", c->name);
        }
        if (c->tail_len) {
            build(&o, c, PICK_TAIL);
            if (dns_msg_parse(&m, o.m.b, o.m.n, rr, 8) != DNS_ERR_BAD_POINTER)
                fail_msg("%s: pointer into the tail accepted", c->name);
        }
    }
}

/* Pointers inside the RDATA names themselves (to the question) are read and checked; for
 * SIG/RRSIG the parse accepts them but dns_msg_check_rdata does not (RFC 4034 §3.1.7). */
static void compressed_rdata_names_parse(void **state)
{
    for (size_t i = 0; i < NCASES; i++) {
        const struct rdcase *c = &cases[i];
        struct mb m;
        size_t first = 0, tail = 0;
        mb_header(&m, 1, 1, 0, 1);
        mb_name(&m, "svc.example.net", 0);
        mb_16(&m, DNS_T_A);
        mb_16(&m, DNS_C_IN);
        mb_name(&m, "", DNS_HEADER_LEN);
        size_t rl = mb_rr(&m, c->type);
        mb_rdata(&m, c, DNS_HEADER_LEN + 4, &first, &tail); /* n0 + "example.net" */
        mb_rdlen(&m, rl);
        mb_name(&m, "glue", (uint16_t)first); /* glue.n0.example.net */
        mb_a(&m);
        struct dns_msg msg;
        struct dns_rr rr[8];
        enum dns_err err = dns_msg_parse(&msg, m.b, m.n, rr, 8);
        if (err != DNS_OK) fail_msg("%s: %s", c->name, dns_strerror(err));
        char text[DNS_NAME_TEXT_MAX];
        expand(msg.buf, msg.len, msg.rr[1].owner, text);
        assert_string_equal(text, "glue.n0.example.net.");
        err = dns_msg_check_rdata(&msg);
        if (c->no_pointer ? err != DNS_ERR_BAD_RDATA : err != DNS_OK)
            fail_msg("%s check: %s", c->name, dns_strerror(err));

        /* A pointer inside the RDATA name to non-name bytes (the question's type) fails. */
        assert_int_equal(m.b[first + 3], 0xC0);
        m.b[first + 4] = (uint8_t)(DNS_HEADER_LEN + 17); /* the qtype */
        assert_int_equal(dns_msg_parse(&msg, m.b, m.n, rr, 8), DNS_ERR_BAD_POINTER);
    }
}

/* The descriptor agrees with the layout of every case. */
static void descriptor_matches_layouts(void **state)
{
    for (size_t i = 0; i < NCASES; i++) {
        const struct rdcase *c = &cases[i];
        struct built o;
        build(&o, c, PICK_NAME_SUFFIX);
        struct dns_rdata_names d;
        size_t rdlen = o.tail_at + c->tail_len - o.rdata;
        assert_true(dns_rdata_names(c->type, o.m.b + o.rdata, rdlen, &d));
        if (d.first != o.first_name - o.rdata) fail_msg("%s: first %u", c->name, d.first);
        assert_int_equal(d.compress, c->compress);
        assert_int_equal(d.no_pointer, c->no_pointer);
        if (d.count != DNS_RDATA_NAMES_TO_END) assert_int_equal(d.count, c->names);
        assert_int_equal(d.tail == DNS_RDATA_TAIL_NONE, c->tail_len == 0);
    }
    struct dns_rdata_names d;
    static const uint16_t opaque[] = {DNS_T_A,      DNS_T_AAAA,    DNS_T_TXT,
                                      DNS_T_DS,     DNS_T_DNSKEY,  DNS_T_OPT,
                                      30 /* NXT */, 256 /* URI */, 65280};
    for (size_t i = 0; i < sizeof(opaque) / sizeof(opaque[0]); i++)
        assert_false(dns_rdata_names(opaque[i], (const uint8_t *)"\0\0\0\0", 4, &d));
    /* NAPTR strings or HIP fields overrunning the RDATA: no name. */
    assert_true(dns_rdata_names(DNS_T_NAPTR, (const uint8_t *)"\0\1\0\1\1U\7E2", 9, &d));
    assert_int_equal(d.first, DNS_RDATA_NO_NAME);
    assert_true(dns_rdata_names(DNS_T_HIP, (const uint8_t *)"\4\2\0\3HI", 6, &d));
    assert_int_equal(d.first, DNS_RDATA_NO_NAME);
    assert_true(dns_rdata_names(DNS_T_HIP, (const uint8_t *)"\0\2\0\0", 4, &d));
    assert_int_equal(d.first, 4); /* no rendezvous server at all */
}

/* The value Go wrote for HTTPS with glue (the additional owner c02f points into the HTTPS
 * target): it decodes, where the parser once refused it as DNS_ERR_BAD_POINTER. */
static const char go_https_hex[] =
    "524344320010928180000100010000000103737663076578616d706c65036f72670000410001c00c00410001"
    "0000012c001b000104706f6f6c076578616d706c65036e65740000010003026832c02f000100010000012c00"
    "04c0000205";

static size_t unhex(const char *hex, uint8_t *out)
{
    size_t n = strlen(hex) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v = 0;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
    return n;
}

static void go_https_entry_with_glue_decodes(void **state)
{
    uint8_t val[256];
    size_t n = unhex(go_https_hex, val);
    struct dns_entry e;
    struct dns_rr rr[8];
    assert_int_equal(dns_entry_decode(&e, val, n, rr, 8), DNS_ENTRY_OK);
    assert_int_equal(e.msg.nrr, 2);
    assert_int_equal(e.msg.rr[0].type, DNS_T_HTTPS);
    char text[DNS_NAME_TEXT_MAX];
    expand(e.msg.buf, e.msg.len, e.msg.rr[1].owner, text);
    assert_string_equal(text, "pool.example.net."); /* the whole target */
    assert_int_equal(dns_msg_check_rdata(&e.msg), DNS_OK);

    /* The same pointer one byte off, into the priority field: refused. */
    uint8_t bad[256];
    memcpy(bad, val, n);
    size_t at = n - 16; /* the additional owner c02f */
    assert_int_equal(bad[at], 0xC0);
    assert_int_equal(bad[at + 1], 0x2F);
    bad[at + 1] = 0x2D; /* HTTPS RDATA start: the priority */
    assert_int_equal(dns_entry_decode(&e, bad, n, rr, 8), DNS_ENTRY_MALFORMED);
    assert_int_equal(e.err, DNS_ERR_BAD_POINTER);
}

/* ---- dns_msg_check_rdata: Go's unpack rules ---- */

static enum dns_err check_one(uint16_t type, const void *rdata, size_t len)
{
    static struct mb m;
    mb_header(&m, 1, 1, 0, 0);
    mb_name(&m, "svc.example.net", 0);
    mb_16(&m, type);
    mb_16(&m, DNS_C_IN);
    mb_name(&m, "", DNS_HEADER_LEN);
    size_t rl = mb_rr(&m, type);
    mb_bytes(&m, rdata, len);
    mb_rdlen(&m, rl);
    static struct dns_msg msg;
    static struct dns_rr rr[4];
    enum dns_err err = dns_msg_parse(&msg, m.b, m.n, rr, 4);
    if (err != DNS_OK) return err;
    return dns_msg_check_rdata(&msg);
}

static void check_rdata_follows_go(void **state)
{
    /* NAPTR: strings then the name, exactly. */
    assert_int_equal(check_one(DNS_T_NAPTR, S("\0\1\0\2\1U\0\0\0")), DNS_OK);
    assert_int_equal(check_one(DNS_T_NAPTR, S("\0\1\0\2\1U\0\0")), DNS_ERR_BAD_RDATA);
    assert_int_equal(check_one(DNS_T_NAPTR, S("\0\1\0\2\1U\0\5ab")), DNS_ERR_BAD_RDATA);
    assert_int_equal(check_one(DNS_T_NAPTR, S("\0\1\0\2\1U\0\0\0x")), DNS_ERR_BAD_RDATA);
    assert_int_equal(check_one(DNS_T_NAPTR, S("\0\1\0\2\1U\0\0\1a")), DNS_ERR_NAME_TRUNCATED);
    /* SVCB/HTTPS: the target, then SvcParams as Go unpacks them. */
    assert_int_equal(check_one(DNS_T_SVCB, S("\0\0\0")), DNS_OK); /* alias mode, "." */
    assert_int_equal(check_one(DNS_T_HTTPS, S("\0\1\0\0\1\0\3\2h2")), DNS_OK);
    assert_int_equal(check_one(DNS_T_HTTPS, S("\0\1\0\0\1\0\4\2h2")), DNS_ERR_BAD_RDATA);
    assert_int_equal(check_one(DNS_T_HTTPS, S("\0\1\0\0\1\0\3\3h2")), DNS_ERR_BAD_RDATA);
    assert_int_equal(check_one(DNS_T_HTTPS, S("\0\1\0\0\3\0\1\1")), DNS_ERR_BAD_RDATA);
    assert_int_equal(check_one(DNS_T_HTTPS, S("\0\1\0\0\2\0\1x")), DNS_ERR_BAD_RDATA);
    assert_int_equal(check_one(DNS_T_HTTPS, S("\0\1\0\0\4\0\3abc")), DNS_ERR_BAD_RDATA);
    assert_int_equal(check_one(DNS_T_HTTPS, S("\0\1\0\0\0\0\1a")), DNS_ERR_BAD_RDATA);
    assert_int_equal(check_one(DNS_T_HTTPS, S("\0\1\0\xff\xff\0\0")), DNS_ERR_BAD_RDATA);
    assert_int_equal(check_one(DNS_T_HTTPS, S("\0\1\0\0\3\0\2\0\1\0\1\0\0")),
                     DNS_ERR_BAD_RDATA); /* keys not increasing */
    assert_int_equal(check_one(DNS_T_HTTPS, S("\0\1\0\0\3\0\2\0\1\0\3\0\2\0\1")),
                     DNS_ERR_BAD_RDATA); /* duplicate key */
    assert_int_equal(check_one(DNS_T_HTTPS, S("\0\1\0\0\6\0\x10\0\0\0\0\0\0\0\0\0\0\xff\xff"
                                              "\xc0\0\2\1")),
                     DNS_ERR_BAD_RDATA); /* ipv4-mapped ipv6hint */
    assert_int_equal(check_one(DNS_T_HTTPS, S("\0\1\0\0\6\0\x10\x20\1\x0d\xb8\0\0\0\0\0\0\0\0"
                                              "\0\0\0\1")),
                     DNS_OK);
    assert_int_equal(check_one(DNS_T_HTTPS, S("\0\1\0\0\x09\0\0")), DNS_OK); /* key9, empty */
    assert_int_equal(check_one(DNS_T_HTTPS, S("\0\1\0\0\1\0")), DNS_ERR_BAD_RDATA);
    assert_int_equal(check_one(DNS_T_HTTPS, S("\0\1")), DNS_ERR_BAD_RDATA);
    /* NSEC: the bitmap. */
    assert_int_equal(check_one(DNS_T_NSEC, S("\0\0\1\x40")), DNS_OK);
    assert_int_equal(check_one(DNS_T_NSEC, S("\0")), DNS_OK);
    assert_int_equal(check_one(DNS_T_NSEC, S("\0\0\0")), DNS_ERR_BAD_RDATA);
    assert_int_equal(check_one(DNS_T_NSEC, S("\0\0\2\x40")), DNS_ERR_BAD_RDATA);
    assert_int_equal(check_one(DNS_T_NSEC, S("\0\1\1\x40\0\1\x40")), DNS_ERR_BAD_RDATA);
    /* HIP: fields, then any number of names. */
    assert_int_equal(check_one(DNS_T_HIP, S("\1\2\0\1HK")), DNS_OK);
    assert_int_equal(check_one(DNS_T_HIP, S("\1\2\0\1HK\0\1a\0")), DNS_OK);
    assert_int_equal(check_one(DNS_T_HIP, S("\1\2\0\2HK")), DNS_ERR_BAD_RDATA);
    assert_int_equal(check_one(DNS_T_HIP, S("\1\2\0\1HK\1a")), DNS_ERR_NAME_TRUNCATED);
    /* TKEY/TSIG: the fields after the algorithm, exactly. */
    assert_int_equal(check_one(DNS_T_TSIG, S("\0"
                                             "\0\0\0\0\0\1"
                                             "\1\x2c"
                                             "\0\0"
                                             "\0\1"
                                             "\0\0"
                                             "\0\0")),
                     DNS_OK);
    assert_int_equal(check_one(DNS_T_TSIG, S("\0"
                                             "\0\0\0\0\0\1"
                                             "\1\x2c"
                                             "\0\1"
                                             "\0\1"
                                             "\0\0"
                                             "\0\0")),
                     DNS_ERR_BAD_RDATA); /* a 1-byte MAC leaves the other length short */
    assert_int_equal(check_one(DNS_T_TKEY, S("\0\0\0\0\1\0\0\0\2\0\3\0\0\0\0\0\0")), DNS_OK);
    assert_int_equal(check_one(DNS_T_TKEY, S("\0\0\0\0\1\0\0\0\2\0\3\0\0\0\0\0\0\0")),
                     DNS_ERR_BAD_RDATA);
    /* Fixed fields cut short, names not filling the RDATA. */
    assert_int_equal(check_one(DNS_T_KX, S("\0")), DNS_ERR_BAD_RDATA);
    assert_int_equal(check_one(DNS_T_AFSDB, S("\0\1\0x")), DNS_ERR_BAD_RDATA);
    assert_int_equal(check_one(DNS_T_RP, S("\0")), DNS_ERR_BAD_RDATA);
    assert_int_equal(check_one(DNS_T_PX, S("\0\1\0\0")), DNS_OK);
    assert_int_equal(check_one(DNS_T_MINFO, S("\0\0\0")), DNS_ERR_BAD_RDATA);
    assert_int_equal(check_one(DNS_T_MB, S("\x41")), DNS_ERR_BAD_LABEL_TYPE);
    assert_int_equal(check_one(DNS_T_SIG, SIG_LEAD), DNS_ERR_BAD_RDATA);
}

/* ---- dns_msg_copy_without_opt and dns_msg_compress ---- */

/* Question svc.example.net A; additional: OPT, then "n9.example.net" A (after the OPT), the
 * type's RR whose names point at that owner's "example.net" (in full for SIG/RRSIG), then an
 * A whose owner points at the first RDATA name. */
static void build_middle_opt(struct built *o, const struct rdcase *c)
{
    struct mb *m = &o->m;
    mb_header(m, 1, 0, 0, 4);
    mb_name(m, "svc.example.net", 0);
    mb_16(m, DNS_T_A);
    mb_16(m, DNS_C_IN);
    mb_opt(m);
    size_t n9 = mb_name(m, "n9.example.net", 0);
    mb_a(m);
    mb_name(m, "", DNS_HEADER_LEN);
    size_t rl = mb_rr(m, c->type);
    o->rdata = m->n;
    mb_rdata(m, c, c->no_pointer ? 0 : (uint16_t)(n9 + 3), &o->first_name, &o->tail_at);
    mb_rdlen(m, rl);
    mb_name(m, "glue", (uint16_t)o->first_name);
    mb_a(m);
}

/* Every owner and RDATA name of `a` expands as in `b`, the fixed RDATA bytes are equal
 * (RR i of `a` is RR map[i] of `b`). */
static void assert_same_records(const struct rdcase *c, const struct dns_msg *a,
                                const struct dns_msg *b, const int *map)
{
    for (size_t i = 0; i < a->nrr; i++) {
        if (map[i] < 0) continue;
        const struct dns_rr *x = &a->rr[i], *y = &b->rr[map[i]];
        char tx[DNS_NAME_TEXT_MAX], ty[DNS_NAME_TEXT_MAX];
        expand(a->buf, a->len, x->owner, tx);
        expand(b->buf, b->len, y->owner, ty);
        assert_string_equal(tx, ty);
        assert_int_equal(x->type, y->type);
        struct dns_rdata_names dx, dy;
        if (!dns_rdata_names(x->type, a->buf + x->rdata, x->rdlen, &dx)) {
            assert_int_equal(x->rdlen, y->rdlen);
            assert_memory_equal(a->buf + x->rdata, b->buf + y->rdata, x->rdlen);
            continue;
        }
        assert_true(dns_rdata_names(y->type, b->buf + y->rdata, y->rdlen, &dy));
        assert_int_equal(dx.first, dy.first);
        assert_memory_equal(a->buf + x->rdata, b->buf + y->rdata, dx.first);
        size_t pa = (size_t)x->rdata + dx.first, pb = (size_t)y->rdata + dy.first;
        size_t ea = (size_t)x->rdata + x->rdlen, eb = (size_t)y->rdata + y->rdlen;
        for (unsigned k = 0; k < c->names; k++) {
            uint8_t wa[DNS_NAME_MAX], wb[DNS_NAME_MAX];
            size_t la = 0, lb = 0;
            assert_int_equal(dns_name_unpack(a->buf, ea, pa, wa, &la, &pa), DNS_OK);
            assert_int_equal(dns_name_unpack(b->buf, eb, pb, wb, &lb, &pb), DNS_OK);
            assert_int_equal(la, lb);
            assert_memory_equal(wa, wb, la);
        }
        assert_int_equal(ea - pa, eb - pb);
        assert_memory_equal(a->buf + pa, b->buf + pb, ea - pa);
    }
}

static void copy_without_opt_moves_pointers_of_every_type(void **state)
{
    static uint8_t out[4096];
    for (size_t i = 0; i < NCASES; i++) {
        const struct rdcase *c = &cases[i];
        struct built o;
        build_middle_opt(&o, c);
        struct dns_msg m, cm;
        struct dns_rr rr[8], crr[8];
        enum dns_err err = dns_msg_parse(&m, o.m.b, o.m.n, rr, 8);
        if (err != DNS_OK) fail_msg("%s: %s", c->name, dns_strerror(err));
        assert_int_equal(dns_msg_check_rdata(&m), DNS_OK);
        size_t n = 0;
        err = dns_msg_copy_without_opt(out, sizeof out, &n, &m);
        if (err != DNS_OK) fail_msg("%s copy: %s", c->name, dns_strerror(err));
        assert_int_equal(n, o.m.n - 11);
        err = dns_msg_parse(&cm, out, n, crr, 8);
        if (err != DNS_OK) fail_msg("%s copy parse: %s", c->name, dns_strerror(err));
        assert_int_equal(dns_msg_check_rdata(&cm), DNS_OK);
        assert_int_equal(cm.nrr, 3);
        static const int map[] = {-1, 0, 1, 2};
        assert_same_records(c, &m, &cm, map);
    }
}

/* Whether the name whose bytes start at `p` holds a pointer. */
static bool has_pointer(const uint8_t *buf, size_t p)
{
    for (; buf[p] != 0; p += 1u + buf[p])
        if (buf[p] >= 0xC0) return true;
    return false;
}

static void compress_compresses_only_rfc3597_types(void **state)
{
    static uint8_t out[4096], out2[4096];
    for (size_t i = 0; i < NCASES; i++) {
        const struct rdcase *c = &cases[i];
        struct built o;
        build(&o, c, PICK_NAME_SUFFIX);
        struct dns_msg m, cm, cm2;
        struct dns_rr rr[8], crr[8], crr2[8];
        assert_int_equal(dns_msg_parse(&m, o.m.b, o.m.n, rr, 8), DNS_OK);
        size_t n = 0;
        enum dns_err err = dns_msg_compress(out, sizeof out, &n, &m);
        if (err != DNS_OK) fail_msg("%s compress: %s", c->name, dns_strerror(err));
        err = dns_msg_parse(&cm, out, n, crr, 8);
        if (err != DNS_OK) fail_msg("%s compressed parse: %s", c->name, dns_strerror(err));
        assert_int_equal(dns_msg_check_rdata(&cm), DNS_OK);
        static const int map[] = {0, 1};
        assert_same_records(c, &m, &cm, map);
        /* The question holds "example.net": the first RDATA name compresses against it, or
         * is written in full. */
        struct dns_rdata_names d;
        assert_true(dns_rdata_names(c->type, cm.buf + cm.rr[0].rdata, cm.rr[0].rdlen, &d));
        size_t p = (size_t)cm.rr[0].rdata + d.first;
        if (has_pointer(cm.buf, p) != c->compress)
            fail_msg("%s: RDATA name %s", c->name, c->compress ? "not compressed" : "compressed");
        if (!c->compress) {
            /* Its names are expanded; the glue owner (a pointer into them) stays one. */
            size_t next = 0, len = 0;
            for (unsigned k = 0; k < c->names; k++) {
                assert_false(has_pointer(cm.buf, p));
                assert_int_equal(dns_name_unpack(cm.buf, cm.len, p, NULL, &len, &next), DNS_OK);
                p = next;
            }
        }
        assert_true(has_pointer(cm.buf, cm.rr[1].owner));

        /* A message whose RDATA names hold pointers: compress expands the ones it may not
         * keep, and compressing again changes nothing. */
        size_t n2 = 0;
        assert_int_equal(dns_msg_compress(out2, sizeof out2, &n2, &cm), DNS_OK);
        assert_int_equal(dns_msg_parse(&cm2, out2, n2, crr2, 8), DNS_OK);
        assert_int_equal(n2, n);
        assert_memory_equal(out2, out, n);
    }
}

/* A message of every type at once, its OPT in the middle, round-trips through both. */
static void every_type_in_one_message_round_trips(void **state)
{
    static struct mb m;
    static uint8_t out[8192], out2[8192];
    mb_header(&m, 1, NCASES, 0, 1 + NCASES);
    mb_name(&m, "svc.example.net", 0);
    mb_16(&m, DNS_T_A);
    mb_16(&m, DNS_C_IN);
    size_t firsts[NCASES];
    for (size_t i = 0; i < NCASES; i++) {
        mb_name(&m, "", DNS_HEADER_LEN);
        size_t rl = mb_rr(&m, cases[i].type);
        size_t tail = 0;
        mb_rdata(&m, &cases[i], 0, &firsts[i], &tail);
        mb_rdlen(&m, rl);
    }
    mb_opt(&m);
    for (size_t i = 0; i < NCASES; i++) {
        mb_name(&m, "glue", (uint16_t)(firsts[i] + 3));
        mb_a(&m);
    }
    struct dns_msg msg, cm, cm2;
    static struct dns_rr rr[128], crr[128], crr2[128];
    assert_int_equal(dns_msg_parse(&msg, m.b, m.n, rr, 128), DNS_OK);
    assert_int_equal(dns_msg_check_rdata(&msg), DNS_OK);
    size_t n = 0;
    assert_int_equal(dns_msg_copy_without_opt(out, sizeof out, &n, &msg), DNS_OK);
    assert_int_equal(dns_msg_parse(&cm, out, n, crr, 128), DNS_OK);
    assert_int_equal(dns_msg_check_rdata(&cm), DNS_OK);
    size_t n2 = 0;
    assert_int_equal(dns_msg_compress(out2, sizeof out2, &n2, &cm), DNS_OK);
    assert_true(n2 < n);
    assert_int_equal(dns_msg_parse(&cm2, out2, n2, crr2, 128), DNS_OK);
    assert_int_equal(dns_msg_check_rdata(&cm2), DNS_OK);
    assert_int_equal(cm2.nrr, 2 * NCASES);
    for (size_t i = 0; i < 2 * NCASES; i++) {
        char a[DNS_NAME_TEXT_MAX], b[DNS_NAME_TEXT_MAX];
        expand(cm.buf, cm.len, cm.rr[i].owner, a);
        expand(cm2.buf, cm2.len, cm2.rr[i].owner, b);
        assert_string_equal(a, b);
        if (i >= NCASES) assert_string_equal(a, "glue.example.net.");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(later_owner_may_point_into_every_rdata_name),
        cmocka_unit_test(pointer_into_other_rdata_bytes_is_refused),
        cmocka_unit_test(compressed_rdata_names_parse),
        cmocka_unit_test(descriptor_matches_layouts),
        cmocka_unit_test(go_https_entry_with_glue_decodes),
        cmocka_unit_test(check_rdata_follows_go),
        cmocka_unit_test(copy_without_opt_moves_pointers_of_every_type),
        cmocka_unit_test(compress_compresses_only_rfc3597_types),
        cmocka_unit_test(every_type_in_one_message_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
