#!/usr/bin/env bash
# tests/oracle/build.sh — builds the Go interop oracle (test-only, SPEC §6) into
# $BUILD/oracle (BUILD defaults to build/), offline, with Debian's Go packages only:
#   golang-go, golang-github-miekg-dns-dev, golang-github-cespare-xxhash-dev
# (GOPATH mode: GO111MODULE=off GOPATH=/usr/share/gocode; nothing is downloaded).
# Prints the binary's path on success. Rebuilds only when oracle.go is newer.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${BUILD:-build}
case "$build" in /*) ;; *) build="$root/$build" ;; esac
out="$build/oracle"

if ! command -v go >/dev/null 2>&1; then
    echo "build.sh: go not found (apt-get install golang-go)" >&2
    exit 1
fi
for d in github.com/miekg/dns github.com/cespare/xxhash; do
    if [ ! -d "/usr/share/gocode/src/$d" ]; then
        echo "build.sh: /usr/share/gocode/src/$d missing (apt-get install" \
            "golang-github-miekg-dns-dev golang-github-cespare-xxhash-dev)" >&2
        exit 1
    fi
done

if [ -x "$out" ] && [ "$out" -nt "$here/oracle.go" ] && [ "$out" -nt "$0" ]; then
    echo "$out"
    exit 0
fi

mkdir -p "$build/oracle-go"
# GOPATH mode builds a directory: copy the one source file to a scratch package dir so that
# nothing is written into the source tree.
src="$build/oracle-go/src/oracle"
mkdir -p "$src"
cp "$here/oracle.go" "$src/oracle.go"
(
    cd "$src"
    GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$build/oracle-go/cache" \
        GOFLAGS= GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=0 \
        go build -o "$out.tmp" .
)
mv "$out.tmp" "$out"
echo "$out"
