/* src/topology/cluster_share.c — one discovery and one slot table per process for the
 * Cluster routers of one configuration (SPEC §3), through the hub (hub_internal.h).
 *
 * The leader (the first router to join) runs discovery as a router alone would and
 * publishes its table after every install and after every MOVED that changed it, so that
 * the other workers route a migrated slot right without waiting for the refresh. A
 * follower runs no discovery: before routing (and on its tick) it applies a newer view to
 * its own nodes and pools (connections belong to a worker), and its reasons to refresh
 * (MOVED, CLUSTERDOWN, a lost connection) become a request to the leader. When the leader
 * goes, the next router applies the last view and takes discovery over.
 *
 * The view is a flat blob (no pointers: it is read on other threads, after the leader's
 * table has moved on), in native byte order since it never leaves the process:
 *   u32 magic, u32 why.kind, u16 length + bytes of why.msg, u8 have_table; with a table:
 *   u32 nnodes, u32 nshards, u32 not_online, per node u16 host length + host + u16 port,
 *   per shard u16 primary + u16 nreplicas + u16 replicas[nreplicas], u16 slot[16384].
 * The reader checks every count and index against the bytes present and the map's limits:
 * a view comes from our own leader, but a bug there must not become a wild read here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "topology/cluster_internal.h"

#define VIEW_MAGIC 0x31564c43u /* "CLV1" */

/* ---- the blob ------------------------------------------------------------------------ */

/* A writer that only counts while p is NULL: the size first, then the bytes. */
struct vw {
    unsigned char *p;
    size_t len;
};

static void vw_put(struct vw *w, const void *d, size_t n)
{
    if (w->p && n) memcpy(w->p + w->len, d, n);
    w->len += n;
}

static void vw_u8(struct vw *w, uint8_t v)
{
    vw_put(w, &v, sizeof v);
}

static void vw_u16(struct vw *w, uint16_t v)
{
    vw_put(w, &v, sizeof v);
}

static void vw_u32(struct vw *w, uint32_t v)
{
    vw_put(w, &v, sizeof v);
}

static void view_write(struct vw *w, const struct cl_map *m, const struct resp_err *why)
{
    size_t wl = strnlen(why->msg, sizeof why->msg - 1);
    vw_u32(w, VIEW_MAGIC);
    vw_u32(w, (uint32_t)why->kind);
    vw_u16(w, (uint16_t)wl);
    vw_put(w, why->msg, wl);
    vw_u8(w, m ? 1 : 0);
    if (!m) return;
    vw_u32(w, (uint32_t)m->nnodes);
    vw_u32(w, (uint32_t)m->nshards);
    vw_u32(w, (uint32_t)m->not_online);
    for (size_t i = 0; i < m->nnodes; i++) {
        size_t hl = strnlen(m->nodes[i].host, TOPO_HOST_MAX - 1);
        vw_u16(w, (uint16_t)hl);
        vw_put(w, m->nodes[i].host, hl);
        vw_u16(w, m->nodes[i].port);
    }
    for (size_t i = 0; i < m->nshards; i++) {
        const struct cl_map_shard *s = &m->shards[i];
        unsigned nr = s->nreplicas < CL_REPLICAS_MAX ? s->nreplicas : CL_REPLICAS_MAX;
        vw_u16(w, s->primary);
        vw_u16(w, (uint16_t)nr);
        for (unsigned k = 0; k < nr; k++) vw_u16(w, s->replicas[k]);
    }
    vw_put(w, m->slot, sizeof m->slot);
}

void *cl_view_encode(const struct cl_map *m, const struct resp_err *why, size_t *len)
{
    struct vw w = {NULL, 0};
    view_write(&w, m, why);
    w.p = malloc(w.len);
    if (!w.p) return NULL;
    *len = w.len;
    w.len = 0;
    view_write(&w, m, why);
    return w.p;
}

struct vr {
    const unsigned char *p;
    size_t len, pos;
};

static bool vr_get(struct vr *r, void *d, size_t n)
{
    if (n > r->len - r->pos) return false;
    if (n) memcpy(d, r->p + r->pos, n);
    r->pos += n;
    return true;
}

static bool vr_u16(struct vr *r, uint16_t *v)
{
    return vr_get(r, v, sizeof *v);
}

static bool vr_u32(struct vr *r, uint32_t *v)
{
    return vr_get(r, v, sizeof *v);
}

/* Room for n more elements (exactly: a view's counts are final). */
static bool reserve(void **p, size_t *cap, size_t n, size_t elem)
{
    if (n <= *cap) return true;
    void *np = realloc(*p, n * elem);
    if (!np) return false;
    *p = np;
    *cap = n;
    return true;
}

static int view_read(struct vr *r, struct cl_map *m, struct resp_err *why, bool *have_table)
{
    uint32_t magic, kind, nnodes, nshards, not_online;
    uint16_t wl;
    uint8_t have;
    if (!vr_u32(r, &magic) || magic != VIEW_MAGIC) return -1;
    if (!vr_u32(r, &kind) || kind > RESP_EK_OTHER) return -1;
    if (!vr_u16(r, &wl) || wl >= sizeof why->msg || !vr_get(r, why->msg, wl)) return -1;
    why->msg[wl] = '\0';
    why->kind = (enum resp_err_kind)kind;
    if (!vr_get(r, &have, 1) || have > 1) return -1;
    *have_table = have == 1;
    if (!have) return r->pos == r->len ? 0 : -1;
    if (!vr_u32(r, &nnodes) || !vr_u32(r, &nshards) || !vr_u32(r, &not_online)) return -1;
    /* indices are u16 and CL_NO_SHARD marks a free slot; each entry takes bytes, so the
     * counts cannot ask for more memory than the blob justifies */
    size_t left = r->len - r->pos;
    if (nnodes >= CL_NO_SHARD || nshards >= CL_NO_SHARD || nnodes > left / 5 ||
        nshards > left / 4 || (nshards && !nnodes))
        return -1;
    if (!reserve((void **)&m->nodes, &m->capnodes, nnodes, sizeof *m->nodes) ||
        !reserve((void **)&m->shards, &m->capshards, nshards, sizeof *m->shards))
        return -1;
    for (uint32_t i = 0; i < nnodes; i++) {
        struct cl_map_node *n = &m->nodes[i];
        uint16_t hl;
        if (!vr_u16(r, &hl) || hl == 0 || hl >= TOPO_HOST_MAX || !vr_get(r, n->host, hl)) return -1;
        n->host[hl] = '\0';
        if (strlen(n->host) != hl || !vr_u16(r, &n->port) || n->port == 0) return -1;
        m->nnodes++;
    }
    for (uint32_t i = 0; i < nshards; i++) {
        struct cl_map_shard *s = &m->shards[i];
        memset(s, 0, sizeof *s);
        uint16_t nr;
        if (!vr_u16(r, &s->primary) || s->primary >= nnodes || !vr_u16(r, &nr) ||
            nr > CL_REPLICAS_MAX)
            return -1;
        for (unsigned k = 0; k < nr; k++)
            if (!vr_u16(r, &s->replicas[k]) || s->replicas[k] >= nnodes) return -1;
        s->nreplicas = nr;
        m->nshards++;
    }
    if (!vr_get(r, m->slot, sizeof m->slot) || r->pos != r->len) return -1;
    for (size_t s = 0; s < TOPO_CLUSTER_SLOTS; s++) {
        if (m->slot[s] == CL_NO_SHARD) continue;
        if (m->slot[s] >= nshards) return -1;
        m->covered++;
    }
    m->not_online = not_online;
    return 0;
}

int cl_view_decode(const void *data, size_t len, struct cl_map *m, struct resp_err *why,
                   bool *have_table)
{
    struct vr r = {data, len, 0};
    m->nnodes = m->nshards = 0;
    m->covered = m->not_online = 0;
    int rc = data ? view_read(&r, m, why, have_table) : -1;
    if (rc != 0 || !*have_table) {
        m->nnodes = m->nshards = 0;
        m->covered = m->not_online = 0;
        for (size_t s = 0; s < TOPO_CLUSTER_SLOTS; s++) m->slot[s] = CL_NO_SHARD;
    }
    return rc;
}

/* ---- the router's side ---------------------------------------------------------------- */

static void on_lead(struct topo_hub_member *mb)
{
    struct cluster *cl = mb->priv;
    if (cl->closing) return;
    /* start from what the old leader knew: requests keep their routes meanwhile */
    if (topo_hub_changed(mb)) cl_share_sync(cl);
    cl_discover_lead(cl);
}

static void on_refresh(struct topo_hub_member *mb)
{
    cl_refresh_soon(mb->priv);
}

bool cl_share_join(struct cluster *cl, struct topo_hub *hub)
{
    if (!hub) return true;
    topo_hub_ref(hub);
    cl->member.hub = hub;
    cl->member.loop = cl->loop;
    cl->member.on_lead = on_lead;
    cl->member.on_refresh = on_refresh;
    cl->member.priv = cl;
    cl->joined = true;
    return topo_hub_join(&cl->member);
}

void cl_share_leave(struct cluster *cl)
{
    if (!cl->joined) return;
    cl->joined = false;
    topo_hub_leave(&cl->member);
}

void cl_share_release(struct cluster *cl)
{
    free(cl->last_pub);
    cl->last_pub = NULL;
    if (cl->member.hub) topo_hub_unref(cl->member.hub);
    cl->member.hub = NULL;
}

void cl_share_sync(struct cluster *cl)
{
    if (!cl->member.hub || !topo_hub_changed(&cl->member)) return;
    struct topo_view *v = topo_hub_view(&cl->member);
    if (!v) return;
    struct resp_err why;
    bool have = false;
    int rc = cl_view_decode(v->data, v->len, &cl->map, &why, &have);
    topo_view_put(v);
    if (rc != 0) return; /* our leader's bug: keep the table we have */
    if (!have) {
        if (!cl->have_table) cl->why = why;
        return;
    }
    if (cl_install(cl, &cl->map) != 0) {
        cl->member.seen = 0; /* out of memory: the view counts as new again next time */
        return;
    }
    cl->why.msg[0] = '\0';
    cl->logged_why[0] = '\0';
    /* a follower made leader then logs only what its own discovery changes */
    cl->table_sig = cl_map_signature(&cl->map);
}

/* The live table (after MOVED patches) as a map: nodes numbered in share_idx. */
static int table_map(struct cluster *cl, struct cl_map *m)
{
    for (struct cl_node *n = cl->nodes; n; n = n->next) n->share_idx = CL_NO_SHARD;
    size_t nn = 0;
    for (struct cl_node *n = cl->nodes; n; n = n->next)
        if (n->in_table) nn++;
    if (nn >= CL_NO_SHARD || cl->nshards >= CL_NO_SHARD) return -1;
    m->nodes = calloc(nn ? nn : 1, sizeof *m->nodes);
    m->shards = calloc(cl->nshards ? cl->nshards : 1, sizeof *m->shards);
    if (!m->nodes || !m->shards) return -1;
    m->capnodes = nn ? nn : 1;
    m->capshards = cl->nshards ? cl->nshards : 1;
    for (size_t i = 0; i < cl->nshards; i++) {
        const struct cl_shard *s = &cl->shards[i];
        struct cl_node *all[CL_REPLICAS_MAX + 1];
        unsigned na = 0;
        all[na++] = s->primary;
        for (unsigned k = 0; k < s->nreplicas && k < CL_REPLICAS_MAX; k++)
            all[na++] = s->replicas[k];
        for (unsigned k = 0; k < na; k++) {
            struct cl_node *n = all[k];
            if (n->share_idx != CL_NO_SHARD) continue;
            if (m->nnodes >= m->capnodes) return -1; /* in_table out of step: not published */
            n->share_idx = (unsigned)m->nnodes;
            snprintf(m->nodes[m->nnodes].host, sizeof m->nodes[m->nnodes].host, "%s", n->host);
            m->nodes[m->nnodes].port = n->port;
            m->nnodes++;
        }
        struct cl_map_shard *ms = &m->shards[m->nshards++];
        ms->primary = (uint16_t)s->primary->share_idx;
        ms->nreplicas = (uint16_t)(na - 1);
        for (unsigned k = 1; k < na; k++) ms->replicas[k - 1] = (uint16_t)all[k]->share_idx;
    }
    memcpy(m->slot, cl->slot, sizeof m->slot);
    m->not_online = cl->map.not_online;
    return 0;
}

void cl_share_publish(struct cluster *cl)
{
    if (!cl->member.hub || !cl->member.leader || cl->closing) return;
    struct cl_map *m = NULL;
    if (cl->have_table) {
        m = malloc(sizeof *m);
        if (!m) return;
        cl_map_init(m);
        if (table_map(cl, m) != 0) {
            cl_map_free(m);
            free(m);
            return;
        }
    }
    size_t len = 0;
    void *blob = cl_view_encode(m, &cl->why, &len);
    if (m) {
        cl_map_free(m);
        free(m);
    }
    if (!blob) return;
    /* a periodic refresh that found nothing new costs the followers nothing */
    if (cl->last_pub && cl->last_pub_len == len && memcmp(cl->last_pub, blob, len) == 0) {
        free(blob);
        return;
    }
    if (topo_hub_publish(&cl->member, blob, len) != 0) {
        free(blob);
        return;
    }
    free(cl->last_pub);
    cl->last_pub = blob;
    cl->last_pub_len = len;
}
