/* tests/unit/support/loop_thread.h — a worker thread running its own ev_loop, for tests whose
 * code must run on another loop's thread, as in the server (one loop per worker thread).
 *
 * The test hands the worker a function and waits until it has run there
 * (test_worker_run): the handshake also orders the memory, so what the function wrote is
 * seen by the test afterwards, and the other way round. Between functions the loop keeps
 * running (an ev_async keeps it alive), so async wakeups from other threads land there.
 */
#ifndef RC_TEST_LOOP_THREAD_H
#define RC_TEST_LOOP_THREAD_H

#include <pthread.h>
#include <stdbool.h>

#include <ev.h>

struct test_worker;
typedef void test_worker_fn(struct test_worker *wk, void *arg);

struct test_worker {
    pthread_t th;
    struct ev_loop *loop;
    ev_async wake; /* referenced: keeps the loop running until quit */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    test_worker_fn *fn; /* posted by the test, cleared once it ran */
    void *arg;
    bool quit;
    void *data; /* the test's own, for the functions it runs there */
};

/* Creates the loop and starts the thread running it; data goes to wk->data. */
void test_worker_start(struct test_worker *wk, void *data);

/* Runs fn(wk, arg) on the worker's thread and waits for it. */
void test_worker_run(struct test_worker *wk, test_worker_fn *fn, void *arg);

/* Stops the loop, joins the thread and frees the loop. */
void test_worker_stop(struct test_worker *wk);

/* Sleeps the calling thread for secs. */
void nap(double secs);

#endif
