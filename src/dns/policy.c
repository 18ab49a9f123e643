/* src/dns/policy.c — what an upstream response may be cached as, and for how long (SPEC §2).
 *
 * dns_classify gives each response a kind (which bounds apply), a reason it must not be
 * written (or DNS_NC_OK) and its message TTL before clamping. The kind is derived from the
 * rcode and sections alone, so a response that must not be written still gets its kind's
 * TTL on the way to the client (SPEC §2 "Reply TTL on a miss").
 *
 * Precedence when several rules are broken (the first one wins, so the reported reason and
 * the metrics built on it are stable):
 *   1. QDCOUNT != 1            (nothing below can be judged without exactly one question)
 *   2. MISMATCH                (question or CD differs from the query: likely spoofed or
 *                               misrouted, so it outranks anything the message says)
 *   3. OPCODE  4. TC  5. XFR   (message shape)
 *   6. RCODE                   (also makes the kind NONE)
 *   7. NXDOMAIN_ANSWER  8. NXDOMAIN_NO_SOA  9. CNAME_CHAIN  10. RRSIG_WINDOW  11. ECS_SCOPE
 * DNS_NC_ZERO_TTL is left to callers: it depends on the configured bounds.
 *
 * Choices SPEC §2 leaves open, made here:
 *   - NOERROR with no answer and an authority section holding neither SOA nor NS (say, only
 *     NSEC) is positive: without an SOA nothing marks it a denial. TTL as for positive.
 *   - A negative response without a readable SOA (no SOA, or SOA RDATA too short for the
 *     MINIMUM field) falls back to the smallest RR TTL present (0 when there is none), so
 *     the reply's records keep a bound TTL; such a response is never written anyway or is
 *     refused later by the encoder's RDATA check.
 *   - An RRSIG whose RDATA is too short to hold its times, or an ECS option too short to
 *     hold its scope, cannot be shown harmless and makes the response unwritable.
 *   - msg_ttl is 0 for kind NONE: callers leave those TTLs unchanged.
 */
#include "dns/dns.h"

/* Fixed part of RRSIG RDATA before the signer's name (RFC 4034 §3.1). */
#define RRSIG_FIXED_LEN  18
#define RRSIG_EXPIRATION 8
#define RRSIG_INCEPTION  12
/* SOA RDATA after its two names: serial, refresh, retry, expire, minimum. */
#define SOA_TAIL_LEN 20
#define SOA_MINIMUM  16
/* ECS option data: FAMILY(2) SOURCE PREFIX(1) SCOPE PREFIX(1) ADDRESS (RFC 7871 §6). */
#define ECS_SCOPE_OFF 3
/* The fail-safe TTL of a NOERROR response with nothing in answer and authority. */
#define POLICY_EMPTY_TTL 5u

/* a <= b in RFC 1982 serial-number arithmetic on 32 bits (RFC 4034 §3.1.5). */
static bool policy_serial_le(uint32_t a, uint32_t b)
{
    return (uint32_t)(b - a) < 0x80000000u;
}

static bool policy_name_at_equals(const struct dns_msg *m, size_t off, const uint8_t *name,
                                  size_t name_len)
{
    uint8_t buf[DNS_NAME_MAX];
    size_t len, next;

    if (dns_name_unpack(m->buf, m->len, off, buf, &len, &next) != DNS_OK) return false;
    return dns_name_equal_nocase(buf, len, name, name_len);
}

static bool policy_question_matches(const struct dns_msg *m, const struct dns_question *q)
{
    if (m->qtype != q->qtype || m->qclass != q->qclass) return false;
    if (((m->flags & DNS_F_CD) != 0) != q->cd) return false;
    return policy_name_at_equals(m, m->qname_off, q->name, q->name_len);
}

static uint32_t policy_rr_ttl(const struct dns_msg *m, const struct dns_rr *rr)
{
    return dns_ttl_read(dns_get32(m->buf + rr->ttl_off));
}

static bool policy_has_type(const struct dns_msg *m, enum dns_section sec, uint16_t type)
{
    for (uint16_t i = 0; i < m->nrr; i++)
        if (m->rr[i].section == sec && m->rr[i].type == type) return true;
    return false;
}

static uint16_t policy_section_count(const struct dns_msg *m, enum dns_section sec)
{
    uint16_t n = 0;

    for (uint16_t i = 0; i < m->nrr; i++)
        if (m->rr[i].section == sec) n++;
    return n;
}

/* Smallest TTL of every RR but OPT; `none` when there is no such RR. */
static uint32_t policy_min_rr_ttl(const struct dns_msg *m, uint32_t none)
{
    uint32_t min = 0x7FFFFFFFu;
    bool any = false;

    for (uint16_t i = 0; i < m->nrr; i++) {
        if (m->rr[i].type == DNS_T_OPT) continue;
        uint32_t ttl = policy_rr_ttl(m, &m->rr[i]);
        if (ttl < min) min = ttl;
        any = true;
    }
    return any ? min : none;
}

/* Seconds until the earliest RRSIG expiration (0 if one has passed); `none` without RRSIG.
 * RRSIGs too short to hold their times are skipped here: the window check refuses them. */
static uint32_t policy_rrsig_remaining(const struct dns_msg *m, uint32_t now, uint32_t none)
{
    uint32_t best = none;

    for (uint16_t i = 0; i < m->nrr; i++) {
        const struct dns_rr *rr = &m->rr[i];
        if (rr->type != DNS_T_RRSIG || rr->rdlen < RRSIG_FIXED_LEN) continue;
        uint32_t exp = dns_get32(m->buf + rr->rdata + RRSIG_EXPIRATION);
        uint32_t left = policy_serial_le(now, exp) ? exp - now : 0;
        if (left < best) best = left;
    }
    return best;
}

static bool policy_rrsigs_in_window(const struct dns_msg *m, uint32_t now)
{
    for (uint16_t i = 0; i < m->nrr; i++) {
        const struct dns_rr *rr = &m->rr[i];
        if (rr->type != DNS_T_RRSIG) continue;
        if (rr->rdlen < RRSIG_FIXED_LEN) return false;
        uint32_t exp = dns_get32(m->buf + rr->rdata + RRSIG_EXPIRATION);
        uint32_t inc = dns_get32(m->buf + rr->rdata + RRSIG_INCEPTION);
        if (!policy_serial_le(inc, now) || !policy_serial_le(now, exp)) return false;
    }
    return true;
}

/* True when the OPT carries an ECS option whose scope prefix is not 0 (or cannot be read). */
static bool policy_ecs_scoped(const struct dns_msg *m)
{
    if (m->opt < 0 || m->opt >= m->nrr) return false;
    const struct dns_rr *opt = &m->rr[m->opt];
    size_t off = opt->rdata, end = (size_t)opt->rdata + opt->rdlen;

    /* Each option takes at least 4 bytes, so this loop ends within rdlen / 4 steps. */
    while (end - off >= 4) {
        uint16_t code = dns_get16(m->buf + off);
        uint16_t olen = dns_get16(m->buf + off + 2);
        off += 4;
        if (olen > end - off) return code == DNS_EDNS_OPT_ECS;
        if (code == DNS_EDNS_OPT_ECS) {
            if (olen <= ECS_SCOPE_OFF) return true;
            if (m->buf[off + ECS_SCOPE_OFF] != 0) return true;
        }
        off += olen;
    }
    return false;
}

/* ASCII-case-folded FNV-1a of an expanded wire name (length bytes are <= 63, below 'A'). */
static uint32_t policy_name_hash(const uint8_t *name, size_t len)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < len; i++) {
        uint8_t c = name[i];
        if (c >= 'A' && c <= 'Z') c = (uint8_t)(c + ('a' - 'A'));
        h = (h ^ c) * 16777619u;
    }
    return h;
}

/* The answer RRs a chain can step on (CNAMEs and RRs of qtype), each with its owner's hash,
 * so a hop compares names only where the hashes agree. Without it a long chain costs a name
 * expansion per RR per hop: about 90 ms for 2,000 CNAMEs in reverse order. 12 KB of stack. */
struct policy_chain {
    uint16_t idx[DNS_RR_MAX];
    uint32_t hash[DNS_RR_MAX];
    uint16_t n;
};

/* Whether the answer's chain from the qname ends in an RR of qtype: at each owner, an RR
 * of qtype ends it, one CNAME moves on, none (dangling) or two CNAMEs (forked) do not.
 * A chain without a loop steps on each candidate RR at most once, so more hops than
 * candidates means a loop. More candidates than DNS_RR_MAX (a caller's larger RR array)
 * cannot be judged and count as not ending. */
static bool policy_chain_ends(const struct dns_msg *m, const struct dns_question *q)
{
    struct policy_chain ch;
    uint8_t cur[DNS_NAME_MAX];
    size_t cur_len = q->name_len, next;

    ch.n = 0;
    for (uint16_t i = 0; i < m->nrr; i++) {
        const struct dns_rr *rr = &m->rr[i];
        if (rr->section != DNS_SEC_ANSWER) continue;
        if (rr->type != q->qtype && rr->type != DNS_T_CNAME) continue;
        if (ch.n == DNS_RR_MAX) return false;
        if (dns_name_unpack(m->buf, m->len, rr->owner, cur, &cur_len, &next) != DNS_OK)
            return false;
        ch.idx[ch.n] = i;
        ch.hash[ch.n] = policy_name_hash(cur, cur_len);
        ch.n++;
    }

    cur_len = q->name_len;
    if (cur_len == 0 || cur_len > DNS_NAME_MAX) return false;
    for (size_t i = 0; i < cur_len; i++) cur[i] = q->name[i];

    for (uint16_t hop = 0; hop <= ch.n; hop++) {
        uint32_t h = policy_name_hash(cur, cur_len);
        const struct dns_rr *cname = NULL;
        unsigned ncname = 0;
        bool found = false;

        for (uint16_t j = 0; j < ch.n; j++) {
            if (ch.hash[j] != h) continue;
            const struct dns_rr *rr = &m->rr[ch.idx[j]];
            if (!policy_name_at_equals(m, rr->owner, cur, cur_len)) continue;
            if (rr->type == q->qtype) {
                found = true;
            } else {
                cname = rr;
                ncname++;
            }
        }
        if (ncname > 1) return false;
        if (found) return true;
        if (cname == NULL) return false;

        if (dns_name_unpack(m->buf, m->len, cname->rdata, cur, &cur_len, &next) != DNS_OK)
            return false;
        if (next > (size_t)cname->rdata + cname->rdlen) return false;
    }
    return false;
}

/* RFC 2308 §5: min(SOA RR TTL, SOA MINIMUM) of the first SOA in authority. */
static bool policy_negative_ttl(const struct dns_msg *m, uint32_t *ttl)
{
    for (uint16_t i = 0; i < m->nrr; i++) {
        const struct dns_rr *rr = &m->rr[i];
        if (rr->section != DNS_SEC_AUTHORITY || rr->type != DNS_T_SOA) continue;

        size_t end = (size_t)rr->rdata + rr->rdlen, off, len;
        if (dns_name_unpack(m->buf, m->len, rr->rdata, NULL, &len, &off) != DNS_OK || off > end)
            return false;
        if (dns_name_unpack(m->buf, m->len, off, NULL, &len, &off) != DNS_OK || off > end)
            return false;
        /* mname and rname may be compressed; MINIMUM is the last of the 20 bytes after them. */
        if (end - off < SOA_TAIL_LEN) return false;

        uint32_t rr_ttl = policy_rr_ttl(m, rr);
        uint32_t minimum = dns_ttl_read(dns_get32(m->buf + off + SOA_MINIMUM));
        *ttl = rr_ttl < minimum ? rr_ttl : minimum;
        return true;
    }
    return false;
}

/* The 12-bit rcode: an OPT's upper bits turn NOERROR into BADVERS and the like. */
static unsigned policy_rcode(const struct dns_msg *m)
{
    unsigned upper = m->has_edns ? m->edns_ext_rcode : 0;
    return (upper << 4) | (m->flags & DNS_F_RCODE_MASK);
}

static enum dns_kind policy_kind(const struct dns_msg *m)
{
    unsigned rcode = policy_rcode(m);

    if (rcode == DNS_RCODE_NXDOMAIN) return DNS_KIND_NEGATIVE;
    if (rcode != DNS_RCODE_NOERROR) return DNS_KIND_NONE;
    if (policy_section_count(m, DNS_SEC_ANSWER) > 0) return DNS_KIND_POSITIVE;
    if (policy_has_type(m, DNS_SEC_AUTHORITY, DNS_T_SOA)) return DNS_KIND_NEGATIVE;
    return DNS_KIND_POSITIVE;
}

static uint32_t policy_msg_ttl(const struct dns_msg *m, enum dns_kind kind, uint32_t now)
{
    uint32_t ttl;

    if (kind == DNS_KIND_NONE) return 0;
    if (kind == DNS_KIND_NEGATIVE) {
        if (policy_negative_ttl(m, &ttl)) return ttl;
        return policy_min_rr_ttl(m, 0);
    }
    if (policy_section_count(m, DNS_SEC_ANSWER) == 0 &&
        policy_section_count(m, DNS_SEC_AUTHORITY) == 0)
        ttl = POLICY_EMPTY_TTL;
    else
        ttl = policy_min_rr_ttl(m, POLICY_EMPTY_TTL);
    uint32_t sig = policy_rrsig_remaining(m, now, ttl);
    return sig < ttl ? sig : ttl;
}

static enum dns_nocache policy_why(const struct dns_msg *m, const struct dns_question *q,
                                   enum dns_kind kind, uint32_t now)
{
    if (m->count[DNS_SEC_QUESTION] != 1) return DNS_NC_QDCOUNT;
    if (!policy_question_matches(m, q)) return DNS_NC_MISMATCH;
    if (DNS_OPCODE(m->flags) != DNS_OPCODE_QUERY) return DNS_NC_OPCODE;
    if (m->flags & DNS_F_TC) return DNS_NC_TC;
    if (q->qtype == DNS_T_AXFR || q->qtype == DNS_T_IXFR) return DNS_NC_XFR;
    if (kind == DNS_KIND_NONE) return DNS_NC_RCODE;

    bool nxdomain = policy_rcode(m) == DNS_RCODE_NXDOMAIN;
    bool answer = policy_section_count(m, DNS_SEC_ANSWER) > 0;
    bool soa = policy_has_type(m, DNS_SEC_AUTHORITY, DNS_T_SOA);
    if (nxdomain && answer) return DNS_NC_NXDOMAIN_ANSWER;
    if (nxdomain && !soa) return DNS_NC_NXDOMAIN_NO_SOA;
    if (!nxdomain && answer && !soa && q->qtype != DNS_T_ANY && q->qtype != DNS_T_CNAME &&
        !policy_chain_ends(m, q))
        return DNS_NC_CNAME_CHAIN;
    if (m->edns_do && !policy_rrsigs_in_window(m, now)) return DNS_NC_RRSIG_WINDOW;
    if (policy_ecs_scoped(m)) return DNS_NC_ECS_SCOPE;
    return DNS_NC_OK;
}

void dns_classify(struct dns_verdict *v, const struct dns_msg *resp, const struct dns_question *q,
                  uint32_t now)
{
    v->kind = policy_kind(resp);
    v->why = policy_why(resp, q, v->kind, now);
    v->msg_ttl = policy_msg_ttl(resp, v->kind, now);
}

uint32_t dns_ttl_clamp(uint32_t ttl, uint32_t min, uint32_t max)
{
    uint32_t capped = ttl < max ? ttl : max;
    return capped > min ? capped : min;
}

const char *dns_nocache_str(enum dns_nocache why)
{
    switch (why) {
    case DNS_NC_OK: return "cacheable";
    case DNS_NC_QDCOUNT: return "QDCOUNT is not 1";
    case DNS_NC_TC: return "truncated (TC=1)";
    case DNS_NC_OPCODE: return "opcode is not QUERY";
    case DNS_NC_XFR: return "zone transfer (AXFR/IXFR)";
    case DNS_NC_RCODE: return "rcode is neither NOERROR nor NXDOMAIN";
    case DNS_NC_NXDOMAIN_ANSWER: return "NXDOMAIN with a non-empty answer";
    case DNS_NC_NXDOMAIN_NO_SOA: return "NXDOMAIN without SOA in authority";
    case DNS_NC_CNAME_CHAIN: return "CNAME chain does not end in the qtype";
    case DNS_NC_RRSIG_WINDOW: return "RRSIG outside its validity window";
    case DNS_NC_ECS_SCOPE: return "ECS option with scope prefix > 0";
    case DNS_NC_MISMATCH: return "response question or CD differs from the query";
    case DNS_NC_ZERO_TTL: return "cache duration is 0";
    }
    return "unknown reason";
}
