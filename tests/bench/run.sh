#!/bin/sh
# The side-by-side benchmark: wrk against a test backend directly and
# through cutoverd (HTTP, weight 50), on loopback, bounded in time.
#   tests/bench/run.sh [SECONDS] [CONNECTIONS]
# Prints requests/s and latency for each; the numbers are for comparing
# builds on the same machine, not absolute targets. CUTOVERD=PATH runs
# another build of the daemon (to compare before and after a change).
set -eu
cd "$(dirname "$0")/../.."
secs=${1:-10}
conns=${2:-50}
command -v wrk >/dev/null || { echo "bench: wrk is needed (apt-get install wrk)" >&2; exit 1; }
dir=$(mktemp -d)
pids=""
cleanup() {
    # shellcheck disable=SC2086
    [ -n "$pids" ] && kill $pids 2>/dev/null
    wait 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

build/tests/tools/backend --name legacy --listen 127.0.0.1:19101 >"$dir/l.log" 2>&1 &
pids="$pids $!"
build/tests/tools/backend --name new --listen 127.0.0.1:19102 >"$dir/n.log" 2>&1 &
pids="$pids $!"
cat >"$dir/bench.json" <<JSON
{
  "admin": { "socket": "$dir/admin.sock" },
  "state": { "file": "$dir/state.json" },
  "audit": { "file": "$dir/audit.jsonl" },
  "services": [{
    "name": "bench", "listen": ["127.0.0.1:19100"],
    "legacy": { "servers": ["127.0.0.1:19101"] },
    "new": { "servers": ["127.0.0.1:19102"] },
    "weight": 50
  }]
}
JSON
${CUTOVERD:-build/cutoverd} -c "$dir/bench.json" >"$dir/d.log" 2>&1 &
pids="$pids $!"
sleep 0.5

run() {
    printf '%-28s ' "$1"
    wrk -t1 -c"$conns" -d"${secs}s" "http://127.0.0.1:$2/" |
        awk '/Requests\/sec/ {rps=$2} /Latency/ {lat=$2} /Non-2xx/ {bad=$NF}
             END {printf "%10s req/s  avg latency %s%s\n", rps, lat, bad ? "  non-2xx " bad : ""}'
}
echo "bench: ${secs}s, ${conns} connections, 1 wrk thread, $(nproc) cores"
run "backend direct" 19101
run "through cutoverd" 19100
