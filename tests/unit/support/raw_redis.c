/* tests/unit/support/raw_redis.c — plain blocking loopback sockets for tests that check
 * server-side facts outside the loop under test (see raw_redis.h). */
#include "raw_redis.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>

int raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* The reply's text as raw_cmd says; NULL when the connection ends first. */
static char *read_reply_text(int fd)
{
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    char *out = NULL;
    for (;;) {
        if (len + 1 >= cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r <= 0) break;
        len += (size_t)r;
        buf[len] = '\0';
        char *crlf = strstr(buf, "\r\n");
        if (!crlf) continue;
        if (buf[0] == '$') {
            long want = strtol(buf + 1, NULL, 10);
            size_t hdr = (size_t)(crlf - buf) + 2;
            if (want < 0) {
                out = strdup("");
                break;
            }
            if (len >= hdr + (size_t)want + 2) {
                out = strndup(buf + hdr, (size_t)want);
                break;
            }
        } else {
            out = strndup(buf + 1, (size_t)(crlf - buf - 1));
            break;
        }
    }
    free(buf);
    return out;
}

static char *raw_vcmd(int port, const char *password, const char *fmt, va_list ap)
{
    char line[512];
    int n = vsnprintf(line, sizeof line - 2, fmt, ap);
    assert_true(n > 0 && (size_t)n < sizeof line - 2);
    memcpy(line + n, "\r\n", 2);
    n += 2;
    int fd = raw_connect(port);
    if (fd < 0) return NULL;
    if (password) {
        char auth[512];
        int an = snprintf(auth, sizeof auth, "AUTH %s\r\n", password);
        assert_true(an > 0 && (size_t)an < sizeof auth);
        assert_int_equal(write(fd, auth, (size_t)an), an);
        char ok[5];
        assert_int_equal(read(fd, ok, 5), 5); /* "+OK\r\n" */
        assert_memory_equal(ok, "+OK\r\n", 5);
    }
    assert_int_equal(write(fd, line, (size_t)n), n);
    char *out = read_reply_text(fd);
    close(fd);
    return out;
}

char *raw_cmd(int port, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *out = raw_vcmd(port, NULL, fmt, ap);
    va_end(ap);
    return out;
}

char *raw_cmd_auth(int port, const char *password, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *out = raw_vcmd(port, password, fmt, ap);
    va_end(ap);
    return out;
}

uint16_t refused_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t len = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &len);
    close(fd);
    return ntohs(sa.sin_port);
}
