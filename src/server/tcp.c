/* src/server/tcp.c — DNS over TCP for the workers (RFC 7766): 2-byte framing, several
 * queries in flight per connection (replies in completion order), bounded buffers, caps on
 * in-flight queries per connection and connections per worker, and deadlines.
 *
 * Limits (RFC 7766 §6.2; CoreDNS's `timeouts` directive sets the three timeouts):
 * - in flight: at most TCP_INFLIGHT_MAX queries of one connection are being answered;
 *   beyond that the connection is not read (the kernel's buffers hold the rest, TCP flow
 *   control slows the client) until replies drain. Nothing is dropped.
 * - connections: at most TCP_CONNS_MAX per worker; at the cap the worker stops accepting
 *   (new connections wait in the listen backlog) and resumes when one closes. Established
 *   connections keep working.
 * - read (default 3 s, CoreDNS's): a frame must arrive whole within `read` of its first
 *   byte, and a new connection must deliver its first query within `read` of being
 *   accepted. Bytes trickling in do not extend it (slow-loris). Not counted while the
 *   connection is not read because of the in-flight cap.
 * - write (default 5 s): replies the client does not read must drain within `write` of
 *   the moment they stopped fitting in the socket; also TCP_WBUF_MAX bytes at most.
 * - idle (default 10 s, CoreDNS's): a connection with nothing in flight, nothing to write
 *   and no partial frame is closed `idle` after its last query or reply.
 * A listen address shared by several blocks uses the largest timeout any of them gives.
 * One timer per connection, armed for the nearest deadline of its state.
 */
#include <errno.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/worker_internal.h"

#define TCP_READ_TIMEOUT  3.0
#define TCP_WRITE_TIMEOUT 5.0
#define TCP_IDLE_TIMEOUT  10.0

/* The nearest deadline of c's state (0: none, waiting only for our own answers). */
static double tconn_deadline(const struct tconn *c)
{
    double d = 0;
    if (c->wblocked) d = c->wstart + c->wto;
    bool reading = !c->eof && ev_is_active(&c->rio);
    if (reading && (c->rlen > 0 || !c->got_query)) {
        double r = c->rstart + c->rto;
        if (d == 0 || r < d) d = r;
    } else if (c->inflight == 0 && !c->wblocked && c->rlen == 0) {
        double r = c->last + c->ito;
        if (d == 0 || r < d) d = r;
    }
    return d;
}

/* (Re)arms c's timer for its nearest deadline. */
static void tconn_arm(struct tconn *c)
{
    if (c->dead) return;
    double d = tconn_deadline(c);
    if (d == 0) {
        ev_timer_stop(c->w->loop, &c->idle);
        return;
    }
    double left = d - ev_now(c->w->loop);
    c->idle.repeat = left > 0.001 ? left : 0.001;
    ev_timer_again(c->w->loop, &c->idle);
}

void srv_tconn_close(struct tconn *c)
{
    struct worker *w = c->w;
    if (!c->dead) {
        ev_io_stop(w->loop, &c->rio);
        ev_io_stop(w->loop, &c->wio);
        ev_timer_stop(w->loop, &c->idle);
        close(c->fd);
        c->fd = -1;
        c->dead = true;
        c->eof = true;
    }
    if (c->inflight || c->refs) return; /* freed by the last query or holder */
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    w->nconns--;
    free(c->rbuf);
    free(c->wbuf);
    free(c);
    if (!w->accepting && !w->stopping && w->nconns < TCP_CONNS_MAX) {
        w->accepting = true;
        for (size_t i = 0; i < w->nl; i++)
            if (w->tl[i].fd >= 0) ev_io_start(w->loop, &w->tl[i].io);
    }
}

void srv_tconn_flush(struct tconn *c)
{
    while (!c->dead && c->woff < c->wlen) {
        ssize_t n = send(c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
        if (n > 0) {
            c->woff += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ev_io_start(c->w->loop, &c->wio);
            if (!c->wblocked) {
                c->wblocked = true;
                c->wstart = ev_now(c->w->loop);
                tconn_arm(c);
            }
            return;
        }
        if (n < 0 && errno == EINTR) continue;
        srv_tconn_close(c);
        return;
    }
    if (c->dead) return;
    bool drained = c->wblocked || c->wlen > 0;
    c->woff = c->wlen = 0;
    ev_io_stop(c->w->loop, &c->wio);
    if (c->eof && c->inflight == 0) {
        srv_tconn_close(c);
        return;
    }
    if (drained) {
        c->wblocked = false;
        c->last = ev_now(c->w->loop);
        tconn_arm(c);
    }
}

static void tconn_on_write(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop, (void)revents;
    srv_tconn_flush(io->data);
}

/* Queues a framed reply; the caller flushes. False when the connection is gone or full. */
bool srv_tconn_queue(struct tconn *c, const uint8_t *msg, size_t len)
{
    if (c->dead) return false;
    size_t need = c->wlen + 2 + len;
    if (need > TCP_WBUF_MAX) {
        srv_tconn_close(c); /* the client does not read its replies */
        return false;
    }
    if (need > c->wcap) {
        size_t cap = c->wcap ? c->wcap : 4096;
        while (cap < need) cap *= 2;
        if (c->woff) {
            memmove(c->wbuf, c->wbuf + c->woff, c->wlen - c->woff);
            c->wlen -= c->woff;
            c->woff = 0;
            need = c->wlen + 2 + len;
        }
        uint8_t *nb = realloc(c->wbuf, cap);
        if (!nb) return false;
        c->wbuf = nb;
        c->wcap = cap;
    }
    dns_put16(c->wbuf + c->wlen, (uint16_t)len);
    memcpy(c->wbuf + c->wlen + 2, msg, len);
    c->wlen += 2 + len;
    return true;
}

void srv_tconn_release(struct tconn *c)
{
    c->inflight--;
    if (c->dead) {
        if (c->inflight == 0) srv_tconn_close(c);
        return;
    }
    if (!c->eof && c->inflight + 1 == TCP_INFLIGHT_MAX) {
        /* resume: frames already buffered are handled first (tconn_on_read); a partial
         * frame's read clock starts again (it was not read meanwhile) */
        ev_io_start(c->w->loop, &c->rio);
        ev_feed_event(c->w->loop, &c->rio, EV_READ);
        c->rstart = ev_now(c->w->loop);
    }
    if (c->eof && c->inflight == 0 && c->woff >= c->wlen) {
        srv_tconn_close(c);
        return;
    }
    if (c->inflight == 0) {
        c->last = ev_now(c->w->loop);
        tconn_arm(c);
    }
}

static void tconn_on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct tconn *c = t->data;
    double d = tconn_deadline(c);
    if (d != 0 && d <= ev_now(loop) + 0.0005) {
        srv_tconn_close(c); /* read, write or idle timeout */
        return;
    }
    tconn_arm(c);
}

/* Handles every whole frame in the read buffer, up to the in-flight cap. */
static void tconn_frames(struct tconn *c)
{
    struct worker *w = c->w;
    size_t off = 0;
    while (c->rlen - off >= 2 && !c->dead && !c->w->stopping) {
        if (c->inflight >= TCP_INFLIGHT_MAX) {
            ev_io_stop(w->loop, &c->rio); /* resumed by srv_tconn_release */
            break;
        }
        size_t flen = dns_get16(c->rbuf + off);
        if (c->rlen - off - 2 < flen) break;
        const uint8_t *msg = c->rbuf + off + 2;
        off += 2 + flen;
        c->got_query = true;
        size_t olen = 0;
        enum qres res = srv_handle_query(w, c->la, NULL, c, &c->peer, c->peerlen, msg, flen,
                                         w->out + 2, DNS_MSG_MAX, &olen);
        if (res == Q_REPLY) srv_tconn_queue(c, w->out + 2, olen);
    }
    if (off && !c->dead) {
        memmove(c->rbuf, c->rbuf + off, c->rlen - off);
        c->rlen -= off;
        /* what is left is the start of the next frame, which began now */
        c->rstart = ev_now(w->loop);
        c->last = c->rstart;
    }
}

static void tconn_read(struct tconn *c)
{
    struct worker *w = c->w;
    tconn_frames(c);
    for (int reads = 0; reads < 4 && !c->eof && !c->dead && c->inflight < TCP_INFLIGHT_MAX;
         reads++) {
        if (c->rcap - c->rlen < 4096 && c->rcap < 2 + DNS_MSG_MAX) {
            size_t cap = c->rcap * 2;
            if (cap > 2 + DNS_MSG_MAX) cap = 2 + DNS_MSG_MAX;
            uint8_t *nb = realloc(c->rbuf, cap);
            if (!nb) {
                srv_tconn_close(c);
                return;
            }
            c->rbuf = nb;
            c->rcap = cap;
        }
        if (c->rlen == c->rcap) break;
        ssize_t n = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
        if (n == 0) {
            c->eof = true;
            ev_io_stop(w->loop, &c->rio);
            break;
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            srv_tconn_close(c);
            return;
        }
        if (c->rlen == 0 && c->got_query) c->rstart = ev_now(w->loop); /* a new frame */
        c->rlen += (size_t)n;
        tconn_frames(c);
    }
    if (!c->dead) srv_tconn_flush(c);
    if (!c->dead) tconn_arm(c);
}

static void tconn_on_read(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop, (void)revents;
    struct tconn *c = io->data;
    c->refs++;
    tconn_read(c);
    c->refs--;
    if (c->dead) {
        if (!c->inflight && !c->refs) srv_tconn_close(c);
    } else if (c->eof && !c->inflight && c->woff >= c->wlen) {
        srv_tconn_close(c);
    }
}

/* The timeouts of c's listen address: the largest any of its blocks sets, else the
 * defaults. */
static void tconn_timeouts(struct tconn *c)
{
    double r = 0, wr = 0, id = 0;
    for (size_t i = 0; i < c->la->nroutes; i++) {
        uint16_t bi = c->la->routes[i].block;
        if (bi >= c->w->nblocks) continue;
        const struct srv_block *b = c->w->blocks[bi].b;
        if (b->tcp_read > r) r = b->tcp_read;
        if (b->tcp_write > wr) wr = b->tcp_write;
        if (b->tcp_idle > id) id = b->tcp_idle;
    }
    c->rto = r > 0 ? r : TCP_READ_TIMEOUT;
    c->wto = wr > 0 ? wr : TCP_WRITE_TIMEOUT;
    c->ito = id > 0 ? id : TCP_IDLE_TIMEOUT;
}

void srv_tcp_on_accept(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop, (void)revents;
    struct tlistener *tl = io->data;
    struct worker *w = tl->w;
    for (int i = 0; i < 64; i++) {
        if (w->nconns >= TCP_CONNS_MAX) {
            ev_io_stop(w->loop, io);
            w->accepting = false;
            return;
        }
        struct sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        int fd = accept4(tl->fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        struct tconn *c = calloc(1, sizeof *c);
        if (!c || !(c->rbuf = malloc(4096))) {
            free(c);
            close(fd);
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->w = w;
        c->la = tl->la;
        c->fd = fd;
        c->rcap = 4096;
        c->peer = peer;
        c->peerlen = plen;
        ev_io_init(&c->rio, tconn_on_read, fd, EV_READ);
        ev_io_init(&c->wio, tconn_on_write, fd, EV_WRITE);
        ev_init(&c->idle, tconn_on_timer);
        c->rio.data = c->wio.data = c->idle.data = c;
        tconn_timeouts(c);
        c->rstart = c->last = ev_now(w->loop);
        ev_io_start(w->loop, &c->rio);
        tconn_arm(c);
        c->next = w->conns;
        if (w->conns) w->conns->prev = c;
        w->conns = c;
        w->nconns++;
    }
}
