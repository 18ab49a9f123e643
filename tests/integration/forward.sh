#!/usr/bin/env bash
# The forward plugin (src/server/forward.c) against real upstreams: build/itests/
# itest_forward on a libev loop, with two testdns.py instances serving the same zone (server
# 1 on 127.0.0.1 and, when the host has IPv6 loopback, ::1; server 2 on 127.0.0.1). Each
# test makes them misbehave per name through their control ports.
source "$(dirname "$0")/lib.sh"

bin="$IT_BUILD/itests/itest_forward"
[ -x "$bin" ] || { not_ok "itest_forward built" "missing $bin (make BUILD=... $bin)"; finish; }

zone="$IT_TMP/test.zone"
{
    echo '$ORIGIN test.'
    echo '$TTL 60'
    echo '@ IN SOA ns.test. hostmaster.test. 1 60 60 60 60'
    echo '@ IN NS ns.test.'
    echo 'ns IN A 127.0.0.1'
    for n in a b c d e tc; do echo "$n IN A 192.0.2.1"; done
    # 100 A records: over 1232 bytes, truncated over UDP
    for i in $(seq 1 100); do echo "big IN A 10.0.$((i / 256)).$((i % 256))"; done
} >"$zone"

v6=0
if "$IT_PY" -c 'import socket; s=socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.bind(("::1", 0))' 2>/dev/null; then
    v6=1
fi
if [ $v6 = 1 ]; then
    dns_start "$zone" --addr 127.0.0.1 --addr ::1 || { not_ok "testdns 1 started"; finish; }
else
    echo "# no IPv6 loopback: the ::1 upstream case is skipped"
    dns_start "$zone" || { not_ok "testdns 1 started"; finish; }
fi
port1=$DNS_PORT ctl1=$DNS_CTL
dns_start "$zone" || { not_ok "testdns 2 started"; finish; }
port2=$DNS_PORT ctl2=$DNS_CTL

FW_PORT1=$port1 FW_CTL1=$ctl1 FW_PORT2=$port2 FW_CTL2=$ctl2 FW_V6=$v6 \
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
    run_cmocka "$bin"
rc=$?
[ $rc -eq 0 ] || IT_FAILS=$((IT_FAILS + 1))
finish
