/* src/server/reload_gen.c — configuration generations and the reload handshake (SPEC §5:
 * SIGHUP, SIGUSR1, `reload`).
 *
 * A worker serves its current generation (struct wgen): the blocks of one configuration
 * with their L1 shards, redis_cache handles and forwarders, and the listeners of its
 * addresses. A reload runs in two steps driven by the main thread (srv_runtime_reload):
 *
 *   build   every worker builds the next generation on its own loop (plugins are libev
 *           objects of that loop), reusing the parts srv_reload_plan keeps; the main thread
 *           has opened the sockets of new addresses before, so a bind error or a plugin that
 *           cannot be built fails the reload with nothing changed (built generations are
 *           freed: "abort");
 *   commit  every worker swaps in one loop callback: kept parts and the sockets of
 *           unchanged addresses change owner (never closed, never rebound: no query is
 *           dropped), the new sockets start, removed addresses stop reading (their TCP
 *           connections answer what they hold and close), counters carry over.
 *
 * Queries remember the generation they started on (query->gen) and finish on it. Retired
 * generations are freed oldest first, each once its last query is done, no TCP connection
 * of a removed address points at it any more, and its own Redis handles have no pending
 * writes (or 2 s after retiring), so a part kept by a newer
 * generation always outlives the older ones that still point at it. The configuration and
 * listen addresses (struct rgen) are freed by their last reference.
 */
#include <errno.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "server/worker_internal.h"

#define GC_PERIOD        0.05
#define GC_WRITES_BUDGET 2.0  /* seconds a retired generation waits for its Redis writes */
#define RL_WAIT          30.0 /* seconds the main thread waits for a worker's answer */

enum { RL_NONE = 0, RL_BUILD, RL_COMMIT, RL_ABORT };
enum { RL_PENDING = 0, RL_BUILT, RL_FAILED, RL_COMMITTED, RL_ABORTED };

/* ---- one worker's generations ------------------------------------------------------------- */

static bool gen_writes_pending(const struct wgen *g)
{
    for (size_t b = 0; b < g->nblocks; b++)
        if (g->blocks[b].rc && g->blocks[b].own_rc && rcp_cache_pending_writes(g->blocks[b].rc))
            return true;
    return false;
}

static unsigned split_limit(unsigned v, unsigned n)
{
    return v == 0 ? 0 : v / n ? v / n : 1;
}

void srv_pool_split(struct topo_pool_opts *p, unsigned nworkers)
{
    unsigned n = nworkers ? nworkers : 1;
    p->size = split_limit(p->size ? p->size : 10 * srv_cpu_count(), n);
    p->max_active = split_limit(p->max_active, n);
    p->max_idle = split_limit(p->max_idle, n);
    p->min_idle = split_limit(p->min_idle, n);
}

static int build_block(struct worker *w, struct wgen *g, size_t b, char *err, size_t errlen)
{
    const struct srv_config *cfg = g->rg->cfg;
    const struct srv_block *blk = &cfg->blocks[b];
    const struct srv_reload_keep *k = &g->keep[b];
    const struct wblock *ob = k->from >= 0 && w->gen ? &w->gen->blocks[k->from] : NULL;
    struct wblock *wb = &g->blocks[b];
    unsigned n = w->rt->nworkers;
    wb->b = blk;
    wb->slot_base = srv_slot_base(cfg, b);
    if (blk->has_cache) {
        if (k->l1 && ob && ob->l1) {
            wb->l1 = ob->l1; /* owned by the old generation until the commit */
        } else {
            struct l1_opts o = blk->cache;
            if (o.success_cap) o.success_cap = o.success_cap / n ? o.success_cap / n : 1;
            if (o.denial_cap) o.denial_cap = o.denial_cap / n ? o.denial_cap / n : 1;
            wb->l1 = l1_new(&o);
            if (!wb->l1) {
                snprintf(err, errlen, "%s:%u: cache: out of memory", blk->file, blk->line);
                return -1;
            }
            wb->own_l1 = true;
        }
        const struct l1_opts *o = &blk->cache;
        size_t nz = o->nzones ? o->nzones : blk->nzones;
        for (size_t z = 0; z < nz && z < 64; z++) {
            const char *t = o->nzones ? o->zones[z] : blk->zones[z];
            uint16_t l = (uint16_t)dns_name_from_text(t, wb->l1_zones.zone[wb->l1_zones.n]);
            if (l) wb->l1_zones.len[wb->l1_zones.n++] = l;
        }
    }
    if (blk->redis_cache) {
        if (k->redis && ob && ob->rc) {
            wb->rc = ob->rc;
        } else {
            struct rcp_config rc = *blk->redis_cache;
            srv_pool_split(&rc.pool, n);
            const char *zones[SRV_KEYS_MAX];
            for (size_t z = 0; z < blk->nzones; z++) zones[z] = blk->zones[z];
            char e[256];
            wb->rc =
                rcp_cache_new_shared(w->loop, &rc, zones, blk->nzones, g->rg->hub[b], e, sizeof e);
            if (!wb->rc) {
                snprintf(err, errlen, "%s:%u: redis_cache: %s", blk->redis_cache->file,
                         blk->redis_cache->line, e);
                return -1;
            }
            wb->own_rc = true;
            rcp_cache_set_udp_size(wb->rc, OUR_UDP);
        }
    }
    if (blk->has_forward) {
        if (k->forward && ob && ob->fwd) {
            wb->fwd = ob->fwd;
        } else {
            char e[256];
            wb->fwd = fwd_new(w->loop, &blk->forward, e, sizeof e);
            if (!wb->fwd) {
                snprintf(err, errlen, "%s:%u: forward: %s", blk->forward.file, blk->forward.line,
                         e);
                return -1;
            }
            wb->own_fwd = true;
        }
    }
    return 0;
}

struct wgen *srv_wgen_build(struct worker *w, struct rgen *rg, char *err, size_t errlen)
{
    const struct srv_config *cfg = rg->cfg;
    struct wgen *g = calloc(1, sizeof *g);
    if (!g) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    atomic_fetch_add(&rg->refs, 1);
    g->rg = rg;
    srv_reload_plan(w->gen ? w->gen->rg->cfg : NULL, cfg, g->keep);
    size_t na = rg->naddrs ? rg->naddrs : 1;
    g->ul = calloc(na, sizeof *g->ul);
    g->tl = calloc(na, sizeof *g->tl);
    if (!g->ul || !g->tl || srv_stats_init(&g->live, cfg) != 0 ||
        srv_stats_init(&g->snap, cfg) != 0) {
        snprintf(err, errlen, "out of memory");
        srv_wgen_free(w, g);
        return NULL;
    }
    g->nl = rg->naddrs;
    for (size_t i = 0; i < g->nl; i++) {
        g->ul[i].w = g->tl[i].w = w;
        g->ul[i].la = g->tl[i].la = &rg->addrs[i];
        g->ul[i].fd = g->tl[i].fd = -1;
    }
    for (size_t b = 0; b < cfg->nblocks && b < SRV_BLOCKS_MAX; b++) {
        g->nblocks = b + 1;
        if (build_block(w, g, b, err, errlen) != 0) {
            srv_wgen_free(w, g);
            return NULL;
        }
    }
    return g;
}

void srv_wgen_free(struct worker *w, struct wgen *g)
{
    if (!g) return;
    for (size_t b = 0; b < g->nblocks; b++) {
        struct wblock *wb = &g->blocks[b];
        if (wb->rc && wb->own_rc) rcp_cache_free(wb->rc);
        if (wb->fwd && wb->own_fwd) fwd_free(wb->fwd);
        if (wb->l1 && wb->own_l1) l1_free(wb->l1);
    }
    for (size_t i = 0; i < g->nl; i++) {
        if (g->ul[i].own && g->ul[i].fd >= 0) {
            if (w->loop) ev_io_stop(w->loop, &g->ul[i].io);
            close(g->ul[i].fd);
        }
        if (g->tl[i].own && g->tl[i].fd >= 0) {
            if (w->loop) ev_io_stop(w->loop, &g->tl[i].io);
            close(g->tl[i].fd);
        }
    }
    free(g->ul);
    free(g->tl);
    srv_stats_free(&g->live);
    srv_stats_free(&g->snap);
    if (g->rg) srv_rgen_release(g->rg);
    free(g);
}

/* The kept parts of the old generation become g's. */
static void take_parts(struct wgen *g, struct wgen *old)
{
    for (size_t b = 0; b < g->nblocks; b++) {
        int from = g->keep[b].from;
        if (!old || from < 0 || (size_t)from >= old->nblocks) continue;
        struct wblock *wb = &g->blocks[b], *ob = &old->blocks[from];
        if (wb->l1 && !wb->own_l1 && wb->l1 == ob->l1 && ob->own_l1)
            ob->own_l1 = false, wb->own_l1 = true;
        if (wb->rc && !wb->own_rc && wb->rc == ob->rc && ob->own_rc)
            ob->own_rc = false, wb->own_rc = true;
        if (wb->fwd && !wb->own_fwd && wb->fwd == ob->fwd && ob->own_fwd)
            ob->own_fwd = false, wb->own_fwd = true;
    }
}

/* Listeners: new sockets from fds, the old generation's socket for an unchanged address. */
static void take_listeners(struct worker *w, struct wgen *g, struct wgen *old, int (*fds)[2])
{
    if (old)
        for (size_t j = 0; j < old->nl; j++) {
            ev_io_stop(w->loop, &old->ul[j].io);
            ev_io_stop(w->loop, &old->tl[j].io);
        }
    for (size_t i = 0; i < g->nl; i++) {
        struct ulistener *ul = &g->ul[i];
        struct tlistener *tl = &g->tl[i];
        if (fds && fds[i][0] >= 0) {
            ul->fd = fds[i][0];
            tl->fd = fds[i][1];
            ul->own = tl->own = true;
        } else {
            for (size_t j = 0; old && j < old->nl; j++) {
                if (!srv_laddr_same(old->ul[j].la, ul->la)) continue;
                if (old->ul[j].own) {
                    ul->fd = old->ul[j].fd;
                    ul->own = true;
                    old->ul[j].own = false;
                }
                if (old->tl[j].own) {
                    tl->fd = old->tl[j].fd;
                    tl->own = true;
                    old->tl[j].own = false;
                }
                break;
            }
        }
        ev_io_init(&ul->io, srv_udp_on_read, ul->fd, EV_READ);
        ul->io.data = ul;
        ev_io_init(&tl->io, srv_tcp_on_accept, tl->fd, EV_READ);
        tl->io.data = tl;
        if (w->stopping) continue;
        if (ul->fd >= 0) ev_io_start(w->loop, &ul->io);
        if (tl->fd >= 0 && w->accepting) ev_io_start(w->loop, &tl->io);
    }
    /* Removed addresses: no more connections. Their UDP sockets stay open (not read) until
     * the old generation is freed: its queries in flight answer through them. */
    for (size_t j = 0; old && j < old->nl; j++)
        if (old->tl[j].own && old->tl[j].fd >= 0) {
            close(old->tl[j].fd);
            old->tl[j].fd = -1;
            old->tl[j].own = false;
        }
}

/* TCP connections follow their address into g, or finish what they hold and close. */
static void move_conns(struct worker *w, struct wgen *g)
{
    for (struct tconn *c = w->conns, *next; c; c = next) {
        next = c->next;
        if (c->dead) continue;
        const struct laddr *to = NULL;
        for (size_t i = 0; i < g->rg->naddrs && !to; i++)
            if (srv_laddr_same(&g->rg->addrs[i], c->la)) to = &g->rg->addrs[i];
        if (to) {
            c->la = to;
            continue;
        }
        c->eof = true;
        ev_io_stop(w->loop, &c->rio);
        if (c->inflight == 0 && c->woff >= c->wlen) srv_tconn_close(c);
    }
}

void srv_wgen_commit(struct worker *w, struct wgen *g, int (*fds)[2])
{
    struct wgen *old = w->gen;
    take_parts(g, old);
    take_listeners(w, g, old, fds);
    if (old) move_conns(w, g);

    pthread_mutex_lock(&w->mu);
    if (old) srv_stats_carry(&g->live, g->rg->cfg, &w->live, old->rg->cfg, g->keep);
    struct srv_stats t = w->live;
    w->live = g->live;
    g->live = t;
    t = w->snap;
    w->snap = g->snap;
    g->snap = t;
    srv_stats_free(&g->live);
    srv_stats_free(&g->snap);
    w->gen = g;
    w->blocks = g->blocks;
    w->nblocks = g->nblocks;
    w->ul = g->ul;
    w->tl = g->tl;
    w->nl = g->nl;
    pthread_mutex_unlock(&w->mu);

    struct wgen **tail = &w->gens;
    while (*tail) tail = &(*tail)->next;
    *tail = g;
    if (old) {
        old->retired_at = ev_now(w->loop);
        w->gc_timer.repeat = GC_PERIOD;
        ev_timer_again(w->loop, &w->gc_timer);
    }
}

/* A TCP connection of a removed address still points at g's listen addresses. */
static bool gen_has_conns(const struct worker *w, const struct wgen *g)
{
    for (const struct tconn *c = w->conns; c; c = c->next)
        for (size_t i = 0; i < g->rg->naddrs; i++)
            if (c->la == &g->rg->addrs[i]) return true;
    return false;
}

void srv_worker_on_gc(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct worker *w = t->data;
    double now = ev_now(loop);
    /* UDP replies queued in this loop iteration may leave through a socket of the oldest
     * generation (a removed address): send them before it can be closed */
    srv_udp_async_flush(w);
    while (w->gens && w->gens != w->gen) {
        struct wgen *g = w->gens;
        if (g->inflight || gen_has_conns(w, g)) break;
        if (gen_writes_pending(g) && now - g->retired_at < GC_WRITES_BUDGET) break;
        w->gens = g->next;
        srv_wgen_free(w, g);
    }
    if (w->gens == w->gen) ev_timer_stop(loop, t);
}

/* ---- the handshake ----------------------------------------------------------------------- */

void srv_worker_on_reload(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)loop, (void)revents;
    struct worker *w = a->data;
    pthread_mutex_lock(&w->mu);
    int cmd = w->rl_cmd;
    struct rgen *rg = w->rl_rg;
    int(*fds)[2] = w->rl_fds;
    w->rl_cmd = RL_NONE;
    pthread_mutex_unlock(&w->mu);

    char err[512] = "";
    int state;
    switch (cmd) {
    case RL_BUILD:
        if (w->rl_built) srv_wgen_free(w, w->rl_built);
        w->rl_built = NULL;
        if (w->stopping) {
            snprintf(err, sizeof err, "shutting down");
            state = RL_FAILED;
            break;
        }
        w->rl_built = srv_wgen_build(w, rg, err, sizeof err);
        state = w->rl_built ? RL_BUILT : RL_FAILED;
        break;
    case RL_COMMIT:
        if (!w->rl_built) {
            snprintf(err, sizeof err, "nothing built");
            state = RL_FAILED;
            break;
        }
        srv_wgen_commit(w, w->rl_built, fds);
        w->rl_built = NULL;
        state = RL_COMMITTED;
        break;
    case RL_ABORT:
        srv_wgen_free(w, w->rl_built);
        w->rl_built = NULL;
        state = RL_ABORTED;
        break;
    default: return;
    }
    pthread_mutex_lock(&w->mu);
    w->rl_state = state;
    snprintf(w->rl_err, sizeof w->rl_err, "%s", err);
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* Posts cmd to w and waits for its answer (RL_PENDING when it did not answer in time). */
static int rl_run(struct worker *w, int cmd, struct rgen *rg, int (*fds)[2], char *err,
                  size_t errlen)
{
    pthread_mutex_lock(&w->mu);
    w->rl_cmd = cmd;
    w->rl_rg = rg;
    w->rl_fds = fds;
    w->rl_state = RL_PENDING;
    w->rl_err[0] = '\0';
    pthread_mutex_unlock(&w->mu);
    ev_async_send(w->loop, &w->reload_async);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)RL_WAIT;
    pthread_mutex_lock(&w->mu);
    while (w->rl_state == RL_PENDING)
        if (pthread_cond_timedwait(&w->cv, &w->mu, &ts) == ETIMEDOUT) break;
    int st = w->rl_state;
    if (st == RL_PENDING) w->rl_cmd = RL_NONE;
    if (err && w->rl_err[0]) snprintf(err, errlen, "%s", w->rl_err);
    pthread_mutex_unlock(&w->mu);
    return st;
}

static void close_fds(int (*fds)[2], size_t n)
{
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 2; k++)
            if (fds[i][k] >= 0) close(fds[i][k]);
}

int srv_runtime_reload(struct srv_runtime *rt, struct srv_config *cfg,
                       struct srv_reload_report *rep, char *err, size_t errlen)
{
    struct srv_reload_report r;
    memset(&r, 0, sizeof r);
    if (!rt->started) {
        snprintf(err, errlen, "not running");
        return -1;
    }
    for (unsigned i = 0; i < rt->nworkers; i++)
        if (!rt->w[i]->running) {
            snprintf(err, errlen, "worker %u is not running", i);
            return -1;
        }
    struct rgen *rg = calloc(1, sizeof *rg);
    if (!rg) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    rg->cfg = cfg;
    atomic_init(&rg->refs, 1);
    if (srv_rgen_addrs(rg, err, errlen) != 0) {
        rg->cfg = NULL; /* the caller keeps it */
        srv_rgen_release(rg);
        return -1;
    }
    const struct rgen *cur = rt->rg;
    size_t na = rg->naddrs, nw = rt->nworkers;
    int(*fds)[2] = malloc((na ? na : 1) * nw * sizeof *fds);
    if (!fds) {
        snprintf(err, errlen, "out of memory");
        rg->cfg = NULL;
        srv_rgen_release(rg);
        return -1;
    }
    for (size_t i = 0; i < na * nw; i++) fds[i][0] = fds[i][1] = -1;

    /* New addresses: every worker's sockets, bound now so that a bind error fails here. */
    int rc = 0;
    for (size_t i = 0; i < na && rc == 0; i++) {
        bool kept = false;
        for (size_t j = 0; j < cur->naddrs && !kept; j++)
            kept = srv_laddr_same(&cur->addrs[j], &rg->addrs[i]);
        if (kept) {
            r.addrs_kept++;
            continue;
        }
        r.addrs_added++;
        for (size_t k = 0; k < nw && rc == 0; k++) {
            int(*f)[2] = &fds[k * na + i];
            if (((*f)[0] = srv_open_socket(&rg->addrs[i], SOCK_DGRAM, err, errlen)) < 0 ||
                ((*f)[1] = srv_open_socket(&rg->addrs[i], SOCK_STREAM, err, errlen)) < 0)
                rc = -1;
        }
    }
    r.addrs_removed = (unsigned)(cur->naddrs - r.addrs_kept);

    /* Build everywhere, then commit everywhere (or abort what was built). */
    bool asked = false;
    for (unsigned k = 0; k < nw && rc == 0; k++) {
        asked = true;
        int st = rl_run(rt->w[k], RL_BUILD, rg, NULL, err, errlen);
        if (st != RL_BUILT) {
            if (st == RL_PENDING) snprintf(err, errlen, "worker %u did not answer", k);
            rc = -1;
        }
    }
    if (rc != 0) {
        /* abort is harmless where nothing was built */
        for (unsigned k = 0; k < nw && asked; k++) rl_run(rt->w[k], RL_ABORT, NULL, NULL, NULL, 0);
        close_fds(fds, na * nw);
        free(fds);
        rg->cfg = NULL;
        srv_rgen_release(rg);
        return -1;
    }
    bool late = false;
    for (unsigned k = 0; k < nw; k++)
        late |= rl_run(rt->w[k], RL_COMMIT, rg, &fds[k * na], NULL, 0) == RL_PENDING;
    if (!late) free(fds); /* the sockets now belong to the workers (a late one still reads) */

    struct srv_reload_keep keep[SRV_BLOCKS_MAX];
    srv_reload_plan(cur->cfg, cfg, keep);
    r.blocks = (unsigned)cfg->nblocks;
    for (size_t b = 0; b < cfg->nblocks; b++) {
        r.kept_l1 += keep[b].l1;
        r.kept_redis += keep[b].redis;
        r.kept_forward += keep[b].forward;
    }
    struct rgen *old = rt->rg;
    rt->rg = rg;
    srv_rgen_release(old);
    if (rep) *rep = r;
    return 0;
}
