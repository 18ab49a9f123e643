/* src/topology/crc16.c — the Redis Cluster hash slot of a key: CRC16-XMODEM (polynomial
 * 0x1021, initial value 0, no reflection, no final xor) of the key, or of its hash tag,
 * modulo 16384.
 *
 * The 256-entry table is computed by the compiler from the polynomial (eight shift-and-xor
 * steps per entry, written as constant expressions), so it is read-only data: no table
 * pasted from elsewhere, and no lazily filled global that two threads could race on.
 */
#include <stdint.h>
#include <string.h>

#include "topology/cluster_internal.h"

#define CRC16_POLY 0x1021u

/* One bit step of the MSB-first CRC on a 16-bit register. */
#define CRC_STEP(c) ((((c) << 1) ^ (((c)&0x8000u) ? CRC16_POLY : 0u)) & 0xFFFFu)
#define CRC_ENTRY(i)                                                                               \
    ((uint16_t)CRC_STEP(CRC_STEP(CRC_STEP(                                                         \
        CRC_STEP(CRC_STEP(CRC_STEP(CRC_STEP(CRC_STEP(((unsigned)(i)) << 8))))))))) /* 8 steps */
#define CRC_ROW4(i)  CRC_ENTRY(i), CRC_ENTRY((i) + 1), CRC_ENTRY((i) + 2), CRC_ENTRY((i) + 3)
#define CRC_ROW16(i) CRC_ROW4(i), CRC_ROW4((i) + 4), CRC_ROW4((i) + 8), CRC_ROW4((i) + 12)
#define CRC_ROW64(i) CRC_ROW16(i), CRC_ROW16((i) + 16), CRC_ROW16((i) + 32), CRC_ROW16((i) + 48)

static const uint16_t crc16_table[256] = {
    CRC_ROW64(0),
    CRC_ROW64(64),
    CRC_ROW64(128),
    CRC_ROW64(192),
};

/* CRC16-XMODEM of len bytes (exported for the unit tests' check value). */
uint16_t topo_crc16(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++)
        crc = (uint16_t)((crc << 8) ^ crc16_table[((crc >> 8) ^ p[i]) & 0xFF]);
    return crc;
}

unsigned topo_cluster_slot(const void *key, size_t len)
{
    const char *k = key;
    /* A hash tag is what lies between the first '{' and the first '}' after it, when that
     * is not empty; otherwise the whole key is hashed. */
    const char *open = len ? memchr(k, '{', len) : NULL;
    if (open) {
        size_t start = (size_t)(open - k) + 1;
        const char *close = memchr(k + start, '}', len - start);
        if (close && close > k + start) {
            return topo_crc16(k + start, (size_t)(close - (k + start))) & (TOPO_CLUSTER_SLOTS - 1);
        }
    }
    return topo_crc16(k, len) & (TOPO_CLUSTER_SLOTS - 1);
}
