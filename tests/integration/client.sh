#!/usr/bin/env bash
# The public rc_client (include/redis_cache.h) end to end: a hostname endpoint resolved
# through `resolver` = the test DNS server (tests/tools/testdns.py), TLS (server-only, mTLS,
# a certificate for another name, an unrelated CA, verify_chain off, a plaintext port, a
# certificate for a name served by the test DNS server), an ACL user, and `db 3`. Starts the
# servers, exports where they are in RC_* variables, runs build/itests/itest_client (cmocka,
# ASan+UBSan), then checks from redis-cli what the program wrote.
source "$(dirname "$0")/lib.sh"

bin="$IT_BUILD/itests/itest_client"
[ -x "$bin" ] || { not_ok "itest_client built" "missing $bin (make BUILD=... $bin)"; finish; }

tls_make_certs || { not_ok "tls_make_certs"; finish; }
# one more certificate from the same CA, for a name only the test DNS server knows
(
    cd "$TLS_DIR" || exit 1
    openssl req -newkey rsa:2048 -nodes -subj "/CN=tls.test" -keyout tlsname.key \
        -out tlsname.csr >/dev/null 2>&1 || exit 1
    printf 'subjectAltName=DNS:tls.test\nextendedKeyUsage=serverAuth,clientAuth\n' >tlsname.ext
    openssl x509 -req -in tlsname.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
        -extfile tlsname.ext -out tlsname.crt >/dev/null 2>&1
) || { not_ok "certificate for tls.test"; finish; }

zone="$IT_TMP/test.zone"
cat >"$zone" <<'ZONE'
$ORIGIN test.
$TTL 60
@ IN SOA ns.test. hostmaster.test. 1 60 60 60 60
@ IN NS ns.test.
ns IN A 127.0.0.1
redis IN A 127.0.0.1
tls IN A 127.0.0.1
ZONE
dns_start "$zone" || { not_ok "testdns started"; finish; }

# the server behind redis.test: the program kills it and starts it again on 127.0.0.2
RC_HOST_PORT=$(redis_start host) || exit 1
RC_HOST_PID=$(redis_pid host)
RC_HOST_DIR="$IT_TMP/host"
RC_PLAIN_PORT=$(redis_start plain) || exit 1
RC_ACL_PORT=$(redis_start acl --user default off --user alice on '>apass' '~*' '&*' '+@all') ||
    exit 1
RC_TLS_PORT=$(redis_start_tls tls) || exit 1
RC_MTLS_PORT=$(redis_start_tls mtls --tls-auth-clients yes) || exit 1
RC_WRONG_PORT=$(redis_start_tls wrong --cert wrong) || exit 1
RC_TLSNAME_PORT=$(redis_start_tls tlsname --cert tlsname) || exit 1

export RC_HOST_PORT RC_HOST_PID RC_HOST_DIR RC_PLAIN_PORT RC_ACL_PORT RC_TLS_PORT \
    RC_MTLS_PORT RC_WRONG_PORT RC_TLSNAME_PORT
export RC_DNS_PORT=$DNS_PORT RC_DNS_CTL=$DNS_CTL RC_TLS_DIR="$TLS_DIR" RC_TMP="$IT_TMP"

ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} run_cmocka "$bin"
rc=$?
[ $rc -eq 0 ] || IT_FAILS=$((IT_FAILS + 1))

# what the program wrote with db 3 is in db 3 (and not in db 0)
v3=$(rcli "$RC_PLAIN_PORT" -n 3 GET itest:client:db3)
if [ "$v3" = "in-three" ]; then ok "db 3: key visible with redis-cli -n 3"
else not_ok "db 3: key visible with redis-cli -n 3" "got '$v3'"; fi
v0=$(rcli "$RC_PLAIN_PORT" -n 0 EXISTS itest:client:db3)
if [ "$v0" = "0" ]; then ok "db 3: key absent from db 0"
else not_ok "db 3: key absent from db 0" "got '$v0'"; fi

# what alice wrote is there, and the wrong-password client never wrote anything
va=$(rcli "$RC_ACL_PORT" --user alice --pass apass --no-auth-warning GET itest:client:acl)
if [ "$va" = "by-alice" ]; then ok "ACL: alice's key visible with redis-cli --user alice"
else not_ok "ACL: alice's key visible with redis-cli --user alice" "got '$va'"; fi

# the TLS client never got a command through to the plaintext server
vp=$(rcli "$RC_PLAIN_PORT" EXISTS itest:client:plain)
if [ "$vp" = "0" ]; then ok "TLS client against a plaintext port wrote nothing"
else not_ok "TLS client against a plaintext port wrote nothing" "got '$vp'"; fi

for n in plain acl tls mtls wrong tlsname; do
    if kill -0 "$(redis_pid $n)" 2>/dev/null; then ok "$n still running"; else not_ok "$n still running"; fi
done
finish
