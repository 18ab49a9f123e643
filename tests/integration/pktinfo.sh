#!/usr/bin/env bash
# UDP replies on a wildcard listener leave from the address the query was sent to
# (IP_PKTINFO / IPV6_RECVPKTINFO): a server without `bind` asked on 127.0.0.2 or 127.0.0.3
# answers from that address — immediate answers (REFUSED, L1 hits) and asynchronous ones
# (forwarded answers) alike; a client checks the source and drops anything else (dig
# reports "reply from unexpected source" and times out).
source "$(dirname "$0")/lib.sh"

bin="$IT_BUILD/redis-cache-dns"
[ -x "$bin" ] || { not_ok "redis-cache-dns built" "missing $bin"; finish; }
command -v dig >/dev/null || skip_all "dig not installed"

zone="$IT_TMP/test.zone"
printf '%s\n' '$ORIGIN test.' '$TTL 300' '@ IN SOA ns.test. hostmaster.test. 1 60 60 60 120' \
    '@ IN NS ns.test.' 'ns IN A 127.0.0.1' 'www IN A 192.0.2.1' >"$zone"
dns_start "$zone" || { not_ok "testdns started"; finish; }

port=$(free_port)
printf 'test.:%s {\n    cache\n    forward . 127.0.0.1:%s\n}\n' "$port" "$DNS_PORT" >"$IT_TMP/Corefile"
"$bin" -conf "$IT_TMP/Corefile" -threads 2 >"$IT_TMP/srv.out" 2>"$IT_TMP/srv.err" &
IT_PIDS+=("$!")
for _ in $(seq 100); do grep -q ' ready$' "$IT_TMP/srv.err" && break; sleep 0.1; done

# ask ADDR NAME: dig's status line (empty when no acceptable reply came back)
ask() {
    dig +tries=1 +time=3 +norec @"$1" -p "$port" "$2" A 2>&1 | sed -n 's/.*status: \([A-Z]*\).*/\1/p'
}

check "a forwarded answer to a query sent to 127.0.0.2 comes from 127.0.0.2" \
    test "$(ask 127.0.0.2 www.test)" = NOERROR
check "the L1 hit for it sent to 127.0.0.3 comes from 127.0.0.3" \
    test "$(ask 127.0.0.3 www.test)" = NOERROR
check "a REFUSED outside the zones sent to 127.0.0.2 comes from 127.0.0.2" \
    test "$(ask 127.0.0.2 www.example.org)" = REFUSED
check "127.0.0.1 still answers" test "$(ask 127.0.0.1 www.test)" = NOERROR
if "$IT_PY" -c 'import socket; s=socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.bind(("::1", 0))' 2>/dev/null; then
    check "a query over IPv6 to ::1 is answered from ::1" test "$(ask ::1 www.test)" = NOERROR
else
    ok "a query over IPv6 to ::1 is answered from ::1 # SKIP no IPv6 loopback"
fi
finish
