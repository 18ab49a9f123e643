#!/usr/bin/env bash
# bench/server.sh — redis-cache-dns against Debian's dnsdist, dnsperf on loopback, one run.
#
# One knotd (authoritative for `example.`, 100k names, TTL 3600) is the fast upstream of
# every row; one redis-server is the L2. Rows (each DURATION s, RUNS times, best of; rounds
# interleave the rows so a noisy neighbour hurts all of them alike):
#
#   dnsdist-pc   dnsdist + packet cache, hot set (1000 names, all cached)
#   ours-l1      ours with `cache`, same hot set, warmed
#   ours-l2      ours with `redis_cache` and no `cache`: every answer from Redis
#   ours-l2c     the same on a 6-node Redis Cluster (3 primaries + 3 replicas, read_from
#                latency): the cluster's cost against ours-l2 (CLUSTER=0 leaves it out)
#   dnsdist-fwd  dnsdist without cache, 100k distinct names (forwards everything)
#   ours-fwd     ours with only `forward`, same 100k names
#
# then peak RSS (VmHWM) of fresh instances of ours and dnsdist after 100k distinct names
# were each queried once. QPS and mean/max latency come from dnsperf's summary of the best
# run; p50/p99 from two extra `dnsperf -v` runs per row (per-query latencies): one saturated
# like the QPS runs (-v costs dnsperf throughput, so its QPS is not used), one at a fixed
# LAT_QPS offered load that every row sustains (service time without client queueing).
#
# Usage: bash bench/server.sh            (run by hand; needs dnsperf dnsdist knotd
#                                         redis-server redis-cli kdig python3)
# Env:   RCD_BIN=path (default build/redis-cache-dns), DURATION=5, RUNS=3, CLIENTS=4,
#        OUTSTANDING=200, DNSPERF_THREADS=1, OURS_THREADS= (server default),
#        LAT_QPS=10000, LAT_DURATION=3, DNSDIST_LISTENERS=1, KNOT_WORKERS=2,
#        BENCH_NICE=0 (nice level of every benchmarked process), STANDIN=auto|1|0,
#        KEEP=1 (keep the temp dir), CLUSTER=1 (the ours-l2c row), L2_ONLY=1 (only the
#        ours-l2 and ours-l2c rows: no dnsdist rows, no latency runs, no RSS rows),
#        FWD_ONLY=1 (only the dnsdist-fwd and ours-fwd rows, no latency runs, no RSS rows)
# STANDIN=1 (or auto when our server is missing or does not answer) runs the `ours` rows
# against dnsdist instances instead, labelled STAND-IN: it proves the plumbing, nothing else.
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TPL=$ROOT/bench/server
RCD_BIN=${RCD_BIN:-$ROOT/build/redis-cache-dns}
DURATION=${DURATION:-5}
RUNS=${RUNS:-3}
CLIENTS=${CLIENTS:-4}
OUTSTANDING=${OUTSTANDING:-200}
DNSPERF_THREADS=${DNSPERF_THREADS:-1}
OURS_THREADS=${OURS_THREADS:-}
DNSDIST_LISTENERS=${DNSDIST_LISTENERS:-1}
KNOT_WORKERS=${KNOT_WORKERS:-2}
BENCH_NICE=${BENCH_NICE:-0}
STANDIN=${STANDIN:-auto}
NAMES=${NAMES:-100000}
HOT=${HOT:-1000}
CACHE_SIZE=${CACHE_SIZE:-100000}
LAT_QPS=${LAT_QPS:-10000}
LAT_DURATION=${LAT_DURATION:-3}
CLUSTER=${CLUSTER:-1}
L2_ONLY=${L2_ONLY:-0}
FWD_ONLY=${FWD_ONLY:-0}
[ "$FWD_ONLY" = 1 ] && { CLUSTER=0; L2_ONLY=0; }

DIR=$(mktemp -d "${TMPDIR:-/tmp}/bench-server.XXXXXX")
PIDS=()
PY=$(command -v /usr/bin/python3 || command -v python3)

cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 60); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
        kill -9 "$p" 2>/dev/null
    done
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $DIR" >&2; else rm -rf "$DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "bench/server: $*" >&2; exit 1; }
log() { echo "# $*" >&2; }
for t in dnsperf dnsdist knotd redis-server redis-cli kdig; do
    command -v "$t" >/dev/null || die "$t not installed"
done

# A port on 127.0.0.1 free for both UDP and TCP right now.
free_port() {
    "$PY" - <<'EOF'
import socket
while True:
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    t.bind(("127.0.0.1", 0))
    p = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", p))
    except OSError:
        continue
    print(p)
    break
EOF
}

# render TEMPLATE OUT VAR=VALUE...: replace @VAR@ in the template
render() {
    local in=$1 out=$2 kv; shift 2
    cp "$in" "$out"
    for kv in "$@"; do
        local k=${kv%%=*} v=${kv#*=}
        K="@$k@" V="$v" "$PY" -c '
import os, sys
p = sys.argv[1]; s = open(p).read().replace(os.environ["K"], os.environ["V"]); open(p, "w").write(s)
' "$out"
    done
}

# wait_dns PORT [SECONDS]: until the server answers `example. SOA` with NOERROR
wait_dns() {
    local port=$1 secs=${2:-10} i
    for i in $(seq $((secs * 10))); do
        if kdig @127.0.0.1 -p "$port" example. SOA +time=1 +retry=0 2>/dev/null |
            grep -q 'status: NOERROR'; then return 0; fi
        sleep 0.1
    done
    return 1
}

spawn() { # spawn NAME CMD...: background, niced, logged; sets LAST_PID
    local name=$1; shift
    nice -n "$BENCH_NICE" "$@" >"$DIR/$name.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

stop_pid() {
    local p=$1
    kill "$p" 2>/dev/null
    for _ in $(seq 60); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.05; done
    kill -9 "$p" 2>/dev/null
}

dnsdist_listen() { # PORT -> setLocal/addLocal lines (reusePort listeners)
    local port=$1 i out
    out="setLocal(\"127.0.0.1:$port\", {reusePort=true})"
    for ((i = 1; i < DNSDIST_LISTENERS; i++)); do
        out+=$'\n'"addLocal(\"127.0.0.1:$port\", {reusePort=true})"
    done
    printf '%s' "$out"
}

CTL_KEY=$(head -c 32 /dev/urandom | base64)

# start_dnsdist NAME cache|nocache -> sets PORT_<NAME>, PID_<NAME>
start_dnsdist() {
    local name=$1 kind=$2 port ctl
    port=$(free_port); ctl=$(free_port)
    render "$TPL/dnsdist-$kind.conf.in" "$DIR/$name.conf" KNOT_PORT="$KNOT_PORT" \
        CACHE_SIZE="$CACHE_SIZE" CTL_PORT="$ctl" CTL_KEY="$CTL_KEY" \
        DNSDIST_LISTEN="$(dnsdist_listen "$port")"
    spawn "$name" dnsdist -C "$DIR/$name.conf" --supervised --disable-syslog
    printf -v "PID_$name" %s "$LAST_PID"
    printf -v "PORT_$name" %s "$port"
    wait_dns "$port" || die "dnsdist $name did not answer: $(tail -5 "$DIR/$name.log")"
}

# start_ours NAME l1|l2|fwd|rss [THREADS [CACHE_SIZE]] -> PORT_<NAME>, PID_<NAME>, MPORT_<NAME>;
# returns 1 when it does not answer
start_ours() {
    local name=$1 kind=$2 threads=${3:-$OURS_THREADS} csize=${4:-$CACHE_SIZE} port mport
    port=$(free_port); mport=$(free_port)
    if [ "$kind" = l2c ]; then # L1 disabled, L2 on the cluster (no template: seeds vary)
        printf '.:%s {\n    bind 127.0.0.1\n    redis_cache {\n        cluster %s\n    }\n    forward . 127.0.0.1:%s\n}\n' \
            "$port" "$CLUSTER_SEEDS" "$KNOT_PORT" >"$DIR/$name.Corefile"
    else
        render "$TPL/Corefile-$kind.in" "$DIR/$name.Corefile" PORT="$port" KNOT_PORT="$KNOT_PORT" \
            REDIS_PORT="$REDIS_PORT" CACHE_SIZE="$csize" METRICS_PORT="$mport"
    fi
    local args=(-conf "$DIR/$name.Corefile")
    [ -n "$threads" ] && args+=(-threads "$threads")
    spawn "$name" "$RCD_BIN" "${args[@]}"
    printf -v "PID_$name" %s "$LAST_PID"
    printf -v "PORT_$name" %s "$port"
    printf -v "MPORT_$name" %s "$mport"
    wait_dns "$port" 5 || { stop_pid "$LAST_PID"; return 1; }
}

# perf NAME PORT FILE [dnsperf args...]: one measured run; prints "qps mean_ms max_ms lost"
perf() {
    local name=$1 port=$2 file=$3; shift 3
    local out="$DIR/perf.$name.$RANDOM"
    nice -n "$BENCH_NICE" dnsperf -s 127.0.0.1 -p "$port" -d "$file" -c "$CLIENTS" \
        -q "$OUTSTANDING" -T "$DNSPERF_THREADS" -t 2 -l "$DURATION" "$@" >"$out" 2>&1
    awk '/Queries per second/ {q=$4}
         /Queries lost/ {l=$3}
         /Average Latency/ {m=$4*1000; gsub(/[^0-9.e-]/,"",$8); x=$8*1000}
         END {printf "%.0f %.3f %.2f %s\n", q, m, x, l}' "$out"
    rm -f "$out"
}

# p99 NAME PORT FILE [dnsperf args...]: one `dnsperf -v` run; prints "p50_ms p99_ms"
p99() {
    local name=$1 port=$2 file=$3; shift 3
    local out="$DIR/v.$name"
    nice -n "$BENCH_NICE" dnsperf -s 127.0.0.1 -p "$port" -d "$file" -c "$CLIENTS" \
        -q "$OUTSTANDING" -T "$DNSPERF_THREADS" -t 2 -l "$LAT_DURATION" -v "$@" >"$out" 2>&1
    awk '$1 == ">" {print $NF}' "$out" | sort -g | awk '
        {v[NR] = $1}
        END {if (NR == 0) {print "n/a n/a"; exit}
             i50 = int(NR * 0.50); if (i50 < 1) i50 = 1
             i99 = int(NR * 0.99); if (i99 < 1) i99 = 1
             printf "%.3f %.3f\n", v[i50] * 1000, v[i99] * 1000}'
    rm -f "$out"
}

warm() { # warm PORT FILE PASSES: every name through several sockets (per-worker L1s)
    nice -n "$BENCH_NICE" dnsperf -s 127.0.0.1 -p "$1" -d "$2" -n "$3" -c 7 -q 50 -t 2 \
        >/dev/null 2>&1
}

vm() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; } # vm PID VmHWM -> kB

# ---- setup -------------------------------------------------------------------------------
T0=$(date +%s)
log "temp dir $DIR"
"$PY" "$TPL/gen.py" "$DIR" "$NAMES" "$HOT" || die "gen.py failed"
HOTQ=$DIR/hot.txt
ALLQ=$DIR/all.txt

mkdir -p "$DIR/knot"
KNOT_PORT=$(free_port)
render "$TPL/knot.conf.in" "$DIR/knot.conf" DIR="$DIR" KNOT_PORT="$KNOT_PORT" \
    KNOT_WORKERS="$KNOT_WORKERS"
spawn knot knotd -c "$DIR/knot.conf"
wait_dns "$KNOT_PORT" 20 || die "knotd did not answer: $(tail -5 "$DIR/knot.log")"
kdig @127.0.0.1 -p "$KNOT_PORT" n000001.example A +short | grep -q '^10\.' ||
    die "knotd does not serve the generated zone"

REDIS_PORT=$(free_port)
mkdir -p "$DIR/redis"
spawn redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$DIR/redis" --save '' \
    --appendonly no --daemonize no
PID_redis=$LAST_PID
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && break
    sleep 0.05; done
redis-cli -p "$REDIS_PORT" ping | grep -q PONG || die "redis-server did not start"

# The cluster: 6 nodes, explicit bus ports (port + 10000 fails above 55535).
CLUSTER_PORTS=()
cluster_up() {
    local i p addrs=()
    for i in 0 1 2 3 4 5; do
        p=$(free_port)
        mkdir -p "$DIR/cl$i"
        spawn "cl$i" redis-server --port "$p" --bind 127.0.0.1 --dir "$DIR/cl$i" --save '' \
            --appendonly no --daemonize no --cluster-enabled yes --cluster-config-file nodes.conf \
            --cluster-port "$(free_port)" --cluster-node-timeout 5000 --repl-diskless-sync-delay 0
        CLUSTER_PORTS+=("$p")
        addrs+=("127.0.0.1:$p")
    done
    for p in "${CLUSTER_PORTS[@]}"; do
        for _ in $(seq 100); do redis-cli -p "$p" ping 2>/dev/null | grep -q PONG && break; sleep 0.05; done
    done
    redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$DIR/cluster.log" 2>&1 ||
        return 1
    for _ in $(seq 300); do
        local good=1
        for p in "${CLUSTER_PORTS[@]}"; do
            redis-cli -p "$p" cluster info | grep -q '^cluster_state:ok' || good=0
            redis-cli -p "$p" info replication | grep -qE '^(role:master|master_link_status:up)' || good=0
        done
        [ $good = 1 ] && redis-cli --cluster check "${addrs[0]}" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}
if [ "$CLUSTER" = 1 ]; then
    cluster_up || die "the 6-node cluster did not come up: $(tail -5 "$DIR/cluster.log")"
    CLUSTER_SEEDS="127.0.0.1:${CLUSTER_PORTS[0]} 127.0.0.1:${CLUSTER_PORTS[1]}"
    log "cluster up on ${CLUSTER_PORTS[*]}"
fi

[ "$FWD_ONLY" = 1 ] || start_dnsdist dd_pc cache
start_dnsdist dd_fwd nocache

# Ours, or the stand-in.
OURS_LABEL=ours
use_standin() {
    OURS_LABEL="STAND-IN(dnsdist)"
    log "STAND-IN: the ours-* rows run against dnsdist; they prove the plumbing only"
    start_dnsdist ours_l1 cache
    start_dnsdist ours_l2 cache
    start_dnsdist ours_fwd nocache
    STANDIN=1
}
if [ "$STANDIN" = 1 ]; then
    use_standin
elif [ ! -x "$RCD_BIN" ]; then
    [ "$STANDIN" = 0 ] && die "$RCD_BIN missing"
    log "$RCD_BIN missing"
    use_standin
else
    if { [ "$FWD_ONLY" = 1 ] || { start_ours ours_l1 l1 && start_ours ours_l2 l2; }; } &&
        start_ours ours_fwd fwd; then
        STANDIN=0
    else
        log "our server did not answer; its log:"
        for f in "$DIR"/ours_*.log; do sed 's/^/#   /' "$f" >&2; done
        [ "$STANDIN" = 0 ] && die "our server did not answer"
        for n in ours_l1 ours_l2 ours_fwd; do
            p=PID_$n; [ -n "${!p:-}" ] && stop_pid "${!p}"
        done
        use_standin
    fi
fi

# Warm: the hot set into both packet caches / L1s; into Redis through the L1-less server.
if [ "$FWD_ONLY" != 1 ]; then
    warm "$PORT_dd_pc" "$HOTQ" 5
    warm "$PORT_ours_l1" "$HOTQ" 5
    warm "$PORT_ours_l2" "$HOTQ" 1
fi
if [ "$CLUSTER" = 1 ] && [ "$STANDIN" = 0 ]; then
    start_ours ours_l2c l2c || die "our server on the cluster did not answer: $(tail -5 "$DIR/ours_l2c.log")"
    sleep 1 # the slot table
    warm "$PORT_ours_l2c" "$HOTQ" 1
    sleep 2 # replicas measured, writes landed
fi
if [ "$STANDIN" = 0 ] && [ "$FWD_ONLY" != 1 ]; then
    for _ in $(seq 40); do
        [ "$(redis-cli -p "$REDIS_PORT" dbsize)" -ge "$HOT" ] && break; sleep 0.05
    done
    log "redis holds $(redis-cli -p "$REDIS_PORT" dbsize) keys after the warm pass (hot set $HOT)"
fi
# GET calls Redis has served (the L2 lookups; keyspace_hits counts GET and TTL both)
redis_hits() {
    redis-cli -p "$REDIS_PORT" info commandstats |
        awk -F'[:=,]' '/^cmdstat_get:/ {print $3 + 0; f = 1} END {if (!f) print 0}'
}

cluster_gets() { # GETs summed over the cluster's nodes
    local p t=0
    for p in "${CLUSTER_PORTS[@]}"; do
        t=$((t + $(redis-cli -p "$p" info commandstats |
            awk -F'[:=,]' '/^cmdstat_get:/ {print $3 + 0; f = 1} END {if (!f) print 0}')))
    done
    echo "$t"
}
hits_of() { if [ "$1" = ours_l2c ]; then cluster_gets; else redis_hits; fi; }

# ---- throughput rows, interleaved rounds -------------------------------------------------
ROWS=(dd_pc ours_l1 ours_l2 dd_fwd ours_fwd)
[ "$L2_ONLY" = 1 ] && ROWS=(ours_l2)
[ "$FWD_ONLY" = 1 ] && ROWS=(dd_fwd ours_fwd)
[ "$CLUSTER" = 1 ] && [ "$STANDIN" = 0 ] && ROWS+=(ours_l2c)
declare -A FILE=([dd_pc]=$HOTQ [ours_l1]=$HOTQ [ours_l2]=$HOTQ [dd_fwd]=$ALLQ [ours_fwd]=$ALLQ
    [ours_l2c]=$HOTQ)
declare -A BEST=() L2HITS=()
for ((r = 1; r <= RUNS; r++)); do
    for row in "${ROWS[@]}"; do
        port=PORT_$row
        h0=$(hits_of "$row")
        res=$(perf "$row" "${!port}" "${FILE[$row]}")
        h1=$(hits_of "$row")
        log "round $r $row: qps mean_ms max_ms lost = $res"
        q=${res%% *}
        if [ -z "${BEST[$row]:-}" ] || [ "$q" -gt "${BEST[$row]%% *}" ]; then
            BEST[$row]=$res
            [ "$row" = ours_l2 ] || [ "$row" = ours_l2c ] && L2HITS[$row]=$(( (h1 - h0) ))
        fi
    done
done
declare -A P=() PL=()
for row in "${ROWS[@]}"; do
    [ "$L2_ONLY" = 1 ] || [ "$FWD_ONLY" = 1 ] && { P[$row]="n/a n/a"; PL[$row]="n/a n/a"; continue; }
    port=PORT_$row
    P[$row]=$(p99 "$row" "${!port}" "${FILE[$row]}")
    PL[$row]=$(p99 "$row" "${!port}" "${FILE[$row]}" -Q "$LAT_QPS")
    log "latency runs $row: p50_ms p99_ms saturated = ${P[$row]}, at $LAT_QPS qps = ${PL[$row]}"
done

# ---- peak RSS after 100k distinct names --------------------------------------------------
# Our `cache` capacity is split evenly across workers (each worker has its own L1) and
# SO_REUSEPORT spreads client sockets unevenly, so `success 100000` with 2 workers holds
# fewer than 100k names: the default-threads row gets THREADS x 100k capacity (each worker
# could take every name), a second row runs one worker with exactly `success 100000`.
rss_row() { # NAME PID PORT -> "rss_before_kB hwm_after_kB completed"
    local before completed
    before=$(vm "$2" VmRSS)
    completed=$(nice -n "$BENCH_NICE" dnsperf -s 127.0.0.1 -p "$3" -d "$ALLQ" -n 1 -c 64 \
        -q 100 -t 2 2>&1 | awk '/Queries completed/ {print $3}')
    sleep 0.3
    echo "$before $(vm "$2" VmHWM) $completed"
}
ours_entries() { # NAME: success entries from our metrics (sum over the series), or n/a
    local m=MPORT_$1 v
    v=$(curl -s "http://127.0.0.1:${!m}/metrics" 2>/dev/null |
        awk '/^coredns_cache_entries/ && /type="success"/ {s += $NF; f = 1} END {if (f) print s}')
    echo "${v:-n/a}"
}
if [ "$L2_ONLY" != 1 ] && [ "$FWD_ONLY" != 1 ]; then
    start_dnsdist rss_dd cache
    RSS_dd=$(rss_row rss_dd "$PID_rss_dd" "$PORT_rss_dd")
    DD_ENTRIES=$(dnsdist -C "$DIR/rss_dd.conf" -c -e 'getPool(""):getCache():getStats()["entries"]' \
        2>/dev/null | tail -1)
    stop_pid "$PID_rss_dd"
fi
declare -A RSS_O=() ENT_O=() DESC_O=()
RSS_ROWS=()
if [ "$STANDIN" = 0 ] && [ "$L2_ONLY" != 1 ] && [ "$FWD_ONLY" != 1 ]; then
    nthr=${OURS_THREADS:-$(nproc)}
    for spec in "rss_ours $nthr $((CACHE_SIZE * nthr))" "rss_ours1 1 $CACHE_SIZE"; do
        set -- $spec
        [ "$1" = rss_ours1 ] && [ "$nthr" = 1 ] && continue
        if start_ours "$1" rss "$2" "$3" || start_ours "$1" l1 "$2" "$3"; then
            mp=PID_$1; pp=PORT_$1
            RSS_O[$1]=$(rss_row "$1" "${!mp}" "${!pp}")
            ENT_O[$1]=$(ours_entries "$1")
            DESC_O[$1]="ours, -threads $2, \`cache { success $3 }\`"
            RSS_ROWS+=("$1")
            stop_pid "${!mp}"
        fi
    done
fi

# ---- report ------------------------------------------------------------------------------
mib() { awk -v k="$1" 'BEGIN {printf "%.1f MiB", k / 1024}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2fx", a / b; else print "n/a"}'; }
verdict() { awk -v a="$1" -v b="$2" -v t="$3" -v s="$STANDIN" 'BEGIN {
    if (s == 1) print "n/a (stand-in)"; else if (b <= 0) print "n/a";
    else if (a / b >= t) print "met"; else print "NOT met"}'; }
q() { local v=${BEST[$1]}; echo "${v%% *}"; }
field() { local v=${BEST[$1]}; echo "$v" | awk -v i="$2" '{print $i}'; }
label() { case $1 in dd_*) echo dnsdist ;; *) echo "$OURS_LABEL" ;; esac; }
desc() {
    case $1 in
    dd_pc) echo "L1 hit: packet cache, hot set $HOT" ;;
    ours_l1) echo "L1 hit: \`cache\`, hot set $HOT" ;;
    ours_l2) echo "L2 hit: \`redis_cache\`, no \`cache\`" ;;
    ours_l2c) echo "L2 hit: \`redis_cache\` on a 6-node cluster, no \`cache\`" ;;
    dd_fwd) echo "forward-only, $NAMES distinct names" ;;
    ours_fwd) echo "forward-only, $NAMES distinct names" ;;
    esac
}

echo
echo "bench/server: $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "dnsperf -c $CLIENTS -q $OUTSTANDING -T $DNSPERF_THREADS -l $DURATION, best of $RUNS;" \
    "dnsdist listeners $DNSDIST_LISTENERS; ours -threads ${OURS_THREADS:-default}; knotd udp-workers $KNOT_WORKERS"
echo
echo "| row | server | QPS | mean ms | max ms | lost | p50 / p99 ms saturated | p50 / p99 ms at $LAT_QPS qps |"
echo "|---|---|---|---|---|---|---|---|"
for row in "${ROWS[@]}"; do
    echo "| $(desc "$row") | $(label "$row") | $(q "$row") | $(field "$row" 2) |" \
        "$(field "$row" 3) | $(field "$row" 4) | ${P[$row]/ / \/ } | ${PL[$row]/ / \/ } |"
done
echo
if [ "$L2_ONLY" != 1 ]; then
    echo "| target | ratio | verdict |"
    echo "|---|---|---|"
    if [ "$FWD_ONLY" != 1 ]; then
        echo "| L1 hit >= 1.0x dnsdist packet cache | $(ratio "$(q ours_l1)" "$(q dd_pc)") | $(verdict "$(q ours_l1)" "$(q dd_pc)" 1.0) |"
        echo "| L2 hit >= 0.5x our L1 hit | $(ratio "$(q ours_l2)" "$(q ours_l1)") | $(verdict "$(q ours_l2)" "$(q ours_l1)" 0.5) |"
    fi
    echo "| forward-only >= 1.0x dnsdist without cache | $(ratio "$(q ours_fwd)" "$(q dd_fwd)") | $(verdict "$(q ours_fwd)" "$(q dd_fwd)" 1.0) |"
fi
if [ "$STANDIN" = 0 ] && [ "$FWD_ONLY" != 1 ]; then
    l2q=$(awk -v d="$DURATION" -v q="$(q ours_l2)" 'BEGIN {printf "%.0f", q * d}')
    echo
    echo "L2 row check: Redis served ${L2HITS[ours_l2]:-n/a} GETs during the best run, which" \
        "answered about $l2q queries (every answer from Redis when these match)"
fi
if [ -n "${BEST[ours_l2c]:-}" ]; then
    l2cq=$(awk -v d="$DURATION" -v q="$(q ours_l2c)" 'BEGIN {printf "%.0f", q * d}')
    echo
    echo "cluster: L2 hit QPS on the 6-node cluster $(q ours_l2c) vs standalone $(q ours_l2):" \
        "$(ratio "$(q ours_l2c)" "$(q ours_l2)"); the cluster served ${L2HITS[ours_l2c]:-n/a}" \
        "GETs during its best run, which answered about $l2cq queries"
fi
echo
if [ "$L2_ONLY" != 1 ] && [ "$FWD_ONLY" != 1 ]; then
    echo "| peak RSS after $NAMES distinct names | RSS before fill | VmHWM after | queries completed | cache entries |"
    echo "|---|---|---|---|---|"
    set -- $RSS_dd
    echo "| dnsdist, packet cache $CACHE_SIZE | $(mib "$1") | $(mib "$2") | $3 | ${DD_ENTRIES:-n/a} |"
    for n in "${RSS_ROWS[@]}"; do
        set -- ${RSS_O[$n]}
        echo "| ${DESC_O[$n]} | $(mib "$1") | $(mib "$2") | $3 | ${ENT_O[$n]} |"
    done
    [ "${#RSS_ROWS[@]}" -gt 0 ] || echo "| ours | n/a (server not run) | | | |"
fi
echo
echo "(total $(($(date +%s) - T0)) s)"
