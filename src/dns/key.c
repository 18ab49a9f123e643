/* src/dns/key.c — the cache key of SPEC §1.1: XXH64 over class, type, DO, CD and the
 * lowercase presentation qname cut to 256 bytes, printed as "<prefix>:<16 hex>". It must
 * match the Go plugin's key bit for bit so a mixed fleet shares entries. */
#include "dns/dns.h"

#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

/* class (2) + type (2) + DO (1) + CD (1) */
#define DNS_KEY_FIXED_LEN 6

uint64_t dns_key_hash(const struct dns_question *q, bool do_bit, uint64_t seed)
{
    uint8_t buf[DNS_KEY_FIXED_LEN + DNS_KEY_NAME_MAX];
    dns_put16(buf, q->qclass);
    dns_put16(buf + 2, q->qtype);
    buf[4] = do_bit ? 1 : 0;
    buf[5] = q->cd ? 1 : 0;
    size_t n = dns_name_to_text(q->name, q->name_len, (char *)buf + DNS_KEY_FIXED_LEN,
                                DNS_KEY_NAME_MAX, true);
    if (n > DNS_KEY_NAME_MAX) n = DNS_KEY_NAME_MAX;
    return XXH64(buf, DNS_KEY_FIXED_LEN + n, seed);
}

size_t dns_key_prefix_len(const char *prefix, size_t len)
{
    if (len > 0 && prefix[len - 1] == ':') len--;
    return len;
}

size_t dns_key_format(char *out, size_t cap, const char *prefix, size_t prefix_len, uint64_t hash)
{
    static const char hex[16] = "0123456789abcdef";
    size_t sep = prefix_len ? 1 : 0;
    size_t total = prefix_len + sep + DNS_KEY_HEX_LEN;
    if (cap < total + 1) return 0;
    if (prefix_len) memcpy(out, prefix, prefix_len);
    if (sep) out[prefix_len] = ':';
    char *h = out + prefix_len + sep;
    for (int i = 0; i < DNS_KEY_HEX_LEN; i++) h[i] = hex[(hash >> (60 - 4 * i)) & 0xF];
    out[total] = '\0';
    return total;
}
