# tests/integration/lib.sh — shared helpers for integration tests (sourced, not run).
#
# Every server a test uses is started here on a free loopback port, in a private temp dir,
# and stopped by the EXIT trap. Output is TAP-like: `ok N NAME` / `not ok N NAME`; the
# runner (scripts/run-integration.sh) counts those lines. cmocka programs run through
# `run_cmocka` are counted by their own summary lines.
#
#   source "$(dirname "$0")/lib.sh"
#   port=$(redis_start plain)                 # plain redis-server, prints its port
#   port=$(redis_start secured --requirepass s3cret)
#   tls_make_certs                            # CA + server/client certs in $TLS_DIR
#   port=$(redis_start_tls t1 --tls-auth-clients no)
#   dns_start ZONEFILE                        # test DNS server: $DNS_PORT $DNS_CTL
#   ok "name" / not_ok "name" "details" / check "name" CMD...
#   finish                                    # exit status: failures > 0 -> 1

set -u
IT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
IT_BUILD=${BUILD:-$IT_ROOT/build}
case "$IT_BUILD" in /*) ;; *) IT_BUILD="$IT_ROOT/$IT_BUILD" ;; esac
IT_TMP=$(mktemp -d "${TMPDIR:-/tmp}/rc-it.XXXXXX")
IT_PIDS=()
IT_N=0
IT_FAILS=0
# /usr/bin/python3 first: a pyenv shim on PATH costs ~1 s per start
IT_PY=${PYTHON:-$(command -v /usr/bin/python3 || command -v python3)}

it_cleanup() {
    local p f
    # servers started inside $(...) subshells are known only by their pid files
    for f in "$IT_TMP"/*.pid; do [ -f "$f" ] && IT_PIDS+=("$(cat "$f")"); done
    for p in "${IT_PIDS[@]}"; do kill -CONT "$p" 2>/dev/null; kill "$p" 2>/dev/null; done
    for p in "${IT_PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
        kill -9 "$p" 2>/dev/null
    done
    rm -rf "$IT_TMP"
}
trap it_cleanup EXIT
trap 'exit 130' INT TERM

ok() { IT_N=$((IT_N + 1)); echo "ok $IT_N $1"; }
not_ok() {
    IT_N=$((IT_N + 1)); IT_FAILS=$((IT_FAILS + 1))
    echo "not ok $IT_N $1"
    if [ $# -gt 1 ]; then printf '%s\n' "$2" | sed 's/^/#   /'; fi
}
# check NAME CMD...: ok when CMD exits 0; its output is shown on failure
check() {
    local name=$1; shift
    local out
    if out=$("$@" 2>&1); then ok "$name"; else not_ok "$name" "$out"; fi
}
finish() { [ "$IT_FAILS" -eq 0 ]; exit $?; }
skip_all() { echo "ok 1 # SKIP $1"; exit 0; }

# A TCP port on 127.0.0.1 that nothing listens on now (bound then released by the kernel).
free_port() {
    "$IT_PY" - <<'EOF'
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

# wait_port PORT [SECONDS]: until something accepts TCP on 127.0.0.1:PORT
wait_port() {
    local port=$1 secs=${2:-10} i
    for i in $(seq $((secs * 20))); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    return 1
}

# redis_start NAME [redis-server args...]: starts redis-server on a free port in its own dir
# (no persistence), waits until it answers PING, prints the port. Its pid is in
# $IT_TMP/NAME.pid, its log in $IT_TMP/NAME.log. Retries on a lost port race.
redis_start() {
    local name=$1; shift
    local dir="$IT_TMP/$name" port attempt
    mkdir -p "$dir"
    for attempt in 1 2 3 4 5; do
        port=$(free_port)
        redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save '' --appendonly no \
            --daemonize no --logfile "$IT_TMP/$name.log" "$@" >/dev/null 2>&1 &
        local pid=$!
        IT_PIDS+=("$pid")
        echo "$pid" >"$IT_TMP/$name.pid"
        echo "$port" >"$IT_TMP/$name.port"
        if wait_port "$port" 10 && kill -0 "$pid" 2>/dev/null; then
            echo "$port"
            return 0
        fi
        kill "$pid" 2>/dev/null
    done
    echo "redis_start $name failed: $(tail -n 5 "$IT_TMP/$name.log" 2>/dev/null)" >&2
    return 1
}

# redis_stop NAME / redis_pid NAME
redis_pid() { cat "$IT_TMP/$1.pid"; }
redis_stop() {
    local pid; pid=$(redis_pid "$1")
    kill -CONT "$pid" 2>/dev/null; kill "$pid" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.05; done
    kill -9 "$pid" 2>/dev/null
}

# redis_restart NAME PORT [args...]: a new redis-server on the same port (after a kill)
redis_restart() {
    local name=$1 port=$2; shift 2
    local dir="$IT_TMP/$name"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save '' --appendonly no \
        --daemonize no --logfile "$IT_TMP/$name.log" "$@" >/dev/null 2>&1 &
    local pid=$!
    IT_PIDS+=("$pid")
    echo "$pid" >"$IT_TMP/$name.pid"
    wait_port "$port" 10
}

# rcli PORT args...: redis-cli against 127.0.0.1:PORT (plaintext)
rcli() { local port=$1; shift; redis-cli -h 127.0.0.1 -p "$port" "$@"; }

# ---- TLS ----
# tls_make_certs: a CA and certificates made now with the openssl CLI, in $TLS_DIR:
#   ca.crt/ca.key; server.crt/key (SAN localhost, 127.0.0.1, ::1); client.crt/key (mTLS);
#   wrong.crt/key (SAN only wrong.example, same CA); other-ca.crt (an unrelated CA).
TLS_DIR="$IT_TMP/tls"
tls_make_certs() {
    mkdir -p "$TLS_DIR"
    (
        cd "$TLS_DIR" || exit 1
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=rc-test-ca" \
            -keyout ca.key -out ca.crt >/dev/null 2>&1 || exit 1
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=rc-other-ca" \
            -keyout other-ca.key -out other-ca.crt >/dev/null 2>&1 || exit 1
        mk() { # name subject san
            openssl req -newkey rsa:2048 -nodes -subj "/CN=$2" -keyout "$1.key" \
                -out "$1.csr" >/dev/null 2>&1 || return 1
            printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$3" >"$1.ext"
            openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
                -extfile "$1.ext" -out "$1.crt" >/dev/null 2>&1
        }
        mk server localhost "DNS:localhost,IP:127.0.0.1,IP:::1" || exit 1
        mk client rc-test-client "DNS:rc-test-client" || exit 1
        mk wrong wrong.example "DNS:wrong.example" || exit 1
    )
}

# redis_start_tls NAME [--cert wrong] [redis-server args...]: TLS-only redis-server
# (port 0 for plaintext), prints the TLS port. Client certs are optional unless the
# caller passes --tls-auth-clients yes.
redis_start_tls() {
    local name=$1; shift
    local cert=server
    if [ "${1:-}" = "--cert" ]; then cert=$2; shift 2; fi
    local dir="$IT_TMP/$name" port attempt
    mkdir -p "$dir"
    for attempt in 1 2 3 4 5; do
        port=$(free_port)
        redis-server --port 0 --tls-port "$port" --bind 127.0.0.1 --dir "$dir" --save '' \
            --appendonly no --daemonize no --logfile "$IT_TMP/$name.log" \
            --tls-cert-file "$TLS_DIR/$cert.crt" --tls-key-file "$TLS_DIR/$cert.key" \
            --tls-ca-cert-file "$TLS_DIR/ca.crt" --tls-auth-clients optional "$@" \
            >/dev/null 2>&1 &
        local pid=$!
        IT_PIDS+=("$pid")
        echo "$pid" >"$IT_TMP/$name.pid"
        echo "$port" >"$IT_TMP/$name.port"
        if wait_port "$port" 10 && kill -0 "$pid" 2>/dev/null; then
            echo "$port"
            return 0
        fi
        kill "$pid" 2>/dev/null
    done
    echo "redis_start_tls $name failed: $(tail -n 5 "$IT_TMP/$name.log" 2>/dev/null)" >&2
    return 1
}

# ---- the test DNS server (tests/tools/testdns.py) ----
# dns_start ZONEFILE [extra args]: sets DNS_PORT and DNS_CTL (control port)
dns_start() {
    local zone=$1; shift
    local pf="$IT_TMP/dns.$$.$RANDOM.ports"
    "$IT_PY" "$IT_ROOT/tests/tools/testdns.py" --zone "$zone" --portfile "$pf" "$@" \
        2>>"$IT_TMP/dns.log" &
    IT_PIDS+=("$!")
    local i
    for i in $(seq 200); do [ -s "$pf" ] && break; sleep 0.05; done
    [ -s "$pf" ] || { echo "dns_start failed: $(tail -n 5 "$IT_TMP/dns.log")" >&2; return 1; }
    read -r DNS_PORT DNS_CTL <"$pf"
}

# dns_ctl 'command': one control command, prints the reply line
dns_ctl() {
    local reply
    exec 7<>"/dev/tcp/127.0.0.1/$DNS_CTL" || return 1
    printf '%s\n' "$1" >&7
    IFS= read -r reply <&7
    printf 'quit\n' >&7
    exec 7>&- 7<&-
    echo "$reply"
}

# run_cmocka BIN [args]: runs a cmocka program built from tests/integration/itest_*.c; its
# own summary lines are counted by the runner. Returns its exit status.
run_cmocka() { "$@"; }
