#!/usr/bin/env bash
# Operator packaging, each artifact exercised for real (issue 10):
#   1. make install into a temp DESTDIR: the installed server runs (-version, -check of the
#      example Corefile); the shared library has its soname and links; examples/embed.c
#      builds against the installed tree with `pkg-config --cflags --libs redis_cache` only
#      (shared, and --static) and runs against a real redis-server; the installed man pages
#      render without warnings and the installed systemd unit passes systemd-analyze
#      verify; make uninstall leaves no file behind.
#   2. make static: not a dynamic executable; our objects call no NSS function; it serves
#      real queries (plain Redis and TLS Redis, the test upstream) as the only file in an
#      otherwise empty root (user namespace, else chroot as root), and stops with 0.
#   3. contrib/Containerfile: the build stage runs `make static`, the image is scratch.
#      (No container runtime here: the structure is what can be checked offline.)
#   4. contrib/k8s: every YAML document parses; the ConfigMap's Corefile passes -check.
#   5. LICENSE, NOTICE and THIRD_PARTY name what the static binary redistributes.
source "$(dirname "$0")/lib.sh"

cd "$IT_ROOT" || exit 1
# make's BUILD as the caller gave it (relative to the root when inside it)
MKBUILD=${IT_BUILD#"$IT_ROOT"/}
mk() { make --no-print-directory -C "$IT_ROOT" BUILD="$MKBUILD" "$@"; }
VERSION=$(sed -n 's/^VERSION *:= *//p' Makefile)
CC=${CC:-cc}

command -v dig >/dev/null || skip_all "dig not installed"

zone="$IT_TMP/pkg.zone"
{
    echo '$ORIGIN test.'
    echo '$TTL 300'
    echo '@ IN SOA ns.test. hostmaster.test. 1 60 60 60 120'
    echo '@ IN NS ns.test.'
    echo 'ns IN A 127.0.0.1'
    echo 'a.plain IN A 192.0.2.11'
    echo 'a.tls IN A 192.0.2.12'
    echo 'a.nss IN A 192.0.2.13'
} >"$zone"
dns_start "$zone" || { not_ok "test upstream started"; finish; }
rport=$(redis_start plain) || { not_ok "redis-server started"; finish; }

# wait_for SECONDS CMD...: until CMD succeeds (polled every 0.1 s)
wait_for() {
    local secs=$1 i
    shift
    for i in $(seq $((secs * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    return 1
}
has_key() { [ -n "$(redis-cli "$@" --scan --pattern 'cdrc:*' 2>/dev/null)" ]; }
q() { dig +short +tries=1 +time=5 @127.0.0.1 -p "$@"; }

# ======================================================================= 1. make install
DEST="$IT_TMP/dest"
PREFIX=/usr/local
P="$DEST$PREFIX"
if mk install DESTDIR="$DEST" PREFIX="$PREFIX" >"$IT_TMP/install.log" 2>&1; then
    ok "make install DESTDIR PREFIX=/usr/local succeeds"
else
    not_ok "make install DESTDIR PREFIX=/usr/local succeeds" "$(tail -n 20 "$IT_TMP/install.log")"
    finish
fi

missing=""
for f in sbin/redis-cache-dns lib/libredis_cache.a "lib/libredis_cache.so.$VERSION" \
    lib/libredis_cache.so.0 lib/libredis_cache.so include/redis_cache.h \
    lib/pkgconfig/redis_cache.pc share/man/man8/redis-cache-dns.8 share/man/man7/redis_cache.7 \
    lib/systemd/system/redis-cache-dns.service share/doc/redis-cache-dns/Corefile.example \
    share/doc/redis-cache-dns/LICENSE share/doc/redis-cache-dns/NOTICE \
    share/doc/redis-cache-dns/THIRD_PARTY; do
    [ -e "$P/$f" ] || missing="$missing $f"
done
if [ -z "$missing" ]; then ok "install puts every artifact under PREFIX"; else
    not_ok "install puts every artifact under PREFIX" "missing:$missing"; fi

out=$("$P/sbin/redis-cache-dns" -version 2>&1)
if [ "$out" = "redis-cache-dns $VERSION" ]; then ok "installed server prints its version"
else not_ok "installed server prints its version" "$out"; fi

check "installed server accepts the installed example Corefile (-check)" \
    "$P/sbin/redis-cache-dns" -check -conf "$P/share/doc/redis-cache-dns/Corefile.example"

bad="$IT_TMP/bad.Corefile"
printf '.:1053 {\n    redis_cache {\n        success 500ms\n    }\n}\n' >"$bad"
out=$("$P/sbin/redis-cache-dns" -check -conf "$bad" 2>&1)
rc=$?
if [ $rc -eq 1 ] && printf '%s' "$out" | grep -q "^$bad:3: redis_cache: "; then
    ok "installed server -check rejects a bad Corefile with FILE:LINE: NAME: (exit 1)"
else not_ok "installed server -check rejects a bad Corefile with FILE:LINE: NAME: (exit 1)" \
    "rc=$rc $out"; fi

soname=$(readelf -d "$P/lib/libredis_cache.so.$VERSION" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
if [ "$soname" = "libredis_cache.so.0" ] &&
    [ "$(readlink "$P/lib/libredis_cache.so.0")" = "libredis_cache.so.$VERSION" ] &&
    [ "$(readlink "$P/lib/libredis_cache.so")" = "libredis_cache.so.0" ]; then
    ok "shared library has soname libredis_cache.so.0 and the .so.0/.so links"
else not_ok "shared library has soname libredis_cache.so.0 and the .so.0/.so links" \
    "soname=$soname $(ls -l "$P"/lib/libredis_cache.so*)"; fi
# the shared library exports the public API and nothing else (src/redis_cache.map)
hdr=$(grep -oE '\brc_[a-z_]+ *\(' "$P/include/redis_cache.h" | tr -d '( ' | sort -u)
exp=$(nm -D --defined-only "$P/lib/libredis_cache.so.$VERSION" | awk '$2 ~ /^[TtWwDdBbRr]$/ {print $3}' |
    sed 's/@.*//' | sort -u)
others=$(comm -13 <(echo "$hdr") <(echo "$exp"))
missing=$(comm -23 <(echo "$hdr") <(echo "$exp") | grep -vE '_cb$')
if [ -z "$others" ] && [ -z "$missing" ] && [ -n "$exp" ]; then
    ok "libredis_cache.so exports exactly the header's $(echo "$exp" | wc -l) rc_* functions"
else not_ok "shared library exports only the public API" "not public: $(echo $others | head -c 300); missing: $missing"; fi

# the installed pkg-config file, seen from the staged tree
export PKG_CONFIG_PATH="$P/lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$DEST"
out=$(pkg-config --modversion redis_cache 2>&1)
if [ "$out" = "$VERSION" ]; then ok "pkg-config finds redis_cache $VERSION"
else not_ok "pkg-config finds redis_cache $VERSION" "$out"; fi
out=$(pkg-config --print-requires-private redis_cache 2>&1)
if printf '%s' "$out" | grep -q libssl && printf '%s' "$out" | grep -q libcrypto; then
    ok "redis_cache.pc: OpenSSL in Requires.private"
else not_ok "redis_cache.pc: OpenSSL in Requires.private" "$out"; fi

# examples/embed.c against the installed tree: pkg-config's flags and nothing else
embed="$IT_TMP/embed"
# shellcheck disable=SC2046
if out=$($CC -std=c11 -Wall -Wextra -Werror -o "$embed" examples/embed.c \
    $(pkg-config --cflags --libs redis_cache) 2>&1); then
    ok "examples/embed.c builds with pkg-config --cflags --libs redis_cache"
else not_ok "examples/embed.c builds with pkg-config --cflags --libs redis_cache" "$out"; fi
if readelf -d "$embed" 2>/dev/null | grep -q 'NEEDED.*\[libredis_cache\.so\.0\]'; then
    ok "embed links the shared library by its soname"
else not_ok "embed links the shared library by its soname" "$(readelf -d "$embed" 2>&1 | grep NEEDED)"; fi
rcli "$rport" flushall >/dev/null
out=$(LD_LIBRARY_PATH="$P/lib" timeout 30 "$embed" "$rport" 2>&1)
rc=$?
if [ $rc -eq 0 ] && printf '%s' "$out" | grep -q '^first lookup: miss' &&
    printf '%s' "$out" | grep -q '^second lookup: hit' && has_key -h 127.0.0.1 -p "$rport"; then
    ok "installed-tree embed (shared) misses, stores in Redis, then hits"
else not_ok "installed-tree embed (shared) misses, stores in Redis, then hits" "rc=$rc $out"; fi

embeds="$IT_TMP/embed-static"
# shellcheck disable=SC2046
if out=$($CC -std=c11 -o "$embeds" examples/embed.c \
    $(pkg-config --static --cflags --libs redis_cache) -static 2>&1) &&
    ! readelf -d "$embeds" 2>/dev/null | grep -q NEEDED; then
    rcli "$rport" flushall >/dev/null
    out=$(timeout 30 "$embeds" "$rport" 2>&1)
    rc=$?
    if [ $rc -eq 0 ] && printf '%s' "$out" | grep -q '^second lookup: hit'; then
        ok "embed links statically from pkg-config --static (Libs.private) and hits"
    else not_ok "embed links statically from pkg-config --static (Libs.private) and hits" "rc=$rc $out"; fi
else not_ok "embed links statically from pkg-config --static (Libs.private) and hits" "$out"; fi
unset PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR

# man pages, as installed: no groff/man warnings
for page in "$P/share/man/man8/redis-cache-dns.8" "$P/share/man/man7/redis_cache.7"; do
    name=$(basename "$page")
    w=$( { LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 "$page" \
        >/dev/null; groff -man -ww -z "$page"; } 2>&1)
    # plain text (no overstrike bold) for the coverage checks below
    groff -man -Tascii -P-cbou "$page" 2>/dev/null >"$IT_TMP/$name.txt"
    lines=$(wc -l <"$IT_TMP/$name.txt")
    if [ -z "$w" ] && [ "$lines" -gt 100 ]; then ok "man page $name renders without warnings"
    else not_ok "man page $name renders without warnings" "lines=$lines $w"; fi
done
# the pages cover what they must
missing=""
for s in SIGTERM SIGINT SIGHUP SIGUSR1 "EXIT STATUS" FILES ENVIRONMENT -threads -check -version; do
    grep -q -- "$s" "$IT_TMP/redis-cache-dns.8.txt" || missing="$missing [$s]"
done
for s in success denial endpoint read_endpoint key_prefix key_hash_seed db sentinel cluster \
    read_from username password sentinel_username sentinel_password timeout pool retries \
    tcp_keepalive tls tls_ca tls_cert tls_key tls_verify_chain tls_verify_hostname resolver \
    coredns_redis_cache_hits_total coredns_redis_cache_request_duration_seconds \
    coredns_redis_cache_get_errors_total coredns_redis_cache_set_errors_total \
    coredns_redis_cache_encode_errors_total coredns_redis_cache_response_mismatches_total \
    coredns_redis_cache_collisions_total; do
    grep -qw -- "$s" "$IT_TMP/redis_cache.7.txt" || missing="$missing [$s]"
done
if [ -z "$missing" ]; then ok "man pages document signals, exit codes, every sub-directive and metric"
else not_ok "man pages document signals, exit codes, every sub-directive and metric" "missing:$missing"; fi

# the installed systemd unit: verify with ExecStart pointing at the staged binary
unit="$P/lib/systemd/system/redis-cache-dns.service"
if command -v systemd-analyze >/dev/null; then
    mkdir -p "$IT_TMP/units"
    sed "s|$PREFIX/sbin/redis-cache-dns|$P/sbin/redis-cache-dns|g" "$unit" \
        >"$IT_TMP/units/redis-cache-dns.service"
    out=$(MANPATH="$P/share/man" systemd-analyze verify "$IT_TMP/units/redis-cache-dns.service" 2>&1)
    rc=$?
    if [ $rc -eq 0 ] && [ -z "$out" ]; then ok "systemd-analyze verify passes on the installed unit"
    else not_ok "systemd-analyze verify passes on the installed unit" "rc=$rc $out"; fi
else
    not_ok "systemd-analyze verify passes on the installed unit" "systemd-analyze missing (scripts/deps.sh installs systemd)"
fi
missing=""
for l in "DynamicUser=yes" "AmbientCapabilities=CAP_NET_BIND_SERVICE" \
    "CapabilityBoundingSet=CAP_NET_BIND_SERVICE" "ProtectSystem=strict" "ProtectHome=yes" \
    "PrivateTmp=yes" "NoNewPrivileges=yes" "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX" \
    "SystemCallFilter=@system-service" 'ExecReload=/bin/kill -HUP $MAINPID' \
    "Restart=on-failure" "ExecStart=$PREFIX/sbin/redis-cache-dns -conf /etc/redis-cache-dns/Corefile"; do
    grep -qxF -- "$l" "$unit" || missing="$missing [$l]"
done
if [ -z "$missing" ]; then ok "installed unit is hardened (DynamicUser, CAP_NET_BIND_SERVICE only, ...)"
else not_ok "installed unit is hardened (DynamicUser, CAP_NET_BIND_SERVICE only, ...)" "missing:$missing"; fi

# PREFIX=/usr rewrites the unit's paths
out=$(mk "$MKBUILD/redis-cache-dns.service" PREFIX=/usr 2>&1 >/dev/null &&
    grep '^ExecStart=' "$IT_BUILD/redis-cache-dns.service")
if [ "$out" = "ExecStart=/usr/sbin/redis-cache-dns -conf /etc/redis-cache-dns/Corefile" ]; then
    ok "the unit names SBINDIR of the install (PREFIX=/usr -> /usr/sbin)"
else not_ok "the unit names SBINDIR of the install (PREFIX=/usr -> /usr/sbin)" "$out"; fi

if mk uninstall DESTDIR="$DEST" PREFIX="$PREFIX" >"$IT_TMP/uninstall.log" 2>&1; then
    left=$(find "$DEST" ! -type d)
    if [ -z "$left" ]; then ok "make uninstall removes every installed file"
    else not_ok "make uninstall removes every installed file" "$left"; fi
else not_ok "make uninstall removes every installed file" "$(tail "$IT_TMP/uninstall.log")"; fi

# ======================================================================= 2. make static
sbin="$IT_BUILD/static/redis-cache-dns"
if mk static >"$IT_TMP/static.log" 2>&1 && [ -x "$sbin" ]; then ok "make static builds $MKBUILD/static/redis-cache-dns"
else not_ok "make static builds" "$(tail -n 20 "$IT_TMP/static.log")"; finish; fi
grep '^static:' "$IT_TMP/static.log" | sed 's/^/# /'

lddout=$(ldd "$sbin" 2>&1)
fileout=$(file -b "$sbin")
if printf '%s' "$lddout" | grep -Eq 'not a dynamic executable|statically linked' &&
    printf '%s' "$fileout" | grep -Eq 'static(-pie)? linked' &&
    ! readelf -l "$sbin" | grep -q INTERP && ! readelf -d "$sbin" | grep -q NEEDED; then
    ok "static binary: ldd and file say not dynamic, no interpreter, no NEEDED"
else not_ok "static binary: ldd and file say not dynamic" "ldd: $lddout; file: $fileout"; fi

nss='^(getaddrinfo|getnameinfo|gethostbyname.*|gethostbyaddr.*|getpw.*|getgr.*|getserv.*|getproto.*|initgroups|getspnam.*|dlopen)$'
ours=$(for o in "$IT_BUILD/obj/src/server/main.o" "$IT_BUILD/libserver.a" "$IT_BUILD/libredis_cache.a"; do
    nm -u "$o" 2>/dev/null | awk '{print $NF}'; done | grep -E "$nss" | sort -u)
if [ -z "$ours" ]; then ok "the server's own code calls no NSS function (getaddrinfo, getpw*, dlopen, ...)"
else not_ok "the server's own code calls no NSS function" "$ours"; fi
# Who pulled each NSS-related libc member into the static link (the link map): never our
# objects directly, only libcrypto.a (BIO_lookup_ex, BIO_gethostbyname, DSO) or libc itself.
map="$sbin.map"
nssmem='libc[.]a[(](getaddrinfo|gethstby[a-z0-9_]*|getpw[a-z_]*|getgr[a-z_]*|getsrvby[a-z_]*|getprtby[a-z_]*|initgroups|dlopen|nsswitch|nss_[a-z_]*)[.]o[)]$'
prov=$(awk -v re="$nssmem" '/^Archive member included/ {on = 1; next}
    on && /^(Allocating|Discarded|Memory|Linker)/ {exit}
    on && /^[^ ]/ && $0 ~ re {m = $0; getline; print m " <- " $1 " " $2}' "$map" 2>/dev/null |
    sed 's|[^ ]*/||g')
# report the entry points (what outside libc pulled NSS in, and glob's getpwnam_r)
printf '%s\n' "$prov" | grep -Ev '<- libc[.]a[(](getaddrinfo|gethstby|nss|files-|fgetgr|group_member|getlogin|getnameinfo|nscd)' |
    sed 's/^/# static link: /'
direct=$(printf '%s\n' "$prov" | grep -E '<- (main\.o|libserver\.a|libredis_cache\.a)')
if grep -q '^Archive member included' "$map" 2>/dev/null && [ -z "$direct" ]; then
    ok "static link: NSS code comes only from libcrypto/libc internals, never from our objects"
else not_ok "static link: NSS code comes only from libcrypto/libc internals" "map=$map direct: $direct"; fi

# No NSS at run time: in the full host root, where NSS modules and nsswitch.conf exist, the
# static server resolves a Redis host name (localhost, /etc/hosts) itself and opens no
# NSS file or module.
if command -v strace >/dev/null && strace -f -o /dev/null true 2>/dev/null; then
    p=$(free_port)
    # with an `import` glob too (glob(3) can reach getpwnam for ~user: it must not here)
    mkdir -p "$IT_TMP/nss.d"
    echo "errors" >"$IT_TMP/nss.d/errors.conf"
    for imp in "    import $IT_TMP/nss.d/*.conf" ""; do
        printf 'nss.test:%s {\n    bind 127.0.0.1\n%s\n    redis_cache {\n        endpoint localhost:%s\n    }\n    forward . 127.0.0.1:%s\n}\n' \
            "$p" "$imp" "$rport" "$DNS_PORT" >"$IT_TMP/nss.conf"
        "$sbin" -check -conf "$IT_TMP/nss.conf" >/dev/null 2>&1 && break
        echo "# import not accepted by this build: NSS run without it"
    done
    rcli "$rport" flushall >/dev/null
    strace -f -e trace=open,openat,connect -o "$IT_TMP/strace.log" \
        "$sbin" -conf "$IT_TMP/nss.conf" -threads 1 >/dev/null 2>"$IT_TMP/nss.err" &
    spid=$!
    IT_PIDS+=("$spid")
    # stop the traced server, not strace (strace would detach and leave it running)
    stop_traced() {
        local c
        c=$(ps -o pid= --ppid "$spid" | tr -d ' ')
        [ -n "$c" ] && kill "$c" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$spid" 2>/dev/null || break; sleep 0.05; done
        kill "$spid" 2>/dev/null
        wait "$spid" 2>/dev/null
    }
    if wait_port "$p" 20 && [ "$(q "$p" a.nss.test)" = "192.0.2.13" ] &&
        wait_for 10 has_key -h 127.0.0.1 -p "$rport"; then
        stop_traced
        opened=$(grep -E 'nsswitch|libnss_|/run/nscd|host\.conf|gai\.conf|/etc/passwd' "$IT_TMP/strace.log")
        if [ -z "$opened" ] && grep -q '"/etc/hosts"' "$IT_TMP/strace.log"; then
            ok "static server resolves a Redis host name without NSS (no nsswitch/libnss_ opened)"
        else not_ok "static server resolves a Redis host name without NSS" "$opened"; fi
    else
        stop_traced
        not_ok "static server resolves a Redis host name without NSS" "$(tail -n 5 "$IT_TMP/nss.err")"
    fi
else
    echo "# strace unavailable or ptrace refused: NSS open check skipped"
fi

# The empty root: the binary, a Corefile and the CA file, nothing else.
tls_make_certs
tport=$(redis_start_tls tls) || not_ok "TLS redis-server started"
ROOT="$IT_TMP/root"
mkdir -p "$ROOT"
cp "$sbin" "$ROOT/redis-cache-dns"
cp "$TLS_DIR/ca.crt" "$ROOT/ca.crt"
mode=""
if unshare --user --map-root-user --mount --root="$ROOT" /redis-cache-dns -version >/dev/null 2>&1; then
    mode=userns
elif [ "$(id -u)" -eq 0 ] && chroot "$ROOT" /redis-cache-dns -version >/dev/null 2>&1; then
    mode=chroot
fi
# the command prefix that runs a program in $ROOT (unshare and chroot exec it: same pid)
case $mode in
userns) in_root=(unshare --user --map-root-user --mount --root="$ROOT") ;;
chroot) in_root=(chroot "$ROOT") ;;
*) in_root=() ;;
esac
if [ -z "$mode" ]; then
    ok "# SKIP static server in an empty root: neither user namespaces (unshare --user --map-root-user --root) nor chroot as root work on this machine"
else
    echo "# empty root through: $mode"
    p1=$(free_port) p2=$(free_port)
    cat >"$ROOT/Corefile" <<EOF
plain.test:$p1 {
    bind 127.0.0.1
    redis_cache {
        endpoint 127.0.0.1:$rport
    }
    forward . 127.0.0.1:$DNS_PORT
}
tls.test:$p2 {
    bind 127.0.0.1
    redis_cache {
        endpoint 127.0.0.1:$tport
        tls_ca /ca.crt
    }
    forward . 127.0.0.1:$DNS_PORT
}
EOF
    contents=$(cd "$ROOT" && find . | sort | tr '\n' ' ')
    check "empty root holds only the binary, the Corefile and the CA" \
        test "$contents" = ". ./Corefile ./ca.crt ./redis-cache-dns "
    check "static binary -check passes in the empty root (loads the CA)" \
        "${in_root[@]}" /redis-cache-dns -check -conf /Corefile
    rcli "$rport" flushall >/dev/null
    "${in_root[@]}" /redis-cache-dns -conf /Corefile >"$IT_TMP/root.out" 2>"$IT_TMP/root.err" &
    rpid=$!
    IT_PIDS+=("$rpid")
    if wait_port "$p1" 20 && wait_port "$p2" 5; then
        ok "static server starts in the empty root"
        out=$(q "$p1" a.plain.test)
        if [ "$out" = "192.0.2.11" ] && wait_for 10 has_key -h 127.0.0.1 -p "$rport"; then
            ok "empty root: answers a query through forward and writes it to Redis"
        else not_ok "empty root: answers a query through forward and writes it to Redis" \
            "answer=$out $(tail -n 5 "$IT_TMP/root.err")"; fi
        tcli=(-h 127.0.0.1 -p "$tport" --tls --cacert "$TLS_DIR/ca.crt")
        out=$(q "$p2" a.tls.test)
        if [ "$out" = "192.0.2.12" ] && wait_for 10 has_key "${tcli[@]}"; then
            # no L1 in the block: the repeat is answered from the TLS Redis, not upstream
            out2=$(q "$p2" a.tls.test)
            n=$(dns_ctl "count a.tls.test. A")
            if [ "$out2" = "192.0.2.12" ] && [ "$n" = "1" ]; then
                ok "empty root: TLS Redis with tls_ca serves the repeat from L2 (upstream asked once)"
            else not_ok "empty root: TLS Redis serves the repeat from L2" "answer=$out2 upstream count=$n"; fi
        else not_ok "empty root: TLS Redis with tls_ca written" "answer=$out $(tail -n 5 "$IT_TMP/root.err")"; fi
        kill -TERM "$rpid"
        wait "$rpid"
        rc=$?
        if [ $rc -eq 0 ]; then ok "empty root: SIGTERM stops the server with status 0"
        else not_ok "empty root: SIGTERM stops the server with status 0" "rc=$rc"; fi
    else
        kill "$rpid" 2>/dev/null
        not_ok "static server starts in the empty root" "$(tail -n 10 "$IT_TMP/root.err")"
    fi
fi

# ======================================================================= 3. Containerfile
cf=contrib/Containerfile
stages=$(grep -ciE '^FROM ' "$cf")
first=$(grep -iE '^FROM ' "$cf" | head -n 1)
last=$(grep -iE '^FROM ' "$cf" | tail -n 1)
if [ "$stages" -eq 2 ] && printf '%s' "$first" | grep -qiE '^FROM debian:bookworm AS build$' &&
    [ "$last" = "FROM scratch" ]; then
    ok "Containerfile: two stages, Debian bookworm builder then scratch"
else not_ok "Containerfile: two stages, Debian bookworm builder then scratch" "$(grep -iE '^FROM ' "$cf")"; fi
# the build stage's RUN that builds: `make ... static`, the target this test ran
build_stage=$(sed -n '/^FROM debian/,/^FROM scratch/p' "$cf")
if printf '%s\n' "$build_stage" | grep -Eq '^RUN make( BUILD=[^ ]+)? static( |$)' &&
    printf '%s\n' "$build_stage" | grep -q 'static/redis-cache-dns'; then
    ok "Containerfile: the build stage runs make static and takes static/redis-cache-dns"
else not_ok "Containerfile: the build stage runs make static" "$build_stage"; fi
user=$(sed -n '/^FROM scratch/,$p' "$cf" | sed -n 's/^USER \([0-9]*\)\(:[0-9]*\)\?$/\1/p')
if [ -n "$user" ] && [ "$user" -ne 0 ]; then ok "Containerfile: final stage runs as non-root UID $user"
else not_ok "Containerfile: final stage runs as non-root UID" "USER=$user"; fi
missing=""
for l in "EXPOSE 53/udp 53/tcp 9153/tcp" 'ENTRYPOINT ["/redis-cache-dns"]' \
    'CMD ["-conf", "/etc/redis-cache-dns/Corefile"]'; do
    grep -qxF -- "$l" "$cf" || missing="$missing [$l]"
done
if [ -z "$missing" ]; then ok "Containerfile: exposes 53/udp 53/tcp 9153, runs the Corefile at /etc/redis-cache-dns"
else not_ok "Containerfile: exposes 53/udp 53/tcp 9153, runs the Corefile" "missing:$missing"; fi
# what the image's entrypoint would run, in our empty root: the image's Corefile parses
# (a container runtime provides /etc/resolv.conf, which its `forward` reads)
if [ -n "$mode" ]; then
    cp contrib/Corefile "$ROOT/Corefile"
    mkdir -p "$ROOT/etc"
    echo "nameserver 127.0.0.1" >"$ROOT/etc/resolv.conf"
    check "the image's Corefile (contrib/Corefile) passes -check in the empty root" \
        "${in_root[@]}" /redis-cache-dns -check -conf /Corefile
fi

# ======================================================================= 4. Kubernetes
out=$("$IT_PY" - contrib/k8s/*.yaml <<'EOF' 2>&1
import sys, yaml
kinds = []
for f in sys.argv[1:]:
    for d in yaml.safe_load_all(open(f)):
        if d is None:
            continue
        assert "apiVersion" in d and "kind" in d and d.get("metadata", {}).get("name"), f
        kinds.append(d["kind"])
print(" ".join(sorted(kinds)))
EOF
)
if [ $? -eq 0 ] && printf '%s' "$out" | grep -q DaemonSet && printf '%s' "$out" | grep -q ConfigMap &&
    printf '%s' "$out" | grep -q StatefulSet && printf '%s' "$out" | grep -q Service; then
    ok "contrib/k8s: every YAML document parses (DaemonSet, ConfigMap, StatefulSets, Services)"
else not_ok "contrib/k8s: every YAML document parses" "$out"; fi

kcore="$IT_TMP/k8s.Corefile"
out=$("$IT_PY" - contrib/k8s/node-local-dns.yaml "$kcore" <<'EOF' 2>&1
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
cm = [d for d in docs if d["kind"] == "ConfigMap"][0]
ds = [d for d in docs if d["kind"] == "DaemonSet"][0]
spec = ds["spec"]["template"]["spec"]
c = spec["containers"][0]
assert spec["hostNetwork"] is True, "hostNetwork"
assert "169.254.20.10" in cm["data"]["Corefile"], "bind 169.254.20.10"
assert c["args"] == ["-conf", "/etc/redis-cache-dns/Corefile"], c["args"]
assert cm["metadata"]["name"] == spec["volumes"][0]["configMap"]["name"], "volume"
open(sys.argv[2], "w").write(cm["data"]["Corefile"])
print(" ".join(e["name"] for e in c["env"]))
EOF
)
if [ $? -eq 0 ]; then
    ok "node-local-dns DaemonSet: hostNetwork, 169.254.20.10, mounts its ConfigMap"
    envs=$out
    # the values the DaemonSet would set; -check runs with exactly those variables
    out=$(env -i CLUSTER_DNS=10.96.0.10 REDIS_PASSWORD=secret "$sbin" -check -conf "$kcore" 2>&1)
    if [ $? -eq 0 ] && [ "$envs" = "CLUSTER_DNS REDIS_PASSWORD" ]; then
        ok "the ConfigMap's Corefile passes -check with the DaemonSet's env ($envs)"
    else not_ok "the ConfigMap's Corefile passes -check with the DaemonSet's env" "env=$envs $out"; fi
    if ! env -i "$sbin" -check -conf "$kcore" >/dev/null 2>&1; then
        ok "the ConfigMap's Corefile needs its env (fails -check without it)"
    else not_ok "the ConfigMap's Corefile needs its env (fails -check without it)"; fi
    if grep -q 'k8s-dns-cache-redis-master.k8s-dns-cache.svc' "$kcore" &&
        grep -q 'name: k8s-dns-cache-redis-master' contrib/k8s/redis.yaml &&
        grep -q 'k8s-dns-cache-redis-replicas.k8s-dns-cache.svc' "$kcore" &&
        grep -q 'name: k8s-dns-cache-redis-replicas' contrib/k8s/redis.yaml; then
        ok "the Corefile's endpoints are the Services of contrib/k8s/redis.yaml"
    else not_ok "the Corefile's endpoints are the Services of contrib/k8s/redis.yaml"; fi
else not_ok "node-local-dns DaemonSet: hostNetwork, 169.254.20.10, mounts its ConfigMap" "$out"; fi

# ======================================================================= 5. licenses
if grep -q 'Apache License' LICENSE && grep -q 'Version 2.0' LICENSE; then ok "LICENSE is Apache-2.0"
else not_ok "LICENSE is Apache-2.0"; fi
missing=""
for s in OpenSSL "Apache License 2.0" libev BSD-2-Clause xxHash "GNU C Library" LGPL \
    "Redistributions in binary form"; do
    grep -qF -- "$s" THIRD_PARTY || missing="$missing [$s]"
done
for s in OpenSSL libev xxHash THIRD_PARTY; do grep -qF -- "$s" NOTICE || missing="$missing [NOTICE $s]"; done
if [ -z "$missing" ]; then ok "NOTICE/THIRD_PARTY list OpenSSL, libev, xxHash, glibc with license texts"
else not_ok "NOTICE/THIRD_PARTY list what the static binary redistributes" "missing:$missing"; fi

finish
