/* src/topology/standalone.c — the standalone router: `endpoint` takes the writes (and the
 * reads when there is no read_endpoint); one read endpoint takes every read; with two or
 * more, each read picks one at random (a per-router PRNG seeded from getrandom, so two
 * routers in one process never share state or sequence).
 */
#include <stdlib.h>
#include <string.h>

#include "topology/pool_internal.h"
#include "topology/topology.h"

struct standalone {
    struct topo_router r; /* first: the router pointer is the struct pointer */
    struct topo_pool *write;
    struct topo_pool **reads;
    size_t nreads;
    uint64_t rng;
};

static int sa_exec(struct topo_router *r, const void *key, size_t keylen, bool write,
                   const struct resp_cmd *cmds, size_t n, double deadline, unsigned flags,
                   topo_reply_fn *fn, void *priv)
{
    struct standalone *s = (struct standalone *)r;
    struct topo_pool *p = s->write;
    if (!write && s->nreads == 1) {
        p = s->reads[0];
    } else if (!write && s->nreads > 1) {
        /* the modulo bias of 64 random bits over a handful of replicas is negligible */
        p = s->reads[topo_rng_next(&s->rng) % s->nreads];
    }
    return topo_pool_exec(p, cmds, n, deadline, flags, fn, priv);
}

static void sa_free(struct topo_router *r)
{
    struct standalone *s = (struct standalone *)r;
    for (size_t i = 0; i < s->nreads; i++) topo_pool_free(s->reads[i]);
    free(s->reads);
    topo_pool_free(s->write);
    free(s);
}

static const struct topo_router_ops sa_ops = {
    .exec = sa_exec,
    .free = sa_free,
};

struct topo_router *topo_standalone_new(struct ev_loop *loop, struct topo_resolver *resolver,
                                        const struct topo_node_opts *write,
                                        const struct topo_node_opts *reads, size_t nreads)
{
    struct standalone *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->r.ops = &sa_ops;
    s->rng = topo_pool_rng_seed(s);
    if (nreads) {
        s->reads = calloc(nreads, sizeof *s->reads);
        if (!s->reads) goto fail;
    }
    s->write = topo_pool_new(loop, resolver, write);
    if (!s->write) goto fail;
    for (size_t i = 0; i < nreads; i++) {
        s->reads[i] = topo_pool_new(loop, resolver, &reads[i]);
        if (!s->reads[i]) goto fail;
        s->nreads = i + 1;
    }
    return &s->r;
fail:
    sa_free(&s->r);
    return NULL;
}

size_t topo_standalone_pools(struct topo_router *r, struct topo_pool **out, size_t cap)
{
    if (!r || r->ops != &sa_ops) return 0;
    struct standalone *s = (struct standalone *)r;
    size_t n = 0;
    if (n < cap) out[n] = s->write;
    n++;
    for (size_t i = 0; i < s->nreads; i++, n++)
        if (n < cap) out[n] = s->reads[i];
    return n < cap ? n : cap;
}
