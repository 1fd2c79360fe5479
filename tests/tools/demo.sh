#!/bin/sh
# The demo behind `make run`: two test backends (legacy on 9001, new on 9002),
# cutoverd on conf/demo.json listening on 8080, and a gentle load of DEMO_RPS
# requests a second (default 10; 0: none) so that `plan start` progresses and
# a failing new side is rolled back: `rm .run/load.on` pauses the load,
# `touch .run/load.on` resumes it. Ctrl-C stops everything.
set -u
cd "$(dirname "$0")/../.." || exit 1
mkdir -p .run
pids=""
cleanup() {
    trap - INT TERM EXIT
    # shellcheck disable=SC2086
    [ -n "$pids" ] && kill $pids 2>/dev/null
    wait 2>/dev/null
    echo "demo: stopped"
}
trap cleanup INT TERM EXIT

build/tests/tools/backend --name legacy --listen 127.0.0.1:9001 >.run/legacy.log 2>&1 &
pids="$pids $!"
build/tests/tools/backend --name new --listen 127.0.0.1:9002 >.run/new.log 2>&1 &
pids="$pids $!"
./cutoverd -c conf/demo.json &
daemon=$!
pids="$pids $daemon"
sleep 0.5
if ! kill -0 "$daemon" 2>/dev/null; then
    echo "demo: cutoverd did not start (see above)" >&2
    exit 1
fi
rps=${DEMO_RPS:-10}
case $rps in ''|*[!0-9]*) echo "demo: DEMO_RPS must be a whole number" >&2; exit 2;; esac
if [ "$rps" -gt 0 ]; then
    # one request every 1/rps s (curl's own time is part of the period, so
    # the rate stays what it says); answers go to .run/load.log
    period=$(awk "BEGIN { printf \"%.3f\", 1 / $rps }")
    touch .run/load.on
    (
        while :; do
            if [ -f .run/load.on ]; then
                start=$(date +%s%N)
                curl -s -o /dev/null -w '%{http_code}\n' --max-time 2 http://127.0.0.1:8080/
                left=$(awk "BEGIN { l = $period - ($(date +%s%N) - $start) / 1e9; \
                                    printf \"%.3f\", (l > 0 ? l : 0) }")
                sleep "$left"
            else
                sleep 1
            fi
        done
    ) >.run/load.log 2>&1 &
    pids="$pids $!"
fi
cat <<TXT

  cutover demo is running (Ctrl-C stops it)
    curl localhost:8080/           answers "legacy" or "new"
    ./cutoverctl status            weight, state, servers
    ./cutoverctl weight 10         about one request in ten goes to new
    ./cutoverctl rollback          everything back to legacy, now
    for i in \$(seq 100); do curl -s localhost:8080/; done | sort | uniq -c
    ./cutoverctl plan start        10 -> 25 -> 50 -> 75 -> 100, 30 s a step
    curl -s 'localhost:9002/__backend/set?error_rate=0.5'   new fails: rolled back

  load: $rps request(s)/s to :8080 (rm .run/load.on pauses it, touch .run/load.on
  resumes it; DEMO_RPS=N make run sets the rate, 0 none)

TXT
# the demo ends with cutoverd (Ctrl-C reaches the whole process group)
wait "$daemon"
