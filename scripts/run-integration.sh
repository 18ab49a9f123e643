#!/usr/bin/env bash
# Runs every integration test script tests/integration/*.sh. Each starts the real servers it
# needs (redis-server, sentinels, cluster nodes, TLS servers, the test upstream) on free
# loopback ports and stops them on exit. A script prints "ok NAME" / "not ok NAME" lines.
set -u
results=${RESULTS_DIR:-build/results}
mkdir -p "$results"
pass=0; fail=0
shopt -s nullglob
for t in tests/integration/*.sh; do
    log=$(mktemp)
    bash "$t" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    p=$(grep -c '^ok ' "$log"); f=$(grep -c '^not ok ' "$log")
    [ $rc -ne 0 ] && [ "$f" -eq 0 ] && f=1
    pass=$((pass + p)); fail=$((fail + f))
    rm -f "$log"
done
echo "$pass $fail" > "$results/integration"
echo "integration: $pass passed, $fail failed"
[ $fail -eq 0 ]
