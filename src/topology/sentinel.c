/* src/topology/sentinel.c — placeholder until the sentinel router lands (being written now). */
#include "topology/topology.h"

struct topo_router *topo_sentinel_new(struct ev_loop *loop, struct topo_resolver *resolver,
                                      const struct topo_sentinel_opts *o)
{
    (void)loop, (void)resolver, (void)o;
    return NULL;
}
