/* src/plugin/cache.c — the redis_cache handle on a libev loop: zones, lookup and store.
 *
 * Lookup (SPEC §1.3-1.4): one request of two pipelined commands on one read connection,
 * `TTL key` then `GET key`, under one deadline (now + timeout read). TTL goes first so
 * that the GET value, which arrives last, is decoded and turned into replies straight out
 * of the connection's read buffer during its callback: the value is never copied. The
 * order inside the pipeline is otherwise unobservable (one round trip either way).
 *
 * Concurrent lookups of one key share that request (a "flight"): each waiter keeps its
 * own question and gets a reply built for it (its ID, its letter case, its EDNS size).
 * Counting: hits and the duration histogram count once per query (waiter); get_errors and
 * collisions count once per Redis read, since they describe the read and the entry.
 *
 * Store (SPEC §2): classify, clamp, set the reply's TTLs in place, and when the response
 * may be written, `SET key value EX ttl` as a background request on the write side. The
 * value keeps the upstream's TTLs (SPEC §1.2). Writes of one key collapse: while a write
 * of a key is in flight, a later write of the same key is dropped (both values came from
 * the upstream within one write timeout; the first is as good as the later, and dropping
 * needs no copy of the value).
 *
 * Eviction (collisions, malformed entries): `EXPIRE key 0` in the background on the write
 * side, at most one in flight per key.
 *
 * Memory: waiters, flights and background operations come from free lists; the decoded
 * entry's RR table, the reply, and the encoded value use per-cache scratch buffers. In
 * steady state neither lookup nor store allocates (the key tables only grow).
 */
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/plugin.h"

#define FREE_MAX     1024 /* waiters, flights and ops kept on each free list */
#define TAB_MIN_BITS 6
#define KEY_MAX      (sizeof(((struct rcp_config *)0)->key_prefix) + 1 + DNS_KEY_HEX_LEN + 1)
#define REPLY_CAP    (DNS_MSG_MAX + 64)
/* Commands in flight on a connection before the pool opens another. Lookups come in
 * bursts (a host reads a batch of datagrams per wakeup; each lookup is two commands), and
 * a single-threaded Redis answers one deep pipeline with far fewer reads and writes on
 * both sides than many shallow ones: the pool's generic 32 would open a connection per 16
 * lookups of a burst and spread every later burst over all of them. */
#define PIPELINE_HIGH 1024

/* ---- a table of in-flight keys (chained; buckets double when crowded) --------------- */

struct hnode {
    struct hnode *next;
    uint64_t hash;
};

struct htab {
    struct hnode **b;
    size_t mask;
    size_t n;
};

static int htab_init(struct htab *t)
{
    t->mask = ((size_t)1 << TAB_MIN_BITS) - 1;
    t->n = 0;
    t->b = calloc(t->mask + 1, sizeof *t->b);
    return t->b ? 0 : -1;
}

static struct hnode *htab_find(const struct htab *t, uint64_t hash)
{
    for (struct hnode *n = t->b[hash & t->mask]; n; n = n->next)
        if (n->hash == hash) return n;
    return NULL;
}

static void htab_grow(struct htab *t)
{
    size_t nb = (t->mask + 1) * 2;
    struct hnode **b = calloc(nb, sizeof *b);
    if (!b) return; /* stays correct, only slower */
    for (size_t i = 0; i <= t->mask; i++) {
        struct hnode *n = t->b[i], *next;
        for (; n; n = next) {
            next = n->next;
            n->next = b[n->hash & (nb - 1)];
            b[n->hash & (nb - 1)] = n;
        }
    }
    free(t->b);
    t->b = b;
    t->mask = nb - 1;
}

static void htab_add(struct htab *t, struct hnode *n)
{
    if (t->n >= 2 * (t->mask + 1)) htab_grow(t);
    struct hnode **slot = &t->b[n->hash & t->mask];
    n->next = *slot;
    *slot = n;
    t->n++;
}

static void htab_del(struct htab *t, struct hnode *n)
{
    for (struct hnode **p = &t->b[n->hash & t->mask]; *p; p = &(*p)->next)
        if (*p == n) {
            *p = n->next;
            t->n--;
            return;
        }
}

/* ---- the cache ---------------------------------------------------------------------- */

struct waiter {
    struct waiter *next;
    rcp_lookup_fn *fn;
    void *priv;
    double start;
    bool tcp;
    struct dns_question q;
};

struct flight {
    struct hnode h; /* first: the table holds flights by their node */
    struct rcp_cache *c;
    struct waiter *head, **tail;
    uint32_t ttl;           /* from the TTL reply (0 for -1, -2, errors) */
    enum resp_err_kind err; /* first failure of the request, RESP_EK_NONE if none */
    char key[KEY_MAX];
    size_t keylen;
};

/* A background write or eviction. */
struct op {
    struct hnode h;
    struct rcp_cache *c;
    bool evict;
    struct op *free_next;
};

struct zone {
    uint8_t wire[DNS_NAME_MAX];
    size_t len;
};

struct rcp_cache {
    struct ev_loop *loop;
    struct topo_resolver *resolver;
    struct ssl_ctx_st *tls;
    struct topo_router *router;
    struct topo_hub *hub; /* shared topology state (a reference), or NULL */

    char prefix[sizeof(((struct rcp_config *)0)->key_prefix)];
    size_t prefix_len;
    uint64_t seed;
    uint32_t success_min, success_max, denial_min, denial_max;
    double read_timeout, write_timeout;
    uint16_t udp_size;

    struct zone *zones;
    size_t nzones;

    struct htab flights, writes, evictions;
    struct waiter *free_waiters;
    size_t nfree_waiters;
    struct flight *free_flights; /* chained through h.next */
    size_t nfree_flights;
    struct op *free_ops;
    size_t nfree_ops;
    size_t collapsed; /* writes dropped because one of the key was in flight */

    bool closing;
    struct rcp_metrics m;

    struct dns_rr *rr_get; /* RRs of a decoded entry */
    struct dns_rr *rr_set; /* RRs of a response being stored */
    uint8_t *reply;        /* REPLY_CAP: the hit reply handed to a callback */
    uint8_t *value;        /* DNS_ENTRY_MAX: the encoded value of a write */
};

/* ---- free lists ---------------------------------------------------------------------- */

static struct waiter *waiter_get(struct rcp_cache *c)
{
    struct waiter *w = c->free_waiters;
    if (w) {
        c->free_waiters = w->next;
        c->nfree_waiters--;
        return w;
    }
    return malloc(sizeof *w);
}

static void waiter_put(struct rcp_cache *c, struct waiter *w)
{
    if (c->nfree_waiters >= FREE_MAX) {
        free(w);
        return;
    }
    w->next = c->free_waiters;
    c->free_waiters = w;
    c->nfree_waiters++;
}

static struct flight *flight_get(struct rcp_cache *c)
{
    struct flight *f = c->free_flights;
    if (f) {
        c->free_flights = (struct flight *)f->h.next;
        c->nfree_flights--;
        return f;
    }
    return malloc(sizeof *f);
}

static void flight_put(struct rcp_cache *c, struct flight *f)
{
    if (c->nfree_flights >= FREE_MAX) {
        free(f);
        return;
    }
    f->h.next = (struct hnode *)c->free_flights;
    c->free_flights = f;
    c->nfree_flights++;
}

static struct op *op_get(struct rcp_cache *c)
{
    struct op *o = c->free_ops;
    if (o) {
        c->free_ops = o->free_next;
        c->nfree_ops--;
        return o;
    }
    return malloc(sizeof *o);
}

static void op_put(struct rcp_cache *c, struct op *o)
{
    if (c->nfree_ops >= FREE_MAX) {
        free(o);
        return;
    }
    o->free_next = c->free_ops;
    c->free_ops = o;
    c->nfree_ops++;
}

/* ---- zones --------------------------------------------------------------------------- */

static int hexval(char ch)
{
    return ch >= '0' && ch <= '9' ? ch - '0' : -1;
}

/* Presentation form ("Example.org.", "example.org", ".", "a\.b.example.", "x\001y.")
 * to lowercase wire form. 0, or -1 when it is not a valid name. */
static int zone_to_wire(const char *s, struct zone *z)
{
    size_t len = 0, lab = 0; /* offset of the current label's length byte */
    uint8_t *w = z->wire;
    if (s[0] == '.' && s[1] == '\0') s++;
    w[len++] = 0;
    for (const char *p = s; *p;) {
        uint8_t ch;
        if (*p == '.') {
            if (w[lab] == 0) return -1; /* empty label */
            if (len >= DNS_NAME_MAX) return -1;
            lab = len;
            w[len++] = 0;
            p++;
            continue;
        }
        if (*p == '\\') {
            int d0 = hexval(p[1]);
            if (d0 >= 0) {
                int d1 = hexval(p[2]), d2 = d1 >= 0 ? hexval(p[3]) : -1;
                if (d1 < 0 || d2 < 0) return -1;
                int v = d0 * 100 + d1 * 10 + d2;
                if (v > 255) return -1;
                ch = (uint8_t)v;
                p += 4;
            } else {
                if (!p[1]) return -1;
                ch = (uint8_t)p[1];
                p += 2;
            }
        } else {
            ch = (uint8_t)*p++;
        }
        if (ch >= 'A' && ch <= 'Z') ch = (uint8_t)(ch - 'A' + 'a');
        if (w[lab] >= DNS_LABEL_MAX || len >= DNS_NAME_MAX) return -1;
        w[len++] = ch;
        w[lab]++;
    }
    if (w[lab] != 0) { /* no trailing dot: close the last label with the root */
        if (len >= DNS_NAME_MAX) return -1;
        w[len++] = 0;
    }
    z->len = len;
    return 0;
}

bool rcp_cache_covers(const struct rcp_cache *c, const struct dns_question *q)
{
    const uint8_t *n = q->name_lc;
    size_t nlen = q->name_len;
    for (size_t o = 0; o < nlen;) {
        for (size_t i = 0; i < c->nzones; i++)
            if (c->zones[i].len == nlen - o && memcmp(c->zones[i].wire, n + o, nlen - o) == 0)
                return true;
        if (n[o] == 0) break;
        o += (size_t)n[o] + 1;
    }
    return false;
}

/* ---- background writes and evictions ------------------------------------------------- */

static void on_op_reply(void *priv, size_t idx, const struct resp_value *reply,
                        const struct resp_err *err)
{
    struct op *o = priv;
    struct rcp_cache *c = o->c;
    htab_del(o->evict ? &c->evictions : &c->writes, &o->h);
    if (!o->evict && !c->closing) {
        if (!reply)
            c->m.set_errors[rcp_reason_of(err ? err->kind : RESP_EK_OTHER)]++;
        else if (reply->type == RESP_ERROR || reply->type == RESP_BULK_ERROR)
            c->m.set_errors[RCP_REASON_OTHER]++;
    }
    op_put(c, o);
}

/* Sends one background command for key `hash` unless one of the same kind is in flight. */
static void background(struct rcp_cache *c, bool evict, uint64_t hash, const char *key,
                       size_t keylen, const struct resp_cmd *cmd)
{
    struct htab *t = evict ? &c->evictions : &c->writes;
    if (htab_find(t, hash)) {
        if (!evict) c->collapsed++;
        return;
    }
    struct op *o = op_get(c);
    if (!o) {
        if (!evict) c->m.set_errors[RCP_REASON_OTHER]++;
        return;
    }
    o->c = c;
    o->evict = evict;
    o->h.hash = hash;
    htab_add(t, &o->h);
    /* may call on_op_reply before returning (queue full, breaker open) */
    topo_router_exec(c->router, key, keylen, true, cmd, 1, ev_now(c->loop) + c->write_timeout,
                     TOPO_BACKGROUND, on_op_reply, o);
}

static void evict(struct rcp_cache *c, uint64_t hash, const char *key, size_t keylen)
{
    if (c->closing) return;
    const char *argv[] = {"EXPIRE", key, "0"};
    size_t lens[] = {6, keylen, 1};
    struct resp_cmd cmd = {3, argv, lens};
    background(c, true, hash, key, keylen, &cmd);
}

/* ---- lookup -------------------------------------------------------------------------- */

static void finish_waiter(struct rcp_cache *c, struct waiter *w, enum rcp_lookup_status st,
                          const uint8_t *reply, size_t len)
{
    rcp_metrics_observe(&c->m, ev_now(c->loop) - w->start);
    w->fn(w->priv, st, reply, len);
    waiter_put(c, w);
}

/* The GET value arrived: decode once, check and answer every waiter. */
static void serve_value(struct rcp_cache *c, struct flight *f, struct waiter *ws,
                        const uint8_t *val, size_t len)
{
    struct dns_entry e;
    enum dns_entry_status st = dns_entry_decode(&e, val, len, c->rr_get, DNS_RR_MAX);
    const bool undecodable = st == DNS_ENTRY_MALFORMED;
    bool bad = undecodable, collision = false, other = undecodable;
    struct waiter *next;
    for (struct waiter *w = ws; w; w = next) {
        next = w->next;
        enum dns_entry_status ws_st = undecodable ? st : dns_entry_check(&e, &w->q);
        if (ws_st == DNS_ENTRY_OK) {
            size_t out = 0;
            if (dns_reply_build(c->reply, REPLY_CAP, &out, &e.msg, &w->q, f->ttl, c->udp_size,
                                w->tcp) == DNS_OK) {
                c->m.hits++;
                finish_waiter(c, w, RCP_LOOKUP_HIT, c->reply, out);
                continue;
            }
            other = true;
        } else if (ws_st == DNS_ENTRY_COLLISION) {
            collision = true;
        } else if (ws_st == DNS_ENTRY_MALFORMED) {
            bad = other = true;
        } else { /* TRUNCATED: a foreign writer's choice, kept */
            other = true;
        }
        finish_waiter(c, w, RCP_LOOKUP_MISS, NULL, 0);
    }
    if (other) c->m.get_errors[RCP_REASON_OTHER]++;
    if (collision) c->m.collisions++;
    if (bad || collision) evict(c, f->h.hash, f->key, f->keylen);
}

static void on_lookup_reply(void *priv, size_t idx, const struct resp_value *reply,
                            const struct resp_err *err)
{
    struct flight *f = priv;
    struct rcp_cache *c = f->c;
    if (!reply && f->err == RESP_EK_NONE) f->err = err && err->kind ? err->kind : RESP_EK_OTHER;
    if (idx == 0) { /* TTL */
        if (reply && reply->type == RESP_INTEGER && reply->integer > 0)
            f->ttl = reply->integer > 0x7FFFFFFF ? 0x7FFFFFFFu : (uint32_t)reply->integer;
        return;
    }
    /* GET, the last reply: the flight leaves the table first, so that a callback starting a
     * lookup of the same key starts a new flight. */
    htab_del(&c->flights, &f->h);
    struct waiter *ws = f->head, *next;
    enum rcp_lookup_status st = RCP_LOOKUP_MISS;
    if (c->closing) {
        st = RCP_LOOKUP_ERROR;
    } else if (!reply) {
        st = RCP_LOOKUP_ERROR;
        c->m.get_errors[rcp_reason_of(f->err)]++;
    } else if (reply->type == RESP_BULK || reply->type == RESP_STRING ||
               reply->type == RESP_VERBATIM) {
        serve_value(c, f, ws, (const uint8_t *)reply->str, reply->len);
        flight_put(c, f);
        return;
    } else if (reply->type != RESP_NULL) { /* WRONGTYPE, NOPERM...: a Redis-side error */
        st = RCP_LOOKUP_ERROR;
        c->m.get_errors[RCP_REASON_OTHER]++;
    }
    for (struct waiter *w = ws; w; w = next) {
        next = w->next;
        finish_waiter(c, w, st, NULL, 0);
    }
    flight_put(c, f);
}

int rcp_cache_lookup(struct rcp_cache *c, const struct dns_question *q, bool tcp, rcp_lookup_fn *fn,
                     void *priv)
{
    if (!rcp_cache_covers(c, q)) {
        fn(priv, RCP_LOOKUP_SKIP, NULL, 0);
        return 0;
    }
    struct waiter *w = waiter_get(c);
    if (!w) return -1;
    w->next = NULL;
    w->fn = fn;
    w->priv = priv;
    w->start = ev_now(c->loop);
    w->tcp = tcp;
    memcpy(&w->q, q, sizeof *q);
    if (c->closing) {
        finish_waiter(c, w, RCP_LOOKUP_ERROR, NULL, 0);
        return 0;
    }

    uint64_t hash = dns_key_hash(q, q->do_bit, c->seed);
    struct flight *f = (struct flight *)htab_find(&c->flights, hash);
    if (f) { /* coalesce: the GET in flight answers this one too */
        *f->tail = w;
        f->tail = &w->next;
        return 0;
    }
    f = flight_get(c);
    if (!f) {
        waiter_put(c, w);
        return -1;
    }
    f->c = c;
    f->h.hash = hash;
    f->head = w;
    f->tail = &w->next;
    f->ttl = 0;
    f->err = RESP_EK_NONE;
    f->keylen = dns_key_format(f->key, sizeof f->key, c->prefix, c->prefix_len, hash);
    htab_add(&c->flights, &f->h);

    const char *ttl_argv[] = {"TTL", f->key};
    const char *get_argv[] = {"GET", f->key};
    size_t lens[] = {3, f->keylen};
    struct resp_cmd cmds[2] = {{2, ttl_argv, lens}, {2, get_argv, lens}};
    /* may complete (breaker open) before returning: f is not touched afterwards */
    topo_router_exec(c->router, f->key, f->keylen, false, cmds, 2,
                     ev_now(c->loop) + c->read_timeout, 0, on_lookup_reply, f);
    return 0;
}

/* ---- store --------------------------------------------------------------------------- */

static void write_entry(struct rcp_cache *c, const struct dns_question *q, const struct dns_msg *m,
                        uint32_t ttl)
{
    /* SPEC §1.1: qname, qtype, qclass and CD from the query, DO from the response's OPT */
    uint64_t hash = dns_key_hash(q, m->has_edns && m->edns_do, c->seed);
    if (htab_find(&c->writes, hash)) {
        c->collapsed++;
        return;
    }
    size_t vlen = 0;
    if (dns_entry_encode(c->value, DNS_ENTRY_MAX, &vlen, m, q) != DNS_OK) {
        c->m.encode_errors++;
        return;
    }
    char key[KEY_MAX];
    size_t keylen = dns_key_format(key, sizeof key, c->prefix, c->prefix_len, hash);
    char ttlbuf[16];
    int tl = snprintf(ttlbuf, sizeof ttlbuf, "%u", (unsigned)ttl);
    const char *argv[] = {"SET", key, (const char *)c->value, "EX", ttlbuf};
    size_t lens[] = {3, keylen, vlen, 2, (size_t)tl};
    struct resp_cmd cmd = {5, argv, lens};
    background(c, false, hash, key, keylen, &cmd);
}

long rcp_cache_store(struct rcp_cache *c, const struct dns_question *q, uint8_t *resp, size_t len)
{
    if (!rcp_cache_covers(c, q)) return -1;
    struct dns_msg m;
    if (dns_msg_parse(&m, resp, len, c->rr_set, DNS_RR_MAX) != DNS_OK) return -1;
    struct dns_verdict v;
    dns_classify(&v, &m, q, (uint32_t)ev_now(c->loop));
    if (v.why == DNS_NC_MISMATCH) c->m.response_mismatches++;
    if (v.kind == DNS_KIND_NONE) return -1;
    uint32_t ttl = v.kind == DNS_KIND_POSITIVE
                       ? dns_ttl_clamp(v.msg_ttl, c->success_min, c->success_max)
                       : dns_ttl_clamp(v.msg_ttl, c->denial_min, c->denial_max);
    /* encoded before the TTLs change: the value keeps the upstream's (SPEC §1.2) */
    if (v.why == DNS_NC_OK && ttl > 0 && !c->closing) write_entry(c, q, &m, ttl);
    dns_msg_set_ttl(resp, &m, ttl);
    return (long)ttl;
}

size_t rcp_cache_pending_writes(const struct rcp_cache *c)
{
    return c->writes.n + c->evictions.n;
}

const struct rcp_metrics *rcp_cache_metrics(const struct rcp_cache *c)
{
    return &c->m;
}

void rcp_cache_set_udp_size(struct rcp_cache *c, uint16_t size)
{
    c->udp_size = size < DNS_UDP_MIN ? DNS_UDP_MIN : size;
}

size_t rcp_cache_collapsed_writes(const struct rcp_cache *c)
{
    return c->collapsed;
}

/* ---- life cycle ---------------------------------------------------------------------- */

static void drain_free_lists(struct rcp_cache *c)
{
    while (c->free_waiters) {
        struct waiter *w = c->free_waiters;
        c->free_waiters = w->next;
        free(w);
    }
    while (c->free_flights) {
        struct flight *f = c->free_flights;
        c->free_flights = (struct flight *)f->h.next;
        free(f);
    }
    while (c->free_ops) {
        struct op *o = c->free_ops;
        c->free_ops = o->free_next;
        free(o);
    }
}

void rcp_cache_free(struct rcp_cache *c)
{
    if (!c) return;
    c->closing = true;
    /* fails every pending request through our callbacks: lookups complete with ERROR,
     * writes and evictions are dropped */
    topo_router_free(c->router);
    c->router = NULL;
    if (c->resolver) topo_resolver_free(c->resolver);
    if (c->tls) resp_tls_ctx_free(c->tls);
    topo_hub_unref(c->hub);
    drain_free_lists(c);
    free(c->flights.b);
    free(c->writes.b);
    free(c->evictions.b);
    free(c->zones);
    free(c->rr_get);
    free(c->rr_set);
    free(c->reply);
    free(c->value);
    free(c);
}

static void node_opts(struct rcp_cache *c, const struct rcp_config *cfg, const struct rcp_addr *a,
                      struct topo_node_opts *n)
{
    memset(n, 0, sizeof *n);
    snprintf(n->host, sizeof n->host, "%s", a->host);
    n->port = a->port ? a->port : 6379;
    resp_conn_opts_init(&n->conn);
    n->conn.tls = c->tls;
    n->conn.tls_verify_hostname = cfg->tls_verify_chain && cfg->tls_verify_hostname;
    n->conn.username = cfg->username_set ? cfg->username : NULL;
    n->conn.password = cfg->password_set ? cfg->password : NULL;
    n->conn.db = cfg->db;
    n->conn.connect_timeout = cfg->connect_timeout;
    n->conn.keepalive = cfg->tcp_keepalive;
    n->pool = cfg->pool;
    if (n->pool.pipeline_high < PIPELINE_HIGH) n->pool.pipeline_high = PIPELINE_HIGH;
    n->hub = c->hub;
}

/* Sentinel and Cluster: the node template is built from a placeholder address (the
 * router replaces host and port per node it discovers). */
static int new_router_ha(struct rcp_cache *c, const struct rcp_config *cfg)
{
    struct topo_hostport addrs[RCP_ADDRS_MAX];
    const struct rcp_addr *src =
        cfg->mode == RCP_MODE_SENTINEL ? cfg->sentinels : cfg->cluster_seeds;
    size_t n = cfg->mode == RCP_MODE_SENTINEL ? cfg->n_sentinels : cfg->n_cluster_seeds;
    for (size_t i = 0; i < n; i++) {
        memcpy(addrs[i].host, src[i].host, sizeof addrs[i].host); /* same size, NUL inside */
        addrs[i].host[sizeof addrs[i].host - 1] = '\0';
        addrs[i].port = src[i].port;
    }
    if (cfg->mode == RCP_MODE_SENTINEL) {
        struct topo_sentinel_opts so;
        memset(&so, 0, sizeof so);
        snprintf(so.master, sizeof so.master, "%s", cfg->sentinel_master);
        so.sentinels = addrs;
        so.nsentinels = n;
        node_opts(c, cfg, &cfg->endpoint, &so.data);
        so.sentinel_conn = so.data.conn;
        so.sentinel_conn.username = cfg->sentinel_username_set ? cfg->sentinel_username : NULL;
        so.sentinel_conn.password = cfg->sentinel_password_set ? cfg->sentinel_password : NULL;
        so.sentinel_conn.db = 0;
        c->router = topo_sentinel_new(c->loop, c->resolver, &so);
    } else {
        struct topo_cluster_opts co;
        memset(&co, 0, sizeof co);
        co.seeds = addrs;
        co.nseeds = n;
        co.read_from = cfg->read_from == RCP_READ_RANDOM    ? TOPO_READ_RANDOM
                       : cfg->read_from == RCP_READ_PRIMARY ? TOPO_READ_PRIMARY
                                                            : TOPO_READ_LATENCY;
        node_opts(c, cfg, &cfg->endpoint, &co.data);
        co.data.conn.db = 0;
        c->router = topo_cluster_new(c->loop, c->resolver, &co);
    }
    return c->router ? 0 : -1;
}

static int set_zones(struct rcp_cache *c, const struct rcp_config *cfg, const char *const *zones,
                     size_t nzones, char *err, size_t errlen)
{
    size_t n = cfg->nzones ? cfg->nzones : nzones;
    c->zones = calloc(n ? n : 1, sizeof *c->zones);
    if (!c->zones) {
        snprintf(err, errlen, "redis_cache: out of memory");
        return -1;
    }
    if (n == 0) { /* no zones anywhere: the root covers every name */
        zone_to_wire(".", &c->zones[0]);
        c->nzones = 1;
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        const char *z = cfg->nzones ? cfg->zones[i] : zones[i];
        if (!z || zone_to_wire(z, &c->zones[i]) != 0) {
            snprintf(err, errlen, "redis_cache: invalid zone \"%s\"", z ? z : "(null)");
            return -1;
        }
    }
    c->nzones = n;
    return 0;
}

struct rcp_cache *rcp_cache_new(struct ev_loop *loop, const struct rcp_config *cfg,
                                const char *const *zones, size_t nzones, char *err, size_t errlen)
{
    return rcp_cache_new_shared(loop, cfg, zones, nzones, NULL, err, errlen);
}

struct rcp_cache *rcp_cache_new_shared(struct ev_loop *loop, const struct rcp_config *cfg,
                                       const char *const *zones, size_t nzones,
                                       struct topo_hub *hub, char *err, size_t errlen)
{
    char dummy[1];
    if (!err || errlen == 0) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = '\0';
    if (!loop || !cfg) {
        snprintf(err, errlen, "redis_cache: no loop or no configuration");
        return NULL;
    }
    if (cfg->n_read_endpoints > RCP_ADDRS_MAX || cfg->n_sentinels > RCP_ADDRS_MAX ||
        cfg->n_cluster_seeds > RCP_ADDRS_MAX) {
        snprintf(err, errlen, "redis_cache: too many read endpoints");
        return NULL;
    }

    struct rcp_cache *c = calloc(1, sizeof *c);
    struct topo_node_opts *nodes = NULL;
    if (!c) goto oom;
    c->loop = loop;
    if (hub) {
        topo_hub_ref(hub);
        c->hub = hub;
    }
    size_t plen = cfg->key_prefix_len < sizeof c->prefix ? cfg->key_prefix_len : 0;
    memcpy(c->prefix, cfg->key_prefix, plen); /* already trimmed of its ':' by the parser */
    c->prefix_len = plen;
    c->seed = cfg->key_hash_seed;
    c->success_min = cfg->success_min;
    c->success_max = cfg->success_max;
    c->denial_min = cfg->denial_min;
    c->denial_max = cfg->denial_max;
    c->read_timeout = cfg->read_timeout > 0 ? cfg->read_timeout : 0.5;
    c->write_timeout = cfg->write_timeout > 0 ? cfg->write_timeout : 2.0;
    c->udp_size = DNS_UDP_DEFAULT;
    if (htab_init(&c->flights) || htab_init(&c->writes) || htab_init(&c->evictions)) goto oom;
    c->rr_get = malloc(DNS_RR_MAX * sizeof *c->rr_get);
    c->rr_set = malloc(DNS_RR_MAX * sizeof *c->rr_set);
    c->reply = malloc(REPLY_CAP);
    c->value = malloc(DNS_ENTRY_MAX);
    if (!c->rr_get || !c->rr_set || !c->reply || !c->value) goto oom;
    if (set_zones(c, cfg, zones, nzones, err, errlen) != 0) goto fail;

    struct resp_err re;
    memset(&re, 0, sizeof re);
    if (cfg->tls || cfg->tls_ca[0] || cfg->tls_cert[0] || cfg->tls_key[0]) {
        struct resp_tls_opts to;
        resp_tls_opts_init(&to);
        to.ca_file = cfg->tls_ca[0] ? cfg->tls_ca : NULL;
        to.cert_file = cfg->tls_cert[0] ? cfg->tls_cert : NULL;
        to.key_file = cfg->tls_key[0] ? cfg->tls_key : NULL;
        to.verify_chain = cfg->tls_verify_chain;
        to.verify_hostname = cfg->tls_verify_hostname;
        c->tls = resp_tls_ctx_new(&to, &re);
        if (!c->tls) {
            snprintf(err, errlen, "redis_cache: tls: %s", re.msg);
            goto fail;
        }
    }
    struct topo_resolver_opts ro;
    memset(&ro, 0, sizeof ro);
    ro.nameserver = cfg->resolver[0] ? cfg->resolver : NULL;
    c->resolver = topo_resolver_new(loop, &ro, &re);
    if (!c->resolver) {
        snprintf(err, errlen, "redis_cache: resolver: %s", re.msg);
        goto fail;
    }

    if (cfg->mode == RCP_MODE_SENTINEL || cfg->mode == RCP_MODE_CLUSTER) {
        if (new_router_ha(c, cfg) != 0) goto oom;
        return c;
    }
    size_t nn = 1 + cfg->n_read_endpoints;
    nodes = calloc(nn, sizeof *nodes);
    if (!nodes) goto oom;
    node_opts(c, cfg, &cfg->endpoint, &nodes[0]);
    for (size_t i = 0; i < cfg->n_read_endpoints; i++)
        node_opts(c, cfg, &cfg->read_endpoints[i], &nodes[1 + i]);
    c->router = topo_standalone_new(loop, c->resolver, &nodes[0], nodes + 1, cfg->n_read_endpoints);
    if (!c->router) goto oom;
    free(nodes);
    return c;
oom:
    snprintf(err, errlen, "redis_cache: out of memory");
fail:
    free(nodes);
    rcp_cache_free(c);
    return NULL;
}
