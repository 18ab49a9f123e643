/* src/server/main.c — redis-cache-dns: the command line, loading the Corefile, the workers,
 * the HTTP endpoints (/metrics, /health, /ready) and signals (SPEC §5).
 *
 *   redis-cache-dns [-conf FILE] [-threads N] [-check] [-version]
 *
 * Without -conf: ./Corefile when it exists, else the embedded default. -check parses the
 * file, loads every redis_cache's TLS files, prints every error as FILE:LINE: NAME: WHAT and
 * exits 1 (0 and "Syntax OK" when clean). SIGTERM/SIGINT: the workers stop reading and
 * accepting, finish in-flight queries and pending Redis writes within 2 s, and the process
 * exits 0.
 */
#include <errno.h>
#include <ev.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "plugin/plugin.h"
#include "server/server.h"

#define SHUTDOWN_BUDGET 2.0
#define ERRS_MAX        64

static void usage(FILE *f)
{
    fprintf(f, "usage: redis-cache-dns [-conf FILE] [-threads N] [-check] [-version]\n");
}

/* Reads a whole file; NULL with errno set. */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
        if (n == cap) {
            if (cap >= (64u << 20)) {
                free(buf);
                buf = NULL;
                errno = EFBIG;
                break;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        errno = EIO;
        return NULL;
    }
    if (buf) *len = n;
    return buf;
}

/* ---- HTTP ---------------------------------------------------------------------------------- */

enum http_kind { HTTP_METRICS = 1, HTTP_HEALTH = 2, HTTP_READY = 4 };

struct app {
    struct srv_config cfg;
    struct srv_runtime *rt;
    struct srv_stats sum;
    struct ev_loop *loop;
    struct srv_http *http[SRV_LISTENERS_MAX + 2];
    size_t nhttp;
    bool ready, stopping;
    ev_signal sigterm, sigint;
};

struct http_ep {
    struct app *app;
    unsigned kinds;
};
static struct http_ep http_eps[SRV_LISTENERS_MAX + 2];

static int on_http(void *priv, const char *path, void (*append)(void *ctx, const char *s, size_t n),
                   void *ctx)
{
    struct http_ep *ep = priv;
    struct app *a = ep->app;
    if ((ep->kinds & HTTP_METRICS) && strcmp(path, "/metrics") == 0) {
        srv_runtime_collect(a->rt, &a->sum);
        srv_metrics_write(&a->cfg, &a->sum, append, ctx);
        return 200;
    }
    if ((ep->kinds & HTTP_HEALTH) && strcmp(path, "/health") == 0) {
        append(ctx, "OK", 2);
        return 200;
    }
    if ((ep->kinds & HTTP_READY) && strcmp(path, "/ready") == 0) {
        if (!a->ready || a->stopping) {
            append(ctx, "not ready", 9);
            return 503;
        }
        append(ctx, "OK", 2);
        return 200;
    }
    append(ctx, "404 page not found\n", 19);
    return 404;
}

static bool http_same(const struct srv_http_addr *a, const struct srv_http_addr *b)
{
    return a->port == b->port && strcmp(a->host, b->host) == 0;
}

/* One listener per distinct address; one address may serve several endpoints. */
static struct srv_http_addr http_addrs[SRV_LISTENERS_MAX + 2];

static void http_add(struct app *a, const struct srv_http_addr *addr, unsigned kind)
{
    for (size_t i = 0; i < a->nhttp; i++)
        if (http_same(&http_addrs[i], addr)) {
            http_eps[i].kinds |= kind;
            return;
        }
    if (a->nhttp == SRV_LISTENERS_MAX + 2) return;
    http_addrs[a->nhttp] = *addr;
    http_eps[a->nhttp].app = a;
    http_eps[a->nhttp].kinds = kind;
    a->nhttp++;
}

static int http_start(struct app *a)
{
    for (size_t i = 0; i < a->cfg.nprometheus; i++)
        http_add(a, &a->cfg.prometheus[i], HTTP_METRICS);
    if (a->cfg.has_health) http_add(a, &a->cfg.health, HTTP_HEALTH);
    if (a->cfg.has_ready) http_add(a, &a->cfg.ready, HTTP_READY);
    for (size_t i = 0; i < a->nhttp; i++) {
        char err[256];
        a->http[i] = srv_http_new(a->loop, &http_addrs[i], on_http, &http_eps[i], err, sizeof err);
        if (!a->http[i]) {
            fprintf(stderr, "[FATAL] listen http %s:%u: %s\n", http_addrs[i].host,
                    http_addrs[i].port, err);
            return -1;
        }
    }
    return 0;
}

/* ---- signals ------------------------------------------------------------------------------- */

static void on_stop_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)revents;
    struct app *a = w->data;
    if (a->stopping) return;
    a->stopping = true;
    fprintf(stderr, "[INFO] signal %d: shutting down\n", w->signum);
    ev_break(loop, EVBREAK_ALL);
}

/* ---- -check and loading ---------------------------------------------------------------------- */

static int load_config(struct srv_config *cfg, const char *conf, bool check)
{
    char *text = NULL;
    size_t len = 0;
    const char *name;
    if (conf) {
        name = conf;
        text = read_file(conf, &len);
        if (!text) {
            fprintf(stderr, "%s: %s\n", conf, strerror(errno));
            return -1;
        }
    } else if (access("Corefile", F_OK) == 0) {
        name = "Corefile";
        text = read_file("Corefile", &len);
        if (!text) {
            fprintf(stderr, "Corefile: %s\n", strerror(errno));
            return -1;
        }
    } else {
        name = "<default Corefile>";
        len = strlen(srv_default_corefile);
        text = malloc(len + 1);
        if (!text) return -1;
        memcpy(text, srv_default_corefile, len + 1);
    }
    static struct cfg_error errs[ERRS_MAX];
    size_t nerrs = 0;
    int rc = srv_config_parse(cfg, name, text, len, errs, ERRS_MAX, &nerrs);
    free(text);
    char line[1024];
    if (rc != 0) {
        for (size_t i = 0; i < nerrs; i++) {
            cfg_error_format(&errs[i], line, sizeof line);
            fprintf(stderr, "%s\n", line);
        }
        if (!nerrs) fprintf(stderr, "%s: invalid configuration\n", name);
        return -1;
    }
    int bad = 0;
    for (size_t b = 0; b < cfg->nblocks; b++) {
        if (!cfg->blocks[b].redis_cache) continue;
        struct cfg_error e;
        memset(&e, 0, sizeof e);
        if (rcp_config_check_files(cfg->blocks[b].redis_cache, &e) != 0) {
            cfg_error_format(&e, line, sizeof line);
            fprintf(stderr, "%s\n", line);
            bad = 1;
        }
    }
    (void)check;
    if (bad) {
        srv_config_free(cfg);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *conf = NULL;
    long threads = 0;
    bool check = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] == '-' && a[1] == '-') a++; /* -flag and --flag, as Go's flag package */
        if (strcmp(a, "-conf") == 0 && i + 1 < argc) {
            conf = argv[++i];
        } else if (strncmp(a, "-conf=", 6) == 0) {
            conf = a + 6;
        } else if ((strcmp(a, "-threads") == 0 && i + 1 < argc) ||
                   strncmp(a, "-threads=", 9) == 0) {
            const char *v = a[8] == '=' ? a + 9 : argv[++i];
            char *end;
            errno = 0;
            threads = strtol(v, &end, 10);
            if (errno || *end || threads < 1 || threads > 256) {
                fprintf(stderr, "-threads: want 1..256, got %s\n", v);
                return 2;
            }
        } else if (strcmp(a, "-check") == 0) {
            check = true;
        } else if (strcmp(a, "-version") == 0) {
            printf("redis-cache-dns %s\n", RC_VERSION);
            return 0;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "-help") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "unknown argument: %s\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }

    static struct app app;
    if (load_config(&app.cfg, conf, check) != 0) return 1;
    if (check) {
        printf("Syntax OK\n");
        srv_config_free(&app.cfg);
        return 0;
    }

    signal(SIGPIPE, SIG_IGN);
    unsigned n = threads ? (unsigned)threads : srv_cpu_count();
    char err[512];
    if (srv_stats_init(&app.sum, &app.cfg) != 0) {
        fprintf(stderr, "[FATAL] out of memory\n");
        return 1;
    }
    app.loop = ev_default_loop(EVFLAG_AUTO);
    if (!app.loop) {
        fprintf(stderr, "[FATAL] cannot create the event loop\n");
        return 1;
    }
    app.rt = srv_runtime_new(&app.cfg, n, err, sizeof err);
    if (!app.rt) {
        fprintf(stderr, "[FATAL] %s\n", err);
        return 1;
    }
    if (http_start(&app) != 0) {
        srv_runtime_free(app.rt);
        return 1;
    }
    ev_signal_init(&app.sigterm, on_stop_signal, SIGTERM);
    ev_signal_init(&app.sigint, on_stop_signal, SIGINT);
    app.sigterm.data = app.sigint.data = &app;
    ev_signal_start(app.loop, &app.sigterm);
    ev_signal_start(app.loop, &app.sigint);

    if (srv_runtime_start(app.rt, err, sizeof err) != 0) {
        fprintf(stderr, "[FATAL] %s\n", err);
        srv_runtime_free(app.rt);
        return 1;
    }
    app.ready = true;
    for (size_t b = 0; b < app.cfg.nblocks; b++)
        fprintf(stderr, "[INFO] serving %s zone%s %s (%u workers)\n",
                app.cfg.blocks[b].server_label, app.cfg.blocks[b].nzones > 1 ? "s" : "",
                app.cfg.blocks[b].zones[0], n);
    fprintf(stderr, "[INFO] redis-cache-dns %s ready\n", RC_VERSION);

    ev_run(app.loop, 0);

    /* SIGTERM/SIGINT: stop accepting HTTP, drain the workers (queries in flight and pending
     * Redis writes) within the budget, exit 0. */
    for (size_t i = 0; i < app.nhttp; i++) srv_http_free(app.http[i]);
    srv_runtime_stop(app.rt, SHUTDOWN_BUDGET);
    srv_runtime_free(app.rt);
    srv_stats_free(&app.sum);
    srv_config_free(&app.cfg);
    fprintf(stderr, "[INFO] stopped\n");
    return 0;
}
