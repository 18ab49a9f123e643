/* src/server/main.c — redis-cache-dns: the command line, loading the Corefile, the workers,
 * the HTTP endpoints (/metrics, /health, /ready) and signals (SPEC §5).
 *
 *   redis-cache-dns [-conf FILE] [-threads N] [-check] [-version]
 *
 * Without -conf: ./Corefile when it exists, else the embedded default. -check parses the
 * file, loads every redis_cache's TLS files, prints every error as FILE:LINE: NAME: WHAT and
 * exits 1 (0 and "Syntax OK" when clean).
 *
 * Signals: SIGTERM/SIGINT: after `health { lameduck D }` (D more seconds of serving, /health
 * still 200, /ready 503; a second signal cuts it short), the workers stop reading and
 * accepting, finish in-flight queries and pending Redis writes within 2 s, and the process
 * exits 0. SIGHUP/SIGUSR1, and the `reload` directive's timer when the file's checksum
 * changed: the Corefile is read and checked again (TLS files included), HTTP listeners of
 * new addresses are opened, then the workers swap (srv_runtime_reload); any failure is
 * logged as "[ERROR] reload: FILE:LINE: NAME: WHAT" and the old configuration keeps
 * serving. A file the timer found broken is reported once, until it changes again.
 */
#include <errno.h>
#include <ev.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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

/* ---- the application ------------------------------------------------------------------- */

enum http_kind { HTTP_METRICS = 1, HTTP_HEALTH = 2, HTTP_READY = 4 };
#define HTTP_MAX (SRV_LISTENERS_MAX + 2)

struct app;

/* One HTTP listener: an address and the endpoints it serves (heap: the handler's priv). */
struct http_site {
    struct app *app;
    struct srv_http_addr addr;
    unsigned kinds;
    struct srv_http *h;
};

struct app {
    const char *conf; /* the file reloads read; NULL: the embedded default */
    const char *name; /* for messages */
    struct srv_runtime *rt;
    struct srv_stats sum;
    struct ev_loop *loop;
    struct http_site *http[HTTP_MAX];
    size_t nhttp;
    bool ready, stopping, lameduck;
    uint64_t checksum, bad_checksum; /* of the file serving now; of the last broken one */
    uint64_t reload_failed;          /* coredns_reload_failed_total */
    unsigned seed;
    ev_signal sigterm, sigint, sighup, sigusr1;
    ev_timer reload_timer, lameduck_timer;
};

/* ---- HTTP ---------------------------------------------------------------------------------- */

static int on_http(void *priv, const char *path, void (*append)(void *ctx, const char *s, size_t n),
                   void *ctx)
{
    struct http_site *site = priv;
    struct app *a = site->app;
    if ((site->kinds & HTTP_METRICS) && strcmp(path, "/metrics") == 0) {
        srv_runtime_collect(a->rt, &a->sum);
        srv_metrics_write(srv_runtime_config(a->rt), &a->sum, append, ctx);
        char line[256];
        int len = snprintf(line, sizeof line,
                           "# HELP coredns_reload_failed_total Counter of the number of failed "
                           "reload attempts.\n# TYPE coredns_reload_failed_total counter\n"
                           "coredns_reload_failed_total %llu\n",
                           (unsigned long long)a->reload_failed);
        if (len > 0 && (size_t)len < sizeof line) append(ctx, line, (size_t)len);
        return 200;
    }
    if ((site->kinds & HTTP_HEALTH) && strcmp(path, "/health") == 0) {
        append(ctx, "OK", 2); /* also during lameduck, as CoreDNS */
        return 200;
    }
    if ((site->kinds & HTTP_READY) && strcmp(path, "/ready") == 0) {
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

/* The listeners cfg asks for: one per distinct address, serving one or more endpoints. */
static size_t http_wanted(const struct srv_config *cfg, struct http_site *out)
{
    size_t n = 0;
    struct {
        const struct srv_http_addr *addr;
        unsigned kind;
    } want[HTTP_MAX];
    size_t nw = 0;
    for (size_t i = 0; i < cfg->nprometheus && nw < HTTP_MAX; i++)
        want[nw].addr = &cfg->prometheus[i], want[nw++].kind = HTTP_METRICS;
    if (cfg->has_health && nw < HTTP_MAX)
        want[nw].addr = &cfg->health, want[nw++].kind = HTTP_HEALTH;
    if (cfg->has_ready && nw < HTTP_MAX) want[nw].addr = &cfg->ready, want[nw++].kind = HTTP_READY;
    for (size_t i = 0; i < nw; i++) {
        size_t j;
        for (j = 0; j < n; j++)
            if (http_same(&out[j].addr, want[i].addr)) break;
        if (j == n) {
            memset(&out[n], 0, sizeof out[n]);
            out[n++].addr = *want[i].addr;
        }
        out[j].kinds |= want[i].kind;
    }
    return n;
}

static void http_close(struct http_site *s)
{
    if (!s) return;
    if (s->h) srv_http_free(s->h);
    free(s);
}

/* Prepares the listener set for cfg in next[]: a listener whose address stays is reused (its
 * endpoints updated only by http_commit), new addresses are opened now. -1 (new ones closed)
 * with err on a bind error. */
static int http_prepare(struct app *a, const struct srv_config *cfg, struct http_site **next,
                        size_t *nnext, char *err, size_t errlen)
{
    struct http_site want[HTTP_MAX];
    size_t n = http_wanted(cfg, want);
    for (size_t i = 0; i < n; i++) {
        next[i] = NULL;
        for (size_t j = 0; j < a->nhttp; j++)
            if (http_same(&a->http[j]->addr, &want[i].addr)) next[i] = a->http[j];
        if (next[i]) continue;
        struct http_site *s = calloc(1, sizeof *s);
        char e[256] = "";
        if (s) {
            *s = want[i];
            s->app = a;
            s->h = srv_http_new(a->loop, &s->addr, on_http, s, e, sizeof e);
        }
        if (!s || !s->h) {
            snprintf(err, errlen, "listen http %s:%u: %s", want[i].addr.host, want[i].addr.port,
                     s ? e : "out of memory");
            free(s);
            for (size_t k = 0; k < i; k++) {
                bool old = false;
                for (size_t j = 0; j < a->nhttp; j++) old |= a->http[j] == next[k];
                if (!old) http_close(next[k]);
            }
            return -1;
        }
        next[i] = s;
    }
    *nnext = n; /* the endpoints of reused listeners change at http_commit */
    return 0;
}

static unsigned http_kinds_for(const struct srv_config *cfg, const struct http_site *s)
{
    struct http_site want[HTTP_MAX];
    size_t n = http_wanted(cfg, want);
    for (size_t i = 0; i < n; i++)
        if (http_same(&want[i].addr, &s->addr)) return want[i].kinds;
    return 0;
}

/* Makes next[] the listener set: endpoints updated, listeners not in it closed. */
static void http_commit(struct app *a, const struct srv_config *cfg, struct http_site **next,
                        size_t nnext)
{
    for (size_t j = 0; j < a->nhttp; j++) {
        bool kept = false;
        for (size_t i = 0; i < nnext; i++) kept |= next[i] == a->http[j];
        if (!kept) http_close(a->http[j]);
    }
    for (size_t i = 0; i < nnext; i++) {
        next[i]->kinds = http_kinds_for(cfg, next[i]);
        a->http[i] = next[i];
    }
    a->nhttp = nnext;
}

/* Undoes http_prepare: closes the listeners it opened. */
static void http_abort(struct app *a, struct http_site **next, size_t nnext)
{
    for (size_t i = 0; i < nnext; i++) {
        bool old = false;
        for (size_t j = 0; j < a->nhttp; j++) old |= a->http[j] == next[i];
        if (!old) http_close(next[i]);
    }
}

/* ---- loading ----------------------------------------------------------------------------- */

/* Reads and checks the Corefile (path NULL: the embedded default), TLS files included.
 * Prints every error as `prefix` + "FILE:LINE: NAME: WHAT". Returns the heap config or
 * NULL; *sum gets the text's checksum (also when it does not parse). */
static struct srv_config *load_config(const char *path, const char *name, const char *prefix,
                                      uint64_t *sum)
{
    char *text = NULL;
    size_t len = 0;
    if (path) {
        text = read_file(path, &len);
        if (!text) {
            fprintf(stderr, "%s%s: %s\n", prefix, path, strerror(errno));
            return NULL;
        }
    } else {
        len = strlen(srv_default_corefile);
        text = malloc(len + 1);
        if (!text) return NULL;
        memcpy(text, srv_default_corefile, len + 1);
    }
    if (sum) *sum = srv_reload_checksum(text, len);
    struct srv_config *cfg = calloc(1, sizeof *cfg);
    struct cfg_error *errs = calloc(ERRS_MAX, sizeof *errs);
    if (!cfg || !errs) {
        fprintf(stderr, "%s%s: out of memory\n", prefix, name);
        free(text);
        free(cfg);
        free(errs);
        return NULL;
    }
    size_t nerrs = 0;
    int rc = srv_config_parse(cfg, name, text, len, errs, ERRS_MAX, &nerrs);
    free(text);
    char line[1024];
    if (rc != 0) {
        for (size_t i = 0; i < nerrs; i++) {
            cfg_error_format(&errs[i], line, sizeof line);
            fprintf(stderr, "%s%s\n", prefix, line);
        }
        if (!nerrs) fprintf(stderr, "%s%s: invalid configuration\n", prefix, name);
        free(errs);
        free(cfg);
        return NULL;
    }
    free(errs);
    int bad = 0;
    for (size_t b = 0; b < cfg->nblocks; b++) {
        if (!cfg->blocks[b].redis_cache) continue;
        struct cfg_error e;
        memset(&e, 0, sizeof e);
        if (rcp_config_check_files(cfg->blocks[b].redis_cache, &e) != 0) {
            cfg_error_format(&e, line, sizeof line);
            fprintf(stderr, "%s%s\n", prefix, line);
            bad = 1;
        }
    }
    if (bad) {
        srv_config_free(cfg);
        free(cfg);
        return NULL;
    }
    return cfg;
}

/* ---- reload -------------------------------------------------------------------------------- */

static void reload_timer_arm(struct app *a)
{
    const struct srv_config *cfg = srv_runtime_config(a->rt);
    ev_timer_stop(a->loop, &a->reload_timer);
    if (!cfg->has_reload || !a->conf) return;
    double rnd = (double)rand_r(&a->seed) / ((double)RAND_MAX + 1.0);
    a->reload_timer.repeat = srv_reload_period(cfg->reload_interval, cfg->reload_jitter, rnd);
    ev_timer_again(a->loop, &a->reload_timer);
}

/* Reads the Corefile again and swaps it in; logs one line either way. */
static void reload(struct app *a, const char *why)
{
    static const char prefix[] = "[ERROR] reload: ";
    uint64_t sum = 0;
    struct srv_config *cfg = load_config(a->conf, a->name, prefix, &sum);
    if (!cfg) {
        a->bad_checksum = sum;
        a->reload_failed++;
        fprintf(stderr, "%s%s: %s: the running configuration keeps serving\n", prefix, why,
                a->name);
        return;
    }
    char err[512] = "";
    const char *what = err;
    bool bad_file = true; /* not retried until the file changes (out of memory is) */
    struct http_site *next[HTTP_MAX];
    size_t nnext = 0;
    if (http_prepare(a, cfg, next, &nnext, err, sizeof err) != 0) goto fail;
    struct srv_stats sum_new;
    if (srv_stats_init(&sum_new, cfg) != 0) {
        http_abort(a, next, nnext);
        what = "out of memory";
        bad_file = false;
        goto fail;
    }
    struct srv_reload_report rep;
    if (srv_runtime_reload(a->rt, cfg, &rep, err, sizeof err) != 0) {
        http_abort(a, next, nnext);
        srv_stats_free(&sum_new);
        goto fail;
    }
    /* cfg belongs to the runtime now */
    const struct srv_config *now = srv_runtime_config(a->rt);
    http_commit(a, now, next, nnext);
    srv_stats_free(&a->sum);
    a->sum = sum_new;
    a->checksum = sum;
    a->bad_checksum = 0;
    fprintf(stderr,
            "[INFO] reload: %s: %s: %u server block%s; listeners %u kept, %u added, %u removed; "
            "kept cache %u, redis_cache %u, forward %u\n",
            why, a->name, rep.blocks, rep.blocks == 1 ? "" : "s", rep.addrs_kept, rep.addrs_added,
            rep.addrs_removed, rep.kept_l1, rep.kept_redis, rep.kept_forward);
    reload_timer_arm(a); /* the jitter is drawn again, the interval may have changed */
    return;
fail:
    a->reload_failed++;
    if (bad_file) a->bad_checksum = sum;
    fprintf(stderr, "%s%s: the running configuration keeps serving\n", prefix, what);
    srv_config_free(cfg);
    free(cfg);
}

static void on_reload_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop, (void)revents;
    struct app *a = w->data;
    if (a->stopping) return;
    reload(a, w->signum == SIGHUP ? "SIGHUP" : "SIGUSR1");
}

/* The `reload` directive: reload when the file's checksum changed. */
static void on_reload_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop, (void)revents;
    struct app *a = t->data;
    if (a->stopping || !a->conf) return;
    size_t len = 0;
    char *text = read_file(a->conf, &len);
    if (!text) return; /* a file being replaced: try again at the next tick */
    uint64_t sum = srv_reload_checksum(text, len);
    free(text);
    if (sum == a->checksum || sum == a->bad_checksum) return;
    reload(a, "file changed");
}

/* ---- signals ------------------------------------------------------------------------------- */

static void on_lameduck_end(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)t, (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

static void on_stop_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)revents;
    struct app *a = w->data;
    if (a->stopping) {
        if (a->lameduck) { /* a second signal: stop now */
            fprintf(stderr, "[INFO] signal %d: lameduck cut short\n", w->signum);
            ev_break(loop, EVBREAK_ALL);
        }
        return;
    }
    a->stopping = true;
    ev_timer_stop(loop, &a->reload_timer);
    double d = srv_runtime_config(a->rt)->health_lameduck;
    if (d > 0) {
        fprintf(stderr, "[INFO] signal %d: lameduck %.3gs, then shutting down\n", w->signum, d);
        a->lameduck = true;
        ev_timer_set(&a->lameduck_timer, d, 0);
        ev_timer_start(loop, &a->lameduck_timer);
        return;
    }
    fprintf(stderr, "[INFO] signal %d: shutting down\n", w->signum);
    ev_break(loop, EVBREAK_ALL);
}

/* ---- main ---------------------------------------------------------------------------------- */

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
    if (conf) {
        app.conf = app.name = conf;
    } else if (access("Corefile", F_OK) == 0) {
        app.conf = app.name = "Corefile";
    } else {
        app.name = "<default Corefile>";
    }
    struct srv_config *cfg = load_config(app.conf, app.name, "", &app.checksum);
    if (!cfg) return 1;
    if (check) {
        printf("Syntax OK\n");
        srv_config_free(cfg);
        free(cfg);
        return 0;
    }

    signal(SIGPIPE, SIG_IGN);
    unsigned n = threads ? (unsigned)threads : srv_cpu_count();
    char err[512];
    if (srv_stats_init(&app.sum, cfg) != 0) {
        fprintf(stderr, "[FATAL] out of memory\n");
        return 1;
    }
    app.loop = ev_default_loop(EVFLAG_AUTO);
    if (!app.loop) {
        fprintf(stderr, "[FATAL] cannot create the event loop\n");
        return 1;
    }
    app.rt = srv_runtime_new(cfg, n, err, sizeof err);
    if (!app.rt) {
        fprintf(stderr, "[FATAL] %s\n", err);
        return 1;
    }
    cfg = NULL; /* the runtime's now */
    struct http_site *sites[HTTP_MAX];
    size_t nsites = 0;
    if (http_prepare(&app, srv_runtime_config(app.rt), sites, &nsites, err, sizeof err) != 0) {
        fprintf(stderr, "[FATAL] %s\n", err);
        srv_runtime_free(app.rt);
        return 1;
    }
    http_commit(&app, srv_runtime_config(app.rt), sites, nsites);
    ev_signal_init(&app.sigterm, on_stop_signal, SIGTERM);
    ev_signal_init(&app.sigint, on_stop_signal, SIGINT);
    ev_signal_init(&app.sighup, on_reload_signal, SIGHUP);
    ev_signal_init(&app.sigusr1, on_reload_signal, SIGUSR1);
    app.sigterm.data = app.sigint.data = app.sighup.data = app.sigusr1.data = &app;
    ev_signal_start(app.loop, &app.sigterm);
    ev_signal_start(app.loop, &app.sigint);
    ev_signal_start(app.loop, &app.sighup);
    ev_signal_start(app.loop, &app.sigusr1);
    ev_init(&app.reload_timer, on_reload_timer);
    app.reload_timer.data = &app;
    ev_init(&app.lameduck_timer, on_lameduck_end);
    app.lameduck_timer.data = &app;
    app.seed = (unsigned)time(NULL) ^ ((unsigned)getpid() << 16);

    if (srv_runtime_start(app.rt, err, sizeof err) != 0) {
        fprintf(stderr, "[FATAL] %s\n", err);
        srv_runtime_free(app.rt);
        return 1;
    }
    app.ready = true;
    const struct srv_config *c = srv_runtime_config(app.rt);
    for (size_t b = 0; b < c->nblocks; b++)
        fprintf(stderr, "[INFO] serving %s zone%s %s (%u workers)\n", c->blocks[b].server_label,
                c->blocks[b].nzones > 1 ? "s" : "", c->blocks[b].zones[0], n);
    reload_timer_arm(&app);
    fprintf(stderr, "[INFO] redis-cache-dns %s ready\n", RC_VERSION);
    srv_loop_start(app.loop, c); /* loop.c: the `loop` directive's probes */

    ev_run(app.loop, 0);
    srv_loop_stop();

    /* SIGTERM/SIGINT (after the lameduck): stop accepting HTTP, drain the workers (queries
     * in flight and pending Redis writes) within the budget, exit 0. */
    for (size_t i = 0; i < app.nhttp; i++) http_close(app.http[i]);
    app.nhttp = 0;
    srv_runtime_stop(app.rt, SHUTDOWN_BUDGET);
    srv_runtime_free(app.rt);
    srv_stats_free(&app.sum);
    fprintf(stderr, "[INFO] stopped\n");
    return 0;
}
