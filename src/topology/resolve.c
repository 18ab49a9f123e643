/* src/topology/resolve.c — hostname resolution on the loop, without getaddrinfo (SPEC §3).
 *
 * redis-cache-dns may itself be the system's resolver (node-local-dns), so Redis hostnames
 * are never resolved through the libc resolver nor through our own listener: this file is a
 * small stub resolver. Order of business for one name:
 *
 *   1. an IP literal (v4, v6, v6%zone) completes at once;
 *   2. the hosts file (read once at creation, case-insensitive, aliases) — a name found
 *      there never goes to DNS;
 *   3. DNS: the candidate names of the resolv.conf search list and ndots (as glibc's
 *      res_search orders them), A and AAAA asked in parallel, each over UDP from a fresh
 *      socket (fresh source port) with a random ID, answers checked against the source
 *      address, ID and question (RFC 5452) and ignored when they do not match; TC=1 retried
 *      over TCP; CNAME chains inside the answer followed. A query moves to the next
 *      nameserver on timeout, SERVFAIL, REFUSED or any other error rcode, for `attempts`
 *      rounds. NXDOMAIN and NODATA move to the next candidate name; a timeout of every
 *      nameserver ends the search (as glibc does); the deadline ends everything.
 *
 * Not implemented (glibc has them): the LOCALDOMAIN and RES_OPTIONS environment variables,
 * the local hostname's domain as default search list, `options rotate`, `single-request`.
 *
 * The files (resolv.conf, hosts) are read by resolv_conf.c when the resolver is created;
 * this file holds the lookups and the DNS transport. Nothing here blocks: sockets are
 * nonblocking, and a socket error is reported through a zero timer so that completion is
 * never reentrant inside topo_resolve.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dns/dns.h"
#include "topology/resolve_internal.h"
#include "topology/topology.h"

#define RS_CNAME_HOPS 16
#define RS_QUERY_MAX  (2 + DNS_HEADER_LEN + DNS_NAME_MAX + 4 + 11) /* len, hdr, q, OPT */
#define RS_TCP_BUF    (2 + DNS_MSG_MAX)

/* ---- one lookup ---------------------------------------------------------------------- */

enum rs_outcome {
    RS_PENDING = 0,
    RS_ADDRS,    /* NOERROR with addresses of the type */
    RS_NODATA,   /* NOERROR without */
    RS_NXDOMAIN, /* the name does not exist */
    RS_SERVFAIL, /* every try ended in an error rcode or a broken answer */
    RS_TIMEOUT,  /* ... and at least one nameserver never answered */
};

struct rs_query {
    struct topo_resolve_req *req;
    uint16_t qtype;
    uint16_t id;
    int fd;
    bool tcp, connected;
    ev_io io;
    ev_timer timer;
    unsigned try_;    /* index over attempts x nameservers */
    bool saw_timeout; /* some try of this candidate timed out */
    bool fail_now;    /* the timer fires at once: the try failed locally */
    bool edns;        /* send an OPT (dropped after FORMERR) */
    enum rs_outcome outcome;
    uint8_t q[RS_QUERY_MAX]; /* 2-byte TCP length, then the query */
    size_t qlen;             /* without the length prefix */
    uint8_t *tbuf;           /* TCP: RS_TCP_BUF bytes, allocated on the first TC */
    size_t toff, tneed, woff;
    size_t naddrs;
    uint8_t addrs[TOPO_ADDRS_MAX][16];
};

struct topo_resolve_req {
    struct topo_resolver *r;
    struct topo_resolve_req *prev, *next;
    topo_resolve_fn *fn;
    void *priv;
    uint16_t port;
    char host[TOPO_HOST_MAX];
    ev_timer deadline;
    unsigned cand; /* index of the candidate name being asked */
    uint8_t name[DNS_NAME_MAX];
    size_t name_len;
    bool got_nodata, got_servfail;
    char last_err[96]; /* the last error answer, for the message: "REFUSED from 10.0.0.1:53" */
    bool *done_flag;
    struct rs_query q[2]; /* A, AAAA */
};

static void query_start_try(struct rs_query *q);
static void candidate_start(struct topo_resolve_req *req);

/* ---- small helpers ------------------------------------------------------------------- */

static bool sockaddr_same(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family) return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
    }
    return false;
}

static void sockaddr_text(const struct sockaddr_storage *ss, char *out, size_t cap)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in4 = (const void *)ss;
        inet_ntop(AF_INET, &in4->sin_addr, ip, sizeof ip);
        snprintf(out, cap, "%s:%u", ip, ntohs(in4->sin_port));
    } else {
        const struct sockaddr_in6 *in6 = (const void *)ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        snprintf(out, cap, "[%s]:%u", ip, ntohs(in6->sin6_port));
    }
}

/* ---- creation ------------------------------------------------------------------------ */

struct topo_resolver *topo_resolver_new(struct ev_loop *loop, const struct topo_resolver_opts *o,
                                        struct resp_err *err)
{
    struct topo_resolver *r = calloc(1, sizeof *r);
    if (!r) {
        resp_err_set(err, RESP_EK_OTHER, "resolver: out of memory");
        return NULL;
    }
    r->loop = loop;
    if (topo_rs_conf_load(r, o, err) != 0) {
        topo_rs_conf_free(r);
        free(r);
        return NULL;
    }
    return r;
}

/* ---- the end of a lookup ------------------------------------------------------------- */

static void query_close(struct rs_query *q)
{
    struct ev_loop *loop = q->req->r->loop;
    ev_io_stop(loop, &q->io);
    ev_timer_stop(loop, &q->timer);
    if (q->fd >= 0) close(q->fd);
    q->fd = -1;
}

static void req_release(struct topo_resolve_req *req)
{
    struct topo_resolver *r = req->r;
    for (int i = 0; i < 2; i++) {
        query_close(&req->q[i]);
        free(req->q[i].tbuf);
    }
    ev_timer_stop(r->loop, &req->deadline);
    if (req->prev)
        req->prev->next = req->next;
    else
        r->reqs = req->next;
    if (req->next) req->next->prev = req->prev;
    free(req);
}

/* Completes the lookup: frees it, then calls back (which may free the resolver). */
static void req_finish(struct topo_resolve_req *req, const struct topo_addrs *addrs,
                       const struct resp_err *err)
{
    topo_resolve_fn *fn = req->fn;
    void *priv = req->priv;
    if (req->done_flag) *req->done_flag = true;
    req_release(req);
    fn(priv, addrs, err);
}

static void req_fail(struct topo_resolve_req *req, const char *what)
{
    struct resp_err e;
    resp_err_set(&e, RESP_EK_CONNECTION, "resolve %.80s%s: %s", req->host,
                 strlen(req->host) > 80 ? "..." : "", what);
    req_finish(req, NULL, &e);
}

static bool req_succeed(struct topo_resolve_req *req)
{
    struct topo_addrs out;
    out.n = 0;
    for (int i = 0; i < 2; i++) {
        struct rs_query *q = &req->q[i];
        int fam = q->qtype == DNS_T_A ? AF_INET : AF_INET6;
        for (size_t k = 0; k < q->naddrs && out.n < TOPO_ADDRS_MAX; k++) {
            topo_rs_sockaddr_from(&out.addr[out.n], &out.len[out.n], fam, q->addrs[k], 0,
                                  req->port);
            out.n++;
        }
    }
    if (out.n == 0) return false;
    req_finish(req, &out, NULL);
    return true;
}

static void deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct topo_resolve_req *req = w->data;
    if (req_succeed(req)) return; /* one family answered in time: use it */
    req_fail(req, "timed out");
}

/* Both queries of the current candidate are done: succeed, move on, or fail. */
static void candidate_done(struct topo_resolve_req *req)
{
    enum rs_outcome a = req->q[0].outcome, b = req->q[1].outcome;
    if (a == RS_ADDRS || b == RS_ADDRS) {
        req_succeed(req);
        return;
    }
    if (a == RS_TIMEOUT || b == RS_TIMEOUT) {
        req_fail(req, "timed out (no answer from any nameserver)");
        return;
    }
    if (a == RS_NODATA || b == RS_NODATA) req->got_nodata = true;
    if (a == RS_SERVFAIL || b == RS_SERVFAIL) req->got_servfail = true;
    req->cand++;
    candidate_start(req);
}

static void query_done(struct rs_query *q, enum rs_outcome outcome)
{
    struct topo_resolve_req *req = q->req;
    query_close(q);
    q->outcome = outcome;
    struct rs_query *other = &req->q[q == &req->q[0] ? 1 : 0];
    if (other->outcome != RS_PENDING) candidate_done(req);
}

/* The current try failed (timeout, error rcode, broken answer, socket error): next one. */
static void query_next_try(struct rs_query *q, bool timed_out)
{
    if (timed_out) q->saw_timeout = true;
    query_close(q);
    q->tcp = false;
    q->try_++;
    struct topo_resolver *r = q->req->r;
    if (q->try_ >= r->attempts * r->nns) {
        query_done(q, q->saw_timeout ? RS_TIMEOUT : RS_SERVFAIL);
        return;
    }
    query_start_try(q);
}

/* ---- answers ------------------------------------------------------------------------- */

/* Collects the addresses of q's type for q's name in the answer, following CNAMEs. */
static void collect_answer(struct rs_query *q, const struct dns_msg *m)
{
    uint8_t cur[DNS_NAME_MAX], owner[DNS_NAME_MAX], target[DNS_NAME_MAX];
    size_t cur_len = q->req->name_len, owner_len, target_len = 0, next;
    memcpy(cur, q->req->name, cur_len);
    size_t want = q->qtype == DNS_T_A ? 4 : 16;
    q->naddrs = 0;
    for (int hop = 0; hop <= RS_CNAME_HOPS; hop++) {
        bool cname = false;
        for (uint16_t i = 0; i < m->nrr; i++) {
            const struct dns_rr *rr = &m->rr[i];
            if (rr->section != DNS_SEC_ANSWER || rr->rclass != DNS_C_IN) continue;
            if (dns_name_unpack(m->buf, m->len, rr->owner, owner, &owner_len, &next) != DNS_OK)
                continue;
            if (!dns_name_equal_nocase(owner, owner_len, cur, cur_len)) continue;
            if (rr->type == q->qtype && rr->rdlen == want) {
                if (q->naddrs < TOPO_ADDRS_MAX)
                    memcpy(q->addrs[q->naddrs++], m->buf + rr->rdata, want);
            } else if (rr->type == DNS_T_CNAME && !cname) {
                if (dns_name_unpack(m->buf, m->len, rr->rdata, target, &target_len, &next) ==
                    DNS_OK)
                    cname = true;
            }
        }
        if (q->naddrs > 0 || !cname) return;
        memcpy(cur, target, target_len);
        cur_len = target_len;
    }
}

/* A message arrived on q's current try. Returns false when it was ignored (a UDP answer
 * that does not match); true when it was acted on, after which q may be gone. */
static bool query_response(struct rs_query *q, const uint8_t *buf, size_t len)
{
    bool tcp = q->tcp;
    /* RFC 5452: an answer to something else is ignored over UDP (it may be forged or late);
     * over TCP the stream is ours, so a mismatch means a broken server. */
    if (len < DNS_HEADER_LEN || dns_get16(buf) != q->id) goto mismatch;
    struct dns_rr rrs[DNS_RR_MAX];
    struct dns_msg m;
    if (dns_msg_parse(&m, buf, len, rrs, DNS_RR_MAX) != DNS_OK) goto mismatch;
    if (!(m.flags & DNS_F_QR) || DNS_OPCODE(m.flags) != DNS_OPCODE_QUERY) goto mismatch;
    if (m.count[DNS_SEC_QUESTION] != 1 || m.qtype != q->qtype || m.qclass != DNS_C_IN)
        goto mismatch;
    uint8_t qn[DNS_NAME_MAX];
    size_t qn_len, next;
    if (dns_name_unpack(buf, len, m.qname_off, qn, &qn_len, &next) != DNS_OK ||
        !dns_name_equal_nocase(qn, qn_len, q->req->name, q->req->name_len))
        goto mismatch;

    if (m.flags & DNS_F_TC) {
        if (tcp) {
            query_next_try(q, false);
            return true;
        }
        query_close(q);
        q->tcp = true;
        query_start_try(q); /* same nameserver, over TCP */
        return true;
    }
    unsigned rcode = (m.flags & DNS_F_RCODE_MASK) | ((unsigned)m.edns_ext_rcode << 4);
    if (rcode == DNS_RCODE_NOERROR) {
        collect_answer(q, &m);
        query_done(q, q->naddrs ? RS_ADDRS : RS_NODATA);
    } else if (rcode == DNS_RCODE_NXDOMAIN) {
        query_done(q, RS_NXDOMAIN);
    } else if ((rcode == DNS_RCODE_FORMERR || rcode == DNS_RCODE_BADVERS) && q->edns) {
        q->edns = false; /* an old server: ask it again without OPT */
        query_close(q);
        query_start_try(q);
    } else {
        static const char *const names[] = {"NOERROR",  "FORMERR", "SERVFAIL",
                                            "NXDOMAIN", "NOTIMP",  "REFUSED"};
        struct topo_resolver *r = q->req->r;
        char ns[INET6_ADDRSTRLEN + 8];
        sockaddr_text(&r->ns[q->try_ % r->nns], ns, sizeof ns);
        if (rcode < sizeof names / sizeof names[0])
            snprintf(q->req->last_err, sizeof q->req->last_err, "%s from %s", names[rcode], ns);
        else
            snprintf(q->req->last_err, sizeof q->req->last_err, "rcode %u from %s", rcode, ns);
        query_next_try(q, false); /* SERVFAIL, REFUSED, NOTIMP...: the next nameserver */
    }
    return true;
mismatch:
    if (!tcp) return false;
    query_next_try(q, false);
    return true;
}

/* ---- sending ------------------------------------------------------------------------- */

static uint16_t random_id(void)
{
    uint16_t id;
    if (getrandom(&id, sizeof id, GRND_NONBLOCK) == (ssize_t)sizeof id) return id;
    /* No entropy yet (early boot): mix the clock and a stack address. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uintptr_t x = (uintptr_t)&id ^ (uintptr_t)ts.tv_nsec ^ ((uintptr_t)ts.tv_sec << 16);
    x ^= x >> 17;
    x *= 0x9E3779B1u;
    return (uint16_t)(x >> 7);
}

static void build_query(struct rs_query *q)
{
    struct topo_resolve_req *req = q->req;
    uint8_t *p = q->q + 2;
    q->id = random_id();
    dns_put16(p, q->id);
    dns_put16(p + 2, DNS_F_RD);
    dns_put16(p + 4, 1);
    dns_put16(p + 6, 0);
    dns_put16(p + 8, 0);
    dns_put16(p + 10, q->edns ? 1 : 0);
    size_t off = DNS_HEADER_LEN;
    memcpy(p + off, req->name, req->name_len);
    off += req->name_len;
    dns_put16(p + off, q->qtype);
    dns_put16(p + off + 2, DNS_C_IN);
    off += 4;
    if (q->edns) {
        p[off] = 0; /* root owner */
        dns_put16(p + off + 1, DNS_T_OPT);
        dns_put16(p + off + 3, DNS_UDP_DEFAULT);
        dns_put32(p + off + 5, 0);
        dns_put16(p + off + 9, 0);
        off += 11;
    }
    q->qlen = off;
    dns_put16(q->q, (uint16_t)off);
}

static void query_fail_soon(struct rs_query *q)
{
    /* Reported from the loop, never from inside the call that started the try. */
    if (q->fd >= 0) close(q->fd);
    q->fd = -1;
    q->fail_now = true;
    ev_timer_stop(q->req->r->loop, &q->timer);
    ev_timer_set(&q->timer, 0., 0.);
    ev_timer_start(q->req->r->loop, &q->timer);
}

static void udp_read(struct rs_query *q)
{
    const struct sockaddr_storage *ns = &q->req->r->ns[q->try_ % q->req->r->nns];
    uint8_t buf[4096]; /* we advertise 1232; a bigger datagram goes to TCP like TC=1 */
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(q->fd, buf, sizeof buf, MSG_TRUNC, (struct sockaddr *)&from, &fl);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            query_next_try(q, false); /* ECONNREFUSED (ICMP unreachable) and the like */
            return;
        }
        if (!sockaddr_same(&from, ns)) continue; /* not from the server we asked */
        if ((size_t)n > sizeof buf) {
            if (dns_get16(buf) != q->id) continue;
            query_close(q);
            q->tcp = true;
            query_start_try(q);
            return;
        }
        /* Anything but "ignored" may have completed (and freed) q: stop there. */
        if (query_response(q, buf, (size_t)n)) return;
    }
}

static void tcp_io(struct rs_query *q, int revents)
{
    struct ev_loop *loop = q->req->r->loop;
    if (!q->connected) {
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (getsockopt(q->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
            query_next_try(q, false);
            return;
        }
        q->connected = true;
    }
    if (q->woff < q->qlen + 2) {
        ssize_t n = send(q->fd, q->q + q->woff, q->qlen + 2 - q->woff, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
            query_next_try(q, false);
            return;
        }
        q->woff += (size_t)n;
        if (q->woff < q->qlen + 2) return;
        ev_io_stop(loop, &q->io);
        ev_io_set(&q->io, q->fd, EV_READ);
        ev_io_start(loop, &q->io);
        return;
    }
    if (!(revents & EV_READ)) return;
    for (;;) {
        size_t want = q->tneed ? q->tneed : 2;
        ssize_t n = recv(q->fd, q->tbuf + q->toff, want - q->toff, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            query_next_try(q, false);
            return;
        }
        if (n == 0) {
            query_next_try(q, false); /* closed before a whole answer */
            return;
        }
        q->toff += (size_t)n;
        if (q->toff < want) continue;
        if (!q->tneed) {
            size_t mlen = dns_get16(q->tbuf);
            if (mlen < DNS_HEADER_LEN) {
                query_next_try(q, false);
                return;
            }
            q->tneed = 2 + mlen;
            continue;
        }
        (void)query_response(q, q->tbuf + 2, q->tneed - 2);
        return;
    }
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct rs_query *q = w->data;
    if (q->tcp)
        tcp_io(q, revents);
    else
        udp_read(q);
}

static void try_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct rs_query *q = w->data;
    bool local = q->fail_now;
    q->fail_now = false;
    query_next_try(q, !local);
}

static void query_start_try(struct rs_query *q)
{
    struct topo_resolver *r = q->req->r;
    struct ev_loop *loop = r->loop;
    const struct sockaddr_storage *ns = &r->ns[q->try_ % r->nns];
    socklen_t nslen = r->nslen[q->try_ % r->nns];
    build_query(q);
    q->connected = false;
    q->toff = q->tneed = q->woff = 0;
    if (q->tcp && !q->tbuf) {
        q->tbuf = malloc(RS_TCP_BUF);
        if (!q->tbuf) {
            query_fail_soon(q);
            return;
        }
    }
    int type = (q->tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC;
    q->fd = socket(ns->ss_family, type, 0);
    if (q->fd < 0) {
        query_fail_soon(q);
        return;
    }
    int events = EV_READ;
    if (connect(q->fd, (const struct sockaddr *)ns, nslen) != 0) {
        if (!q->tcp || errno != EINPROGRESS) {
            query_fail_soon(q);
            return;
        }
        events = EV_WRITE;
    } else if (q->tcp) {
        q->connected = true;
        events = EV_WRITE;
    }
    if (!q->tcp) {
        ssize_t n = send(q->fd, q->q + 2, q->qlen, 0);
        if (n != (ssize_t)q->qlen) {
            query_fail_soon(q);
            return;
        }
    }
    ev_io_set(&q->io, q->fd, events);
    ev_io_start(loop, &q->io);
    ev_timer_set(&q->timer, r->timeout, 0.);
    ev_timer_start(loop, &q->timer);
}

/* ---- candidate names (glibc res_search order) ---------------------------------------- */

/* Text name -> wire name (no escapes). False when it does not fit or has an empty label. */
static bool to_wire(const char *a, const char *b, uint8_t *out, size_t *out_len)
{
    size_t o = 0;
    const char *parts[2] = {a, b};
    for (int k = 0; k < 2 && parts[k]; k++) {
        const char *s = parts[k];
        while (*s) {
            const char *dot = strchr(s, '.');
            size_t l = dot ? (size_t)(dot - s) : strlen(s);
            if (l == 0 || l > DNS_LABEL_MAX || o + 1 + l + 1 > DNS_NAME_MAX) return false;
            out[o++] = (uint8_t)l;
            memcpy(out + o, s, l);
            o += l;
            s += l;
            if (*s == '.' && *++s == '\0') return false; /* empty last label */
        }
    }
    if (o == 0) return false;
    out[o++] = 0;
    *out_len = o;
    return true;
}

/* The name of candidate i into req->name; false when there is none. Names with a trailing
 * dot are only themselves; with >= ndots dots they are tried as they are first, then with
 * each search domain; otherwise the search domains come first and the bare name last. */
static bool candidate_name(struct topo_resolve_req *req, unsigned i)
{
    struct topo_resolver *r = req->r;
    char name[TOPO_HOST_MAX];
    snprintf(name, sizeof name, "%s", req->host);
    size_t len = strlen(name);
    bool absolute = len > 0 && name[len - 1] == '.';
    if (absolute) {
        name[len - 1] = '\0';
        return i == 0 && to_wire(name, NULL, req->name, &req->name_len);
    }
    unsigned dots = 0;
    for (size_t k = 0; k < len; k++) dots += name[k] == '.';
    bool as_is_first = dots >= r->ndots;
    unsigned n = (unsigned)r->nsearch + 1;
    if (i >= n) return false;
    unsigned as_is = as_is_first ? 0 : n - 1;
    if (i == as_is) return to_wire(name, NULL, req->name, &req->name_len);
    unsigned s = as_is_first ? i - 1 : i;
    return to_wire(name, r->search[s], req->name, &req->name_len);
}

static void candidate_start(struct topo_resolve_req *req)
{
    /* Skip candidates too long to ask. The first always fits: the name was checked. */
    while (!candidate_name(req, req->cand)) {
        if (req->cand > req->r->nsearch) {
            char why[160];
            if (req->got_nodata)
                snprintf(why, sizeof why, "no address records (NODATA)");
            else if (req->got_servfail)
                snprintf(why, sizeof why, "no nameserver gave an answer (last: %s)",
                         req->last_err[0] ? req->last_err : "a malformed answer");
            else
                snprintf(why, sizeof why, "NXDOMAIN");
            req_fail(req, why);
            return;
        }
        req->cand++;
    }
    for (int i = 0; i < 2; i++) {
        struct rs_query *q = &req->q[i];
        q->outcome = RS_PENDING;
        q->try_ = 0;
        q->tcp = false;
        q->saw_timeout = false;
        q->fail_now = false;
        q->edns = true;
        q->naddrs = 0;
        query_start_try(q);
    }
}

/* ---- the API ------------------------------------------------------------------------- */

static void fail_now(topo_resolve_fn *fn, void *priv, const char *host, const char *what)
{
    struct resp_err e;
    /* the name is cut so that the reason always fits the message */
    resp_err_set(&e, RESP_EK_CONNECTION, "resolve %.80s%s: %s", host,
                 strlen(host) > 80 ? "..." : "", what);
    fn(priv, NULL, &e);
}

struct topo_resolve_req *topo_resolve(struct topo_resolver *r, const char *host, uint16_t port,
                                      double deadline, topo_resolve_fn *fn, void *priv)
{
    struct topo_addrs out;
    size_t hlen = strlen(host);
    if (hlen == 0 || hlen >= TOPO_HOST_MAX) {
        fail_now(fn, priv, hlen ? "(name too long)" : "\"\"", "invalid host name");
        return NULL;
    }
    if (topo_rs_ip_literal(host, hlen, port, &out.addr[0], &out.len[0])) {
        out.n = 1;
        fn(priv, &out, NULL);
        return NULL;
    }
    if (topo_rs_hosts_lookup(r, host, port, &out)) {
        fn(priv, &out, NULL);
        return NULL;
    }
    uint8_t wire[DNS_NAME_MAX];
    size_t wl;
    char tmp[TOPO_HOST_MAX];
    memcpy(tmp, host, hlen + 1);
    if (hlen > 1 && tmp[hlen - 1] == '.') tmp[hlen - 1] = '\0';
    for (const char *c = tmp; *c; c++) {
        unsigned char ch = (unsigned char)*c;
        if (ch <= ' ' || ch >= 0x7f) {
            fail_now(fn, priv, "(unprintable name)", "invalid host name");
            return NULL;
        }
    }
    if (!to_wire(tmp, NULL, wire, &wl)) {
        fail_now(fn, priv, host, "invalid host name");
        return NULL;
    }
    if (r->nns == 0) {
        fail_now(fn, priv, host, r->no_ns);
        return NULL;
    }
    double left = deadline - ev_now(r->loop);
    if (left <= 0) {
        fail_now(fn, priv, host, "timed out (deadline already passed)");
        return NULL;
    }

    struct topo_resolve_req *req = calloc(1, sizeof *req);
    if (!req) {
        fail_now(fn, priv, host, "out of memory");
        return NULL;
    }
    req->r = r;
    req->fn = fn;
    req->priv = priv;
    req->port = port;
    memcpy(req->host, host, hlen + 1);
    req->next = r->reqs;
    if (r->reqs) r->reqs->prev = req;
    r->reqs = req;
    for (int i = 0; i < 2; i++) {
        struct rs_query *q = &req->q[i];
        q->req = req;
        q->fd = -1;
        q->qtype = i == 0 ? DNS_T_A : DNS_T_AAAA;
        ev_io_init(&q->io, io_cb, -1, EV_READ);
        q->io.data = q;
        ev_timer_init(&q->timer, try_timer_cb, 0., 0.);
        q->timer.data = q;
    }
    ev_timer_init(&req->deadline, deadline_cb, left, 0.);
    req->deadline.data = req;
    ev_timer_start(r->loop, &req->deadline);

    bool done = false;
    req->done_flag = &done;
    candidate_start(req); /* the bare name is always a candidate: it cannot fail here */
    if (done) return NULL;
    req->done_flag = NULL;
    return req;
}

void topo_resolve_cancel(struct topo_resolve_req *req)
{
    if (req) req_release(req);
}

void topo_resolver_free(struct topo_resolver *r)
{
    if (!r) return;
    while (r->reqs) req_release(r->reqs);
    topo_rs_conf_free(r);
    free(r);
}
