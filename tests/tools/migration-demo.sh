#!/bin/sh
# The demo behind `make run-migration` (docs/gates.md, "Try it"): a table
# migration behind migration gates. Two private PostgreSQL clusters
# (tests/tools/pgcluster.sh): `legacy` in .run/pg-legacy publishes the table
# `orders` and the gates' heartbeat table, `new` in .run/pg-new subscribes
# (logical replication: the initial copy, then every change). A writer adds
# an order on legacy every second, as the legacy application would. The two
# test backends (legacy on 9001, new on 9002), a gentle load of DEMO_RPS
# requests a second (default 10) to cutoverd on 8080, whose plan (10, 25,
# 50, 100 %, MIGRATION_BAKE_S a step, default 20) is gated by a compare gate
# (order counts) and a replication_lag gate (heartbeat, 3 s). Each start
# resets the two databases and the weight. Ctrl-C stops everything.
#
# Disable the subscription and the plan holds; enable it and it goes on:
#   sh tests/tools/pgcluster.sh psql .run/pg-new -c 'ALTER SUBSCRIPTION migration DISABLE'
#
# For tests (tests/integration/41_migration_demo.c): CUTOVER_DEMO_DIR
# (default .run), CUTOVER_DEMO_PORT (8080), CUTOVER_DEMO_LEGACY_PORT (9001),
# CUTOVER_DEMO_NEW_PORT (9002), CUTOVER_BIN_DIR (the binaries, default build).
set -u
cd "$(dirname "$0")/../.." || exit 1
run=${CUTOVER_DEMO_DIR:-.run}
mkdir -p "$run"
run=$(cd "$run" && pwd)
port=${CUTOVER_DEMO_PORT:-8080}
legacy=${CUTOVER_DEMO_LEGACY_PORT:-9001}
new=${CUTOVER_DEMO_NEW_PORT:-9002}
bake=${MIGRATION_BAKE_S:-20}
rps=${DEMO_RPS:-10}
for v in "$port" "$legacy" "$new" "$bake" "$rps"; do
    case $v in ''|*[!0-9]*) echo "migration demo: ports, MIGRATION_BAKE_S and DEMO_RPS are whole numbers" >&2; exit 2;; esac
done
rel=$run                          # for what is printed: .run when it is
[ "$run" = "$(pwd)/.run" ] && rel=.run
bin=${CUTOVER_BIN_DIR:-build}
pg=tests/tools/pgcluster.sh
pids=""
cleanup() {
    trap - INT TERM EXIT
    # shellcheck disable=SC2086
    [ -n "$pids" ] && kill $pids 2>/dev/null
    wait 2>/dev/null
    sh $pg stop "$run/pg-new"
    sh $pg stop "$run/pg-legacy"
    echo "migration demo: stopped"
}
trap 'cleanup; exit 0' INT TERM
trap cleanup EXIT
sql() { # DIR SQL: runs SQL on the cluster of DIR, quietly (errors only)
    PGOPTIONS="-c client_min_messages=warning" sh $pg psql "$1" -qc "$2" >/dev/null
}

PGCLUSTER_OPTS="-c wal_level=logical" sh $pg start "$run/pg-legacy" || exit 1
sh $pg start "$run/pg-new" || exit 1
# a fresh start: the subscription first (it owns a slot on legacy), then the tables
if ! sql "$run/pg-new" "DROP SUBSCRIPTION IF EXISTS migration" 2>/dev/null; then
    sql "$run/pg-new" "ALTER SUBSCRIPTION migration DISABLE"
    sql "$run/pg-new" "ALTER SUBSCRIPTION migration SET (slot_name = NONE)"
    sql "$run/pg-new" "DROP SUBSCRIPTION migration" || exit 1
fi
heartbeat="CREATE TABLE cutover_heartbeat (gate text PRIMARY KEY, seq bigint NOT NULL)"
orders="CREATE TABLE orders (id bigint PRIMARY KEY, item text NOT NULL,
                             created_at timestamptz NOT NULL DEFAULT now())"
sql "$run/pg-legacy" "DROP PUBLICATION IF EXISTS migration" &&
    sql "$run/pg-legacy" "DROP TABLE IF EXISTS orders, cutover_heartbeat" &&
    sql "$run/pg-legacy" "$orders" &&
    sql "$run/pg-legacy" "$heartbeat" &&
    sql "$run/pg-legacy" "INSERT INTO orders (id, item) SELECT g, 'order ' || g
                          FROM generate_series(1, 1000) g" &&
    sql "$run/pg-legacy" "CREATE PUBLICATION migration FOR TABLE orders, cutover_heartbeat" &&
    sql "$run/pg-new" "DROP TABLE IF EXISTS orders, cutover_heartbeat" &&
    sql "$run/pg-new" "$orders" &&
    sql "$run/pg-new" "$heartbeat" &&
    sql "$run/pg-new" "CREATE SUBSCRIPTION migration
                       CONNECTION 'host=$run/pg-legacy dbname=cutover user=postgres'
                       PUBLICATION migration" || exit 1
echo "migration demo: legacy publishes orders (1000 rows) and cutover_heartbeat, new subscribes"

"$bin/tests/tools/backend" --name legacy --listen "127.0.0.1:$legacy" >"$run/legacy.log" 2>&1 &
pids="$pids $!"
"$bin/tests/tools/backend" --name new --listen "127.0.0.1:$new" >"$run/new.log" 2>&1 &
pids="$pids $!"
# a fresh start for the daemon too: the weight, its audit log, the socket
rm -f "$run"/migration-state.json* "$run/migration-audit.jsonl" "$run/migration.sock"
cat >"$run/migration.json" <<JSON
{
  "admin": { "socket": "$run/migration.sock" },
  "state": { "file": "$run/migration-state.json" },
  "audit": { "file": "$run/migration-audit.jsonl" },
  "services": [{
    "name": "web", "mode": "http", "listen": ["127.0.0.1:$port"],
    "legacy": { "servers": ["127.0.0.1:$legacy"] },
    "new":    { "servers": ["127.0.0.1:$new"] },
    "health": { "type": "http", "path": "/healthz", "interval_ms": 1000, "timeout_ms": 500 },
    "rollback": { "max_error_rate": 0.05, "min_requests": 10, "window_s": 10 },
    "plan": { "steps": [10, 25, 50, 100], "bake_s": $bake },
    "gates": [
      { "name": "orders_match", "kind": "compare",
        "legacy": { "conninfo": "host=$run/pg-legacy dbname=cutover user=postgres" },
        "new":    { "conninfo": "host=$run/pg-new dbname=cutover user=postgres" },
        "query": "SELECT count(*) FROM orders", "tolerance": 2,
        "interval_ms": 1000, "timeout_ms": 1000 },
      { "name": "replica_lag", "kind": "replication_lag",
        "conninfo": "host=$run/pg-new dbname=cutover user=postgres",
        "source": { "conninfo": "host=$run/pg-legacy dbname=cutover user=postgres" },
        "max_lag_ms": 3000, "interval_ms": 1000, "timeout_ms": 1000 }
    ]
  }]
}
JSON
# what the gates will find, before the daemon starts (changes nothing)
"$bin/cutoverd" -t --check-gates -c "$rel/migration.json" || exit 1
"$bin/cutoverd" -c "$run/migration.json" >"$run/migration.log" 2>&1 &
daemon=$!
pids="$pids $daemon"
i=0
until [ -S "$run/migration.sock" ]; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 "$daemon" 2>/dev/null; then
        echo "migration demo: cutoverd did not start ($run/migration.log):" >&2
        tail -5 "$run/migration.log" >&2
        exit 1
    fi
    sleep 0.1
done
# the legacy application's writes: an order a second
(
    n=1000
    while :; do
        n=$((n + 1))
        sql "$run/pg-legacy" "INSERT INTO orders (id, item) VALUES ($n, 'order $n')"
        sleep 1
    done
) >"$run/writer.log" 2>&1 &
pids="$pids $!"
if [ "$rps" -gt 0 ]; then
    period=$(awk "BEGIN { printf \"%.3f\", 1 / $rps }")
    (
        while :; do
            curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/"
            sleep "$period"
        done
    ) >"$run/load.log" 2>&1 &
    pids="$pids $!"
fi
cat <<TXT

  cutover migration demo is running (Ctrl-C stops it); in another terminal:
    export CUTOVER_SOCKET=$rel/migration.sock
    ./cutoverctl gates                  both gates pass once the copy is done
    ./cutoverctl plan start             10 -> 25 -> 50 -> 100 %, $bake s a step
    ./cutoverctl watch                  the plan, and which gate holds it
    sh $pg psql $rel/pg-new -c 'ALTER SUBSCRIPTION migration DISABLE'
                                        replication stops: both gates fail, the plan holds
    ./cutoverctl weight 50              refused while a gate fails
    sh $pg psql $rel/pg-new -c 'ALTER SUBSCRIPTION migration ENABLE'
                                        it catches up: the gates pass, the plan goes on

  load: $rps request(s)/s to :$port; orders: one a second on legacy

TXT
wait "$daemon"
