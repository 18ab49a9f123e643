/* src/topology/cluster.c — placeholder until the cluster router lands (being written now). */
#include "topology/topology.h"

struct topo_router *topo_cluster_new(struct ev_loop *loop, struct topo_resolver *resolver,
                                     const struct topo_cluster_opts *o)
{
    (void)loop, (void)resolver, (void)o;
    return NULL;
}
unsigned topo_cluster_slot(const void *key, size_t len)
{
    (void)key;
    (void)len;
    return 0;
}
