/* src/config/config.h — the Corefile lexer shared by the plugin and the server.
 *
 * Turns Corefile text into tokens that remember their file and line, the way CoreDNS's
 * (Caddy's) lexer does: whitespace separates tokens; `#` starts a comment to the end of the
 * line (not inside quotes); "double quoted" strings may hold spaces and `\"`, and `""` is an
 * empty argument; a `\` at the end of a line continues the logical line on the next one;
 * `{$NAME}` (also inside a token or quotes) is replaced by the environment variable NAME
 * (empty when unset); `{` and `}` are tokens of their own when they stand alone.
 *
 * A directive and its arguments are the tokens of one logical line; a `{` ending that line
 * opens its block, closed by a `}` token. The cursor helpers below walk that structure.
 * `import` and `(snippets)` are expanded on tokens by cfg_lex_expand (import.c).
 *
 * Choices where Caddy/CoreDNS leave room (lexer.c has the full list): `#` starts a comment
 * only at the start of a token (`s3#cret` is one word, as in Caddy v2; CoreDNS's v1 lexer
 * cut the word); `{`/`}` glued to a word (`foo{`) are part of it; inside quotes only `\"`
 * is an escape; a `\` continues the line only right before LF or CRLF; `{$NAME}` values
 * are not lexed again (spaces stay inside the token).
 */
#ifndef RC_CONFIG_H
#define RC_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

struct cfg_token {
    const char *text; /* NUL-terminated, quotes removed, escapes and {$ENV} applied */
    size_t len;
    const char *file; /* the file name given to cfg_lex (owned by the token list) */
    unsigned line;    /* physical line where the token starts (1-based) */
    unsigned lline;   /* logical line: equal for tokens joined by `\` continuations */
    bool quoted;      /* came from a quoted string ("{" quoted is an argument, not a brace);
                         also set on a `{`/`}` produced by {$ENV}: a value is never syntax */
};

struct cfg_tokens {
    struct cfg_token *tok;
    size_t n;
    void *mem_; /* internal: the storage of texts and file names */
};

/* Where a configuration error is, and what it is: printed as "FILE:LINE: WHAT". */
struct cfg_error {
    char file[256];
    unsigned line;
    char msg[320];
};

/* Formats err as "FILE:LINE: WHAT" into buf (always NUL-terminated). */
void cfg_error_format(const struct cfg_error *err, char *buf, size_t cap);
/* Sets err from a token (its file and line) and a printf message. */
void cfg_error_at(struct cfg_error *err, const struct cfg_token *t, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Tokenizes `len` bytes of `text` read from `file` (a name for messages). Returns 0, or -1
 * with err filled (an unterminated quote names the line it started on; a NUL byte or a
 * token over 64 KiB is an error). Free with cfg_tokens_free. */
int cfg_lex(struct cfg_tokens *out, const char *file, const char *text, size_t len,
            struct cfg_error *err);
void cfg_tokens_free(struct cfg_tokens *t);

/* Limits of cfg_lex_expand. */
#define CFG_IMPORT_DEPTH    10                  /* nested imports (files and snippets) */
#define CFG_EXPAND_TOKENS   262144              /* tokens in the result */
#define CFG_EXPAND_BYTES    (16u * 1024 * 1024) /* token text in the result */
#define CFG_IMPORT_FILE_MAX (4u * 1024 * 1024)  /* one imported file */

/* cfg_lex, then CoreDNS's `import PATTERN` and `(snippet) { }` expanded (import.c has the
 * rules): snippet definitions leave no tokens, an import line is replaced by the snippet's
 * or the files' tokens (paths relative to the importing file's directory, globs by
 * glob(3)); pasted tokens keep their own file and line. Reads files: call it at load or
 * reload, never on a query path. Returns 0, or -1 with err at the offending token (cycles,
 * depth, missing files, lexing errors of imported files). Free with cfg_tokens_free. */
int cfg_lex_expand(struct cfg_tokens *out, const char *file, const char *text, size_t len,
                   struct cfg_error *err);

/* ---- walking tokens ---- */

/* A cursor over a token list: `pos` is the current token. */
struct cfg_cursor {
    const struct cfg_tokens *t;
    size_t pos;
};

static inline const struct cfg_token *cfg_cur(const struct cfg_cursor *c)
{
    return c->pos < c->t->n ? &c->t->tok[c->pos] : NULL;
}
static inline bool cfg_is(const struct cfg_token *t, const char *s);

/* True when the token is an unquoted "{" / "}". */
bool cfg_is_open(const struct cfg_token *t);
bool cfg_is_close(const struct cfg_token *t);

/* The index just past the arguments of the directive at c->pos: the first token on a later
 * logical line, or an unquoted "{" / "}" on the same line. */
size_t cfg_args_end(const struct cfg_cursor *c);

/* When the token at `i` is an unquoted "{", the index of its matching "}" (nesting
 * counted); otherwise returns i. Returns t->n when the block is not closed. */
size_t cfg_block_end(const struct cfg_tokens *t, size_t i);

/* The directive at c->pos and its optional block: *end is cfg_args_end; when a "{" follows
 * the arguments, *open and *close are it and its "}" (else both SIZE_MAX). Moves c->pos
 * past the directive and its block and returns 0; when the block is not closed, returns -1
 * with *open at the "{" and c->pos at the end of the tokens. */
int cfg_directive_span(struct cfg_cursor *c, size_t *end, size_t *open, size_t *close);

static inline bool cfg_is(const struct cfg_token *t, const char *s)
{
    if (!t) return false;
    size_t i = 0;
    for (; s[i]; i++)
        if (i >= t->len || t->text[i] != s[i]) return false;
    return i == t->len;
}

#endif /* RC_CONFIG_H */
