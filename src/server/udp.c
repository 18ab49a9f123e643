/* src/server/udp.c — UDP for the workers: recvmmsg a batch, answer what can be answered
 * at once into the batch's send slots and send them with one sendmmsg; replies of async
 * queries finished in one loop iteration are queued and leave in one sendmmsg from an
 * ev_prepare watcher before the loop polls (DESIGN: batch syscalls).
 */
#include <errno.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "server/worker_internal.h"

/* ---- where a datagram arrived (IP_PKTINFO / IPV6_RECVPKTINFO) ---------------------------- */

void srv_pktinfo_read(struct msghdr *m, struct srv_pktinfo *pi)
{
    pi->family = 0;
    if (m->msg_controllen == 0) return;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO &&
            c->cmsg_len >= CMSG_LEN(sizeof(struct in_pktinfo))) {
            struct in_pktinfo ip;
            memcpy(&ip, CMSG_DATA(c), sizeof ip);
            pi->family = AF_INET;
            pi->ifindex = ip.ipi_ifindex;
            pi->addr.v4 = ip.ipi_addr; /* the query's destination: our reply's source */
            return;
        }
        if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO &&
            c->cmsg_len >= CMSG_LEN(sizeof(struct in6_pktinfo))) {
            struct in6_pktinfo ip6;
            memcpy(&ip6, CMSG_DATA(c), sizeof ip6);
            pi->family = AF_INET6;
            pi->ifindex = (int)ip6.ipi6_ifindex;
            pi->addr.v6 = ip6.ipi6_addr;
            return;
        }
    }
}

size_t srv_pktinfo_write(const struct srv_pktinfo *pi, uint8_t *buf, size_t cap)
{
    if (!pi || pi->family == 0) return 0;
    struct msghdr m;
    memset(&m, 0, sizeof m);
    memset(buf, 0, cap);
    m.msg_control = buf;
    m.msg_controllen = cap;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    if (pi->family == AF_INET) {
        if (cap < CMSG_SPACE(sizeof(struct in_pktinfo))) return 0;
        struct in_pktinfo ip;
        memset(&ip, 0, sizeof ip);
        ip.ipi_spec_dst = pi->addr.v4; /* source address; the routing picks the interface */
        c->cmsg_level = IPPROTO_IP;
        c->cmsg_type = IP_PKTINFO;
        c->cmsg_len = CMSG_LEN(sizeof ip);
        memcpy(CMSG_DATA(c), &ip, sizeof ip);
        return CMSG_SPACE(sizeof ip);
    }
    if (cap < CMSG_SPACE(sizeof(struct in6_pktinfo))) return 0;
    struct in6_pktinfo ip6;
    memset(&ip6, 0, sizeof ip6);
    ip6.ipi6_addr = pi->addr.v6;
    ip6.ipi6_ifindex = (unsigned)pi->ifindex; /* needed for link-local sources */
    c->cmsg_level = IPPROTO_IPV6;
    c->cmsg_type = IPV6_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof ip6);
    memcpy(CMSG_DATA(c), &ip6, sizeof ip6);
    return CMSG_SPACE(sizeof ip6);
}

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
        uint8_t ctl[SRV_PKTINFO_CMSG];
        struct iovec iov = {.iov_base = (void *)msg, .iov_len = len};
        struct msghdr m;
        memset(&m, 0, sizeof m);
        m.msg_name = &qs->peer;
        m.msg_namelen = qs->peerlen;
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        m.msg_controllen = srv_pktinfo_write(&qs->pkt, ctl, sizeof ctl);
        m.msg_control = m.msg_controllen ? ctl : NULL;
        ssize_t n;
        do n = sendmsg(qs->ul->fd, &m, MSG_DONTWAIT);
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
    w->atx[i].msg_hdr.msg_controllen = srv_pktinfo_write(&qs->pkt, w->atxctl[i], SRV_PKTINFO_CMSG);
    w->atx[i].msg_hdr.msg_control = w->atx[i].msg_hdr.msg_controllen ? w->atxctl[i] : NULL;
    w->atxfd[i] = qs->ul->fd;
    if (!ev_is_active(&w->atx_flush)) ev_prepare_start(w->loop, &w->atx_flush);
}

void srv_udp_on_read(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop, (void)revents;
    struct ulistener *ul = io->data;
    struct worker *w = ul->w;
    bool pk = srv_laddr_wildcard(ul->la); /* the socket has IP_PKTINFO / IPV6_RECVPKTINFO */
    for (int round = 0; round < UDP_BATCHES_MAX && !w->stopping; round++) {
        for (int i = 0; i < UDP_BATCH; i++) {
            w->rxiov[i].iov_base = w->rxbuf[i];
            w->rxiov[i].iov_len = UDP_RX_MAX;
            memset(&w->rx[i].msg_hdr, 0, sizeof w->rx[i].msg_hdr);
            w->rx[i].msg_hdr.msg_iov = &w->rxiov[i];
            w->rx[i].msg_hdr.msg_iovlen = 1;
            w->rx[i].msg_hdr.msg_name = &w->rxaddr[i];
            w->rx[i].msg_hdr.msg_namelen = sizeof w->rxaddr[i];
            w->rx[i].msg_hdr.msg_control = pk ? w->rxctl[i] : NULL;
            w->rx[i].msg_hdr.msg_controllen = pk ? SRV_PKTINFO_CMSG : 0;
        }
        int n = recvmmsg(ul->fd, w->rx, UDP_BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0) break;
        int nt = 0;
        for (int i = 0; i < n; i++) {
            size_t len = w->rx[i].msg_len;
            srv_pktinfo_read(&w->rx[i].msg_hdr, &w->rxpkt[i]); /* family 0 unless pk */
            if (w->rx[i].msg_hdr.msg_flags & MSG_TRUNC) {
                /* Larger than any query we take: FORMERR when the header is readable. */
                if (len < DNS_HEADER_LEN || (dns_get16(w->rxbuf[i] + 2) & DNS_F_QR)) continue;
                len = srv_build_header_error(w->txbuf[nt], w->rxbuf[i], DNS_RCODE_FORMERR);
            } else {
                size_t olen = 0;
                w->cur_pkt = w->rxpkt[i].family ? &w->rxpkt[i] : NULL;
                enum qres res = srv_handle_query(w, ul->la, ul, NULL, &w->rxaddr[i],
                                                 w->rx[i].msg_hdr.msg_namelen, w->rxbuf[i], len,
                                                 w->txbuf[nt], UDP_TX_MAX, &olen);
                w->cur_pkt = NULL;
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
            if (pk) { /* the reply leaves from the query's destination address */
                w->tx[nt].msg_hdr.msg_controllen =
                    srv_pktinfo_write(&w->rxpkt[i], w->txctl[nt], SRV_PKTINFO_CMSG);
                w->tx[nt].msg_hdr.msg_control =
                    w->tx[nt].msg_hdr.msg_controllen ? w->txctl[nt] : NULL;
            }
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
