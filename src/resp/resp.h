/* src/resp/resp.h — interface of src/resp: the RESP2/RESP3 reader and the command writer.
 *
 * Pure protocol code, no sockets. The connection layer (later in this header) reads from a
 * socket straight into the reader's buffer (resp_reader_space + resp_reader_commit), pulls
 * complete replies one by one with resp_reader_next and hands each to its FIFO callback;
 * RESP3 push frames come back with their own status so they can be routed apart.
 *
 * Design choices, and why:
 *
 * - Reply trees live in an arena owned by the reader, reset when the next reply is taken.
 *   A visitor API would avoid the tree altogether, but the connection needs to hold a whole
 *   reply (GET + TTL answers, CLUSTER SHARDS) and hand it to a callback, and a tree is much
 *   easier to test and to compare against hiredis. With the arena, a top-level scalar costs
 *   no allocation at all and an aggregate costs none in steady state (the arena keeps its
 *   block); freeing a reply is a pointer reset, so nothing recursive depends on input depth.
 *
 * - Children of an aggregate are collected on a value stack while they arrive and copied
 *   into the arena as one contiguous array when the aggregate closes. Nothing is sized from
 *   a declared count, so "*1000000\r\n" costs nothing until elements actually arrive.
 *
 * - Strings (simple, bulk, verbatim, big numbers, the text of integers and doubles) are
 *   slices into the read buffer. While a reply is incomplete its nodes hold stream offsets,
 *   which survive the buffer being compacted or grown by a later feed; they become pointers
 *   when the reply is returned. A returned reply is valid until the next call to
 *   resp_reader_next, resp_reader_feed, resp_reader_space or resp_reader_free.
 *
 * - Parsing state is a stack of open aggregates (bounded by max_depth) plus the element in
 *   progress, so a finished element is never parsed again and a partial bulk payload is
 *   waited for, not rescanned. A partial line is searched from where the last search
 *   stopped.
 *
 * - The buffer is compacted (unconsumed tail moved to the front) at most once per feed or
 *   space call, and only when that frees enough room and the tail is at most half the
 *   buffer; otherwise it grows. Consumed bytes are never moved per reply (hiredis 0.14
 *   moves its buffer after every reply once 1 KiB is consumed).
 *
 * - A top-level scalar, or an array of up to 16 scalars, already complete in the buffer is
 *   parsed in one pass straight into the reply (the bulk of real traffic: "+OK", GET and
 *   TTL answers); anything else goes through the general parser above. Both must build
 *   the same trees, which the split-point tests and fuzz/resp_reader check.
 *
 * - Errors are sticky: after a protocol error every call returns it again. The message names
 *   the rule and the byte offset counted from the first byte ever fed to the reader.
 *
 * - Integers are canonical, as Redis writes them and as hiredis' string2ll reads them:
 *   optional '-', no leading '+', no leading zeros, no "-0", no overflow of int64.
 */
#ifndef RESP_RESP_H
#define RESP_RESP_H

#include <stddef.h>
#include <stdint.h>

/* ---- values ---------------------------------------------------------------------- */

enum resp_type {
    RESP_STRING = 1, /* '+' simple string */
    RESP_ERROR,      /* '-' simple error */
    RESP_INTEGER,    /* ':' */
    RESP_BULK,       /* '$' */
    RESP_ARRAY,      /* '*' */
    RESP_NULL,       /* '_', and RESP2 "$-1" / "*-1" */
    RESP_BOOL,       /* '#' */
    RESP_DOUBLE,     /* ',' */
    RESP_BIGNUM,     /* '(' */
    RESP_BULK_ERROR, /* '!' */
    RESP_VERBATIM,   /* '=' */
    RESP_MAP,        /* '%' (also the type of an attribute, see resp_value.attr) */
    RESP_SET,        /* '~' */
    RESP_PUSH,       /* '>' only at top level */
};

/* One node of a reply tree. Scalars: str/len is the payload as sent (for integers, doubles,
 * big numbers the digits; for verbatim strings the text after "fmt:"). Aggregates: len is
 * the number of entries in elems; a map of n pairs has 2n entries, key then value. */
struct resp_value {
    uint8_t type;   /* enum resp_type */
    char format[4]; /* RESP_VERBATIM: the 3-byte format ("txt", "mkd") and a NUL */
    size_t len;
    union {
        const char *str;
        uint64_t str_pos_; /* internal: stream offset while the reply is incomplete */
    };
    union {
        long long integer;              /* RESP_INTEGER; RESP_BOOL: 0 or 1 */
        double dbl;                     /* RESP_DOUBLE (inf, -inf and nan included) */
        const struct resp_value *elems; /* RESP_ARRAY, RESP_MAP, RESP_SET, RESP_PUSH */
    };
    /* The attribute ('|') sent just before this value, as a RESP_MAP node, or NULL. */
    const struct resp_value *attr;
};

/* "string", "array", ... for messages and tests. */
const char *resp_type_name(int type);

/* ---- reader ---------------------------------------------------------------------- */

struct resp_limits {
    size_t max_bulk;     /* bulk, bulk error, verbatim payload; also the longest simple
                            string, error or big number line. Default 512 MiB. */
    size_t max_elements; /* entries in one aggregate (map pairs count twice). Default 1 Mi. */
    unsigned max_depth;  /* nested aggregates, attributes included; an aggregate type byte
                            beyond it is an error even for an empty or null one.
                            Default 64, at most RESP_MAX_DEPTH. */
    int resp2_only;      /* reject the RESP3 type bytes (a connection without HELLO 3) */
};

#define RESP_DEFAULT_MAX_BULK     ((size_t)512 * 1024 * 1024)
#define RESP_DEFAULT_MAX_ELEMENTS ((size_t)1024 * 1024)
#define RESP_DEFAULT_MAX_DEPTH    64u
#define RESP_MAX_DEPTH            1024u

void resp_limits_default(struct resp_limits *l);

/* Statuses of resp_reader_next; the feed calls return 0 or RESP_ERR_NOMEM. */
enum resp_status {
    RESP_NEED_MORE = 0,     /* no complete reply yet: feed more bytes */
    RESP_GOT_REPLY = 1,     /* *out is an ordinary reply */
    RESP_GOT_PUSH = 2,      /* *out is a RESP3 push frame (type RESP_PUSH) */
    RESP_ERR_PROTOCOL = -1, /* sticky; see resp_reader_error */
    RESP_ERR_NOMEM = -2,    /* sticky */
};

/* The rule a protocol error broke. */
enum resp_rule {
    RESP_RULE_NONE = 0,
    RESP_RULE_TYPE,        /* unknown (or, in RESP2 mode, RESP3) type byte */
    RESP_RULE_STREAMED,    /* streamed types: "$?", "*?", ';', '.' */
    RESP_RULE_INTEGER,     /* not a canonical decimal integer */
    RESP_RULE_RANGE,       /* integer outside int64 */
    RESP_RULE_LENGTH,      /* negative length other than the RESP2 null "-1" */
    RESP_RULE_BULK_LIMIT,  /* length or line longer than max_bulk */
    RESP_RULE_COUNT_LIMIT, /* more entries than max_elements */
    RESP_RULE_DEPTH,       /* nesting deeper than max_depth */
    RESP_RULE_CRLF,        /* line or payload not ended by CRLF, or bare CR/LF in a line */
    RESP_RULE_DOUBLE,      /* malformed double */
    RESP_RULE_BOOL,        /* boolean other than "t" or "f" */
    RESP_RULE_NULL,        /* '_' with a payload */
    RESP_RULE_BIGNUM,      /* big number that is not a decimal integer */
    RESP_RULE_VERBATIM,    /* verbatim string without "fmt:" */
    RESP_RULE_ATTRIBUTE,   /* an attribute following an attribute */
    RESP_RULE_PUSH,        /* push frame inside an aggregate */
    RESP_RULE_NOMEM,       /* allocation failed */
};

/* Counters for tests and benchmarks. */
struct resp_reader_stats {
    uint64_t bytes_in;    /* bytes fed or committed */
    uint64_t replies;     /* replies and pushes returned */
    uint64_t allocs;      /* every malloc/realloc the reader made, creation included */
    uint64_t compactions; /* memmoves of the unconsumed tail to the front */
    uint64_t grows;       /* buffer reallocations */
    uint64_t bytes_moved; /* bytes copied by compactions and grows */
};

struct resp_reader;

/* limits NULL means the defaults. Returns NULL on allocation failure. */
struct resp_reader *resp_reader_new(const struct resp_limits *limits);
void resp_reader_free(struct resp_reader *r);

/* Copies len bytes into the reader. 0, or RESP_ERR_NOMEM (sticky). */
int resp_reader_feed(struct resp_reader *r, const void *data, size_t len);

/* Room to read into directly: at least min bytes (min 0 means "some"), *avail set to the
 * actual room. Returns NULL on allocation failure (sticky) or after an error. Follow with
 * resp_reader_commit(r, n), n <= *avail, to make n bytes written there part of the stream. */
void *resp_reader_space(struct resp_reader *r, size_t min, size_t *avail);
void resp_reader_commit(struct resp_reader *r, size_t n);

/* Takes the next complete reply. Returns RESP_GOT_REPLY or RESP_GOT_PUSH with *out set
 * (valid until the next call on the reader, see above), RESP_NEED_MORE, or an error. */
int resp_reader_next(struct resp_reader *r, const struct resp_value **out);

/* The sticky error: its rule (RESP_RULE_NONE if none), stream offset and message. */
enum resp_rule resp_reader_error(const struct resp_reader *r);
uint64_t resp_reader_error_offset(const struct resp_reader *r);
const char *resp_reader_errstr(const struct resp_reader *r);

const struct resp_reader_stats *resp_reader_stats(const struct resp_reader *r);

/* Bytes buffered and not yet consumed by a returned reply. */
size_t resp_reader_buffered(const struct resp_reader *r);

/* ---- writer ---------------------------------------------------------------------- */

/* Commands are appended back to back; the connection writes out resp_writer_data() and
 * reports what the socket took with resp_writer_consume(). A failed append (out of memory)
 * leaves the buffer as it was. */
struct resp_writer {
    char *buf;
    size_t head; /* first byte not yet consumed */
    size_t tail; /* end of written bytes */
    size_t cap;
};

void resp_writer_init(struct resp_writer *w);
void resp_writer_free(struct resp_writer *w);

/* A command as an array of binary-safe bulk strings. 0, or -1 on allocation failure. */
int resp_writer_command(struct resp_writer *w, size_t argc, const char *const *argv,
                        const size_t *lens);

/* Piecewise: the array header, then exactly n arguments. */
int resp_writer_array(struct resp_writer *w, size_t n);
int resp_writer_arg(struct resp_writer *w, const void *p, size_t len);
int resp_writer_arg_int(struct resp_writer *w, long long v); /* as decimal text */

static inline const char *resp_writer_data(const struct resp_writer *w, size_t *len)
{
    *len = w->tail - w->head;
    return w->buf + w->head;
}
static inline size_t resp_writer_pending(const struct resp_writer *w)
{
    return w->tail - w->head;
}
/* Drops the first n pending bytes (n larger than pending drops all). */
void resp_writer_consume(struct resp_writer *w, size_t n);

/* ---- errors (shared by src/resp, src/topology and the plugin) ------------------------ */

/* The category decides the `reason` label of get/set error metrics (SPEC §3). */
enum resp_err_kind {
    RESP_EK_NONE = 0,
    RESP_EK_TIMEOUT,    /* deadline, socket timeout, pool wait, breaker opened by timeouts */
    RESP_EK_CONNECTION, /* refused, reset, EOF, TLS handshake, resolution, breaker (conn) */
    RESP_EK_OTHER,      /* RESP errors (NOAUTH, WRONGPASS, NOPERM...), protocol errors */
};

struct resp_err {
    enum resp_err_kind kind;
    char msg[192]; /* human readable, for logs: "connect 127.0.0.1:6379: Connection refused" */
};

/* "timeout", "connection", "other" ("" for NONE): the metric reason label. */
const char *resp_err_kind_name(enum resp_err_kind kind);
/* Sets kind and a printf-formatted message (truncated to fit). */
void resp_err_set(struct resp_err *e, enum resp_err_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- TLS (OpenSSL) ----------------------------------------------------------------- */

struct ssl_ctx_st; /* SSL_CTX, without pulling OpenSSL headers into every user */

struct resp_tls_opts {
    const char *ca_file;   /* PEM CAs; replaces the OS trust store when set */
    const char *cert_file; /* PEM client certificate (mTLS); needs key_file */
    const char *key_file;
    int verify_chain;    /* default 1; 0 disables all server-certificate checks */
    int verify_hostname; /* default 1; checked per connection (resp_conn_opts) */
};

/* Added by the connection work: sets the defaults (verify_chain 1, verify_hostname 1,
 * no files: the OS trust store). */
void resp_tls_opts_init(struct resp_tls_opts *o);

/* A client SSL_CTX: TLS >= 1.2, the trust store per opts, the client pair loaded. Returns
 * NULL and fills err (naming the file that failed) on error. Free with resp_tls_ctx_free. */
struct ssl_ctx_st *resp_tls_ctx_new(const struct resp_tls_opts *o, struct resp_err *err);
void resp_tls_ctx_free(struct ssl_ctx_st *ctx);

/* ---- one nonblocking connection on a libev loop ------------------------------------ */
/*
 * A connection carries many commands in flight (pipelining); replies are matched to
 * commands in FIFO order. Commands queued during one loop iteration leave in one write
 * (auto-pipelining: the flush runs from an ev_prepare watcher). Each command has its own
 * absolute deadline (ev_now() based); a command that passes it completes at once with a
 * RESP_EK_TIMEOUT error and leaves a tombstone in the FIFO that swallows its late reply, so
 * later commands still get their own replies. When the oldest tombstone is `stall_timeout`
 * past its deadline the connection is closed (RESP_EK_TIMEOUT): the server is stuck.
 *
 * Life cycle: CONNECTING (nonblocking connect under connect_timeout) -> TLS handshake when
 * tls is set -> HANDSHAKE (HELLO 3 [AUTH user pass] [SETNAME name] when resp3, falling
 * back to RESP2 + AUTH [user] pass only when HELLO itself is rejected; SELECT db when db
 * != 0; CLIENT SETNAME best effort) -> READY -> CLOSED. Commands sent before READY wait in
 * order and go out right after the handshake. An AUTH/HELLO auth error (WRONGPASS, NOAUTH,
 * NOPERM) closes the connection with RESP_EK_OTHER; a TLS failure with RESP_EK_CONNECTION;
 * neither ever falls back to plaintext or to no auth.
 */

struct ev_loop;
struct resp_conn;

struct resp_conn_opts {
    const struct sockaddr *addr; /* copied */
    unsigned addrlen;
    const char *host;          /* as dialled: SNI (unless an IP literal) and the name the
                                  certificate must match; copied */
    struct ssl_ctx_st *tls;    /* NULL: plaintext. Borrowed: must outlive the conn */
    int tls_verify_hostname;   /* 1: the server certificate must match `host` */
    const char *username;      /* NULL: none (copied) */
    const char *password;      /* NULL: none (copied) */
    int db;                    /* SELECT when != 0 */
    int readonly;              /* 1: READONLY after the handshake (Redis Cluster replica
                                  reads); best effort, an error reply is ignored */
    const char *client_name;   /* NULL: none; best effort (copied) */
    int resp3;                 /* 1: try HELLO 3 */
    double connect_timeout;    /* seconds, covers TCP + TLS + Redis handshake */
    double keepalive;          /* seconds between TCP keepalive probes; 0: system default */
    double stall_timeout;      /* see above; 0 means 2 s */
    struct resp_limits limits; /* reader limits */
};

/* Sets the defaults: resp3 1, connect_timeout 1 s, stall_timeout 2 s, default limits,
 * tls_verify_hostname 1, everything else 0/NULL. */
void resp_conn_opts_init(struct resp_conn_opts *o);

/* Called exactly once per command slot, in FIFO order: `idx` is the command's index in its
 * resp_conn_send call. Either reply != NULL (possibly a RESP_ERROR reply from the server)
 * and err == NULL, or reply == NULL and err says why (timeout, connection, protocol).
 * The reply is valid only during the call. The callback may send more commands, and may
 * close or free the connection. */
typedef void resp_reply_fn(void *priv, size_t idx, const struct resp_value *reply,
                           const struct resp_err *err);

struct resp_conn_events {
    void (*on_ready)(struct resp_conn *c, void *priv);
    /* The connection is dead (error, server close, stall, or resp_conn_close): every
     * pending command has already had its callback. The owner frees it (resp_conn_free
     * may be called from inside on_close). */
    void (*on_close)(struct resp_conn *c, const struct resp_err *why, void *priv);
    /* RESP3 push frames (and RESP2 pub/sub messages once subscribed). May be NULL. */
    void (*on_push)(struct resp_conn *c, const struct resp_value *push, void *priv);
};

/* One command of a pipelined request: argc binary-safe arguments. */
struct resp_cmd {
    size_t argc;
    const char *const *argv;
    const size_t *lens;
};

/* Starts connecting at once. Returns NULL only on allocation failure or a socket() error
 * (err filled); connection errors later arrive through on_close. */
struct resp_conn *resp_conn_new(struct ev_loop *loop, const struct resp_conn_opts *o,
                                const struct resp_conn_events *ev, void *priv,
                                struct resp_err *err);

/* Queues n commands back to back (they stay adjacent on the wire), all sharing `deadline`
 * and fn/priv (idx 0..n-1). Returns 0, or -1 when the connection is closed or memory runs
 * out (then no callback will be called). Added: a deadline <= 0 means none (the command
 * waits until its reply or the connection's end).
 * (P|S)SUBSCRIBE and (P|S)UNSUBSCRIBE with at least one channel: the callback gets the
 * first confirmation (a RESP3 push or a RESP2 array); the confirmations for further
 * channels go to on_push. Send them through resp_conn_send (send_encoded does not look
 * inside the bytes); UNSUBSCRIBE without channels is not supported (unknown reply count). */
int resp_conn_send(struct resp_conn *c, const struct resp_cmd *cmds, size_t n, double deadline,
                   resp_reply_fn *fn, void *priv);

/* The same with the commands already RESP-encoded (n commands in `len` bytes). */
int resp_conn_send_encoded(struct resp_conn *c, const void *bytes, size_t len, size_t n,
                           double deadline, resp_reply_fn *fn, void *priv);

/* Fails every pending command with `why` (or a generic connection error when NULL), closes
 * the socket, then calls on_close. Idempotent. */
void resp_conn_close(struct resp_conn *c, const struct resp_err *why);

/* Frees the connection (closing it first as resp_conn_close does, but without on_close). */
void resp_conn_free(struct resp_conn *c);

enum resp_conn_state {
    RESP_CONN_CONNECTING = 0,
    RESP_CONN_TLS,
    RESP_CONN_HANDSHAKE,
    RESP_CONN_READY,
    RESP_CONN_CLOSED,
};
enum resp_conn_state resp_conn_state(const struct resp_conn *c);

/* Commands whose callback has not run yet (tombstones excluded). */
size_t resp_conn_pending(const struct resp_conn *c);
/* Bytes queued and not yet written. */
size_t resp_conn_unsent(const struct resp_conn *c);
/* 2 or 3 once READY (0 before). */
int resp_conn_protocol(const struct resp_conn *c);
/* ev_now() when it became READY, and when the last reply arrived (pool idle rules). */
double resp_conn_ready_at(const struct resp_conn *c);
double resp_conn_last_reply_at(const struct resp_conn *c);
/* The private pointer given at creation, and a way to change it. */
void *resp_conn_priv(const struct resp_conn *c);
void resp_conn_set_priv(struct resp_conn *c, void *priv);

#endif
