/* src/dns/question.c — the question of a query: parsed once into a small fixed struct that
 * everything downstream uses (qname as sent and lowercased, qtype, qclass, DO, CD, EDNS). */
#include "dns/dns.h"

/* Label length bytes are at most 63, below 'A', so the whole wire name folds safely. */
static void dns_wire_lower(uint8_t *dst, const uint8_t *src, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        uint8_t b = src[i];
        dst[i] = (b >= 'A' && b <= 'Z') ? (uint8_t)(b + ('a' - 'A')) : b;
    }
}

enum dns_err dns_question_from_msg(struct dns_question *q, const struct dns_msg *m)
{
    if (m->count[0] < 1) return DNS_ERR_NO_QUESTION;
    size_t name_len = 0, next = 0;
    enum dns_err err = dns_name_unpack(m->buf, m->len, m->qname_off, q->name, &name_len, &next);
    if (err != DNS_OK) return err;
    q->name_len = (uint16_t)name_len;
    dns_wire_lower(q->name_lc, q->name, name_len);
    q->qtype = m->qtype;
    q->qclass = m->qclass;
    q->id = m->id;
    q->flags = m->flags;
    q->cd = (m->flags & DNS_F_CD) != 0;
    q->has_edns = m->has_edns;
    q->do_bit = m->has_edns && m->edns_do;
    q->edns_version = m->has_edns ? m->edns_version : 0;
    q->udp_size = m->has_edns ? m->edns_udp : 0;
    q->qend = m->qend;
    return DNS_OK;
}

enum dns_err dns_question_parse(struct dns_question *q, const uint8_t *buf, size_t len)
{
    struct dns_msg m;
    enum dns_err err = dns_msg_parse(&m, buf, len, NULL, 0);
    if (err != DNS_OK) return err;
    if (m.count[0] != 1) return DNS_ERR_NO_QUESTION;
    return dns_question_from_msg(q, &m);
}
