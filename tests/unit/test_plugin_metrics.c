/* tests/unit/test_plugin_metrics.c — the coredns_redis_cache_* metrics (src/plugin/metrics.c):
 * reasons of error kinds, histogram bucketing (inclusive upper bounds, +Inf), summing
 * workers, and the exact Prometheus text: families once with HELP and TYPE, every reason
 * written, cumulative buckets, label escaping, and snprintf-like truncation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "plugin/plugin.h"

static void test_reason_of(void **state)
{
    (void)state;
    assert_int_equal(rcp_reason_of(RESP_EK_TIMEOUT), RCP_REASON_TIMEOUT);
    assert_int_equal(rcp_reason_of(RESP_EK_CONNECTION), RCP_REASON_CONNECTION);
    assert_int_equal(rcp_reason_of(RESP_EK_OTHER), RCP_REASON_OTHER);
    assert_int_equal(rcp_reason_of(RESP_EK_NONE), RCP_REASON_OTHER);
}

static void test_observe_buckets(void **state)
{
    (void)state;
    struct rcp_metrics m;
    memset(&m, 0, sizeof m);
    rcp_metrics_observe(&m, 0);        /* first bucket */
    rcp_metrics_observe(&m, 0.00025);  /* le is inclusive: first bucket */
    rcp_metrics_observe(&m, 0.000251); /* second */
    rcp_metrics_observe(&m, 0.003);    /* 0.004 (index 4) */
    rcp_metrics_observe(&m, 2.048);    /* last finite bucket */
    rcp_metrics_observe(&m, 2.049);    /* +Inf */
    rcp_metrics_observe(&m, 100);      /* +Inf */
    rcp_metrics_observe(&m, -1);       /* clock step: counted as 0 */
    assert_int_equal(m.duration_buckets[0], 3);
    assert_int_equal(m.duration_buckets[1], 1);
    assert_int_equal(m.duration_buckets[4], 1);
    assert_int_equal(m.duration_buckets[RCP_HIST_BUCKETS - 1], 1);
    assert_int_equal(m.duration_buckets[RCP_HIST_BUCKETS], 2);
    assert_int_equal(m.duration_count, 8);
    assert_true(m.duration_sum > 104.10 && m.duration_sum < 104.11);
}

static void test_add(void **state)
{
    (void)state;
    struct rcp_metrics a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    a.hits = 1;
    a.get_errors[RCP_REASON_OTHER] = 2;
    b.hits = 10;
    b.get_errors[RCP_REASON_OTHER] = 3;
    b.set_errors[RCP_REASON_TIMEOUT] = 4;
    b.encode_errors = 5;
    b.response_mismatches = 6;
    b.collisions = 7;
    rcp_metrics_observe(&b, 0.01);
    rcp_metrics_observe(&a, 0.01);
    rcp_metrics_add(&a, &b);
    assert_int_equal(a.hits, 11);
    assert_int_equal(a.get_errors[RCP_REASON_OTHER], 5);
    assert_int_equal(a.set_errors[RCP_REASON_TIMEOUT], 4);
    assert_int_equal(a.encode_errors, 5);
    assert_int_equal(a.response_mismatches, 6);
    assert_int_equal(a.collisions, 7);
    assert_int_equal(a.duration_buckets[6], 2); /* 0.016 */
    assert_int_equal(a.duration_count, 2);
    assert_true(a.duration_sum > 0.0199 && a.duration_sum < 0.0201);
}

/* The whole text for two series (a second server with a label value to escape). */
static const char expected[] =
    "# HELP coredns_redis_cache_hits_total The count of cache hits from Redis.\n"
    "# TYPE coredns_redis_cache_hits_total counter\n"
    "coredns_redis_cache_hits_total{server=\"dns://:1053\"} 3\n"
    "coredns_redis_cache_hits_total{server=\"a\\\"b\\\\c\\nd\"} 0\n"
    "# HELP coredns_redis_cache_request_duration_seconds Histogram of the time (in seconds) "
    "each cache lookup took.\n"
    "# TYPE coredns_redis_cache_request_duration_seconds histogram\n"
    "coredns_redis_cache_request_duration_seconds_bucket{server=\"dns://:1053\",le=\"0.00025\"} 1\n"
    "coredns_redis_cache_request_duration_seconds_bucket{server=\"dns://:1053\",le=\"0.0005\"} 2\n"
    "coredns_redis_cache_request_duration_seconds_bucket{server=\"dns://:1053\",le=\"0.001\"} 2\n"
    "coredns_redis_cache_request_duration_seconds_bucket{server=\"dns://:1053\",le=\"0.002\"} 2\n"
    "coredns_redis_cache_request_duration_seconds_bucket{server=\"dns://:1053\",le=\"0.004\"} 2\n"
    "coredns_redis_cache_request_duration_seconds_bucket{server=\"dns://:1053\",le=\"0.008\"} 2\n"
    "coredns_redis_cache_request_duration_seconds_bucket{server=\"dns://:1053\",le=\"0.016\"} 2\n"
    "coredns_redis_cache_request_duration_seconds_bucket{server=\"dns://:1053\",le=\"0.032\"} 2\n"
    "coredns_redis_cache_request_duration_seconds_bucket{server=\"dns://:1053\",le=\"0.064\"} 2\n"
    "coredns_redis_cache_request_duration_seconds_bucket{server=\"dns://:1053\",le=\"0.128\"} 2\n"
    "coredns_redis_cache_request_duration_seconds_bucket{server=\"dns://:1053\",le=\"0.256\"} 2\n"
    "coredns_redis_cache_request_duration_seconds_bucket{server=\"dns://:1053\",le=\"0.512\"} 3\n"
    "coredns_redis_cache_request_duration_seconds_bucket{server=\"dns://:1053\",le=\"1.024\"} 3\n"
    "coredns_redis_cache_request_duration_seconds_bucket{server=\"dns://:1053\",le=\"2.048\"} 3\n"
    "coredns_redis_cache_request_duration_seconds_bucket{server=\"dns://:1053\",le=\"+Inf\"} 4\n"
    "coredns_redis_cache_request_duration_seconds_sum{server=\"dns://:1053\"} 3.5007\n"
    "coredns_redis_cache_request_duration_seconds_count{server=\"dns://:1053\"} 4\n"
    "coredns_redis_cache_request_duration_seconds_bucket{server=\"a\\\"b\\\\c\\nd\",le=\"0.00025\"}"
    " 0\n"
    "coredns_redis_cache_request_duration_seconds_bucket{server=\"a\\\"b\\\\c\\nd\",le=\"0.0005\"} "
    "0\n"
    "coredns_redis_cache_request_duration_seconds_bucket{server=\"a\\\"b\\\\c\\nd\",le=\"0.001\"} "
    "0\n"
    "coredns_redis_cache_request_duration_seconds_bucket{server=\"a\\\"b\\\\c\\nd\",le=\"0.002\"} "
    "0\n"
    "coredns_redis_cache_request_duration_seconds_bucket{server=\"a\\\"b\\\\c\\nd\",le=\"0.004\"} "
    "0\n"
    "coredns_redis_cache_request_duration_seconds_bucket{server=\"a\\\"b\\\\c\\nd\",le=\"0.008\"} "
    "0\n"
    "coredns_redis_cache_request_duration_seconds_bucket{server=\"a\\\"b\\\\c\\nd\",le=\"0.016\"} "
    "0\n"
    "coredns_redis_cache_request_duration_seconds_bucket{server=\"a\\\"b\\\\c\\nd\",le=\"0.032\"} "
    "0\n"
    "coredns_redis_cache_request_duration_seconds_bucket{server=\"a\\\"b\\\\c\\nd\",le=\"0.064\"} "
    "0\n"
    "coredns_redis_cache_request_duration_seconds_bucket{server=\"a\\\"b\\\\c\\nd\",le=\"0.128\"} "
    "0\n"
    "coredns_redis_cache_request_duration_seconds_bucket{server=\"a\\\"b\\\\c\\nd\",le=\"0.256\"} "
    "0\n"
    "coredns_redis_cache_request_duration_seconds_bucket{server=\"a\\\"b\\\\c\\nd\",le=\"0.512\"} "
    "0\n"
    "coredns_redis_cache_request_duration_seconds_bucket{server=\"a\\\"b\\\\c\\nd\",le=\"1.024\"} "
    "0\n"
    "coredns_redis_cache_request_duration_seconds_bucket{server=\"a\\\"b\\\\c\\nd\",le=\"2.048\"} "
    "0\n"
    "coredns_redis_cache_request_duration_seconds_bucket{server=\"a\\\"b\\\\c\\nd\",le=\"+Inf\"} "
    "0\n"
    "coredns_redis_cache_request_duration_seconds_sum{server=\"a\\\"b\\\\c\\nd\"} 0\n"
    "coredns_redis_cache_request_duration_seconds_count{server=\"a\\\"b\\\\c\\nd\"} 0\n"
    "# HELP coredns_redis_cache_get_errors_total The count of errors when reading entries from "
    "Redis, by reason.\n"
    "# TYPE coredns_redis_cache_get_errors_total counter\n"
    "coredns_redis_cache_get_errors_total{server=\"dns://:1053\",reason=\"timeout\"} 1\n"
    "coredns_redis_cache_get_errors_total{server=\"dns://:1053\",reason=\"connection\"} 2\n"
    "coredns_redis_cache_get_errors_total{server=\"dns://:1053\",reason=\"other\"} 0\n"
    "coredns_redis_cache_get_errors_total{server=\"a\\\"b\\\\c\\nd\",reason=\"timeout\"} 0\n"
    "coredns_redis_cache_get_errors_total{server=\"a\\\"b\\\\c\\nd\",reason=\"connection\"} 0\n"
    "coredns_redis_cache_get_errors_total{server=\"a\\\"b\\\\c\\nd\",reason=\"other\"} 0\n"
    "# HELP coredns_redis_cache_set_errors_total The count of errors when adding entries to "
    "Redis, by reason.\n"
    "# TYPE coredns_redis_cache_set_errors_total counter\n"
    "coredns_redis_cache_set_errors_total{server=\"dns://:1053\",reason=\"timeout\"} 0\n"
    "coredns_redis_cache_set_errors_total{server=\"dns://:1053\",reason=\"connection\"} 0\n"
    "coredns_redis_cache_set_errors_total{server=\"dns://:1053\",reason=\"other\"} 4\n"
    "coredns_redis_cache_set_errors_total{server=\"a\\\"b\\\\c\\nd\",reason=\"timeout\"} 0\n"
    "coredns_redis_cache_set_errors_total{server=\"a\\\"b\\\\c\\nd\",reason=\"connection\"} 0\n"
    "coredns_redis_cache_set_errors_total{server=\"a\\\"b\\\\c\\nd\",reason=\"other\"} 0\n"
    "# HELP coredns_redis_cache_encode_errors_total The count of DNS messages that could not be "
    "serialized to wire format and so were not cached.\n"
    "# TYPE coredns_redis_cache_encode_errors_total counter\n"
    "coredns_redis_cache_encode_errors_total{server=\"dns://:1053\"} 5\n"
    "coredns_redis_cache_encode_errors_total{server=\"a\\\"b\\\\c\\nd\"} 0\n"
    "# HELP coredns_redis_cache_response_mismatches_total The count of upstream replies whose "
    "question did not match the original request and were therefore refused for caching.\n"
    "# TYPE coredns_redis_cache_response_mismatches_total counter\n"
    "coredns_redis_cache_response_mismatches_total{server=\"dns://:1053\"} 6\n"
    "coredns_redis_cache_response_mismatches_total{server=\"a\\\"b\\\\c\\nd\"} 0\n"
    "# HELP coredns_redis_cache_collisions_total The count of cache hits whose stored entry did "
    "not match the request.\n"
    "# TYPE coredns_redis_cache_collisions_total counter\n"
    "coredns_redis_cache_collisions_total{server=\"dns://:1053\"} 7\n"
    "coredns_redis_cache_collisions_total{server=\"a\\\"b\\\\c\\nd\"} 0\n";

static void fill(struct rcp_metrics *m)
{
    memset(m, 0, sizeof *m);
    m->hits = 3;
    m->get_errors[RCP_REASON_TIMEOUT] = 1;
    m->get_errors[RCP_REASON_CONNECTION] = 2;
    m->set_errors[RCP_REASON_OTHER] = 4;
    m->encode_errors = 5;
    m->response_mismatches = 6;
    m->collisions = 7;
    rcp_metrics_observe(m, 0.0002);
    rcp_metrics_observe(m, 0.0005);
    rcp_metrics_observe(m, 0.5);
    rcp_metrics_observe(m, 3);
}

static void test_text_exact(void **state)
{
    (void)state;
    struct rcp_metrics a, b;
    fill(&a);
    memset(&b, 0, sizeof b);
    struct rcp_metrics_series s[2] = {{"dns://:1053", &a}, {"a\"b\\c\nd", &b}};
    static char buf[16384];
    size_t n = rcp_metrics_write(buf, sizeof buf, s, 2);
    assert_int_equal(n, strlen(expected));
    assert_string_equal(buf, expected);
    /* every family's HELP and TYPE exactly once */
    const char *fams[] = {
        "hits_total",          "request_duration_seconds",  "get_errors_total", "set_errors_total",
        "encode_errors_total", "response_mismatches_total", "collisions_total"};
    for (size_t i = 0; i < sizeof fams / sizeof fams[0]; i++) {
        char pat[128];
        snprintf(pat, sizeof pat, "# TYPE coredns_redis_cache_%s ", fams[i]);
        const char *p = strstr(buf, pat);
        assert_non_null(p);
        assert_null(strstr(p + 1, pat));
    }
}

static void test_text_truncation_like_snprintf(void **state)
{
    (void)state;
    struct rcp_metrics a;
    fill(&a);
    struct rcp_metrics_series s[1] = {{"dns://:53", &a}};
    size_t need = rcp_metrics_write(NULL, 0, s, 1);
    assert_true(need > 1000);
    char *full = malloc(need + 1);
    assert_non_null(full);
    assert_int_equal(rcp_metrics_write(full, need + 1, s, 1), need);
    assert_int_equal(strlen(full), need);
    char small[100];
    memset(small, 'x', sizeof small);
    assert_int_equal(rcp_metrics_write(small, sizeof small, s, 1), need);
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_memory_equal(small, full, sizeof small - 1);
    /* exactly need bytes of room: like snprintf, the last byte goes to the NUL */
    char *exact = malloc(need);
    assert_non_null(exact);
    assert_int_equal(rcp_metrics_write(exact, need, s, 1), need);
    assert_int_equal(strlen(exact), need - 1);
    free(exact);
    free(full);
}

static void test_sum_formats_shortest(void **state)
{
    (void)state;
    struct rcp_metrics a;
    memset(&a, 0, sizeof a);
    rcp_metrics_observe(&a, 0.1);
    rcp_metrics_observe(&a, 0.2); /* 0.30000000000000004 as Go prints it */
    struct rcp_metrics_series s[1] = {{"x", &a}};
    static char buf[16384];
    rcp_metrics_write(buf, sizeof buf, s, 1);
    assert_non_null(strstr(buf, "coredns_redis_cache_request_duration_seconds_sum{server=\"x\"} "
                                "0.30000000000000004\n"));
    /* no series: the families are still announced, with no samples */
    size_t n = rcp_metrics_write(buf, sizeof buf, s, 0);
    assert_int_equal(n, strlen(buf));
    assert_non_null(strstr(buf, "# TYPE coredns_redis_cache_collisions_total counter\n"));
    assert_null(strstr(buf, "{server="));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reason_of),
        cmocka_unit_test(test_observe_buckets),
        cmocka_unit_test(test_add),
        cmocka_unit_test(test_text_exact),
        cmocka_unit_test(test_text_truncation_like_snprintf),
        cmocka_unit_test(test_sum_formats_shortest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
