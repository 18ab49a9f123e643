/* src/topology/request.c — the requests of a node's pool (pool.c): one or more commands that
 * stay adjacent on one connection, RESP-encoded once into the request's own buffer so that a
 * retry sends the same bytes again.
 *
 * Requests come from a per-pool free list (steady state allocates nothing per request).
 * A request's callbacks are delivered once per command, in order; the last one returns the
 * request to the free list before calling the caller, who may issue new requests from it.
 *
 * Retries: only a connection error before the first reply was delivered is retried, at most
 * `retries` times, after a jittered exponential backoff that must end before the deadline.
 * The same backoff schedule paces reconnects and the breaker's probe.
 */
#include <ev.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "topology/pool_internal.h"
#include "topology/topology.h"

#define REQ_FREE_MAX  1024            /* requests kept on the free list */
#define REQ_KEEP_HEAP ((size_t)16384) /* heap buffers up to this size stay with the request */

/* ---- backoff ------------------------------------------------------------------------ */

double topo_backoff(double min_backoff, double max_backoff, unsigned attempt, double u)
{
    if (min_backoff <= 0) return 0;
    if (max_backoff < min_backoff) max_backoff = min_backoff;
    double c = min_backoff;
    for (unsigned i = 0; i < attempt && c < max_backoff; i++) c *= 2;
    if (c > max_backoff) c = max_backoff;
    if (u < 0) u = 0;
    if (u >= 1) u = 0.999999;
    double d = c / 2 + u * (c / 2);
    if (d < min_backoff) d = min_backoff;
    if (d > max_backoff) d = max_backoff;
    return d;
}

uint64_t topo_rng_next(uint64_t *s)
{
    /* xorshift64*: plenty for jitter; seeded from getrandom */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

double topo_rng_unit(uint64_t *s)
{
    return (double)(topo_rng_next(s) >> 11) / 9007199254740992.0; /* 2^53 */
}

uint64_t topo_pool_rng_seed(const void *salt)
{
    uint64_t s = 0;
    if (getrandom(&s, sizeof s, GRND_NONBLOCK) != (ssize_t)sizeof s) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        s = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)salt;
    }
    return s ? s : 0x9E3779B97F4A7C15ULL;
}

double topo_pool_backoff(struct topo_pool *p, unsigned attempt)
{
    return topo_backoff(p->o.pool.min_backoff, p->o.pool.max_backoff, attempt,
                        topo_rng_unit(&p->rng));
}

/* ---- the free list ------------------------------------------------------------------ */

struct preq *topo_preq_get(struct topo_pool *p)
{
    struct preq *r = preq_list_pop(&p->freeq);
    if (!r) {
        r = malloc(sizeof *r);
        if (!r) return NULL;
        r->buf = r->inline_buf;
        r->cap = sizeof r->inline_buf;
        ev_init(&r->timer, topo_preq_timer_cb);
        r->timer.data = r;
    }
    r->next = r->prev = NULL;
    r->pool = p;
    r->pc = NULL;
    r->len = 0;
    r->delivered = r->seen = 0;
    r->attempts = 0;
    r->abandon = false;
    r->state = REQ_NEW;
    return r;
}

static void req_drop_buf(struct preq *r)
{
    if (r->buf != r->inline_buf) free(r->buf);
    r->buf = r->inline_buf;
    r->cap = sizeof r->inline_buf;
}

void topo_preq_destroy(struct preq *r)
{
    req_drop_buf(r);
    free(r);
}

void topo_preq_release(struct preq *r)
{
    struct topo_pool *p = r->pool;
    if (r->flags & TOPO_BACKGROUND) {
        p->bg--;
        p->bg_bytes -= r->len;
    }
    r->flags = 0;
    r->state = REQ_FREE;
    r->fn = NULL;
    if (r->cap > REQ_KEEP_HEAP) req_drop_buf(r);
    if (p->freeq.n >= REQ_FREE_MAX) {
        topo_preq_destroy(r);
        return;
    }
    preq_list_push(&p->freeq, r);
}

/* ---- encoding ----------------------------------------------------------------------- */

static size_t dec_len(size_t v)
{
    size_t n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

static char *put_num(char *o, char tag, size_t v)
{
    char tmp[24];
    size_t k = 0;
    do {
        tmp[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    *o++ = tag;
    while (k) *o++ = tmp[--k];
    *o++ = '\r';
    *o++ = '\n';
    return o;
}

int topo_preq_encode(struct preq *r, const struct resp_cmd *cmds, size_t n)
{
    size_t need = 0;
    for (size_t i = 0; i < n; i++) {
        need += 3 + dec_len(cmds[i].argc);
        for (size_t j = 0; j < cmds[i].argc; j++)
            need += 3 + dec_len(cmds[i].lens[j]) + cmds[i].lens[j] + 2;
    }
    if (need > r->cap) {
        char *b = malloc(need);
        if (!b) return -1;
        req_drop_buf(r);
        r->buf = b;
        r->cap = need;
    }
    char *o = r->buf;
    for (size_t i = 0; i < n; i++) {
        o = put_num(o, '*', cmds[i].argc);
        for (size_t j = 0; j < cmds[i].argc; j++) {
            o = put_num(o, '$', cmds[i].lens[j]);
            if (cmds[i].lens[j]) memcpy(o, cmds[i].argv[j], cmds[i].lens[j]);
            o += cmds[i].lens[j];
            *o++ = '\r';
            *o++ = '\n';
        }
    }
    r->len = (size_t)(o - r->buf);
    return 0;
}

/* ---- outcomes ----------------------------------------------------------------------- */

void topo_preq_deliver(struct preq *r, size_t idx, const struct resp_value *reply,
                       const struct resp_err *err)
{
    topo_reply_fn *fn = r->fn;
    void *priv = r->priv;
    r->delivered++;
    if (r->delivered >= r->n) topo_preq_release(r);
    fn(priv, idx, reply, err);
}

void topo_preq_fail(struct preq *r, const struct resp_err *err, bool count)
{
    struct topo_pool *p = r->pool;
    if (count && r->delivered == 0) topo_breaker_account(p, err->kind, err);
    size_t n = r->n;
    for (size_t i = r->delivered; i < n; i++) topo_preq_deliver(r, i, NULL, err);
}

bool topo_preq_can_retry(struct preq *r, const struct resp_err *err)
{
    struct topo_pool *p = r->pool;
    if (err->kind != RESP_EK_CONNECTION || r->delivered != 0) return false;
    if (r->attempts >= p->o.pool.retries || p->closing || topo_breaker_is_open(p)) return false;
    r->backoff = topo_pool_backoff(p, r->attempts);
    return ev_now(p->loop) + r->backoff < r->deadline;
}

void topo_preq_retry(struct preq *r)
{
    struct topo_pool *p = r->pool;
    r->attempts++;
    p->retries++;
    r->state = REQ_BACKOFF;
    preq_list_push(&p->backoffq, r);
    ev_timer_set(&r->timer, r->backoff, 0);
    ev_timer_start(p->loop, &r->timer);
}

void topo_preq_attempt_failed(struct preq *r, const struct resp_err *err)
{
    if (topo_preq_can_retry(r, err))
        topo_preq_retry(r);
    else
        topo_preq_fail(r, err, true);
}
