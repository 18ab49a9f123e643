/* src/config/lexer.c — Corefile text to tokens (file, physical line, logical line).
 *
 * The rules, as CoreDNS's Caddyfile lexer where it matters, with the choices it leaves open:
 *
 * - Whitespace (space, tab, CR, LF, VT, FF) separates tokens; CR is ignored, so CRLF files
 *   read as LF files.
 * - `#` starts a comment to the end of the line only at the start of a token (as Caddy v2):
 *   `s3#cret` is one word. CoreDNS's older lexer cut a word at any `#`; keeping the word
 *   is the safer reading for passwords and paths, and `foo #comment` behaves the same in
 *   both.
 * - A `"` at the start of a token opens a quoted string: it may hold whitespace, `#` and
 *   newlines (lines are counted; the token keeps the line it started on), and `\"` stands
 *   for `"`; any other backslash is kept as is. The token ends at the closing quote
 *   (`"a"b` is two tokens), so `""` is an empty argument. A `"` inside a word is literal.
 * - A `\` immediately before a newline (LF or CRLF), outside quotes, joins the next
 *   physical line to the logical line: tokens on both keep the same `lline`. A `\`
 *   anywhere else is an ordinary character.
 * - `{$NAME}` anywhere in a word or a quoted string is replaced by the environment
 *   variable NAME (empty when unset) and the result is not lexed again: a value with spaces
 *   stays one token, and a word that was only `{$NAME}` stays an (empty) argument. NAME is
 *   1..255 bytes without whitespace, quotes or braces; anything else is literal text.
 * - `{` and `}` are braces only as whole unquoted tokens: `foo{` is one word, `"{"` is an
 *   argument, and so is an environment value reading `{` (it is marked quoted).
 * - A NUL byte, a token over 64 KiB, or an unterminated quote (reported at the line where
 *   it opened) is an error.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

#define TOKEN_MAX   65536
#define ENVNAME_MAX 255

struct lexer {
    const char *s;
    size_t len, i;
    unsigned line;  /* current physical line */
    unsigned lline; /* physical line where the current logical line began */
    const char *file;
    struct cfg_error *err;

    char *buf; /* file name, then every token text, each NUL-terminated */
    size_t blen, bcap;
    struct cfg_token *tok;
    size_t *off; /* text offsets into buf, resolved to pointers at the end */
    size_t n, cap;
};

static void lex_error(struct lexer *lx, unsigned line, const char *msg)
{
    if (!lx->err) return;
    snprintf(lx->err->file, sizeof lx->err->file, "%s", lx->file);
    lx->err->line = line;
    snprintf(lx->err->msg, sizeof lx->err->msg, "%s", msg);
}

static int buf_reserve(struct lexer *lx, size_t more)
{
    if (lx->bcap - lx->blen >= more) return 0;
    size_t ncap = lx->bcap ? lx->bcap : 256;
    while (ncap - lx->blen < more) {
        if (ncap > SIZE_MAX / 2) return -1;
        ncap *= 2;
    }
    char *nb = realloc(lx->buf, ncap);
    if (!nb) return -1;
    lx->buf = nb;
    lx->bcap = ncap;
    return 0;
}

static int buf_put(struct lexer *lx, const char *p, size_t n)
{
    if (buf_reserve(lx, n) != 0) return -1;
    memcpy(lx->buf + lx->blen, p, n);
    lx->blen += n;
    return 0;
}

static bool is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* At lx->i: a `\` continuation (backslash, optional CR, LF)? Returns its length or 0. */
static size_t continuation_len(const struct lexer *lx)
{
    size_t i = lx->i;
    if (i >= lx->len || lx->s[i] != '\\') return 0;
    if (i + 1 < lx->len && lx->s[i + 1] == '\n') return 2;
    if (i + 2 < lx->len && lx->s[i + 1] == '\r' && lx->s[i + 2] == '\n') return 3;
    return 0;
}

/* At lx->i: `{$NAME}`? Returns its length and the name, or 0. */
static size_t env_ref(const struct lexer *lx, char name[ENVNAME_MAX + 1])
{
    size_t i = lx->i;
    if (i + 3 >= lx->len || lx->s[i] != '{' || lx->s[i + 1] != '$') return 0;
    size_t j = i + 2, k = 0;
    for (; j < lx->len; j++) {
        unsigned char c = (unsigned char)lx->s[j];
        if (c == '}') break;
        if (c == '\0' || is_space(c) || c == '"' || c == '{' || k >= ENVNAME_MAX) return 0;
        name[k++] = (char)c;
    }
    if (j >= lx->len || k == 0) return 0;
    name[k] = '\0';
    return j + 1 - i;
}

static int push_token(struct lexer *lx, size_t start, unsigned line, unsigned lline, bool quoted)
{
    size_t tlen = lx->blen - start;
    if (buf_put(lx, "", 1) != 0) return -1;
    if (lx->n == lx->cap) {
        size_t ncap = lx->cap ? lx->cap * 2 : 32;
        struct cfg_token *nt = realloc(lx->tok, ncap * sizeof *nt);
        if (!nt) return -1;
        lx->tok = nt;
        size_t *no = realloc(lx->off, ncap * sizeof *no);
        if (!no) return -1;
        lx->off = no;
        lx->cap = ncap;
    }
    struct cfg_token *t = &lx->tok[lx->n];
    memset(t, 0, sizeof *t);
    t->len = tlen;
    t->line = line;
    t->lline = lline;
    t->quoted = quoted;
    lx->off[lx->n] = start;
    lx->n++;
    return 0;
}

enum { LEX_OK = 0, LEX_FAIL = -1, LEX_OOM = -2 };

/* Appends the value of an environment reference at lx->i, if there is one. Returns its
 * source length (0: not a reference), or LEX_OOM / LEX_FAIL (too long). */
static long lex_env(struct lexer *lx, size_t start, unsigned line, bool *subst)
{
    char name[ENVNAME_MAX + 1];
    size_t rl = env_ref(lx, name);
    if (rl == 0) return 0;
    const char *v = getenv(name);
    size_t vl = v ? strlen(v) : 0;
    if (lx->blen - start + vl > TOKEN_MAX) {
        lex_error(lx, line, "token longer than 65536 bytes");
        return LEX_FAIL;
    }
    if (vl && buf_put(lx, v, vl) != 0) return LEX_OOM;
    *subst = true;
    return (long)rl;
}

static int lex_quoted(struct lexer *lx)
{
    unsigned line = lx->line, lline = lx->lline;
    size_t start = lx->blen;
    bool subst = false;
    lx->i++; /* the opening quote */
    for (;;) {
        if (lx->i >= lx->len) {
            lex_error(lx, line, "unterminated quoted string (opened here)");
            return LEX_FAIL;
        }
        char c = lx->s[lx->i];
        if (c == '"') {
            lx->i++;
            break;
        }
        if (c == '\0') {
            lex_error(lx, lx->line, "NUL byte in the configuration");
            return LEX_FAIL;
        }
        long rl = lex_env(lx, start, line, &subst);
        if (rl < 0) return (int)rl;
        if (rl > 0) {
            lx->i += (size_t)rl;
            continue;
        }
        if (c == '\\' && lx->i + 1 < lx->len && lx->s[lx->i + 1] == '"') {
            c = '"';
            lx->i++;
        } else if (c == '\n') {
            lx->line++;
        }
        if (lx->blen - start + 1 > TOKEN_MAX) {
            lex_error(lx, line, "token longer than 65536 bytes");
            return LEX_FAIL;
        }
        if (buf_put(lx, &c, 1) != 0) return LEX_OOM;
        lx->i++;
    }
    return push_token(lx, start, line, lline, true) == 0 ? LEX_OK : LEX_OOM;
}

static int lex_word(struct lexer *lx)
{
    unsigned line = lx->line, lline = lx->lline;
    size_t start = lx->blen;
    bool subst = false;
    while (lx->i < lx->len) {
        char c = lx->s[lx->i];
        if (is_space((unsigned char)c) || continuation_len(lx)) break;
        if (c == '\0') {
            lex_error(lx, lx->line, "NUL byte in the configuration");
            return LEX_FAIL;
        }
        long rl = lex_env(lx, start, line, &subst);
        if (rl < 0) return (int)rl;
        if (rl > 0) {
            lx->i += (size_t)rl;
            continue;
        }
        if (lx->blen - start + 1 > TOKEN_MAX) {
            lex_error(lx, line, "token longer than 65536 bytes");
            return LEX_FAIL;
        }
        if (buf_put(lx, &c, 1) != 0) return LEX_OOM;
        lx->i++;
    }
    size_t tl = lx->blen - start;
    /* An environment value is never syntax: a `{`/`}` it produced is an argument. */
    bool as_arg = subst && tl == 1 && (lx->buf[start] == '{' || lx->buf[start] == '}');
    return push_token(lx, start, line, lline, as_arg) == 0 ? LEX_OK : LEX_OOM;
}

static void lexer_release(struct lexer *lx)
{
    free(lx->buf);
    free(lx->tok);
    free(lx->off);
}

int cfg_lex(struct cfg_tokens *out, const char *file, const char *text, size_t len,
            struct cfg_error *err)
{
    memset(out, 0, sizeof *out);
    struct lexer lx;
    memset(&lx, 0, sizeof lx);
    lx.s = text;
    lx.len = text ? len : 0;
    lx.line = lx.lline = 1;
    lx.file = file ? file : "";
    lx.err = err;

    int rc = LEX_OK;
    if (buf_put(&lx, lx.file, strlen(lx.file) + 1) != 0) rc = LEX_OOM;
    while (rc == LEX_OK && lx.i < lx.len) {
        char c = lx.s[lx.i];
        size_t cl = continuation_len(&lx);
        if (cl) {
            lx.i += cl;
            lx.line++; /* the logical line goes on */
        } else if (c == '\n') {
            lx.i++;
            lx.line++;
            lx.lline = lx.line;
        } else if (is_space((unsigned char)c)) {
            lx.i++;
        } else if (c == '#') {
            while (lx.i < lx.len && lx.s[lx.i] != '\n') lx.i++;
        } else if (c == '"') {
            rc = lex_quoted(&lx);
        } else {
            rc = lex_word(&lx);
        }
    }
    if (rc != LEX_OK) {
        if (rc == LEX_OOM) lex_error(&lx, lx.line, "out of memory");
        lexer_release(&lx);
        return -1;
    }
    for (size_t k = 0; k < lx.n; k++) {
        lx.tok[k].text = lx.buf + lx.off[k];
        lx.tok[k].file = lx.buf;
    }
    free(lx.off);
    out->tok = lx.tok;
    out->n = lx.n;
    out->mem_ = lx.buf;
    return 0;
}

void cfg_tokens_free(struct cfg_tokens *t)
{
    if (!t) return;
    free(t->tok);
    free(t->mem_);
    memset(t, 0, sizeof *t);
}
