/* src/resp/err.c — the error struct every layer fills: a category (the metric `reason`
 * label, SPEC §3) and a human message for logs. */
#include "resp/resp.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *resp_err_kind_name(enum resp_err_kind kind)
{
    switch (kind) {
    case RESP_EK_NONE: return "";
    case RESP_EK_TIMEOUT: return "timeout";
    case RESP_EK_CONNECTION: return "connection";
    case RESP_EK_OTHER: return "other";
    }
    return "other";
}

void resp_err_set(struct resp_err *e, enum resp_err_kind kind, const char *fmt, ...)
{
    if (!e) return;
    e->kind = kind;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    if (n < 0) e->msg[0] = '\0';
    /* truncated: mark it so a log reader knows the message is cut */
    if (n >= (int)sizeof e->msg) memcpy(e->msg + sizeof e->msg - 4, "...", 4);
}
