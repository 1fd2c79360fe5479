#!/bin/sh
# The scale bench: what a configured service costs. cutoverd (workers 2,
# HTTP health checks every 2 s) with 1, 100 and 1000 services, each on a
# port of its own in front of the same two test backends (legacy and new,
# weight 10), and HAProxy (nbthread 2, the same checks) beside it when it
# is installed. Not part of make test: `make bench-scale`
# (docs/performance.md, "Scale").
#
# Per count of services and target:
#   ready    from the start until the last service's port answers 200
#   RSS      VmRSS 3 s after ready (the checks have run), and per service
#            over the run of the first count
#   status   `cutoverctl status`, the median of 3 (its own parsing and
#            printing included); then {"cmd":"status"} on the admin socket
#            (HAProxy: "show stat" on its stats socket), the median of 3,
#            and the worst latency of the requests that 8 keep-alive clients
#            on service 0 sent meanwhile (tests/bench/scaleprobe.c), beside
#            the worst of a quiet spell
#   reload   SIGHUP (config unchanged) until "configuration generation N
#            loaded" is in the log, the median of 3, and the worst latency
#            meanwhile
#   plan     `cutoverctl -S s0 plan start` (service 0's plan: its first
#            step, weight 10 -> 20, saved and applied on every loop), the
#            worst latency meanwhile, three times (aborted and set back
#            to 10 between them)
#   main-thread CPU of a status and of a reload without the clients (the
#            median of 3, from /proc/PID/task/PID/schedstat: the work the
#            main loop, which serves requests too, does for them, whatever
#            the machine's load)
#   metrics  GET /metrics on admin.listen (curl): the main thread's CPU per
#            scrape without the clients (median of 3), and the worst latency
#            during one, three times
#   frames   the dashboard's stream (GET /v1/events, curl) for 4 s without
#            the clients: the size of a frame and the main thread's CPU per
#            frame (the idle main thread's CPU over the same time taken
#            off); then the worst latency during 3 s of it
# HAProxy reloads by starting a new process (master-worker): not compared.
#
#   sh tests/bench/scale.sh        (make bench-scale)
#
# Environment:
#   CUTOVERD=PATH        the daemon (default build/cutoverd)
#   SCALE_SERVICES="1 100 1000"   the counts of services
#   SCALE_PORT=24000     base port (below the ephemeral range): backends BASE-2 and BASE-1, cutoverd's
#                        admin.listen BASE-3, services BASE.., HAProxy's BASE+2000..
#   SCALE_OUT=FILE       also write the report to FILE
# Needs cc, awk, curl; haproxy for its rows (installed with apt-get when missing
# and run as root). The markdown block goes to standard output, progress to
# standard error. Wall-clock figures move with the machine's load: the
# report starts with the load average.
set -eu
here=$(pwd)
cd "$(dirname "$0")/../.."
root=$(pwd)
PATH=$PATH:/usr/sbin:/sbin
export PATH

counts=${SCALE_SERVICES:-1 100 1000}
base=${SCALE_PORT:-24000}
cutoverd=${CUTOVERD:-build/cutoverd}
case $cutoverd in
/*) ;;
*) if [ -n "${CUTOVERD:-}" ] && [ -e "$here/$cutoverd" ]; then cutoverd=$here/$cutoverd; else cutoverd=$root/$cutoverd; fi ;;
esac
ctl=$root/build/cutoverctl
backend=$root/build/tests/tools/backend

say() { printf 'bench-scale: %s\n' "$*" >&2; }
die() {
    printf 'bench-scale: FAILED: %s\n' "$*" >&2
    exit 1
}
for f in "$cutoverd" "$ctl" "$backend"; do
    [ -x "$f" ] || die "no $f (make all)"
done
if ! command -v haproxy >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "apt-get install haproxy"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends haproxy) >&2 || true
fi
haproxy=""
command -v haproxy >/dev/null 2>&1 && haproxy=$(command -v haproxy)
for t in cc awk curl; do
    command -v "$t" >/dev/null 2>&1 || die "$t is needed"
done

dir=$(mktemp -d "${TMPDIR:-/tmp}/cutover-scale.XXXXXX")
pids=""
cleanup() {
    set +e
    for p in $pids; do kill "$p" 2>/dev/null; done
    sleep 0.3
    for p in $pids; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# shellcheck disable=SC3045
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cc -std=c11 -O2 -o "$dir/scaleprobe" tests/bench/scaleprobe.c || die "cannot compile scaleprobe.c"
probe=$dir/scaleprobe

now_ms() { echo $(($(date +%s%N) / 1000000)); }
median3() { printf '%s\n%s\n%s\n' "$1" "$2" "$3" | sort -n | sed -n 2p; }
tenths() { awk "BEGIN { printf \"%.1f\", $1 / 10 }"; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
# CPU time of the process's main thread so far, in microseconds
main_cpu_us() { awk '{ printf "%d\n", $1 / 1000 }' "/proc/$1/task/$1/schedstat"; }
field() { printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

"$backend" --name legacy --listen "127.0.0.1:$((base - 2))" >"$dir/legacy.log" 2>&1 &
pids="$pids $!"
"$backend" --name new --listen "127.0.0.1:$((base - 1))" >"$dir/new.log" 2>&1 &
pids="$pids $!"
for p in $((base - 2)) $((base - 1)); do
    "$probe" wait "$p" 5000 || die "the backend on port $p did not start"
done

aport=$((base - 3))
token=bench-read-0123456789
printf 'bench read %s\n' "$token" >"$dir/admin.tokens"
chmod 600 "$dir/admin.tokens"
conf_cutoverd() { # N FILE
    {
        printf '{\n  "admin": { "socket": "%s/admin.sock", "listen": "127.0.0.1:%d", "token_file": "%s/admin.tokens" },\n' \
            "$dir" "$aport" "$dir"
        printf '  "state": { "file": "%s/state.json" },\n  "audit": { "file": "%s/audit.jsonl" },\n' "$dir" "$dir"
        printf '  "workers": 2,\n  "services": [\n'
        i=0
        while [ $i -lt "$1" ]; do
            [ $i = 0 ] || printf ',\n'
            printf '    { "name": "s%d", "listen": ["127.0.0.1:%d"], "weight": 10,\n' $i $((base + i))
            [ $i != 0 ] || printf '      "plan": { "steps": [20, 40, 60], "bake_s": 3600 },\n'
            printf '      "legacy": { "servers": ["127.0.0.1:%d"] }, "new": { "servers": ["127.0.0.1:%d"] },\n' \
                $((base - 2)) $((base - 1))
            printf '      "health": { "type": "http", "path": "/healthz", "interval_ms": 2000 } }'
            i=$((i + 1))
        done
        printf '\n  ]\n}\n'
    } >"$2"
}

conf_haproxy() { # N FILE
    {
        printf 'global\n  nbthread 2\n  stats socket %s/haproxy.sock mode 600 level admin\n' "$dir"
        printf 'defaults\n  mode http\n  timeout connect 2s\n  timeout client 60s\n  timeout server 30s\n'
        printf '  option httpchk GET /healthz\n  default-server inter 2s\n'
        i=0
        while [ $i -lt "$1" ]; do
            printf 'frontend f%d\n  bind 127.0.0.1:%d\n  default_backend b%d\n' $i $((base + 2000 + i)) $i
            printf 'backend b%d\n  server legacy 127.0.0.1:%d weight 90 check\n' $i $((base - 2))
            printf '  server new 127.0.0.1:%d weight 10 check\n' $((base - 1))
            i=$((i + 1))
        done
    } >"$2"
}

load=$(cut -d' ' -f1-3 /proc/loadavg)
rows=""
hrows=""
rss1=""
hrss1=""
n1=1
hn1=1
for n in $counts; do
    # ---- cutoverd --------------------------------------------------------
    rm -f "$dir/state.json" "$dir/audit.jsonl" "$dir/state.json.pending"
    conf_cutoverd "$n" "$dir/c.json"
    last=$((base + n - 1))
    t0=$(now_ms)
    "$cutoverd" -c "$dir/c.json" 2>"$dir/cutoverd.log" &
    pid=$!
    pids="$pids $pid"
    "$probe" wait "$last" 60000 || die "cutoverd with $n services not ready in 60 s"
    ready=$(($(now_ms) - t0))
    sleep 3
    rss=$(rss_kb "$pid")
    [ -n "$rss1" ] || { rss1=$rss; n1=$n; }
    ct1="" ct2="" ct3="" st1="" st2="" st3="" sl=""
    for k in 1 2 3; do
        c0=$(now_ms)
        "$ctl" -s "$dir/admin.sock" status >/dev/null || die "cutoverctl status failed"
        eval "ct$k=$(($(now_ms) - c0))"
        out=$("$probe" load "$base" 8 500 "$probe" unix "$dir/admin.sock" '{"cmd":"status"}') ||
            die "status probe: $out"
        eval "st$k=\$(field \"\$out\" cmd_ms)"
        sl="$sl $(field "$out" during_max_ms)/$(field "$out" quiet_max_ms)"
    done
    rl1="" rl2="" rl3="" rlat=""
    for k in 1 2 3; do
        out=$("$probe" load "$base" 8 500 sh -c "kill -HUP $pid; until grep -q 'configuration generation $((k + 1)) loaded' '$dir/cutoverd.log'; do sleep 0.002; done") ||
            die "reload probe: $out"
        eval "rl$k=\$(field \"\$out\" cmd_ms)"
        rlat="$rlat $(field "$out" during_max_ms)/$(field "$out" quiet_max_ms)"
    done
    plat=""
    for k in 1 2 3; do
        out=$("$probe" load "$base" 8 500 "$ctl" -s "$dir/admin.sock" -S s0 plan start) ||
            die "plan probe: $out"
        [ "$(field "$out" cmd_status)" = 0 ] || die "plan start failed: $out"
        plat="$plat $(field "$out" during_max_ms)/$(field "$out" quiet_max_ms)"
        "$ctl" -s "$dir/admin.sock" -S s0 plan abort >/dev/null || die "plan abort failed"
        "$ctl" -s "$dir/admin.sock" -S s0 weight 10 >/dev/null || die "weight 10 failed"
    done
    sc1="" sc2="" sc3="" rc1="" rc2="" rc3=""
    for k in 1 2 3; do
        c0=$(main_cpu_us "$pid")
        "$ctl" -s "$dir/admin.sock" status >/dev/null || die "status failed"
        c1=$(main_cpu_us "$pid")
        kill -HUP "$pid"
        until grep -q "configuration generation $((k + 4)) loaded" "$dir/cutoverd.log"; do sleep 0.002; done
        c2=$(main_cpu_us "$pid")
        eval "sc$k=$(((c1 - c0) / 100))"
        eval "rc$k=$(((c2 - c1) / 100))"
    done
    url=http://127.0.0.1:$aport
    auth="Authorization: Bearer $token"
    mc1="" mc2="" mc3=""
    for k in 1 2 3; do
        c0=$(main_cpu_us "$pid")
        curl -sf -o /dev/null -H "$auth" "$url/metrics" || die "GET /metrics failed"
        c1=$(main_cpu_us "$pid")
        eval "mc$k=$(((c1 - c0) / 100))"
    done
    mlat=""
    for k in 1 2 3; do
        out=$("$probe" load "$base" 8 500 curl -sf -o /dev/null -H "$auth" "$url/metrics") ||
            die "metrics probe: $out"
        mlat="$mlat $(field "$out" during_max_ms)/$(field "$out" quiet_max_ms)"
    done
    c0=$(main_cpu_us "$pid")
    sleep 4
    c1=$(main_cpu_us "$pid")
    curl -s -N --max-time 4 -o "$dir/events.txt" -H "$auth" "$url/v1/events" || true
    c2=$(main_cpu_us "$pid")
    nf=$(grep -c '^id: ' "$dir/events.txt" || true)
    [ "${nf:-0}" -gt 0 ] || die "no frame on GET /v1/events"
    fkb=$(($(wc -c <"$dir/events.txt") / nf / 1024))
    fcpu=$((((c2 - c1) - (c1 - c0)) / nf / 100))
    out=$("$probe" load "$base" 8 500 sh -c "curl -s -N --max-time 3 -o /dev/null -H '$auth' '$url/v1/events'; true") ||
        die "events probe: $out"
    flat="$(field "$out" during_max_ms)/$(field "$out" quiet_max_ms) ($nf frames in 4 s)"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    per=$([ "$n" -gt "$n1" ] && echo $(((rss - rss1) / (n - n1))) || echo -)
    rows="$rows| $n | $(awk "BEGIN { printf \"%.3f\", $ready / 1000 }") | $(awk "BEGIN { printf \"%.1f\", $rss / 1024 }") | $per | $(median3 "$ct1" "$ct2" "$ct3") | $(median3 "$st1" "$st2" "$st3") |$sl | $(median3 "$rl1" "$rl2" "$rl3") |$rlat |$plat | $(tenths "$(median3 "$sc1" "$sc2" "$sc3")") | $(tenths "$(median3 "$rc1" "$rc2" "$rc3")") | $(tenths "$(median3 "$mc1" "$mc2" "$mc3")") |$mlat | $fkb | $(tenths "$fcpu") | $flat |
"
    say "cutoverd, $n services: ready ${ready} ms, RSS ${rss} KB"

    # ---- HAProxy -----------------------------------------------------------
    [ -n "$haproxy" ] || continue
    conf_haproxy "$n" "$dir/h.cfg"
    last=$((base + 2000 + n - 1))
    t0=$(now_ms)
    "$haproxy" -db -f "$dir/h.cfg" >"$dir/haproxy.log" 2>&1 &
    hpid=$!
    pids="$pids $hpid"
    "$probe" wait "$last" 60000 || die "haproxy with $n services not ready in 60 s: $(tail -3 "$dir/haproxy.log")"
    hready=$(($(now_ms) - t0))
    sleep 3
    hrss=$(rss_kb "$hpid")
    [ -n "$hrss1" ] || { hrss1=$hrss; hn1=$n; }
    hs1="" hs2="" hs3="" hsl=""
    for k in 1 2 3; do
        out=$("$probe" load $((base + 2000)) 8 500 "$probe" unix "$dir/haproxy.sock" "show stat") ||
            die "show stat probe: $out"
        eval "hs$k=\$(field \"\$out\" cmd_ms)"
        hsl="$hsl $(field "$out" during_max_ms)/$(field "$out" quiet_max_ms)"
    done
    kill "$hpid"
    wait "$hpid" 2>/dev/null || true
    hper=$([ "$n" -gt "$hn1" ] && echo $(((hrss - hrss1) / (n - hn1))) || echo -)
    hrows="$hrows| $n | $(awk "BEGIN { printf \"%.3f\", $hready / 1000 }") | $(awk "BEGIN { printf \"%.1f\", $hrss / 1024 }") | $hper | $(median3 "$hs1" "$hs2" "$hs3") |$hsl |
"
    say "haproxy, $n services: ready ${hready} ms, RSS ${hrss} KB"
done

report() {
    printf '### Scale, %s (load average %s, %s CPUs)\n\n' "$(date -u '+%Y-%m-%d %H:%M UTC')" "$load" "$(nproc)"
    if [ -n "${CUTOVERD:-}" ]; then
        label="at $cutoverd"
    else
        label=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')
    fi
    printf 'cutoverd %s, workers 2, HTTP checks every 2 s, one port per service; latencies are the\n' \
        "$label"
    printf 'worst of 8 keep-alive clients on service 0 during the operation / during a quiet spell\n'
    printf 'before it, in ms, one pair per run.\n\n'
    printf '| services | ready s | RSS MB | KB per service | cutoverctl status ms | status on the socket ms | worst request during it / quiet ms | reload ms | worst request during reload / quiet ms | worst request during a plan step / quiet ms | main-thread CPU per status ms | main-thread CPU per reload ms | main-thread CPU per scrape ms | worst request during a scrape / quiet ms | frame KB | main-thread CPU per frame ms | worst request during 3 s of frames / quiet ms |\n'
    printf '|--:|--:|--:|--:|--:|--:|:--|--:|:--|:--|--:|--:|--:|:--|--:|--:|:--|\n'
    printf '%s' "$rows"
    if [ -n "$haproxy" ]; then
        printf '\nHAProxy %s beside it (nbthread 2, the same checks; status is "show stat"):\n\n' \
            "$("$haproxy" -v 2>/dev/null | sed -n '1s/^HAProxy version \([^ ]*\).*/\1/p')"
        printf '| services | ready s | RSS MB | KB per service | show stat ms | worst request during it / quiet ms |\n'
        printf '|--:|--:|--:|--:|--:|:--|\n'
        printf '%s' "$hrows"
    else
        printf '\n(HAProxy is not installed: no rows of it.)\n'
    fi
}
if [ -n "${SCALE_OUT:-}" ]; then
    report | tee "$SCALE_OUT"
else
    report
fi
