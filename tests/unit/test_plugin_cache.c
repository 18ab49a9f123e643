/* tests/unit/test_plugin_cache.c — the cache (src/plugin/cache.c) without a Redis server:
 * zones (host and directive, case, escapes, invalid names), what store does to a response
 * (TTL rewrite per kind and bounds, untouched never-cached rcodes, mismatch and encode
 * counters, DO from the response for the write), write collapsing, SKIP at once, modes not
 * available yet, and lookups failing with reason connection against a closed port. The
 * integration test (tests/integration/itest_plugin.c) covers the same against redis-server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <ev.h>

#include "plugin/plugin.h"
#include "support/fixtures.h"

static struct rcp_config cfg;

/* Port 1 on loopback: nothing listens there, connections are refused. */
static void cfg_closed(void)
{
    rcp_config_init(&cfg);
    cfg.endpoint.port = 1;
}

static struct rcp_cache *mk(struct ev_loop *loop, const char *const *zones, size_t n)
{
    char err[256];
    struct rcp_cache *c = rcp_cache_new(loop, &cfg, zones, n, err, sizeof err);
    if (!c) fail_msg("rcp_cache_new: %s", err);
    return c;
}

static struct dns_question question(const char *name)
{
    const struct dns_fixture *f = fixture(name);
    struct dns_question q;
    assert_int_equal(dns_question_parse(&q, f->query, f->query_len), DNS_OK);
    return q;
}

/* A query for a dotted ASCII name, type A, built by hand. */
static struct dns_question question_for(const char *name)
{
    uint8_t b[300];
    size_t n = 12;
    memset(b, 0, 12);
    b[5] = 1; /* QDCOUNT */
    const char *p = name;
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t l = dot ? (size_t)(dot - p) : strlen(p);
        b[n++] = (uint8_t)l;
        memcpy(b + n, p, l);
        n += l;
        p += l + (dot ? 1 : 0);
    }
    b[n++] = 0;
    b[n++] = 0;
    b[n++] = 1;
    b[n++] = 0;
    b[n++] = 1;
    struct dns_question q;
    assert_int_equal(dns_question_parse(&q, b, n), DNS_OK);
    return q;
}

static void test_zones(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(0);
    cfg_closed();
    const char *host[] = {"Example.ORG.", "b\\.c.net", "x\\065y.test."};
    struct rcp_cache *c = mk(loop, host, 3);
    struct dns_question q = question_for("www.EXAMPLE.org");
    assert_true(rcp_cache_covers(c, &q));
    q = question_for("example.org");
    assert_true(rcp_cache_covers(c, &q));
    q = question_for("badexample.org"); /* a suffix, but not at a label boundary */
    assert_false(rcp_cache_covers(c, &q));
    q = question_for("org");
    assert_false(rcp_cache_covers(c, &q));
    q = question_for("b.c.net"); /* the zone is the one label "b.c" */
    assert_false(rcp_cache_covers(c, &q));
    q = question_for("a.xay.test"); /* \065 is 'A', folded */
    assert_true(rcp_cache_covers(c, &q));
    rcp_cache_free(c);

    /* the directive's zones win over the host's; none at all covers everything */
    cfg.nzones = 1;
    snprintf(cfg.zones[0], sizeof cfg.zones[0], "net.");
    c = mk(loop, host, 3);
    q = question_for("example.org");
    assert_false(rcp_cache_covers(c, &q));
    q = question_for("a.net");
    assert_true(rcp_cache_covers(c, &q));
    rcp_cache_free(c);
    cfg.nzones = 0;
    c = mk(loop, NULL, 0);
    q = question_for("anything.example");
    assert_true(rcp_cache_covers(c, &q));
    rcp_cache_free(c);
    const char *root[] = {"."};
    c = mk(loop, root, 1);
    assert_true(rcp_cache_covers(c, &q));
    rcp_cache_free(c);

    char err[256];
    const char *bad[] = {"a..b.", "x\\3",
                         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."};
    for (size_t i = 0; i < 3; i++) {
        assert_null(rcp_cache_new(loop, &cfg, &bad[i], 1, err, sizeof err));
        assert_non_null(strstr(err, "redis_cache: invalid zone"));
    }
    ev_loop_destroy(loop);
}

static void test_bad_tls_file_fails_creation(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(0);
    cfg_closed();
    char err[256];
    snprintf(cfg.tls_ca, sizeof cfg.tls_ca, "/nonexistent/ca.pem");
    cfg.tls = true;
    assert_null(rcp_cache_new(loop, &cfg, NULL, 0, err, sizeof err));
    assert_non_null(strstr(err, "redis_cache: tls: "));
    ev_loop_destroy(loop);
}

static uint32_t ttl_at(const uint8_t *buf, size_t len, size_t i)
{
    struct dns_msg m;
    struct dns_rr rr[64];
    assert_int_equal(dns_msg_parse(&m, buf, len, rr, 64), DNS_OK);
    return dns_get32(buf + rr[i].ttl_off);
}

static long store(struct rcp_cache *c, const char *qname, const char *rname, uint8_t *buf)
{
    const struct dns_fixture *f = fixture(rname);
    memcpy(buf, f->resp, f->resp_len);
    struct dns_question q = question(qname);
    return rcp_cache_store(c, &q, buf, f->resp_len);
}

static void test_store_ttls_and_counters(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(0);
    cfg_closed();
    cfg.success_max = 100;
    cfg.success_min = 10;
    cfg.denial_max = 50;
    cfg.denial_min = 0;
    struct rcp_cache *c = mk(loop, NULL, 0);
    const struct rcp_metrics *m = rcp_cache_metrics(c);
    uint8_t buf[4096];

    /* positive: 300 capped to 100, every RR rewritten, OPT untouched */
    assert_int_equal(store(c, "mx_example_com", "mx_example_com", buf), 100);
    size_t n = fixture("mx_example_com")->resp_len;
    struct dns_msg msg;
    struct dns_rr rr[64];
    assert_int_equal(dns_msg_parse(&msg, buf, n, rr, 64), DNS_OK);
    for (size_t i = 0; i < msg.nrr; i++)
        if (rr[i].type != DNS_T_OPT) assert_int_equal(dns_get32(buf + rr[i].ttl_off), 100);
    assert_int_equal(
        memcmp(buf + msg.opt_off, fixture("mx_example_com")->resp + msg.opt_off, msg.opt_len), 0);
    assert_int_equal(rcp_cache_pending_writes(c), 1);

    /* negative: min(SOA 3600, MINIMUM 300) capped to 50 */
    assert_int_equal(store(c, "nxdomain", "nxdomain", buf), 50);
    assert_int_equal(ttl_at(buf, fixture("nxdomain")->resp_len, 0), 50);
    /* CHAOS TTL 0 raised to the success minimum 10 */
    assert_int_equal(store(c, "chaos_version", "chaos_version", buf), 10);
    assert_int_equal(rcp_cache_pending_writes(c), 3);

    /* a never-cached rcode: -1, untouched */
    assert_int_equal(store(c, "refused", "refused", buf), -1);
    assert_memory_equal(buf, fixture("refused")->resp, fixture("refused")->resp_len);
    /* a mismatch: TTL set, counted, not written */
    assert_int_equal(store(c, "aaaa_example_com", "a_example_com", buf), 100);
    assert_int_equal(m->response_mismatches, 1);
    assert_int_equal(rcp_cache_pending_writes(c), 3);
    assert_int_equal(m->encode_errors, 0);

    /* the write key takes DO from the response: a DO=1 response to a DO=0 query collapses
     * with nothing (its key differs from the DO=0 write in flight) */
    assert_int_equal(store(c, "a_example_com", "a_example_com", buf), 100);
    assert_int_equal(rcp_cache_pending_writes(c), 4);
    assert_int_equal(store(c, "a_example_com", "a_example_com_do", buf), 100);
    assert_int_equal(rcp_cache_pending_writes(c), 5);
    assert_int_equal(rcp_cache_collapsed_writes(c), 0);
    /* the same key again while in flight: dropped */
    assert_int_equal(store(c, "a_mixed_case", "a_mixed_case", buf), 100);
    assert_int_equal(rcp_cache_pending_writes(c), 5);
    assert_int_equal(rcp_cache_collapsed_writes(c), 1);

    /* outside the zones: -1, untouched */
    rcp_cache_free(c);
    const char *zones[] = {"example.net."};
    c = mk(loop, zones, 1);
    assert_int_equal(store(c, "a_example_com", "a_example_com", buf), -1);
    assert_memory_equal(buf, fixture("a_example_com")->resp, fixture("a_example_com")->resp_len);
    rcp_cache_free(c); /* pending writes dropped: no leak under ASan */
    ev_loop_destroy(loop);
}

struct lres {
    int calls;
    enum rcp_lookup_status st;
};

static void on_lookup(void *priv, enum rcp_lookup_status st, const uint8_t *reply, size_t len)
{
    struct lres *r = priv;
    r->calls++;
    r->st = st;
    assert_true(st == RCP_LOOKUP_HIT ? reply != NULL && len > 0 : reply == NULL && len == 0);
}

static void test_lookup_skip_and_connection_error(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(0);
    cfg_closed();
    const char *zones[] = {"example.com."};
    struct rcp_cache *c = mk(loop, zones, 1);
    struct lres r[3];
    memset(r, 0, sizeof r);
    struct dns_question q = question("signed_a_do"); /* signed.test: outside */
    assert_int_equal(rcp_cache_lookup(c, &q, false, on_lookup, &r[0]), 0);
    assert_int_equal(r[0].calls, 1);
    assert_int_equal(r[0].st, RCP_LOOKUP_SKIP);
    assert_int_equal(rcp_cache_metrics(c)->duration_count, 0);

    /* two lookups of one key share one request; both fail with reason connection */
    struct dns_question qa = question("a_example_com"), qb = question("a_mixed_case");
    assert_int_equal(rcp_cache_lookup(c, &qa, false, on_lookup, &r[1]), 0);
    assert_int_equal(rcp_cache_lookup(c, &qb, false, on_lookup, &r[2]), 0);
    for (int i = 0; i < 200 && (r[1].calls == 0 || r[2].calls == 0); i++) ev_run(loop, EVRUN_ONCE);
    assert_int_equal(r[1].calls, 1);
    assert_int_equal(r[2].calls, 1);
    assert_int_equal(r[1].st, RCP_LOOKUP_ERROR);
    assert_int_equal(r[2].st, RCP_LOOKUP_ERROR);
    const struct rcp_metrics *m = rcp_cache_metrics(c);
    assert_int_equal(m->get_errors[RCP_REASON_CONNECTION], 1); /* one read */
    assert_int_equal(m->duration_count, 2);                    /* two queries */
    assert_int_equal(m->hits, 0);

    /* freed with a lookup pending: it completes with ERROR */
    struct lres p = {0};
    assert_int_equal(rcp_cache_lookup(c, &qa, false, on_lookup, &p), 0);
    rcp_cache_free(c);
    assert_int_equal(p.calls, 1);
    assert_int_equal(p.st, RCP_LOOKUP_ERROR);
    ev_loop_destroy(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zones),
        cmocka_unit_test(test_bad_tls_file_fails_creation),
        cmocka_unit_test(test_store_ttls_and_counters),
        cmocka_unit_test(test_lookup_skip_and_connection_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
