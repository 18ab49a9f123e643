/* src/server/http.c — a tiny HTTP/1.1 server for /metrics, /health and /ready on a libev
 * loop (the main thread's).
 *
 * One request per connection: read the request line and headers (at most HTTP_REQ_MAX
 * bytes, within HTTP_READ_TIMEOUT seconds of the accept), answer, close. GET only (405 with
 * `Allow: GET` otherwise); the path (the target without its query string) goes to the
 * handler, which appends the body and returns the status. Responses carry Content-Type,
 * Content-Length and `Connection: close`; bodies are written without blocking (a slow
 * reader gets HTTP_WRITE_TIMEOUT seconds per stalled write). A request body is never read:
 * after the response the socket is shut down for writing and drained for a moment before
 * close, so that unread bytes do not turn the close into a reset that eats the response.
 * At most HTTP_CONNS_MAX connections at once; more are accepted and closed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "server/server.h"

#define HTTP_REQ_MAX        8192
#define HTTP_READ_TIMEOUT   5.0
#define HTTP_WRITE_TIMEOUT  5.0
#define HTTP_LINGER_TIMEOUT 1.0
#define HTTP_CONNS_MAX      256
#define HTTP_BODY_MAX       (256u << 20) /* a handler writing more is answered 500 */

enum conn_state { CONN_READ, CONN_WRITE, CONN_LINGER };

struct http_conn {
    struct srv_http *srv;
    struct http_conn *prev, *next;
    int fd;
    ev_io io;
    ev_timer timer;
    enum conn_state state;
    char req[HTTP_REQ_MAX];
    size_t rlen;
    char head[256];
    size_t hlen, hoff;
    char *body;
    size_t blen, bcap, boff;
    bool oom;
};

struct srv_http {
    struct ev_loop *loop;
    int fd;
    ev_io io;
    srv_http_handler *handler;
    void *priv;
    uint16_t port;
    struct http_conn *conns;
    size_t nconns;
};

static void conn_close(struct http_conn *c)
{
    struct srv_http *h = c->srv;
    ev_io_stop(h->loop, &c->io);
    ev_timer_stop(h->loop, &c->timer);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        h->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    h->nconns--;
    free(c->body);
    free(c);
}

static void conn_arm(struct http_conn *c, int events, double timeout)
{
    struct ev_loop *loop = c->srv->loop;
    ev_io_stop(loop, &c->io);
    ev_io_set(&c->io, c->fd, events);
    ev_io_start(loop, &c->io);
    ev_timer_stop(loop, &c->timer);
    ev_timer_set(&c->timer, timeout, 0.0);
    ev_timer_start(loop, &c->timer);
}

static void body_append(void *ctx, const char *s, size_t n)
{
    struct http_conn *c = ctx;
    if (c->oom || n == 0) return;
    if (n > HTTP_BODY_MAX - c->blen) {
        c->oom = true;
        return;
    }
    if (c->blen + n > c->bcap) {
        size_t cap = c->bcap ? c->bcap : 4096;
        while (cap < c->blen + n) cap *= 2;
        char *b = realloc(c->body, cap);
        if (!b) {
            c->oom = true;
            return;
        }
        c->body = b;
        c->bcap = cap;
    }
    memcpy(c->body + c->blen, s, n);
    c->blen += n;
}

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Status";
    }
}

static void conn_write(struct http_conn *c);

/* Starts writing the response `status` with the body gathered so far (or `text`). */
static void conn_respond(struct http_conn *c, int status, const char *text)
{
    if (c->oom) {
        status = 500;
        c->blen = 0;
        c->oom = false;
        text = "500 internal server error\n";
    }
    if (text) {
        c->blen = 0;
        body_append(c, text, strlen(text));
        if (c->oom) c->blen = 0;
    }
    if (status < 100 || status > 999) status = 500;
    int n = snprintf(c->head, sizeof c->head,
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                     "Content-Length: %zu\r\n"
                     "%s"
                     "Connection: close\r\n\r\n",
                     status, reason(status), c->blen, status == 405 ? "Allow: GET\r\n" : "");
    c->hlen = n > 0 && (size_t)n < sizeof c->head ? (size_t)n : 0;
    c->hoff = c->boff = 0;
    c->state = CONN_WRITE;
    conn_write(c);
}

static void conn_linger(struct http_conn *c)
{
    shutdown(c->fd, SHUT_WR);
    c->state = CONN_LINGER;
    conn_arm(c, EV_READ, HTTP_LINGER_TIMEOUT);
}

static void conn_write(struct http_conn *c)
{
    for (;;) {
        struct iovec iov[2];
        int n = 0;
        if (c->hoff < c->hlen) iov[n++] = (struct iovec){c->head + c->hoff, c->hlen - c->hoff};
        if (c->boff < c->blen) iov[n++] = (struct iovec){c->body + c->boff, c->blen - c->boff};
        if (n == 0) {
            conn_linger(c);
            return;
        }
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(c->fd, &m, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                conn_arm(c, EV_WRITE, HTTP_WRITE_TIMEOUT);
                return;
            }
            conn_close(c);
            return;
        }
        size_t left = (size_t)w;
        size_t hp = c->hlen - c->hoff < left ? c->hlen - c->hoff : left;
        c->hoff += hp;
        c->boff += left - hp;
    }
}

/* The end of the header section in req[0..len), or 0 while incomplete. */
static size_t head_end(const char *req, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (req[i] != '\n') continue;
        if (i + 1 < len && req[i + 1] == '\n') return i + 2;
        if (i + 2 < len && req[i + 1] == '\r' && req[i + 2] == '\n') return i + 3;
    }
    return 0;
}

static void conn_request(struct http_conn *c)
{
    ev_io_stop(c->srv->loop, &c->io);
    char *line = c->req;
    char *eol = memchr(line, '\n', c->rlen);
    *eol = '\0';
    if (eol > line && eol[-1] == '\r') eol[-1] = '\0';
    /* METHOD SP TARGET SP HTTP/1.x */
    char *sp1 = strchr(line, ' ');
    char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp1 || !sp2 || strchr(sp2 + 1, ' ') || strncmp(sp2 + 1, "HTTP/1.", 7) != 0) {
        conn_respond(c, 400, "400 bad request\n");
        return;
    }
    *sp1 = *sp2 = '\0';
    char *target = sp1 + 1;
    if (strcmp(line, "GET") != 0) {
        conn_respond(c, 405, "405 method not allowed\n");
        return;
    }
    if (target[0] != '/') {
        conn_respond(c, 400, "400 bad request\n");
        return;
    }
    target[strcspn(target, "?#")] = '\0';
    c->blen = 0;
    int st = c->srv->handler(c->srv->priv, target, body_append, c);
    if (st == 404 && c->blen == 0 && !c->oom) {
        conn_respond(c, 404, "404 page not found\n");
        return;
    }
    conn_respond(c, st, NULL);
}

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct http_conn *c = w->data;
    if (c->state == CONN_WRITE) {
        conn_write(c);
        return;
    }
    if (c->state == CONN_LINGER) {
        char buf[4096];
        for (;;) {
            ssize_t r = read(c->fd, buf, sizeof buf);
            if (r > 0) continue;
            if (r < 0 && errno == EINTR) continue;
            if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
            conn_close(c); /* EOF or error */
            return;
        }
    }
    for (;;) {
        if (c->rlen == sizeof c->req) {
            conn_respond(c, 431, "431 request too large\n");
            return;
        }
        ssize_t r = read(c->fd, c->req + c->rlen, sizeof c->req - c->rlen);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (r <= 0) {
            conn_close(c);
            return;
        }
        size_t from = c->rlen > 3 ? c->rlen - 3 : 0;
        c->rlen += (size_t)r;
        if (head_end(c->req + from, c->rlen - from)) {
            conn_request(c);
            return;
        }
    }
}

static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    conn_close(w->data);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct srv_http *h = w->data;
    for (;;) {
        int fd = accept4(h->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            return; /* EAGAIN, or out of descriptors: try again on the next wakeup */
        }
        struct http_conn *c = h->nconns < HTTP_CONNS_MAX ? malloc(sizeof *c) : NULL;
        if (!c) {
            close(fd);
            continue;
        }
        c->srv = h;
        c->fd = fd;
        c->state = CONN_READ;
        c->rlen = c->hlen = c->hoff = c->blen = c->bcap = c->boff = 0;
        c->body = NULL;
        c->oom = false;
        c->prev = NULL;
        c->next = h->conns;
        if (h->conns) h->conns->prev = c;
        h->conns = c;
        h->nconns++;
        ev_io_init(&c->io, conn_io_cb, fd, EV_READ);
        c->io.data = c;
        ev_timer_init(&c->timer, conn_timer_cb, HTTP_READ_TIMEOUT, 0.0);
        c->timer.data = c;
        ev_io_start(loop, &c->io);
        ev_timer_start(loop, &c->timer);
    }
}

static void show_addr(const struct srv_http_addr *a, char *buf, size_t cap)
{
    if (strchr(a->host, ':'))
        snprintf(buf, cap, "[%s]:%u", a->host, a->port);
    else
        snprintf(buf, cap, "%s:%u", a->host, a->port);
}

/* Opens the listening socket; returns the fd or -1 with err filled. */
static int http_listen(const struct srv_http_addr *a, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof ss);
    char where[96];
    show_addr(a, where, sizeof where);
    const char *host = a->host;
    if (strcasecmp(host, "localhost") == 0) host = "127.0.0.1";
    bool any = host[0] == '\0';
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    int family;
    if (any || strchr(host, ':')) {
        family = AF_INET6;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(a->port);
        s6->sin6_addr = in6addr_any;
        sl = sizeof *s6;
        if (!any && inet_pton(AF_INET6, host, &s6->sin6_addr) != 1) {
            snprintf(err, errlen, "http: %s: not an IP address", where);
            return -1;
        }
    } else {
        family = AF_INET;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(a->port);
        sl = sizeof *s4;
        if (inet_pton(AF_INET, host, &s4->sin_addr) != 1) {
            snprintf(err, errlen, "http: %s: not an IP address", where);
            return -1;
        }
    }
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 && any && (errno == EAFNOSUPPORT || errno == EPROTONOSUPPORT)) {
        /* no IPv6 on this host: all IPv4 addresses */
        memset(&ss, 0, sizeof ss);
        s4->sin_family = AF_INET;
        s4->sin_port = htons(a->port);
        s4->sin_addr.s_addr = htonl(INADDR_ANY);
        sl = sizeof *s4;
        family = AF_INET;
        fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    }
    if (fd < 0) {
        snprintf(err, errlen, "http: %s: socket: %s", where, strerror(errno));
        return -1;
    }
    int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, any ? &zero : &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, 128) != 0) {
        snprintf(err, errlen, "http: listen on %s: %s", where, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

struct srv_http *srv_http_new(struct ev_loop *loop, const struct srv_http_addr *addr,
                              srv_http_handler *handler, void *priv, char *err, size_t errlen)
{
    char dummy[8];
    if (!err || errlen == 0) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = '\0';
    if (!loop || !addr || !handler) {
        snprintf(err, errlen, "http: bad arguments");
        return NULL;
    }
    struct srv_http *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, errlen, "http: out of memory");
        return NULL;
    }
    h->fd = http_listen(addr, err, errlen);
    if (h->fd < 0) {
        free(h);
        return NULL;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(h->fd, (struct sockaddr *)&ss, &sl) == 0)
        h->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
    h->loop = loop;
    h->handler = handler;
    h->priv = priv;
    ev_io_init(&h->io, accept_cb, h->fd, EV_READ);
    h->io.data = h;
    ev_io_start(loop, &h->io);
    return h;
}

void srv_http_free(struct srv_http *h)
{
    if (!h) return;
    while (h->conns) conn_close(h->conns);
    ev_io_stop(h->loop, &h->io);
    close(h->fd);
    free(h);
}

uint16_t srv_http_port(const struct srv_http *h)
{
    return h ? h->port : 0;
}
