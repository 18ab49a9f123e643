/* src/topology/hub.c — one topology state per process, shared by the routers of one
 * configuration on every worker: membership and leadership, published views, shared
 * breaker state. The why is in hub_internal.h.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "topology/hub_internal.h"

struct topo_hub {
    pthread_mutex_t mu;
    atomic_uint refs;
    atomic_uint_fast64_t version; /* of `view`; 0: nothing published yet */
    atomic_bool refresh_asked;    /* a follower's ask is on its way to the leader */
    struct topo_view *view;
    struct topo_hub_member *members; /* join order */
    struct topo_hub_member *leader;
    struct topo_health *health;
};

struct topo_hub *topo_hub_new(void)
{
    struct topo_hub *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    if (pthread_mutex_init(&h->mu, NULL) != 0) {
        free(h);
        return NULL;
    }
    atomic_init(&h->refs, 1);
    atomic_init(&h->version, 0);
    atomic_init(&h->refresh_asked, false);
    return h;
}

void topo_hub_ref(struct topo_hub *h)
{
    if (h) atomic_fetch_add(&h->refs, 1);
}

void topo_hub_unref(struct topo_hub *h)
{
    if (!h || atomic_fetch_sub(&h->refs, 1) != 1) return;
    if (h->view) topo_view_put(h->view);
    while (h->health) {
        struct topo_health *n = h->health->next;
        free(h->health);
        h->health = n;
    }
    pthread_mutex_destroy(&h->mu);
    free(h);
}

void topo_view_put(struct topo_view *v)
{
    if (v && atomic_fetch_sub(&v->refs, 1) == 1) free(v);
}

static void member_async(struct ev_loop *loop, ev_async *w, int revents)
{
    struct topo_hub_member *m = w->data;
    if (atomic_exchange(&m->want_lead, false)) {
        m->leader = true;
        if (m->on_lead) m->on_lead(m);
    }
    if (atomic_exchange(&m->want_refresh, false)) {
        atomic_store(&m->hub->refresh_asked, false); /* asks from now on wake us again */
        if (m->leader && m->on_refresh) m->on_refresh(m);
    }
}

bool topo_hub_join(struct topo_hub_member *m)
{
    struct topo_hub *h = m->hub;
    atomic_init(&m->want_lead, false);
    atomic_init(&m->want_refresh, false);
    m->seen = 0;
    m->next = NULL;
    ev_async_init(&m->async, member_async);
    m->async.data = m;
    ev_async_start(m->loop, &m->async);
    ev_unref(m->loop); /* the hub's wakeups alone do not keep a loop running */
    pthread_mutex_lock(&h->mu);
    struct topo_hub_member **p = &h->members;
    while (*p) p = &(*p)->next;
    *p = m;
    m->leader = h->leader == NULL;
    if (m->leader) h->leader = m;
    pthread_mutex_unlock(&h->mu);
    return m->leader;
}

void topo_hub_leave(struct topo_hub_member *m)
{
    struct topo_hub *h = m->hub;
    pthread_mutex_lock(&h->mu);
    for (struct topo_hub_member **p = &h->members; *p; p = &(*p)->next) {
        if (*p == m) {
            *p = m->next;
            break;
        }
    }
    if (h->leader == m) {
        /* an ask the old leader never read: the new one starts with a round anyway */
        atomic_store(&h->refresh_asked, false);
        h->leader = h->members; /* the oldest member left leads next */
        if (h->leader) {
            atomic_store(&h->leader->want_lead, true);
            ev_async_send(h->leader->loop, &h->leader->async);
        }
    }
    pthread_mutex_unlock(&h->mu);
    ev_ref(m->loop);
    ev_async_stop(m->loop, &m->async);
    m->leader = false;
}

int topo_hub_publish(struct topo_hub_member *m, const void *data, size_t len)
{
    struct topo_hub *h = m->hub;
    struct topo_view *v = malloc(sizeof *v + len);
    if (!v) return -1;
    atomic_init(&v->refs, 1);
    v->len = len;
    if (len) memcpy(v->data, data, len);
    pthread_mutex_lock(&h->mu);
    struct topo_view *old = h->view;
    v->version = (old ? old->version : 0) + 1;
    h->view = v;
    atomic_store(&h->version, v->version);
    pthread_mutex_unlock(&h->mu);
    m->seen = v->version; /* the leader has it applied already */
    topo_view_put(old);
    return 0;
}

bool topo_hub_changed(const struct topo_hub_member *m)
{
    return atomic_load_explicit(&m->hub->version, memory_order_acquire) != m->seen;
}

struct topo_view *topo_hub_view(struct topo_hub_member *m)
{
    if (!topo_hub_changed(m)) return NULL;
    struct topo_hub *h = m->hub;
    pthread_mutex_lock(&h->mu);
    struct topo_view *v = h->view;
    if (v) atomic_fetch_add(&v->refs, 1);
    pthread_mutex_unlock(&h->mu);
    if (v) m->seen = v->version;
    return v;
}

void topo_hub_want_refresh(struct topo_hub_member *m)
{
    if (m->leader) {
        if (m->on_refresh) m->on_refresh(m);
        return;
    }
    struct topo_hub *h = m->hub;
    /* a follower failing every request asks every time: one wakeup per round, no lock */
    if (atomic_exchange(&h->refresh_asked, true)) return;
    pthread_mutex_lock(&h->mu);
    struct topo_hub_member *l = h->leader;
    if (l) {
        atomic_store(&l->want_refresh, true);
        ev_async_send(l->loop, &l->async);
    } else {
        atomic_store(&h->refresh_asked, false);
    }
    pthread_mutex_unlock(&h->mu);
}

struct topo_health *topo_hub_health(struct topo_hub *h, const char *name)
{
    pthread_mutex_lock(&h->mu);
    struct topo_health *hl = h->health;
    while (hl && strcmp(hl->name, name) != 0) hl = hl->next;
    if (!hl) {
        size_t n = strlen(name);
        hl = calloc(1, sizeof *hl + n + 1);
        if (hl) {
            memcpy(hl->name, name, n + 1);
            atomic_init(&hl->fails, 0);
            atomic_init(&hl->open, TOPO_BREAKER_CLOSED);
            atomic_init(&hl->kind, 0);
            atomic_init(&hl->epoch, 0);
            atomic_init(&hl->probing, false);
            hl->next = h->health;
            h->health = hl;
        }
    }
    pthread_mutex_unlock(&h->mu);
    return hl;
}

void topo_health_msg_get(struct topo_hub *h, const struct topo_health *hl, char *buf, size_t len)
{
    if (!len) return;
    pthread_mutex_lock(&h->mu);
    snprintf(buf, len, "%s", hl->msg);
    pthread_mutex_unlock(&h->mu);
}

void topo_health_msg_set(struct topo_hub *h, struct topo_health *hl, const char *msg)
{
    pthread_mutex_lock(&h->mu);
    snprintf(hl->msg, sizeof hl->msg, "%s", msg);
    pthread_mutex_unlock(&h->mu);
}
