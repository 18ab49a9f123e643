/* tests/unit/test_resp_reader.c — the RESP reader: every type, every limit and error rule,
 * split-point invariance, buffer management and allocation behaviour. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cmocka.h>

#include "resp/resp.h"

#define S(lit) lit, sizeof(lit) - 1

/* ---- helpers ---------------------------------------------------------------------- */

struct dump {
    char buf[8192];
    size_t len;
};

static void dump_put(struct dump *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(d->buf + d->len, sizeof d->buf - d->len, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < sizeof d->buf - d->len);
    d->len += (size_t)n;
}

static void dump_bytes(struct dump *d, const char *p, size_t n)
{
    dump_put(d, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            dump_put(d, "%c", c);
        else
            dump_put(d, "\\x%02x", c);
    }
    dump_put(d, "\"");
}

/* Canonical text of a tree; recursion is bounded by the reader's depth limit. */
static void dump_value(struct dump *d, const struct resp_value *v)
{
    if (v->attr) {
        dump_put(d, "|");
        dump_value(d, v->attr);
    }
    switch (v->type) {
    case RESP_INTEGER: dump_put(d, "int:%lld", v->integer); break;
    case RESP_BOOL: dump_put(d, "bool:%lld", v->integer); break;
    case RESP_NULL: dump_put(d, "null"); break;
    case RESP_DOUBLE:
        dump_put(d, "double:%.17g:", v->dbl);
        dump_bytes(d, v->str, v->len);
        break;
    case RESP_VERBATIM:
        dump_put(d, "verbatim:%s:", v->format);
        dump_bytes(d, v->str, v->len);
        break;
    case RESP_ARRAY:
    case RESP_MAP:
    case RESP_SET:
    case RESP_PUSH:
        dump_put(d, "%s[", resp_type_name(v->type));
        for (size_t i = 0; i < v->len; i++) {
            if (i) dump_put(d, ",");
            dump_value(d, &v->elems[i]);
        }
        dump_put(d, "]");
        break;
    default:
        dump_put(d, "%s:", resp_type_name(v->type));
        dump_bytes(d, v->str, v->len);
        break;
    }
}

static struct resp_reader *new_reader(void)
{
    struct resp_reader *r = resp_reader_new(NULL);
    assert_non_null(r);
    return r;
}

/* Feeds p whole and expects exactly one reply; returns its dump in out. */
static void expect_one(const char *p, size_t n, const char *want)
{
    struct resp_reader *r = new_reader();
    assert_int_equal(resp_reader_feed(r, p, n), 0);
    const struct resp_value *v;
    int rc = resp_reader_next(r, &v);
    if (rc < 0) fail_msg("unexpected error: %s", resp_reader_errstr(r));
    assert_true(rc == RESP_GOT_REPLY || rc == RESP_GOT_PUSH);
    struct dump d = {.len = 0};
    dump_value(&d, v);
    assert_string_equal(d.buf, want);
    assert_int_equal(resp_reader_next(r, &v), RESP_NEED_MORE);
    assert_int_equal(resp_reader_buffered(r), 0);
    resp_reader_free(r);
}

/* Feeds p whole with limits lim (NULL: defaults) and expects, after any valid replies, a
 * protocol error with the given rule at the given stream offset. */
static void expect_error_lim(const struct resp_limits *lim, const char *p, size_t n,
                             enum resp_rule rule, uint64_t off)
{
    struct resp_reader *r = resp_reader_new(lim);
    assert_non_null(r);
    assert_int_equal(resp_reader_feed(r, p, n), 0);
    const struct resp_value *v;
    int rc;
    while ((rc = resp_reader_next(r, &v)) > 0) continue; /* valid replies before the error */
    if (rc != RESP_ERR_PROTOCOL) fail_msg("expected an error, got status %d", rc);
    assert_null(v);
    if (resp_reader_error(r) != rule)
        fail_msg("rule %d, want %d: %s", resp_reader_error(r), rule, resp_reader_errstr(r));
    assert_int_equal(resp_reader_error_offset(r), off);
    char want[64];
    snprintf(want, sizeof want, "at byte %llu", (unsigned long long)off);
    assert_non_null(strstr(resp_reader_errstr(r), want));
    resp_reader_free(r);
}

static void expect_error(const char *p, size_t n, enum resp_rule rule, uint64_t off)
{
    expect_error_lim(NULL, p, n, rule, off);
}

static void expect_need_more(const char *p, size_t n)
{
    struct resp_reader *r = new_reader();
    assert_int_equal(resp_reader_feed(r, p, n), 0);
    const struct resp_value *v;
    assert_int_equal(resp_reader_next(r, &v), RESP_NEED_MORE);
    resp_reader_free(r);
}

/* ---- one test per type ------------------------------------------------------------ */

static void test_simple_string(void **state)
{
    expect_one(S("+OK\r\n"), "simple string:\"OK\"");
    expect_one(S("+\r\n"), "simple string:\"\"");
}

static void test_simple_error(void **state)
{
    expect_one(S("-ERR unknown command\r\n"), "error:\"ERR unknown command\"");
}

static void test_integer(void **state)
{
    expect_one(S(":0\r\n"), "int:0");
    expect_one(S(":-42\r\n"), "int:-42");
    expect_one(S(":9223372036854775807\r\n"), "int:9223372036854775807");
    expect_one(S(":-9223372036854775808\r\n"), "int:-9223372036854775808");
}

static void test_integer_keeps_its_text(void **state)
{
    struct resp_reader *r = new_reader();
    assert_int_equal(resp_reader_feed(r, S(":-123\r\n")), 0);
    const struct resp_value *v;
    assert_int_equal(resp_reader_next(r, &v), RESP_GOT_REPLY);
    assert_int_equal(v->len, 4);
    assert_memory_equal(v->str, "-123", 4);
    resp_reader_free(r);
}

static void test_bulk_string_is_binary_safe(void **state)
{
    expect_one(S("$8\r\na\0b\r\nc\r\n\r\n"), "bulk string:\"a\\x00b\\x0d\\x0ac\\x0d\\x0a\"");
}

static void test_empty_bulk_string(void **state)
{
    expect_one(S("$0\r\n\r\n"), "bulk string:\"\"");
}

static void test_null_bulk_resp2(void **state)
{
    expect_one(S("$-1\r\n"), "null");
}

static void test_null_array_resp2(void **state)
{
    expect_one(S("*-1\r\n"), "null");
}

static void test_null_resp3(void **state)
{
    expect_one(S("_\r\n"), "null");
}

static void test_boolean(void **state)
{
    expect_one(S("#t\r\n"), "bool:1");
    expect_one(S("#f\r\n"), "bool:0");
}

static void test_double_finite(void **state)
{
    expect_one(S(",1.5\r\n"), "double:1.5:\"1.5\"");
    expect_one(S(",-2e3\r\n"), "double:-2000:\"-2e3\"");
    expect_one(S(",10\r\n"), "double:10:\"10\"");
    expect_one(S(",+0.25E-1\r\n"), "double:0.025000000000000001:\"+0.25E-1\"");
}

static void test_double_inf_and_nan(void **state)
{
    const char *in[] = {",inf\r\n", ",-inf\r\n", ",nan\r\n"};
    for (int i = 0; i < 3; i++) {
        struct resp_reader *r = new_reader();
        assert_int_equal(resp_reader_feed(r, in[i], strlen(in[i])), 0);
        const struct resp_value *v;
        assert_int_equal(resp_reader_next(r, &v), RESP_GOT_REPLY);
        assert_int_equal(v->type, RESP_DOUBLE);
        if (i == 0) assert_true(isinf(v->dbl) && v->dbl > 0);
        if (i == 1) assert_true(isinf(v->dbl) && v->dbl < 0);
        if (i == 2) assert_true(isnan(v->dbl));
        resp_reader_free(r);
    }
}

static void test_big_number(void **state)
{
    expect_one(S("(3492890328409238509324850943850943825024385\r\n"),
               "big number:\"3492890328409238509324850943850943825024385\"");
    expect_one(S("(-12\r\n"), "big number:\"-12\"");
}

static void test_bulk_error(void **state)
{
    expect_one(S("!21\r\nSYNTAX invalid syntax\r\n"), "bulk error:\"SYNTAX invalid syntax\"");
}

static void test_verbatim_string(void **state)
{
    expect_one(S("=15\r\ntxt:Some string\r\n"), "verbatim:txt:\"Some string\"");
    expect_one(S("=4\r\nmkd:\r\n"), "verbatim:mkd:\"\"");
}

static void test_array_nested(void **state)
{
    expect_one(S("*3\r\n:1\r\n*2\r\n+a\r\n$1\r\nb\r\n$-1\r\n"),
               "array[int:1,array[simple string:\"a\",bulk string:\"b\"],null]");
}

static void test_empty_array(void **state)
{
    expect_one(S("*0\r\n"), "array[]");
}

static void test_map(void **state)
{
    expect_one(S("%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n"),
               "map[simple string:\"first\",int:1,simple string:\"second\",int:2]");
}

static void test_set(void **state)
{
    expect_one(S("~2\r\n+orange\r\n#t\r\n"), "set[simple string:\"orange\",bool:1]");
}

static void test_push_is_returned_apart(void **state)
{
    struct resp_reader *r = new_reader();
    assert_int_equal(resp_reader_feed(r, S(":1\r\n>3\r\n+message\r\n+chan\r\n+hello\r\n:2\r\n")),
                     0);
    const struct resp_value *v;
    assert_int_equal(resp_reader_next(r, &v), RESP_GOT_REPLY);
    assert_int_equal(v->integer, 1);
    assert_int_equal(resp_reader_next(r, &v), RESP_GOT_PUSH);
    assert_int_equal(v->type, RESP_PUSH);
    assert_int_equal(v->len, 3);
    assert_memory_equal(v->elems[2].str, "hello", 5);
    assert_int_equal(resp_reader_next(r, &v), RESP_GOT_REPLY);
    assert_int_equal(v->integer, 2);
    resp_reader_free(r);
}

static void test_attribute_attaches_to_following_reply(void **state)
{
    struct resp_reader *r = new_reader();
    assert_int_equal(resp_reader_feed(r, S("|1\r\n+key-popularity\r\n%1\r\n$1\r\na\r\n,0.19\r\n"
                                           "*2\r\n:2039123\r\n:9543892\r\n+next\r\n")),
                     0);
    const struct resp_value *v;
    assert_int_equal(resp_reader_next(r, &v), RESP_GOT_REPLY);
    struct dump d = {.len = 0};
    dump_value(&d, v);
    assert_string_equal(d.buf, "|map[simple string:\"key-popularity\",map[bulk string:\"a\","
                               "double:0.19:\"0.19\"]]array[int:2039123,int:9543892]");
    /* the attribute is not a reply of its own, and applies to one reply only */
    assert_int_equal(resp_reader_next(r, &v), RESP_GOT_REPLY);
    assert_int_equal(v->type, RESP_STRING);
    assert_null(v->attr);
    resp_reader_free(r);
}

static void test_attribute_inside_aggregate_attaches_to_element(void **state)
{
    expect_one(S("*2\r\n:1\r\n|1\r\n+ttl\r\n:3600\r\n:2\r\n"),
               "array[int:1,|map[simple string:\"ttl\",int:3600]int:2]");
}

static void test_attribute_before_aggregate_attaches_to_it(void **state)
{
    expect_one(S("|0\r\n*1\r\n:1\r\n"), "|map[]array[int:1]");
}

/* ---- errors, one per rule --------------------------------------------------------- */

static void test_rejects_unknown_type_byte(void **state)
{
    expect_error(S("+OK\r\n@x\r\n"), RESP_RULE_TYPE, 5);
    expect_error(S("\r\n"), RESP_RULE_TYPE, 0);
}

static void test_resp2_only_rejects_resp3_types(void **state)
{
    struct resp_limits lim;
    resp_limits_default(&lim);
    lim.resp2_only = 1;
    expect_error_lim(&lim, S("_\r\n"), RESP_RULE_TYPE, 0);
    expect_error_lim(&lim, S("*1\r\n%0\r\n"), RESP_RULE_TYPE, 4);
    expect_error_lim(&lim, S(">0\r\n"), RESP_RULE_TYPE, 0);
}

static void test_rejects_streamed_types(void **state)
{
    expect_error(S("$?\r\n;4\r\nHell\r\n;0\r\n"), RESP_RULE_STREAMED, 1);
    expect_error(S("*?\r\n:1\r\n.\r\n"), RESP_RULE_STREAMED, 1);
    expect_error(S("%?\r\n"), RESP_RULE_STREAMED, 1);
    expect_error(S(";4\r\nHell\r\n"), RESP_RULE_STREAMED, 0);
    expect_error(S(".\r\n"), RESP_RULE_STREAMED, 0);
}

static void test_integer_rejects_leading_plus(void **state)
{
    expect_error(S(":+5\r\n"), RESP_RULE_INTEGER, 1);
}

static void test_integer_rejects_empty(void **state)
{
    expect_error(S(":\r\n"), RESP_RULE_INTEGER, 1);
}

static void test_integer_rejects_minus_alone(void **state)
{
    expect_error(S(":-\r\n"), RESP_RULE_INTEGER, 2);
}

static void test_integer_rejects_leading_zero_and_minus_zero(void **state)
{
    expect_error(S(":007\r\n"), RESP_RULE_INTEGER, 1);
    expect_error(S(":-0\r\n"), RESP_RULE_INTEGER, 2);
}

static void test_integer_rejects_non_digit(void **state)
{
    expect_error(S(":12a\r\n"), RESP_RULE_INTEGER, 3);
    expect_error(S(": 1\r\n"), RESP_RULE_INTEGER, 1);
}

static void test_integer_rejects_overflow(void **state)
{
    expect_error(S(":9223372036854775808\r\n"), RESP_RULE_RANGE, 19);
    expect_error(S(":-9223372036854775809\r\n"), RESP_RULE_RANGE, 20);
    /* too many digits is an error before the line ends */
    expect_error(S(":123456789012345678901"), RESP_RULE_RANGE, 21);
}

static void test_length_rejects_negative_other_than_null(void **state)
{
    expect_error(S("$-2\r\n"), RESP_RULE_LENGTH, 1);
    expect_error(S("*-5\r\n"), RESP_RULE_LENGTH, 1);
    expect_error(S("%-1\r\n"), RESP_RULE_LENGTH, 1);
    expect_error(S("!-1\r\n"), RESP_RULE_LENGTH, 1);
}

static void test_length_rejects_bad_syntax(void **state)
{
    expect_error(S("$+1\r\na\r\n"), RESP_RULE_INTEGER, 1);
    expect_error(S("$01\r\na\r\n"), RESP_RULE_INTEGER, 1);
    expect_error(S("*\r\n"), RESP_RULE_INTEGER, 1);
}

static void test_double_rejects_malformed(void **state)
{
    const char *bad[] = {",1.\r\n",   ",.5\r\n", ",abc\r\n",  ",1e\r\n",      ",\r\n",
                         ",0x10\r\n", ",1 \r\n", ",-nan\r\n", ",infinity\r\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_error(bad[i], strlen(bad[i]), RESP_RULE_DOUBLE, 1);
}

static void test_double_rejects_overlong_line(void **state)
{
    char buf[128] = ",";
    memset(buf + 1, '1', 70);
    expect_error(buf, 71, RESP_RULE_DOUBLE, 65);
}

static void test_boolean_rejects_other_values(void **state)
{
    expect_error(S("#x\r\n"), RESP_RULE_BOOL, 1);
    expect_error(S("#\r\n"), RESP_RULE_BOOL, 1);
    expect_error(S("#tt\r\n"), RESP_RULE_BOOL, 2);
}

static void test_null_rejects_payload(void **state)
{
    expect_error(S("_x\r\n"), RESP_RULE_NULL, 1);
}

static void test_big_number_rejects_non_digits(void **state)
{
    expect_error(S("(12a\r\n"), RESP_RULE_BIGNUM, 3);
    expect_error(S("(\r\n"), RESP_RULE_BIGNUM, 1);
    expect_error(S("(-\r\n"), RESP_RULE_BIGNUM, 2);
    expect_error(S("(+1\r\n"), RESP_RULE_BIGNUM, 1);
}

static void test_verbatim_requires_format_and_colon(void **state)
{
    expect_error(S("=3\r\ntxt\r\n"), RESP_RULE_VERBATIM, 7);
    expect_error(S("=5\r\ntxt_a\r\n"), RESP_RULE_VERBATIM, 7);
    expect_error(S("=5\r\nt-t:a\r\n"), RESP_RULE_VERBATIM, 5);
}

static void test_attribute_after_attribute_rejected(void **state)
{
    expect_error(S("|0\r\n|0\r\n+x\r\n"), RESP_RULE_ATTRIBUTE, 4);
}

static void test_push_inside_aggregate_rejected(void **state)
{
    expect_error(S("*1\r\n>1\r\n:1\r\n"), RESP_RULE_PUSH, 4);
}

static void test_crlf_bare_lf_in_line_rejected(void **state)
{
    expect_error(S("+OK\n"), RESP_RULE_CRLF, 3);
    expect_error(S("+O\nK\r\n"), RESP_RULE_CRLF, 2);
    expect_error(S(":1\n"), RESP_RULE_CRLF, 2);
}

static void test_crlf_bare_cr_in_line_rejected(void **state)
{
    expect_error(S("+O\rK\r\n"), RESP_RULE_CRLF, 3);
    expect_error(S(":1\rx"), RESP_RULE_CRLF, 3);
}

static void test_crlf_after_bulk_payload_required(void **state)
{
    expect_error(S("$1\r\naXY"), RESP_RULE_CRLF, 5);
    expect_error(S("$1\r\na\rY"), RESP_RULE_CRLF, 6);
    expect_error(S("$3\r\nab\r\n\r\n"), RESP_RULE_CRLF, 7);
}

/* ---- limits --------------------------------------------------------------------- */

static void test_bulk_length_limit_default_512mib(void **state)
{
    expect_need_more(S("$536870912\r\n"));
    expect_error(S("$536870913\r\n"), RESP_RULE_BULK_LIMIT, 1);
    expect_error(S("$9223372036854775807\r\n"), RESP_RULE_BULK_LIMIT, 1);
}

static void test_bulk_length_limit_configurable(void **state)
{
    struct resp_limits lim;
    resp_limits_default(&lim);
    lim.max_bulk = 10;
    expect_error_lim(&lim, S("$11\r\n"), RESP_RULE_BULK_LIMIT, 1);
    expect_error_lim(&lim, S("=11\r\n"), RESP_RULE_BULK_LIMIT, 1);
    /* the same limit bounds simple lines, before their CR arrives */
    expect_error_lim(&lim, S("+01234567890"), RESP_RULE_BULK_LIMIT, 11);
    struct resp_reader *r = resp_reader_new(&lim);
    assert_int_equal(resp_reader_feed(r, S("$10\r\n0123456789\r\n+0123456789\r\n")), 0);
    const struct resp_value *v;
    assert_int_equal(resp_reader_next(r, &v), RESP_GOT_REPLY);
    assert_int_equal(resp_reader_next(r, &v), RESP_GOT_REPLY);
    resp_reader_free(r);
}

static void test_element_count_limit(void **state)
{
    struct resp_limits lim;
    resp_limits_default(&lim);
    lim.max_elements = 3;
    expect_error_lim(&lim, S("*4\r\n"), RESP_RULE_COUNT_LIMIT, 1);
    expect_error_lim(&lim, S("%2\r\n"), RESP_RULE_COUNT_LIMIT, 1); /* 4 entries */
    expect_error_lim(&lim, S(">9223372036854775807\r\n"), RESP_RULE_COUNT_LIMIT, 1);
    struct resp_reader *r = resp_reader_new(&lim);
    assert_int_equal(resp_reader_feed(r, S("*3\r\n:1\r\n:2\r\n:3\r\n")), 0);
    const struct resp_value *v;
    assert_int_equal(resp_reader_next(r, &v), RESP_GOT_REPLY);
    assert_int_equal(v->len, 3);
    resp_reader_free(r);
}

static void test_element_count_limit_default(void **state)
{
    expect_need_more(S("*1048576\r\n"));
    expect_error(S("*1048577\r\n"), RESP_RULE_COUNT_LIMIT, 1);
}

static size_t nested(char *buf, int levels, const char *leaf)
{
    size_t n = 0;
    for (int i = 0; i < levels; i++) n += (size_t)sprintf(buf + n, "*1\r\n");
    n += (size_t)sprintf(buf + n, "%s", leaf);
    return n;
}

static void test_depth_limit_default_64(void **state)
{
    char buf[1024];
    size_t n = nested(buf, 64, ":1\r\n");
    struct resp_reader *r = new_reader();
    assert_int_equal(resp_reader_feed(r, buf, n), 0);
    const struct resp_value *v;
    assert_int_equal(resp_reader_next(r, &v), RESP_GOT_REPLY);
    for (int i = 0; i < 64; i++) {
        assert_int_equal(v->type, RESP_ARRAY);
        v = &v->elems[0];
    }
    assert_int_equal(v->integer, 1);
    resp_reader_free(r);

    n = nested(buf, 65, ":1\r\n");
    expect_error(buf, n, RESP_RULE_DEPTH, 64 * 4);
    /* an empty or null aggregate at level 65 counts too */
    n = nested(buf, 64, "*0\r\n");
    expect_error(buf, n, RESP_RULE_DEPTH, 64 * 4);
    n = nested(buf, 64, "*-1\r\n");
    expect_error(buf, n, RESP_RULE_DEPTH, 64 * 4);
}

static void test_depth_limit_counts_maps_sets_and_attributes(void **state)
{
    struct resp_limits lim;
    resp_limits_default(&lim);
    lim.max_depth = 2;
    expect_error_lim(&lim, S("%1\r\n~1\r\n*1\r\n"), RESP_RULE_DEPTH, 8);
    expect_error_lim(&lim, S("*1\r\n*1\r\n|1\r\n"), RESP_RULE_DEPTH, 8);
    struct resp_reader *r = resp_reader_new(&lim);
    assert_int_equal(resp_reader_feed(r, S("%1\r\n~1\r\n:1\r\n:2\r\n")), 0);
    const struct resp_value *v;
    assert_int_equal(resp_reader_next(r, &v), RESP_GOT_REPLY);
    resp_reader_free(r);
}

/* ---- error state ---------------------------------------------------------------- */

static void test_error_is_sticky(void **state)
{
    struct resp_reader *r = new_reader();
    assert_int_equal(resp_reader_feed(r, S(":1\r\n:x\r\n")), 0);
    const struct resp_value *v;
    assert_int_equal(resp_reader_next(r, &v), RESP_GOT_REPLY);
    assert_int_equal(resp_reader_next(r, &v), RESP_ERR_PROTOCOL);
    assert_int_equal(resp_reader_feed(r, S("+OK\r\n")), 0);
    assert_int_equal(resp_reader_next(r, &v), RESP_ERR_PROTOCOL);
    assert_int_equal(resp_reader_error(r), RESP_RULE_INTEGER);
    size_t avail;
    assert_null(resp_reader_space(r, 16, &avail));
    resp_reader_free(r);
}

static void test_error_message_names_rule_and_stream_offset(void **state)
{
    /* offsets count from the first byte ever fed, across consumed and compacted bytes */
    struct resp_reader *r = new_reader();
    const struct resp_value *v;
    uint64_t sent = 0;
    for (int i = 0; i < 20000; i++) {
        assert_int_equal(resp_reader_feed(r, S("+OK\r\n")), 0);
        sent += 5;
        assert_int_equal(resp_reader_next(r, &v), RESP_GOT_REPLY);
    }
    assert_int_equal(resp_reader_feed(r, S("*2\r\n:1\r\n#maybe\r\n")), 0);
    assert_int_equal(resp_reader_next(r, &v), RESP_ERR_PROTOCOL);
    /* "#maybe": the boolean is one byte, so the second payload byte breaks the rule */
    assert_int_equal(resp_reader_error_offset(r), sent + 10);
    char want[128];
    snprintf(want, sizeof want, "bad boolean at byte %llu", (unsigned long long)(sent + 10));
    assert_non_null(strstr(resp_reader_errstr(r), want));
    resp_reader_free(r);
}

/* ---- split points ------------------------------------------------------------------ */

static const struct {
    const char *p;
    size_t n;
} corpus[] = {
    {S("+OK\r\n")},
    {S("-ERR wrong\r\n")},
    {S(":-9223372036854775808\r\n")},
    {S("$12\r\nhello\r\nworld\r\n")},
    {S("$0\r\n\r\n")},
    {S("$-1\r\n")},
    {S("*-1\r\n")},
    {S("*0\r\n")},
    {S("_\r\n")},
    {S("#f\r\n")},
    {S(",-1.25e-10\r\n")},
    {S(",nan\r\n")},
    {S("(-123456789012345678901234567890\r\n")},
    {S("!10\r\nERR bulk\r\n\r\n")},
    {S("=9\r\ntxt:hello\r\n")},
    {S("*2\r\n$3\r\nfoo\r\n:42\r\n")},
    {S("*3\r\n*2\r\n:1\r\n*1\r\n+x\r\n*0\r\n$-1\r\n")},
    {S("%2\r\n+a\r\n~2\r\n:1\r\n:2\r\n$1\r\nb\r\n%0\r\n")},
    {S(">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$4\r\nbody\r\n")},
    {S("|1\r\n+ttl\r\n:5\r\n*2\r\n|1\r\n+k\r\n+v\r\n$2\r\nab\r\n:7\r\n")},
    {S("*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:10\r\n")},
};

static void dump_reply(struct resp_reader *r, struct dump *d, int *got)
{
    const struct resp_value *v;
    int rc = resp_reader_next(r, &v);
    if (rc < 0) fail_msg("error: %s", resp_reader_errstr(r));
    if (rc == RESP_NEED_MORE) return;
    dump_value(d, v);
    dump_put(d, rc == RESP_GOT_PUSH ? " (push)\n" : "\n");
    (*got)++;
    assert_int_equal(resp_reader_next(r, &v), RESP_NEED_MORE);
}

static void test_every_split_point_gives_same_tree(void **state)
{
    for (size_t c = 0; c < sizeof corpus / sizeof corpus[0]; c++) {
        struct dump whole = {.len = 0};
        int got = 0;
        struct resp_reader *r = new_reader();
        assert_int_equal(resp_reader_feed(r, corpus[c].p, corpus[c].n), 0);
        dump_reply(r, &whole, &got);
        assert_int_equal(got, 1);
        resp_reader_free(r);

        for (size_t cut = 0; cut <= corpus[c].n; cut++) {
            struct dump d = {.len = 0};
            got = 0;
            r = new_reader();
            assert_int_equal(resp_reader_feed(r, corpus[c].p, cut), 0);
            dump_reply(r, &d, &got);
            assert_int_equal(got, cut == corpus[c].n);
            assert_int_equal(resp_reader_feed(r, corpus[c].p + cut, corpus[c].n - cut), 0);
            dump_reply(r, &d, &got);
            assert_int_equal(got, 1);
            assert_string_equal(d.buf, whole.buf);
            resp_reader_free(r);
        }
    }
}

static void test_one_byte_at_a_time_gives_same_tree(void **state)
{
    for (size_t c = 0; c < sizeof corpus / sizeof corpus[0]; c++) {
        struct dump whole = {.len = 0}, d = {.len = 0};
        int got = 0;
        struct resp_reader *r = new_reader();
        assert_int_equal(resp_reader_feed(r, corpus[c].p, corpus[c].n), 0);
        dump_reply(r, &whole, &got);
        resp_reader_free(r);

        got = 0;
        r = new_reader();
        for (size_t i = 0; i < corpus[c].n; i++) {
            assert_int_equal(resp_reader_feed(r, corpus[c].p + i, 1), 0);
            dump_reply(r, &d, &got);
            assert_int_equal(got, i + 1 == corpus[c].n);
        }
        assert_string_equal(d.buf, whole.buf);
        resp_reader_free(r);
    }
}

/* The whole corpus as one stream, in chunks of every size from 1 to 64. */
static void test_stream_in_any_chunk_size_gives_same_trees(void **state)
{
    static char stream[4096];
    size_t n = 0;
    for (size_t c = 0; c < sizeof corpus / sizeof corpus[0]; c++) {
        memcpy(stream + n, corpus[c].p, corpus[c].n);
        n += corpus[c].n;
    }
    struct dump whole = {.len = 0};
    int got = 0;
    struct resp_reader *r = new_reader();
    assert_int_equal(resp_reader_feed(r, stream, n), 0);
    const struct resp_value *w;
    int wrc;
    while ((wrc = resp_reader_next(r, &w)) > 0) {
        dump_value(&whole, w);
        dump_put(&whole, wrc == RESP_GOT_PUSH ? " (push)\n" : "\n");
        got++;
    }
    assert_int_equal(wrc, RESP_NEED_MORE);
    assert_int_equal(got, (int)(sizeof corpus / sizeof corpus[0]));
    resp_reader_free(r);

    for (size_t chunk = 1; chunk <= 64; chunk++) {
        struct dump d = {.len = 0};
        const struct resp_value *v;
        got = 0;
        r = new_reader();
        for (size_t off = 0; off < n; off += chunk) {
            size_t len = n - off < chunk ? n - off : chunk;
            assert_int_equal(resp_reader_feed(r, stream + off, len), 0);
            int rc;
            while ((rc = resp_reader_next(r, &v)) > 0) {
                dump_value(&d, v);
                dump_put(&d, rc == RESP_GOT_PUSH ? " (push)\n" : "\n");
                got++;
            }
            assert_int_equal(rc, RESP_NEED_MORE);
        }
        assert_string_equal(d.buf, whole.buf);
        resp_reader_free(r);
    }
}

static void test_error_rule_and_offset_independent_of_split(void **state)
{
    static const char bad[] = "*2\r\n$3\r\nabc\r\n:12x\r\n";
    const size_t n = sizeof bad - 1;
    for (size_t cut = 0; cut <= n; cut++) {
        struct resp_reader *r = new_reader();
        const struct resp_value *v;
        assert_int_equal(resp_reader_feed(r, bad, cut), 0);
        int rc = resp_reader_next(r, &v);
        assert_true(rc == RESP_NEED_MORE || rc == RESP_ERR_PROTOCOL);
        assert_int_equal(resp_reader_feed(r, bad + cut, n - cut), 0);
        assert_int_equal(resp_reader_next(r, &v), RESP_ERR_PROTOCOL);
        assert_int_equal(resp_reader_error(r), RESP_RULE_INTEGER);
        assert_int_equal(resp_reader_error_offset(r), 16);
        resp_reader_free(r);
    }
}

/* ---- buffer, zero copy, allocations ---------------------------------------------- */

static void test_bulk_is_a_slice_of_the_read_buffer(void **state)
{
    struct resp_reader *r = new_reader();
    size_t avail;
    char *w = resp_reader_space(r, 64, &avail);
    assert_non_null(w);
    assert_true(avail >= 64);
    memcpy(w, "$5\r\nhello\r\n", 11);
    resp_reader_commit(r, 11);
    const struct resp_value *v;
    assert_int_equal(resp_reader_next(r, &v), RESP_GOT_REPLY);
    assert_ptr_equal(v->str, w + 4);
    resp_reader_free(r);
}

static void test_space_then_commit_in_pieces(void **state)
{
    static const char msg[] = "*2\r\n$3\r\nGET\r\n:1\r\n";
    struct resp_reader *r = new_reader();
    const struct resp_value *v;
    for (size_t i = 0; i < sizeof msg - 1; i++) {
        size_t avail;
        char *w = resp_reader_space(r, 1, &avail);
        assert_non_null(w);
        w[0] = msg[i];
        resp_reader_commit(r, 1);
        int rc = resp_reader_next(r, &v);
        assert_int_equal(rc, i + 2 == sizeof msg ? RESP_GOT_REPLY : RESP_NEED_MORE);
    }
    assert_int_equal(v->elems[0].len, 3);
    assert_memory_equal(v->elems[0].str, "GET", 3);
    resp_reader_free(r);
}

/* A reply that spans many feeds while the buffer grows and compacts keeps every string. */
static void test_partial_reply_survives_buffer_moves(void **state)
{
    enum { N = 8000 }; /* 152 KB: the 16 KiB buffer must grow at least twice */
    static char stream[N * 40 + 64];
    size_t n = (size_t)sprintf(stream, "+first\r\n*%d\r\n", N);
    for (int i = 0; i < N; i++) n += (size_t)sprintf(stream + n, "$%d\r\nvalue-%06d\r\n", 12, i);
    struct resp_reader *r = new_reader();
    const struct resp_value *v;
    assert_int_equal(resp_reader_feed(r, stream, 8), 0); /* "+first\r\n" */
    assert_int_equal(resp_reader_next(r, &v), RESP_GOT_REPLY);
    for (size_t off = 8; off < n; off += 1000) {
        size_t len = n - off < 1000 ? n - off : 1000;
        uint64_t moves = resp_reader_stats(r)->compactions + resp_reader_stats(r)->grows;
        assert_int_equal(resp_reader_feed(r, stream + off, len), 0);
        assert_true(resp_reader_stats(r)->compactions + resp_reader_stats(r)->grows <= moves + 1);
        int rc = resp_reader_next(r, &v);
        assert_int_equal(rc, off + len == n ? RESP_GOT_REPLY : RESP_NEED_MORE);
    }
    assert_true(resp_reader_stats(r)->grows >= 2);
    assert_int_equal(v->len, N);
    for (int i = 0; i < N; i++) {
        char want[16];
        sprintf(want, "value-%06d", i);
        assert_int_equal(v->elems[i].len, 12);
        assert_memory_equal(v->elems[i].str, want, 12);
    }
    resp_reader_free(r);
}

/* Many replies in 4 KiB feeds: each feed moves the buffer at most once. */
static void test_buffer_moves_at_most_once_per_feed(void **state)
{
    static char stream[1 << 20];
    size_t n = 0;
    unsigned seed = 7;
    while (n < sizeof stream - 600) {
        seed = seed * 1103515245u + 12345u;
        size_t len = 100 + (seed >> 16) % 400;
        n += (size_t)sprintf(stream + n, "$%zu\r\n", len);
        memset(stream + n, 'x', len);
        n += len;
        memcpy(stream + n, "\r\n", 2);
        n += 2;
    }
    struct resp_reader *r = new_reader();
    const struct resp_value *v;
    size_t feeds = 0;
    for (size_t off = 0; off < n; off += 4096) {
        size_t len = n - off < 4096 ? n - off : 4096;
        uint64_t moves = resp_reader_stats(r)->compactions + resp_reader_stats(r)->grows;
        assert_int_equal(resp_reader_feed(r, stream + off, len), 0);
        feeds++;
        assert_true(resp_reader_stats(r)->compactions + resp_reader_stats(r)->grows <= moves + 1);
        while (resp_reader_next(r, &v) > 0) assert_int_equal(v->type, RESP_BULK);
    }
    /* a few hundred bytes of tail per move, not the whole buffer */
    assert_true(resp_reader_stats(r)->bytes_moved < feeds * 600);
    resp_reader_free(r);
}

static void test_no_allocation_per_reply_in_steady_state(void **state)
{
    static const char one[] = "*2\r\n$3\r\nabc\r\n:1\r\n+OK\r\n:5\r\n$2\r\nxy\r\n"
                              "*2\r\n%1\r\n+k\r\n~1\r\n:1\r\n|1\r\n+a\r\n+b\r\n:2\r\n";
    struct resp_reader *r = new_reader();
    const struct resp_value *v;
    uint64_t allocs = 0;
    for (int round = 0; round < 2000; round++) {
        assert_int_equal(resp_reader_feed(r, one, sizeof one - 1), 0);
        int got = 0;
        while (resp_reader_next(r, &v) > 0) got++;
        assert_int_equal(got, 5);
        if (round == 10) allocs = resp_reader_stats(r)->allocs;
    }
    assert_int_equal(resp_reader_stats(r)->allocs, allocs);
    assert_int_equal(resp_reader_stats(r)->replies, 2000 * 5);
    resp_reader_free(r);
}

static void test_declared_count_allocates_nothing_up_front(void **state)
{
    struct resp_reader *r = new_reader();
    uint64_t allocs = resp_reader_stats(r)->allocs;
    const struct resp_value *v;
    assert_int_equal(resp_reader_feed(r, S("*1000000\r\n*1000000\r\n*1000000\r\n:1\r\n")), 0);
    assert_int_equal(resp_reader_next(r, &v), RESP_NEED_MORE);
    assert_int_equal(resp_reader_stats(r)->allocs, allocs);
    resp_reader_free(r);
}

static void test_large_aggregate_is_freed_without_recursion(void **state)
{
    /* 64 levels of 2-element arrays, then many siblings: returned and released */
    char buf[4096];
    size_t n = 0;
    for (int i = 0; i < 63; i++) n += (size_t)sprintf(buf + n, "*2\r\n:%d\r\n", i);
    n += (size_t)sprintf(buf + n, "*1\r\n:63\r\n+after\r\n");
    struct resp_reader *r = new_reader();
    const struct resp_value *v;
    assert_int_equal(resp_reader_feed(r, buf, n), 0);
    assert_int_equal(resp_reader_next(r, &v), RESP_GOT_REPLY);
    for (int i = 0; i < 63; i++) {
        assert_int_equal(v->elems[0].integer, i);
        v = &v->elems[1];
    }
    assert_int_equal(v->elems[0].integer, 63);
    assert_int_equal(resp_reader_next(r, &v), RESP_GOT_REPLY);
    assert_memory_equal(v->str, "after", 5);
    resp_reader_free(r);
}

/* Fast path and general parser (2nd arena block, attribute, push) alternate at any split. */
static void test_fast_and_general_paths_alternate(void **state)
{
    static char stream[4096];
    size_t n = (size_t)sprintf(stream, "*300\r\n");
    for (int i = 0; i < 300; i++) n += (size_t)sprintf(stream + n, ":%d\r\n", i);
    n += (size_t)sprintf(stream + n,
                         "*2\r\n$3\r\nabc\r\n:7\r\n|1\r\n+k\r\n+v\r\n+OK\r\n>2\r\n+m\r\n:1\r\n"
                         ":-1\r\n*2\r\n*1\r\n:1\r\n+z\r\n-E x\r\n");
    static struct dump whole, d;
    for (size_t c = n; c >= 1; c = c == n ? 64 : c - 1) {
        struct resp_reader *r = new_reader();
        const struct resp_value *v;
        for (size_t off = d.len = 0; off < n; off += c) {
            assert_int_equal(resp_reader_feed(r, stream + off, n - off < c ? n - off : c), 0);
            for (int rc; (rc = resp_reader_next(r, &v)) != RESP_NEED_MORE;) {
                assert_true(rc > 0);
                dump_value(&d, v);
                dump_put(&d, rc == RESP_GOT_PUSH ? " (push)\n" : "\n");
            }
        }
        assert_string_equal(d.buf, (c == n ? (whole = d) : whole).buf);
        resp_reader_free(r);
    }
    assert_string_equal(strstr(whole.buf, "int:299]\n"),
                        "int:299]\narray[bulk string:\"abc\",int:7]\n|map[simple string:\"k\","
                        "simple string:\"v\"]simple string:\"OK\"\npush[simple string:\"m\",int:1] "
                        "(push)\nint:-1\narray[array[int:1],simple string:\"z\"]\nerror:\"E x\"\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_string),
        cmocka_unit_test(test_simple_error),
        cmocka_unit_test(test_integer),
        cmocka_unit_test(test_integer_keeps_its_text),
        cmocka_unit_test(test_bulk_string_is_binary_safe),
        cmocka_unit_test(test_empty_bulk_string),
        cmocka_unit_test(test_null_bulk_resp2),
        cmocka_unit_test(test_null_array_resp2),
        cmocka_unit_test(test_null_resp3),
        cmocka_unit_test(test_boolean),
        cmocka_unit_test(test_double_finite),
        cmocka_unit_test(test_double_inf_and_nan),
        cmocka_unit_test(test_big_number),
        cmocka_unit_test(test_bulk_error),
        cmocka_unit_test(test_verbatim_string),
        cmocka_unit_test(test_array_nested),
        cmocka_unit_test(test_empty_array),
        cmocka_unit_test(test_map),
        cmocka_unit_test(test_set),
        cmocka_unit_test(test_push_is_returned_apart),
        cmocka_unit_test(test_attribute_attaches_to_following_reply),
        cmocka_unit_test(test_attribute_inside_aggregate_attaches_to_element),
        cmocka_unit_test(test_attribute_before_aggregate_attaches_to_it),
        cmocka_unit_test(test_rejects_unknown_type_byte),
        cmocka_unit_test(test_resp2_only_rejects_resp3_types),
        cmocka_unit_test(test_rejects_streamed_types),
        cmocka_unit_test(test_integer_rejects_leading_plus),
        cmocka_unit_test(test_integer_rejects_empty),
        cmocka_unit_test(test_integer_rejects_minus_alone),
        cmocka_unit_test(test_integer_rejects_leading_zero_and_minus_zero),
        cmocka_unit_test(test_integer_rejects_non_digit),
        cmocka_unit_test(test_integer_rejects_overflow),
        cmocka_unit_test(test_length_rejects_negative_other_than_null),
        cmocka_unit_test(test_length_rejects_bad_syntax),
        cmocka_unit_test(test_double_rejects_malformed),
        cmocka_unit_test(test_double_rejects_overlong_line),
        cmocka_unit_test(test_boolean_rejects_other_values),
        cmocka_unit_test(test_null_rejects_payload),
        cmocka_unit_test(test_big_number_rejects_non_digits),
        cmocka_unit_test(test_verbatim_requires_format_and_colon),
        cmocka_unit_test(test_attribute_after_attribute_rejected),
        cmocka_unit_test(test_push_inside_aggregate_rejected),
        cmocka_unit_test(test_crlf_bare_lf_in_line_rejected),
        cmocka_unit_test(test_crlf_bare_cr_in_line_rejected),
        cmocka_unit_test(test_crlf_after_bulk_payload_required),
        cmocka_unit_test(test_bulk_length_limit_default_512mib),
        cmocka_unit_test(test_bulk_length_limit_configurable),
        cmocka_unit_test(test_element_count_limit),
        cmocka_unit_test(test_element_count_limit_default),
        cmocka_unit_test(test_depth_limit_default_64),
        cmocka_unit_test(test_depth_limit_counts_maps_sets_and_attributes),
        cmocka_unit_test(test_error_is_sticky),
        cmocka_unit_test(test_error_message_names_rule_and_stream_offset),
        cmocka_unit_test(test_every_split_point_gives_same_tree),
        cmocka_unit_test(test_one_byte_at_a_time_gives_same_tree),
        cmocka_unit_test(test_stream_in_any_chunk_size_gives_same_trees),
        cmocka_unit_test(test_error_rule_and_offset_independent_of_split),
        cmocka_unit_test(test_bulk_is_a_slice_of_the_read_buffer),
        cmocka_unit_test(test_space_then_commit_in_pieces),
        cmocka_unit_test(test_partial_reply_survives_buffer_moves),
        cmocka_unit_test(test_buffer_moves_at_most_once_per_feed),
        cmocka_unit_test(test_no_allocation_per_reply_in_steady_state),
        cmocka_unit_test(test_declared_count_allocates_nothing_up_front),
        cmocka_unit_test(test_large_aggregate_is_freed_without_recursion),
        cmocka_unit_test(test_fast_and_general_paths_alternate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
