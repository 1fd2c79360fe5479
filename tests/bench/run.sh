#!/bin/sh
# The side-by-side benchmark: cutoverd, HAProxy and NGINX as proxies in front
# of the same two NGINX backends (legacy and new, 90/10), and a direct
# connection to a backend, driven by wrk in interleaved rounds on loopback.
# cutoverd runs twice: with `workers: 1` and, as target cutoverd-w2, with
# `workers: 2` on two CPUs (the proxies' and wrk's: each loop gets a CPU, as
# `workers: 0` would give it); HAProxy with `nbthread 2` on the same two CPUs
# (target haproxy-t2, small responses only) is its reference.
# With CUTOVERD_BASE, a second cutoverd built from another commit (target
# cutoverd-base) runs beside the first with `workers: 1` and the same config on
# ports of its own, in the idle row and every case; one more table then sets
# cutoverd's CPU per request or MiB against it: no regression beyond 3 %.
# With BENCH_TLS=1 (the default) the same three proxies, as processes of their
# own beside the plain ones, also terminate TLS with the same certificates
# (an ECDSA P-256 and an RSA 2048 one, made with openssl at the start) and the
# same settings, and talk TLS to two more NGINX backends; the TLS tables come
# after the plain ones (docs/performance.md, "TLS").
# With BENCH_SHADOW=1 (the default) three more cutoverd (`workers: 1`, the same
# service) shadow none, 10 % and 100 % of GETs (targets cutoverd-sh0, -sh10,
# -sh100): under wrk (closed loop: saturated) for CPU per request, and under a
# fixed request rate (tests/bench/rateload.c: open loop, latency from each
# request's intended send time) well below saturation for the client's p50 and
# p99 (docs/performance.md, "Shadow traffic").
#
#   sh tests/bench/run.sh        (make bench)
#
# Environment:
#   CUTOVERD=PATH       the daemon to measure (default build/cutoverd; both
#                       instances, workers 1 and 2, run this binary)
#   CUTOVERD_BASE=PATH  also measure this build of another commit, as target
#                       cutoverd-base (ports BASE+4 and BASE+5; make bench-base
#                       BASE=REV builds one and passes it)
#   CUTOVERD_BASE_REV=LABEL  its revision in the report (default "base")
#   BENCH_ROUNDS=3      rounds; every round runs every case against every target
#   BENCH_SECS=5        seconds per wrk run
#   BENCH_CONNS=50      wrk connections for small responses
#   BENCH_BIG_CONNS=10  wrk connections for 64 KiB and 1 MiB responses
#   BENCH_IDLE=2000     idle keep-alive connections for the memory row
#   BENCH_PORT=20100    base port (uses BASE+1..BASE+31 on 127.0.0.1, with TLS
#                       BASE+41..BASE+51 too)
#   BENCH_CPU=0 BENCH_WRK_CPU=1   CPU of proxies and backends / of wrk
#   BENCH_W2_CPUS=0,1   CPUs of cutoverd-w2 and haproxy-t2
#   BENCH_PROFILE=1     also profile cutoverd (workers 1, perf) during one keep-alive run
#                       (or a list of cases: BENCH_PROFILE="ka 1m"; a TLS case,
#                       "tka", profiles HAProxy beside it)
#   BENCH_OUT=FILE      also write the markdown block to FILE
#   BENCH_TLS=1         the TLS cases and tables (0: none, the run of before)
#   BENCH_SHADOW=1      the shadow traffic rows and table (0: none)
#   BENCH_SHADOW_PCT=30 the open-loop rate of the shadow rows, in percent of the
#                       req/s the no-shadow daemon made under wrk in round 1
#   BENCH_CRATE_PCT=60  the open-loop rate of the new-connection row "crate", in
#                       percent of the slowest proxy's req/s under wrk (case
#                       close) in round 1
#   BENCH_BE_SCHED=other  the backends' scheduling policy: "batch" runs every
#                       backend NGINX process as SCHED_BATCH (chrt -b 0), whose
#                       wakeups never preempt the task that woke them (the proxy
#                       sharing their CPU): a diagnostic of how much of a row is
#                       the scheduler's choice between proxy and backend
#
# Proxies and backends share one CPU, wrk runs on the other. The CPU figures
# are the proxy process's own utime+stime (/proc/PID/stat) over the run,
# divided by requests or MiB; for NGINX master and workers are summed, for
# cutoverd-w2 /proc/PID/stat already counts both of its threads. A
# target that fails to start, answers anything but 2xx or reports socket
# errors fails the whole run (exit 1): error pages are not measured.
# Needs haproxy, nginx and wrk (installed with apt-get when missing and run
# as root), cc, taskset, timeout; for TLS also openssl, OpenSSL's headers
# (libssl-dev) for tests/bench/tlsload.c, and curl; the markdown block goes to
# standard output, progress to standard error.
set -eu
here=$(pwd)
cd "$(dirname "$0")/../.."
root=$(pwd)
PATH=$PATH:/usr/sbin:/sbin
export PATH

rounds=${BENCH_ROUNDS:-3}
secs=${BENCH_SECS:-5}
conns=${BENCH_CONNS:-50}
bigconns=${BENCH_BIG_CONNS:-10}
idle_n=${BENCH_IDLE:-2000}
base=${BENCH_PORT:-20100}
cpu=${BENCH_CPU:-0}
wcpu=${BENCH_WRK_CPU:-1}
w2cpus=${BENCH_W2_CPUS:-$cpu,$wcpu}
tls=${BENCH_TLS:-1}
shadow=${BENCH_SHADOW:-1}
shpct=${BENCH_SHADOW_PCT:-30}
crpct=${BENCH_CRATE_PCT:-60}
besched=${BENCH_BE_SCHED:-other}
cutoverd=${CUTOVERD:-build/cutoverd}
case $cutoverd in
/*) ;;
*) if [ -n "${CUTOVERD:-}" ] && [ -e "$here/$cutoverd" ]; then cutoverd=$here/$cutoverd; else cutoverd=$root/$cutoverd; fi ;;
esac
basebin=${CUTOVERD_BASE:-} # the A/B target cutoverd-base; relative paths as CUTOVERD's
case $basebin in
'' | /*) ;;
*) if [ -e "$here/$basebin" ]; then basebin=$here/$basebin; else basebin=$root/$basebin; fi ;;
esac
base_rev=${CUTOVERD_BASE_REV:-base}
ab="" # the target list's cutoverd-base, empty without CUTOVERD_BASE
[ -z "$basebin" ] || ab="cutoverd-base"

say() { printf 'bench: %s\n' "$*" >&2; }
die() {
    printf 'bench: FAILED: %s\n' "$*" >&2
    exit 1
}
isnum() { case $1 in '' | *[!0-9]*) return 1 ;; esac; }
for v in "$rounds" "$secs" "$conns" "$bigconns" "$idle_n" "$base" "$cpu" "$wcpu" "$shpct" "$crpct"; do
    isnum "$v" || die "BENCH_* settings must be whole numbers (got '$v')"
done
case $tls in 0 | 1) ;; *) die "BENCH_TLS must be 0 or 1 (got '$tls')" ;; esac
case $shadow in 0 | 1) ;; *) die "BENCH_SHADOW must be 0 or 1 (got '$shadow')" ;; esac
[ "$shpct" -ge 1 ] && [ "$shpct" -le 100 ] || die "BENCH_SHADOW_PCT must be 1..100 (got '$shpct')"
[ "$crpct" -ge 1 ] && [ "$crpct" -le 100 ] || die "BENCH_CRATE_PCT must be 1..100 (got '$crpct')"
case $besched in other | batch) ;; *) die "BENCH_BE_SCHED must be other or batch (got '$besched')" ;; esac
if [ "$rounds" -lt 1 ] || [ "$secs" -lt 1 ]; then
    die "BENCH_ROUNDS and BENCH_SECS must be at least 1"
fi
[ -x "$cutoverd" ] || die "no daemon at $cutoverd (make all, or CUTOVERD=PATH)"
[ -z "$basebin" ] || [ -x "$basebin" ] || die "no daemon at $basebin (CUTOVERD_BASE)"

# ---- what it needs ----------------------------------------------------------
updated=""
apt_install() {
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 || return 1
    if [ -z "$updated" ]; then
        say "apt-get update"
        apt-get update -qq >&2 || return 1
        updated=1
    fi
    say "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}
need=""
command -v haproxy >/dev/null 2>&1 || need="$need haproxy"
command -v wrk >/dev/null 2>&1 || need="$need wrk"
if ! command -v nginx >/dev/null 2>&1; then
    # shellcheck disable=SC2086
    [ -z "$need" ] || apt_install $need || die "cannot install$need (run as root, or install them)"
    need=""
    apt_install nginx-light || apt_install nginx || die "cannot install nginx (run as root, or install it)"
fi
# shellcheck disable=SC2086
[ -z "$need" ] || apt_install $need || die "cannot install$need (run as root, or install them)"
for t in haproxy nginx wrk cc taskset timeout awk; do
    command -v "$t" >/dev/null 2>&1 || die "$t is needed"
done
if [ "$tls" = 1 ]; then
    need=""
    command -v openssl >/dev/null 2>&1 || need="$need openssl"
    command -v curl >/dev/null 2>&1 || need="$need curl"
    # shellcheck disable=SC2086
    [ -z "$need" ] || apt_install $need || die "cannot install$need (run as root, install them, or BENCH_TLS=0)"
fi

# NGINX's stream module (TCP row): built in, a loadable module, or absent
nginx_v=$(nginx -V 2>&1)
stream_load=""
stream=no
case $nginx_v in
*--with-stream=dynamic*)
    moddir=$(printf '%s\n' "$nginx_v" | tr ' ' '\n' | sed -n 's/^--modules-path=//p')
    moddir=${moddir:-/usr/lib/nginx/modules}
    [ -f "$moddir/ngx_stream_module.so" ] || apt_install libnginx-mod-stream || true
    if [ -f "$moddir/ngx_stream_module.so" ]; then
        stream=yes
        stream_load="load_module $moddir/ngx_stream_module.so;"
    fi
    ;;
*--with-stream*) stream=yes ;;
esac

# ---- temp dir, cleanup -----------------------------------------------------
dir=$(mktemp -d "${TMPDIR:-/tmp}/cutover-bench.XXXXXX")
chmod 755 "$dir" # NGINX's workers run as an unprivileged user when started by root
pids=""
helpers=""
cleanup() {
    set +e
    for cp in $helpers $pids; do kill "$cp" 2>/dev/null; done
    ci=0
    while [ $ci -lt 30 ]; do
        alive=""
        for cp in $helpers $pids; do kill -0 "$cp" 2>/dev/null && alive=1; done
        [ -n "$alive" ] || break
        sleep 0.1
        ci=$((ci + 1))
    done
    for cp in $helpers $pids; do kill -9 "$cp" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ulimit -n is not POSIX, but every sh this runs under (dash, bash, busybox) has it
# shellcheck disable=SC3045
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# shellcheck disable=SC3045
nofile=$(ulimit -n)
[ "$nofile" = unlimited ] || [ "$nofile" -ge $((idle_n * 2 + 512)) ] ||
    die "ulimit -n is $nofile; $idle_n idle connections need $((idle_n * 2 + 512))"
wlimit=$nofile
[ "$wlimit" != unlimited ] || wlimit=65536

cc -std=c11 -O2 -o "$dir/idle" tests/bench/idle.c || die "cannot compile tests/bench/idle.c"
# the open-loop load: the crate row, and the shadow rows' fixed rate
cc -std=c11 -O2 -o "$dir/rateload" tests/bench/rateload.c || die "cannot compile tests/bench/rateload.c"
if [ "$tls" = 1 ]; then
    cc -std=c11 -O2 -o "$dir/tlsload" tests/bench/tlsload.c -lssl -lcrypto ||
        die "cannot compile tests/bench/tlsload.c (OpenSSL's headers: libssl-dev; or BENCH_TLS=0)"
fi

# ---- ports -----------------------------------------------------------------
be_l=$((base + 1))
be_n=$((base + 2))
hap=$((base + 10))
hap_t=$((base + 11))
ngx=$((base + 20))
ngx_t=$((base + 21))
cut=$((base + 30))
cut_t=$((base + 31))
cut2=$((base + 3)) # cutoverd-w2 (HTTP only); the free slot below HAProxy's keeps BASE+1..BASE+31
hap2=$((base + 12)) # haproxy-t2: HAProxy with nbthread 2, the reference for cutoverd-w2
cutb=$((base + 4)) # cutoverd-base (CUTOVERD_BASE): HTTP and TCP in the free slots
cutb_t=$((base + 5))
sh_ports="" # BENCH_SHADOW=1: cutoverd shadowing none, 10 % and 100 % of GETs
if [ "$shadow" = 1 ]; then
    cut_sh0=$((base + 6))
    cut_sh10=$((base + 7))
    cut_sh100=$((base + 8))
    sh_ports="$cut_sh0 $cut_sh10 $cut_sh100"
fi
# TLS (BENCH_TLS=1): processes of their own, so that the plain rows are measured
# exactly as without TLS; "_s" terminates TLS, "_u" is plain HTTP to TLS backends
tls_ports=""
if [ "$tls" = 1 ]; then
    bt_l=$((base + 41)) # the TLS backends (one more NGINX)
    bt_n=$((base + 42))
    hap_s=$((base + 43))
    hap_u=$((base + 44))
    hap2_s=$((base + 45)) # HAProxy nbthread 2, TLS
    ngx_s=$((base + 46))
    ngx_u=$((base + 47))
    cut_s=$((base + 48))
    cut_u=$((base + 49))
    cut2_s=$((base + 50)) # cutoverd workers 2, TLS
    bt_st=$((base + 51))  # the TLS backends' stub_status (plain)
    tls_ports="$bt_l $bt_n $hap_s $hap_u $hap2_s $ngx_s $ngx_u $cut_s $cut_u $cut2_s $bt_st"
fi
if command -v ss >/dev/null 2>&1; then
    for p in $be_l $be_n $hap $hap_t $ngx $ngx_t $cut $cut_t $cut2 $hap2 ${ab:+$cutb $cutb_t} $tls_ports $sh_ports; do
        if ss -Htln "sport = :$p" 2>/dev/null | grep -q .; then
            die "port $p is already in use (BENCH_PORT=N picks others)"
        fi
    done
fi

# ---- content and configs ---------------------------------------------------
small_bytes=16
mkdir -p "$dir/www" "$dir/tmp"
printf 'cutover bench ok' >"$dir/www/small"
head -c 65536 /dev/zero | tr '\0' 'x' >"$dir/www/64k"
head -c 1048576 /dev/zero | tr '\0' 'x' >"$dir/www/1m"
chmod -R a+rX "$dir/www"

nginx_common() { # $1: prefix of temp paths
    cat <<EOF
worker_processes 1;
worker_rlimit_nofile $wlimit;
daemon off;
pid $dir/$1.pid;
error_log $dir/$1.err warn;
events { worker_connections 10000; }
EOF
}
http_common() { # $1: prefix of temp paths
    cat <<EOF
    access_log off;
    default_type application/octet-stream;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    client_body_temp_path $dir/tmp/$1-body;
    proxy_temp_path $dir/tmp/$1-proxy;
    fastcgi_temp_path $dir/tmp/$1-fastcgi;
    uwsgi_temp_path $dir/tmp/$1-uwsgi;
    scgi_temp_path $dir/tmp/$1-scgi;
EOF
}

{
    nginx_common backend
    echo "http {"
    http_common backend
    cat <<EOF
    sendfile on;
    tcp_nopush on;
    server { listen 127.0.0.1:$be_l; root $dir/www; }
    server { listen 127.0.0.1:$be_n; root $dir/www; }
}
EOF
} >"$dir/backend.conf"

{
    [ -z "$stream_load" ] || echo "$stream_load"
    nginx_common nginx
    echo "http {"
    http_common nginx
    cat <<EOF
    upstream be {
        server 127.0.0.1:$be_l weight=9;
        server 127.0.0.1:$be_n weight=1;
        keepalive 32;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$ngx;
        location / {
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_max_temp_file_size 0;
        }
    }
}
EOF
    if [ $stream = yes ]; then
        cat <<EOF
stream {
    upstream bt {
        server 127.0.0.1:$be_l weight=9;
        server 127.0.0.1:$be_n weight=1;
    }
    server { listen 127.0.0.1:$ngx_t; proxy_pass bt; }
}
EOF
    fi
} >"$dir/nginx.conf"

haproxy_http() { # NBTHREAD PORT: the global part and the HTTP proxy of a config
    cat <<EOF
global
    nbthread $1
    maxconn 8000

defaults
    mode http
    timeout connect 2s
    timeout client 120s
    timeout server 30s
    timeout http-keep-alive 120s
    http-reuse always

frontend http
    bind 127.0.0.1:$2
    default_backend http

backend http
    balance roundrobin
    server legacy 127.0.0.1:$be_l weight 90
    server new 127.0.0.1:$be_n weight 10
EOF
}
{
    haproxy_http 1 "$hap"
    cat <<EOF

frontend tcp
    mode tcp
    bind 127.0.0.1:$hap_t
    default_backend tcp

backend tcp
    mode tcp
    balance roundrobin
    server legacy 127.0.0.1:$be_l weight 90
    server new 127.0.0.1:$be_n weight 10
EOF
} >"$dir/haproxy.cfg"
# the same HTTP proxy with two threads, on the two CPUs cutoverd-w2 gets: what a
# second thread costs HAProxy per request, beside what it costs cutoverd
haproxy_http 2 "$hap2" >"$dir/haproxy-t2.cfg"

cutover_conf() { # SUFFIX HTTP-PORT TCP-PORT: the one-worker config; its files carry SUFFIX
    cat <<EOF
{
  "admin": { "socket": "$dir/admin$1.sock" },
  "state": { "file": "$dir/state$1.json" },
  "audit": { "file": "$dir/audit$1.jsonl" },
  "workers": 1,
  "shutdown_grace_ms": 1000,
  "services": [{
    "name": "bench", "mode": "http", "listen": ["127.0.0.1:$2"],
    "legacy": { "servers": ["127.0.0.1:$be_l"] },
    "new": { "servers": ["127.0.0.1:$be_n"] },
    "weight": 10,
    "rollback": { "enabled": false },
    "timeouts": { "client_idle_ms": 120000 }
  }, {
    "name": "benchtcp", "mode": "tcp", "listen": ["127.0.0.1:$3"],
    "legacy": { "servers": ["127.0.0.1:$be_l"] },
    "new": { "servers": ["127.0.0.1:$be_n"] },
    "weight": 10,
    "rollback": { "enabled": false }
  }]
}
EOF
}
cutover_conf "" "$cut" "$cut_t" >"$dir/cutover.json"
# the build of another commit gets the same config on its own ports and files
[ -z "$ab" ] || cutover_conf -base "$cutb" "$cutb_t" >"$dir/cutover-base.json"

# the same daemon with two event loops (main loop + 1 thread, SO_REUSEPORT
# listeners), on two CPUs: the HTTP service only, weight 10 too
cat >"$dir/cutover-w2.json" <<EOF
{
  "admin": { "socket": "$dir/admin-w2.sock" },
  "state": { "file": "$dir/state-w2.json" },
  "audit": { "file": "$dir/audit-w2.jsonl" },
  "workers": 2,
  "shutdown_grace_ms": 1000,
  "services": [{
    "name": "bench", "mode": "http", "listen": ["127.0.0.1:$cut2"],
    "legacy": { "servers": ["127.0.0.1:$be_l"] },
    "new": { "servers": ["127.0.0.1:$be_n"] },
    "weight": 10,
    "rollback": { "enabled": false },
    "timeouts": { "client_idle_ms": 120000 }
  }]
}
EOF

# shadow traffic (BENCH_SHADOW=1): the HTTP service alone, shadowing PERCENT % of
# GETs to the side that did not serve (the same NGINX); room for every copy
shadow_conf() { # NAME PORT PERCENT ("none": no shadow section)
    cat <<EOF
{
  "admin": { "socket": "$dir/admin-$1.sock" },
  "state": { "file": "$dir/state-$1.json" },
  "audit": { "file": "$dir/audit-$1.jsonl" },
  "workers": 1,
  "shutdown_grace_ms": 1000,
  "services": [{
    "name": "bench", "mode": "http", "listen": ["127.0.0.1:$2"],
    "legacy": { "servers": ["127.0.0.1:$be_l"] },
    "new": { "servers": ["127.0.0.1:$be_n"] },
    "weight": 10,
    "rollback": { "enabled": false },
    "timeouts": { "client_idle_ms": 120000 }$([ "$3" = none ] ||
        printf ',\n    "shadow": { "percent": %s, "max_inflight": 1024, "timeout_ms": 1000 }' "$3")
  }]
}
EOF
}
if [ "$shadow" = 1 ]; then
    shadow_conf sh0 "$cut_sh0" none >"$dir/cutover-sh0.json"
    shadow_conf sh10 "$cut_sh10" 10 >"$dir/cutover-sh10.json"
    shadow_conf sh100 "$cut_sh100" 100 >"$dir/cutover-sh100.json"
    for c in sh0 sh10 sh100; do
        "$cutoverd" -t -c "$dir/cutover-$c.json" >"$dir/cutover-$c.check" 2>&1 || {
            cat "$dir/cutover-$c.check" >&2
            die "cutoverd rejects its $c config"
        }
    done
fi

haproxy -c -q -f "$dir/haproxy-t2.cfg" >"$dir/haproxy.check" 2>&1 || {
    cat "$dir/haproxy.check" >&2
    die "haproxy rejects its nbthread 2 config"
}
haproxy -c -q -f "$dir/haproxy.cfg" >"$dir/haproxy.check" 2>&1 || {
    cat "$dir/haproxy.check" >&2
    die "haproxy rejects its config"
}
for c in backend nginx; do
    nginx -t -q -p "$dir" -e "$dir/$c.err" -c "$dir/$c.conf" >"$dir/$c.check" 2>&1 || {
        cat "$dir/$c.check" >&2
        die "nginx rejects the $c config"
    }
done
"$cutoverd" -t -c "$dir/cutover.json" >"$dir/cutover.check" 2>&1 || {
    cat "$dir/cutover.check" >&2
    die "cutoverd rejects its config"
}
"$cutoverd" -t -c "$dir/cutover-w2.json" >"$dir/cutover-w2.check" 2>&1 || {
    cat "$dir/cutover-w2.check" >&2
    die "cutoverd rejects its workers 2 config"
}
if [ -n "$ab" ]; then
    "$basebin" -t -c "$dir/cutover-base.json" >"$dir/cutover-base.check" 2>&1 || {
        cat "$dir/cutover-base.check" >&2
        die "cutoverd (base) rejects its config"
    }
fi

# ---- TLS: certificates and configs (BENCH_TLS=1) ------------------------------
# One CA signs an ECDSA P-256 and an RSA 2048 server certificate (bench.test,
# both on every TLS listener: a client that takes ECDSA gets ECDSA, an RSA-only
# client RSA) and the TLS backends' ECDSA one (backend.bench, verified by name
# by every proxy). Every proxy terminates with the same protocol versions, TLS
# 1.2 ciphers (Mozilla's intermediate list, cutoverd's default), TLS 1.3 suites
# (cutoverd's default: OpenSSL's three), groups, and the client's order of
# preference; session tickets on (each proxy's own keys). The probes below
# check that every target negotiates the same thing.
tls_ciphers="ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
tls_suites="TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
tls_groups="X25519:P-256:P-384"
tls12_cipher="ECDHE-ECDSA-AES128-GCM-SHA256"
if [ "$tls" = 1 ]; then
    say "TLS: certificates (openssl)"
    mkdir "$dir/tls"
    (
        cd "$dir/tls"
        set -e
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
            -out ca.pem -days 30 -subj '/CN=cutover bench CA'
        leaf() { # NAME KEY-USAGE SAN OPENSSL-REQ-KEY-ARGS...
            l_name=$1 l_usage=$2 l_san=$3
            shift 3
            openssl req -new "$@" -nodes -keyout "$l_name.key" -out "$l_name.csr" \
                -subj "/CN=${l_san#DNS:}"
            printf 'basicConstraints=CA:FALSE\nkeyUsage=%s\nextendedKeyUsage=serverAuth\nsubjectAltName=%s,IP:127.0.0.1\n' \
                "$l_usage" "$l_san" >"$l_name.ext"
            openssl x509 -req -in "$l_name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
                -extfile "$l_name.ext" -out "$l_name.pem"
            cat "$l_name.pem" "$l_name.key" >"$l_name.all.pem" # HAProxy's crt: both in one file
        }
        leaf ecdsa digitalSignature DNS:bench.test -newkey ec -pkeyopt ec_paramgen_curve:P-256
        leaf rsa digitalSignature,keyEncipherment DNS:bench.test -newkey rsa:2048
        leaf backend digitalSignature DNS:backend.bench -newkey ec -pkeyopt ec_paramgen_curve:P-256
        # wrk and tlsload with this file (OPENSSL_CONF) offer TLS 1.2 and one cipher only
        printf '%s\n' 'openssl_conf = bench_conf' '[bench_conf]' 'ssl_conf = bench_ssl' '[bench_ssl]' \
            'system_default = bench_client' '[bench_client]' 'MaxProtocol = TLSv1.2' \
            "CipherString = $tls12_cipher" >client12.cnf
    ) >"$dir/tls.log" 2>&1 || {
        cat "$dir/tls.log" >&2
        die "cannot make the TLS certificates with openssl"
    }
    tdir=$dir/tls

    ngx_tls() { # the server-side TLS settings of an NGINX server block
        cat <<EOF
        ssl_certificate $tdir/ecdsa.pem;
        ssl_certificate_key $tdir/ecdsa.key;
        ssl_certificate $tdir/rsa.pem;
        ssl_certificate_key $tdir/rsa.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers $tls_ciphers;
        ssl_conf_command Ciphersuites $tls_suites;
        ssl_ecdh_curve $tls_groups;
        ssl_prefer_server_ciphers off;
EOF
    }
    {
        nginx_common backend-tls
        echo "http {"
        http_common backend-tls
        for p in $bt_l $bt_n; do
            cat <<EOF
    server {
        listen 127.0.0.1:$p ssl;
        ssl_certificate $tdir/backend.pem;
        ssl_certificate_key $tdir/backend.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        root $dir/www;
        location = /bench-tls { return 200 "\$ssl_protocol \$ssl_cipher \$ssl_curve\n"; }
    }
EOF
        done
        cat <<EOF
    server { listen 127.0.0.1:$bt_st; location / { stub_status; } }
}
EOF
    } >"$dir/backend-tls.conf"

    {
        nginx_common nginx-tls
        echo "http {"
        http_common nginx-tls
        cat <<EOF
    upstream be {
        server 127.0.0.1:$be_l weight=9;
        server 127.0.0.1:$be_n weight=1;
        keepalive 32;
        keepalive_requests 1000000;
    }
    upstream bes {
        server 127.0.0.1:$bt_l weight=9;
        server 127.0.0.1:$bt_n weight=1;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$ngx_s ssl;
$(ngx_tls)
        location / {
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_max_temp_file_size 0;
        }
    }
    server {
        listen 127.0.0.1:$ngx_u;
        location / {
            proxy_pass https://bes;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_max_temp_file_size 0;
            proxy_ssl_protocols TLSv1.2 TLSv1.3;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate $tdir/ca.pem;
            proxy_ssl_name backend.bench;
            proxy_ssl_server_name on;
            proxy_ssl_session_reuse on;
        }
    }
}
EOF
    } >"$dir/nginx-tls.conf"

    haproxy_tls() { # NBTHREAD TLS-PORT: the global part and the TLS-terminating proxy
        cat <<EOF
global
    nbthread $1
    maxconn 8000
    tune.ssl.default-dh-param 2048

defaults
    mode http
    timeout connect 2s
    timeout client 120s
    timeout server 30s
    timeout http-keep-alive 120s
    http-reuse always

frontend https
    bind 127.0.0.1:$2 ssl crt $tdir/ecdsa.all.pem crt $tdir/rsa.all.pem alpn http/1.1 ssl-min-ver TLSv1.2 ciphers $tls_ciphers ciphersuites $tls_suites curves $tls_groups prefer-client-ciphers
    default_backend http

backend http
    balance roundrobin
    server legacy 127.0.0.1:$be_l weight 90
    server new 127.0.0.1:$be_n weight 10
EOF
    }
    {
        haproxy_tls 1 "$hap_s"
        cat <<EOF

frontend tlsup
    bind 127.0.0.1:$hap_u
    default_backend tlsup

backend tlsup
    balance roundrobin
    server legacy 127.0.0.1:$bt_l weight 90 ssl verify required ca-file $tdir/ca.pem sni str(backend.bench) verifyhost backend.bench
    server new 127.0.0.1:$bt_n weight 10 ssl verify required ca-file $tdir/ca.pem sni str(backend.bench) verifyhost backend.bench
EOF
    } >"$dir/haproxy-tls.cfg"
    haproxy_tls 2 "$hap2_s" >"$dir/haproxy-t2-tls.cfg"

    cutover_tls() { # cutoverd's "tls" of a service
        cat <<EOF
    "tls": { "certs": [{ "cert": "$tdir/ecdsa.pem", "key": "$tdir/ecdsa.key" },
                       { "cert": "$tdir/rsa.pem", "key": "$tdir/rsa.key" }] }
EOF
    }
    cat >"$dir/cutover-tls.json" <<EOF
{
  "admin": { "socket": "$dir/admin-tls.sock" },
  "state": { "file": "$dir/state-tls.json" },
  "audit": { "file": "$dir/audit-tls.jsonl" },
  "workers": 1,
  "shutdown_grace_ms": 1000,
  "services": [{
    "name": "benchtls", "mode": "http", "listen": ["127.0.0.1:$cut_s"],
    "legacy": { "servers": ["127.0.0.1:$be_l"] },
    "new": { "servers": ["127.0.0.1:$be_n"] },
    "weight": 10,
    "rollback": { "enabled": false },
    "timeouts": { "client_idle_ms": 120000 },
$(cutover_tls)
  }, {
    "name": "benchtlsup", "mode": "http", "listen": ["127.0.0.1:$cut_u"],
    "legacy": { "servers": ["127.0.0.1:$bt_l"],
                "tls": { "ca": "$tdir/ca.pem", "sni": "backend.bench" } },
    "new": { "servers": ["127.0.0.1:$bt_n"],
             "tls": { "ca": "$tdir/ca.pem", "sni": "backend.bench" } },
    "weight": 10,
    "rollback": { "enabled": false },
    "timeouts": { "client_idle_ms": 120000 }
  }]
}
EOF
    cat >"$dir/cutover-w2-tls.json" <<EOF
{
  "admin": { "socket": "$dir/admin-w2-tls.sock" },
  "state": { "file": "$dir/state-w2-tls.json" },
  "audit": { "file": "$dir/audit-w2-tls.jsonl" },
  "workers": 2,
  "shutdown_grace_ms": 1000,
  "services": [{
    "name": "benchtls", "mode": "http", "listen": ["127.0.0.1:$cut2_s"],
    "legacy": { "servers": ["127.0.0.1:$be_l"] },
    "new": { "servers": ["127.0.0.1:$be_n"] },
    "weight": 10,
    "rollback": { "enabled": false },
    "timeouts": { "client_idle_ms": 120000 },
$(cutover_tls)
  }]
}
EOF
    for c in haproxy-tls haproxy-t2-tls; do
        haproxy -c -q -f "$dir/$c.cfg" >"$dir/$c.check" 2>&1 || {
            cat "$dir/$c.check" >&2
            die "haproxy rejects its $c config"
        }
    done
    for c in backend-tls nginx-tls; do
        nginx -t -q -p "$dir" -e "$dir/$c.err" -c "$dir/$c.conf" >"$dir/$c.check" 2>&1 || {
            cat "$dir/$c.check" >&2
            die "nginx rejects the $c config"
        }
    done
    for c in cutover-tls cutover-w2-tls; do
        "$cutoverd" -t -c "$dir/$c.json" >"$dir/$c.check" 2>&1 || {
            cat "$dir/$c.check" >&2
            die "cutoverd rejects its $c config"
        }
    done
fi

# ---- start -----------------------------------------------------------------
start() { # LOG CMD...: run CMD pinned to the proxies' CPU; sets $last
    log=$1
    shift
    taskset -c "$cpu" "$@" >"$log" 2>&1 &
    last=$!
    pids="$pids $last"
}
ready() { # NAME PID LOG PORT [tls]: wait until PORT answers a small GET with 200
    rn=0
    until if [ "${5:-}" = tls ]; then "$dir/tlsload" probe "$4"; else
        "$dir/idle" "$4" 1 /small $small_bytes; fi >/dev/null 2>"$dir/probe.err"; do
        if ! kill -0 "$2" 2>/dev/null; then
            tail -20 "$3" >&2
            die "$1 exited at startup"
        fi
        rn=$((rn + 1))
        if [ $rn -ge 50 ]; then
            cat "$dir/probe.err" >&2
            tail -20 "$3" >&2
            die "$1 does not answer on 127.0.0.1:$4"
        fi
        sleep 0.1
    done
}
probe() { # NAME PORT PATH BYTES: one GET must give 200 and BYTES of body
    "$dir/idle" "$2" 1 "$3" "$4" >/dev/null || die "$1: GET $3 on port $2 failed"
}
procs_of() { # PID: the process and its children (NGINX's master and workers)
    printf '%s' "$1"
    for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do printf ' %s' "$c"; done
    echo
}

start "$dir/backend.log" nginx -p "$dir" -e "$dir/backend.err" -c "$dir/backend.conf"
be_pid=$last
ready "backends (NGINX)" "$be_pid" "$dir/backend.err" "$be_l"
ready "backends (NGINX)" "$be_pid" "$dir/backend.err" "$be_n"
start "$dir/haproxy.log" haproxy -db -f "$dir/haproxy.cfg"
hap_pid=$last
start "$dir/nginx.log" nginx -p "$dir" -e "$dir/nginx.err" -c "$dir/nginx.conf"
ngx_pid=$last
start "$dir/cutoverd.log" "$cutoverd" -c "$dir/cutover.json"
cut_pid=$last
if [ -n "$ab" ]; then
    start "$dir/cutoverd-base.log" "$basebin" -c "$dir/cutover-base.json"
    cutb_pid=$last
fi
if [ "$shadow" = 1 ]; then
    start "$dir/cutoverd-sh0.log" "$cutoverd" -c "$dir/cutover-sh0.json"
    cut_sh0_pid=$last
    start "$dir/cutoverd-sh10.log" "$cutoverd" -c "$dir/cutover-sh10.json"
    cut_sh10_pid=$last
    start "$dir/cutoverd-sh100.log" "$cutoverd" -c "$dir/cutover-sh100.json"
    cut_sh100_pid=$last
fi
cpu_keep=$cpu
cpu=$w2cpus # two loops get two CPUs: each its own, as workers: 0 would give
start "$dir/cutoverd-w2.log" "$cutoverd" -c "$dir/cutover-w2.json"
cut2_pid=$last
start "$dir/haproxy-t2.log" haproxy -db -f "$dir/haproxy-t2.cfg"
hap2_pid=$last
cpu=$cpu_keep
ready HAProxy "$hap_pid" "$dir/haproxy.log" "$hap"
ready HAProxy "$hap_pid" "$dir/haproxy.log" "$hap_t"
ready NGINX "$ngx_pid" "$dir/nginx.err" "$ngx"
[ $stream = no ] || ready NGINX "$ngx_pid" "$dir/nginx.err" "$ngx_t"
ready cutoverd "$cut_pid" "$dir/cutoverd.log" "$cut"
ready cutoverd "$cut_pid" "$dir/cutoverd.log" "$cut_t"
if [ -n "$ab" ]; then
    ready "cutoverd (base)" "$cutb_pid" "$dir/cutoverd-base.log" "$cutb"
    ready "cutoverd (base)" "$cutb_pid" "$dir/cutoverd-base.log" "$cutb_t"
fi
ready "cutoverd (workers 2)" "$cut2_pid" "$dir/cutoverd-w2.log" "$cut2"
if [ "$shadow" = 1 ]; then
    ready "cutoverd (no shadow)" "$cut_sh0_pid" "$dir/cutoverd-sh0.log" "$cut_sh0"
    ready "cutoverd (shadow 10 %)" "$cut_sh10_pid" "$dir/cutoverd-sh10.log" "$cut_sh10"
    ready "cutoverd (shadow 100 %)" "$cut_sh100_pid" "$dir/cutoverd-sh100.log" "$cut_sh100"
fi
ready "HAProxy (nbthread 2)" "$hap2_pid" "$dir/haproxy-t2.log" "$hap2"
# it must really run two loops: the main loop and one thread
grep -q 'ready: .* 2 worker(s)' "$dir/cutoverd-w2.log" || {
    tail -20 "$dir/cutoverd-w2.log" >&2
    die "cutoverd (workers 2) does not report 2 workers"
}
ports="$be_l $hap $ngx $cut $cut2 $hap2 $hap_t $cut_t"
[ $stream = no ] || ports="$ports $ngx_t"
[ -z "$ab" ] || ports="$ports $cutb $cutb_t"
for p in $ports; do
    probe "port $p" "$p" /64k 65536
    probe "port $p" "$p" /1m 1048576
done

# ---- TLS: start and check what every target negotiates -------------------------
if [ "$tls" = 1 ]; then
    start "$dir/backend-tls.log" nginx -p "$dir" -e "$dir/backend-tls.err" -c "$dir/backend-tls.conf"
    bet_pid=$last
    start "$dir/haproxy-tls.log" haproxy -db -f "$dir/haproxy-tls.cfg"
    haps_pid=$last
    start "$dir/nginx-tls.log" nginx -p "$dir" -e "$dir/nginx-tls.err" -c "$dir/nginx-tls.conf"
    ngxs_pid=$last
    start "$dir/cutoverd-tls.log" "$cutoverd" -c "$dir/cutover-tls.json"
    cuts_pid=$last
    cpu_keep=$cpu
    cpu=$w2cpus
    start "$dir/cutoverd-w2-tls.log" "$cutoverd" -c "$dir/cutover-w2-tls.json"
    cut2s_pid=$last
    start "$dir/haproxy-t2-tls.log" haproxy -db -f "$dir/haproxy-t2-tls.cfg"
    hap2s_pid=$last
    cpu=$cpu_keep
    ready "TLS backends (NGINX)" "$bet_pid" "$dir/backend-tls.err" "$bt_l" tls
    ready "TLS backends (NGINX)" "$bet_pid" "$dir/backend-tls.err" "$bt_n" tls
    ready "HAProxy (TLS)" "$haps_pid" "$dir/haproxy-tls.log" "$hap_s" tls
    ready "HAProxy (TLS)" "$haps_pid" "$dir/haproxy-tls.log" "$hap_u"
    ready "NGINX (TLS)" "$ngxs_pid" "$dir/nginx-tls.err" "$ngx_s" tls
    ready "NGINX (TLS)" "$ngxs_pid" "$dir/nginx-tls.err" "$ngx_u"
    ready "cutoverd (TLS)" "$cuts_pid" "$dir/cutoverd-tls.log" "$cut_s" tls
    ready "cutoverd (TLS)" "$cuts_pid" "$dir/cutoverd-tls.log" "$cut_u"
    ready "cutoverd (TLS, workers 2)" "$cut2s_pid" "$dir/cutoverd-w2-tls.log" "$cut2_s" tls
    ready "HAProxy (TLS, nbthread 2)" "$hap2s_pid" "$dir/haproxy-t2-tls.log" "$hap2_s" tls
    grep -q 'ready: .* 2 worker(s)' "$dir/cutoverd-w2-tls.log" || {
        tail -20 "$dir/cutoverd-w2-tls.log" >&2
        die "cutoverd (TLS, workers 2) does not report 2 workers"
    }
    for p in $hap_s $ngx_s $cut_s $hap2_s $cut2_s; do
        "$dir/tlsload" -p /64k -b 65536 probe "$p" >/dev/null || die "port $p: GET /64k over TLS failed"
        "$dir/tlsload" -p /1m -b 1048576 probe "$p" >/dev/null || die "port $p: GET /1m over TLS failed"
    done
    for p in $hap_u $ngx_u $cut_u; do
        probe "port $p" "$p" /64k 65536
        probe "port $p" "$p" /1m 1048576
    done
    tls_neg() { # WHAT ENV OPTS...: what each TLS listener negotiates with tlsload OPTS
        # (ENV: an OPENSSL_CONF=... for it, or empty); all must agree; sets $neg
        n_what=$1 n_env=$2
        shift 2
        neg=""
        for p in $hap_s $ngx_s $cut_s $hap2_s $cut2_s; do
            n_out=$(env ${n_env:+"$n_env"} "$dir/tlsload" "$@" probe "$p" 2>"$dir/probe.err") || {
                cat "$dir/probe.err" >&2
                die "TLS probe ($n_what) on port $p failed"
            }
            n_out=${n_out#tls }
            n_out=${n_out% resumed=*}
            if [ -z "$neg" ]; then
                neg=$n_out n_first=$p
            elif [ "$n_out" != "$neg" ]; then
                die "TLS ($n_what): port $p negotiates \"$n_out\", port $n_first \"$neg\": not the same choice"
            fi
        done
    }
    # wrk sends the URL's host, 127.0.0.1, as SNI: no certificate has that name, so
    # each proxy serves its default (the first, ECDSA)
    tls_neg "as wrk" "" -s 127.0.0.1 -k ecdsa
    neg13=$neg
    tls_neg "as wrk with TLS 1.2" "OPENSSL_CONF=$tdir/client12.cnf" -s 127.0.0.1 -k ecdsa
    neg12=$neg
    [ "${neg12%% *}" = TLSv1.2 ] || die "TLS 1.2 client: negotiated \"$neg12\" (OPENSSL_CONF not read?)"
    tls_neg ECDSA "" -k ecdsa
    negec=$neg
    tls_neg RSA "" -k rsa
    negrsa=$neg
    # what the proxies negotiate with the TLS backends (the backends answer it)
    negup=""
    for p in $hap_u $ngx_u $cut_u; do
        n_out=$(curl -sf "http://127.0.0.1:$p/bench-tls") || die "port $p: GET /bench-tls failed"
        if [ -z "$negup" ]; then
            negup=$n_out n_first=$p
        elif [ "$n_out" != "$negup" ]; then
            die "TLS to the backends: port $p negotiates \"$n_out\", port $n_first \"$negup\": not the same choice"
        fi
    done
fi

be_procs=$(procs_of "$be_pid")
if [ "$besched" = batch ]; then
    command -v chrt >/dev/null || die "BENCH_BE_SCHED=batch needs chrt (util-linux)"
    for p in $be_procs ${bet_pid:+$(procs_of "$bet_pid")}; do
        chrt -b -p 0 "$p" >/dev/null || die "chrt -b -p 0 $p failed"
    done
fi
ngx_procs=$(procs_of "$ngx_pid")
[ "$tls" = 0 ] || ngxs_procs=$(procs_of "$ngxs_pid")
tls_case() { # CASE: true for the TLS cases, which the TLS processes serve
    case $1 in tka | tka12 | tfull | tfullrsa | tres | t1m | tup | tidle) return 0 ;; esac
    return 1
}
target_name() {
    case $1 in
    direct) echo "direct (backend)" ;;
    haproxy) echo "HAProxy" ;;
    nginx) echo "NGINX" ;;
    cutoverd) echo "cutoverd" ;;
    cutoverd-w2) echo "cutoverd, workers 2" ;;
    haproxy-t2) echo "HAProxy, nbthread 2" ;;
    cutoverd-base) echo "cutoverd, base" ;;
    cutoverd-sh0) echo "cutoverd, no shadow" ;;
    cutoverd-sh10) echo "cutoverd, shadow 10 %" ;;
    cutoverd-sh100) echo "cutoverd, shadow 100 %" ;;
    esac
}
target_procs() { # TARGET [CASE]
    if tls_case "${2:-}"; then
        case $1 in
        haproxy) echo "$haps_pid" ;;
        nginx) echo "$ngxs_procs" ;;
        cutoverd) echo "$cuts_pid" ;;
        cutoverd-w2) echo "$cut2s_pid" ;;
        haproxy-t2) echo "$hap2s_pid" ;;
        esac
        return
    fi
    case $1 in
    direct) echo "$be_procs" ;;
    haproxy) echo "$hap_pid" ;;
    nginx) echo "$ngx_procs" ;;
    cutoverd) echo "$cut_pid" ;;
    cutoverd-w2) echo "$cut2_pid" ;; # /proc/PID/stat sums all its threads
    haproxy-t2) echo "$hap2_pid" ;;
    cutoverd-base) echo "$cutb_pid" ;;
    cutoverd-sh0) echo "$cut_sh0_pid" ;;
    cutoverd-sh10) echo "$cut_sh10_pid" ;;
    cutoverd-sh100) echo "$cut_sh100_pid" ;;
    esac
}
target_port() { # TARGET CASE
    if tls_case "$2"; then
        case $1.$2 in
        haproxy.tup) echo "$hap_u" ;;
        nginx.tup) echo "$ngx_u" ;;
        cutoverd.tup) echo "$cut_u" ;;
        haproxy.*) echo "$hap_s" ;;
        nginx.*) echo "$ngx_s" ;;
        cutoverd.*) echo "$cut_s" ;;
        cutoverd-w2.*) echo "$cut2_s" ;;
        haproxy-t2.*) echo "$hap2_s" ;;
        esac
        return
    fi
    case $1.$2 in
    direct.*) echo "$be_l" ;;
    haproxy.tcp) echo "$hap_t" ;;
    haproxy.*) echo "$hap" ;;
    nginx.tcp) echo "$ngx_t" ;;
    nginx.*) echo "$ngx" ;;
    cutoverd.tcp) echo "$cut_t" ;;
    cutoverd.*) echo "$cut" ;;
    cutoverd-w2.*) echo "$cut2" ;;
    haproxy-t2.*) echo "$hap2" ;;
    cutoverd-base.tcp) echo "$cutb_t" ;;
    cutoverd-base.*) echo "$cutb" ;;
    cutoverd-sh0.*) echo "$cut_sh0" ;;
    cutoverd-sh10.*) echo "$cut_sh10" ;;
    cutoverd-sh100.*) echo "$cut_sh100" ;;
    esac
}
alive_all() {
    for p in $pids; do
        kill -0 "$p" 2>/dev/null || die "a proxy or backend (pid $p) has exited; logs: $(tail -5 "$dir"/*.log "$dir"/*.err 2>/dev/null)"
    done
}
csw() { # PIDS...: "voluntary preempted" context switches of all their threads, summed
    # shellcheck disable=SC2016
    for p in "$@"; do ls /proc/"$p"/task/*/status; done |
        xargs awk '/^voluntary_ctxt_switches:/ { v += $2 } /^nonvoluntary_ctxt_switches:/ { n += $2 }
            END { print v, n }'
}
ticks() { # PIDS...: utime+stime summed, in clock ticks
    # shellcheck disable=SC2016
    for p in "$@"; do echo "/proc/$p/stat"; done |
        xargs awk '{ sub(/^.*\) /, ""); t += $12 + $13 } END { print t }'
}
mem() { # PIDS...: "RSS PSS" in KB, summed
    # shellcheck disable=SC2016
    for p in "$@"; do echo "/proc/$p/smaps_rollup"; done |
        xargs awk '/^Rss:/ { r += $2 } /^Pss:/ { s += $2 } END { print r, s }'
}
hz=$(getconf CLK_TCK)
res=$dir/results
: >"$res"

# ---- memory per idle keep-alive connection (fresh processes first) -------------
idle_row() { # TARGET CASE TAG: RSS and PSS of TARGET before and after $idle_n idle
    # connections to its port for CASE (idle, or tidle over TLS); a TAG line in the results
    # shellcheck disable=SC2046
    before=$(mem $(target_procs "$1" "$2"))
    if tls_case "$2"; then
        taskset -c "$wcpu" "$dir/tlsload" idle "$(target_port "$1" "$2")" "$idle_n" >"$dir/idle.out" 2>"$dir/idle.err" &
    else
        taskset -c "$wcpu" "$dir/idle" "$(target_port "$1" "$2")" "$idle_n" >"$dir/idle.out" 2>"$dir/idle.err" &
    fi
    hp=$!
    helpers="$hp"
    i=0
    while ! grep -q ready "$dir/idle.out"; do
        kill -0 "$hp" 2>/dev/null || {
            cat "$dir/idle.err" >&2
            die "$(target_name "$1"): $idle_n idle connections failed"
        }
        i=$((i + 1))
        [ $i -lt 600 ] || die "$(target_name "$1"): $idle_n idle connections not open within 60 s"
        sleep 0.1
    done
    sleep 1
    # shellcheck disable=SC2046
    after=$(mem $(target_procs "$1" "$2"))
    kill "$hp"
    wait "$hp" 2>/dev/null || true
    helpers=""
    echo "$3 $1 1 $before $after" >>"$res"
    alive_all
    sleep 1
}
say "idle keep-alive connections: $idle_n per target"
for tgt in direct haproxy nginx cutoverd $ab cutoverd-w2; do
    idle_row "$tgt" idle mem
done
if [ "$tls" = 1 ]; then
    say "idle TLS keep-alive connections: $idle_n per target"
    for tgt in haproxy nginx cutoverd; do
        idle_row "$tgt" tidle tmem
    done
fi

# ---- throughput, latency, CPU: interleaved rounds --------------------------------
# crate: a new connection per request at a fixed rate (rateload close: open
# loop), every target at the same load, so that p50 and p99 compare at equal
# work rather than at each one's own saturation
cases="ka close crate 64k 1m tcp"
# TLS: keep-alive over TLS 1.3 and over TLS 1.2 with one cipher (wrk); a full
# handshake per connection, ECDSA and RSA, and a resumed one (tlsload); 1 MiB
# responses over TLS (wrk); plain HTTP in, TLS to the backends (wrk)
[ "$tls" = 0 ] || cases="$cases tka tka12 tfull tfullrsa tres t1m tup"
# shadow traffic: keep-alive small responses under wrk (shka) and at a fixed rate (shrate)
[ "$shadow" = 0 ] || cases="$cases shka shrate"
shrate="" # shrate's requests/s: BENCH_SHADOW_PCT % of shka's no-shadow req/s in round 1
crate=""  # crate's requests/s: BENCH_CRATE_PCT % of the slowest proxy's close req/s in round 1
case_path() {
    case $1 in
    ka | close | crate | tka | tka12 | tfull | tfullrsa | tres | tup | shka | shrate) echo /small ;;
    64k) echo /64k ;;
    *) echo /1m ;;
    esac
}
case_conns() {
    case $1 in
    ka | close | crate | tka | tka12 | tfull | tfullrsa | tres | tup | shka | shrate) echo "$conns" ;;
    *) echo "$bigconns" ;;
    esac
}
case_targets() {
    case $1 in
    tfull | tfullrsa) echo haproxy nginx cutoverd cutoverd-w2 haproxy-t2 ;;
    tka | tka12 | tres | t1m | tup) echo haproxy nginx cutoverd ;;
    shka | shrate) echo cutoverd-sh0 cutoverd-sh10 cutoverd-sh100 ;;
    tcp) if [ $stream = yes ]; then echo haproxy nginx cutoverd $ab; else echo haproxy cutoverd $ab; fi ;;
    ka | close) echo direct haproxy nginx cutoverd $ab cutoverd-w2 haproxy-t2 ;;
    crate) echo direct haproxy nginx cutoverd $ab ;;
    *) echo direct haproxy nginx cutoverd $ab cutoverd-w2 ;;
    esac
}
wrkrun() { # OUT CASE TARGET SECS
    w_port=$(target_port "$3" "$2")
    case $2 in
    tfull | tfullrsa | tres) # a new TLS connection per request: tlsload, not wrk
        case $2 in
        tfull) w_opts="-k ecdsa" ;;
        tfullrsa) w_opts="-k rsa" ;;
        *) w_opts="-k ecdsa -r" ;;
        esac
        # shellcheck disable=SC2086
        timeout $(($4 + 60)) taskset -c "$wcpu" "$dir/tlsload" $w_opts load "$w_port" \
            "$(case_conns "$2")" "$4" >"$1" 2>&1 || die "tlsload failed: $(cat "$1")"
        return
        ;;
    shrate) # a fixed rate (open loop): rateload, not wrk
        timeout $(($4 + 60)) taskset -c "$wcpu" "$dir/rateload" "$w_port" /small "$shrate" \
            "$(case_conns "$2")" "$4" >"$1" 2>&1 || die "rateload failed: $(cat "$1")"
        return
        ;;
    crate) # a new connection per request at a fixed rate (open loop)
        timeout $(($4 + 60)) taskset -c "$wcpu" "$dir/rateload" "$w_port" /small "$crate" \
            "$(case_conns "$2")" "$4" close >"$1" 2>&1 || die "rateload failed: $(cat "$1")"
        return
        ;;
    esac
    w_scheme=http w_env=""
    case $2 in
    tka | t1m) w_scheme=https ;;
    tka12) w_scheme=https w_env=OPENSSL_CONF=$tdir/client12.cnf ;;
    esac
    if [ "$2" = close ]; then
        set -- "$1" "$2" "$3" "$4" -H "Connection: close"
    fi
    w_out=$1
    w_conns=$(case_conns "$2")
    w_path=$(case_path "$2")
    w_secs=$4
    shift 4
    timeout $((w_secs + 60)) env ${w_env:+"$w_env"} taskset -c "$wcpu" wrk -t1 -c"$w_conns" -d"${w_secs}s" --latency \
        -s tests/bench/report.lua "$@" "$w_scheme://127.0.0.1:$w_port$w_path" >"$w_out" 2>&1 ||
        die "wrk failed: $(cat "$w_out")"
}
accepts() { # connections the TLS backends have accepted so far (this query's included)
    curl -sf "http://127.0.0.1:$bt_st/" | awk 'NR == 3 { print $1 }'
}
measure() { # CASE TARGET ROUND
    m_procs=$(target_procs "$2" "$1")
    [ "$1" != tup ] || a0=$(accepts)
    # shellcheck disable=SC2086
    t0=$(ticks $m_procs)
    # shellcheck disable=SC2086
    s0=$(csw $m_procs)
    wrkrun "$dir/wrk.out" "$1" "$2" "$secs"
    # shellcheck disable=SC2086
    t1=$(ticks $m_procs)
    # shellcheck disable=SC2086
    s1=$(csw $m_procs)
    alive_all
    # TLS to the backends: the connections the proxy opened to them during the run
    [ "$1" != tup ] || echo "up $1 $2 $3 $(($(accepts) - a0 - 1))" >>"$res"
    # tlsload: handshakes and resumed ones; "full" must be full
    if tls_line=$(grep '^TLS ' "$dir/wrk.out"); then
        # shellcheck disable=SC2046
        set -- "$1" "$2" "$3" $(echo "$tls_line" | sed 's/^TLS //; s/[a-z0-9_]*=//g')
        [ "$1" = tres ] || [ "$5" -eq 0 ] || die "$(target_name "$2"), case $1: $5 handshakes resumed"
        echo "tls $1 $2 $3 $4 $5" >>"$res"
        set -- "$1" "$2" "$3"
    fi
    line=$(grep '^BENCH ' "$dir/wrk.out") || die "$(target_name "$2"), $1: no result from wrk: $(cat "$dir/wrk.out")"
    # shellcheck disable=SC2046
    set -- "$1" "$2" "$3" $(echo "$line" | sed 's/^BENCH //; s/[a-z0-9_]*=//g')
    # $4 requests $5 bytes $6 duration_us $7 p50_us $8 p99_us $9.. errors
    errs=$(($9 + ${10} + ${11} + ${12} + ${13}))
    if [ "$errs" -ne 0 ] || [ "$4" -eq 0 ]; then
        cat "$dir/wrk.out" >&2
        die "$(target_name "$2"), case $1, round $3: $4 requests, errors: connect $9 read ${10} write ${11} non-2xx ${12} timeout ${13}"
    fi
    echo "run $1 $2 $3 $4 $5 $6 $7 $8 $((t1 - t0))" >>"$res"
    # context switches of the target during the run: waits (voluntary) and
    # preemptions (nonvoluntary: another task on its CPU was given it)
    # shellcheck disable=SC2086
    echo "csw $1 $2 $3 $4 $s0 $s1" >>"$res"
    awk -v c="$1" -v t="$(target_name "$2")" -v q="$4" -v b="$5" -v d="$6" -v k="$((t1 - t0))" -v hz="$hz" 'BEGIN {
        printf "bench:   %-6s %-19s %9.0f req/s %8.1f MiB/s  CPU %.1f us/req\n", c, t, q / d * 1e6,
            b / 1048576 / d * 1e6, k / hz * 1e6 / q }' >&2
}

say "warm-up: 1 s per target"
sh_tgts=""
[ "$shadow" = 0 ] || sh_tgts="cutoverd-sh0 cutoverd-sh10 cutoverd-sh100"
for tgt in direct haproxy nginx cutoverd $ab cutoverd-w2 haproxy-t2 $sh_tgts; do
    wrkrun "$dir/wrk.out" ka "$tgt" 1
    grep -q '^BENCH .* status=0 ' "$dir/wrk.out" || die "$(target_name "$tgt"): errors in the warm-up: $(cat "$dir/wrk.out")"
done
if [ "$tls" = 1 ]; then
    for kase in tka tfull tup; do
        for tgt in $(case_targets $kase); do
            wrkrun "$dir/wrk.out" "$kase" "$tgt" 1
            grep -q '^BENCH .* status=0 ' "$dir/wrk.out" ||
                die "$(target_name "$tgt"), $kase: errors in the warm-up: $(cat "$dir/wrk.out")"
        done
    done
fi

# (sh has no local variables: the loops' names are used nowhere else)
round=1
while [ $round -le "$rounds" ]; do
    say "round $round of $rounds ($secs s per run)"
    for kase in $cases; do
        tgts=$(case_targets "$kase")
        # cutoverd and cutoverd-base take turns going first
        [ $((round % 2)) = 1 ] || tgts=$(echo "$tgts" | sed 's/cutoverd cutoverd-base/cutoverd-base cutoverd/')
        if [ "$kase" = crate ] && [ -z "$crate" ]; then
            crate=$(awk -v pct="$crpct" '$1 == "run" && $2 == "close" &&
                ($3 == "haproxy" || $3 == "nginx" || $3 == "cutoverd") {
                r = $5 / ($7 / 1e6); if (min == "" || r < min) min = r }
                END { if (min != "") printf "%d\n", min * pct / 100 }' "$res")
            isnum "$crate" && [ "$crate" -ge 1 ] || die "no new-connection req/s for the fixed rate"
            say "new connections at a fixed rate: $crate req/s ($crpct % of the slowest proxy's req/s under wrk)"
        fi
        if [ "$kase" = shrate ] && [ -z "$shrate" ]; then
            shrate=$(awk -v pct="$shpct" '$1 == "run" && $2 == "shka" && $3 == "cutoverd-sh0" {
                printf "%d\n", $5 / ($7 / 1e6) * pct / 100; exit }' "$res")
            isnum "$shrate" && [ "$shrate" -ge 1 ] || die "no no-shadow req/s for the fixed rate"
            say "shadow rows: fixed rate $shrate req/s ($shpct % of the no-shadow req/s under wrk)"
        fi
        for tgt in $tgts; do
            measure "$kase" "$tgt" "$round"
        done
    done
    round=$((round + 1))
done

# what became of the copies (status shadow.results, summed over every run)
shcopies=""
ctl=$(dirname "$cutoverd")/cutoverctl
if [ "$shadow" = 1 ] && [ -x "$ctl" ]; then
    for c in sh10 sh100; do
        r=$("$ctl" -s "$dir/admin-$c.sock" --json status 2>/dev/null |
            grep -o '"results": *{[^}]*}' | head -1 | sed 's/"results": *//; s/[{}"]//g; s/:/ /g; s/,/, /g')
        shcopies="$shcopies${shcopies:+; }${c#sh} %: ${r:-?}"
    done
fi

# ---- optional profile of cutoverd ----------------------------------------------
# BENCH_PROFILE=1 profiles a keep-alive run of small responses; BENCH_PROFILE="ka 1m"
# names the cases (ka close 64k 1m tcp, and with TLS tka tka12 tfull tfullrsa tres t1m
# tup); a TLS case profiles HAProxy too, and adds each one's share per library
prof=${BENCH_PROFILE:-}
[ "$prof" != 1 ] || prof=ka
[ "$prof" != 0 ] || prof=""
if [ -n "$prof" ] && ! command -v perf >/dev/null 2>&1; then
    say "profile: perf is not installed; skipped"
    prof=""
fi
for kase in $prof; do
    case " $cases " in *" $kase "*) ;; *) die "BENCH_PROFILE: no case $kase" ;; esac
    ptgts=cutoverd
    ! tls_case "$kase" || ptgts="cutoverd haproxy"
    for ptgt in $ptgts; do
        say "profile: perf record on $(target_name "$ptgt") during a $secs s run ($kase)"
        perf record -q -e cpu-clock -g -p "$(target_procs "$ptgt" "$kase")" -o "$dir/perf.data" >"$dir/perf.log" 2>&1 &
        perf_pid=$!
        helpers="$perf_pid"
        sleep 0.5
        wrkrun "$dir/wrk.out" "$kase" "$ptgt" "$secs"
        kill -INT "$perf_pid"
        wait "$perf_pid" 2>/dev/null || true
        helpers=""
        {
            echo
            echo "$(target_name "$ptgt") profile, case $kase (perf record -e cpu-clock -g; perf report --no-children, flat):"
            echo
            echo '```'
            perf report -i "$dir/perf.data" --stdio --no-children -g none --percent-limit 0.7 2>/dev/null |
                grep -v '^#' | grep -v '^$' | head -40
            echo '```'
            if tls_case "$kase"; then
                echo
                echo "$(target_name "$ptgt"), case $kase, share of the samples per library (perf report --sort dso):"
                echo
                echo '```'
                perf report -i "$dir/perf.data" --stdio --no-children -g none --sort dso --percent-limit 0.5 2>/dev/null |
                    grep -v '^#' | grep -v '^$' | sed 's/[[:space:]]*$//' | head -12
                echo '```'
            fi
        } >>"$dir/perf.txt"
    done
    # system calls per request (or per MiB), HAProxy beside cutoverd: one more short run each
    for tgt in haproxy cutoverd; do
        perf trace -s -p "$(target_procs "$tgt" "$kase")" -o "$dir/trace.$tgt" >/dev/null 2>&1 &
        perf_pid=$!
        helpers="$perf_pid"
        sleep 0.5
        wrkrun "$dir/wrk.out" "$kase" "$tgt" 2
        kill -INT "$perf_pid"
        wait "$perf_pid" 2>/dev/null || true
        helpers=""
        sed -n 's/^BENCH requests=\([0-9]*\) bytes=\([0-9]*\) .*/\1 \2/p' "$dir/wrk.out" >"$dir/trace.$tgt.n"
    done
    awk -v kase="$kase" '
        FILENAME ~ /haproxy\.n$/ { hq = $1; hb = $2; next }
        FILENAME ~ /cutoverd\.n$/ { cq = $1; cb = $2; next }
        $1 ~ /^[a-z_0-9]+$/ && $2 ~ /^[0-9]+$/ && $4 ~ /^[0-9.]+$/ {
            if (FILENAME ~ /haproxy$/) h[$1] += $2; else x[$1] += $2
            all[$1] = 1
        }
        END {
            big = (kase == "64k" || kase == "1m" || kase == "tcp" || kase == "t1m") ? 1 : 0
            unit = big ? "MiB" : "request"
            dh = big ? hb / 1048576 : hq; dx = big ? cb / 1048576 : cq
            min = big ? 0.5 : 0.05
            if (dh <= 0 || dx <= 0) exit
            print ""
            print "System calls per " unit ", case " kase " (perf trace -s, a separate 2 s run each; tracing slows the" \
                " proxy, so only the counts per " unit " are meant, and the rare ones are left out):"
            print ""
            print "| system call | HAProxy | cutoverd |"
            print "|:--|--:|--:|"
            for (k in all) { th += h[k] / dh; tx += x[k] / dx }
            for (k in all)
                if (h[k] / dh >= min || x[k] / dx >= min)
                    printf "| %s | %.2f | %.2f |\n", k, h[k] / dh, x[k] / dx | "sort -t\"|\" -k4 -rn"
            close("sort -t\"|\" -k4 -rn")
            printf "| all | %.2f | %.2f |\n", th, tx
        }' "$dir/trace.haproxy.n" "$dir/trace.haproxy" "$dir/trace.cutoverd.n" "$dir/trace.cutoverd" >>"$dir/perf.txt"
done

# ---- report ---------------------------------------------------------------
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
rev=$(git -C "$(dirname "$cutoverd")" rev-parse --short HEAD 2>/dev/null || echo unknown)
base_note="" w2_table="last table" last_table="last table"
[ "$tls" = 0 ] || w2_table="last table before TLS" last_table="last table before TLS"
if [ -n "$ab" ]; then
    base_note=", cutoverd $base_rev in the rows \"cutoverd, base\" (\`workers\`: 1, same config on its own ports)"
    w2_table="floor table"
fi
{
    echo "### $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "- machine: $(nproc) CPUs, ${cpu_model:-unknown CPU}, Linux $(uname -r); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- cutoverd $rev (\`workers\`: 1; \`workers\`: 2 in the rows \"cutoverd, workers 2\", same binary, CPUs $w2cpus; HAProxy \`nbthread 2\` beside it)$base_note, $(haproxy -v | head -1 | cut -d' ' -f1-3), $(nginx -v 2>&1 | sed 's/^nginx version: //'), wrk $(wrk -v 2>&1 | head -1 | cut -d' ' -f2)"
    echo "- $rounds interleaved round(s) × $secs s per run; proxies and backends on CPU $cpu, wrk (\`-t1\`) on CPU $wcpu; figures are medians (min–max over the rounds)"
    echo "- CPU: the proxy's own utime+stime per request or per MiB (NGINX: master + worker); the direct row counts the backend NGINX"
    [ "$besched" = other ] || echo "- backends: every backend NGINX process runs as SCHED_BATCH (\`BENCH_BE_SCHED=batch\`): its wakeups never preempt the proxy that woke it; the proxies run as usual (SCHED_OTHER)"
    [ -z "$crate" ] || echo "- new connection, open loop: tests/bench/rateload.c, $crate req/s ($crpct % of the slowest proxy's req/s under wrk in round 1), each request on a connection of its own (at most $conns open), its latency from its intended send time, the connect included"
    echo "- context switches: voluntary (the process waited) and preempted (its CPU given to another task, mostly the backend it woke), all its threads, from /proc/PID/task/*/status"
    echo "- × HAProxy, × direct: ratios of medians (throughput: higher is better; CPU: lower is better); the TCP table's × direct is against direct 1 MiB over HTTP"
    echo "- workers 2 vs 1 ($w2_table): median CPU per request of \"cutoverd, workers 2\" against cutoverd's, met when at most ×1.10"
    [ -z "$ab" ] || echo "- cutoverd vs base ($last_table): median CPU per request or per MiB of cutoverd $rev against cutoverd $base_rev, the two taking turns going first in the rounds; no regression when at most ×1.03"
    [ $stream = yes ] || echo "- NGINX has no stream module here: no NGINX in the TCP row"
    echo
} >"$dir/report.md"
awk -v conns="$conns" -v bigconns="$bigconns" -v idle="$idle_n" -v hz="$hz" -v stream="$stream" \
    -v rev="$rev" -v base_rev="$base_rev" -v tls="$tls" -v w2cpus="$w2cpus" -v suites="$tls_suites" \
    -v groups="$tls_groups" -v tls12="$tls12_cipher" -v neg13="${neg13:-}" -v neg12="${neg12:-}" \
    -v negec="${negec:-}" -v negrsa="${negrsa:-}" -v negup="${negup:-}" \
    -v shrate="$shrate" -v shpct="$shpct" -v shcopies="$shcopies" -v crate="$crate" -v crpct="$crpct" '
function sortv(a, n,    i, j, x) {
    for (i = 2; i <= n; i++) {
        x = a[i]
        for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]
        a[j + 1] = x
    }
}
# the median, min and max of field f of case c, target t
function stat(c, t, f,    i, n, v) {
    n = cnt[c, t]
    if (n == 0) { med = ""; return }
    for (i = 1; i <= n; i++) v[i] = val[c, t, f, i]
    sortv(v, n)
    med = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
    lo = v[1]; hi = v[n]
}
function fmt(x, d) { return sprintf("%." d "f", x) }
function cell(c, t, f, d) {
    stat(c, t, f)
    if (med == "") return "-"
    return fmt(med, d) " (" fmt(lo, d) "–" fmt(hi, d) ")"
}
function ratio(c, t, ref, f,    a) {
    stat(c, t, f); a = med
    stat(c, ref, f)
    if (a == "" || med == "" || med == 0) return "-"
    return sprintf("%.2f", a / med)
}
function name(t) {
    return t == "direct" ? "direct (backend)" : t == "haproxy" ? "HAProxy" : t == "nginx" ? "NGINX" : \
        t == "cutoverd-w2" ? "cutoverd, workers 2" : t == "haproxy-t2" ? "HAProxy, nbthread 2" : \
        t == "cutoverd-base" ? "cutoverd, base" : "cutoverd"
}
$1 == "run" {
    c = $2; t = $3; i = ++cnt[c, t]
    d = $7 / 1e6; cpu_us = $10 / hz * 1e6
    val[c, t, "rps", i] = $5 / d
    val[c, t, "mibs", i] = $6 / 1048576 / d
    val[c, t, "p50", i] = $8 / 1000
    val[c, t, "p99", i] = $9 / 1000
    val[c, t, "cpureq", i] = cpu_us / $5
    val[c, t, "cpumib", i] = cpu_us / ($6 / 1048576)
}
# context switches during a run, per request: waits and preemptions
# (csw CASE TARGET ROUND REQUESTS VOL0 INVOL0 VOL1 INVOL1)
$1 == "csw" {
    c = $2; t = $3; i = ++ccnt[c, t]
    val[c, t, "vol", i] = ($8 - $6) / $5
    val[c, t, "invol", i] = ($9 - $7) / $5
}
$1 == "mem" {
    t = $2
    rss[t] = ($6 - $4) / idle; pss[t] = ($7 - $5) / idle
    rb[t] = $4; ra[t] = $6
}
function table(c, title, tp, tu, cf, cu, td,    k, t) {
    print "| " title " | " tu " | × HAProxy | × direct | p50 ms | p99 ms | CPU " cu " | × HAProxy | × direct |"
    print "|:--|--:|--:|--:|--:|--:|--:|--:|--:|"
    for (k = 1; k <= nT; k++) {
        t = T[k]
        if (cnt[c, t] == 0) continue
        # the TCP row has no direct target of its own: direct is the 1 MiB one over HTTP
        xd_tp = (c == "tcp") ? xratio(c, t, tp) : ratio(c, t, "direct", tp)
        xd_cf = (c == "tcp") ? xratio(c, t, cf) : ratio(c, t, "direct", cf)
        print "| " name(t) " | " cell(c, t, tp, td) " | " ratio(c, t, "haproxy", tp) " | " xd_tp \
            " | " cell(c, t, "p50", 2) " | " cell(c, t, "p99", 2) " | " cell(c, t, cf, 1) \
            " | " ratio(c, t, "haproxy", cf) " | " xd_cf " |"
    }
    print ""
}
function xratio(c, t, f,    a) {
    stat(c, t, f); a = med
    stat("1m", "direct", f)
    if (a == "" || med == "" || med == 0) return "-"
    return sprintf("%.2f", a / med)
}
# ---- TLS (BENCH_TLS=1) ----
$1 == "run" { reqsum[$2, $3] += $5 }
$1 == "tls" { hs[$2, $3] += $5; rsm[$2, $3] += $6 }
$1 == "up" { upn[$2, $3] += $5 }
$1 == "tmem" {
    t = $2
    trss[t] = ($6 - $4) / idle; tpss[t] = ($7 - $5) / idle
    trb[t] = $4; tra[t] = $6
}
# one TLS table: throughput, p50/p99, CPU per unit, both against HAProxy; kind "hs" adds the
# TLS part of a connection (this CPU less the plain new-connection row of the same target) and
# the handshakes resumed, kind "up" the backend connections opened per 1000 requests
function ttable(c, title, tp, tu, cf, cu, kind,    k, t, extra, a) {
    extra = kind == "hs" ? " TLS part µs/conn. | resumed |" : kind == "up" ? " new TLS conn. to the backends per 1000 req. |" : ""
    print "| " title " | " tu " | × HAProxy | p50 ms | p99 ms | CPU " cu " | × HAProxy |" extra
    print "|:--|--:|--:|--:|--:|--:|--:|" (kind == "hs" ? "--:|--:|" : kind == "up" ? "--:|" : "")
    for (k = 1; k <= nT; k++) {
        t = T[k]
        if (cnt[c, t] == 0) continue
        extra = ""
        if (kind == "hs") {
            stat(c, t, cf); a = med
            stat("close", t, "cpureq")
            extra = " " (med == "" ? "-" : fmt(a - med, 1)) " | " rsm[c, t] " of " hs[c, t] " |"
        } else if (kind == "up")
            extra = " " (reqsum[c, t] > 0 ? sprintf("%.2f", upn[c, t] * 1000 / reqsum[c, t]) : "-") " |"
        print "| " name(t) " | " cell(c, t, tp, 0) " | " ratio(c, t, "haproxy", tp) \
            " | " cell(c, t, "p50", 2) " | " cell(c, t, "p99", 2) " | " cell(c, t, cf, 1) \
            " | " ratio(c, t, "haproxy", cf) " |" extra
    }
    print ""
}
# cutoverd (or cutoverd-w2 against haproxy-t2) against the floor, and the aim of the issue:
# at most <aim> times the CPU of HAProxy (0: no aim, -1: at most that of NGINX)
function tverdict(label, c, f, d, aim, tc, th,    h, n, x, r, am) {
    stat(c, th, f); h = med
    stat(c, "nginx", f); n = (th == "haproxy") ? med : ""
    stat(c, tc, f); x = med
    if (h == "" || x == "") return
    r = h > 0 ? x / h : 0
    am = "-"
    if (aim > 0) am = "≤ " aim "× HAProxy: " (r <= aim ? "met" : "missed") " (×" sprintf("%.3f", r) ")"
    if (aim < 0 && n != "") am = "≤ NGINX: " (x <= n ? "met" : "missed") " (×" sprintf("%.2f", n > 0 ? x / n : 0) " NGINX)"
    print "| " label " | " fmt(h, d) " | " (n == "" ? "-" : fmt(n, d)) " | " fmt(x, d) " | " \
        (x <= h ? "met" : "missed (×" sprintf("%.2f", r) ")") " | " am " |"
}
function tls_tables(    k, t, h, n, x) {
    print "#### TLS"
    print ""
    print "- the same three proxies as processes of their own (HAProxy `nbthread 1`, NGINX one worker, cutoverd `workers`: 1), the same pinning; HAProxy `nbthread 2` and cutoverd `workers`: 2 on CPUs " w2cpus " in the full-handshake tables"
    print "- certificates: an ECDSA P-256 and an RSA 2048 server certificate for bench.test from one CA, made with openssl at the start, both on every TLS listener; everywhere TLS 1.2 and 1.3, Mozilla-intermediate TLS 1.2 ciphers, TLS 1.3 suites `" suites "`, groups `" groups "`, the client\047s order of preference, session tickets on"
    print "- negotiated, the same on every target (tests/bench/tlsload.c probing each): keep-alive and 1 MiB (wrk, SNI 127.0.0.1) " neg13 "; TLS 1.2 row (wrk with an OPENSSL_CONF that offers TLS 1.2 and " tls12 " only) " neg12 "; handshake rows " negec " and " negrsa " (an RSA-only client: RSA signature algorithms offered, nothing else changed); proxies to the TLS backends " negup
    print "- keep-alive, TLS 1.2, 1 MiB: wrk over https (" conns " and " bigconns " connections); the handshake rows: tests/bench/tlsload.c, " conns " connections at a time, each connect, handshake, one GET with `Connection: close`, close_notify, close (wrk\047s `Connection: close` over https resumes: it offers each connection the session of the one before); full: no session ever offered (resumed must be 0), resumed: each connection offers its predecessor\047s; p50/p99 there run from connect to the response\047s last byte, CPU is per connection, and the TLS part is that less the plain new-connection row of the same target"
    print "- TLS to the backends: plain keep-alive HTTP in (wrk, " conns " conn.), TLS out to two more NGINX backends (90/10) with an ECDSA certificate, verified against the bench CA and the name backend.bench by all three (HAProxy `ssl verify required ca-file … sni … verifyhost …`, `http-reuse always`; NGINX `proxy_ssl_verify on`, `proxy_ssl_name`, `keepalive 64`, session reuse; cutoverd a side `tls` with `ca` and `sni`, `pool.max_idle` 256); the new TLS connections to the backends are what their `stub_status` counted as accepted during the run"
    print "- idle: " idle " TLS keep-alive connections (tlsload: full handshake, one GET each, then idle), RSS and PSS of the proxy before and after"
    print ""
    ttable("tka", "TLS 1.3, small responses, keep-alive, " conns " conn.", "rps", "req/s", "cpureq", "µs/req", "")
    ttable("tka12", "TLS 1.2 " tls12 ", small, keep-alive, " conns " conn.", "rps", "req/s", "cpureq", "µs/req", "")
    ttable("tfull", "full handshake per connection, ECDSA P-256, " conns " conn.", "rps", "conn./s", "cpureq", "µs/conn.", "hs")
    ttable("tfullrsa", "full handshake per connection, RSA 2048, " conns " conn.", "rps", "conn./s", "cpureq", "µs/conn.", "hs")
    ttable("tres", "resumed handshake per connection (tickets), ECDSA, " conns " conn.", "rps", "conn./s", "cpureq", "µs/conn.", "hs")
    ttable("t1m", "TLS 1.3, 1 MiB responses, keep-alive, " bigconns " conn.", "mibs", "MiB/s", "cpumib", "µs/MiB", "")
    ttable("tup", "plain in, TLS to the backends, small, keep-alive, " conns " conn.", "rps", "req/s", "cpureq", "µs/req", "up")
    print "| " idle " idle TLS keep-alive connections | RSS KB before | RSS KB after | KB/conn (RSS) | KB/conn (PSS) | × HAProxy (RSS) | × NGINX (RSS) |"
    print "|:--|--:|--:|--:|--:|--:|--:|"
    for (k = 1; k <= nT; k++) {
        t = T[k]
        if (!(t in trss)) continue
        print "| " name(t) " | " trb[t] " | " tra[t] " | " sprintf("%.2f", trss[t]) " | " sprintf("%.2f", tpss[t]) \
            " | " (trss["haproxy"] > 0 ? sprintf("%.2f", trss[t] / trss["haproxy"]) : "-") \
            " | " (trss["nginx"] > 0 ? sprintf("%.2f", trss[t] / trss["nginx"]) : "-") " |"
    }
    print ""
    print "| cutoverd over TLS against the floor | HAProxy | NGINX | cutoverd | cutoverd <= HAProxy | aim (issue) |"
    print "|:--|--:|--:|--:|:--|:--|"
    tverdict("CPU µs per small keep-alive request, TLS 1.3", "tka", "cpureq", 1, 0.9, "cutoverd", "haproxy")
    tverdict("p99 ms, small keep-alive requests, TLS 1.3", "tka", "p99", 2, 0, "cutoverd", "haproxy")
    tverdict("CPU µs per small keep-alive request, TLS 1.2 " tls12, "tka12", "cpureq", 1, 0, "cutoverd", "haproxy")
    tverdict("CPU µs per connection, full handshake, ECDSA P-256", "tfull", "cpureq", 1, 0, "cutoverd", "haproxy")
    tverdict("CPU µs per connection, full handshake, RSA 2048", "tfullrsa", "cpureq", 1, 0, "cutoverd", "haproxy")
    tverdict("CPU µs per connection, resumed handshake", "tres", "cpureq", 1, 0, "cutoverd", "haproxy")
    tverdict("CPU µs per MiB, 1 MiB over TLS", "t1m", "cpumib", 0, 0.8, "cutoverd", "haproxy")
    tverdict("CPU µs per request, TLS to the backends", "tup", "cpureq", 1, 0, "cutoverd", "haproxy")
    h = trss["haproxy"]; n = trss["nginx"]; x = trss["cutoverd"]
    if (("cutoverd" in trss) && ("haproxy" in trss))
        print "| KB per idle TLS keep-alive connection (RSS) | " sprintf("%.2f", h) " | " sprintf("%.2f", n) " | " \
            sprintf("%.2f", x) " | " (x <= h ? "met" : "missed (×" sprintf("%.2f", h > 0 ? x / h : 0) ")") \
            " | ≤ NGINX: " (x <= n ? "met" : "missed") " (×" sprintf("%.2f", n > 0 ? x / n : 0) " NGINX) |"
    # two loops: cutoverd workers 2 against HAProxy nbthread 2 (the HAProxy column), each also
    # against its own single loop in the last column
    tverdict("CPU µs per connection, full handshake ECDSA, workers 2 vs nbthread 2", "tfull", "cpureq", 1, 0, "cutoverd-w2", "haproxy-t2")
    tverdict("CPU µs per connection, full handshake RSA, workers 2 vs nbthread 2", "tfullrsa", "cpureq", 1, 0, "cutoverd-w2", "haproxy-t2")
    print ""
    print "| a second loop, full handshakes | HAProxy nbthread 2 vs 1 | cutoverd workers 2 vs 1 |"
    print "|:--|--:|--:|"
    twoloops("ECDSA P-256, CPU µs per connection", "tfull")
    twoloops("RSA 2048, CPU µs per connection", "tfullrsa")
}
function twoloops(label, c,    a, b, h, hb) {
    stat(c, "cutoverd-w2", "cpureq"); a = med
    stat(c, "cutoverd", "cpureq"); b = med
    stat(c, "haproxy-t2", "cpureq"); h = med
    stat(c, "haproxy", "cpureq"); hb = med
    if (a == "" || b == "" || h == "" || hb == "") return
    print "| " label " | " fmt(h, 1) " vs " fmt(hb, 1) " (×" sprintf("%.2f", h / hb) ") | " \
        fmt(a, 1) " vs " fmt(b, 1) " (×" sprintf("%.2f", a / b) ") |"
}
END {
    T[1] = "direct"; T[2] = "haproxy"; T[3] = "nginx"; T[4] = "cutoverd"; T[5] = "cutoverd-base"
    T[6] = "cutoverd-w2"; T[7] = "haproxy-t2"; nT = 7
    table("ka", "small responses, keep-alive, " conns " conn.", "rps", "req/s", "cpureq", "µs/req", 0)
    table("close", "small, new connection per request, " conns " conn.", "rps", "req/s", "cpureq", "µs/req", 0)
    if (crate != "")
        table("crate", "small, new connection per request, open loop at " crate " req/s (" crpct " % of the slowest proxy under wrk), at most " conns " open", "rps", "req/s", "cpureq", "µs/req", 0)
    # the scheduler: how often each process waited (voluntary) and was
    # preempted (another task on its CPU, mostly the backend it woke) per request
    print "| context switches per request: voluntary / preempted | keep-alive | new connection | new connection, open loop |"
    print "|:--|--:|--:|--:|"
    for (k = 1; k <= nT; k++) {
        t = T[k]
        if (ccnt["ka", t] == 0) continue
        row = "| " name(t)
        split("ka close crate", cs, " ")
        for (j = 1; j <= 3; j++) {
            if (ccnt[cs[j], t] == 0) { row = row " | -"; continue }
            stat(cs[j], t, "vol"); a = med
            stat(cs[j], t, "invol")
            row = row " | " fmt(a, 3) " / " fmt(med, 3)
        }
        print row " |"
    }
    print ""
    table("64k", "64 KiB responses, keep-alive, " bigconns " conn.", "mibs", "MiB/s", "cpumib", "µs/MiB", 0)
    table("1m", "1 MiB responses, keep-alive, " bigconns " conn.", "mibs", "MiB/s", "cpumib", "µs/MiB", 0)
    table("tcp", "TCP mode, 1 MiB responses, " bigconns " conn.", "mibs", "MiB/s", "cpumib", "µs/MiB", 0)
    print "| " idle " idle keep-alive connections | RSS KB before | RSS KB after | KB/conn (RSS) | KB/conn (PSS) | × HAProxy (RSS) | × direct (RSS) |"
    print "|:--|--:|--:|--:|--:|--:|--:|"
    for (k = 1; k <= nT; k++) {
        t = T[k]
        if (!(t in rss)) continue
        print "| " name(t) " | " rb[t] " | " ra[t] " | " sprintf("%.2f", rss[t]) " | " sprintf("%.2f", pss[t]) \
            " | " (rss["haproxy"] > 0 ? sprintf("%.2f", rss[t] / rss["haproxy"]) : "-") \
            " | " (rss["direct"] > 0 ? sprintf("%.2f", rss[t] / rss["direct"]) : "-") " |"
    }
    print ""
    # cutoverd against the floor (HAProxy measured here) and the issue figures
    print "| cutoverd against the floor | HAProxy | NGINX | cutoverd | cutoverd <= HAProxy |"
    print "|:--|--:|--:|--:|:--|"
    verdict("CPU µs per small keep-alive request", "ka", "cpureq", 1)
    verdict("CPU µs per request, new connection each", "close", "cpureq", 1)
    verdict("CPU µs per MiB, 1 MiB over HTTP", "1m", "cpumib", 0)
    verdict("CPU µs per MiB, TCP mode", "tcp", "cpumib", 0)
    h = rss["haproxy"]; n = rss["nginx"]; x = rss["cutoverd"]
    print "| KB per idle keep-alive connection (RSS) | " sprintf("%.2f", h) " | " sprintf("%.2f", n) " | " \
        sprintf("%.2f", x) " | " (x <= h ? "met" : "missed (×" sprintf("%.2f", h > 0 ? x / h : 0) ")") " |"
    # the target of the issue for the worker threads: CPU per request with workers 2 within 10%
    # of workers 1; the cutoverd cell gives workers 2 vs workers 1 and their ratio, the HAProxy
    # cell nbthread 2 vs 1 on the same CPUs
    scaling("CPU µs per small keep-alive request, workers 2 vs 1", "ka", "cpureq", 1, 1.10)
    scaling("CPU µs per request, new connection each, workers 2 vs 1", "close", "cpureq", 1, 1.10)
    # CUTOVERD_BASE: this build against the build of another commit, case by case
    if (cnt["ka", "cutoverd-base"] > 0) {
        print ""
        print "| cutoverd " rev " vs " base_rev " | cutoverd | base | × base | p99 ms cutoverd | p99 ms base | no regression beyond 3 % |"
        print "|:--|--:|--:|--:|--:|--:|:--|"
        against("CPU µs per small keep-alive request", "ka", "cpureq", 1, 1.03)
        against("CPU µs per request, new connection each", "close", "cpureq", 1, 1.03)
        against("CPU µs per MiB, 64 KiB responses", "64k", "cpumib", 0, 1.03)
        against("CPU µs per MiB, 1 MiB over HTTP", "1m", "cpumib", 0, 1.03)
        against("CPU µs per MiB, TCP mode", "tcp", "cpumib", 0, 1.03)
    }
    if (cnt["shka", "cutoverd-sh0"] > 0) {
        print ""
        shadow_table()
    }
    if (tls == 1) {
        print ""
        tls_tables()
    }
}
# BENCH_SHADOW=1: shadowing none, 10 % and 100 % of GETs, closed loop (wrk) and open loop
# (rateload at shrate req/s), and the goals of the issue
function shadow_table(    k, t, lab, a, b, r, x0, x1, o0, o1) {
    print "#### Shadow traffic"
    print ""
    print "- cutoverd alone (`workers`: 1, the proxies\047 CPU), the service of the keep-alive row in three more processes: no `shadow` section, `shadow.percent` 10 and 100 (GETs; copies to the side that did not serve, the same NGINX; `max_inflight` 1024, `timeout_ms` 1000)"
    print "- closed loop: wrk, " conns " connections, saturating the proxy: throughput and CPU per client request (the copies\047 CPU included); open loop: tests/bench/rateload.c, " shrate " req/s over " conns " keep-alive connections (" shpct " % of the no-shadow req/s under wrk in round 1), each request\047s latency counted from its intended send time"
    if (shcopies != "") print "- copies, summed over every run (status `shadow.results`): " shcopies
    print ""
    print "| shadowing | closed loop req/s | CPU µs/req | × none | p50 ms | p99 ms | open loop p50 ms | p99 ms | p99 × none | CPU µs/req |"
    print "|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    for (k = 0; k < 3; k++) {
        t = k == 0 ? "cutoverd-sh0" : k == 1 ? "cutoverd-sh10" : "cutoverd-sh100"
        lab = k == 0 ? "none" : k == 1 ? "10 % of GETs" : "100 % of GETs"
        print "| " lab " | " cell("shka", t, "rps", 0) " | " cell("shka", t, "cpureq", 1) " | " \
            ratio("shka", t, "cutoverd-sh0", "cpureq") " | " cell("shka", t, "p50", 2) " | " \
            cell("shka", t, "p99", 2) " | " cell("shrate", t, "p50", 3) " | " cell("shrate", t, "p99", 3) \
            " | " ratio("shrate", t, "cutoverd-sh0", "p99") " | " cell("shrate", t, "cpureq", 1) " |"
    }
    print ""
    print "| shadow traffic against the issue | none | 100 % | verdict |"
    print "|:--|--:|--:|:--|"
    stat("shrate", "cutoverd-sh0", "p99"); a = med
    stat("shrate", "cutoverd-sh100", "p99"); b = med
    if (a != "" && b != "" && a > 0) {
        r = b / a
        print "| client p99 ms at " shrate " req/s, 100 % of GETs shadowed, ≤ 1.05× none | " fmt(a, 3) " | " \
            fmt(b, 3) " | " (r <= 1.05 ? "met" : "missed") " (×" sprintf("%.3f", r) ") |"
    }
    stat("shka", "cutoverd-sh0", "cpureq"); x0 = med
    stat("shka", "cutoverd-sh100", "cpureq"); x1 = med
    if (x0 != "" && x1 != "")
        print "| CPU µs of a copy (100 % less none, per request) ≤ a proxied request (none), closed loop | " \
            fmt(x0, 1) " | " fmt(x1 - x0, 1) " | " (x1 - x0 <= x0 ? "met" : "missed") " (×" sprintf("%.2f", (x1 - x0) / x0) ") |"
    stat("shrate", "cutoverd-sh0", "cpureq"); o0 = med
    stat("shrate", "cutoverd-sh100", "cpureq"); o1 = med
    if (o0 != "" && o1 != "")
        print "| the same at " shrate " req/s (open loop) | " fmt(o0, 1) " | " fmt(o1 - o0, 1) " | " \
            (o1 - o0 <= o0 ? "met" : "missed") " (×" sprintf("%.2f", (o1 - o0) / o0) ") |"
}
function against(label, c, f, d, limit,    a, b, r, pa, pb) {
    stat(c, "cutoverd", f); a = med
    stat(c, "cutoverd-base", f); b = med
    if (a == "" || b == "" || b == 0) return
    r = a / b
    stat(c, "cutoverd", "p99"); pa = med
    stat(c, "cutoverd-base", "p99"); pb = med
    print "| " label " | " cell(c, "cutoverd", f, d) " | " cell(c, "cutoverd-base", f, d) " | " sprintf("%.3f", r) \
        " | " fmt(pa, 2) " | " fmt(pb, 2) " | " (r <= limit ? "met" : "missed (×" sprintf("%.3f", r) ")") " |"
}
function scaling(label, c, f, d, limit,    a, b, r, h, hb, hr) {
    stat(c, "cutoverd-w2", f); a = med
    stat(c, "cutoverd", f); b = med
    if (a == "" || b == "" || b == 0) return
    r = a / b
    stat(c, "haproxy-t2", f); h = med
    stat(c, "haproxy", f); hb = med
    hr = (h == "" || hb == "" || hb == 0) ? "-" : fmt(h, d) " vs " fmt(hb, d) " (×" sprintf("%.2f", h / hb) ")"
    print "| " label " | " hr " | - | " fmt(a, d) " vs " fmt(b, d) " (×" sprintf("%.2f", r) ") | " \
        (r <= limit ? "met" : "missed (×" sprintf("%.2f", r) ")") " |"
}
function verdict(label, c, f, d,    h, n, x) {
    stat(c, "haproxy", f); h = med
    stat(c, "nginx", f); n = med
    stat(c, "cutoverd", f); x = med
    if (h == "" || x == "") return
    print "| " label " | " fmt(h, d) " | " (n == "" ? "-" : fmt(n, d)) " | " fmt(x, d) " | " \
        (x <= h ? "met" : "missed (×" sprintf("%.2f", x / h) ")") " |"
}
' "$res" >>"$dir/report.md"
[ ! -f "$dir/perf.txt" ] || cat "$dir/perf.txt" >>"$dir/report.md"
[ -z "${BENCH_OUT:-}" ] || cp "$dir/report.md" "$BENCH_OUT"
cat "$dir/report.md"
