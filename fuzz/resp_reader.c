/* fuzz/resp_reader.c — the RESP reader under arbitrary bytes and arbitrary split points.
 *
 * The first input byte picks the configuration (limits, RESP2-only) and seeds the split
 * points; the rest is the stream. The stream is parsed once fed whole and once fed in
 * pseudo-random chunks (mixing resp_reader_feed with resp_reader_space/commit). Both runs
 * must produce the same transcript: every reply tree, the push/reply status, and the final
 * state (need more, or the same error rule at the same offset). Sanitizers catch reads
 * past the buffer, leaks and use of a reply after the buffer moved.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "resp/resp.h"

struct out {
    uint8_t *p;
    size_t len, cap;
};

static void put(struct out *o, const void *p, size_t n)
{
    if (o->cap - o->len < n) {
        size_t cap = o->cap ? o->cap * 2 : 4096;
        while (cap - o->len < n) cap *= 2;
        o->p = realloc(o->p, cap);
        if (!o->p) abort();
        o->cap = cap;
    }
    memcpy(o->p + o->len, p, n);
    o->len += n;
}

/* Serialises a tree with an explicit stack (no recursion on input depth). */
static void put_tree(struct out *o, const struct resp_value *root, uint64_t stream_len)
{
    size_t cap = 64, n = 0;
    const struct resp_value **stack = malloc(cap * sizeof *stack);
    if (!stack) abort();
    stack[n++] = root;
    while (n > 0) {
        const struct resp_value *v = stack[--n];
        uint8_t hdr[2] = {v->type, v->attr != NULL};
        put(o, hdr, 2);
        put(o, &v->len, sizeof v->len);
        switch (v->type) {
        case RESP_ARRAY:
        case RESP_MAP:
        case RESP_SET:
        case RESP_PUSH:
            if (v->len > stream_len) abort(); /* every entry takes at least 3 bytes */
            break;
        case RESP_INTEGER:
        case RESP_BOOL: put(o, &v->integer, sizeof v->integer); /* fallthrough */
        default:
            if (v->len > stream_len) abort();
            if (v->type == RESP_VERBATIM) put(o, v->format, 4);
            put(o, v->str, v->len); /* ASan checks the slice is inside the buffer */
            break;
        }
        size_t more = (v->attr ? 1 : 0) + ((v->type == RESP_ARRAY || v->type == RESP_MAP ||
                                            v->type == RESP_SET || v->type == RESP_PUSH)
                                               ? v->len
                                               : 0);
        if (cap - n < more) {
            while (cap - n < more) cap *= 2;
            stack = realloc(stack, cap * sizeof *stack);
            if (!stack) abort();
        }
        if (v->type == RESP_ARRAY || v->type == RESP_MAP || v->type == RESP_SET ||
            v->type == RESP_PUSH)
            for (size_t i = v->len; i > 0; i--) stack[n++] = &v->elems[i - 1];
        if (v->attr) stack[n++] = v->attr; /* visited first */
    }
    free(stack);
}

/* Pulls every available reply into o; returns the last status (<= 0). */
static int drain(struct resp_reader *r, struct out *o, uint64_t stream_len)
{
    const struct resp_value *v;
    int rc;
    while ((rc = resp_reader_next(r, &v)) > 0) {
        uint8_t s = (uint8_t)rc;
        put(o, &s, 1);
        put_tree(o, v, stream_len);
    }
    if (v != NULL) abort();
    return rc;
}

static void put_end(struct out *o, struct resp_reader *r, int rc, size_t size)
{
    int8_t s = (int8_t)rc;
    put(o, &s, 1);
    if (rc == RESP_ERR_PROTOCOL) {
        uint32_t rule = resp_reader_error(r);
        uint64_t off = resp_reader_error_offset(r);
        if (rule == RESP_RULE_NONE || off >= size) abort(); /* the offending byte was fed */
        if (strstr(resp_reader_errstr(r), "at byte") == NULL) abort();
        put(o, &rule, sizeof rule);
        put(o, &off, sizeof off);
    }
}

static uint32_t next_rand(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t cfg = data[0];
    data++;
    size--;

    struct resp_limits lim;
    resp_limits_default(&lim);
    if (cfg & 1) lim.resp2_only = 1;
    if (cfg & 2) { /* small limits, so the fuzzer reaches them */
        lim.max_bulk = 64;
        lim.max_elements = 8;
        lim.max_depth = 4;
    }

    struct out whole = {0}, split = {0};
    struct resp_reader *a = resp_reader_new(&lim), *b = resp_reader_new(&lim);
    if (!a || !b) abort();

    if (resp_reader_feed(a, data, size) != 0) abort();
    put_end(&whole, a, drain(a, &whole, size), size);

    uint32_t seed = cfg * 2654435761u + (uint32_t)size;
    size_t off = 0;
    int rc = RESP_NEED_MORE;
    while (off < size && rc == RESP_NEED_MORE) {
        size_t max = (next_rand(&seed) & 3) == 0 ? 1 : 1 + next_rand(&seed) % 300;
        size_t n = size - off < max ? size - off : max;
        if (next_rand(&seed) & 1) {
            if (resp_reader_feed(b, data + off, n) != 0) abort();
        } else {
            size_t avail;
            char *w = resp_reader_space(b, n, &avail);
            if (!w || avail < n) abort();
            memcpy(w, data + off, n);
            resp_reader_commit(b, n);
        }
        off += n;
        rc = drain(b, &split, size);
    }
    if (size == 0) rc = drain(b, &split, size);
    put_end(&split, b, rc, size);

    if (whole.len != split.len || memcmp(whole.p, split.p, whole.len) != 0) abort();

    free(whole.p);
    free(split.p);
    resp_reader_free(a);
    resp_reader_free(b);
    return 0;
}
