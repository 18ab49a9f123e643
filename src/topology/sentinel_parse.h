/* src/topology/sentinel_parse.h — private to the Sentinel router: pure functions that read
 * Sentinel's replies and pub/sub messages (sentinel_parse.c). No sockets, no state: every
 * shape a sentinel (or something pretending to be one) may send is checked here, so the
 * router (sentinel.c, sentinel_watch.c) only ever sees validated host/port pairs.
 */
#ifndef RC_TOPOLOGY_SENTINEL_PARSE_H
#define RC_TOPOLOGY_SENTINEL_PARSE_H

#include <stdbool.h>
#include <stddef.h>

#include "resp/resp.h"
#include "topology/topology.h"

/* SENTINEL get-master-addr-by-name: 1 with *out set (two strings: host and a port in
 * 1..65535), 0 for nil (the sentinel does not know the master), -1 otherwise (error reply,
 * wrong shape, bad host or port) with a message in err. */
int sentinel_parse_master_addr(const struct resp_value *v, struct topo_hostport *out, char *err,
                               size_t errlen);

/* ROLE: 1 when the first element says "master", 0 for another role ("slave", "sentinel"),
 * -1 when the reply is an error or not a ROLE reply. */
int sentinel_parse_role(const struct resp_value *v);

/* Whether an instance's comma-separated `flags` allow traffic: false when any of s_down,
 * o_down or disconnected is set. */
bool sentinel_flags_usable(const char *flags, size_t len);

/* SENTINEL replicas / SENTINEL sentinels: an array of instances, each a flat array of
 * field/value pairs (RESP2) or a map (RESP3). Fills out[] with the ip/port of each instance
 * (at most cap; instances with a missing or bad ip/port are skipped), and when skip_down
 * leaves out instances whose flags are not usable. Returns the number written, or -1 when
 * the reply is an error or not an array (message in err). */
int sentinel_parse_instances(const struct resp_value *v, bool skip_down, struct topo_hostport *out,
                             size_t cap, char *err, size_t errlen);

/* A pub/sub message (a RESP2 array or a RESP3 push: "message", channel, payload): 0 with
 * the channel and payload slices set, -1 for anything else (confirmations, pongs). */
int sentinel_parse_message(const struct resp_value *v, const char **chan, size_t *chanlen,
                           const char **payload, size_t *paylen);

/* +switch-master payload "<name> <old-ip> <old-port> <new-ip> <new-port>": 1 when it is
 * about `master` (new address in *out), 0 when it names another master, -1 malformed. */
int sentinel_parse_switch_master(const char *p, size_t len, const char *master,
                                 struct topo_hostport *out);

/* Instance event payload (+sdown, -sdown, +odown, -odown, +slave, +slave-reconf-done...):
 * "<type> <name> <ip> <port> @ <master> <master-ip> <master-port>", or for the master
 * itself "master <name> <ip> <port>". 1 when the event concerns `master` (the master or one
 * of its replicas or sentinels), 0 when another master, -1 malformed. */
int sentinel_parse_instance_event(const char *p, size_t len, const char *master);

/* Whether two addresses are the same (host compared as text, ASCII case folded). */
bool sentinel_hostport_eq(const struct topo_hostport *a, const struct topo_hostport *b);

#endif /* RC_TOPOLOGY_SENTINEL_PARSE_H */
