#!/usr/bin/env bash
# Runs the integration test scripts tests/integration/*.sh (all, or those named as
# arguments). Each starts the real servers it needs (redis-server, sentinels, cluster nodes,
# TLS servers, the test upstream) on free loopback ports and stops them on exit. Counted:
# TAP-like "ok"/"not ok" lines and cmocka summary lines of the programs a script runs.
set -u
results=${RESULTS_DIR:-build/results}
mkdir -p "$results"
pass=0; fail=0
shopt -s nullglob
if [ $# -gt 0 ]; then scripts=("$@"); else scripts=(tests/integration/*.sh); fi
for t in "${scripts[@]}"; do
    case "$(basename "$t")" in lib.sh) continue ;; esac
    echo "== $t"
    log=$(mktemp)
    start=$(date +%s)
    timeout --kill-after=10 600 bash "$t" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    p=$(grep -cE '^ok ' "$log")
    f=$(grep -cE '^not ok ' "$log")
    cp=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test(s)\./\1/p' "$log" | awk '{s+=$1} END {print s+0}')
    cf=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test(s), listed below:/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
    p=$((p + cp)); f=$((f + cf))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; echo "not ok $t exited $rc"; fi
    echo "== $t: $p passed, $f failed ($(( $(date +%s) - start ))s)"
    pass=$((pass + p)); fail=$((fail + f))
    rm -f "$log"
done
echo "$pass $fail" > "$results/integration"
echo "integration: $pass passed, $fail failed"
[ $fail -eq 0 ]
