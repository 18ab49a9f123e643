/* src/resp/tls_session.h — internal to src/resp: one client TLS session on a nonblocking
 * socket, used by conn.c. Not part of the layer's interface (that is resp.h).
 *
 * The session does its socket I/O through its own small BIO that uses send(MSG_NOSIGNAL)
 * and recv(): OpenSSL's socket BIO uses write(), which raises SIGPIPE when the server has
 * gone, and a library must not depend on its host ignoring SIGPIPE. */
#ifndef RESP_TLS_SESSION_H
#define RESP_TLS_SESSION_H

#include <stddef.h>

#include "resp/resp.h"

struct resp_tls;

/* What a call that made no progress waits for. */
enum { RESP_TLS_WANT_READ = 1, RESP_TLS_WANT_WRITE = 2 };

/* A session on connected socket fd. host: SNI (unless an IP literal) and, when
 * verify_hostname and the context verifies the chain, the name (or IP) the certificate
 * must match. NULL and err filled on failure. */
struct resp_tls *resp_tls_new(struct ssl_ctx_st *ctx, int fd, const char *host, int verify_hostname,
                              struct resp_err *err);
void resp_tls_free(struct resp_tls *t);

/* One step of the handshake: 0 done, RESP_TLS_WANT_*, or -1 with err filled
 * (RESP_EK_CONNECTION, OpenSSL's reason and the verify result when there is one). */
int resp_tls_connect(struct resp_tls *t, struct resp_err *err);

/* > 0 bytes moved; 0 with *want set (RESP_TLS_WANT_*); -1 with err filled (EOF included).
 * A write that returned WANT must be retried with the same bytes (more may follow). */
long resp_tls_read(struct resp_tls *t, void *buf, size_t len, int *want, struct resp_err *err);
long resp_tls_write(struct resp_tls *t, const void *buf, size_t len, int *want,
                    struct resp_err *err);

/* Decrypted bytes OpenSSL holds that a read would return without touching the socket. */
size_t resp_tls_pending(const struct resp_tls *t);

/* "TLSv1.3" etc., for tests and logs. */
const char *resp_tls_version(const struct resp_tls *t);

#endif
