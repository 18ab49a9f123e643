/* fuzz/resp_diff.c — differential test of our RESP2 reading against Debian's hiredis 0.14.1
 * (test-only dependency, never linked into the product).
 *
 * Our reader runs in RESP2-only mode with hiredis' nesting rule (8 levels of arrays; a
 * ninth array type byte is an error even for "*0" or "*-1": max_depth 8 says the same).
 * Input: first byte seeds our split points, the rest is the stream.
 *
 * Our reader either accepts the whole stream (replies, then "need more") or stops with an
 * error at offset X. Let L be X, or the whole length. Then:
 *   1. hiredis fed the first L bytes must not report an error, and must return exactly our
 *      replies, tree for tree (type, integer, string bytes, elements): both agree on what
 *      is valid and on what it means.
 *   2. If we rejected the stream, hiredis fed the rest must not return a reply that runs
 *      through the offending byte: it errors too (or still waits, when its rule needs the
 *      end of the line first). Exceptions are the rules where hiredis 0.14 is knowingly
 *      more lenient: CRLF after a bulk payload or bare CR/LF inside a line (it skips or
 *      keeps them), and our length and count limits (it has none below 2^31).
 * Feeding hiredis only the bytes we accepted also keeps it from allocating for counts we
 * refuse. hiredis runs with its defaults (redisReaderCreate, maxbuf 16 KiB); nothing is
 * tuned.
 */
#include <hiredis/hiredis.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resp/resp.h"

#define HIREDIS_DEPTH 8

static int hiredis_type(int ours)
{
    switch (ours) {
    case RESP_STRING: return REDIS_REPLY_STATUS;
    case RESP_ERROR: return REDIS_REPLY_ERROR;
    case RESP_INTEGER: return REDIS_REPLY_INTEGER;
    case RESP_BULK: return REDIS_REPLY_STRING;
    case RESP_NULL: return REDIS_REPLY_NIL;
    case RESP_ARRAY: return REDIS_REPLY_ARRAY;
    default: return -1; /* RESP3 type: impossible in RESP2-only mode */
    }
}

/* Recursion is bounded by HIREDIS_DEPTH: both readers refuse deeper input. */
static void compare(const struct resp_value *a, const redisReply *h, int depth)
{
    if (depth > HIREDIS_DEPTH + 1) abort();
    if (a->attr) abort();
    if (hiredis_type(a->type) != h->type) {
        fprintf(stderr, "type differs: ours %s, hiredis %d\n", resp_type_name(a->type), h->type);
        abort();
    }
    switch (h->type) {
    case REDIS_REPLY_INTEGER:
        if (a->integer != h->integer) abort();
        break;
    case REDIS_REPLY_NIL: break;
    case REDIS_REPLY_ARRAY:
        if (a->len != h->elements) abort();
        for (size_t i = 0; i < a->len; i++) compare(&a->elems[i], h->element[i], depth + 1);
        break;
    default:
        if (a->len != h->len || memcmp(a->str, h->str, a->len) != 0) {
            fprintf(stderr, "string differs\n");
            abort();
        }
    }
}

static uint32_t next_rand(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

static int lenient_in_hiredis(enum resp_rule rule)
{
    return rule == RESP_RULE_CRLF || rule == RESP_RULE_BULK_LIMIT || rule == RESP_RULE_COUNT_LIMIT;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Feeds hiredis data[*hfed .. upto) and takes one reply: NULL if it has none yet. Aborts
 * on a hiredis error unless errors are allowed, in which case *herr is set. */
static redisReply *hiredis_take(redisReader *h, const uint8_t *data, size_t *hfed, size_t upto,
                                int *herr)
{
    if (upto > *hfed && redisReaderFeed(h, (const char *)data + *hfed, upto - *hfed) != REDIS_OK)
        abort();
    *hfed = upto;
    void *reply = NULL;
    if (redisReaderGetReply(h, &reply) != REDIS_OK) {
        if (!herr) {
            fprintf(stderr, "hiredis rejects bytes we accept: %s\n", h->errstr);
            abort();
        }
        *herr = 1;
        return NULL;
    }
    return reply;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint32_t seed = data[0] * 2654435761u;
    data++;
    size--;

    struct resp_limits lim;
    resp_limits_default(&lim);
    lim.resp2_only = 1;
    lim.max_depth = HIREDIS_DEPTH;
    lim.max_elements = 1 << 16;
    struct resp_reader *r = resp_reader_new(&lim);
    redisReader *h = redisReaderCreate();
    if (!r || !h) abort();

    /* Ours is fed in random chunks. Each reply it returns ends at stream offset
     * fed - buffered; hiredis is fed exactly that far and must return the same tree. */
    size_t fed = 0, hfed = 0;
    int rc = RESP_NEED_MORE;
    while (fed < size && rc == RESP_NEED_MORE) {
        size_t n = 1 + next_rand(&seed) % 512;
        if (n > size - fed) n = size - fed;
        if (resp_reader_feed(r, data + fed, n) != 0) abort();
        fed += n;
        const struct resp_value *v;
        while ((rc = resp_reader_next(r, &v)) > 0) {
            if (rc != RESP_GOT_REPLY) abort(); /* no push frames in RESP2 */
            redisReply *hr = hiredis_take(h, data, &hfed, fed - resp_reader_buffered(r), NULL);
            if (!hr) {
                fprintf(stderr, "hiredis has no reply where we have one\n");
                abort();
            }
            compare(v, hr, 1);
            freeReplyObject(hr);
        }
    }

    int herr = 0;
    if (rc == RESP_NEED_MORE) {
        /* we accept everything: hiredis must too, with no reply we did not see */
        if (hiredis_take(h, data, &hfed, size, NULL) != NULL) abort();
    } else if (rc == RESP_ERR_PROTOCOL) {
        enum resp_rule rule = resp_reader_error(r);
        size_t at = (size_t)resp_reader_error_offset(r);
        if (at < hfed || at >= size) abort();
        /* the bytes before the offending one are a valid prefix for hiredis too */
        if (hiredis_take(h, data, &hfed, at, NULL) != NULL) abort();
        if (!lenient_in_hiredis(rule)) {
            redisReply *hr = hiredis_take(h, data, &hfed, size, &herr);
            if (hr) {
                fprintf(stderr, "hiredis accepts what we reject: %s\n", resp_reader_errstr(r));
                abort();
            }
        }
    } else {
        abort(); /* out of memory */
    }

    resp_reader_free(r);
    redisReaderFree(h);
    return 0;
}
