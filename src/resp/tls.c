/* src/resp/tls.c — TLS for Redis connections (OpenSSL 3): the client SSL_CTX built from the
 * tls* options, and one nonblocking client session per connection (tls_session.h).
 *
 * Verification: SSL_VERIFY_PEER unless verify_chain is off; a CA file replaces the default
 * trust store; the hostname (or IP literal) is checked per session, and only when the chain
 * is. A failure is always an error, never a reason to continue in plaintext. */
#include "resp/resp.h"
#include "resp/tls_session.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* The reason of the most recent OpenSSL error queued on this thread, or NULL. */
static const char *last_ssl_reason(char *buf, size_t len)
{
    unsigned long e, last = 0;
    while ((e = ERR_get_error()) != 0) last = e;
    if (!last) return NULL;
    const char *r = ERR_reason_error_string(last);
    if (r) return r;
    ERR_error_string_n(last, buf, len);
    return buf;
}

/* ---- context -------------------------------------------------------------------- */

SSL_CTX *resp_tls_ctx_new(const struct resp_tls_opts *o, struct resp_err *err)
{
    char eb[160];
    ERR_clear_error();
    if ((o->cert_file != NULL) != (o->key_file != NULL)) {
        resp_err_set(err, RESP_EK_OTHER, "tls: a client certificate needs its key (%s)",
                     o->cert_file ? "tls_key missing" : "tls_cert missing");
        return NULL;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        const char *r = last_ssl_reason(eb, sizeof eb);
        resp_err_set(err, RESP_EK_OTHER, "tls: SSL_CTX_new: %s", r ? r : "failed");
        return NULL;
    }
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)) goto fail_generic;
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_verify(ctx, o->verify_chain ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    if (o->ca_file) {
        if (!SSL_CTX_load_verify_locations(ctx, o->ca_file, NULL)) {
            const char *r = last_ssl_reason(eb, sizeof eb);
            resp_err_set(err, RESP_EK_OTHER, "tls_ca %s: %s", o->ca_file, r ? r : "unreadable");
            goto fail;
        }
    } else if (!SSL_CTX_set_default_verify_paths(ctx)) {
        const char *r = last_ssl_reason(eb, sizeof eb);
        resp_err_set(err, RESP_EK_OTHER, "tls: the system trust store: %s", r ? r : "unreadable");
        goto fail;
    }
    if (o->cert_file) {
        if (!SSL_CTX_use_certificate_chain_file(ctx, o->cert_file)) {
            const char *r = last_ssl_reason(eb, sizeof eb);
            resp_err_set(err, RESP_EK_OTHER, "tls_cert %s: %s", o->cert_file, r ? r : "unreadable");
            goto fail;
        }
        if (!SSL_CTX_use_PrivateKey_file(ctx, o->key_file, SSL_FILETYPE_PEM)) {
            const char *r = last_ssl_reason(eb, sizeof eb);
            resp_err_set(err, RESP_EK_OTHER, "tls_key %s: %s", o->key_file, r ? r : "unreadable");
            goto fail;
        }
        if (!SSL_CTX_check_private_key(ctx)) {
            const char *r = last_ssl_reason(eb, sizeof eb);
            resp_err_set(err, RESP_EK_OTHER, "tls_key %s does not match tls_cert %s: %s",
                         o->key_file, o->cert_file, r ? r : "mismatch");
            goto fail;
        }
    }
    return ctx;
fail_generic : {
    const char *r = last_ssl_reason(eb, sizeof eb);
    resp_err_set(err, RESP_EK_OTHER, "tls: context setup: %s", r ? r : "failed");
}
fail:
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return NULL;
}

void resp_tls_ctx_free(SSL_CTX *ctx)
{
    SSL_CTX_free(ctx);
}

/* ---- the socket BIO: send(MSG_NOSIGNAL) / recv ------------------------------------- */

static int bio_sock_write(BIO *b, const char *buf, int len)
{
    int fd = (int)(intptr_t)BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t n;
    do n = send(fd, buf, (size_t)len, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) BIO_set_retry_write(b);
    return (int)n;
}

static int bio_sock_read(BIO *b, char *buf, int len)
{
    int fd = (int)(intptr_t)BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t n;
    do n = recv(fd, buf, (size_t)len, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) BIO_set_retry_read(b);
    return (int)n;
}

static long bio_sock_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b, (void)num, (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_sock_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

/* ---- session -------------------------------------------------------------------- */

struct resp_tls {
    SSL *ssl;
    BIO_METHOD *meth; /* per session: immutable, freed after the SSL that uses it */
};

static int is_ip_literal(const char *host)
{
    unsigned char b[16];
    return inet_pton(AF_INET, host, b) == 1 || inet_pton(AF_INET6, host, b) == 1;
}

struct resp_tls *resp_tls_new(SSL_CTX *ctx, int fd, const char *host, int verify_hostname,
                              struct resp_err *err)
{
    char eb[160];
    ERR_clear_error();
    struct resp_tls *t = calloc(1, sizeof *t);
    if (!t) {
        resp_err_set(err, RESP_EK_OTHER, "tls: out of memory");
        return NULL;
    }
    t->meth = BIO_meth_new(BIO_TYPE_SOURCE_SINK, "resp socket");
    t->ssl = SSL_new(ctx);
    BIO *bio = NULL;
    if (!t->meth || !t->ssl || !BIO_meth_set_write(t->meth, bio_sock_write) ||
        !BIO_meth_set_read(t->meth, bio_sock_read) || !BIO_meth_set_ctrl(t->meth, bio_sock_ctrl) ||
        !BIO_meth_set_create(t->meth, bio_sock_create) || !(bio = BIO_new(t->meth)))
        goto fail;
    BIO_set_data(bio, (void *)(intptr_t)fd);
    SSL_set_bio(t->ssl, bio, bio); /* the SSL owns the BIO now */
    if (host && *host) {
        int ip = is_ip_literal(host);
        if (!ip && !SSL_set_tlsext_host_name(t->ssl, host)) goto fail;
        if (verify_hostname && (SSL_CTX_get_verify_mode(ctx) & SSL_VERIFY_PEER)) {
            if (ip) {
                if (!X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host)) goto fail;
            } else {
                SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
                if (!SSL_set1_host(t->ssl, host)) goto fail;
            }
        }
    }
    SSL_set_connect_state(t->ssl);
    return t;
fail : {
    const char *r = last_ssl_reason(eb, sizeof eb);
    resp_err_set(err, RESP_EK_CONNECTION, "tls: session setup for %s: %s", host ? host : "?",
                 r ? r : "failed");
}
    resp_tls_free(t);
    return NULL;
}

void resp_tls_free(struct resp_tls *t)
{
    if (!t) return;
    SSL_free(t->ssl);
    BIO_meth_free(t->meth);
    free(t);
}

/* Turns a failed SSL_* call into WANT_* (returns 0) or an error (returns -1, err set). */
static int tls_fail(struct resp_tls *t, int ret, const char *what, int *want, struct resp_err *err)
{
    int saved_errno = errno;
    char eb[160];
    int e = SSL_get_error(t->ssl, ret);
    switch (e) {
    case SSL_ERROR_WANT_READ: *want = RESP_TLS_WANT_READ; return 0;
    case SSL_ERROR_WANT_WRITE: *want = RESP_TLS_WANT_WRITE; return 0;
    case SSL_ERROR_ZERO_RETURN:
        resp_err_set(err, RESP_EK_CONNECTION, "tls %s: the server closed the session", what);
        return -1;
    default: break;
    }
    const char *r = last_ssl_reason(eb, sizeof eb);
    /* With verification off the result is still computed; it explains nothing then. */
    long vr =
        (SSL_get_verify_mode(t->ssl) & SSL_VERIFY_PEER) ? SSL_get_verify_result(t->ssl) : X509_V_OK;
    if (vr != X509_V_OK && r) {
        resp_err_set(err, RESP_EK_CONNECTION, "tls %s: %s: %s", what, r,
                     X509_verify_cert_error_string(vr));
    } else if (r) {
        resp_err_set(err, RESP_EK_CONNECTION, "tls %s: %s", what, r);
    } else if (e == SSL_ERROR_SYSCALL && saved_errno != 0) {
        resp_err_set(err, RESP_EK_CONNECTION, "tls %s: %s", what, strerror(saved_errno));
    } else {
        resp_err_set(err, RESP_EK_CONNECTION, "tls %s: the server closed the connection", what);
    }
    return -1;
}

int resp_tls_connect(struct resp_tls *t, struct resp_err *err)
{
    ERR_clear_error();
    errno = 0;
    int ret = SSL_connect(t->ssl);
    if (ret == 1) return 0;
    int want = 0;
    if (tls_fail(t, ret, "handshake", &want, err) < 0) return -1;
    return want;
}

long resp_tls_read(struct resp_tls *t, void *buf, size_t len, int *want, struct resp_err *err)
{
    ERR_clear_error();
    errno = 0;
    size_t n = 0;
    int ret = SSL_read_ex(t->ssl, buf, len, &n);
    if (ret == 1) return (long)n;
    return tls_fail(t, ret, "read", want, err);
}

long resp_tls_write(struct resp_tls *t, const void *buf, size_t len, int *want,
                    struct resp_err *err)
{
    ERR_clear_error();
    errno = 0;
    size_t n = 0;
    int ret = SSL_write_ex(t->ssl, buf, len, &n);
    if (ret == 1) return (long)n;
    return tls_fail(t, ret, "write", want, err);
}

size_t resp_tls_pending(const struct resp_tls *t)
{
    int n = SSL_pending(t->ssl);
    return n > 0 ? (size_t)n : 0;
}

const char *resp_tls_version(const struct resp_tls *t)
{
    return SSL_get_version(t->ssl);
}

void resp_tls_opts_init(struct resp_tls_opts *o)
{
    memset(o, 0, sizeof *o);
    o->verify_chain = 1;
    o->verify_hostname = 1;
}
