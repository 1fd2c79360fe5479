#!/bin/sh
# tests/tools/check-layers.sh [ROOT]: the house rules of the source tree
# (make check-layers). Fails, naming the file and line, when
#   - lib/ includes anything of ours outside lib/ (it is the leaf layer);
#   - router/ includes anything but router/ and lib/, or I/O, sockets,
#     clocks, threads, or jansson outside router/conf.c;
#   - health/ includes proxy/ or admin/; its pure parts (window, policy,
#     probe, plan, decide) include I/O, clocks or libevent, or read a clock;
#     libevent appears in health/ outside health/check.c;
#   - admin/ includes proxy/;
#   - a file that does not wire the control plane includes admin/control.h
#     (the list is WIRING below);
#   - cutoverctl includes anything but the protocol and lib/;
#   - libpq appears outside lib/pg.h and lib/pg_*.[ch] (the one PostgreSQL
#     client: its header, its internal header and its .c files);
#   - two or more modules include each other in a circle (a module is x.c
#     with x.h; x.c including y.h is an arrow x -> y);
#   - anything in the tree (code, tests, scripts, Makefile) reads from a
#     folder beside it (the parent directory's "shared" folder): the tree
#     stands alone. The name is spelled in pieces below so this file does not
#     match its own rule.
# `check-layers.sh --self-test` runs the rules on a small tree with one
# violation of each kind and fails unless every one is caught.
set -eu
self=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")

WIRING="admin/control.c admin/control_int.h admin/change.c admin/auto.c admin/commands.c admin/plan_ctl.c
admin/socket.c admin/http.c admin/store.c admin/audit.c
admin/events.c
proxy/main.c proxy/ops.c proxy/reload.c proxy/status.c proxy/verdict.c proxy/tick.c
proxy/metrics.c proxy/daemon.h proxy/gates.c proxy/fleet_tick.c"

fails=0
bad() { printf 'check-layers: %s\n' "$*" >&2; fails=$((fails + 1)); }

# grep_rule PATTERN MESSAGE FILE...: a violation for every line matching.
grep_rule() {
    pat=$1 msg=$2
    shift 2
    [ $# -gt 0 ] || return 0
    out=$(grep -nHE "$pat" "$@" 2>/dev/null || true)
    if [ -n "$out" ]; then
        printf '%s\n' "$out" >&2
        bad "$msg"
    fi
}

# files DIR...: the .c and .h files of those folders that exist.
files() {
    for d in "$@"; do
        for f in "$d"/*.c "$d"/*.h; do
            [ -f "$f" ] && printf '%s\n' "$f"
        done
    done
    return 0
}

# pure health files: whichever of these exist
health_pure() {
    for f in health/window health/policy health/probe health/plan health/decide health/gate \
             health/fleet health/diff; do
        for e in c h; do [ -f "$f.$e" ] && printf '%s\n' "$f.$e"; done
    done
    return 0
}

check() {
    io='#include <(event2|openssl|libpq|sys/socket|netinet|arpa|time\.h|sys/time|pthread)'
    # shellcheck disable=SC2046
    {
        grep_rule '#include "(admin|proxy|health|router)/' \
            'lib/ includes a file of ours outside lib/' $(files lib)
        grep_rule '#include "(admin|proxy|health)/' \
            'router/ includes more than router/ and lib/' $(files router)
        grep_rule "$io" 'router/ includes I/O, sockets, clocks or threads' $(files router)
        grep_rule '\b(clock_gettime|gettimeofday|time|rand|random)\s*\(' \
            'router/ reads a clock or rand()' $(files router | grep '\.c$' || true)
        grep_rule '#include <jansson' 'jansson in router/ outside router/conf.c' \
            $(files router | grep -v '^router/conf\.[ch]$' || true)
        grep_rule '#include "(proxy|admin)/' 'health/ includes proxy/ or admin/' $(files health)
        grep_rule "$io" 'a pure part of health/ includes I/O, clocks or threads' $(health_pure)
        grep_rule '\b(clock_gettime|gettimeofday|time|rand|random)\s*\(' \
            'a pure part of health/ reads a clock or rand()' $(health_pure | grep '\.c$' || true)
        grep_rule '#include <(event2|openssl)' 'libevent in health/ outside health/check.c' \
            $(files health | grep -v '^health/check\.c$' || true)
        grep_rule '#include "proxy/' 'admin/ includes proxy/' $(files admin)
        grep_rule '#include "(router|health|proxy)/|#include "admin/(control|socket|store|audit|http)' \
            'cutoverctl must speak only the protocol' $( [ -f admin/cutoverctl.c ] && echo admin/cutoverctl.c)
        grep_rule '#include <libpq' 'libpq outside lib/pg.h and lib/pg_*.[ch]' \
            $(files lib router health admin proxy | grep -vE '^lib/pg(_[a-z0-9_]+)?\.[ch]$' || true)
    }
    for f in $(files lib router health admin proxy); do
        case " $(echo $WIRING) " in *" $f "*) continue ;; esac
        if grep -qE '#include "admin/control\.h"' "$f"; then
            grep -nHE '#include "admin/control\.h"' "$f" >&2
            bad "$f includes admin/control.h but does not wire the control plane"
        fi
    done
    # the tree stands alone: nothing looks beside it
    beside='\.\./'"sha""red"
    out=$(grep -rnE "$beside" --include='*.c' --include='*.h' --include='*.sh' \
              --include='Makefile' --include='*.lua' --include='run' . 2>/dev/null ||
          true)
    if [ -n "$out" ]; then
        printf '%s\n' "$out" >&2
        bad 'the tree reads from a folder beside it'
    fi
    # include circles between modules
    # shellcheck disable=SC2046
    cyc=$(for f in $(files lib router health admin proxy); do
              m=${f%.*}
              sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)\.h".*/\1/p' "$f" |
                  while read -r t; do
                      if [ "$t" != "$m" ] && [ -f "$t.h" ]; then echo "$m $t"; fi
                  done
          done | sort -u | awk '
        { adj[$1] = adj[$1] " " $2; nodes[$1] = 1; nodes[$2] = 1 }
        function dfs(u,    i, n, vs, v, k, s) {
            color[u] = 1; stack[++sp] = u
            n = split(adj[u], vs, " ")
            for (i = 1; i <= n; i++) {
                v = vs[i]
                if (color[v] == 1) {
                    s = v
                    for (k = sp; k >= 1 && stack[k] != v; k--) s = stack[k] " -> " s
                    print v " -> " s
                    found = 1
                } else if (color[v] == 0) dfs(v)
            }
            color[u] = 2; sp--
        }
        END { for (u in nodes) if (color[u] == 0) dfs(u); exit found ? 1 : 0 }') || true
    if [ -n "$cyc" ]; then
        printf '%s\n' "$cyc" >&2
        bad 'include circle between modules (above)'
    fi
}

if [ "${1:-}" = "--self-test" ]; then
    t=$(mktemp -d)
    trap 'rm -rf "$t"' EXIT
    mkdir -p "$t/lib" "$t/router" "$t/health" "$t/admin" "$t/proxy"
    echo '#include "proxy/a.h"' >"$t/lib/x.c"
    echo '#include <event2/event.h>' >"$t/router/r.c"
    echo 'int f(void) { return time(0); }' >"$t/health/window.c"
    echo '#include "proxy/a.h"' >"$t/admin/y.c"
    echo '#include "admin/control.h"' >"$t/proxy/http.c"
    printf '#include "proxy/b.h"\n#include <stdio.h>\n#include "lib/none.h"\n' >"$t/proxy/a.c"
    : >"$t/proxy/a.h"
    printf '#include "proxy/a.h"\n' >"$t/proxy/b.c"; : >"$t/proxy/b.h"
    echo "corpora=../sha""red/corpora" >"$t/run.sh"
    echo '#include <libpq-fe.h>' >"$t/proxy/db.c"
    echo '#include <libpq-fe.h>' >"$t/lib/pg_x.c"     # allowed: part of the client
    : >"$t/admin/control.h"
    out=$(cd "$t" && sh "$self" . 2>&1 || true)
    n=0
    for want in 'lib/ includes a file of ours' 'router/ includes I/O' \
        'a pure part of health/ reads a clock' 'admin/ includes proxy/' \
        'proxy/http.c includes admin/control.h' 'include circle between modules' \
        'the tree reads from a folder beside it' 'libpq outside lib/pg.h'; do
        case $out in
        *"$want"*) n=$((n + 1)) ;;
        *) echo "check-layers: self-test: not caught: $want" >&2; exit 1 ;;
        esac
    done
    case $out in
    *lib/pg_x.c*) echo 'check-layers: self-test: lib/pg_x.c may include libpq' >&2; exit 1 ;;
    esac
    echo "check-layers: self-test ok (each of the $n planted violations caught)"
    exit 0
fi

cd "${1:-.}"
check
if [ "$fails" -gt 0 ]; then
    echo "check-layers: $fails rule(s) broken" >&2
    exit 1
fi
echo 'check-layers: ok'
