#!/usr/bin/env bash
# Self-test of tests/tools/testdns.py with dig and kdig, loopback only. Prints TAP-like
# `ok NAME` / `not ok NAME` lines and exits non-zero when any check fails.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
TESTDNS="$HERE/testdns.py"
# /usr/bin/python3 first: a pyenv shim on PATH costs ~1 s per start
PY=${PYTHON:-$(command -v /usr/bin/python3 || command -v python3)}
for tool in dig kdig "$PY"; do
    command -v "$tool" >/dev/null || { echo "not ok prerequisites # $tool missing"; exit 1; }
done

TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

FAILS=0
N=0
ok()     { N=$((N + 1)); echo "ok $N $1"; }
not_ok() { N=$((N + 1)); FAILS=$((FAILS + 1)); echo "not ok $N $1"; [ $# -gt 1 ] && printf '%s\n' "$2" | sed 's/^/#   /'; }
# check NAME OUTPUT GREP-PATTERN...: every pattern (grep -E) must match OUTPUT
check() {
    local name=$1 out=$2; shift 2
    local p
    for p in "$@"; do
        if ! grep -Eq -- "$p" <<<"$out"; then not_ok "$name" "missing /$p/ in:
$out"; return; fi
    done
    ok "$name"
}
# refute NAME OUTPUT PATTERN: PATTERN must not match
refute() {
    if grep -Eq -- "$3" <<<"$2"; then not_ok "$1" "unexpected /$3/ in:
$2"; else ok "$1"; fi
}
now_ms() { date +%s%3N; }

BIG1=$(printf 'a%.0s' $(seq 250)); BIG2=$(printf 'b%.0s' $(seq 250)); BIG3=$(printf 'c%.0s' $(seq 250))
cat >"$TMP/zone" <<EOF
; test zone for testdns self-test
test.            3600 IN SOA ns.test. hostmaster.test. 1 7200 3600 1209600 300
test.            3600 IN NS  ns.test.
ns.test.         3600 IN A   127.0.0.1
a.test.           300 IN A   192.0.2.1
a.test.           300 IN AAAA 2001:db8::1
www.test.         600 IN CNAME a.test.
far.test.         600 IN CNAME elsewhere.example.
mx.test.          300 IN MX  10 a.test.
txt.test.         300 IN TXT "hello world" "second; not a comment"
srv._tcp.test.    300 IN SRV 1 2 53 ns.test.
1.2.0.192.in-addr.arpa. 300 IN PTR a.test.
2.0.192.in-addr.arpa. 3600 IN SOA ns.test. hostmaster.test. 1 7200 3600 1209600 60
big.test.         900 IN TXT "$BIG1"
big.test.         900 IN TXT "$BIG2"
big.test.         900 IN TXT "$BIG3"
x.y.deep.test.    300 IN A   192.0.2.9
bind.               0 CH SOA ns.bind. hostmaster.bind. 1 2 3 4 5
version.bind.       0 CH TXT "testdns"
EOF

# start_server PORTFILE ARGS...: starts testdns and waits for the port file
start_server() {
    local pf=$1; shift
    rm -f "$pf"
    "$PY" "$TESTDNS" --zone "$TMP/zone" --portfile "$pf" "$@" 2>>"$TMP/server.log" &
    PIDS+=($!)
    SERVER_PID=$!
    for _ in $(seq 200); do
        [ -s "$pf" ] && return 0
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.05
    done
    echo "not ok start # server did not start"; cat "$TMP/server.log"; exit 1
}

start_server "$TMP/ports"
read -r DNSPORT CTLPORT <"$TMP/ports"
MAIN_PID=$SERVER_PID
ok "start (dns $DNSPORT, control $CTLPORT)"

D() { dig @127.0.0.1 -p "$DNSPORT" +timeout=2 +tries=1 "$@" 2>&1; }
K() { kdig @127.0.0.1 -p "$DNSPORT" +timeout=2 +retry=0 "$@" 2>&1; }
# ctl CMD...: one reply line per command, over bash's /dev/tcp (no process start)
ctl() {
    local c line fd
    exec {fd}<>"/dev/tcp/127.0.0.1/$CTLPORT" || return 1
    for c in "$@"; do
        printf '%s\n' "$c" >&"$fd"
        IFS= read -r -t 5 line <&"$fd" || line="err no reply"
        printf '%s\n' "$line"
    done
    printf 'quit\n' >&"$fd"
    exec {fd}>&-
}

# ---- answers
out=$(D a.test A +norec)
check "A over UDP (dig)" "$out" "status: NOERROR" "flags: qr aa;" "^a\.test\.[[:space:]]+300[[:space:]]+IN[[:space:]]+A[[:space:]]+192\.0\.2\.1"
out=$(K +tcp a.test A)
check "A over TCP (kdig)" "$out" "status: NOERROR" "\(TCP\)" "a\.test\.[[:space:]]+300[[:space:]]+IN[[:space:]]+A[[:space:]]+192\.0\.2\.1"
check "AAAA (dig +short)" "$(D +short a.test AAAA)" "^2001:db8::1$"
check "AAAA over TCP (dig +tcp)" "$(D +tcp +short a.test AAAA)" "^2001:db8::1$"
out=$(D www.test A)
check "CNAME chase" "$out" "ANSWER: 2," "^www\.test\..*CNAME[[:space:]]+a\.test\." "^a\.test\..*A[[:space:]]+192\.0\.2\.1"
out=$(D www.test CNAME)
check "CNAME asked directly, no chase" "$out" "ANSWER: 1," "CNAME[[:space:]]+a\.test\."
out=$(D far.test A)
check "CNAME leaving our data" "$out" "status: NOERROR" "ANSWER: 1," "CNAME[[:space:]]+elsewhere\.example\."
out=$(D nope.test A)
check "NXDOMAIN + SOA (TTL=min)" "$out" "status: NXDOMAIN" "flags: qr aa" "AUTHORITY: 1," "^test\.[[:space:]]+300[[:space:]]+IN[[:space:]]+SOA"
out=$(D a.test MX)
check "NODATA + SOA" "$out" "status: NOERROR" "ANSWER: 0," "AUTHORITY: 1," "^test\..*SOA"
out=$(D deep.test A)
check "empty non-terminal is NODATA" "$out" "status: NOERROR" "ANSWER: 0," "AUTHORITY: 1,"
out=$(D example.org A)
check "REFUSED outside the zones" "$out" "status: REFUSED"
out=$(D A.TeSt a)
check "0x20 case echoed" "$out" "^;A\.TeSt\.[[:space:]]+IN[[:space:]]+A" "^A\.TeSt\.[[:space:]]+300[[:space:]]+IN[[:space:]]+A[[:space:]]+192\.0\.2\.1"
out=$(D mx.test MX +short; D txt.test TXT +short; D srv._tcp.test SRV +short; D -x 192.0.2.1 +short)
check "MX TXT SRV PTR" "$out" "^10 a\.test\.$" '^"hello world" "second; not a comment"$' "^1 2 53 ns\.test\.$" "^a\.test\.$"
out=$(D version.bind TXT -c CH)
check "class CH" "$out" "status: NOERROR" 'CH[[:space:]]+TXT[[:space:]]+"testdns"'
out=$(D +dnssec a.test A)
check "EDNS: OPT echoed with DO" "$out" "EDNS: version: 0, flags: do; udp: 1232"
out=$(D +noedns a.test A)
check "no EDNS: no OPT" "$out" "ADDITIONAL: 0"
out=$(D +edns=1 +noednsnegotiation a.test A)
check "EDNS version 1: BADVERS" "$out" "status: BADVERS"

# ---- truncation
out=$(D +noedns +ignore big.test TXT)
check "TC over UDP without EDNS (512)" "$out" "flags: qr aa tc" "ANSWER: 0,"
out=$(D +bufsize=1232 +ignore big.test TXT)
check "fits in EDNS 1232, no TC" "$out" "ANSWER: 3," "flags: qr aa( rd)?;"
out=$(D +noedns +tcp big.test TXT)
check "full answer over TCP" "$out" "ANSWER: 3," "\(TCP\)"
out=$(D +noedns big.test TXT)
check "dig retries over TCP after TC" "$out" "Truncated, retrying in TCP mode" "ANSWER: 3,"
out=$(K +noedns big.test TXT)
check "kdig retries over TCP after TC" "$out" "truncated reply.*retrying over TCP" "ANSWER: 3;"

# ---- TCP pipelining and malformed input
out=$("$PY" - "$DNSPORT" <<'EOF'
import socket, struct, sys, random
port = int(sys.argv[1])
def q(qid, name, qtype=1, qd=1):
    m = struct.pack("!HHHHHH", qid, 0x0100, qd, 0, 0, 0)
    for lab in name.split("."):
        if lab: m += bytes([len(lab)]) + lab.encode()
    return m + b"\0" + struct.pack("!HH", qtype, 1)
s = socket.create_connection(("127.0.0.1", port), timeout=3)
s.sendall(b"".join(struct.pack("!H", len(m)) + m for m in
                   (q(1, "a.test"), q(2, "www.test"), q(3, "nope.test"))))
f = s.makefile("rb")
for _ in range(3):
    n = struct.unpack("!H", f.read(2))[0]
    r = f.read(n)
    qid, flags = struct.unpack_from("!HH", r)
    print("tcp id=%d rcode=%d" % (qid, flags & 15))
s.close()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(2)
def ask(m):
    u.sendto(m, ("127.0.0.1", port))
    try: return u.recv(65535)
    except socket.timeout: return None
r = ask(q(7, "a.test", qd=2))
print("formerr", r is not None and struct.unpack_from("!HH", r) == (7, 0x8101))
u.settimeout(0.5)
print("short dropped", ask(b"\x01\x02\x03") is None)
rnd = random.Random(1)
for i in range(300):
    m = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 80)))
    if i % 2: m = q(i, "a.test")[:rnd.randint(12, 25)] + m
    u.sendto(m, ("127.0.0.1", port))
u.settimeout(0.3)
try:
    while True: u.recv(65535)
except socket.timeout: pass
u.settimeout(2)
r = ask(q(9, "a.test"))
print("alive after junk", r is not None and struct.unpack_from("!H", r)[0] == 9)
EOF
)
check "TCP: several queries per connection" "$out" "tcp id=1 rcode=0" "tcp id=2 rcode=0" "tcp id=3 rcode=3"
check "FORMERR for QDCOUNT=2" "$out" "formerr True"
check "too short: dropped" "$out" "short dropped True"
check "survives random input" "$out" "alive after junk True"

# ---- misbehaviour
ctl reset >/dev/null
check "mode wrong_question" "$(ctl 'mode a.test wrong_question')
$(D +timeout=1 a.test A)" "^ok$" "Question section mismatch: got wrong-question\.invalid/A/IN"
check "mode wrong_question (kdig)" "$(K a.test A)" "question sections are different"
ctl 'mode A.TEST. wrong_id' >/dev/null
check "mode wrong_id" "$(D +timeout=1 a.test A)" "ID mismatch"
ctl 'mode a.test servfail' >/dev/null
check "mode servfail" "$(D a.test A)" "status: SERVFAIL"
ctl 'mode a.test refused' >/dev/null
check "mode refused" "$(D a.test A)" "status: REFUSED"
ctl 'mode a.test nxdomain' >/dev/null
check "mode nxdomain" "$(D a.test A)" "status: NXDOMAIN" "^test\..*SOA"
ctl 'mode a.test ttl 7' >/dev/null
check "mode ttl 7" "$(D a.test A)" "^a\.test\.[[:space:]]+7[[:space:]]+IN[[:space:]]+A"
ctl 'mode a.test tc' >/dev/null
check "mode tc: TC over UDP" "$(D +ignore a.test A)" "flags: qr aa tc" "ANSWER: 0,"
check "mode tc: full over TCP" "$(D +tcp a.test A)" "ANSWER: 1," "192\.0\.2\.1"
ctl 'mode a.test garbage' >/dev/null
out=$(K +timeout=1 a.test A)
check "mode garbage" "$out" "malformed reply|reply ID|failed to query|not set"
refute "mode garbage gives no answer" "$out" "192\.0\.2\.1"

ctl 'mode a.test slow 800' >/dev/null
t0=$(now_ms); D +tcp www.test A >"$TMP/slow_tcp" & SLOWPID=$!
out=$(D +short a.test A); t1=$(now_ms)
t2=$(now_ms); fast=$(D +short ns.test A); t3=$(now_ms)
wait "$SLOWPID"
if [ "$out" = 192.0.2.1 ] && [ $((t1 - t0)) -ge 700 ]; then ok "mode slow 800 delays ($((t1 - t0)) ms)"
else not_ok "mode slow 800 delays" "got '$out' after $((t1 - t0)) ms"; fi
if [ "$fast" = 127.0.0.1 ] && [ $((t3 - t2)) -lt 500 ]; then ok "slow does not block others ($((t3 - t2)) ms)"
else not_ok "slow does not block others" "got '$fast' after $((t3 - t2)) ms"; fi

ctl 'mode a.test silent' >/dev/null
t0=$(now_ms); out=$(D +timeout=1 +tries=1 a.test A); rc=$?; t1=$(now_ms)
if grep -q "timed out" <<<"$out" && [ $((t1 - t0)) -lt 3000 ]; then ok "mode silent times out ($((t1 - t0)) ms)"
else not_ok "mode silent times out" "$out"; fi
out=$(K +tcp +timeout=1 a.test A)
check "mode silent over TCP" "$out" "timeout|failed"

ctl 'mode a.test normal' 'mode * silent' >/dev/null
check "global mode: * silent" "$(D +timeout=1 ns.test A)" "timed out"
check "global mode: per-name normal wins" "$(D +short a.test A)" "^192\.0\.2\.1$"
ctl 'mode * normal' >/dev/null
check "global mode cleared" "$(D +short ns.test A)" "^127\.0\.0\.1$"

# ---- counters and control
ctl reset >/dev/null
D a.test A >/dev/null; D A.Test A >/dev/null; D +tcp a.test A >/dev/null; D a.test AAAA >/dev/null
K +tcp nope.test TXT >/dev/null
out=$(ctl 'count a.test. A' 'count a.test *' 'count A.TEST A tcp' 'count a.test a udp' \
          'count nope.test TXT' 'total' 'total tcp' 'count * *' 'last a.test')
expect="3
4
1
2
1
5
2
5"
if [ "$(head -8 <<<"$out")" = "$expect" ]; then ok "counters"; else not_ok "counters" "$out"; fi
check "last query details" "$(tail -1 <<<"$out")" "^proto=udp .*qname=a\.test\. qtype=AAAA qclass=IN rd=1"
check "control: errors" "$(ctl 'mode a.test bogus'; ctl 'frobnicate')" "^err unknown mode" "^err unknown command"
check "control: add" "$(ctl 'add new.test. 60 IN A 192.0.2.99'; D +short new.test A)" "^ok$" "^192\.0\.2\.99$"
check "control: add TXT" "$(ctl 'add new.test. 60 IN TXT "x y" z'; D +short new.test TXT)" "^ok$" '^"x y" "z"$'
check "control: del TYPE" "$(ctl 'del new.test. A'; D new.test A)" "^ok$" "status: NOERROR" "ANSWER: 0,"
check "control: del" "$(ctl 'del new.test'; D new.test A)" "^ok$" "status: NXDOMAIN"
check "control: add zone" "$(ctl 'add other.example. 60 IN SOA ns.test. h.test. 1 2 3 4 30' \
    'add w.other.example. 60 IN A 192.0.2.7'; D +short w.other.example A; D x.other.example | grep status)" \
    "^192\.0\.2\.7$" "status: NXDOMAIN"

# ---- IPv6
if "$PY" -c 'import socket; s=socket.socket(socket.AF_INET6); s.bind(("::1", 0))' 2>/dev/null; then
    start_server "$TMP/ports6" --addr ::1 --addr 127.0.0.1
    read -r P6 C6 <"$TMP/ports6"
    check "query on ::1 (dig)" "$(dig @::1 -p "$P6" +timeout=2 +tries=1 +short a.test AAAA)" "^2001:db8::1$"
    check "query on ::1 over TCP (kdig)" "$(kdig @::1 -p "$P6" +tcp +timeout=2 +short a.test A)" "^192\.0\.2\.1$"
    check "same port on 127.0.0.1" "$(dig @127.0.0.1 -p "$P6" +timeout=2 +tries=1 +short a.test A)" "^192\.0\.2\.1$"
    check "--ctl helper (counters on the ::1 server)" "$("$PY" "$TESTDNS" --ctl "$C6" 'total' 'count a.test *')" "^3$" "^3$"
else
    ok "query on ::1 # SKIP no IPv6 loopback"
fi

# ---- clean exit
kill -TERM "$MAIN_PID"
wait "$MAIN_PID"; rc=$?
if [ "$rc" = 0 ]; then ok "SIGTERM exits 0"; else not_ok "SIGTERM exits 0" "rc=$rc"; fi
if [ -s "$TMP/server.log" ] && grep -q "internal error\|Traceback" "$TMP/server.log"; then
    not_ok "server log clean" "$(cat "$TMP/server.log")"
else
    ok "server log clean"
fi

echo "1..$N"
[ "$FAILS" = 0 ] || { echo "# $FAILS failed"; exit 1; }
exit 0
