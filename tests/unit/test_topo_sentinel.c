/* tests/unit/test_topo_sentinel.c — the Sentinel reply and message parsers
 * (src/topology/sentinel_parse.c): every shape a sentinel sends, in RESP2 and RESP3 form,
 * and hostile input (wrong types, missing fields, bad ports, odd payloads). Replies are
 * built by feeding raw RESP to the real reader, so the trees are the ones the router sees.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "resp/resp.h"
#include "topology/sentinel_parse.h"
#include "topology/topology.h"

static struct resp_reader *rd;

/* The reply tree of one complete RESP text (valid until the next call). */
static const struct resp_value *reply_of(const char *raw)
{
    if (rd) resp_reader_free(rd);
    rd = resp_reader_new(NULL);
    assert_non_null(rd);
    assert_int_equal(resp_reader_feed(rd, raw, strlen(raw)), 0);
    const struct resp_value *v = NULL;
    int rc = resp_reader_next(rd, &v);
    if (rc != RESP_GOT_REPLY && rc != RESP_GOT_PUSH) fail_msg("bad fixture: %s", raw);
    return v;
}

static int teardown(void **state)
{
    (void)state;
    if (rd) resp_reader_free(rd);
    rd = NULL;
    return 0;
}

/* ---- get-master-addr-by-name -------------------------------------------------------- */

static int master_addr(const char *raw, struct topo_hostport *hp, char *err, size_t errlen)
{
    err[0] = '\0';
    return sentinel_parse_master_addr(reply_of(raw), hp, err, errlen);
}

static void test_master_addr_two_bulk_strings(void **state)
{
    struct topo_hostport hp;
    char err[160];
    assert_int_equal(master_addr("*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6380\r\n", &hp, err, sizeof err),
                     1);
    assert_string_equal(hp.host, "127.0.0.1");
    assert_int_equal(hp.port, 6380);
    assert_int_equal(master_addr("*2\r\n$3\r\n::1\r\n$5\r\n65535\r\n", &hp, err, sizeof err), 1);
    assert_string_equal(hp.host, "::1");
    assert_int_equal(hp.port, 65535);
    /* announce-hostnames: a name instead of an IP */
    assert_int_equal(
        master_addr("*2\r\n$15\r\nredis-0.redis.x\r\n$4\r\n6379\r\n", &hp, err, sizeof err), 1);
    assert_string_equal(hp.host, "redis-0.redis.x");
}

static void test_master_addr_nil_is_unknown(void **state)
{
    struct topo_hostport hp = {.host = "keep", .port = 1};
    char err[160];
    assert_int_equal(master_addr("*-1\r\n", &hp, err, sizeof err), 0); /* RESP2 null array */
    assert_int_equal(master_addr("$-1\r\n", &hp, err, sizeof err), 0);
    assert_int_equal(master_addr("_\r\n", &hp, err, sizeof err), 0); /* RESP3 null */
    assert_string_equal(hp.host, "keep");
    assert_int_equal(hp.port, 1);
}

static void test_master_addr_error_reply_passes_the_text(void **state)
{
    struct topo_hostport hp;
    char err[160];
    assert_int_equal(master_addr("-NOAUTH Authentication required.\r\n", &hp, err, sizeof err), -1);
    assert_non_null(strstr(err, "NOAUTH"));
    assert_int_equal(master_addr("!5\r\nERR x\r\n", &hp, err, sizeof err), -1);
    assert_non_null(strstr(err, "ERR x"));
    assert_int_equal(sentinel_parse_master_addr(NULL, &hp, err, sizeof err), -1);
}

static void test_master_addr_bad_ports(void **state)
{
    struct topo_hostport hp = {.host = "keep", .port = 7};
    char err[160];
    const char *bad[] = {
        "*2\r\n$9\r\n127.0.0.1\r\n$1\r\n0\r\n",     "*2\r\n$9\r\n127.0.0.1\r\n$5\r\n65536\r\n",
        "*2\r\n$9\r\n127.0.0.1\r\n$2\r\n-1\r\n",    "*2\r\n$9\r\n127.0.0.1\r\n$0\r\n\r\n",
        "*2\r\n$9\r\n127.0.0.1\r\n$4\r\n63a9\r\n",  "*2\r\n$9\r\n127.0.0.1\r\n$6\r\n100000\r\n",
        "*2\r\n$9\r\n127.0.0.1\r\n$5\r\n 6379\r\n", "*2\r\n$9\r\n127.0.0.1\r\n$-1\r\n",
        "*2\r\n$9\r\n127.0.0.1\r\n*1\r\n:6379\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (master_addr(bad[i], &hp, err, sizeof err) != -1) fail_msg("accepted: %s", bad[i]);
        assert_non_null(strstr(err, "port"));
    }
    assert_string_equal(hp.host, "keep");
    assert_int_equal(hp.port, 7);
    /* an integer port (a RESP3-minded server) is fine when in range */
    assert_int_equal(master_addr("*2\r\n$9\r\n127.0.0.1\r\n:6379\r\n", &hp, err, sizeof err), 1);
    assert_int_equal(hp.port, 6379);
    assert_int_equal(master_addr("*2\r\n$9\r\n127.0.0.1\r\n:70000\r\n", &hp, err, sizeof err), -1);
}

static void test_master_addr_wrong_shapes(void **state)
{
    struct topo_hostport hp;
    char err[160];
    const char *bad[] = {
        "*0\r\n",
        "*1\r\n$9\r\n127.0.0.1\r\n",
        "*3\r\n$9\r\n127.0.0.1\r\n$4\r\n6379\r\n$1\r\nx\r\n",
        "$9\r\n127.0.0.1\r\n",
        "+OK\r\n",
        ":6379\r\n",
        "%1\r\n$2\r\nip\r\n$4\r\n6379\r\n",
        "*2\r\n:1\r\n$4\r\n6379\r\n",            /* host as an integer */
        "*2\r\n$0\r\n\r\n$4\r\n6379\r\n",        /* empty host */
        "*2\r\n$5\r\na b c\r\n$4\r\n6379\r\n",   /* space in the host */
        "*2\r\n$3\r\na\nb\r\n$4\r\n6379\r\n",    /* control byte in the host */
        "*2\r\n*1\r\n$1\r\nx\r\n$4\r\n6379\r\n", /* nested array as host */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (master_addr(bad[i], &hp, err, sizeof err) != -1) fail_msg("accepted: %s", bad[i]);
}

static void test_master_addr_host_too_long(void **state)
{
    char raw[700], host[300], err[160];
    memset(host, 'h', 256);
    host[256] = '\0'; /* TOPO_HOST_MAX is 256 with the NUL: one too many */
    snprintf(raw, sizeof raw, "*2\r\n$256\r\n%s\r\n$4\r\n6379\r\n", host);
    struct topo_hostport hp;
    assert_int_equal(master_addr(raw, &hp, err, sizeof err), -1);
    host[255] = '\0';
    snprintf(raw, sizeof raw, "*2\r\n$255\r\n%s\r\n$4\r\n6379\r\n", host);
    assert_int_equal(master_addr(raw, &hp, err, sizeof err), 1);
    assert_int_equal(strlen(hp.host), 255);
}

/* ---- ROLE --------------------------------------------------------------------------- */

static void test_role(void **state)
{
    assert_int_equal(sentinel_parse_role(reply_of("*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n")), 1);
    assert_int_equal(
        sentinel_parse_role(
            reply_of("*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:6379\r\n$9\r\nconnected\r\n:1\r\n")),
        0);
    assert_int_equal(sentinel_parse_role(reply_of("*2\r\n$8\r\nsentinel\r\n*0\r\n")), 0);
    assert_int_equal(sentinel_parse_role(reply_of("*1\r\n+MASTER\r\n")), 1); /* case folded */
    assert_int_equal(sentinel_parse_role(reply_of("-NOPERM no\r\n")), -1);
    assert_int_equal(sentinel_parse_role(reply_of("*0\r\n")), -1);
    assert_int_equal(sentinel_parse_role(reply_of("*1\r\n:1\r\n")), -1);
    assert_int_equal(sentinel_parse_role(reply_of("$6\r\nmaster\r\n")), -1);
    assert_int_equal(sentinel_parse_role(reply_of("*1\r\n$7\r\nmasters\r\n")), -1);
    assert_int_equal(sentinel_parse_role(NULL), -1);
}

/* ---- flags and instance lists -------------------------------------------------------- */

static void test_flags(void **state)
{
    assert_true(sentinel_flags_usable("slave", 5));
    assert_true(sentinel_flags_usable("", 0));
    assert_true(sentinel_flags_usable("sentinel", 8));
    assert_true(sentinel_flags_usable("slave,promoted", 14));
    assert_false(sentinel_flags_usable("s_down,slave", 12));
    assert_false(sentinel_flags_usable("slave,o_down", 12));
    assert_false(sentinel_flags_usable("slave,disconnected", 18));
    assert_false(sentinel_flags_usable("s_down,o_down,slave,disconnected", 32));
    assert_true(sentinel_flags_usable("slave,s_downx", 13)); /* whole words only */
    assert_true(sentinel_flags_usable("xs_down", 7));
    /* the length bounds the flags: "s_down" past it does not count */
    assert_true(sentinel_flags_usable("slave,s_down", 5));
}

/* One RESP2 instance (flat field/value array). */
static void inst2(char *out, size_t cap, const char *ip, const char *port, const char *flags)
{
    snprintf(
        out, cap,
        "*8\r\n$4\r\nname\r\n$%zu\r\n%s:%s\r\n$2\r\nip\r\n$%zu\r\n%s\r\n$4\r\nport\r\n$%zu\r\n%s"
        "\r\n$5\r\nflags\r\n$%zu\r\n%s\r\n",
        strlen(ip) + 1 + strlen(port), ip, port, strlen(ip), ip, strlen(port), port, strlen(flags),
        flags);
}

static void test_replicas_resp2_skips_down(void **state)
{
    char a[200], b[200], c[200], d[200], raw[1000];
    inst2(a, sizeof a, "127.0.0.1", "6380", "slave");
    inst2(b, sizeof b, "127.0.0.1", "6381", "s_down,slave");
    inst2(c, sizeof c, "127.0.0.1", "6382", "slave,disconnected");
    inst2(d, sizeof d, "10.0.0.9", "6383", "o_down,slave");
    snprintf(raw, sizeof raw, "*4\r\n%s%s%s%s", a, b, c, d);
    struct topo_hostport hp[8];
    char err[160];
    assert_int_equal(sentinel_parse_instances(reply_of(raw), true, hp, 8, err, sizeof err), 1);
    assert_string_equal(hp[0].host, "127.0.0.1");
    assert_int_equal(hp[0].port, 6380);
    /* sentinels: nothing skipped for flags */
    assert_int_equal(sentinel_parse_instances(reply_of(raw), false, hp, 8, err, sizeof err), 4);
    assert_int_equal(hp[3].port, 6383);
    assert_string_equal(hp[3].host, "10.0.0.9");
    /* cap bounds the output */
    assert_int_equal(sentinel_parse_instances(reply_of(raw), false, hp, 2, err, sizeof err), 2);
}

static void test_replicas_resp3_maps(void **state)
{
    const char *raw = "*2\r\n"
                      "%3\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$4\r\nport\r\n$4\r\n6390\r\n"
                      "$5\r\nflags\r\n$5\r\nslave\r\n"
                      "%3\r\n+ip\r\n+127.0.0.2\r\n+port\r\n:6391\r\n+flags\r\n+slave\r\n";
    struct topo_hostport hp[4];
    char err[160];
    assert_int_equal(sentinel_parse_instances(reply_of(raw), true, hp, 4, err, sizeof err), 2);
    assert_int_equal(hp[0].port, 6390);
    assert_string_equal(hp[1].host, "127.0.0.2");
    assert_int_equal(hp[1].port, 6391);
}

static void test_instances_empty_and_errors(void **state)
{
    struct topo_hostport hp[4];
    char err[160] = "";
    assert_int_equal(sentinel_parse_instances(reply_of("*0\r\n"), true, hp, 4, err, sizeof err), 0);
    assert_int_equal(sentinel_parse_instances(reply_of("-ERR No such master with that name\r\n"),
                                              true, hp, 4, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "No such master"));
    assert_int_equal(
        sentinel_parse_instances(reply_of("$3\r\nabc\r\n"), true, hp, 4, err, sizeof err), -1);
    assert_int_equal(sentinel_parse_instances(reply_of("_\r\n"), true, hp, 4, err, sizeof err), -1);
    assert_int_equal(sentinel_parse_instances(NULL, true, hp, 4, err, sizeof err), -1);
}

static void test_instances_hostile_entries_skipped(void **state)
{
    /* each bad instance is skipped; the good last one survives */
    const char *raw = "*9\r\n"
                      ":5\r\n"                                        /* not an aggregate */
                      "*3\r\n$2\r\nip\r\n$3\r\n1.2\r\n$4\r\nport\r\n" /* odd count */
                      "*2\r\n$2\r\nip\r\n$7\r\n1.2.3.4\r\n"           /* no port */
                      "*2\r\n$4\r\nport\r\n$4\r\n6379\r\n"            /* no ip */
                      "*4\r\n$2\r\nip\r\n$7\r\n1.2.3.4\r\n$4\r\nport\r\n$5\r\n99999\r\n"
                      "*4\r\n$2\r\nip\r\n:1\r\n$4\r\nport\r\n$4\r\n6379\r\n" /* ip integer */
                      "*4\r\n:1\r\n$2\r\nip\r\n$4\r\nport\r\n$4\r\n6379\r\n" /* key integer */
                      "*6\r\n$2\r\nip\r\n$7\r\n1.2.3.4\r\n$4\r\nport\r\n$4\r\n6379\r\n"
                      "$5\r\nflags\r\n:1\r\n" /* flags not text: unusable for replicas */
                      "*4\r\n$2\r\nIP\r\n$7\r\n5.6.7.8\r\n$4\r\nPORT\r\n$4\r\n6400\r\n";
    struct topo_hostport hp[10];
    char err[160];
    assert_int_equal(sentinel_parse_instances(reply_of(raw), true, hp, 10, err, sizeof err), 1);
    assert_string_equal(hp[0].host, "5.6.7.8");
    assert_int_equal(hp[0].port, 6400);
    assert_int_equal(sentinel_parse_instances(reply_of(raw), false, hp, 10, err, sizeof err), 2);
}

/* ---- pub/sub messages ---------------------------------------------------------------- */

static void test_message_resp2_and_resp3(void **state)
{
    const char *chan, *pay;
    size_t cl, pl;
    assert_int_equal(sentinel_parse_message(reply_of("*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master"
                                                     "\r\n$5\r\nhello\r\n"),
                                            &chan, &cl, &pay, &pl),
                     0);
    assert_int_equal(cl, 14);
    assert_memory_equal(chan, "+switch-master", 14);
    assert_int_equal(pl, 5);
    assert_memory_equal(pay, "hello", 5);
    assert_int_equal(
        sentinel_parse_message(reply_of(">3\r\n$7\r\nmessage\r\n$6\r\n+sdown\r\n$1\r\nx\r\n"),
                               &chan, &cl, &pay, &pl),
        0);
    assert_int_equal(cl, 6);
}

static void test_message_rejects_others(void **state)
{
    const char *chan, *pay;
    size_t cl, pl;
    const char *bad[] = {
        "*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n", /* confirmation */
        "*2\r\n$4\r\npong\r\n$0\r\n\r\n",
        "*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$1\r\nc\r\n$1\r\np\r\n",
        "*3\r\n$7\r\nmessage\r\n:1\r\n$1\r\np\r\n",
        "*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n*0\r\n",
        "$7\r\nmessage\r\n",
        "+PONG\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (sentinel_parse_message(reply_of(bad[i]), &chan, &cl, &pay, &pl) != -1)
            fail_msg("accepted: %s", bad[i]);
    assert_int_equal(sentinel_parse_message(NULL, &chan, &cl, &pay, &pl), -1);
}

static int sw(const char *payload, const char *master, struct topo_hostport *hp)
{
    return sentinel_parse_switch_master(payload, strlen(payload), master, hp);
}

static void test_switch_master(void **state)
{
    struct topo_hostport hp = {.host = "keep", .port = 1};
    assert_int_equal(sw("mymaster 127.0.0.1 6379 127.0.0.1 6380", "mymaster", &hp), 1);
    assert_string_equal(hp.host, "127.0.0.1");
    assert_int_equal(hp.port, 6380);
    assert_int_equal(sw("mymaster ::1 6379 ::1 7000", "mymaster", &hp), 1);
    assert_string_equal(hp.host, "::1");
    assert_int_equal(hp.port, 7000);
    /* another master group: ignored, *out untouched */
    hp.port = 1;
    assert_int_equal(sw("other 127.0.0.1 6379 127.0.0.1 6390", "mymaster", &hp), 0);
    assert_int_equal(sw("mymasterx 127.0.0.1 6379 127.0.0.1 6390", "mymaster", &hp), 0);
    assert_int_equal(sw("mymaste 127.0.0.1 6379 127.0.0.1 6390", "mymaster", &hp), 0);
    assert_int_equal(hp.port, 1);
}

static void test_switch_master_malformed(void **state)
{
    struct topo_hostport hp = {.host = "keep", .port = 1};
    const char *bad[] = {
        "",
        "mymaster",
        "mymaster 127.0.0.1 6379 127.0.0.1",
        "mymaster 127.0.0.1 6379 127.0.0.1 6380 extra",
        "mymaster 127.0.0.1 6379 127.0.0.1 0",
        "mymaster 127.0.0.1 6379 127.0.0.1 65536",
        "mymaster 127.0.0.1 6379 127.0.0.1 63x0",
        "mymaster 127.0.0.1 xx 127.0.0.1 6380",
        "mymaster  127.0.0.1 6379 127.0.0.1 6380",
        " mymaster 127.0.0.1 6379 127.0.0.1 6380",
        "mymaster 127.0.0.1 6379 127.0.0.1 6380 ",
        "mymaster 127.0.0.1\t6379 127.0.0.1 6380",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (sw(bad[i], "mymaster", &hp) != -1) fail_msg("accepted: \"%s\"", bad[i]);
    assert_string_equal(hp.host, "keep");
    assert_int_equal(sentinel_parse_switch_master(NULL, 0, "mymaster", &hp), -1);
    /* the length bounds the payload: no NUL needed, nothing read past it */
    const char *p = "mymaster 127.0.0.1 6379 127.0.0.1 6380999";
    assert_int_equal(sentinel_parse_switch_master(p, strlen(p) - 3, "mymaster", &hp), 1);
    assert_int_equal(hp.port, 6380);
}

static int ev(const char *payload, const char *master)
{
    return sentinel_parse_instance_event(payload, strlen(payload), master);
}

static void test_instance_events(void **state)
{
    assert_int_equal(
        ev("slave 127.0.0.1:6380 127.0.0.1 6380 @ mymaster 127.0.0.1 6379", "mymaster"), 1);
    assert_int_equal(ev("slave 127.0.0.1:6380 127.0.0.1 6380 @ other 127.0.0.1 6379", "mymaster"),
                     0);
    assert_int_equal(ev("master mymaster 127.0.0.1 6379", "mymaster"), 1);
    assert_int_equal(ev("master other 127.0.0.1 6379", "mymaster"), 0);
    assert_int_equal(ev("sentinel 0123abcd 127.0.0.1 26380 @ mymaster 127.0.0.1 6379", "mymaster"),
                     1);
    /* malformed */
    assert_int_equal(ev("", "mymaster"), -1);
    assert_int_equal(ev("master mymaster 127.0.0.1", "mymaster"), -1);
    assert_int_equal(ev("slave mymaster 127.0.0.1 6379", "mymaster"), -1); /* 4 words, not master */
    assert_int_equal(ev("master mymaster 127.0.0.1 port", "mymaster"), -1);
    assert_int_equal(ev("slave a 127.0.0.1 6380 # mymaster 127.0.0.1 6379", "mymaster"), -1);
    assert_int_equal(ev("slave a 127.0.0.1 6380 @ mymaster 127.0.0.1", "mymaster"), -1);
    assert_int_equal(ev("slave a 127.0.0.1 6380 @ mymaster 127.0.0.1 0", "mymaster"), -1);
    assert_int_equal(ev("slave a 127.0.0.1 6380 @ mymaster 127.0.0.1 6379 x", "mymaster"), -1);
    assert_int_equal(sentinel_parse_instance_event(NULL, 0, "mymaster"), -1);
}

static void test_hostport_eq(void **state)
{
    struct topo_hostport a = {.host = "Redis.Local", .port = 6379};
    struct topo_hostport b = {.host = "redis.local", .port = 6379};
    struct topo_hostport c = {.host = "redis.local", .port = 6380};
    assert_true(sentinel_hostport_eq(&a, &b));
    assert_false(sentinel_hostport_eq(&b, &c));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_master_addr_two_bulk_strings, teardown),
        cmocka_unit_test_teardown(test_master_addr_nil_is_unknown, teardown),
        cmocka_unit_test_teardown(test_master_addr_error_reply_passes_the_text, teardown),
        cmocka_unit_test_teardown(test_master_addr_bad_ports, teardown),
        cmocka_unit_test_teardown(test_master_addr_wrong_shapes, teardown),
        cmocka_unit_test_teardown(test_master_addr_host_too_long, teardown),
        cmocka_unit_test_teardown(test_role, teardown),
        cmocka_unit_test_teardown(test_flags, teardown),
        cmocka_unit_test_teardown(test_replicas_resp2_skips_down, teardown),
        cmocka_unit_test_teardown(test_replicas_resp3_maps, teardown),
        cmocka_unit_test_teardown(test_instances_empty_and_errors, teardown),
        cmocka_unit_test_teardown(test_instances_hostile_entries_skipped, teardown),
        cmocka_unit_test_teardown(test_message_resp2_and_resp3, teardown),
        cmocka_unit_test_teardown(test_message_rejects_others, teardown),
        cmocka_unit_test_teardown(test_switch_master, teardown),
        cmocka_unit_test_teardown(test_switch_master_malformed, teardown),
        cmocka_unit_test_teardown(test_instance_events, teardown),
        cmocka_unit_test_teardown(test_hostport_eq, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
