#!/usr/bin/env bash
# Configuration reload and lameduck of redis-cache-dns, black box: the real binary, real
# redis-server, two test upstreams (tests/tools/testdns.py: U1 answers 10.0.0.1, U2 10.0.0.2
# for the same names), dig/kdig and a python client loop.
#
#   S  -threads 2: block test. (no cache: every query goes upstream, so queries are in
#      flight during every swap), health with lameduck, prometheus. Reloads by SIGHUP and
#      SIGUSR1 while a client loop (UDP, TCP on one kept connection, TCP a connection per
#      query) runs throughout; a broken file; a port added and removed; a port that cannot
#      be bound; the `reload 2s` directive; lameduck on SIGTERM.
#   L  -threads 1 (one L1 shard, so "from L1" is observable): block test. with cache and
#      redis_cache; L1 and Redis connections kept or rebuilt by what the reload changed.
source "$(dirname "$0")/lib.sh"

bin="$IT_BUILD/redis-cache-dns"
[ -x "$bin" ] || { not_ok "redis-cache-dns built" "missing $bin"; finish; }
command -v dig >/dev/null && command -v kdig >/dev/null || skip_all "dig/kdig not installed"

mkzone() { # mkzone FILE IP
    {
        echo '$ORIGIN test.'
        echo '$TTL 300'
        echo '@ IN SOA ns.test. hostmaster.test. 1 60 60 60 120'
        echo '@ IN NS ns.test.'
        echo 'ns IN A 127.0.0.1'
        for n in a b c d e f g h l1 l2 l3 l4 r1 r2 r3 p1 p2 z1 z2 z3 z4 z5 z6 lame slow; do
            echo "$n IN A $2"
        done
    } >"$1"
}
mkzone "$IT_TMP/u1.zone" 10.0.0.1
mkzone "$IT_TMP/u2.zone" 10.0.0.2
dns_start "$IT_TMP/u1.zone" || { not_ok "upstream U1 started"; finish; }
U1=$DNS_PORT U1CTL=$DNS_CTL
dns_start "$IT_TMP/u2.zone" || { not_ok "upstream U2 started"; finish; }
U2=$DNS_PORT U2CTL=$DNS_CTL
rport=$(redis_start r1) || { not_ok "redis started"; finish; }
# slow.test takes 300 ms upstream: queries for it are in flight during every swap
for c in "$U1CTL" "$U2CTL"; do DNS_CTL=$c dns_ctl 'mode slow.test. slow 300' >/dev/null; done

count() { # count CTLPORT NAME: queries the upstream got for NAME A
    DNS_CTL=$1 dns_ctl "count $2 A"
}
q() { local port=$1; shift; dig +tries=1 +time=3 @127.0.0.1 -p "$port" "$@"; }
short() { q "$1" "$2" A +short 2>&1; }
# wait_for SECONDS CMD...: until CMD succeeds
wait_for() {
    local secs=$1 i; shift
    for i in $(seq $((secs * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    return 1
}
answers() { [ "$(short "$1" "$2")" = "$3" ]; }
count_above() { [ "$(count "$1" "$2")" -gt "$3" ]; }
redis_has_keys() { [ "$(rcli "$rport" DBSIZE)" -ge 1 ]; }
redis_has_clients() { [ -n "$(redis_ids)" ]; }
log_has() { grep -q -- "$2" "$IT_TMP/$1.err"; }
log_count() { grep -c -- "$2" "$IT_TMP/$1.err"; }

# srv_start NAME THREADS: starts the server on $IT_TMP/NAME.conf (written by the caller),
# waits until PORT answers TCP. Sets SRV_PID_NAME.
srv_start() {
    local name=$1 threads=$2 port=$3 pid
    "$bin" -conf "$IT_TMP/$name.conf" -threads "$threads" >"$IT_TMP/$name.out" \
        2>"$IT_TMP/$name.err" &
    pid=$!
    IT_PIDS+=("$pid")
    if wait_port "$port" 10 && kill -0 "$pid" 2>/dev/null; then
        printf -v "SRV_PID_$name" '%s' "$pid"
        return 0
    fi
    echo "srv_start $name failed: $(tail -n 5 "$IT_TMP/$name.err")" >&2
    return 1
}

# ---- S: the drop-free swap ------------------------------------------------------------------
SP=$(free_port) HP=$(free_port) PP=$(free_port) P2=$(free_port)
s_conf() { # s_conf UPSTREAM [EXTRA DIRECTIVES] [EXTRA BLOCKS]
    printf 'test:%s {\n    bind 127.0.0.1\n    errors\n    health 127.0.0.1:%s {\n        lameduck 3s\n    }\n    prometheus 127.0.0.1:%s\n    forward . 127.0.0.1:%s\n%s\n}\n%s\n' \
        "$SP" "$HP" "$PP" "$1" "${2:-}" "${3:-}" >"$IT_TMP/S.conf.new"
    mv "$IT_TMP/S.conf.new" "$IT_TMP/S.conf"
}
s_conf "$U1"
srv_start S 2 "$SP" || { not_ok "server S started"; finish; }
S=$SRV_PID_S
[ "$(short "$SP" a.test)" = 10.0.0.1 ] && ok "S answers through U1" || not_ok "S answers through U1" "$(short "$SP" a.test)"

cat >"$IT_TMP/loop.py" <<'EOF'
# Client loop: UDP, TCP on one connection kept open, TCP one connection per query; every
# query must get a NOERROR answer with one A record. Runs until the stop file appears.
import os, random, socket, struct, sys, threading, time
port, stop, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
lock = threading.Lock()
st = {"total": 0, "fail": 0, "10.0.0.1": 0, "10.0.0.2": 0, "udp": 0, "tcp": 0}
errs = []
def query(name):
    qid = random.randrange(65536)
    wire = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
    return qid, struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + wire + struct.pack(">HH", 1, 1)
def check(qid, r, proto):
    with lock:
        st["total"] += 1
        ok = len(r) >= 16 and struct.unpack(">H", r[:2])[0] == qid and (r[3] & 0xF) == 0 \
            and struct.unpack(">H", r[6:8])[0] == 1
        if ok:
            ip = ".".join(str(b) for b in r[-4:])
            st[ip] = st.get(ip, 0) + 1
            st[proto] += 1
        else:
            st["fail"] += 1
            errs.append("%s bad reply %r" % (proto, r[:12]))
def fail(why):
    with lock:
        st["total"] += 1
        st["fail"] += 1
        errs.append(why)
def recv_frame(s):
    buf = b""
    while len(buf) < 2:
        d = s.recv(2 - len(buf))
        if not d: raise OSError("closed")
        buf += d
    n = struct.unpack(">H", buf)[0]
    buf = b""
    while len(buf) < n:
        d = s.recv(n - len(buf))
        if not d: raise OSError("closed")
        buf += d
    return buf
names = ["a.test", "b.test", "c.test", "d.test"]
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    while not os.path.exists(stop):
        qid, m = query(random.choice(names))
        s.sendto(m, ("127.0.0.1", port))
        try:
            while True:
                r, _ = s.recvfrom(4096)
                if r[:2] == m[:2]: break
            check(qid, r, "udp")
        except OSError as e:
            fail("udp: %s" % e)
        time.sleep(0.002)
def tcp_kept():
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    while not os.path.exists(stop):
        qid, m = query(random.choice(names))
        try:
            s.sendall(struct.pack(">H", len(m)) + m)
            check(qid, recv_frame(s), "tcp")
        except OSError as e:
            fail("tcp kept: %s" % e)
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
        time.sleep(0.002)
def tcp_each():
    while not os.path.exists(stop):
        qid, m = query(random.choice(names))
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(struct.pack(">H", len(m)) + m)
            check(qid, recv_frame(s), "tcp")
            s.close()
        except OSError as e:
            fail("tcp: %s" % e)
        time.sleep(0.005)
def udp_slow():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    pending = {}
    while not os.path.exists(stop):
        # 8 slow queries at once, then their answers
        for _ in range(8):
            qid, m = query("slow.test")
            s.sendto(m, ("127.0.0.1", port))
            pending[m[:2]] = qid
        try:
            while pending:
                r, _ = s.recvfrom(4096)
                if r[:2] in pending: check(pending.pop(r[:2]), r, "udp")
        except OSError as e:
            for _ in pending: fail("udp slow: %s" % e)
            pending.clear()
ts = [threading.Thread(target=f) for f in (udp, udp, tcp_kept, tcp_each, udp_slow)]
for t in ts: t.start()
for t in ts: t.join()
with open(out, "w") as f:
    f.write(" ".join("%s=%d" % kv for kv in sorted(st.items())) + "\n")
    for e in errs[:10]: f.write("# " + e + "\n")
EOF
"$IT_PY" "$IT_TMP/loop.py" "$SP" "$IT_TMP/loop.stop" "$IT_TMP/loop.out" &
loop_pid=$!
sleep 1

# SIGHUP: U1 -> U2
s_conf "$U2"
kill -HUP "$S"
if wait_for 10 answers "$SP" e.test 10.0.0.2; then ok "SIGHUP: the changed upstream answers (10.0.0.2)"
else not_ok "SIGHUP: the changed upstream answers" "$(short "$SP" e.test) $(tail -3 "$IT_TMP/S.err")"; fi
log_has S "\[INFO\] reload: SIGHUP: .*S.conf: 1 server block; listeners 1 kept, 0 added, 0 removed" &&
    ok "one [INFO] reload line: listeners kept" || not_ok "one [INFO] reload line" "$(cat "$IT_TMP/S.err")"
sleep 1
# SIGUSR1: U2 -> U1
s_conf "$U1"
kill -USR1 "$S"
if wait_for 10 answers "$SP" f.test 10.0.0.1; then ok "SIGUSR1: the changed upstream answers (10.0.0.1)"
else not_ok "SIGUSR1: the changed upstream answers" "$(short "$SP" f.test)"; fi
sleep 1
# a few more swaps back and forth under load
for up in "$U2" "$U1" "$U2" "$U1"; do s_conf "$up"; kill -HUP "$S"; sleep 0.4; done
sleep 1
touch "$IT_TMP/loop.stop"
wait "$loop_pid"
res=$(head -1 "$IT_TMP/loop.out")
total=$(sed -n 's/.*total=\([0-9]*\).*/\1/p' <<<"$res")
fails=$(sed -n 's/.*fail=\([0-9]*\).*/\1/p' <<<"$res")
n1=$(sed -n 's/.*10\.0\.0\.1=\([0-9]*\).*/\1/p' <<<"$res")
n2=$(sed -n 's/.*10\.0\.0\.2=\([0-9]*\).*/\1/p' <<<"$res")
if [ "${fails:-1}" = 0 ] && [ "${total:-0}" -ge 300 ] && [ "${n1:-0}" -gt 0 ] && [ "${n2:-0}" -gt 0 ]; then
    ok "client loop through 6 reloads: $total queries (UDP and TCP), none failed or unanswered"
else not_ok "client loop through 6 reloads: none failed" "$(cat "$IT_TMP/loop.out")"; fi
[ "$(log_count S '\[INFO\] reload:')" = 6 ] && ok "six reloads logged" ||
    not_ok "six reloads logged" "$(grep reload "$IT_TMP/S.err")"

# a broken file: the old configuration keeps serving, the error names FILE:LINE
printf 'test:%s {\n    bind 127.0.0.1\n    bogus_directive x\n    forward . 127.0.0.1:%s\n}\n' "$SP" "$U2" >"$IT_TMP/S.conf"
kill -HUP "$S"
if wait_for 10 log_has S "\[ERROR\] reload: .*S.conf:3: bogus_directive: unknown directive"; then
    ok "broken file: [ERROR] reload: FILE:3: NAME: WHAT"
else not_ok "broken file: [ERROR] reload: FILE:LINE" "$(tail -3 "$IT_TMP/S.err")"; fi
[ "$(short "$SP" g.test)" = 10.0.0.1 ] && ok "broken file: the old configuration keeps serving" ||
    not_ok "broken file: the old configuration keeps serving" "$(short "$SP" g.test)"

# a port that cannot be bound (Redis holds it): the reload fails as a whole
s_conf "$U2" "" "other.:$rport {
    bind 127.0.0.1
    forward . 127.0.0.1:$U2
}"
kill -HUP "$S"
if wait_for 10 log_has S "\[ERROR\] reload: listen 127.0.0.1:$rport/tcp: Address already in use"; then
    ok "a bind error fails the reload with a clear message"
else not_ok "a bind error fails the reload" "$(tail -3 "$IT_TMP/S.err")"; fi
[ "$(short "$SP" h.test)" = 10.0.0.1 ] && ok "bind error: the old configuration keeps serving" ||
    not_ok "bind error: the old configuration keeps serving" "$(short "$SP" h.test)"

# a port added by a reload answers; removed again, it stops
s_conf "$U1" "" "test:$P2 {
    bind 127.0.0.1
    forward . 127.0.0.1:$U2
}"
kill -HUP "$S"
if wait_for 10 answers "$P2" p1.test 10.0.0.2; then
    out=$(kdig +tcp +retry=0 +timeout=3 @127.0.0.1 -p "$P2" p2.test A +short 2>&1)
    [ "$out" = 10.0.0.2 ] && ok "a port added by reload answers (UDP and TCP)" ||
        not_ok "a port added by reload answers over TCP" "$out"
else not_ok "a port added by reload answers" "$(short "$P2" p1.test) $(tail -3 "$IT_TMP/S.err")"; fi
log_has S "listeners 1 kept, 1 added, 0 removed" && ok "reload log: 1 kept, 1 added" ||
    not_ok "reload log: 1 kept, 1 added" "$(grep reload "$IT_TMP/S.err" | tail -2)"
# a slow query in flight on the port being removed is still answered
slow0=$(count "$U2CTL" slow.test)
(short "$P2" slow.test >"$IT_TMP/inflight.out") &
inflight_pid=$!
wait_for 5 count_above "$U2CTL" slow.test "$slow0" # it reached the upstream
s_conf "$U1"
kill -HUP "$S"
wait_for 10 log_has S "listeners 1 kept, 0 added, 1 removed"
wait "$inflight_pid"
[ "$(cat "$IT_TMP/inflight.out")" = 10.0.0.2 ] && ok "a query in flight on a removed port is answered" ||
    not_ok "a query in flight on a removed port is answered" "$(cat "$IT_TMP/inflight.out")"
out=$(kdig +tcp +retry=0 +timeout=2 @127.0.0.1 -p "$P2" p1.test A 2>&1)
if ! grep -q "NXDOMAIN\|NOERROR" <<<"$out"; then ok "a port removed by reload stops answering"
else not_ok "a port removed by reload stops answering" "$out"; fi
[ "$(short "$SP" a.test)" = 10.0.0.1 ] && ok "the kept port still answers" ||
    not_ok "the kept port still answers" "$(short "$SP" a.test)"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PP/metrics")
m=$(curl -s "http://127.0.0.1:$PP/metrics" | grep -c '^coredns_dns_requests_total{')
[ "$code" = 200 ] && [ "$m" -gt 0 ] && ok "/metrics after reloads (200, requests family present)" ||
    not_ok "/metrics after reloads" "code=$code m=$m"
# the broken file and the bind conflict: two failed reloads (CoreDNS's reload metric)
failed=$(curl -s "http://127.0.0.1:$PP/metrics" | sed -n 's/^coredns_reload_failed_total //p')
[ "$failed" = 2 ] && ok "coredns_reload_failed_total counts the two failed reloads" ||
    not_ok "coredns_reload_failed_total counts the two failed reloads" "got '$failed'"

# the `reload 2s` directive (added by a SIGHUP) picks up the next edit by itself
s_conf "$U1" "    reload 2s"
kill -HUP "$S"
wait_for 10 log_has S "reload: SIGHUP.*" || true
n0=$(log_count S '\[INFO\] reload: file changed')
sleep 0.5
s_conf "$U2" "    reload 2s"
if wait_for 15 answers "$SP" z1.test 10.0.0.2; then ok "reload 2s: an edited file is reloaded without a signal"
else not_ok "reload 2s: an edited file is reloaded without a signal" "$(tail -3 "$IT_TMP/S.err")"; fi
[ "$(log_count S '\[INFO\] reload: file changed')" -gt "$n0" ] && ok "reload 2s: logged as 'file changed'" ||
    not_ok "reload 2s: logged as 'file changed'" "$(tail -3 "$IT_TMP/S.err")"
sleep 3 # unchanged file: no reload
n1=$(log_count S '\[INFO\] reload: file changed')
sleep 3
[ "$(log_count S '\[INFO\] reload: file changed')" = "$n1" ] && ok "reload 2s: an unchanged file is not reloaded" ||
    not_ok "reload 2s: an unchanged file is not reloaded" "$(grep reload "$IT_TMP/S.err" | tail -3)"

# ---- L: what is kept ------------------------------------------------------------------------
LP=$(free_port)
l_conf() { # l_conf CACHE_LINE REDIS_EXTRA UPSTREAM
    printf 'test:%s {\n    bind 127.0.0.1\n    %s\n    redis_cache {\n        endpoint 127.0.0.1:%s\n%s\n    }\n    forward . 127.0.0.1:%s\n}\n' \
        "$LP" "$1" "$rport" "${2:-}" "$3" >"$IT_TMP/L.conf"
}
l_conf "cache" "" "$U1"
srv_start L 1 "$LP" || { not_ok "server L started"; finish; }
L=$SRV_PID_L
redis_ids() { rcli "$rport" CLIENT LIST | grep -v 'cmd=client' | sed -n 's/^id=\([0-9]*\) .*/\1/p' | sort | tr '\n' ' '; }

[ "$(short "$LP" l1.test)" = 10.0.0.1 ] && ok "L answers l1.test" || not_ok "L answers l1.test"
wait_for 5 redis_has_keys
ids0=$(redis_ids)
rcli "$rport" FLUSHALL >/dev/null # from now on only L1 can answer l1.test without U1
c0=$(count "$U1CTL" l1.test)
l_conf "cache" "" "$U2" # forward changed, cache and redis_cache unchanged
kill -HUP "$L"
wait_for 10 answers "$LP" l2.test 10.0.0.2
out=$(short "$LP" l1.test)
c1=$(count "$U1CTL" l1.test)
c1b=$(count "$U2CTL" l1.test)
if [ "$out" = 10.0.0.1 ] && [ "$c1" = "$c0" ] && [ "$c1b" = 0 ]; then
    ok "cache block unchanged: L1 kept (answer from before the reload, no upstream asked)"
else not_ok "cache block unchanged: L1 kept" "out=$out U1 $c0->$c1 U2 $c1b"; fi
log_has L "kept cache 1, redis_cache 1, forward 0" && ok "reload log: kept cache 1, redis_cache 1, forward 0" ||
    not_ok "reload log: kept cache, redis_cache" "$(grep reload "$IT_TMP/L.err")"
short "$LP" l3.test >/dev/null
ids1=$(redis_ids)
if [ -n "$ids0" ] && [ "$ids0" = "$ids1" ]; then ok "redis_cache unchanged: the same Redis connections (ids $ids1)"
else not_ok "redis_cache unchanged: the same Redis connections" "before: $ids0 after: $ids1"; fi

rcli "$rport" FLUSHALL >/dev/null
l_conf "cache 60" "        success 120" "$U2" # both changed
kill -HUP "$L"
wait_for 10 log_has L "kept cache 0, redis_cache 0, forward 1"
out=$(short "$LP" l1.test)
c2=$(count "$U2CTL" l1.test)
if [ "$out" = 10.0.0.2 ] && [ "$c2" = 1 ]; then ok "cache block changed: L1 rebuilt (the name is asked upstream again)"
else not_ok "cache block changed: L1 rebuilt" "out=$out U2 count=$c2 $(grep reload "$IT_TMP/L.err")"; fi
short "$LP" l4.test >/dev/null
wait_for 5 redis_has_clients
ids2=$(redis_ids)
common=$(comm -12 <(tr ' ' '\n' <<<"$ids1" | sed '/^$/d' | sort) <(tr ' ' '\n' <<<"$ids2" | sed '/^$/d' | sort))
if [ -n "$ids2" ] && [ -z "$common" ]; then ok "redis_cache changed: new Redis connections, the old ones closed"
else not_ok "redis_cache changed: new Redis connections" "before: $ids1 after: $ids2"; fi
kill -TERM "$L"
wait "$L"; rc=$?
[ $rc = 0 ] && ok "L: SIGTERM exits 0 after reloads" || not_ok "L: SIGTERM exits 0" "rc=$rc $(tail -3 "$IT_TMP/L.err")"

# ---- lameduck ---------------------------------------------------------------------------------
t0=$(date +%s.%N)
kill -TERM "$S"
sleep 0.5
out=$(short "$SP" lame.test)
hc=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HP/health")
kill -0 "$S" 2>/dev/null && [ "$out" = 10.0.0.2 ] && [ "$hc" = 200 ] &&
    ok "lameduck: still answering and /health 200 after SIGTERM" ||
    not_ok "lameduck: still answering after SIGTERM" "out=$out health=$hc"
sleep 1
out=$(short "$SP" lame.test)
[ "$out" = 10.0.0.2 ] && ok "lameduck: still answering 1.5 s after SIGTERM" ||
    not_ok "lameduck: still answering 1.5 s after SIGTERM" "$out"
wait "$S"; rc=$?
t1=$(date +%s.%N)
el=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
if [ $rc = 0 ] && awk -v e="$el" 'BEGIN { exit !(e >= 2.9) }'; then
    ok "lameduck 3s: exit 0 after ${el}s"
else not_ok "lameduck 3s: exit 0 after about 3 s" "rc=$rc elapsed=$el $(tail -3 "$IT_TMP/S.err")"; fi
log_has S "lameduck 3s, then shutting down" && ok "lameduck logged" || not_ok "lameduck logged" "$(tail -3 "$IT_TMP/S.err")"

finish
