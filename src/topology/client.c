/* src/topology/client.c — the public Redis client of include/redis_cache.h: a thin layer
 * that turns an rc_client_config into a resolver, a TLS context and a standalone router,
 * and a topology reply into the public rc_reply view. All the behaviour (pool, retries,
 * breaker) lives in pool.c and standalone.c.
 */
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_cache.h"
#include "resp/resp.h"
#include "topology/topology.h"

/* The public reply types are the RESP types, number for number. */
_Static_assert((int)RC_REPLY_STRING == (int)RESP_STRING && (int)RC_REPLY_ERROR == (int)RESP_ERROR &&
                   (int)RC_REPLY_INTEGER == (int)RESP_INTEGER &&
                   (int)RC_REPLY_BULK == (int)RESP_BULK && (int)RC_REPLY_ARRAY == (int)RESP_ARRAY &&
                   (int)RC_REPLY_NULL == (int)RESP_NULL && (int)RC_REPLY_BOOL == (int)RESP_BOOL &&
                   (int)RC_REPLY_DOUBLE == (int)RESP_DOUBLE &&
                   (int)RC_REPLY_BIGNUM == (int)RESP_BIGNUM &&
                   (int)RC_REPLY_BULK_ERROR == (int)RESP_BULK_ERROR &&
                   (int)RC_REPLY_VERBATIM == (int)RESP_VERBATIM &&
                   (int)RC_REPLY_MAP == (int)RESP_MAP && (int)RC_REPLY_SET == (int)RESP_SET &&
                   (int)RC_REPLY_PUSH == (int)RESP_PUSH,
               "rc_reply_type mirrors resp_type");

#define CTX_FREE_MAX 1024

struct cmd_ctx {
    struct cmd_ctx *next;
    struct rc_client *client;
    rc_reply_cb *cb;
    void *priv;
};

struct rc_client {
    struct ev_loop *loop;
    struct topo_resolver *resolver;
    struct ssl_ctx_st *tls;
    struct topo_router *router;
    struct topo_pool **pools; /* write first, then reads (for rc_client_nodes) */
    size_t npools;
    double read_timeout, write_timeout;
    struct cmd_ctx *free_ctx;
    size_t nfree;
};

void rc_client_config_init(struct rc_client_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->endpoint = "127.0.0.1:6379";
    cfg->tls_verify_chain = true;
    cfg->tls_verify_hostname = true;
    cfg->connect_timeout = 1.0;
    cfg->read_timeout = 0.5;
    cfg->write_timeout = 2.0;
    struct topo_pool_opts po;
    topo_pool_opts_init(&po);
    cfg->pool.size = po.size;
    cfg->pool.min_idle = po.min_idle;
    cfg->pool.max_idle = po.max_idle;
    cfg->pool.max_active = po.max_active;
    cfg->pool.max_idle_time = po.max_idle_time;
    cfg->pool.max_lifetime = po.max_lifetime;
    cfg->pool.wait_timeout = po.wait_timeout;
    cfg->pool.pipeline_high = po.pipeline_high;
    cfg->retries.max = po.retries;
    cfg->retries.min_backoff = po.min_backoff;
    cfg->retries.max_backoff = po.max_backoff;
    cfg->breaker_threshold = po.breaker_threshold;
}

static void view(const struct resp_value *v, struct rc_reply *out)
{
    memset(out, 0, sizeof *out);
    out->type = v->type;
    out->internal_ = v;
    switch (v->type) {
    case RESP_ARRAY:
    case RESP_MAP:
    case RESP_SET:
    case RESP_PUSH: out->elements = v->len; break;
    case RESP_NULL: break;
    default:
        out->str = v->str;
        out->len = v->len;
        if (v->type == RESP_INTEGER || v->type == RESP_BOOL) out->integer = v->integer;
        if (v->type == RESP_DOUBLE) out->dbl = v->dbl;
        break;
    }
}

int rc_reply_element(const struct rc_reply *r, size_t i, struct rc_reply *out)
{
    if (!r || !out || !r->internal_) return -1;
    const struct resp_value *v = r->internal_;
    if (v->type != RESP_ARRAY && v->type != RESP_MAP && v->type != RESP_SET && v->type != RESP_PUSH)
        return -1;
    if (i >= v->len || !v->elems) return -1;
    view(&v->elems[i], out);
    return 0;
}

static void ctx_release(struct rc_client *c, struct cmd_ctx *x)
{
    if (c->nfree >= CTX_FREE_MAX) {
        free(x);
        return;
    }
    x->next = c->free_ctx;
    c->free_ctx = x;
    c->nfree++;
}

static void on_reply(void *priv, size_t idx, const struct resp_value *reply,
                     const struct resp_err *err)
{
    struct cmd_ctx *x = priv;
    rc_reply_cb *cb = x->cb;
    void *upriv = x->priv;
    ctx_release(x->client, x);
    if (!reply) {
        const char *reason = err ? resp_err_kind_name(err->kind) : "";
        if (!reason || !*reason) reason = "other";
        cb(upriv, NULL, reason, err ? err->msg : "unknown error");
        return;
    }
    struct rc_reply r;
    view(reply, &r);
    if (reply->type == RESP_ERROR || reply->type == RESP_BULK_ERROR) {
        char msg[256];
        size_t n = reply->len < sizeof msg - 1 ? reply->len : sizeof msg - 1;
        if (n) memcpy(msg, reply->str, n);
        msg[n] = '\0';
        cb(upriv, &r, "other", msg);
        return;
    }
    cb(upriv, &r, NULL, NULL);
}

int rc_client_command(struct rc_client *c, bool write, size_t argc, const char *const *argv,
                      const size_t *lens, rc_reply_cb *cb, void *priv)
{
    if (!c || argc == 0 || !argv || !lens || !cb) return -1;
    struct cmd_ctx *x = c->free_ctx;
    if (x) {
        c->free_ctx = x->next;
        c->nfree--;
    } else {
        x = malloc(sizeof *x);
        if (!x) {
            cb(priv, NULL, "other", "out of memory");
            return 0;
        }
    }
    x->client = c;
    x->cb = cb;
    x->priv = priv;
    struct resp_cmd cmd = {argc, argv, lens};
    double deadline = ev_now(c->loop) + (write ? c->write_timeout : c->read_timeout);
    const void *key = argc > 1 ? argv[1] : NULL;
    size_t keylen = argc > 1 ? lens[1] : 0;
    topo_router_exec(c->router, key, keylen, write, &cmd, 1, deadline, 0, on_reply, x);
    return 0;
}

size_t rc_client_nodes(const struct rc_client *c, struct rc_node_stats *out, size_t cap)
{
    for (size_t i = 0; i < c->npools && i < cap; i++) {
        struct topo_pool_stats st;
        topo_pool_stats(c->pools[i], &st);
        memset(&out[i], 0, sizeof out[i]);
        snprintf(out[i].name, sizeof out[i].name, "%s", topo_pool_name(c->pools[i]));
        out[i].open = st.open;
        out[i].ready = st.ready;
        out[i].in_flight = st.in_flight;
        out[i].waiting = st.waiting;
        out[i].breaker_open = st.breaker == TOPO_BREAKER_OPEN;
        out[i].connects = st.connects;
        out[i].retries = st.retries;
    }
    return c->npools;
}

void rc_client_free(struct rc_client *c)
{
    if (!c) return;
    topo_router_free(c->router); /* fails what is pending through on_reply */
    if (c->resolver) topo_resolver_free(c->resolver);
    if (c->tls) resp_tls_ctx_free(c->tls);
    while (c->free_ctx) {
        struct cmd_ctx *x = c->free_ctx;
        c->free_ctx = x->next;
        free(x);
    }
    free(c->pools);
    free(c);
}

static int node_opts(const char *addr, const struct rc_client_config *cfg,
                     const struct rc_client *c, struct topo_node_opts *n, char *err, size_t errlen)
{
    memset(n, 0, sizeof *n);
    char why[160];
    if (topo_parse_hostport(addr, 6379, n->host, &n->port, why, sizeof why) != 0) {
        snprintf(err, errlen, "endpoint \"%s\": %s", addr, why);
        return -1;
    }
    resp_conn_opts_init(&n->conn);
    n->conn.tls = c->tls;
    n->conn.tls_verify_hostname = cfg->tls_verify_chain && cfg->tls_verify_hostname;
    n->conn.username = cfg->username;
    n->conn.password = cfg->password;
    n->conn.db = cfg->db;
    n->conn.client_name = cfg->client_name;
    n->conn.connect_timeout = cfg->connect_timeout;
    n->conn.keepalive = cfg->keepalive;
    topo_pool_opts_init(&n->pool);
    n->pool.size = cfg->pool.size;
    n->pool.min_idle = cfg->pool.min_idle;
    n->pool.max_idle = cfg->pool.max_idle;
    n->pool.max_active = cfg->pool.max_active;
    n->pool.max_idle_time = cfg->pool.max_idle_time;
    n->pool.max_lifetime = cfg->pool.max_lifetime;
    n->pool.wait_timeout = cfg->pool.wait_timeout;
    if (cfg->pool.pipeline_high) n->pool.pipeline_high = cfg->pool.pipeline_high;
    n->pool.retries = cfg->retries.max;
    n->pool.min_backoff = cfg->retries.min_backoff;
    n->pool.max_backoff = cfg->retries.max_backoff;
    n->pool.breaker_threshold = cfg->breaker_threshold;
    return 0;
}

static int check_config(const struct rc_client_config *cfg, char *err, size_t errlen)
{
    if (!cfg->endpoint || !*cfg->endpoint) {
        snprintf(err, errlen, "endpoint: missing");
        return -1;
    }
    if (cfg->n_read_endpoints && !cfg->read_endpoints) {
        snprintf(err, errlen, "read_endpoints: NULL with a count of %zu", cfg->n_read_endpoints);
        return -1;
    }
    if (!(cfg->connect_timeout > 0) || !(cfg->read_timeout > 0) || !(cfg->write_timeout > 0)) {
        snprintf(err, errlen, "timeout: connect, read and write must be > 0");
        return -1;
    }
    if (cfg->pool.wait_timeout < 0 || cfg->pool.max_idle_time < 0 || cfg->pool.max_lifetime < 0 ||
        cfg->keepalive < 0 || cfg->retries.min_backoff < 0 || cfg->retries.max_backoff < 0) {
        snprintf(err, errlen, "pool, retries and keepalive durations must be >= 0");
        return -1;
    }
    if (cfg->retries.min_backoff > cfg->retries.max_backoff) {
        snprintf(err, errlen, "retries: min_backoff (%g s) exceeds max_backoff (%g s)",
                 cfg->retries.min_backoff, cfg->retries.max_backoff);
        return -1;
    }
    if (cfg->username && !cfg->password) {
        snprintf(err, errlen, "username without password");
        return -1;
    }
    if (cfg->db < 0) {
        snprintf(err, errlen, "db: %d is negative", cfg->db);
        return -1;
    }
    if (!cfg->tls_cert != !cfg->tls_key) {
        snprintf(err, errlen, "tls_cert and tls_key go together");
        return -1;
    }
    return 0;
}

struct rc_client *rc_client_new(struct ev_loop *loop, const struct rc_client_config *cfg, char *err,
                                size_t errlen)
{
    char dummy[1];
    if (!err || errlen == 0) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = '\0';
    if (!loop || !cfg) {
        snprintf(err, errlen, "rc_client_new: no loop or no configuration");
        return NULL;
    }
    if (check_config(cfg, err, errlen) != 0) return NULL;

    struct rc_client *c = calloc(1, sizeof *c);
    struct topo_node_opts *nodes = NULL;
    if (!c) goto oom;
    c->loop = loop;
    c->read_timeout = cfg->read_timeout;
    c->write_timeout = cfg->write_timeout;

    struct resp_err re;
    memset(&re, 0, sizeof re);
    if (cfg->tls || cfg->tls_ca || cfg->tls_cert || cfg->tls_key) {
        struct resp_tls_opts to = {
            .ca_file = cfg->tls_ca,
            .cert_file = cfg->tls_cert,
            .key_file = cfg->tls_key,
            .verify_chain = cfg->tls_verify_chain,
            .verify_hostname = cfg->tls_verify_hostname,
        };
        c->tls = resp_tls_ctx_new(&to, &re);
        if (!c->tls) {
            snprintf(err, errlen, "tls: %s", re.msg);
            goto fail;
        }
    }
    struct topo_resolver_opts ro;
    memset(&ro, 0, sizeof ro);
    ro.nameserver = cfg->resolver;
    c->resolver = topo_resolver_new(loop, &ro, &re);
    if (!c->resolver) {
        snprintf(err, errlen, "%s", re.msg);
        goto fail;
    }

    size_t nn = 1 + cfg->n_read_endpoints;
    nodes = calloc(nn, sizeof *nodes);
    c->pools = calloc(nn, sizeof *c->pools);
    if (!nodes || !c->pools) goto oom;
    if (node_opts(cfg->endpoint, cfg, c, &nodes[0], err, errlen) != 0) goto fail;
    for (size_t i = 0; i < cfg->n_read_endpoints; i++) {
        const char *a = cfg->read_endpoints[i];
        if (!a || node_opts(a, cfg, c, &nodes[1 + i], err, errlen) != 0) {
            if (!a) snprintf(err, errlen, "read endpoint %zu: missing", i);
            goto fail;
        }
    }
    c->router = topo_standalone_new(loop, c->resolver, &nodes[0], nodes + 1, cfg->n_read_endpoints);
    if (!c->router) goto oom;
    c->npools = topo_standalone_pools(c->router, c->pools, nn);
    free(nodes);
    return c;
oom:
    snprintf(err, errlen, "rc_client_new: out of memory");
fail:
    free(nodes);
    rc_client_free(c);
    return NULL;
}
