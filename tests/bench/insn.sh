#!/bin/sh
# tests/bench/insn.sh DAEMON [DAEMON...]: instructions per request of each
# cutoverd binary, counted by valgrind's callgrind (repeatable whatever else
# the machine is doing, unlike CPU time), for small keep-alive requests and
# for requests on a new connection each, through one HTTP service (90/10)
# in front of two NGINX backends on loopback. The count covers the daemon
# only, from just before the load to just after it (startup excluded).
#
#   sh tests/bench/insn.sh build/cutoverd /path/to/other/cutoverd
#
# Environment: INSN_REQS=2000 (requests per case), INSN_PORT=20400 (base
# port; uses BASE+1..BASE+3). Needs valgrind, nginx and wrk (make bench
# installs the last two). Prints one markdown table on standard output.
set -eu

[ $# -ge 1 ] || { echo "usage: $0 DAEMON [DAEMON...]" >&2; exit 2; }
reqs=${INSN_REQS:-2000}
base=${INSN_PORT:-20400}
PATH=$PATH:/usr/sbin:/sbin
for t in valgrind callgrind_control nginx wrk; do
    command -v "$t" >/dev/null 2>&1 || { echo "insn: $t is needed" >&2; exit 1; }
done
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
mkdir -p "$dir/www" "$dir/tmp"
printf 'cutover bench ok' >"$dir/www/small"
chmod -R a+rX "$dir/www"
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
}
NGX
nginx -p "$dir" -e "$dir/nginx.err" -c "$dir/nginx.conf" >"$dir/nginx.log" 2>&1 &
pids="$pids $!"
cat >"$dir/cutover.json" <<CONF
{
  "workers": 1,
  "admin": { "socket": "$dir/admin.sock" },
  "state": { "file": "$dir/state.json" },
  "audit": { "file": "$dir/audit.jsonl" },
  "services": [{
    "name": "bench", "mode": "http", "listen": ["127.0.0.1:$px"],
    "legacy": { "servers": ["127.0.0.1:$be_l"] },
    "new": { "servers": ["127.0.0.1:$be_n"] },
    "weight": 10,
    "rollback": { "enabled": false },
    "timeouts": { "client_idle_ms": 120000 }
  }]
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
echo "| daemon | instructions per keep-alive request | per request on a new connection |"
echo "|---|--:|--:|"
# run LUA-ARGS: wrk until <reqs> requests are done (by a Lua counter), prints the count
cat >"$dir/stop.lua" <<'LUA'
local n, limit = 0, tonumber(os.getenv("INSN_REQS"))
function response(status, headers, body)
    n = n + 1
    if n >= limit then wrk.thread:stop() end
end
LUA
case_run() { # DAEMON CONNS CLOSE -> prints Ir per request
    rm -f "$dir"/callgrind.out.* "$dir/state.json" "$dir/audit.jsonl"
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$dir/callgrind.out.%p" \
        "$1" -c "$dir/cutover.json" >"$dir/daemon.log" 2>&1 &
    vp=$!
    pids="$pids $vp"
    i=0
    until grep -q 'ready' "$dir/daemon.log" 2>/dev/null; do
        i=$((i + 1)); [ $i -lt 600 ] || { tail "$dir/daemon.log" >&2; exit 1; }
        sleep 0.1
    done
    hdr=""
    [ "$3" = close ] && hdr="-H Connection:close"
    # warm up, then count
    INSN_REQS=200 wrk -t1 -c"$2" -d30s $hdr -s "$dir/stop.lua" "http://127.0.0.1:$px/small" >/dev/null
    callgrind_control -i on "$vp" >/dev/null
    callgrind_control -z "$vp" >/dev/null
    INSN_REQS=$reqs wrk -t1 -c"$2" -d60s $hdr -s "$dir/stop.lua" "http://127.0.0.1:$px/small" >"$dir/wrk.out"
    callgrind_control -d "$vp" >/dev/null
    callgrind_control -i off "$vp" >/dev/null
    n=$(awk '/requests in/ { print $1 }' "$dir/wrk.out")
    kill "$vp"; wait "$vp" 2>/dev/null || true
    ir=$(cat "$dir"/callgrind.out.*.1 | awk '/^summary:/ { s += $2 } /^totals:/ { t += $2 } END { print (s > 0 ? s : t) }')
    [ -z "${INSN_DEBUG:-}" ] || echo "insn: $1 $3: $ir instructions, $n requests" >&2
    awk -v ir="$ir" -v n="$n" 'BEGIN { printf "%.0f", ir / n }'
}
for d in "$@"; do
    ka=$(case_run "$d" 4 ka)
    cl=$(case_run "$d" 4 close)
    rev=$(git -C "$(dirname "$d")" rev-parse --short HEAD 2>/dev/null || echo "?")
    echo "| $d ($rev) | $ka | $cl |"
done
