# cutover: one non-recursive Makefile. `make help` lists the targets.
#
# Objects go to $(BUILD) (build/ by default, build-asan/ for `make asan`), so
# sanitizer and plain objects never mix. The two binaries are also linked to
# the top of the tree (./cutoverd, ./cutoverctl) for the README's commands.

CC        ?= cc
BUILD     ?= build
SANITIZE  ?=
Q          = $(if $(V),,@)

WARN      = -std=c11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wno-unused-parameter -Werror
CPPFLAGS += -I. -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE
CFLAGS   ?= -O2 -g
PKGS      = libevent libevent_openssl openssl jansson libpq libxxhash
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CMOCKA_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null)

ifneq ($(SANITIZE),)
SANFLAGS  = -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
endif
ALL_CFLAGS = $(WARN) $(CPPFLAGS) $(PKG_CFLAGS) $(CFLAGS) $(SANFLAGS)
LDLIBS_ALL = $(PKG_LIBS) -lm -pthread
LDFLAGS_ALL = $(SANFLAGS) $(LDFLAGS)

ROUTER_SRC = router/router.c router/conf.c
HEALTH_SRC = health/conf.c health/window.c health/policy.c health/probe.c health/check.c \
             health/plan.c
UTIL_SRC   = lib/log.c lib/xmalloc.c lib/metrics.c lib/notify.c lib/http1.c lib/h1chunk.c \
             lib/conf.c lib/fs.c lib/text.c lib/pg_session.c lib/pg_query.c lib/cidr.c
ADMIN_SRC  = admin/ctl_proto.c admin/state.c admin/control.c \
             admin/request.c admin/change.c admin/auto.c admin/persist.c admin/plan_ctl.c admin/commands.c \
             admin/store.c admin/audit.c admin/conn.c admin/socket.c \
             admin/tokens.c admin/http_req.c admin/http.c
PROXY_SRC  = proxy/conf.c proxy/tls_conf.c proxy/tls_cert.c proxy/tls.c proxy/tls_accept.c proxy/server.c proxy/listen.c proxy/http.c proxy/http_conn.c \
             proxy/http_msg.c proxy/relay.c proxy/tcp.c proxy/pool.c \
             proxy/tick.c proxy/metrics.c proxy/accesslog.c proxy/io.c proxy/worker.c \
             proxy/status.c proxy/ops.c proxy/verdict.c proxy/reload.c proxy/cookie.c \
             proxy/tls_up.c proxy/tls_io.c
LIB_SRC    = $(UTIL_SRC) $(ROUTER_SRC) $(HEALTH_SRC) $(ADMIN_SRC) $(PROXY_SRC)
LIB_OBJ    = $(LIB_SRC:%.c=$(BUILD)/%.o)
LIB        = $(BUILD)/libcutover.a

CTL_SRC    = admin/cutoverctl.c admin/ctl_proto.c lib/xmalloc.c lib/text.c
CTL_OBJ    = $(CTL_SRC:%.c=$(BUILD)/%.o)

UNIT_SRC   = $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN   = $(UNIT_SRC:%.c=$(BUILD)/%)
INTEG_SRC  = $(sort $(wildcard tests/integration/[0-9]*.c))
INTEG_BIN  = $(INTEG_SRC:%.c=$(BUILD)/%)
HARNESS_OBJ = $(BUILD)/tests/harness/harness.o $(BUILD)/tests/harness/load.o \
              $(BUILD)/tests/harness/tls.o
# the private PostgreSQL cluster, for the tests of lib/pg_*.c
PGHARNESS_OBJ = $(BUILD)/tests/harness/pg.o
BACKEND    = $(BUILD)/tests/tools/backend

BINS = $(BUILD)/cutoverd $(BUILD)/cutoverctl $(BACKEND)

# objects of test binaries are kept between builds
.SECONDARY:

.PHONY: all test unit integration asan tsan check-layers check-install install uninstall deps run \
        clean help fuzz fuzz-smoke bench bench-base

PREFIX    ?= /usr/local
DESTDIR   ?=
SBINDIR    = $(PREFIX)/sbin
BINDIR     = $(PREFIX)/bin
MAN8DIR    = $(PREFIX)/share/man/man8
UNITDIR    = $(PREFIX)/lib/systemd/system
EXAMPLEDIR = $(PREFIX)/share/doc/cutover/examples

all: $(BINS) cutoverd cutoverctl

cutoverd cutoverctl: %: $(BUILD)/%
	$(Q)ln -sf $< $@

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@printf '  CC  %s\n' $@
	$(Q)$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(LIB): $(LIB_OBJ)
	@printf '  AR  %s\n' $@
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/cutoverd: $(BUILD)/proxy/main.o $(LIB)
	@printf '  LD  %s\n' $@
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/cutoverctl: $(CTL_OBJ)
	@printf '  LD  %s\n' $@
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

$(BACKEND): $(BUILD)/tests/tools/backend.o $(LIB)
	@printf '  LD  %s\n' $@
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

$(BUILD)/tests/unit/%: $(BUILD)/tests/unit/%.o $(LIB)
	@printf '  LD  %s\n' $@
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL) $(CMOCKA_LIBS)

$(BUILD)/tests/unit/test_lib_pg: $(PGHARNESS_OBJ)

$(BUILD)/tests/integration/%: $(BUILD)/tests/integration/%.o $(HARNESS_OBJ) $(LIB)
	@printf '  LD  %s\n' $@
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL) $(CMOCKA_LIBS)

## test: check-layers, check-install, unit and integration tests (ends with cmocka's summaries)
test: check-layers check-install unit integration

## unit: cmocka unit tests, one binary per module
unit: $(UNIT_BIN)
	$(Q)set -e; for t in $(UNIT_BIN); do \
	    printf '\n== %s\n' $$t; CUTOVER_SRC_DIR=$(CURDIR) $$t; done

## integration: starts the real cutoverd and test backends on 127.0.0.1
integration: $(BINS) $(INTEG_BIN)
	$(Q)set -e; for t in $(INTEG_BIN); do \
	    printf '\n== %s\n' $$t; \
	    CUTOVER_BIN_DIR=$(CURDIR)/$(BUILD) CUTOVER_SRC_DIR=$(CURDIR) $$t; done

## asan: unit + integration under ASan/UBSan (objects in build-asan/)
asan:
	$(Q)$(MAKE) --no-print-directory BUILD=build-asan SANITIZE=address,undefined \
	    CFLAGS='-O1 -g' unit integration

## tsan: the tests that run several worker threads, under ThreadSanitizer (build-tsan/)
TSAN_TESTS = tests/unit/test_px_worker tests/integration/22_workers tests/integration/23_fd_exhaustion \
             tests/integration/18_reload tests/integration/17_metrics tests/integration/30_soak \
             tests/integration/28_steering tests/integration/29_tls
tsan:
	$(Q)$(MAKE) --no-print-directory BUILD=build-tsan SANITIZE=thread CFLAGS='-O1 -g' \
	    build-tsan/cutoverd build-tsan/cutoverctl build-tsan/tests/tools/backend \
	    $(TSAN_TESTS:%=build-tsan/%)
	$(Q)set -e; for t in $(TSAN_TESTS); do \
	    printf '\n== %s (tsan)\n' $$t; \
	    TSAN_OPTIONS="halt_on_error=1 exitcode=66 suppressions=$(CURDIR)/tests/tsan.supp" \
	    CUTOVER_BIN_DIR=$(CURDIR)/build-tsan CUTOVER_SRC_DIR=$(CURDIR) \
	    build-tsan/$$t; done

## check-layers: the house rules (tests/tools/check-layers.sh: who includes whom, pure layers, no circles)
check-layers:
	@sh tests/tools/check-layers.sh --self-test
	@sh tests/tools/check-layers.sh

## install: binaries, man pages, systemd unit, example configs (PREFIX, DESTDIR)
install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(MAN8DIR) \
	    $(DESTDIR)$(UNITDIR) $(DESTDIR)$(EXAMPLEDIR)
	install -m 0755 $(BUILD)/cutoverd $(DESTDIR)$(SBINDIR)/cutoverd
	install -m 0755 $(BUILD)/cutoverctl $(DESTDIR)$(BINDIR)/cutoverctl
	install -m 0644 man/cutoverd.8 man/cutoverctl.8 $(DESTDIR)$(MAN8DIR)/
	sed 's|@SBINDIR@|$(SBINDIR)|g' conf/cutover.service >$(DESTDIR)$(UNITDIR)/cutover.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/cutover.service
	install -m 0644 conf/example.json conf/minimal.json conf/tcp.json $(DESTDIR)$(EXAMPLEDIR)/

## uninstall: removes what install wrote
uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/cutoverd $(DESTDIR)$(BINDIR)/cutoverctl \
	    $(DESTDIR)$(MAN8DIR)/cutoverd.8 $(DESTDIR)$(MAN8DIR)/cutoverctl.8 \
	    $(DESTDIR)$(UNITDIR)/cutover.service $(DESTDIR)$(EXAMPLEDIR)/example.json \
	    $(DESTDIR)$(EXAMPLEDIR)/minimal.json $(DESTDIR)$(EXAMPLEDIR)/tcp.json
	-rmdir $(DESTDIR)$(EXAMPLEDIR) $(DESTDIR)$(PREFIX)/share/doc/cutover 2>/dev/null

## check-install: install into a temporary DESTDIR and check what landed
check-install: all
	@sh tests/tools/check-install.sh

## deps: install the Debian 12 build and test packages (needs root)
deps:
	@sh tests/tools/deps.sh

## run: the demo: two backends and cutoverd on conf/demo.json (Ctrl-C stops all)
run:
	@sh tests/tools/deps.sh --if-missing
	$(Q)$(MAKE) --no-print-directory all
	@sh tests/tools/demo.sh

## fuzz: libFuzzer on the HTTP parser for FUZZ_SECONDS (default 60)
FUZZ_SECONDS ?= 60
fuzz:
	@sh tests/fuzz/run.sh $(FUZZ_SECONDS)

## bench: cutoverd beside HAProxy and NGINX under wrk, plain and TLS, about 13 min (BENCH_TLS=0: 7; BENCH_ROUNDS, BENCH_SECS, CUTOVERD; docs/performance.md)
bench: all
	@sh tests/bench/run.sh

## bench-base: make bench with a second cutoverd built from BASE=<git rev> beside this one (build-base/)
bench-base: all
	@test -n "$(BASE)" || { echo 'usage: make bench-base BASE=<git rev>' >&2; exit 2; }
	$(Q)rev=$$(git rev-parse --short --verify '$(BASE)^{commit}') && wt=build-base/$$rev && \
	    { git worktree remove --force $$wt 2>/dev/null || rm -rf $$wt; } && \
	    git worktree add -q -f --detach $$wt $$rev && \
	    { $(MAKE) --no-print-directory -C $$wt all >&2 && \
	      CUTOVERD_BASE=$$wt/build/cutoverd CUTOVERD_BASE_REV=$$rev sh tests/bench/run.sh; \
	      st=$$?; git worktree remove --force $$wt; exit $$st; }

## clean: remove build products
clean:
	rm -rf build build-asan build-tsan build-fuzz cutoverd cutoverctl

## help: this list
help:
	@grep -E '^## ' Makefile | sed 's/^## /  /'

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
