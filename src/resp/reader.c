/* src/resp/reader.c — incremental, zero-copy RESP2/RESP3 reader (see resp.h for the design).
 *
 * Layout of the read buffer:  [consumed | rstart .. pos: parsed, part of the pending reply
 * | pos .. end: not parsed yet | end .. cap: free]. Bytes before rstart belong to nobody;
 * bytes from rstart on are referenced by the reply being built (or the one returned last).
 */
#include "resp/resp.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INITIAL_BUF    (16 * 1024)
#define INITIAL_VSTACK 64
#define INITIAL_ARENA  256
/* A coalesced arena bigger than this is given back instead of kept for the next reply. */
#define ARENA_KEEP_MAX (64 * 1024)
/* A buffer this large with little in it is shrunk when it next moves. */
#define SHRINK_ABOVE (4 * 1024 * 1024)
/* "-9223372036854775808": the longest canonical int64. */
#define MAX_INT_LINE 20
/* Redis writes doubles with %.17g: at most 24 bytes; leave room for other servers. */
#define MAX_DOUBLE_LINE 64

enum { ST_TYPE, ST_LINE, ST_BULK };

struct resp_frame {
    uint8_t type;                  /* '*', '%', '~', '>' or '|' */
    size_t remaining;              /* entries still expected */
    size_t base;                   /* value stack index of the first child */
    const struct resp_value *attr; /* attribute sent before this aggregate */
};

struct arena_block {
    struct arena_block *next;
    size_t cap, used;
    struct resp_value v[];
};

struct resp_reader {
    char *buf;
    size_t cap, rstart, pos, end;
    uint64_t base; /* stream offset of buf[0] */
    int delivered; /* the caller holds the reply at rstart .. pos */
    /* 1 when resp_reader_next may go straight to the fast path: no error, nothing in
     * progress (ST_TYPE, depth 0, no pending attribute) and a single arena block, so
     * releasing the last reply is two stores. Cleared by fail(), set again by next_slow. */
    int fast;

    /* element in progress */
    uint8_t state, etype;
    size_t scan; /* ST_LINE: resume the CR search here */
    size_t blen; /* ST_BULK: payload length, payload at pos */
    const struct resp_value *cur_attr;
    const struct resp_value *pending_attr;

    struct resp_frame *frames;
    unsigned depth;
    struct resp_value *vstack;
    size_t vlen, vcap;
    struct arena_block *arena; /* newest block first */

    struct resp_value top;
    struct resp_limits lim;
    uint8_t cls[256];  /* CLS_* bits per type byte */
    locale_t c_locale; /* doubles are parsed in the C locale, whatever the host set */

    enum resp_rule rule;
    uint64_t err_off;
    char errstr[160];
    struct resp_reader_stats stats;
};

/* ---- small helpers ---------------------------------------------------------------- */

const char *resp_type_name(int type)
{
    switch (type) {
    case RESP_STRING: return "simple string";
    case RESP_ERROR: return "error";
    case RESP_INTEGER: return "integer";
    case RESP_BULK: return "bulk string";
    case RESP_ARRAY: return "array";
    case RESP_NULL: return "null";
    case RESP_BOOL: return "boolean";
    case RESP_DOUBLE: return "double";
    case RESP_BIGNUM: return "big number";
    case RESP_BULK_ERROR: return "bulk error";
    case RESP_VERBATIM: return "verbatim string";
    case RESP_MAP: return "map";
    case RESP_SET: return "set";
    case RESP_PUSH: return "push";
    default: return "unknown";
    }
}

static const char *rule_name(enum resp_rule rule)
{
    switch (rule) {
    case RESP_RULE_TYPE: return "unknown type byte";
    case RESP_RULE_STREAMED: return "streamed types are not supported";
    case RESP_RULE_INTEGER: return "bad integer";
    case RESP_RULE_RANGE: return "integer out of range";
    case RESP_RULE_LENGTH: return "bad length";
    case RESP_RULE_BULK_LIMIT: return "bulk length limit";
    case RESP_RULE_COUNT_LIMIT: return "element count limit";
    case RESP_RULE_DEPTH: return "nesting depth limit";
    case RESP_RULE_CRLF: return "CRLF expected";
    case RESP_RULE_DOUBLE: return "bad double";
    case RESP_RULE_BOOL: return "bad boolean";
    case RESP_RULE_NULL: return "bad null";
    case RESP_RULE_BIGNUM: return "bad big number";
    case RESP_RULE_VERBATIM: return "bad verbatim string";
    case RESP_RULE_ATTRIBUTE: return "attribute after attribute";
    case RESP_RULE_PUSH: return "push inside an aggregate";
    case RESP_RULE_NOMEM: return "out of memory";
    default: return "no error";
    }
}

static int fail(struct resp_reader *r, enum resp_rule rule, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Sets the sticky error; at is a buffer index, reported as a stream offset. */
static int fail(struct resp_reader *r, enum resp_rule rule, size_t at, const char *fmt, ...)
{
    r->rule = rule;
    r->fast = 0;
    r->err_off = r->base + at;
    int n = snprintf(r->errstr, sizeof r->errstr, "RESP protocol error: %s at byte %llu",
                     rule_name(rule), (unsigned long long)r->err_off);
    if (fmt && n > 0 && (size_t)n < sizeof r->errstr) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = sizeof r->errstr - (size_t)n;
        int m = snprintf(r->errstr + n, room, ": ");
        if (m > 0 && (size_t)m < room) vsnprintf(r->errstr + n + m, room - (size_t)m, fmt, ap);
        va_end(ap);
    }
    return rule == RESP_RULE_NOMEM ? RESP_ERR_NOMEM : RESP_ERR_PROTOCOL;
}

static int fail_nomem(struct resp_reader *r)
{
    return fail(r, RESP_RULE_NOMEM, r->pos, NULL);
}

static inline int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

enum { CLS_ALLOWED = 1, CLS_AGGREGATE = 2 };

static inline int is_aggregate_type(uint8_t t)
{
    return t == RESP_ARRAY || t == RESP_MAP || t == RESP_SET || t == RESP_PUSH;
}

/* Canonical decimal int64 in p[0..n): "0" | "-"? [1-9][0-9]*. Returns 0, or the rule
 * broken with *bad the index of the first offending byte. */
static enum resp_rule parse_int(const char *p, size_t n, long long *out, size_t *bad)
{
    size_t i = 0;
    int neg = 0;
    if (n > 0 && p[0] == '-') {
        neg = 1;
        i = 1;
    }
    if (i == n) {
        *bad = i;
        return RESP_RULE_INTEGER;
    }
    if (p[i] == '0' && (neg || n > 1)) { /* "-0" and leading zeros */
        *bad = i;
        return RESP_RULE_INTEGER;
    }
    uint64_t v = 0;
    const uint64_t lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < n; i++) {
        if (!is_digit(p[i])) {
            *bad = i;
            return RESP_RULE_INTEGER;
        }
        unsigned d = (unsigned)(p[i] - '0');
        if (v > (lim - d) / 10) {
            *bad = i;
            return RESP_RULE_RANGE;
        }
        v = v * 10 + d;
    }
    /* two's complement: -(2^63) is representable; convert without signed overflow */
    *out = neg ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(long long)v) : (long long)v;
    return RESP_RULE_NONE;
}

/* ---- arena and value stack ------------------------------------------------------- */

static void *counted_malloc(struct resp_reader *r, size_t n)
{
    r->stats.allocs++;
    return malloc(n);
}

static struct arena_block *block_new(struct resp_reader *r, size_t cap)
{
    if (cap > (SIZE_MAX - sizeof(struct arena_block)) / sizeof(struct resp_value)) return NULL;
    struct arena_block *b =
        counted_malloc(r, sizeof(struct arena_block) + cap * sizeof(struct resp_value));
    if (!b) return NULL;
    b->next = NULL;
    b->cap = cap;
    b->used = 0;
    return b;
}

static struct resp_value *arena_alloc(struct resp_reader *r, size_t n)
{
    struct arena_block *b = r->arena;
    if (b->cap - b->used < n) {
        size_t cap = b->cap * 2;
        if (cap < n) cap = n;
        struct arena_block *nb = block_new(r, cap);
        if (!nb) return NULL;
        nb->next = b;
        r->arena = b = nb;
    }
    struct resp_value *v = b->v + b->used;
    b->used += n;
    return v;
}

/* Forget the last reply's nodes; keep one block big enough for a reply like it. */
static void arena_reset(struct resp_reader *r)
{
    struct arena_block *b = r->arena;
    if (!b->next) {
        b->used = 0;
        return;
    }
    size_t total = 0;
    for (struct arena_block *x = b; x; x = x->next) total += x->cap;
    if (total > ARENA_KEEP_MAX) total = INITIAL_ARENA;
    struct arena_block *nb = block_new(r, total);
    if (!nb) { /* keep the newest (largest) block */
        nb = b;
        b = b->next;
        nb->next = NULL;
    }
    while (b) {
        struct arena_block *next = b->next;
        free(b);
        b = next;
    }
    nb->used = 0;
    r->arena = nb;
}

/* ---- creation -------------------------------------------------------------------- */

void resp_limits_default(struct resp_limits *l)
{
    l->max_bulk = RESP_DEFAULT_MAX_BULK;
    l->max_elements = RESP_DEFAULT_MAX_ELEMENTS;
    l->max_depth = RESP_DEFAULT_MAX_DEPTH;
    l->resp2_only = 0;
}

struct resp_reader *resp_reader_new(const struct resp_limits *limits)
{
    struct resp_reader *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->stats.allocs = 1;
    r->fast = 1;
    if (limits)
        r->lim = *limits;
    else
        resp_limits_default(&r->lim);
    if (r->lim.max_depth > RESP_MAX_DEPTH) r->lim.max_depth = RESP_MAX_DEPTH;
    if (r->lim.max_elements > SIZE_MAX / 4) r->lim.max_elements = SIZE_MAX / 4;
    if (r->lim.max_bulk > SIZE_MAX / 4) r->lim.max_bulk = SIZE_MAX / 4;

    const char *types = r->lim.resp2_only ? "+-:$*" : "+-:$*_#,(!=%~>|";
    for (const char *t = types; *t; t++) r->cls[(uint8_t)*t] = CLS_ALLOWED;
    for (const char *t = "*%~>|"; *t; t++) r->cls[(uint8_t)*t] |= CLS_AGGREGATE;

    r->buf = counted_malloc(r, INITIAL_BUF);
    r->cap = INITIAL_BUF;
    r->frames = counted_malloc(r, (r->lim.max_depth + 1) * sizeof *r->frames);
    r->vstack = counted_malloc(r, INITIAL_VSTACK * sizeof *r->vstack);
    r->vcap = INITIAL_VSTACK;
    r->arena = block_new(r, INITIAL_ARENA);
    r->c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    if (!r->buf || !r->frames || !r->vstack || !r->arena || r->c_locale == (locale_t)0) {
        resp_reader_free(r);
        return NULL;
    }
    return r;
}

void resp_reader_free(struct resp_reader *r)
{
    if (!r) return;
    free(r->buf);
    free(r->frames);
    free(r->vstack);
    for (struct arena_block *b = r->arena; b;) {
        struct arena_block *next = b->next;
        free(b);
        b = next;
    }
    if (r->c_locale != (locale_t)0) freelocale(r->c_locale);
    free(r);
}

/* ---- buffer management ----------------------------------------------------------- */

/* The caller is done with the reply returned last: its bytes and nodes can go. */
static inline void release(struct resp_reader *r)
{
    r->delivered = 0;
    r->rstart = r->pos;
    struct arena_block *b = r->arena;
    if (__builtin_expect(b->next != NULL, 0))
        arena_reset(r);
    else
        b->used = 0;
}

static void shift_left(struct resp_reader *r, size_t by)
{
    r->base += by;
    r->rstart -= by;
    r->pos -= by;
    r->end -= by;
    if (r->state == ST_LINE) r->scan -= by;
}

/* Makes room for need more bytes at end: at most one move of the live bytes. */
static int reserve(struct resp_reader *r, size_t need)
{
    if (r->delivered) release(r);
    if (r->rstart == r->end && r->rstart > 0) shift_left(r, r->rstart); /* empty: free */
    size_t live = r->end - r->rstart;
    size_t room = r->cap - r->end;
    /* a buffer grown for one huge reply is given back once it is nearly empty */
    int shrink = r->cap > SHRINK_ABOVE && live + need <= r->cap / 16;
    if (room >= need && !shrink) return 0;
    if (need > SIZE_MAX / 4 - live) return fail_nomem(r);

    /* Compaction pays when it frees enough room and moves at most half the buffer. */
    if (!shrink && live + need <= r->cap && live <= r->cap / 2) {
        memmove(r->buf, r->buf + r->rstart, live);
        r->stats.compactions++;
        r->stats.bytes_moved += live;
        shift_left(r, r->rstart);
        return 0;
    }
    /* Otherwise one copy into a buffer twice the live size: the next moves are far off. */
    size_t ncap = INITIAL_BUF;
    while (ncap < 2 * (live + need)) ncap *= 2;
    char *nb = counted_malloc(r, ncap);
    if (!nb) return fail_nomem(r);
    memcpy(nb, r->buf + r->rstart, live);
    free(r->buf);
    r->buf = nb;
    r->cap = ncap;
    r->stats.grows++;
    r->stats.bytes_moved += live;
    shift_left(r, r->rstart);
    return 0;
}

int resp_reader_feed(struct resp_reader *r, const void *data, size_t len)
{
    if (r->rule == RESP_RULE_NOMEM) return RESP_ERR_NOMEM;
    if (len == 0) return 0;
    if (reserve(r, len) != 0) return RESP_ERR_NOMEM;
    memcpy(r->buf + r->end, data, len);
    r->end += len;
    r->stats.bytes_in += len;
    return 0;
}

void *resp_reader_space(struct resp_reader *r, size_t min, size_t *avail)
{
    *avail = 0;
    if (r->rule != RESP_RULE_NONE) return NULL;
    if (min == 0) min = 4096;
    if (reserve(r, min) != 0) return NULL;
    *avail = r->cap - r->end;
    return r->buf + r->end;
}

void resp_reader_commit(struct resp_reader *r, size_t n)
{
    if (n > r->cap - r->end) n = r->cap - r->end; /* never past the buffer */
    r->end += n;
    r->stats.bytes_in += n;
}

/* ---- parsing --------------------------------------------------------------------- */

enum { STEP_MORE, STEP_CONT, STEP_DONE };

static inline void node_scalar(struct resp_value *v, uint8_t type, uint64_t pos, size_t len,
                               const struct resp_value *attr)
{
    v->type = type;
    v->format[0] = 0;
    v->len = len;
    v->str_pos_ = pos;
    v->integer = 0;
    v->attr = attr;
}

/* Where the next complete value is built: r->top at top level, else the next value stack
 * slot. Building in place saves copying every node once more. NULL if out of memory. */
static inline struct resp_value *value_slot(struct resp_reader *r)
{
    if (r->depth == 0) return &r->top;
    if (r->vlen == r->vcap) {
        size_t cap = r->vcap * 2;
        r->stats.allocs++;
        struct resp_value *nv = realloc(r->vstack, cap * sizeof *nv);
        if (!nv) return NULL;
        r->vstack = nv;
        r->vcap = cap;
    }
    return &r->vstack[r->vlen];
}

/* The value in v (built in value_slot) is complete: count it in the open aggregate,
 * closing aggregates that are now full. Returns STEP_DONE when a top-level reply is
 * complete (in r->top), STEP_CONT, or an error status. */
static int commit_value(struct resp_reader *r, struct resp_value *v, int is_attr)
{
    for (;;) {
        if (is_attr) {
            struct resp_value *a = arena_alloc(r, 1);
            if (!a) return fail_nomem(r);
            *a = *v;
            r->pending_attr = a;
            return STEP_CONT;
        }
        if (r->depth == 0) return STEP_DONE;
        struct resp_frame *f = &r->frames[r->depth - 1];
        r->vlen++;
        if (--f->remaining) return STEP_CONT;

        size_t n = r->vlen - f->base;
        struct resp_value *elems = arena_alloc(r, n);
        if (!elems) return fail_nomem(r);
        memcpy(elems, r->vstack + f->base, n * sizeof *elems);
        r->vlen = f->base;
        is_attr = f->type == '|';
        uint8_t type = f->type == '*'   ? RESP_ARRAY
                       : f->type == '~' ? RESP_SET
                       : f->type == '>' ? RESP_PUSH
                                        : RESP_MAP;
        const struct resp_value *attr = f->attr;
        r->depth--;
        v = r->depth == 0 ? &r->top : &r->vstack[r->vlen]; /* a slot that exists */
        v->type = type;
        v->format[0] = 0;
        v->len = n;
        v->str = NULL;
        v->elems = elems;
        v->attr = attr;
    }
}

/* Turns the stream offsets of a complete reply into pointers. Iterative: every node of the
 * reply is either r->top or in the arena. */
static void fixup(struct resp_reader *r)
{
    if (!is_aggregate_type(r->top.type)) r->top.str = r->buf + (r->top.str_pos_ - r->base);
    if (r->arena->used == 0 && !r->arena->next) return;
    for (struct arena_block *blk = r->arena; blk; blk = blk->next) {
        for (size_t i = 0; i < blk->used; i++) {
            struct resp_value *v = &blk->v[i];
            if (!is_aggregate_type(v->type)) v->str = r->buf + (v->str_pos_ - r->base);
        }
    }
}

/* Reads the decimal after a length-prefixed type byte at pos. Returns STEP_CONT with *val
 * and *next set, STEP_MORE, or an error. */
static int read_length_line(struct resp_reader *r, long long *val, size_t *next)
{
    const char *p = r->buf + r->pos + 1;
    size_t avail = r->end - r->pos - 1;
    /* Common case in one pass: 1 to 18 digits (cannot overflow), no leading zero, CRLF. */
    size_t k = 0;
    uint64_t u = 0;
    while (k < avail && k < 18 && is_digit(p[k])) u = u * 10 + (unsigned)(p[k++] - '0');
    if (k > 0 && k + 1 < avail && p[k] == '\r' && p[k + 1] == '\n' && (p[0] != '0' || k == 1)) {
        *val = (long long)u;
        *next = r->pos + 1 + k + 2;
        return STEP_CONT;
    }
    /* Everything else (signs, long numbers, partial lines, errors) the careful way. */
    if (avail > 0 && p[0] == '?' && r->etype != ':')
        return fail(r, RESP_RULE_STREAMED, r->pos + 1, "'%c?'", r->etype);
    size_t i = 0;
    if (avail > 0 && p[0] == '-') i = 1;
    while (i < avail && is_digit(p[i])) i++;
    if (i > MAX_INT_LINE) return fail(r, RESP_RULE_RANGE, r->pos + 1 + MAX_INT_LINE, NULL);
    if (i == avail) return STEP_MORE;
    if (p[i] != '\r')
        return fail(r, p[i] == '\n' ? RESP_RULE_CRLF : RESP_RULE_INTEGER, r->pos + 1 + i,
                    "after '%c'", r->etype);
    if (i + 1 == avail) return STEP_MORE;
    if (p[i + 1] != '\n') return fail(r, RESP_RULE_CRLF, r->pos + 2 + i, NULL);
    size_t bad = 0;
    enum resp_rule rule = parse_int(p, i, val, &bad);
    if (rule != RESP_RULE_NONE) return fail(r, rule, r->pos + 1 + bad, "after '%c'", r->etype);
    *next = r->pos + 1 + i + 2;
    return STEP_CONT;
}

/* Finds the end of a line whose payload may hold up to maxlen bytes. STEP_CONT with
 * *lend the index of its CR, STEP_MORE, or an error. Bare CR or LF inside are errors. */
static int read_line(struct resp_reader *r, size_t maxlen, enum resp_rule too_long, size_t *lend)
{
    size_t start = r->pos + 1;
    const char *cr = memchr(r->buf + r->scan, '\r', r->end - r->scan);
    size_t stop = cr ? (size_t)(cr - r->buf) : r->end;
    /* Report the first offending byte in stream order, so the error does not depend on
     * how the bytes were split. */
    const char *lf = memchr(r->buf + r->scan, '\n', stop - r->scan);
    if (lf && (size_t)(lf - r->buf) - start <= maxlen)
        return fail(r, RESP_RULE_CRLF, (size_t)(lf - r->buf), "bare LF in a line");
    if (stop - start > maxlen)
        return fail(r, too_long, start + maxlen, "line longer than %zu bytes", maxlen);
    if (!cr || stop + 1 == r->end) {
        r->scan = stop;
        return STEP_MORE;
    }
    if (r->buf[stop + 1] != '\n') return fail(r, RESP_RULE_CRLF, stop + 1, "bare CR in a line");
    *lend = stop;
    return STEP_CONT;
}

/* Strict RESP3 double grammar, then strtod in the C locale. */
static int parse_double(struct resp_reader *r, const char *p, size_t n, double *out)
{
    if ((n == 3 && memcmp(p, "inf", 3) == 0) || (n == 4 && memcmp(p, "+inf", 4) == 0)) {
        *out = INFINITY;
        return 0;
    }
    if (n == 4 && memcmp(p, "-inf", 4) == 0) {
        *out = -INFINITY;
        return 0;
    }
    if (n == 3 && memcmp(p, "nan", 3) == 0) {
        *out = NAN;
        return 0;
    }
    size_t i = 0, digits = 0;
    if (i < n && (p[i] == '-' || p[i] == '+')) i++;
    while (i < n && is_digit(p[i])) i++, digits++;
    if (digits == 0) return -1;
    if (i < n && p[i] == '.') {
        i++;
        digits = 0;
        while (i < n && is_digit(p[i])) i++, digits++;
        if (digits == 0) return -1;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        if (i < n && (p[i] == '-' || p[i] == '+')) i++;
        digits = 0;
        while (i < n && is_digit(p[i])) i++, digits++;
        if (digits == 0) return -1;
    }
    if (i != n) return -1;
    char tmp[MAX_DOUBLE_LINE + 1];
    memcpy(tmp, p, n);
    tmp[n] = 0;
    *out = strtod_l(tmp, NULL, r->c_locale);
    return 0;
}

static int is_format_byte(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* A line-type element (type byte at pos) whose line is complete: build its node. */
static int finish_line(struct resp_reader *r, size_t lend, struct resp_value *v)
{
    size_t start = r->pos + 1, n = lend - start;
    const char *p = r->buf + start;
    node_scalar(v, 0, r->base + start, n, r->cur_attr);
    switch (r->etype) {
    case '+': v->type = RESP_STRING; break;
    case '-': v->type = RESP_ERROR; break;
    case '_':
        if (n != 0) return fail(r, RESP_RULE_NULL, start, "'_' takes no payload");
        v->type = RESP_NULL;
        break;
    case '#':
        if (n != 1 || (p[0] != 't' && p[0] != 'f'))
            return fail(r, RESP_RULE_BOOL, start, "expected 't' or 'f'");
        v->type = RESP_BOOL;
        v->integer = p[0] == 't';
        break;
    case ',':
        if (parse_double(r, p, n, &v->dbl) != 0) return fail(r, RESP_RULE_DOUBLE, start, NULL);
        v->type = RESP_DOUBLE;
        break;
    case '(': {
        size_t i = (n > 0 && p[0] == '-') ? 1 : 0;
        if (i == n) return fail(r, RESP_RULE_BIGNUM, start + i, "no digits");
        for (; i < n; i++)
            if (!is_digit(p[i])) return fail(r, RESP_RULE_BIGNUM, start + i, "not a digit");
        v->type = RESP_BIGNUM;
        break;
    }
    }
    return STEP_CONT;
}

/* The bulk payload (blen bytes at pos, then CRLF) is all here: build its node. */
static int finish_bulk(struct resp_reader *r, struct resp_value *v)
{
    const char *p = r->buf + r->pos;
    size_t n = r->blen;
    if (p[n] != '\r') return fail(r, RESP_RULE_CRLF, r->pos + n, "after %zu-byte payload", n);
    if (p[n + 1] != '\n')
        return fail(r, RESP_RULE_CRLF, r->pos + n + 1, "after %zu-byte payload", n);
    node_scalar(v, RESP_BULK, r->base + r->pos, n, r->cur_attr);
    if (r->etype == '!') {
        v->type = RESP_BULK_ERROR;
    } else if (r->etype == '=') {
        if (n < 4 || p[3] != ':')
            return fail(r, RESP_RULE_VERBATIM, r->pos + (n < 4 ? n : 3), "expected \"fmt:\"");
        for (int i = 0; i < 3; i++)
            if (!is_format_byte(p[i]))
                return fail(r, RESP_RULE_VERBATIM, r->pos + (size_t)i, "bad format byte");
        v->type = RESP_VERBATIM;
        memcpy(v->format, p, 3);
        v->format[3] = 0;
        v->str_pos_ += 4;
        v->len -= 4;
    }
    return STEP_CONT;
}

/* Parses from pos until a top-level reply is complete or the bytes run out. */
static int parse(struct resp_reader *r)
{
    for (;;) {
        struct resp_value *v = value_slot(r);
        if (!v) return fail_nomem(r);
        int rc;
        size_t next = 0;
        int is_attr = 0;

        switch (r->state) {
        case ST_TYPE: {
            if (r->pos == r->end) return STEP_MORE;
            uint8_t b = (uint8_t)r->buf[r->pos];
            uint8_t cls = r->cls[b];
            if (!(cls & CLS_ALLOWED)) {
                if (b == ';' || b == '.') return fail(r, RESP_RULE_STREAMED, r->pos, NULL);
                return fail(r, RESP_RULE_TYPE, r->pos, "0x%02x", b);
            }
            if (cls & CLS_AGGREGATE) {
                if (r->depth >= r->lim.max_depth)
                    return fail(r, RESP_RULE_DEPTH, r->pos, "more than %u levels",
                                r->lim.max_depth);
                if (b == '>' && r->depth > 0) return fail(r, RESP_RULE_PUSH, r->pos, NULL);
            }
            if (b == '|') {
                if (r->pending_attr) return fail(r, RESP_RULE_ATTRIBUTE, r->pos, NULL);
                r->cur_attr = NULL;
            } else {
                r->cur_attr = r->pending_attr;
                r->pending_attr = NULL;
            }
            r->etype = b;
            r->scan = r->pos + 1;
            r->state = ST_LINE;
        }
        /* fallthrough */
        case ST_LINE:
            switch (r->etype) {
            case ':': {
                long long x;
                rc = read_length_line(r, &x, &next);
                if (rc != STEP_CONT) return rc;
                node_scalar(v, RESP_INTEGER, r->base + r->pos + 1, next - r->pos - 3, r->cur_attr);
                v->integer = x;
                break;
            }
            case '$':
            case '!':
            case '=': {
                long long x;
                rc = read_length_line(r, &x, &next);
                if (rc != STEP_CONT) return rc;
                if (x < 0) {
                    if (x != -1 || r->etype != '$')
                        return fail(r, RESP_RULE_LENGTH, r->pos + 1, "%lld", x);
                    node_scalar(v, RESP_NULL, r->base + r->pos + 1, 0, r->cur_attr);
                    break;
                }
                if ((unsigned long long)x > r->lim.max_bulk)
                    return fail(r, RESP_RULE_BULK_LIMIT, r->pos + 1, "%lld > %zu", x,
                                r->lim.max_bulk);
                r->blen = (size_t)x;
                r->pos = next;
                r->state = ST_BULK;
                continue;
            }
            case '*':
            case '%':
            case '~':
            case '>':
            case '|': {
                long long x;
                rc = read_length_line(r, &x, &next);
                if (rc != STEP_CONT) return rc;
                if (x < 0) {
                    if (x != -1 || r->etype != '*')
                        return fail(r, RESP_RULE_LENGTH, r->pos + 1, "%lld", x);
                    node_scalar(v, RESP_NULL, r->base + r->pos + 1, 0, r->cur_attr);
                    break;
                }
                int pairs = r->etype == '%' || r->etype == '|';
                if ((unsigned long long)x > r->lim.max_elements >> pairs)
                    return fail(r, RESP_RULE_COUNT_LIMIT, r->pos + 1, "%lld%s > %zu", x,
                                pairs ? " pairs" : "", r->lim.max_elements);
                size_t entries = (size_t)x << pairs;
                if (entries == 0) {
                    is_attr = r->etype == '|';
                    node_scalar(v, 0, 0, 0, r->cur_attr);
                    v->type = r->etype == '*'   ? RESP_ARRAY
                              : r->etype == '~' ? RESP_SET
                              : r->etype == '>' ? RESP_PUSH
                                                : RESP_MAP;
                    v->str = NULL;
                    v->elems = NULL;
                    break;
                }
                struct resp_frame *f = &r->frames[r->depth++];
                f->type = r->etype;
                f->remaining = entries;
                f->base = r->vlen;
                f->attr = r->cur_attr;
                r->pos = next;
                r->state = ST_TYPE;
                continue;
            }
            default: {
                size_t maxlen = r->etype == ','   ? MAX_DOUBLE_LINE
                                : r->etype == '#' ? 1
                                : r->etype == '_' ? 0
                                                  : r->lim.max_bulk;
                enum resp_rule too_long = r->etype == ','   ? RESP_RULE_DOUBLE
                                          : r->etype == '#' ? RESP_RULE_BOOL
                                          : r->etype == '_' ? RESP_RULE_NULL
                                                            : RESP_RULE_BULK_LIMIT;
                size_t lend = 0;
                rc = read_line(r, maxlen, too_long, &lend);
                if (rc != STEP_CONT) return rc;
                rc = finish_line(r, lend, v);
                if (rc != STEP_CONT) return rc;
                next = lend + 2;
                break;
            }
            }
            break;
        case ST_BULK:
            if (r->end - r->pos < r->blen + 2) return STEP_MORE;
            rc = finish_bulk(r, v);
            if (rc != STEP_CONT) return rc;
            next = r->pos + r->blen + 2;
            break;
        }

        /* a complete value */
        r->pos = next;
        r->state = ST_TYPE;
        rc = commit_value(r, v, is_attr);
        if (rc != STEP_CONT) return rc;
    }
}

/* The bulk of real traffic is top-level "+OK", ":n" and "$n" replies already complete in
 * the buffer. They are parsed here in one pass, straight into their node with real
 * pointers. Anything else — partial, unusual or wrong — returns 0 and goes to the general
 * parser, which then owns the element; this path keeps no state, so nothing it does is
 * redone beyond a failed look at one header. Returns the bytes the scalar takes, or 0. */
static inline __attribute__((always_inline)) size_t
fast_scalar(const struct resp_reader *r, const char *p, size_t avail, struct resp_value *v)
{
    if (avail < 4) return 0;
    uint8_t t = (uint8_t)p[0];
    /* The type byte is the one branch the predictor cannot learn (replies come in any
     * order): testing the rarer types first keeps the expected mispredictions per reply
     * at 1 - p(most common type). Bulk strings, the most common, come last. */
    if (t == '+' || t == '-') {
        size_t lim = avail - 1 < 64 ? avail - 1 : 64, i = 1;
        while (i < lim && p[i] != '\r' && p[i] != '\n') i++;
        if (i >= lim || p[i] != '\r' || p[i + 1] != '\n' || i - 1 > r->lim.max_bulk) return 0;
        v->type = t == '+' ? RESP_STRING : RESP_ERROR;
        v->format[0] = 0;
        v->str = p + 1;
        v->len = i - 1;
        v->integer = 0;
        v->attr = NULL;
        return i + 2;
    }
    /* ':' and '$': 1 to 18 digits cannot overflow; longer numbers go the careful way */
    size_t lim = avail - 2 < 18 ? avail - 2 : 18;
    if (t == ':') {
        size_t neg = p[1] == '-';
        size_t i = 1 + neg;
        uint64_t u = 0;
        while (i <= lim && is_digit(p[i])) u = u * 10 + (unsigned)(p[i++] - '0');
        size_t nd = i - 1 - neg;
        if (nd == 0 || i + 1 >= avail || p[i] != '\r' || p[i + 1] != '\n') return 0;
        if (p[1 + neg] == '0' && (nd > 1 || neg)) return 0; /* leading zero, "-0" */
        v->type = RESP_INTEGER;
        v->format[0] = 0;
        v->str = p + 1;
        v->len = i - 1;
        v->integer = neg ? -(long long)u : (long long)u;
        v->attr = NULL;
        return i + 2;
    }
    if (t == '$') {
        size_t i = 1;
        uint64_t u = 0;
        while (i <= lim && is_digit(p[i])) u = u * 10 + (unsigned)(p[i++] - '0');
        if (i == 1 || i + 1 >= avail || p[i] != '\r' || p[i + 1] != '\n') return 0;
        if (p[1] == '0' && i > 2) return 0; /* leading zero */
        size_t hdr = i + 2;
        if (u > r->lim.max_bulk || avail - hdr < u + 2) return 0;
        if (p[hdr + u] != '\r' || p[hdr + u + 1] != '\n') return 0;
        v->type = RESP_BULK;
        v->format[0] = 0;
        v->str = p + hdr;
        v->len = (size_t)u;
        v->integer = 0;
        v->attr = NULL;
        return hdr + (size_t)u + 2;
    }
    return 0;
}

/* Largest top-level array the fast path takes; [value, ttl] pairs and small MGETs. */
#define FAST_ARRAY_MAX 16

static int next_slow(struct resp_reader *r, const struct resp_value **out);

/* A top-level array of up to FAST_ARRAY_MAX fast scalars at pos, complete in the buffer
 * (at least 4 bytes there), parsed in one go into r->top and the arena (one block, reset:
 * resp_reader_next checked); else the slow path. Out of line and reached by a tail call:
 * it needs more registers than the scalar path, which would otherwise save and restore
 * them on every reply. */
__attribute__((noinline)) static int next_fast_array(struct resp_reader *r,
                                                     const struct resp_value **out)
{
    const char *p = r->buf + r->pos;
    size_t avail = r->end - r->pos;
    if (p[1] < '1' || p[1] > '9' || p[2] != '\r' || p[3] != '\n') goto slow;
    size_t n = (size_t)(p[1] - '0');
    struct arena_block *b = r->arena;
    if (n > FAST_ARRAY_MAX || n > r->lim.max_elements || r->lim.max_depth == 0 ||
        b->cap - b->used < n)
        goto slow;
    struct resp_value *elems = b->v + b->used;
    size_t off = 4;
    for (size_t i = 0; i < n; i++) {
        size_t used = fast_scalar(r, p + off, avail - off, &elems[i]);
        if (!used) goto slow;
        off += used;
    }
    b->used += n;
    struct resp_value *v = &r->top;
    v->type = RESP_ARRAY;
    v->format[0] = 0;
    v->len = n;
    v->str = NULL;
    v->elems = elems;
    v->attr = NULL;
    r->pos += off;
    r->delivered = 1;
    r->stats.replies++;
    *out = v;
    return RESP_GOT_REPLY;
slow:
    r->delivered = 0;
    return next_slow(r, out);
}

/* Everything the fast path does not take: errors, partial replies, unusual types, and the
 * call after a reply that needed more than one arena block. Kept out of line so the fast
 * path stays small; it decides whether the next call may take the fast path again. */
__attribute__((noinline)) static int next_slow(struct resp_reader *r, const struct resp_value **out)
{
    *out = NULL;
    if (r->rule != RESP_RULE_NONE)
        return r->rule == RESP_RULE_NOMEM ? RESP_ERR_NOMEM : RESP_ERR_PROTOCOL;
    if (r->delivered) release(r);
    int rc = parse(r);
    if (rc == STEP_DONE) {
        fixup(r);
        r->delivered = 1;
        r->stats.replies++;
        *out = &r->top;
        rc = r->top.type == RESP_PUSH ? RESP_GOT_PUSH : RESP_GOT_REPLY;
    } else if (rc == STEP_MORE) {
        rc = RESP_NEED_MORE;
    }
    r->fast = r->rule == RESP_RULE_NONE && r->state == ST_TYPE && r->depth == 0 &&
              !r->pending_attr && !r->arena->next;
    return rc;
}

int resp_reader_next(struct resp_reader *r, const struct resp_value **out)
{
    if (__builtin_expect(r->fast, 1)) {
        /* Nothing in progress, so the last reply (if any) ends at pos: release it. *out is
         * set first so that it needs no register across the parse (next_slow resets it). */
        *out = &r->top;
        const char *p = r->buf + r->pos;
        size_t avail = r->end - r->pos;
        r->rstart = r->pos;
        r->arena->used = 0;
        if (avail >= 4 && p[0] == '*') return next_fast_array(r, out);
        size_t used = fast_scalar(r, p, avail, &r->top);
        if (__builtin_expect(used != 0, 1)) {
            r->pos += used;
            r->delivered = 1;
            r->stats.replies++;
            return RESP_GOT_REPLY;
        }
    }
    return next_slow(r, out);
}

enum resp_rule resp_reader_error(const struct resp_reader *r)
{
    return r->rule;
}

uint64_t resp_reader_error_offset(const struct resp_reader *r)
{
    return r->err_off;
}

const char *resp_reader_errstr(const struct resp_reader *r)
{
    return r->rule == RESP_RULE_NONE ? "" : r->errstr;
}

const struct resp_reader_stats *resp_reader_stats(const struct resp_reader *r)
{
    return &r->stats;
}

size_t resp_reader_buffered(const struct resp_reader *r)
{
    return r->end - (r->delivered ? r->pos : r->rstart);
}
