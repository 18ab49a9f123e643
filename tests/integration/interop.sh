#!/usr/bin/env bash
# Mixed-fleet interop (SPEC §1, §6): our keys and values against the Go DNS library the Go
# plugin uses, on a real redis-server. Builds the Go oracle (tests/oracle/build.sh, offline,
# Debian's golang-go + miekg/dns + cespare/xxhash), then runs build/itests/itest_interop
# (cmocka, ASan+UBSan) with REDIS_PORT and ORACLE. INTEROP_SEED fixes the random names.
source "$(dirname "$0")/lib.sh"

bin="$IT_BUILD/itests/itest_interop"
[ -x "$bin" ] || { not_ok "itest_interop built" "missing $bin (make $IT_BUILD/itests/itest_interop)"; finish; }

if ! command -v go >/dev/null 2>&1 || [ ! -d /usr/share/gocode/src/github.com/miekg/dns ] ||
    [ ! -d /usr/share/gocode/src/github.com/cespare/xxhash ]; then
    not_ok "Go oracle toolchain" "needs golang-go golang-github-miekg-dns-dev golang-github-cespare-xxhash-dev"
    finish
fi
if out=$(BUILD="$IT_BUILD" bash "$IT_ROOT/tests/oracle/build.sh" 2>&1); then
    ORACLE=$(printf '%s\n' "$out" | tail -n 1)
    ok "Go oracle built ($ORACLE)"
else
    not_ok "Go oracle built" "$out"
    finish
fi

# the oracle agrees with the SPEC §1.1 vectors before anything is compared with it
check "oracle selftest (SPEC §1.1 vectors, seeded XXH64)" "$ORACLE" selftest

REDIS_PORT=$(redis_start interop) || { not_ok "redis-server started"; finish; }
export REDIS_PORT ORACLE

ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} run_cmocka "$bin"
rc=$?
[ "$rc" -eq 0 ] || not_ok "itest_interop exited $rc"

# a foreign value the Go side wrote is still there: we never evicted what we could read
if kill -0 "$(redis_pid interop)" 2>/dev/null; then ok "redis-server still running"; else not_ok "redis-server still running"; fi
finish
