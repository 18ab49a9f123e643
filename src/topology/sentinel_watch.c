/* src/topology/sentinel_watch.c — how the Sentinel router learns and follows the topology,
 * after the Redis Sentinel client guidelines.
 *
 * A discovery round: every known sentinel is asked SENTINEL get-master-addr-by-name in
 * parallel (each sentinel has a small pool of its own, with its breaker, so a dead one
 * costs nothing after a few tries); the first good answer wins and its sentinel moves to
 * the front of the list. The address is then checked with ROLE on the data pool of that
 * node (a sentinel may be stale or partitioned); a node that says it is not a master fails
 * the round. A verified master is adopted (the old one is drained), then the front sentinel
 * is asked for SENTINEL replicas (those flagged s_down, o_down or disconnected are left out)
 * and SENTINEL sentinels (new sentinels join the list). Failed rounds are retried with a
 * jittered backoff; while no master is known, requests fail at once with the reason.
 *
 * Rounds are started at creation, every SN_REFRESH seconds (a safety net against lost
 * messages), and on demand (sn_trigger: a READONLY or connection error seen by a request,
 * an instance event): coalesced with a running round and at most one start per
 * SN_ROUND_MIN.
 *
 * With a hub only the leading router runs any of this (sentinel_share.c): it publishes its
 * routing state to the others, and their reasons for a round reach sn_trigger through it.
 *
 * The subscription: one connection to one sentinel (the front one when it starts),
 * subscribed to +switch-master and the instance events. +switch-master for our master
 * switches writes to the new address at once, then a round verifies it and refreshes the
 * replicas. A lost subscription moves to the next sentinel; a PING rides on each refresh so
 * a silent sentinel is noticed (the connection's stall timeout closes it).
 */
#include <arpa/inet.h>
#include <ev.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "topology/sentinel_internal.h"
#include "topology/sentinel_parse.h"
#include "topology/topology.h"

enum { Q_ADDR, Q_ROLE, Q_REPLICAS, Q_SENTINELS };

/* One query of a round, on a sentinel's pool or (ROLE) on a data node's pool. */
struct sn_query {
    struct sentinel *s;
    struct sn_sentinel *from;
    struct sn_node *node; /* ROLE: the node asked (a reference is held) */
    unsigned gen;
    int kind;
};

static const char *const sn_channels[] = {
    "+switch-master", "+sdown", "-sdown", "+odown", "-odown", "+slave", "+slave-reconf-done",
};
#define SN_NCHANNELS (sizeof sn_channels / sizeof sn_channels[0])

static void sn_query_cb(void *priv, size_t idx, const struct resp_value *reply,
                        const struct resp_err *err);
static void sn_query_handle(struct sn_query *q, const struct resp_value *reply,
                            const struct resp_err *err);
static void sn_sub_start(struct sentinel *s);

static const char *sn_hp_text(const struct topo_hostport *hp, char *buf, size_t len)
{
    if (strchr(hp->host, ':'))
        snprintf(buf, len, "[%s]:%u", hp->host, (unsigned)hp->port);
    else
        snprintf(buf, len, "%s:%u", hp->host, (unsigned)hp->port);
    return buf;
}

/* ---- sentinels ---------------------------------------------------------------------- */

int sn_sentinel_add(struct sentinel *s, const struct topo_hostport *hp)
{
    for (size_t i = 0; i < s->nsent; i++)
        if (sentinel_hostport_eq(&s->sentinels[i]->hp, hp)) return 1;
    if (s->nsent >= SN_SENTINELS_MAX) return 1;
    struct sn_sentinel *ss = calloc(1, sizeof *ss);
    if (!ss) return -1;
    ss->hp = *hp;
    struct topo_node_opts o;
    memset(&o, 0, sizeof o);
    memcpy(o.host, hp->host, sizeof o.host);
    o.port = hp->port;
    o.conn = s->sconn;
    topo_pool_opts_init(&o.pool);
    o.pool.size = 2;
    o.pool.retries = 1;
    o.pool.wait_timeout = s->qtimeout;
    ss->pool = topo_pool_new(s->loop, s->resolver, &o);
    if (!ss->pool) {
        free(ss);
        return -1;
    }
    s->sentinels[s->nsent++] = ss;
    return 0;
}

static void sn_sentinel_to_front(struct sentinel *s, struct sn_sentinel *ss)
{
    for (size_t i = 0; i < s->nsent; i++) {
        if (s->sentinels[i] != ss) continue;
        memmove(&s->sentinels[1], &s->sentinels[0], i * sizeof s->sentinels[0]);
        s->sentinels[0] = ss;
        return;
    }
}

/* ---- queries ------------------------------------------------------------------------ */

static void sn_query(struct sentinel *s, struct topo_pool *pool, int kind, struct sn_sentinel *from,
                     struct sn_node *node, const char *a0, const char *a1, const char *a2)
{
    const char *argv[3] = {a0, a1, a2};
    size_t lens[3] = {strlen(a0), a1 ? strlen(a1) : 0, a2 ? strlen(a2) : 0};
    struct resp_cmd cmd = {.argc = a2 ? 3 : a1 ? 2 : 1, .argv = argv, .lens = lens};
    struct sn_query *q = malloc(sizeof *q);
    if (!q) { /* answered at once as a failure: the round moves on */
        struct resp_err e;
        resp_err_set(&e, RESP_EK_OTHER, "out of memory");
        struct sn_query tmp = {.s = s, .from = from, .node = node, .gen = s->gen, .kind = kind};
        sn_query_handle(&tmp, NULL, &e);
        return;
    }
    q->s = s;
    q->from = from;
    q->node = node;
    q->gen = s->gen;
    q->kind = kind;
    double deadline = ev_now(s->loop) + s->qtimeout;
    if (node) sn_node_hold(s, node, deadline);
    topo_pool_exec(pool, &cmd, 1, deadline, 0, sn_query_cb, q);
}

/* ---- rounds ------------------------------------------------------------------------- */

static void sn_round_fail(struct sentinel *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void sn_round_fail(struct sentinel *s, const char *fmt, ...)
{
    char msg[sizeof s->down.msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    s->phase = SN_IDLE;
    s->again = false;
    s->fails++;
    /* the log line already names the router ("redis_cache: sentinel NAME: ...") */
    const char *text = strncmp(msg, "sentinel: ", 10) == 0 ? msg + 10 : msg;
    if (!s->master) {
        resp_err_set(&s->down, RESP_EK_CONNECTION, "%s", msg);
        sn_log(s, "%s", text);
    } else {
        char hp[TOPO_HOST_MAX + 16];
        sn_log(s, "%s (still using master %s)", text, sn_hp_text(&s->master->hp, hp, sizeof hp));
    }
    sn_nodes_gc(s);
    sn_share_publish(s);
    double d = topo_backoff(SN_BACKOFF_MIN, SN_BACKOFF_MAX, s->fails - 1, sn_rand_unit(s));
    sn_timer_arm(s, &s->round_timer, d);
}

static void sn_round_done(struct sentinel *s)
{
    s->phase = SN_IDLE;
    s->fails = 0;
    sn_nodes_gc(s);
    sn_share_publish(s);
    if (!s->sub && !s->sub_resolving) sn_sub_start(s);
    if (s->again) {
        s->again = false;
        sn_trigger(s);
    }
}

static void sn_round_start(struct sentinel *s)
{
    if (s->closing) return;
    if (s->phase != SN_IDLE) {
        s->again = true;
        return;
    }
    s->gen++;
    s->phase = SN_ASK;
    s->pending = (unsigned)s->nsent;
    s->nil_answers = 0;
    s->last_err[0] = '\0';
    s->last_start = ev_now(s->loop);
    s->round_epoch = s->epoch;
    struct sn_sentinel *snap[SN_SENTINELS_MAX];
    size_t n = s->nsent;
    memcpy(snap, s->sentinels, n * sizeof snap[0]);
    unsigned gen = s->gen;
    for (size_t i = 0; i < n && s->gen == gen && s->phase == SN_ASK; i++)
        sn_query(s, snap[i]->pool, Q_ADDR, snap[i], NULL, "SENTINEL", "get-master-addr-by-name",
                 s->name);
}

void sn_trigger(struct sentinel *s)
{
    if (s->closing) return;
    if (!sn_leads(s)) { /* one discovery per process: the leader runs the round */
        sn_share_ask(s);
        return;
    }
    if (s->phase != SN_IDLE) {
        s->again = true;
        return;
    }
    sn_timer_arm(s, &s->round_timer, s->last_start + SN_ROUND_MIN - ev_now(s->loop));
}

void sn_round_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct sentinel *s = w->data;
    (void)loop, (void)revents;
    sn_timer_park(s, w);
    sn_round_start(s);
}

static void sn_adopt(struct sentinel *s, struct sn_node *node, const char *how)
{
    for (size_t i = 0; i < s->nrep; i++) {
        if (s->replicas[i] != node) continue;
        s->replicas[i] = s->replicas[--s->nrep];
        break;
    }
    if (s->master == node) return;
    struct sn_node *old = s->master;
    s->master = node;
    if (old) sn_node_retire(s, old); /* drained: its requests finish or time out */
    char a[TOPO_HOST_MAX + 16], b[TOPO_HOST_MAX + 16];
    if (old)
        sn_log(s, "master %s -> %s (%s)", sn_hp_text(&old->hp, a, sizeof a),
               sn_hp_text(&node->hp, b, sizeof b), how);
    else
        sn_log(s, "master %s (%s)", sn_hp_text(&node->hp, b, sizeof b), how);
    sn_share_publish(s); /* followers switch writes at once too */
}

static void sn_on_addr(struct sentinel *s, struct sn_query *q, const struct resp_value *reply,
                       const struct resp_err *err)
{
    if (s->phase != SN_ASK) return; /* another sentinel already answered */
    char who[TOPO_HOST_MAX + 16];
    sn_hp_text(&q->from->hp, who, sizeof who);
    struct topo_hostport hp;
    char perr[160] = "";
    int rc = err ? -1 : sentinel_parse_master_addr(reply, &hp, perr, sizeof perr);
    if (rc == 1) {
        sn_sentinel_to_front(s, q->from);
        struct sn_node *node = sn_node_get(s, &hp);
        if (!node) {
            sn_round_fail(s, "sentinel: out of memory for master %s", s->name);
            return;
        }
        s->phase = SN_VERIFY;
        sn_query(s, node->pool, Q_ROLE, q->from, node, "ROLE", NULL, NULL);
        return;
    }
    if (rc == 0)
        s->nil_answers++;
    else if (err) /* the pool's messages name the sentinel already */
        snprintf(s->last_err, sizeof s->last_err, "%.158s", err->msg);
    else
        snprintf(s->last_err, sizeof s->last_err, "%.60s: %.96s", who, perr);
    if (--s->pending > 0) return;
    if (s->nil_answers)
        sn_round_fail(s, "sentinel: no sentinel knows master %s", s->name);
    else
        sn_round_fail(s, "sentinel: no sentinel reachable for %s (last: %s)", s->name, s->last_err);
}

static void sn_on_role(struct sentinel *s, struct sn_query *q, const struct resp_value *reply,
                       const struct resp_err *err)
{
    if (s->phase != SN_VERIFY) return;
    char a[TOPO_HOST_MAX + 16];
    sn_hp_text(&q->node->hp, a, sizeof a);
    if (s->epoch != s->round_epoch) { /* a +switch-master came meanwhile: ask again */
        s->phase = SN_IDLE;
        sn_trigger(s);
        return;
    }
    if (err) {
        sn_round_fail(s, "sentinel: master %s at %s: %s", s->name, a, err->msg);
        return;
    }
    int role = sentinel_parse_role(reply);
    bool denied = reply && (reply->type == RESP_ERROR || reply->type == RESP_BULK_ERROR);
    if (role == 0) {
        sn_round_fail(s, "sentinel: %s, given as master %s, is not a master (yet)", a, s->name);
        return;
    }
    if (role < 0 && !denied) {
        sn_round_fail(s, "sentinel: %s: unexpected ROLE reply", a);
        return;
    }
    /* role 1, or ROLE refused (ACL, renamed): take the sentinel's word for it */
    if (q->node->retired) {
        sn_round_fail(s, "sentinel: master %s at %s was dropped meanwhile", s->name, a);
        return;
    }
    sn_adopt(s, q->node, "sentinel");
    s->phase = SN_DETAILS;
    s->pending = 2;
    struct sn_sentinel *front = s->sentinels[0];
    unsigned gen = s->gen;
    sn_query(s, front->pool, Q_REPLICAS, front, NULL, "SENTINEL", "replicas", s->name);
    if (s->gen == gen && s->phase == SN_DETAILS)
        sn_query(s, front->pool, Q_SENTINELS, front, NULL, "SENTINEL", "sentinels", s->name);
}

static void sn_on_details(struct sentinel *s, struct sn_query *q, const struct resp_value *reply,
                          const struct resp_err *err)
{
    if (s->phase != SN_DETAILS) return;
    struct topo_hostport hp[SN_REPLICAS_MAX];
    char perr[160];
    int n = err ? -1
                : sentinel_parse_instances(reply, q->kind == Q_REPLICAS, hp, SN_REPLICAS_MAX, perr,
                                           sizeof perr);
    if (n >= 0 && q->kind == Q_REPLICAS) {
        struct sn_node *list[SN_REPLICAS_MAX];
        size_t k = 0;
        for (int i = 0; i < n; i++) {
            if (s->master && sentinel_hostport_eq(&s->master->hp, &hp[i])) continue;
            struct sn_node *node = sn_node_get(s, &hp[i]);
            if (node) list[k++] = node;
        }
        memcpy(s->replicas, list, k * sizeof list[0]);
        s->nrep = k;
        sn_share_publish(s);
    } else if (n >= 0) {
        for (int i = 0; i < n; i++) sn_sentinel_add(s, &hp[i]);
    }
    /* a failed detail keeps what was known; the next round asks again */
    if (--s->pending == 0) sn_round_done(s);
}

static void sn_query_handle(struct sn_query *q, const struct resp_value *reply,
                            const struct resp_err *err)
{
    struct sentinel *s = q->s;
    if (s->closing || q->gen != s->gen) return; /* a late answer of an older round */
    switch (q->kind) {
    case Q_ADDR: sn_on_addr(s, q, reply, err); break;
    case Q_ROLE: sn_on_role(s, q, reply, err); break;
    default: sn_on_details(s, q, reply, err); break;
    }
}

static void sn_query_cb(void *priv, size_t idx, const struct resp_value *reply,
                        const struct resp_err *err)
{
    struct sn_query *q = priv;
    (void)idx;
    if (q->node) sn_node_release(q->s, q->node);
    sn_query_handle(q, reply, err);
    free(q);
}

/* ---- the subscription --------------------------------------------------------------- */

static void sn_sub_failed(struct sentinel *s, const char *why, bool was_ok)
{
    struct sn_sentinel *ss = s->sentinels[s->sub_idx % s->nsent];
    char a[TOPO_HOST_MAX + 16];
    sn_hp_text(&ss->hp, a, sizeof a);
    s->sub_idx++; /* the next attempt goes to the next sentinel */
    if (was_ok) {
        sn_log(s, "subscription on %s lost: %s", a, why);
        s->sub_fails = 0;
        sn_timer_arm(s, &s->sub_timer, 0);
        sn_trigger(s); /* messages may have been missed */
        return;
    }
    s->sub_fails++;
    double d = topo_backoff(SN_BACKOFF_MIN, SN_BACKOFF_MAX, s->sub_fails - 1, sn_rand_unit(s));
    sn_timer_arm(s, &s->sub_timer, d);
}

static void sn_sub_on_message(struct sentinel *s, const char *chan, size_t chanlen,
                              const char *payload, size_t paylen)
{
    if (chanlen == 14 && memcmp(chan, "+switch-master", 14) == 0) {
        struct topo_hostport hp;
        if (sentinel_parse_switch_master(payload, paylen, s->name, &hp) != 1) return;
        struct sn_node *node = sn_node_get(s, &hp);
        if (node) {
            s->epoch++;
            sn_adopt(s, node, "+switch-master");
        }
        sn_trigger(s); /* verify it and refresh the replicas */
        return;
    }
    if (sentinel_parse_instance_event(payload, paylen, s->name) == 1) sn_trigger(s);
}

static void sn_sub_push(struct resp_conn *c, const struct resp_value *v, void *priv)
{
    struct sentinel *s = priv;
    const char *chan, *payload;
    size_t chanlen, paylen;
    (void)c;
    if (s->closing || sentinel_parse_message(v, &chan, &chanlen, &payload, &paylen) != 0) return;
    sn_sub_on_message(s, chan, chanlen, payload, paylen);
}

static void sn_sub_ready(struct resp_conn *c, void *priv)
{
    (void)c, (void)priv;
}

static void sn_sub_connect(struct sentinel *s);

static void sn_sub_close(struct resp_conn *c, const struct resp_err *why, void *priv)
{
    struct sentinel *s = priv;
    if (s->sub != c) return;
    s->sub = NULL;
    bool was_ok = s->sub_ok;
    s->sub_ok = false;
    resp_conn_free(c);
    if (s->closing) return;
    if (!was_ok && s->sub_ai + 1 < s->sub_addrs.n) { /* the sentinel's next address */
        s->sub_ai++;
        sn_sub_connect(s);
        return;
    }
    sn_sub_failed(s, why ? why->msg : "closed", was_ok);
}

static void sn_sub_confirmed(void *priv, size_t idx, const struct resp_value *reply,
                             const struct resp_err *err)
{
    struct sentinel *s = priv;
    (void)idx;
    if (s->closing || !s->sub) return;
    if (err || !reply || reply->type == RESP_ERROR || reply->type == RESP_BULK_ERROR) {
        struct resp_err e;
        if (err)
            e = *err;
        else
            resp_err_set(&e, RESP_EK_OTHER, "SUBSCRIBE: %.*s",
                         reply ? (int)(reply->len > 120 ? 120 : reply->len) : 0,
                         reply && reply->str ? reply->str : "");
        resp_conn_close(s->sub, &e); /* sn_sub_close moves on */
        return;
    }
    s->sub_ok = true;
    s->sub_fails = 0;
}

static const struct resp_conn_events sn_sub_events = {
    .on_ready = sn_sub_ready,
    .on_close = sn_sub_close,
    .on_push = sn_sub_push,
};

static void sn_sub_connect(struct sentinel *s)
{
    struct sn_sentinel *ss = s->sentinels[s->sub_idx % s->nsent];
    struct resp_err err;
    resp_err_set(&err, RESP_EK_CONNECTION, "no address");
    while (s->sub_ai < s->sub_addrs.n) {
        struct resp_conn_opts o = s->sconn;
        o.addr = (const struct sockaddr *)&s->sub_addrs.addr[s->sub_ai];
        o.addrlen = (unsigned)s->sub_addrs.len[s->sub_ai];
        o.host = ss->hp.host;
        struct resp_conn *c = resp_conn_new(s->loop, &o, &sn_sub_events, s, &err);
        if (c) {
            s->sub = c;
            const char *argv[1 + SN_NCHANNELS];
            size_t lens[1 + SN_NCHANNELS];
            argv[0] = "SUBSCRIBE";
            lens[0] = 9;
            for (size_t i = 0; i < SN_NCHANNELS; i++) {
                argv[1 + i] = sn_channels[i];
                lens[1 + i] = strlen(sn_channels[i]);
            }
            struct resp_cmd cmd = {.argc = 1 + SN_NCHANNELS, .argv = argv, .lens = lens};
            if (resp_conn_send(c, &cmd, 1, ev_now(s->loop) + s->qtimeout, sn_sub_confirmed, s) !=
                0) {
                resp_err_set(&err, RESP_EK_OTHER, "SUBSCRIBE: out of memory");
                resp_conn_close(c, &err); /* sn_sub_close moves on */
            }
            return;
        }
        s->sub_ai++;
    }
    sn_sub_failed(s, err.msg, false);
}

static void sn_sub_resolved(void *priv, const struct topo_addrs *addrs, const struct resp_err *err)
{
    struct sentinel *s = priv;
    s->sub_resolving = false;
    s->sub_rreq = NULL;
    if (s->closing) return;
    if (!addrs || addrs->n == 0) {
        sn_sub_failed(s, err ? err->msg : "no address", false);
        return;
    }
    s->sub_addrs = *addrs;
    if (s->sub_addrs.n > TOPO_ADDRS_MAX) s->sub_addrs.n = TOPO_ADDRS_MAX;
    s->sub_ai = 0;
    sn_sub_connect(s);
}

/* Without a resolver only IP literals work (as in pool.c). */
static void sn_sub_literal(struct sentinel *s, const struct topo_hostport *hp)
{
    struct topo_addrs a;
    memset(&a, 0, sizeof a);
    struct sockaddr_in *s4 = (struct sockaddr_in *)&a.addr[0];
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a.addr[0];
    if (inet_pton(AF_INET, hp->host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(hp->port);
        a.len[0] = sizeof *s4;
        a.n = 1;
    } else if (inet_pton(AF_INET6, hp->host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(hp->port);
        a.len[0] = sizeof *s6;
        a.n = 1;
    }
    struct resp_err e;
    resp_err_set(&e, RESP_EK_CONNECTION, "resolve %s: no resolver for a hostname", hp->host);
    sn_sub_resolved(s, a.n ? &a : NULL, &e);
}

static void sn_sub_start(struct sentinel *s)
{
    if (s->closing || s->sub || s->sub_resolving || s->nsent == 0) return;
    struct sn_sentinel *ss = s->sentinels[s->sub_idx % s->nsent];
    s->sub_ok = false;
    s->sub_resolving = true;
    if (!s->resolver) {
        sn_sub_literal(s, &ss->hp);
        return;
    }
    struct topo_resolve_req *rq = topo_resolve(s->resolver, ss->hp.host, ss->hp.port,
                                               ev_now(s->loop) + s->qtimeout, sn_sub_resolved, s);
    if (s->sub_resolving) s->sub_rreq = rq;
}

void sn_sub_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct sentinel *s = w->data;
    (void)loop, (void)revents;
    sn_timer_park(s, w);
    sn_sub_start(s);
}

static void sn_ping_cb(void *priv, size_t idx, const struct resp_value *reply,
                       const struct resp_err *err)
{
    (void)priv, (void)idx, (void)reply, (void)err; /* a lost answer closes the connection */
}

void sn_refresh_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct sentinel *s = w->data;
    (void)w, (void)revents;
    sn_trigger(s);
    if (s->sub && s->sub_ok) {
        static const char *const argv[] = {"PING"};
        static const size_t lens[] = {4};
        struct resp_cmd cmd = {.argc = 1, .argv = argv, .lens = lens};
        resp_conn_send(s->sub, &cmd, 1, ev_now(loop) + s->qtimeout, sn_ping_cb, s);
    } else if (!s->sub && !s->sub_resolving && s->master) {
        sn_timer_arm(s, &s->sub_timer, 0);
    }
}

void sn_watch_start(struct sentinel *s)
{
    sn_round_start(s);
}

void sn_watch_stop(struct sentinel *s)
{
    if (s->sub_rreq) {
        topo_resolve_cancel(s->sub_rreq);
        s->sub_rreq = NULL;
    }
    s->sub_resolving = false;
    if (s->sub) {
        struct resp_conn *c = s->sub;
        s->sub = NULL;
        resp_conn_free(c);
    }
}
