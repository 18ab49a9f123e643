#!/usr/bin/env bash
# Runs cmocka test binaries, shows their output, and records "LABEL: N passed, N failed".
# usage: run-unit.sh LABEL BIN...
set -u
label=$1; shift
results=${RESULTS_DIR:-build/results}
mkdir -p "$results"
pass=0; fail=0; bad_bins=()
for bin in "$@"; do
    out=$("$bin" 2>&1); rc=$?
    printf '%s\n' "$out"
    p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test(s)\./\1/p' | awk '{s+=$1} END {print s+0}')
    f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test(s), listed below:/\1/p' | awk '{s+=$1} END {print s+0}')
    pass=$((pass + p)); fail=$((fail + f))
    if [ $rc -ne 0 ]; then
        bad_bins+=("$bin")
        # a crash or sanitizer abort may print no cmocka summary at all
        [ "$f" -eq 0 ] && fail=$((fail + 1))
    fi
done
echo "$pass $fail" > "$results/$label"
echo "$label: $pass passed, $fail failed"
if [ ${#bad_bins[@]} -gt 0 ]; then
    echo "$label: failing binaries: ${bad_bins[*]}" >&2
    exit 1
fi
