#!/usr/bin/env bash
# The connection pool, the standalone router and rc_client against real servers: starts a
# master with two replicas, a server to kill and restart, one to SIGSTOP, one stopped
# before the client starts, and one with requirepass; exports where they are in RC_*
# variables and runs build/itests/itest_pool (cmocka, ASan+UBSan).
source "$(dirname "$0")/lib.sh"

bin="$IT_BUILD/itests/itest_pool"
[ -x "$bin" ] || { not_ok "itest_pool built" "missing $bin (make build/itests/itest_pool)"; finish; }

RC_M_PORT=$(redis_start master) || exit 1
RC_R1_PORT=$(redis_start replica1 --replicaof 127.0.0.1 "$RC_M_PORT") || exit 1
RC_R2_PORT=$(redis_start replica2 --replicaof 127.0.0.1 "$RC_M_PORT") || exit 1
RC_V_PORT=$(redis_start victim) || exit 1
RC_V_PID=$(redis_pid victim)
RC_V_DIR="$IT_TMP/victim"
RC_S_PORT=$(redis_start stopped) || exit 1
RC_S_PID=$(redis_pid stopped)
RC_W_PORT=$(redis_start waiting) || exit 1
RC_W_PID=$(redis_pid waiting)
RC_A_PORT=$(redis_start auth --requirepass s3cret) || exit 1
RC_FREE_PORT=$(free_port)

# the replicas must be in sync before reads are routed to them
for r in "$RC_R1_PORT" "$RC_R2_PORT"; do
    for _ in $(seq 100); do
        rcli "$r" INFO replication | grep -q 'master_link_status:up' && break
        sleep 0.1
    done
    rcli "$r" INFO replication | grep -q 'master_link_status:up' ||
        { not_ok "replica $r in sync"; finish; }
done
ok "master and two replicas in sync"

export RC_M_PORT RC_R1_PORT RC_R2_PORT RC_V_PORT RC_V_PID RC_V_DIR RC_S_PORT RC_S_PID \
    RC_W_PORT RC_W_PID RC_A_PORT RC_FREE_PORT
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} run_cmocka "$bin"
rc=$?
[ "$rc" -eq 0 ] || not_ok "itest_pool exited $rc"

# nothing the program did may have crashed a server it did not mean to stop
for n in master replica1 replica2 auth; do
    if kill -0 "$(redis_pid $n)" 2>/dev/null; then ok "$n still running"; else not_ok "$n still running"; fi
done
finish
