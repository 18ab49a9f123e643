/* src/config/import.c — `import` and `(snippets)` on tokens, as CoreDNS's Caddyfile parser.
 *
 * cfg_lex_expand lexes a Corefile and pastes, in place of every `import PATTERN` line, the
 * tokens it names, so the parsers after it never see either:
 *
 * - `(name) { ... }` at the top level (outside every block) defines a snippet: its tokens
 *   between the braces are kept and the definition leaves no token behind. A snippet is
 *   usable after its definition; defining a name twice is an error.
 * - `import PATTERN` is recognized where a directive or a server block key may start (the
 *   first token of a logical line, or right after an unquoted brace). PATTERN is a snippet
 *   name first; otherwise a file path or a glob(3) pattern, relative to the directory of
 *   the file the `import` token came from. A glob that matches nothing pastes nothing (as
 *   CoreDNS); a plain path that cannot be read is an error. Matches are pasted in glob's
 *   sorted order.
 * - Pasted tokens keep their own file and line, so later errors name the imported file
 *   (or the snippet's definition). Logical lines are renumbered in the result: a pasted
 *   line never merges with the line around the import.
 * - Guards: a file or snippet that imports itself, directly or through others, is an
 *   error naming the chain's start; nesting is at most CFG_IMPORT_DEPTH deep; the result
 *   is at most CFG_EXPAND_TOKENS tokens and CFG_EXPAND_BYTES bytes of text; an imported
 *   file is at most CFG_IMPORT_FILE_MAX bytes.
 *
 * `import` takes exactly one argument, as in CoreDNS (snippet arguments, a Caddy v2
 * extension, are not supported).
 */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"

struct xsrc { /* a lexed file, kept until the expansion ends (snippets point into it) */
    struct cfg_tokens t;
    struct xsrc *next;
};

struct snippet {
    char *name;
    const struct cfg_token *tok;
    size_t n;
    struct snippet *next;
};

struct expander {
    struct cfg_error *err;
    /* result: tokens whose text and file are offsets into buf until the end */
    struct cfg_token *tok;
    size_t *toff, *foff;
    size_t n, cap;
    char *buf;
    size_t blen, bcap;
    unsigned lline_seq;
    int depth; /* brace depth of the result so far */
    /* file names interned in buf: (name offset) per distinct name */
    size_t *names;
    size_t nnames;
    struct xsrc *srcs;
    struct snippet *snips;
    /* what is being expanded now: "file:CANONICAL" or "snippet:NAME" */
    char *stack[CFG_IMPORT_DEPTH + 1];
    size_t nstack;
};

static int xerr(struct expander *x, const struct cfg_token *t, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int xerr(struct expander *x, const struct cfg_token *t, const char *fmt, ...)
{
    if (!x->err) return -1;
    if (t) {
        snprintf(x->err->file, sizeof x->err->file, "%s", t->file ? t->file : "");
        x->err->line = t->line;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->err->msg, sizeof x->err->msg, fmt, ap);
    va_end(ap);
    return -1;
}

static int buf_add(struct expander *x, const char *s, size_t n, size_t *off)
{
    if (x->blen + n + 1 > CFG_EXPAND_BYTES) return -1;
    if (x->bcap - x->blen < n + 1) {
        size_t cap = x->bcap ? x->bcap : 1024;
        while (cap - x->blen < n + 1) cap *= 2;
        char *nb = realloc(x->buf, cap);
        if (!nb) return -1;
        x->buf = nb;
        x->bcap = cap;
    }
    *off = x->blen;
    memcpy(x->buf + x->blen, s, n);
    x->buf[x->blen + n] = '\0';
    x->blen += n + 1;
    return 0;
}

static int intern_file(struct expander *x, const char *name, size_t *off)
{
    for (size_t i = 0; i < x->nnames; i++)
        if (strcmp(x->buf + x->names[i], name) == 0) {
            *off = x->names[i];
            return 0;
        }
    size_t *nn = realloc(x->names, (x->nnames + 1) * sizeof *nn);
    if (!nn) return -1;
    x->names = nn;
    if (buf_add(x, name, strlen(name), off) != 0) return -1;
    x->names[x->nnames++] = *off;
    return 0;
}

/* Appends a copy of t with logical line `lline`. */
static int emit(struct expander *x, const struct cfg_token *t, unsigned lline)
{
    if (x->n >= CFG_EXPAND_TOKENS)
        return xerr(x, t, "import: the configuration expands to more than %d tokens",
                    CFG_EXPAND_TOKENS);
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 64;
        struct cfg_token *nt = realloc(x->tok, cap * sizeof *nt);
        if (!nt) return xerr(x, t, "out of memory");
        x->tok = nt;
        size_t *a = realloc(x->toff, cap * sizeof *a);
        if (!a) return xerr(x, t, "out of memory");
        x->toff = a;
        size_t *b = realloc(x->foff, cap * sizeof *b);
        if (!b) return xerr(x, t, "out of memory");
        x->foff = b;
        x->cap = cap;
    }
    size_t to, fo;
    if (intern_file(x, t->file ? t->file : "", &fo) != 0 || buf_add(x, t->text, t->len, &to) != 0)
        return xerr(x, t, "import: the configuration expands to more than %d bytes",
                    CFG_EXPAND_BYTES);
    struct cfg_token *o = &x->tok[x->n];
    *o = *t;
    o->lline = lline;
    x->toff[x->n] = to;
    x->foff[x->n] = fo;
    x->n++;
    if (cfg_is_open(t)) x->depth++;
    if (cfg_is_close(t) && x->depth > 0) x->depth--;
    return 0;
}

static bool same_line(const struct cfg_token *a, const struct cfg_token *b)
{
    return a->lline == b->lline && a->file == b->file;
}

/* True when tok[i] starts a directive or a key: first on its logical line, or after an
 * unquoted brace. */
static bool starts_line(const struct cfg_token *tok, size_t i)
{
    if (i == 0) return true;
    const struct cfg_token *p = &tok[i - 1];
    return !same_line(p, &tok[i]) || cfg_is_open(p) || cfg_is_close(p);
}

/* In tok[0..n), the index of the "}" matching the "{" at `open`, or n. */
static size_t match_close(const struct cfg_token *tok, size_t n, size_t open)
{
    size_t depth = 0;
    for (size_t k = open; k < n; k++) {
        if (cfg_is_open(&tok[k])) {
            depth++;
        } else if (cfg_is_close(&tok[k])) {
            if (--depth == 0) return k;
        }
    }
    return n;
}

static bool is_snippet_key(const struct cfg_token *t)
{
    return !t->quoted && t->len > 2 && t->text[0] == '(' && t->text[t->len - 1] == ')';
}

static int push(struct expander *x, const struct cfg_token *at, const char *kind, const char *what,
                const char *pattern)
{
    size_t kl = strlen(kind);
    for (size_t i = 0; i < x->nstack; i++) {
        const char *s = x->stack[i];
        if (strncmp(s, kind, kl) == 0 && strcmp(s + kl, what) == 0)
            return xerr(x, at, "import: %.200s: import cycle (%s%s imports itself)", pattern,
                        kind[0] == 'f' ? "" : "snippet ", what);
    }
    if (x->nstack > CFG_IMPORT_DEPTH) /* the Corefile itself is the first entry */
        return xerr(x, at, "import: %.200s: imports nested more than %d deep", pattern,
                    CFG_IMPORT_DEPTH);
    size_t wl = strlen(what);
    char *s = malloc(kl + wl + 1);
    if (!s) return xerr(x, at, "out of memory");
    memcpy(s, kind, kl);
    memcpy(s + kl, what, wl + 1);
    x->stack[x->nstack++] = s;
    return 0;
}

static void pop(struct expander *x)
{
    free(x->stack[--x->nstack]);
}

static int expand(struct expander *x, const struct cfg_token *tok, size_t n);

static int define_snippet(struct expander *x, const struct cfg_token *tok, size_t n, size_t i,
                          size_t *next)
{
    const struct cfg_token *k = &tok[i];
    if (i + 1 >= n || !cfg_is_open(&tok[i + 1]) || !same_line(k, &tok[i + 1]))
        return xerr(x, k, "%.*s: expected '{' after a snippet name",
                    (int)(k->len > 64 ? 64 : k->len), k->text);
    size_t close = match_close(tok, n, i + 1);
    if (close >= n)
        return xerr(x, &tok[i + 1], "%.*s: missing '}' to close the snippet",
                    (int)(k->len > 64 ? 64 : k->len), k->text);
    size_t nl = k->len - 2;
    for (struct snippet *s = x->snips; s; s = s->next)
        if (strlen(s->name) == nl && memcmp(s->name, k->text + 1, nl) == 0)
            return xerr(x, k, "%.*s: snippet defined twice", (int)(k->len > 64 ? 64 : k->len),
                        k->text);
    struct snippet *s = calloc(1, sizeof *s);
    if (!s || !(s->name = malloc(nl + 1))) {
        free(s);
        return xerr(x, k, "out of memory");
    }
    memcpy(s->name, k->text + 1, nl);
    s->name[nl] = '\0';
    s->tok = tok + i + 2;
    s->n = close - (i + 2);
    s->next = x->snips;
    x->snips = s;
    *next = close + 1;
    return 0;
}

/* Reads a regular file whole. Opened without blocking and checked first: a FIFO or a
 * device (`import /dev/stdin`) would stall loading, so only regular files are read. */
static char *read_whole(const char *path, size_t *len, int *eno)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        *eno = fd < 0 ? errno : S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        if (fd >= 0) close(fd);
        return NULL;
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        *eno = errno;
        close(fd);
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    while (b) {
        if (n == cap) {
            if (cap >= CFG_IMPORT_FILE_MAX) {
                free(b);
                fclose(f);
                *eno = EFBIG;
                return NULL;
            }
            char *nb = realloc(b, cap * 2);
            if (!nb) break;
            b = nb;
            cap *= 2;
        }
        size_t r = fread(b + n, 1, cap - n, f);
        n += r;
        if (r == 0) {
            if (ferror(f)) {
                *eno = errno ? errno : EIO;
                free(b);
                fclose(f);
                return NULL;
            }
            fclose(f);
            *len = n;
            return b;
        }
    }
    free(b);
    fclose(f);
    *eno = ENOMEM;
    return NULL;
}

static int import_file(struct expander *x, const struct cfg_token *at, const char *path)
{
    size_t len = 0;
    int eno = 0;
    char *text = read_whole(path, &len, &eno);
    if (!text)
        return xerr(x, at, "import: cannot read %.200s: %s", path,
                    eno == EFBIG    ? "file too large"
                    : eno == EINVAL ? "not a regular file"
                                    : strerror(eno));
    char canon[PATH_MAX];
    const char *id = realpath(path, canon) ? canon : path;
    if (push(x, at, "file:", id, at->text) != 0) {
        free(text);
        return -1;
    }
    struct xsrc *src = calloc(1, sizeof *src);
    if (!src) {
        free(text);
        pop(x);
        return xerr(x, at, "out of memory");
    }
    src->next = x->srcs;
    x->srcs = src;
    int rc = cfg_lex(&src->t, path, text, len, x->err);
    free(text);
    if (rc == 0) rc = expand(x, src->t.tok, src->t.n);
    pop(x);
    return rc;
}

static bool has_glob(const char *s)
{
    return strpbrk(s, "*?[") != NULL;
}

static int do_import(struct expander *x, const struct cfg_token *imp, const struct cfg_token *pat)
{
    const char *p = pat->text;
    for (struct snippet *s = x->snips; s; s = s->next) {
        if (strcmp(s->name, p) != 0) continue;
        if (push(x, pat, "snippet:", s->name, p) != 0) return -1;
        int rc = expand(x, s->tok, s->n);
        pop(x);
        return rc;
    }
    /* A path relative to the directory of the file holding the import. */
    const char *from = imp->file ? imp->file : "";
    const char *slash = strrchr(from, '/');
    size_t dl = p[0] == '/' || !slash ? 0 : (size_t)(slash - from) + 1;
    size_t pl = strlen(p);
    if (dl + pl >= PATH_MAX) return xerr(x, pat, "import: %.200s: path too long", p);
    char path[PATH_MAX];
    memcpy(path, from, dl);
    memcpy(path + dl, p, pl + 1);
    if (!has_glob(path)) return import_file(x, pat, path);
    glob_t g;
    memset(&g, 0, sizeof g);
    int grc = glob(path, 0, NULL, &g);
    if (grc == GLOB_NOMATCH) {
        globfree(&g);
        return 0; /* CoreDNS: an empty glob is not an error */
    }
    if (grc != 0) {
        globfree(&g);
        return xerr(x, pat, "import: %.200s: %s", p,
                    grc == GLOB_NOSPACE ? "out of memory" : "cannot read the directory");
    }
    int rc = 0;
    for (size_t i = 0; i < g.gl_pathc && rc == 0; i++) rc = import_file(x, pat, g.gl_pathv[i]);
    globfree(&g);
    return rc;
}

/* Expands tok[0..n) into the result. */
static int expand(struct expander *x, const struct cfg_token *tok, size_t n)
{
    bool have = false;
    const struct cfg_token *last = NULL;
    unsigned cur = 0;
    size_t i = 0;
    while (i < n) {
        const struct cfg_token *t = &tok[i];
        if (starts_line(tok, i) && x->depth == 0 && is_snippet_key(t)) {
            if (define_snippet(x, tok, n, i, &i) != 0) return -1;
            have = false;
            continue;
        }
        if (starts_line(tok, i) && !t->quoted && cfg_is(t, "import")) {
            size_t end = i + 1;
            while (end < n && same_line(t, &tok[end]) && !cfg_is_open(&tok[end]) &&
                   !cfg_is_close(&tok[end]))
                end++;
            if (end - i != 2)
                return xerr(x, t,
                            "import: expected one pattern (a file, a glob or a snippet "
                            "name), got %zu arguments",
                            end - i - 1);
            if (tok[i + 1].len == 0) return xerr(x, &tok[i + 1], "import: empty pattern");
            if (do_import(x, t, &tok[i + 1]) != 0) return -1;
            have = false;
            i = end;
            continue;
        }
        if (!have || !same_line(last, t)) {
            cur = ++x->lline_seq;
            have = true;
        }
        last = t;
        if (emit(x, t, cur) != 0) return -1;
        i++;
    }
    return 0;
}

static void expander_release(struct expander *x)
{
    while (x->srcs) {
        struct xsrc *s = x->srcs;
        x->srcs = s->next;
        cfg_tokens_free(&s->t);
        free(s);
    }
    while (x->snips) {
        struct snippet *s = x->snips;
        x->snips = s->next;
        free(s->name);
        free(s);
    }
    while (x->nstack) pop(x);
    free(x->toff);
    free(x->foff);
    free(x->names);
}

int cfg_lex_expand(struct cfg_tokens *out, const char *file, const char *text, size_t len,
                   struct cfg_error *err)
{
    memset(out, 0, sizeof *out);
    struct expander x;
    memset(&x, 0, sizeof x);
    x.err = err;
    struct xsrc *top = calloc(1, sizeof *top);
    if (!top) return xerr(&x, NULL, "out of memory");
    x.srcs = top;
    int rc = cfg_lex(&top->t, file, text, len, err);
    if (rc == 0) {
        char canon[PATH_MAX];
        const char *f = file ? file : "";
        rc = push(&x, NULL, "file:", realpath(f, canon) ? canon : f, f);
    }
    if (rc == 0) rc = expand(&x, top->t.tok, top->t.n);
    if (rc == 0 && x.n == 0 && !x.buf) {
        /* nothing at all: keep an (empty) buffer so mem_ is set like cfg_lex's */
        size_t off;
        if (buf_add(&x, "", 0, &off) != 0) rc = xerr(&x, NULL, "out of memory");
    }
    if (rc != 0) {
        free(x.tok);
        free(x.buf);
        expander_release(&x);
        return -1;
    }
    for (size_t k = 0; k < x.n; k++) {
        x.tok[k].text = x.buf + x.toff[k];
        x.tok[k].file = x.buf + x.foff[k];
    }
    out->tok = x.tok;
    out->n = x.n;
    out->mem_ = x.buf;
    expander_release(&x);
    return 0;
}
