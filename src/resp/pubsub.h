/* src/resp/pubsub.h — pub/sub frame classification for the connection (conn.c). */
#ifndef RC_RESP_PUBSUB_H
#define RC_RESP_PUBSUB_H

#include "resp/resp.h"

/* A (un)subscribe confirmation: an array or push whose first element is "subscribe",
 * "psubscribe", "ssubscribe" or their "un" forms (any case). */
int resp_is_sub_confirm(const struct resp_value *v);

/* A pub/sub message delivered as a RESP2 array: "message", "pmessage" or "smessage" with
 * at least 3 elements. */
int resp_is_pubsub_message(const struct resp_value *v);

#endif /* RC_RESP_PUBSUB_H */
