/* tests/unit/support/raw_redis.h — plain blocking loopback sockets for tests that check
 * server-side facts (INFO, CLIENT LIST, SENTINEL ...) outside the loop under test, so they
 * never disturb what the code under test sees; and a loopback port nobody listens on.
 */
#ifndef RC_TEST_RAW_REDIS_H
#define RC_TEST_RAW_REDIS_H

#include <stdint.h>

/* A TCP connection to 127.0.0.1:port with a 5 s receive timeout; -1 when nothing accepts. */
int raw_connect(int port);

/* An inline command (printf format) to 127.0.0.1:port; the reply's first line (without its
 * type byte) or bulk payload ("" for a null), malloc'd, caller frees; NULL when nothing
 * answers. */
char *raw_cmd(int port, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The same, after AUTH password on the same connection (none when password is NULL); the
 * AUTH must answer +OK. */
char *raw_cmd_auth(int port, const char *password, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A loopback port nobody listens on (bound, then closed). */
uint16_t refused_port(void);

#endif
