#!/usr/bin/env bash
# `make run`: starts redis-cache-dns in the foreground on the embedded default Corefile.
set -u
bin=${BUILD:-build}/redis-cache-dns
if [ ! -x "$bin" ]; then
    echo "make run: the server (redis-cache-dns) is not built yet: it arrives with the server"
    echo "issue. Today the project ships the library layers; see README 'Status'."
    exit 1
fi
exec "$bin" "$@"
