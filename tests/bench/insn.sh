#!/bin/sh
# tests/bench/insn.sh DAEMON [DAEMON...]: instructions per request of each
# cutoverd binary, counted by valgrind's callgrind (repeatable whatever else
# the machine is doing, unlike CPU time), for small keep-alive requests and
# for requests on a new connection each, through one HTTP service (90/10)
# in front of two NGINX backends on loopback; with INSN_TLS=1 (the default
# when openssl is there) also small keep-alive requests over TLS 1.3 and
# plain requests to TLS backends (pooled). The count covers the daemon
# only, from just before the load to just after it (startup excluded); the
# pools keep their connections for 10 minutes, so that the slow daemon under
# valgrind does not connect again between the warm-up and the count (over
# TLS that would count upstream handshakes); the TLS keep-alive case counts
# the 4 handshakes of its 4 connections. The counted window is wrk's whole
# -d60s, however soon the requests are done (wrk waits out its duration
# after its thread stopped): work on a timer (the tick, a gate's checks) is
# counted once per run, not per request, so compare builds at the same
# INSN_REQS, or take the slope between two INSN_REQS.
# INSN_SYSCALLS=1 adds a second table: the system calls per request of each
# case, counted by `strace -c -f` on a run of its own (no valgrind), with the
# calls that matter for the I/O path (epoll_ctl, read/recvmsg, write/sendmsg).
#
#   sh tests/bench/insn.sh build/cutoverd /path/to/other/cutoverd
#
# Environment: INSN_REQS=2000 (requests per case), INSN_PORT=20400 (base
# port; uses BASE+1..BASE+8), INSN_TLS, INSN_SYSCALLS=0, INSN_CASES (some of
# "ka close tka tup"), INSN_KEEP=DIR (keeps callgrind's counts there, one
# file per daemon and case, for callgrind_annotate), INSN_SERVICE_EXTRA
# (more keys of the plain service, JSON with a leading comma: its "gates"),
# INSN_SPLIT (an extended regular expression of callgrind's "file:function"
# names: each cell becomes "A + B", B the instructions per request inside
# the matching functions, inclusive, A the rest; docs/performance.md counts
# the gates' callbacks apart this way), INSN_DEBUG (the raw counts, the
# run's length and the daemon's gate lines on stderr). Needs valgrind,
# nginx and wrk (make bench installs the last two), openssl for the TLS
# cases, strace for the system calls. Prints markdown tables on standard
# output.
set -eu

[ $# -ge 1 ] || { echo "usage: $0 DAEMON [DAEMON...]" >&2; exit 2; }
reqs=${INSN_REQS:-2000}
base=${INSN_PORT:-20400}
PATH=$PATH:/usr/sbin:/sbin
for t in valgrind callgrind_control nginx wrk; do
    command -v "$t" >/dev/null 2>&1 || { echo "insn: $t is needed" >&2; exit 1; }
done
tls=${INSN_TLS:-}
if [ -z "$tls" ]; then
    tls=0
    command -v openssl >/dev/null 2>&1 && tls=1
fi
sys=${INSN_SYSCALLS:-0}
[ "$sys" = 0 ] || command -v strace >/dev/null 2>&1 || { echo "insn: strace is needed" >&2; exit 1; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/cutover-insn.XXXXXX")
chmod 755 "$dir"
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
be_l=$((base + 1)) be_n=$((base + 2)) px=$((base + 3))
pxt=$((base + 4)) pxu=$((base + 5)) bt_l=$((base + 6)) bt_n=$((base + 7))
mkdir -p "$dir/www" "$dir/tmp"
printf 'cutover bench ok' >"$dir/www/small"
chmod -R a+rX "$dir/www"
if [ "$tls" = 1 ]; then
    # a CA, an ECDSA P-256 certificate for the TLS listener, one for the
    # TLS backends (backend.bench)
    (
        mkdir "$dir/tls" && cd "$dir/tls"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
            -out ca.pem -days 30 -subj '/CN=cutover insn CA'
        for n in bench.test backend.bench; do
            openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
                -keyout "$n.key" -out "$n.csr" -subj "/CN=$n"
            printf 'basicConstraints=CA:FALSE\nsubjectAltName=DNS:%s,IP:127.0.0.1\n' "$n" >"$n.ext"
            openssl x509 -req -in "$n.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
                -extfile "$n.ext" -out "$n.pem"
        done
    ) >"$dir/tls.log" 2>&1 || { cat "$dir/tls.log" >&2; exit 1; }
    chmod -R a+rX "$dir/tls"
fi
cat >"$dir/nginx.conf" <<NGX
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/nginx.err warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    server { listen 127.0.0.1:$be_l; root $dir/www; }
    server { listen 127.0.0.1:$be_n; root $dir/www; }
NGX
if [ "$tls" = 1 ]; then
    for p in $bt_l $bt_n; do
        cat >>"$dir/nginx.conf" <<NGX
    server {
        listen 127.0.0.1:$p ssl;
        ssl_certificate $dir/tls/backend.bench.pem;
        ssl_certificate_key $dir/tls/backend.bench.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        root $dir/www;
    }
NGX
    done
fi
echo "}" >>"$dir/nginx.conf"
nginx -p "$dir" -e "$dir/nginx.err" -c "$dir/nginx.conf" >"$dir/nginx.log" 2>&1 &
pids="$pids $!"
tls_services=""
if [ "$tls" = 1 ]; then
    tls_services=$(cat <<CONF
, {
    "name": "tbench", "mode": "http", "listen": ["127.0.0.1:$pxt"],
    "legacy": { "servers": ["127.0.0.1:$be_l"] },
    "new": { "servers": ["127.0.0.1:$be_n"] },
    "weight": 10,
    "rollback": { "enabled": false },
    "timeouts": { "client_idle_ms": 120000 }, "pool": { "idle_timeout_ms": 600000 },
    "tls": { "certs": [{ "cert": "$dir/tls/bench.test.pem", "key": "$dir/tls/bench.test.key" }] }
  }, {
    "name": "tup", "mode": "http", "listen": ["127.0.0.1:$pxu"],
    "legacy": { "servers": ["127.0.0.1:$bt_l"],
                "tls": { "ca": "$dir/tls/ca.pem", "sni": "backend.bench" } },
    "new": { "servers": ["127.0.0.1:$bt_n"],
             "tls": { "ca": "$dir/tls/ca.pem", "sni": "backend.bench" } },
    "weight": 10,
    "rollback": { "enabled": false },
    "timeouts": { "client_idle_ms": 120000 }, "pool": { "idle_timeout_ms": 600000 }
  }
CONF
)
fi
cat >"$dir/cutover.json" <<CONF
{
  "workers": ${INSN_WORKERS:-1},
  "admin": { "socket": "$dir/admin.sock" },
  "state": { "file": "$dir/state.json" },
  "audit": { "file": "$dir/audit.jsonl" },
  "services": [{
    "name": "bench", "mode": "http", "listen": ["127.0.0.1:$px"],
    "legacy": { "servers": ["127.0.0.1:$be_l"] },
    "new": { "servers": ["127.0.0.1:$be_n"] },
    "weight": 10,
    "rollback": { "enabled": false },
    "timeouts": { "client_idle_ms": 120000 }, "pool": { "idle_timeout_ms": 600000 }${INSN_SERVICE_EXTRA:-}
  }$tls_services]
}
CONF
wait_port() {
    i=0
    until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null || curl -s -o /dev/null "http://127.0.0.1:$1/small"; do
        i=$((i + 1)); [ $i -lt 600 ] || { echo "insn: port $1 not up" >&2; exit 1; }
        sleep 0.1
    done
}
wait_port "$be_l"
wait_port "$be_n"
if [ "$tls" = 1 ]; then
    wait_port "$bt_l"
    wait_port "$bt_n"
fi
# wrk until <reqs> requests are done (by a Lua counter)
cat >"$dir/stop.lua" <<'LUA'
local n, limit = 0, tonumber(os.getenv("INSN_REQS"))
function response(status, headers, body)
    n = n + 1
    if n >= limit then wrk.thread:stop() end
end
LUA
url() { # CASE
    case $1 in
    ka | close) echo "http://127.0.0.1:$px/small" ;;
    tka) echo "https://127.0.0.1:$pxt/small" ;;
    tup) echo "http://127.0.0.1:$pxu/small" ;;
    esac
}
start_daemon() { # PREFIX-COMMAND... : starts the daemon under it, waits for "ready"
    rm -f "$dir/state.json" "$dir/audit.jsonl"
    : >"$dir/daemon.log"               # not the last daemon's "ready"
    "$@" -c "$dir/cutover.json" >"$dir/daemon.log" 2>&1 &
    vp=$!
    pids="$pids $vp"
    i=0
    until grep -q 'ready' "$dir/daemon.log" 2>/dev/null; do
        i=$((i + 1)); [ $i -lt 600 ] || { tail "$dir/daemon.log" >&2; exit 1; }
        sleep 0.1
    done
}
load() { # CASE REQS OUT: wrk with 4 connections until REQS responses
    # "Connection: close" with its space: wrk drops a header without one
    # ("Connection:close"), which left that case on keep-alive
    if [ "$1" = close ]; then
        INSN_REQS=$2 wrk -t1 -c4 -d60s -H "Connection: close" -s "$dir/stop.lua" \
            "$(url "$1")" >"$3"
    else
        INSN_REQS=$2 wrk -t1 -c4 -d60s -s "$dir/stop.lua" "$(url "$1")" >"$3"
    fi
}
case_run() { # DAEMON CASE -> prints Ir per request
    rm -f "$dir"/callgrind.out.*
    start_daemon valgrind --tool=callgrind --instr-atstart=no \
        --callgrind-out-file="$dir/callgrind.out.%p" "$1"
    # warm up (the TLS cases: the pool's connections to the backends too), then count
    load "$2" 200 /dev/null
    callgrind_control -i on "$vp" >/dev/null
    callgrind_control -z "$vp" >/dev/null
    t0=$(date +%s%N)
    load "$2" "$reqs" "$dir/wrk.out"
    callgrind_control -d "$vp" >/dev/null
    t1=$(date +%s%N)
    callgrind_control -i off "$vp" >/dev/null
    n=$(awk '/requests in/ { print $1 }' "$dir/wrk.out")
    kill "$vp"; wait "$vp" 2>/dev/null || true
    if [ -n "${INSN_KEEP:-}" ]; then
        mkdir -p "$INSN_KEEP"
        cp "$dir"/callgrind.out.*.1 "$INSN_KEEP/callgrind.$(basename "$1").$2"
    fi
    ir=$(cat "$dir"/callgrind.out.*.1 | awk '/^summary:/ { s += $2 } /^totals:/ { t += $2 } END { print (s > 0 ? s : t) }')
    insplit=0
    if [ -n "${INSN_SPLIT:-}" ]; then
        # inclusive cost of every matching function, summed (top-level
        # callbacks: none of them calls another). callgrind_annotate may list
        # a function twice, by its relative and its absolute file name: each
        # counts once (file base name and function)
        insplit=$(callgrind_annotate --inclusive=yes --auto=no --threshold=100 \
                "$dir"/callgrind.out.*.1 2>/dev/null |
            awk -v re="$INSN_SPLIT" '/^ *[0-9,]+ / { c = $1; gsub(",", "", c); c += 0
                for (i = 2; i <= NF; i++)
                    if ($i ~ /:/ && $i ~ re) { k = $i; sub(/.*\//, "", k); if (c > v[k]) v[k] = c; break } }
                END { for (k in v) s += v[k]; printf "%.0f", s }')
    fi
    if [ -n "${INSN_DEBUG:-}" ]; then
        echo "insn: $1 $2: $ir instructions, $insplit in the split, $n requests," \
            "$(((t1 - t0) / 1000000)) ms" >&2
        grep 'event=gate ' "$dir/daemon.log" >&2 || true
    fi
    if [ -n "${INSN_SPLIT:-}" ]; then
        awk -v ir="$ir" -v sp="$insplit" -v n="$n" 'BEGIN { printf "%.0f + %.0f", (ir - sp) / n, sp / n }'
    else
        awk -v ir="$ir" -v n="$n" 'BEGIN { printf "%.0f", ir / n }'
    fi
}
sys_run() { # DAEMON CASE -> "all epoll_ctl epoll_wait read+recv write+send" per request
    start_daemon "$1"
    load "$2" 200 /dev/null
    strace -c -f -o "$dir/strace.out" -p "$vp" 2>/dev/null &
    sp=$!
    sleep 1                            # strace attaches to every thread
    load "$2" "$reqs" "$dir/wrk.out"
    kill -INT "$sp"; wait "$sp" 2>/dev/null || true
    n=$(awk '/requests in/ { print $1 }' "$dir/wrk.out")
    kill "$vp"; wait "$vp" 2>/dev/null || true
    if [ -n "${INSN_DEBUG:-}" ]; then
        echo "insn: $1 $2: strace -c -f over $n requests:" >&2
        cat "$dir/strace.out" >&2
    fi
    awk -v n="$n" '
        $NF == "total" { all = $(NF - 2) }
        $NF == "epoll_ctl" { ctl = $4 }
        $NF == "epoll_wait" { ew = $4 }
        $NF == "read" || $NF == "recvmsg" || $NF == "recvfrom" { rd += $4 }
        $NF == "write" || $NF == "sendmsg" || $NF == "sendto" || $NF == "writev" { wr += $4 }
        END { printf "%.2f | %.2f | %.2f | %.2f | %.2f", all / n, ctl / n, ew / n, rd / n, wr / n }' \
        "$dir/strace.out"
}
cases="ka close"
[ "$tls" = 0 ] || cases="$cases tka tup"
cases=${INSN_CASES:-$cases}
names() { # CASE
    case $1 in
    ka) echo "keep-alive request" ;;
    close) echo "request on a new connection" ;;
    tka) echo "keep-alive request over TLS 1.3" ;;
    tup) echo "keep-alive request, TLS to the backends" ;;
    esac
}
hdr="| daemon |"
sep="|---|"
for k in $cases; do
    hdr="$hdr instructions per $(names "$k") |"
    sep="$sep--:|"
done
echo "$hdr"
echo "$sep"
for d in "$@"; do
    rev=$(git -C "$(dirname "$d")" rev-parse --short HEAD 2>/dev/null || echo "?")
    row="| $d ($rev) |"
    for k in $cases; do
        row="$row $(case_run "$d" "$k") |"
    done
    echo "$row"
done
[ "$sys" != 0 ] || exit 0
echo
echo "| daemon | case | system calls per request | epoll_ctl | epoll_wait | read, recvmsg | write, sendmsg |"
echo "|---|---|--:|--:|--:|--:|--:|"
for d in "$@"; do
    rev=$(git -C "$(dirname "$d")" rev-parse --short HEAD 2>/dev/null || echo "?")
    for k in $cases; do
        echo "| $d ($rev) | $k | $(sys_run "$d" "$k") |"
    done
done
