#!/bin/sh
# The demo behind `make run`: two test backends (legacy on 9001, new on 9002)
# and cutoverd on conf/demo.json listening on 8080. Ctrl-C stops all three.
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
cat <<TXT

  cutover demo is running (Ctrl-C stops it)
    curl localhost:8080/           answers "legacy" or "new"
    ./cutoverctl status            weight, state, servers
    ./cutoverctl weight 10         about one request in ten goes to new
    ./cutoverctl rollback          everything back to legacy, now
    for i in \$(seq 100); do curl -s localhost:8080/; done | sort | uniq -c

TXT
# the demo ends with cutoverd (Ctrl-C reaches the whole process group)
wait "$daemon"
