# redis_cache — build, test, fuzz and bench.
# `make` builds the library (static + shared) and, once it exists, the server.
# `make test` installs missing packages, builds, and runs every test suite.

CC       ?= cc
FUZZ_CC  ?= clang
BUILD    ?= build

VERSION  := 0.1.0
SOVER    := 0

WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wno-unused-parameter
CSTD     := -std=c11 -D_GNU_SOURCE
CFLAGS   ?= -O2 -g
ALL_CFLAGS = $(CSTD) $(CFLAGS) $(WARN) -fPIC -Iinclude -Isrc -MMD -MP \
             -DRC_VERSION=\"$(VERSION)\"
LIBS     := -lev -lssl -lcrypto -lm -lpthread

SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

# Library sources: every layer except the server.
LIB_DIRS := src/config src/resp src/topology src/dns src/plugin
LIB_SRCS := $(sort $(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.c)))
# The server: src/server/main.c is the program; the rest of src/server is an internal
# archive (libserver.a) that the program and the tests link.
SRV_SRCS := $(sort $(filter-out src/server/main.c,$(wildcard src/server/*.c)))
SRV_MAIN := $(wildcard src/server/main.c)

LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
SRV_OBJS := $(SRV_SRCS:%.c=$(BUILD)/obj/%.o)
ASAN_SRV_OBJS := $(SRV_SRCS:%.c=$(BUILD)/asan/obj/%.o)
FUZZ_SRV_OBJS := $(SRV_SRCS:%.c=$(BUILD)/fuzz/obj/%.o)
ASAN_LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/asan/obj/%.o)
FUZZ_LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/fuzz/obj/%.o)

STATIC_LIB := $(BUILD)/libredis_cache.a
SHARED_LIB := $(BUILD)/libredis_cache.so
ASAN_LIB   := $(BUILD)/asan/libredis_cache.a
FUZZ_LIB   := $(BUILD)/fuzz/libredis_cache.a
SRV_LIB    := $(BUILD)/libserver.a
ASAN_SRV_LIB := $(BUILD)/asan/libserver.a
FUZZ_SRV_LIB := $(BUILD)/fuzz/libserver.a
SERVER     := $(if $(SRV_MAIN),$(BUILD)/redis-cache-dns)

UNIT_SRCS  := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS  := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
ASAN_BINS  := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/asan/tests/%)
# Helpers shared by unit tests (fixtures, builders): tests/unit/support/*.c
TSUP_SRCS  := $(sort $(wildcard tests/unit/support/*.c))

# Integration test programs (cmocka, driven by tests/integration/*.sh against real servers),
# built under ASan+UBSan: real network code is where memory bugs hide.
ITEST_SRCS := $(sort $(wildcard tests/integration/itest_*.c))
ITEST_BINS := $(ITEST_SRCS:tests/integration/%.c=$(BUILD)/itests/%)

FUZZ_SRCS  := $(sort $(wildcard fuzz/*.c))
FUZZ_BINS  := $(FUZZ_SRCS:fuzz/%.c=$(BUILD)/fuzz/%)

# Examples use only the public header (include/redis_cache.h) and the library.
EXAMPLE_SRCS := $(sort $(wildcard examples/*.c))
EXAMPLE_BINS := $(EXAMPLE_SRCS:examples/%.c=$(BUILD)/examples/%)

BENCH_SRCS := $(sort $(wildcard bench/*.c))
BENCH_BINS := $(BENCH_SRCS:bench/%.c=$(BUILD)/bench/%)

# Per-target extra link flags (test/bench-only dependencies such as hiredis).
EXTRA_LIBS_resp_diff := -lhiredis
EXTRA_LIBS_resp      := -lhiredis

.PHONY: all lib test deps unit unit-asan integration fuzz fuzz-smoke bench bench-server run clean \
        format \
        format-check tests-build install uninstall static

all: lib $(SRV_LIB) $(SERVER)

lib: $(STATIC_LIB) $(SHARED_LIB)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/asan/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(SAN_FLAGS) -c $< -o $@

$(BUILD)/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(ALL_CFLAGS) -O1 -fsanitize=fuzzer-no-link,address,undefined \
	    -fno-sanitize-recover=all -fno-omit-frame-pointer -c $< -o $@

$(STATIC_LIB): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(SHARED_LIB): $(LIB_OBJS) src/redis_cache.map
	@mkdir -p $(dir $@)
	$(CC) -shared -Wl,-soname,libredis_cache.so.$(SOVER) \
	    -Wl,--version-script,src/redis_cache.map -o $@ $(LIB_OBJS) $(LIBS)

$(ASAN_LIB): $(ASAN_LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(FUZZ_LIB): $(FUZZ_LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(SRV_LIB): $(SRV_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(ASAN_SRV_LIB): $(ASAN_SRV_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(FUZZ_SRV_LIB): $(FUZZ_SRV_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/redis-cache-dns: $(BUILD)/obj/src/server/main.o $(SRV_LIB) $(STATIC_LIB)
	$(CC) $(CFLAGS) -o $@ $< $(SRV_LIB) $(STATIC_LIB) $(LIBS)

# ---- unit tests (cmocka), plain and under ASan+UBSan ----
$(BUILD)/tests/%: tests/unit/%.c $(TSUP_SRCS) $(SRV_LIB) $(STATIC_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests/unit -o $@ $< $(TSUP_SRCS) $(SRV_LIB) $(STATIC_LIB) -lcmocka $(LIBS)

$(BUILD)/asan/tests/%: tests/unit/%.c $(TSUP_SRCS) $(ASAN_SRV_LIB) $(ASAN_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(SAN_FLAGS) -Itests/unit -o $@ $< $(TSUP_SRCS) $(ASAN_SRV_LIB) \
	    $(ASAN_LIB) -lcmocka $(LIBS)

$(BUILD)/itests/%: tests/integration/%.c $(TSUP_SRCS) $(ASAN_SRV_LIB) $(ASAN_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(SAN_FLAGS) -Itests/unit -Itests/integration -o $@ $< $(TSUP_SRCS) \
	    $(ASAN_SRV_LIB) $(ASAN_LIB) -lcmocka $(LIBS)

$(BUILD)/examples/%: examples/%.c $(STATIC_LIB) include/redis_cache.h
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(CFLAGS) $(WARN) -Iinclude -o $@ $< $(STATIC_LIB) $(LIBS)

tests-build: $(UNIT_BINS) $(ASAN_BINS) $(ITEST_BINS) $(EXAMPLE_BINS)

unit: $(UNIT_BINS)
	@RESULTS_DIR=$(BUILD)/results scripts/run-unit.sh unit $(UNIT_BINS)

unit-asan: $(ASAN_BINS)
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
	    RESULTS_DIR=$(BUILD)/results scripts/run-unit.sh unit-asan $(ASAN_BINS)

# ---- fuzzers (libFuzzer, clang, ASan+UBSan) ----
$(BUILD)/fuzz/%: fuzz/%.c $(FUZZ_SRV_LIB) $(FUZZ_LIB)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(ALL_CFLAGS) -O1 -fsanitize=fuzzer,address,undefined \
	    -fno-sanitize-recover=all -fno-omit-frame-pointer -o $@ $< $(FUZZ_SRV_LIB) $(FUZZ_LIB) \
	    $(EXTRA_LIBS_$*) $(LIBS)

fuzz: $(FUZZ_BINS)

FUZZ_SECONDS ?= 30
fuzz-smoke: $(FUZZ_BINS)
	@RESULTS_DIR=$(BUILD)/results FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz-smoke.sh $(FUZZ_BINS)

# ---- integration tests (real servers, started by the tests) ----
integration: all $(ITEST_BINS)
	@RESULTS_DIR=$(BUILD)/results BUILD=$(BUILD) scripts/run-integration.sh $(IT)

# ---- benchmarks ----
$(BUILD)/bench/%: bench/%.c $(STATIC_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -O2 -o $@ $< $(STATIC_LIB) $(EXTRA_LIBS_$*) $(LIBS)

bench: $(BENCH_BINS)
	@for b in $(BENCH_BINS); do echo "== $$b"; $$b || exit 1; done

# dnsperf against our server and dnsdist (starts knotd, redis-server, dnsdist itself).
bench-server: all
	@RCD_BIN=$(abspath $(BUILD))/redis-cache-dns bash bench/server.sh

# ---- the README's two commands ----
deps:
	@scripts/deps.sh

test: deps
	@rm -rf $(BUILD)/results
	$(MAKE) all tests-build fuzz
	$(MAKE) --no-print-directory format-check
	$(MAKE) --no-print-directory unit
	$(MAKE) --no-print-directory unit-asan
	$(MAKE) --no-print-directory integration
	$(MAKE) --no-print-directory fuzz-smoke
	@RESULTS_DIR=$(BUILD)/results scripts/summary.sh

run: deps all
	@scripts/run.sh

# ---- packaging: make install / uninstall / static ----
# GNU-style directories; DESTDIR stages an install (packagers, the packaging test).
# The server goes to sbin: it is a system daemon run by an administrator or an init
# system (as knotd, named, unbound), documented in section 8 of the manual.
PREFIX         ?= /usr/local
SBINDIR        ?= $(PREFIX)/sbin
LIBDIR         ?= $(PREFIX)/lib
INCLUDEDIR     ?= $(PREFIX)/include
PKGCONFIGDIR   ?= $(LIBDIR)/pkgconfig
DATADIR        ?= $(PREFIX)/share
MANDIR         ?= $(DATADIR)/man
DOCDIR         ?= $(DATADIR)/doc/redis-cache-dns
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
# The Corefile the systemd unit reads. /etc even for PREFIX=/usr/local: that is where an
# operator looks for a daemon's configuration; make install never writes there.
SYSCONFDIR     ?= /etc
INSTALL        ?= install

SHARED_REAL := libredis_cache.so.$(VERSION)
SHARED_SO   := libredis_cache.so.$(SOVER)
# Everything install puts in place, relative to DESTDIR (uninstall removes exactly this).
INSTALLED := $(SBINDIR)/redis-cache-dns $(LIBDIR)/libredis_cache.a $(LIBDIR)/$(SHARED_REAL) \
             $(LIBDIR)/$(SHARED_SO) $(LIBDIR)/libredis_cache.so $(INCLUDEDIR)/redis_cache.h \
             $(PKGCONFIGDIR)/redis_cache.pc $(MANDIR)/man8/redis-cache-dns.8 \
             $(MANDIR)/man7/redis_cache.7 $(SYSTEMDUNITDIR)/redis-cache-dns.service \
             $(DOCDIR)/Corefile.example $(DOCDIR)/README.md $(DOCDIR)/LICENSE $(DOCDIR)/NOTICE \
             $(DOCDIR)/THIRD_PARTY

# The pkg-config file, for these directories (relative to ${prefix} where they are under
# PREFIX, so --define-prefix relocates it). libev has no .pc in Debian and is part of
# the API (the host owns and runs the libev loop), so -lev is public; OpenSSL is private;
# xxHash is header-only (inlined), so nothing links it.
$(BUILD)/redis_cache.pc: redis_cache.pc.in Makefile FORCE
	@mkdir -p $(dir $@)
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' \
	    -e 's|@LIBDIR@|$(patsubst $(PREFIX)/%,$${prefix}/%,$(LIBDIR))|g' \
	    -e 's|@INCLUDEDIR@|$(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))|g' $< >$@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi

# The unit as shipped names /usr/local/sbin and /etc/redis-cache-dns; install rewrites both.
$(BUILD)/redis-cache-dns.service: contrib/redis-cache-dns.service Makefile FORCE
	@mkdir -p $(dir $@)
	sed -e 's|/usr/local/sbin/redis-cache-dns|$(SBINDIR)/redis-cache-dns|g' \
	    -e 's|/etc/redis-cache-dns|$(SYSCONFDIR)/redis-cache-dns|g' $< >$@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi

FORCE:

install: all $(BUILD)/redis_cache.pc $(BUILD)/redis-cache-dns.service
	$(INSTALL) -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) \
	    $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(MANDIR)/man7 $(DESTDIR)$(MANDIR)/man8 \
	    $(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(DOCDIR)
	$(INSTALL) -m 755 $(SERVER) $(DESTDIR)$(SBINDIR)/redis-cache-dns
	$(INSTALL) -m 644 $(STATIC_LIB) $(DESTDIR)$(LIBDIR)/libredis_cache.a
	$(INSTALL) -m 755 $(SHARED_LIB) $(DESTDIR)$(LIBDIR)/$(SHARED_REAL)
	ln -sf $(SHARED_REAL) $(DESTDIR)$(LIBDIR)/$(SHARED_SO)
	ln -sf $(SHARED_SO) $(DESTDIR)$(LIBDIR)/libredis_cache.so
	$(INSTALL) -m 644 include/redis_cache.h $(DESTDIR)$(INCLUDEDIR)/redis_cache.h
	$(INSTALL) -m 644 $(BUILD)/redis_cache.pc $(DESTDIR)$(PKGCONFIGDIR)/redis_cache.pc
	$(INSTALL) -m 644 man/redis-cache-dns.8 $(DESTDIR)$(MANDIR)/man8/redis-cache-dns.8
	$(INSTALL) -m 644 man/redis_cache.7 $(DESTDIR)$(MANDIR)/man7/redis_cache.7
	$(INSTALL) -m 644 $(BUILD)/redis-cache-dns.service \
	    $(DESTDIR)$(SYSTEMDUNITDIR)/redis-cache-dns.service
	$(INSTALL) -m 644 contrib/Corefile $(DESTDIR)$(DOCDIR)/Corefile.example
	$(INSTALL) -m 644 README.md LICENSE NOTICE THIRD_PARTY $(DESTDIR)$(DOCDIR)/

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	-rmdir $(DESTDIR)$(DOCDIR) 2>/dev/null

# A fully static, position-independent redis-cache-dns (glibc, OpenSSL, libev linked in;
# xxHash is inlined): runs alone in an empty root (FROM scratch). It reuses the objects of
# `all`. The server never calls getaddrinfo, getpw* or dlopen (no NSS at run time);
# libcrypto.a still carries BIO_lookup/DSO code that references them, which makes the
# linker warn: the warnings are kept in $(STATIC_BIN).ld.log and summarised; the link map
# ($(STATIC_BIN).map) says which object pulled in each libc member.
STATIC_BIN     := $(BUILD)/static/redis-cache-dns
STATIC_LDFLAGS ?= -static-pie

static: $(STATIC_BIN)

$(STATIC_BIN): $(BUILD)/obj/src/server/main.o $(SRV_LIB) $(STATIC_LIB) Makefile
	@mkdir -p $(dir $@)
	@echo "$(CC) $(STATIC_LDFLAGS) -o $@ ... $(LIBS)"
	@$(CC) $(CFLAGS) $(STATIC_LDFLAGS) -Wl,-Map=$@.map -o $@ $< $(SRV_LIB) $(STATIC_LIB) \
	    $(LIBS) 2>$@.ld.log || { cat $@.ld.log; exit 1; }
	@grep -v -e 'libcrypto.a(.*in function' -e 'requires at runtime the shared libraries' \
	    $@.ld.log || true
	@w=$$(grep -o "Using '[a-z_0-9]*'" $@.ld.log | sort -u | tr -d "'" | sed 's/Using //' | \
	    tr '\n' ' '); \
	    if [ -n "$$w" ]; then echo "static: libcrypto.a references (never called): $$w"; fi

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	@bad=$$(for f in $$(git ls-files '*.c' '*.h'); do \
	    clang-format --dry-run "$$f" 2>&1 | grep -q warning && echo "$$f"; done); \
	    if [ -n "$$bad" ]; then echo "clang-format would change: $$bad"; exit 1; fi

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
