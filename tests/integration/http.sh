#!/usr/bin/env bash
# The HTTP endpoints' server (src/server/http.c): build/itests/itest_http serves its test
# handler on 127.0.0.1 and real clients (curl, python's urllib, bash's /dev/tcp) fetch from
# it; then the cmocka suite of itest_http runs (statuses, limits, slow clients, concurrency,
# addresses, free with live connections), under ASan+UBSan like the serve mode.
source "$(dirname "$0")/lib.sh"

bin="$IT_BUILD/itests/itest_http"
[ -x "$bin" ] || { not_ok "itest_http built" "missing $bin (make BUILD=... $bin)"; finish; }
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1

# serve mode: runs until its stdin (a fifo we hold open) closes
fifo="$IT_TMP/http.in"
mkfifo "$fifo"
"$bin" serve <"$fifo" >"$IT_TMP/http.port" 2>"$IT_TMP/http.err" &
srv=$!
IT_PIDS+=("$srv")
exec 8>"$fifo"
for _ in $(seq 100); do [ -s "$IT_TMP/http.port" ] && break; sleep 0.05; done
port=$(head -n 1 "$IT_TMP/http.port")
if [ -z "$port" ]; then
    not_ok "itest_http serve started" "$(cat "$IT_TMP/http.err")"
    finish
fi
ok "itest_http serve started on port $port"
base="http://127.0.0.1:$port"

# status and body: fetch PATH [curl args...] -> "STATUS|BODY" (body without newlines)
fetch() {
    local path=$1; shift
    local body status
    body=$(curl -sS -o - -w '\n%{http_code}' --max-time 10 "$@" "$base$path") || return 1
    status=${body##*$'\n'}
    body=${body%$'\n'*}
    printf '%s|%s' "$status" "$(printf '%s' "$body" | tr '\n' ' ')"
}

if command -v curl >/dev/null; then
    got=$(fetch /metrics)
    want='200|# HELP test_up Up. # TYPE test_up gauge test_up 1 '
    [ "$got" = "$want" ] && ok "curl GET /metrics" || not_ok "curl GET /metrics" "got: $got"

    hdr=$(curl -sS -D - -o /dev/null --max-time 10 "$base/metrics" | tr -d '\r')
    if grep -qx 'Content-Type: text/plain; version=0.0.4; charset=utf-8' <<<"$hdr" &&
        grep -qx 'Content-Length: 50' <<<"$hdr" && grep -qx 'Connection: close' <<<"$hdr" &&
        grep -qx 'HTTP/1.1 200 OK' <<<"$hdr"; then
        ok "curl: /metrics headers"
    else
        not_ok "curl: /metrics headers" "$hdr"
    fi

    got=$(fetch /health)
    [ "$got" = "200|OK" ] && ok "curl GET /health" || not_ok "curl GET /health" "got: $got"
    got=$(fetch /ready)
    [ "$got" = "503|not ready" ] && ok "curl GET /ready (503)" || not_ok "curl GET /ready" "got: $got"
    got=$(fetch /unknown)
    [ "$got" = "404|404 page not found " ] && ok "curl GET /unknown (404)" ||
        not_ok "curl GET /unknown" "got: $got"
    got=$(fetch '/echo?format=text&x=1')
    [ "$got" = "200|/echo" ] && ok "curl: query string not in the path" ||
        not_ok "curl: query string" "got: $got"
    got=$(fetch /metrics -X POST -d 'a=1')
    [ "${got%%|*}" = "405" ] && ok "curl POST (405)" || not_ok "curl POST" "got: $got"
    st=$(curl -sS -I -o /dev/null -w '%{http_code}' --max-time 10 "$base/metrics")
    [ "$st" = "405" ] && ok "curl HEAD (405)" || not_ok "curl HEAD" "got: $st"
    allow=$(curl -sS -D - -o /dev/null -X PUT --max-time 10 "$base/metrics" | tr -d '\r')
    grep -qx 'Allow: GET' <<<"$allow" && ok "405 says Allow: GET" || not_ok "Allow header" "$allow"

    # concurrent clients
    pids=()
    for i in $(seq 8); do
        curl -sS -o "$IT_TMP/c$i" -w '%{http_code}' --max-time 10 "$base/big" >"$IT_TMP/s$i" &
        pids+=("$!")
    done
    bad=0
    for i in $(seq 8); do
        wait "${pids[$((i - 1))]}" || bad=1
        [ "$(cat "$IT_TMP/s$i")" = 200 ] || bad=1
        [ "$(stat -c %s "$IT_TMP/c$i")" = 4194304 ] || bad=1
    done
    [ $bad = 0 ] && ok "8 concurrent curl GET /big (4 MiB each)" ||
        not_ok "8 concurrent curl GET /big"
else
    echo "# curl not installed: the curl cases are skipped"
fi

# python urllib: a second, independent client
out=$("$IT_PY" - "$port" <<'PY' 2>&1
import sys, urllib.request, urllib.error
port = sys.argv[1]
r = urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10)
assert r.status == 200 and r.read() == b"OK", "health"
try:
    urllib.request.urlopen(f"http://127.0.0.1:{port}/nope", timeout=10)
    raise SystemExit("404 expected")
except urllib.error.HTTPError as e:
    assert e.code == 404, e.code
try:
    urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                                  data=b"x", method="POST"), timeout=10)
    raise SystemExit("405 expected")
except urllib.error.HTTPError as e:
    assert e.code == 405, e.code
b = urllib.request.urlopen(f"http://127.0.0.1:{port}/big", timeout=10).read()
assert len(b) == 4 << 20 and b[:3] == b"abc", len(b)
print("fine")
PY
)
[ "$out" = fine ] && ok "python urllib: 200, 404, 405, 4 MiB body" || not_ok "python urllib" "$out"

# a slow client (bash /dev/tcp): half a request, then silence: closed after ~5 s, no response
t0=$(date +%s.%N)
resp=$(
    exec 3<>"/dev/tcp/127.0.0.1/$port"
    printf 'GET /health HTTP/1.1\r\nHost: x\r\n' >&3
    timeout 12 cat <&3
)
t1=$(date +%s.%N)
secs=$(echo "$t1 - $t0" | bc)
if [ -z "$resp" ] && [ "$(echo "$secs > 4.5 && $secs < 8" | bc)" = 1 ]; then
    ok "slow client closed after ${secs}s without a response"
else
    not_ok "slow client" "after ${secs}s: $resp"
fi

# serve mode exits cleanly (ASan: no leak) when its stdin closes
exec 8>&-
if wait "$srv"; then ok "serve mode exited 0"; else not_ok "serve mode exit" "$(cat "$IT_TMP/http.err")"; fi

run_cmocka "$bin" || IT_FAILS=$((IT_FAILS + 1))
finish
