/* tests/unit/test_server_l1_depth.c — the `cache` directive's prefetch, serve_stale and
 * servfail (src/server/l1_opts.c, src/server/l1.c): their parsing (CoreDNS's defaults and
 * limits, every error with its file and line), stale lookups at times around expiry and
 * around the stale window (immediate and verify), prefetch eligibility (hits within the
 * frequency window, the percentage threshold, one refresh in flight, the count carried over
 * a refresh), and SERVFAIL entries (lifetime, never stale, never over a servable answer).
 * Real knotd messages from the fixtures. */
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

static struct l1_opts opts(void)
{
    struct l1_opts o;
    l1_opts_init(&o);
    o.success_cap = o.denial_cap = 100;
    o.success_min_ttl = o.denial_min_ttl = 0;
    return o;
}

static struct l1_cache *new_cache(const struct l1_opts *o)
{
    struct l1_cache *c = l1_new(o);
    assert_non_null(c);
    return c;
}

static void insert_a(struct l1_cache *c, uint32_t ttl, double now)
{
    const struct dns_fixture *f = fixture("a_example_com");
    struct qk k = question_of("a_example_com");
    assert_true(l1_insert(c, k.key, &k.q, f->resp, f->resp_len, ttl, DNS_KIND_POSITIVE, now));
}

struct reply {
    uint8_t b[DNS_MSG_MAX];
    size_t n;
    struct dns_rr rrs[DNS_RR_MAX];
    struct dns_msg m;
    struct l1_hit hit;
};

/* Looks up example.com A; parses the reply when one was built (HIT, STALE). */
static enum l1_status lookup_a(struct l1_cache *c, double now, struct reply *r)
{
    struct qk k = question_of("a_example_com");
    memset(&r->hit, 0xAA, sizeof r->hit);
    r->n = 0;
    enum l1_status st =
        l1_lookup(c, k.key, &k.q, now, OUR_UDP, false, r->b, sizeof r->b, &r->n, &r->hit);
    if (st == L1_HIT || st == L1_STALE)
        assert_int_equal(dns_msg_parse(&r->m, r->b, r->n, r->rrs, DNS_RR_MAX), DNS_OK);
    return st;
}

static uint32_t answer_ttl(const struct reply *r)
{
    assert_true(r->m.count[1] >= 1);
    return dns_get32(r->b + r->m.rr[0].ttl_off);
}

static void refresh_done_a(struct l1_cache *c)
{
    l1_refresh_done(c, question_of("a_example_com").key);
}

/* A SERVFAIL for `name`'s query as a server sends it: the query's bytes (question and OPT)
 * with QR and rcode 2 set in its header. */
static size_t servfail_of(const char *name, uint8_t *out)
{
    const struct dns_fixture *f = fixture(name);
    memcpy(out, f->query, f->query_len);
    out[2] |= 0x80;
    out[3] = (uint8_t)((out[3] & 0xF0) | DNS_RCODE_SERVFAIL);
    return f->query_len;
}

static bool insert_servfail_a(struct l1_cache *c, double now)
{
    uint8_t msg[512];
    size_t n = servfail_of("a_example_com", msg);
    struct qk k = question_of("a_example_com");
    return l1_insert_servfail(c, k.key, &k.q, msg, n, now);
}

static void entries(struct l1_cache *c, size_t success, size_t denial)
{
    struct l1_stats st;
    l1_stats(c, &st);
    assert_int_equal(st.success_entries, success);
    assert_int_equal(st.denial_entries, denial);
}

/* ---- serve_stale ---- */

static void test_stale_immediate_serves_ttl_zero_within_window_and_asks_one_refresh(void **state)
{
    (void)state;
    struct l1_opts o = opts();
    o.stale = 60;
    struct l1_cache *c = new_cache(&o);
    insert_a(c, 10, NOW);
    static struct reply r;

    assert_int_equal(lookup_a(c, NOW + 5, &r), L1_HIT);
    assert_int_equal(answer_ttl(&r), 5);
    assert_false(r.hit.refresh);

    /* expired: served at once with TTL 0 (CoreDNS), and a refresh is asked */
    assert_int_equal(lookup_a(c, NOW + 10, &r), L1_STALE);
    assert_int_equal(answer_ttl(&r), 0);
    assert_true(r.hit.refresh);
    assert_int_equal(r.hit.l2_above, 0); /* any L2 answer is fresher than a stale entry */
    assert_int_equal(r.hit.kind, DNS_KIND_POSITIVE);

    /* the refresh is in flight: served again, no second refresh */
    assert_int_equal(lookup_a(c, NOW + 20, &r), L1_STALE);
    assert_int_equal(answer_ttl(&r), 0);
    assert_false(r.hit.refresh);

    /* the refresh failed (entry still stale): the next hit asks again */
    refresh_done_a(c);
    assert_int_equal(lookup_a(c, NOW + 30, &r), L1_STALE);
    assert_true(r.hit.refresh);

    /* the window ends at expiry + 60 s */
    assert_int_equal(lookup_a(c, NOW + 69.9, &r), L1_STALE);
    assert_int_equal(lookup_a(c, NOW + 70, &r), L1_MISS);
    entries(c, 0, 0); /* dropped */
    struct l1_stats st;
    l1_stats(c, &st);
    assert_int_equal(st.hits, 5);
    assert_int_equal(st.misses, 1);
    l1_free(c);
}

static void test_stale_off_expired_entry_is_a_miss(void **state)
{
    (void)state;
    struct l1_opts o = opts(); /* serve_stale absent */
    struct l1_cache *c = new_cache(&o);
    insert_a(c, 10, NOW);
    static struct reply r;
    assert_int_equal(lookup_a(c, NOW + 9.9, &r), L1_HIT);
    assert_int_equal(lookup_a(c, NOW + 10, &r), L1_MISS);
    entries(c, 0, 0);
    l1_free(c);
}

static void test_stale_verify_asks_first_and_lookup_stale_builds_ttl_zero(void **state)
{
    (void)state;
    struct l1_opts o = opts();
    o.stale = 60;
    o.stale_verify = true;
    struct l1_cache *c = new_cache(&o);
    insert_a(c, 10, NOW);
    struct qk k = question_of("a_example_com");
    static struct reply r;

    assert_int_equal(lookup_a(c, NOW + 15, &r), L1_VERIFY);
    assert_int_equal(r.n, 0); /* nothing built: the refresh goes first */
    assert_false(r.hit.refresh);
    assert_int_equal(r.hit.kind, DNS_KIND_POSITIVE);

    /* the refresh failed: the stale entry answers with TTL 0, the client's ID */
    k.q.id = 0x4242;
    assert_true(l1_lookup_stale(c, k.key, &k.q, NOW + 16, OUR_UDP, false, r.b, sizeof r.b, &r.n));
    assert_int_equal(dns_msg_parse(&r.m, r.b, r.n, r.rrs, DNS_RR_MAX), DNS_OK);
    assert_int_equal(r.m.id, 0x4242);
    assert_int_equal(answer_ttl(&r), 0);

    /* a fresh entry (refreshed meanwhile) answers with its remaining TTL */
    insert_a(c, 100, NOW + 20);
    assert_true(l1_lookup_stale(c, k.key, &k.q, NOW + 30, OUR_UDP, false, r.b, sizeof r.b, &r.n));
    assert_int_equal(dns_msg_parse(&r.m, r.b, r.n, r.rrs, DNS_RR_MAX), DNS_OK);
    assert_int_equal(answer_ttl(&r), 90);

    /* beyond the window, or another question: nothing */
    assert_false(
        l1_lookup_stale(c, k.key, &k.q, NOW + 20 + 160, OUR_UDP, false, r.b, sizeof r.b, &r.n));
    struct qk other = question_of("a_example_com_do");
    other.key = k.key;
    assert_false(
        l1_lookup_stale(c, other.key, &other.q, NOW + 30, OUR_UDP, false, r.b, sizeof r.b, &r.n));
    l1_free(c);
}

static void test_stale_with_keepttl_serves_the_stored_ttl(void **state)
{
    (void)state;
    struct l1_opts o = opts();
    o.stale = 60;
    o.keepttl = true; /* CoreDNS fakes its clock to the store time: keepttl wins */
    struct l1_cache *c = new_cache(&o);
    insert_a(c, 10, NOW);
    static struct reply r;
    assert_int_equal(lookup_a(c, NOW + 30, &r), L1_STALE);
    assert_int_equal(answer_ttl(&r), 10);
    l1_free(c);
}

static void test_refreshed_answer_replaces_the_stale_entry(void **state)
{
    (void)state;
    struct l1_opts o = opts();
    o.stale = 3600;
    struct l1_cache *c = new_cache(&o);
    insert_a(c, 10, NOW);
    static struct reply r;
    assert_int_equal(lookup_a(c, NOW + 12, &r), L1_STALE);
    assert_true(r.hit.refresh);
    insert_a(c, 300, NOW + 13); /* the refresh's answer */
    refresh_done_a(c);
    assert_int_equal(lookup_a(c, NOW + 14, &r), L1_HIT);
    assert_int_equal(answer_ttl(&r), 299);
    entries(c, 1, 0);
    l1_free(c);
}

/* ---- prefetch ---- */

static struct l1_cache *prefetch_cache(unsigned amount, double window, unsigned pct)
{
    struct l1_opts o = opts();
    o.prefetch = amount;
    o.prefetch_window = window;
    o.prefetch_pct = pct;
    return new_cache(&o);
}

static void test_prefetch_needs_amount_hits_and_the_threshold(void **state)
{
    (void)state;
    struct l1_cache *c = prefetch_cache(3, 60, 10);
    insert_a(c, 100, NOW);
    static struct reply r;
    /* three hits early: counted, but the TTL is far from its last 10% */
    for (int i = 1; i <= 3; i++) {
        assert_int_equal(lookup_a(c, NOW + i, &r), L1_HIT);
        assert_false(r.hit.refresh);
    }
    /* remaining 10 of 100: due (4th hit in the window), the client still gets its hit */
    assert_int_equal(lookup_a(c, NOW + 50, &r), L1_HIT);
    assert_false(r.hit.refresh); /* remaining 50 > 10 */
    assert_int_equal(lookup_a(c, NOW + 90, &r), L1_HIT);
    assert_int_equal(answer_ttl(&r), 10);
    assert_true(r.hit.refresh);
    /* L2 counts only when fresher by more than the threshold: 10 + ceil(10% x 100) */
    assert_int_equal(r.hit.l2_above, 20);
    l1_free(c);
}

static void test_prefetch_below_amount_never_refreshes(void **state)
{
    (void)state;
    struct l1_cache *c = prefetch_cache(3, 60, 10);
    insert_a(c, 100, NOW);
    static struct reply r;
    assert_int_equal(lookup_a(c, NOW + 91, &r), L1_HIT);
    assert_false(r.hit.refresh); /* 1st hit */
    assert_int_equal(lookup_a(c, NOW + 92, &r), L1_HIT);
    assert_false(r.hit.refresh); /* 2nd */
    assert_int_equal(lookup_a(c, NOW + 93, &r), L1_HIT);
    assert_true(r.hit.refresh); /* 3rd: due */
    assert_int_equal(r.hit.l2_above, 7 + 10);
    l1_free(c);
}

static void test_prefetch_count_restarts_after_a_gap_longer_than_duration(void **state)
{
    (void)state;
    struct l1_cache *c = prefetch_cache(2, 5, 10);
    insert_a(c, 100, NOW);
    static struct reply r;
    assert_int_equal(lookup_a(c, NOW + 80, &r), L1_HIT); /* 1 */
    assert_int_equal(lookup_a(c, NOW + 90, &r), L1_HIT); /* gap 10 s > 5 s: back to 1 */
    assert_false(r.hit.refresh);                         /* remaining 10 <= 10, 1 < 2 */
    assert_int_equal(lookup_a(c, NOW + 94, &r), L1_HIT); /* gap 4 s: 2 */
    assert_true(r.hit.refresh);
    l1_free(c);
}

static void test_prefetch_threshold_rounds_up_the_percentage(void **state)
{
    (void)state;
    /* 10% of 15 s is 1.5 s: CoreDNS takes ceil, 2 s */
    struct l1_cache *c = prefetch_cache(1, 60, 10);
    insert_a(c, 15, NOW);
    static struct reply r;
    assert_int_equal(lookup_a(c, NOW + 12, &r), L1_HIT);
    assert_false(r.hit.refresh); /* remaining 3 */
    assert_int_equal(lookup_a(c, NOW + 13, &r), L1_HIT);
    assert_true(r.hit.refresh); /* remaining 2 */
    l1_free(c);

    /* 50%: due from half the lifetime on */
    c = prefetch_cache(1, 60, 50);
    insert_a(c, 10, NOW);
    assert_int_equal(lookup_a(c, NOW + 4, &r), L1_HIT);
    assert_false(r.hit.refresh); /* remaining 6 */
    assert_int_equal(lookup_a(c, NOW + 5, &r), L1_HIT);
    assert_true(r.hit.refresh); /* remaining 5 */
    assert_int_equal(r.hit.l2_above, 10);
    l1_free(c);
}

static void test_prefetch_one_refresh_in_flight_per_entry(void **state)
{
    (void)state;
    struct l1_cache *c = prefetch_cache(1, 60, 10);
    insert_a(c, 100, NOW);
    static struct reply r;
    assert_int_equal(lookup_a(c, NOW + 95, &r), L1_HIT);
    assert_true(r.hit.refresh);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(lookup_a(c, NOW + 96 + i * 0.5, &r), L1_HIT);
        assert_false(r.hit.refresh); /* coalesced */
    }
    refresh_done_a(c); /* it failed: the entry may be refreshed again */
    assert_int_equal(lookup_a(c, NOW + 98, &r), L1_HIT);
    assert_true(r.hit.refresh);
    l1_free(c);
}

static void test_prefetch_count_carries_over_the_refreshed_answer(void **state)
{
    (void)state;
    struct l1_cache *c = prefetch_cache(3, 600, 10);
    insert_a(c, 100, NOW);
    static struct reply r;
    assert_int_equal(lookup_a(c, NOW + 91, &r), L1_HIT);
    assert_int_equal(lookup_a(c, NOW + 92, &r), L1_HIT);
    assert_int_equal(lookup_a(c, NOW + 93, &r), L1_HIT);
    assert_true(r.hit.refresh);
    insert_a(c, 100, NOW + 94); /* the refresh's answer: 3 hits carried over */
    refresh_done_a(c);
    /* one more hit in its last 10% is enough (4 >= 3); a fresh count would need three */
    assert_int_equal(lookup_a(c, NOW + 94 + 91, &r), L1_HIT);
    assert_true(r.hit.refresh);
    l1_free(c);
}

static void test_prefetch_off_or_amount_zero_never_refreshes(void **state)
{
    (void)state;
    struct l1_cache *c = prefetch_cache(0, 60, 90);
    insert_a(c, 10, NOW);
    static struct reply r;
    for (int i = 0; i < 10; i++) {
        assert_int_equal(lookup_a(c, NOW + 9 + i * 0.01, &r), L1_HIT);
        assert_false(r.hit.refresh);
    }
    l1_free(c);
}

/* ---- servfail ---- */

static void test_servfail_is_cached_for_its_duration(void **state)
{
    (void)state;
    struct l1_opts o = opts();
    o.servfail_ttl = 5;
    o.prefetch = 1; /* never for a SERVFAIL */
    o.prefetch_pct = 90;
    struct l1_cache *c = new_cache(&o);
    assert_true(insert_servfail_a(c, NOW));
    entries(c, 0, 1); /* in the denial capacity, as CoreDNS's ncache */
    static struct reply r;
    assert_int_equal(lookup_a(c, NOW + 4.9, &r), L1_HIT);
    assert_int_equal(r.m.flags & DNS_F_RCODE_MASK, DNS_RCODE_SERVFAIL);
    assert_int_equal(r.m.count[1], 0);
    assert_int_equal(r.hit.kind, DNS_KIND_NEGATIVE);
    assert_false(r.hit.refresh);
    assert_int_equal(lookup_a(c, NOW + 5, &r), L1_MISS);
    entries(c, 0, 0);
    l1_free(c);
}

static void test_servfail_zero_or_no_denial_capacity_stores_nothing(void **state)
{
    (void)state;
    struct l1_opts o = opts();
    o.servfail_ttl = 0;
    struct l1_cache *c = new_cache(&o);
    assert_false(insert_servfail_a(c, NOW));
    entries(c, 0, 0);
    l1_free(c);
    o = opts();
    o.denial_cap = 0;
    c = new_cache(&o);
    assert_false(insert_servfail_a(c, NOW));
    l1_free(c);
}

static void test_servfail_insert_takes_only_a_servfail_to_the_question(void **state)
{
    (void)state;
    struct l1_opts o = opts();
    struct l1_cache *c = new_cache(&o);
    struct qk k = question_of("a_example_com");
    const struct dns_fixture *ok = fixture("a_example_com");
    /* a NOERROR answer is not a SERVFAIL */
    assert_false(l1_insert_servfail(c, k.key, &k.q, ok->resp, ok->resp_len, NOW));
    /* a SERVFAIL to another question */
    uint8_t msg[512];
    size_t n = servfail_of("aaaa_example_com", msg);
    assert_false(l1_insert_servfail(c, k.key, &k.q, msg, n, NOW));
    /* a query (QR=0) is no response */
    n = servfail_of("a_example_com", msg);
    msg[2] &= 0x7F;
    assert_false(l1_insert_servfail(c, k.key, &k.q, msg, n, NOW));
    assert_false(l1_insert_servfail(c, k.key, &k.q, msg, 5, NOW));
    entries(c, 0, 0);
    l1_free(c);
}

static void test_servfail_never_replaces_an_answer_serve_stale_can_serve(void **state)
{
    (void)state;
    struct l1_opts o = opts();
    o.stale = 60;
    struct l1_cache *c = new_cache(&o);
    insert_a(c, 10, NOW);
    static struct reply r;
    assert_false(insert_servfail_a(c, NOW + 1));  /* fresh */
    assert_false(insert_servfail_a(c, NOW + 15)); /* stale, within the window */
    assert_int_equal(lookup_a(c, NOW + 16, &r), L1_STALE);
    assert_int_equal(r.m.flags & DNS_F_RCODE_MASK, DNS_RCODE_NOERROR);
    assert_true(insert_servfail_a(c, NOW + 70)); /* past the window: nothing to serve */
    assert_int_equal(lookup_a(c, NOW + 71, &r), L1_HIT);
    assert_int_equal(r.m.flags & DNS_F_RCODE_MASK, DNS_RCODE_SERVFAIL);
    l1_free(c);
}

static void test_servfail_is_never_served_stale_and_an_answer_replaces_it(void **state)
{
    (void)state;
    struct l1_opts o = opts();
    o.stale = 60;
    o.servfail_ttl = 5;
    struct l1_cache *c = new_cache(&o);
    static struct reply r;
    assert_true(insert_servfail_a(c, NOW));
    assert_int_equal(lookup_a(c, NOW + 6, &r), L1_MISS);

    assert_true(insert_servfail_a(c, NOW + 10));
    assert_true(insert_servfail_a(c, NOW + 11)); /* a newer SERVFAIL replaces the older */
    entries(c, 0, 1);
    insert_a(c, 300, NOW + 12); /* the answer once upstream is back */
    assert_int_equal(lookup_a(c, NOW + 13, &r), L1_HIT);
    assert_int_equal(r.m.flags & DNS_F_RCODE_MASK, DNS_RCODE_NOERROR);
    entries(c, 1, 0);
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

static struct parsed *parse_ok(const char *corefile)
{
    struct parsed *p = parse(corefile);
    if (p->rc) fail_msg("%s: %s", corefile, p->text);
    return p;
}

static void expect_error(const char *corefile, const char *want)
{
    struct parsed *p = parse(corefile);
    assert_int_equal(p->rc, -1);
    if (strcmp(p->text, want) != 0) fail_msg("got \"%s\", want \"%s\"", p->text, want);
    cfg_tokens_free(&p->t);
}

static void test_parse_prefetch_amount_alone_takes_coredns_defaults(void **state)
{
    (void)state;
    struct parsed *p = parse_ok("cache {\n    prefetch 10\n}");
    assert_int_equal(p->o.prefetch, 10);
    assert_true(p->o.prefetch_window == 60.0);
    assert_int_equal(p->o.prefetch_pct, 10);
    cfg_tokens_free(&p->t);
}

static void test_parse_prefetch_duration_and_percentage(void **state)
{
    (void)state;
    struct parsed *p = parse_ok("cache {\n prefetch 2 30s 50%\n}");
    assert_int_equal(p->o.prefetch, 2);
    assert_true(p->o.prefetch_window == 30.0);
    assert_int_equal(p->o.prefetch_pct, 50);
    cfg_tokens_free(&p->t);
    p = parse_ok("cache {\n prefetch 1 1m30s 10%\n}");
    assert_true(p->o.prefetch_window == 90.0);
    cfg_tokens_free(&p->t);
    p = parse_ok("cache {\n prefetch 1 1500ms 90%\n}");
    assert_true(p->o.prefetch_window == 1.5);
    assert_int_equal(p->o.prefetch_pct, 90);
    cfg_tokens_free(&p->t);
    p = parse_ok("cache {\n prefetch 0\n}"); /* CoreDNS: 0 is allowed and means off */
    assert_int_equal(p->o.prefetch, 0);
    cfg_tokens_free(&p->t);
}

static void test_parse_serve_stale_defaults_and_modes(void **state)
{
    (void)state;
    struct parsed *p = parse_ok("cache {\n serve_stale\n}");
    assert_int_equal(p->o.stale, 3600);
    assert_false(p->o.stale_verify);
    cfg_tokens_free(&p->t);
    p = parse_ok("cache {\n serve_stale 2m verify\n}");
    assert_int_equal(p->o.stale, 120);
    assert_true(p->o.stale_verify);
    cfg_tokens_free(&p->t);
    p = parse_ok("cache {\n serve_stale 10s IMMEDIATE\n}");
    assert_int_equal(p->o.stale, 10);
    assert_false(p->o.stale_verify);
    cfg_tokens_free(&p->t);
    p = parse_ok("cache {\n serve_stale 90.5s\n}"); /* whole seconds, as CoreDNS compares */
    assert_int_equal(p->o.stale, 90);
    cfg_tokens_free(&p->t);
    p = parse_ok("cache {\n serve_stale 0\n}");
    assert_int_equal(p->o.stale, 0);
    cfg_tokens_free(&p->t);
}

static void test_parse_servfail_durations(void **state)
{
    (void)state;
    struct parsed *p = parse_ok("cache {\n servfail 10s\n}");
    assert_int_equal(p->o.servfail_ttl, 10);
    cfg_tokens_free(&p->t);
    p = parse_ok("cache {\n servfail 0\n}");
    assert_int_equal(p->o.servfail_ttl, 0);
    cfg_tokens_free(&p->t);
    p = parse_ok("cache {\n servfail 5m\n}");
    assert_int_equal(p->o.servfail_ttl, 300);
    cfg_tokens_free(&p->t);
    p = parse_ok("cache {\n servfail 2500ms\n}");
    assert_int_equal(p->o.servfail_ttl, 2);
    cfg_tokens_free(&p->t);
}

static void test_parse_a_later_line_replaces_an_earlier_one(void **state)
{
    (void)state;
    struct parsed *p = parse_ok("cache {\n prefetch 5 2m 20%\n prefetch 7\n servfail 9s\n"
                                " servfail 3s\n serve_stale 1m verify\n serve_stale\n}");
    assert_int_equal(p->o.prefetch, 7);
    assert_true(p->o.prefetch_window == 60.0);
    assert_int_equal(p->o.prefetch_pct, 10);
    assert_int_equal(p->o.servfail_ttl, 3);
    assert_int_equal(p->o.stale, 3600);
    assert_false(p->o.stale_verify);
    cfg_tokens_free(&p->t);
}

static void test_parse_prefetch_errors_name_file_line_and_directive(void **state)
{
    (void)state;
    expect_error("cache {\n prefetch\n}",
                 "Corefile:2: cache: prefetch: missing AMOUNT [DURATION [PERCENTAGE%]]");
    expect_error("cache {\n prefetch 1 1m 10% x\n}",
                 "Corefile:2: cache: prefetch: too many arguments (expected AMOUNT [DURATION "
                 "[PERCENTAGE%]])");
    expect_error("cache {\n prefetch many\n}",
                 "Corefile:2: cache: prefetch: AMOUNT \"many\" is not a whole number");
    expect_error("cache {\n prefetch -1\n}",
                 "Corefile:2: cache: prefetch: AMOUNT -1 can not be negative");
    expect_error("cache {\n prefetch 70000\n}",
                 "Corefile:2: cache: prefetch: AMOUNT 70000 is over 65535");
    expect_error(
        "cache {\n success 10\n\n prefetch 1 10\n}",
        "Corefile:4: cache: prefetch: DURATION \"10\" is not a duration (such as 30s, 5m, 1h)");
    expect_error(
        "cache {\n prefetch 1 1x\n}",
        "Corefile:2: cache: prefetch: DURATION \"1x\" is not a duration (such as 30s, 5m, 1h)");
    expect_error("cache {\n prefetch 1 -5s\n}",
                 "Corefile:2: cache: prefetch: DURATION -5s can not be negative");
    expect_error("cache {\n prefetch 1 1m 50\n}",
                 "Corefile:2: cache: prefetch: PERCENTAGE \"50\" must end with %");
    expect_error("cache {\n prefetch 1 1m 5%\n}",
                 "Corefile:2: cache: prefetch: PERCENTAGE 5% is not a whole number in 10%..90%");
    expect_error("cache {\n prefetch 1 1m 95%\n}",
                 "Corefile:2: cache: prefetch: PERCENTAGE 95% is not a whole number in 10%..90%");
    expect_error("cache {\n prefetch 1 1m abc%\n}",
                 "Corefile:2: cache: prefetch: PERCENTAGE abc% is not a whole number in 10%..90%");
    expect_error("cache {\n prefetch 1 1m %\n}",
                 "Corefile:2: cache: prefetch: PERCENTAGE % is not a whole number in 10%..90%");
}

static void test_parse_serve_stale_and_servfail_errors_name_file_line(void **state)
{
    (void)state;
    expect_error("cache {\n serve_stale 1h verify now\n}",
                 "Corefile:2: cache: serve_stale: too many arguments (expected [DURATION "
                 "[immediate|verify]])");
    expect_error("cache {\n serve_stale 1d\n}",
                 "Corefile:2: cache: serve_stale: DURATION \"1d\" is not a duration (such as 30s, "
                 "5m, 1h)");
    expect_error("cache {\n serve_stale -1h\n}",
                 "Corefile:2: cache: serve_stale: DURATION -1h can not be negative");
    expect_error(
        "cache {\n serve_stale 1h later\n}",
        "Corefile:2: cache: serve_stale: refresh mode \"later\" is not immediate or verify");
    expect_error("cache {\n serve_stale 999999999h\n}",
                 "Corefile:2: cache: serve_stale: DURATION 999999999h is over 2147483647s");
    expect_error("cache {\n servfail\n}", "Corefile:2: cache: servfail: expected one DURATION");
    expect_error("cache {\n servfail 1s 2s\n}",
                 "Corefile:2: cache: servfail: expected one DURATION");
    expect_error("cache {\n servfail 6m\n}",
                 "Corefile:2: cache: servfail: DURATION 6m is over 5m (RFC 2308)");
    expect_error("cache {\n servfail 300001ms\n}",
                 "Corefile:2: cache: servfail: DURATION 300001ms is over 5m (RFC 2308)");
    expect_error("cache {\n servfail -1s\n}",
                 "Corefile:2: cache: servfail: DURATION -1s can not be negative");
    expect_error(
        "cache {\n servfail 5\n}",
        "Corefile:2: cache: servfail: DURATION \"5\" is not a duration (such as 30s, 5m, 1h)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stale_immediate_serves_ttl_zero_within_window_and_asks_one_refresh),
        cmocka_unit_test(test_stale_off_expired_entry_is_a_miss),
        cmocka_unit_test(test_stale_verify_asks_first_and_lookup_stale_builds_ttl_zero),
        cmocka_unit_test(test_stale_with_keepttl_serves_the_stored_ttl),
        cmocka_unit_test(test_refreshed_answer_replaces_the_stale_entry),
        cmocka_unit_test(test_prefetch_needs_amount_hits_and_the_threshold),
        cmocka_unit_test(test_prefetch_below_amount_never_refreshes),
        cmocka_unit_test(test_prefetch_count_restarts_after_a_gap_longer_than_duration),
        cmocka_unit_test(test_prefetch_threshold_rounds_up_the_percentage),
        cmocka_unit_test(test_prefetch_one_refresh_in_flight_per_entry),
        cmocka_unit_test(test_prefetch_count_carries_over_the_refreshed_answer),
        cmocka_unit_test(test_prefetch_off_or_amount_zero_never_refreshes),
        cmocka_unit_test(test_servfail_is_cached_for_its_duration),
        cmocka_unit_test(test_servfail_zero_or_no_denial_capacity_stores_nothing),
        cmocka_unit_test(test_servfail_insert_takes_only_a_servfail_to_the_question),
        cmocka_unit_test(test_servfail_never_replaces_an_answer_serve_stale_can_serve),
        cmocka_unit_test(test_servfail_is_never_served_stale_and_an_answer_replaces_it),
        cmocka_unit_test(test_parse_prefetch_amount_alone_takes_coredns_defaults),
        cmocka_unit_test(test_parse_prefetch_duration_and_percentage),
        cmocka_unit_test(test_parse_serve_stale_defaults_and_modes),
        cmocka_unit_test(test_parse_servfail_durations),
        cmocka_unit_test(test_parse_a_later_line_replaces_an_earlier_one),
        cmocka_unit_test(test_parse_prefetch_errors_name_file_line_and_directive),
        cmocka_unit_test(test_parse_serve_stale_and_servfail_errors_name_file_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
