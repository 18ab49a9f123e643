/* src/topology/cluster.c — the Redis Cluster router: routes a request by the hash slot of its
 * key to the slot's primary (writes, read_from primary) or to a node of the slot's shard
 * (reads: random, or the lowest measured RTT), and follows the cluster's error replies.
 *
 * Each request is wrapped in a small context (from a free list: nothing allocated per
 * request in steady state) that keeps a copy of the commands, so that it can send them
 * again:
 *   - MOVED slot host:port: the slot table is patched at once, a background refresh is
 *     asked for (coalesced, throttled), and the commands not yet answered go to the target;
 *   - ASK slot host:port: ASKING + those commands go to the target, the table is untouched;
 *   - TRYAGAIN / CLUSTERDOWN: sent again after a jittered backoff, at most CL_TRIES_MAX
 *     times;
 * all inside the request's deadline and at most max_redirects redirects; past a limit the
 * error reply itself reaches the caller. When a command of an attempt is redirected, the
 * replies of the rest of that attempt are dropped and everything from that command on is
 * sent again (a GET + TTL whose GET was MOVED is resent whole). ASKING's own reply is never
 * shown: the caller gets exactly one callback per command, in order.
 *
 * Discovery, refresh, latency probes and the slot table's life are in cluster_discover.c;
 * sharing one discovery among the workers' routers (a hub) in cluster_share.c.
 */
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "topology/cluster_internal.h"
#include "topology/pool_internal.h"
#include "topology/topology.h"

#define REQ_FREE_MAX 1024

struct cl_req {
    struct cl_req *next, *prev; /* free list, backoff list */
    struct cluster *cl;
    topo_reply_fn *fn;
    void *priv;
    double deadline, backoff, sent_at;
    unsigned flags, slot, redirects, tries;
    bool write, in_backoff;
    size_t n;         /* the caller's commands */
    size_t delivered; /* callbacks given to the caller */

    /* the current attempt */
    struct cl_node *node;
    bool asking, swallow;
    size_t att_n, att_seen, att_from;
    struct cl_redirect redir;
    ev_timer timer;

    /* the caller's commands, copied: cmds[0..n) over argv/lens over buf */
    struct resp_cmd *cmds, *att; /* att: one attempt's commands (ASKING first when asking) */
    size_t cmdcap, attcap;
    const char **argv;
    size_t *lens;
    size_t argcap;
    char *buf;
    size_t bufcap;
};

static const char asking_arg[] = "ASKING";
static const size_t asking_len = sizeof asking_arg - 1;
static const char *const asking_argv[1] = {asking_arg};

/* ---- small helpers ------------------------------------------------------------------ */

static uint64_t cl_rand(struct cluster *cl)
{
    return topo_rng_next(&cl->rng);
}

double cl_rand_unit(struct cluster *cl)
{
    return topo_rng_unit(&cl->rng);
}

void cl_rtt_sample(struct cl_node *n, double sample, double now)
{
    if (sample < 0) sample = 0;
    n->rtt = n->rtt < 0 ? sample : n->rtt * (1 - CL_RTT_ALPHA) + sample * CL_RTT_ALPHA;
    n->last_sample = now;
}

struct cl_node *cl_node_get(struct cluster *cl, const char *host, uint16_t port)
{
    for (struct cl_node *n = cl->nodes; n; n = n->next)
        if (n->port == port && strcmp(n->host, host) == 0) return n;
    if (cl->closing) return NULL;
    struct cl_node *n = calloc(1, sizeof *n);
    if (!n) return NULL;
    snprintf(n->host, sizeof n->host, "%s", host);
    n->cl = cl;
    n->port = port;
    n->rtt = -1;
    n->last_used = ev_now(cl->loop);
    struct topo_node_opts o = cl->tmpl;
    snprintf(o.host, sizeof o.host, "%s", host);
    o.port = port;
    o.conn.username = cl->username;
    o.conn.password = cl->password;
    o.conn.client_name = cl->client_name;
    n->pool = topo_pool_new(cl->loop, cl->resolver, &o);
    if (!n->pool) {
        free(n);
        return NULL;
    }
    n->next = cl->nodes;
    cl->nodes = n;
    cl->nnodes++;
    return n;
}

/* ---- request contexts --------------------------------------------------------------- */

static void req_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

static struct cl_req *req_get(struct cluster *cl)
{
    struct cl_req *q = cl->freel;
    if (q) {
        cl->freel = q->next;
        cl->nfree--;
    } else {
        q = calloc(1, sizeof *q);
        if (!q) return NULL;
        ev_init(&q->timer, req_timer_cb);
        q->timer.data = q;
    }
    q->next = q->prev = NULL;
    q->cl = cl;
    q->delivered = 0;
    q->redirects = q->tries = 0;
    q->node = NULL;
    q->in_backoff = false;
    return q;
}

static void req_destroy(struct cl_req *q)
{
    free(q->cmds);
    free(q->att);
    free(q->argv);
    free(q->lens);
    free(q->buf);
    free(q);
}

static void req_put(struct cl_req *q)
{
    struct cluster *cl = q->cl;
    q->fn = NULL;
    if (cl->nfree >= REQ_FREE_MAX || q->bufcap > 65536 + 1024) {
        req_destroy(q);
        return;
    }
    q->next = cl->freel;
    cl->freel = q;
    cl->nfree++;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 4;
    while (c < need) c *= 2;
    void *np = realloc(*p, c * elem);
    if (!np) return -1;
    *p = np;
    *cap = c;
    return 0;
}

/* Copies the commands into the context (its arrays are reused from request to request). */
static int req_copy(struct cl_req *q, const struct resp_cmd *cmds, size_t n)
{
    size_t nargs = 0, bytes = 0;
    for (size_t i = 0; i < n; i++) {
        nargs += cmds[i].argc;
        for (size_t j = 0; j < cmds[i].argc; j++) bytes += cmds[i].lens[j];
    }
    /* argv and lens share argcap: both grow before it is updated */
    size_t ac = q->argcap;
    if (grow((void **)&q->cmds, &q->cmdcap, n, sizeof *q->cmds) ||
        grow((void **)&q->att, &q->attcap, n + 1, sizeof *q->att) ||
        grow((void **)&q->argv, &ac, nargs ? nargs : 1, sizeof *q->argv))
        return -1;
    ac = q->argcap;
    if (grow((void **)&q->lens, &ac, nargs ? nargs : 1, sizeof *q->lens)) return -1;
    q->argcap = ac;
    if (bytes > q->bufcap) {
        char *b = malloc(bytes);
        if (!b) return -1;
        free(q->buf);
        q->buf = b;
        q->bufcap = bytes;
    }
    size_t a = 0, off = 0;
    for (size_t i = 0; i < n; i++) {
        q->cmds[i].argc = cmds[i].argc;
        q->cmds[i].argv = q->argv + a;
        q->cmds[i].lens = q->lens + a;
        for (size_t j = 0; j < cmds[i].argc; j++, a++) {
            size_t l = cmds[i].lens[j];
            if (l) memcpy(q->buf + off, cmds[i].argv[j], l);
            q->argv[a] = q->buf + off;
            q->lens[a] = l;
            off += l;
        }
    }
    q->n = n;
    return 0;
}

static void req_deliver(struct cl_req *q, size_t idx, const struct resp_value *reply,
                        const struct resp_err *err)
{
    topo_reply_fn *fn = q->fn;
    void *priv = q->priv;
    q->delivered++;
    if (q->delivered >= q->n) req_put(q);
    fn(priv, idx, reply, err);
}

static void req_fail_rest(struct cl_req *q, const struct resp_err *err)
{
    size_t n = q->n;
    for (size_t i = q->delivered; i < n; i++) req_deliver(q, i, NULL, err);
}

/* ---- routing ------------------------------------------------------------------------ */

static bool node_good(const struct cl_node *n, double now)
{
    return n->bad_until <= now;
}

/* A read target among the shard's nodes per read_from. */
static struct cl_node *pick_read(struct cluster *cl, const struct cl_shard *s, double now)
{
    struct cl_node *cand[CL_REPLICAS_MAX + 1];
    unsigned nc = 0;
    if (node_good(s->primary, now)) cand[nc++] = s->primary;
    for (unsigned i = 0; i < s->nreplicas; i++)
        if (node_good(s->replicas[i], now)) cand[nc++] = s->replicas[i];
    if (nc == 0) return s->primary;
    if (nc == 1) return cand[0];
    if (cl->read_from == TOPO_READ_LATENCY && cl_rand(cl) % CL_EXPLORE != 0) {
        /* The lowest RTT wins; nodes within a small margin of it count as equal and share
         * the reads (on one LAN, or loopback, that is all of them). Unmeasured nodes wait
         * for their PING unless nothing is measured yet. One read in CL_EXPLORE goes to any
         * node of the shard: an idle node's PING sees wake-up delays that a busy node's
         * replies do not, and without real traffic it would never catch up. */
        double best = -1;
        for (unsigned i = 0; i < nc; i++)
            if (cand[i]->rtt >= 0 && (best < 0 || cand[i]->rtt < best)) best = cand[i]->rtt;
        if (best >= 0) {
            double margin = best * 0.25 > 0.001 ? best * 0.25 : 0.001;
            unsigned k = 0;
            for (unsigned i = 0; i < nc; i++)
                if (cand[i]->rtt >= 0 && cand[i]->rtt <= best + margin) cand[k++] = cand[i];
            nc = k;
        }
    }
    return cand[cl_rand(cl) % nc];
}

/* The node for the request's slot, or NULL with err set. */
static struct cl_node *route(struct cluster *cl, unsigned slot, bool write, struct resp_err *err)
{
    if (!cl->have_table) {
        resp_err_set(err, RESP_EK_CONNECTION, "cluster: no slot table yet (%s)",
                     cl->why.msg[0] ? cl->why.msg : "discovery under way");
        return NULL;
    }
    uint16_t sh = cl->slot[slot];
    if (sh == CL_NO_SHARD || sh >= cl->nshards) {
        resp_err_set(err, RESP_EK_CONNECTION, "cluster: slot %u is not served by any node", slot);
        cl_refresh_soon(cl);
        return NULL;
    }
    const struct cl_shard *s = &cl->shards[sh];
    if (write || cl->read_from == TOPO_READ_PRIMARY || s->nreplicas == 0) return s->primary;
    return pick_read(cl, s, ev_now(cl->loop));
}

/* ---- attempts ----------------------------------------------------------------------- */

static void req_reply(void *priv, size_t idx, const struct resp_value *reply,
                      const struct resp_err *err);

/* Sends the commands not yet answered to node (ASKING first when asking). */
static void req_send(struct cl_req *q, struct cl_node *node, bool asking)
{
    struct cluster *cl = q->cl;
    size_t k = 0;
    if (asking) {
        q->att[k].argc = 1;
        q->att[k].argv = asking_argv;
        q->att[k].lens = &asking_len;
        k++;
    }
    for (size_t i = q->delivered; i < q->n; i++) q->att[k++] = q->cmds[i];
    q->node = node;
    q->asking = asking;
    q->swallow = false;
    q->att_n = k;
    q->att_seen = 0;
    q->att_from = q->delivered;
    q->sent_at = ev_now(cl->loop);
    node->busy++;
    node->last_used = q->sent_at;
    /* may call req_reply before returning (errors known at once): q is not touched after */
    topo_pool_exec(node->pool, q->att, k, q->deadline, q->flags, req_reply, q);
}

static void req_route_send(struct cl_req *q)
{
    struct resp_err e;
    struct cl_node *node = route(q->cl, q->slot, q->write, &e);
    if (!node) {
        req_fail_rest(q, &e);
        return;
    }
    req_send(q, node, false);
}

static void backoff_unlink(struct cl_req *q)
{
    struct cluster *cl = q->cl;
    if (q->prev)
        q->prev->next = q->next;
    else
        cl->backoff = q->next;
    if (q->next) q->next->prev = q->prev;
    q->next = q->prev = NULL;
    q->in_backoff = false;
}

static void req_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct cl_req *q = w->data;
    backoff_unlink(q);
    if (q->redir.kind == CL_REDIR_TRYAGAIN && q->node)
        req_send(q, q->node, false);
    else
        req_route_send(q);
}

/* The attempt is over and a redirect or retry is pending: follow it. */
static void req_follow(struct cl_req *q)
{
    struct cluster *cl = q->cl;
    struct resp_err e;
    double now = ev_now(cl->loop);
    if (cl->closing) {
        resp_err_set(&e, RESP_EK_CONNECTION, "cluster: shutting down");
        req_fail_rest(q, &e);
        return;
    }
    if (now >= q->deadline) {
        resp_err_set(&e, RESP_EK_TIMEOUT, "cluster: deadline passed while following a redirect");
        req_fail_rest(q, &e);
        return;
    }
    switch (q->redir.kind) {
    case CL_REDIR_MOVED:
    case CL_REDIR_ASK: {
        struct cl_node *t = cl_node_get(cl, q->redir.host, q->redir.port);
        if (!t) {
            resp_err_set(&e, RESP_EK_OTHER, "cluster: out of memory following a redirect");
            req_fail_rest(q, &e);
            return;
        }
        req_send(q, t, q->redir.kind == CL_REDIR_ASK);
        return;
    }
    case CL_REDIR_TRYAGAIN:
    case CL_REDIR_CLUSTERDOWN:
        q->in_backoff = true;
        q->prev = NULL;
        q->next = cl->backoff;
        if (cl->backoff) cl->backoff->prev = q;
        cl->backoff = q;
        ev_timer_set(&q->timer, q->backoff, 0);
        ev_timer_start(cl->loop, &q->timer);
        return;
    case CL_REDIR_NONE: break;
    }
    resp_err_set(&e, RESP_EK_OTHER, "cluster: internal error");
    req_fail_rest(q, &e);
}

/* Whether an error reply is followed (and the bookkeeping of doing so). */
static bool req_can_follow(struct cl_req *q, const struct cl_redirect *rd)
{
    struct cluster *cl = q->cl;
    double now = ev_now(cl->loop);
    switch (rd->kind) {
    case CL_REDIR_MOVED:
    case CL_REDIR_ASK:
        if (q->redirects >= cl->max_redirects || now >= q->deadline) return false;
        q->redirects++;
        return true;
    case CL_REDIR_TRYAGAIN:
    case CL_REDIR_CLUSTERDOWN: {
        if (q->tries >= CL_TRIES_MAX) return false;
        double b = topo_backoff(cl->tmpl.pool.min_backoff, cl->tmpl.pool.max_backoff, q->tries,
                                cl_rand_unit(cl));
        if (b <= 0) b = 0.001;
        if (now + b >= q->deadline) return false;
        q->tries++;
        q->backoff = b;
        return true;
    }
    case CL_REDIR_NONE: break;
    }
    return false;
}

static void req_reply(void *priv, size_t idx, const struct resp_value *reply,
                      const struct resp_err *err)
{
    struct cl_req *q = priv;
    struct cluster *cl = q->cl;
    struct cl_node *node = q->node;
    double now = ev_now(cl->loop);
    q->att_seen++;
    bool last = q->att_seen >= q->att_n;
    if (last && node->busy) node->busy--;
    if (q->asking && idx == 0) { /* ASKING's +OK (or its error): never the caller's */
        if (last) req_follow(q); /* cannot happen: ASKING never travels alone */
        return;
    }
    if (q->swallow) {
        if (last) req_follow(q);
        return;
    }
    size_t ci = q->delivered; /* replies arrive in order: this is the next caller command */
    if (err) {
        if (err->kind == RESP_EK_CONNECTION || err->kind == RESP_EK_TIMEOUT)
            node->bad_until = now + CL_BAD_FOR;
        if (err->kind == RESP_EK_CONNECTION && !cl->closing) cl_refresh_soon(cl);
        req_deliver(q, ci, NULL, err);
        return;
    }
    if (ci == q->att_from) cl_rtt_sample(node, now - q->sent_at, now);
    if (reply && (reply->type == RESP_ERROR || reply->type == RESP_BULK_ERROR) && !cl->closing) {
        struct cl_redirect rd;
        enum cl_redir_kind k =
            cl_parse_redirect(reply->len ? reply->str : "", reply->len, node->host, &rd);
        if (k == CL_REDIR_MOVED) {
            struct cl_node *t = cl_node_get(cl, rd.host, rd.port);
            /* a leader's patch reaches the other workers now, not after the refresh */
            if (t && cl_patch_slot(cl, rd.slot, t)) cl_share_publish(cl);
            cl_refresh_soon(cl);
        } else if (k == CL_REDIR_CLUSTERDOWN) {
            cl_refresh_soon(cl);
        }
        if (k != CL_REDIR_NONE && req_can_follow(q, &rd)) {
            q->redir = rd;
            q->swallow = true;
            if (last) req_follow(q);
            return;
        }
    }
    req_deliver(q, ci, reply, NULL);
}

/* ---- the router --------------------------------------------------------------------- */

static int cl_exec(struct topo_router *r, const void *key, size_t keylen, bool write,
                   const struct resp_cmd *cmds, size_t n, double deadline, unsigned flags,
                   topo_reply_fn *fn, void *priv)
{
    struct cluster *cl = (struct cluster *)r;
    struct resp_err e;
    if (n == 0) return 0;
    if (cl_follower(cl)) cl_share_sync(cl);
    unsigned slot = topo_cluster_slot(key, keylen);
    struct cl_node *node = route(cl, slot, write, &e);
    if (!node) {
        for (size_t i = 0; i < n; i++) fn(priv, i, NULL, &e);
        return 0;
    }
    struct cl_req *q = req_get(cl);
    if (!q || req_copy(q, cmds, n) != 0) {
        if (q) req_put(q);
        resp_err_set(&e, RESP_EK_OTHER, "cluster: out of memory");
        for (size_t i = 0; i < n; i++) fn(priv, i, NULL, &e);
        return 0;
    }
    q->fn = fn;
    q->priv = priv;
    q->deadline = deadline;
    q->flags = flags;
    q->write = write;
    q->slot = slot;
    req_send(q, node, false);
    return 0;
}

static void cl_free(struct topo_router *r)
{
    struct cluster *cl = (struct cluster *)r;
    cl->closing = true;
    cl_share_leave(cl); /* first: no hub callback may run on a half-freed router */
    cl_discover_stop(cl);
    struct resp_err e;
    resp_err_set(&e, RESP_EK_CONNECTION, "cluster: shutting down");
    while (cl->backoff) {
        struct cl_req *q = cl->backoff;
        ev_timer_stop(cl->loop, &q->timer);
        backoff_unlink(q);
        req_fail_rest(q, &e);
    }
    /* pools fail what they hold: our callbacks see `closing` and only deliver */
    for (struct cl_node *n = cl->nodes; n; n = n->next) {
        topo_pool_free(n->pool);
        n->pool = NULL;
    }
    while (cl->nodes) {
        struct cl_node *n = cl->nodes;
        cl->nodes = n->next;
        free(n);
    }
    while (cl->freel) {
        struct cl_req *q = cl->freel;
        cl->freel = q->next;
        req_destroy(q);
    }
    cl_map_free(&cl->map);
    free(cl->shards);
    free(cl->cands);
    free(cl->seeds);
    free(cl->username);
    free(cl->password);
    free(cl->client_name);
    cl_share_release(cl);
    free(cl);
}

static const struct topo_router_ops cl_ops = {
    .exec = cl_exec,
    .free = cl_free,
};

static char *dup_opt(const char *s, bool *oom)
{
    if (!s) return NULL;
    char *d = strdup(s);
    if (!d) *oom = true;
    return d;
}

struct topo_router *topo_cluster_new(struct ev_loop *loop, struct topo_resolver *resolver,
                                     const struct topo_cluster_opts *o)
{
    if (!loop || !o || o->nseeds == 0 || !o->seeds) return NULL;
    struct cluster *cl = calloc(1, sizeof *cl);
    if (!cl) return NULL;
    cl->r.ops = &cl_ops;
    cl->loop = loop;
    cl->resolver = resolver;
    cl->tmpl = o->data;
    cl->tmpl.conn.db = 0;
    cl->tmpl.conn.host = NULL;
    cl->tmpl.conn.addr = NULL;
    /* READONLY on every connection when reads may go to replicas: a node that turns from
     * primary into replica then still serves the reads routed to it before a refresh. */
    cl->tmpl.conn.readonly = o->read_from != TOPO_READ_PRIMARY;
    cl->read_from = o->read_from;
    cl->max_redirects = o->max_redirects ? o->max_redirects : CL_MAX_REDIRECTS;
    cl->rng = topo_pool_rng_seed(cl);
    cl_map_init(&cl->map);
    for (size_t i = 0; i < TOPO_CLUSTER_SLOTS; i++) cl->slot[i] = CL_NO_SHARD;
    bool oom = false;
    cl->username = dup_opt(o->data.conn.username, &oom);
    cl->password = dup_opt(o->data.conn.password, &oom);
    cl->client_name = dup_opt(o->data.conn.client_name, &oom);
    cl->tmpl.conn.username = cl->tmpl.conn.password = cl->tmpl.conn.client_name = NULL;
    cl->seeds = calloc(o->nseeds, sizeof *cl->seeds);
    if (oom || !cl->seeds) {
        cl_free(&cl->r);
        return NULL;
    }
    memcpy(cl->seeds, o->seeds, o->nseeds * sizeof *cl->seeds);
    cl->nseeds = o->nseeds;
    resp_err_set(&cl->why, RESP_EK_CONNECTION, "discovery under way");
    cl_discover_init(cl, cl_share_join(cl, o->data.hub));
    return &cl->r;
}
