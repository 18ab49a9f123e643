#!/usr/bin/env bash
# The redis_cache cache (lookup, store, metrics, the public "Cache" API) against real
# redis-server processes: a main server, one to kill and restart, one to SIGSTOP, one that
# refuses SET, and a port nothing listens on; exports them in RC_* variables and runs
# build/itests/itest_plugin (cmocka, ASan+UBSan). Then builds examples/embed.c against the
# static library and runs it against the main server, twice (miss then hit, then hit).
source "$(dirname "$0")/lib.sh"

bin="$IT_BUILD/itests/itest_plugin"
[ -x "$bin" ] || { not_ok "itest_plugin built" "missing $bin (make $IT_BUILD/itests/itest_plugin)"; finish; }

RC_PORT=$(redis_start main) || exit 1
RC_V_PORT=$(redis_start victim) || exit 1
RC_V_PID=$(redis_pid victim)
RC_V_DIR="$IT_TMP/victim"
RC_S_PORT=$(redis_start stopped) || exit 1
RC_S_PID=$(redis_pid stopped)
RC_NS_PORT=$(redis_start noset --rename-command SET '""') || exit 1
RC_FREE_PORT=$(free_port)
export RC_PORT RC_V_PORT RC_V_PID RC_V_DIR RC_S_PORT RC_S_PID RC_NS_PORT RC_FREE_PORT

ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} run_cmocka "$bin"
rc=$?
[ "$rc" -eq 0 ] || not_ok "itest_plugin exited $rc"

for n in main stopped noset; do
    if kill -0 "$(redis_pid $n)" 2>/dev/null; then ok "$n still running"; else not_ok "$n still running"; fi
done

# ---- examples/embed.c: only include/redis_cache.h and ev.h, linked with the static library
embed="$IT_BUILD/examples/embed"
if [ ! -x "$embed" ] || [ "$IT_ROOT/examples/embed.c" -nt "$embed" ] ||
    [ "$IT_BUILD/libredis_cache.a" -nt "$embed" ]; then
    mkdir -p "$IT_BUILD/examples"
    if ! out=$(cc -std=c11 -Wall -Wextra -Werror -I"$IT_ROOT/include" "$IT_ROOT/examples/embed.c" \
        "$IT_BUILD/libredis_cache.a" -lev -lssl -lcrypto -lm -lpthread -o "$embed" 2>&1); then
        not_ok "examples/embed builds against libredis_cache.a" "$out"
        finish
    fi
fi
ok "examples/embed builds against libredis_cache.a"

rcli "$RC_PORT" FLUSHALL >/dev/null
if out=$("$embed" "$RC_PORT" 2>&1) &&
    grep -q '^first lookup: miss' <<<"$out" && grep -q '^second lookup: hit' <<<"$out" &&
    grep -q 'example.org. [0-9]* IN A 93.184.215.14' <<<"$out" &&
    grep -q '^coredns_redis_cache_hits_total{server="embed"} 1$' <<<"$out"; then
    ok "examples/embed: miss, store, hit"
else
    not_ok "examples/embed: miss, store, hit" "$out"
fi
key=$(rcli "$RC_PORT" --scan --pattern 'cdrc:*')
if [ "$(wc -l <<<"$key")" -eq 1 ] && [ "$(rcli "$RC_PORT" TTL "$key")" -gt 0 ]; then
    ok "examples/embed wrote one key with a TTL ($key)"
else
    not_ok "examples/embed wrote one key with a TTL" "$key"
fi
# the port from the environment; the entry is still there: a hit at once
if out=$(REDIS_PORT=$RC_PORT "$embed" 2>&1) && grep -q '^first lookup: hit' <<<"$out"; then
    ok "examples/embed: hit on the second run (port from REDIS_PORT)"
else
    not_ok "examples/embed: hit on the second run" "$out"
fi
# Redis down: a clear failure, not a hang
if out=$(timeout 10 "$embed" "$RC_FREE_PORT" 2>&1); then
    not_ok "examples/embed fails when Redis is down" "$out"
else
    rc=$?
    if [ "$rc" -eq 1 ] && grep -q 'error' <<<"$out"; then ok "examples/embed fails (exit 1) when Redis is down"
    else not_ok "examples/embed fails (exit 1) when Redis is down" "exit $rc: $out"; fi
fi
finish
