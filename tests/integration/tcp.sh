#!/usr/bin/env bash
# DNS over TCP (RFC 7766) with the real binary, a small python3 client (below) where kdig
# cannot do it, and the test upstream tests/tools/testdns.py:
#   pipelined queries answered in completion order; the per-connection in-flight cap (the
#   connection is not read beyond it, nothing dropped); the per-worker connection cap (new
#   connections wait, old ones keep working); the idle timeout (`timeouts { idle }`);
#   slow-loris clients (partial length prefix, trickled message, never reading replies,
#   enough of them to fill the connection cap) are closed by the read/write timeouts and do
#   not stop a normal client from being answered.
source "$(dirname "$0")/lib.sh"

bin="$IT_BUILD/redis-cache-dns"
[ -x "$bin" ] || { not_ok "redis-cache-dns built" "missing $bin"; finish; }
command -v kdig >/dev/null || skip_all "kdig not installed"
# the connection cap test holds 1024+ sockets on each side
ulimit -n 4096 2>/dev/null || skip_all "cannot raise the open files limit to 4096"

zone="$IT_TMP/test.zone"
{
    echo '$ORIGIN test.'
    echo '$TTL 300'
    echo '@ IN SOA ns.test. hostmaster.test. 1 60 60 60 120'
    echo '@ IN NS ns.test.'
    echo 'ns IN A 127.0.0.1'
    echo 'fast IN A 192.0.2.1'
    echo 'slow IN A 192.0.2.2'
    for i in $(seq 1 70); do echo "big IN A 10.0.0.$i"; done
} >"$zone"
dns_start "$zone" || { not_ok "testdns started"; finish; }

# srv_start NAME BODY: `test:PORT { bind 127.0.0.1 BODY }`, one worker; sets PORT_NAME.
srv_start() {
    local name=$1 body=$2 port attempt pid
    for attempt in 1 2 3; do
        port=$(free_port)
        printf 'test:%s {\n    bind 127.0.0.1\n%s\n}\n' "$port" "$body" >"$IT_TMP/$name.conf"
        "$bin" -conf "$IT_TMP/$name.conf" -threads 1 >"$IT_TMP/$name.out" \
            2>"$IT_TMP/$name.err" &
        pid=$!
        IT_PIDS+=("$pid")
        if wait_port "$port" 5 && kill -0 "$pid" 2>/dev/null; then
            printf -v "PORT_$name" '%s' "$port"
            return 0
        fi
        kill "$pid" 2>/dev/null
    done
    echo "srv_start $name failed: $(tail -n 5 "$IT_TMP/$name.err")" >&2
    return 1
}

cat >"$IT_TMP/tcpc.py" <<'EOF'
"""A DNS-over-TCP client for tcp.sh: one subcommand per behaviour, results on stdout."""
import selectors, socket, struct, sys, time

def query(qid, name, qtype=1):
    wire = b"".join(bytes([len(l)]) + l.encode() for l in name.strip(".").split(".")) + b"\0"
    msg = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + wire + struct.pack("!HH", qtype, 1)
    return struct.pack("!H", len(msg)) + msg

def conn(port, timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s

def read_exact(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError
        b += c
    return b

def reply(s):
    n = struct.unpack("!H", read_exact(s, 2))[0]
    m = read_exact(s, n)
    return struct.unpack("!H", m[:2])[0], m[3] & 0xF

def closed_after(s, limit):
    """Seconds until the server closes s (EOF or reset), reading and dropping what comes; None
    when still open after limit."""
    t0 = time.monotonic()
    s.settimeout(0.2)
    while time.monotonic() - t0 < limit:
        try:
            if not s.recv(65536):
                return time.monotonic() - t0
        except socket.timeout:
            continue
        except OSError:
            return time.monotonic() - t0
    return None

def count_closed(socks, limit):
    """How many of socks the server closes within limit seconds."""
    sel = selectors.DefaultSelector()
    for c in socks:
        c.setblocking(False)
        sel.register(c, selectors.EVENT_READ)
    closed, t0 = 0, time.monotonic()
    while closed < len(socks) and time.monotonic() - t0 < limit:
        for key, _ in sel.select(timeout=0.5):
            try:
                d = key.fileobj.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                d = b""
            if not d:
                sel.unregister(key.fileobj)
                closed += 1
    return closed

def ctl(port, line):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        c.sendall(line.encode() + b"\n")
        return c.makefile().readline().strip()

def main():
    cmd, port = sys.argv[1], int(sys.argv[2])
    a = sys.argv[3:]
    if cmd == "pipeline":  # NAMES...: one write; qnames in reply order
        s = conn(port)
        s.sendall(b"".join(query(i + 1, n) for i, n in enumerate(a)))
        print(" ".join(a[reply(s)[0] - 1] for _ in a))
    elif cmd == "inflight":  # N CTLPORT: N queries for distinct slow names in one write
        n, cport = int(a[0]), int(a[1])
        s = conn(port, timeout=60)
        s.sendall(b"".join(query(i + 1, "p%d.test" % i) for i in range(n)))
        time.sleep(0.6)
        print("upstream_early=%s" % ctl(cport, "count * A"))
        ids = set()
        for _ in range(n):
            ids.add(reply(s)[0])
        print("replies=%d" % len(ids))
    elif cmd == "idle":  # LIMIT: one query, its reply, then seconds until closed
        s = conn(port)
        s.sendall(query(1, "fast.test"))
        reply(s)
        print(closed_after(s, float(a[0])))
    elif cmd == "busy":  # SECONDS: a query every 0.5 s; "open" when never closed
        s = conn(port)
        t0, i = time.monotonic(), 0
        while time.monotonic() - t0 < float(a[0]):
            i += 1
            s.sendall(query(i, "fast.test"))
            reply(s)
            time.sleep(0.5)
        print("open")
    elif cmd == "prefix":  # LIMIT: one byte of a length prefix, then nothing
        s = conn(port)
        s.sendall(b"\0")
        print(closed_after(s, float(a[0])))
    elif cmd == "dribble":  # LIMIT: a whole frame, one byte every 0.3 s after the first 3
        s = conn(port)
        frame = query(7, "fast.test")
        s.sendall(frame[:3])
        t0 = time.monotonic()
        for b in frame[3:]:
            time.sleep(0.3)
            try:
                s.sendall(bytes([b]))
                d = s.recv(1, socket.MSG_DONTWAIT)
            except BlockingIOError:
                continue  # still open, nothing to read
            except OSError:
                d = b""
            print("%.2f" % (time.monotonic() - t0) if not d else "answered")
            return
        print(closed_after(s, float(a[0])))
    elif cmd == "noread":  # LIMIT: queries for a big answer, replies never read
        s = conn(port)
        s.settimeout(1)
        t0, i, q = time.monotonic(), 0, query(1, "big.test")
        while time.monotonic() - t0 < float(a[0]):
            try:
                s.sendall(q * 64)
            except socket.timeout:
                continue
            except OSError:
                print(time.monotonic() - t0)
                return
        print(None)
    elif cmd == "loris_many":  # N LIMIT: N partial frames, then a normal query
        n, limit = int(a[0]), float(a[1])
        held = []
        for _ in range(n):
            c = conn(port)
            c.sendall(b"\0")
            held.append(c)
        t0 = time.monotonic()
        s = conn(port, timeout=limit)
        s.sendall(query(9, "fast.test"))
        try:
            qid, rc = reply(s)
            print("served_after=%.1f" % (time.monotonic() - t0))
        except (OSError, EOFError):
            print("not_served")
        print("loris_closed=%d" % count_closed(held, limit))
    elif cmd == "cap":  # N: N idle connections, then one more
        n = int(a[0])
        held = [conn(port) for _ in range(n)]
        time.sleep(0.5)
        x = conn(port)
        x.sendall(query(1, "fast.test"))
        x.settimeout(2)
        try:
            reply(x)
            print("beyond_cap_answered_at_once")
        except socket.timeout:
            print("beyond_cap_waits")
        held[0].sendall(query(2, "fast.test"))
        held[0].settimeout(10)
        print("old_answered" if reply(held[0])[0] == 2 else "old_wrong")
        for c in held[1:11]:
            c.close()
        x.settimeout(15)
        try:
            print("beyond_cap_answered_after_close" if reply(x)[0] == 1 else "x_wrong")
        except (socket.timeout, EOFError):
            print("beyond_cap_never_answered")

main()
EOF
tc() { "$IT_PY" "$IT_TMP/tcpc.py" "$@" 2>&1; }
# num_between X LO HI: X is a number within [LO, HI]
num_between() { "$IT_PY" -c "import sys; x=sys.argv[1]; sys.exit(0 if x!='None' and $2<=float(x)<=$3 else 1)" "$1"; }

srv_start S "    timeouts {
        read 20s
        idle 3s
    }
    forward . 127.0.0.1:$DNS_PORT" || { not_ok "server S started"; finish; }
S=$PORT_S

# -- pipelining: replies in completion order
dns_ctl "mode slow.test slow 1500" >/dev/null
out=$(tc pipeline "$S" slow.test fast.test)
check "pipelined on one connection: the fast answer comes before the slow one" \
    test "$out" = "fast.test slow.test"
out=$(kdig +tcp +keepopen +retry=0 +timeout=5 @127.0.0.1 -p "$S" slow.test A fast.test A 2>&1)
has_both() { grep -q '192\.0\.2\.2' <<<"$1" && grep -q '192\.0\.2\.1' <<<"$1"; }
check "kdig +keepopen (two queries, one connection): both answered" has_both "$out"
dns_ctl "reset" >/dev/null

# -- in-flight cap: 200 queries for slow distinct names on one connection
dns_ctl "mode * slow 1000" >/dev/null
out=$(tc inflight "$S" 200 "$DNS_CTL")
early=$(sed -n 's/^upstream_early=//p' <<<"$out")
check "in-flight cap: at most 64 of one connection's queries reach upstream at once" \
    num_between "${early:-None}" 1 64
check "in-flight cap: every one of the 200 pipelined queries is answered (none dropped)" \
    grep -qx "replies=200" <<<"$out"
dns_ctl "reset" >/dev/null

# -- idle timeout (timeouts { idle 3s })
out=$(tc idle "$S" 20)
check "idle: a connection with nothing in flight is closed after the idle timeout" \
    num_between "$out" 2 15
out=$(tc busy "$S" 5)
check "idle: a connection with a query every 0.5 s stays open past the idle timeout" \
    test "$out" = open

# -- connection cap: 1024 per worker (one worker here)
out=$(tc cap "$S" 1024)
check "connection cap: a connection beyond it is not served while the cap is full" \
    grep -qx beyond_cap_waits <<<"$out"
check "connection cap: connections already open keep working" grep -qx old_answered <<<"$out"
check "connection cap: the waiting connection is served once others close" \
    grep -qx beyond_cap_answered_after_close <<<"$out"

# -- slow-loris, against a server with short read and write timeouts (and a long idle
#    timeout, so that only the read timeout can close a partial frame in time)
srv_start L "    timeouts {
        read 2s
        write 2s
        idle 20s
    }
    cache
    forward . 127.0.0.1:$DNS_PORT" || { not_ok "server L started"; finish; }
L=$PORT_L
out=$(tc prefix "$L" 20)
check "slow-loris: one byte of a length prefix, then nothing: closed by the read timeout" \
    num_between "$out" 1 10
out=$(tc dribble "$L" 20)
check "slow-loris: a frame trickled a byte at a time is closed by the read timeout (not extended)" \
    num_between "$out" 1 10
out=$(tc noread "$L" 40)
check "slow-loris: a client that never reads its replies is closed (write timeout / buffer cap)" \
    num_between "$out" 0 40
out=$(kdig +tcp +retry=0 +timeout=5 +short @127.0.0.1 -p "$L" fast.test A 2>&1)
check "a normal TCP client is answered after the slow-loris clients" test "$out" = "192.0.2.1"
out=$(tc loris_many "$L" 200 15)
check "200 slow-loris connections do not stop a normal client from being answered" \
    grep -q "^served_after=" <<<"$out"
out=$(tc loris_many "$L" 1024 20)
served=$(sed -n 's/^served_after=//p' <<<"$out")
check "1024 slow-loris connections fill the cap: a normal client is served once they time out" \
    num_between "${served:-None}" 0.5 12
check "... and the read timeout closed the slow-loris connections" \
    grep -qx "loris_closed=1024" <<<"$out"

finish
