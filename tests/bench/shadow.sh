#!/bin/sh
# tests/bench/shadow.sh: what shadow traffic costs (docs/shadow.md). One
# cutoverd (workers 1) in front of two NGINX backends (legacy and new, the
# same small answer), driven by wrk on keep-alive connections, with shadowing
# of 0 %, 10 % and 100 % of GETs (the copies go to new), in interleaved
# rounds; then 100 % to a shadow side that accepts and never answers (the
# test backend with mode=stall). Reports requests/s, the client's p50 and
# p99 (wrk --latency) and cutoverd's CPU per request (utime + stime from
# /proc over the run; at 100 % the copies' CPU is included: a copy is a
# second exchange).
# Then the calibration run (docs/shadow.md, "Noise"): legacy (two servers) and
# new are the same program, the test backend with stamp=1 (every answer
# carries a timestamp and a request id, in headers and in its JSON body);
# shadowing 100 % with noise.second_server; wrk for 2 s while the noise is
# learned, then for BENCH_CALIB_SECS; it prints the share of the comparisons
# after learning that were reported as differences (the goal: at most 0.1 %
# of at least 10,000).
#
#   sh tests/bench/shadow.sh      (after make all)
#
# Environment: BENCH_ROUNDS=3, BENCH_SECS=5, BENCH_CONNS=50, BENCH_PORT=20300
# (uses BASE..BASE+9 on 127.0.0.1), BENCH_CPU=0, BENCH_WRK_CPU=1,
# BENCH_CALIB_SECS=10 (0: no calibration run),
# BENCH_OUT=FILE (also write the markdown table there), BENCH_KEEP=1 (keep the
# scratch directory with the logs and wrk outputs).
set -eu

rounds=${BENCH_ROUNDS:-3}
secs=${BENCH_SECS:-5}
conns=${BENCH_CONNS:-50}
base=${BENCH_PORT:-20300}
cpu=${BENCH_CPU:-0}
calib_secs=${BENCH_CALIB_SECS:-10}
wcpu=${BENCH_WRK_CPU:-1}
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
for t in nginx wrk taskset; do
    command -v $t >/dev/null 2>&1 || { echo "shadow bench: $t is needed" >&2; exit 1; }
done
[ -x build/cutoverd ] && [ -x build/tests/tools/backend ] || {
    echo "shadow bench: make all first" >&2; exit 1; }
dir=$(mktemp -d)
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    [ -f "$dir/nginx.pid" ] && kill "$(cat "$dir/nginx.pid")" 2>/dev/null || true
    sleep 0.2
    [ -n "${BENCH_KEEP:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT INT TERM

legacy=$((base + 1)) new=$((base + 2)) stall=$((base + 3)) proxy=$base
mkdir -p "$dir/tmp"
cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/nginx.err;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/tmp; proxy_temp_path $dir/tmp;
    fastcgi_temp_path $dir/tmp; uwsgi_temp_path $dir/tmp; scgi_temp_path $dir/tmp;
    keepalive_requests 1000000;
    server { listen 127.0.0.1:$legacy; location / { return 200 "hello\n"; } }
    server { listen 127.0.0.1:$new; location / { return 200 "hello\n"; } }
}
EOF
taskset -c "$cpu" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/nginx.err"
build/tests/tools/backend --name stall --listen "127.0.0.1:$stall" >"$dir/stall.log" 2>&1 &
pids="$pids $!"
sleep 0.3
curl -s "http://127.0.0.1:$stall/__backend/set?mode=stall" >/dev/null

# conf NAME PERCENT NEWPORT: a config with shadowing of PERCENT % to NEWPORT
conf() {
    cat >"$dir/$1.json" <<EOF
{ "admin": { "socket": "$dir/$1.sock" }, "state": { "file": "$dir/$1.state" },
  "audit": { "file": "$dir/$1.audit" }, "workers": 1,
  "services": [{ "name": "web", "listen": ["127.0.0.1:$proxy"],
    "legacy": { "servers": ["127.0.0.1:$legacy"] }, "new": { "servers": ["127.0.0.1:$3"] },
    "weight": 0$( [ "$2" = none ] || echo ", \"shadow\": { \"percent\": $2, \"max_inflight\": 1000, \"timeout_ms\": 1000 }" ) }] }
EOF
}
conf none none "$new"
conf s10 10 "$new"
conf s100 100 "$new"
conf stalled 100 "$stall"

# run NAME: one wrk run against cutoverd on config NAME; prints
# "rps p50_ms p99_ms cpu_us_per_request"
run() {
    taskset -c "$cpu" build/cutoverd -c "$dir/$1.json" >"$dir/$1.log" 2>&1 &
    cp=$!
    for _ in $(seq 50); do
        curl -s -o /dev/null "http://127.0.0.1:$proxy/" && break
        sleep 0.1
    done
    t0=$(awk '{ print $14 + $15 }' "/proc/$cp/stat")
    taskset -c "$wcpu" wrk -t1 -c"$conns" -d"${secs}s" --latency "http://127.0.0.1:$proxy/" \
        >"$dir/wrk.out" 2>&1
    cp "$dir/wrk.out" "$dir/wrk.$1.out"
    t1=$(awk '{ print $14 + $15 }' "/proc/$cp/stat")
    kill "$cp"
    wait "$cp" 2>/dev/null || true
    hz=$(getconf CLK_TCK)
    awk -v t="$((t1 - t0))" -v hz="$hz" '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0;
                         if (v ~ /s$/) return v * 1000; return v }
        /^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) }
        /^ *[0-9]+ requests in/ { n = $1 }
        /^Requests\/sec/ { rps = $2 }
        END { printf "%.0f %.3f %.3f %.1f\n", rps, p50, p99, (n > 0 ? t / hz * 1e6 / n : 0) }
    ' "$dir/wrk.out"
}

for r in $(seq "$rounds"); do
    for c in none s10 s100 stalled; do
        printf '%s %s\n' "$c" "$(run "$c")" >>"$dir/results"
    done
done
{
    echo "| shadowing | requests/s | client p50 ms | client p99 ms | CPU µs/request |"
    echo "|---|---:|---:|---:|---:|"
    for c in none s10 s100 stalled; do
        case $c in
        none) label="none" ;; s10) label="10 % of GETs" ;; s100) label="100 % of GETs" ;;
        stalled) label="100 %, shadow side never answers" ;;
        esac
        # the median round of each figure
        awk -v c="$c" -v label="$label" '$1 == c { r[++n] = $2; a[n] = $3; b[n] = $4; u[n] = $5 }
            function med(x,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++)
                if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t } return x[int((n + 1) / 2)] }
            END { printf "| %s | %d | %.3f | %.3f | %.1f |\n", label, med(r), med(a), med(b), med(u) }' \
            "$dir/results"
    done
} >"$dir/table"

# ---- calibration: new is a copy of legacy, both stamping their answers ----
if [ "$calib_secs" -gt 0 ]; then
    cal=$((base + 5)) cl1=$((base + 7)) cl2=$((base + 8)) cn=$((base + 9))
    for b in legacy:$cl1 legacy2:$cl2 new:$cn; do
        build/tests/tools/backend --name "${b%%:*}" --listen "127.0.0.1:${b#*:}" \
            >"$dir/calib-${b%%:*}.log" 2>&1 &
        pids="$pids $!"
    done
    sleep 0.3
    for p in $cl1 $cl2 $cn; do
        curl -sf "http://127.0.0.1:$p/__backend/set?stamp=1" >/dev/null ||
            { echo "shadow bench: backend on $p does not answer" >&2; exit 1; }
    done
    cat >"$dir/calib.json" <<EOF
{ "admin": { "socket": "$dir/calib.sock" }, "state": { "file": "$dir/calib.state" },
  "audit": { "file": "$dir/calib.audit" }, "workers": 1,
  "services": [{ "name": "web", "listen": ["127.0.0.1:$cal"],
    "legacy": { "servers": ["127.0.0.1:$cl1", "127.0.0.1:$cl2"] },
    "new": { "servers": ["127.0.0.1:$cn"] }, "weight": 0,
    "shadow": { "percent": 100, "max_inflight": 1000, "noise": { "second_server": true },
                "compare": { "headers": ["content-type", "x-request-id", "x-timestamp"],
                             "body": "json" } } }] }
EOF
    taskset -c "$cpu" build/cutoverd -c "$dir/calib.json" >"$dir/calib.log" 2>&1 &
    cp=$!
    pids="$pids $cp"
    for _ in $(seq 50); do
        curl -s -o /dev/null "http://127.0.0.1:$cal/" && break
        sleep 0.1
    done
    # totals: "match diff error dropped" from status shadow.results
    totals() {
        build/cutoverctl -s "$dir/calib.sock" --json status |
            grep -o '"results": *{[^}]*}' | head -1 |
            sed 's/[^0-9,]//g; s/,/ /g' | awk '{ print $1, $2, $3, $4 }'
    }
    taskset -c "$wcpu" wrk -t1 -c10 -d2s "http://127.0.0.1:$cal/" >"$dir/calib-learn.out" 2>&1
    sleep 1.2
    t0=$(totals)
    noise=$(build/cutoverctl -s "$dir/calib.sock" --json status |
        grep -o '"noise": *\[[^]]*\]' | head -1 | sed 's/"noise": *//')
    taskset -c "$wcpu" wrk -t1 -c10 -d"${calib_secs}s" "http://127.0.0.1:$cal/" \
        >"$dir/calib.out" 2>&1
    sleep 1.2
    t1=$(totals)
    echo "$t0 $t1" | awk -v noise="$noise" -v learn="$(echo "$t0" | awk '{ print $1 + $2 }')" '{
        n = ($5 + $6) - ($1 + $2); d = $6 - $2
        printf "\ncalibration (new a copy of legacy, answers stamped with a timestamp and a request id): "
        printf "noise learned %s during a 2 s learning run (%d comparisons, %d of them differing);\n", noise, learn, $2
        printf "then %d comparisons, %d reported as differences: %.4f %% (goal: at most 0.1 %% of at least 10,000: %s); ",
            n, d, (n > 0 ? 100 * d / n : 0), ((n >= 10000 && d * 1000 <= n) ? "met" : "missed")
        printf "errors %d, dropped %d\n", $7 - $3, $8 - $4 }' >>"$dir/table"
fi
cat "$dir/table"
[ -z "${BENCH_OUT:-}" ] || cp "$dir/table" "$BENCH_OUT"
