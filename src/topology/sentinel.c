/* src/topology/sentinel.c — the Sentinel router: writes go to the master Sentinel names,
 * reads to one of its usable replicas picked at random per request (the master when there
 * is none). Each data node has its own pool (pool.c) built from the data template.
 *
 * Discovery and following failovers (sentinel_watch.c) only ever swap which node is the
 * master and which are replicas; the request path reads those pointers and nothing else.
 * Until a master is known a request fails at once with RESP_EK_CONNECTION and a message
 * naming the master and why ("sentinel: no sentinel knows master mymaster").
 *
 * Requests pass through a small context (from a free list) that watches their outcome: a
 * READONLY reply to a write (the node was demoted) or a connection error on the master or
 * a replica asks for a discovery round (coalesced and throttled; the request itself keeps
 * its own deadline). The context also counts the requests in flight per node, so an old
 * master is drained rather than cut: a retired node takes no new requests and its pool is
 * freed once they have completed or the latest of their deadlines has passed.
 *
 * With a hub (topo_node_opts.hub) the routers of every worker share one discovery
 * (sentinel_share.c): only the leader runs sentinel_watch.c; the others apply its views.
 */
#include <ev.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "topology/pool_internal.h"
#include "topology/sentinel_internal.h"
#include "topology/sentinel_parse.h"
#include "topology/topology.h"

#define SN_CTX_FREE_MAX 1024

/* ---- small helpers ------------------------------------------------------------------ */

double sn_rand_unit(struct sentinel *s)
{
    return topo_rng_unit(&s->rng);
}

void sn_timer_arm(struct sentinel *s, ev_timer *w, double delay)
{
    if (s->closing) return;
    if (delay < 0.0001) delay = 0.0001;
    if (ev_timer_remaining(s->loop, w) <= delay) return;
    w->repeat = delay;
    ev_timer_again(s->loop, w);
}

void sn_timer_park(struct sentinel *s, ev_timer *w)
{
    if (s->closing) return;
    w->repeat = SN_PARK;
    ev_timer_again(s->loop, w);
}

/* Parked timers stay active (and unreferenced: they never keep the host's loop alive);
 * arming one only moves its expiry. */
static void sn_timer_start(struct sentinel *s, ev_timer *w,
                           void (*cb)(struct ev_loop *, ev_timer *, int), double every)
{
    ev_timer_init(w, cb, every, every);
    w->data = s;
    ev_timer_start(s->loop, w);
    ev_unref(s->loop);
}

static void sn_timer_stop(struct sentinel *s, ev_timer *w)
{
    if (!ev_is_active(w)) return;
    ev_ref(s->loop);
    ev_timer_stop(s->loop, w);
}

void sn_log(struct sentinel *s, const char *fmt, ...)
{
    if (!sn_leads(s)) return;
    char line[sizeof s->logged];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (strcmp(line, s->logged) == 0) return;
    memcpy(s->logged, line, sizeof line);
    fprintf(stderr, "redis_cache: sentinel %s: %s\n", s->name, line);
}

/* ---- data nodes --------------------------------------------------------------------- */

struct sn_node *sn_node_get(struct sentinel *s, const struct topo_hostport *hp)
{
    for (struct sn_node *n = s->nodes; n; n = n->next)
        if (!n->retired && sentinel_hostport_eq(&n->hp, hp)) return n;
    struct sn_node *n = calloc(1, sizeof *n);
    if (!n) return NULL;
    n->hp = *hp;
    struct topo_node_opts o = s->data;
    memcpy(o.host, hp->host, sizeof o.host);
    o.port = hp->port;
    n->pool = topo_pool_new(s->loop, s->resolver, &o);
    if (!n->pool) {
        free(n);
        return NULL;
    }
    n->next = s->nodes;
    s->nodes = n;
    return n;
}

void sn_node_retire(struct sentinel *s, struct sn_node *n)
{
    if (!n || n->retired) return;
    n->retired = true;
    for (size_t i = 0; i < s->nrep; i++) {
        if (s->replicas[i] != n) continue;
        s->replicas[i] = s->replicas[--s->nrep];
        break;
    }
    if (s->master == n) s->master = NULL;
    sn_timer_arm(s, &s->reap_timer, 0);
}

void sn_nodes_gc(struct sentinel *s)
{
    for (struct sn_node *n = s->nodes; n; n = n->next) {
        if (n->retired || n == s->master) continue;
        bool used = false;
        for (size_t i = 0; i < s->nrep && !used; i++) used = s->replicas[i] == n;
        if (!used) sn_node_retire(s, n);
    }
}

void sn_node_hold(struct sentinel *s, struct sn_node *n, double deadline)
{
    (void)s;
    n->refs++;
    if (deadline > n->last_deadline) n->last_deadline = deadline;
}

void sn_node_release(struct sentinel *s, struct sn_node *n)
{
    if (n->refs) n->refs--;
    if (n->retired && n->refs == 0) sn_timer_arm(s, &s->reap_timer, 0);
}

/* Frees retired nodes whose requests are done (or whose deadlines have all passed: their
 * pool then fails what is left). Runs from a timer, never inside a pool's callbacks. */
static void sn_reap_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct sentinel *s = w->data;
    (void)revents;
    sn_timer_park(s, w);
    double now = ev_now(loop);
    bool waiting = false;
    struct sn_node **pp = &s->nodes;
    while (*pp) {
        struct sn_node *n = *pp;
        if (!n->retired) {
            pp = &n->next;
        } else if (n->refs == 0 || now > n->last_deadline + 0.05) {
            *pp = n->next;
            topo_pool_free(n->pool); /* may call back into sn_node_release(n) */
            free(n);
            pp = &s->nodes; /* callbacks may have changed the list: start over */
        } else {
            waiting = true;
            pp = &n->next;
        }
    }
    if (waiting) sn_timer_arm(s, w, 0.25);
}

/* ---- requests ----------------------------------------------------------------------- */

static struct sn_ctx *sn_ctx_get(struct sentinel *s)
{
    struct sn_ctx *c = s->free_ctx;
    if (c) {
        s->free_ctx = c->next_free;
        s->nfree--;
        return c;
    }
    return malloc(sizeof *c);
}

static void sn_ctx_put(struct sentinel *s, struct sn_ctx *c)
{
    if (s->nfree >= SN_CTX_FREE_MAX) {
        free(c);
        return;
    }
    c->next_free = s->free_ctx;
    s->free_ctx = c;
    s->nfree++;
}

static bool sn_is_readonly(const struct resp_value *v)
{
    return v && (v->type == RESP_ERROR || v->type == RESP_BULK_ERROR) && v->len >= 8 &&
           memcmp(v->str, "READONLY", 8) == 0;
}

static void sn_ctx_cb(void *priv, size_t idx, const struct resp_value *reply,
                      const struct resp_err *err)
{
    struct sn_ctx *c = priv;
    struct sentinel *s = c->s;
    struct sn_node *n = c->node;
    if (!s->closing && !n->retired) {
        if (err && err->kind == RESP_EK_CONNECTION)
            sn_trigger(s); /* the master or a replica went away: ask the sentinels */
        else if (c->write && sn_is_readonly(reply))
            sn_trigger(s); /* writes reached a demoted master */
    }
    topo_reply_fn *fn = c->fn;
    void *up = c->priv;
    if (idx + 1 >= c->n) {
        sn_ctx_put(s, c);
        sn_node_release(s, n);
    }
    fn(up, idx, reply, err);
}

static void sn_fail_now(const struct resp_err *e, size_t n, topo_reply_fn *fn, void *priv)
{
    for (size_t i = 0; i < n; i++) fn(priv, i, NULL, e);
}

static struct sn_node *sn_pick_read(struct sentinel *s)
{
    if (s->nrep == 0) return s->master;
    size_t start = (size_t)(topo_rng_next(&s->rng) % s->nrep); /* modulo bias negligible here */
    for (size_t k = 0; k < s->nrep; k++) {
        struct sn_node *n = s->replicas[(start + k) % s->nrep];
        if (topo_breaker_state(n->pool) != TOPO_BREAKER_OPEN) return n; /* shared with a hub */
    }
    return s->master; /* every replica's breaker is open */
}

static int sn_exec(struct topo_router *r, const void *key, size_t keylen, bool write,
                   const struct resp_cmd *cmds, size_t n, double deadline, unsigned flags,
                   topo_reply_fn *fn, void *priv)
{
    struct sentinel *s = (struct sentinel *)r;
    (void)key, (void)keylen;
    if (n == 0) return 0;
    sn_share_sync(s);
    if (s->closing || !s->master) {
        struct resp_err e = s->down;
        if (s->closing) resp_err_set(&e, RESP_EK_CONNECTION, "sentinel %s: shutting down", s->name);
        sn_fail_now(&e, n, fn, priv);
        return 0;
    }
    struct sn_node *node = write ? s->master : sn_pick_read(s);
    struct sn_ctx *c = sn_ctx_get(s);
    if (!c) {
        struct resp_err e;
        resp_err_set(&e, RESP_EK_OTHER, "sentinel %s: out of memory", s->name);
        sn_fail_now(&e, n, fn, priv);
        return 0;
    }
    c->s = s;
    c->node = node;
    c->fn = fn;
    c->priv = priv;
    c->n = n;
    c->write = write;
    sn_node_hold(s, node, deadline);
    return topo_pool_exec(node->pool, cmds, n, deadline, flags, sn_ctx_cb, c);
}

/* ---- life cycle --------------------------------------------------------------------- */

static void sn_free(struct topo_router *r)
{
    struct sentinel *s = (struct sentinel *)r;
    s->closing = true;
    if (s->joined) topo_hub_leave(&s->member); /* the next member leads from now on */
    s->joined = false;
    sn_watch_stop(s);
    sn_timer_stop(s, &s->round_timer);
    sn_timer_stop(s, &s->refresh_timer);
    sn_timer_stop(s, &s->reap_timer);
    sn_timer_stop(s, &s->sub_timer);
    for (size_t i = 0; i < s->nsent; i++) {
        topo_pool_free(s->sentinels[i]->pool); /* our queries' callbacks free themselves */
        free(s->sentinels[i]);
    }
    s->master = NULL;
    s->nrep = 0;
    while (s->nodes) {
        struct sn_node *n = s->nodes;
        topo_pool_free(n->pool); /* callers get "shutting down" */
        s->nodes = n->next;
        free(n);
    }
    while (s->free_ctx) {
        struct sn_ctx *c = s->free_ctx;
        s->free_ctx = c->next_free;
        free(c);
    }
    free(s->s_user);
    free(s->s_pass);
    free(s->s_cname);
    free(s->d_user);
    free(s->d_pass);
    free(s->d_cname);
    free(s->pub);
    topo_hub_unref(s->hub);
    free(s);
}

static const struct topo_router_ops sn_ops = {
    .exec = sn_exec,
    .free = sn_free,
};

static bool sn_dup(const char *src, char **dst)
{
    *dst = NULL;
    if (!src) return true;
    *dst = strdup(src);
    return *dst != NULL;
}

struct topo_router *topo_sentinel_new(struct ev_loop *loop, struct topo_resolver *resolver,
                                      const struct topo_sentinel_opts *o)
{
    if (!loop || !o || o->nsentinels == 0 || !o->sentinels || !o->master[0]) return NULL;
    struct sentinel *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->r.ops = &sn_ops;
    s->loop = loop;
    s->resolver = resolver;
    snprintf(s->name, sizeof s->name, "%s", o->master);
    s->rng = topo_pool_rng_seed(s);
    if (o->data.hub) {
        topo_hub_ref(o->data.hub);
        s->hub = o->data.hub;
    }
    s->sconn = o->sentinel_conn;
    s->data = o->data;
    if (!sn_dup(o->sentinel_conn.username, &s->s_user) ||
        !sn_dup(o->sentinel_conn.password, &s->s_pass) ||
        !sn_dup(o->sentinel_conn.client_name, &s->s_cname) ||
        !sn_dup(o->data.conn.username, &s->d_user) || !sn_dup(o->data.conn.password, &s->d_pass) ||
        !sn_dup(o->data.conn.client_name, &s->d_cname)) {
        s->closing = true;
        sn_free(&s->r);
        return NULL;
    }
    s->sconn.username = s->s_user;
    s->sconn.password = s->s_pass;
    s->sconn.client_name = s->s_cname;
    s->sconn.db = 0; /* sentinels have no databases */
    s->sconn.addr = NULL;
    s->sconn.host = NULL;
    s->data.conn.username = s->d_user;
    s->data.conn.password = s->d_pass;
    s->data.conn.client_name = s->d_cname;
    double ct = s->sconn.connect_timeout > 0 ? s->sconn.connect_timeout : 1.0;
    s->qtimeout = ct + 1.0;
    resp_err_set(&s->down, RESP_EK_CONNECTION, "sentinel: discovering master %s", s->name);

    sn_timer_start(s, &s->round_timer, sn_round_timer_cb, SN_PARK);
    sn_timer_start(s, &s->reap_timer, sn_reap_cb, SN_PARK);
    sn_timer_start(s, &s->sub_timer, sn_sub_timer_cb, SN_PARK);
    /* a follower keeps the (lazy) sentinel pools in case it has to lead one day */
    for (size_t i = 0; i < o->nsentinels; i++) {
        if (sn_sentinel_add(s, &o->sentinels[i]) < 0) {
            sn_free(&s->r);
            return NULL;
        }
    }
    if (s->hub) sn_share_join(s);
    if (sn_leads(s)) sn_lead(s);
    return &s->r;
}

void sn_lead(struct sentinel *s)
{
    if (s->closing) return;
    if (!ev_is_active(&s->refresh_timer))
        sn_timer_start(s, &s->refresh_timer, sn_refresh_timer_cb, SN_REFRESH);
    sn_watch_start(s);
}

int topo_sentinel_master(struct topo_router *r, struct topo_hostport *out)
{
    if (!r || r->ops != &sn_ops) return -1;
    struct sentinel *s = (struct sentinel *)r;
    sn_share_sync(s);
    if (!s->master) return -1;
    *out = s->master->hp;
    return 0;
}

size_t topo_sentinel_replicas(struct topo_router *r, struct topo_hostport *out, size_t cap)
{
    if (!r || r->ops != &sn_ops) return 0;
    struct sentinel *s = (struct sentinel *)r;
    sn_share_sync(s);
    for (size_t i = 0; i < s->nrep && i < cap; i++) out[i] = s->replicas[i]->hp;
    return s->nrep;
}
