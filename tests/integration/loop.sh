#!/usr/bin/env bash
# The `loop` directive (CoreDNS's loop plugin) with the real binary: a forwarding loop, to
# itself or through a second instance, ends the process with status 1 and CoreDNS's FATAL
# line; without a loop the probe goes upstream once, the server keeps serving, and an
# upstream that never answers is not mistaken for a loop.
source "$(dirname "$0")/lib.sh"

bin="$IT_BUILD/redis-cache-dns"
[ -x "$bin" ] || { not_ok "redis-cache-dns built" "missing $bin"; finish; }
command -v dig >/dev/null || skip_all "dig not installed"

zone="$IT_TMP/test.zone"
printf '%s\n' '$ORIGIN test.' '$TTL 300' '@ IN SOA ns.test. hostmaster.test. 1 60 60 60 120' \
    '@ IN NS ns.test.' 'ns IN A 127.0.0.1' 'www IN A 192.0.2.1' >"$zone"
dns_start "$zone" || { not_ok "testdns started"; finish; }

# start NAME PORT BODY: the server with Corefile `.:PORT { BODY }` in the background; sets
# PID_NAME. Does not wait: a looping server may exit at any time.
start() {
    local name=$1 port=$2 body=$3
    printf '.:%s {\n%s\n}\n' "$port" "$body" >"$IT_TMP/$name.conf"
    "$bin" -conf "$IT_TMP/$name.conf" -threads 1 >"$IT_TMP/$name.out" 2>"$IT_TMP/$name.err" &
    local pid=$!
    IT_PIDS+=("$pid")
    printf -v "PID_$name" '%s' "$pid"
}

# exits_within PID SECONDS: the process ends within SECONDS; its status is in $STATUS.
exits_within() {
    local pid=$1 secs=$2 i
    STATUS=
    for i in $(seq $((secs * 10))); do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid"
            STATUS=$?
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# 1. forwarding to itself (no bind: CoreDNS prints the target as ":PORT")
p1=$(free_port)
start self "$p1" "    loop
    forward . 127.0.0.1:$p1"
if exits_within "$PID_self" 30; then
    check "a server forwarding to itself exits with status 1" test "$STATUS" = 1
    fatal=$(grep -F '[FATAL] plugin/loop: Loop (127.0.0.1:' "$IT_TMP/self.err")
    check "its FATAL line names the source, the target :PORT, the zone and the HINFO query" \
        grep -Eq "^\[FATAL\] plugin/loop: Loop \(127\.0\.0\.1:[0-9]+ -> :$p1\) detected for zone \"\.\", see https://coredns\.io/plugins/loop#troubleshooting\. Query: \"HINFO [0-9]+\.[0-9]+\.\"$" \
        <<<"$fatal"
else
    not_ok "a server forwarding to itself exits with status 1" "still running after 30 s: $(tail -n 5 "$IT_TMP/self.err")"
    not_ok "its FATAL line names the source, the target :PORT, the zone and the HINFO query"
fi

# 2. A (loop) -> B -> A: the loop goes through a second instance
pa=$(free_port)
pb=$(free_port)
start B "$pb" "    bind 127.0.0.1
    forward . 127.0.0.1:$pa"
# B must listen before A's probe starts: a refused forward answers the probe SERVFAIL at
# once, and a probe that got a reply stops (as CoreDNS's does).
for _ in $(seq 100); do grep -q ' ready$' "$IT_TMP/B.err" 2>/dev/null && break; sleep 0.1; done
start A "$pa" "    bind 127.0.0.1
    loop
    forward . 127.0.0.1:$pb"
if exits_within "$PID_A" 30; then
    check "A -> B -> A: A exits with status 1" test "$STATUS" = 1
    check "A -> B -> A: A's FATAL line names its bound target" \
        grep -Eq "^\[FATAL\] plugin/loop: Loop \(127\.0\.0\.1:[0-9]+ -> 127\.0\.0\.1:$pa\) detected for zone \"\.\"" \
        "$IT_TMP/A.err"
else
    not_ok "A -> B -> A: A exits with status 1" "still running after 30 s: $(tail -n 5 "$IT_TMP/A.err")"
    not_ok "A -> B -> A: A's FATAL line names its bound target"
fi
check "A -> B -> A: B (without loop) keeps running" kill -0 "$PID_B"
kill "$PID_B" 2>/dev/null

# 3. no loop: the probe goes upstream once and the server keeps serving
pn=$(free_port)
start noloop "$pn" "    bind 127.0.0.1
    loop
    forward . 127.0.0.1:$DNS_PORT"
wait_port "$pn" 10 || not_ok "the server without a loop started" "$(tail -n 5 "$IT_TMP/noloop.err")"
hinfo=0
for _ in $(seq 100); do
    hinfo=$(dns_ctl "count * TYPE13")
    [ "$hinfo" -ge 1 ] 2>/dev/null && break
    sleep 0.1
done
check "without a loop the probe reaches the upstream once (HINFO under the zone)" test "$hinfo" = 1
sleep 3 # past the probe's linger (2 s after its answer)
check "without a loop the server keeps running" kill -0 "$PID_noloop"
out=$(dig +tries=2 +time=3 +short @127.0.0.1 -p "$pn" www.test A 2>&1)
check "without a loop the server keeps answering" test "$out" = "192.0.2.1"
check "without a loop there is no FATAL line" bash -c "! grep -q FATAL '$IT_TMP/noloop.err'"
check "and the probe stopped: a later HINFO query for the zone is just forwarded" \
    dig +tries=1 +time=3 @127.0.0.1 -p "$pn" www.test HINFO
kill "$PID_noloop" 2>/dev/null

# 4. an upstream that never answers: each try times out; tries are never added up
dns_ctl "reset" >/dev/null
dns_ctl "mode * silent" >/dev/null
ps=$(free_port)
start silent "$ps" "    bind 127.0.0.1
    loop
    forward . 127.0.0.1:$DNS_PORT"
sleep 10 # three or more tries (2 s each, 1 s apart)
tries=$(dns_ctl "count * TYPE13")
check "a silent upstream gets the probe's queries" test "$tries" -ge 3
check "a silent upstream is not mistaken for a loop" kill -0 "$PID_silent"
check "no FATAL line with a silent upstream" bash -c "! grep -q FATAL '$IT_TMP/silent.err'"
dns_ctl "reset" >/dev/null
kill "$PID_silent" 2>/dev/null

finish
