#!/usr/bin/env bash
# The one list of Debian packages this project needs to build, test, fuzz and benchmark.
# Installs what is missing with apt-get when run as root; otherwise prints the exact
# apt-get line and fails. README, CI (.ci/run -> make test) and the tests all use it.
set -euo pipefail

PACKAGES=(
    # build and run time
    build-essential pkg-config libev-dev libssl-dev libxxhash-dev
    # unit tests, sanitizers, fuzzing
    libcmocka-dev clang libclang-rt-14-dev
    # integration tests: real servers and real DNS clients
    redis-server redis-sentinel redis-tools knot-dnsutils bind9-dnsutils openssl
    # test upstream (authoritative) and benchmarks
    knot dnsperf dnsdist
    # test/bench-only: hiredis (differential fuzzing and reader benchmark), Go interop oracle
    libhiredis-dev golang-go golang-github-miekg-dns-dev golang-github-cespare-xxhash-dev
    # test tooling
    python3 procps iproute2 curl
    # packaging tests: systemd-analyze verify, man/groff warnings, k8s YAML, static checks
    systemd man-db groff-base python3-yaml file strace
)

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

line="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing packages; run as root:" >&2
    echo "  apt-get update && $line" >&2
    exit 1
fi

echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts these daemons on install; the tests start their own on free ports.
for svc in redis-server redis-sentinel knot dnsdist; do
    if command -v systemctl >/dev/null 2>&1; then systemctl stop "$svc" >/dev/null 2>&1 || true; fi
    if command -v service >/dev/null 2>&1; then service "$svc" stop >/dev/null 2>&1 || true; fi
done
exit 0
