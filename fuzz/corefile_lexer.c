/* fuzz/corefile_lexer.c — the Corefile lexer and cursor helpers under arbitrary bytes.
 *
 * On success every token is NUL-terminated at its length, at most 64 KiB, names the file,
 * and lines never go backwards (physical and logical, the logical line never after the
 * physical one, neither past the input's line count); cfg_args_end and cfg_block_end stay
 * in bounds and land where they promise, and a server-like walk over directives and blocks
 * ends. On error the line is inside the input and the message is set. Leaks are caught by
 * ASan.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) abort();                                                                         \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned lines = 1;
    for (size_t i = 0; i < size; i++) lines += data[i] == '\n';

    struct cfg_tokens t;
    struct cfg_error err;
    memset(&err, 0, sizeof err);
    if (cfg_lex(&t, "fuzz", (const char *)data, size, &err) != 0) {
        CHECK(err.line >= 1 && err.line <= lines);
        CHECK(err.msg[0] != '\0');
        CHECK(strcmp(err.file, "fuzz") == 0);
        CHECK(t.n == 0 && t.tok == NULL);
        char buf[700];
        cfg_error_format(&err, buf, sizeof buf);
        return 0;
    }

    unsigned prev_line = 1, prev_lline = 1;
    for (size_t i = 0; i < t.n; i++) {
        const struct cfg_token *k = &t.tok[i];
        CHECK(k->len <= 65536);
        CHECK(k->text[k->len] == '\0');
        CHECK(strlen(k->text) <= k->len); /* an env value cannot hold NUL; input can't either */
        CHECK(strcmp(k->file, "fuzz") == 0);
        CHECK(k->line >= prev_line && k->line <= lines);
        CHECK(k->lline >= prev_lline && k->lline <= k->line);
        prev_line = k->line;
        prev_lline = k->lline;
    }

    for (size_t i = 0; i < t.n; i++) {
        struct cfg_cursor c = {&t, i};
        size_t e = cfg_args_end(&c);
        CHECK(e > i && e <= t.n);
        for (size_t k = i + 1; k < e; k++) {
            CHECK(t.tok[k].lline == t.tok[i].lline);
            CHECK(!cfg_is_open(&t.tok[k]) && !cfg_is_close(&t.tok[k]));
        }
        if (e < t.n)
            CHECK(t.tok[e].lline != t.tok[i].lline || cfg_is_open(&t.tok[e]) ||
                  cfg_is_close(&t.tok[e]));
        size_t b = cfg_block_end(&t, i);
        CHECK(b >= i && b <= t.n);
        if (cfg_is_open(&t.tok[i])) {
            CHECK(b > i);
            if (b < t.n) CHECK(cfg_is_close(&t.tok[b]));
        } else {
            CHECK(b == i);
        }
    }
    struct cfg_cursor c = {&t, 0};
    CHECK(cfg_args_end(&(struct cfg_cursor){&t, t.n}) == t.n);

    /* A server-like walk: directive, arguments, optional block; always moves forward. */
    while (c.pos < t.n) {
        size_t before = c.pos;
        size_t e = cfg_args_end(&c);
        if (e < t.n && cfg_is_open(&t.tok[e])) {
            size_t b = cfg_block_end(&t, e);
            c.pos = b < t.n ? b + 1 : t.n;
        } else {
            c.pos = e;
        }
        CHECK(c.pos > before);
    }
    cfg_tokens_free(&t);
    CHECK(t.tok == NULL && t.n == 0);
    return 0;
}
