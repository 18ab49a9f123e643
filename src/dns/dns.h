/* src/dns/dns.h — the DNS wire layer: the interface of src/dns.
 *
 * Bounded parsing of DNS messages, the question of a query and its cache key (SPEC §1.1),
 * RCD2 cache entries (SPEC §1.2-1.3), cacheability and TTL rules (SPEC §2), and in-place
 * reply editing for cache hits (SPEC §1.4).
 *
 * No I/O and no allocation: every function works on caller-provided memory. A parsed
 * message (struct dns_msg) holds offsets into the caller's buffer, which must outlive it.
 * Every length read from the wire is checked against the bytes present before use.
 */
#ifndef RC_DNS_H
#define RC_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- limits and wire constants ---- */

#define DNS_HEADER_LEN   12
#define DNS_LABEL_MAX    63
#define DNS_NAME_MAX     255 /* wire length of an expanded name, root label included */
#define DNS_MSG_MAX      65535
#define DNS_PTR_HOPS_MAX 128  /* compression pointers followed while reading one name */
#define DNS_RR_MAX       2048 /* RRs (answer+authority+additional) a parse may record */
#define DNS_UDP_MIN      512
#define DNS_UDP_DEFAULT  1232 /* our EDNS UDP size */

/* The presentation-format name fed to the cache key is cut to this many bytes. */
#define DNS_KEY_NAME_MAX 256
/* Longest presentation form of a wire name: 4 bytes (\DDD) per byte plus dots. */
#define DNS_NAME_TEXT_MAX 1024

enum dns_type {
    DNS_T_A = 1,
    DNS_T_NS = 2,
    DNS_T_MD = 3,
    DNS_T_MF = 4,
    DNS_T_CNAME = 5,
    DNS_T_SOA = 6,
    DNS_T_MB = 7,
    DNS_T_MG = 8,
    DNS_T_MR = 9,
    DNS_T_PTR = 12,
    DNS_T_MINFO = 14,
    DNS_T_MX = 15,
    DNS_T_TXT = 16,
    DNS_T_RP = 17,
    DNS_T_AFSDB = 18,
    DNS_T_RT = 21,
    DNS_T_NSAPPTR = 23,
    DNS_T_SIG = 24,
    DNS_T_PX = 26,
    DNS_T_AAAA = 28,
    DNS_T_SRV = 33,
    DNS_T_NAPTR = 35,
    DNS_T_KX = 36,
    DNS_T_DNAME = 39,
    DNS_T_OPT = 41,
    DNS_T_DS = 43,
    DNS_T_RRSIG = 46,
    DNS_T_NSEC = 47,
    DNS_T_DNSKEY = 48,
    DNS_T_HIP = 55,
    DNS_T_TALINK = 58,
    DNS_T_SVCB = 64,
    DNS_T_HTTPS = 65,
    DNS_T_LP = 107,
    DNS_T_TKEY = 249,
    DNS_T_TSIG = 250,
    DNS_T_IXFR = 251,
    DNS_T_AXFR = 252,
    DNS_T_ANY = 255,
};

enum dns_class { DNS_C_IN = 1, DNS_C_CH = 3, DNS_C_HS = 4, DNS_C_ANY = 255 };

enum dns_rcode {
    DNS_RCODE_NOERROR = 0,
    DNS_RCODE_FORMERR = 1,
    DNS_RCODE_SERVFAIL = 2,
    DNS_RCODE_NXDOMAIN = 3,
    DNS_RCODE_NOTIMP = 4,
    DNS_RCODE_REFUSED = 5,
    DNS_RCODE_BADVERS = 16, /* extended: needs the OPT's upper 8 bits */
};

/* Header flags word (bytes 2-3, host order once read). */
#define DNS_F_QR          0x8000u
#define DNS_F_OPCODE_MASK 0x7800u
#define DNS_F_AA          0x0400u
#define DNS_F_TC          0x0200u
#define DNS_F_RD          0x0100u
#define DNS_F_RA          0x0080u
#define DNS_F_Z           0x0040u
#define DNS_F_AD          0x0020u
#define DNS_F_CD          0x0010u
#define DNS_F_RCODE_MASK  0x000Fu
#define DNS_OPCODE(flags) (((flags) >> 11) & 0xFu)
#define DNS_OPCODE_QUERY  0

#define DNS_EDNS_DO      0x8000u /* in the OPT TTL's low 16 bits */
#define DNS_EDNS_OPT_ECS 8       /* EDNS Client Subnet option code */

enum dns_section {
    DNS_SEC_QUESTION = 0,
    DNS_SEC_ANSWER = 1,
    DNS_SEC_AUTHORITY = 2,
    DNS_SEC_ADDITIONAL = 3
};

/* Big-endian helpers shared by the layer's files. */
static inline uint16_t dns_get16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}
static inline uint32_t dns_get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline void dns_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static inline void dns_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* ---- errors: each says which rule a message broke ---- */

enum dns_err {
    DNS_OK = 0,
    DNS_ERR_SHORT_HEADER,   /* fewer than 12 bytes */
    DNS_ERR_NAME_TRUNCATED, /* a name runs past the end of the message */
    DNS_ERR_LABEL_TOO_LONG, /* label over 63 bytes */
    DNS_ERR_NAME_TOO_LONG,  /* expanded name over 255 bytes */
    DNS_ERR_BAD_LABEL_TYPE, /* 0x40/0x80 label type (extended/bitstring labels) */
    DNS_ERR_BAD_POINTER,    /* compression pointer not strictly backwards, or (dns_msg_parse)
                               not at an element of a name read earlier */
    DNS_ERR_POINTER_LOOP,   /* more than DNS_PTR_HOPS_MAX pointers in one name */
    DNS_ERR_QUESTION_TRUNCATED,
    DNS_ERR_RR_TRUNCATED,   /* RR fixed fields past the end */
    DNS_ERR_RDATA_OVERRUN,  /* RDLENGTH runs past the end */
    DNS_ERR_TRAILING_BYTES, /* bytes left over after the counted records */
    DNS_ERR_TOO_MANY_RRS,   /* more RRs than the caller's array holds */
    DNS_ERR_OPT_NOT_ADDITIONAL,
    DNS_ERR_OPT_DUPLICATE,
    DNS_ERR_OPT_OWNER,   /* OPT owner is not the root */
    DNS_ERR_BAD_RDATA,   /* RDATA of a known type malformed (A not 4 bytes, bad name...) */
    DNS_ERR_NO_QUESTION, /* QDCOUNT is not 1 where exactly one is required */
    DNS_ERR_NO_SPACE,    /* output buffer too small */
    DNS_ERR_TOO_BIG,     /* result would exceed 65535 bytes */
    DNS_ERR__COUNT
};

/* A short constant description of an error ("label over 63 bytes"). Never NULL. */
const char *dns_strerror(enum dns_err err);

/* ---- names ---- */

/* Reads the (possibly compressed) name at `off` of the message `msg` (`len` bytes) and
 * writes its expanded wire form into `out` (room for DNS_NAME_MAX). On success sets
 * *out_len (root label included) and *next to the offset just past the name's bytes at
 * `off`. `out` may be NULL to only validate and skip. */
enum dns_err dns_name_unpack(const uint8_t *msg, size_t len, size_t off, uint8_t *out,
                             size_t *out_len, size_t *next);

/* Writes the presentation form of an uncompressed wire name (SPEC §1.1: labels joined by
 * '.', trailing dot, root is ".", the bytes . space ' @ ; ( ) " \ escaped with '\', bytes
 * < 0x20 or > 0x7E as \DDD). With `lower`, ASCII A-Z are folded to a-z. Writes at most
 * `cap` bytes (no NUL); returns the full length, which may exceed `cap` (then the output
 * is the first `cap` bytes of it). */
size_t dns_name_to_text(const uint8_t *wire, size_t wire_len, char *out, size_t cap, bool lower);

/* Wire form of a plain presentation name ("example.org.", "example.org" or "."): labels
 * split at dots, ASCII folded to lowercase, no escapes (zone names from configuration).
 * Returns the wire length (root byte included), or 0 when a label is empty or over 63
 * bytes or the name over 255. */
size_t dns_name_from_text(const char *text, uint8_t out[DNS_NAME_MAX]);

/* A zone name as configured (`len` bytes of `text`, no escapes: letters, digits, '-', '_')
 * in lowercase presentation form with a trailing dot into `out` (DNS_ZONE_TEXT_MAX bytes,
 * NUL-terminated). Returns NULL, or why it is refused ("empty label", "label over 63
 * bytes", ...), for config error messages. */
#define DNS_ZONE_TEXT_MAX 256
const char *dns_zone_normalize(const char *text, size_t len, char out[DNS_ZONE_TEXT_MAX]);

/* True when the uncompressed wire name is `zone` or below it, comparing bytes (pass both
 * lowercase) and only at label boundaries. */
bool dns_name_in_zone(const uint8_t *name, size_t len, const uint8_t *zone, size_t zlen);

/* Case-insensitive (ASCII only) equality of two uncompressed wire names. */
bool dns_name_equal_nocase(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len);

/* ---- parsed messages ---- */

/* One resource record, by offsets into the message. Offsets fit 16 bits because a message
 * never exceeds 65535 bytes. The owner name starts at `owner` and ends at `ttl_off - 4`. */
struct dns_rr {
    uint16_t owner; /* offset of the owner name (maybe compressed) */
    uint16_t type;
    uint16_t rclass;  /* for OPT: the requestor's UDP payload size */
    uint16_t ttl_off; /* offset of the 4-byte TTL field */
    uint16_t rdata;   /* offset of RDATA */
    uint16_t rdlen;
    uint8_t section; /* enum dns_section */
};

struct dns_msg {
    const uint8_t *buf;
    size_t len;
    uint16_t id;
    uint16_t flags;    /* header flags word, DNS_F_* */
    uint16_t count[4]; /* QDCOUNT, ANCOUNT, NSCOUNT, ARCOUNT as in the header */

    /* The first question (when QDCOUNT >= 1). */
    uint16_t qname_off; /* offset of the question name in buf */
    uint16_t qtype, qclass;
    uint16_t qend; /* offset just past the whole question section */

    /* Answer, authority and additional RRs in message order (only if an array was given). */
    struct dns_rr *rr;
    uint16_t nrr;
    int opt; /* index of the OPT RR in rr[] or -1 (also -1 when rr is NULL) */

    /* From the OPT RR, when there is one. */
    bool has_edns;
    uint8_t edns_version;
    uint8_t edns_ext_rcode; /* upper 8 bits of the 12-bit rcode */
    bool edns_do;
    uint16_t edns_udp; /* the OPT's class field as sent (not clamped) */
    uint16_t opt_off;  /* offset of the OPT RR's owner byte */
    uint16_t opt_len;  /* whole OPT RR length in bytes */

    bool compressed; /* some name in the message uses a compression pointer */
};

/* Parses and validates the whole message: header, every question, every RR of every section
 * (names fully checked, with compression), and that the counts account for exactly `len`
 * bytes. A compression pointer must aim at the start of a label, pointer or root byte of a
 * name read earlier in the message (a question, an owner other than the OPT's, or a name in
 * the RDATA of an earlier RR of a type dns_rdata_names knows), else
 * DNS_ERR_BAD_POINTER: bytes that are not a name cannot become one, so the in-place edits of
 * the hit path (TTLs, OPT, dropped RRs) never change a name. At most one OPT, only in additional,
 * owner root. Records up to `cap` RRs in `rrs` (answer, authority, additional order); more gives
 * DNS_ERR_TOO_MANY_RRS. With rrs NULL it validates and fills the header, question and EDNS fields
 * without recording RRs. RDATA is only checked to lie inside the message and for the pointer rule
 * above (a name in RDATA that is malformed otherwise is left to dns_msg_check_rdata and cannot be
 * pointed at). */
enum dns_err dns_msg_parse(struct dns_msg *m, const uint8_t *buf, size_t len, struct dns_rr *rrs,
                           size_t cap);

/* ---- names inside RDATA ----
 *
 * The Go DNS library (miekg/dns, the Go plugin's) adds EVERY name it packs to its compression
 * table, also the names of types whose own names it never compresses, so a later name of a
 * message it wrote may point into any of them. These are the types whose RDATA names it packs
 * that way (zmsg.go; "compress" marks the ones it also compresses itself, the RFC 1035 /
 * RFC 3597 §4 well-known types):
 *   NS, MD, MF, CNAME, MB, MG, MR, PTR, MX(2+name), SOA(2 names+20), MINFO(2 names): compress;
 *   RP(2 names), AFSDB(2+name), RT(2+name), NSAPPTR, SIG and RRSIG (18+signer+signature),
 *   PX(2+2 names), SRV(6+name), NAPTR(2+2+3 character-strings+name), KX(2+name), DNAME,
 *   NSEC(name+bitmap), HIP(4+HIT+key, then names to the end), TALINK(2 names),
 *   SVCB/HTTPS(2+name+params), LP(2+name), TKEY/TSIG (algorithm name first, then fields):
 *   never compressed.
 * Every name sits in one run: `first` bytes of fixed fields (walked for NAPTR and HIP), then
 * `count` names back to back, then the tail. dns_msg_parse reads these names (later pointers
 * may aim at them, pointers inside them are checked), dns_msg_check_rdata validates them,
 * dns_msg_copy_without_opt moves their pointers and dns_msg_compress re-encodes them
 * (compressing only the `compress` ones; expanding is always safe). */

#define DNS_RDATA_NAMES_TO_END 0xFFFFu /* count: names until the RDATA ends (HIP) */
#define DNS_RDATA_NO_NAME      0xFFFFu /* first: the fixed fields do not fit the RDATA */

enum dns_rdata_tail {
    DNS_RDATA_TAIL_NONE = 0, /* the last name ends the RDATA */
    DNS_RDATA_TAIL_SOA,      /* exactly 20 bytes (SOA serial..minimum) */
    DNS_RDATA_TAIL_REST,     /* other fields up to the end, no names in them */
};

struct dns_rdata_names {
    uint16_t first;  /* offset of the first name inside the RDATA, or DNS_RDATA_NO_NAME */
    uint16_t count;  /* names in a row from there, or DNS_RDATA_NAMES_TO_END */
    uint8_t tail;    /* enum dns_rdata_tail: what follows the names */
    bool compress;   /* our encoder may compress them (miekg and RFC 3597 §4 do) */
    bool no_pointer; /* the SIG/RRSIG signer: a pointer in it is malformed (RFC 4034 §3.1.7) */
};

/* Fills *d for an RR of `type` whose RDATA is the `rdlen` bytes at `rdata` and returns true,
 * or returns false for a type whose RDATA the layer treats as opaque bytes. d->first is
 * DNS_RDATA_NO_NAME when the fixed fields before the first name (NAPTR's strings, HIP's HIT
 * and key) overrun the RDATA; it may also equal or pass rdlen for a short RDATA: then no name
 * is present. Inline: the parser calls it for every RR. */
static inline bool dns_rdata_names(uint16_t type, const uint8_t *rdata, size_t rdlen,
                                   struct dns_rdata_names *d)
{
    d->first = 0;
    d->count = 1;
    d->tail = DNS_RDATA_TAIL_NONE;
    d->compress = false;
    d->no_pointer = false;
    switch (type) {
    case DNS_T_NS:
    case DNS_T_MD:
    case DNS_T_MF:
    case DNS_T_CNAME:
    case DNS_T_MB:
    case DNS_T_MG:
    case DNS_T_MR:
    case DNS_T_PTR: d->compress = true; return true;
    case DNS_T_MX: d->first = 2, d->compress = true; return true;
    case DNS_T_SOA: d->count = 2, d->tail = DNS_RDATA_TAIL_SOA, d->compress = true; return true;
    case DNS_T_MINFO: d->count = 2, d->compress = true; return true;
    case DNS_T_DNAME:
    case DNS_T_NSAPPTR: return true;
    case DNS_T_RP:
    case DNS_T_TALINK: d->count = 2; return true;
    case DNS_T_AFSDB:
    case DNS_T_RT:
    case DNS_T_KX:
    case DNS_T_LP: d->first = 2; return true;
    case DNS_T_PX: d->first = 2, d->count = 2; return true;
    case DNS_T_SRV: d->first = 6; return true;
    case DNS_T_SIG:
    case DNS_T_RRSIG:
        d->first = 18, d->tail = DNS_RDATA_TAIL_REST, d->no_pointer = true;
        return true;
    case DNS_T_NSEC:
    case DNS_T_TKEY:
    case DNS_T_TSIG: d->tail = DNS_RDATA_TAIL_REST; return true;
    case DNS_T_SVCB:
    case DNS_T_HTTPS: d->first = 2, d->tail = DNS_RDATA_TAIL_REST; return true;
    case DNS_T_NAPTR: {
        /* order, preference, then flags, services and regexp as character-strings. */
        size_t p = 4;
        for (int i = 0; i < 3 && p < rdlen; i++) p += 1u + rdata[p];
        d->first = p < rdlen ? (uint16_t)p : DNS_RDATA_NO_NAME;
        return true;
    }
    case DNS_T_HIP: {
        /* HIT length, algorithm, public key length, HIT, key; rendezvous servers to the end
         * (none is fine). */
        d->count = DNS_RDATA_NAMES_TO_END;
        size_t p = rdlen >= 4 ? 4u + rdata[0] + dns_get16(rdata + 2) : (size_t)DNS_RDATA_NO_NAME;
        d->first = p <= rdlen ? (uint16_t)p : DNS_RDATA_NO_NAME;
        return true;
    }
    default: return false;
    }
}

/* Checks the RDATA of every recorded RR of a known type is well formed as the Go DNS
 * library needs to unpack it: A 4 bytes, AAAA 16, TXT strings filling the RDATA; for every
 * type of dns_rdata_names its fixed fields present and its names valid (compressed or not;
 * the SIG/RRSIG signer uncompressed) and exactly followed by its tail: SOA 20 bytes, NSEC a
 * well-formed type bitmap, SVCB/HTTPS SvcParams as Go unpacks them (keys strictly increasing,
 * known keys' values well formed), TKEY/TSIG their fields exactly, else nothing. Returns
 * DNS_ERR_BAD_RDATA or a name error otherwise. */
enum dns_err dns_msg_check_rdata(const struct dns_msg *m);

/* ---- the question of a query (DESIGN "one query, end to end") ---- */

struct dns_question {
    uint8_t name[DNS_NAME_MAX];    /* the qname's wire form as the client sent it (its case) */
    uint8_t name_lc[DNS_NAME_MAX]; /* the same, ASCII-lowercased */
    uint16_t name_len;             /* wire length, root label included */
    uint16_t qtype, qclass;
    uint16_t id;
    uint16_t flags; /* the query's header flags word */
    bool cd;        /* header CD bit */
    bool has_edns;
    bool do_bit; /* OPT DO bit (false without OPT) */
    uint8_t edns_version;
    uint16_t udp_size; /* OPT class as sent; 0 without OPT */
    uint16_t qend;     /* offset just past the question section in the query */
};

/* Parses a query: the whole message must parse (dns_msg_parse rules) with exactly one
 * question (else DNS_ERR_NO_QUESTION); fills `q`. Does not look at QR or opcode: the
 * caller decides what to do with those (q->flags). */
enum dns_err dns_question_parse(struct dns_question *q, const uint8_t *buf, size_t len);

/* Fills `q` from the first question and the OPT of an already parsed message (used for
 * the question of a stored entry or an upstream response). */
enum dns_err dns_question_from_msg(struct dns_question *q, const struct dns_msg *m);

/* ---- cache key (SPEC §1.1) ---- */

/* XXH64(seed) of qclass BE16 || qtype BE16 || DO byte || CD byte || lowercase presentation
 * qname cut to DNS_KEY_NAME_MAX bytes. `do_bit` is passed explicitly: reads use the query's
 * DO, writes the response's. CD is q->cd. */
uint64_t dns_key_hash(const struct dns_question *q, bool do_bit, uint64_t seed);

/* Length of a configured key prefix after trimming one trailing ':'. */
size_t dns_key_prefix_len(const char *prefix, size_t len);

/* Longest key: prefix, ':', 16 hex digits. */
#define DNS_KEY_HEX_LEN 16

/* Writes "<prefix>:<16 lowercase hex of hash, big-endian>" (no ':' when prefix_len is 0;
 * the prefix must already be trimmed) and a NUL. Returns the length without the NUL, or 0
 * when `cap` is too small. */
size_t dns_key_format(char *out, size_t cap, const char *prefix, size_t prefix_len, uint64_t hash);

/* ---- RCD2 cache entries (SPEC §1.2, §1.3) ---- */

#define DNS_ENTRY_MAGIC      "RCD2"
#define DNS_ENTRY_MAGIC_LEN  4
#define DNS_ENTRY_HEADER_LEN 5 /* magic + flags byte */
#define DNS_ENTRY_MAX        (DNS_MSG_MAX + DNS_ENTRY_HEADER_LEN)
#define DNS_ENTRY_FLAG_DO    0x01u

enum dns_entry_status {
    DNS_ENTRY_OK = 0,
    DNS_ENTRY_MALFORMED, /* empty, bare "RCD2", > 65540 bytes, or not a valid DNS message:
                            a miss counted get_errors{other}, evicted */
    DNS_ENTRY_COLLISION, /* valid, but not this question: collisions_total, evicted */
    DNS_ENTRY_TRUNCATED, /* TC=1 stored by a foreign writer: miss, counted other, kept */
};

const char *dns_entry_status_str(enum dns_entry_status st);

struct dns_entry {
    struct dns_msg msg; /* the stored DNS message (value + 5, or the whole legacy value) */
    bool legacy;        /* value did not start with "RCD2" */
    bool do_bit;        /* RCD2: flags bit 0; legacy: the message's OPT DO bit */
    enum dns_err err;   /* why decoding failed, when MALFORMED */
};

/* Decodes a value read from Redis: RCD2 or legacy raw wire; parses the DNS message
 * (recording up to `cap` RRs in `rrs`). Returns DNS_ENTRY_OK or DNS_ENTRY_MALFORMED. */
enum dns_entry_status dns_entry_decode(struct dns_entry *e, const uint8_t *val, size_t len,
                                       struct dns_rr *rrs, size_t cap);

/* The read checks of SPEC §1.3 against the query: exactly one question, QR=1, qname equal
 * ignoring ASCII case, same qtype and qclass, stored DO = query DO, header CD = query CD
 * (else COLLISION); then TC=1 gives TRUNCATED. */
enum dns_entry_status dns_entry_check(const struct dns_entry *e, const struct dns_question *q);

/* Encodes an upstream response for the query `q` as an RCD2 value into `out`: "RCD2", the
 * flags byte (DO of the response's OPT), then the message with every OPT RR removed,
 * ARCOUNT fixed, QR=1, and the header CD bit set to the query's. Compression pointers
 * stay valid (counted from byte 5). RDATA of known types must be well formed
 * (dns_msg_check_rdata), else an error is returned and nothing should be written.
 * `resp` must have been parsed with an RR array. */
enum dns_err dns_entry_encode(uint8_t *out, size_t cap, size_t *out_len, const struct dns_msg *resp,
                              const struct dns_question *q);

/* Copies the parsed message `m` (parsed with an RR array) into `out` without its OPT RR,
 * ARCOUNT lowered by one; every other byte keeps its meaning: when the OPT is not the
 * last RR, compression pointers of later names (owners and the RDATA names of
 * dns_rdata_names) that pointed past the removed bytes are moved back by its length. Without an
 * OPT it is a plain copy. Used by dns_entry_encode and dns_reply_build. */
enum dns_err dns_msg_copy_without_opt(uint8_t *out, size_t cap, size_t *out_len,
                                      const struct dns_msg *m);

/* ---- cacheability and TTL (SPEC §2) ---- */

enum dns_kind {
    DNS_KIND_NONE = 0, /* an rcode that is never cached: pass through, TTLs unchanged */
    DNS_KIND_POSITIVE, /* `success` bounds */
    DNS_KIND_NEGATIVE, /* `denial` bounds */
};

/* Why a response must not be written (the reply still gets its kind's TTL when kind is not
 * NONE). */
enum dns_nocache {
    DNS_NC_OK = 0,          /* may be written */
    DNS_NC_QDCOUNT,         /* QDCOUNT != 1 */
    DNS_NC_TC,              /* truncated */
    DNS_NC_OPCODE,          /* opcode other than QUERY */
    DNS_NC_XFR,             /* AXFR / IXFR */
    DNS_NC_RCODE,           /* rcode other than NOERROR / NXDOMAIN */
    DNS_NC_NXDOMAIN_ANSWER, /* NXDOMAIN with a non-empty answer */
    DNS_NC_NXDOMAIN_NO_SOA, /* NXDOMAIN without SOA in authority */
    DNS_NC_CNAME_CHAIN,     /* answer's CNAME chain dangles, forks or loops */
    DNS_NC_RRSIG_WINDOW,    /* DO=1 and an RRSIG outside its validity window */
    DNS_NC_ECS_SCOPE,       /* ECS option with scope prefix > 0 */
    DNS_NC_MISMATCH,        /* response question or CD differs from the query */
    DNS_NC_ZERO_TTL,        /* cache duration came to 0 */
};

const char *dns_nocache_str(enum dns_nocache why);

struct dns_verdict {
    enum dns_kind kind;
    enum dns_nocache why; /* DNS_NC_OK when it may be written */
    uint32_t msg_ttl;     /* message TTL per SPEC §2 (before clamping) */
};

/* Classifies a parsed upstream response `resp` (parsed with an RR array) to the query `q`
 * at unix time `now` (for RRSIG windows). Pure: no side effects. */
void dns_classify(struct dns_verdict *v, const struct dns_msg *resp, const struct dns_question *q,
                  uint32_t now);

/* max(min, min(ttl, max)). */
uint32_t dns_ttl_clamp(uint32_t ttl, uint32_t min, uint32_t max);

/* A wire TTL with the top bit set reads as 2^31-1 (RFC 8767). */
static inline uint32_t dns_ttl_read(uint32_t wire)
{
    return (wire & 0x80000000u) ? 0x7FFFFFFFu : wire;
}

/* ---- in-place reply editing (SPEC §1.4) ---- */

/* Sets the TTL of every RR except OPT to `ttl`, in place in `buf` (the buffer `m` was parsed
 * from, or a byte-for-byte copy of it). */
void dns_msg_set_ttl(uint8_t *buf, const struct dns_msg *m, uint32_t ttl);

/* The most bytes a reply to `q` may have: TCP -> 65535; no EDNS -> 512; else
 * max(512, min(q->udp_size, our_udp)). */
size_t dns_reply_limit(const struct dns_question *q, uint16_t our_udp, bool tcp);

/* Builds the reply to the query `q` from the stored message `src` (a checked entry) into
 * `out` (`cap` bytes): header ID, opcode, RD, CD and the question bytes from the query;
 * QR=1, AA=1, AD cleared unless the query had DO or AD; rcode and the other flags from the
 * entry; every RR except OPT gets `ttl`; any stored OPT dropped; a fresh OPT (version 0,
 * our_udp, DO from the query, no options) appended when the query had EDNS. Then fitted to
 * dns_reply_limit: an uncompressed message is compressed once; additional RRs dropped whole
 * without TC; if still too big, header + question + OPT with TC=1. Never re-encodes names
 * otherwise. Sets *out_len. */
enum dns_err dns_reply_build(uint8_t *out, size_t cap, size_t *out_len, const struct dns_msg *src,
                             const struct dns_question *q, uint32_t ttl, uint16_t our_udp,
                             bool tcp);

/* Writes a compressed copy of the parsed message `m` into `out` (names of the question,
 * owners and the RDATA names dns_rdata_names marks `compress` compressed against earlier
 * names; other RDATA names of dns_rdata_names written in full). */
enum dns_err dns_msg_compress(uint8_t *out, size_t cap, size_t *out_len, const struct dns_msg *m);

#endif /* RC_DNS_H */
