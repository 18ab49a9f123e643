#!/usr/bin/env bash
# The `cache` directive's prefetch, serve_stale and servfail, black box: the real server
# ($BUILD/redis-cache-dns, one worker so one L1 shard), the test upstream
# tests/tools/testdns.py (its counters show what reached it; modes make it silent or
# SERVFAIL), a real redis-server for the L2 case, queried with kdig. TTLs are short (2-12 s)
# and every wait has a margin of several seconds; nothing asserts on speed.
#
#   P  cache { prefetch 2 1m 50% }               a popular entry refreshed before expiry
#   I  cache { serve_stale 1h }                  stale answers (TTL 0) while upstream is silent
#   V  cache { serve_stale 1h verify }           refresh first, stale only when that fails
#   F  cache { servfail 3s }                     SERVFAIL kept 3 s (upstream's and ours)
#   L  cache { serve_stale } + redis_cache       an L2 answer counts as the refresh
#   M  redis_cache only, same Redis              the other fleet member that refreshes L2
source "$(dirname "$0")/lib.sh"

bin="$IT_BUILD/redis-cache-dns"
[ -x "$bin" ] || { not_ok "redis-cache-dns built" "missing $bin"; finish; }
command -v kdig >/dev/null || skip_all "kdig not installed"

zone="$IT_TMP/test.zone"
{
    echo '$ORIGIN test.'
    echo '$TTL 300'
    echo '@ IN SOA ns.test. hostmaster.test. 1 60 60 60 120'
    echo '@ IN NS ns.test.'
    echo 'ns IN A 127.0.0.1'
    echo 'pf 12 IN A 192.0.2.10'
    echo 'pn 12 IN A 192.0.2.11'
    echo 'st 2 IN A 192.0.2.20'
    echo 'sv 2 IN A 192.0.2.21'
    echo 'sw 2 IN A 192.0.2.22'
    echo 'sf IN A 192.0.2.40'
    echo 'sg IN A 192.0.2.41'
    echo 'l2 2 IN A 192.0.2.30'
} >"$zone"
dns_start "$zone" || { not_ok "testdns started"; finish; }

# srv_start NAME CORE_BODY: a block `test:PORT` with one worker; SRV_PORT_NAME is its port.
srv_start() {
    local name=$1 body=$2 port attempt pid
    for attempt in 1 2 3; do
        port=$(free_port)
        printf 'test:%s {\n    bind 127.0.0.1\n    log\n%s\n}\n' "$port" "$body" >"$IT_TMP/$name.conf"
        "$bin" -conf "$IT_TMP/$name.conf" -threads 1 >"$IT_TMP/$name.out" 2>"$IT_TMP/$name.err" &
        pid=$!
        IT_PIDS+=("$pid")
        if wait_port "$port" 5 && kill -0 "$pid" 2>/dev/null; then
            printf -v "SRV_PORT_$name" '%s' "$port"
            return 0
        fi
        kill "$pid" 2>/dev/null
    done
    echo "srv_start $name failed: $(tail -n 5 "$IT_TMP/$name.err")" >&2
    return 1
}

# kq PORT NAME: one A query; prints "RCODE TTL ADDRESS" (TTL and ADDRESS "-" without answer)
kq() {
    local out
    out=$(kdig +retry=0 +timeout=10 @127.0.0.1 -p "$1" "$2" A 2>&1)
    local rc ttl addr
    rc=$(sed -n 's/.*status: \([A-Z]*\).*/\1/p' <<<"$out" | head -n 1)
    read -r ttl addr < <(awk -v n="$2." '$1 == n && $4 == "A" { print $2, $5; exit }' <<<"$out")
    echo "${rc:-none} ${ttl:--} ${addr:--}"
}
count() { dns_ctl "count $1 A"; }
# wait_count NAME N SECONDS: until the upstream saw at least N queries for NAME
wait_count() {
    local i
    for i in $(seq $(($3 * 10))); do
        [ "$(count "$1")" -ge "$2" ] && return 0
        sleep 0.1
    done
    return 1
}
metric() { # metric PORT NAME: the sum of every series of NAME
    curl -s "http://127.0.0.1:$1/metrics" | awk -v n="$2" \
        'index($0, n) == 1 && (substr($0, length(n) + 1, 1) == "{" || substr($0, length(n) + 1, 1) == " ") { s += $NF } END { print s + 0 }'
}
up="forward . 127.0.0.1:$DNS_PORT"

promP=$(free_port) promI=$(free_port)
srv_start P "    cache {
        success 1000 3600 0
        prefetch 2 1m 50%
    }
    $up
    prometheus 127.0.0.1:$promP" || { not_ok "server P started"; finish; }
srv_start I "    cache {
        success 1000 3600 0
        serve_stale 1h
    }
    $up
    prometheus 127.0.0.1:$promI" || { not_ok "server I started"; finish; }
srv_start V "    cache {
        success 1000 3600 0
        serve_stale 1h verify
    }
    $up" || { not_ok "server V started"; finish; }
srv_start F "    cache {
        servfail 3s
    }
    $up" || { not_ok "server F started"; finish; }
P=$SRV_PORT_P I=$SRV_PORT_I V=$SRV_PORT_V F=$SRV_PORT_F

# ---- config errors ----------------------------------------------------------------------------
printf 'test:53 {\n    cache {\n        prefetch 1 1m 95%%\n    }\n}\n' >"$IT_TMP/bad.conf"
out=$("$bin" -conf "$IT_TMP/bad.conf" -check 2>&1); rc=$?
if [ $rc -eq 1 ] && grep -q "bad.conf:3: cache: prefetch: PERCENTAGE 95% is not" <<<"$out"; then
    ok "-check: a bad prefetch percentage names FILE:LINE: cache"
else not_ok "-check: a bad prefetch percentage names FILE:LINE: cache" "rc=$rc $out"; fi
printf 'test:53 {\n    cache {\n        servfail 10m\n    }\n}\n' >"$IT_TMP/bad2.conf"
out=$("$bin" -conf "$IT_TMP/bad2.conf" -check 2>&1); rc=$?
if [ $rc -eq 1 ] && grep -q "bad2.conf:3: cache: servfail: DURATION 10m is over 5m" <<<"$out"; then
    ok "-check: servfail over 5m refused with FILE:LINE"
else not_ok "-check: servfail over 5m refused with FILE:LINE" "rc=$rc $out"; fi

# ---- prefetch ----------------------------------------------------------------------------------
# pf: asked at t=0 (upstream), hit at once (1st counted hit), then at t>=6.5 with the TTL at
# most 6 of 12 (50%): the 2nd hit is due, answered from L1 while a refresh goes upstream
# long before the 12 s expiry. pn: the same times with one hit only (below AMOUNT 2).
kq "$P" pf.test >/dev/null
kq "$P" pn.test >/dev/null
t0=$(date +%s.%N)
r1=$(kq "$P" pf.test)
sleep 6.5
r2=$(kq "$P" pf.test)
r3=$(kq "$P" pn.test)
# the refresh is the only query that can reach upstream before r4 below
if wait_count pf.test 2 4; then
    ok "prefetch: a popular entry is refreshed upstream before it expires ($r1 / $r2)"
else not_ok "prefetch: refreshed upstream before expiry" "count=$(count pf.test) $r1 / $r2"; fi
if [ "$(grep -c ' pf.test. A NOERROR .* L1 ' "$IT_TMP/P.out")" -ge 2 ]; then
    ok "prefetch: the clients were answered from L1"
else not_ok "prefetch: the clients were answered from L1" "$(cat "$IT_TMP/P.out")"; fi
[ "$(count pn.test)" = 1 ] && ok "prefetch: an entry hit fewer than AMOUNT times is not refreshed" ||
    not_ok "prefetch: below AMOUNT no refresh" "count=$(count pn.test) $r3"
# past the first answer's expiry: still an L1 hit (the prefetched answer; being popular and
# at half its TTL again, this hit may itself start the next prefetch, after its reply)
sleep_left=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { d = 12.8 - (b - a); print (d > 0 ? d : 0) }')
sleep "$sleep_left"
r4=$(kq "$P" pf.test)
n=$(count pf.test)
last=$(grep ' pf.test. A ' "$IT_TMP/P.out" | tail -n 1)
set -- $r4
if [ "$1" = NOERROR ] && [ "$3" = 192.0.2.10 ] && [ "$2" != - ] && [ "$2" -gt 0 ] &&
    grep -q " L1 " <<<"$last"; then
    ok "prefetch: after the old expiry the refreshed entry answers from L1 (TTL $2)"
else not_ok "prefetch: refreshed entry answers after the old expiry" "count=$n $r4 log: $last"; fi
m=$(metric "$promP" coredns_cache_prefetch_total)
[ "$m" -ge 1 ] && ok "coredns_cache_prefetch_total counts the refresh ($m)" ||
    not_ok "coredns_cache_prefetch_total" "got $m"

# ---- serve_stale immediate ---------------------------------------------------------------------
kq "$I" st.test >/dev/null
dns_ctl 'mode st.test silent' >/dev/null
sleep 2.8 # the 2 s TTL is over
r=$(kq "$I" st.test)
set -- $r
if [ "$1" = NOERROR ] && [ "$2" = 0 ] && [ "$3" = 192.0.2.20 ]; then
    ok "serve_stale: expired entry answers at once with TTL 0 while upstream is silent"
else not_ok "serve_stale immediate: stale answer with TTL 0" "$r"; fi
if wait_count st.test 2 5; then ok "serve_stale: the stale answer started a refresh upstream"
else not_ok "serve_stale: the stale answer started a refresh upstream" "count=$(count st.test)"; fi
r=$(kq "$I" st.test)
set -- $r
[ "$1" = NOERROR ] && [ "$2" = 0 ] && [ "$3" = 192.0.2.20 ] &&
    ok "serve_stale: still served stale while the refresh fails" ||
    not_ok "serve_stale: still served stale while the refresh fails" "$r"
m=$(metric "$promI" coredns_cache_served_stale_total)
[ "$m" -ge 2 ] && ok "coredns_cache_served_stale_total counts stale answers ($m)" ||
    not_ok "coredns_cache_served_stale_total" "got $m"
# upstream back with a new address: a later stale hit refreshes, then the fresh one answers
dns_ctl 'del st.test A' >/dev/null
dns_ctl 'add st.test. 30 IN A 192.0.2.23' >/dev/null
dns_ctl 'mode st.test normal' >/dev/null
fresh=""
for i in $(seq 40); do
    r=$(kq "$I" st.test)
    set -- $r
    if [ "$3" = 192.0.2.23 ] && [ "$2" -gt 0 ]; then fresh=$r; break; fi
    sleep 0.5
done
[ -n "$fresh" ] && ok "serve_stale: once upstream answers, the refreshed entry replaces the stale one ($fresh)" ||
    not_ok "serve_stale: refreshed entry replaces the stale one" "last: $r"

# ---- serve_stale verify ------------------------------------------------------------------------
kq "$V" sv.test >/dev/null
kq "$V" sw.test >/dev/null
dns_ctl 'mode sv.test silent' >/dev/null
dns_ctl 'mode sw.test servfail' >/dev/null
sleep 2.8
n0=$(count sv.test)
r=$(kq "$V" sv.test) # forward tries (up to its 5 s budget) before the stale entry answers
n1=$(count sv.test)
set -- $r
if [ "$1" = NOERROR ] && [ "$2" = 0 ] && [ "$3" = 192.0.2.21 ] && [ "$n1" -gt "$n0" ]; then
    ok "serve_stale verify: upstream silent -> asked first, then the stale entry (TTL 0)"
else not_ok "serve_stale verify: silent upstream -> stale after trying" "n=$n0->$n1 $r"; fi
r=$(kq "$V" sw.test)
set -- $r
if [ "$1" = NOERROR ] && [ "$2" = 0 ] && [ "$3" = 192.0.2.22 ]; then
    ok "serve_stale verify: an upstream SERVFAIL is not a refresh, the stale entry answers"
else not_ok "serve_stale verify: upstream SERVFAIL -> stale" "$r"; fi
# upstream back with another address: verify returns the fresh answer, not the stale one
dns_ctl 'del sv.test A' >/dev/null
dns_ctl 'add sv.test. 30 IN A 192.0.2.24' >/dev/null
dns_ctl 'mode sv.test normal' >/dev/null
r=$(kq "$V" sv.test)
set -- $r
if [ "$1" = NOERROR ] && [ "$3" = 192.0.2.24 ] && [ "$2" -gt 0 ]; then
    ok "serve_stale verify: with upstream back the refreshed answer is served, never the stale one"
else not_ok "serve_stale verify: refreshed answer first" "$r"; fi

# ---- servfail ----------------------------------------------------------------------------------
dns_ctl 'mode sf.test servfail' >/dev/null
r1=$(kq "$F" sf.test)
r2=$(kq "$F" sf.test)
n=$(count sf.test)
if [ "${r1%% *}" = SERVFAIL ] && [ "${r2%% *}" = SERVFAIL ] && [ "$n" = 1 ]; then
    ok "servfail 3s: an upstream SERVFAIL is cached (upstream asked once)"
else not_ok "servfail: upstream SERVFAIL cached" "count=$n $r1 / $r2"; fi
dns_ctl 'mode sf.test normal' >/dev/null
sleep 3.5
r=$(kq "$F" sf.test)
n=$(count sf.test)
if [ "$r" = "NOERROR 300 192.0.2.40" ] && [ "$n" = 2 ]; then
    ok "servfail 3s: after 3 s the upstream is asked again"
else not_ok "servfail: asked again after its duration" "count=$n $r"; fi
# our own SERVFAIL (no upstream answered within forward's budget) is cached too
dns_ctl 'mode sg.test silent' >/dev/null
r1=$(kq "$F" sg.test)
n1=$(count sg.test)
r2=$(kq "$F" sg.test)
n2=$(count sg.test)
if [ "${r1%% *}" = SERVFAIL ] && [ "${r2%% *}" = SERVFAIL ] && [ "$n1" = "$n2" ] && [ "$n1" -ge 1 ]; then
    ok "servfail: our SERVFAIL after a silent upstream is cached (no new upstream query)"
else not_ok "servfail: our SERVFAIL cached" "count $n1 -> $n2: $r1 / $r2"; fi
if grep -q " sg.test. A SERVFAIL .* L1 " "$IT_TMP/F.out"; then ok "servfail: the second SERVFAIL came from L1"
else not_ok "servfail: the second SERVFAIL came from L1" "$(grep sg.test "$IT_TMP/F.out")"; fi

# ---- serve_stale with redis_cache: an L2 answer is the refresh ------------------------------------
rport=$(redis_start r1) || { not_ok "redis started"; finish; }
rc_block="    redis_cache {
        endpoint 127.0.0.1:$rport
    }"
srv_start L "    cache {
        success 1000 3600 0
        serve_stale 1h
    }
$rc_block
    $up" || { not_ok "server L started"; finish; }
srv_start M "$rc_block
    $up" || { not_ok "server M started"; finish; }
L=$SRV_PORT_L M=$SRV_PORT_M
kq "$L" l2.test >/dev/null # L1 and L2 hold 192.0.2.30 for 2 s
dns_ctl 'del l2.test A' >/dev/null
dns_ctl 'add l2.test. 60 IN A 192.0.2.31' >/dev/null
sleep 2.8 # both expired
r=$(kq "$M" l2.test) # the other member refreshes L2 from upstream
n=$(count l2.test)
[ "$r" = "NOERROR 60 192.0.2.31" ] && ok "second instance stores the new answer in L2 ($r)" ||
    not_ok "second instance stores the new answer in L2" "$r"
sleep 0.5                                      # its SET is written after the reply
dns_ctl 'mode l2.test silent' >/dev/null       # from now on upstream cannot refresh anything
r1=$(kq "$L" l2.test)                          # stale from L1; the refresh finds L2 fresh
fresh=""
for i in $(seq 20); do
    r2=$(kq "$L" l2.test)
    set -- $r2
    if [ "$3" = 192.0.2.31 ]; then fresh=$r2; break; fi
    sleep 0.2
done
n2=$(count l2.test)
set -- $r1
if [ "$2" = 0 ] && [ "$3" = 192.0.2.30 ] && [ -n "$fresh" ] && [ "$n2" = "$n" ]; then
    ok "serve_stale + redis_cache: an L2 hit is the refresh (stale $r1, then $fresh, upstream not asked)"
else not_ok "serve_stale + redis_cache: L2 hit refreshes" "count $n -> $n2: $r1 / ${fresh:-$r2}"; fi

finish
