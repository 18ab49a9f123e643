#!/usr/bin/env bash
# Hostname resolution (src/topology/resolve.c) against real DNS servers: build/itests/
# itest_resolve on a libev loop, with testdns.py as the nameservers (one normal on
# 127.0.0.1 + ::1, one on 127.0.0.2 that each test makes misbehave, and when port 53 can
# be bound one on 127.0.0.53:53 for resolv.conf's port-less nameserver lines). Also checks
# that the library never links the libc resolver (getaddrinfo and friends).
source "$(dirname "$0")/lib.sh"

bin="$IT_BUILD/itests/itest_resolve"
[ -x "$bin" ] || { not_ok "itest_resolve built" "missing $bin (make BUILD=... $bin)"; finish; }

# No libc resolver anywhere in the library: it would block the loop and could ask our own
# listener (SPEC §3).
for lib in "$IT_BUILD/libredis_cache.a" "$IT_BUILD/asan/libredis_cache.a"; do
    [ -f "$lib" ] || continue
    bad=$(nm -u "$lib" 2>/dev/null | grep -E '\b(getaddrinfo|gethostbyname[0-9_r]*|gethostbyaddr|getnameinfo|res_n?(query|search|init|send)|__res_[a-z]*)\b' | sort -u)
    if [ -z "$bad" ]; then ok "no libc resolver in $(basename "$(dirname "$lib")")/$(basename "$lib")"
    else not_ok "no libc resolver in $lib" "$bad"; fi
done

zone="$IT_TMP/test.zone"
{
    echo '$ORIGIN test.'
    echo '$TTL 60'
    echo '@ IN SOA ns.test. hostmaster.test. 1 60 60 60 60'
    echo '@ IN NS ns.test.'
    echo 'ns IN A 127.0.0.1'
    echo 'redis IN A 127.0.0.1'
    echo 'redis IN AAAA ::1'
    echo 'cname IN CNAME redis.test.'
    echo 'v6only IN AAAA ::1'
    for i in $(seq 1 100); do echo "big IN A 10.0.$((i / 256)).$((i % 256))"; done
} >"$zone"

dns_start "$zone" --addr 127.0.0.1 --addr ::1 || { not_ok "testdns 1 started"; finish; }
port=$DNS_PORT ctl1=$DNS_CTL
dns_start "$zone" --addr 127.0.0.2 --port "$port" || { not_ok "testdns 2 started"; finish; }
ctl2=$DNS_CTL

# resolv.conf has no port syntax: a server on 127.0.0.53:53 when we may bind it
dns53=
if "$IT_PY" - <<'PY' 2>/dev/null
import socket
for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.53", 53))
    s.close()
PY
then
    if dns_start "$zone" --addr 127.0.0.53 --port 53; then dns53=127.0.0.53; fi
fi
[ -n "$dns53" ] || echo "# port 53 on 127.0.0.53 unavailable: the resolv.conf port-53 case is skipped"

mkdir -p "$IT_TMP/rs"
RS_PORT=$port RS_CTL1=$ctl1 RS_CTL2=$ctl2 RS_DNS53=$dns53 RS_TMP="$IT_TMP/rs" \
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
    run_cmocka "$bin"
rc=$?
[ $rc -eq 0 ] || IT_FAILS=$((IT_FAILS + 1))
finish
