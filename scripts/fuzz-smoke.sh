#!/usr/bin/env bash
# Runs every libFuzzer harness for FUZZ_SECONDS (default 30) under ASan+UBSan, starting
# from its seed corpus in fuzz/corpus/NAME (copied, so the repository stays clean).
# Any crash, leak, timeout or sanitizer report fails the run.
set -u
secs=${FUZZ_SECONDS:-30}
results=${RESULTS_DIR:-build/results}
mkdir -p "$results"
pass=0; fail=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for bin in "$@"; do
    name=$(basename "$bin")
    corpus="$work/$name"
    mkdir -p "$corpus"
    [ -d "fuzz/corpus/$name" ] && cp -r "fuzz/corpus/$name/." "$corpus/"
    dict=""
    [ -f "fuzz/$name.dict" ] && dict="-dict=fuzz/$name.dict"
    echo "fuzz: $name for ${secs}s (seeds: $(ls "$corpus" | wc -l))"
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$work/$name-" $dict "$corpus" > "$work/$name.log" 2>&1
    rc=$?
    if [ $rc -eq 0 ]; then
        pass=$((pass + 1))
        grep -E 'stat::number_of_executed_units|Done [0-9]+ runs' "$work/$name.log" | tail -n 2 | sed "s/^/  $name: /"
    else
        fail=$((fail + 1))
        echo "fuzz: $name FAILED (rc=$rc); last lines:"
        tail -n 60 "$work/$name.log"
        for a in "$work/$name"-*; do
            [ -f "$a" ] && { echo "  artifact $(basename "$a"):"; od -An -tx1 "$a" | head -n 20; }
        done
    fi
done
echo "$pass $fail" > "$results/fuzz"
echo "fuzz: $pass passed, $fail failed"
[ $fail -eq 0 ]
