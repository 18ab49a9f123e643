/* tests/unit/test_config_lexer.c — the Corefile lexer (src/config): words, comments, quotes,
 * continuations, {$ENV}, braces, line numbers, errors; and the cursor helpers; the token side of
 * cfg_lex_expand (the import rules are tested through the Corefile in
 * test_server_corefile.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "config/config.h"

/* Lexes `s`, failing the test on error. */
static void lex_ok(struct cfg_tokens *t, const char *s)
{
    struct cfg_error err;
    memset(&err, 0, sizeof err);
    if (cfg_lex(t, "Corefile", s, strlen(s), &err) != 0) {
        char buf[700];
        cfg_error_format(&err, buf, sizeof buf);
        fail_msg("lex failed: %s", buf);
    }
}

/* The token texts joined by '|'. */
static const char *joined(const struct cfg_tokens *t)
{
    static char buf[1024];
    size_t o = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < t->n; i++) {
        size_t l = strlen(t->tok[i].text);
        assert_true(o + l + 2 < sizeof buf);
        if (i) buf[o++] = '|';
        memcpy(buf + o, t->tok[i].text, l + 1);
        o += l;
    }
    return buf;
}

static void expect_tokens(const char *src, const char *want)
{
    struct cfg_tokens t;
    lex_ok(&t, src);
    if (strcmp(joined(&t), want) != 0) fail_msg("%s: got [%s], want [%s]", src, joined(&t), want);
    cfg_tokens_free(&t);
}

static void test_whitespace_separates_words(void **state)
{
    expect_tokens("redis_cache example.org  \t other.org\n", "redis_cache|example.org|other.org");
    expect_tokens("", "");
    expect_tokens("   \n\n \t", "");
}

static void test_comment_runs_to_end_of_line(void **state)
{
    expect_tokens("a b # c d\ne", "a|b|e");
    expect_tokens("# only a comment", "");
    expect_tokens("#x\n#y\nz #", "z");
}

static void test_hash_inside_a_word_is_literal(void **state)
{
    expect_tokens("password s3#cret # real comment", "password|s3#cret");
}

static void test_quoted_string_keeps_spaces_and_hash(void **state)
{
    struct cfg_tokens t;
    lex_ok(&t, "password \"a b # c\" x");
    assert_int_equal(t.n, 3);
    assert_string_equal(t.tok[1].text, "a b # c");
    assert_int_equal(t.tok[1].len, 7);
    assert_true(t.tok[1].quoted);
    assert_false(t.tok[0].quoted);
    assert_false(t.tok[2].quoted);
    cfg_tokens_free(&t);
}

static void test_empty_quotes_are_an_empty_argument(void **state)
{
    struct cfg_tokens t;
    lex_ok(&t, "key_prefix \"\"\nnext");
    assert_int_equal(t.n, 3);
    assert_string_equal(t.tok[1].text, "");
    assert_int_equal(t.tok[1].len, 0);
    assert_true(t.tok[1].quoted);
    assert_int_equal(t.tok[1].line, 1);
    cfg_tokens_free(&t);
}

static void test_escaped_quote_inside_quotes(void **state)
{
    expect_tokens("password \"pa\\\"ss\"", "password|pa\"ss");
    /* other backslashes stay as they are */
    expect_tokens("tls_ca \"C:\\dir\\ca.pem\"", "tls_ca|C:\\dir\\ca.pem");
}

static void test_quote_ends_the_token_and_mid_word_quote_is_literal(void **state)
{
    expect_tokens("\"a\"b", "a|b");
    expect_tokens("ab\"c", "ab\"c");
}

static void test_quoted_string_spans_lines(void **state)
{
    struct cfg_tokens t;
    lex_ok(&t, "a \"x\ny\" b\nc");
    assert_int_equal(t.n, 4);
    assert_string_equal(t.tok[1].text, "x\ny");
    assert_int_equal(t.tok[1].line, 1);
    /* b is on physical line 2 but still on the logical line of `a` */
    assert_int_equal(t.tok[2].line, 2);
    assert_int_equal(t.tok[2].lline, 1);
    assert_int_equal(t.tok[3].line, 3);
    assert_int_equal(t.tok[3].lline, 3);
    cfg_tokens_free(&t);
}

static void test_backslash_newline_continues_the_logical_line(void **state)
{
    struct cfg_tokens t;
    lex_ok(&t, "cluster a:1 \\\n        b:2 \\\n        c:3\ntls\n");
    assert_string_equal(joined(&t), "cluster|a:1|b:2|c:3|tls");
    assert_int_equal(t.tok[1].line, 1);
    assert_int_equal(t.tok[2].line, 2);
    assert_int_equal(t.tok[3].line, 3);
    for (size_t i = 0; i < 4; i++) assert_int_equal(t.tok[i].lline, 1);
    assert_int_equal(t.tok[4].line, 4);
    assert_int_equal(t.tok[4].lline, 4);
    struct cfg_cursor c = {&t, 0};
    assert_int_equal(cfg_args_end(&c), 4);
    cfg_tokens_free(&t);
}

static void test_backslash_glued_to_word_and_elsewhere(void **state)
{
    struct cfg_tokens t;
    /* `a\` + newline: the word ends, the line goes on */
    lex_ok(&t, "x a\\\nb");
    assert_string_equal(joined(&t), "x|a|b");
    assert_int_equal(t.tok[2].lline, 1);
    cfg_tokens_free(&t);
    /* a backslash not before a newline is an ordinary character */
    expect_tokens("a\\b \\ c", "a\\b|\\|c");
}

static void test_crlf_line_endings(void **state)
{
    struct cfg_tokens t;
    lex_ok(&t, "redis_cache {\r\n    endpoint a:1 \\\r\n  b\r\n}\r\n");
    assert_string_equal(joined(&t), "redis_cache|{|endpoint|a:1|b|}");
    assert_int_equal(t.tok[2].line, 2);
    assert_int_equal(t.tok[4].line, 3);
    assert_int_equal(t.tok[4].lline, 2);
    assert_int_equal(t.tok[5].line, 4);
    assert_int_equal(t.tok[5].lline, 4);
    cfg_tokens_free(&t);
}

static void test_env_substitution(void **state)
{
    setenv("RC_LEX_HOST", "redis.local", 1);
    setenv("RC_LEX_SPACES", "a b", 1);
    unsetenv("RC_LEX_UNSET");
    expect_tokens("endpoint {$RC_LEX_HOST}:6380", "endpoint|redis.local:6380");
    expect_tokens("x \"pre {$RC_LEX_HOST} post\"", "x|pre redis.local post");
    /* the value is not lexed again: spaces stay in one token */
    struct cfg_tokens t;
    lex_ok(&t, "password {$RC_LEX_SPACES} end");
    assert_int_equal(t.n, 3);
    assert_string_equal(t.tok[1].text, "a b");
    cfg_tokens_free(&t);
    /* unset: empty, and a word that was only the reference stays an argument */
    lex_ok(&t, "password {$RC_LEX_UNSET}\nx");
    assert_int_equal(t.n, 3);
    assert_string_equal(t.tok[1].text, "");
    assert_int_equal(t.tok[1].line, 1);
    cfg_tokens_free(&t);
    /* not references: literal text */
    expect_tokens("{$} {$ x} {$A", "{$}|{$|x}|{$A");
}

static void test_env_value_brace_is_an_argument(void **state)
{
    setenv("RC_LEX_BRACE", "{", 1);
    struct cfg_tokens t;
    lex_ok(&t, "password {$RC_LEX_BRACE}");
    assert_int_equal(t.n, 2);
    assert_string_equal(t.tok[1].text, "{");
    assert_false(cfg_is_open(&t.tok[1]));
    cfg_tokens_free(&t);
}

static void test_braces_only_as_whole_tokens(void **state)
{
    struct cfg_tokens t;
    lex_ok(&t, "a { b }\nfoo{ \"{\" }x");
    assert_string_equal(joined(&t), "a|{|b|}|foo{|{|}x");
    assert_true(cfg_is_open(&t.tok[1]));
    assert_true(cfg_is_close(&t.tok[3]));
    assert_false(cfg_is_open(&t.tok[4]));
    assert_false(cfg_is_open(&t.tok[5])); /* quoted */
    assert_false(cfg_is_close(&t.tok[6]));
    assert_false(cfg_is_open(NULL));
    cfg_tokens_free(&t);
}

static void test_line_numbers_and_file(void **state)
{
    struct cfg_tokens t;
    lex_ok(&t, "\n\na\n  # c\n\tb c\n\n\nd");
    assert_int_equal(t.n, 4);
    assert_int_equal(t.tok[0].line, 3);
    assert_int_equal(t.tok[1].line, 5);
    assert_int_equal(t.tok[2].line, 5);
    assert_int_equal(t.tok[3].line, 8);
    for (size_t i = 0; i < t.n; i++) assert_string_equal(t.tok[i].file, "Corefile");
    cfg_tokens_free(&t);
}

static void test_unterminated_quote_names_its_line(void **state)
{
    struct cfg_tokens t;
    struct cfg_error err;
    memset(&err, 0, sizeof err);
    const char *s = "a\nb \"open\n\nmore";
    assert_int_equal(cfg_lex(&t, "conf/Corefile", s, strlen(s), &err), -1);
    assert_int_equal(err.line, 2);
    char buf[700];
    cfg_error_format(&err, buf, sizeof buf);
    assert_string_equal(buf, "conf/Corefile:2: unterminated quoted string (opened here)");
    assert_null(t.tok);
    assert_int_equal(t.n, 0);
}

static void test_nul_byte_is_an_error(void **state)
{
    struct cfg_tokens t;
    struct cfg_error err;
    memset(&err, 0, sizeof err);
    const char s[] = "a\nb\0c";
    assert_int_equal(cfg_lex(&t, "f", s, sizeof s - 1, &err), -1);
    assert_int_equal(err.line, 2);
    assert_non_null(strstr(err.msg, "NUL"));
}

static void test_token_over_64k_is_an_error(void **state)
{
    size_t n = 65537;
    char *s = malloc(n + 3);
    assert_non_null(s);
    memcpy(s, "x ", 2);
    memset(s + 2, 'a', n);
    struct cfg_tokens t;
    struct cfg_error err;
    memset(&err, 0, sizeof err);
    assert_int_equal(cfg_lex(&t, "f", s, n + 2, &err), -1);
    assert_non_null(strstr(err.msg, "65536"));
    /* exactly 64 KiB is fine */
    assert_int_equal(cfg_lex(&t, "f", s, n + 1, &err), 0);
    assert_int_equal(t.n, 2);
    assert_int_equal(t.tok[1].len, 65536);
    cfg_tokens_free(&t);
    free(s);
}

static void test_args_end_stops_at_braces_and_new_lines(void **state)
{
    struct cfg_tokens t;
    lex_ok(&t, "redis_cache a b {\n endpoint x\n timeout { connect 1s }\n}\nforward . 1.1.1.1");
    /* 0 redis_cache 1 a 2 b 3 { 4 endpoint 5 x 6 timeout 7 { 8 connect 9 1s 10 } 11 } 12 forward */
    struct cfg_cursor c = {&t, 0};
    assert_int_equal(cfg_args_end(&c), 3);
    c.pos = 4;
    assert_int_equal(cfg_args_end(&c), 6);
    c.pos = 8;
    assert_int_equal(cfg_args_end(&c), 10); /* the `}` on the same line */
    c.pos = 12;
    assert_int_equal(cfg_args_end(&c), t.n);
    c.pos = t.n;
    assert_int_equal(cfg_args_end(&c), t.n);
    assert_null(cfg_cur(&c));
    assert_int_equal(cfg_block_end(&t, 3), 11);
    assert_int_equal(cfg_block_end(&t, 7), 10);
    assert_int_equal(cfg_block_end(&t, 4), 4); /* not a brace */
    cfg_tokens_free(&t);
}

static void test_block_end_unclosed(void **state)
{
    struct cfg_tokens t;
    lex_ok(&t, "a {\n b {\n }\n");
    assert_int_equal(cfg_block_end(&t, 1), t.n);
    assert_int_equal(cfg_block_end(&t, 3), 4);
    cfg_tokens_free(&t);
}

static void test_quoted_brace_is_an_argument_for_args_end(void **state)
{
    struct cfg_tokens t;
    lex_ok(&t, "password \"{\" \"}\"");
    struct cfg_cursor c = {&t, 0};
    assert_int_equal(cfg_args_end(&c), 3);
    assert_int_equal(cfg_block_end(&t, 1), 1);
    cfg_tokens_free(&t);
}

static void test_error_format_and_error_at(void **state)
{
    struct cfg_tokens t;
    lex_ok(&t, "\nx");
    struct cfg_error err;
    memset(&err, 0, sizeof err);
    cfg_error_at(&err, &t.tok[0], "thing: %s %d", "bad", 7);
    char buf[700];
    cfg_error_format(&err, buf, sizeof buf);
    assert_string_equal(buf, "Corefile:2: thing: bad 7");
    /* too small a buffer: cut, NUL-terminated */
    char small[6];
    cfg_error_format(&err, small, sizeof small);
    assert_string_equal(small, "Coref");
    /* NULL token: file and line unchanged */
    cfg_error_at(&err, NULL, "later");
    cfg_error_format(&err, buf, sizeof buf);
    assert_string_equal(buf, "Corefile:2: later");
    cfg_tokens_free(&t);
}

static void test_cfg_is(void **state)
{
    struct cfg_tokens t;
    lex_ok(&t, "endpoint endpoints endpoin");
    assert_true(cfg_is(&t.tok[0], "endpoint"));
    assert_false(cfg_is(&t.tok[1], "endpoint"));
    assert_false(cfg_is(&t.tok[2], "endpoint"));
    assert_false(cfg_is(NULL, "endpoint"));
    cfg_tokens_free(&t);
}

/* cfg_lex_expand: a snippet definition leaves no token, its tokens are pasted at the import
 * with their own lines, and a pasted line is a logical line of its own (cfg_args_end never
 * runs across the import). */
static void test_expand_snippet_keeps_lines_and_splits_logical_lines(void **state)
{
    const char *s = "(s) {\n"           /* 1 */
                    "  log x \\\n"      /* 2 */
                    "    y\n"           /* 3 */
                    "}\n"               /* 4 */
                    ". {\n"             /* 5 */
                    "  errors import\n" /* 6: not a directive position: a word */
                    "  import s\n"      /* 7 */
                    "  cache\n"         /* 8 */
                    "}\n";
    struct cfg_tokens t;
    struct cfg_error err;
    memset(&err, 0, sizeof err);
    assert_int_equal(cfg_lex_expand(&t, "Corefile", s, strlen(s), &err), 0);
    assert_string_equal(joined(&t), ".|{|errors|import|log|x|y|cache|}");
    unsigned lines[] = {5, 5, 6, 6, 2, 2, 3, 8, 9};
    for (size_t i = 0; i < t.n; i++) {
        assert_int_equal(t.tok[i].line, lines[i]);
        assert_string_equal(t.tok[i].file, "Corefile");
    }
    struct cfg_cursor c = {&t, 2}; /* errors import */
    assert_int_equal(cfg_args_end(&c), 4);
    c.pos = 4; /* log x y (one logical line in the snippet), then cache */
    assert_int_equal(cfg_args_end(&c), 7);
    assert_int_equal(t.tok[4].lline, t.tok[6].lline);
    assert_true(t.tok[7].lline != t.tok[6].lline);
    cfg_tokens_free(&t);

    /* nothing but a snippet: no tokens, and freeing is safe */
    assert_int_equal(cfg_lex_expand(&t, "Corefile", "(a) {\n}\n", 8, &err), 0);
    assert_int_equal(t.n, 0);
    cfg_tokens_free(&t);
    /* a lexing error is reported as by cfg_lex */
    assert_int_equal(cfg_lex_expand(&t, "Corefile", "a \"b\n", 5, &err), -1);
    assert_int_equal(err.line, 1);
    assert_null(t.tok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whitespace_separates_words),
        cmocka_unit_test(test_comment_runs_to_end_of_line),
        cmocka_unit_test(test_hash_inside_a_word_is_literal),
        cmocka_unit_test(test_quoted_string_keeps_spaces_and_hash),
        cmocka_unit_test(test_empty_quotes_are_an_empty_argument),
        cmocka_unit_test(test_escaped_quote_inside_quotes),
        cmocka_unit_test(test_quote_ends_the_token_and_mid_word_quote_is_literal),
        cmocka_unit_test(test_quoted_string_spans_lines),
        cmocka_unit_test(test_backslash_newline_continues_the_logical_line),
        cmocka_unit_test(test_backslash_glued_to_word_and_elsewhere),
        cmocka_unit_test(test_crlf_line_endings),
        cmocka_unit_test(test_env_substitution),
        cmocka_unit_test(test_env_value_brace_is_an_argument),
        cmocka_unit_test(test_braces_only_as_whole_tokens),
        cmocka_unit_test(test_line_numbers_and_file),
        cmocka_unit_test(test_unterminated_quote_names_its_line),
        cmocka_unit_test(test_nul_byte_is_an_error),
        cmocka_unit_test(test_token_over_64k_is_an_error),
        cmocka_unit_test(test_args_end_stops_at_braces_and_new_lines),
        cmocka_unit_test(test_block_end_unclosed),
        cmocka_unit_test(test_quoted_brace_is_an_argument_for_args_end),
        cmocka_unit_test(test_error_format_and_error_at),
        cmocka_unit_test(test_cfg_is),
        cmocka_unit_test(test_expand_snippet_keeps_lines_and_splits_logical_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
