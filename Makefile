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
             health/plan.c health/gate.c health/gate_conf.c health/fleet.c health/diff.c
UTIL_SRC   = lib/log.c lib/xmalloc.c lib/hmap.c lib/metrics.c lib/notify.c lib/http1.c lib/h1chunk.c \
             lib/conf.c lib/fs.c lib/text.c lib/pg_session.c lib/pg_query.c lib/cidr.c \
             lib/slab.c
ADMIN_SRC  = admin/ctl_proto.c admin/state.c admin/control.c \
             admin/request.c admin/change.c admin/auto.c admin/persist.c admin/writer.c admin/plan_ctl.c admin/status.c admin/commands.c admin/server_ctl.c \
             admin/store.c admin/store_pg_conf.c admin/store_pg_schema.c admin/store_pg.c admin/fleet.c \
             admin/audit.c admin/conn.c admin/socket.c \
             admin/tokens.c admin/http_req.c admin/http.c \
             admin/fleet_windows.c admin/fleet_leader.c
ADMIN_SRC += admin/dash.c admin/events.c
PROXY_SRC  = proxy/conf.c proxy/tls_conf.c proxy/tls_cert.c proxy/tls.c proxy/tls_accept.c proxy/server.c proxy/listen.c proxy/http.c proxy/http_conn.c \
             proxy/http_msg.c proxy/relay.c proxy/tcp.c proxy/pool.c \
             proxy/tick.c proxy/metrics.c proxy/accesslog.c proxy/io.c proxy/worker.c \
             proxy/status.c proxy/ops.c proxy/verdict.c proxy/reload.c proxy/cookie.c \
             proxy/tls_up.c proxy/gates.c proxy/gates_check.c proxy/shield.c proxy/shield_conf.c \
             proxy/webhook.c proxy/srvadmin.c proxy/fleet_tick.c proxy/shadow_conf.c \
             proxy/shadow_cap.c proxy/shadow.c proxy/tls_io.c
LIB_SRC    = $(UTIL_SRC) $(ROUTER_SRC) $(HEALTH_SRC) $(ADMIN_SRC) $(PROXY_SRC)
LIB_OBJ    = $(LIB_SRC:%.c=$(BUILD)/%.o)
LIB        = $(BUILD)/libcutover.a

CTL_SRC    = admin/cutoverctl.c admin/ctl_show.c admin/ctl_gates.c admin/ctl_diffs.c admin/ctl_proto.c \
             lib/xmalloc.c lib/text.c
CTL_OBJ    = $(CTL_SRC:%.c=$(BUILD)/%.o)

UNIT_SRC   = $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN   = $(UNIT_SRC:%.c=$(BUILD)/%)
INTEG_SRC  = $(sort $(wildcard tests/integration/[0-9]*.c))
INTEG_BIN  = $(INTEG_SRC:%.c=$(BUILD)/%)
HARNESS_OBJ = $(BUILD)/tests/harness/harness.o $(BUILD)/tests/harness/load.o \
              $(BUILD)/tests/harness/tls.o $(BUILD)/tests/harness/ws.o
# the headless browser of the dashboard's tests
HARNESS_OBJ += $(BUILD)/tests/harness/cdp.o
# the private PostgreSQL cluster, for the tests of lib/pg_*.c
PGHARNESS_OBJ = $(BUILD)/tests/harness/pg.o
BACKEND    = $(BUILD)/tests/tools/backend

BINS = $(BUILD)/cutoverd $(BUILD)/cutoverctl $(BACKEND)

# objects of test binaries are kept between builds
.SECONDARY:

.PHONY: all test unit integration asan tsan doc-samples check-layers check-install install uninstall deps \
        run run-fleet run-migration clean help fuzz fuzz-smoke bench bench-base bench-fleet bench-scale

PREFIX    ?= /usr/local
DESTDIR   ?=
SBINDIR    = $(PREFIX)/sbin
BINDIR     = $(PREFIX)/bin
MAN8DIR    = $(PREFIX)/share/man/man8
UNITDIR    = $(PREFIX)/lib/systemd/system
EXAMPLEDIR = $(PREFIX)/share/doc/cutover/examples
BASHCOMPDIR = $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR = $(PREFIX)/share/zsh/vendor-completions
# install strips the binaries; the ones in $(BUILD) keep their debug info
STRIP     ?= strip
SYSCONFDIR ?= /etc
SYSUSERSDIR = $(PREFIX)/lib/sysusers.d
TMPFILESDIR = $(PREFIX)/lib/tmpfiles.d
MONITORDIR = $(PREFIX)/share/cutover/monitoring

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

# the dashboard's files as C arrays (admin/dash.c serves them)
DASH_FILES = admin/dash/index.html admin/dash/dash.js admin/dash/dash.css
$(LIB): $(BUILD)/gen/dash_assets.o
$(BUILD)/gen/dash_assets.c: $(DASH_FILES) admin/dash/embed.sh
	@mkdir -p $(dir $@)
	@printf '  GEN %s\n' $@
	$(Q)sh admin/dash/embed.sh $(DASH_FILES) >$@.tmp && mv $@.tmp $@
$(BUILD)/gen/dash_assets.o: $(BUILD)/gen/dash_assets.c
	@printf '  CC  %s\n' $@
	$(Q)$(CC) $(ALL_CFLAGS) -c -o $@ $<

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
$(BUILD)/tests/integration/32_fleet: $(PGHARNESS_OBJ)
$(BUILD)/tests/integration/40_gates: $(PGHARNESS_OBJ)
$(BUILD)/tests/integration/33_fleet_leader: $(PGHARNESS_OBJ)
$(BUILD)/tests/integration/36_fleet_fast: $(PGHARNESS_OBJ)
$(BUILD)/tests/integration/37_slow_disk: $(PGHARNESS_OBJ)
$(BUILD)/tests/integration/38_fleet_lease: $(PGHARNESS_OBJ)

# 37_slow_disk preloads it into cutoverd: fsync made slow under one directory
SLOWSYNC = $(BUILD)/tests/tools/slowsync.so
$(SLOWSYNC): tests/tools/slowsync.c
	@mkdir -p $(dir $@)
	@printf '  CC  %s\n' $@
	$(Q)$(CC) -std=c11 -Wall -Wextra -Werror -O2 -g -fPIC -shared -o $@ $< -ldl
$(BUILD)/tests/integration/37_slow_disk: | $(SLOWSYNC)

# the fleet's figures (tests/bench/fleet, make bench-fleet; not part of make test)
$(BUILD)/tests/bench/fleet/fleetbench: $(BUILD)/tests/bench/fleet/fleetbench.o $(HARNESS_OBJ) \
                                       $(PGHARNESS_OBJ) $(LIB)
	@printf '  LD  %s\n' $@
	$(Q)$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

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
             tests/integration/28_steering tests/integration/29_tls tests/integration/60_shadow \
             tests/integration/37_slow_disk
tsan:
	$(Q)$(MAKE) --no-print-directory BUILD=build-tsan SANITIZE=thread CFLAGS='-O1 -g' \
	    build-tsan/cutoverd build-tsan/cutoverctl build-tsan/tests/tools/backend \
	    $(TSAN_TESTS:%=build-tsan/%)
	$(Q)set -e; for t in $(TSAN_TESTS); do \
	    printf '\n== %s (tsan)\n' $$t; \
	    TSAN_OPTIONS="halt_on_error=1 exitcode=66 suppressions=$(CURDIR)/tests/tsan.supp" \
	    CUTOVER_BIN_DIR=$(CURDIR)/build-tsan CUTOVER_SRC_DIR=$(CURDIR) \
	    build-tsan/$$t; done

## doc-samples: runs the commands of docs/operations.md on the real binaries and writes what they print into its samples (make test compares them)
doc-samples: $(BINS) $(BUILD)/tests/integration/84_doc_samples
	$(Q)CUTOVER_BIN_DIR=$(CURDIR)/$(BUILD) CUTOVER_SRC_DIR=$(CURDIR) \
	    $(BUILD)/tests/integration/84_doc_samples --write

## check-layers: the house rules (tests/tools/check-layers.sh: who includes whom, pure layers, no circles)
check-layers:
	@sh tests/tools/check-layers.sh --self-test
	@sh tests/tools/check-layers.sh

## install: stripped binaries, man pages, systemd unit, sysusers.d and tmpfiles.d entries, SYSCONFDIR/cutover/cutover.json (commented, kept when present), logrotate, Grafana dashboard and alert rules, example configs, bash and zsh completion (PREFIX, DESTDIR, SYSCONFDIR=/etc)
install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(MAN8DIR) \
	    $(DESTDIR)$(UNITDIR) $(DESTDIR)$(EXAMPLEDIR) $(DESTDIR)$(BASHCOMPDIR) \
	    $(DESTDIR)$(ZSHCOMPDIR)
	install -m 0755 -s --strip-program=$(STRIP) $(BUILD)/cutoverd $(DESTDIR)$(SBINDIR)/cutoverd
	install -m 0755 -s --strip-program=$(STRIP) $(BUILD)/cutoverctl $(DESTDIR)$(BINDIR)/cutoverctl
	install -m 0644 conf/completion/cutoverctl.bash $(DESTDIR)$(BASHCOMPDIR)/cutoverctl
	install -m 0644 conf/completion/cutoverctl.bash $(DESTDIR)$(BASHCOMPDIR)/cutoverd
	install -m 0644 conf/completion/_cutoverctl $(DESTDIR)$(ZSHCOMPDIR)/_cutoverctl
	install -m 0644 man/cutoverd.8 man/cutoverctl.8 $(DESTDIR)$(MAN8DIR)/
	sed 's|@SBINDIR@|$(SBINDIR)|g' conf/cutover.service >$(DESTDIR)$(UNITDIR)/cutover.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/cutover.service
	install -m 0644 conf/example.json conf/minimal.json conf/tcp.json $(DESTDIR)$(EXAMPLEDIR)/
	install -d $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(MONITORDIR) \
	    $(DESTDIR)$(SYSCONFDIR)/cutover $(DESTDIR)$(SYSCONFDIR)/logrotate.d
	install -m 0644 conf/cutover.sysusers $(DESTDIR)$(SYSUSERSDIR)/cutover.conf
	install -m 0644 conf/cutover.tmpfiles $(DESTDIR)$(TMPFILESDIR)/cutover.conf
	install -m 0644 conf/monitoring/cutover-alerts.yml conf/monitoring/cutover-dashboard.json \
	    $(DESTDIR)$(MONITORDIR)/
	install -m 0644 conf/cutover.logrotate $(DESTDIR)$(SYSCONFDIR)/logrotate.d/cutover
	@# the operator's config is never overwritten
	test -e $(DESTDIR)$(SYSCONFDIR)/cutover/cutover.json || \
	    install -m 0644 conf/cutover.json $(DESTDIR)$(SYSCONFDIR)/cutover/cutover.json

## uninstall: removes what install wrote
uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/cutoverd $(DESTDIR)$(BINDIR)/cutoverctl \
	    $(DESTDIR)$(MAN8DIR)/cutoverd.8 $(DESTDIR)$(MAN8DIR)/cutoverctl.8 \
	    $(DESTDIR)$(BASHCOMPDIR)/cutoverctl $(DESTDIR)$(BASHCOMPDIR)/cutoverd \
	    $(DESTDIR)$(ZSHCOMPDIR)/_cutoverctl \
	    $(DESTDIR)$(UNITDIR)/cutover.service $(DESTDIR)$(EXAMPLEDIR)/example.json \
	    $(DESTDIR)$(EXAMPLEDIR)/minimal.json $(DESTDIR)$(EXAMPLEDIR)/tcp.json
	-rmdir $(DESTDIR)$(EXAMPLEDIR) $(DESTDIR)$(PREFIX)/share/doc/cutover 2>/dev/null
	rm -f $(DESTDIR)$(SYSUSERSDIR)/cutover.conf $(DESTDIR)$(TMPFILESDIR)/cutover.conf \
	    $(DESTDIR)$(MONITORDIR)/cutover-alerts.yml $(DESTDIR)$(MONITORDIR)/cutover-dashboard.json \
	    $(DESTDIR)$(SYSCONFDIR)/logrotate.d/cutover
	-rmdir $(DESTDIR)$(MONITORDIR) $(DESTDIR)$(PREFIX)/share/cutover 2>/dev/null
	@# the config goes only when the operator never changed it
	-cmp -s conf/cutover.json $(DESTDIR)$(SYSCONFDIR)/cutover/cutover.json && \
	    rm -f $(DESTDIR)$(SYSCONFDIR)/cutover/cutover.json && \
	    rmdir $(DESTDIR)$(SYSCONFDIR)/cutover 2>/dev/null; true

## check-install: install into a temporary DESTDIR and check what landed
check-install: all
	@sh tests/tools/check-install.sh

## deps: install the Debian 12 build and test packages (needs root)
deps:
	@sh tests/tools/deps.sh

## run-fleet: three instances of one fleet on a private PostgreSQL in .run/pg (docs/fleet.md)
run-fleet:
	@sh tests/tools/deps.sh --if-missing
	$(Q)$(MAKE) --no-print-directory all
	@sh tests/tools/fleet-demo.sh

## run-migration: a plan gated by a compare and a replication_lag gate, two private PostgreSQL clusters with logical replication in .run/ (docs/gates.md)
run-migration:
	@sh tests/tools/deps.sh --if-missing
	$(Q)$(MAKE) --no-print-directory all
	@sh tests/tools/migration-demo.sh

## run: the demo: two backends and cutoverd on conf/demo.json (Ctrl-C stops all)
run:
	@sh tests/tools/deps.sh --if-missing
	$(Q)$(MAKE) --no-print-directory all
	@sh tests/tools/demo.sh

## fuzz: libFuzzer on the HTTP parser for FUZZ_SECONDS (default 60)
FUZZ_SECONDS ?= 60
fuzz:
	@sh tests/fuzz/run.sh $(FUZZ_SECONDS)

## bench: cutoverd beside HAProxy and NGINX under wrk, plain and TLS, new connections and shadow traffic at a fixed rate, about 16 min (BENCH_TLS=0: 10; BENCH_ROUNDS, BENCH_SECS, BENCH_SHADOW, CUTOVERD; docs/performance.md)
bench: all
	@sh tests/bench/run.sh

## bench-fleet: the fleet's figures on a private PostgreSQL (propagation idle and under pgbench, a breach, leader takeover, no change lost, 10 and 50 instances), about 10 min (docs/fleet.md)
bench-fleet: all $(BUILD)/tests/bench/fleet/fleetbench
	@sh tests/bench/fleet/run.sh

## bench-scale: cutoverd and HAProxy at 1, 100 and 1000 services: ready, RSS, status, reload, latency meanwhile (SCALE_SERVICES; docs/performance.md)
bench-scale: all
	@sh tests/bench/scale.sh

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
