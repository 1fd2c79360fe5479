#!/bin/sh
# The demo behind `make run-fleet`: a private PostgreSQL cluster in .run/pg
# (tests/tools/pgcluster.sh), the two test backends (legacy on 9001, new on
# 9002) and three cutoverd instances of one fleet on 8080, 8081 and 8082,
# each with its own admin socket (.run/fleet-a.sock ...). Ctrl-C stops all.
# CUTOVER_FLEET_PORT moves the instances (default 8080: 8080..8082) and the
# backends (port + 921 and + 922: 9001, 9002).
set -u
cd "$(dirname "$0")/../.." || exit 1
mkdir -p .run
run=$(pwd)/.run
base=${CUTOVER_FLEET_PORT:-8080}
legacy=$((base + 921))
new=$((base + 922))
pids=""
cleanup() {
    trap - INT TERM EXIT
    # shellcheck disable=SC2086
    [ -n "$pids" ] && kill $pids 2>/dev/null
    wait 2>/dev/null
    sh tests/tools/pgcluster.sh stop "$run/pg"
    echo "fleet demo: stopped"
}
trap cleanup INT TERM EXIT

sh tests/tools/pgcluster.sh start "$run/pg" || exit 1
build/tests/tools/backend --name legacy --listen 127.0.0.1:$legacy >.run/legacy.log 2>&1 &
pids="$pids $!"
build/tests/tools/backend --name new --listen 127.0.0.1:$new >.run/new.log 2>&1 &
pids="$pids $!"
i=0
for n in a b c; do
    cat >".run/fleet-$n.json" <<JSON
{
  "admin": { "socket": "$run/fleet-$n.sock" },
  "state": { "file": "$run/fleet-$n-state.json" },
  "audit": { "file": "$run/fleet-$n-audit.jsonl" },
  "store": { "postgres": { "conninfo": "host=$run/pg dbname=cutover user=postgres",
                           "fleet": "demo", "instance": "$n" } },
  "services": [{
    "name": "web", "mode": "http", "listen": ["127.0.0.1:$((base + i))"],
    "legacy": { "servers": ["127.0.0.1:$legacy"] },
    "new":    { "servers": ["127.0.0.1:$new"] },
    "health": { "type": "http", "path": "/healthz", "interval_ms": 1000, "timeout_ms": 500 },
    "rollback": { "max_error_rate": 0.05, "min_requests": 20, "window_s": 10 }
  }]
}
JSON
    ./cutoverd -c ".run/fleet-$n.json" >".run/fleet-$n.log" 2>&1 &
    pids="$pids $!"
    i=$((i + 1))
done
sleep 1
for n in a b c; do
    if [ ! -S ".run/fleet-$n.sock" ]; then
        echo "fleet demo: instance $n did not start (.run/fleet-$n.log):" >&2
        tail -5 ".run/fleet-$n.log" >&2
        exit 1
    fi
done
cat <<TXT

  cutover fleet demo is running (Ctrl-C stops it): three instances, one PostgreSQL
    ./cutoverctl -s .run/fleet-a.sock weight 10     on a: moves all three
    ./cutoverctl -s .run/fleet-c.sock status        c has it too
    ./cutoverctl -s .run/fleet-c.sock status --fleet  every instance, its windows, the leader
    ./cutoverctl -s .run/fleet-b.sock rollback      b rolls the fleet back
    ./cutoverctl -s .run/fleet-a.sock audit         the fleet's entries
    curl localhost:$base/  localhost:$((base + 1))/  localhost:$((base + 2))/

TXT
wait
