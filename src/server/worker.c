/* src/server/worker.c — the runtime of redis-cache-dns: workers, listeners, threads, and
 * their start and shutdown.
 *
 * N workers, each a thread with its own libev loop, its own SO_REUSEPORT UDP and TCP
 * sockets on every listen address, and per server block its own L1 shard, redis_cache
 * handle and forwarder. Nothing on the query path is shared between workers: the route
 * tables are read-only after start, counters are the worker's own (a scrape asks the worker
 * for a snapshot through an ev_async; see srv_runtime_collect). What a worker serves is its
 * current generation (struct wgen, reload_gen.c): a reload builds the next one on the
 * worker's own loop and swaps it in there.
 *
 * The query path lives beside this file: query.c (one query: parse, route, L1, L2,
 * forward, store, reply), udp.c (recvmmsg/sendmmsg batches and the async reply queue) and
 * tcp.c (RFC 7766 connections); worker_internal.h holds what they share.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "server/worker_internal.h"

/* ---- sockets ------------------------------------------------------------------------------ */

bool srv_laddr_wildcard(const struct laddr *la)
{
    if (la->v6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&la->sa;
        return IN6_IS_ADDR_UNSPECIFIED(&a->sin6_addr);
    }
    const struct sockaddr_in *a = (const struct sockaddr_in *)&la->sa;
    return a->sin_addr.s_addr == htonl(INADDR_ANY);
}

int srv_open_socket(const struct laddr *la, int type, char *err, size_t errlen)
{
    int fd = socket(la->sa.ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket %s: %s", la->text, strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
        snprintf(err, errlen, "SO_REUSEPORT %s: %s", la->text, strerror(errno));
        close(fd);
        return -1;
    }
    if (la->v6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (type == SOCK_DGRAM && srv_laddr_wildcard(la)) { /* replies leave from the query's address */
        int rc = la->v6 ? setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof one)
                        : setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one);
        if (rc != 0) {
            snprintf(err, errlen, "pktinfo %s: %s", la->text, strerror(errno));
            close(fd);
            return -1;
        }
    }
    if (type == SOCK_DGRAM) {
        int sz = 4 * 1024 * 1024;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    }
    if (bind(fd, (const struct sockaddr *)&la->sa, la->salen) != 0) {
        snprintf(err, errlen, "listen %s/%s: %s", la->text, type == SOCK_DGRAM ? "udp" : "tcp",
                 strerror(errno));
        close(fd);
        return -1;
    }
    if (type == SOCK_STREAM && listen(fd, 1024) != 0) {
        snprintf(err, errlen, "listen %s/tcp: %s", la->text, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* ---- worker lifecycle -------------------------------------------------------------------- */

static void worker_snapshot(struct worker *w)
{
    pthread_mutex_lock(&w->mu);
    struct srv_stats *s = &w->snap;
    srv_stats_reset(s);
    srv_stats_add(s, &w->live);
    for (size_t b = 0; b < w->nblocks; b++) {
        struct wblock *wb = &w->blocks[b];
        if (wb->l1) {
            struct l1_stats st;
            l1_stats(wb->l1, &st);
            s->blocks[b].cache_entries[0] = st.success_entries;
            s->blocks[b].cache_entries[1] = st.denial_entries;
        }
        if (wb->rc && s->blocks[b].redis) *s->blocks[b].redis = *rcp_cache_metrics(wb->rc);
        if (wb->fwd) fwd_stats(wb->fwd, &s->blocks[b].fwd);
    }
    w->snap_gen++;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void worker_on_snap(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)loop, (void)revents;
    worker_snapshot(a->data);
}

static bool gen_writes_pending(const struct wgen *g)
{
    for (size_t b = 0; b < g->nblocks; b++)
        if (g->blocks[b].rc && g->blocks[b].own_rc && rcp_cache_pending_writes(g->blocks[b].rc))
            return true;
    return false;
}

static bool worker_drained(struct worker *w)
{
    if (w->inflight || w->conns) return false;
    for (const struct wgen *g = w->gens; g; g = g->next)
        if (gen_writes_pending(g)) return false;
    return true;
}

static void worker_on_drain(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    if (worker_drained(t->data)) ev_break(loop, EVBREAK_ALL);
}

static void worker_on_deadline(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)t, (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

/* Stop reading and accepting; in-flight queries still answer through the open sockets. */
static void worker_on_stop(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)revents;
    struct worker *w = a->data;
    if (w->stopping) return;
    w->stopping = true;
    for (size_t i = 0; i < w->nl; i++) {
        ev_io_stop(loop, &w->ul[i].io);
        ev_io_stop(loop, &w->tl[i].io);
        if (w->tl[i].fd >= 0) close(w->tl[i].fd);
        w->tl[i].fd = -1;
    }
    w->accepting = false;
    for (struct tconn *c = w->conns, *next; c; c = next) {
        next = c->next;
        if (c->dead) continue;
        c->eof = true;
        ev_io_stop(loop, &c->rio);
        if (c->inflight == 0 && c->woff >= c->wlen) srv_tconn_close(c);
    }
    ev_timer_start(loop, &w->drain_timer);
    ev_timer_set(&w->deadline_timer, w->stop_budget, 0);
    ev_timer_start(loop, &w->deadline_timer);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    ev_run(w->loop, 0);
    srv_udp_async_flush(w); /* replies queued in the last iteration (the loop ended in a timer) */
    worker_snapshot(w);
    /* Teardown on this thread: callbacks of pending work see `closing` and only release.
     * Every generation's Redis handles go before any forwarder, as pending lookups fall
     * through to forward; each part is freed by the generation that owns it. */
    w->closing = true;
    ev_timer_stop(w->loop, &w->gc_timer);
    for (struct wgen *g = w->gens; g; g = g->next)
        for (size_t b = 0; b < g->nblocks; b++)
            if (g->blocks[b].rc && g->blocks[b].own_rc) rcp_cache_free(g->blocks[b].rc);
    for (struct wgen *g = w->gens; g; g = g->next)
        for (size_t b = 0; b < g->nblocks; b++) {
            g->blocks[b].rc = NULL; /* kept parts are shared: clear them everywhere */
            g->blocks[b].own_rc = false;
        }
    for (struct wgen *g = w->gens; g; g = g->next)
        for (size_t b = 0; b < g->nblocks; b++)
            if (g->blocks[b].fwd && g->blocks[b].own_fwd) fwd_free(g->blocks[b].fwd);
    for (struct wgen *g = w->gens; g; g = g->next)
        for (size_t b = 0; b < g->nblocks; b++) {
            g->blocks[b].fwd = NULL;
            g->blocks[b].own_fwd = false;
        }
    while (w->conns) {
        struct tconn *c = w->conns;
        c->inflight = 0;
        srv_tconn_close(c);
    }
    return NULL;
}

static void worker_free(struct worker *w)
{
    if (!w) return;
    w->closing = true;
    while (w->conns) {
        struct tconn *c = w->conns;
        c->inflight = 0;
        srv_tconn_close(c);
    }
    /* oldest first: a part kept by a reload is owned by the newer generation */
    while (w->gens) {
        struct wgen *g = w->gens;
        w->gens = g->next;
        srv_wgen_free(w, g);
    }
    w->gen = NULL;
    if (w->rl_built) srv_wgen_free(w, w->rl_built);
    for (size_t i = 0; i < w->nchunks; i++) free(w->chunks[i]);
    free(w->chunks);
    free(w->rxbuf);
    free(w->txbuf);
    free(w->atxbuf);
    free(w->scratch);
    free(w->out);
    free(w->rrs);
    free(w->rrs2);
    srv_stats_free(&w->live);
    srv_stats_free(&w->snap);
    if (w->loop) ev_loop_destroy(w->loop);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}

static struct worker *worker_new(struct srv_runtime *rt, unsigned id, char *err, size_t errlen)
{
    struct rgen *rg = rt->rg;
    struct worker *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->rt = rt;
    w->id = id;
    w->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
    w->rxbuf = malloc(UDP_BATCH * sizeof *w->rxbuf);
    w->txbuf = malloc(UDP_BATCH * sizeof *w->txbuf);
    w->atxbuf = malloc(UDP_BATCH * sizeof *w->atxbuf);
    w->scratch = malloc(DNS_MSG_MAX + 16);
    w->out = malloc(DNS_MSG_MAX + 16);
    w->rrs = malloc(DNS_RR_MAX * sizeof *w->rrs);
    w->rrs2 = malloc(DNS_RR_MAX * sizeof *w->rrs2);
    if (!w->loop || !w->rxbuf || !w->txbuf || !w->atxbuf || !w->scratch || !w->out || !w->rrs ||
        !w->rrs2) {
        snprintf(err, errlen, "out of memory");
        worker_free(w);
        return NULL;
    }
    ev_init(&w->gc_timer, srv_worker_on_gc);
    w->gc_timer.data = w;

    struct wgen *g = srv_wgen_build(w, rg, err, errlen);
    int(*fds)[2] = calloc(rg->naddrs ? rg->naddrs : 1, sizeof *fds);
    if (!g || !fds) {
        if (!fds) snprintf(err, errlen, "out of memory");
        if (g) srv_wgen_free(w, g);
        free(fds);
        worker_free(w);
        return NULL;
    }
    for (size_t i = 0; i < rg->naddrs; i++) fds[i][0] = fds[i][1] = -1;
    for (size_t i = 0; i < rg->naddrs; i++) {
        const struct laddr *la = &rg->addrs[i];
        if ((fds[i][0] = srv_open_socket(la, SOCK_DGRAM, err, errlen)) < 0 ||
            (fds[i][1] = srv_open_socket(la, SOCK_STREAM, err, errlen)) < 0) {
            for (size_t k = 0; k <= i; k++) {
                if (fds[k][0] >= 0) close(fds[k][0]);
                if (fds[k][1] >= 0) close(fds[k][1]);
            }
            free(fds);
            srv_wgen_free(w, g);
            worker_free(w);
            return NULL;
        }
    }
    w->accepting = true;
    srv_wgen_commit(w, g, fds);
    free(fds);

    ev_async_init(&w->stop_async, worker_on_stop);
    w->stop_async.data = w;
    ev_async_start(w->loop, &w->stop_async);
    ev_async_init(&w->snap_async, worker_on_snap);
    w->snap_async.data = w;
    ev_async_start(w->loop, &w->snap_async);
    ev_async_init(&w->reload_async, srv_worker_on_reload);
    w->reload_async.data = w;
    ev_async_start(w->loop, &w->reload_async);
    ev_prepare_init(&w->atx_flush, srv_udp_async_on_prepare);
    w->atx_flush.data = w;
    ev_timer_init(&w->drain_timer, worker_on_drain, 0.005, 0.005);
    w->drain_timer.data = w;
    ev_timer_init(&w->deadline_timer, worker_on_deadline, 2.0, 0);
    w->deadline_timer.data = w;
    return w;
}

/* ---- the runtime --------------------------------------------------------------------------- */

static int laddr_fill(struct laddr *la, const char *host, uint16_t port)
{
    memset(la, 0, sizeof *la);
    la->port = port;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&la->sa;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&la->sa;
    char h[64];
    snprintf(h, sizeof h, "%s", host);
    size_t hl = strlen(h);
    if (h[0] == '[' && hl > 2 && h[hl - 1] == ']') {
        memmove(h, h + 1, hl - 2);
        h[hl - 2] = '\0';
    }
    if (inet_pton(AF_INET, h, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        la->salen = sizeof *s4;
        snprintf(la->text, sizeof la->text, "%s:%u", h, port);
        return 0;
    }
    if (inet_pton(AF_INET6, h, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        la->salen = sizeof *s6;
        la->v6 = true;
        snprintf(la->text, sizeof la->text, "[%s]:%u", h, port);
        return 0;
    }
    return -1;
}

bool srv_laddr_same(const struct laddr *a, const struct laddr *b)
{
    return a->salen == b->salen && memcmp(&a->sa, &b->sa, a->salen) == 0;
}

/* Does block `blk` listen on `la`? (its port, and one of its binds or no bind at all) */
static bool block_listens(const struct srv_block *blk, const struct laddr *la)
{
    if (blk->port != la->port) return false;
    if (blk->nbinds == 0) {
        /* wildcard: the any-address listeners, and every specific address of its port */
        return true;
    }
    for (size_t i = 0; i < blk->nbinds; i++) {
        struct laddr t;
        if (laddr_fill(&t, blk->binds[i], blk->port) == 0 && srv_laddr_same(&t, la)) return true;
    }
    return false;
}

int srv_rgen_addrs(struct rgen *rg, char *err, size_t errlen)
{
    const struct srv_config *cfg = rg->cfg;
    size_t cap = 0;
    for (size_t b = 0; b < cfg->nblocks; b++)
        cap += cfg->blocks[b].nbinds ? cfg->blocks[b].nbinds : 2;
    rg->addrs = calloc(cap ? cap : 1, sizeof *rg->addrs);
    if (!rg->addrs) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t b = 0; b < cfg->nblocks; b++) {
        const struct srv_block *blk = &cfg->blocks[b];
        const char *wild[2] = {"0.0.0.0", "::"};
        size_t nb = blk->nbinds ? blk->nbinds : 2;
        for (size_t i = 0; i < nb; i++) {
            struct laddr t;
            const char *h = blk->nbinds ? blk->binds[i] : wild[i];
            if (laddr_fill(&t, h, blk->port) != 0) {
                snprintf(err, errlen, "%s:%u: bind: not an IP address: %s", blk->file, blk->line,
                         h);
                return -1;
            }
            if (!blk->nbinds && t.v6) {
                /* Listen on :: only when the host has IPv6. */
                int fd = socket(AF_INET6, SOCK_DGRAM, 0);
                if (fd < 0) continue;
                close(fd);
            }
            size_t j;
            for (j = 0; j < rg->naddrs; j++)
                if (srv_laddr_same(&rg->addrs[j], &t)) break;
            if (j == rg->naddrs) rg->addrs[rg->naddrs++] = t;
        }
    }
    for (size_t i = 0; i < rg->naddrs; i++) {
        struct laddr *la = &rg->addrs[i];
        la->drop_block = -1;
        for (size_t b = 0; b < cfg->nblocks; b++) {
            const struct srv_block *blk = &cfg->blocks[b];
            if (!block_listens(blk, la)) continue;
            if (la->drop_block < 0) la->drop_block = (int)b;
            for (size_t z = 0; z < blk->nzones && la->nroutes < ROUTES_MAX; z++) {
                struct route *r = &la->routes[la->nroutes];
                r->zone_len = (uint16_t)dns_name_from_text(blk->zones[z], r->zone);
                if (!r->zone_len) continue;
                r->block = (uint16_t)b;
                r->zidx = (uint16_t)z;
                la->nroutes++;
            }
        }
        if (la->drop_block < 0) la->drop_block = 0;
    }
    /* one topology state per redis_cache block, shared by the workers' caches (SPEC §3) */
    for (size_t b = 0; b < cfg->nblocks && b < SRV_BLOCKS_MAX; b++) {
        if (!cfg->blocks[b].redis_cache) continue;
        if (!(rg->hub[b] = topo_hub_new())) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    return 0;
}

void srv_rgen_release(struct rgen *rg)
{
    if (!rg || atomic_fetch_sub(&rg->refs, 1) != 1) return;
    for (size_t b = 0; b < SRV_BLOCKS_MAX; b++) topo_hub_unref(rg->hub[b]);
    if (rg->cfg) {
        srv_config_free(rg->cfg);
        free(rg->cfg);
    }
    free(rg->addrs);
    free(rg);
}

struct srv_runtime *srv_runtime_new(struct srv_config *cfg, unsigned nworkers, char *err,
                                    size_t errlen)
{
    if (cfg->nblocks == 0) {
        snprintf(err, errlen, "no server blocks");
        return NULL;
    }
    struct srv_runtime *rt = calloc(1, sizeof *rt);
    struct rgen *rg = calloc(1, sizeof *rg);
    if (!rt || !rg) {
        free(rt);
        free(rg);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    rg->cfg = cfg;
    atomic_init(&rg->refs, 1);
    rt->rg = rg;
    rt->nworkers = nworkers ? nworkers : 1;
    rt->w = calloc(rt->nworkers, sizeof *rt->w);
    if (!rt->w || srv_rgen_addrs(rg, err, errlen) != 0) {
        if (!rt->w) snprintf(err, errlen, "out of memory");
        rg->cfg = NULL; /* the caller keeps it */
        srv_runtime_free(rt);
        return NULL;
    }
    for (unsigned i = 0; i < rt->nworkers; i++) {
        rt->w[i] = worker_new(rt, i, err, errlen);
        if (!rt->w[i]) {
            rg->cfg = NULL;
            srv_runtime_free(rt);
            return NULL;
        }
    }
    return rt;
}

const struct srv_config *srv_runtime_config(const struct srv_runtime *rt)
{
    return rt->rg->cfg;
}

int srv_runtime_start(struct srv_runtime *rt, char *err, size_t errlen)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = 0;
    for (unsigned i = 0; i < rt->nworkers; i++) {
        int e = pthread_create(&rt->w[i]->thr, NULL, worker_main, rt->w[i]);
        if (e != 0) {
            snprintf(err, errlen, "pthread_create: %s", strerror(e));
            rc = -1;
            break;
        }
        rt->w[i]->running = true;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    rt->started = true;
    return rc;
}

void srv_runtime_stop(struct srv_runtime *rt, double budget)
{
    for (unsigned i = 0; i < rt->nworkers; i++) {
        struct worker *w = rt->w[i];
        if (!w || !w->running) continue;
        w->stop_budget = budget;
        ev_async_send(w->loop, &w->stop_async);
    }
    for (unsigned i = 0; i < rt->nworkers; i++) {
        struct worker *w = rt->w[i];
        if (!w || !w->running) continue;
        pthread_join(w->thr, NULL);
        w->running = false;
    }
}

void srv_runtime_free(struct srv_runtime *rt)
{
    if (!rt) return;
    srv_runtime_stop(rt, 0.5);
    if (rt->w)
        for (unsigned i = 0; i < rt->nworkers; i++) worker_free(rt->w[i]);
    free(rt->w);
    srv_rgen_release(rt->rg);
    free(rt);
}

void srv_runtime_collect(struct srv_runtime *rt, struct srv_stats *sum)
{
    uint64_t gen[256];
    srv_stats_reset(sum);
    unsigned n = rt->nworkers < 256 ? rt->nworkers : 256;
    for (unsigned i = 0; i < n; i++) {
        struct worker *w = rt->w[i];
        pthread_mutex_lock(&w->mu);
        gen[i] = w->snap_gen;
        pthread_mutex_unlock(&w->mu);
        if (w->running) ev_async_send(w->loop, &w->snap_async);
    }
    for (unsigned i = 0; i < n; i++) {
        struct worker *w = rt->w[i];
        pthread_mutex_lock(&w->mu);
        if (w->running) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 200 * 1000 * 1000;
            if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
            while (w->snap_gen == gen[i])
                if (pthread_cond_timedwait(&w->cv, &w->mu, &ts) != 0) break;
        }
        srv_stats_add(sum, &w->snap);
        pthread_mutex_unlock(&w->mu);
    }
}

/* ---- CPUs ----------------------------------------------------------------------------------- */

/* cgroup v2 cpu.max "QUOTA PERIOD" (or "max PERIOD") of this process's cgroup; 0: no limit. */
static unsigned cgroup_cpus(void)
{
    char path[512] = "/sys/fs/cgroup/cpu.max", line[512];
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (f) {
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "0::", 3) == 0) {
                line[strcspn(line, "\n")] = '\0';
                if (strcmp(line + 3, "/") != 0)
                    snprintf(path, sizeof path, "/sys/fs/cgroup%.400s/cpu.max", line + 3);
            }
        }
        fclose(f);
    }
    const char *tries[2] = {path, "/sys/fs/cgroup/cpu.max"};
    for (int i = 0; i < 2; i++) {
        f = fopen(tries[i], "r");
        if (!f) continue;
        char q[64] = "";
        unsigned long period = 0;
        int got = fscanf(f, "%63s %lu", q, &period);
        fclose(f);
        if (got != 2 || strcmp(q, "max") == 0 || period == 0) return 0;
        unsigned long quota = strtoul(q, NULL, 10);
        if (!quota) return 0;
        return (unsigned)((quota + period - 1) / period);
    }
    return 0;
}

unsigned srv_cpu_count(void)
{
    unsigned n = 1;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int c = CPU_COUNT(&set);
        if (c > 0) n = (unsigned)c;
    } else {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        if (c > 0) n = (unsigned)c;
    }
    unsigned q = cgroup_cpus();
    if (q && q < n) n = q;
    return n ? n : 1;
}
