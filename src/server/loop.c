/* src/server/loop.c — the `loop` directive: CoreDNS's forwarding-loop detection at start.
 *
 * For every server block with `loop`, the main thread sends our own listener a query
 * `<random>.<random>.<zone>. IN HINFO` (the block's first zone; the first bind address,
 * 127.0.0.1 without one). It travels the normal path (cache, redis_cache, forward). When the
 * upstream leads back to us, the same name arrives again: the query path reports every
 * HINFO arrival here (srv_loop_observe) and a name seen more than twice ends the process
 * with CoreDNS's message:
 *
 *   [FATAL] plugin/loop: Loop (127.0.0.1:41234 -> :1053) detected for zone ".", see
 *   https://coredns.io/plugins/loop#troubleshooting. Query: "HINFO 7113....4112.."
 *
 * and exit status 1. Like CoreDNS, the probe is tried for at most LOOP_DEADLINE seconds:
 * each try waits LOOP_TRY_TIMEOUT for a reply, then LOOP_PAUSE before the next; after a
 * reply the names stay watched for LOOP_LINGER more seconds, then the probe is off and the
 * query path pays one relaxed atomic load per HINFO query. Unlike CoreDNS, every try asks
 * a fresh name (CoreDNS resets its one counter after a failed try): a try that timed out
 * can never add to another's count, and a late looped copy of an earlier try still
 * counts. The forward plugin coalesces identical in-flight queries, so a loop shows up as
 * the upstream's retries coming back, within a try timeout or two.
 *
 * The probe state is one per process (the query path of every worker reads it): names are
 * written before `active` is published and never change while it is set. It runs at start
 * only, not after a reload.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "server/server.h"

#define LOOP_T_HINFO     13
#define LOOP_TRIES       10
#define LOOP_TRY_TIMEOUT 2.0
#define LOOP_PAUSE       1.0
#define LOOP_DEADLINE    30.0
#define LOOP_LINGER      2.0

struct loop_name {
    uint8_t wire[DNS_NAME_MAX]; /* lowercase wire form */
    size_t len;
    _Atomic unsigned seen;
};

struct loop_probe {
    struct ev_loop *loop;
    char zone[256];
    char target[96]; /* as CoreDNS prints its address: ":1053", "127.0.0.1:1053" */
    struct sockaddr_storage dst;
    socklen_t dstlen;
    const uint8_t *zone_wire;
    size_t zone_wire_len;
    uint8_t zwire[DNS_NAME_MAX];
    struct loop_name names[LOOP_TRIES];
    _Atomic unsigned nnames; /* published after names[i] is filled */
    _Atomic bool active;
    int fd;
    uint16_t ids[LOOP_TRIES];
    unsigned tries;
    enum { LOOP_S_WAIT, LOOP_S_PAUSE, LOOP_S_LINGER } state;
    double started;
    ev_io io;
    ev_timer timer;
};

/* Read by every worker's query path; written by the main thread. */
static struct loop_probe *loop_probes;
static size_t loop_nprobes;
static _Atomic unsigned loop_nactive;

static uint64_t loop_random(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, GRND_NONBLOCK) != (ssize_t)sizeof v) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        v = ((uint64_t)ts.tv_nsec << 32) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 16) ^
            (uint64_t)(uintptr_t)&v;
    }
    return v;
}

/* Fills name with "<r1>.<r2>.<zone>" in wire form. False when it does not fit. */
static bool loop_make_name(const struct loop_probe *p, struct loop_name *n)
{
    size_t o = 0;
    for (int i = 0; i < 2; i++) {
        char lab[24];
        int ll = snprintf(lab, sizeof lab, "%llu",
                          (unsigned long long)(loop_random() & 0x7fffffffffffffffULL));
        if (ll <= 0 || o + 1 + (size_t)ll + p->zone_wire_len > DNS_NAME_MAX) return false;
        n->wire[o++] = (uint8_t)ll;
        memcpy(n->wire + o, lab, (size_t)ll);
        o += (size_t)ll;
    }
    memcpy(n->wire + o, p->zone_wire, p->zone_wire_len);
    n->len = o + p->zone_wire_len;
    atomic_store_explicit(&n->seen, 0, memory_order_relaxed);
    return true;
}

static void loop_deactivate(struct loop_probe *p)
{
    ev_io_stop(p->loop, &p->io);
    ev_timer_stop(p->loop, &p->timer);
    if (p->fd >= 0) close(p->fd);
    p->fd = -1;
    if (atomic_exchange(&p->active, false)) atomic_fetch_sub(&loop_nactive, 1);
}

static void loop_send(struct loop_probe *p)
{
    unsigned k = atomic_load_explicit(&p->nnames, memory_order_relaxed);
    if (k >= LOOP_TRIES || !loop_make_name(p, &p->names[k])) {
        loop_deactivate(p);
        return;
    }
    atomic_store_explicit(&p->nnames, k + 1, memory_order_release);
    uint8_t q[DNS_HEADER_LEN + DNS_NAME_MAX + 4];
    p->ids[k] = (uint16_t)loop_random();
    dns_put16(q, p->ids[k]);
    dns_put16(q + 2, DNS_F_RD);
    dns_put16(q + 4, 1);
    memset(q + 6, 0, 6);
    memcpy(q + DNS_HEADER_LEN, p->names[k].wire, p->names[k].len);
    size_t n = DNS_HEADER_LEN + p->names[k].len;
    dns_put16(q + n, LOOP_T_HINFO);
    dns_put16(q + n + 2, 1);
    n += 4;
    p->tries++;
    /* A failed send counts as a try that timed out. */
    ssize_t wr = send(p->fd, q, n, 0);
    (void)wr;
    p->state = LOOP_S_WAIT;
    ev_timer_stop(p->loop, &p->timer);
    ev_timer_set(&p->timer, LOOP_TRY_TIMEOUT, 0);
    ev_timer_start(p->loop, &p->timer);
}

static void loop_on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct loop_probe *p = t->data;
    switch (p->state) {
    case LOOP_S_WAIT: /* a try timed out: pause, then try again while the deadline allows */
        if (p->tries >= LOOP_TRIES ||
            ev_now(loop) - p->started + LOOP_PAUSE + LOOP_TRY_TIMEOUT > LOOP_DEADLINE) {
            loop_deactivate(p);
            return;
        }
        p->state = LOOP_S_PAUSE;
        ev_timer_set(&p->timer, LOOP_PAUSE, 0);
        ev_timer_start(loop, &p->timer);
        return;
    case LOOP_S_PAUSE: loop_send(p); return;
    case LOOP_S_LINGER: loop_deactivate(p); return;
    }
}

static void loop_on_read(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct loop_probe *p = w->data;
    uint8_t buf[1024];
    for (;;) {
        ssize_t n = recv(p->fd, buf, sizeof buf, 0);
        if (n < 0) return; /* EAGAIN, or an ICMP error: the try times out */
        if (n < DNS_HEADER_LEN || !(buf[2] & 0x80) || p->state == LOOP_S_LINGER) continue;
        bool ours = false;
        for (unsigned i = 0; i < p->tries; i++) ours |= dns_get16(buf) == p->ids[i];
        if (!ours) continue;
        /* Answered (a late answer to an earlier try counts too): no loop so far. Keep
         * watching the names a little for late copies. */
        p->state = LOOP_S_LINGER;
        ev_timer_stop(loop, &p->timer);
        ev_timer_set(&p->timer, LOOP_LINGER, 0);
        ev_timer_start(loop, &p->timer);
    }
}

/* The address the probe is sent to, and the text CoreDNS shows for it. */
static bool loop_target(struct loop_probe *p, const struct srv_block *b)
{
    const char *host = b->nbinds ? b->binds[0] : "";
    memset(&p->dst, 0, sizeof p->dst);
    struct sockaddr_in *s4 = (struct sockaddr_in *)&p->dst;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&p->dst;
    if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        if (IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr)) s6->sin6_addr = in6addr_loopback;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(b->port);
        p->dstlen = sizeof *s6;
        snprintf(p->target, sizeof p->target, "[%s]:%u", host, b->port);
        return true;
    }
    s4->sin_family = AF_INET;
    s4->sin_port = htons(b->port);
    p->dstlen = sizeof *s4;
    if (!*host || inet_pton(AF_INET, host, &s4->sin_addr) != 1 ||
        s4->sin_addr.s_addr == htonl(INADDR_ANY))
        s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    snprintf(p->target, sizeof p->target, "%s:%u", host, b->port);
    return true;
}

int srv_loop_start(struct ev_loop *loop, const struct srv_config *cfg)
{
    size_t n = 0;
    for (size_t i = 0; i < cfg->nblocks; i++) n += cfg->blocks[i].loop;
    if (n == 0 || loop_probes) return 0;
    struct loop_probe *ps = calloc(n, sizeof *ps);
    if (!ps) return -1;
    size_t k = 0;
    for (size_t i = 0; i < cfg->nblocks; i++) {
        const struct srv_block *b = &cfg->blocks[i];
        if (!b->loop) continue;
        struct loop_probe *p = &ps[k++];
        p->loop = loop;
        p->fd = -1;
        snprintf(p->zone, sizeof p->zone, "%s", b->zones[0]);
        memcpy(p->zwire, b->zone_wire[0], b->zone_wire_len[0]);
        p->zone_wire = p->zwire;
        p->zone_wire_len = b->zone_wire_len[0];
        loop_target(p, b);
    }
    loop_probes = ps;
    loop_nprobes = n;
    for (size_t i = 0; i < n; i++) {
        struct loop_probe *p = &ps[i];
        p->fd = socket(p->dst.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (p->fd < 0 || connect(p->fd, (struct sockaddr *)&p->dst, p->dstlen) != 0) {
            fprintf(stderr, "[WARNING] plugin/loop: cannot probe %s: %s\n", p->target,
                    strerror(errno));
            if (p->fd >= 0) close(p->fd);
            p->fd = -1;
            continue;
        }
        ev_io_init(&p->io, loop_on_read, p->fd, EV_READ);
        ev_init(&p->timer, loop_on_timer);
        p->io.data = p->timer.data = p;
        p->started = ev_now(loop);
        atomic_store(&p->active, true);
        atomic_fetch_add(&loop_nactive, 1);
        ev_io_start(loop, &p->io);
        loop_send(p);
    }
    return 0;
}

void srv_loop_stop(void)
{
    for (size_t i = 0; i < loop_nprobes; i++) loop_deactivate(&loop_probes[i]);
    /* the array stays: a worker still running may read it; it is freed with the process */
}

static void loop_fatal(const struct loop_probe *p, const struct loop_name *n,
                       const struct sockaddr_storage *peer)
{
    char from[INET6_ADDRSTRLEN + 8] = "?", ip[INET6_ADDRSTRLEN] = "?";
    if (peer->ss_family == AF_INET) {
        const struct sockaddr_in *s = (const struct sockaddr_in *)peer;
        inet_ntop(AF_INET, &s->sin_addr, ip, sizeof ip);
        snprintf(from, sizeof from, "%s:%u", ip, ntohs(s->sin_port));
    } else if (peer->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)peer;
        inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof ip);
        snprintf(from, sizeof from, "[%s]:%u", ip, ntohs(s->sin6_port));
    }
    char name[DNS_NAME_TEXT_MAX + 1];
    size_t nl = dns_name_to_text(n->wire, n->len, name, DNS_NAME_TEXT_MAX, false);
    name[nl < DNS_NAME_TEXT_MAX ? nl : DNS_NAME_TEXT_MAX] = '\0';
    fprintf(stderr,
            "[FATAL] plugin/loop: Loop (%s -> %s) detected for zone \"%s\", see "
            "https://coredns.io/plugins/loop#troubleshooting. Query: \"HINFO %s\"\n",
            from, p->target, p->zone, name);
    fflush(stderr);
    _exit(1);
}

void srv_loop_observe(const struct dns_question *q, const struct sockaddr_storage *peer)
{
    if (q->qtype != LOOP_T_HINFO) return;
    if (atomic_load_explicit(&loop_nactive, memory_order_acquire) == 0) return;
    for (size_t i = 0; i < loop_nprobes; i++) {
        struct loop_probe *p = &loop_probes[i];
        if (!atomic_load_explicit(&p->active, memory_order_acquire)) continue;
        unsigned k = atomic_load_explicit(&p->nnames, memory_order_acquire);
        for (unsigned j = 0; j < k; j++) {
            struct loop_name *n = &p->names[j];
            if (n->len != q->name_len || memcmp(n->wire, q->name_lc, n->len) != 0) continue;
            if (atomic_fetch_add(&n->seen, 1) + 1 > 2) loop_fatal(p, n, peer);
            return;
        }
    }
}
