/* src/topology/cluster_discover.c — the Cluster router's view of the cluster: discovery of
 * the slot table (CLUSTER SHARDS, or CLUSTER SLOTS from a server without it), refreshes,
 * the latency probes and the dropping of nodes that left.
 *
 * Discovery asks one node at a time: the primaries of the current table (from a random
 * one), then the seeds in their configured order, then the replicas; a node that cannot be
 * reached or answers badly is skipped. Until a first table exists requests fail at once
 * and discovery is retried with a backoff (0.1 s doubling to 5 s). A bad reply never
 * replaces a good table. Refreshes (after MOVED, CLUSTERDOWN, a lost connection, and every
 * CL_REFRESH_PERIOD, every CL_REFRESH_LOADING while a replica is not online yet) are coalesced: one
 * at a time, at most one per CL_REFRESH_MIN.
 *
 * A one-second tick (which does not keep the loop alive) drives the periodic refresh, the
 * PING of idle nodes for read_from latency (their RTT is otherwise sampled from real
 * replies in cluster.c), and frees the pool of a node no longer in the table once it has
 * been unused for CL_NODE_GC_AFTER. Pools are freed only from this tick, never from inside
 * one of their own callbacks.
 *
 * With a hub (cluster_share.c) only the leader runs discovery and the periodic refresh; a
 * follower's reasons to refresh go to the leader, and its tick applies the leader's views.
 * The latency probes and the dropping of nodes stay per router: they are about this
 * worker's connections.
 *
 * Log lines (stderr, like the Sentinel router's): a new table whose primaries or ranges
 * differ from the last one, and each new reason while there is no table at all; only a
 * leader (or a router alone) logs, so a process says it once, not once per worker.
 */
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "topology/cluster_internal.h"
#include "topology/topology.h"

#define DISC_MIN_BACKOFF 0.1
#define DISC_MAX_BACKOFF 5.0

static void disc_next(struct cluster *cl);

/* ---- the table ---------------------------------------------------------------------- */

int cl_install(struct cluster *cl, const struct cl_map *m)
{
    struct cl_node **idx = calloc(m->nnodes ? m->nnodes : 1, sizeof *idx);
    struct cl_shard *sh = calloc(m->nshards ? m->nshards : 1, sizeof *sh);
    if (!idx || !sh) goto fail;
    for (size_t i = 0; i < m->nnodes; i++) {
        idx[i] = cl_node_get(cl, m->nodes[i].host, m->nodes[i].port);
        if (!idx[i]) goto fail;
    }
    for (struct cl_node *n = cl->nodes; n; n = n->next) n->in_table = false;
    for (size_t i = 0; i < m->nshards; i++) {
        const struct cl_map_shard *ms = &m->shards[i];
        sh[i].primary = idx[ms->primary];
        sh[i].primary->in_table = true;
        for (unsigned k = 0; k < ms->nreplicas; k++) {
            sh[i].replicas[k] = idx[ms->replicas[k]];
            sh[i].replicas[k]->in_table = true;
        }
        sh[i].nreplicas = ms->nreplicas;
    }
    memcpy(cl->slot, m->slot, sizeof cl->slot);
    free(cl->shards);
    cl->shards = sh;
    cl->capshards = m->nshards ? m->nshards : 1;
    cl->nshards = m->nshards;
    cl->have_table = true;
    free(idx);
    return 0;
fail:
    free(idx);
    free(sh);
    return -1;
}

bool cl_patch_slot(struct cluster *cl, unsigned slot, struct cl_node *primary)
{
    if (slot >= TOPO_CLUSTER_SLOTS || !cl->have_table) return false;
    size_t i;
    for (i = 0; i < cl->nshards; i++)
        if (cl->shards[i].primary == primary) break;
    if (i == cl->nshards) {
        if (cl->nshards >= CL_NO_SHARD) return false;
        if (cl->nshards == cl->capshards) {
            size_t cap = cl->capshards ? cl->capshards * 2 : 4;
            struct cl_shard *s = realloc(cl->shards, cap * sizeof *s);
            if (!s) return false;
            cl->shards = s;
            cl->capshards = cap;
        }
        memset(&cl->shards[i], 0, sizeof cl->shards[i]);
        cl->shards[i].primary = primary;
        cl->nshards++;
    }
    primary->in_table = true;
    bool changed = cl->slot[slot] != i;
    cl->slot[slot] = (uint16_t)i;
    return changed;
}

/* ---- discovery ---------------------------------------------------------------------- */

/* What a log line is worth: the primaries and the slots they own (FNV-1a). */
uint64_t cl_map_signature(const struct cl_map *m)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t s = 0; s < TOPO_CLUSTER_SLOTS; s++) {
        const char *host = "";
        unsigned port = 0;
        if (m->slot[s] != CL_NO_SHARD) {
            const struct cl_map_node *n = &m->nodes[m->shards[m->slot[s]].primary];
            host = n->host;
            port = n->port;
        }
        if (s && m->slot[s] == m->slot[s - 1]) continue; /* once per run of slots */
        for (const char *c = host; *c; c++) h = (h ^ (unsigned char)*c) * 0x100000001b3ULL;
        h = (h ^ port ^ ((uint64_t)s << 16)) * 0x100000001b3ULL;
    }
    return h;
}

static void add_cand(struct cluster *cl, const char *host, uint16_t port)
{
    for (size_t i = 0; i < cl->ncands; i++)
        if (cl->cands[i].port == port && strcmp(cl->cands[i].host, host) == 0) return;
    if (cl->ncands == cl->capcands) {
        size_t cap = cl->capcands ? cl->capcands * 2 : 8;
        struct topo_hostport *c = realloc(cl->cands, cap * sizeof *c);
        if (!c) return;
        cl->cands = c;
        cl->capcands = cap;
    }
    snprintf(cl->cands[cl->ncands].host, sizeof cl->cands[cl->ncands].host, "%s", host);
    cl->cands[cl->ncands].port = port;
    cl->ncands++;
}

static void disc_start(struct cluster *cl)
{
    cl->disc_running = true;
    cl->disc_again = false;
    cl->disc_started = ev_now(cl->loop);
    cl->refreshes++;
    cl->ncands = cl->candi = 0;
    if (cl->have_table && cl->nshards) {
        size_t off = (size_t)(cl_rand_unit(cl) * (double)cl->nshards);
        for (size_t i = 0; i < cl->nshards; i++) {
            const struct cl_node *p = cl->shards[(off + i) % cl->nshards].primary;
            add_cand(cl, p->host, p->port);
        }
    }
    for (size_t i = 0; i < cl->nseeds; i++) add_cand(cl, cl->seeds[i].host, cl->seeds[i].port);
    for (size_t i = 0; cl->have_table && i < cl->nshards; i++)
        for (unsigned k = 0; k < cl->shards[i].nreplicas; k++)
            add_cand(cl, cl->shards[i].replicas[k]->host, cl->shards[i].replicas[k]->port);
    disc_next(cl);
}

static void disc_done(struct cluster *cl, bool ok)
{
    cl->disc_running = false;
    cl->disc_node = NULL;
    if (cl->closing) return;
    double now = ev_now(cl->loop);
    if (ok) {
        cl->disc_fails = 0;
        /* replicas still loading (a new or resyncing replica) are looked at again soon */
        cl->next_periodic = now + (cl->map.not_online ? CL_REFRESH_LOADING : CL_REFRESH_PERIOD);
        if (cl->disc_again) cl_refresh_soon(cl);
        return;
    }
    if (!cl->have_table && strcmp(cl->logged_why, cl->why.msg) != 0) { /* once per reason */
        snprintf(cl->logged_why, sizeof cl->logged_why, "%s", cl->why.msg);
        fprintf(stderr, "redis_cache: cluster: no slot table yet: %s\n", cl->why.msg);
        cl_share_publish(cl); /* the followers' requests then fail with the same reason */
    }
    if (cl->disc_fails < 64) cl->disc_fails++;
    double d =
        topo_backoff(DISC_MIN_BACKOFF, DISC_MAX_BACKOFF, cl->disc_fails - 1, cl_rand_unit(cl));
    ev_timer_stop(cl->loop, &cl->disc_timer);
    ev_timer_set(&cl->disc_timer, d, 0);
    ev_timer_start(cl->loop, &cl->disc_timer);
}

static void disc_reply(void *priv, size_t idx, const struct resp_value *reply,
                       const struct resp_err *err);

static void disc_ask(struct cluster *cl, struct cl_node *node, bool slots)
{
    static const char *const shards_argv[2] = {"CLUSTER", "SHARDS"};
    static const char *const slots_argv[2] = {"CLUSTER", "SLOTS"};
    static const size_t shards_lens[2] = {7, 6}, slots_lens[2] = {7, 5};
    struct resp_cmd cmd = {2, slots ? slots_argv : shards_argv, slots ? slots_lens : shards_lens};
    double now = ev_now(cl->loop);
    double t = cl->tmpl.conn.connect_timeout > 0 ? cl->tmpl.conn.connect_timeout : 1.0;
    cl->disc_node = node;
    cl->disc_slots = slots;
    node->busy++;
    node->last_used = now;
    topo_pool_exec(node->pool, &cmd, 1, now + t + 1.0, 0, disc_reply, cl);
}

static void disc_next(struct cluster *cl)
{
    while (cl->candi < cl->ncands) {
        const struct topo_hostport *hp = &cl->cands[cl->candi++];
        struct cl_node *node = cl_node_get(cl, hp->host, hp->port);
        if (!node) continue;
        disc_ask(cl, node, cl->use_slots);
        return;
    }
    disc_done(cl, false);
}

static void disc_reply(void *priv, size_t idx, const struct resp_value *reply,
                       const struct resp_err *err)
{
    struct cluster *cl = priv;
    struct cl_node *node = cl->disc_node;
    if (cl->closing || !node) return;
    if (node->busy) node->busy--;
    const char *cmd = cl->disc_slots ? "CLUSTER SLOTS" : "CLUSTER SHARDS";
    if (err) {
        resp_err_set(&cl->why, err->kind, "discovery: %s", err->msg);
        disc_next(cl);
        return;
    }
    if (reply->type == RESP_ERROR || reply->type == RESP_BULK_ERROR) {
        if (!cl->disc_slots) { /* Redis before 7, or SHARDS refused: CLUSTER SLOTS */
            disc_ask(cl, node, true);
            return;
        }
        resp_err_set(&cl->why, RESP_EK_OTHER, "discovery: %s on %s:%u: %.*s", cmd, node->host,
                     (unsigned)node->port, (int)(reply->len > 100 ? 100 : reply->len),
                     reply->len ? reply->str : "");
        disc_next(cl);
        return;
    }
    char msg[160];
    struct cl_parse_opts po = {.reached = node->host, .tls = cl->tmpl.conn.tls != NULL};
    int rc = cl->disc_slots ? cl_parse_slots(reply, &po, &cl->map, msg, sizeof msg)
                            : cl_parse_shards(reply, &po, &cl->map, msg, sizeof msg);
    if (rc != 0) {
        resp_err_set(&cl->why, RESP_EK_OTHER, "discovery: %s:%u: %s", node->host,
                     (unsigned)node->port, msg);
        disc_next(cl);
        return;
    }
    uint64_t sig = cl_map_signature(&cl->map);
    bool changed = !cl->have_table || sig != cl->table_sig;
    if (cl_install(cl, &cl->map) != 0) {
        resp_err_set(&cl->why, RESP_EK_OTHER, "discovery: out of memory");
        disc_done(cl, false);
        return;
    }
    cl->use_slots = cl->disc_slots;
    cl->why.msg[0] = '\0';
    cl->logged_why[0] = '\0';
    cl->table_sig = sig;
    if (changed)
        fprintf(stderr,
                "redis_cache: cluster: slot table from %s:%u: %zu shards, %zu nodes, %zu slots\n",
                node->host, (unsigned)node->port, cl->map.nshards, cl->map.nnodes, cl->map.covered);
    cl_share_publish(cl);
    disc_done(cl, true);
}

static void disc_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct cluster *cl = w->data;
    if (!cl->disc_running && !cl->closing) disc_start(cl);
}

void cl_refresh_soon(struct cluster *cl)
{
    if (cl->closing) return;
    if (cl_follower(cl)) { /* one discovery per process: the leader's */
        topo_hub_want_refresh(&cl->member);
        return;
    }
    if (cl->disc_running) {
        cl->disc_again = true;
        return;
    }
    if (ev_is_active(&cl->disc_timer)) return; /* one is already scheduled */
    double wait = cl->disc_started + CL_REFRESH_MIN - ev_now(cl->loop);
    if (wait < 0 || cl->refreshes == 0) wait = 0;
    ev_timer_set(&cl->disc_timer, wait, 0);
    ev_timer_start(cl->loop, &cl->disc_timer);
}

/* ---- the tick: periodic refresh, latency probes, dropping old nodes ------------------ */

static void ping_reply(void *priv, size_t idx, const struct resp_value *reply,
                       const struct resp_err *err)
{
    struct cl_node *n = priv;
    if (n->cl->closing) return;
    if (n->busy) n->busy--;
    n->pinging = false;
    double now = ev_now(n->cl->loop);
    if (err) {
        if (err->kind != RESP_EK_OTHER) n->bad_until = now + CL_BAD_FOR;
        return;
    }
    if (reply->type != RESP_ERROR && reply->type != RESP_BULK_ERROR)
        cl_rtt_sample(n, now - n->ping_sent, now);
}

static void probe(struct cluster *cl, struct cl_node *n, double now)
{
    static const char *const ping_argv[1] = {"PING"};
    static const size_t ping_lens[1] = {4};
    struct resp_cmd cmd = {1, ping_argv, ping_lens};
    n->pinging = true;
    n->busy++;
    n->ping_sent = now;
    topo_pool_exec(n->pool, &cmd, 1, now + 1.0, 0, ping_reply, n);
}

static void tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct cluster *cl = w->data;
    if (cl->closing) return;
    double now = ev_now(loop);
    /* an idle follower keeps up too, so that its probes and node dropping see the table */
    if (cl_follower(cl)) cl_share_sync(cl);
    if (!cl_follower(cl) && cl->have_table && now >= cl->next_periodic) {
        cl->next_periodic = now + CL_REFRESH_PERIOD;
        cl_refresh_soon(cl);
    }
    if (cl->read_from == TOPO_READ_LATENCY)
        for (struct cl_node *n = cl->nodes; n; n = n->next)
            if (n->in_table && !n->pinging && now - n->last_sample >= CL_PROBE_IDLE)
                probe(cl, n, now);
    struct cl_node **pp = &cl->nodes;
    while (*pp) {
        struct cl_node *n = *pp;
        if (!n->in_table && n->busy == 0 && n != cl->disc_node &&
            now - n->last_used > CL_NODE_GC_AFTER) {
            *pp = n->next;
            cl->nnodes--;
            topo_pool_free(n->pool);
            free(n);
            continue;
        }
        pp = &n->next;
    }
}

void cl_discover_init(struct cluster *cl, bool lead)
{
    ev_init(&cl->disc_timer, disc_timer_cb);
    cl->disc_timer.data = cl;
    ev_timer_init(&cl->tick, tick_cb, 1.0, 1.0);
    cl->tick.data = cl;
    ev_timer_start(cl->loop, &cl->tick);
    ev_unref(cl->loop); /* the tick alone does not keep the host's loop running */
    if (lead) cl_discover_lead(cl);
}

void cl_discover_lead(struct cluster *cl)
{
    if (cl->closing) return;
    cl->next_periodic = ev_now(cl->loop) + CL_REFRESH_PERIOD;
    if (cl->disc_running) return;
    ev_timer_stop(cl->loop, &cl->disc_timer);
    ev_timer_set(&cl->disc_timer, 0, 0); /* the first discovery, from the loop */
    ev_timer_start(cl->loop, &cl->disc_timer);
}

void cl_discover_stop(struct cluster *cl)
{
    ev_timer_stop(cl->loop, &cl->disc_timer);
    if (ev_is_active(&cl->tick)) {
        ev_ref(cl->loop);
        ev_timer_stop(cl->loop, &cl->tick);
    }
}
