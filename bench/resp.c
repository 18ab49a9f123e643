/* bench/resp.c — our RESP reader against hiredis 0.14's redisReader on traffic shaped like
 * ours: 1,000,000 replies, 25% "+OK", 40% bulk strings of 100–300 random binary bytes,
 * 20% integers (TTL-like: mostly 0..86400, some -1/-2), 15% 2-element arrays [bulk of
 * 100–300 bytes, integer]. One deterministic stream (fixed PRNG seed), fed in 4 KiB,
 * 16 KiB, 64 KiB and 1 MiB chunks to: our reader; hiredis with its default reply objects
 * (redisReaderCreate, every reply freed with freeReplyObject); hiredis parse-only
 * (redisReaderCreateWithFunctions(NULL)). hiredis runs with its defaults (maxbuf 16 KiB).
 * The runs of the three readers are interleaved (ours, hiredis, hiredis parse-only, ours,
 * ...) so a burst of load from elsewhere hits them alike; each is timed in thread CPU time
 * (CLOCK_THREAD_CPUTIME_ID: time the machine gave to other processes is not counted) and
 * reported as the best of RUNS runs, with the median beside it as a measure of the spread.
 * Every run checks the reply count and a checksum over what was parsed, so no reader can
 * skip work.
 *
 * usage: resp [runs]   (default 5)
 */
#include <hiredis/hiredis.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "resp/resp.h"

#define REPLIES 1000000

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
    /* xorshift64*: deterministic, good enough for traffic shapes */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

struct stream {
    char *p;
    size_t len, cap;
};

static void put(struct stream *s, const void *p, size_t n)
{
    if (s->cap - s->len < n) {
        while (s->cap - s->len < n) s->cap = s->cap ? s->cap * 2 : 1 << 20;
        s->p = realloc(s->p, s->cap);
        if (!s->p) abort();
    }
    memcpy(s->p + s->len, p, n);
    s->len += n;
}

static void put_bulk(struct stream *s)
{
    char hdr[32], data[300];
    size_t n = 100 + rng() % 201;
    for (size_t i = 0; i < n; i++) data[i] = (char)rng();
    put(s, hdr, (size_t)snprintf(hdr, sizeof hdr, "$%zu\r\n", n));
    put(s, data, n);
    put(s, "\r\n", 2);
}

static void put_int(struct stream *s)
{
    char line[32];
    uint64_t x = rng() % 100;
    long long v = x < 3 ? -1 - (long long)(x & 1) : (long long)(rng() % 86401);
    put(s, line, (size_t)snprintf(line, sizeof line, ":%lld\r\n", v));
}

static void build(struct stream *s)
{
    for (int i = 0; i < REPLIES; i++) {
        uint64_t k = rng() % 100;
        if (k < 25) {
            put(s, "+OK\r\n", 5);
        } else if (k < 65) {
            put_bulk(s);
        } else if (k < 85) {
            put_int(s);
        } else {
            put(s, "*2\r\n", 4);
            put_bulk(s);
            put_int(s);
        }
    }
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct result {
    double secs;
    uint64_t replies, check, allocs;
};

/* A checksum that depends on every reply's type and size, so work is not optimised out. */
static uint64_t mix(uint64_t h, uint64_t v)
{
    return (h ^ v) * 0x100000001b3ull;
}

static struct result run_ours(const struct stream *s, size_t chunk)
{
    struct result res = {0};
    double t0 = now();
    struct resp_reader *r = resp_reader_new(NULL);
    if (!r) abort();
    uint64_t allocs0 = resp_reader_stats(r)->allocs;
    const struct resp_value *v;
    for (size_t off = 0; off < s->len; off += chunk) {
        size_t n = s->len - off < chunk ? s->len - off : chunk;
        if (resp_reader_feed(r, s->p + off, n) != 0) abort();
        int rc;
        while ((rc = resp_reader_next(r, &v)) == RESP_GOT_REPLY) {
            res.replies++;
            uint64_t x = v->type == RESP_ARRAY     ? v->elems[0].len + (uint64_t)v->elems[1].integer
                         : v->type == RESP_INTEGER ? (uint64_t)v->integer
                                                   : v->len;
            res.check = mix(res.check, x);
        }
        if (rc != RESP_NEED_MORE) {
            fprintf(stderr, "ours: %s\n", resp_reader_errstr(r));
            exit(1);
        }
    }
    res.allocs = resp_reader_stats(r)->allocs - allocs0;
    resp_reader_free(r);
    res.secs = now() - t0;
    return res;
}

static struct result run_hiredis(const struct stream *s, size_t chunk, int parse_only)
{
    struct result res = {0};
    double t0 = now();
    redisReader *h = parse_only ? redisReaderCreateWithFunctions(NULL) : redisReaderCreate();
    if (!h) abort();
    for (size_t off = 0; off < s->len; off += chunk) {
        size_t n = s->len - off < chunk ? s->len - off : chunk;
        if (redisReaderFeed(h, s->p + off, n) != REDIS_OK) abort();
        for (;;) {
            void *reply = NULL;
            if (redisReaderGetReply(h, &reply) != REDIS_OK) {
                fprintf(stderr, "hiredis: %s\n", h->errstr);
                exit(1);
            }
            if (!reply) break;
            res.replies++;
            if (parse_only) {
                res.check = mix(res.check, (uint64_t)(uintptr_t)reply); /* the type code */
            } else {
                redisReply *rr = reply;
                uint64_t x = rr->type == REDIS_REPLY_ARRAY
                                 ? rr->element[0]->len + (uint64_t)rr->element[1]->integer
                             : rr->type == REDIS_REPLY_INTEGER ? (uint64_t)rr->integer
                                                               : rr->len;
                res.check = mix(res.check, x);
                freeReplyObject(rr);
            }
        }
    }
    redisReaderFree(h);
    res.secs = now() - t0;
    return res;
}

static void check_count(int which, const struct result *r)
{
    if (r->replies != REPLIES) {
        fprintf(stderr, "reader %d returned %llu replies\n", which, (unsigned long long)r->replies);
        exit(1);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#define MAX_RUNS 100

/* Runs the three readers runs times, interleaved: res[w] is reader w's best run, med[w]
 * its median time. */
static void measure(const struct stream *s, size_t chunk, int runs, struct result res[3],
                    double med[3])
{
    static double t[3][MAX_RUNS];
    for (int i = 0; i < runs; i++) {
        for (int w = 0; w < 3; w++) {
            struct result r = w == 0 ? run_ours(s, chunk) : run_hiredis(s, chunk, w == 2);
            check_count(w, &r);
            t[w][i] = r.secs;
            if (i == 0 || r.secs < res[w].secs) res[w] = r;
        }
    }
    for (int w = 0; w < 3; w++) {
        qsort(t[w], (size_t)runs, sizeof t[w][0], cmp_double);
        med[w] = runs % 2 ? t[w][runs / 2] : (t[w][runs / 2 - 1] + t[w][runs / 2]) / 2;
    }
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 5;
    if (runs < 1) runs = 1;
    if (runs > MAX_RUNS) runs = MAX_RUNS;
    struct stream s = {0};
    build(&s);
    printf("bench/resp: %d replies, %.1f MB stream, best of %d interleaved runs (thread CPU "
           "time)\n",
           REPLIES, (double)s.len / 1e6, runs);
    printf("each side copies each chunk once into its own buffer: ours with resp_reader_feed, "
           "hiredis with redisReaderFeed\n");
    printf("%-8s %-18s %12s %12s %9s %14s\n", "chunk", "reader", "replies/s", "median", "MB/s",
           "allocs/reply");

    static const size_t chunks[] = {4096, 16384, 65536, 1 << 20};
    static const char *names[] = {"ours", "hiredis default", "hiredis fn=NULL"};
    double ours_rate[4] = {0};
    int ok = 1;
    for (int c = 0; c < 4; c++) {
        struct result res[3];
        double med[3];
        measure(&s, chunks[c], runs, res, med);
        /* our tree must describe what hiredis' objects describe */
        if (res[0].check != res[1].check) {
            fprintf(stderr, "checksum mismatch between ours and hiredis\n");
            return 1;
        }
        char label[32];
        snprintf(label, sizeof label, "%zuK", chunks[c] / 1024);
        for (int w = 0; w < 3; w++) {
            double rate = REPLIES / res[w].secs;
            printf("%-8s %-18s %12.0f %12.0f %9.1f", label, names[w], rate, REPLIES / med[w],
                   (double)s.len / 1e6 / res[w].secs);
            if (w == 0)
                printf(" %14.6f\n", (double)res[0].allocs / REPLIES);
            else
                printf("   ours/this %.2fx (medians %.2fx)\n", res[w].secs / res[0].secs,
                       med[w] / med[0]);
        }
        ours_rate[c] = REPLIES / res[0].secs;
        if (c == 1 && res[2].secs / res[0].secs < 2.0) ok = 0;
        if (res[0].allocs > REPLIES) ok = 0;
    }
    double loss = 1.0 - ours_rate[3] / ours_rate[0];
    printf("ours 4K -> 1M chunks: %+.1f%% replies/s (target: no more than 10%% loss)\n",
           -loss * 100);
    if (loss > 0.10) ok = 0;
    printf("targets (>= 2x hiredis fn=NULL at 16K, <= 10%% loss, <= 1 alloc/reply): %s\n",
           ok ? "met" : "NOT met");
    free(s.p);
    return 0;
}
