/* src/server/forward_tcp.c — the TCP side of the forward client: one try's connect,
 * write and framed read (RFC 7766 2-byte length), and the idle connections kept per
 * upstream after a good reply, closed after `expire` unused.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "server/forward_internal.h"

/* ---- one TCP try: connect, write the framed query, read framed replies ---- */

void fwd_tcp_io(struct fwd_req *r, int revents)
{
    struct fwd *f = r->f;
    if (r->tphase == FWD_TP_CONNECT) {
        int soerr = 0;
        socklen_t sl = sizeof soerr;
        if (getsockopt(r->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
            fwd_try_fail_fast(r);
            return;
        }
        r->tphase = FWD_TP_WRITE;
    }
    if (r->tphase == FWD_TP_WRITE) {
        size_t wlen = 2u + r->qlen;
        ssize_t n = send(r->fd, r->wire + r->toff, wlen - r->toff, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
            fwd_try_fail_fast(r);
            return;
        }
        r->toff += (size_t)n;
        if (r->toff < wlen) return;
        r->toff = 0;
        r->tphase = FWD_TP_READ;
        ev_io_stop(f->loop, &r->io);
        ev_io_set(&r->io, r->fd, EV_READ);
        ev_io_start(f->loop, &r->io);
        return;
    }
    if (!(revents & EV_READ)) return;
    for (;;) {
        uint8_t *dst = r->tbuf ? r->tbuf + r->toff : r->thdr + r->toff;
        size_t want = r->tbuf ? r->tlen - r->toff : 2 - r->toff;
        ssize_t n = recv(r->fd, dst, want, 0);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
            fwd_try_fail_fast(r);
            return;
        }
        if (n == 0) { /* closed before a good reply */
            fwd_try_fail_fast(r);
            return;
        }
        r->toff += (size_t)n;
        if (!r->tbuf) {
            if (r->toff < 2) continue;
            r->toff = 0;
            r->tlen = dns_get16(r->thdr);
            if (r->tlen == 0) { /* an empty frame is no reply; the stream stays framed */
                f->st.mismatches++;
                continue;
            }
            if (!(r->tbuf = malloc(r->tlen))) {
                fwd_try_fail_fast(r);
                return;
            }
            continue;
        }
        if (r->toff < r->tlen) continue;
        unsigned rcode = 0;
        bool tc = false;
        if (fwd_reply_ok(r, r->tbuf, r->tlen, &rcode, &tc)) {
            fwd_got_reply(r, r->tbuf, r->tlen, rcode, tc);
            return;
        }
        f->st.mismatches++; /* dropped; keep reading the connection until the try ends */
        free(r->tbuf);
        r->tbuf = NULL;
        r->tlen = r->toff = 0;
    }
}

/* ---- pooled TCP connections (expire) ---- */

static void expire_arm(struct fwd *f, double after)
{
    ev_timer_stop(f->loop, &f->expire_t);
    ev_timer_set(&f->expire_t, after > 0.001 ? after : 0.001, 0.);
    ev_timer_start(f->loop, &f->expire_t);
}

/* Closes the idle connections unused for o.expire; re-arms for the oldest left. */
void fwd_on_expire(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct fwd *f = w->data;
    double now = ev_now(loop), next = -1;
    for (size_t i = 0; i < f->o.nup; i++) {
        struct fwd_host *h = &f->host[i];
        size_t keep = 0;
        for (size_t k = 0; k < h->nidle; k++) {
            if (now - h->idle_used[k] >= f->o.expire - 0.001) {
                close(h->idle[k]);
                f->st.tcp_expired++;
                continue;
            }
            double at = h->idle_used[k] + f->o.expire;
            if (next < 0 || at < next) next = at;
            h->idle[keep] = h->idle[k];
            h->idle_used[keep++] = h->idle_used[k];
        }
        h->nidle = keep;
    }
    if (next >= 0) expire_arm(f, next - now);
}

/* The newest idle connection to h that is still usable (unexpired, not closed by the
 * upstream, nothing unread), or -1. */
int fwd_pool_take(struct fwd_host *h)
{
    struct fwd *f = h->f;
    double now = ev_now(f->loop);
    while (h->nidle > 0) {
        h->nidle--;
        int fd = h->idle[h->nidle];
        if (now - h->idle_used[h->nidle] >= f->o.expire) {
            close(fd);
            f->st.tcp_expired++;
            continue;
        }
        uint8_t b;
        ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return fd;
        close(fd); /* EOF, an error, or bytes we did not ask for */
    }
    return -1;
}

void fwd_pool_put(struct fwd_host *h, int fd)
{
    struct fwd *f = h->f;
    if (!(f->o.expire > 0) || f->closing) {
        close(fd);
        return;
    }
    if (h->nidle == FWD_POOL_MAX) { /* the oldest goes */
        close(h->idle[0]);
        memmove(h->idle, h->idle + 1, (FWD_POOL_MAX - 1) * sizeof h->idle[0]);
        memmove(h->idle_used, h->idle_used + 1, (FWD_POOL_MAX - 1) * sizeof h->idle_used[0]);
        h->nidle--;
    }
    h->idle[h->nidle] = fd;
    h->idle_used[h->nidle++] = ev_now(f->loop);
    if (!ev_is_active(&f->expire_t)) expire_arm(f, f->o.expire);
}

void fwd_pool_close(struct fwd_host *h)
{
    for (size_t k = 0; k < h->nidle; k++) close(h->idle[k]);
    h->nidle = 0;
}
