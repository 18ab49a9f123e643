#!/usr/bin/env bash
# Cluster mode end to end: a real 6-node Redis Cluster (3 primaries + 3 replicas, made with
# `redis-cli --cluster create --cluster-replicas 1`) on free loopback ports, the real
# redis-cache-dns with `redis_cache { cluster ... }` and no L1 (so a repeated name is an L2
# read), the test upstream tests/tools/testdns.py, queried with kdig.
#
#   P  read_from primary, a dead seed listed first
#   R  read_from random
#   L  read_from latency (the default)
#
# Checks: names land on the primary of their slot and are read back from the cluster (the
# upstream is not asked again); where each mode reads (INFO commandstats on the nodes); a
# slot migrated (MIGRATING/IMPORTING + MIGRATE + SETSLOT NODE) while queries run; a manual
# CLUSTER FAILOVER while queries run. First, before any server runs (it counts the
# cluster's CLUSTER SHARDS calls), tests/integration/itest_cluster.c: routers of two
# threads sharing one hub (one discovery, leader hand-over, a follower's MOVED).
source "$(dirname "$0")/lib.sh"

bin=${RCD_BIN:-$IT_BUILD/redis-cache-dns}
[ -x "$bin" ] || { not_ok "redis-cache-dns built" "missing $bin"; finish; }
command -v kdig >/dev/null || skip_all "kdig not installed"
command -v redis-cli >/dev/null || skip_all "redis-cli not installed"

N=200
zone="$IT_TMP/test.zone"
{
    echo '$ORIGIN test.'
    echo '$TTL 300'
    echo '@ IN SOA ns.test. hostmaster.test. 1 60 60 60 120'
    echo '@ IN NS ns.test.'
    echo 'ns IN A 127.0.0.1'
    for i in $(seq 1 $N); do echo "n$i IN A 10.1.$((i / 256)).$((i % 256))"; done
    for i in $(seq 1 $N); do echo "m$i IN A 10.2.$((i / 256)).$((i % 256))"; done
    for i in $(seq 1 $N); do echo "f$i IN A 10.3.$((i / 256)).$((i % 256))"; done
} >"$zone"
dns_start "$zone" || { not_ok "testdns started"; finish; }

# ---- the cluster ----------------------------------------------------------------------------
CP=()
for i in 0 1 2 3 4 5; do
    # an explicit bus port: the default (port + 10000) fails for ports above 55535
    p=$(redis_start "c$i" --cluster-enabled yes --cluster-config-file nodes.conf \
        --cluster-port "$(free_port)" \
        --cluster-node-timeout 2000 --repl-diskless-sync-delay 0) || { not_ok "cluster node $i started"; finish; }
    CP+=("$p")
done
addrs=()
for p in "${CP[@]}"; do addrs+=("127.0.0.1:$p"); done
out=$(redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes 2>&1) ||
    { not_ok "redis-cli --cluster create" "$out"; finish; }
cluster_ok() { # every node says cluster_state:ok and `--cluster check` agrees
    local p
    for p in "${CP[@]}"; do
        rcli "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
    done
    for p in "${CP[@]}"; do # replicas in sync (else CLUSTER SHARDS says health loading)
        rcli "$p" info replication | grep -q '^role:master' && continue
        rcli "$p" info replication | grep -q '^master_link_status:up' || return 1
    done
    redis-cli --cluster check "127.0.0.1:${CP[0]}" >/dev/null 2>&1
}
for _ in $(seq 300); do cluster_ok && break; sleep 0.1; done
cluster_ok && ok "6-node cluster up (3 primaries + 3 replicas)" ||
    { not_ok "6-node cluster up" "$(rcli "${CP[0]}" cluster nodes)"; finish; }

role_of() { rcli "$1" role 2>/dev/null | head -1; }
primaries() { local p; for p in "${CP[@]}"; do [ "$(role_of "$p")" = master ] && echo "$p"; done; }
replicas() { local p; for p in "${CP[@]}"; do [ "$(role_of "$p")" = slave ] && echo "$p"; done; }
# the port of the primary that owns a slot, from CLUSTER SLOTS as node $1 sees it
slot_owner() {
    rcli "$1" --no-raw cluster slots 2>/dev/null | awk -v s="$2" '
        /^[0-9]+\) 1\) \(integer\)/ {lo = $NF; st = 1; next}
        st == 1 && /\(integer\)/ {hi = $NF; st = 2; next}
        st == 2 && /\(integer\)/ {if (s >= lo && s <= hi) {print $NF; exit}; st = 0}'
}
gets_on() { # gets_on PORT: cmdstat_get calls on that node
    rcli "$1" info commandstats | awk -F'[:=,]' '/^cmdstat_get:/ {print $3 + 0; f = 1} END {if (!f) print 0}'
}
reset_stats() { local p; for p in "${CP[@]}"; do rcli "$p" config resetstat >/dev/null; done; }
all_keys() { local p; for p in $(primaries); do rcli "$p" --scan --pattern 'cdrc:*'; done | sort -u; }

echo "# t=${SECONDS}s"
# ---- the router at library level (ASan): two workers' routers sharing one hub ----------------
itest="$IT_BUILD/itests/itest_cluster"
if [ -x "$itest" ]; then
    CL_PORTS="${CP[*]}" run_cmocka "$itest" 2>&1 | tee "$IT_TMP/itest_cluster.out"
    rc=${PIPESTATUS[0]}
    # a crash (ASan) prints no cmocka summary: count it here
    if [ "$rc" != 0 ] && ! grep -q '^\[  FAILED  \]' "$IT_TMP/itest_cluster.out"; then
        not_ok "itest_cluster ran to its end" "exit status $rc"
    fi
    # its slot moves are undone; wait until the cluster says so before going on
    for _ in $(seq 100); do cluster_ok && break; sleep 0.1; done
else
    not_ok "itest_cluster built" "missing $itest"
fi

echo "# t=${SECONDS}s"
# ---- servers ----------------------------------------------------------------------------------
srv_start() { # srv_start NAME REDIS_CACHE_BODY -> SRV_PORT_NAME, SRV_PROM_NAME
    local name=$1 body=$2 port prom attempt pid
    for attempt in 1 2 3; do
        port=$(free_port)
        prom=$(free_port)
        printf 'test:%s {\n    bind 127.0.0.1\n    redis_cache {\n%s\n    }\n    forward . 127.0.0.1:%s\n    prometheus 127.0.0.1:%s\n}\n' \
            "$port" "$body" "$DNS_PORT" "$prom" >"$IT_TMP/$name.conf"
        "$bin" -conf "$IT_TMP/$name.conf" -threads "${SRV_THREADS:-1}" >"$IT_TMP/$name.out" \
            2>"$IT_TMP/$name.err" &
        pid=$!
        IT_PIDS+=("$pid")
        if wait_port "$port" 5 && kill -0 "$pid" 2>/dev/null; then
            printf -v "SRV_PORT_$name" '%s' "$port"
            printf -v "SRV_PROM_$name" '%s' "$prom"
            return 0
        fi
        kill "$pid" 2>/dev/null
    done
    echo "srv_start $name failed: $(tail -n 5 "$IT_TMP/$name.err")" >&2
    return 1
}
metric_sum() { # metric_sum PROM_PORT NAME
    curl -s "http://127.0.0.1:$1/metrics" | awk -v n="$2" \
        'index($0, n) == 1 && (substr($0, length(n) + 1, 1) == "{" || substr($0, length(n) + 1, 1) == " ") { s += $NF } END { print s + 0 }'
}
# ask PORT PREFIX: all N names PREFIX1..PREFIXN in one kdig run; prints how many got their A
ask() {
    local port=$1 pre=$2 args=() i
    for i in $(seq 1 $N); do args+=("$pre$i.test" A); done
    kdig +retry=1 +timeout=3 @127.0.0.1 -p "$port" +short "${args[@]}" 2>/dev/null |
        grep -c '^10\.'
}

dead=$(free_port)
seeds="127.0.0.1:$dead 127.0.0.1:${CP[0]} 127.0.0.1:${CP[1]}"
srv_start P "        cluster $seeds
        read_from primary
        success 300" || { not_ok "server P started"; finish; }
srv_start R "        cluster 127.0.0.1:${CP[2]}
        read_from random
        success 300" || { not_ok "server R started"; finish; }
srv_start L "        cluster 127.0.0.1:${CP[3]} 127.0.0.1:${CP[4]}
        success 300" || { not_ok "server L started"; finish; }
P=$SRV_PORT_P R=$SRV_PORT_R L=$SRV_PORT_L

# wait until P has a slot table (dead seed first): a name cached and read back through P
ready=0
for _ in $(seq 100); do
    kdig +retry=0 +timeout=2 @127.0.0.1 -p "$P" ns.test A +short >/dev/null 2>&1
    sleep 0.1
    if [ "$(all_keys | wc -l)" -ge 1 ]; then ready=1; break; fi
done
[ $ready = 1 ] && ok "a dead seed listed first: discovery goes on to the next seed" ||
    not_ok "a dead seed listed first" "$(cat "$IT_TMP/P.err")"
sleep 1.5 # R and L discover too (their first discovery runs at start)

# One discovery per process (SPEC §3): a server with 4 workers asks the cluster for its
# topology as often as one worker would (once at start), not once per worker.
disc_calls() {
    local p t=0
    for p in "${CP[@]}"; do
        t=$((t + $(rcli "$p" info commandstats | awk -F'[:=,]' \
            '$1 == "cmdstat_cluster|shards" || $1 == "cmdstat_cluster|slots" {s += $3} END {print s + 0}')))
    done
    echo "$t"
}
d0=$(disc_calls)
SRV_THREADS=4 srv_start W "        cluster 127.0.0.1:${CP[0]}
        success 300" || not_ok "server W (4 workers) started"
W=${SRV_PORT_W:-0}
wn=0
for _ in 1 2 3 4 5 6 7 8; do # the probe name, cached already: no new key
    kdig +retry=1 +timeout=2 @127.0.0.1 -p "$W" ns.test A +short 2>/dev/null | grep -q '^127\.0\.0\.1$' &&
        wn=$((wn + 1))
done
sleep 1
d1=$(disc_calls)
if [ "$wn" = 8 ] && [ $((d1 - d0)) -ge 1 ] && [ $((d1 - d0)) -le 2 ]; then
    ok "4 workers, one discovery: CLUSTER SHARDS/SLOTS asked $((d1 - d0)) time(s), 8 names answered"
else not_ok "4 workers share one discovery" "discovery calls $((d1 - d0)), answered $wn/8: $(tail -3 "$IT_TMP/W.err")"; fi
[ "$(grep -c 'slot table' "$IT_TMP/W.err")" -le 1 ] && ok "4 workers: the table logged once per process" ||
    not_ok "table logged once" "$(cat "$IT_TMP/W.err")"
kill "${IT_PIDS[-1]}" 2>/dev/null # W is done: its refreshes must not count below

echo "# t=${SECONDS}s"
# ---- 200 names land on their slot's primary -----------------------------------------------------
got=$(ask "$P" n)
[ "$got" = $N ] && ok "$N names answered through the cluster-backed server" ||
    not_ok "$N names answered" "got $got"
for _ in $(seq 50); do [ "$(all_keys | wc -l)" -ge $((N + 1)) ] && break; sleep 0.1; done
keys=$(all_keys)
nkeys=$(wc -l <<<"$keys")
[ "$nkeys" = $((N + 1)) ] && ok "$N names written as $N keys (plus the probe name)" ||
    not_ok "$N names written" "keys: $nkeys"
# the slot ranges as node 0 sees them ("lo hi port" lines), every key's slot in one
# redis-cli run, then every key asked for on its owner (EXISTS, one redis-cli run per owner)
ranges=$(rcli "${CP[0]}" --no-raw cluster slots | awk '
    /^[0-9]+\) 1\) \(integer\)/ {lo = $NF; st = 1; next}
    st == 1 && /\(integer\)/ {hi = $NF; st = 2; next}
    st == 2 && /\(integer\)/ {print lo, hi, $NF; st = 0}')
kslots=$(sed 's/^/CLUSTER KEYSLOT /' <<<"$keys" | rcli "${CP[0]}")
owners=$(paste -d' ' <(echo "$keys") <(echo "$kslots") | awk -v r="$ranges" '
    BEGIN {n = split(r, L, "\n"); for (i = 1; i <= n; i++) {split(L[i], f, " "); lo[i] = f[1]; hi[i] = f[2]; po[i] = f[3]}}
    {o = ""; for (i = 1; i <= n; i++) if ($2 >= lo[i] && $2 <= hi[i]) o = po[i]; print $1, o}')
bad=0 checked=0
declare -A PER=()
for owner in $(awk '{print $2}' <<<"$owners" | sort -u); do
    mine=$(awk -v o="$owner" '$2 == o {print $1}' <<<"$owners")
    n=$(wc -l <<<"$mine")
    found=$(sed 's/^/EXISTS /' <<<"$mine" | rcli "$owner" | grep -c '^1$')
    PER[$owner]=$found
    checked=$((checked + n)) bad=$((bad + n - found))
done
[ -n "$ranges" ] && [ $bad = 0 ] && [ $checked -gt $N ] && ok "every key is on the primary of its slot ($checked checked)" ||
    not_ok "every key on its slot's primary" "$bad of $checked not found on the owner; ranges: $ranges"
[ "${#PER[@]}" = 3 ] && ok "keys spread over all 3 primaries (${PER[*]})" ||
    not_ok "keys spread over all 3 primaries" "per primary: ${PER[*]}"

echo "# t=${SECONDS}s"
# ---- read_from: where the reads go --------------------------------------------------------------
# reads_where SERVER: reset the counters, read every name (all L2 hits), print "primary replica"
reads_where() {
    reset_stats
    local got0 up0 up1 gp=0 gr=0 p
    up0=$(dns_ctl total)
    got0=$(ask "$1" n)
    up1=$(dns_ctl total)
    for p in $(primaries); do gp=$((gp + $(gets_on "$p"))); done
    for p in $(replicas); do gr=$((gr + $(gets_on "$p"))); done
    echo "$got0 $((up1 - up0)) $gp $gr"
}
read -r got up gp gr <<<"$(reads_where "$P")"
if [ "$got" = $N ] && [ "$up" = 0 ] && [ "$gp" -ge $N ] && [ "$gr" = 0 ]; then
    ok "read_from primary: $N L2 hits, all GETs on primaries ($gp), none on replicas"
else not_ok "read_from primary" "answered $got, upstream asked $up, GETs primary $gp replica $gr"; fi
read -r got up gp gr <<<"$(reads_where "$R")"
if [ "$got" = $N ] && [ "$up" = 0 ] && [ "$gr" -gt 0 ] && [ "$gp" -gt 0 ]; then
    ok "read_from random: $N L2 hits, GETs on replicas ($gr) and primaries ($gp)"
else not_ok "read_from random" "answered $got, upstream asked $up, GETs primary $gp replica $gr"; fi
read -r got up gp gr <<<"$(reads_where "$L")"
if [ "$got" = $N ] && [ "$up" = 0 ] && [ "$gr" -gt 0 ]; then
    ok "read_from latency: $N L2 hits, replicas take reads ($gr; primaries $gp)"
else not_ok "read_from latency" "answered $got, upstream asked $up, GETs primary $gp replica $gr"; fi
# latency mode PINGs idle nodes: every node got PINGs from L within a few seconds
sleep 2.5
pings=0
for p in "${CP[@]}"; do
    c=$(rcli "$p" info commandstats | awk -F'[:=,]' '/^cmdstat_ping:/ {print $3 + 0}')
    [ "${c:-0}" -gt 0 ] && pings=$((pings + 1))
done
[ $pings = 6 ] && ok "read_from latency: idle nodes are measured by PING (all 6)" ||
    not_ok "latency PINGs" "$pings of 6 nodes were PINGed"

echo "# t=${SECONDS}s"
# ---- a slot migration while queries run ---------------------------------------------------------
# the slot of the key of m1.test A (written through P first), moved to another primary
kdig +retry=0 +timeout=3 @127.0.0.1 -p "$P" m1.test A +short >/dev/null
sleep 0.3
mkey=""
for _ in $(seq 20); do
    mkey=$(comm -13 <(echo "$keys") <(all_keys) | head -1)
    [ -n "$mkey" ] && break; sleep 0.1
done
slot=$(rcli "${CP[0]}" cluster keyslot "$mkey")
src=$(slot_owner "${CP[0]}" "$slot")
dst=$(primaries | grep -vx "$src" | head -1)
src_id=$(rcli "$src" cluster myid)
dst_id=$(rcli "$dst" cluster myid)
curl -s "http://127.0.0.1:$SRV_PROM_P/metrics" | grep -q '^coredns_redis_cache_get_errors_total' ||
    not_ok "P exports coredns_redis_cache_get_errors_total"
e0=$(metric_sum "$SRV_PROM_P" coredns_redis_cache_get_errors_total)
ec0=$(metric_sum "$SRV_PROM_P" coredns_redis_cache_set_errors_total)
# queries in the background: every m-name through P and R, over and over
loop_q() { # loop_q PORT PREFIX OUTFILE: runs until $IT_TMP/stop exists
    local n=0 bad=0 got
    while [ ! -e "$IT_TMP/stop" ]; do
        got=$(ask "$1" "$2")
        n=$((n + 1)); [ "$got" = $N ] || bad=$((bad + N - got))
    done
    echo "$n $bad" >"$3"
}
errstat() { # errstat PORT NAME: errorstat_NAME count on that node
    rcli "$1" info errorstats | awk -F'[:=,]' -v k="errorstat_$2" '$1 == k {print $3 + 0; f = 1} END {if (!f) print 0}'
}
cmdstat() { # cmdstat PORT NAME: calls of that command on that node
    rcli "$1" info commandstats | awk -F'[:=,]' -v k="cmdstat_$2" '$1 == k {print $3 + 0; f = 1} END {if (!f) print 0}'
}
reset_stats
rm -f "$IT_TMP/stop"
loop_q "$P" m "$IT_TMP/loopP" &
lp1=$!
loop_q "$R" m "$IT_TMP/loopR" &
lp2=$!
sleep 1
mig_ok=1
rcli "$dst" cluster setslot "$slot" importing "$src_id" >/dev/null || mig_ok=0
rcli "$src" cluster setslot "$slot" migrating "$dst_id" >/dev/null || mig_ok=0
sleep 1 # queries meet the slot half-way: the key is still on the source
keys_in=$(rcli "$src" cluster getkeysinslot "$slot" 1000)
moved_n=0
for k in $keys_in; do
    rcli "$src" migrate 127.0.0.1 "$dst" "$k" 0 5000 >/dev/null && moved_n=$((moved_n + 1))
    sleep 0.2 # ASK time: keys of the slot now on the target, the slot still on the source
done
sleep 1
for p in "$dst" "$src" $(primaries | grep -vx "$src" | grep -vx "$dst"); do
    rcli "$p" cluster setslot "$slot" node "$dst_id" >/dev/null || mig_ok=0
done
sleep 2 # MOVED time: the slot belongs to the target now
touch "$IT_TMP/stop"
wait $lp1 $lp2
read -r nP badP <"$IT_TMP/loopP"
read -r nR badR <"$IT_TMP/loopR"
[ $mig_ok = 1 ] && [ "$moved_n" -ge 1 ] && ok "slot $slot migrated ($moved_n keys) from $src to $dst" ||
    not_ok "slot migrated" "ok=$mig_ok keys=$moved_n"
[ "$badP" = 0 ] && [ "$badR" = 0 ] && [ "$nP" -ge 2 ] &&
    ok "no DNS failure during the migration ($nP + $nR rounds of $N names)" ||
    not_ok "no DNS failure during the migration" "P: $nP rounds, $badP unanswered; R: $nR rounds, $badR unanswered"
e1=$(metric_sum "$SRV_PROM_P" coredns_redis_cache_get_errors_total)
ec1=$(metric_sum "$SRV_PROM_P" coredns_redis_cache_set_errors_total)
asks=$(errstat "$src" ASK) asking=$(cmdstat "$dst" asking) moved=0 mdesc=""
for p in "${CP[@]}"; do
    m=$(errstat "$p" MOVED) s=$(cmdstat "$p" "cluster|shards")
    moved=$((moved + m)) mdesc+=" $p:MOVED=$m,SHARDS=$s"
done
[ "$asks" -gt 0 ] && [ "$asking" -gt 0 ] && [ "$moved" -gt 0 ] &&
    ok "redirects met during the migration: $asks ASK from the source, $asking ASKING on the target, $moved MOVED" ||
    not_ok "redirects met during the migration" "ASK $asks, ASKING $asking, MOVED $moved:$mdesc"
[ "$e1" = "$e0" ] && [ "$ec1" = "$ec0" ] && ok "ASK and MOVED followed: no get/set errors during the migration" ||
    not_ok "ASK and MOVED followed" "get_errors $e0 -> $e1, set_errors $ec0 -> $ec1: $(grep -i error "$IT_TMP/P.err" | tail -3)"
# the migrated key is read from its new primary: GETs there, upstream not asked
reset_stats
up0=$(dns_ctl "count m1.test A")
a=$(kdig +retry=0 +timeout=3 @127.0.0.1 -p "$P" m1.test A +short)
up1=$(dns_ctl "count m1.test A")
g=$(gets_on "$dst")
[ "$a" = 10.2.0.1 ] && [ "$up1" = "$up0" ] && [ "$g" -ge 1 ] &&
    ok "after the migration: m1.test read from the new owner (L2 hit)" ||
    not_ok "after the migration" "answer $a, upstream $up0 -> $up1, GETs on $dst: $g"

echo "# t=${SECONDS}s"
# ---- a manual failover while queries run --------------------------------------------------------
# the replica of the primary that owns the slot of f1's key takes over
victim_slot=$(rcli "${CP[0]}" cluster keyslot "$mkey")
old=$(slot_owner "${CP[0]}" "$victim_slot")
old_id=$(rcli "$old" cluster myid)
new=""
for p in $(replicas); do
    rcli "$p" cluster nodes | grep -q "myself,slave $old_id" && new=$p
done
rm -f "$IT_TMP/stop"
loop_q "$P" f "$IT_TMP/loopF" &
lp1=$!
sleep 1
fo=$(rcli "$new" cluster failover 2>&1)
for _ in $(seq 100); do [ "$(role_of "$new")" = master ] && break; sleep 0.1; done
for _ in $(seq 100); do cluster_ok && break; sleep 0.1; done
sleep 2
touch "$IT_TMP/stop"
wait $lp1
read -r nF badF <"$IT_TMP/loopF"
[ "$fo" = OK ] && [ "$(role_of "$new")" = master ] && ok "CLUSTER FAILOVER: $new replaced $old" ||
    not_ok "CLUSTER FAILOVER" "reply $fo, role of $new: $(role_of "$new")"
[ "$badF" = 0 ] && [ "$nF" -ge 2 ] && ok "every query answered during the failover ($nF rounds of $N)" ||
    not_ok "every query answered during the failover" "$nF rounds, $badF unanswered"
# a write for that slot reaches the new primary: expire the key, ask again
rcli "$new" del "$mkey" >/dev/null
a=$(kdig +retry=0 +timeout=3 @127.0.0.1 -p "$P" m1.test A +short)
w=0
for _ in $(seq 30); do [ "$(rcli "$new" exists "$mkey")" = 1 ] && { w=1; break; }; sleep 0.1; done
[ "$a" = 10.2.0.1 ] && [ $w = 1 ] && ok "after the failover a write reaches the new primary $new" ||
    not_ok "write after failover" "answer $a, key on $new: $w; $(tail -3 "$IT_TMP/P.err")"

# every server still alive (ASan builds would have aborted on a memory error)
alive=1
for n in P R L; do v=SRV_PORT_$n; kdig +retry=0 +timeout=2 @127.0.0.1 -p "${!v}" n1.test A +short | grep -q '^10\.' || alive=0; done
[ $alive = 1 ] && ok "all three servers still answer" || not_ok "servers alive"
finish
