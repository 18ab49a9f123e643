/* src/server/forward_udp.c — the UDP source ports of the forward client.
 *
 * Every UDP query leaves with a fresh random ID from a random source port, but not from a
 * socket of its own: a socket per query (socket, connect, epoll add, close) cost more CPU
 * than the rest of the forward path together, in our process and in the upstream's (which
 * then wakes for every datagram; bench/RESULTS.md). Instead each upstream has FWD_PORTS
 * live sockets, each connect()ed (the kernel drops datagrams from other sources) and bound
 * by the kernel to a random ephemeral port; a query goes out on one of them at random. A
 * port is retired after FWD_PORT_QUERIES queries or FWD_PORT_AGE seconds, whichever comes
 * first, and a new socket with a new random port takes its place; a retired socket stays
 * open only until its last query ends (reply, timeout or failure).
 *
 * What an off-path spoofer must guess is unchanged: the query's port (random in the
 * ephemeral range) and its ID (random, and unique on its port for the port's whole life, so
 * a late reply to an earlier query can never be taken for a later one). What changes is how
 * long a port is open: at most about FWD_PORT_AGE plus a try timeout, which bounds port
 * inference through side channels the way a socket per query does in practice.
 *
 * Replies are matched by ID in a small open-addressed table per port (FWD_PORT_SLOTS, at
 * least twice FWD_PORT_QUERIES, so probing always ends) and checked as before (RFC 5452:
 * ID, QR, opcode, our question). An unknown ID is a mismatch; the ID of a query that has
 * already ended is a late reply, dropped quietly. A socket error (ICMP port unreachable,
 * reported on the next recv or send) fails every query in flight on that port at once and
 * retires it.
 */
#include <errno.h>
#include <ev.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/forward_internal.h"

#define FWD_FREE_PORTS_MAX 16

_Static_assert(FWD_PORT_SLOTS >= 2 * FWD_PORT_QUERIES, "the ID table must stay half empty");
_Static_assert((FWD_PORT_SLOTS & (FWD_PORT_SLOTS - 1)) == 0, "FWD_PORT_SLOTS: a power of two");

static void port_io(struct ev_loop *loop, ev_io *w, int revents);

static void port_free(struct fwd *f, struct fwd_port *p)
{
    ev_io_stop(f->loop, &p->io);
    if (p->fd >= 0) close(p->fd);
    p->fd = -1;
    if (f->nfree_ports < FWD_FREE_PORTS_MAX) {
        p->next = f->free_ports;
        f->free_ports = p;
        f->nfree_ports++;
    } else {
        free(p);
    }
}

/* Unlinks p from its host's retired list. */
static void retired_unlink(struct fwd_host *h, struct fwd_port *p)
{
    for (struct fwd_port **q = &h->retired; *q; q = &(*q)->next) {
        if (*q == p) {
            *q = p->next;
            return;
        }
    }
}

/* Takes live port k of h out of service: closed now when nothing is in flight on it, else
 * when its last query ends. */
static void port_retire(struct fwd_host *h, size_t k)
{
    struct fwd_port *p = h->live[k];
    h->live[k] = NULL;
    if (!p) return;
    p->retired = true;
    if (p->inflight == 0 && !p->busy) {
        port_free(h->f, p);
        return;
    }
    p->next = h->retired;
    h->retired = p;
}

static void port_timer_arm(struct fwd *f)
{
    if (!ev_is_active(&f->port_t) && !f->closing) {
        ev_timer_set(&f->port_t, FWD_PORT_AGE, FWD_PORT_AGE);
        ev_timer_start(f->loop, &f->port_t);
    }
}

static struct fwd_port *port_open(struct fwd_host *h)
{
    struct fwd *f = h->f;
    const struct fwd_upstream *u = &f->o.up[h->idx];
    int fd = socket(u->addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return NULL;
    if (connect(fd, (const struct sockaddr *)&u->addr, u->addrlen) != 0) {
        close(fd);
        return NULL;
    }
    struct fwd_port *p = f->free_ports;
    if (p) {
        f->free_ports = p->next;
        f->nfree_ports--;
    } else if (!(p = malloc(sizeof *p))) {
        close(fd);
        return NULL;
    }
    p->h = h;
    p->next = NULL;
    p->fd = fd;
    p->born = ev_now(f->loop);
    p->sent = p->inflight = 0;
    p->retired = p->busy = false;
    memset(p->used, 0, sizeof p->used);
    ev_io_init(&p->io, port_io, fd, EV_READ);
    p->io.data = p;
    ev_io_start(f->loop, &p->io);
    f->st.udp_ports++;
    port_timer_arm(f);
    return p;
}

/* The slot of id in p: its own when present, else the empty slot where it would go. */
static size_t slot_of(const struct fwd_port *p, uint16_t id)
{
    size_t s = id & (FWD_PORT_SLOTS - 1);
    while (p->used[s] && p->id[s] != id) s = (s + 1) & (FWD_PORT_SLOTS - 1);
    return s;
}

/* Ends every query in flight on p (its socket failed) and retires it; the caller frees it
 * with port_maybe_free when done with it. */
static void port_fail(struct fwd_port *p)
{
    struct fwd_host *h = p->h;
    bool was_busy = p->busy;
    p->busy = true; /* retired, not freed; fwd_try_fail_fast detaches without freeing */
    for (size_t k = 0; k < FWD_PORTS; k++)
        if (h->live[k] == p) port_retire(h, k);
    for (size_t s = 0; s < FWD_PORT_SLOTS && p->inflight; s++)
        if (p->used[s] && p->req[s]) fwd_try_fail_fast(p->req[s]);
    p->busy = was_busy;
}

/* Frees p once it is retired, drained and no loop over it is running. */
static void port_maybe_free(struct fwd_port *p)
{
    if (p->retired && p->inflight == 0 && !p->busy) {
        retired_unlink(p->h, p);
        port_free(p->h->f, p);
    }
}

int fwd_udp_send(struct fwd_req *r)
{
    struct fwd *f = r->f;
    struct fwd_host *h = &f->host[r->up];
    size_t k = FWD_PORTS > 1 ? fwd_rand(f) % FWD_PORTS : 0;
    struct fwd_port *p = h->live[k];
    if (p && (p->sent >= FWD_PORT_QUERIES || ev_now(f->loop) - p->born >= FWD_PORT_AGE)) {
        port_retire(h, k);
        p = NULL;
    }
    if (!p) {
        if (!(p = port_open(h))) return -1;
        h->live[k] = p;
    }
    uint16_t id;
    size_t s;
    do {
        id = (uint16_t)fwd_rand(f);
        s = slot_of(p, id);
    } while (p->used[s]);
    p->used[s] = true;
    p->id[s] = id;
    p->req[s] = r;
    p->sent++;
    p->inflight++;
    r->id = id;
    dns_put16(r->wire + 2, id);
    r->port = p;
    r->pslot = (uint16_t)s;
    if (send(p->fd, r->wire + 2, r->qlen, 0) == (ssize_t)r->qlen) return 0;
    /* a pending ICMP error of an earlier query, or no buffer: this port is done */
    fwd_udp_detach(r);
    port_fail(p);
    port_maybe_free(p);
    return -1;
}

void fwd_udp_detach(struct fwd_req *r)
{
    struct fwd_port *p = r->port;
    if (!p) return;
    r->port = NULL;
    p->req[r->pslot] = NULL; /* the slot stays used: its ID is not handed out again */
    p->inflight--;
    port_maybe_free(p);
}

static void port_io(struct ev_loop *loop, ev_io *w, int revents)
{
    struct fwd_port *p = w->data;
    struct fwd *f = p->h->f;
    p->busy = true;
    for (int i = 0; i < FWD_UDP_BURST; i++) {
        ssize_t n = recv(p->fd, f->rbuf, sizeof f->rbuf, 0);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                port_fail(p); /* ECONNREFUSED (ICMP port unreachable) and the like */
            break;
        }
        if (n < 2) {
            f->st.mismatches++;
            continue;
        }
        size_t s = slot_of(p, dns_get16(f->rbuf));
        if (!p->used[s]) {
            f->st.mismatches++;
            continue;
        }
        struct fwd_req *r = p->req[s];
        if (!r) { /* the query ended (timed out, answered elsewhere): a late reply */
            f->st.late++;
            continue;
        }
        unsigned rcode = 0;
        bool tc = false;
        if ((size_t)n > DNS_MSG_MAX || !fwd_reply_ok(r, f->rbuf, (size_t)n, &rcode, &tc)) {
            f->st.mismatches++;
            continue;
        }
        fwd_udp_detach(r);
        fwd_got_reply(r, f->rbuf, (size_t)n, rcode, tc);
        if (p->retired && p->inflight == 0) break;
    }
    p->busy = false;
    port_maybe_free(p);
}

/* Every FWD_PORT_AGE while ports are open: retires the live ports past their age (a quiet
 * upstream's port is not kept open); stops when none is left. */
void fwd_on_port_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct fwd *f = w->data;
    double now = ev_now(loop);
    bool any = false;
    for (size_t i = 0; i < f->o.nup; i++) {
        struct fwd_host *h = &f->host[i];
        for (size_t k = 0; k < FWD_PORTS; k++) {
            if (h->live[k] && now - h->live[k]->born >= FWD_PORT_AGE - 0.001) port_retire(h, k);
            if (h->live[k] || h->retired) any = true;
        }
    }
    if (!any) ev_timer_stop(loop, w);
}

/* fwd_free: every request has ended, so every port is idle. */
void fwd_udp_close(struct fwd *f)
{
    ev_timer_stop(f->loop, &f->port_t);
    for (size_t i = 0; i < f->o.nup; i++) {
        struct fwd_host *h = &f->host[i];
        for (size_t k = 0; k < FWD_PORTS; k++) port_retire(h, k);
        while (h->retired) {
            struct fwd_port *p = h->retired;
            h->retired = p->next;
            port_free(f, p);
        }
    }
    while (f->free_ports) {
        struct fwd_port *p = f->free_ports;
        f->free_ports = p->next;
        free(p);
    }
    f->nfree_ports = 0;
}
