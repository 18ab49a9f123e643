#!/usr/bin/env bash
# One resp_conn against real servers: starts them, exports where they are in RC_* variables,
# runs build/itests/itest_conn (cmocka, ASan+UBSan), then checks from redis-cli what the
# program wrote (SELECT).
source "$(dirname "$0")/lib.sh"

bin="$IT_BUILD/itests/itest_conn"
[ -x "$bin" ] || { not_ok "itest_conn built" "missing $bin (make build/itests/itest_conn)"; finish; }

tls_make_certs || { not_ok "tls_make_certs"; finish; }

RC_PLAIN_PORT=$(redis_start plain --bind 127.0.0.1 ::1) || exit 1
RC_AUTH_PORT=$(redis_start auth --requirepass s3cret) || exit 1
RC_ACL_PORT=$(redis_start acl --user alice on '>apass' '~*' '&*' '+@all' \
    --user noset on '>npass' '~*' '&*' '+@all' '-set') || exit 1
RC_NOHELLO_PORT=$(redis_start nohello --rename-command HELLO '""' --requirepass s3cret) || exit 1
RC_STOP_PORT=$(redis_start stop) || exit 1
RC_STOP_PID=$(redis_pid stop)
RC_KILL_PORT=$(redis_start kill) || exit 1
RC_KILL_PID=$(redis_pid kill)
RC_TLS_PORT=$(redis_start_tls tls) || exit 1
RC_MTLS_PORT=$(redis_start_tls mtls --tls-auth-clients yes) || exit 1
RC_WRONG_PORT=$(redis_start_tls wrong --cert wrong) || exit 1
RC_REFUSED_PORT=$(free_port)

# A TCP listener that accepts and never says a word (connect/TLS/handshake timeouts).
pf="$IT_TMP/silent.port"
"$IT_PY" - "$pf" <<'PYEOF' 2>>"$IT_TMP/silent.log" &
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
s.listen(64)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(s.getsockname()[1]))
import os
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
held = []
while True:
    c, _ = s.accept()
    held.append(c)
PYEOF
IT_PIDS+=("$!")
for _ in $(seq 100); do [ -s "$pf" ] && break; sleep 0.05; done
RC_SILENT_PORT=$(cat "$pf")

export RC_PLAIN_PORT RC_AUTH_PORT RC_ACL_PORT RC_NOHELLO_PORT RC_STOP_PORT RC_STOP_PID \
    RC_KILL_PORT RC_KILL_PID RC_TLS_PORT RC_MTLS_PORT RC_WRONG_PORT RC_REFUSED_PORT \
    RC_SILENT_PORT
export RC_TLS_DIR="$TLS_DIR"

ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} run_cmocka "$bin"
rc=$?
[ $rc -eq 0 ] || IT_FAILS=$((IT_FAILS + 1))

# what the program wrote with db 3 is in db 3 (and not in db 0)
v3=$(rcli "$RC_PLAIN_PORT" -n 3 GET itest:db3)
if [ "$v3" = "in-three" ]; then ok "SELECT 3: key visible with redis-cli -n 3"
else not_ok "SELECT 3: key visible with redis-cli -n 3" "got '$v3'"; fi
v0=$(rcli "$RC_PLAIN_PORT" -n 0 EXISTS itest:db3)
if [ "$v0" = "0" ]; then ok "SELECT 3: key absent from db 0"
else not_ok "SELECT 3: key absent from db 0" "got '$v0'"; fi
finish
