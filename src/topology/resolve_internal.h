/* src/topology/resolve_internal.h — private to the resolver: what resolv_conf.c (the files
 * it reads: resolv.conf and the hosts file, and the `resolver` directive) and resolve.c (the
 * lookups and the DNS transport) share. Not part of the topology interface (topology.h).
 */
#ifndef RC_TOPOLOGY_RESOLVE_INTERNAL_H
#define RC_TOPOLOGY_RESOLVE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "topology/topology.h"

#define RS_NS_MAX     3 /* nameservers kept from resolv.conf (glibc MAXNS) */
#define RS_SEARCH_MAX 8 /* search domains kept */

struct rs_host {
    const char *name; /* lowercased, NUL-terminated, inside topo_resolver.hosts_text */
    uint32_t seq;     /* file order, to keep it among equal names after sorting */
    uint32_t scope;   /* IPv6 zone index */
    uint8_t family;
    uint8_t addr[16];
};

struct topo_resolver {
    struct ev_loop *loop;
    struct sockaddr_storage ns[RS_NS_MAX];
    socklen_t nslen[RS_NS_MAX];
    size_t nns;
    char search[RS_SEARCH_MAX][TOPO_HOST_MAX];
    size_t nsearch;
    unsigned ndots;
    double timeout;
    unsigned attempts;
    char *hosts_text;
    struct rs_host *hosts; /* sorted by name, then file order */
    size_t nhosts;
    char no_ns[160]; /* why names cannot be resolved, when nns == 0 */
    struct topo_resolve_req *reqs;
};

/* ---- resolv_conf.c -------------------------------------------------------------------- */

/* Fills r's nameservers, search list, ndots, timeout, attempts and hosts table from o and
 * the files it names (or /etc/resolv.conf, /etc/hosts). 0, or -1 with err set; either way
 * topo_rs_conf_free releases what was loaded. */
int topo_rs_conf_load(struct topo_resolver *r, const struct topo_resolver_opts *o,
                      struct resp_err *err);
void topo_rs_conf_free(struct topo_resolver *r);

/* The hosts file's addresses for name (IPv4 first, then IPv6, each in file order) with
 * port into out; false when the name is not there. */
bool topo_rs_hosts_lookup(const struct topo_resolver *r, const char *name, uint16_t port,
                          struct topo_addrs *out);

/* IPv4, IPv6 or IPv6%zone literal of `len` bytes into ss with port. */
bool topo_rs_ip_literal(const char *s, size_t len, uint16_t port, struct sockaddr_storage *ss,
                        socklen_t *sslen);

/* A sockaddr of family (AF_INET: 4 bytes of addr, AF_INET6: 16 and scope) with port. */
void topo_rs_sockaddr_from(struct sockaddr_storage *ss, socklen_t *len, int family,
                           const uint8_t *addr, uint32_t scope, uint16_t port);

#endif /* RC_TOPOLOGY_RESOLVE_INTERNAL_H */
