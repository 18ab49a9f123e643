/* examples/embed.c — embedding libredis_cache in a program of your own.
 *
 * Parses a `redis_cache` directive, creates the cache on the default libev loop, looks up
 * example.org A; on a miss stores an upstream response (made by hand below, as a resolver
 * would have received it), waits for the background write, looks up again and prints the
 * hit and the metrics. Uses only <redis_cache.h> and <ev.h>.
 *
 *     cc -std=c11 -Iinclude examples/embed.c build/libredis_cache.a -lev -lssl -lcrypto -lm
 *     ./a.out 6379            # or REDIS_PORT=6379 ./a.out
 */
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_cache.h"

/* example.org A, ID 0x1234, RD, with an EDNS OPT (UDP 1232, no DO) */
static const uint8_t query[] = {
    0x12, 0x34, 0x01, 0x00, 0,    1,   0,   0,   0, 0,   0,   1,                  /* header */
    7,    'e',  'x',  'a',  'm',  'p', 'l', 'e', 3, 'o', 'r', 'g', 0, 0, 1, 0, 1, /* question */
    0,    0,    41,   0x04, 0xd0, 0,   0,   0,   0, 0,   0,                       /* OPT */
};

/* The upstream's answer: QR RD RA, one A record (TTL 300) for the question's name (a
 * compression pointer to offset 12), 93.184.215.14, and the upstream's OPT. */
static const uint8_t response[] = {
    0x12, 0x34, 0x81, 0x80, 0,    1,   0,   1,   0,    0,    0,   1, /* header */
    7,    'e',  'x',  'a',  'm',  'p', 'l', 'e', 3,    'o',  'r', 'g',
    0,    0,    1,    0,    1, /* question */
    0xc0, 0x0c, 0,    1,    0,    1,   0,   0,   0x01, 0x2c, 0,   4,
    93,   184,  215,  14,                                       /* answer */
    0,    0,    41,   0x04, 0xd0, 0,   0,   0,   0,    0,    0, /* OPT */
};

struct result {
    int done, status;
    uint8_t reply[4096];
    size_t len;
};

static void on_lookup(void *priv, int status, const uint8_t *reply, size_t len)
{
    struct result *r = priv;
    r->done = 1;
    r->status = status;
    r->len = len < sizeof r->reply ? len : 0;
    if (reply) memcpy(r->reply, reply, r->len);
}

static void tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)w, (void)revents;
}

/* Runs the loop until *flag is set or about 3 s have passed. */
static void run_until(struct ev_loop *loop, const int *flag, struct rc_cache *c)
{
    ev_timer t;
    ev_timer_init(&t, tick, 0.01, 0.01);
    ev_timer_start(loop, &t);
    for (int i = 0; i < 300 && (flag ? !*flag : rc_cache_pending_writes(c) > 0); i++)
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &t);
}

static int lookup(struct ev_loop *loop, struct rc_cache *c, struct result *r)
{
    memset(r, 0, sizeof *r);
    if (rc_cache_lookup(c, query, sizeof query, false, on_lookup, r) != 0) return -1;
    run_until(loop, &r->done, c);
    return r->done ? r->status : -1;
}

static const char *status_name(int st)
{
    static const char *const names[] = {"hit", "miss", "error", "skip"};
    return st >= 0 && st <= 3 ? names[st] : "no answer";
}

int main(int argc, char **argv)
{
    const char *port = argc > 1 ? argv[1] : getenv("REDIS_PORT");
    char text[256], err[512];
    snprintf(text, sizeof text, "redis_cache {\n    endpoint 127.0.0.1:%s\n}\n",
             port ? port : "6379");
    struct rc_cache_config *cfg;
    if (rc_cache_config_parse(text, strlen(text), "embed", &cfg, err, sizeof err) != 0) {
        fprintf(stderr, "config error: %s\n", err);
        return 1;
    }
    struct ev_loop *loop = ev_default_loop(0);
    struct rc_cache *cache = rc_cache_new(loop, cfg, NULL, 0, err, sizeof err);
    rc_cache_config_free(cfg);
    if (!cache) {
        fprintf(stderr, "error: %s\n", err);
        return 1;
    }

    struct result r;
    int st = lookup(loop, cache, &r);
    printf("first lookup: %s\n", status_name(st));
    if (st == RC_CACHE_MISS) {
        uint8_t resp[sizeof response]; /* the cache rewrites its TTLs in place */
        memcpy(resp, response, sizeof resp);
        long ttl = rc_cache_store(cache, query, sizeof query, resp, sizeof resp);
        printf("stored for %ld s\n", ttl);
        run_until(loop, NULL, cache); /* the write is never awaited by a query; we wait here */
        st = lookup(loop, cache, &r);
        printf("second lookup: %s\n", status_name(st));
    }
    int ok = st == RC_CACHE_HIT && r.len >= 12 + 17 + 16;
    if (ok) {
        const uint8_t *a = r.reply + 12 + 17; /* header, question, then the answer */
        unsigned ttl = (unsigned)a[6] << 24 | a[7] << 16 | a[8] << 8 | a[9];
        printf("answer: example.org. %u IN A %u.%u.%u.%u (ID %02x%02x)\n", ttl, a[12], a[13], a[14],
               a[15], r.reply[0], r.reply[1]);
        static char metrics[16384];
        rc_cache_metrics_text(cache, "embed", metrics, sizeof metrics);
        fputs(metrics, stdout);
    } else {
        fprintf(stderr, "error: no hit (%s)\n", status_name(st));
    }
    rc_cache_free(cache);
    return ok ? 0 : 1;
}
