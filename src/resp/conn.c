/* src/resp/conn.c — one nonblocking Redis connection on a libev loop (interface: resp.h).
 *
 * Life cycle: nonblocking connect -> TLS handshake (optional) -> Redis handshake (HELLO /
 * AUTH / SELECT / CLIENT SETNAME) -> READY -> CLOSED. One connect timer covers the first
 * three. Commands queue in a writer and leave from an ev_prepare watcher, so everything
 * queued in one loop iteration goes out in one write (auto-pipelining).
 *
 * Replies are matched to a FIFO of slots (a ring that grows geometrically and is never
 * shrunk, so steady state allocates nothing). A slot whose deadline passes completes at
 * once with a timeout and stays in the ring as a tombstone that swallows the late reply.
 * One deadline timer per connection is armed at the earliest deadline known when it was
 * armed; the ring is rescanned only when it fires.
 *
 * Re-entrancy: user callbacks may send, close or free the connection. Every entry from
 * the loop (and close/free from outside) counts `depth`; resp_conn_free inside a callback
 * only marks the connection, and the outermost frame frees it on the way out. After any
 * user callback the code checks for CLOSED and unwinds without touching the socket.
 */
#include "resp/resp.h"
#include "resp/pubsub.h"
#include "resp/tls_session.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ev.h>

enum hs_step { HS_HELLO = 1, HS_AUTH, HS_SELECT, HS_SETNAME, HS_READONLY };

struct slot {
    resp_reply_fn *fn;
    void *priv;
    size_t idx;
    double deadline;   /* absolute, ev_now() based; <= 0: none */
    uint32_t sub_left; /* (un)subscribe: channel confirmations still to come */
    uint8_t tomb;      /* its callback has run: the reply (if any) is swallowed */
};

struct resp_conn {
    struct ev_loop *loop;
    int fd;
    enum resp_conn_state state;

    /* options (copied) */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char *host, *user, *pass, *name;
    int db, resp3, verify_hostname, readonly;
    double connect_timeout, stall_timeout;
    struct ssl_ctx_st *tls_ctx;
    char peer[128]; /* for messages: "host (ip:port)" or "ip:port" */

    struct resp_tls *tls;
    int rd_wants_write; /* the last TLS read asked for writability */
    int wr_wants_read;  /* the last TLS write asked for readability */

    ev_io rio, wio;
    ev_timer ctimer; /* connect + TLS + handshake deadline; also reports early errors */
    ev_timer dtimer; /* command deadlines and stall */
    ev_prepare flush;
    double dtimer_at;
    struct resp_err early; /* a connect() error found in resp_conn_new */

    struct resp_reader *rd;
    struct resp_writer w;  /* user commands: leave only once READY */
    struct resp_writer hs; /* handshake commands */
    uint8_t hsq[8];        /* handshake replies expected, FIFO */
    unsigned hsq_head, hsq_n;
    int hs_phase; /* 1: HELLO [+SELECT]; 2: [AUTH] [SELECT] [CLIENT SETNAME] */
    int hello_ok, hello_failed;

    struct slot *ring;
    size_t ring_cap, ring_head, ring_n; /* cap a power of two */
    size_t live;                        /* slots whose callback has not run */

    int protocol;
    int subscribed; /* a subscription was confirmed: RESP2 messages are pushes */
    double ready_at, last_reply_at;

    unsigned depth; /* nesting of entries (loop callbacks, close, free) */
    int freed;      /* resp_conn_free was called; destroyed when depth reaches 0 */

    struct resp_conn_events ev;
    void *priv;
};

static const char *state_name(enum resp_conn_state s)
{
    switch (s) {
    case RESP_CONN_CONNECTING: return "tcp connect";
    case RESP_CONN_TLS: return "tls handshake";
    case RESP_CONN_HANDSHAKE: return "redis handshake";
    case RESP_CONN_READY: return "ready";
    case RESP_CONN_CLOSED: return "closed";
    }
    return "?";
}

/* ---- life cycle helpers ------------------------------------------------------------ */

static void conn_destroy(struct resp_conn *c)
{
    resp_reader_free(c->rd);
    resp_writer_free(&c->w);
    if (c->hs.buf) explicit_bzero(c->hs.buf, c->hs.cap); /* it held the password */
    resp_writer_free(&c->hs);
    free(c->ring);
    free(c->host);
    free(c->user);
    if (c->pass) explicit_bzero(c->pass, strlen(c->pass));
    free(c->pass);
    free(c->name);
    free(c);
}

static void enter(struct resp_conn *c)
{
    c->depth++;
}

/* Returns -1 when the connection is gone (freed now or closed): the caller must not touch
 * it any more (when freed) or must stop its work (when closed). */
static int leave(struct resp_conn *c)
{
    if (--c->depth == 0 && c->freed) {
        conn_destroy(c);
        return -1;
    }
    return 0;
}

static inline struct slot *slot_at(struct resp_conn *c, size_t i)
{
    return &c->ring[(c->ring_head + i) & (c->ring_cap - 1)];
}

static void ring_pop(struct resp_conn *c)
{
    c->ring_head = (c->ring_head + 1) & (c->ring_cap - 1);
    c->ring_n--;
}

static int ring_reserve(struct resp_conn *c, size_t n)
{
    if (c->ring_cap - c->ring_n >= n) return 0;
    size_t cap = c->ring_cap ? c->ring_cap : 16;
    while (cap - c->ring_n < n) {
        if (cap > SIZE_MAX / 2 / sizeof(struct slot)) return -1;
        cap *= 2;
    }
    struct slot *r = malloc(cap * sizeof *r);
    if (!r) return -1;
    for (size_t i = 0; i < c->ring_n; i++) r[i] = *slot_at(c, i);
    free(c->ring);
    c->ring = r;
    c->ring_cap = cap;
    c->ring_head = 0;
    return 0;
}

/* Closes the socket and completes every pending command with `why`; then on_close unless
 * the connection is being freed. The caller holds a depth reference. */
static void conn_shutdown(struct resp_conn *c, const struct resp_err *why, int notify)
{
    if (c->state == RESP_CONN_CLOSED) return;
    c->state = RESP_CONN_CLOSED;
    struct resp_err e;
    if (why && why->kind != RESP_EK_NONE)
        e = *why;
    else
        resp_err_set(&e, RESP_EK_CONNECTION, "%s: connection closed", c->peer);
    ev_io_stop(c->loop, &c->rio);
    ev_io_stop(c->loop, &c->wio);
    ev_timer_stop(c->loop, &c->ctimer);
    ev_timer_stop(c->loop, &c->dtimer);
    ev_prepare_stop(c->loop, &c->flush);
    resp_tls_free(c->tls);
    c->tls = NULL;
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    /* Callbacks cannot add slots now (send fails on CLOSED), but may free the connection:
     * that only marks it, and every slot is still owed its callback. */
    while (c->ring_n) {
        struct slot s = *slot_at(c, 0);
        ring_pop(c);
        if (s.tomb) continue;
        c->live--;
        s.fn(s.priv, s.idx, NULL, &e);
    }
    if (notify && !c->freed && c->ev.on_close) c->ev.on_close(c, &e, c->priv);
}

static void conn_fail(struct resp_conn *c, const struct resp_err *e)
{
    conn_shutdown(c, e, 1);
}

static void fail_fmt(struct resp_conn *c, enum resp_err_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail_fmt(struct resp_conn *c, enum resp_err_kind kind, const char *fmt, ...)
{
    struct resp_err e;
    char msg[sizeof e.msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    resp_err_set(&e, kind, "%s: %s", c->peer, msg);
    conn_fail(c, &e);
}

/* ---- writing ----------------------------------------------------------------------- */

/* The writer whose bytes may go out in the current state. */
static struct resp_writer *out_writer(struct resp_conn *c)
{
    if (c->state == RESP_CONN_HANDSHAKE) return &c->hs;
    if (c->state == RESP_CONN_READY) return &c->w;
    return NULL;
}

static void schedule_flush(struct resp_conn *c)
{
    struct resp_writer *w = out_writer(c);
    if (w && resp_writer_pending(w) && !ev_is_active(&c->wio)) ev_prepare_start(c->loop, &c->flush);
}

/* Writes what it can. Returns -1 when the connection closed. */
static int do_flush(struct resp_conn *c)
{
    ev_prepare_stop(c->loop, &c->flush);
    for (;;) {
        struct resp_writer *w = out_writer(c);
        size_t len;
        const char *p = w ? resp_writer_data(w, &len) : NULL;
        if (!p || len == 0) {
            if (!c->rd_wants_write) ev_io_stop(c->loop, &c->wio);
            return 0;
        }
        if (c->tls) {
            int want = 0;
            struct resp_err e;
            long n = resp_tls_write(c->tls, p, len, &want, &e);
            if (n < 0) {
                fail_fmt(c, e.kind, "%s", e.msg);
                return -1;
            }
            c->wr_wants_read = 0;
            if (n == 0) {
                if (want == RESP_TLS_WANT_READ)
                    c->wr_wants_read = 1; /* retried from the read watcher */
                else
                    ev_io_start(c->loop, &c->wio);
                return 0;
            }
            resp_writer_consume(w, (size_t)n);
            continue;
        }
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                ev_io_start(c->loop, &c->wio);
                return 0;
            }
            fail_fmt(c, RESP_EK_CONNECTION, "write: %s", strerror(errno));
            return -1;
        }
        resp_writer_consume(w, (size_t)n);
        if ((size_t)n < len) { /* the socket buffer is full: wait instead of an EAGAIN */
            ev_io_start(c->loop, &c->wio);
            return 0;
        }
    }
}

/* Appends raw bytes to a writer, growing it the way writer.c does (malloc'd buffer). */
static int writer_append_raw(struct resp_writer *w, const void *p, size_t len)
{
    if (w->cap - w->tail < len) {
        size_t pending = w->tail - w->head;
        if (len > SIZE_MAX / 4 - pending) return -1;
        size_t cap = w->cap ? w->cap : 4096;
        while (cap < pending + len) cap *= 2;
        if (cap == w->cap && w->head > 0) {
            memmove(w->buf, w->buf + w->head, pending);
        } else {
            char *nb = malloc(cap);
            if (!nb) return -1;
            if (pending) memcpy(nb, w->buf + w->head, pending);
            free(w->buf);
            w->buf = nb;
            w->cap = cap;
        }
        w->head = 0;
        w->tail = pending;
    }
    if (len) memcpy(w->buf + w->tail, p, len);
    w->tail += len;
    return 0;
}

/* ---- deadlines ------------------------------------------------------------------- */

static void dtimer_arm(struct resp_conn *c, double at)
{
    if (at <= 0) return;
    if (ev_is_active(&c->dtimer)) {
        if (at >= c->dtimer_at) return;
        ev_timer_stop(c->loop, &c->dtimer);
    }
    double d = at - ev_now(c->loop);
    ev_timer_set(&c->dtimer, d > 0 ? d : 0, 0);
    c->dtimer_at = at;
    ev_timer_start(c->loop, &c->dtimer);
}

static void dtimer_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct resp_conn *c = t->data;
    enter(c);
    double now = ev_now(loop), next = 0;
    struct resp_err e;
    e.kind = RESP_EK_NONE;
    for (size_t i = 0; i < c->ring_n && c->state != RESP_CONN_CLOSED; i++) {
        struct slot *s = slot_at(c, i);
        if (s->tomb || s->deadline <= 0) continue;
        if (s->deadline > now) {
            if (next == 0 || s->deadline < next) next = s->deadline;
            continue;
        }
        if (e.kind == RESP_EK_NONE)
            resp_err_set(&e, RESP_EK_TIMEOUT, "%s: no reply before the deadline", c->peer);
        s->tomb = 1;
        c->live--;
        s->fn(s->priv, s->idx, NULL, &e); /* may send (ring grows: s is stale after) */
    }
    if (c->state == RESP_CONN_READY && c->ring_n) {
        struct slot *h = slot_at(c, 0);
        if (h->tomb && h->deadline > 0) {
            double stall_at = h->deadline + c->stall_timeout;
            if (now >= stall_at) {
                fail_fmt(c, RESP_EK_TIMEOUT,
                         "no reply %.3gs past a command's deadline: the server is stalled",
                         c->stall_timeout);
            } else if (next == 0 || stall_at < next) {
                next = stall_at;
            }
        }
    }
    if (c->state != RESP_CONN_CLOSED) dtimer_arm(c, next);
    leave(c);
}

/* ---- replies --------------------------------------------------------------------- */

static int is_err_reply(const struct resp_value *v)
{
    return v->type == RESP_ERROR || v->type == RESP_BULK_ERROR;
}

/* A subscribe confirmation for the head slot: the first goes to its callback, the rest
 * (one per further channel) to on_push. Returns -1 when the connection closed. */
static int sub_confirm(struct resp_conn *c, const struct resp_value *v)
{
    struct slot *s = slot_at(c, 0);
    struct slot copy = *s;
    c->subscribed = 1;
    if (--s->sub_left == 0) ring_pop(c);
    if (!copy.tomb) {
        if (s->sub_left) s->tomb = 1; /* still holds its place for the confirmations */
        c->live--;
        copy.fn(copy.priv, copy.idx, v, NULL);
    } else if (c->ev.on_push) {
        c->ev.on_push(c, v, c->priv);
    }
    return c->state == RESP_CONN_CLOSED ? -1 : 0;
}

static void become_ready(struct resp_conn *c);
static int hs_phase2(struct resp_conn *c);

static void err_text(const struct resp_value *v, const char **p, int *n)
{
    *p = v->str ? v->str : "";
    *n = v->len > 150 ? 150 : (int)v->len;
}

static int starts_with(const struct resp_value *v, const char *w)
{
    size_t n = strlen(w);
    return v->len >= n && memcmp(v->str, w, n) == 0;
}

/* A handshake reply. Returns -1 when the connection closed. */
static int hs_reply(struct resp_conn *c, const struct resp_value *v)
{
    if (c->hsq_n == 0) {
        fail_fmt(c, RESP_EK_OTHER, "protocol: unexpected reply during the handshake");
        return -1;
    }
    int step = c->hsq[c->hsq_head];
    c->hsq_head = (c->hsq_head + 1) % sizeof c->hsq;
    c->hsq_n--;
    const char *t;
    int tn;
    int err = is_err_reply(v);
    if (err) err_text(v, &t, &tn);
    switch (step) {
    case HS_HELLO:
        if (!err) {
            c->hello_ok = 1;
        } else if (starts_with(v, "WRONGPASS") || starts_with(v, "NOAUTH")) {
            /* The credentials (or their absence) are wrong: no fallback to weaker auth. */
            fail_fmt(c, RESP_EK_OTHER, "HELLO: %.*s", tn, t);
            return -1;
        } else {
            c->hello_failed = 1; /* unknown/renamed command, NOPERM, NOPROTO: RESP2 + AUTH */
        }
        break;
    case HS_AUTH:
        if (err) {
            fail_fmt(c, RESP_EK_OTHER, "AUTH: %.*s", tn, t);
            return -1;
        }
        break;
    case HS_SELECT:
        if (err && !(c->hs_phase == 1 && c->hello_failed)) {
            fail_fmt(c, RESP_EK_OTHER, "SELECT %d: %.*s", c->db, tn, t);
            return -1;
        }
        break;
    case HS_SETNAME: break;  /* best effort */
    case HS_READONLY: break; /* best effort: a MOVED reply says it did not take */
    }
    if (c->hsq_n) return 0;
    if (c->hs_phase == 1 && c->hello_failed) return hs_phase2(c);
    become_ready(c);
    return c->state == RESP_CONN_CLOSED ? -1 : 0;
}

/* Pulls every complete reply and hands it on. Returns -1 when the connection closed. */
static int dispatch(struct resp_conn *c)
{
    for (;;) {
        const struct resp_value *v;
        int rc = resp_reader_next(c->rd, &v);
        if (rc == RESP_NEED_MORE) return 0;
        if (rc < 0) {
            if (rc == RESP_ERR_NOMEM)
                fail_fmt(c, RESP_EK_OTHER, "reader: out of memory");
            else
                fail_fmt(c, RESP_EK_OTHER, "protocol error: %s", resp_reader_errstr(c->rd));
            return -1;
        }
        c->last_reply_at = ev_now(c->loop);
        int head_sub = c->ring_n && slot_at(c, 0)->sub_left;
        if (rc == RESP_GOT_PUSH) {
            if (head_sub && resp_is_sub_confirm(v)) {
                if (sub_confirm(c, v) < 0) return -1;
            } else if (c->ev.on_push) {
                c->ev.on_push(c, v, c->priv);
                if (c->state == RESP_CONN_CLOSED) return -1;
            }
            continue;
        }
        if (c->state == RESP_CONN_HANDSHAKE) {
            if (hs_reply(c, v) < 0) return -1;
            continue;
        }
        if (head_sub && resp_is_sub_confirm(v)) {
            if (sub_confirm(c, v) < 0) return -1;
            continue;
        }
        if (c->subscribed && resp_is_pubsub_message(v)) {
            if (c->ev.on_push) c->ev.on_push(c, v, c->priv);
            if (c->state == RESP_CONN_CLOSED) return -1;
            continue;
        }
        if (c->ring_n == 0) {
            fail_fmt(c, RESP_EK_OTHER, "protocol: a reply with no command waiting for it");
            return -1;
        }
        struct slot s = *slot_at(c, 0);
        ring_pop(c);
        if (s.tomb) continue; /* the late reply of a command that timed out */
        c->live--;
        s.fn(s.priv, s.idx, v, NULL);
        if (c->state == RESP_CONN_CLOSED) return -1;
    }
}

/* Reads until the socket (and OpenSSL) has nothing more. Returns -1 when closed. */
static int do_read(struct resp_conn *c)
{
    for (;;) {
        size_t avail;
        void *p = resp_reader_space(c->rd, 0, &avail);
        if (!p) {
            fail_fmt(c, RESP_EK_OTHER, "reader: %s",
                     resp_reader_error(c->rd) != RESP_RULE_NONE ? resp_reader_errstr(c->rd)
                                                                : "out of memory");
            return -1;
        }
        if (c->tls) {
            int want = 0;
            struct resp_err e;
            long n = resp_tls_read(c->tls, p, avail, &want, &e);
            if (n < 0) {
                fail_fmt(c, e.kind, "%s", e.msg);
                return -1;
            }
            c->rd_wants_write = 0;
            if (n == 0) {
                if (want == RESP_TLS_WANT_WRITE) {
                    c->rd_wants_write = 1;
                    ev_io_start(c->loop, &c->wio);
                }
                return 0;
            }
            resp_reader_commit(c->rd, (size_t)n);
            if (dispatch(c) < 0) return -1;
            /* Loop until OpenSSL wants the socket: decrypted bytes it still holds
             * (SSL_pending) would never wake the read watcher. */
            continue;
        }
        ssize_t n = recv(c->fd, p, avail, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
            fail_fmt(c, RESP_EK_CONNECTION, "read: %s", strerror(errno));
            return -1;
        }
        if (n == 0) {
            fail_fmt(c, RESP_EK_CONNECTION, "the server closed the connection");
            return -1;
        }
        resp_reader_commit(c->rd, (size_t)n);
        if (dispatch(c) < 0) return -1;
        if ((size_t)n < avail) return 0; /* drained: the watcher fires again if more came */
    }
}

/* ---- handshake ------------------------------------------------------------------- */

static void hs_expect(struct resp_conn *c, int step)
{
    c->hsq[(c->hsq_head + c->hsq_n) % sizeof c->hsq] = (uint8_t)step;
    c->hsq_n++;
}

/* SELECT db and READONLY, each when asked for. */
static int hs_select(struct resp_conn *c)
{
    if (c->db != 0) {
        if (resp_writer_array(&c->hs, 2) || resp_writer_arg(&c->hs, "SELECT", 6) ||
            resp_writer_arg_int(&c->hs, c->db))
            return -1;
        hs_expect(c, HS_SELECT);
    }
    if (c->readonly) {
        if (resp_writer_array(&c->hs, 1) || resp_writer_arg(&c->hs, "READONLY", 8)) return -1;
        hs_expect(c, HS_READONLY);
    }
    return 0;
}

/* Phase 1: HELLO 3 [AUTH user pass] [SETNAME name], then SELECT: one write. */
static int hs_phase1(struct resp_conn *c)
{
    c->hs_phase = 1;
    size_t n = 2 + (c->pass ? 3 : 0) + (c->name ? 2 : 0);
    struct resp_writer *w = &c->hs;
    if (resp_writer_array(w, n) || resp_writer_arg(w, "HELLO", 5) || resp_writer_arg(w, "3", 1))
        return -1;
    if (c->pass) {
        const char *u = c->user ? c->user : "default";
        if (resp_writer_arg(w, "AUTH", 4) || resp_writer_arg(w, u, strlen(u)) ||
            resp_writer_arg(w, c->pass, strlen(c->pass)))
            return -1;
    }
    if (c->name &&
        (resp_writer_arg(w, "SETNAME", 7) || resp_writer_arg(w, c->name, strlen(c->name))))
        return -1;
    hs_expect(c, HS_HELLO);
    return hs_select(c);
}

/* Phase 2 (RESP2): [AUTH [user] pass] [SELECT db] [CLIENT SETNAME name]. Returns -1 when
 * the connection closed. */
static int hs_phase2(struct resp_conn *c)
{
    c->hs_phase = 2;
    c->protocol = 2;
    struct resp_writer *w = &c->hs;
    int bad = 0;
    if (c->pass) {
        bad |= resp_writer_array(w, c->user ? 3 : 2) || resp_writer_arg(w, "AUTH", 4);
        if (c->user) bad |= resp_writer_arg(w, c->user, strlen(c->user));
        bad |= resp_writer_arg(w, c->pass, strlen(c->pass));
        if (!bad) hs_expect(c, HS_AUTH);
    }
    bad |= hs_select(c);
    if (c->name && !bad) {
        bad |= resp_writer_array(w, 3) || resp_writer_arg(w, "CLIENT", 6) ||
               resp_writer_arg(w, "SETNAME", 7) || resp_writer_arg(w, c->name, strlen(c->name));
        if (!bad) hs_expect(c, HS_SETNAME);
    }
    if (bad) {
        fail_fmt(c, RESP_EK_OTHER, "handshake: out of memory");
        return -1;
    }
    if (c->hsq_n == 0) {
        become_ready(c);
        return c->state == RESP_CONN_CLOSED ? -1 : 0;
    }
    schedule_flush(c);
    return 0;
}

static int start_redis_handshake(struct resp_conn *c)
{
    c->state = RESP_CONN_HANDSHAKE;
    if (c->resp3) {
        if (hs_phase1(c) < 0) {
            fail_fmt(c, RESP_EK_OTHER, "handshake: out of memory");
            return -1;
        }
        schedule_flush(c);
        return 0;
    }
    return hs_phase2(c);
}

static void become_ready(struct resp_conn *c)
{
    c->state = RESP_CONN_READY;
    ev_timer_stop(c->loop, &c->ctimer);
    c->protocol = c->hello_ok ? 3 : 2;
    c->ready_at = ev_now(c->loop);
    if (c->hs.buf) explicit_bzero(c->hs.buf, c->hs.cap); /* it held the password */
    resp_writer_free(&c->hs);
    schedule_flush(c);
    if (c->ev.on_ready) c->ev.on_ready(c, c->priv);
}

/* ---- connect and TLS ------------------------------------------------------------- */

static int tls_step(struct resp_conn *c)
{
    struct resp_err e;
    int rc = resp_tls_connect(c->tls, &e);
    if (rc < 0) {
        fail_fmt(c, e.kind, "%s", e.msg);
        return -1;
    }
    if (rc == RESP_TLS_WANT_WRITE) {
        ev_io_start(c->loop, &c->wio);
        return 0;
    }
    ev_io_stop(c->loop, &c->wio);
    if (rc == RESP_TLS_WANT_READ) return 0;
    return start_redis_handshake(c);
}

static void connect_done(struct resp_conn *c)
{
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0) soerr = errno;
    if (soerr) {
        fail_fmt(c, RESP_EK_CONNECTION, "connect: %s", strerror(soerr));
        return;
    }
    ev_io_stop(c->loop, &c->wio);
    ev_io_start(c->loop, &c->rio);
    if (!c->tls_ctx) {
        start_redis_handshake(c);
        return;
    }
    c->state = RESP_CONN_TLS;
    struct resp_err e;
    c->tls = resp_tls_new(c->tls_ctx, c->fd, c->host, c->verify_hostname, &e);
    if (!c->tls) {
        fail_fmt(c, e.kind, "%s", e.msg);
        return;
    }
    tls_step(c);
}

static void rio_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct resp_conn *c = w->data;
    enter(c);
    if (c->state == RESP_CONN_TLS) {
        tls_step(c);
    } else if (c->state == RESP_CONN_HANDSHAKE || c->state == RESP_CONN_READY) {
        if (!(c->wr_wants_read && do_flush(c) < 0)) do_read(c);
    }
    leave(c);
}

static void wio_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct resp_conn *c = w->data;
    enter(c);
    switch (c->state) {
    case RESP_CONN_CONNECTING: connect_done(c); break;
    case RESP_CONN_TLS: tls_step(c); break;
    case RESP_CONN_HANDSHAKE:
    case RESP_CONN_READY:
        ev_io_stop(loop, &c->wio);
        if (c->rd_wants_write && do_read(c) < 0) break;
        do_flush(c);
        break;
    case RESP_CONN_CLOSED: break;
    }
    leave(c);
}

static void flush_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
    struct resp_conn *c = w->data;
    enter(c);
    do_flush(c);
    leave(c);
}

static void ctimer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct resp_conn *c = w->data;
    enter(c);
    if (c->early.kind != RESP_EK_NONE)
        conn_fail(c, &c->early);
    else if (c->state != RESP_CONN_READY && c->state != RESP_CONN_CLOSED)
        fail_fmt(c, RESP_EK_TIMEOUT, "connect timed out after %.3gs (in %s)", c->connect_timeout,
                 state_name(c->state));
    leave(c);
}

/* ---- public ---------------------------------------------------------------------- */

void resp_conn_opts_init(struct resp_conn_opts *o)
{
    memset(o, 0, sizeof *o);
    o->resp3 = 1;
    o->connect_timeout = 1.0;
    o->stall_timeout = 2.0;
    o->tls_verify_hostname = 1;
    resp_limits_default(&o->limits);
}

static char *dup_opt(const char *s, int *bad)
{
    if (!s) return NULL;
    char *d = strdup(s);
    if (!d) *bad = 1;
    return d;
}

static void format_peer(struct resp_conn *c)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    const char *fmt = "%s:%u";
    if (c->addr.ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&c->addr;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        port = ntohs(a->sin_port);
    } else {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&c->addr;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
        port = ntohs(a->sin6_port);
        fmt = "[%s]:%u";
    }
    char ap[INET6_ADDRSTRLEN + 8];
    snprintf(ap, sizeof ap, fmt, ip, port);
    if (c->host && *c->host && strcmp(c->host, ip) != 0)
        snprintf(c->peer, sizeof c->peer, "%.60s (%s)", c->host, ap);
    else
        snprintf(c->peer, sizeof c->peer, "%s", ap);
}

struct resp_conn *resp_conn_new(struct ev_loop *loop, const struct resp_conn_opts *o,
                                const struct resp_conn_events *ev, void *priv, struct resp_err *err)
{
    if (!o->addr || o->addrlen > sizeof(struct sockaddr_storage) ||
        (o->addr->sa_family != AF_INET && o->addr->sa_family != AF_INET6)) {
        resp_err_set(err, RESP_EK_CONNECTION, "connect: not an IPv4 or IPv6 address");
        return NULL;
    }
    struct resp_conn *c = calloc(1, sizeof *c);
    if (!c) {
        resp_err_set(err, RESP_EK_OTHER, "connect: out of memory");
        return NULL;
    }
    c->loop = loop;
    c->fd = -1;
    memcpy(&c->addr, o->addr, o->addrlen);
    c->addrlen = o->addrlen;
    int bad = 0;
    c->host = dup_opt(o->host, &bad);
    c->user = dup_opt(o->username, &bad);
    c->pass = dup_opt(o->password, &bad);
    c->name = dup_opt(o->client_name, &bad);
    c->db = o->db;
    c->readonly = o->readonly;
    c->resp3 = o->resp3;
    c->verify_hostname = o->tls_verify_hostname;
    c->connect_timeout = o->connect_timeout > 0 ? o->connect_timeout : 1.0;
    c->stall_timeout = o->stall_timeout > 0 ? o->stall_timeout : 2.0;
    c->tls_ctx = o->tls;
    if (ev) c->ev = *ev;
    c->priv = priv;
    resp_writer_init(&c->w);
    resp_writer_init(&c->hs);
    format_peer(c);
    if (!bad) c->rd = resp_reader_new(&o->limits);
    if (bad || !c->rd) {
        resp_err_set(err, RESP_EK_OTHER, "connect %s: out of memory", c->peer);
        conn_destroy(c);
        return NULL;
    }
    c->fd = socket(c->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        resp_err_set(err, RESP_EK_CONNECTION, "connect %s: socket: %s", c->peer, strerror(errno));
        conn_destroy(c);
        return NULL;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(c->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    if (o->keepalive > 0) {
        int secs = (int)ceil(o->keepalive);
        if (secs < 1) secs = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPIDLE, &secs, sizeof secs);
        setsockopt(c->fd, IPPROTO_TCP, TCP_KEEPINTVL, &secs, sizeof secs);
    }
    ev_io_init(&c->rio, rio_cb, c->fd, EV_READ);
    ev_io_init(&c->wio, wio_cb, c->fd, EV_WRITE);
    ev_timer_init(&c->ctimer, ctimer_cb, c->connect_timeout, 0);
    ev_timer_init(&c->dtimer, dtimer_cb, 0, 0);
    ev_prepare_init(&c->flush, flush_cb);
    c->rio.data = c->wio.data = c->ctimer.data = c->dtimer.data = c->flush.data = c;
    c->state = RESP_CONN_CONNECTING;
    int rc;
    do rc = connect(c->fd, (const struct sockaddr *)&c->addr, c->addrlen);
    while (rc < 0 && errno == EINTR);
    if (rc < 0 && errno != EINPROGRESS) {
        /* Reported from the loop: the caller has no pointer to us yet. */
        resp_err_set(&c->early, RESP_EK_CONNECTION, "%s: connect: %s", c->peer, strerror(errno));
        ev_timer_set(&c->ctimer, 0, 0);
    } else {
        ev_io_start(loop, &c->wio); /* writable = connected (or failed: SO_ERROR) */
    }
    ev_timer_start(loop, &c->ctimer);
    return c;
}

/* (P|S)SUBSCRIBE and (P|S)UNSUBSCRIBE with channels: one confirmation per channel (pushes
 * in RESP3, arrays in RESP2). */
static int is_subscribe(const struct resp_cmd *cmd)
{
    static const char *const names[] = {"subscribe",   "psubscribe",   "ssubscribe",
                                        "unsubscribe", "punsubscribe", "sunsubscribe"};
    if (cmd->argc < 2) return 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (cmd->lens[0] == strlen(names[i]) &&
            strncasecmp(cmd->argv[0], names[i], cmd->lens[0]) == 0)
            return 1;
    return 0;
}

static void push_slots(struct resp_conn *c, size_t n, double deadline, resp_reply_fn *fn,
                       void *priv, const struct resp_cmd *cmds)
{
    for (size_t i = 0; i < n; i++) {
        struct slot *s = slot_at(c, c->ring_n);
        s->fn = fn;
        s->priv = priv;
        s->idx = i;
        s->deadline = deadline;
        s->tomb = 0;
        s->sub_left = cmds && is_subscribe(&cmds[i]) ? (uint32_t)(cmds[i].argc - 1) : 0;
        c->ring_n++;
    }
    c->live += n;
    dtimer_arm(c, deadline);
    schedule_flush(c);
}

int resp_conn_send(struct resp_conn *c, const struct resp_cmd *cmds, size_t n, double deadline,
                   resp_reply_fn *fn, void *priv)
{
    if (!c || c->state == RESP_CONN_CLOSED || c->freed || !fn) return -1;
    if (n == 0) return 0;
    if (ring_reserve(c, n) < 0) return -1;
    size_t before = resp_writer_pending(&c->w);
    for (size_t i = 0; i < n; i++) {
        if (resp_writer_command(&c->w, cmds[i].argc, cmds[i].argv, cmds[i].lens) < 0) {
            c->w.tail = c->w.head + before; /* drop this call's earlier commands */
            return -1;
        }
    }
    push_slots(c, n, deadline, fn, priv, cmds);
    return 0;
}

int resp_conn_send_encoded(struct resp_conn *c, const void *bytes, size_t len, size_t n,
                           double deadline, resp_reply_fn *fn, void *priv)
{
    if (!c || c->state == RESP_CONN_CLOSED || c->freed || !fn) return -1;
    if (n == 0) return 0;
    if (ring_reserve(c, n) < 0 || writer_append_raw(&c->w, bytes, len) < 0) return -1;
    push_slots(c, n, deadline, fn, priv, NULL);
    return 0;
}

void resp_conn_close(struct resp_conn *c, const struct resp_err *why)
{
    if (!c || c->state == RESP_CONN_CLOSED) return;
    enter(c);
    conn_shutdown(c, why, 1);
    leave(c);
}

void resp_conn_free(struct resp_conn *c)
{
    if (!c || c->freed) return;
    c->freed = 1;
    enter(c);
    conn_shutdown(c, NULL, 0);
    leave(c);
}

enum resp_conn_state resp_conn_state(const struct resp_conn *c)
{
    return c->state;
}

size_t resp_conn_pending(const struct resp_conn *c)
{
    return c->live;
}

size_t resp_conn_unsent(const struct resp_conn *c)
{
    return resp_writer_pending(&c->w) + resp_writer_pending(&c->hs);
}

int resp_conn_protocol(const struct resp_conn *c)
{
    return c->state == RESP_CONN_READY ? c->protocol : 0;
}

double resp_conn_ready_at(const struct resp_conn *c)
{
    return c->ready_at;
}

double resp_conn_last_reply_at(const struct resp_conn *c)
{
    return c->last_reply_at;
}

void *resp_conn_priv(const struct resp_conn *c)
{
    return c->priv;
}

void resp_conn_set_priv(struct resp_conn *c, void *priv)
{
    c->priv = priv;
}
