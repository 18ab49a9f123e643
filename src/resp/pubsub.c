/* src/resp/pubsub.c — telling pub/sub frames apart from ordinary replies (resp/pubsub.h). */
#include <string.h>
#include <strings.h>

#include "resp/pubsub.h"

static int first_elem_is(const struct resp_value *v, const char *const *words)
{
    if ((v->type != RESP_ARRAY && v->type != RESP_PUSH) || v->len < 1) return 0;
    const struct resp_value *k = &v->elems[0];
    if (k->type != RESP_BULK && k->type != RESP_STRING) return 0;
    for (; *words; words++)
        if (strlen(*words) == k->len && strncasecmp(k->str, *words, k->len) == 0) return 1;
    return 0;
}

int resp_is_sub_confirm(const struct resp_value *v)
{
    static const char *const w[] = {"subscribe",    "psubscribe",   "ssubscribe", "unsubscribe",
                                    "punsubscribe", "sunsubscribe", NULL};
    return first_elem_is(v, w);
}

int resp_is_pubsub_message(const struct resp_value *v)
{
    static const char *const w[] = {"message", "pmessage", "smessage", NULL};
    return v->type == RESP_ARRAY && v->len >= 3 && first_elem_is(v, w);
}
