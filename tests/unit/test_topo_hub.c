/* tests/unit/test_topo_hub.c — the hub (src/topology/hub.c) that lets the routers of every
 * worker share one topology state: leadership by join order and its hand-over when the
 * leader leaves (on the next member's own loop), published views and their versions, a
 * follower's refresh request waking the leader's loop (coalesced), shared breaker state per
 * node name across threads, and reference counts (run under ASan too).
 *
 * Members that live on another thread run there for real: a worker thread owns a loop and
 * runs functions the test hands it, so every hub call is made on the member's own thread.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <pthread.h>
#include <cmocka.h>

#include <ev.h>

#include "topology/hub_internal.h"
#include "topology/topology.h"

#include "support/loop_thread.h"

/* ---- members ---------------------------------------------------------------------------- */

/* What the callbacks saw; written on the member's thread, read by the test after a
 * handshake with that thread (test_worker_run) or on the same thread. */
struct seen {
    atomic_int leads, refreshes;
    atomic_bool lead_was_leader; /* m->leader already true when on_lead ran */
    pthread_t lead_thread, refresh_thread;
};

static void cb_lead(struct topo_hub_member *m)
{
    struct seen *s = m->priv;
    atomic_store(&s->lead_was_leader, m->leader);
    s->lead_thread = pthread_self();
    atomic_fetch_add(&s->leads, 1);
}

static void cb_refresh(struct topo_hub_member *m)
{
    struct seen *s = m->priv;
    s->refresh_thread = pthread_self();
    atomic_fetch_add(&s->refreshes, 1);
}

static void member_init(struct topo_hub_member *m, struct topo_hub *h, struct ev_loop *loop,
                        struct seen *s)
{
    memset(m, 0, sizeof *m);
    memset(s, 0, sizeof *s);
    m->hub = h;
    m->loop = loop;
    m->on_lead = cb_lead;
    m->on_refresh = cb_refresh;
    m->priv = s;
}

struct join_arg {
    struct topo_hub_member *m;
    bool leader;
};

static void do_join(struct test_worker *wk, void *arg)
{
    struct join_arg *j = arg;
    (void)wk;
    j->leader = topo_hub_join(j->m);
}

static void do_leave(struct test_worker *wk, void *arg)
{
    (void)wk;
    topo_hub_leave(arg);
}

static void do_publish(struct test_worker *wk, void *arg)
{
    (void)wk;
    assert_int_equal(topo_hub_publish(arg, "w", 2), 0);
}

static void do_nothing(struct test_worker *wk, void *arg)
{
    (void)wk, (void)arg;
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_first_member_to_join_leads_the_others_follow(void **state)
{
    (void)state;
    struct ev_loop *l1 = ev_loop_new(EVFLAG_AUTO), *l2 = ev_loop_new(EVFLAG_AUTO);
    struct topo_hub *h = topo_hub_new();
    assert_non_null(h);
    struct topo_hub_member a, b, c;
    struct seen sa, sb, sc;
    member_init(&a, h, l1, &sa);
    member_init(&b, h, l2, &sb);
    member_init(&c, h, l2, &sc);
    assert_true(topo_hub_join(&a));
    assert_true(a.leader);
    assert_false(topo_hub_join(&b));
    assert_false(b.leader);
    assert_false(topo_hub_join(&c));
    /* a follower leaving changes nothing: nobody is told to lead */
    topo_hub_leave(&b);
    ev_run(l1, EVRUN_NOWAIT);
    ev_run(l2, EVRUN_NOWAIT);
    assert_int_equal(atomic_load(&sa.leads) + atomic_load(&sb.leads) + atomic_load(&sc.leads), 0);
    assert_true(a.leader);
    assert_false(c.leader);
    topo_hub_leave(&c);
    topo_hub_leave(&a);
    /* the hub's wakeups do not keep a loop alive: ev_run returns at once */
    ev_run(l1, 0);
    /* with every member gone the next one to join leads */
    member_init(&b, h, l2, &sb);
    assert_true(topo_hub_join(&b));
    topo_hub_leave(&b);
    topo_hub_unref(h);
    ev_loop_destroy(l1);
    ev_loop_destroy(l2);
}

static void test_publish_bumps_the_version_and_followers_see_it_once(void **state)
{
    (void)state;
    struct ev_loop *l = ev_loop_new(EVFLAG_AUTO);
    struct topo_hub *h = topo_hub_new();
    struct topo_hub_member lead, fol;
    struct seen s1, s2;
    member_init(&lead, h, l, &s1);
    member_init(&fol, h, l, &s2);
    assert_true(topo_hub_join(&lead));
    assert_false(topo_hub_join(&fol));
    /* nothing published yet */
    assert_false(topo_hub_changed(&fol));
    assert_null(topo_hub_view(&fol));

    assert_int_equal(topo_hub_publish(&lead, "first", 6), 0);
    assert_false(topo_hub_changed(&lead)); /* the leader has it applied already */
    assert_true(topo_hub_changed(&fol));
    struct topo_view *v1 = topo_hub_view(&fol);
    assert_non_null(v1);
    assert_int_equal(v1->version, 1);
    assert_int_equal(v1->len, 6);
    assert_string_equal((const char *)v1->data, "first");
    assert_int_equal(fol.seen, 1);
    assert_false(topo_hub_changed(&fol));
    assert_null(topo_hub_view(&fol)); /* not handed out twice */

    /* a newer view while the old one is still held: both stay valid (ASan) */
    assert_int_equal(topo_hub_publish(&lead, "second!", 8), 0);
    assert_true(topo_hub_changed(&fol));
    struct topo_view *v2 = topo_hub_view(&fol);
    assert_non_null(v2);
    assert_int_equal(v2->version, 2);
    assert_string_equal((const char *)v2->data, "second!");
    assert_string_equal((const char *)v1->data, "first");
    topo_view_put(v1);

    /* an empty view is a view too */
    assert_int_equal(topo_hub_publish(&lead, NULL, 0), 0);
    struct topo_view *v3 = topo_hub_view(&fol);
    assert_non_null(v3);
    assert_int_equal(v3->version, 3);
    assert_int_equal(v3->len, 0);
    topo_view_put(v3);

    topo_hub_leave(&fol);
    topo_hub_leave(&lead);
    ev_run(l, EVRUN_NOWAIT); /* runs the hand-over wakeup, if any, of nobody */
    topo_hub_unref(h);
    /* the hub is gone; the view still held is ours to release */
    assert_string_equal((const char *)v2->data, "second!");
    topo_view_put(v2);
    ev_loop_destroy(l);
}

static void test_hub_lives_while_referenced(void **state)
{
    (void)state;
    struct topo_hub *h = topo_hub_new();
    topo_hub_ref(h);
    topo_hub_ref(h);
    topo_hub_unref(h);
    topo_hub_unref(h);
    /* still one reference: usable */
    struct topo_health *hl = topo_hub_health(h, "127.0.0.1:6379");
    assert_non_null(hl);
    topo_hub_unref(h);
    topo_hub_ref(NULL);
    topo_hub_unref(NULL);
}

struct lead_arg {
    struct topo_hub_member *m;
    struct seen *s;
    int leads;
    bool leader;
};

static void read_lead(struct test_worker *wk, void *arg)
{
    struct lead_arg *a = arg;
    (void)wk;
    a->leads = atomic_load(&a->s->leads);
    a->leader = a->m->leader;
}

static void test_leader_leaving_hands_over_on_the_next_members_loop(void **state)
{
    (void)state;
    struct test_worker w2, w3;
    test_worker_start(&w2, NULL);
    test_worker_start(&w3, NULL);
    struct ev_loop *l1 = ev_loop_new(EVFLAG_AUTO);
    struct topo_hub *h = topo_hub_new();
    struct topo_hub_member a, b, c;
    struct seen sa, sb, sc;
    member_init(&a, h, l1, &sa);
    member_init(&b, h, w2.loop, &sb);
    member_init(&c, h, w3.loop, &sc);
    assert_true(topo_hub_join(&a));
    struct join_arg jb = {&b, true}, jc = {&c, true};
    test_worker_run(&w2, do_join, &jb);
    test_worker_run(&w3, do_join, &jc);
    assert_false(jb.leader);
    assert_false(jc.leader);
    assert_int_equal(topo_hub_publish(&a, "v", 2), 0);

    topo_hub_leave(&a); /* b joined first after a: b leads, on w2's thread */
    struct lead_arg rb = {&b, &sb, 0, false}, rc = {&c, &sc, 0, false};
    for (int i = 0; i < 500 && rb.leads == 0; i++) {
        nap(0.002);
        test_worker_run(&w2, read_lead, &rb);
    }
    assert_int_equal(rb.leads, 1);
    assert_true(rb.leader);
    assert_true(atomic_load(&sb.lead_was_leader));
    assert_true(pthread_equal(sb.lead_thread, w2.th));
    test_worker_run(&w3, read_lead, &rc);
    assert_int_equal(rc.leads, 0);
    assert_false(rc.leader);

    /* the new leader publishes on its thread; c sees version 2 */
    test_worker_run(&w2, do_publish, &b);
    assert_int_equal(b.seen, 2);
    assert_true(topo_hub_changed(&c));

    /* the leader leaves again: c, the last member, leads on w3 */
    test_worker_run(&w2, do_leave, &b);
    for (int i = 0; i < 500 && rc.leads == 0; i++) {
        nap(0.002);
        test_worker_run(&w3, read_lead, &rc);
    }
    assert_int_equal(rc.leads, 1);
    assert_true(rc.leader);
    assert_true(pthread_equal(sc.lead_thread, w3.th));
    assert_int_equal(atomic_load(&sb.leads), 1); /* b led once, never again */
    test_worker_run(&w3, do_leave, &c);
    test_worker_stop(&w2);
    test_worker_stop(&w3);
    topo_hub_unref(h);
    ev_loop_destroy(l1);
}

static void test_hand_over_is_told_on_the_next_members_loop_not_at_leave(void **state)
{
    (void)state;
    struct ev_loop *l1 = ev_loop_new(EVFLAG_AUTO), *l2 = ev_loop_new(EVFLAG_AUTO);
    struct topo_hub *h = topo_hub_new();
    struct topo_hub_member a, b;
    struct seen sa, sb;
    member_init(&a, h, l1, &sa);
    member_init(&b, h, l2, &sb);
    assert_true(topo_hub_join(&a));
    assert_false(topo_hub_join(&b));
    topo_hub_leave(&a);
    assert_int_equal(atomic_load(&sb.leads), 0);
    assert_false(b.leader);
    ev_run(l1, EVRUN_NOWAIT); /* not a's loop's business */
    assert_int_equal(atomic_load(&sb.leads), 0);
    ev_run(l2, EVRUN_NOWAIT);
    assert_int_equal(atomic_load(&sb.leads), 1);
    assert_true(b.leader);
    topo_hub_leave(&b);
    topo_hub_unref(h);
    ev_loop_destroy(l1);
    ev_loop_destroy(l2);
}

static void test_follower_refresh_request_wakes_the_leaders_loop(void **state)
{
    (void)state;
    struct test_worker w;
    test_worker_start(&w, NULL);
    struct ev_loop *lf = ev_loop_new(EVFLAG_AUTO);
    struct topo_hub *h = topo_hub_new();
    struct topo_hub_member lead, fol;
    struct seen sl, sf;
    member_init(&lead, h, w.loop, &sl);
    member_init(&fol, h, lf, &sf);
    struct join_arg j = {&lead, false};
    test_worker_run(&w, do_join, &j);
    assert_true(j.leader);
    assert_false(topo_hub_join(&fol));

    topo_hub_want_refresh(&fol); /* from the main thread, the follower's */
    for (int i = 0; i < 1000 && atomic_load(&sl.refreshes) == 0; i++) nap(0.002);
    test_worker_run(&w, do_nothing, NULL);
    assert_int_equal(atomic_load(&sl.refreshes), 1);
    assert_true(pthread_equal(sl.refresh_thread, w.th)); /* ran on the leader's loop */
    assert_int_equal(atomic_load(&sf.refreshes), 0);

    topo_hub_want_refresh(&fol);
    for (int i = 0; i < 1000 && atomic_load(&sl.refreshes) < 2; i++) nap(0.002);
    assert_int_equal(atomic_load(&sl.refreshes), 2);

    topo_hub_leave(&fol);
    test_worker_run(&w, do_leave, &lead);
    test_worker_stop(&w);
    topo_hub_unref(h);
    ev_loop_destroy(lf);
}

static void test_refresh_requests_coalesce_until_the_leader_runs(void **state)
{
    (void)state;
    struct ev_loop *ll = ev_loop_new(EVFLAG_AUTO), *lf = ev_loop_new(EVFLAG_AUTO);
    struct topo_hub *h = topo_hub_new();
    struct topo_hub_member lead, f1, f2;
    struct seen sl, s1, s2;
    member_init(&lead, h, ll, &sl);
    member_init(&f1, h, lf, &s1);
    member_init(&f2, h, lf, &s2);
    assert_true(topo_hub_join(&lead));
    assert_false(topo_hub_join(&f1));
    assert_false(topo_hub_join(&f2));
    topo_hub_want_refresh(&f1);
    topo_hub_want_refresh(&f2);
    topo_hub_want_refresh(&f1);
    assert_int_equal(atomic_load(&sl.refreshes), 0); /* nothing runs before the loop does */
    ev_run(ll, EVRUN_NOWAIT);
    assert_int_equal(atomic_load(&sl.refreshes), 1);
    ev_run(ll, EVRUN_NOWAIT);
    assert_int_equal(atomic_load(&sl.refreshes), 1);
    ev_run(lf, EVRUN_NOWAIT);
    assert_int_equal(atomic_load(&s1.refreshes) + atomic_load(&s2.refreshes), 0);
    /* the leader asking itself runs its round at once */
    topo_hub_want_refresh(&lead);
    assert_int_equal(atomic_load(&sl.refreshes), 2);
    topo_hub_leave(&f1);
    topo_hub_leave(&f2);
    topo_hub_leave(&lead);
    topo_hub_unref(h);
    ev_loop_destroy(ll);
    ev_loop_destroy(lf);
}

static void test_refresh_asked_during_hand_over_reaches_the_new_leader(void **state)
{
    (void)state;
    struct ev_loop *l1 = ev_loop_new(EVFLAG_AUTO), *l2 = ev_loop_new(EVFLAG_AUTO),
                   *l3 = ev_loop_new(EVFLAG_AUTO);
    struct topo_hub *h = topo_hub_new();
    struct topo_hub_member a, b, c;
    struct seen sa, sb, sc;
    member_init(&a, h, l1, &sa);
    member_init(&b, h, l2, &sb);
    member_init(&c, h, l3, &sc);
    assert_true(topo_hub_join(&a));
    assert_false(topo_hub_join(&b));
    assert_false(topo_hub_join(&c));
    topo_hub_leave(&a);
    topo_hub_want_refresh(&c); /* b is told to lead but has not run yet */
    ev_run(l2, EVRUN_NOWAIT);
    assert_int_equal(atomic_load(&sb.leads), 1);
    assert_int_equal(atomic_load(&sb.refreshes), 1); /* after taking the lead */
    assert_int_equal(atomic_load(&sa.refreshes), 0);
    topo_hub_leave(&c);
    topo_hub_leave(&b);
    topo_hub_unref(h);
    ev_loop_destroy(l1);
    ev_loop_destroy(l2);
    ev_loop_destroy(l3);
}

struct health_arg {
    struct topo_hub *h;
    struct topo_health *got[50];
};

static void *health_thread(void *p)
{
    struct health_arg *a = p;
    for (int i = 0; i < 50; i++) {
        char name[32];
        snprintf(name, sizeof name, "10.0.0.%d:6379", i % 5);
        a->got[i] = topo_hub_health(a->h, name);
    }
    return NULL;
}

static void test_health_is_one_object_per_node_name_across_threads(void **state)
{
    (void)state;
    struct topo_hub *h = topo_hub_new();
    struct health_arg a1 = {.h = h}, a2 = {.h = h};
    pthread_t t1, t2;
    assert_int_equal(pthread_create(&t1, NULL, health_thread, &a1), 0);
    assert_int_equal(pthread_create(&t2, NULL, health_thread, &a2), 0);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    for (int i = 0; i < 50; i++) {
        assert_non_null(a1.got[i]);
        assert_ptr_equal(a1.got[i], a2.got[i]);
        assert_ptr_equal(a1.got[i], a1.got[i % 5]);
        if (i % 5) assert_ptr_not_equal(a1.got[i], a1.got[0]);
    }
    struct topo_health *hl = topo_hub_health(h, "10.0.0.3:6379");
    assert_ptr_equal(hl, a1.got[3]);
    assert_string_equal(hl->name, "10.0.0.3:6379");
    assert_int_equal(atomic_load(&hl->open), TOPO_BREAKER_CLOSED);
    assert_int_equal(atomic_load(&hl->fails), 0);
    /* a count made through one lookup is seen through the other */
    atomic_fetch_add(&a2.got[3]->fails, 2);
    assert_int_equal(atomic_load(&hl->fails), 2);
    char buf[64];
    topo_health_msg_get(h, hl, buf, sizeof buf);
    assert_string_equal(buf, "");
    topo_health_msg_set(h, a2.got[3], "connect 10.0.0.3:6379: Connection refused");
    topo_health_msg_get(h, hl, buf, sizeof buf);
    assert_string_equal(buf, "connect 10.0.0.3:6379: Connection refused");
    topo_health_msg_get(h, hl, buf, 8); /* cut to the buffer */
    assert_string_equal(buf, "connect");
    topo_hub_unref(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_member_to_join_leads_the_others_follow),
        cmocka_unit_test(test_publish_bumps_the_version_and_followers_see_it_once),
        cmocka_unit_test(test_hub_lives_while_referenced),
        cmocka_unit_test(test_leader_leaving_hands_over_on_the_next_members_loop),
        cmocka_unit_test(test_hand_over_is_told_on_the_next_members_loop_not_at_leave),
        cmocka_unit_test(test_follower_refresh_request_wakes_the_leaders_loop),
        cmocka_unit_test(test_refresh_requests_coalesce_until_the_leader_runs),
        cmocka_unit_test(test_refresh_asked_during_hand_over_reaches_the_new_leader),
        cmocka_unit_test(test_health_is_one_object_per_node_name_across_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
