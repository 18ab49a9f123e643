/* src/config/cursor.c — walking a token list (directive, arguments, blocks) and the
 * "FILE:LINE: WHAT" error every configuration message is printed as. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#include "config/config.h"

void cfg_error_format(const struct cfg_error *err, char *buf, size_t cap)
{
    if (!buf || cap == 0) return;
    if (err->line)
        snprintf(buf, cap, "%s:%u: %s", err->file, err->line, err->msg);
    else
        snprintf(buf, cap, "%s: %s", err->file, err->msg);
}

/* A NULL token (the input ended) keeps err's file and line as they were. */
void cfg_error_at(struct cfg_error *err, const struct cfg_token *t, const char *fmt, ...)
{
    if (!err) return;
    if (t) {
        snprintf(err->file, sizeof err->file, "%s", t->file ? t->file : "");
        err->line = t->line;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
}

bool cfg_is_open(const struct cfg_token *t)
{
    return t && !t->quoted && cfg_is(t, "{");
}

bool cfg_is_close(const struct cfg_token *t)
{
    return t && !t->quoted && cfg_is(t, "}");
}

size_t cfg_args_end(const struct cfg_cursor *c)
{
    const struct cfg_tokens *t = c->t;
    if (c->pos >= t->n) return t->n;
    unsigned lline = t->tok[c->pos].lline;
    const char *file = t->tok[c->pos].file;
    size_t i = c->pos + 1;
    for (; i < t->n; i++) {
        const struct cfg_token *k = &t->tok[i];
        if (k->lline != lline || k->file != file) break;
        if (cfg_is_open(k) || cfg_is_close(k)) break;
    }
    return i;
}

size_t cfg_block_end(const struct cfg_tokens *t, size_t i)
{
    if (i >= t->n || !cfg_is_open(&t->tok[i])) return i;
    size_t depth = 0;
    for (size_t k = i; k < t->n; k++) {
        if (cfg_is_open(&t->tok[k])) {
            depth++;
        } else if (cfg_is_close(&t->tok[k])) {
            if (--depth == 0) return k;
        }
    }
    return t->n;
}

int cfg_directive_span(struct cfg_cursor *c, size_t *end, size_t *open, size_t *close)
{
    const struct cfg_tokens *t = c->t;
    *end = cfg_args_end(c);
    *open = *close = SIZE_MAX;
    size_t next = *end;
    if (*end < t->n && cfg_is_open(&t->tok[*end])) {
        *open = *end;
        *close = cfg_block_end(t, *open);
        if (*close >= t->n) {
            c->pos = t->n;
            return -1;
        }
        next = *close + 1;
    }
    c->pos = next;
    return 0;
}
