#!/usr/bin/env bash
# Sentinel mode through the real server ($BUILD/redis-cache-dns) against a real Sentinel
# topology on free loopback ports: a master + 1 replica + 3 redis-sentinel processes (low
# down-after-milliseconds), then a second small topology whose sentinels and data nodes
# have their own passwords. Queried with dig; the upstream is tests/tools/testdns.py.
#
#   A  no L1, sentinels s1 s2 s3: writes land on the master; a failover under load
#   B  no L1, sentinel list whose first address is dead: reads A's entries back (L2 hits)
#   C  a master name no sentinel knows: connection errors counted, DNS still answered
#   D  the auth topology: sentinel_password and password differ
#   E  the auth topology with a wrong sentinel_password: errors counted, DNS answered
source "$(dirname "$0")/lib.sh"

bin="$IT_BUILD/redis-cache-dns"
[ -x "$bin" ] || { not_ok "redis-cache-dns built" "missing $bin"; finish; }
command -v redis-sentinel >/dev/null || command -v redis-server >/dev/null ||
    skip_all "redis-server not installed"
command -v dig >/dev/null || skip_all "dig not installed"

zone="$IT_TMP/test.zone"
{
    echo '$ORIGIN test.'
    echo '$TTL 300'
    echo '@ IN SOA ns.test. hostmaster.test. 1 60 60 60 120'
    echo '@ IN NS ns.test.'
    echo 'ns IN A 127.0.0.1'
    for n in a1 a2 a3 u1 u2 u3 u4 x1 x2 x3 y1 y2 y3; do echo "$n IN A 192.0.2.1"; done
    for i in $(seq 1 600); do echo "ld$i IN A 192.0.2.1"; done
    for i in $(seq 1 60); do echo "nm$i IN A 192.0.2.1"; echo "rs$i IN A 192.0.2.1"; done
} >"$zone"
dns_start "$zone" || { not_ok "testdns started"; finish; }

# ---- helpers of this script -----------------------------------------------------------------

# sentinel_start NAME MASTER_PORT QUORUM [config lines...]: a redis-sentinel monitoring
# mymaster on 127.0.0.1:MASTER_PORT, its (rewritten) config in its own dir; prints its port.
sentinel_start() {
    local name=$1 mport=$2 quorum=$3; shift 3
    local dir="$IT_TMP/$name" port attempt pid line
    mkdir -p "$dir"
    for attempt in 1 2 3 4 5; do
        port=$(free_port)
        {
            echo "port $port"
            echo "bind 127.0.0.1"
            echo "daemonize no"
            echo "dir $dir"
            echo "logfile $IT_TMP/$name.log"
            echo "sentinel monitor mymaster 127.0.0.1 $mport $quorum"
            echo "sentinel down-after-milliseconds mymaster 1000"
            echo "sentinel failover-timeout mymaster 5000"
            echo "sentinel parallel-syncs mymaster 1"
            for line in "$@"; do echo "$line"; done
        } >"$dir/sentinel.conf"
        redis-server "$dir/sentinel.conf" --sentinel >/dev/null 2>&1 &
        pid=$!
        IT_PIDS+=("$pid")
        echo "$pid" >"$IT_TMP/$name.pid"
        if wait_port "$port" 10 && kill -0 "$pid" 2>/dev/null; then
            echo "$port"
            return 0
        fi
        kill "$pid" 2>/dev/null
    done
    echo "sentinel_start $name failed: $(tail -n 5 "$IT_TMP/$name.log" 2>/dev/null)" >&2
    return 1
}

# wait_for SECONDS CMD...: until CMD succeeds (polled every 0.2 s)
wait_for() {
    local secs=$1 i; shift
    for i in $(seq $((secs * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    return 1
}

# sentinel_master_port SPORT [AUTH...]: the master's port as that sentinel sees it
sentinel_master_port() {
    local sp=$1; shift
    redis-cli -h 127.0.0.1 -p "$sp" "$@" --no-auth-warning SENTINEL get-master-addr-by-name mymaster |
        sed -n 2p
}
topology_settled() { # SPORT: the sentinel sees 2 other sentinels and 1 replica up
    local sp=$1
    [ "$(rcli "$sp" SENTINEL sentinels mymaster | grep -c '^ip$')" -ge 2 ] &&
        rcli "$sp" SENTINEL replicas mymaster | grep -A1 '^flags$' | grep -qx 'slave'
}
link_up() { rcli "$1" "${@:2}" --no-auth-warning INFO replication | grep -q 'master_link_status:up'; }
is_master() { rcli "$1" "${@:2}" --no-auth-warning ROLE | head -1 | grep -qx master; }
is_replica() { rcli "$1" "${@:2}" --no-auth-warning ROLE | head -1 | grep -qx slave; }

# has_name PORT NAME [AUTH...]: some cdrc:* value on that Redis holds NAME's wire labels
has_name() {
    local port=$1 name=$2 k; shift 2
    for k in $(rcli "$port" "$@" --no-auth-warning --scan --pattern 'cdrc:*'); do
        rcli "$port" "$@" --no-auth-warning GET "$k" | grep -aq "$name" && return 0
    done
    return 1
}

# srv_start NAME CORE_BODY: a server for `test:PORT` (SRV_PORT_NAME, SRV_PID_NAME), with
# SRV_THREADS workers (default 1)
srv_start() {
    local name=$1 body=$2 port attempt pid
    for attempt in 1 2 3; do
        port=$(free_port)
        printf 'test:%s {\n    bind 127.0.0.1\n%s\n}\n' "$port" "$body" >"$IT_TMP/$name.conf"
        "$bin" -conf "$IT_TMP/$name.conf" -threads "${SRV_THREADS:-1}" >"$IT_TMP/$name.out" \
            2>"$IT_TMP/$name.err" &
        pid=$!
        IT_PIDS+=("$pid")
        if wait_port "$port" 5 && kill -0 "$pid" 2>/dev/null; then
            printf -v "SRV_PID_$name" '%s' "$pid"
            printf -v "SRV_PORT_$name" '%s' "$port"
            return 0
        fi
        kill "$pid" 2>/dev/null
    done
    echo "srv_start $name failed: $(tail -n 5 "$IT_TMP/$name.err")" >&2
    return 1
}

q() { local port=$1; shift; dig +tries=1 +time=3 @127.0.0.1 -p "$port" "$@"; }
answered() { [ "$(q "$1" "$2" A +short)" = 192.0.2.1 ]; }
count() { dns_ctl "count $1 ${2:-A}"; }
# get_errors PROM_PORT REASON: the sum of coredns_redis_cache_get_errors_total{...reason=...}
get_errors() {
    curl -s "http://127.0.0.1:$1/metrics" |
        awk -v r="reason=\"$2\"" 'index($0, "coredns_redis_cache_get_errors_total{") == 1 && index($0, r) { s += $NF } END { print s + 0 }'
}

# ---- the topology -----------------------------------------------------------------------------

mport=$(redis_start m1) || { not_ok "master started"; finish; }
rport=$(redis_start r1 --replicaof 127.0.0.1 "$mport") || { not_ok "replica started"; finish; }
s1=$(sentinel_start s1 "$mport" 2) && s2=$(sentinel_start s2 "$mport" 2) &&
    s3=$(sentinel_start s3 "$mport" 2) || { not_ok "3 sentinels started"; finish; }
if wait_for 20 link_up "$rport" && wait_for 20 topology_settled "$s1" &&
    wait_for 20 topology_settled "$s2" && wait_for 20 topology_settled "$s3"; then
    ok "topology: master :$mport, replica :$rport, sentinels :$s1 :$s2 :$s3 see each other"
else
    not_ok "topology settled" "$(rcli "$s1" SENTINEL replicas mymaster | head -40)"
    finish
fi

dead=$(free_port)
promA=$(free_port) promB=$(free_port) promC=$(free_port)
SRV_THREADS=3 srv_start A "    redis_cache {
        sentinel mymaster 127.0.0.1:$s1 127.0.0.1:$s2 127.0.0.1:$s3
        success 300
    }
    forward . 127.0.0.1:$DNS_PORT
    prometheus 127.0.0.1:$promA" || { not_ok "server A started"; finish; }
srv_start B "    redis_cache {
        sentinel mymaster 127.0.0.1:$dead 127.0.0.1:$s2
        success 300
    }
    forward . 127.0.0.1:$DNS_PORT
    prometheus 127.0.0.1:$promB" || { not_ok "server B started"; finish; }
srv_start C "    redis_cache {
        sentinel nosuchmaster 127.0.0.1:$s1 127.0.0.1:$s2 127.0.0.1:$s3
    }
    forward . 127.0.0.1:$DNS_PORT
    prometheus 127.0.0.1:$promC" || { not_ok "server C started"; finish; }
A=$SRV_PORT_A B=$SRV_PORT_B C=$SRV_PORT_C

if wait_for 10 grep -q "sentinel mymaster: master 127.0.0.1:$mport" "$IT_TMP/A.err" &&
    sleep 1 && [ "$(grep -c 'sentinel mymaster: master' "$IT_TMP/A.err")" = 1 ]; then
    ok "A (3 workers) discovers the master through the sentinels: one log line per process"
else not_ok "A discovers the master, one log line" "$(cat "$IT_TMP/A.err")"; fi
if wait_for 10 grep -q "sentinel mymaster: master 127.0.0.1:$mport" "$IT_TMP/B.err"; then
    ok "B discovers the master though its first sentinel address is dead"
else not_ok "B discovers the master with a dead first sentinel" "$(cat "$IT_TMP/B.err")"; fi

# One discovery per process (SPEC §3): A's three workers share one subscription, so the
# sentinels hold one per server that knows its master (A, B; C's master does not exist,
# so C never subscribes), not one per worker (which would be 4).
subs() {
    local p t=0
    for p in "$s1" "$s2" "$s3"; do
        t=$((t + $(rcli "$p" CLIENT LIST | grep -c ' sub=[1-9]')))
    done
    echo "$t"
}
test_subs() { [ "$(subs)" = "$1" ]; }
if wait_for 10 test_subs 2; then
    sleep 1
    n=$(subs)
    if [ "$n" = 2 ]; then ok "one Sentinel subscription per server process (A has 3 workers): $n"
    else not_ok "one subscription per process" "subscriptions now $n"; fi
else not_ok "one subscription per process" "subscriptions: $(subs)"; fi

# ---- writes land on the master, reads come back from the L2 -----------------------------------
out=$(q "$A" a1.test A +short)
if [ "$out" = 192.0.2.1 ] && wait_for 10 has_name "$mport" a1; then
    ok "entry written through A lands on the master"
else not_ok "entry lands on the master" "answer: $out; master keys: $(rcli "$mport" --scan)"; fi
wait_for 10 has_name "$rport" a1 # replicated, so a replica read finds it too
out=$(q "$B" a1.test A +short)
n=$(count a1.test)
if [ "$out" = 192.0.2.1 ] && [ "$n" = 1 ]; then ok "B reads A's entry back (L2 hit, upstream asked once)"
else not_ok "B reads A's entry back" "answer=$out upstream count=$n"; fi
fails=0
for n in a2 a3; do
    answered "$A" $n.test || fails=$((fails + 1))
    wait_for 10 has_name "$rport" $n || fails=$((fails + 1))
    answered "$B" $n.test || fails=$((fails + 1))
    answered "$A" $n.test || fails=$((fails + 1))
done
n2=$(count a2.test) n3=$(count a3.test)
if [ $fails = 0 ] && [ "$n2" = 1 ] && [ "$n3" = 1 ]; then
    ok "repeats on A and B are L2 hits (master writes, replica or master reads)"
else not_ok "repeats are L2 hits" "fails=$fails counts $n2 $n3"; fi
[ "$(rcli "$rport" DBSIZE)" -ge 3 ] && is_replica "$rport" && ok "replica holds the entries (replicated, not written)" ||
    not_ok "replica holds the entries" "dbsize $(rcli "$rport" DBSIZE)"

# ---- unknown master name ----------------------------------------------------------------------
e0=$(get_errors "$promC" connection)
fails=0
for n in u1 u2 u3 u4; do answered "$C" $n.test || fails=$((fails + 1)); done
e1=$(get_errors "$promC" connection)
if [ $fails = 0 ] && [ "$e1" -ge $((e0 + 4)) ]; then
    ok "unknown master: every query answered, get_errors_total{reason=\"connection\"} $e0 -> $e1"
else not_ok "unknown master: answered, connection errors counted" "fails=$fails errors $e0 -> $e1"; fi
grep -q "no sentinel knows master nosuchmaster" "$IT_TMP/C.err" &&
    ok "unknown master: one clear log line names it" ||
    not_ok "unknown master: log line" "$(cat "$IT_TMP/C.err")"
[ "$(grep -c "no sentinel knows master nosuchmaster" "$IT_TMP/C.err")" = 1 ] &&
    ok "unknown master: logged once, not per retry or per query" ||
    not_ok "unknown master: logged once" "$(cat "$IT_TMP/C.err")"

# ---- SENTINEL FAILOVER under load -------------------------------------------------------------
stop="$IT_TMP/load.stop"
load() { # PORT TAG: fresh names until $stop exists; each failure on a line of $IT_TMP/load.TAG
    local port=$1 tag=$2 i=0 out
    : >"$IT_TMP/load.$tag"
    : >"$IT_TMP/load.$tag.n"
    while [ ! -e "$stop" ] && [ $i -lt 600 ]; do
        i=$((i + 1))
        out=$(q "$port" "ld$i.test" A +short 2>&1)
        [ "$out" = 192.0.2.1 ] || echo "ld$i: $out" >>"$IT_TMP/load.$tag"
        echo >>"$IT_TMP/load.$tag.n"
        sleep 0.02
    done
}
load "$A" A &
loadA=$!
load "$B" B &
loadB=$!
sleep 0.5
out=$(rcli "$s1" SENTINEL FAILOVER mymaster)
[ "$out" = OK ] || not_ok "SENTINEL FAILOVER accepted" "$out"
if wait_for 20 is_master "$rport" && wait_for 20 eval '[ "$(sentinel_master_port "$s1")" = "$rport" ]'; then
    ok "failover: the replica :$rport is the new master"
else not_ok "failover: replica promoted" "$(rcli "$rport" ROLE | head -3)"; fi
# new entries land on the new master within 10 s (whatever the client saw in between)
landed=""
t0=$(date +%s)
for i in $(seq 1 50); do
    answered "$A" "nm$i.test" >/dev/null
    if wait_for 1 has_name "$rport" "nm$i"; then landed=nm$i; break; fi
    [ $(($(date +%s) - t0)) -ge 10 ] && break
done
if [ -n "$landed" ]; then ok "after the failover, new entries land on the new master ($landed, $(($(date +%s) - t0)) s)"
else not_ok "new entries land on the new master within 10 s" "$(cat "$IT_TMP/A.err")"; fi
grep -q "sentinel mymaster: master 127.0.0.1:$mport -> 127.0.0.1:$rport" "$IT_TMP/A.err" &&
    ok "A logged the switch (one line)" || not_ok "A logged the switch" "$(cat "$IT_TMP/A.err")"
sleep 1
touch "$stop"
wait $loadA $loadB
nA=$(wc -l <"$IT_TMP/load.A.n") nB=$(wc -l <"$IT_TMP/load.B.n")
fA=$(wc -l <"$IT_TMP/load.A") fB=$(wc -l <"$IT_TMP/load.B")
if [ "$nA" -ge 3 ] && [ "$nB" -ge 3 ] && [ "$fA" = 0 ] && [ "$fB" = 0 ]; then
    ok "every DNS query answered during the failover (A $nA, B $nB queries)"
else not_ok "every DNS query answered during the failover" "A $fA/$nA, B $fB/$nB: $(head -5 "$IT_TMP/load.A" "$IT_TMP/load.B")"; fi

# ---- the old master restarted: the sentinels make it a replica --------------------------------
wait_for 20 is_replica "$mport" # a manual failover demotes the old master in place
redis_stop m1
redis_restart m1 "$mport" || not_ok "old master restarted"
if wait_for 30 is_replica "$mport" && wait_for 20 link_up "$mport"; then
    ok "old master restarted on :$mport comes back as a replica of :$rport"
else not_ok "old master back as a replica" "$(rcli "$mport" ROLE | head -3)"; fi
fails=0
for i in 1 2 3 4 5 6; do
    answered "$A" "rs$i.test" || fails=$((fails + 1))
    answered "$B" "rs$i.test" || fails=$((fails + 1))
done
if [ $fails = 0 ] && wait_for 10 has_name "$rport" rs6; then
    ok "with the old master back as a replica: queries answered, writes on the new master"
else not_ok "queries fine after the old master's return" "fails=$fails"; fi
if wait_for 10 has_name "$mport" rs6; then ok "the restarted old master replicates the new entries"
else not_ok "old master replicates" "$(rcli "$mport" INFO replication | head -5)"; fi

# ---- the router at library level (ASan), then a second failover back ---------------------------
itest="$IT_BUILD/itests/itest_sentinel"
if [ -x "$itest" ]; then
    wait_for 20 topology_settled "$s1"
    SN_S1_PORT=$s1 SN_S2_PORT=$s2 SN_S3_PORT=$s3 SN_M_PORT=$rport SN_R_PORT=$mport \
        SN_DEAD_PORT=$dead SN_DEAD_PORT2=$(free_port) run_cmocka "$itest"
    # it failed over twice more: to :$mport, then (shared-hub test) back to :$rport; A follows
    fails=0
    for i in 7 8 9; do answered "$A" "rs$i.test" || fails=$((fails + 1)); done
    if [ $fails = 0 ] && wait_for 10 is_master "$rport" && wait_for 10 has_name "$rport" rs9; then
        ok "A follows two more failovers (back on :$rport): answered, entries on it"
    else not_ok "A follows two more failovers" "fails=$fails $(tail -3 "$IT_TMP/A.err")"; fi
else
    not_ok "itest_sentinel built" "missing $itest"
fi

# ---- separate passwords for the sentinels and the data nodes ----------------------------------
dpass=data-s3cret spass=sentinel-s3cret
am=$(redis_start am --requirepass "$dpass" --masterauth "$dpass") || { not_ok "auth master"; finish; }
as1=$(sentinel_start as1 "$am" 1 "requirepass $spass" "sentinel auth-pass mymaster $dpass") ||
    { not_ok "auth sentinel"; finish; }
if wait_for 10 eval '[ "$(sentinel_master_port "$as1" -a "$spass")" = "$am" ]' &&
    ! rcli "$as1" SENTINEL get-master-addr-by-name mymaster 2>&1 | grep -q "$am"; then
    ok "auth topology: the sentinel requires its own password"
else not_ok "auth topology" "$(rcli "$as1" -a "$spass" --no-auth-warning SENTINEL masters | head)"; fi
promD=$(free_port) promE=$(free_port)
srv_start D "    redis_cache {
        sentinel mymaster 127.0.0.1:$as1
        sentinel_password $spass
        password $dpass
    }
    forward . 127.0.0.1:$DNS_PORT
    prometheus 127.0.0.1:$promD" || { not_ok "server D started"; finish; }
srv_start E "    redis_cache {
        sentinel mymaster 127.0.0.1:$as1
        sentinel_password wrong-password
        password $dpass
    }
    forward . 127.0.0.1:$DNS_PORT
    prometheus 127.0.0.1:$promE" || { not_ok "server E started"; finish; }
D=$SRV_PORT_D E=$SRV_PORT_E
wait_for 10 grep -q "master 127.0.0.1:$am" "$IT_TMP/D.err"
out=$(q "$D" x1.test A +short)
if [ "$out" = 192.0.2.1 ] && wait_for 10 has_name "$am" x1 -a "$dpass"; then
    ok "sentinel_password and password: entry lands on the password-protected master"
else not_ok "auth: entry lands" "answer=$out $(cat "$IT_TMP/D.err")"; fi
out=$(q "$D" x1.test A +short)
[ "$out" = 192.0.2.1 ] && [ "$(count x1.test)" = 1 ] && ok "auth: read back (L2 hit)" ||
    not_ok "auth: read back" "answer=$out count=$(count x1.test)"
e0=$(get_errors "$promE" connection)
fails=0
for n in y1 y2 y3; do answered "$E" $n.test || fails=$((fails + 1)); done
e1=$(get_errors "$promE" connection)
if [ $fails = 0 ] && [ "$e1" -ge $((e0 + 3)) ] && ! has_name "$am" y1 -a "$dpass"; then
    ok "wrong sentinel_password: nothing written, connection errors counted, DNS answered"
else not_ok "wrong sentinel_password" "fails=$fails errors $e0 -> $e1 $(cat "$IT_TMP/E.err")"; fi
grep -q "no sentinel reachable for mymaster.*WRONGPASS\|no sentinel reachable for mymaster.*AUTH" "$IT_TMP/E.err" &&
    ok "wrong sentinel_password: the log line says why" ||
    not_ok "wrong sentinel_password: log line" "$(cat "$IT_TMP/E.err")"

# ---- shutdown ---------------------------------------------------------------------------------
for s in A B C D E; do
    pidv="SRV_PID_$s"
    kill -TERM "${!pidv}"
    wait "${!pidv}"
    rc=$?
    [ $rc = 0 ] && ok "SIGTERM: server $s exits 0" || not_ok "SIGTERM: server $s exits 0" "rc=$rc $(tail -3 "$IT_TMP/$s.err")"
done
finish
