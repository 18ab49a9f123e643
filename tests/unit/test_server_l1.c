/* tests/unit/test_server_l1.c — the `cache` directive and the L1 (src/server/l1.c): hits
 * patched for the client, TTL aging and keepttl, expiry, CoreDNS's bounds per kind, no
 * poisoning across DO/CD/type/class/name under one key, capacity per kind with eviction, the
 * arena's byte bound, size limits, counters, and the directive's parsing and errors. Real
 * knotd messages from the fixtures. prefetch, serve_stale and servfail: test_server_l1_depth.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "server/server.h"
#include "support/fixtures.h"

#define OUR_UDP 1232
#define NOW     1000.0

/* ---- helpers ---- */

struct qk {
    struct dns_question q;
    uint64_t key;
};

static struct qk question_of(const char *name)
{
    const struct dns_fixture *f = fixture(name);
    struct qk r;
    assert_int_equal(dns_question_parse(&r.q, f->query, f->query_len), DNS_OK);
    r.key = dns_key_hash(&r.q, r.q.do_bit, 0);
    return r;
}

static struct l1_cache *new_cache(unsigned scap, unsigned dcap, bool keepttl)
{
    struct l1_opts o;
    l1_opts_init(&o);
    o.success_cap = scap;
    o.denial_cap = dcap;
    o.keepttl = keepttl;
    struct l1_cache *c = l1_new(&o);
    assert_non_null(c);
    return c;
}

/* Stores fixture `name`'s response for its own query. */
static bool insert_fixture(struct l1_cache *c, const char *name, uint32_t ttl, enum dns_kind kind,
                           double now)
{
    const struct dns_fixture *f = fixture(name);
    struct qk k = question_of(name);
    return l1_insert(c, k.key, &k.q, f->resp, f->resp_len, ttl, kind, now);
}

struct reply {
    uint8_t b[DNS_MSG_MAX];
    size_t n;
    struct dns_rr rrs[DNS_RR_MAX];
    struct dns_msg m;
};

static bool lookup(struct l1_cache *c, const struct qk *k, double now, bool tcp, struct reply *r)
{
    if (l1_lookup(c, k->key, &k->q, now, OUR_UDP, tcp, r->b, sizeof r->b, &r->n, NULL) != L1_HIT)
        return false;
    assert_int_equal(dns_msg_parse(&r->m, r->b, r->n, r->rrs, DNS_RR_MAX), DNS_OK);
    return true;
}

/* The TTL every RR but OPT carries (checked to be one value). */
static uint32_t reply_ttl(const struct reply *r)
{
    uint32_t ttl = 0;
    bool seen = false;
    for (size_t i = 0; i < r->m.nrr; i++) {
        if (r->m.rr[i].type == DNS_T_OPT) continue;
        uint32_t t = dns_get32(r->b + r->m.rr[i].ttl_off);
        if (seen) assert_int_equal(t, ttl);
        ttl = t;
        seen = true;
    }
    assert_true(seen);
    return ttl;
}

static void entries(struct l1_cache *c, size_t success, size_t denial)
{
    struct l1_stats st;
    l1_stats(c, &st);
    assert_int_equal(st.success_entries, success);
    assert_int_equal(st.denial_entries, denial);
}

/* ---- hits ---- */

static void test_hit_returns_client_id_and_qname_case(void **state)
{
    (void)state;
    struct l1_cache *c = new_cache(100, 100, false);
    assert_true(insert_fixture(c, "a_example_com", 300, DNS_KIND_POSITIVE, NOW));

    /* ExAmPlE.CoM hashes like example.com (the key is over the lowercase name). */
    struct qk mixed = question_of("a_mixed_case");
    assert_int_equal(mixed.key, question_of("a_example_com").key);
    mixed.q.id = 0xBEEF;
    static struct reply r;
    assert_true(lookup(c, &mixed, NOW + 1, false, &r));
    assert_int_equal(r.m.id, 0xBEEF);
    assert_true(r.m.flags & DNS_F_QR);
    assert_int_equal(r.m.count[0], 1);
    assert_int_equal(r.m.count[1], 1);
    assert_memory_equal(r.b + DNS_HEADER_LEN, mixed.q.name, mixed.q.name_len);
    assert_true(r.m.has_edns); /* the query had EDNS: a fresh OPT */
    assert_int_equal(r.m.edns_udp, OUR_UDP);
    /* The A record's data is the stored one: 93.184.216.34. */
    const struct dns_rr *a = &r.m.rr[0];
    assert_int_equal(a->type, DNS_T_A);
    assert_int_equal(a->rdlen, 4);
    static const uint8_t ip[4] = {93, 184, 216, 34};
    assert_memory_equal(r.b + a->rdata, ip, 4);
    l1_free(c);
}

static void test_miss_on_empty_cache_and_unknown_key(void **state)
{
    (void)state;
    struct l1_cache *c = new_cache(100, 100, false);
    static struct reply r;
    struct qk k = question_of("a_example_com");
    assert_false(lookup(c, &k, NOW, false, &r));
    assert_true(insert_fixture(c, "a_example_com", 300, DNS_KIND_POSITIVE, NOW));
    struct qk other = question_of("aaaa_example_com");
    assert_false(lookup(c, &other, NOW, false, &r));
    assert_true(lookup(c, &k, NOW, false, &r));
    l1_free(c);
}

static void test_ttl_counts_down_with_now(void **state)
{
    (void)state;
    struct l1_cache *c = new_cache(100, 100, false);
    assert_true(insert_fixture(c, "a_example_com", 300, DNS_KIND_POSITIVE, NOW));
    struct qk k = question_of("a_example_com");
    static struct reply r;
    assert_true(lookup(c, &k, NOW, false, &r));
    assert_int_equal(reply_ttl(&r), 300);
    assert_true(lookup(c, &k, NOW + 10.9, false, &r)); /* whole seconds elapsed */
    assert_int_equal(reply_ttl(&r), 290);
    assert_true(lookup(c, &k, NOW + 299.5, false, &r));
    assert_int_equal(reply_ttl(&r), 1);
    l1_free(c);
}

static void test_keepttl_serves_the_stored_ttl(void **state)
{
    (void)state;
    struct l1_cache *c = new_cache(100, 100, true);
    assert_true(insert_fixture(c, "a_example_com", 300, DNS_KIND_POSITIVE, NOW));
    struct qk k = question_of("a_example_com");
    static struct reply r;
    assert_true(lookup(c, &k, NOW + 250, false, &r));
    assert_int_equal(reply_ttl(&r), 300);
    /* ...and it still expires. */
    assert_false(lookup(c, &k, NOW + 300, false, &r));
    l1_free(c);
}

static void test_expired_entry_is_a_miss_and_dropped(void **state)
{
    (void)state;
    struct l1_cache *c = new_cache(100, 100, false);
    assert_true(insert_fixture(c, "a_example_com", 60, DNS_KIND_POSITIVE, NOW));
    struct qk k = question_of("a_example_com");
    static struct reply r;
    entries(c, 1, 0);
    assert_false(lookup(c, &k, NOW + 60, false, &r));
    entries(c, 0, 0);
    assert_false(lookup(c, &k, NOW + 1, false, &r)); /* gone, even for an earlier clock */
    l1_free(c);
}

static void test_clock_stepping_back_serves_the_full_ttl(void **state)
{
    (void)state;
    struct l1_cache *c = new_cache(100, 100, false);
    assert_true(insert_fixture(c, "a_example_com", 60, DNS_KIND_POSITIVE, NOW));
    struct qk k = question_of("a_example_com");
    static struct reply r;
    assert_true(lookup(c, &k, NOW - 5, false, &r));
    assert_int_equal(reply_ttl(&r), 60);
    l1_free(c);
}

/* ---- bounds per kind ---- */

static struct l1_cache *bounded_cache(void)
{
    struct l1_opts o;
    l1_opts_init(&o);
    o.success_max_ttl = 120;
    o.success_min_ttl = 30;
    o.denial_max_ttl = 20;
    o.denial_min_ttl = 10;
    struct l1_cache *c = l1_new(&o);
    assert_non_null(c);
    return c;
}

static uint32_t stored_ttl(struct l1_cache *c, const char *name)
{
    struct qk k = question_of(name);
    static struct reply r;
    assert_true(lookup(c, &k, NOW, false, &r));
    return reply_ttl(&r);
}

static void test_success_bounds_apply_to_positive_entries(void **state)
{
    (void)state;
    struct l1_cache *c = bounded_cache();
    assert_true(insert_fixture(c, "a_example_com", 3000, DNS_KIND_POSITIVE, NOW));
    assert_int_equal(stored_ttl(c, "a_example_com"), 120);
    assert_true(insert_fixture(c, "aaaa_example_com", 2, DNS_KIND_POSITIVE, NOW));
    assert_int_equal(stored_ttl(c, "aaaa_example_com"), 30);
    assert_true(insert_fixture(c, "mx_example_com", 77, DNS_KIND_POSITIVE, NOW));
    assert_int_equal(stored_ttl(c, "mx_example_com"), 77);
    /* The entry lives the clamped time, not the message's. */
    struct qk k = question_of("aaaa_example_com");
    static struct reply r;
    assert_true(lookup(c, &k, NOW + 29, false, &r));
    assert_false(lookup(c, &k, NOW + 30, false, &r));
    l1_free(c);
}

static void test_denial_bounds_apply_to_nxdomain_and_nodata(void **state)
{
    (void)state;
    struct l1_cache *c = bounded_cache();
    assert_true(insert_fixture(c, "nxdomain", 3000, DNS_KIND_NEGATIVE, NOW));
    assert_int_equal(stored_ttl(c, "nxdomain"), 20);
    assert_true(insert_fixture(c, "nodata", 1, DNS_KIND_NEGATIVE, NOW));
    assert_int_equal(stored_ttl(c, "nodata"), 10);
    entries(c, 0, 2);
    struct qk k = question_of("nxdomain");
    static struct reply r;
    assert_true(lookup(c, &k, NOW + 19.99, false, &r));
    assert_int_equal(r.m.flags & DNS_F_RCODE_MASK, DNS_RCODE_NXDOMAIN);
    assert_int_equal(r.m.count[2], 1); /* the SOA */
    assert_false(lookup(c, &k, NOW + 20, false, &r));
    l1_free(c);
}

static void test_default_bounds_are_coredns(void **state)
{
    (void)state;
    struct l1_cache *c = new_cache(100, 100, false);
    assert_true(insert_fixture(c, "a_example_com", 86400, DNS_KIND_POSITIVE, NOW));
    assert_int_equal(stored_ttl(c, "a_example_com"), 3600);
    assert_true(insert_fixture(c, "aaaa_example_com", 0, DNS_KIND_POSITIVE, NOW));
    assert_int_equal(stored_ttl(c, "aaaa_example_com"), 5);
    assert_true(insert_fixture(c, "nxdomain", 86400, DNS_KIND_NEGATIVE, NOW));
    assert_int_equal(stored_ttl(c, "nxdomain"), 1800);
    assert_true(insert_fixture(c, "nodata", 0, DNS_KIND_NEGATIVE, NOW));
    assert_int_equal(stored_ttl(c, "nodata"), 5);
    l1_free(c);
}

static void test_zero_lifetime_and_kind_none_are_not_stored(void **state)
{
    (void)state;
    struct l1_opts o;
    l1_opts_init(&o);
    o.success_min_ttl = 0;
    struct l1_cache *c = l1_new(&o);
    assert_non_null(c);
    assert_false(insert_fixture(c, "a_example_com", 0, DNS_KIND_POSITIVE, NOW));
    assert_false(insert_fixture(c, "refused", 300, DNS_KIND_NONE, NOW));
    entries(c, 0, 0);
    l1_free(c);
}

/* ---- no poisoning: one key, another question ---- */

/* Stores a_example_com under its key, then looks up `other` under that same key. */
static void expect_miss_under_same_key(struct qk other)
{
    struct l1_cache *c = new_cache(100, 100, false);
    assert_true(insert_fixture(c, "a_example_com", 300, DNS_KIND_POSITIVE, NOW));
    struct qk mine = question_of("a_example_com");
    other.key = mine.key;
    static struct reply r;
    assert_false(lookup(c, &other, NOW, false, &r));
    /* The entry stays for the question it answers. */
    assert_true(lookup(c, &mine, NOW, false, &r));
    entries(c, 1, 0);
    l1_free(c);
}

static void test_do_mismatch_under_same_key_is_a_miss(void **state)
{
    (void)state;
    expect_miss_under_same_key(question_of("a_example_com_do"));
}

static void test_cd_mismatch_under_same_key_is_a_miss(void **state)
{
    (void)state;
    expect_miss_under_same_key(question_of("a_example_com_cd"));
}

static void test_type_mismatch_under_same_key_is_a_miss(void **state)
{
    (void)state;
    expect_miss_under_same_key(question_of("aaaa_example_com"));
}

static void test_class_mismatch_under_same_key_is_a_miss(void **state)
{
    (void)state;
    struct qk k = question_of("a_example_com");
    k.q.qclass = DNS_C_CH;
    expect_miss_under_same_key(k);
}

static void test_name_mismatch_under_same_key_is_a_miss(void **state)
{
    (void)state;
    expect_miss_under_same_key(question_of("cname_chain")); /* www.example.com A */
}

static void test_insert_refuses_a_response_to_another_question(void **state)
{
    (void)state;
    struct l1_cache *c = new_cache(100, 100, false);
    struct qk k = question_of("a_example_com");
    const struct dns_fixture *f = fixture("aaaa_example_com");
    assert_false(l1_insert(c, k.key, &k.q, f->resp, f->resp_len, 300, DNS_KIND_POSITIVE, NOW));
    f = fixture("cname_chain");
    assert_false(l1_insert(c, k.key, &k.q, f->resp, f->resp_len, 300, DNS_KIND_POSITIVE, NOW));
    entries(c, 0, 0);
    l1_free(c);
}

static void test_insert_refuses_truncated_and_malformed_responses(void **state)
{
    (void)state;
    struct l1_cache *c = new_cache(100, 100, false);
    struct qk k = question_of("a_example_com");
    const struct dns_fixture *f = fixture("a_example_com");
    uint8_t m[64];
    memcpy(m, f->resp, f->resp_len);
    m[2] |= DNS_F_TC >> 8;
    assert_false(l1_insert(c, k.key, &k.q, m, f->resp_len, 300, DNS_KIND_POSITIVE, NOW));
    assert_false(l1_insert(c, k.key, &k.q, f->resp, f->resp_len - 1, 300, DNS_KIND_POSITIVE, NOW));
    assert_false(l1_insert(c, k.key, &k.q, f->query, f->query_len, 300, DNS_KIND_POSITIVE, NOW));
    entries(c, 0, 0);
    l1_free(c);
}

/* ---- capacity and eviction ---- */

/* A key of our own per i, all for a_example_com's question. */
static bool insert_as(struct l1_cache *c, const char *name, uint64_t key, enum dns_kind kind)
{
    const struct dns_fixture *f = fixture(name);
    struct qk k = question_of(name);
    return l1_insert(c, key, &k.q, f->resp, f->resp_len, 300, kind, NOW);
}

static bool hit_as(struct l1_cache *c, const char *name, uint64_t key)
{
    struct qk k = question_of(name);
    k.key = key;
    static struct reply r;
    return lookup(c, &k, NOW, false, &r);
}

static void test_capacity_is_bounded_per_kind_with_eviction(void **state)
{
    (void)state;
    struct l1_cache *c = new_cache(5, 3, false);
    for (uint64_t i = 0; i < 3; i++)
        assert_true(insert_as(c, "nxdomain", 1000 + i, DNS_KIND_NEGATIVE));
    for (uint64_t i = 0; i < 50; i++) {
        assert_true(insert_as(c, "a_example_com", i, DNS_KIND_POSITIVE));
        assert_true(hit_as(c, "a_example_com", i)); /* the newest is always kept */
    }
    entries(c, 5, 3);
    /* Positive inserts never evicted a negative entry. */
    for (uint64_t i = 0; i < 3; i++) assert_true(hit_as(c, "nxdomain", 1000 + i));
    size_t live = 0;
    for (uint64_t i = 0; i < 50; i++) live += hit_as(c, "a_example_com", i);
    assert_int_equal(live, 5);

    for (uint64_t i = 0; i < 20; i++)
        assert_true(insert_as(c, "nxdomain", 2000 + i, DNS_KIND_NEGATIVE));
    entries(c, 5, 3);
    assert_true(hit_as(c, "nxdomain", 2019));
    live = 0;
    for (uint64_t i = 0; i < 50; i++) live += hit_as(c, "a_example_com", i);
    assert_int_equal(live, 5);
    l1_free(c);
}

static void test_capacity_zero_stores_none_of_that_kind(void **state)
{
    (void)state;
    struct l1_cache *c = new_cache(0, 10, false);
    assert_false(insert_fixture(c, "a_example_com", 300, DNS_KIND_POSITIVE, NOW));
    assert_true(insert_fixture(c, "nxdomain", 300, DNS_KIND_NEGATIVE, NOW));
    entries(c, 0, 1);
    l1_free(c);
}

static void test_storing_a_key_again_replaces_its_entry(void **state)
{
    (void)state;
    struct l1_cache *c = new_cache(10, 10, false);
    assert_true(insert_fixture(c, "a_example_com", 100, DNS_KIND_POSITIVE, NOW));
    assert_true(insert_fixture(c, "a_example_com", 200, DNS_KIND_POSITIVE, NOW + 50));
    entries(c, 1, 0);
    struct qk k = question_of("a_example_com");
    static struct reply r;
    assert_true(lookup(c, &k, NOW + 60, false, &r));
    assert_int_equal(reply_ttl(&r), 190);
    l1_free(c);
}

/* Every key homes to one slot: removals in the middle of the probe run must leave the
 * rest reachable. */
static void test_colliding_keys_stay_reachable_after_removals(void **state)
{
    (void)state;
    struct l1_cache *c = new_cache(64, 64, false);
    const struct dns_fixture *f = fixture("a_example_com");
    struct qk k = question_of("a_example_com");
    for (uint64_t i = 0; i < 40; i++) {
        uint32_t ttl = (i % 3 == 0) ? 10 : 300; /* every third expires first */
        assert_true(
            l1_insert(c, (i << 40) | 7, &k.q, f->resp, f->resp_len, ttl, DNS_KIND_POSITIVE, NOW));
    }
    static struct reply r;
    for (uint64_t i = 0; i < 40; i += 3) {
        k.key = (i << 40) | 7;
        assert_false(lookup(c, &k, NOW + 20, false, &r)); /* expired: removed */
    }
    entries(c, 26, 0);
    for (uint64_t i = 0; i < 40; i++) {
        k.key = (i << 40) | 7;
        assert_int_equal(lookup(c, &k, NOW + 20, false, &r), i % 3 != 0);
    }
    l1_free(c);
}

/* A NOERROR TXT response for txt_example_com's question with `strings` 255-byte strings. */
static size_t big_txt(uint8_t *out, size_t cap, unsigned strings)
{
    const struct dns_fixture *f = fixture("txt_example_com");
    struct dns_msg m;
    assert_int_equal(dns_msg_parse(&m, f->query, f->query_len, NULL, 0), DNS_OK);
    size_t n = m.qend;
    size_t rdlen = strings * 256u;
    assert_true(n + 12 + rdlen <= cap);
    memcpy(out, f->query, n);
    dns_put16(out + 2, DNS_F_QR | DNS_F_AA | DNS_F_RD);
    dns_put16(out + 6, 1);
    dns_put16(out + 8, 0);
    dns_put16(out + 10, 0);
    dns_put16(out + n, 0xC00C);
    dns_put16(out + n + 2, DNS_T_TXT);
    dns_put16(out + n + 4, DNS_C_IN);
    dns_put32(out + n + 6, 300);
    dns_put16(out + n + 10, (uint16_t)rdlen);
    n += 12;
    for (unsigned s = 0; s < strings; s++) {
        out[n++] = 255;
        memset(out + n, 'a' + (int)(s % 26), 255);
        n += 255;
    }
    return n;
}

/* Large records fill the arena before the count bound: the oldest go first, and every entry
 * counted is still served. */
static void test_arena_bound_evicts_oldest_records(void **state)
{
    (void)state;
    struct l1_cache *c = new_cache(100, 0, false); /* arena: the 256 KiB floor */
    static uint8_t msg[8192];
    size_t len = big_txt(msg, sizeof msg, 16); /* ~4 KiB per record */
    struct qk k = question_of("txt_example_com");
    static struct reply r;
    for (uint64_t i = 0; i < 300; i++) {
        assert_true(l1_insert(c, i, &k.q, msg, len, 300, DNS_KIND_POSITIVE, NOW));
        k.key = i;
        assert_true(lookup(c, &k, NOW, true, &r));
        assert_int_equal(r.n, len + 11); /* with a fresh OPT */
    }
    struct l1_stats st;
    l1_stats(c, &st);
    assert_true(st.success_entries > 10);
    assert_true(st.success_entries < 100); /* the arena, not the count, bound it */
    size_t live = 0;
    for (uint64_t i = 0; i < 300; i++) {
        k.key = i;
        bool hit = lookup(c, &k, NOW, true, &r);
        if (i >= 300 - st.success_entries) assert_true(hit); /* FIFO: the newest stay */
        live += hit;
    }
    assert_int_equal(live, st.success_entries);
    l1_free(c);
}

/* ---- size limits ---- */

static void test_large_answer_is_truncated_for_udp_and_whole_over_tcp(void **state)
{
    (void)state;
    struct l1_cache *c = new_cache(10, 10, false);
    assert_true(insert_fixture(c, "large_txt", 300, DNS_KIND_POSITIVE, NOW));
    struct qk k = question_of("large_txt");
    static struct reply r;

    k.q.has_edns = false; /* a client without EDNS: 512 bytes */
    k.q.udp_size = 0;
    assert_true(lookup(c, &k, NOW, false, &r));
    assert_true(r.n <= DNS_UDP_MIN);
    assert_true(r.m.flags & DNS_F_TC);
    assert_int_equal(r.m.count[1], 0);
    assert_false(r.m.has_edns);

    assert_true(lookup(c, &k, NOW, true, &r));
    assert_false(r.m.flags & DNS_F_TC);
    assert_true(r.m.count[1] > 0);
    assert_true(r.n > DNS_UDP_MIN);
    assert_int_equal(r.n, fixture("large_txt")->resp_len - 11); /* the stored OPT is gone */

    k = question_of("large_txt"); /* EDNS 1232: still too big for the answer */
    assert_true(lookup(c, &k, NOW, false, &r));
    assert_true(r.n <= OUR_UDP);
    assert_true(r.m.flags & DNS_F_TC);
    assert_true(r.m.has_edns);
    l1_free(c);
}

static void test_small_output_buffer_is_a_miss(void **state)
{
    (void)state;
    struct l1_cache *c = new_cache(10, 10, false);
    assert_true(insert_fixture(c, "a_example_com", 300, DNS_KIND_POSITIVE, NOW));
    struct qk k = question_of("a_example_com");
    uint8_t out[16];
    size_t n = 0;
    assert_int_equal(l1_lookup(c, k.key, &k.q, NOW, OUR_UDP, false, out, sizeof out, &n, NULL),
                     L1_MISS);
    l1_free(c);
}

/* ---- counters ---- */

static void test_stats_count_hits_misses_and_entries(void **state)
{
    (void)state;
    struct l1_cache *c = new_cache(10, 10, false);
    struct qk a = question_of("a_example_com"), nx = question_of("nxdomain");
    static struct reply r;
    assert_false(lookup(c, &a, NOW, false, &r));
    assert_true(insert_fixture(c, "a_example_com", 300, DNS_KIND_POSITIVE, NOW));
    assert_true(insert_fixture(c, "nxdomain", 300, DNS_KIND_NEGATIVE, NOW));
    assert_true(lookup(c, &a, NOW, false, &r));
    assert_true(lookup(c, &a, NOW, false, &r));
    assert_true(lookup(c, &nx, NOW, false, &r));
    assert_false(lookup(c, &nx, NOW + 10000, false, &r));
    struct l1_stats st;
    l1_stats(c, &st);
    assert_int_equal(st.hits, 3);
    assert_int_equal(st.misses, 2);
    assert_int_equal(st.success_entries, 1);
    assert_int_equal(st.denial_entries, 0);
    l1_free(c);
}

/* ---- parsing ---- */

struct parsed {
    struct cfg_tokens t;
    struct cfg_cursor c;
    struct l1_opts o;
    struct cfg_error err;
    char text[400];
    int rc;
};

static struct parsed *parse(const char *corefile)
{
    static struct parsed p;
    memset(&p, 0, sizeof p);
    assert_int_equal(cfg_lex(&p.t, "Corefile", corefile, strlen(corefile), &p.err), 0);
    p.c.t = &p.t;
    p.c.pos = 0;
    p.rc = l1_opts_parse(&p.c, &p.o, &p.err);
    if (p.rc) cfg_error_format(&p.err, p.text, sizeof p.text);
    return &p;
}

static void done(struct parsed *p)
{
    cfg_tokens_free(&p->t);
}

static void expect_error(const char *corefile, const char *want)
{
    struct parsed *p = parse(corefile);
    assert_int_equal(p->rc, -1);
    if (strcmp(p->text, want) != 0) fail_msg("got \"%s\", want \"%s\"", p->text, want);
    done(p);
}

static void test_parse_defaults(void **state)
{
    (void)state;
    struct parsed *p = parse("cache\nforward . 1.1.1.1\n");
    assert_int_equal(p->rc, 0);
    assert_int_equal(p->o.success_cap, 9984);
    assert_int_equal(p->o.success_max_ttl, 3600);
    assert_int_equal(p->o.success_min_ttl, 5);
    assert_int_equal(p->o.denial_cap, 9984);
    assert_int_equal(p->o.denial_max_ttl, 1800);
    assert_int_equal(p->o.denial_min_ttl, 5);
    assert_false(p->o.keepttl);
    assert_int_equal(p->o.prefetch, 0); /* off */
    assert_int_equal(p->o.stale, 0);    /* off */
    assert_int_equal(p->o.servfail_ttl, 5);
    assert_int_equal(p->o.nzones, 0);
    assert_string_equal(p->o.file, "Corefile");
    assert_int_equal(p->o.line, 1);
    assert_int_equal(p->c.pos, 1); /* at `forward` */
    done(p);
}

static void test_parse_ttl_sets_both_maxima(void **state)
{
    (void)state;
    struct parsed *p = parse("cache 30");
    assert_int_equal(p->rc, 0);
    assert_int_equal(p->o.success_max_ttl, 30);
    assert_int_equal(p->o.denial_max_ttl, 30);
    assert_int_equal(p->o.success_min_ttl, 5);
    assert_int_equal(p->o.success_cap, 9984);
    assert_int_equal(p->o.nzones, 0);
    done(p);
}

static void test_parse_ttl_and_zones(void **state)
{
    (void)state;
    struct parsed *p = parse("cache 30 example.org");
    assert_int_equal(p->rc, 0);
    assert_int_equal(p->o.success_max_ttl, 30);
    assert_int_equal(p->o.nzones, 1);
    assert_string_equal(p->o.zones[0], "example.org.");
    done(p);

    p = parse("cache Example.ORG. other.net example.org .");
    assert_int_equal(p->rc, 0);
    assert_int_equal(p->o.success_max_ttl, 3600);
    assert_int_equal(p->o.nzones, 3);
    assert_string_equal(p->o.zones[0], "example.org.");
    assert_string_equal(p->o.zones[1], "other.net.");
    assert_string_equal(p->o.zones[2], ".");
    done(p);
}

static void test_parse_success_capacity_ttl_minttl(void **state)
{
    (void)state;
    struct parsed *p = parse("cache {\n    success 5000 600 10\n}\nlog\n");
    assert_int_equal(p->rc, 0);
    assert_int_equal(p->o.success_cap, 5000);
    assert_int_equal(p->o.success_max_ttl, 600);
    assert_int_equal(p->o.success_min_ttl, 10);
    assert_int_equal(p->o.denial_cap, 9984);
    assert_int_equal(p->o.denial_max_ttl, 1800);
    assert_int_equal(p->c.pos, 7); /* past the block, at `log` */
    done(p);
}

static void test_parse_denial_capacity_only(void **state)
{
    (void)state;
    struct parsed *p = parse("cache 60 {\n denial 100\n}");
    assert_int_equal(p->rc, 0);
    assert_int_equal(p->o.denial_cap, 100);
    assert_int_equal(p->o.denial_max_ttl, 60); /* from `cache 60` */
    assert_int_equal(p->o.denial_min_ttl, 5);
    assert_int_equal(p->o.success_cap, 9984);
    done(p);
}

static void test_parse_keepttl(void **state)
{
    (void)state;
    struct parsed *p = parse("cache {\n keepttl\n denial 100 30 0\n}");
    assert_int_equal(p->rc, 0);
    assert_true(p->o.keepttl);
    assert_int_equal(p->o.denial_min_ttl, 0);
    done(p);
}

static void test_parse_unknown_property_names_its_line(void **state)
{
    (void)state;
    expect_error("cache {\n    success 10\n    bogus 1\n}",
                 "Corefile:3: cache: unknown property \"bogus\"");
}

static void test_parse_later_options_are_rejected_not_ignored(void **state)
{
    (void)state;
    expect_error("cache {\n disable success\n}", "Corefile:2: cache: disable is not supported yet");
}

static void test_parse_bad_numbers(void **state)
{
    (void)state;
    expect_error("cache 0", "Corefile:1: cache: TTL can not be zero or negative");
    expect_error("cache -5", "Corefile:1: cache: TTL -5 can not be negative");
    expect_error("cache {\n success abc\n}",
                 "Corefile:2: cache: success: CAPACITY \"abc\" is not a whole number");
    expect_error("cache {\n success -1\n}",
                 "Corefile:2: cache: success: CAPACITY -1 can not be negative");
    expect_error("cache {\n denial 10 0\n}",
                 "Corefile:2: cache: denial: TTL can not be zero or negative");
    expect_error("cache {\n denial 10 30s\n}",
                 "Corefile:2: cache: denial: TTL \"30s\" is not a whole number of seconds");
    expect_error("cache {\n success 10 60 -1\n}",
                 "Corefile:2: cache: success: MINTTL -1 can not be negative");
    expect_error("cache {\n success 10 9999999999\n}",
                 "Corefile:2: cache: success: TTL 9999999999 is over 2147483647");
    expect_error("cache {\n success 99999999999\n}",
                 "Corefile:2: cache: success: CAPACITY 99999999999 is over 16777216");
}

static void test_parse_argument_counts(void **state)
{
    (void)state;
    expect_error("cache {\n success\n}",
                 "Corefile:2: cache: success: missing CAPACITY [TTL] [MINTTL]");
    expect_error(
        "cache {\n success 1 2 3 4\n}",
        "Corefile:2: cache: success: too many arguments (expected CAPACITY [TTL] [MINTTL])");
    expect_error("cache {\n keepttl yes\n}", "Corefile:2: cache: keepttl: takes no arguments");
    expect_error("cache {\n success 1 {\n }\n}", "Corefile:2: cache: success: takes no block");
}

static void test_parse_bad_zone_and_unclosed_block(void **state)
{
    (void)state;
    expect_error("cache 30 exa..mple", "Corefile:1: cache: bad zone \"exa..mple\": empty label");
    expect_error("cache {\n success 10\n",
                 "Corefile:1: cache: missing '}' to close the block opened here");
}

static void test_parse_wrong_directive(void **state)
{
    (void)state;
    expect_error("forward . 1.1.1.1",
                 "Corefile:1: cache: expected the cache directive, not \"forward\"");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hit_returns_client_id_and_qname_case),
        cmocka_unit_test(test_miss_on_empty_cache_and_unknown_key),
        cmocka_unit_test(test_ttl_counts_down_with_now),
        cmocka_unit_test(test_keepttl_serves_the_stored_ttl),
        cmocka_unit_test(test_expired_entry_is_a_miss_and_dropped),
        cmocka_unit_test(test_clock_stepping_back_serves_the_full_ttl),
        cmocka_unit_test(test_success_bounds_apply_to_positive_entries),
        cmocka_unit_test(test_denial_bounds_apply_to_nxdomain_and_nodata),
        cmocka_unit_test(test_default_bounds_are_coredns),
        cmocka_unit_test(test_zero_lifetime_and_kind_none_are_not_stored),
        cmocka_unit_test(test_do_mismatch_under_same_key_is_a_miss),
        cmocka_unit_test(test_cd_mismatch_under_same_key_is_a_miss),
        cmocka_unit_test(test_type_mismatch_under_same_key_is_a_miss),
        cmocka_unit_test(test_class_mismatch_under_same_key_is_a_miss),
        cmocka_unit_test(test_name_mismatch_under_same_key_is_a_miss),
        cmocka_unit_test(test_insert_refuses_a_response_to_another_question),
        cmocka_unit_test(test_insert_refuses_truncated_and_malformed_responses),
        cmocka_unit_test(test_capacity_is_bounded_per_kind_with_eviction),
        cmocka_unit_test(test_capacity_zero_stores_none_of_that_kind),
        cmocka_unit_test(test_storing_a_key_again_replaces_its_entry),
        cmocka_unit_test(test_colliding_keys_stay_reachable_after_removals),
        cmocka_unit_test(test_arena_bound_evicts_oldest_records),
        cmocka_unit_test(test_large_answer_is_truncated_for_udp_and_whole_over_tcp),
        cmocka_unit_test(test_small_output_buffer_is_a_miss),
        cmocka_unit_test(test_stats_count_hits_misses_and_entries),
        cmocka_unit_test(test_parse_defaults),
        cmocka_unit_test(test_parse_ttl_sets_both_maxima),
        cmocka_unit_test(test_parse_ttl_and_zones),
        cmocka_unit_test(test_parse_success_capacity_ttl_minttl),
        cmocka_unit_test(test_parse_denial_capacity_only),
        cmocka_unit_test(test_parse_keepttl),
        cmocka_unit_test(test_parse_unknown_property_names_its_line),
        cmocka_unit_test(test_parse_later_options_are_rejected_not_ignored),
        cmocka_unit_test(test_parse_bad_numbers),
        cmocka_unit_test(test_parse_argument_counts),
        cmocka_unit_test(test_parse_bad_zone_and_unclosed_block),
        cmocka_unit_test(test_parse_wrong_directive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
