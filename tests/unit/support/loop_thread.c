/* tests/unit/support/loop_thread.c — a worker thread running its own ev_loop, for tests whose
 * code must run on another loop's thread (see loop_thread.h). */
#include "loop_thread.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

static void worker_wake(struct ev_loop *loop, ev_async *w, int revents)
{
    struct test_worker *wk = w->data;
    (void)revents;
    pthread_mutex_lock(&wk->mu);
    if (wk->fn) {
        test_worker_fn *fn = wk->fn;
        void *arg = wk->arg;
        pthread_mutex_unlock(&wk->mu);
        fn(wk, arg);
        pthread_mutex_lock(&wk->mu);
        wk->fn = NULL;
        pthread_cond_broadcast(&wk->cv);
    }
    if (wk->quit) ev_break(loop, EVBREAK_ALL);
    pthread_mutex_unlock(&wk->mu);
}

static void *worker_main(void *p)
{
    struct test_worker *wk = p;
    ev_run(wk->loop, 0);
    return NULL;
}

void test_worker_start(struct test_worker *wk, void *data)
{
    memset(wk, 0, sizeof *wk);
    wk->data = data;
    wk->loop = ev_loop_new(EVFLAG_AUTO);
    assert_non_null(wk->loop);
    pthread_mutex_init(&wk->mu, NULL);
    pthread_cond_init(&wk->cv, NULL);
    ev_async_init(&wk->wake, worker_wake);
    wk->wake.data = wk;
    ev_async_start(wk->loop, &wk->wake);
    assert_int_equal(pthread_create(&wk->th, NULL, worker_main, wk), 0);
}

void test_worker_run(struct test_worker *wk, test_worker_fn *fn, void *arg)
{
    pthread_mutex_lock(&wk->mu);
    wk->fn = fn;
    wk->arg = arg;
    pthread_mutex_unlock(&wk->mu);
    ev_async_send(wk->loop, &wk->wake);
    pthread_mutex_lock(&wk->mu);
    while (wk->fn) pthread_cond_wait(&wk->cv, &wk->mu);
    pthread_mutex_unlock(&wk->mu);
}

void test_worker_stop(struct test_worker *wk)
{
    pthread_mutex_lock(&wk->mu);
    wk->quit = true;
    pthread_mutex_unlock(&wk->mu);
    ev_async_send(wk->loop, &wk->wake);
    pthread_join(wk->th, NULL);
    ev_async_stop(wk->loop, &wk->wake);
    ev_loop_destroy(wk->loop);
    pthread_mutex_destroy(&wk->mu);
    pthread_cond_destroy(&wk->cv);
}

void nap(double secs)
{
    struct timespec ts = {(time_t)secs, (long)((secs - (double)(time_t)secs) * 1e9)};
    nanosleep(&ts, NULL);
}
