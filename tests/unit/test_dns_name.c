/* tests/unit/test_dns_name.c — wire names: unpacking with compression, the presentation form
 * the cache key hashes (SPEC §1.1, as the Go DNS library prints), and ASCII-only case folding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "dns/dns.h"

/* Presentation form of a wire name given as a C string literal with its length. */
static size_t text_of(const char *wire, size_t wire_len, char *out, size_t cap, bool lower)
{
    return dns_name_to_text((const uint8_t *)wire, wire_len, out, cap, lower);
}

static void assert_text(const char *wire, size_t wire_len, bool lower, const char *want)
{
    char out[DNS_NAME_TEXT_MAX + 1];
    size_t n = text_of(wire, wire_len, out, DNS_NAME_TEXT_MAX, lower);
    assert_true(n <= DNS_NAME_TEXT_MAX);
    out[n] = '\0';
    assert_string_equal(out, want);
}

/* A one-label name "x<byte>y." and its expected text. */
static void assert_label_byte(uint8_t b, const char *want)
{
    char wire[6] = {3, 'x', (char)b, 'y', 0};
    assert_text(wire, 5, false, want);
}

/* ---- unpack ---- */

static void test_unpack_plain_name(void **state)
{
    /* 12 bytes of header, then example.com. */
    uint8_t msg[64] = {0};
    memcpy(msg + 12, "\7example\3com\0", 13);
    uint8_t out[DNS_NAME_MAX];
    size_t len = 0, next = 0;
    assert_int_equal(dns_name_unpack(msg, 25, 12, out, &len, &next), DNS_OK);
    assert_int_equal(len, 13);
    assert_int_equal(next, 25);
    assert_memory_equal(out, "\7example\3com\0", 13);
}

static void test_unpack_follows_pointer_and_stops_next_after_it(void **state)
{
    uint8_t msg[64] = {0};
    memcpy(msg + 12, "\7example\3com\0", 13);
    memcpy(msg + 25, "\3www\300\14", 6); /* www + pointer to 12 */
    memcpy(msg + 31, "\300\31", 2);      /* pointer to 25 (two hops) */
    uint8_t out[DNS_NAME_MAX];
    size_t len = 0, next = 0;
    assert_int_equal(dns_name_unpack(msg, 33, 25, out, &len, &next), DNS_OK);
    assert_int_equal(len, 17);
    assert_int_equal(next, 31);
    assert_memory_equal(out, "\3www\7example\3com\0", 17);
    assert_int_equal(dns_name_unpack(msg, 33, 31, out, &len, &next), DNS_OK);
    assert_int_equal(len, 17);
    assert_int_equal(next, 33);
    assert_memory_equal(out, "\3www\7example\3com\0", 17);
}

static void test_unpack_without_output_only_validates(void **state)
{
    uint8_t msg[32] = {0};
    memcpy(msg + 12, "\3www\300\14", 6);
    size_t next = 0;
    /* The pointer targets the name itself: the expansion would never end. */
    assert_int_equal(dns_name_unpack(msg, 18, 12, NULL, NULL, &next), DNS_ERR_NAME_TOO_LONG);
    memcpy(msg + 12, "\3www\0", 5);
    assert_int_equal(dns_name_unpack(msg, 17, 12, NULL, NULL, &next), DNS_OK);
    assert_int_equal(next, 17);
    assert_int_equal(dns_name_unpack(msg, 17, 12, NULL, NULL, NULL), DNS_OK);
}

static void test_unpack_root(void **state)
{
    uint8_t msg[13] = {0};
    uint8_t out[DNS_NAME_MAX];
    size_t len = 0, next = 0;
    assert_int_equal(dns_name_unpack(msg, 13, 12, out, &len, &next), DNS_OK);
    assert_int_equal(len, 1);
    assert_int_equal(next, 13);
    assert_int_equal(out[0], 0);
}

static void test_unpack_offset_at_end_is_truncated(void **state)
{
    uint8_t msg[13] = {0};
    size_t next = 0;
    assert_int_equal(dns_name_unpack(msg, 13, 13, NULL, NULL, &next), DNS_ERR_NAME_TRUNCATED);
    assert_int_equal(dns_name_unpack(msg, 13, 100, NULL, NULL, &next), DNS_ERR_NAME_TRUNCATED);
}

static void test_unpack_pointer_must_be_strictly_backwards(void **state)
{
    uint8_t msg[32] = {0};
    memcpy(msg + 12, "\300\16\0", 3); /* pointer at 12 to 14, a root byte ahead of it */
    assert_int_equal(dns_name_unpack(msg, 15, 12, NULL, NULL, NULL), DNS_ERR_BAD_POINTER);
    memcpy(msg + 12, "\0\300\14", 3); /* pointer at 13 to the root at 12 */
    size_t len = 0, next = 0;
    assert_int_equal(dns_name_unpack(msg, 15, 13, NULL, &len, &next), DNS_OK);
    assert_int_equal(len, 1);
    assert_int_equal(next, 15);
}

static void test_unpack_pointer_high_bits_count(void **state)
{
    /* 0xC1 0x00 is offset 256, which is past a 20-byte message and ahead of the pointer. */
    uint8_t msg[20] = {0};
    msg[12] = 0xC1;
    msg[13] = 0x00;
    assert_int_equal(dns_name_unpack(msg, 20, 12, NULL, NULL, NULL), DNS_ERR_BAD_POINTER);
}

/* ---- presentation form ---- */

static void test_text_root_is_a_dot(void **state)
{
    assert_text("\0", 1, false, ".");
    assert_text("\0", 1, true, ".");
}

static void test_text_has_trailing_dot(void **state)
{
    assert_text("\7example\3com\0", 13, false, "example.com.");
    assert_text("\1a\0", 3, false, "a.");
}

static void test_text_escapes_dot_inside_label(void **state)
{
    assert_label_byte('.', "x\\.y.");
}

static void test_text_escapes_space(void **state)
{
    assert_label_byte(' ', "x\\ y.");
}

static void test_text_escapes_quote_and_apostrophe(void **state)
{
    assert_label_byte('"', "x\\\"y.");
    assert_label_byte('\'', "x\\'y.");
}

static void test_text_escapes_at_semicolon_parens(void **state)
{
    assert_label_byte('@', "x\\@y.");
    assert_label_byte(';', "x\\;y.");
    assert_label_byte('(', "x\\(y.");
    assert_label_byte(')', "x\\)y.");
}

static void test_text_escapes_backslash(void **state)
{
    assert_label_byte('\\', "x\\\\y.");
}

static void test_text_control_bytes_are_ddd(void **state)
{
    assert_label_byte(0x00, "x\\000y.");
    assert_label_byte(0x01, "x\\001y.");
    assert_label_byte(0x09, "x\\009y.");
    assert_label_byte(0x0A, "x\\010y.");
    assert_label_byte(0x1F, "x\\031y.");
}

static void test_text_high_bytes_are_ddd(void **state)
{
    assert_label_byte(0x7F, "x\\127y.");
    assert_label_byte(0x80, "x\\128y.");
    assert_label_byte(0xC4, "x\\196y.");
    assert_label_byte(0xFF, "x\\255y.");
}

static void test_text_other_printable_bytes_are_themselves(void **state)
{
    /* Every byte 0x21..0x7E except the escaped ones prints as itself. */
    const char *special = ".'@;()\"\\";
    for (int b = 0x21; b <= 0x7E; b++) {
        if (strchr(special, b)) continue;
        char want[5] = {'x', (char)b, 'y', '.', 0};
        assert_label_byte((uint8_t)b, want);
    }
}

static void test_text_lower_folds_only_ascii_letters(void **state)
{
    assert_text("\7ExAmPlE\3COM\0", 13, true, "example.com.");
    assert_text("\7ExAmPlE\3COM\0", 13, false, "ExAmPlE.COM.");
    /* Neighbours of A-Z and non-ASCII bytes stay as they are. */
    assert_text("\4@[`{\0", 6, true, "\\@[`{.");
    assert_text("\1\304\0", 3, true, "\\196.");
}

static void test_text_truncates_to_cap_and_returns_full_length(void **state)
{
    char out[16];
    memset(out, '#', sizeof(out));
    size_t n = text_of("\7example\3com\0", 13, out, 5, false);
    assert_int_equal(n, 12);
    assert_memory_equal(out, "examp", 5);
    assert_int_equal(out[5], '#');
}

static void test_text_truncation_cuts_inside_an_escape(void **state)
{
    char out[16];
    memset(out, '#', sizeof(out));
    /* "x\255y." is 7 bytes; the first 3 are "x\2". */
    size_t n = text_of("\3x\377y\0", 5, out, 3, false);
    assert_int_equal(n, 7);
    assert_memory_equal(out, "x\\2", 3);
    assert_int_equal(out[3], '#');
}

static void test_text_cap_zero_writes_nothing(void **state)
{
    char out[4] = {'#', '#', '#', '#'};
    assert_int_equal(text_of("\0", 1, out, 0, false), 1);
    assert_int_equal(text_of("\3abc\0", 5, out, 0, false), 4);
    assert_memory_equal(out, "####", 4);
}

static void test_text_longest_name_fits_text_max(void **state)
{
    /* 255 wire bytes of \DDD-printed labels: the worst case stays under DNS_NAME_TEXT_MAX. */
    uint8_t wire[DNS_NAME_MAX];
    size_t n = 0;
    for (int l = 0; l < 3; l++) {
        wire[n++] = 63;
        memset(wire + n, 0xFF, 63);
        n += 63;
    }
    wire[n++] = 61;
    memset(wire + n, 0xFF, 61);
    n += 61;
    wire[n++] = 0;
    assert_int_equal(n, DNS_NAME_MAX);
    char out[DNS_NAME_TEXT_MAX];
    size_t len = dns_name_to_text(wire, n, out, sizeof(out), true);
    assert_int_equal(len, 4 * (3 * 63 + 61) + 4);
    assert_true(len <= DNS_NAME_TEXT_MAX);
}

static void test_text_stops_at_wire_len(void **state)
{
    /* A label claiming more bytes than given prints only what is there. */
    char out[16];
    size_t n = text_of("\5ab", 3, out, sizeof(out), false);
    assert_int_equal(n, 3);
    assert_memory_equal(out, "ab.", 3);
}

/* ---- case-insensitive equality ---- */

static void test_equal_nocase_ignores_ascii_case(void **state)
{
    const uint8_t a[] = "\7ExAmPlE\3CoM";
    const uint8_t b[] = "\7example\3com";
    assert_true(dns_name_equal_nocase(a, 13, b, 13));
    assert_true(dns_name_equal_nocase(b, 13, a, 13));
}

static void test_equal_nocase_differs_on_length_and_bytes(void **state)
{
    assert_false(dns_name_equal_nocase((const uint8_t *)"\1a", 3, (const uint8_t *)"\2aa", 4));
    assert_false(dns_name_equal_nocase((const uint8_t *)"\1a", 3, (const uint8_t *)"\1b", 3));
}

static void test_equal_nocase_folds_only_letters(void **state)
{
    /* '[' and '{' differ by 0x20 like 'A' and 'a', but are not letters. */
    assert_false(dns_name_equal_nocase((const uint8_t *)"\1[", 3, (const uint8_t *)"\1{", 3));
    assert_false(dns_name_equal_nocase((const uint8_t *)"\1\304", 3, (const uint8_t *)"\1\344", 3));
    assert_false(dns_name_equal_nocase((const uint8_t *)"\1@", 3, (const uint8_t *)"\1`", 3));
}

static void test_from_text_lowercases_and_handles_root_and_trailing_dot(void **state)
{
    (void)state;
    uint8_t w[DNS_NAME_MAX];
    assert_int_equal(dns_name_from_text(".", w), 1);
    assert_int_equal(w[0], 0);
    static const uint8_t want[] = "\007example\003org";
    assert_int_equal(dns_name_from_text("Example.ORG.", w), sizeof want);
    assert_memory_equal(w, want, sizeof want);
    assert_int_equal(dns_name_from_text("example.org", w), sizeof want);
    assert_memory_equal(w, want, sizeof want);
}

static void test_from_text_rejects_empty_and_long_labels(void **state)
{
    (void)state;
    uint8_t w[DNS_NAME_MAX];
    char label64[80];
    memset(label64, 'a', 64);
    strcpy(label64 + 64, ".org.");
    assert_int_equal(dns_name_from_text("a..org.", w), 0);
    assert_int_equal(dns_name_from_text(label64, w), 0);
    char big[300];
    for (int i = 0; i < 64; i++) memcpy(big + 4 * i, "abc.", 4);
    big[256] = '\0'; /* 64 labels of 3: 257 wire bytes */
    assert_int_equal(dns_name_from_text(big, w), 0);
}

static void test_in_zone_matches_only_at_label_boundaries(void **state)
{
    (void)state;
    uint8_t zone[DNS_NAME_MAX], name[DNS_NAME_MAX];
    size_t zl = dns_name_from_text("example.org.", zone);
    size_t nl = dns_name_from_text("www.example.org.", name);
    assert_true(dns_name_in_zone(name, nl, zone, zl));
    assert_true(dns_name_in_zone(zone, zl, zone, zl));
    nl = dns_name_from_text("badexample.org.", name);
    assert_false(dns_name_in_zone(name, nl, zone, zl));
    nl = dns_name_from_text("org.", name);
    assert_false(dns_name_in_zone(name, nl, zone, zl));
    uint8_t root[1] = {0};
    assert_true(dns_name_in_zone(name, nl, root, 1));
}

static void test_zone_normalize_lowercases_adds_dot_and_explains_refusals(void **state)
{
    (void)state;
    char z[DNS_ZONE_TEXT_MAX];
    assert_null(dns_zone_normalize("Example.ORG", 11, z));
    assert_string_equal(z, "example.org.");
    assert_null(dns_zone_normalize(".", 1, z));
    assert_string_equal(z, ".");
    assert_string_equal(dns_zone_normalize("", 0, z), "empty zone");
    assert_string_equal(dns_zone_normalize("a..org", 6, z), "empty label");
    assert_string_equal(dns_zone_normalize("exa mple", 8, z),
                        "invalid character (zones are plain domain names)");
    char l64[64];
    memset(l64, 'a', sizeof l64);
    assert_string_equal(dns_zone_normalize(l64, sizeof l64, z), "label over 63 bytes");
    /* 254 bytes of text with the dot is a 255-byte wire name: the longest accepted */
    char big[260];
    for (int i = 0; i < 63; i++) memcpy(big + 4 * i, "abc.", 4);
    memcpy(big + 252, "ab", 2); /* 254 bytes without a trailing dot */
    assert_string_equal(dns_zone_normalize(big, 254, z), "name over 255 bytes");
    assert_null(dns_zone_normalize(big, 253, z));
    assert_int_equal(strlen(z), 254);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unpack_plain_name),
        cmocka_unit_test(test_unpack_follows_pointer_and_stops_next_after_it),
        cmocka_unit_test(test_unpack_without_output_only_validates),
        cmocka_unit_test(test_unpack_root),
        cmocka_unit_test(test_unpack_offset_at_end_is_truncated),
        cmocka_unit_test(test_unpack_pointer_must_be_strictly_backwards),
        cmocka_unit_test(test_unpack_pointer_high_bits_count),
        cmocka_unit_test(test_text_root_is_a_dot),
        cmocka_unit_test(test_text_has_trailing_dot),
        cmocka_unit_test(test_text_escapes_dot_inside_label),
        cmocka_unit_test(test_text_escapes_space),
        cmocka_unit_test(test_text_escapes_quote_and_apostrophe),
        cmocka_unit_test(test_text_escapes_at_semicolon_parens),
        cmocka_unit_test(test_text_escapes_backslash),
        cmocka_unit_test(test_text_control_bytes_are_ddd),
        cmocka_unit_test(test_text_high_bytes_are_ddd),
        cmocka_unit_test(test_text_other_printable_bytes_are_themselves),
        cmocka_unit_test(test_text_lower_folds_only_ascii_letters),
        cmocka_unit_test(test_text_truncates_to_cap_and_returns_full_length),
        cmocka_unit_test(test_text_truncation_cuts_inside_an_escape),
        cmocka_unit_test(test_text_cap_zero_writes_nothing),
        cmocka_unit_test(test_text_longest_name_fits_text_max),
        cmocka_unit_test(test_text_stops_at_wire_len),
        cmocka_unit_test(test_equal_nocase_ignores_ascii_case),
        cmocka_unit_test(test_equal_nocase_differs_on_length_and_bytes),
        cmocka_unit_test(test_equal_nocase_folds_only_letters),
        cmocka_unit_test(test_from_text_lowercases_and_handles_root_and_trailing_dot),
        cmocka_unit_test(test_from_text_rejects_empty_and_long_labels),
        cmocka_unit_test(test_in_zone_matches_only_at_label_boundaries),
        cmocka_unit_test(test_zone_normalize_lowercases_adds_dot_and_explains_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
