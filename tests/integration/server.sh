#!/usr/bin/env bash
# redis-cache-dns as a black box: the real binary ($BUILD/redis-cache-dns), real redis-server,
# the test upstream tests/tools/testdns.py, queried with dig and kdig. Every server runs on
# free loopback ports with Corefiles written here.
#
#   A  -threads 1, cache + redis_cache (success 60) + forward + log + prometheus
#   B  -threads 2, redis_cache + forward (no L1: a repeat is an L2 hit), same Redis as A
#   C  redis_cache pointed at a port nothing listens on (Redis down from the start)
source "$(dirname "$0")/lib.sh"

bin="$IT_BUILD/redis-cache-dns"
[ -x "$bin" ] || { not_ok "redis-cache-dns built" "missing $bin"; finish; }
command -v dig >/dev/null && command -v kdig >/dev/null || skip_all "dig/kdig not installed"

zone="$IT_TMP/test.zone"
{
    echo '$ORIGIN test.'
    echo '$TTL 300'
    echo '@ IN SOA ns.test. hostmaster.test. 1 60 60 60 120'
    echo '@ IN NS ns.test.'
    echo 'ns IN A 127.0.0.1'
    for n in a b c mixed t1 t2 t3 t4 t5 k1 k2 k3 s1 s2 s3 s4 r1 r2 m1 p1 p2 p3 slow; do echo "$n IN A 192.0.2.1"; done
    # 70 A records: ~1,150 bytes, over 512 (truncated over UDP without EDNS)
    for i in $(seq 1 70); do echo "big IN A 10.0.0.$i"; done
} >"$zone"
dns_start "$zone" || { not_ok "testdns started"; finish; }
rport=$(redis_start r1) || { not_ok "redis started"; finish; }

# srv_start NAME THREADS CORE_BODY: writes $IT_TMP/NAME.conf for a block `test:PORT`, starts
# the server (pid in SRV_PID_NAME, DNS port in SRV_PORT_NAME), waits for its TCP port.
srv_start() {
    local name=$1 threads=$2 body=$3 port attempt pid
    for attempt in 1 2 3; do
        port=$(free_port)
        printf 'test:%s {\n    bind 127.0.0.1\n%s\n}\n' "$port" "$body" >"$IT_TMP/$name.conf"
        "$bin" -conf "$IT_TMP/$name.conf" -threads "$threads" >"$IT_TMP/$name.out" \
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

promA=$(free_port) healthA=$(free_port) readyA=$(free_port)
srv_start A 1 "    errors
    health 127.0.0.1:$healthA
    ready 127.0.0.1:$readyA
    log
    cache
    redis_cache {
        endpoint 127.0.0.1:$rport
        success 60
    }
    forward . 127.0.0.1:$DNS_PORT
    prometheus 127.0.0.1:$promA" || { not_ok "server A started"; finish; }
promB=$(free_port)
srv_start B 2 "    redis_cache {
        endpoint 127.0.0.1:$rport
        success 60
    }
    forward . 127.0.0.1:$DNS_PORT
    prometheus 127.0.0.1:$promB" || { not_ok "server B started"; finish; }
dead=$(free_port)
srv_start C 2 "    cache
    redis_cache {
        endpoint 127.0.0.1:$dead
    }
    forward . 127.0.0.1:$DNS_PORT" || { not_ok "server C started"; finish; }
A=$SRV_PORT_A B=$SRV_PORT_B C=$SRV_PORT_C

q() { local port=$1; shift; dig +tries=1 +time=3 @127.0.0.1 -p "$port" "$@"; }
count() { dns_ctl "count $1 ${2:-A}"; }
metric_sum() { # metric_sum PORT NAME: sum of every series of NAME
    curl -s "http://127.0.0.1:$1/metrics" | awk -v n="$2" \
        'index($0, n) == 1 && (substr($0, length(n) + 1, 1) == "{" || substr($0, length(n) + 1, 1) == " ") { s += $NF } END { print s + 0 }'
}

# ---- command line -------------------------------------------------------------------------
out=$("$bin" -version 2>&1)
[ "$out" = "redis-cache-dns 0.1.0" ] && ok "-version" || not_ok "-version" "$out"

printf 'test:53 {\n    errors\n    bogus_directive x\n}\n' >"$IT_TMP/bad.conf"
out=$("$bin" -conf "$IT_TMP/bad.conf" -check 2>&1); rc=$?
if [ $rc -eq 1 ] && grep -q "bad.conf:3: bogus_directive" <<<"$out"; then ok "-check: FILE:LINE, exit 1"
else not_ok "-check: FILE:LINE, exit 1" "rc=$rc: $out"; fi
out=$("$bin" -conf "$IT_TMP/A.conf" -check 2>&1); rc=$?
[ $rc -eq 0 ] && ok "-check on a good file exits 0" || not_ok "-check on a good file exits 0" "rc=$rc: $out"

m_req0=$(metric_sum "$promA" coredns_dns_requests_total)

# ---- miss on A, L2 hit on B, L1 hit on A ----------------------------------------------------
out=$(q "$A" a.test A +noall +answer)
ttl=$(awk '$4 == "A" { print $2; exit }' <<<"$out")
if grep -q "192.0.2.1" <<<"$out" && [ -n "$ttl" ] && [ "$ttl" -le 60 ]; then
    ok "UDP answer through forward, TTL clamped to success 60 (got $ttl)"
else not_ok "UDP answer through forward, TTL clamped" "$out"; fi
sleep 0.3 # the SET is written after the reply
out=$(q "$B" a.test A +noall +answer)
n=$(count a.test)
if grep -q "192.0.2.1" <<<"$out" && [ "$n" = 1 ]; then ok "second instance: L2 hit, upstream asked once"
else not_ok "second instance: L2 hit, upstream asked once" "count=$n $out"; fi
out=$(q "$A" a.test A +short)
n=$(count a.test)
if [ "$out" = 192.0.2.1 ] && [ "$n" = 1 ] && grep -q "a.test. A NOERROR .* L1 udp" "$IT_TMP/A.out"; then
    ok "L1 hit: upstream count unchanged, log says L1"
else not_ok "L1 hit" "count=$n out=$out log: $(cat "$IT_TMP/A.out")"; fi
grep -q "a.test. A NOERROR .* upstream udp" "$IT_TMP/A.out" && ok "log: first query answered upstream" ||
    not_ok "log: first query answered upstream" "$(cat "$IT_TMP/A.out")"

out=$(kdig +tcp +retry=0 +timeout=3 @127.0.0.1 -p "$A" b.test A +short 2>&1)
[ "$out" = 192.0.2.1 ] && ok "TCP answer" || not_ok "TCP answer" "$out"
# several queries on one TCP connection (RFC 7766 pipelining)
out=$(kdig +tcp +keepopen +retry=0 +timeout=3 @127.0.0.1 -p "$A" t1.test A t2.test A t3.test A +short 2>&1)
[ "$(grep -c 192.0.2.1 <<<"$out")" = 3 ] && ok "TCP: three queries on one connection" ||
    not_ok "TCP: three queries on one connection" "$out"

# pipelined: three queries in one write, the first slow upstream; replies as they complete
dns_ctl 'mode p1.test. slow 400' >/dev/null
out=$("$IT_PY" - "$A" <<'EOF'
import socket, struct, sys
def q(i, name):
    wire = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
    m = struct.pack(">HHHHHH", i, 0x0100, 1, 0, 0, 0) + wire + struct.pack(">HH", 1, 1)
    return struct.pack(">H", len(m)) + m
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3)
s.sendall(q(1, "p1.test") + q(2, "p2.test") + q(3, "p3.test"))
buf, ids = b"", []
while len(ids) < 3:
    d = s.recv(4096)
    if not d: break
    buf += d
    while len(buf) >= 2 and len(buf) >= 2 + struct.unpack(">H", buf[:2])[0]:
        n = struct.unpack(">H", buf[:2])[0]
        ids.append(struct.unpack(">H", buf[2:4])[0]); buf = buf[2 + n:]
print(" ".join(map(str, ids)))
EOF
)
if [ "$(tr ' ' '\n' <<<"$out" | sort | tr '\n' ' ')" = "1 2 3 " ] && [ "${out##* }" = 1 ]; then
    ok "TCP pipelining: three queries in one write, slow one answered last ($out)"
else not_ok "TCP pipelining, out-of-order replies" "ids: $out"; fi

# ---- negative caching -----------------------------------------------------------------------
out1=$(q "$A" nx.test A)
sleep 0.3
out2=$(q "$B" nx.test A)
n=$(count nx.test)
if grep -q "status: NXDOMAIN" <<<"$out2" && grep -q "SOA" <<<"$out2" && [ "$n" = 1 ] &&
    grep -q "status: NXDOMAIN" <<<"$out1"; then
    ok "cached NXDOMAIN keeps rcode and SOA (L2 hit on B)"
else not_ok "cached NXDOMAIN keeps rcode and SOA" "count=$n $out2"; fi

# ---- 0x20, truncation, errors ---------------------------------------------------------------
out=$(q "$A" MiXeD.TeSt A +noall +question +answer)
if grep -q "^;MiXeD.TeSt." <<<"$out" && grep -q "192.0.2.1" <<<"$out"; then ok "0x20: question case echoed"
else not_ok "0x20: question case echoed" "$out"; fi
out=$(q "$A" MIXED.test A +noall +question +answer) # now an L1 hit, other case
grep -q "^;MIXED.test." <<<"$out" && ok "0x20 on an L1 hit" || not_ok "0x20 on an L1 hit" "$out"

out=$(q "$A" big.test A +noedns +ignore)
if grep -q "flags:.* tc" <<<"$out"; then ok "1,000-byte answer over UDP without EDNS: TC"
else not_ok "1,000-byte answer over UDP without EDNS: TC" "$out"; fi
out=$(kdig +tcp +retry=0 +timeout=3 @127.0.0.1 -p "$A" big.test A +short 2>&1)
[ "$(grep -c '^10\.0\.0\.' <<<"$out")" = 70 ] && ok "same answer whole over TCP" ||
    not_ok "same answer whole over TCP" "$(head -5 <<<"$out")"
out=$(q "$A" big.test A +noedns +ignore) # from L1 now
grep -q "flags:.* tc" <<<"$out" && ok "L1 hit truncated for a 512-byte client" ||
    not_ok "L1 hit truncated for a 512-byte client" "$out"

out=$(q "$A" example.com A)
grep -q "status: REFUSED" <<<"$out" && ok "outside every zone: REFUSED" || not_ok "REFUSED" "$out"
out=$(q "$A" a.test A +edns=1 +noednsneg)
grep -q "status: BADVERS" <<<"$out" && ok "EDNS version 1: BADVERS" || not_ok "BADVERS" "$out"
out=$(q "$A" a.test A +opcode=2)
grep -q "status: NOTIMP" <<<"$out" && ok "opcode STATUS: NOTIMP" || not_ok "NOTIMP" "$out"

# raw datagrams: FORMERR for a readable header, nothing for QR=1, then 1,000 random ones
out=$("$IT_PY" - "$A" <<'EOF'
import os, random, socket, struct, sys
port = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.0)
# header says one question, none follows
s.sendto(struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0), ("127.0.0.1", port))
try:
    r, _ = s.recvfrom(4096)
    print("formerr" if r[:2] == b"\x12\x34" and (r[3] & 0xF) == 1 and r[2] & 0x80 else "bad")
except socket.timeout:
    print("noreply")
# a response (QR=1) must be dropped
s.sendto(struct.pack(">HHHHHH", 0x4321, 0x8100, 0, 0, 0, 0), ("127.0.0.1", port))
try:
    s.recvfrom(4096)
    print("qr-answered")
except socket.timeout:
    print("qr-dropped")
for _ in range(1000):
    s.sendto(os.urandom(random.randint(0, 600)), ("127.0.0.1", port))
EOF
)
grep -q formerr <<<"$out" && ok "malformed query: FORMERR" || not_ok "malformed query: FORMERR" "$out"
grep -q qr-dropped <<<"$out" && ok "inbound QR=1 dropped" || not_ok "inbound QR=1 dropped" "$out"
out=$(q "$A" c.test A +short)
[ "$out" = 192.0.2.1 ] && ok "1,000 random datagrams, then a query still answered" ||
    not_ok "answered after random datagrams" "$out"

# ---- metrics --------------------------------------------------------------------------------
m_req1=$(metric_sum "$promA" coredns_dns_requests_total)
m_hit=$(metric_sum "$promA" coredns_cache_hits_total)
m_l2=$(metric_sum "$promB" coredns_redis_cache_hits_total)
body=$(curl -s "http://127.0.0.1:$promA/metrics")
if [ "$m_req1" -gt "$m_req0" ] && [ "$m_hit" -ge 2 ] && [ "$m_l2" -ge 2 ]; then
    ok "metrics move (requests $m_req0 -> $m_req1, L1 hits $m_hit, L2 hits on B $m_l2)"
else not_ok "metrics move" "requests $m_req0 -> $m_req1, cache hits $m_hit, redis hits $m_l2"; fi
dups=$(grep '^# TYPE' <<<"$body" | sort | uniq -d)
if [ -z "$dups" ] && grep -q '^coredns_build_info{version="0.1.0"' <<<"$body" &&
    grep -q 'coredns_forward_requests_total{to="127.0.0.1:' <<<"$body" &&
    grep -q 'coredns_dns_responses_total{server="dns://127.0.0.1:'"$A"'",zone="test.",view="",rcode="NOERROR",plugin="cache"}' <<<"$body"; then
    ok "metrics: each family once, CoreDNS labels"
else not_ok "metrics: each family once, CoreDNS labels" "dups: $dups"; fi
if grep -q '^# TYPE coredns_forward_healthcheck_failures_total counter' <<<"$body" &&
    grep -q 'coredns_forward_healthcheck_failures_total{to="127.0.0.1:' <<<"$body" &&
    grep -q '^coredns_forward_healthcheck_broken_total [0-9]' <<<"$body" &&
    grep -q '^coredns_forward_max_concurrent_rejects_total [0-9]' <<<"$body"; then
    ok "metrics: forward health families (CoreDNS names)"
else not_ok "metrics: forward health families" "$(grep coredns_forward_ <<<"$body" | head -20)"; fi

h=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$healthA/health")
r=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$readyA/ready")
[ "$h $r" = "200 200" ] && ok "/health and /ready answer 200" || not_ok "/health and /ready" "$h $r"

# ---- Redis failures ---------------------------------------------------------------------------
fails=0
for n in k1 k2 k3; do [ "$(q "$C" $n.test A +short)" = 192.0.2.1 ] || fails=$((fails + 1)); done
[ $fails = 0 ] && ok "Redis down from the start: every query answered" ||
    not_ok "Redis down from the start" "$fails unanswered"

redis_stop r1
fails=0
for n in r1 r2; do [ "$(q "$B" $n.test A +short)" = 192.0.2.1 ] || fails=$((fails + 1)); done
[ $fails = 0 ] && ok "Redis killed mid-run: still answered" || not_ok "Redis killed mid-run" "$fails"

redis_restart r1 "$rport"
sleep 0.5
q "$B" m1.test A +short >/dev/null
kill -STOP "$(redis_pid r1)"
fails=0 start=$(date +%s%N)
for n in s1 s2 s3 s4; do [ "$(q "$B" $n.test A +short)" = 192.0.2.1 ] || fails=$((fails + 1)); done
ms=$((($(date +%s%N) - start) / 1000000))
kill -CONT "$(redis_pid r1)"
[ $fails = 0 ] && ok "Redis SIGSTOPped: still answered (4 queries in ${ms} ms)" ||
    not_ok "Redis SIGSTOPped" "$fails unanswered in ${ms} ms"

# ---- SIGTERM ----------------------------------------------------------------------------------
# A query in flight (slow upstream) when SIGTERM arrives is still answered, and the exit is 0.
dns_ctl 'mode slow.test. slow 700' >/dev/null
q "$A" slow.test A +short >"$IT_TMP/slow.out" 2>&1 &
digpid=$!
sleep 0.3
kill -TERM "$SRV_PID_A"
wait "$SRV_PID_A"; rc=$?
wait "$digpid"
if [ $rc = 0 ] && [ "$(cat "$IT_TMP/slow.out")" = 192.0.2.1 ]; then
    ok "SIGTERM with a query in flight: answered, exit 0"
else not_ok "SIGTERM with a query in flight" "rc=$rc dig: $(cat "$IT_TMP/slow.out") $(tail -3 "$IT_TMP/A.err")"; fi
for s in B C; do
    pidv="SRV_PID_$s"
    pid=${!pidv}
    kill -TERM "$pid"
    wait "$pid"
    rc=$?
    [ $rc = 0 ] && ok "SIGTERM: server $s exits 0" || not_ok "SIGTERM: server $s exits 0" "rc=$rc $(tail -3 "$IT_TMP/$s.err")"
done
finish
