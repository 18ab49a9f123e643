/* tests/unit/test_topo_addr.c — topo_parse_hostport: the address forms of SPEC §4 and the
 * garbage a config may hold. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "topology/topology.h"

static void assert_parses(const char *s, uint16_t def, const char *want_host, uint16_t want_port)
{
    char host[TOPO_HOST_MAX];
    char err[160] = "";
    uint16_t port = 0;
    int rc = topo_parse_hostport(s, def, host, &port, err, sizeof err);
    if (rc != 0) fail_msg("\"%s\" rejected: %s", s, err);
    assert_string_equal(host, want_host);
    assert_int_equal(port, want_port);
}

/* Rejected, with a message that contains `why`; host and port untouched. */
static void assert_rejects(const char *s, const char *why)
{
    char host[TOPO_HOST_MAX] = "untouched";
    char err[160] = "";
    uint16_t port = 4242;
    int rc = topo_parse_hostport(s, 6379, host, &port, err, sizeof err);
    if (rc == 0) fail_msg("\"%s\" accepted as host \"%s\" port %u", s, host, port);
    assert_int_equal(rc, -1);
    if (!strstr(err, why)) fail_msg("\"%s\": message \"%s\" lacks \"%s\"", s, err, why);
    assert_string_equal(host, "untouched");
    assert_int_equal(port, 4242);
}

static void test_host_only(void **state)
{
    assert_parses("redis.local", 6379, "redis.local", 6379);
    assert_parses("redis", 26379, "redis", 26379);
    assert_parses("Redis-Master_0.svc.cluster.local.", 6379, "Redis-Master_0.svc.cluster.local.",
                  6379);
    assert_parses("10.0.0.1", 6379, "10.0.0.1", 6379);
}

static void test_host_port(void **state)
{
    assert_parses("redis.local:6380", 6379, "redis.local", 6380);
    assert_parses("127.0.0.1:1", 6379, "127.0.0.1", 1);
    assert_parses("127.0.0.1:65535", 6379, "127.0.0.1", 65535);
    assert_parses("h:06379", 1, "h", 6379);
}

static void test_bracketed_v6(void **state)
{
    assert_parses("[::1]:6380", 6379, "::1", 6380);
    assert_parses("[2001:db8::1]:7000", 6379, "2001:db8::1", 7000);
    assert_parses("[::1]", 6379, "::1", 6379);
    assert_parses("[fe80::1%eth0]:6379", 1, "fe80::1%eth0", 6379);
    assert_parses("[::ffff:10.0.0.1]:5", 1, "::ffff:10.0.0.1", 5);
}

static void test_bare_v6(void **state)
{
    assert_parses("::1", 6379, "::1", 6379);
    assert_parses("2001:db8::1", 26379, "2001:db8::1", 26379);
    assert_parses("fe80::1%2", 6379, "fe80::1%2", 6379);
    assert_parses("::", 6379, "::", 6379);
    /* a valid IPv6 literal stays one, even when its tail looks like a port */
    assert_parses("::1:6379", 1, "::1:6379", 1);
}

static void test_missing_host(void **state)
{
    assert_rejects("", "missing host");
    assert_rejects(":6379", "missing host");
    assert_rejects("[]:6379", "missing host");
    assert_rejects("[]", "missing host");
    assert_int_equal(
        topo_parse_hostport(NULL, 1, (char[TOPO_HOST_MAX]){0}, &(uint16_t){0}, NULL, 0), -1);
}

static void test_bad_port(void **state)
{
    assert_rejects("redis:", "bad port");
    assert_rejects("redis:0", "bad port");
    assert_rejects("redis:65536", "bad port");
    assert_rejects("redis:99999", "bad port");
    assert_rejects("redis:123456", "bad port");
    assert_rejects("redis:abc", "bad port");
    assert_rejects("redis:-1", "bad port");
    assert_rejects("redis:+1", "bad port");
    assert_rejects("redis:6379x", "bad port");
    assert_rejects("[::1]:", "bad port");
    assert_rejects("[::1]:0", "bad port");
    assert_rejects("[::1]:70000", "bad port");
}

static void test_garbage(void **state)
{
    assert_rejects(":1:1:6379", "not an IPv6 address");
    assert_rejects("redis:1:2", "not an IPv6 address");
    assert_rejects("1.2.3.4:5:6", "not an IPv6 address");
    assert_rejects("[::1", "missing ']'");
    assert_rejects("[::1]x", "unexpected text after ']'");
    assert_rejects("[::1]6379", "unexpected text after ']'");
    assert_rejects("[redis.local]:6379", "brackets must hold an IPv6 address");
    assert_rejects("[1.2.3.4]:6379", "brackets must hold an IPv6 address");
    assert_rejects("redis]:6379", "stray bracket");
    assert_rejects("re[dis", "stray bracket");
    assert_rejects("[fe80::1%]:1", "brackets must hold");
    assert_rejects("fe80::1%", "not an IPv6 address");
}

static void test_whitespace_and_controls(void **state)
{
    assert_rejects("redis :6379", "whitespace");
    assert_rejects(" redis", "whitespace");
    assert_rejects("redis\t", "whitespace");
    assert_rejects("redis:6379 ", "whitespace");
    assert_rejects("re\ndis", "whitespace");
    assert_rejects("[::1] :6379", "whitespace");
    assert_rejects("re\x7f"
                   "dis",
                   "control");
}

static void test_bad_names(void **state)
{
    assert_rejects("redis..local", "empty label");
    assert_rejects(".redis", "empty label");
    assert_rejects(".", "empty label");
    assert_rejects("redis..", "empty label");
    assert_rejects("re/dis", "invalid character");
    assert_rejects("redis@host", "invalid character");
    assert_rejects("r\xc3\xa9"
                   "dis",
                   "invalid character");

    char label64[80];
    memset(label64, 'a', 64);
    strcpy(label64 + 64, ".test");
    assert_rejects(label64, "label over 63");
    label64[1] = '.'; /* "a.aaa...": labels 1 and 62 */
    assert_parses(label64, 1, label64, 1);

    /* 254 bytes without a final dot is too long; 253 fits, and 253 + '.' too */
    char name[300];
    size_t n = 0;
    while (n < 253) {
        memset(name + n, 'b', 9);
        n += 9;
        if (n < 253) name[n++] = '.';
    }
    name[253] = '\0';
    assert_int_equal(strlen(name), 253);
    if (name[252] == '.') name[252] = 'c';
    assert_parses(name, 1, name, 1);
    name[253] = '.';
    name[254] = '\0';
    assert_parses(name, 1, name, 1);
    name[253] = 'd';
    assert_rejects(name, "too long");
}

static void test_error_buffer_optional_and_truncated(void **state)
{
    char host[TOPO_HOST_MAX];
    uint16_t port;
    assert_int_equal(topo_parse_hostport("x:0", 1, host, &port, NULL, 0), -1);
    char small[8];
    assert_int_equal(topo_parse_hostport("x:0", 1, host, &port, small, sizeof small), -1);
    assert_int_equal(strlen(small), sizeof small - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host_only),
        cmocka_unit_test(test_host_port),
        cmocka_unit_test(test_bracketed_v6),
        cmocka_unit_test(test_bare_v6),
        cmocka_unit_test(test_missing_host),
        cmocka_unit_test(test_bad_port),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_whitespace_and_controls),
        cmocka_unit_test(test_bad_names),
        cmocka_unit_test(test_error_buffer_optional_and_truncated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
