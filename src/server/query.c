/* src/server/query.c — one query through the server (DESIGN "One query, end to end").
 *
 * Parse the question once (dns_question_parse) and compute the 64-bit key (dns_key_hash:
 * the L1 hash and the coalescing key); QR=1 is dropped, opcode != QUERY gets NOTIMP,
 * malformed FORMERR, EDNS version > 0 BADVERS; route by longest zone among the blocks of
 * the listener (REFUSED when none); L1 hit -> the reply is built straight into the caller's
 * buffer. Otherwise the query takes a small fixed struct from the worker's free list and
 * goes to redis_cache (async GET+TTL; a hit fills L1 with the remaining TTL) and on a miss
 * to forward; the upstream's response has its TTLs set by rcp_cache_store (SPEC §2) and
 * the SET queued, fills L1, and is fitted for the client with dns_reply_build. Also the
 * error replies, the query log, and the worker's counters of every answer.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/worker_internal.h"

/* ---- names ---------------------------------------------------------------------------- */

static bool zone_set_covers(const struct zone_set *zs, const struct dns_question *q)
{
    for (size_t i = 0; i < zs->n; i++)
        if (dns_name_in_zone(q->name_lc, q->name_len, zs->zone[i], zs->len[i])) return true;
    return false;
}

/* The longest zone of the listener's blocks holding q; NULL for none. */
static const struct route *route_find(const struct laddr *la, const struct dns_question *q)
{
    const struct route *best = NULL;
    for (size_t i = 0; i < la->nroutes; i++) {
        const struct route *r = &la->routes[i];
        if ((!best || r->zone_len > best->zone_len) &&
            dns_name_in_zone(q->name_lc, q->name_len, r->zone, r->zone_len))
            best = r;
    }
    return best;
}

/* ---- small replies built from the query ------------------------------------------------ */

static size_t put_opt(uint8_t *p, unsigned rcode, bool do_bit)
{
    p[0] = 0;
    dns_put16(p + 1, DNS_T_OPT);
    dns_put16(p + 3, OUR_UDP);
    p[5] = (uint8_t)(rcode >> 4);
    p[6] = 0;
    dns_put16(p + 7, do_bit ? DNS_EDNS_DO : 0);
    dns_put16(p + 9, 0);
    return 11;
}

/* Header + question (+ OPT when the query had one) with `rcode`. */
static size_t build_error(uint8_t *out, const struct dns_question *q, unsigned rcode)
{
    uint16_t f = (uint16_t)(DNS_F_QR | (q->flags & (DNS_F_OPCODE_MASK | DNS_F_RD | DNS_F_CD)) |
                            (rcode & 0xF));
    dns_put16(out, q->id);
    dns_put16(out + 2, f);
    dns_put16(out + 4, 1);
    dns_put16(out + 6, 0);
    dns_put16(out + 8, 0);
    dns_put16(out + 10, q->has_edns ? 1 : 0);
    size_t n = DNS_HEADER_LEN;
    memcpy(out + n, q->name, q->name_len);
    n += q->name_len;
    dns_put16(out + n, q->qtype);
    dns_put16(out + n + 2, q->qclass);
    n += 4;
    if (q->has_edns) n += put_opt(out + n, rcode, q->do_bit);
    return n;
}

/* Header only, for a query whose question cannot be read. */
size_t srv_build_header_error(uint8_t *out, const uint8_t *in, unsigned rcode)
{
    uint16_t fl = dns_get16(in + 2);
    memcpy(out, in, 2);
    dns_put16(out + 2, (uint16_t)(DNS_F_QR | (fl & (DNS_F_OPCODE_MASK | DNS_F_RD | DNS_F_CD)) |
                                  (rcode & 0xF)));
    memset(out + 4, 0, 8);
    return DNS_HEADER_LEN;
}

/* ---- accounting and logging ------------------------------------------------------------- */

static void fmt_addr(const struct sockaddr_storage *ss, char *buf, size_t cap)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &s->sin_addr, ip, sizeof ip);
        port = ntohs(s->sin_port);
        snprintf(buf, cap, "%s:%u", ip, port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof ip);
        port = ntohs(s->sin6_port);
        snprintf(buf, cap, "[%s]:%u", ip, port);
    } else {
        snprintf(buf, cap, "?");
    }
}

static const char *tier_name(enum tier t)
{
    static const char *const n[] = {"-", "L1", "L2", "upstream"};
    return n[t];
}

/* One line per query on stdout (the `log` directive): client name type rcode duration tier. */
static void log_query(const struct sockaddr_storage *peer, const struct dns_question *q,
                      unsigned rcode, double dur, enum tier tier, bool tcp)
{
    char line[1400], addr[96], name[DNS_NAME_TEXT_MAX + 1], tb[16];
    fmt_addr(peer, addr, sizeof addr);
    size_t nl = dns_name_to_text(q->name, q->name_len, name, DNS_NAME_TEXT_MAX, false);
    name[nl < DNS_NAME_TEXT_MAX ? nl : DNS_NAME_TEXT_MAX] = '\0';
    const char *tn = srv_type_name(q->qtype);
    if (!tn) {
        snprintf(tb, sizeof tb, "TYPE%u", q->qtype);
        tn = tb;
    }
    int n = snprintf(line, sizeof line, "%s %s %s %s %.6fs %s %s\n", addr, name, tn,
                     srv_rcode_name(rcode), dur, tier_name(tier), tcp ? "tcp" : "udp");
    if (n > 0) {
        ssize_t wr = write(STDOUT_FILENO, line, (size_t)n < sizeof line ? (size_t)n : sizeof line);
        (void)wr;
    }
}

static unsigned reply_rcode(const uint8_t *r, size_t len, unsigned hint)
{
    if (hint >= 16) return hint; /* extended rcodes are only ours (BADVERS) */
    return len >= 4 ? (r[3] & 0xFu) : hint;
}

static void account(struct worker *w, size_t slot, unsigned tidx, bool tcp, bool v6, unsigned rcode,
                    enum srv_plugin pl, double dur)
{
    struct srv_zone_stats *zs = &w->live.zones[slot];
    if (rcode >= SRV_RCODES) rcode = SRV_RCODES - 1;
    zs->responses[rcode][pl]++;
    zs->dur_buckets[tidx][srv_dur_bucket(dur)]++;
    zs->dur_count[tidx]++;
    zs->dur_sum[tidx] += dur;
    (void)tcp, (void)v6;
}

static void count_request(struct worker *w, size_t slot, unsigned tidx, bool tcp, bool v6)
{
    w->live.zones[slot].requests[tcp][v6][tidx]++;
}

/* ---- query structs ---------------------------------------------------------------------- */

static struct query *query_get(struct worker *w)
{
    if (!w->free_q) {
        if (w->nq >= QUERIES_MAX) return NULL;
        struct query *chunk = calloc(QUERY_CHUNK, sizeof *chunk);
        if (!chunk) return NULL;
        void **nc = realloc(w->chunks, (w->nchunks + 1) * sizeof *nc);
        if (!nc) {
            free(chunk);
            return NULL;
        }
        w->chunks = nc;
        w->chunks[w->nchunks++] = chunk;
        for (size_t i = 0; i < QUERY_CHUNK; i++) {
            chunk[i].next_free = w->free_q;
            w->free_q = &chunk[i];
        }
        w->nq += QUERY_CHUNK;
    }
    struct query *qs = w->free_q;
    w->free_q = qs->next_free;
    w->inflight++;
    qs->gen = w->gen; /* reload: the query finishes on the generation it started on */
    qs->gen->inflight++;
    return qs;
}

static void query_put(struct query *qs)
{
    struct worker *w = qs->w;
    if (qs->conn) srv_tconn_release(qs->conn);
    qs->conn = NULL;
    qs->next_free = w->free_q;
    w->free_q = qs;
    w->inflight--;
    qs->gen->inflight--;
}

/* A background refresh of an L1 entry is over, whatever its outcome (query_finish's twin for
 * queries without a client): the entry may be refreshed again. */
static void refresh_end(struct query *qs)
{
    struct wblock *wb = &qs->gen->blocks[qs->block];
    if (wb->l1) l1_refresh_done(wb->l1, qs->key);
    query_put(qs);
}

/* Accounting, log and send for an async query, then releases it. */
static void query_finish(struct query *qs, const uint8_t *msg, size_t len, unsigned rcode_hint,
                         enum srv_plugin pl, enum tier tier)
{
    struct worker *w = qs->w;
    if (qs->refresh) {
        refresh_end(qs);
        return;
    }
    unsigned rcode = reply_rcode(msg, len, rcode_hint);
    double dur = ev_now(w->loop) - qs->start;
    if (dur < 0) dur = 0;
    if (qs->gen == w->gen) /* counters are shaped for the current generation */
        account(w, qs->slot, qs->tidx, qs->tcp, qs->v6, rcode, pl, dur);
    if (qs->gen->blocks[qs->block].b->log) log_query(&qs->peer, &qs->q, rcode, dur, tier, qs->tcp);
    srv_send_async(qs, msg, len);
    query_put(qs);
}

/* ---- the miss path: forward -------------------------------------------------------------- */

/* serve_stale verify: the refresh failed, so the stale L1 entry answers if it is still
 * there (TTL 0). False when it is gone: the caller answers as without serve_stale. */
static bool serve_stale(struct query *qs)
{
    struct worker *w = qs->w;
    struct wblock *wb = &qs->gen->blocks[qs->block];
    qs->verify_stale = false; /* one try */
    uint8_t *out = w->out + 2;
    size_t n = 0;
    if (!wb->l1 || !l1_lookup_stale(wb->l1, qs->key, &qs->q, ev_now(w->loop), OUR_UDP, qs->tcp, out,
                                    DNS_MSG_MAX, &n))
        return false;
    if (qs->gen == w->gen) w->live.blocks[qs->block].cache_stale++;
    query_finish(qs, out, n, out[3] & DNS_F_RCODE_MASK, SRV_PL_CACHE, TIER_L1);
    return true;
}

/* Our own SERVFAIL after a failed forward: L1 keeps it for `servfail` seconds (never L2). */
static void cache_servfail(struct query *qs)
{
    struct worker *w = qs->w;
    struct wblock *wb = &qs->gen->blocks[qs->block];
    if (qs->refresh || !wb->l1 || !zone_set_covers(&wb->l1_zones, &qs->q)) return;
    size_t n = build_error(w->out + 2, &qs->q, DNS_RCODE_SERVFAIL);
    l1_insert_servfail(wb->l1, qs->key, &qs->q, w->out + 2, n, ev_now(w->loop));
}

static void fail_servfail(struct query *qs, const char *why)
{
    struct worker *w = qs->w;
    if (qs->refresh) {
        refresh_end(qs);
        return;
    }
    if (qs->verify_stale && serve_stale(qs)) return;
    const struct srv_block *b = qs->gen->blocks[qs->block].b;
    if (b->errors) {
        char name[DNS_NAME_TEXT_MAX + 1], tb[16];
        size_t nl = dns_name_to_text(qs->q.name, qs->q.name_len, name, DNS_NAME_TEXT_MAX, false);
        name[nl < DNS_NAME_TEXT_MAX ? nl : DNS_NAME_TEXT_MAX] = '\0';
        const char *tn = srv_type_name(qs->q.qtype);
        if (!tn) snprintf(tb, sizeof tb, "TYPE%u", qs->q.qtype), tn = tb;
        fprintf(stderr, "[ERROR] plugin/errors: 2 %s %s: %s\n", name, tn, why);
    }
    size_t n = build_error(w->out + 2, &qs->q, DNS_RCODE_SERVFAIL);
    query_finish(qs, w->out + 2, n, DNS_RCODE_SERVFAIL, SRV_PL_FORWARD, TIER_UPSTREAM);
}

/* Copies the TTL of every non-OPT RR of `src` onto the same RR of the built reply (the
 * reply keeps RR order; fitting only drops additional RRs at the end). */
static void restore_ttls(struct worker *w, uint8_t *out, size_t len, const struct dns_msg *src)
{
    struct dns_msg m;
    if (dns_msg_parse(&m, out, len, w->rrs2, DNS_RR_MAX) != DNS_OK) return;
    size_t j = 0;
    for (size_t i = 0; i < m.nrr; i++) {
        if (m.rr[i].type == DNS_T_OPT) continue;
        while (j < src->nrr && src->rr[j].type == DNS_T_OPT) j++;
        if (j >= src->nrr) break;
        memcpy(out + m.rr[i].ttl_off, src->buf + src->rr[j].ttl_off, 4);
        j++;
    }
}

static void on_forward(void *priv, enum fwd_status st, const uint8_t *resp, size_t len)
{
    struct query *qs = priv;
    struct worker *w = qs->w;
    if (w->closing) {
        query_put(qs);
        return;
    }
    if (qs->refresh && st != FWD_OK) {
        /* A failed refresh keeps the entry as it is. It may run inside srv_handle_query
         * (a synchronous failure), whose TCP reply sits in w->out: nothing written there. */
        refresh_end(qs);
        return;
    }
    if (st == FWD_REFUSED) { /* max_concurrent reached */
        if (qs->verify_stale && serve_stale(qs)) return;
        size_t n = build_error(w->out + 2, &qs->q, DNS_RCODE_REFUSED);
        query_finish(qs, w->out + 2, n, DNS_RCODE_REFUSED, SRV_PL_FORWARD, TIER_UPSTREAM);
        return;
    }
    if (st != FWD_OK || len > DNS_MSG_MAX) {
        if (qs->verify_stale && serve_stale(qs)) return;
        cache_servfail(qs);
        fail_servfail(qs, "forward: no upstream answered");
        return;
    }
    /* serve_stale verify: only NOERROR and NXDOMAIN count as a refresh (CoreDNS); any other
     * answer is dropped and the stale entry answers. */
    unsigned urc = len >= 4 ? (resp[3] & DNS_F_RCODE_MASK) : DNS_RCODE_SERVFAIL;
    if (qs->verify_stale && urc != DNS_RCODE_NOERROR && urc != DNS_RCODE_NXDOMAIN &&
        serve_stale(qs))
        return;
    struct wblock *wb = &qs->gen->blocks[qs->block];
    memcpy(w->scratch, resp, len);
    long ttl = -1;
    if (wb->rc && rcp_cache_covers(wb->rc, &qs->q))
        ttl = rcp_cache_store(wb->rc, &qs->q, w->scratch, len);

    struct dns_msg m;
    if (dns_msg_parse(&m, w->scratch, len, w->rrs, DNS_RR_MAX) != DNS_OK || m.count[0] != 1) {
        fail_servfail(qs, "forward: malformed upstream response");
        return;
    }
    double now = ev_now(w->loop);
    if (wb->l1 && zone_set_covers(&wb->l1_zones, &qs->q)) {
        struct dns_verdict v;
        dns_classify(&v, &m, &qs->q, (uint32_t)now);
        if (v.kind != DNS_KIND_NONE)
            l1_insert(wb->l1, qs->key, &qs->q, w->scratch, len,
                      ttl >= 0 ? (uint32_t)ttl : v.msg_ttl, v.kind, now);
        else if ((m.flags & DNS_F_RCODE_MASK) == DNS_RCODE_SERVFAIL)
            l1_insert_servfail(wb->l1, qs->key, &qs->q, w->scratch, len, now);
    }
    if (qs->refresh) {
        refresh_end(qs);
        return;
    }
    size_t olen = 0;
    uint8_t *out = w->out + 2;
    if (dns_reply_build(out, DNS_MSG_MAX, &olen, &m, &qs->q, ttl >= 0 ? (uint32_t)ttl : 0, OUR_UDP,
                        qs->tcp) != DNS_OK) {
        fail_servfail(qs, "forward: response does not fit");
        return;
    }
    if (ttl < 0) restore_ttls(w, out, olen, &m);
    out[2] = (uint8_t)((out[2] & ~0x04) | (w->scratch[2] & 0x04)); /* the upstream's AA */
    query_finish(qs, out, olen, out[3] & DNS_F_RCODE_MASK, SRV_PL_FORWARD, TIER_UPSTREAM);
}

static void start_forward(struct query *qs)
{
    struct wblock *wb = &qs->gen->blocks[qs->block];
    if (!wb->fwd || !fwd_handles(wb->fwd, &qs->q)) {
        fail_servfail(qs, "no next plugin found");
        return;
    }
    if (fwd_query(wb->fwd, &qs->q, qs->key, qs->tcp, on_forward, qs) != 0)
        fail_servfail(qs, "forward: cannot send");
}

/* ---- L2 ---------------------------------------------------------------------------------- */

static void on_lookup(void *priv, enum rcp_lookup_status st, const uint8_t *reply, size_t len)
{
    struct query *qs = priv;
    struct worker *w = qs->w;
    if (w->closing) {
        query_put(qs);
        return;
    }
    if (st != RCP_LOOKUP_HIT) {
        start_forward(qs);
        return;
    }
    struct wblock *wb = &qs->gen->blocks[qs->block];
    bool filled = false;
    if (wb->l1 && zone_set_covers(&wb->l1_zones, &qs->q) && len <= DNS_MSG_MAX) {
        /* Fill L1 with the remaining TTL the hit carries. A refresh takes the hit only when
         * it is fresher than what L1 has by more than the prefetch threshold (else it would
         * store the same expiry again): otherwise it asks upstream. */
        struct dns_msg m;
        if (dns_msg_parse(&m, reply, len, w->rrs, DNS_RR_MAX) == DNS_OK) {
            int first = -1;
            for (size_t i = 0; i < m.nrr && first < 0; i++)
                if (m.rr[i].type != DNS_T_OPT) first = (int)i;
            if (first >= 0) {
                double now = ev_now(w->loop);
                struct dns_verdict v;
                dns_classify(&v, &m, &qs->q, (uint32_t)now);
                uint32_t ttl = dns_ttl_read(dns_get32(reply + m.rr[first].ttl_off));
                if (v.kind != DNS_KIND_NONE && (!qs->refresh || ttl > qs->l2_above))
                    filled = l1_insert(wb->l1, qs->key, &qs->q, reply, len, ttl, v.kind, now);
            }
        }
    }
    if (qs->refresh && !filled) {
        start_forward(qs);
        return;
    }
    query_finish(qs, reply, len, 0, SRV_PL_REDIS, TIER_L2);
}

/* A background refresh of an L1 entry (prefetch due, or a stale entry served in immediate
 * mode): the path below L1 without a client (L2 first, then forward; the answer fills L2
 * and L1 as usual). The client already has its answer from L1. */
static void refresh_start(struct worker *w, uint16_t block, const struct dns_question *q,
                          uint64_t key, uint32_t l2_above)
{
    struct wblock *wb = &w->blocks[block];
    struct query *qs = query_get(w);
    if (!qs) {
        l1_refresh_done(wb->l1, key);
        return;
    }
    qs->w = w;
    memcpy(&qs->q, q, sizeof *q);
    qs->key = key;
    qs->block = block;
    qs->slot = 0;
    qs->tidx = 0;
    qs->tcp = false; /* forward asks over UDP (TCP on TC) */
    qs->v6 = false;
    qs->start = ev_now(w->loop);
    qs->la = NULL;
    qs->ul = NULL;
    qs->conn = NULL;
    qs->peerlen = 0;
    qs->pkt.family = 0;
    qs->refresh = true;
    qs->verify_stale = false;
    qs->l2_above = l2_above;
    w->live.blocks[block].cache_prefetch++;
    /* L2's reply as for TCP: whole, never truncated for a UDP size */
    if (wb->rc && rcp_cache_covers(wb->rc, &qs->q) &&
        rcp_cache_lookup(wb->rc, &qs->q, true, on_lookup, qs) == 0)
        return;
    start_forward(qs);
}

/* ---- one query --------------------------------------------------------------------------- */

enum qres srv_handle_query(struct worker *w, const struct laddr *la, struct ulistener *ul,
                           struct tconn *conn, const struct sockaddr_storage *peer,
                           socklen_t peerlen, const uint8_t *in, size_t len, uint8_t *out,
                           size_t cap, size_t *out_len)
{
    bool tcp = conn != NULL, v6 = peer->ss_family == AF_INET6;
    double now = ev_now(w->loop);
    if (len < DNS_HEADER_LEN) return Q_DROP;
    uint16_t flags = dns_get16(in + 2);
    if (flags & DNS_F_QR) return Q_DROP;

    struct dns_question qbuf, *q = &qbuf;
    struct query *qs = NULL;
    enum dns_err perr = dns_question_parse(q, in, len);
    size_t drop_slot = w->blocks[la->drop_block].slot_base + w->blocks[la->drop_block].b->nzones;
    unsigned tidx = perr == DNS_OK ? srv_qtype_index(q->qtype) : 0;
    unsigned rcode;
    const struct srv_block *lb = w->blocks[la->drop_block].b;

    if (perr != DNS_OK || DNS_OPCODE(flags) != DNS_OPCODE_QUERY ||
        (q->has_edns && q->edns_version > 0)) {
        count_request(w, drop_slot, tidx, tcp, v6);
        if (DNS_OPCODE(flags) != DNS_OPCODE_QUERY) {
            rcode = DNS_RCODE_NOTIMP;
            *out_len = perr == DNS_OK ? build_error(out, q, rcode)
                                      : srv_build_header_error(out, in, rcode);
        } else if (perr != DNS_OK) {
            rcode = DNS_RCODE_FORMERR;
            *out_len = srv_build_header_error(out, in, rcode);
        } else {
            rcode = DNS_RCODE_BADVERS;
            *out_len = build_error(out, q, rcode);
        }
        account(w, drop_slot, tidx, tcp, v6, rcode, SRV_PL_NONE, 0);
        if (lb->log && perr == DNS_OK) log_query(peer, q, rcode, 0, TIER_NONE, tcp);
        return Q_REPLY;
    }

    const struct route *r = route_find(la, q);
    if (!r) {
        count_request(w, drop_slot, tidx, tcp, v6);
        *out_len = build_error(out, q, DNS_RCODE_REFUSED);
        account(w, drop_slot, tidx, tcp, v6, DNS_RCODE_REFUSED, SRV_PL_NONE, 0);
        if (lb->log) log_query(peer, q, DNS_RCODE_REFUSED, 0, TIER_NONE, tcp);
        return Q_REPLY;
    }
    struct wblock *wb = &w->blocks[r->block];
    size_t slot = wb->slot_base + r->zidx;
    count_request(w, slot, tidx, tcp, v6);
    if (wb->b->loop) srv_loop_observe(q, peer); /* loop.c: before cache, as CoreDNS */
    uint64_t key = dns_key_hash(q, q->do_bit, 0);

    bool verify_stale = false;
    if (wb->l1 && zone_set_covers(&wb->l1_zones, q)) {
        size_t n = 0;
        struct l1_hit h;
        struct srv_block_stats *bs = &w->live.blocks[r->block];
        enum l1_status ls = l1_lookup(wb->l1, key, q, now, OUR_UDP, tcp, out, cap, &n, &h);
        if (ls == L1_HIT || ls == L1_STALE) {
            unsigned rc = out[3] & 0xFu;
            bs->cache_hits[h.kind == DNS_KIND_NEGATIVE]++;
            if (ls == L1_STALE) bs->cache_stale++;
            /* the reply is already built in `out`: the refresh only starts queries */
            if (h.refresh) refresh_start(w, r->block, q, key, h.l2_above);
            *out_len = n;
            account(w, slot, tidx, tcp, v6, rc, SRV_PL_CACHE, 0);
            if (wb->b->log) log_query(peer, q, rc, 0, TIER_L1, tcp);
            return Q_REPLY;
        }
        if (ls == L1_VERIFY) {
            bs->cache_hits[h.kind == DNS_KIND_NEGATIVE]++;
            verify_stale = true; /* refresh first; the stale entry answers if that fails */
        } else {
            bs->cache_misses++;
        }
    }

    qs = query_get(w);
    if (!qs) {
        *out_len = build_error(out, q, DNS_RCODE_SERVFAIL);
        account(w, slot, tidx, tcp, v6, DNS_RCODE_SERVFAIL, SRV_PL_NONE, 0);
        return Q_REPLY;
    }
    qs->w = w;
    memcpy(&qs->q, q, sizeof *q);
    qs->key = key;
    qs->block = r->block;
    qs->slot = slot;
    qs->tidx = tidx;
    qs->tcp = tcp;
    qs->v6 = v6;
    qs->start = now;
    qs->la = la;
    qs->ul = ul;
    qs->conn = conn;
    if (conn) conn->inflight++;
    memcpy(&qs->peer, peer, peerlen);
    qs->peerlen = peerlen;
    if (!tcp && w->cur_pkt)
        qs->pkt = *w->cur_pkt;
    else
        qs->pkt.family = 0;
    qs->refresh = false;
    qs->verify_stale = verify_stale;
    qs->l2_above = 0;

    if (wb->rc && rcp_cache_covers(wb->rc, q)) {
        if (rcp_cache_lookup(wb->rc, &qs->q, tcp, on_lookup, qs) == 0) return Q_ASYNC;
    }
    start_forward(qs);
    return Q_ASYNC;
}
