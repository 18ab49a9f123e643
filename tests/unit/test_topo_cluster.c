/* tests/unit/test_topo_cluster.c — the pure parts of the Cluster router: CRC16 and hash
 * slots (the Redis Cluster spec's vectors), the CLUSTER SHARDS / CLUSTER SLOTS parsers
 * (RESP2 and RESP3 replies written as wire text and read by our RESP reader), slot map
 * validation, the MOVED / ASK / TRYAGAIN / CLUSTERDOWN error texts, and the view a leader
 * publishes to the other workers (cluster_share.c), with hostile input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "resp/resp.h"
#include "topology/cluster_internal.h"
#include "topology/topology.h"

/* ---- a tiny RESP text builder --------------------------------------------------------- */

struct wb {
    char buf[16384];
    size_t len;
};

static void wb_fmt(struct wb *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void wb_fmt(struct wb *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(w->buf + w->len, sizeof w->buf - w->len, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < sizeof w->buf - w->len);
    w->len += (size_t)n;
}
static void bulk(struct wb *w, const char *s)
{
    wb_fmt(w, "$%zu\r\n%s\r\n", strlen(s), s);
}
static void num(struct wb *w, long long v)
{
    wb_fmt(w, ":%lld\r\n", v);
}
/* an aggregate header: '*' array, '%' map (n pairs) */
static void agg(struct wb *w, char t, size_t n)
{
    wb_fmt(w, "%c%zu\r\n", t, n);
}

/* One node of CLUSTER SHARDS as Redis 7.0 writes it (RESP2: a flat array; RESP3: a map).
 * endpoint NULL writes a null. */
static void shards_node(struct wb *w, bool resp3, const char *ip, const char *endpoint, int port,
                        int tls_port, const char *role, const char *health)
{
    size_t pairs = 7 + (tls_port ? 1 : 0);
    agg(w, resp3 ? '%' : '*', resp3 ? pairs : 2 * pairs);
    bulk(w, "id");
    bulk(w, "0123456789abcdef0123456789abcdef01234567");
    bulk(w, "port");
    num(w, port);
    if (tls_port) {
        bulk(w, "tls-port");
        num(w, tls_port);
    }
    bulk(w, "ip");
    bulk(w, ip);
    bulk(w, "endpoint");
    if (endpoint)
        bulk(w, endpoint);
    else
        wb_fmt(w, resp3 ? "_\r\n" : "$-1\r\n");
    bulk(w, "replication-offset");
    num(w, 1234);
    bulk(w, "role");
    bulk(w, role);
    bulk(w, "health");
    bulk(w, health);
}

/* The shard header: slots (pairs of bounds) then the nodes that follow (nnodes of them). */
static void shard_head(struct wb *w, bool resp3, const long long *bounds, size_t nb, size_t nnodes)
{
    agg(w, resp3 ? '%' : '*', resp3 ? 2 : 4);
    bulk(w, "slots");
    agg(w, '*', nb);
    for (size_t i = 0; i < nb; i++) num(w, bounds[i]);
    bulk(w, "nodes");
    agg(w, '*', nnodes);
}

/* The classic 3 primaries + 3 replicas on 127.0.0.1:7000..7005. */
static void three_shards(struct wb *w, bool resp3)
{
    static const long long b0[] = {0, 5460}, b1[] = {5461, 10922}, b2[] = {10923, 16383};
    agg(w, '*', 3);
    shard_head(w, resp3, b0, 2, 2);
    shards_node(w, resp3, "127.0.0.1", "127.0.0.1", 7000, 0, "master", "online");
    shards_node(w, resp3, "127.0.0.1", "127.0.0.1", 7003, 0, "replica", "online");
    shard_head(w, resp3, b1, 2, 2);
    shards_node(w, resp3, "127.0.0.1", "127.0.0.1", 7004, 0, "replica", "online");
    shards_node(w, resp3, "127.0.0.1", "127.0.0.1", 7001, 0, "master", "online");
    shard_head(w, resp3, b2, 2, 2);
    shards_node(w, resp3, "127.0.0.1", "127.0.0.1", 7002, 0, "master", "online");
    shards_node(w, resp3, "127.0.0.1", "127.0.0.1", 7005, 0, "replica", "online");
}

/* ---- parsing through our reader ------------------------------------------------------ */

struct parsed {
    struct resp_reader *rd;
    const struct resp_value *v;
};

static void parse_text(struct parsed *p, const struct wb *w)
{
    p->rd = resp_reader_new(NULL);
    assert_non_null(p->rd);
    assert_int_equal(resp_reader_feed(p->rd, w->buf, w->len), 0);
    int rc = resp_reader_next(p->rd, &p->v);
    if (rc != RESP_GOT_REPLY) fail_msg("reader: %d %s", rc, resp_reader_errstr(p->rd));
}

enum which { SHARDS, SLOTS };

/* Runs a parser on the text; returns its status, message in err. */
static int run(enum which which, const struct wb *w, const char *reached, bool tls,
               struct cl_map *m, char *err, size_t errlen)
{
    struct parsed p;
    parse_text(&p, w);
    struct cl_parse_opts o = {.reached = reached, .tls = tls};
    err[0] = '\0';
    int rc = which == SHARDS ? cl_parse_shards(p.v, &o, m, err, errlen)
                             : cl_parse_slots(p.v, &o, m, err, errlen);
    resp_reader_free(p.rd);
    return rc;
}

static void expect_reject(enum which which, const struct wb *w, const char *why)
{
    struct cl_map m;
    cl_map_init(&m);
    char err[200];
    int rc = run(which, w, "10.0.0.1", false, &m, err, sizeof err);
    if (rc == 0) fail_msg("accepted, expected \"%s\"", why);
    if (!strstr(err, why)) fail_msg("message \"%s\" lacks \"%s\"", err, why);
    cl_map_free(&m);
}

static const struct cl_map_node *slot_primary(const struct cl_map *m, unsigned slot)
{
    uint16_t s = m->slot[slot];
    if (s == CL_NO_SHARD) return NULL;
    return &m->nodes[m->shards[s].primary];
}

/* ---- CRC16 and slots ----------------------------------------------------------------- */

static void test_crc16_check_value(void **state)
{
    assert_int_equal(topo_crc16("123456789", 9), 0x31C3);
    assert_int_equal(topo_crc16("", 0), 0);
}

static void test_slot_spec_vectors(void **state)
{
    assert_int_equal(topo_cluster_slot("foo", 3), 12182);
    assert_int_equal(topo_cluster_slot("{user1000}.following", 20), 3443);
    assert_int_equal(topo_cluster_slot("foo{}{bar}", 10), 8363);
    assert_int_equal(topo_cluster_slot("foo{{bar}}zap", 13), 4015);
    assert_int_equal(topo_cluster_slot("foo{bar}{zap}", 13), 5061);
}

static void test_slot_hash_tags(void **state)
{
    /* the tag alone decides: same slot as the bare tag */
    assert_int_equal(topo_cluster_slot("{user1000}.followers", 20), 3443);
    assert_int_equal(topo_cluster_slot("x{user1000}", 11), topo_cluster_slot("user1000", 8));
    /* no closing brace, or an empty tag: the whole key */
    assert_int_equal(topo_cluster_slot("foo{bar", 7), topo_crc16("foo{bar", 7) % 16384);
    assert_int_equal(topo_cluster_slot("{}", 2), topo_crc16("{}", 2) % 16384);
    assert_int_equal(topo_cluster_slot("}{", 2), topo_crc16("}{", 2) % 16384);
    /* binary keys, NUL inside */
    assert_int_equal(topo_cluster_slot("a\0b", 3), topo_crc16("a\0b", 3) % 16384);
    assert_int_equal(topo_cluster_slot("", 0), 0);
    /* every slot is in range for our key shape */
    char key[32];
    for (int i = 0; i < 2000; i++) {
        int n = snprintf(key, sizeof key, "cdrc:%016x", (unsigned)i * 2654435761u);
        assert_true(topo_cluster_slot(key, (size_t)n) < TOPO_CLUSTER_SLOTS);
    }
}

/* ---- CLUSTER SHARDS ------------------------------------------------------------------ */

static void check_three(const struct cl_map *m)
{
    assert_int_equal(m->covered, 16384);
    assert_int_equal(m->nshards, 3);
    assert_int_equal(m->nnodes, 6);
    assert_int_equal(slot_primary(m, 0)->port, 7000);
    assert_int_equal(slot_primary(m, 5460)->port, 7000);
    assert_int_equal(slot_primary(m, 5461)->port, 7001);
    assert_int_equal(slot_primary(m, 12182)->port, 7002);
    assert_int_equal(slot_primary(m, 16383)->port, 7002);
    assert_string_equal(slot_primary(m, 0)->host, "127.0.0.1");
    const struct cl_map_shard *s1 = &m->shards[m->slot[6000]];
    assert_int_equal(s1->nreplicas, 1);
    assert_int_equal(m->nodes[s1->replicas[0]].port, 7004); /* listed before its primary */
}

static void test_shards_resp2(void **state)
{
    struct wb w = {.len = 0};
    three_shards(&w, false);
    struct cl_map m;
    cl_map_init(&m);
    char err[200];
    if (run(SHARDS, &w, "seed", false, &m, err, sizeof err) != 0) fail_msg("%s", err);
    check_three(&m);
    cl_map_free(&m);
}

static void test_shards_resp3_maps(void **state)
{
    struct wb w = {.len = 0};
    three_shards(&w, true);
    struct cl_map m;
    cl_map_init(&m);
    char err[200];
    if (run(SHARDS, &w, "seed", false, &m, err, sizeof err) != 0) fail_msg("%s", err);
    check_three(&m);
    /* the same map parsed twice: emptied first, same result */
    if (run(SHARDS, &w, "seed", false, &m, err, sizeof err) != 0) fail_msg("%s", err);
    check_three(&m);
    cl_map_free(&m);
}

static void test_shards_endpoint_fallbacks(void **state)
{
    static const long long b0[] = {0, 99}, b1[] = {100, 199}, b2[] = {200, 299}, b3[] = {300, 399};
    struct wb w = {.len = 0};
    agg(&w, '*', 4);
    shard_head(&w, false, b0, 2, 1); /* null endpoint: the host we asked */
    shards_node(&w, false, "10.9.9.9", NULL, 7000, 0, "master", "online");
    shard_head(&w, false, b1, 2, 1); /* empty endpoint: the host we asked */
    shards_node(&w, false, "", "", 7001, 0, "master", "online");
    shard_head(&w, false, b2, 2, 1); /* "?": its ip */
    shards_node(&w, false, "10.1.2.3", "?", 7002, 0, "master", "online");
    shard_head(&w, false, b3, 2, 1); /* a hostname, kept for the resolver */
    shards_node(&w, false, "10.1.2.4", "redis-3.redis.svc", 7003, 0, "master", "online");
    struct cl_map m;
    cl_map_init(&m);
    char err[200];
    if (run(SHARDS, &w, "seed.example", false, &m, err, sizeof err) != 0) fail_msg("%s", err);
    assert_string_equal(slot_primary(&m, 0)->host, "seed.example");
    assert_string_equal(slot_primary(&m, 100)->host, "seed.example");
    assert_int_equal(slot_primary(&m, 100)->port, 7001);
    assert_string_equal(slot_primary(&m, 200)->host, "10.1.2.3");
    assert_string_equal(slot_primary(&m, 300)->host, "redis-3.redis.svc");
    assert_int_equal(m.covered, 400);
    assert_int_equal(m.slot[400], CL_NO_SHARD); /* partial coverage is allowed */
    cl_map_free(&m);
}

static void test_shards_tls_port_and_health(void **state)
{
    static const long long b0[] = {0, 16383};
    struct wb w = {.len = 0};
    agg(&w, '*', 1);
    shard_head(&w, true, b0, 2, 4);
    shards_node(&w, true, "127.0.0.1", "127.0.0.1", 7000, 17000, "master", "online");
    shards_node(&w, true, "127.0.0.1", "127.0.0.1", 7001, 17001, "replica", "online");
    shards_node(&w, true, "127.0.0.1", "127.0.0.1", 7002, 17002, "replica", "loading");
    shards_node(&w, true, "127.0.0.1", "127.0.0.1", 7003, 17003, "replica", "failed");
    struct cl_map m;
    cl_map_init(&m);
    char err[200];
    if (run(SHARDS, &w, "seed", true, &m, err, sizeof err) != 0) fail_msg("%s", err);
    assert_int_equal(slot_primary(&m, 42)->port, 17000);
    assert_int_equal(m.shards[0].nreplicas, 1); /* only the online replica reads */
    assert_int_equal(m.not_online, 2);
    assert_int_equal(m.nodes[m.shards[0].replicas[0]].port, 17001);
    if (run(SHARDS, &w, "seed", false, &m, err, sizeof err) != 0) fail_msg("%s", err);
    assert_int_equal(slot_primary(&m, 42)->port, 7000); /* plaintext: port */
    cl_map_free(&m);
}

static void test_shards_slotless_shard_skipped(void **state)
{
    static const long long b0[] = {0, 16383};
    struct wb w = {.len = 0};
    agg(&w, '*', 2);
    shard_head(&w, false, NULL, 0, 1); /* a new, empty primary */
    shards_node(&w, false, "127.0.0.1", "127.0.0.1", 7009, 0, "master", "online");
    shard_head(&w, false, b0, 2, 1);
    shards_node(&w, false, "127.0.0.1", "127.0.0.1", 7000, 0, "master", "online");
    struct cl_map m;
    cl_map_init(&m);
    char err[200];
    if (run(SHARDS, &w, "seed", false, &m, err, sizeof err) != 0) fail_msg("%s", err);
    assert_int_equal(m.nshards, 1);
    assert_int_equal(slot_primary(&m, 1)->port, 7000);
    cl_map_free(&m);
}

static void test_shards_hostile(void **state)
{
    struct wb w;
    static const long long out[] = {0, 16384}, neg[] = {-1, 5}, rev[] = {10, 5}, odd[] = {0, 5, 9},
                           a[] = {0, 100}, b[] = {100, 200};

    w.len = 0;
    wb_fmt(&w, "+OK\r\n");
    expect_reject(SHARDS, &w, "not an array");
    w.len = 0;
    wb_fmt(&w, "-ERR unknown subcommand\r\n");
    expect_reject(SHARDS, &w, "not an array");
    w.len = 0;
    agg(&w, '*', 0);
    expect_reject(SHARDS, &w, "no slot is served");
    w.len = 0;
    agg(&w, '*', 1);
    num(&w, 5);
    expect_reject(SHARDS, &w, "not a map with slots and nodes");
    w.len = 0; /* a map missing "nodes" */
    agg(&w, '*', 1);
    agg(&w, '*', 2);
    bulk(&w, "slots");
    agg(&w, '*', 0);
    expect_reject(SHARDS, &w, "not a map with slots and nodes");
    w.len = 0; /* an odd flat map */
    agg(&w, '*', 1);
    agg(&w, '*', 3);
    bulk(&w, "slots");
    agg(&w, '*', 0);
    bulk(&w, "nodes");
    expect_reject(SHARDS, &w, "not a map");

    const long long *bad[] = {out, neg, rev};
    const char *why[] = {"outside 0-16383", "outside 0-16383", "reversed"};
    for (int i = 0; i < 3; i++) {
        w.len = 0;
        agg(&w, '*', 1);
        shard_head(&w, false, bad[i], 2, 1);
        shards_node(&w, false, "127.0.0.1", "127.0.0.1", 7000, 0, "master", "online");
        expect_reject(SHARDS, &w, why[i]);
    }
    w.len = 0;
    agg(&w, '*', 1);
    shard_head(&w, false, odd, 3, 1);
    shards_node(&w, false, "127.0.0.1", "127.0.0.1", 7000, 0, "master", "online");
    expect_reject(SHARDS, &w, "odd number");

    w.len = 0; /* slot 100 claimed twice */
    agg(&w, '*', 2);
    shard_head(&w, false, a, 2, 1);
    shards_node(&w, false, "127.0.0.1", "127.0.0.1", 7000, 0, "master", "online");
    shard_head(&w, false, b, 2, 1);
    shards_node(&w, false, "127.0.0.1", "127.0.0.1", 7001, 0, "master", "online");
    expect_reject(SHARDS, &w, "slot 100 claimed by two shards");

    w.len = 0; /* slots, only a replica */
    agg(&w, '*', 1);
    shard_head(&w, false, a, 2, 1);
    shards_node(&w, false, "127.0.0.1", "127.0.0.1", 7000, 0, "replica", "online");
    expect_reject(SHARDS, &w, "no primary");

    w.len = 0; /* two primaries */
    agg(&w, '*', 1);
    shard_head(&w, false, a, 2, 2);
    shards_node(&w, false, "127.0.0.1", "127.0.0.1", 7000, 0, "master", "online");
    shards_node(&w, false, "127.0.0.1", "127.0.0.1", 7001, 0, "master", "online");
    expect_reject(SHARDS, &w, "two primaries");

    int ports[] = {0, -5, 65536};
    for (int i = 0; i < 3; i++) {
        w.len = 0;
        agg(&w, '*', 1);
        shard_head(&w, false, a, 2, 1);
        shards_node(&w, false, "127.0.0.1", "127.0.0.1", ports[i], 0, "master", "online");
        expect_reject(SHARDS, &w, "bad port");
    }
    w.len = 0; /* an endpoint with a space, and one over the host limit */
    agg(&w, '*', 1);
    shard_head(&w, false, a, 2, 1);
    shards_node(&w, false, "127.0.0.1", "bad host", 7000, 0, "master", "online");
    expect_reject(SHARDS, &w, "unusable endpoint");
    char longname[400];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    w.len = 0;
    agg(&w, '*', 1);
    shard_head(&w, false, a, 2, 1);
    shards_node(&w, false, "127.0.0.1", longname, 7000, 0, "master", "online");
    expect_reject(SHARDS, &w, "unusable endpoint");

    w.len = 0; /* a bound that is not a number */
    agg(&w, '*', 1);
    agg(&w, '*', 4);
    bulk(&w, "slots");
    agg(&w, '*', 2);
    bulk(&w, "zero");
    num(&w, 5);
    bulk(&w, "nodes");
    agg(&w, '*', 1);
    shards_node(&w, false, "127.0.0.1", "127.0.0.1", 7000, 0, "master", "online");
    expect_reject(SHARDS, &w, "not an integer");

    w.len = 0; /* a bad replica is skipped, not fatal */
    agg(&w, '*', 1);
    shard_head(&w, false, a, 2, 2);
    shards_node(&w, false, "127.0.0.1", "127.0.0.1", 7000, 0, "master", "online");
    shards_node(&w, false, "127.0.0.1", "127.0.0.1", 0, 0, "replica", "online");
    struct cl_map m;
    cl_map_init(&m);
    char err[200];
    if (run(SHARDS, &w, "seed", false, &m, err, sizeof err) != 0) fail_msg("%s", err);
    assert_int_equal(m.shards[0].nreplicas, 0);
    cl_map_free(&m);
}

/* ---- CLUSTER SLOTS ------------------------------------------------------------------- */

/* [ip-or-null, port, id] or with a metadata map {ip: ...} */
static void slots_node(struct wb *w, const char *endpoint, int port, const char *meta_ip)
{
    agg(w, '*', meta_ip ? 4 : 3);
    if (endpoint)
        bulk(w, endpoint);
    else
        wb_fmt(w, "$-1\r\n");
    num(w, port);
    bulk(w, "0123456789abcdef0123456789abcdef01234567");
    if (meta_ip) {
        agg(w, '*', 2);
        bulk(w, "ip");
        bulk(w, meta_ip);
    }
}

static void test_slots_basic_and_merge(void **state)
{
    struct wb w = {.len = 0};
    agg(&w, '*', 4);
    agg(&w, '*', 4); /* 0-5460 on 7000, replica 7003 */
    num(&w, 0);
    num(&w, 5460);
    slots_node(&w, "127.0.0.1", 7000, NULL);
    slots_node(&w, "127.0.0.1", 7003, NULL);
    agg(&w, '*', 3); /* 5461-10922 on a null endpoint: the host we asked */
    num(&w, 5461);
    num(&w, 10922);
    slots_node(&w, NULL, 7001, NULL);
    agg(&w, '*', 3); /* 10923-16000 on "?" with a metadata ip */
    num(&w, 10923);
    num(&w, 16000);
    slots_node(&w, "?", 7002, "10.0.0.2");
    agg(&w, '*', 4); /* 16001-16383 on 7000 again: the same shard */
    num(&w, 16001);
    num(&w, 16383);
    slots_node(&w, "127.0.0.1", 7000, NULL);
    slots_node(&w, "127.0.0.1", 7003, NULL);
    struct cl_map m;
    cl_map_init(&m);
    char err[200];
    if (run(SLOTS, &w, "seed.local", false, &m, err, sizeof err) != 0) fail_msg("%s", err);
    assert_int_equal(m.covered, 16384);
    assert_int_equal(m.nshards, 3);
    assert_int_equal(m.slot[0], m.slot[16383]);
    assert_int_equal(m.shards[m.slot[0]].nreplicas, 1);
    assert_string_equal(slot_primary(&m, 6000)->host, "seed.local");
    assert_int_equal(slot_primary(&m, 6000)->port, 7001);
    assert_string_equal(slot_primary(&m, 12000)->host, "10.0.0.2");
    cl_map_free(&m);
}

static void test_slots_hostile(void **state)
{
    struct wb w;
    w.len = 0;
    wb_fmt(&w, ":1\r\n");
    expect_reject(SLOTS, &w, "not an array");
    w.len = 0;
    agg(&w, '*', 0);
    expect_reject(SLOTS, &w, "no slot is served");
    w.len = 0; /* too short */
    agg(&w, '*', 1);
    agg(&w, '*', 2);
    num(&w, 0);
    num(&w, 10);
    expect_reject(SLOTS, &w, "not [start, end");
    w.len = 0; /* primary with port 0 */
    agg(&w, '*', 1);
    agg(&w, '*', 3);
    num(&w, 0);
    num(&w, 10);
    slots_node(&w, "127.0.0.1", 0, NULL);
    expect_reject(SLOTS, &w, "unusable primary");
    w.len = 0; /* primary not an array */
    agg(&w, '*', 1);
    agg(&w, '*', 3);
    num(&w, 0);
    num(&w, 10);
    bulk(&w, "127.0.0.1:7000");
    expect_reject(SLOTS, &w, "unusable primary");
    w.len = 0; /* overlap between two primaries */
    agg(&w, '*', 2);
    agg(&w, '*', 3);
    num(&w, 0);
    num(&w, 10);
    slots_node(&w, "127.0.0.1", 7000, NULL);
    agg(&w, '*', 3);
    num(&w, 10);
    num(&w, 20);
    slots_node(&w, "127.0.0.1", 7001, NULL);
    expect_reject(SLOTS, &w, "slot 10 claimed by two shards");
    w.len = 0; /* out of range */
    agg(&w, '*', 1);
    agg(&w, '*', 3);
    num(&w, 16000);
    num(&w, 20000);
    slots_node(&w, "127.0.0.1", 7000, NULL);
    expect_reject(SLOTS, &w, "outside 0-16383");
}

/* Random damage to valid replies: parsers must never crash or accept inconsistent maps. */
static void test_parsers_survive_mutations(void **state)
{
    struct wb base = {.len = 0};
    three_shards(&base, true);
    uint64_t x = 0x1234567887654321ULL;
    struct cl_map m;
    cl_map_init(&m);
    for (int iter = 0; iter < 3000; iter++) {
        struct wb w = base;
        for (int k = 0; k < 3; k++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.buf[x % w.len] = (char)(x >> 32);
        }
        struct resp_reader *rd = resp_reader_new(NULL);
        assert_non_null(rd);
        resp_reader_feed(rd, w.buf, w.len);
        const struct resp_value *v;
        if (resp_reader_next(rd, &v) == RESP_GOT_REPLY) {
            char err[200];
            struct cl_parse_opts o = {.reached = "seed", .tls = (iter & 1) != 0};
            for (int which = 0; which < 2; which++) {
                int rc = which ? cl_parse_slots(v, &o, &m, err, sizeof err)
                               : cl_parse_shards(v, &o, &m, err, sizeof err);
                if (rc != 0) continue;
                size_t covered = 0;
                for (unsigned s = 0; s < TOPO_CLUSTER_SLOTS; s++) {
                    if (m.slot[s] == CL_NO_SHARD) continue;
                    covered++;
                    assert_true(m.slot[s] < m.nshards);
                    assert_true(m.shards[m.slot[s]].primary < m.nnodes);
                }
                assert_int_equal(covered, m.covered);
                for (size_t i = 0; i < m.nnodes; i++) {
                    assert_true(m.nodes[i].port > 0);
                    assert_true(strlen(m.nodes[i].host) > 0);
                }
            }
        }
        resp_reader_free(rd);
    }
    cl_map_free(&m);
}

/* ---- the view shared through the hub ------------------------------------------------- */

static void assert_maps_equal(const struct cl_map *a, const struct cl_map *b)
{
    assert_int_equal(a->nnodes, b->nnodes);
    assert_int_equal(a->nshards, b->nshards);
    assert_int_equal(a->covered, b->covered);
    assert_int_equal(a->not_online, b->not_online);
    for (size_t i = 0; i < a->nnodes; i++) {
        assert_string_equal(a->nodes[i].host, b->nodes[i].host);
        assert_int_equal(a->nodes[i].port, b->nodes[i].port);
    }
    for (size_t i = 0; i < a->nshards; i++) {
        assert_int_equal(a->shards[i].primary, b->shards[i].primary);
        assert_int_equal(a->shards[i].nreplicas, b->shards[i].nreplicas);
        for (unsigned k = 0; k < a->shards[i].nreplicas; k++)
            assert_int_equal(a->shards[i].replicas[k], b->shards[i].replicas[k]);
    }
    assert_memory_equal(a->slot, b->slot, sizeof a->slot);
}

/* The three-shard map of check_three, parsed from a CLUSTER SHARDS reply. */
static void three_map(struct cl_map *m)
{
    struct wb w = {.len = 0};
    three_shards(&w, false);
    cl_map_init(m);
    char err[200];
    if (run(SHARDS, &w, "seed", false, m, err, sizeof err) != 0) fail_msg("%s", err);
}

static void test_view_round_trip_keeps_nodes_shards_and_slots(void **state)
{
    struct cl_map a, b;
    three_map(&a);
    a.not_online = 2;
    a.slot[100] = CL_NO_SHARD; /* a hole: followers must see it too */
    a.covered--;
    struct resp_err why = {RESP_EK_NONE, ""};
    size_t len = 0;
    void *blob = cl_view_encode(&a, &why, &len);
    assert_non_null(blob);
    cl_map_init(&b);
    struct resp_err got;
    bool have = false;
    assert_int_equal(cl_view_decode(blob, len, &b, &got, &have), 0);
    assert_true(have);
    assert_string_equal(got.msg, "");
    assert_maps_equal(&a, &b);
    assert_int_equal(slot_primary(&b, 5461)->port, 7001);
    assert_int_equal(b.slot[100], CL_NO_SHARD);
    /* decoding again into a used map empties it first */
    assert_int_equal(cl_view_decode(blob, len, &b, &got, &have), 0);
    assert_maps_equal(&a, &b);
    free(blob);
    cl_map_free(&a);
    cl_map_free(&b);
}

static void test_view_without_table_carries_the_discovery_error(void **state)
{
    struct resp_err why;
    resp_err_set(&why, RESP_EK_TIMEOUT, "discovery: 127.0.0.1:7000: timed out");
    size_t len = 0;
    void *blob = cl_view_encode(NULL, &why, &len);
    assert_non_null(blob);
    struct cl_map m;
    three_map(&m); /* a stale table in the scratch map is dropped */
    struct resp_err got;
    bool have = true;
    assert_int_equal(cl_view_decode(blob, len, &m, &got, &have), 0);
    assert_false(have);
    assert_int_equal(got.kind, RESP_EK_TIMEOUT);
    assert_string_equal(got.msg, why.msg);
    assert_int_equal(m.nnodes, 0);
    assert_int_equal(m.nshards, 0);
    assert_int_equal(m.slot[0], CL_NO_SHARD);
    free(blob);
    cl_map_free(&m);
}

/* Every index of a decoded map points inside it. */
static void assert_map_sane(const struct cl_map *m)
{
    size_t covered = 0;
    for (unsigned s = 0; s < TOPO_CLUSTER_SLOTS; s++) {
        if (m->slot[s] == CL_NO_SHARD) continue;
        covered++;
        assert_true(m->slot[s] < m->nshards);
    }
    assert_int_equal(covered, m->covered);
    for (size_t i = 0; i < m->nshards; i++) {
        assert_true(m->shards[i].primary < m->nnodes);
        assert_true(m->shards[i].nreplicas <= CL_REPLICAS_MAX);
        for (unsigned k = 0; k < m->shards[i].nreplicas; k++)
            assert_true(m->shards[i].replicas[k] < m->nnodes);
    }
    for (size_t i = 0; i < m->nnodes; i++) {
        assert_true(m->nodes[i].port > 0);
        assert_true(strlen(m->nodes[i].host) > 0);
    }
}

static void expect_bad_view(const unsigned char *blob, size_t len, const char *what)
{
    struct cl_map m;
    three_map(&m);
    struct resp_err got;
    bool have = false;
    if (cl_view_decode(blob, len, &m, &got, &have) == 0) fail_msg("accepted: %s", what);
    assert_int_equal(m.nnodes, 0); /* nothing half-read survives */
    assert_int_equal(m.nshards, 0);
    cl_map_free(&m);
}

/* The byte offset of the first node's host length, the first shard and the slot table. */
struct view_offsets {
    size_t node0, shard0, slots;
};

static struct view_offsets offsets_of(const struct cl_map *a, const struct resp_err *why)
{
    struct view_offsets o;
    o.node0 = 4 + 4 + 2 + strlen(why->msg) + 1 + 12;
    o.shard0 = o.node0;
    for (size_t i = 0; i < a->nnodes; i++) o.shard0 += 2 + strlen(a->nodes[i].host) + 2;
    o.slots = o.shard0;
    for (size_t i = 0; i < a->nshards; i++) o.slots += 4 + 2 * (size_t)a->shards[i].nreplicas;
    return o;
}

static void test_view_short_long_or_corrupt_is_rejected(void **state)
{
    struct cl_map a;
    three_map(&a);
    struct resp_err why = {RESP_EK_CONNECTION, "x"};
    size_t len = 0;
    unsigned char *blob = cl_view_encode(&a, &why, &len);
    assert_non_null(blob);
    unsigned char *c = malloc(len + 1);
    assert_non_null(c);
    /* every cut short, and one byte too many */
    for (size_t cut = 0; cut < len; cut++) expect_bad_view(blob, cut, "a short view");
    memcpy(c, blob, len);
    c[len] = 0;
    expect_bad_view(c, len + 1, "a trailing byte");
    expect_bad_view(NULL, 0, "no view");
    struct view_offsets o = offsets_of(&a, &why);
    uint16_t v16;
    uint32_t v32;
    /* the offsets point where the tests below think they do */
    memcpy(&v32, blob + o.node0 - 12, 4);
    assert_int_equal(v32, a.nnodes);
    memcpy(&v16, blob + o.node0, 2);
    assert_int_equal(v16, strlen(a.nodes[0].host));
    memcpy(&v16, blob + o.shard0, 2);
    assert_int_equal(v16, a.shards[0].primary);
    memcpy(&v16, blob + o.slots + 2 * 777, 2);
    assert_int_equal(v16, a.slot[777]);
    assert_int_equal(o.slots + sizeof a.slot, len);
    /* wrong magic, unknown error kind, have_table neither 0 nor 1 */
    memcpy(c, blob, len);
    c[0] ^= 0xff;
    expect_bad_view(c, len, "bad magic");
    memcpy(c, blob, len);
    v32 = 99;
    memcpy(c + 4, &v32, 4);
    expect_bad_view(c, len, "an unknown error kind");
    memcpy(c, blob, len);
    c[4 + 4 + 2 + 1] = 2;
    expect_bad_view(c, len, "have_table 2");
    /* node count larger than the blob can hold */
    memcpy(c, blob, len);
    v32 = 60000;
    memcpy(c + o.node0 - 12, &v32, 4);
    expect_bad_view(c, len, "60000 nodes in a small blob");
    /* an empty host, a host with a NUL inside, port 0 */
    memcpy(c, blob, len);
    v16 = 0;
    memcpy(c + o.node0, &v16, 2);
    expect_bad_view(c, len, "an empty host");
    memcpy(c, blob, len);
    c[o.node0 + 3] = '\0';
    expect_bad_view(c, len, "a NUL in a host");
    memcpy(c, blob, len);
    memcpy(c + o.node0 + 2 + strlen(a.nodes[0].host), &v16, 2);
    expect_bad_view(c, len, "port 0");
    /* a shard's primary or replica outside the nodes, too many replicas */
    memcpy(c, blob, len);
    v16 = (uint16_t)a.nnodes;
    memcpy(c + o.shard0, &v16, 2);
    expect_bad_view(c, len, "a primary past the nodes");
    memcpy(c, blob, len);
    v16 = CL_REPLICAS_MAX + 1;
    memcpy(c + o.shard0 + 2, &v16, 2);
    expect_bad_view(c, len, "too many replicas");
    assert_true(a.shards[0].nreplicas >= 1);
    memcpy(c, blob, len);
    v16 = 0xfffe;
    memcpy(c + o.shard0 + 4, &v16, 2);
    expect_bad_view(c, len, "a replica past the nodes");
    /* a slot pointing past the shards */
    memcpy(c, blob, len);
    v16 = (uint16_t)a.nshards;
    memcpy(c + o.slots + 2 * 777, &v16, 2);
    expect_bad_view(c, len, "a slot past the shards");
    /* random damage: rejected, or decoded into a map whose every index is inside it */
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    struct cl_map m;
    cl_map_init(&m);
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(c, blob, len);
        for (int k = 0; k < 2; k++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            /* mostly the header and the nodes, where the counts and lengths live */
            size_t at = (iter & 1) ? x % len : x % (o.slots + 8 < len ? o.slots + 8 : len);
            c[at] = (unsigned char)(x >> 32);
        }
        struct resp_err got;
        bool have = false;
        if (cl_view_decode(c, len, &m, &got, &have) == 0) {
            assert_true(strlen(got.msg) < sizeof got.msg);
            if (have) assert_map_sane(&m);
        }
    }
    cl_map_free(&m);
    free(c);
    free(blob);
    cl_map_free(&a);
}

/* ---- redirects ----------------------------------------------------------------------- */

static enum cl_redir_kind redir(const char *s, struct cl_redirect *r)
{
    return cl_parse_redirect(s, strlen(s), "reached.host", r);
}

static void test_redirect_moved_ask(void **state)
{
    struct cl_redirect r;
    assert_int_equal(redir("MOVED 3999 127.0.0.1:6381", &r), CL_REDIR_MOVED);
    assert_int_equal(r.slot, 3999);
    assert_string_equal(r.host, "127.0.0.1");
    assert_int_equal(r.port, 6381);
    assert_int_equal(redir("ASK 3999 127.0.0.1:6381", &r), CL_REDIR_ASK);
    assert_int_equal(r.kind, CL_REDIR_ASK);
    assert_int_equal(r.port, 6381);
    assert_int_equal(redir("MOVED 0 redis-2.redis.svc:6379", &r), CL_REDIR_MOVED);
    assert_string_equal(r.host, "redis-2.redis.svc");
    assert_int_equal(redir("MOVED 16383 ::1:7000", &r), CL_REDIR_MOVED); /* unbracketed v6 */
    assert_string_equal(r.host, "::1");
    assert_int_equal(r.port, 7000);
    assert_int_equal(redir("ASK 5 [fe80::1]:7001", &r), CL_REDIR_ASK);
    assert_string_equal(r.host, "fe80::1");
    assert_int_equal(redir("MOVED 12 :7002", &r), CL_REDIR_MOVED); /* unknown endpoint */
    assert_string_equal(r.host, "reached.host");
    assert_int_equal(r.port, 7002);
}

static void test_redirect_retryable(void **state)
{
    struct cl_redirect r;
    assert_int_equal(redir("TRYAGAIN Multiple keys request during rehashing of slot", &r),
                     CL_REDIR_TRYAGAIN);
    assert_int_equal(redir("TRYAGAIN", &r), CL_REDIR_TRYAGAIN);
    assert_int_equal(redir("CLUSTERDOWN The cluster is down", &r), CL_REDIR_CLUSTERDOWN);
    assert_int_equal(redir("CLUSTERDOWN Hash slot not served", &r), CL_REDIR_CLUSTERDOWN);
}

static void test_redirect_malformed_is_plain_error(void **state)
{
    const char *bad[] = {
        "ERR unknown command",
        "MOVED",
        "MOVED ",
        "MOVED 1",
        "MOVED 1 ",
        "MOVED x 127.0.0.1:7000",
        "MOVED 16384 127.0.0.1:7000",
        "MOVED 99999999999 127.0.0.1:7000",
        "MOVED -1 127.0.0.1:7000",
        "MOVED 1 127.0.0.1",
        "MOVED 1 127.0.0.1:",
        "MOVED 1 127.0.0.1:0",
        "MOVED 1 127.0.0.1:65536",
        "MOVED 1 127.0.0.1:70a",
        "MOVED 1 127.0.0.1:123456",
        "MOVEDX 1 127.0.0.1:7000",
        "ASKING 1 127.0.0.1:7000",
        "ask 1 127.0.0.1:7000",
        "TRYAGAINX",
        "WRONGTYPE Operation against a key",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct cl_redirect r;
        if (redir(bad[i], &r) != CL_REDIR_NONE) fail_msg("\"%s\" taken as a redirect", bad[i]);
        assert_int_equal(r.kind, CL_REDIR_NONE);
    }
    /* a NUL inside the host, and no reached host for an empty one */
    struct cl_redirect r;
    assert_int_equal(cl_parse_redirect("MOVED 1 a\0b:7000", 17, "x", &r), CL_REDIR_NONE);
    assert_int_equal(cl_parse_redirect("MOVED 1 :7000", 13, NULL, &r), CL_REDIR_NONE);
    assert_int_equal(cl_parse_redirect(NULL, 0, "x", &r), CL_REDIR_NONE);
    /* length bounds the text: a valid prefix cut short is not a redirect */
    assert_int_equal(cl_parse_redirect("MOVED 1 127.0.0.1:7000", 10, "x", &r), CL_REDIR_NONE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc16_check_value),
        cmocka_unit_test(test_slot_spec_vectors),
        cmocka_unit_test(test_slot_hash_tags),
        cmocka_unit_test(test_shards_resp2),
        cmocka_unit_test(test_shards_resp3_maps),
        cmocka_unit_test(test_shards_endpoint_fallbacks),
        cmocka_unit_test(test_shards_tls_port_and_health),
        cmocka_unit_test(test_shards_slotless_shard_skipped),
        cmocka_unit_test(test_shards_hostile),
        cmocka_unit_test(test_slots_basic_and_merge),
        cmocka_unit_test(test_slots_hostile),
        cmocka_unit_test(test_parsers_survive_mutations),
        cmocka_unit_test(test_view_round_trip_keeps_nodes_shards_and_slots),
        cmocka_unit_test(test_view_without_table_carries_the_discovery_error),
        cmocka_unit_test(test_view_short_long_or_corrupt_is_rejected),
        cmocka_unit_test(test_redirect_moved_ask),
        cmocka_unit_test(test_redirect_retryable),
        cmocka_unit_test(test_redirect_malformed_is_plain_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
