#!/bin/sh
# A private PostgreSQL cluster for `make run-fleet` (and by hand): never a
# system one. `pgcluster.sh start DIR` runs initdb into DIR (once) and starts
# postgres on a unix socket in DIR only (no TCP), as the `postgres` user when
# run as root (PostgreSQL refuses root); it creates the database "cutover".
# `pgcluster.sh stop DIR` stops it. The binaries: $CUTOVER_PG_BINDIR, else
# the newest /usr/lib/postgresql/<major>/bin (Debian's postgresql package).
set -eu
cmd=${1:?usage: pgcluster.sh start|stop DIR}
dir=${2:?usage: pgcluster.sh start|stop DIR}
bindir=${CUTOVER_PG_BINDIR:-}
if [ -z "$bindir" ]; then
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] && bindir=$d
    done
fi
if [ -z "$bindir" ] || [ ! -x "$bindir/postgres" ]; then
    echo "pgcluster: PostgreSQL is not installed (make deps installs Debian's postgresql)" >&2
    exit 1
fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
as() {
    if [ "$(id -u)" = 0 ]; then
        chown -R postgres: "$dir"
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}
case $cmd in
start)
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 >"$dir/initdb.log" 2>&1 || {
            cat "$dir/initdb.log" >&2
            exit 1
        }
    fi
    as "$bindir/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 30 \
        -o "-c listen_addresses='' -c unix_socket_directories='$dir' -c fsync=off" start >/dev/null
    as "$bindir/psql" -h "$dir" -U postgres -d postgres -qtAc \
        "SELECT 1 FROM pg_database WHERE datname = 'cutover'" | grep -q 1 ||
        as "$bindir/psql" -h "$dir" -U postgres -d postgres -qc "CREATE DATABASE cutover"
    echo "pgcluster: up on $dir (database cutover, user postgres)"
    ;;
stop)
    [ -f "$dir/data/postmaster.pid" ] && as "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
*)
    echo "usage: pgcluster.sh start|stop DIR" >&2
    exit 2
    ;;
esac
