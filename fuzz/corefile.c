/* fuzz/corefile.c — a whole Corefile (src/server/corefile.c: server blocks, keys and every
 * directive with the plugins' own parsers) from arbitrary bytes.
 *
 * On error: at least one error, each naming the file and a line inside the input (or, for
 * a file the input imports, that file and a line in it), with a message; nothing is left
 * allocated. On success: the blocks respect the model's limits,
 * zones are lowercase with a trailing dot and their wire form agrees, labels are
 * CoreDNS-shaped, the prometheus addresses are distinct, and routing a block's own zone
 * on its port finds a block serving exactly that zone. Leaks are caught by ASan.
 *
 * Inputs naming /dev, /proc or /sys are skipped: `forward` reads resolv.conf-style files at
 * parse time, and a device could block the fuzzer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "plugin/plugin.h"
#include "server/server.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x)) abort();                                                                         \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool mentions(const uint8_t *data, size_t size, const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i + n <= size; i++)
        if (memcmp(data + i, s, n) == 0) return true;
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (mentions(data, size, "/dev") || mentions(data, size, "/proc") ||
        mentions(data, size, "/sys") || mentions(data, size, "{$"))
        return 0;
    bool imports = mentions(data, size, "import");
    unsigned lines = 1;
    for (size_t i = 0; i < size; i++) lines += data[i] == '\n';

    struct srv_config cfg;
    struct cfg_error errs[8];
    size_t nerrs = 99;
    int rc = srv_config_parse(&cfg, "fuzz", (const char *)data, size, errs, 8, &nerrs);
    if (rc != 0) {
        CHECK(rc == -1);
        CHECK(nerrs >= 1 && nerrs <= 8);
        for (size_t i = 0; i < nerrs; i++) {
            /* `import` may pull in real files (globs relative to the working directory):
             * their errors name that file and one of its lines */
            if (strcmp(errs[i].file, "fuzz") == 0)
                CHECK(errs[i].line >= 1 && errs[i].line <= lines);
            else
                CHECK(imports && errs[i].file[0] != '\0' && errs[i].line >= 1);
            CHECK(errs[i].msg[0] != '\0');
            char buf[700];
            cfg_error_format(&errs[i], buf, sizeof buf);
        }
        CHECK(cfg.blocks == NULL && cfg.nblocks == 0);
        return 0;
    }
    CHECK(nerrs == 0);
    CHECK(cfg.nblocks >= 1 && cfg.nblocks <= SRV_BLOCKS_MAX);
    CHECK(cfg.nprometheus <= SRV_LISTENERS_MAX);
    for (size_t i = 0; i < cfg.nprometheus; i++) {
        CHECK(cfg.prometheus[i].port != 0);
        for (size_t k = 0; k < i; k++)
            CHECK(cfg.prometheus[k].port != cfg.prometheus[i].port ||
                  strcmp(cfg.prometheus[k].host, cfg.prometheus[i].host) != 0);
    }
    for (size_t b = 0; b < cfg.nblocks; b++) {
        const struct srv_block *blk = &cfg.blocks[b];
        CHECK(blk->nzones >= 1 && blk->nzones <= SRV_KEYS_MAX);
        CHECK(blk->port != 0);
        CHECK(blk->nbinds <= SRV_BINDS_MAX);
        CHECK(strncmp(blk->server_label, "dns://", 6) == 0);
        CHECK(blk->line >= 1 &&
              (imports || blk->line <= lines)); /* an imported block: its file's line */
        if (blk->has_cache) CHECK(blk->cache.nzones >= 1);
        if (blk->redis_cache) CHECK(blk->redis_cache->nzones >= 1);
        for (size_t z = 0; z < blk->nzones; z++) {
            const char *zone = blk->zones[z];
            size_t zl = strlen(zone);
            CHECK(zl >= 1 && zone[zl - 1] == '.');
            for (size_t k = 0; k < zl; k++) CHECK(!(zone[k] >= 'A' && zone[k] <= 'Z'));
            /* the wire form spells the same name */
            size_t wl = blk->zone_wire_len[z];
            CHECK(wl >= 1 && wl <= 255 && blk->zone_wire[z][wl - 1] == 0);
            struct dns_question q;
            memset(&q, 0, sizeof q);
            memcpy(q.name_lc, blk->zone_wire[z], wl);
            memcpy(q.name, blk->zone_wire[z], wl);
            q.name_len = (uint16_t)wl;
            char text[1100];
            size_t tl = dns_name_to_text(q.name_lc, wl, text, sizeof text, true);
            CHECK(tl > 0 && tl < sizeof text);
            text[tl] = '\0';
            CHECK(strcmp(text, zone) == 0);
            const struct srv_block *r = srv_config_route(&cfg, blk->port, &q);
            CHECK(r != NULL && r->port == blk->port);
            bool has = false;
            for (size_t k = 0; k < r->nzones; k++) has |= strcmp(r->zones[k], zone) == 0;
            CHECK(has);
        }
    }
    srv_config_free(&cfg);
    CHECK(cfg.blocks == NULL && cfg.nblocks == 0);
    return 0;
}
