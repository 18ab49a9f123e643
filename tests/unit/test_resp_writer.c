/* tests/unit/test_resp_writer.c — the RESP command writer: exact encoding, binary safety,
 * integers, pipelining, consumption, and a round trip through our reader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "resp/resp.h"

static void expect_pending(struct resp_writer *w, const char *want, size_t n)
{
    size_t len;
    const char *p = resp_writer_data(w, &len);
    assert_int_equal(len, n);
    assert_memory_equal(p, want, n);
}

static void test_command_encodes_array_of_bulk_strings(void **state)
{
    struct resp_writer w;
    resp_writer_init(&w);
    const char *argv[] = {"SET", "key", "value", "EX", "60"};
    const size_t lens[] = {3, 3, 5, 2, 2};
    assert_int_equal(resp_writer_command(&w, 5, argv, lens), 0);
    static const char want[] =
        "*5\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n$2\r\nEX\r\n$2\r\n60\r\n";
    expect_pending(&w, want, sizeof want - 1);
    resp_writer_free(&w);
}

static void test_arguments_are_binary_safe(void **state)
{
    struct resp_writer w;
    resp_writer_init(&w);
    const char *argv[] = {"GET", "a\0\r\n*1"};
    const size_t lens[] = {3, 6};
    assert_int_equal(resp_writer_command(&w, 2, argv, lens), 0);
    static const char want[] = "*2\r\n$3\r\nGET\r\n$6\r\na\0\r\n*1\r\n";
    expect_pending(&w, want, sizeof want - 1);
    resp_writer_free(&w);
}

static void test_empty_argument_and_empty_command(void **state)
{
    struct resp_writer w;
    resp_writer_init(&w);
    const char *argv[] = {"ECHO", ""};
    const size_t lens[] = {4, 0};
    assert_int_equal(resp_writer_command(&w, 2, argv, lens), 0);
    assert_int_equal(resp_writer_command(&w, 0, NULL, NULL), 0);
    static const char want[] = "*2\r\n$4\r\nECHO\r\n$0\r\n\r\n*0\r\n";
    expect_pending(&w, want, sizeof want - 1);
    resp_writer_free(&w);
}

static void test_integer_arguments_in_decimal(void **state)
{
    static const struct {
        long long v;
        const char *text;
    } cases[] = {{0, "0"},
                 {9, "9"},
                 {10, "10"},
                 {99, "99"},
                 {100, "100"},
                 {-1, "-1"},
                 {3600, "3600"},
                 {1234567890123LL, "1234567890123"},
                 {LLONG_MAX, "9223372036854775807"},
                 {LLONG_MIN, "-9223372036854775808"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct resp_writer w;
        resp_writer_init(&w);
        assert_int_equal(resp_writer_arg_int(&w, cases[i].v), 0);
        char want[64];
        size_t tl = strlen(cases[i].text);
        size_t n = (size_t)snprintf(want, sizeof want, "$%zu\r\n%s\r\n", tl, cases[i].text);
        expect_pending(&w, want, n);
        resp_writer_free(&w);
    }
}

static void test_piecewise_equals_whole_command(void **state)
{
    struct resp_writer a, b;
    resp_writer_init(&a);
    resp_writer_init(&b);
    const char *argv[] = {"EXPIRE", "k", "300"};
    const size_t lens[] = {6, 1, 3};
    assert_int_equal(resp_writer_command(&a, 3, argv, lens), 0);
    assert_int_equal(resp_writer_array(&b, 3), 0);
    assert_int_equal(resp_writer_arg(&b, "EXPIRE", 6), 0);
    assert_int_equal(resp_writer_arg(&b, "k", 1), 0);
    assert_int_equal(resp_writer_arg_int(&b, 300), 0);
    size_t la;
    const char *pa = resp_writer_data(&a, &la);
    expect_pending(&b, pa, la);
    resp_writer_free(&a);
    resp_writer_free(&b);
}

static void test_commands_back_to_back_and_partial_consume(void **state)
{
    struct resp_writer w;
    resp_writer_init(&w);
    const char *get[] = {"GET", "k"};
    const size_t gl[] = {3, 1};
    const char *ttl[] = {"TTL", "k"};
    assert_int_equal(resp_writer_command(&w, 2, get, gl), 0);
    assert_int_equal(resp_writer_command(&w, 2, ttl, gl), 0);
    static const char want[] = "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*2\r\n$3\r\nTTL\r\n$1\r\nk\r\n";
    expect_pending(&w, want, sizeof want - 1);
    resp_writer_consume(&w, 5); /* the socket took 5 bytes */
    expect_pending(&w, want + 5, sizeof want - 1 - 5);
    resp_writer_consume(&w, 1000);
    assert_int_equal(resp_writer_pending(&w), 0);
    resp_writer_free(&w);
}

/* Appending after partial consumes keeps the unsent bytes in order, through moves. */
static void test_pending_bytes_survive_growth_and_compaction(void **state)
{
    struct resp_writer w;
    resp_writer_init(&w);
    char *expect = malloc(1 << 22);
    size_t head = 0, tail = 0;
    unsigned seed = 1;
    char arg[3000];
    for (int i = 0; i < 3000; i++) {
        seed = seed * 1103515245u + 12345u;
        size_t len = (seed >> 16) % sizeof arg;
        memset(arg, 'a' + i % 26, len);
        const char *argv[] = {"SET", arg};
        const size_t lens[] = {3, len};
        assert_int_equal(resp_writer_command(&w, 2, argv, lens), 0);
        tail += (size_t)sprintf(expect + tail, "*2\r\n$3\r\nSET\r\n$%zu\r\n", len);
        memcpy(expect + tail, arg, len);
        tail += len;
        memcpy(expect + tail, "\r\n", 2);
        tail += 2;
        size_t take = (seed >> 4) % 5000;
        if (take > tail - head) take = tail - head;
        size_t n;
        const char *p = resp_writer_data(&w, &n);
        assert_int_equal(n, tail - head);
        assert_memory_equal(p, expect + head, take);
        resp_writer_consume(&w, take);
        head += take;
        if (tail > (1 << 21)) { /* keep the mirror small: drain everything */
            p = resp_writer_data(&w, &n);
            assert_memory_equal(p, expect + head, n);
            resp_writer_consume(&w, n);
            head = tail = 0;
        }
    }
    size_t n;
    const char *p = resp_writer_data(&w, &n);
    assert_int_equal(n, tail - head);
    assert_memory_equal(p, expect + head, n);
    free(expect);
    resp_writer_free(&w);
}

static void test_round_trip_through_reader(void **state)
{
    struct resp_writer w;
    resp_writer_init(&w);
    char big[70000];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (char)(i * 31);
    const char *argv[] = {"SET", "\r\n", big};
    const size_t lens[] = {3, 2, sizeof big};
    assert_int_equal(resp_writer_command(&w, 3, argv, lens), 0);
    assert_int_equal(resp_writer_array(&w, 2), 0);
    assert_int_equal(resp_writer_arg(&w, "TTL", 3), 0);
    assert_int_equal(resp_writer_arg_int(&w, -42), 0);

    struct resp_reader *r = resp_reader_new(NULL);
    assert_non_null(r);
    size_t n;
    const char *p = resp_writer_data(&w, &n);
    assert_int_equal(resp_reader_feed(r, p, n), 0);
    const struct resp_value *v;
    assert_int_equal(resp_reader_next(r, &v), RESP_GOT_REPLY);
    assert_int_equal(v->type, RESP_ARRAY);
    assert_int_equal(v->len, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(v->elems[i].type, RESP_BULK);
        assert_int_equal(v->elems[i].len, lens[i]);
        assert_memory_equal(v->elems[i].str, argv[i], lens[i]);
    }
    assert_int_equal(resp_reader_next(r, &v), RESP_GOT_REPLY);
    assert_int_equal(v->len, 2);
    assert_memory_equal(v->elems[1].str, "-42", 3);
    assert_int_equal(resp_reader_next(r, &v), RESP_NEED_MORE);
    resp_reader_free(r);
    resp_writer_free(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_command_encodes_array_of_bulk_strings),
        cmocka_unit_test(test_arguments_are_binary_safe),
        cmocka_unit_test(test_empty_argument_and_empty_command),
        cmocka_unit_test(test_integer_arguments_in_decimal),
        cmocka_unit_test(test_piecewise_equals_whole_command),
        cmocka_unit_test(test_commands_back_to_back_and_partial_consume),
        cmocka_unit_test(test_pending_bytes_survive_growth_and_compaction),
        cmocka_unit_test(test_round_trip_through_reader),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
