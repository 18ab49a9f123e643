/* src/topology/cluster_parse.c — pure parsers of the Cluster router: the CLUSTER SHARDS and
 * CLUSTER SLOTS replies into a validated slot map (struct cl_map), and the cluster error
 * replies (MOVED, ASK, TRYAGAIN, CLUSTERDOWN). No sockets, no loop: the unit tests feed
 * them hostile trees.
 *
 * Endpoints: a node's preferred endpoint may be NULL or "" (the node does not know it: use
 * the address the reply came from, with the node's port) or "?" (announced hostnames
 * configured without a hostname: use its "ip" when the reply has one, else the address the
 * reply came from). Hostnames are kept as such; the pools resolve them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "topology/cluster_internal.h"

/* ---- the map ------------------------------------------------------------------------ */

void cl_map_init(struct cl_map *m)
{
    m->nodes = NULL;
    m->shards = NULL;
    m->nnodes = m->capnodes = m->nshards = m->capshards = 0;
    m->covered = m->not_online = 0;
    for (size_t i = 0; i < TOPO_CLUSTER_SLOTS; i++) m->slot[i] = CL_NO_SHARD;
}

void cl_map_free(struct cl_map *m)
{
    free(m->nodes);
    free(m->shards);
    m->nodes = NULL;
    m->shards = NULL;
    m->nnodes = m->capnodes = m->nshards = m->capshards = 0;
}

static void map_reset(struct cl_map *m)
{
    m->nnodes = m->nshards = 0;
    m->covered = m->not_online = 0;
    for (size_t i = 0; i < TOPO_CLUSTER_SLOTS; i++) m->slot[i] = CL_NO_SHARD;
}

/* The node's index (added when new), or -1 (too many nodes, no memory). */
static int map_node(struct cl_map *m, const char *host, size_t hostlen, uint16_t port)
{
    for (size_t i = 0; i < m->nnodes; i++)
        if (m->nodes[i].port == port && strlen(m->nodes[i].host) == hostlen &&
            memcmp(m->nodes[i].host, host, hostlen) == 0)
            return (int)i;
    if (m->nnodes >= CL_NODES_MAX) return -1;
    if (m->nnodes == m->capnodes) {
        size_t cap = m->capnodes ? m->capnodes * 2 : 8;
        struct cl_map_node *n = realloc(m->nodes, cap * sizeof *n);
        if (!n) return -1;
        m->nodes = n;
        m->capnodes = cap;
    }
    struct cl_map_node *n = &m->nodes[m->nnodes];
    memcpy(n->host, host, hostlen);
    n->host[hostlen] = '\0';
    n->port = port;
    return (int)m->nnodes++;
}

/* A new shard with that primary, or the existing one (CLUSTER SLOTS lists a shard once per
 * range). -1 without memory. */
static int map_shard(struct cl_map *m, int primary, bool reuse)
{
    if (reuse)
        for (size_t i = 0; i < m->nshards; i++)
            if (m->shards[i].primary == primary) return (int)i;
    if (m->nshards >= CL_NO_SHARD) return -1;
    if (m->nshards == m->capshards) {
        size_t cap = m->capshards ? m->capshards * 2 : 4;
        struct cl_map_shard *s = realloc(m->shards, cap * sizeof *s);
        if (!s) return -1;
        m->shards = s;
        m->capshards = cap;
    }
    struct cl_map_shard *s = &m->shards[m->nshards];
    memset(s, 0, sizeof *s);
    s->primary = (uint16_t)primary;
    return (int)m->nshards++;
}

static void shard_add_replica(struct cl_map_shard *s, int node)
{
    if (node == s->primary) return;
    for (unsigned i = 0; i < s->nreplicas; i++)
        if (s->replicas[i] == node) return;
    if (s->nreplicas < CL_REPLICAS_MAX) s->replicas[s->nreplicas++] = (uint16_t)node;
}

/* Assigns [lo, hi] to shard; -1 with a message when out of range, reversed or taken. */
static int map_range(struct cl_map *m, long long lo, long long hi, int shard, const char *what,
                     char *err, size_t errlen)
{
    if (lo < 0 || hi < 0 || lo >= TOPO_CLUSTER_SLOTS || hi >= TOPO_CLUSTER_SLOTS) {
        snprintf(err, errlen, "%s: slot range %lld-%lld outside 0-16383", what, lo, hi);
        return -1;
    }
    if (lo > hi) {
        snprintf(err, errlen, "%s: reversed slot range %lld-%lld", what, lo, hi);
        return -1;
    }
    for (long long s = lo; s <= hi; s++) {
        if (m->slot[s] != CL_NO_SHARD && m->slot[s] != shard) {
            snprintf(err, errlen, "%s: slot %lld claimed by two shards", what, s);
            return -1;
        }
        if (m->slot[s] == CL_NO_SHARD) m->covered++;
        m->slot[s] = (uint16_t)shard;
    }
    return 0;
}

/* ---- reading values ----------------------------------------------------------------- */

static bool v_str(const struct resp_value *v, const char **p, size_t *n)
{
    if (!v) return false;
    if (v->type != RESP_STRING && v->type != RESP_BULK && v->type != RESP_VERBATIM) return false;
    *p = v->len ? v->str : "";
    *n = v->len;
    return true;
}

static bool v_eq(const struct resp_value *v, const char *s)
{
    const char *p;
    size_t n;
    return v_str(v, &p, &n) && n == strlen(s) && memcmp(p, s, n) == 0;
}

static bool v_int(const struct resp_value *v, long long *out)
{
    if (!v) return false;
    if (v->type == RESP_INTEGER) {
        *out = v->integer;
        return true;
    }
    const char *p;
    size_t n;
    if (!v_str(v, &p, &n) || n == 0 || n > 18) return false; /* digits as text */
    long long x = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return false;
        x = x * 10 + (p[i] - '0');
    }
    *out = x;
    return true;
}

/* A RESP3 map, or a RESP2 array of key, value pairs: its pair count, or -1. */
static long v_pairs(const struct resp_value *v)
{
    if (!v || (v->type != RESP_MAP && v->type != RESP_ARRAY) || v->len % 2) return -1;
    return (long)(v->len / 2);
}

static const struct resp_value *v_field(const struct resp_value *obj, const char *key)
{
    long n = v_pairs(obj);
    for (long i = 0; i < n; i++)
        if (v_eq(&obj->elems[2 * i], key)) return &obj->elems[2 * i + 1];
    return NULL;
}

static bool v_is_aggr(const struct resp_value *v)
{
    return v && (v->type == RESP_ARRAY || v->type == RESP_SET);
}

/* The host to dial for an endpoint value (NULL when the field is absent or null), with
 * the fallbacks of the header comment. Returns its length, or 0 when unusable. */
static size_t pick_host(const struct resp_value *endpoint, const struct resp_value *ip,
                        const char *reached, const char **out)
{
    const char *p = NULL, *q;
    size_t n = 0, qn;
    bool have = v_str(endpoint, &p, &n);
    if (have && n == 1 && p[0] == '?') {
        if (v_str(ip, &q, &qn) && qn > 0 && !(qn == 1 && q[0] == '?')) {
            p = q;
            n = qn;
        } else {
            have = false;
        }
    } else if (have && n == 0) {
        have = false;
    }
    if (!have) {
        p = reached ? reached : "";
        n = strlen(p);
    }
    if (n == 0 || n >= TOPO_HOST_MAX || memchr(p, '\0', n)) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] <= ' ' || p[i] == 0x7f) return 0; /* no spaces, no controls */
    *out = p;
    return n;
}

static bool port_ok(long long port)
{
    return port > 0 && port <= 65535;
}

/* ---- CLUSTER SHARDS ----------------------------------------------------------------- */

/* One node of a shard: its index, or -1 when unusable (why in err), -2 when it must be
 * skipped quietly (a replica that is not online). *primary tells its role. */
static int shards_node(struct cl_map *m, const struct resp_value *nv, const struct cl_parse_opts *o,
                       bool *primary, char *err, size_t errlen)
{
    if (v_pairs(nv) < 0) {
        snprintf(err, errlen, "node is not a map");
        return -1;
    }
    const struct resp_value *role = v_field(nv, "role");
    *primary = v_eq(role, "master") || v_eq(role, "primary");
    if (!*primary && !v_eq(role, "replica") && !v_eq(role, "slave")) {
        snprintf(err, errlen, "node without a known role");
        return -1;
    }
    const struct resp_value *health = v_field(nv, "health");
    if (!*primary && health && !v_eq(health, "online")) return -2;
    long long port = 0, tport = 0;
    if (!v_int(v_field(nv, "port"), &port)) port = 0;
    if (o->tls && v_int(v_field(nv, "tls-port"), &tport) && port_ok(tport)) port = tport;
    if (!port_ok(port)) {
        snprintf(err, errlen, "node with bad port %lld", port);
        return -1;
    }
    const char *h;
    size_t hn = pick_host(v_field(nv, "endpoint"), v_field(nv, "ip"), o->reached, &h);
    if (!hn) {
        snprintf(err, errlen, "node with an unusable endpoint");
        return -1;
    }
    int idx = map_node(m, h, hn, (uint16_t)port);
    if (idx < 0) snprintf(err, errlen, "too many nodes");
    return idx;
}

int cl_parse_shards(const struct resp_value *v, const struct cl_parse_opts *o, struct cl_map *m,
                    char *err, size_t errlen)
{
    char why[128];
    map_reset(m);
    if (!v_is_aggr(v)) {
        snprintf(err, errlen, "CLUSTER SHARDS: reply is a %s, not an array",
                 v ? resp_type_name(v->type) : "nothing");
        return -1;
    }
    for (size_t si = 0; si < v->len; si++) {
        const struct resp_value *sv = &v->elems[si];
        char what[48];
        snprintf(what, sizeof what, "CLUSTER SHARDS: shard %zu", si);
        const struct resp_value *slots = v_field(sv, "slots");
        const struct resp_value *nodes = v_field(sv, "nodes");
        if (v_pairs(sv) < 0 || !v_is_aggr(slots) || !v_is_aggr(nodes)) {
            snprintf(err, errlen, "%s: not a map with slots and nodes", what);
            return -1;
        }
        if (slots->len % 2) {
            snprintf(err, errlen, "%s: odd number of slot bounds", what);
            return -1;
        }
        if (slots->len == 0) continue; /* a primary without slots serves nothing */
        int primary = -1;
        int reps[CL_REPLICAS_MAX];
        unsigned nreps = 0;
        for (size_t ni = 0; ni < nodes->len; ni++) {
            bool is_primary = false;
            int idx = shards_node(m, &nodes->elems[ni], o, &is_primary, why, sizeof why);
            if (idx == -2) {
                m->not_online++;
                continue;
            }
            if (idx < 0) {
                if (!is_primary && strcmp(why, "too many nodes") != 0 &&
                    v_pairs(&nodes->elems[ni]) >= 0)
                    continue; /* an unusable replica is only one read target less */
                snprintf(err, errlen, "%s: node %zu: %s", what, ni, why);
                return -1;
            }
            if (is_primary) {
                if (primary >= 0 && primary != idx) {
                    snprintf(err, errlen, "%s: two primaries", what);
                    return -1;
                }
                primary = idx;
            } else if (nreps < CL_REPLICAS_MAX) {
                reps[nreps++] = idx;
            }
        }
        if (primary < 0) {
            snprintf(err, errlen, "%s: slots but no primary", what);
            return -1;
        }
        int sh = map_shard(m, primary, false);
        if (sh < 0) {
            snprintf(err, errlen, "%s: out of memory", what);
            return -1;
        }
        for (unsigned i = 0; i < nreps; i++) shard_add_replica(&m->shards[sh], reps[i]);
        for (size_t k = 0; k < slots->len; k += 2) {
            long long lo, hi;
            if (!v_int(&slots->elems[k], &lo) || !v_int(&slots->elems[k + 1], &hi)) {
                snprintf(err, errlen, "%s: slot bound is not an integer", what);
                return -1;
            }
            if (map_range(m, lo, hi, sh, what, err, errlen) < 0) return -1;
        }
    }
    if (m->covered == 0) {
        snprintf(err, errlen, "CLUSTER SHARDS: no slot is served");
        return -1;
    }
    return 0;
}

/* ---- CLUSTER SLOTS ------------------------------------------------------------------ */

/* [endpoint, port, id?, metadata?]: the node's index, or -1. */
static int slots_node(struct cl_map *m, const struct resp_value *nv, const struct cl_parse_opts *o)
{
    if (!v_is_aggr(nv) || nv->len < 2) return -1;
    const struct resp_value *ep = &nv->elems[0];
    if (ep->type == RESP_NULL)
        ep = NULL;
    else if (!v_str(ep, &(const char *){NULL}, &(size_t){0}))
        return -1;
    long long port;
    if (!v_int(&nv->elems[1], &port) || !port_ok(port)) return -1;
    const struct resp_value *ip = NULL;
    if (nv->len >= 4 && v_pairs(&nv->elems[3]) >= 0) ip = v_field(&nv->elems[3], "ip");
    const char *h;
    size_t hn = pick_host(ep, ip, o->reached, &h);
    if (!hn) return -1;
    return map_node(m, h, hn, (uint16_t)port);
}

int cl_parse_slots(const struct resp_value *v, const struct cl_parse_opts *o, struct cl_map *m,
                   char *err, size_t errlen)
{
    map_reset(m);
    if (!v_is_aggr(v)) {
        snprintf(err, errlen, "CLUSTER SLOTS: reply is a %s, not an array",
                 v ? resp_type_name(v->type) : "nothing");
        return -1;
    }
    for (size_t ri = 0; ri < v->len; ri++) {
        const struct resp_value *rv = &v->elems[ri];
        char what[48];
        snprintf(what, sizeof what, "CLUSTER SLOTS: entry %zu", ri);
        long long lo, hi;
        if (!v_is_aggr(rv) || rv->len < 3 || !v_int(&rv->elems[0], &lo) ||
            !v_int(&rv->elems[1], &hi)) {
            snprintf(err, errlen, "%s: not [start, end, primary, replicas...]", what);
            return -1;
        }
        int primary = slots_node(m, &rv->elems[2], o);
        if (primary < 0) {
            snprintf(err, errlen, "%s: unusable primary", what);
            return -1;
        }
        int sh = map_shard(m, primary, true);
        if (sh < 0) {
            snprintf(err, errlen, "%s: out of memory", what);
            return -1;
        }
        for (size_t k = 3; k < rv->len; k++) {
            int r = slots_node(m, &rv->elems[k], o);
            if (r >= 0) shard_add_replica(&m->shards[sh], r); /* a bad replica is skipped */
        }
        if (map_range(m, lo, hi, sh, what, err, errlen) < 0) return -1;
    }
    if (m->covered == 0) {
        snprintf(err, errlen, "CLUSTER SLOTS: no slot is served");
        return -1;
    }
    return 0;
}

/* ---- redirects ---------------------------------------------------------------------- */

static bool word(const char *s, size_t len, const char *w)
{
    size_t n = strlen(w);
    return len >= n && memcmp(s, w, n) == 0 && (len == n || s[n] == ' ');
}

enum cl_redir_kind cl_parse_redirect(const char *s, size_t len, const char *reached,
                                     struct cl_redirect *out)
{
    memset(out, 0, sizeof *out);
    if (!s) return CL_REDIR_NONE;
    if (word(s, len, "TRYAGAIN")) return out->kind = CL_REDIR_TRYAGAIN;
    if (word(s, len, "CLUSTERDOWN")) return out->kind = CL_REDIR_CLUSTERDOWN;
    enum cl_redir_kind kind;
    size_t i;
    if (word(s, len, "MOVED")) {
        kind = CL_REDIR_MOVED;
        i = 6;
    } else if (word(s, len, "ASK")) {
        kind = CL_REDIR_ASK;
        i = 4;
    } else {
        return CL_REDIR_NONE;
    }
    /* slot */
    unsigned slot = 0;
    size_t d = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9' && d < 6)
        slot = slot * 10 + (unsigned)(s[i++] - '0'), d++;
    if (d == 0 || slot >= TOPO_CLUSTER_SLOTS || i >= len || s[i] != ' ') return CL_REDIR_NONE;
    i++;
    /* host:port up to the end (or a space) */
    size_t end = i;
    while (end < len && s[end] != ' ') end++;
    const char *a = s + i;
    size_t alen = end - i;
    const char *colon = NULL;
    for (size_t k = alen; k > 0; k--)
        if (a[k - 1] == ':') {
            colon = a + k - 1;
            break;
        }
    if (!colon) return CL_REDIR_NONE;
    const char *h = a;
    size_t hn = (size_t)(colon - a);
    if (hn >= 2 && h[0] == '[' && h[hn - 1] == ']') {
        h++;
        hn -= 2;
    }
    const char *pp = colon + 1;
    size_t pn = (size_t)(a + alen - pp);
    unsigned long port = 0;
    if (pn == 0 || pn > 5) return CL_REDIR_NONE;
    for (size_t k = 0; k < pn; k++) {
        if (pp[k] < '0' || pp[k] > '9') return CL_REDIR_NONE;
        port = port * 10 + (unsigned long)(pp[k] - '0');
    }
    if (!port_ok((long long)port)) return CL_REDIR_NONE;
    if (hn == 0) {
        h = reached ? reached : "";
        hn = strlen(h);
    }
    if (hn == 0 || hn >= TOPO_HOST_MAX || memchr(h, '\0', hn)) return CL_REDIR_NONE;
    for (size_t k = 0; k < hn; k++)
        if ((unsigned char)h[k] <= ' ' || h[k] == 0x7f) return CL_REDIR_NONE;
    memcpy(out->host, h, hn);
    out->host[hn] = '\0';
    out->port = (uint16_t)port;
    out->slot = slot;
    out->kind = kind;
    return kind;
}
