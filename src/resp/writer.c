/* src/resp/writer.c — encodes commands as RESP arrays of bulk strings into one growable
 * buffer, back to back, so a connection can write a whole pipeline with one writev/write.
 * No format strings: arguments are binary-safe (pointer, length) pairs or integers.
 */
#include "resp/resp.h"

#include <stdlib.h>
#include <string.h>

#define WRITER_MIN_CAP 4096

/* Longest "*<n>\r\n" or "$<n>\r\n" header: type byte, 20 digits, CRLF. */
#define HEADER_MAX 23

void resp_writer_init(struct resp_writer *w)
{
    w->buf = NULL;
    w->head = w->tail = w->cap = 0;
}

void resp_writer_free(struct resp_writer *w)
{
    free(w->buf);
    resp_writer_init(w);
}

/* Room for n more bytes at tail. Sliding the pending bytes down is preferred when they are
 * at most half the buffer; else the buffer doubles. */
static int writer_reserve(struct resp_writer *w, size_t n)
{
    if (w->cap - w->tail >= n) return 0;
    size_t pending = w->tail - w->head;
    if (n > SIZE_MAX / 4 - pending) return -1;
    if (w->head > 0 && pending + n <= w->cap && pending <= w->cap / 2) {
        memmove(w->buf, w->buf + w->head, pending);
        w->head = 0;
        w->tail = pending;
        return 0;
    }
    size_t cap = w->cap ? w->cap : WRITER_MIN_CAP;
    while (cap < pending + n) cap *= 2;
    char *nb = malloc(cap);
    if (!nb) return -1;
    if (pending) memcpy(nb, w->buf + w->head, pending);
    free(w->buf);
    w->buf = nb;
    w->cap = cap;
    w->head = 0;
    w->tail = pending;
    return 0;
}

/* Writes v in decimal at p; returns the number of bytes. Two digits per division step. */
static size_t put_u64(char *p, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    while (v >= 100) {
        unsigned d = (unsigned)(v % 100);
        v /= 100;
        tmp[n++] = (char)('0' + d % 10);
        tmp[n++] = (char)('0' + d / 10);
    }
    if (v >= 10) {
        tmp[n++] = (char)('0' + v % 10);
        tmp[n++] = (char)('0' + v / 10);
    } else {
        tmp[n++] = (char)('0' + v);
    }
    for (size_t i = 0; i < n; i++) p[i] = tmp[n - 1 - i];
    return n;
}

static size_t put_header(char *p, char type, uint64_t n)
{
    p[0] = type;
    size_t len = 1 + put_u64(p + 1, n);
    p[len++] = '\r';
    p[len++] = '\n';
    return len;
}

int resp_writer_array(struct resp_writer *w, size_t n)
{
    if (writer_reserve(w, HEADER_MAX) != 0) return -1;
    w->tail += put_header(w->buf + w->tail, '*', n);
    return 0;
}

int resp_writer_arg(struct resp_writer *w, const void *p, size_t len)
{
    if (len > SIZE_MAX / 4 || writer_reserve(w, HEADER_MAX + len + 2) != 0) return -1;
    char *o = w->buf + w->tail;
    size_t h = put_header(o, '$', len);
    if (len) memcpy(o + h, p, len);
    o[h + len] = '\r';
    o[h + len + 1] = '\n';
    w->tail += h + len + 2;
    return 0;
}

int resp_writer_arg_int(struct resp_writer *w, long long v)
{
    char digits[21];
    size_t n = 0;
    uint64_t u = (uint64_t)v;
    if (v < 0) {
        digits[n++] = '-';
        u = 0 - u; /* magnitude, well defined for LLONG_MIN too */
    }
    n += put_u64(digits + n, u);
    return resp_writer_arg(w, digits, n);
}

int resp_writer_command(struct resp_writer *w, size_t argc, const char *const *argv,
                        const size_t *lens)
{
    /* Reserve the whole command first so a failure leaves the buffer untouched. */
    size_t total = HEADER_MAX;
    for (size_t i = 0; i < argc; i++) {
        if (lens[i] > SIZE_MAX / 4 - total - HEADER_MAX - 2) return -1;
        total += HEADER_MAX + lens[i] + 2;
    }
    if (writer_reserve(w, total) != 0) return -1;
    char *o = w->buf + w->tail;
    size_t off = put_header(o, '*', argc);
    for (size_t i = 0; i < argc; i++) {
        off += put_header(o + off, '$', lens[i]);
        if (lens[i]) memcpy(o + off, argv[i], lens[i]);
        off += lens[i];
        o[off++] = '\r';
        o[off++] = '\n';
    }
    w->tail += off;
    return 0;
}

void resp_writer_consume(struct resp_writer *w, size_t n)
{
    size_t pending = w->tail - w->head;
    if (n >= pending) {
        w->head = w->tail = 0; /* everything sent: start over at the front for free */
        return;
    }
    w->head += n;
}
