#!/usr/bin/env bash
# Sums the per-suite results written by the runners into one closing line.
set -u
results=${RESULTS_DIR:-build/results}
pass=0; fail=0
for f in "$results"/*; do
    [ -f "$f" ] || continue
    read -r p q < "$f"
    printf '  %-14s %s passed, %s failed\n' "$(basename "$f")" "$p" "$q"
    pass=$((pass + p)); fail=$((fail + q))
done
echo "total: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
