/* tests/integration/itest_interop.c — the mixed-fleet requirement (SPEC §1) against a real
 * redis-server and the Go interop oracle (tests/oracle/oracle.go: Debian's miekg/dns and
 * cespare/xxhash, the libraries of the Go plugin), driven by tests/integration/interop.sh
 * (REDIS_PORT, ORACLE).
 *
 *   keys:   every fixture query (real knotd captures), the SPEC §1.1 vectors and 200 random
 *           wire names with any byte in their labels: our dns_key_hash/dns_key_format equals
 *           the key the Go library computes from the same query bytes;
 *   write:  every cacheable fixture response encoded by our write path and SET in Redis is
 *           found by a Go read (key from the query, GET, dns.Msg.Unpack, question check) with
 *           the upstream's question, rcode, RRs and DO, and no OPT;
 *   read:   entries the Go side packs and SETs (A, AAAA+RRSIG with DO, NXDOMAIN+SOA, CNAME
 *           chains, compressed messages of every name-bearing type, legacy raw values with
 *           and without OPT, SERVFAIL, CD, CH class, escaped labels) are found under our key,
 *           pass our checks, and our hit reply unpacks in Go with the same data; a Go entry
 *           with TC=1 is a miss that stays in Redis; compressed Go entries whose later names
 *           point into the RDATA names of HTTPS, SVCB, NAPTR, KX, AFSDB, RP, MB (the Go
 *           library adds those to its compression table) are served and never evicted.
 *
 * Each direction runs twice: through the dns layer alone (dns_entry_encode; dns_entry_decode,
 * dns_entry_check, dns_reply_build, with a blocking RESP helper for SET/GET/TTL), and through
 * the public cache API of include/redis_cache.h (rc_cache_store writing in the background,
 * rc_cache_lookup reading GET+TTL), both against the same Redis.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <cmocka.h>

#include <ev.h>

#include "dns/dns.h"
#include "redis_cache.h"
#include "support/fixtures.h"

/* ---- environment ------------------------------------------------------------------------ */

static const char *env(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v) fail_msg("environment variable %s is not set (run through interop.sh)", name);
    return v;
}

static int redis_port(void)
{
    return atoi(env("REDIS_PORT"));
}

static const char *port_str(void)
{
    return env("REDIS_PORT");
}

/* ---- hex ------------------------------------------------------------------------------- */

static char *to_hex(const uint8_t *b, size_t n)
{
    static const char d[] = "0123456789abcdef";
    char *s = malloc(2 * n + 1);
    assert_non_null(s);
    for (size_t i = 0; i < n; i++) {
        s[2 * i] = d[b[i] >> 4];
        s[2 * i + 1] = d[b[i] & 15];
    }
    s[2 * n] = '\0';
    return s;
}

/* ---- running the oracle ------------------------------------------------------------------ */

/* Runs ORACLE with the NULL-terminated arguments, `in` (may be NULL) on stdin; stores its
 * stdout (malloc'd, NUL-terminated) in *out and returns its exit status. */
static int oracle_v(char **out, const char *in, size_t in_len, const char *const *args)
{
    char tmpl[] = "/tmp/rc-interop-in.XXXXXX";
    int infd = mkstemp(tmpl);
    assert_true(infd >= 0);
    unlink(tmpl);
    if (in && in_len) assert_int_equal(write(infd, in, in_len), (ssize_t)in_len);
    lseek(infd, 0, SEEK_SET);

    int p[2];
    assert_int_equal(pipe(p), 0);
    const char *argv[64];
    size_t argc = 0;
    argv[argc++] = env("ORACLE");
    for (; args[argc - 1]; argc++) {
        assert_true(argc < 63);
        argv[argc] = args[argc - 1];
    }
    argv[argc] = NULL;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(infd, 0);
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        close(infd);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(p[1]);
    close(infd);
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        if (len + 1 >= cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        ssize_t r = read(p[0], buf + len, cap - len - 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        len += (size_t)r;
    }
    buf[len] = '\0';
    close(p[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    *out = buf;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

#define ORACLE(out, in, in_len, ...)                                                               \
    oracle_v((out), (in), (in_len), (const char *const[]){__VA_ARGS__, NULL})

/* The value of the first line "WORD value" of an oracle output, copied into buf ("" when
 * there is no such line). */
static const char *line_val(const char *out, const char *word, char *buf, size_t cap)
{
    size_t wl = strlen(word);
    for (const char *l = out; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (strncmp(l, word, wl) == 0 && (l[wl] == ' ' || l[wl] == '\n' || l[wl] == '\0')) {
            const char *v = l[wl] == ' ' ? l + wl + 1 : l + wl;
            size_t n = strcspn(v, "\n");
            if (n >= cap) n = cap - 1;
            memcpy(buf, v, n);
            buf[n] = '\0';
            return buf;
        }
    }
    buf[0] = '\0';
    return buf;
}

/* The RR lines (an/ns/ar) of an unpack output, each with its TTL (third field) replaced by
 * `ttl` when ttl >= 0, joined by '\n'. */
static char *rr_lines(const char *out, long ttl)
{
    size_t cap = strlen(out) + 64 * 64 + 1;
    char *r = malloc(cap);
    assert_non_null(r);
    size_t n = 0;
    for (const char *l = out; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        size_t ll = strcspn(l, "\n");
        if (!(ll > 3 && (strncmp(l, "an ", 3) == 0 || strncmp(l, "ns ", 3) == 0 ||
                         strncmp(l, "ar ", 3) == 0)))
            continue;
        if (ttl < 0) {
            memcpy(r + n, l, ll);
            n += ll;
        } else {
            /* "an OWNER TTL rest" */
            const char *owner_end = memchr(l + 3, ' ', ll - 3);
            assert_non_null(owner_end);
            const char *ttl_end = memchr(owner_end + 1, ' ', (size_t)(l + ll - owner_end - 1));
            assert_non_null(ttl_end);
            size_t a = (size_t)(owner_end - l);
            memcpy(r + n, l, a);
            n += a;
            n += (size_t)snprintf(r + n, cap - n, " %ld", ttl);
            size_t rest = (size_t)(l + ll - ttl_end);
            memcpy(r + n, ttl_end, rest);
            n += rest;
        }
        r[n++] = '\n';
        assert_true(n + 64 < cap);
    }
    r[n] = '\0';
    return r;
}

/* ---- a blocking RESP helper (the server side of the test, outside any library code) ---- */

struct resp_val {
    char type; /* '+', '-', ':', '$' (nil: '$' with len -1) */
    long long len;
    uint8_t *data; /* malloc'd payload of '$' / line of + - : */
};

static int rfd = -1;

static void resp_connect(void)
{
    if (rfd >= 0) return;
    rfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(rfd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)redis_port())};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    struct timeval tv = {5, 0};
    setsockopt(rfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    assert_int_equal(connect(rfd, (struct sockaddr *)&sa, sizeof sa), 0);
}

static void rd_exact(uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t r = read(rfd, p, n);
        if (r < 0 && errno == EINTR) continue;
        assert_true(r > 0);
        p += r;
        n -= (size_t)r;
    }
}

static void rd_line(char *buf, size_t cap)
{
    size_t n = 0;
    for (;;) {
        uint8_t c;
        rd_exact(&c, 1);
        if (c == '\n') break;
        assert_true(n + 1 < cap);
        buf[n++] = (char)c;
    }
    if (n > 0 && buf[n - 1] == '\r') n--;
    buf[n] = '\0';
}

static struct resp_val resp_cmd(size_t argc, const char *const *argv, const size_t *lens)
{
    resp_connect();
    char hdr[64];
    int hl = snprintf(hdr, sizeof hdr, "*%zu\r\n", argc);
    assert_int_equal(write(rfd, hdr, (size_t)hl), hl);
    for (size_t i = 0; i < argc; i++) {
        size_t l = lens ? lens[i] : strlen(argv[i]);
        hl = snprintf(hdr, sizeof hdr, "$%zu\r\n", l);
        assert_int_equal(write(rfd, hdr, (size_t)hl), hl);
        if (l) assert_int_equal(write(rfd, argv[i], l), (ssize_t)l);
        assert_int_equal(write(rfd, "\r\n", 2), 2);
    }
    char line[512];
    rd_line(line, sizeof line);
    struct resp_val v = {.type = line[0]};
    if (line[0] == '$') {
        v.len = atoll(line + 1);
        if (v.len >= 0) {
            v.data = malloc((size_t)v.len + 2);
            assert_non_null(v.data);
            rd_exact(v.data, (size_t)v.len + 2);
        }
    } else {
        v.len = (long long)strlen(line + 1);
        v.data = (uint8_t *)strdup(line + 1);
    }
    return v;
}

static void redis_set_ex(const char *key, const uint8_t *val, size_t len, unsigned ex)
{
    char exs[16];
    snprintf(exs, sizeof exs, "%u", ex);
    const char *argv[] = {"SET", key, (const char *)val, "EX", exs};
    size_t lens[] = {3, strlen(key), len, 2, strlen(exs)};
    struct resp_val v = resp_cmd(5, argv, lens);
    assert_int_equal(v.type, '+');
    free(v.data);
}

/* GET: returns the malloc'd value and its length, or NULL for nil. */
static uint8_t *redis_get(const char *key, size_t *len)
{
    const char *argv[] = {"GET", key};
    struct resp_val v = resp_cmd(2, argv, NULL);
    assert_int_equal(v.type, '$');
    *len = v.len < 0 ? 0 : (size_t)v.len;
    return v.data;
}

static long long redis_ttl(const char *key)
{
    const char *argv[] = {"TTL", key};
    struct resp_val v = resp_cmd(2, argv, NULL);
    assert_int_equal(v.type, ':');
    long long t = atoll((char *)v.data);
    free(v.data);
    return t;
}

static void redis_flush(void)
{
    const char *argv[] = {"FLUSHALL"};
    struct resp_val v = resp_cmd(1, argv, NULL);
    assert_int_equal(v.type, '+');
    free(v.data);
}

/* ---- building queries ------------------------------------------------------------------- */

/* A query for the wire name `name` (uncompressed, nlen bytes): RD=1, CD as asked, an OPT
 * (UDP 1232, DO as asked) when edns. Returns its length. */
static size_t build_query(uint8_t *out, const uint8_t *name, size_t nlen, uint16_t qtype,
                          uint16_t qclass, bool edns, bool do_bit, bool cd, uint16_t id)
{
    uint8_t *p = out;
    dns_put16(p, id);
    dns_put16(p + 2, (uint16_t)(DNS_F_RD | (cd ? DNS_F_CD : 0)));
    dns_put16(p + 4, 1);
    dns_put16(p + 6, 0);
    dns_put16(p + 8, 0);
    dns_put16(p + 10, edns ? 1 : 0);
    p += DNS_HEADER_LEN;
    memcpy(p, name, nlen);
    p += nlen;
    dns_put16(p, qtype);
    dns_put16(p + 2, qclass);
    p += 4;
    if (edns) {
        *p++ = 0;
        dns_put16(p, DNS_T_OPT);
        dns_put16(p + 2, 1232);
        dns_put32(p + 4, do_bit ? DNS_EDNS_DO : 0);
        dns_put16(p + 8, 0);
        p += 10;
    }
    return (size_t)(p - out);
}

/* Wire name from labels given as C strings with explicit lengths ("\x00" allowed). */
struct lbl {
    const char *s;
    size_t n;
};
#define L(str)                                                                                     \
    {                                                                                              \
        str, sizeof(str) - 1                                                                       \
    }

static size_t labels_wire(uint8_t *out, const struct lbl *l, size_t nl)
{
    size_t n = 0;
    for (size_t i = 0; i < nl; i++) {
        out[n++] = (uint8_t)l[i].n;
        memcpy(out + n, l[i].s, l[i].n);
        n += l[i].n;
    }
    out[n++] = 0;
    return n;
}

/* Wire name from a plain dotted ASCII name ("www.example.org" or "."). */
static size_t dotted_wire(uint8_t *out, const char *dotted)
{
    size_t n = 0;
    const char *s = dotted;
    while (*s && strcmp(s, ".") != 0) {
        size_t l = strcspn(s, ".");
        out[n++] = (uint8_t)l;
        memcpy(out + n, s, l);
        n += l;
        s += l;
        if (*s == '.') s++;
    }
    out[n++] = 0;
    return n;
}

/* Our key for a query: dns_question_parse + dns_key_hash (query DO) + dns_key_format. */
static bool our_key(const uint8_t *q, size_t qlen, const char *prefix, uint64_t seed, char *key,
                    size_t cap, struct dns_question *qout)
{
    struct dns_question qq;
    struct dns_question *qp = qout ? qout : &qq;
    if (dns_question_parse(qp, q, qlen) != DNS_OK) return false;
    size_t pl = dns_key_prefix_len(prefix, strlen(prefix));
    return dns_key_format(key, cap, prefix, pl, dns_key_hash(qp, qp->do_bit, seed)) > 0;
}

/* ---- 0. the oracle checks itself against the SPEC vectors ------------------------------ */

static void test_oracle_selftest(void **state)
{
    (void)state;
    char *out = NULL;
    int rc = ORACLE(&out, NULL, 0, "selftest");
    if (rc != 0) fail_msg("oracle selftest failed (%d):\n%s", rc, out);
    assert_non_null(strstr(out, "selftest ok"));
    free(out);
}

/* ---- 1. keys ---------------------------------------------------------------------------- */

/* Runs keys-batch over `n` queries and compares each line with our key. Returns the number
 * of mismatches (each printed with both sides and both names). */
static int compare_keys(uint8_t *const *qs, const size_t *qlens, size_t n, const char *prefix,
                        uint64_t seed, int *n_unparsed)
{
    size_t cap = 1, len = 0;
    for (size_t i = 0; i < n; i++) cap += 2 * qlens[i] + 1;
    char *in = malloc(cap);
    assert_non_null(in);
    for (size_t i = 0; i < n; i++) {
        char *h = to_hex(qs[i], qlens[i]);
        len += (size_t)sprintf(in + len, "%s\n", h);
        free(h);
    }
    char seeds[32];
    snprintf(seeds, sizeof seeds, "%llu", (unsigned long long)seed);
    char *out = NULL;
    int rc = ORACLE(&out, in, len, "keys-batch", "--prefix", prefix, "--seed", seeds);
    assert_int_equal(rc, 0);
    int bad = 0;
    const char *l = out;
    for (size_t i = 0; i < n; i++) {
        assert_non_null(l);
        size_t ll = strcspn(l, "\n");
        char go[512];
        snprintf(go, sizeof go, "%.*s", (int)ll, l);
        l = l[ll] ? l + ll + 1 : NULL;

        char ours[600];
        struct dns_question q;
        bool parsed = our_key(qs[i], qlens[i], prefix, seed, ours, sizeof ours, &q);
        bool go_err = strncmp(go, "err", 3) == 0;
        if (!parsed && go_err) {
            if (n_unparsed) (*n_unparsed)++;
            continue;
        }
        if (parsed && !go_err && strcmp(go, ours) == 0) continue;
        bad++;
        char text[DNS_NAME_TEXT_MAX + 1];
        size_t tl = parsed ? dns_name_to_text(q.name, q.name_len, text, sizeof text - 1, false) : 0;
        text[tl] = '\0';
        char *h = to_hex(qs[i], qlens[i]);
        char *detail = NULL;
        ORACLE(&detail, NULL, 0, "check-key-from-query", "--hex", h, "--prefix", prefix, "--seed",
               seeds);
        print_message("KEY MISMATCH query %s prefix '%s' seed %s\n  ours: %s (name %s)\n"
                      "  go:   %s\n  go detail:\n%s\n",
                      h, prefix, seeds, parsed ? ours : "(does not parse)", text, go, detail);
        free(detail);
        free(h);
    }
    free(out);
    free(in);
    return bad;
}

static void test_keys_fixtures(void **state)
{
    (void)state;
    uint8_t *qs[64];
    size_t lens[64], n = 0;
    for (const struct dns_fixture *f = dns_fixtures; f->name; f++) {
        if (!f->query) continue;
        qs[n] = (uint8_t *)f->query;
        lens[n++] = f->query_len;
    }
    assert_true(n >= 20);
    int unparsed = 0;
    int bad = compare_keys(qs, lens, n, "cdrc", 0, &unparsed);
    bad += compare_keys(qs, lens, n, "dns:", 0x9e3779b97f4a7c15ull, &unparsed);
    bad += compare_keys(qs, lens, n, "", 1, &unparsed);
    bad += compare_keys(qs, lens, n, "x", UINT64_MAX, &unparsed);
    assert_int_equal(unparsed, 0);
    assert_int_equal(bad, 0);
}

struct spec_vec {
    struct lbl labels[4];
    size_t nl;
    uint16_t qtype, qclass;
    bool do_bit, cd;
    uint64_t seed;
    const char *key;
};

static const struct spec_vec spec_vecs[] = {
    {{L("example"), L("com")}, 2, DNS_T_A, DNS_C_IN, 0, 0, 0, "cdrc:fdef38255ee550ba"},
    {{L("EXAMPLE"), L("COM")}, 2, DNS_T_A, DNS_C_IN, 0, 0, 0, "cdrc:fdef38255ee550ba"},
    {{L("example"), L("com")}, 2, DNS_T_A, DNS_C_IN, 1, 0, 0, "cdrc:f683c51c295893b6"},
    {{L("example"), L("com")}, 2, DNS_T_A, DNS_C_IN, 0, 1, 0, "cdrc:c67d238979651d44"},
    {{L("example"), L("com")}, 2, DNS_T_AAAA, DNS_C_IN, 0, 0, 0, "cdrc:162a08d167302bde"},
    {{{0}}, 0, DNS_T_NS, DNS_C_IN, 0, 0, 0, "cdrc:236fb91508e7d01f"},
    {{L("version"), L("bind")}, 2, DNS_T_TXT, DNS_C_CH, 0, 0, 0, "cdrc:459714b3f6d4c964"},
    {{L("www"), L("some-long-subdomain"), L("example"), L("org")},
     4,
     DNS_T_A,
     DNS_C_IN,
     0,
     0,
     0,
     "cdrc:6b7484ff55b5caa5"},
    {{L("example"), L("com")},
     2,
     DNS_T_A,
     DNS_C_IN,
     0,
     0,
     0x9e3779b97f4a7c15ull,
     "cdrc:c2a5dc566be14503"},
    {{L("a.b"), L("example")}, 2, DNS_T_A, DNS_C_IN, 0, 0, 0, "cdrc:2d1a395f0912f4ae"},
    {{L("a b"), L("example")}, 2, DNS_T_A, DNS_C_IN, 0, 0, 0, "cdrc:b776b4cfc133100b"},
    {{L("x\001y"), L("example")}, 2, DNS_T_A, DNS_C_IN, 0, 0, 0, "cdrc:909d7c6d4bda74f6"},
    {{L("x\377"), L("example")}, 2, DNS_T_A, DNS_C_IN, 0, 0, 0, "cdrc:cfb764c16f2aa1a5"},
    {{L("a@b;c(d)e\"f\\g'h"), L("example")},
     2,
     DNS_T_A,
     DNS_C_IN,
     0,
     0,
     0,
     "cdrc:5165e8c97ca4781f"},
    {{L("Mixed$Case~!*"), L("example")}, 2, DNS_T_A, DNS_C_IN, 0, 0, 0, "cdrc:d404dae5c4834bf5"},
};

static void test_keys_spec_vectors(void **state)
{
    (void)state;
    size_t nv = sizeof spec_vecs / sizeof spec_vecs[0];
    int bad = 0;
    for (size_t i = 0; i < nv; i++) {
        const struct spec_vec *v = &spec_vecs[i];
        uint8_t name[DNS_NAME_MAX], q[512];
        size_t nlen = labels_wire(name, v->labels, v->nl);
        /* DO needs an OPT; the vectors without DO are tried both with and without one */
        for (int edns = v->do_bit ? 1 : 0; edns <= 1; edns++) {
            size_t ql = build_query(q, name, nlen, v->qtype, v->qclass, edns, v->do_bit, v->cd,
                                    (uint16_t)(0x1000 + i));
            char ours[64];
            assert_true(our_key(q, ql, "cdrc", v->seed, ours, sizeof ours, NULL));
            if (strcmp(ours, v->key) != 0) {
                print_message("vector %zu: ours %s, SPEC %s\n", i, ours, v->key);
                bad++;
            }
            uint8_t *qs[1] = {q};
            size_t lens[1] = {ql};
            bad += compare_keys(qs, lens, 1, "cdrc", v->seed, NULL);
        }
    }
    assert_int_equal(bad, 0);
}

/* xorshift64*: reproducible random names (the seed is printed) */
static uint64_t rng_state;
static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}

static size_t random_name(uint8_t *out)
{
    /* target wire length: mostly short, some near the 255 limit (presentation over 256) */
    size_t target = (rnd() % 4 == 0) ? 200 + rnd() % 56 : 2 + rnd() % 60;
    int style = (int)(rnd() % 4); /* 0: any byte, 1: specials/case, 2: letters, 3: mixed */
    static const char specials[] = ".\\ '@;()\"$~!*-_AZaz09";
    size_t n = 0;
    while (n + 2 < target) {
        size_t room = target - n - 2; /* room for the length byte and the root */
        size_t ll = 1 + rnd() % 63;
        if (ll > room) ll = room;
        if (ll == 0) break;
        out[n++] = (uint8_t)ll;
        for (size_t i = 0; i < ll; i++) {
            int s = style == 3 ? (int)(rnd() % 3) : style;
            uint8_t b;
            if (s == 0)
                b = (uint8_t)rnd();
            else if (s == 1)
                b = (uint8_t)specials[rnd() % (sizeof specials - 1)];
            else
                b = (uint8_t)((rnd() % 2 ? 'A' : 'a') + rnd() % 26);
            out[n++] = b;
        }
    }
    out[n++] = 0;
    assert_true(n <= DNS_NAME_MAX);
    return n;
}

static void test_keys_random_names(void **state)
{
    (void)state;
    const char *s = getenv("INTEROP_SEED");
    rng_state = s && *s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL) * 2654435761u + 1;
    if (rng_state == 0) rng_state = 1;
    print_message("random names: INTEROP_SEED=%llu\n", (unsigned long long)rng_state);
    enum { N = 200 };
    static const uint16_t types[] = {DNS_T_A,   DNS_T_AAAA, DNS_T_MX, DNS_T_TXT, DNS_T_NS,
                                     DNS_T_SRV, DNS_T_ANY,  65,       4660};
    static const uint16_t classes[] = {DNS_C_IN, DNS_C_IN,  DNS_C_IN, DNS_C_CH,
                                       DNS_C_HS, DNS_C_ANY, 254};
    uint8_t *qs[N];
    size_t lens[N];
    size_t long_names = 0;
    for (size_t i = 0; i < N; i++) {
        uint8_t name[DNS_NAME_MAX];
        size_t nlen = random_name(name);
        char text[DNS_NAME_TEXT_MAX];
        if (dns_name_to_text(name, nlen, text, sizeof text, true) > DNS_KEY_NAME_MAX) long_names++;
        qs[i] = malloc(512);
        assert_non_null(qs[i]);
        bool edns = rnd() % 3 != 0;
        lens[i] = build_query(qs[i], name, nlen, types[rnd() % (sizeof types / sizeof types[0])],
                              classes[rnd() % (sizeof classes / sizeof classes[0])], edns,
                              edns && rnd() % 2, rnd() % 2, (uint16_t)rnd());
    }
    print_message("random names: %zu of %d print past 256 bytes (truncated in the key)\n",
                  long_names, N);
    assert_true(long_names > 0);
    int bad = compare_keys(qs, lens, N, "cdrc", 0, NULL);
    bad += compare_keys(qs, lens, N, "k", rnd(), NULL);
    for (size_t i = 0; i < N; i++) free(qs[i]);
    assert_int_equal(bad, 0);
}

/* ---- 2. values we write are read by Go ------------------------------------------------- */

#define RR_CAP 512

/* A Go instance receives fixture f's query: it must find, under the key it computes, the
 * value we wrote for `key`, with the upstream response's question, flags, rcode, RRs and
 * DO, and no OPT. */
static void check_go_reads(const struct dns_fixture *f, const char *key, const struct dns_msg *resp)
{
    char *qhex = to_hex(f->query, f->query_len);
    char *go = NULL;
    int rc = ORACLE(&go, NULL, 0, "go-read", "--port", port_str(), "--query", qhex);
    char b[1024], b2[1024];
    if (rc != 0) fail_msg("%s: Go read failed (%d):\n%s", f->name, rc, go);
    assert_true(strncmp(go, "ok\n", 3) == 0);
    assert_string_equal(line_val(go, "key", b, sizeof b), key);
    assert_string_equal(line_val(go, "format", b, sizeof b), "rcd2");
    assert_string_equal(line_val(go, "match", b, sizeof b), "yes");
    assert_string_equal(line_val(go, "opt", b, sizeof b), "0");
    assert_string_equal(line_val(go, "do", b, sizeof b), resp->edns_do ? "1" : "0");
    assert_string_equal(line_val(go, "flagsbyte", b, sizeof b), resp->edns_do ? "0x01" : "0x00");

    /* the same data as the upstream response, unpacked by Go as a raw message */
    char *rhex = to_hex(f->resp, f->resp_len);
    char *up = NULL;
    assert_int_equal(ORACLE(&up, NULL, 0, "unpack", "--hex", rhex), 0);
    assert_string_equal(line_val(go, "rcode", b, sizeof b), line_val(up, "rcode", b2, sizeof b2));
    assert_string_equal(line_val(go, "question", b, sizeof b),
                        line_val(up, "question", b2, sizeof b2));
    assert_string_equal(line_val(go, "hdr", b, sizeof b), line_val(up, "hdr", b2, sizeof b2));
    /* TTLs as the upstream sent them (SPEC §1.2) */
    char *rr_go = rr_lines(go, -1), *rr_up = rr_lines(up, -1);
    if (strcmp(rr_go, rr_up) != 0)
        fail_msg("%s: RRs differ\n-- stored, as Go reads it:\n%s-- upstream:\n%s", f->name, rr_go,
                 rr_up);
    /* counts: the same minus the OPT */
    unsigned c[4], u[4];
    assert_int_equal(
        sscanf(line_val(go, "counts", b, sizeof b), "%u %u %u %u", &c[0], &c[1], &c[2], &c[3]), 4);
    assert_int_equal(
        sscanf(line_val(up, "counts", b, sizeof b), "%u %u %u %u", &u[0], &u[1], &u[2], &u[3]), 4);
    assert_int_equal(c[1], u[1]);
    assert_int_equal(c[2], u[2]);
    assert_int_equal(c[3], u[3] - (resp->has_edns ? 1 : 0));
    print_message("  %s: Go reads %s: %u/%u/%u RRs\n", f->name, key, c[1], c[2], c[3]);
    free(rr_go);
    free(rr_up);
    free(up);
    free(rhex);
    free(go);
    free(qhex);
}

/* A Go instance receiving fixture f's query finds nothing. */
static void check_go_misses(const struct dns_fixture *f)
{
    char *qhex = to_hex(f->query, f->query_len);
    char *go = NULL;
    int rc = ORACLE(&go, NULL, 0, "go-read", "--port", port_str(), "--query", qhex);
    if (rc == 0 || strncmp(go, "miss ", 5) != 0)
        fail_msg("%s: expected nothing stored, Go read:\n%s", f->name, go);
    free(go);
    free(qhex);
}

/* Our key for a write: the query's question and CD, DO from the response's OPT. */
static void write_key(const struct dns_question *q, const struct dns_msg *resp, char *key,
                      size_t cap)
{
    size_t pl = dns_key_prefix_len("cdrc", 4);
    assert_true(dns_key_format(key, cap, "cdrc", pl, dns_key_hash(q, resp->edns_do, 0)) > 0);
}

static void test_values_we_write_go_reads(void **state)
{
    (void)state;
    redis_flush();
    int written = 0, skipped = 0;
    for (const struct dns_fixture *f = dns_fixtures; f->name; f++) {
        if (!f->query || !f->resp) continue;
        struct dns_question q;
        assert_int_equal(dns_question_parse(&q, f->query, f->query_len), DNS_OK);
        struct dns_rr rrs[RR_CAP];
        struct dns_msg resp;
        assert_int_equal(dns_msg_parse(&resp, f->resp, f->resp_len, rrs, RR_CAP), DNS_OK);
        struct dns_verdict v;
        dns_classify(&v, &resp, &q, fixture_capture_time);
        if (v.why != DNS_NC_OK) {
            print_message("  %s: not written (%s)\n", f->name, dns_nocache_str(v.why));
            skipped++;
            continue;
        }
        static uint8_t val[DNS_ENTRY_MAX];
        size_t vlen = 0;
        assert_int_equal(dns_entry_encode(val, sizeof val, &vlen, &resp, &q), DNS_OK);
        char key[64];
        write_key(&q, &resp, key, sizeof key);
        redis_set_ex(key, val, vlen, 300);
        written++;
        check_go_reads(f, key, &resp);
    }
    print_message("  %d written and read by Go, %d not cacheable\n", written, skipped);
    assert_true(written >= 15);
}

/* ---- the public cache API on a private loop --------------------------------------------- */

struct api {
    struct ev_loop *loop;
    struct rc_cache *cache;
};

static struct api *api_open_one; /* closed by api_teardown when a test fails midway */

static void api_open(struct api *a)
{
    char text[256], err[512];
    int n = snprintf(text, sizeof text,
                     "redis_cache {\n    endpoint 127.0.0.1:%d\n    success 3600 0\n"
                     "    timeout {\n        read 5s\n    }\n}\n",
                     redis_port());
    struct rc_cache_config *cfg = NULL;
    if (rc_cache_config_parse(text, (size_t)n, "interop", &cfg, err, sizeof err) != 0)
        fail_msg("rc_cache_config_parse: %s", err);
    a->loop = ev_loop_new(EVFLAG_AUTO);
    assert_non_null(a->loop);
    a->cache = rc_cache_new(a->loop, cfg, NULL, 0, err, sizeof err);
    rc_cache_config_free(cfg);
    if (!a->cache) fail_msg("rc_cache_new: %s", err);
    api_open_one = a;
}

static void api_close(struct api *a)
{
    rc_cache_free(a->cache);
    ev_loop_destroy(a->loop);
    api_open_one = NULL;
}

static int api_teardown(void **state)
{
    (void)state;
    if (api_open_one) api_close(api_open_one);
    return 0;
}

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs the loop until *done or the pending writes drained (done NULL), at most 5 s. */
static void api_run(struct api *a, const bool *done)
{
    double end = now_mono() + 5;
    while (now_mono() < end) {
        if (done ? *done : rc_cache_pending_writes(a->cache) == 0) return;
        ev_run(a->loop, EVRUN_NOWAIT);
        usleep(1000);
    }
    fail_msg("the cache did not finish within 5 s");
}

struct lookup_res {
    bool done;
    int status;
    uint8_t reply[65535];
    size_t len;
};

static void on_lookup(void *priv, int status, const uint8_t *reply, size_t len)
{
    struct lookup_res *r = priv;
    r->done = true;
    r->status = status;
    r->len = 0;
    if (status == RC_CACHE_HIT) {
        assert_true(len <= sizeof r->reply);
        memcpy(r->reply, reply, len);
        r->len = len;
    }
}

static int api_lookup(struct api *a, const uint8_t *q, size_t ql, struct lookup_res *r)
{
    memset(r, 0, sizeof *r);
    assert_int_equal(rc_cache_lookup(a->cache, q, ql, false, on_lookup, r), 0);
    api_run(a, &r->done);
    return r->status;
}

static void test_cache_store_go_reads(void **state)
{
    (void)state;
    redis_flush();
    static struct api a;
    api_open(&a);
    int written = 0, skipped = 0;
    for (const struct dns_fixture *f = dns_fixtures; f->name; f++) {
        if (!f->query || !f->resp) continue;
        struct dns_question q;
        assert_int_equal(dns_question_parse(&q, f->query, f->query_len), DNS_OK);
        struct dns_rr rrs[RR_CAP];
        struct dns_msg resp;
        assert_int_equal(dns_msg_parse(&resp, f->resp, f->resp_len, rrs, RR_CAP), DNS_OK);
        struct dns_verdict v;
        dns_classify(&v, &resp, &q, (uint32_t)time(NULL));
        /* now, not at capture: the signed fixtures' RRSIGs may have expired; and a message TTL
         * of 0 (the CH answer) gives a cache duration of 0: nothing is written */
        uint32_t dur = v.kind == DNS_KIND_NEGATIVE ? dns_ttl_clamp(v.msg_ttl, 0, 1800)
                                                   : dns_ttl_clamp(v.msg_ttl, 0, 3600);
        bool cacheable = v.why == DNS_NC_OK && dur > 0;

        uint8_t *buf = malloc(f->resp_len);
        assert_non_null(buf);
        memcpy(buf, f->resp, f->resp_len);
        long ttl = rc_cache_store(a.cache, f->query, f->query_len, buf, f->resp_len);
        api_run(&a, NULL);
        free(buf);
        char key[64];
        write_key(&q, &resp, key, sizeof key);
        if (!cacheable) {
            print_message("  %s: not written (%s), store returned %ld\n", f->name,
                          v.why != DNS_NC_OK ? dns_nocache_str(v.why) : "duration 0", ttl);
            check_go_misses(f);
            skipped++;
            continue;
        }
        assert_int_equal(ttl, dur);
        long long rttl = redis_ttl(key);
        assert_true(rttl > 0 && rttl <= ttl);
        check_go_reads(f, key, &resp);
        written++;
    }
    api_close(&a);
    print_message("  %d written by rc_cache_store and read by Go, %d not cacheable\n", written,
                  skipped);
    assert_true(written >= 13);
}

/* ---- 3. values Go writes are served by us ---------------------------------------------- */

struct go_entry {
    const char *what;
    const char *const *pack; /* oracle pack arguments after --wire HEX, NULL-terminated */
    const char *qname;       /* dotted, in the case the client sends (NULL: labels) */
    struct lbl labels[4];
    size_t nl;
    uint16_t qtype, qclass;
    bool edns, do_bit, cd;
    const char *rcode;
    unsigned an, ns, ar; /* counts the Go side packed */
    bool go_upper;       /* the Go side stored the qname in upper case (else lower) */
};

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

static const struct go_entry go_entries[] = {
    {"A",
     ARGS("--type", "A", "--answer", "example.org. 300 IN A 192.0.2.1"),
     "example.org",
     {{0}},
     0,
     DNS_T_A,
     DNS_C_IN,
     false,
     false,
     false,
     "NOERROR",
     1,
     0,
     0,
     false},
    {"A, client sends mixed case and EDNS",
     ARGS("--type", "A", "--answer", "example.org. 300 IN A 192.0.2.1", "--answer",
          "example.org. 300 IN A 192.0.2.2"),
     "ExAmPlE.oRg",
     {{0}},
     0,
     DNS_T_A,
     DNS_C_IN,
     true,
     false,
     false,
     "NOERROR",
     2,
     0,
     0,
     false},
    {"AAAA with DO=1 and an RRSIG",
     ARGS("--type", "AAAA", "--do", "1", "--ad", "--answer",
          "v6.example.org. 600 IN AAAA 2001:db8::1", "--answer",
          "v6.example.org. 600 IN RRSIG AAAA 13 3 600 20300101000000 20200101000000 12345 "
          "example.org. dGVzdHNpZ25hdHVyZXRlc3RzaWduYXR1cmV0ZXN0c2lnbmF0dXJlMTIzNDU2Nzg5MDEy"),
     "v6.example.org",
     {{0}},
     0,
     DNS_T_AAAA,
     DNS_C_IN,
     true,
     true,
     false,
     "NOERROR",
     2,
     0,
     0,
     false},
    {"NXDOMAIN with SOA",
     ARGS("--type", "A", "--rcode", "NXDOMAIN", "--aa", "--ns",
          "example.org. 300 IN SOA ns1.example.org. hostmaster.example.org. 2024010101 7200 "
          "3600 1209600 300"),
     "nx.example.org",
     {{0}},
     0,
     DNS_T_A,
     DNS_C_IN,
     true,
     false,
     false,
     "NXDOMAIN",
     0,
     1,
     0,
     false},
    {"CNAME chain, compressed",
     ARGS("--type", "A", "--compress", "--answer", "www.example.org. 300 IN CNAME web.example.org.",
          "--answer", "web.example.org. 300 IN CNAME host.example.net.", "--answer",
          "host.example.net. 60 IN A 198.51.100.7"),
     "www.example.org",
     {{0}},
     0,
     DNS_T_A,
     DNS_C_IN,
     true,
     false,
     false,
     "NOERROR",
     3,
     0,
     0,
     false},
    {"every name-bearing type, compressed",
     ARGS("--type", "ANY", "--compress", "--answer",
          "t.example.org. 300 IN MX 10 mail.example.org.", "--answer",
          "t.example.org. 300 IN NS ns1.example.org.", "--answer",
          "t.example.org. 300 IN SRV 1 2 53 srv.example.org.", "--answer",
          "t.example.org. 300 IN PTR ptr.example.org.", "--answer",
          "t.example.org. 300 IN DNAME target.example.org.", "--answer",
          "t.example.org. 300 IN TXT \"hello world\" \"a;b\"", "--answer",
          "t.example.org. 300 IN NSEC z.example.org. A MX RRSIG NSEC", "--ns",
          "example.org. 300 IN SOA ns1.example.org. hostmaster.example.org. 1 7200 3600 "
          "1209600 300",
          "--extra", "mail.example.org. 300 IN A 192.0.2.25", "--extra",
          "ns1.example.org. 300 IN AAAA 2001:db8::53"),
     "t.example.org",
     {{0}},
     0,
     DNS_T_ANY,
     DNS_C_IN,
     true,
     false,
     false,
     "NOERROR",
     7,
     1,
     2,
     false},
    {"legacy raw message, no OPT",
     ARGS("--type", "A", "--legacy", "--answer", "legacy.example.org. 120 IN A 203.0.113.9"),
     "legacy.example.org",
     {{0}},
     0,
     DNS_T_A,
     DNS_C_IN,
     true,
     false,
     false,
     "NOERROR",
     1,
     0,
     0,
     false},
    {"legacy raw message with an OPT carrying DO",
     ARGS("--type", "A", "--legacy", "--do", "1", "--answer",
          "legacy-do.example.org. 120 IN A 203.0.113.10"),
     "legacy-do.example.org",
     {{0}},
     0,
     DNS_T_A,
     DNS_C_IN,
     true,
     true,
     false,
     "NOERROR",
     1,
     0,
     1,
     false},
    {"SERVFAIL (Go caches it for success MIN)",
     ARGS("--type", "A", "--rcode", "SERVFAIL"),
     "broken.example.org",
     {{0}},
     0,
     DNS_T_A,
     DNS_C_IN,
     true,
     false,
     false,
     "SERVFAIL",
     0,
     0,
     0,
     false},
    {"CD=1",
     ARGS("--type", "A", "--cd", "1", "--answer", "cd.example.org. 300 IN A 192.0.2.77"),
     "cd.example.org",
     {{0}},
     0,
     DNS_T_A,
     DNS_C_IN,
     true,
     false,
     true,
     "NOERROR",
     1,
     0,
     0,
     false},
    {"CH class TXT",
     ARGS("--type", "TXT", "--class", "CH", "--answer", "version.bind. 0 CH TXT \"9.18\""),
     "version.bind",
     {{0}},
     0,
     DNS_T_TXT,
     DNS_C_CH,
     false,
     false,
     false,
     "NOERROR",
     1,
     0,
     0,
     false},
    {"escaped labels",
     ARGS("--type", "A", "--answer", "a\\.b.x\\001Y.example. 300 IN A 192.0.2.99"),
     NULL,
     {L("A.b"), L("x\001y"), L("EXAMPLE")},
     3,
     DNS_T_A,
     DNS_C_IN,
     true,
     false,
     false,
     "NOERROR",
     1,
     0,
     0,
     false},
    {"root NS",
     ARGS("--type", "NS", "--answer", ". 518400 IN NS a.root-servers.net."),
     ".",
     {{0}},
     0,
     DNS_T_NS,
     DNS_C_IN,
     true,
     false,
     false,
     "NOERROR",
     1,
     0,
     0,
     false},
    {.what = "stored with an upper-case question, client asks in lower case",
     .pack = ARGS("--type", "A", "--answer", "UPPER.EXAMPLE.ORG. 300 IN A 192.0.2.8"),
     .qname = "upper.example.org",
     .qtype = DNS_T_A,
     .qclass = DNS_C_IN,
     .edns = true,
     .rcode = "NOERROR",
     .an = 1,
     .go_upper = true},
    {.what = "flags byte with reserved bits set (0x81)",
     .pack = ARGS("--type", "A", "--do", "1", "--flagsbyte", "0x81", "--answer",
                  "flags.example.org. 300 IN A 192.0.2.81"),
     .qname = "flags.example.org",
     .qtype = DNS_T_A,
     .qclass = DNS_C_IN,
     .edns = true,
     .do_bit = true,
     .rcode = "NOERROR",
     .an = 1},
};

/* Compressed Go entries where a later name points into a name inside the RDATA of a type
 * our parser treats as opaque: the Go library adds the RDATA names of every type it knows
 * (HTTPS/SVCB target, NAPTR replacement, KX, AFSDB, RT, RP, MB/MG/MR/MINFO, LP...) to its
 * compression table, even where it does not compress them, so e.g. the glue of an HTTPS
 * target points into the HTTPS RDATA. */
#define COMPRESSED(t, ...) ARGS("--type", t, "--compress", __VA_ARGS__)
static const struct go_entry go_entries_other_rdata[] = {
    {.what = "HTTPS + glue of its target",
     .pack = COMPRESSED("HTTPS", "--answer",
                        "svc.example.org. 300 IN HTTPS 1 pool.example.net. alpn=h2", "--extra",
                        "pool.example.net. 300 IN A 192.0.2.5"),
     .qname = "svc.example.org",
     .qtype = 65,
     .qclass = DNS_C_IN,
     .edns = true,
     .rcode = "NOERROR",
     .an = 1,
     .ar = 1},
    {.what = "SVCB + glue of its target",
     .pack =
         COMPRESSED("SVCB", "--answer", "_dns.example.org. 300 IN SVCB 1 dns.example.net. alpn=dot",
                    "--extra", "dns.example.net. 300 IN AAAA 2001:db8::853"),
     .qname = "_dns.example.org",
     .qtype = 64,
     .qclass = DNS_C_IN,
     .edns = true,
     .rcode = "NOERROR",
     .an = 1,
     .ar = 1},
    {.what = "NAPTR + the SRV of its replacement",
     .pack = COMPRESSED("NAPTR", "--answer",
                        "sip.example.org. 300 IN NAPTR 10 100 \"S\" \"SIP+D2U\" \"\" "
                        "_sip._udp.example.org.",
                        "--extra", "_sip._udp.example.org. 300 IN SRV 0 0 5060 h.example.org."),
     .qname = "sip.example.org",
     .qtype = 35,
     .qclass = DNS_C_IN,
     .edns = true,
     .rcode = "NOERROR",
     .an = 1,
     .ar = 1},
    {.what = "KX + A of the exchanger",
     .pack = COMPRESSED("KX", "--answer", "kx.example.org. 300 IN KX 10 kxh.example.org.",
                        "--extra", "kxh.example.org. 300 IN A 192.0.2.36"),
     .qname = "kx.example.org",
     .qtype = 36,
     .qclass = DNS_C_IN,
     .edns = true,
     .rcode = "NOERROR",
     .an = 1,
     .ar = 1},
    {.what = "AFSDB + A of the host",
     .pack = COMPRESSED("AFSDB", "--answer", "afs.example.org. 300 IN AFSDB 1 db.example.org.",
                        "--extra", "db.example.org. 300 IN A 192.0.2.18"),
     .qname = "afs.example.org",
     .qtype = 18,
     .qclass = DNS_C_IN,
     .edns = true,
     .rcode = "NOERROR",
     .an = 1,
     .ar = 1},
    {.what = "RP + TXT of its txt name",
     .pack = COMPRESSED("RP", "--answer",
                        "rp.example.org. 300 IN RP admin.example.org. info.example.org.", "--extra",
                        "info.example.org. 300 IN TXT \"contact\""),
     .qname = "rp.example.org",
     .qtype = 17,
     .qclass = DNS_C_IN,
     .edns = true,
     .rcode = "NOERROR",
     .an = 1,
     .ar = 1},
    {.what = "MB + A of the mailbox host",
     .pack = COMPRESSED("MB", "--answer", "mb.example.org. 300 IN MB mbox.example.org.", "--extra",
                        "mbox.example.org. 300 IN A 192.0.2.7"),
     .qname = "mb.example.org",
     .qtype = 7,
     .qclass = DNS_C_IN,
     .edns = true,
     .rcode = "NOERROR",
     .an = 1,
     .ar = 1},
};

/* Go unpacks our hit reply to the query q (a raw message: the legacy path) and finds the
 * data the Go side stored (the value val), with the remaining TTL. */
static void check_our_reply(const struct go_entry *g, size_t i, const uint8_t *q, size_t ql,
                            size_t nlen, const uint8_t *reply, size_t rlen, const uint8_t *val,
                            size_t vlen, long long ttl)
{
    char b[1024];
    /* Go unpacks our reply (a raw message: the legacy path) */
    char *rhex = to_hex(reply, rlen), *qhex = to_hex(q, ql);
    char *ro = NULL;
    int rc = ORACLE(&ro, NULL, 0, "unpack", "--hex", rhex, "--query", qhex);
    if (rc != 0) fail_msg("%s: Go cannot unpack our reply:\n%s", g->what, ro);
    assert_string_equal(line_val(ro, "rcode", b, sizeof b), g->rcode);
    assert_string_equal(line_val(ro, "opt", b, sizeof b), g->edns ? "1" : "0");
    assert_string_equal(line_val(ro, "do", b, sizeof b), g->do_bit ? "1" : "0");
    assert_int_equal(atoi(line_val(ro, "id", b, sizeof b)), 0x2200 + (int)i);
    line_val(ro, "hdr", b, sizeof b);
    assert_non_null(strstr(b, "qr"));
    assert_non_null(strstr(b, "aa"));
    assert_true((strstr(b, "cd") != NULL) == g->cd);
    /* the question in the client's case: the reply's question bytes are the query's */
    assert_memory_equal(reply + DNS_HEADER_LEN, q + DNS_HEADER_LEN, nlen + 4);
    /* our reply, read as a legacy entry, passes the Go read checks for the query (its OPT
     * carries the client's DO, its header the client's CD) */
    assert_string_equal(line_val(ro, "match", b, sizeof b), "yes");

    /* same RRs as Go packed, each with the remaining TTL: `ttl`, or (ttl < 0: read by the
     * cache API at some instant) one TTL for all in 1..300 */
    if (ttl < 0) {
        struct dns_rr rrs[RR_CAP];
        struct dns_msg m;
        assert_int_equal(dns_msg_parse(&m, reply, rlen, rrs, RR_CAP), DNS_OK);
        for (size_t k = 0; k < m.nrr; k++) {
            if (rrs[k].type == DNS_T_OPT) continue;
            uint32_t t = dns_get32(reply + rrs[k].ttl_off);
            if (ttl < 0) ttl = t;
            assert_int_equal(t, ttl);
        }
        if (ttl < 0)
            ttl = 0; /* no RR (SERVFAIL) */
        else
            assert_true(ttl > 0 && ttl <= 300);
    }
    char *vhex = to_hex(val, vlen);
    char *so = NULL;
    assert_int_equal(ORACLE(&so, NULL, 0, "unpack", "--hex", vhex), 0);
    char *want = rr_lines(so, ttl), *got = rr_lines(ro, ttl);
    if (strcmp(want, got) != 0)
        fail_msg("%s: RRs differ\n-- Go stored:\n%s-- our reply:\n%s", g->what, want, got);
    unsigned c[4];
    assert_int_equal(
        sscanf(line_val(so, "counts", b, sizeof b), "%u %u %u %u", &c[0], &c[1], &c[2], &c[3]), 4);
    assert_int_equal(c[1], g->an);
    assert_int_equal(c[2], g->ns);
    assert_int_equal(c[3], g->ar);
    free(want);
    free(got);
    free(so);
    free(vhex);
    free(ro);
    free(qhex);
    free(rhex);
}

/* The Go side packs and SETs entry i (under its own key); builds our query for it in the
 * client's case into q. Returns the query length; *nlen is the qname's wire length; ours is
 * our key for the query, which must be the key Go wrote. */
static size_t go_write_entry(const struct go_entry *g, size_t i, uint8_t *q, size_t *nlen,
                             char *ours, size_t cap)
{
    uint8_t name[DNS_NAME_MAX];
    *nlen = g->qname ? dotted_wire(name, g->qname) : labels_wire(name, g->labels, g->nl);
    /* the Go side writes the name in the case its own client asked: lower (or upper) */
    uint8_t lname[DNS_NAME_MAX];
    memcpy(lname, name, *nlen);
    for (size_t k = 0; k < *nlen; k++) {
        if (!g->go_upper && lname[k] >= 'A' && lname[k] <= 'Z') lname[k] = (uint8_t)(lname[k] + 32);
        if (g->go_upper && lname[k] >= 'a' && lname[k] <= 'z') lname[k] = (uint8_t)(lname[k] - 32);
    }
    char *whex = to_hex(lname, *nlen);
    const char *args[64];
    size_t na = 0;
    args[na++] = "pack";
    args[na++] = "--wire";
    args[na++] = whex;
    args[na++] = "--redis";
    args[na++] = port_str();
    args[na++] = "--ex";
    args[na++] = "300";
    for (const char *const *p = g->pack; *p; p++) args[na++] = *p;
    args[na] = NULL;
    char *out = NULL;
    int rc = oracle_v(&out, NULL, 0, args);
    if (rc != 0) fail_msg("%s: oracle pack failed (%d):\n%s", g->what, rc, out);
    char gokey[128];
    line_val(out, "key", gokey, sizeof gokey);

    size_t ql = build_query(q, name, *nlen, g->qtype, g->qclass, g->edns, g->do_bit, g->cd,
                            (uint16_t)(0x2200 + i));
    assert_true(our_key(q, ql, "cdrc", 0, ours, cap, NULL));
    if (strcmp(ours, gokey) != 0)
        fail_msg("%s: key mismatch: ours %s, Go wrote %s", g->what, ours, gokey);
    free(out);
    free(whex);
    return ql;
}

static void test_values_go_writes_we_serve(void **state)
{
    (void)state;
    redis_flush();
    size_t ne = sizeof go_entries / sizeof go_entries[0];
    for (size_t i = 0; i < ne; i++) {
        const struct go_entry *g = &go_entries[i];
        uint8_t q[600];
        size_t nlen;
        char ours[128];
        size_t ql = go_write_entry(g, i, q, &nlen, ours, sizeof ours);
        struct dns_question qq;
        assert_int_equal(dns_question_parse(&qq, q, ql), DNS_OK);

        /* our read path: GET + TTL, decode, check, hit reply */
        size_t vlen = 0;
        uint8_t *val = redis_get(ours, &vlen);
        assert_non_null(val);
        long long ttl = redis_ttl(ours);
        assert_true(ttl > 0 && ttl <= 300);
        struct dns_rr rrs[RR_CAP];
        struct dns_entry e;
        enum dns_entry_status st = dns_entry_decode(&e, val, vlen, rrs, RR_CAP);
        if (st != DNS_ENTRY_OK)
            fail_msg("%s: our decode: %s (%s)", g->what, dns_entry_status_str(st),
                     dns_strerror(e.err));
        st = dns_entry_check(&e, &qq);
        if (st != DNS_ENTRY_OK) fail_msg("%s: our check: %s", g->what, dns_entry_status_str(st));
        static uint8_t reply[65535];
        size_t rlen = 0;
        assert_int_equal(dns_reply_build(reply, sizeof reply, &rlen, &e.msg, &qq, (uint32_t)ttl,
                                         DNS_UDP_DEFAULT, false),
                         DNS_OK);
        check_our_reply(g, i, q, ql, nlen, reply, rlen, val, vlen, ttl);
        print_message("  %s: key %s, served (%zu bytes, ttl %lld)\n", g->what, ours, rlen, ttl);
        free(val);
    }
}

static void test_cache_lookup_serves_go_entries(void **state)
{
    (void)state;
    redis_flush();
    static struct api a;
    api_open(&a);
    size_t ne = sizeof go_entries / sizeof go_entries[0];
    static struct lookup_res r;
    for (size_t i = 0; i < ne; i++) {
        const struct go_entry *g = &go_entries[i];
        uint8_t q[600];
        size_t nlen;
        char ours[128];
        size_t ql = go_write_entry(g, i, q, &nlen, ours, sizeof ours);
        size_t vlen = 0;
        uint8_t *val = redis_get(ours, &vlen);
        assert_non_null(val);
        int st = api_lookup(&a, q, ql, &r);
        if (st != RC_CACHE_HIT) fail_msg("%s: rc_cache_lookup status %d, not a hit", g->what, st);
        long long ttl = redis_ttl(ours);
        assert_true(ttl > 0 && ttl <= 300);
        check_our_reply(g, i, q, ql, nlen, r.reply, r.len, val, vlen, -1);
        print_message("  %s: rc_cache_lookup hit (%zu bytes)\n", g->what, r.len);
        /* still there: a hit never evicts a foreign entry */
        size_t v2len = 0;
        uint8_t *v2 = redis_get(ours, &v2len);
        assert_non_null(v2);
        free(v2);
        free(val);
    }
    api_close(&a);
}

/* Every entry of go_entries_other_rdata: our decode and check accept it, our reply unpacks in
 * Go with the same data, and rc_cache_lookup hits without evicting it. All entries are tried
 * and each failure is printed with the stored value before the test fails. */
static void test_go_compressed_into_other_rdata(void **state)
{
    (void)state;
    redis_flush();
    static struct api a;
    api_open(&a);
    static struct lookup_res r;
    size_t ne = sizeof go_entries_other_rdata / sizeof go_entries_other_rdata[0];
    int bad = 0;
    for (size_t i = 0; i < ne; i++) {
        const struct go_entry *g = &go_entries_other_rdata[i];
        uint8_t q[600];
        size_t nlen;
        char ours[128];
        size_t ql = go_write_entry(g, 0x100 + i, q, &nlen, ours, sizeof ours);
        struct dns_question qq;
        assert_int_equal(dns_question_parse(&qq, q, ql), DNS_OK);
        size_t vlen = 0;
        uint8_t *val = redis_get(ours, &vlen);
        assert_non_null(val);
        char *vhex = to_hex(val, vlen);

        struct dns_rr rrs[RR_CAP];
        struct dns_entry e;
        enum dns_entry_status st = dns_entry_decode(&e, val, vlen, rrs, RR_CAP);
        if (st == DNS_ENTRY_OK) st = dns_entry_check(&e, &qq);
        if (st != DNS_ENTRY_OK) {
            print_message("INTEROP BUG %s: a value the Go library packed is %s for us (%s)\n"
                          "  value %s\n",
                          g->what, dns_entry_status_str(st), dns_strerror(e.err), vhex);
            bad++;
        } else {
            static uint8_t reply[65535];
            size_t rlen = 0;
            assert_int_equal(dns_reply_build(reply, sizeof reply, &rlen, &e.msg, &qq, 300,
                                             DNS_UDP_DEFAULT, false),
                             DNS_OK);
            check_our_reply(g, 0x100 + i, q, ql, nlen, reply, rlen, val, vlen, 300);
        }

        int lst = api_lookup(&a, q, ql, &r);
        api_run(&a, NULL); /* let a background eviction, if any, reach Redis */
        size_t v2len = 0;
        uint8_t *v2 = redis_get(ours, &v2len);
        if (lst != RC_CACHE_HIT || !v2) {
            print_message("INTEROP BUG %s: rc_cache_lookup status %d (0 = hit); the Go entry "
                          "%s\n",
                          g->what, lst, v2 ? "is still there" : "was evicted");
            bad++;
        } else {
            check_our_reply(g, 0x100 + i, q, ql, nlen, r.reply, r.len, val, vlen, -1);
            print_message("  %s: served\n", g->what);
        }
        free(v2);
        free(vhex);
        free(val);
    }
    api_close(&a);
    assert_int_equal(bad, 0);
}

/* A Go entry with TC=1 (a foreign writer's choice): a miss for us, and never evicted. */
static void test_go_tc_entry_kept(void **state)
{
    (void)state;
    redis_flush();
    static struct api a;
    api_open(&a);
    const struct go_entry g = {
        .what = "TC=1",
        .pack = ARGS("--type", "A", "--tc", "--answer", "tc.example.org. 300 IN A 192.0.2.3"),
        .qname = "tc.example.org",
        .qtype = DNS_T_A,
        .qclass = DNS_C_IN,
        .edns = true,
        .rcode = "NOERROR",
        .an = 1};
    uint8_t q[600];
    size_t nlen;
    char ours[128];
    size_t ql = go_write_entry(&g, 0x300, q, &nlen, ours, sizeof ours);
    static struct lookup_res r;
    assert_int_equal(api_lookup(&a, q, ql, &r), RC_CACHE_MISS);
    api_run(&a, NULL);
    usleep(100 * 1000);
    api_run(&a, NULL);
    size_t vlen = 0;
    uint8_t *val = redis_get(ours, &vlen);
    assert_non_null(val);
    free(val);
    api_close(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oracle_selftest),
        cmocka_unit_test(test_keys_spec_vectors),
        cmocka_unit_test(test_keys_fixtures),
        cmocka_unit_test(test_keys_random_names),
        cmocka_unit_test(test_values_we_write_go_reads),
        cmocka_unit_test(test_values_go_writes_we_serve),
        cmocka_unit_test_teardown(test_cache_store_go_reads, api_teardown),
        cmocka_unit_test_teardown(test_cache_lookup_serves_go_entries, api_teardown),
        cmocka_unit_test_teardown(test_go_tc_entry_kept, api_teardown),
        cmocka_unit_test_teardown(test_go_compressed_into_other_rdata, api_teardown),
    };
    int rc = cmocka_run_group_tests_name("interop", tests, NULL, NULL);
    if (rfd >= 0) close(rfd);
    return rc;
}
