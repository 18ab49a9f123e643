/* bench/client.c — our Redis client against redis-benchmark, in one run.
 *
 * Starts its own redis-server on a free loopback port, SETs the key redis-benchmark's GET
 * test uses ("key:__rand_int__": without -r the placeholder is not expanded) to a 200-byte
 * value, then at each (connections, pipeline) point runs, three times each and interleaved:
 *
 *   - redis-benchmark -t get -d 200 -c C -P P -n N -q --csv (its req/s, p50, p99);
 *   - "rc_client": our public client (include/redis_cache.h) with pool.size = C,
 *     min_idle = C (all opened before timing starts), pipeline_high = P; C*P GETs are
 *     issued at once and every reply immediately issues the next GET, so C*P are always in
 *     flight and the pool's least-loaded choice keeps P on each of the C connections;
 *   - "resp_conn": the connection layer alone (src/resp), C connections with exactly P
 *     GETs in flight on each, to show what the pool and rc_client layers cost.
 *
 * Every side sends N GETs. Our req/s is N over the wall time from the first GET issued to
 * the last reply; latency is per request, from the rc_client_command/resp_conn_send call to
 * the reply callback (clock_gettime(CLOCK_MONOTONIC), one call per reply: the time a reply
 * arrives is also the send time of the GET it triggers). Every reply is checked to be the
 * 200-byte value; a mismatch or an error makes the program exit 1 (missing the 0.9x target
 * does not: benchmarks report). Best of 3 per side. Also printed: each client's CPU (user +
 * sys) per request, from wait4 rusage for redis-benchmark and getrusage for ours.
 *
 * Usage: build/bench/client [reps [point]]   (default 3 reps, every point; `point` 1-3
 * runs one point only, for profiling)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "redis_cache.h"
#include "resp/resp.h"

extern char **environ;

#define VALUE_LEN 200
#define KEY       "key:__rand_int__"

struct point {
    unsigned conns, pipeline;
    long n; /* requests per run, both sides */
};

static const struct point points[] = {
    {1, 16, 300000},
    {4, 16, 300000},
    {50, 1, 80000},
};
#define NPOINTS (sizeof points / sizeof points[0])

static char value[VALUE_LEN];

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- the redis-server and a blocking helper connection ----------------------------- */

static pid_t server_pid = -1;

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends one command and returns its reply type; a bulk or simple string reply is copied to
 * out (NUL-terminated, truncated to outcap). -1 on I/O or protocol error. */
static int command(int fd, size_t argc, const char *const *argv, char *out, size_t outcap)
{
    size_t lens[8];
    for (size_t i = 0; i < argc; i++) lens[i] = strlen(argv[i]);
    struct resp_writer w;
    resp_writer_init(&w);
    if (resp_writer_command(&w, argc, argv, lens) != 0) return -1;
    size_t len;
    const char *p = resp_writer_data(&w, &len);
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0) {
            resp_writer_free(&w);
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    resp_writer_free(&w);
    struct resp_reader *r = resp_reader_new(NULL);
    if (!r) return -1;
    int type = -1;
    for (;;) {
        const struct resp_value *v;
        int rc = resp_reader_next(r, &v);
        if (rc == RESP_GOT_REPLY) {
            type = v->type;
            if (out && outcap) {
                size_t n = 0;
                if (v->type == RESP_BULK || v->type == RESP_STRING || v->type == RESP_ERROR ||
                    v->type == RESP_VERBATIM)
                    n = v->len < outcap - 1 ? v->len : outcap - 1;
                if (n) memcpy(out, v->str, n);
                out[n] = 0;
            }
            break;
        }
        if (rc != RESP_NEED_MORE) break;
        char buf[65536];
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0 || resp_reader_feed(r, buf, (size_t)n) != 0) break;
    }
    resp_reader_free(r);
    return type;
}

static long info_field(int fd, const char *section, const char *field)
{
    static char buf[65536];
    const char *argv[] = {"INFO", section};
    if (command(fd, 2, argv, buf, sizeof buf) != RESP_BULK) return -1;
    const char *p = strstr(buf, field);
    if (!p || p[strlen(field)] != ':') return -1;
    return atol(p + strlen(field) + 1);
}

static int start_server(int port)
{
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    char *const argv[] = {"redis-server", "--save", "",          "--appendonly", "no", "--port",
                          portstr,        "--bind", "127.0.0.1", "--daemonize",  "no", "--dir",
                          "/tmp",         NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    int rc = posix_spawnp(&server_pid, "redis-server", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        fprintf(stderr, "client: cannot start redis-server: %s\n", strerror(rc));
        server_pid = -1;
        return -1;
    }
    for (int i = 0; i < 500; i++) { /* up to 5 s */
        int fd = dial(port);
        if (fd >= 0) {
            char out[64];
            const char *ping[] = {"PING"};
            int t = command(fd, 1, ping, out, sizeof out);
            close(fd);
            if (t == RESP_STRING && strcmp(out, "PONG") == 0) return 0;
        }
        int st;
        if (waitpid(server_pid, &st, WNOHANG) == server_pid) {
            fprintf(stderr, "client: redis-server exited at start\n");
            server_pid = -1;
            return -1;
        }
        usleep(10000);
    }
    fprintf(stderr, "client: redis-server does not answer on port %d\n", port);
    return -1;
}

static void stop_server(void)
{
    if (server_pid <= 0) return;
    kill(server_pid, SIGTERM);
    int st;
    waitpid(server_pid, &st, 0);
    server_pid = -1;
}

static double cpu_ns(const struct rusage *ru)
{
    return ((double)ru->ru_utime.tv_sec + (double)ru->ru_stime.tv_sec) * 1e9 +
           ((double)ru->ru_utime.tv_usec + (double)ru->ru_stime.tv_usec) * 1e3;
}

/* ---- redis-benchmark ---------------------------------------------------------------- */

struct result {
    double rps;
    double cpu_ns; /* client process CPU (user + sys) per request */
    double p50_us, p99_us;
    long mismatches, errors;
};

static int run_redis_benchmark(int port, const struct point *pt, struct result *res)
{
    char portstr[16], c[16], p[16], n[24];
    snprintf(portstr, sizeof portstr, "%d", port);
    snprintf(c, sizeof c, "%u", pt->conns);
    snprintf(p, sizeof p, "%u", pt->pipeline);
    snprintf(n, sizeof n, "%ld", pt->n);
    char *const argv[] = {"redis-benchmark",
                          "-h",
                          "127.0.0.1",
                          "-p",
                          portstr,
                          "-t",
                          "get",
                          "-d",
                          "200",
                          "-c",
                          c,
                          "-P",
                          p,
                          "-n",
                          n,
                          "-q",
                          "--csv",
                          NULL};
    int pfd[2];
    if (pipe(pfd) != 0) return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
    posix_spawn_file_actions_addclose(&fa, pfd[0]);
    posix_spawn_file_actions_addclose(&fa, pfd[1]);
    pid_t pid;
    int rc = posix_spawnp(&pid, "redis-benchmark", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(pfd[1]);
    if (rc != 0) {
        close(pfd[0]);
        fprintf(stderr, "client: cannot run redis-benchmark: %s\n", strerror(rc));
        return -1;
    }
    char out[4096];
    size_t len = 0;
    for (;;) {
        ssize_t k = read(pfd[0], out + len, sizeof out - 1 - len);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        len += (size_t)k;
        if (len == sizeof out - 1) break;
    }
    out[len] = 0;
    close(pfd[0]);
    int st;
    struct rusage ru;
    while (wait4(pid, &st, 0, &ru) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "client: redis-benchmark failed:\n%s\n", out);
        return -1;
    }
    /* "GET","rps","avg_ms","min_ms","p50_ms","p95_ms","p99_ms","max_ms" */
    const char *line = strstr(out, "\"GET\",");
    double rps, avg, mn, p50, p95, p99;
    if (!line || sscanf(line, "\"GET\",\"%lf\",\"%lf\",\"%lf\",\"%lf\",\"%lf\",\"%lf\"", &rps, &avg,
                        &mn, &p50, &p95, &p99) != 6) {
        fprintf(stderr, "client: cannot parse redis-benchmark output:\n%s\n", out);
        return -1;
    }
    memset(res, 0, sizeof *res);
    res->rps = rps;
    res->p50_us = p50 * 1000;
    res->p99_us = p99 * 1000;
    res->cpu_ns = cpu_ns(&ru) / (double)pt->n;
    return 0;
}

/* ---- our drivers -------------------------------------------------------------------- */

struct drv;

struct req {
    struct drv *d;
    struct resp_conn *conn; /* resp_conn driver */
    uint64_t t0;
};

struct drv {
    struct ev_loop *loop;
    struct rc_client *rc;
    struct resp_conn **conns;
    unsigned nready, nconns;
    int failed;
    long target, issued, done, mismatches, errors;
    uint32_t *lat; /* ns, one per reply */
    uint64_t t_start, t_end;
    struct req *reqs;
    ev_timer guard;
};

static const char *const get_argv[] = {"GET", KEY};
static const size_t get_lens[] = {3, sizeof KEY - 1};

static int check_value(int type, const char *str, size_t len)
{
    return type == RESP_BULK && len == VALUE_LEN && memcmp(str, value, VALUE_LEN) == 0;
}

/* Accounts one reply; returns 1 when the caller should send the next GET. */
static int account(struct drv *d, struct req *q, int ok, const char *why, uint64_t now)
{
    uint64_t dt = now - q->t0;
    d->lat[d->done] = dt > UINT32_MAX ? UINT32_MAX : (uint32_t)dt;
    d->done++;
    if (why) {
        if (d->errors++ < 5) fprintf(stderr, "client: GET failed: %s\n", why);
        d->failed = 1;
    } else if (!ok) {
        d->mismatches++;
    }
    if (!d->failed && d->issued < d->target) {
        q->t0 = now;
        d->issued++;
        return 1;
    }
    if (d->done == d->issued) {
        d->t_end = now;
        ev_break(d->loop, EVBREAK_ALL);
    }
    return 0;
}

static void rc_on_reply(void *priv, const struct rc_reply *r, const char *reason,
                        const char *errmsg)
{
    struct req *q = priv;
    struct drv *d = q->d;
    int ok = r && !reason && check_value(r->type, r->str, r->len);
    const char *why = reason ? (errmsg ? errmsg : reason) : NULL;
    if (account(d, q, ok, why, now_ns()))
        rc_client_command(d->rc, false, 2, get_argv, get_lens, rc_on_reply, q);
}

static void conn_on_reply(void *priv, size_t idx, const struct resp_value *v,
                          const struct resp_err *err)
{
    struct req *q = priv;
    struct drv *d = q->d;
    int ok = v && check_value(v->type, v->str, v->len);
    if (account(d, q, ok, err ? err->msg : NULL, now_ns())) {
        struct resp_cmd cmd = {2, get_argv, get_lens};
        if (resp_conn_send(q->conn, &cmd, 1, 0, conn_on_reply, q) != 0) {
            d->issued--;
            d->failed = 1;
            d->errors++;
            if (d->done == d->issued) ev_break(d->loop, EVBREAK_ALL);
        }
    }
}

static void conn_ready(struct resp_conn *c, void *priv)
{
    struct drv *d = priv;
    if (++d->nready == d->nconns) ev_break(d->loop, EVBREAK_ALL);
}

static void conn_closed(struct resp_conn *c, const struct resp_err *why, void *priv)
{
    struct drv *d = priv;
    fprintf(stderr, "client: connection closed: %s\n", why ? why->msg : "?");
    d->failed = 1;
    d->errors++;
    ev_break(d->loop, EVBREAK_ALL);
}

static void guard_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct drv *d = w->data;
    if (d->rc) {
        struct rc_node_stats st;
        if (rc_client_nodes(d->rc, &st, 1) == 1 && st.ready >= d->nconns)
            ev_break(loop, EVBREAK_ALL);
        return;
    }
    ev_break(loop, EVBREAK_ALL);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* use_rc: 1 the rc_client driver, 0 the resp_conn one. */
static int run_ours(int port, const struct point *pt, int use_rc, struct result *res)
{
    struct drv d;
    memset(&d, 0, sizeof d);
    memset(res, 0, sizeof *res);
    d.loop = ev_loop_new(EVFLAG_AUTO);
    if (!d.loop) return -1;
    d.target = pt->n;
    d.nconns = pt->conns;
    d.lat = malloc(sizeof *d.lat * (size_t)pt->n);
    size_t inflight = (size_t)pt->conns * pt->pipeline;
    d.reqs = calloc(inflight, sizeof *d.reqs);
    d.conns = calloc(pt->conns, sizeof *d.conns);
    int rc = -1;
    char endpoint[32];
    snprintf(endpoint, sizeof endpoint, "127.0.0.1:%d", port);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (!d.lat || !d.reqs || !d.conns) goto out;

    /* connect everything before the clock starts (redis-benchmark's clients are created
     * before its clock starts too) */
    double give_up = ev_time() + 5;
    if (use_rc) {
        struct rc_client_config cfg;
        rc_client_config_init(&cfg);
        cfg.endpoint = endpoint;
        cfg.read_timeout = 2.0; /* a loaded 2-core box must not turn a stall into an error */
        cfg.pool.size = pt->conns;
        cfg.pool.max_active = pt->conns;
        cfg.pool.min_idle = pt->conns;
        cfg.pool.pipeline_high = pt->pipeline;
        char err[256];
        d.rc = rc_client_new(d.loop, &cfg, err, sizeof err);
        if (!d.rc) {
            fprintf(stderr, "client: rc_client_new: %s\n", err);
            goto out;
        }
        ev_timer_init(&d.guard, guard_cb, 0.001, 0.001);
        d.guard.data = &d;
        ev_timer_start(d.loop, &d.guard);
        struct rc_node_stats st;
        while (ev_time() < give_up) {
            ev_run(d.loop, EVRUN_ONCE);
            if (rc_client_nodes(d.rc, &st, 1) == 1 && st.ready >= pt->conns) break;
        }
        ev_timer_stop(d.loop, &d.guard);
        if (st.ready < pt->conns) {
            fprintf(stderr, "client: pool has %u of %u connections ready\n", st.ready, pt->conns);
            goto out;
        }
    } else {
        struct resp_conn_opts o;
        resp_conn_opts_init(&o);
        o.addr = (const struct sockaddr *)&a;
        o.addrlen = sizeof a;
        o.host = "127.0.0.1";
        struct resp_conn_events ev = {conn_ready, conn_closed, NULL};
        for (unsigned i = 0; i < pt->conns; i++) {
            struct resp_err e;
            d.conns[i] = resp_conn_new(d.loop, &o, &ev, &d, &e);
            if (!d.conns[i]) {
                fprintf(stderr, "client: resp_conn_new: %s\n", e.msg);
                goto out;
            }
        }
        ev_timer_init(&d.guard, guard_cb, 5, 0);
        d.guard.data = &d;
        ev_timer_start(d.loop, &d.guard);
        ev_run(d.loop, 0);
        ev_timer_stop(d.loop, &d.guard);
        if (d.nready < pt->conns || d.failed) {
            fprintf(stderr, "client: %u of %u connections ready\n", d.nready, pt->conns);
            goto out;
        }
    }

    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    d.t_start = now_ns();
    for (size_t i = 0; i < inflight && d.issued < d.target; i++) {
        struct req *q = &d.reqs[i];
        q->d = &d;
        q->conn = d.conns[i / pt->pipeline];
        q->t0 = d.t_start;
        d.issued++;
        if (use_rc) {
            rc_client_command(d.rc, false, 2, get_argv, get_lens, rc_on_reply, q);
        } else {
            struct resp_cmd cmd = {2, get_argv, get_lens};
            if (resp_conn_send(q->conn, &cmd, 1, 0, conn_on_reply, q) != 0) {
                d.issued--;
                d.failed = 1;
                d.errors++;
                break;
            }
        }
    }
    if (d.done < d.issued) ev_run(d.loop, 0);
    getrusage(RUSAGE_SELF, &ru1);
    if (d.done < d.issued) {
        fprintf(stderr, "client: the loop ended with %ld replies missing\n", d.issued - d.done);
        d.errors++;
    }
    if (use_rc) {
        struct rc_node_stats st;
        rc_client_nodes(d.rc, &st, 1);
        if (st.connects != pt->conns || st.open != pt->conns || st.retries) {
            fprintf(stderr,
                    "client: pool opened %llu connections (%u open, %llu retries), want %u\n",
                    (unsigned long long)st.connects, st.open, (unsigned long long)st.retries,
                    pt->conns);
            d.errors++;
        }
    }
    double secs = (double)(d.t_end - d.t_start) / 1e9;
    res->rps = secs > 0 ? (double)d.done / secs : 0;
    res->cpu_ns = d.done ? (cpu_ns(&ru1) - cpu_ns(&ru0)) / (double)d.done : 0;
    res->mismatches = d.mismatches;
    res->errors = d.errors;
    if (d.done > 0) {
        qsort(d.lat, (size_t)d.done, sizeof *d.lat, cmp_u32);
        res->p50_us = d.lat[(size_t)((double)d.done * 0.50)] / 1000.0;
        res->p99_us = d.lat[(size_t)((double)d.done * 0.99)] / 1000.0;
    }
    rc = d.errors || d.done != d.target ? -1 : 0;
out:
    if (d.rc) rc_client_free(d.rc);
    for (unsigned i = 0; d.conns && i < pt->conns; i++)
        if (d.conns[i]) resp_conn_free(d.conns[i]);
    free(d.conns);
    free(d.reqs);
    free(d.lat);
    ev_loop_destroy(d.loop);
    return rc;
}

/* ---- main --------------------------------------------------------------------------- */

static int set_value(int port)
{
    int fd = dial(port);
    if (fd < 0) return -1;
    for (size_t i = 0; i < VALUE_LEN; i++) value[i] = (char)('a' + (i * 7) % 26);
    char v[VALUE_LEN + 1];
    memcpy(v, value, VALUE_LEN);
    v[VALUE_LEN] = 0;
    const char *set[] = {"SET", KEY, v};
    const char *get[] = {"GET", KEY};
    char out[VALUE_LEN + 8];
    char ok[8];
    int rc = -1;
    if (command(fd, 3, set, ok, sizeof ok) == RESP_STRING && strcmp(ok, "OK") == 0 &&
        command(fd, 2, get, out, sizeof out) == RESP_BULK && strlen(out) == VALUE_LEN &&
        memcmp(out, value, VALUE_LEN) == 0)
        rc = 0;
    close(fd);
    return rc;
}

int main(int argc, char **argv)
{
    int reps = argc > 1 ? atoi(argv[1]) : 3;
    if (reps < 1) reps = 1;
    int only = argc > 2 ? atoi(argv[2]) : 0; /* 1-based point, 0: all */
    signal(SIGPIPE, SIG_IGN);
    int port = free_port();
    if (port < 0 || start_server(port) != 0) return 1;
    int status = 1;
    if (set_value(port) != 0) {
        fprintf(stderr, "client: cannot SET/GET the 200-byte value\n");
        goto out;
    }
    int fd = dial(port);
    long hits0 = fd >= 0 ? info_field(fd, "stats", "keyspace_hits") : -1;
    long misses0 = fd >= 0 ? info_field(fd, "stats", "keyspace_misses") : -1;

    double load = 0;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &load) != 1) load = 0;
        fclose(f);
    }
    printf("redis-server 127.0.0.1:%d, GET %s (%d-byte value), best of %d, load avg %.2f\n", port,
           KEY, VALUE_LEN, reps, load);

    struct result best[NPOINTS][3];
    double cpu[NPOINTS][3]; /* lowest CPU per request seen */
    memset(best, 0, sizeof best);
    long expect_hits = 0;
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < NPOINTS; i++) {
        const struct point *pt = &points[i];
        for (int r = 0; r < reps && (only == 0 || (size_t)only == i + 1); r++) {
            struct result res[3];
            if (run_redis_benchmark(port, pt, &res[0]) != 0) goto out;
            if (run_ours(port, pt, 1, &res[1]) != 0 || run_ours(port, pt, 0, &res[2]) != 0) {
                fprintf(stderr, "client: our driver failed at (%u, %u)\n", pt->conns, pt->pipeline);
                goto out;
            }
            expect_hits += 3 * pt->n;
            for (int s = 0; s < 3; s++) {
                if (res[s].mismatches) {
                    fprintf(stderr, "client: %ld replies were not the value\n", res[s].mismatches);
                    goto out;
                }
                if (res[s].rps > best[i][s].rps) best[i][s] = res[s];
                if (r == 0 || res[s].cpu_ns < cpu[i][s]) cpu[i][s] = res[s].cpu_ns;
            }
            printf("  (%u, %u) run %d: req/s redis-benchmark %.0f, rc_client %.0f (p99 %.0f us), "
                   "resp_conn %.0f (p99 %.0f us)\n",
                   pt->conns, pt->pipeline, r + 1, res[0].rps, res[1].rps, res[1].p99_us,
                   res[2].rps, res[2].p99_us);
            fflush(stdout);
        }
    }
    double elapsed = (double)(now_ns() - t0) / 1e9;

    long hits = fd >= 0 ? info_field(fd, "stats", "keyspace_hits") : -1;
    long misses = fd >= 0 ? info_field(fd, "stats", "keyspace_misses") : -1;
    if (fd >= 0) close(fd);
    if (hits < 0 || misses != misses0 || hits - hits0 != expect_hits) {
        fprintf(stderr, "client: server counted %ld hits and %ld misses, want %ld and 0\n",
                hits - hits0, misses - misses0, expect_hits);
        goto out;
    }

    printf("\n| point (c, P) | N | redis-benchmark req/s | ours (rc_client) req/s | ratio | "
           "ours p50 / p99 us | redis-benchmark p50 / p99 us |\n");
    printf("|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < NPOINTS; i++) {
        const struct point *pt = &points[i];
        const struct result *b = best[i];
        if (b[0].rps <= 0) continue; /* not run */
        printf("| (%u, %u) | %ld | %.0f | %.0f | %.2fx | %.0f / %.0f | %.0f / %.0f |\n", pt->conns,
               pt->pipeline, pt->n, b[0].rps, b[1].rps, b[1].rps / b[0].rps, b[1].p50_us,
               b[1].p99_us, b[0].p50_us, b[0].p99_us);
    }
    printf("\nThe connection layer alone, and client CPU (user + sys) per request (lowest of the "
           "runs):\n\n");
    printf("| point (c, P) | resp_conn req/s | ratio | resp_conn p50 / p99 us | CPU ns/req "
           "redis-benchmark | rc_client | resp_conn |\n");
    printf("|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < NPOINTS; i++) {
        const struct point *pt = &points[i];
        const struct result *b = best[i];
        if (b[0].rps <= 0) continue; /* not run */
        printf("| (%u, %u) | %.0f | %.2fx | %.0f / %.0f | %.0f | %.0f | %.0f |\n", pt->conns,
               pt->pipeline, b[2].rps, b[2].rps / b[0].rps, b[2].p50_us, b[2].p99_us, cpu[i][0],
               cpu[i][1], cpu[i][2]);
    }
    printf("\nmismatched replies: 0; server keyspace hits %ld (all GETs), misses 0; %.1f s\n",
           expect_hits, elapsed);
    status = 0;
out:
    stop_server();
    return status;
}
