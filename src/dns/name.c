/* src/dns/name.c — DNS names: bounded unpacking of (compressed) wire names, their
 * presentation form as the Go DNS library prints it (the cache key depends on it, SPEC §1.1),
 * case-insensitive comparison, and the layer's error strings. */
#include "dns/dns.h"

#include <string.h>

static const char *const dns_err_text[DNS_ERR__COUNT] = {
    [DNS_OK] = "ok",
    [DNS_ERR_SHORT_HEADER] = "message shorter than the 12-byte header",
    [DNS_ERR_NAME_TRUNCATED] = "name runs past the end of the message",
    [DNS_ERR_LABEL_TOO_LONG] = "label over 63 bytes",
    [DNS_ERR_NAME_TOO_LONG] = "name over 255 bytes",
    [DNS_ERR_BAD_LABEL_TYPE] = "unsupported label type (0x40/0x80)",
    [DNS_ERR_BAD_POINTER] =
        "compression pointer not at an earlier name (or not strictly backwards)",
    [DNS_ERR_POINTER_LOOP] = "too many compression pointers in one name",
    [DNS_ERR_QUESTION_TRUNCATED] = "question runs past the end of the message",
    [DNS_ERR_RR_TRUNCATED] = "resource record fields run past the end of the message",
    [DNS_ERR_RDATA_OVERRUN] = "RDLENGTH runs past the end of the message",
    [DNS_ERR_TRAILING_BYTES] = "bytes left over after the counted records",
    [DNS_ERR_TOO_MANY_RRS] = "more resource records than room to record them",
    [DNS_ERR_OPT_NOT_ADDITIONAL] = "OPT record outside the additional section",
    [DNS_ERR_OPT_DUPLICATE] = "more than one OPT record",
    [DNS_ERR_OPT_OWNER] = "OPT owner name is not the root",
    [DNS_ERR_BAD_RDATA] = "malformed RDATA",
    [DNS_ERR_NO_QUESTION] = "question count is not 1",
    [DNS_ERR_NO_SPACE] = "output buffer too small",
    [DNS_ERR_TOO_BIG] = "message would exceed 65535 bytes",
};

const char *dns_strerror(enum dns_err err)
{
    if ((unsigned)err >= DNS_ERR__COUNT || !dns_err_text[err]) return "unknown error";
    return dns_err_text[err];
}

enum dns_err dns_name_unpack(const uint8_t *msg, size_t len, size_t off, uint8_t *out,
                             size_t *out_len, size_t *next)
{
    size_t pos = off;
    size_t n = 0;   /* expanded bytes so far, root label excluded */
    size_t end = 0; /* offset just past the name's bytes at `off`, once a pointer is seen */
    unsigned hops = 0;

    for (;;) {
        if (pos >= len) return DNS_ERR_NAME_TRUNCATED;
        uint8_t c = msg[pos];
        if (c == 0) {
            if (n + 1 > DNS_NAME_MAX) return DNS_ERR_NAME_TOO_LONG;
            if (out) out[n] = 0;
            if (out_len) *out_len = n + 1;
            if (next) *next = hops ? end : pos + 1;
            return DNS_OK;
        }
        switch (c & 0xC0) {
        case 0xC0: {
            if (pos + 1 >= len) return DNS_ERR_NAME_TRUNCATED;
            size_t target = ((size_t)(c & 0x3F) << 8) | msg[pos + 1];
            /* Backwards-only pointers make every jump shrink `pos`, so a message cannot
             * send us around in circles; the hop bound caps the work on long chains. */
            if (target >= pos || target < DNS_HEADER_LEN) return DNS_ERR_BAD_POINTER;
            if (++hops > DNS_PTR_HOPS_MAX) return DNS_ERR_POINTER_LOOP;
            if (hops == 1) end = pos + 2;
            pos = target;
            continue;
        }
        case 0x40:
        case 0x80: return DNS_ERR_BAD_LABEL_TYPE;
        default: break;
        }
        /* c <= 63 here: the two top bits are clear. Room for the label, its length byte,
         * and the root byte still to come. */
        if (n + 1 + c + 1 > DNS_NAME_MAX) return DNS_ERR_NAME_TOO_LONG;
        if (pos + 1 + c > len) return DNS_ERR_NAME_TRUNCATED;
        if (out) {
            out[n] = c;
            memcpy(out + n + 1, msg + pos + 1, c);
        }
        n += 1 + (size_t)c;
        pos += 1 + (size_t)c;
    }
}

/* Writes one byte at `pos` when it is inside the output. */
static inline void dns_text_put(char *out, size_t cap, size_t pos, char ch)
{
    if (pos < cap) out[pos] = ch;
}

size_t dns_name_to_text(const uint8_t *wire, size_t wire_len, char *out, size_t cap, bool lower)
{
    size_t pos = 0;
    size_t i = 0;

    while (i < wire_len) {
        size_t l = wire[i++];
        if (l == 0) break;
        /* A well-formed name never gets here; a short or odd one prints what is present. */
        if (l > wire_len - i) l = wire_len - i;
        for (size_t j = 0; j < l; j++) {
            uint8_t b = wire[i + j];
            if (b < 0x20 || b > 0x7E) {
                dns_text_put(out, cap, pos, '\\');
                dns_text_put(out, cap, pos + 1, (char)('0' + b / 100));
                dns_text_put(out, cap, pos + 2, (char)('0' + (b / 10) % 10));
                dns_text_put(out, cap, pos + 3, (char)('0' + b % 10));
                pos += 4;
                continue;
            }
            switch (b) {
            case '.':
            case ' ':
            case '\'':
            case '@':
            case ';':
            case '(':
            case ')':
            case '"':
            case '\\': dns_text_put(out, cap, pos++, '\\'); break;
            default:
                if (lower && b >= 'A' && b <= 'Z') b = (uint8_t)(b + ('a' - 'A'));
                break;
            }
            dns_text_put(out, cap, pos++, (char)b);
        }
        i += l;
        dns_text_put(out, cap, pos++, '.');
    }
    if (pos == 0) dns_text_put(out, cap, pos++, '.');
    return pos;
}

static inline uint8_t dns_ascii_lower(uint8_t b)
{
    return (b >= 'A' && b <= 'Z') ? (uint8_t)(b + ('a' - 'A')) : b;
}

bool dns_name_equal_nocase(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len)
{
    if (a_len != b_len) return false;
    /* Length bytes are at most 63, below 'A', so folding them is harmless and the names
     * compare byte for byte. */
    for (size_t i = 0; i < a_len; i++)
        if (dns_ascii_lower(a[i]) != dns_ascii_lower(b[i])) return false;
    return true;
}

size_t dns_name_from_text(const char *t, uint8_t out[DNS_NAME_MAX])
{
    size_t n = 0;
    if (t[0] == '.' && t[1] == '\0') {
        out[0] = 0;
        return 1;
    }
    while (*t) {
        const char *dot = strchr(t, '.');
        size_t l = dot ? (size_t)(dot - t) : strlen(t);
        if (l == 0 || l > DNS_LABEL_MAX || n + 1 + l + 1 > DNS_NAME_MAX) return 0;
        out[n++] = (uint8_t)l;
        for (size_t i = 0; i < l; i++) {
            char c = t[i];
            out[n++] = (uint8_t)((c >= 'A' && c <= 'Z') ? c + 32 : c);
        }
        t += l;
        if (*t == '.') t++;
    }
    out[n++] = 0;
    return n;
}

bool dns_name_in_zone(const uint8_t *name, size_t len, const uint8_t *zone, size_t zlen)
{
    if (zlen > len) return false;
    size_t at = len - zlen;
    if (memcmp(name + at, zone, zlen) != 0) return false;
    size_t p = 0; /* `at` must fall on a label boundary of name */
    while (p < at) p += 1u + name[p];
    return p == at;
}

const char *dns_zone_normalize(const char *text, size_t len, char out[DNS_ZONE_TEXT_MAX])
{
    if (len == 0) return "empty zone";
    if (len == 1 && text[0] == '.') {
        memcpy(out, ".", 2);
        return NULL;
    }
    size_t o = 0, label = 0;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (c == '.') {
            if (label == 0) return "empty label";
            label = 0;
        } else {
            if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
                return "invalid character (zones are plain domain names)";
            if (++label > DNS_LABEL_MAX) return "label over 63 bytes";
        }
        if (o >= DNS_ZONE_TEXT_MAX - 2) return "name over 255 bytes";
        out[o++] = c;
    }
    if (label) { /* the text with its dot stays <= 254 bytes: wire <= 255 */
        if (o >= DNS_ZONE_TEXT_MAX - 2) return "name over 255 bytes";
        out[o++] = '.';
    }
    out[o] = '\0';
    return NULL;
}
