/* src/server/udp.c — UDP for the workers: recvmmsg a batch, answer what can be answered
 * at once into the batch's send slots and send them with one sendmmsg; replies of async
 * queries finished in one loop iteration are queued and leave in one sendmmsg from an
 * ev_prepare watcher before the loop polls (DESIGN: batch syscalls).
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "server/worker_internal.h"

/* Sends the queued async UDP replies: one sendmmsg per run of replies on one socket. */
void srv_udp_async_flush(struct worker *w)
{
    ev_prepare_stop(w->loop, &w->atx_flush);
    for (unsigned i = 0; i < w->natx;) {
        unsigned j = i + 1;
        while (j < w->natx && w->atxfd[j] == w->atxfd[i]) j++;
        for (unsigned sent = i; sent < j;) {
            int k = sendmmsg(w->atxfd[i], w->atx + sent, j - sent, MSG_DONTWAIT);
            if (k > 0) {
                sent += (unsigned)k;
                continue;
            }
            if (k < 0 && errno == EINTR) continue;
            sent++; /* skip the datagram the kernel refused (full buffer, bad address) */
        }
        i = j;
    }
    w->natx = 0;
}

void srv_udp_async_on_prepare(struct ev_loop *loop, ev_prepare *p, int revents)
{
    (void)loop, (void)revents;
    srv_udp_async_flush(p->data);
}

void srv_send_async(struct query *qs, const uint8_t *msg, size_t len)
{
    if (qs->tcp) {
        struct tconn *c = qs->conn;
        if (c && !c->dead && srv_tconn_queue(c, msg, len)) srv_tconn_flush(c);
        return;
    }
    struct worker *w = qs->w;
    if (len > UDP_TX_MAX || w->closing) { /* no loop iteration left to flush a queue */
        ssize_t n;
        do
            n = sendto(qs->ul->fd, msg, len, MSG_DONTWAIT, (const struct sockaddr *)&qs->peer,
                       qs->peerlen);
        while (n < 0 && errno == EINTR);
        return;
    }
    /* Replies finished in this loop iteration leave together (DESIGN: batch syscalls). */
    if (w->natx == UDP_BATCH) srv_udp_async_flush(w);
    unsigned i = w->natx++;
    memcpy(w->atxbuf[i], msg, len);
    memcpy(&w->atxaddr[i], &qs->peer, qs->peerlen);
    w->atxiov[i].iov_base = w->atxbuf[i];
    w->atxiov[i].iov_len = len;
    memset(&w->atx[i].msg_hdr, 0, sizeof w->atx[i].msg_hdr);
    w->atx[i].msg_hdr.msg_iov = &w->atxiov[i];
    w->atx[i].msg_hdr.msg_iovlen = 1;
    w->atx[i].msg_hdr.msg_name = &w->atxaddr[i];
    w->atx[i].msg_hdr.msg_namelen = qs->peerlen;
    w->atxfd[i] = qs->ul->fd;
    if (!ev_is_active(&w->atx_flush)) ev_prepare_start(w->loop, &w->atx_flush);
}

void srv_udp_on_read(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop, (void)revents;
    struct ulistener *ul = io->data;
    struct worker *w = ul->w;
    for (int round = 0; round < UDP_BATCHES_MAX && !w->stopping; round++) {
        for (int i = 0; i < UDP_BATCH; i++) {
            w->rxiov[i].iov_base = w->rxbuf[i];
            w->rxiov[i].iov_len = UDP_RX_MAX;
            memset(&w->rx[i].msg_hdr, 0, sizeof w->rx[i].msg_hdr);
            w->rx[i].msg_hdr.msg_iov = &w->rxiov[i];
            w->rx[i].msg_hdr.msg_iovlen = 1;
            w->rx[i].msg_hdr.msg_name = &w->rxaddr[i];
            w->rx[i].msg_hdr.msg_namelen = sizeof w->rxaddr[i];
        }
        int n = recvmmsg(ul->fd, w->rx, UDP_BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0) break;
        int nt = 0;
        for (int i = 0; i < n; i++) {
            size_t len = w->rx[i].msg_len;
            if (w->rx[i].msg_hdr.msg_flags & MSG_TRUNC) {
                /* Larger than any query we take: FORMERR when the header is readable. */
                if (len < DNS_HEADER_LEN || (dns_get16(w->rxbuf[i] + 2) & DNS_F_QR)) continue;
                len = srv_build_header_error(w->txbuf[nt], w->rxbuf[i], DNS_RCODE_FORMERR);
            } else {
                size_t olen = 0;
                enum qres res = srv_handle_query(w, ul->la, ul, NULL, &w->rxaddr[i],
                                                 w->rx[i].msg_hdr.msg_namelen, w->rxbuf[i], len,
                                                 w->txbuf[nt], UDP_TX_MAX, &olen);
                if (res != Q_REPLY) continue;
                len = olen;
            }
            w->txiov[nt].iov_base = w->txbuf[nt];
            w->txiov[nt].iov_len = len;
            memset(&w->tx[nt].msg_hdr, 0, sizeof w->tx[nt].msg_hdr);
            w->tx[nt].msg_hdr.msg_iov = &w->txiov[nt];
            w->tx[nt].msg_hdr.msg_iovlen = 1;
            w->tx[nt].msg_hdr.msg_name = &w->rxaddr[i];
            w->tx[nt].msg_hdr.msg_namelen = w->rx[i].msg_hdr.msg_namelen;
            nt++;
        }
        for (int sent = 0; sent < nt;) {
            int k = sendmmsg(ul->fd, w->tx + sent, (unsigned)(nt - sent), MSG_DONTWAIT);
            if (k > 0) {
                sent += k;
                continue;
            }
            if (k < 0 && errno == EINTR) continue;
            sent++; /* skip the datagram the kernel refused (full buffer, bad address) */
        }
        if (n < UDP_BATCH) break;
    }
}
