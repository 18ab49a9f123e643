#!/usr/bin/env bash
# `make run`: runs redis-cache-dns in the foreground (the Makefile builds it first) on the
# embedded default Corefile (127.0.0.1:1053, cache, redis_cache on 127.0.0.1:6379, forward to
# /etc/resolv.conf, metrics on 127.0.0.1:9153), or ./Corefile when there is one.
# If nothing answers on 127.0.0.1:6379 and redis-server is installed, a private redis-server
# (no persistence, in a temp dir) runs there for the session and is stopped on exit.
# Arguments go to the server (scripts/run.sh -threads 1).
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-build}
case "$build" in /*) ;; *) build="$root/$build" ;; esac
bin="$build/redis-cache-dns"
if [ ! -x "$bin" ]; then
    echo "make run: $bin is missing; build it with 'make all'" >&2
    exit 1
fi

redis_answers() {
    if command -v redis-cli >/dev/null 2>&1; then
        [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ] && return 0
    fi
    (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null
}

redis_pid=
tmp=
cleanup() {
    if [ -n "$redis_pid" ]; then
        kill "$redis_pid" 2>/dev/null
        for _ in $(seq 40); do kill -0 "$redis_pid" 2>/dev/null || break; sleep 0.05; done
        kill -9 "$redis_pid" 2>/dev/null
        echo "make run: stopped the private redis-server" >&2
    fi
    [ -n "$tmp" ] && rm -rf "$tmp"
}
trap cleanup EXIT

if ! redis_answers; then
    if command -v redis-server >/dev/null 2>&1; then
        tmp=$(mktemp -d "${TMPDIR:-/tmp}/redis-cache-dns-run.XXXXXX")
        # its own session: a Ctrl-C meant for the server does not reach it first
        setsid redis-server --port 6379 --bind 127.0.0.1 --dir "$tmp" --save '' \
            --appendonly no --daemonize no --logfile "$tmp/redis.log" >/dev/null 2>&1 &
        redis_pid=$!
        for _ in $(seq 100); do redis_answers && break; sleep 0.05; done
        if redis_answers; then
            echo "make run: started a private redis-server on 127.0.0.1:6379 (pid $redis_pid)" >&2
        else
            echo "make run: could not start redis-server on 127.0.0.1:6379;" \
                "serving without it (see $tmp/redis.log)" >&2
        fi
    else
        echo "make run: nothing answers on 127.0.0.1:6379 and redis-server is not installed;" \
            "the server still answers (L1 and forward only)" >&2
    fi
fi

echo "make run: redis-cache-dns on 127.0.0.1:1053 (try: dig @127.0.0.1 -p 1053 example.com);" \
    "metrics on http://127.0.0.1:9153/metrics; Ctrl-C stops" >&2
"$bin" "$@" &
srv=$!
trap 'kill -TERM "$srv" 2>/dev/null' INT TERM
wait "$srv"
rc=$?
# a signal interrupted wait: let the server finish its graceful stop
while kill -0 "$srv" 2>/dev/null; do wait "$srv"; rc=$?; done
exit $rc
