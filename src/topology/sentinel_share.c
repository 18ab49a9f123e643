/* src/topology/sentinel_share.c — one Sentinel discovery per process (SPEC §3): the routers
 * of one configuration, one per worker, share it through the hub (hub_internal.h).
 *
 * The first router to join leads: it runs the rounds and the +switch-master subscription
 * (sentinel_watch.c) and publishes its routing state (master, usable replicas, the error
 * requests get while no master is known) as a struct sn_view each time it changes. The
 * others run no discovery at all: before routing they apply a newer view to their own
 * nodes (each worker keeps its own pools: connections belong to a worker), draining an old
 * master exactly as the leader does. What would make a router ask the sentinels (READONLY,
 * a connection error on a node) makes a follower ask the leader instead. When the leader
 * is freed, the next member applies the last view and starts discovery on its own loop.
 */
#include <ev.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "topology/hub_internal.h"
#include "topology/sentinel_internal.h"
#include "topology/sentinel_parse.h"
#include "topology/topology.h"

/* Copies into zeroed bytes so that equal addresses give equal views byte for byte. */
static void sn_hp_copy(struct topo_hostport *dst, const struct topo_hostport *src)
{
    memset(dst, 0, sizeof *dst);
    memcpy(dst->host, src->host, strnlen(src->host, sizeof dst->host - 1));
    dst->port = src->port;
}

static size_t sn_view_build(const struct sentinel *s, struct sn_view *v)
{
    memset(v, 0, offsetof(struct sn_view, replicas));
    v->has_master = s->master != NULL;
    if (s->master) sn_hp_copy(&v->master, &s->master->hp);
    size_t n = s->nrep < SN_REPLICAS_MAX ? s->nrep : SN_REPLICAS_MAX;
    v->nrep = (uint32_t)n;
    for (size_t i = 0; i < n; i++) sn_hp_copy(&v->replicas[i], &s->replicas[i]->hp);
    v->down_kind = (int32_t)s->down.kind;
    memcpy(v->down_msg, s->down.msg, strnlen(s->down.msg, sizeof v->down_msg - 1));
    return offsetof(struct sn_view, replicas) + n * sizeof v->replicas[0];
}

void sn_share_publish(struct sentinel *s)
{
    if (!s->hub || !s->joined || !s->member.leader || s->closing) return;
    if (!s->pub) s->pub = malloc(sizeof *s->pub);
    if (!s->pub) return; /* no memory: followers keep the last view */
    struct sn_view *v = malloc(sizeof *v);
    if (!v) return;
    size_t len = sn_view_build(s, v);
    if (len != s->publen || memcmp(v, s->pub, len) != 0) {
        if (topo_hub_publish(&s->member, v, len) == 0) {
            memcpy(s->pub, v, len);
            s->publen = len;
        }
    }
    free(v);
}

void sn_share_apply(struct sentinel *s)
{
    struct topo_view *tv = topo_hub_view(&s->member);
    if (!tv) return;
    const size_t head = offsetof(struct sn_view, replicas);
    if (tv->len < head) { /* not ours: keep the state we have */
        topo_view_put(tv);
        return;
    }
    const struct sn_view *v = (const struct sn_view *)tv->data;
    size_t nrep = (tv->len - head) / sizeof v->replicas[0];
    if (v->nrep < nrep) nrep = v->nrep;
    bool complete = true;
    if (v->has_master) {
        struct sn_node *node = sn_node_get(s, &v->master);
        if (!node) {
            complete = false;
        } else if (node != s->master) {
            struct sn_node *old = s->master;
            s->master = node;
            if (old) sn_node_retire(s, old); /* drained: its requests finish or time out */
        }
    } else if (s->master) {
        sn_node_retire(s, s->master);
    }
    struct sn_node *list[SN_REPLICAS_MAX];
    size_t k = 0;
    for (size_t i = 0; i < nrep; i++) {
        if (s->master && sentinel_hostport_eq(&s->master->hp, &v->replicas[i])) continue;
        struct sn_node *node = sn_node_get(s, &v->replicas[i]);
        if (node)
            list[k++] = node;
        else
            complete = false;
    }
    memcpy(s->replicas, list, k * sizeof list[0]);
    s->nrep = k;
    sn_nodes_gc(s);
    s->down.kind = (enum resp_err_kind)v->down_kind;
    memcpy(s->down.msg, v->down_msg, sizeof s->down.msg);
    s->down.msg[sizeof s->down.msg - 1] = '\0';
    topo_view_put(tv);
    if (!complete) s->member.seen = 0; /* short of memory: the next request tries again */
}

void sn_share_ask(struct sentinel *s)
{
    if (!s->joined || s->closing) return;
    /* a failing master fails every request: the hub's lock is taken once per interval */
    double now = ev_now(s->loop);
    if (s->asked > 0 && now - s->asked < SN_ROUND_MIN) return;
    s->asked = now;
    topo_hub_want_refresh(&s->member);
}

static void sn_share_on_lead(struct topo_hub_member *m)
{
    struct sentinel *s = m->priv;
    if (s->closing) return;
    if (topo_hub_changed(m)) sn_share_apply(s); /* start from what the old leader knew */
    sn_lead(s);
}

static void sn_share_on_refresh(struct topo_hub_member *m)
{
    struct sentinel *s = m->priv;
    sn_trigger(s);
}

void sn_share_join(struct sentinel *s)
{
    s->member.hub = s->hub;
    s->member.loop = s->loop;
    s->member.on_lead = sn_share_on_lead;
    s->member.on_refresh = sn_share_on_refresh;
    s->member.priv = s;
    topo_hub_join(&s->member);
    s->joined = true;
}
