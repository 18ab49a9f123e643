/* src/topology/sentinel_parse.c — reading Sentinel's replies and messages (see
 * sentinel_parse.h). Everything that comes from a sentinel is untrusted: types, counts,
 * lengths, hosts and ports are all checked before a value leaves this file.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "topology/sentinel_parse.h"

static bool sp_is_text(const struct resp_value *v)
{
    return v && (v->type == RESP_BULK || v->type == RESP_STRING || v->type == RESP_VERBATIM);
}

static bool sp_is_error(const struct resp_value *v)
{
    return v && (v->type == RESP_ERROR || v->type == RESP_BULK_ERROR);
}

static bool sp_text_eq(const char *p, size_t len, const char *w)
{
    size_t n = strlen(w);
    return len == n && strncasecmp(p, w, n) == 0;
}

/* A port written as 1 to 5 decimal digits, 1..65535. */
static bool sp_port(const char *p, size_t len, uint16_t *out)
{
    if (len == 0 || len > 5) return false;
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9') return false;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    if (v == 0 || v > 65535) return false;
    *out = (uint16_t)v;
    return true;
}

/* A host as a sentinel reports it: an IP literal or a hostname, printable, no spaces. */
static bool sp_host(const char *p, size_t len, char out[TOPO_HOST_MAX])
{
    if (len == 0 || len >= TOPO_HOST_MAX) return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch <= 0x20 || ch >= 0x7f) return false;
    }
    memcpy(out, p, len);
    out[len] = '\0';
    return true;
}

static bool sp_port_value(const struct resp_value *v, uint16_t *out)
{
    if (v->type == RESP_INTEGER) {
        if (v->integer < 1 || v->integer > 65535) return false;
        *out = (uint16_t)v->integer;
        return true;
    }
    return sp_is_text(v) && sp_port(v->str, v->len, out);
}

static void sp_err_reply(const struct resp_value *v, char *err, size_t errlen)
{
    int n = v->len > 120 ? 120 : (int)v->len;
    snprintf(err, errlen, "%.*s", n, v->str ? v->str : "");
}

int sentinel_parse_master_addr(const struct resp_value *v, struct topo_hostport *out, char *err,
                               size_t errlen)
{
    if (!v) {
        snprintf(err, errlen, "no reply");
        return -1;
    }
    if (v->type == RESP_NULL) return 0;
    if (sp_is_error(v)) {
        sp_err_reply(v, err, errlen);
        return -1;
    }
    if (v->type != RESP_ARRAY || v->len != 2) {
        snprintf(err, errlen, "get-master-addr-by-name: expected [ip, port], got %s of %zu",
                 resp_type_name(v->type), v->type == RESP_ARRAY ? v->len : (size_t)0);
        return -1;
    }
    const struct resp_value *h = &v->elems[0], *p = &v->elems[1];
    struct topo_hostport hp;
    if (!sp_is_text(h) || !sp_host(h->str, h->len, hp.host)) {
        snprintf(err, errlen, "get-master-addr-by-name: bad host");
        return -1;
    }
    if (!sp_port_value(p, &hp.port)) {
        snprintf(err, errlen, "get-master-addr-by-name: bad port");
        return -1;
    }
    *out = hp;
    return 1;
}

int sentinel_parse_role(const struct resp_value *v)
{
    if (!v || v->type != RESP_ARRAY || v->len < 1 || !sp_is_text(&v->elems[0])) return -1;
    const struct resp_value *r = &v->elems[0];
    if (sp_text_eq(r->str, r->len, "master")) return 1;
    if (sp_text_eq(r->str, r->len, "slave") || sp_text_eq(r->str, r->len, "replica") ||
        sp_text_eq(r->str, r->len, "sentinel"))
        return 0;
    return -1;
}

bool sentinel_flags_usable(const char *flags, size_t len)
{
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && flags[j] != ',') j++;
        const char *w = flags + i;
        size_t wl = j - i;
        if (sp_text_eq(w, wl, "s_down") || sp_text_eq(w, wl, "o_down") ||
            sp_text_eq(w, wl, "disconnected"))
            return false;
        i = j + 1;
    }
    return true;
}

/* One instance: a map or a flat array of field/value pairs. 1 with *out set, 0 when it is
 * skipped (down, or no usable ip/port). */
static int sp_instance(const struct resp_value *inst, bool skip_down, struct topo_hostport *out)
{
    if ((inst->type != RESP_ARRAY && inst->type != RESP_MAP) || inst->len % 2 != 0) return 0;
    bool have_host = false, have_port = false, usable = true;
    struct topo_hostport hp;
    for (size_t i = 0; i + 1 < inst->len; i += 2) {
        const struct resp_value *k = &inst->elems[i], *val = &inst->elems[i + 1];
        if (!sp_is_text(k)) continue;
        if (sp_text_eq(k->str, k->len, "ip")) {
            have_host = sp_is_text(val) && sp_host(val->str, val->len, hp.host);
        } else if (sp_text_eq(k->str, k->len, "port")) {
            have_port = sp_port_value(val, &hp.port);
        } else if (sp_text_eq(k->str, k->len, "flags")) {
            usable = sp_is_text(val) && sentinel_flags_usable(val->str, val->len);
        }
    }
    if (!have_host || !have_port) return 0;
    if (skip_down && !usable) return 0;
    *out = hp;
    return 1;
}

int sentinel_parse_instances(const struct resp_value *v, bool skip_down, struct topo_hostport *out,
                             size_t cap, char *err, size_t errlen)
{
    if (!v) {
        snprintf(err, errlen, "no reply");
        return -1;
    }
    if (sp_is_error(v)) {
        sp_err_reply(v, err, errlen);
        return -1;
    }
    if (v->type != RESP_ARRAY && v->type != RESP_SET) {
        snprintf(err, errlen, "expected an array of instances, got %s", resp_type_name(v->type));
        return -1;
    }
    size_t n = 0;
    for (size_t i = 0; i < v->len && n < cap; i++) {
        if (sp_instance(&v->elems[i], skip_down, &out[n])) n++;
    }
    return (int)n;
}

int sentinel_parse_message(const struct resp_value *v, const char **chan, size_t *chanlen,
                           const char **payload, size_t *paylen)
{
    if (!v || (v->type != RESP_ARRAY && v->type != RESP_PUSH) || v->len != 3) return -1;
    const struct resp_value *k = &v->elems[0], *c = &v->elems[1], *p = &v->elems[2];
    if (!sp_is_text(k) || !sp_text_eq(k->str, k->len, "message")) return -1;
    if (!sp_is_text(c) || !sp_is_text(p)) return -1;
    *chan = c->str;
    *chanlen = c->len;
    *payload = p->str;
    *paylen = p->len;
    return 0;
}

/* Splits a space-separated payload into at most max words; returns the count, or -1 when
 * there are more (or a word is empty: two spaces in a row, leading or trailing space). */
static int sp_words(const char *p, size_t len, const char **w, size_t *wl, int max)
{
    int n = 0;
    size_t i = 0;
    if (len == 0) return 0;
    for (;;) {
        size_t j = i;
        while (j < len && p[j] != ' ') j++;
        if (j == i || n == max) return -1;
        w[n] = p + i;
        wl[n] = j - i;
        n++;
        if (j == len) return n;
        i = j + 1;
        if (i == len) return -1;
    }
}

int sentinel_parse_switch_master(const char *p, size_t len, const char *master,
                                 struct topo_hostport *out)
{
    const char *w[5];
    size_t wl[5];
    if (!p || sp_words(p, len, w, wl, 5) != 5) return -1;
    struct topo_hostport old, hp;
    if (!sp_host(w[1], wl[1], old.host) || !sp_port(w[2], wl[2], &old.port)) return -1;
    if (!sp_host(w[3], wl[3], hp.host) || !sp_port(w[4], wl[4], &hp.port)) return -1;
    if (!(wl[0] == strlen(master) && memcmp(w[0], master, wl[0]) == 0)) return 0;
    *out = hp;
    return 1;
}

int sentinel_parse_instance_event(const char *p, size_t len, const char *master)
{
    const char *w[8];
    size_t wl[8];
    int n = p ? sp_words(p, len, w, wl, 8) : -1;
    uint16_t port;
    if (n < 4 || !sp_port(w[3], wl[3], &port)) return -1;
    size_t ml = strlen(master);
    if (n == 4) { /* the master itself: "master <name> <ip> <port>" */
        if (!sp_text_eq(w[0], wl[0], "master")) return -1;
        return wl[1] == ml && memcmp(w[1], master, ml) == 0;
    }
    if (n != 8 || wl[4] != 1 || w[4][0] != '@' || !sp_port(w[7], wl[7], &port)) return -1;
    return wl[5] == ml && memcmp(w[5], master, ml) == 0;
}

bool sentinel_hostport_eq(const struct topo_hostport *a, const struct topo_hostport *b)
{
    return a->port == b->port && strcasecmp(a->host, b->host) == 0;
}
