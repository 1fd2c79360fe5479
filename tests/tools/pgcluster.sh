#!/bin/sh
# A private PostgreSQL cluster for `make run-fleet`, `make run-migration`
# (and by hand): never a system one. `pgcluster.sh start DIR` runs initdb
# into DIR (once) and starts postgres on a unix socket in DIR only (no TCP),
# as the `postgres` user when run as root (PostgreSQL refuses root); it
# creates the database "cutover". $PGCLUSTER_OPTS adds server options
# ("-c wal_level=logical" for a publisher). `pgcluster.sh stop DIR` stops it.
# `pgcluster.sh psql DIR [ARG...]` runs psql on its database "cutover" as the
# superuser (stops at the first error). The binaries: $CUTOVER_PG_BINDIR,
# else the newest /usr/lib/postgresql/<major>/bin (Debian's postgresql
# package).
set -eu
usage="usage: pgcluster.sh start|stop|psql DIR [ARG...]"
cmd=${1:?$usage}
dir=${2:?$usage}
shift 2
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
as() { # from inside DIR: in a directory the postgres user cannot enter, each tool warns
    if [ "$(id -u)" = 0 ]; then
        chown -R postgres: "$dir"
        (cd "$dir" && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}
case $cmd in
start)
    if [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$dir"; then
        echo "pgcluster: the postgres user cannot enter $dir (a directory above it is" \
            "closed to other users): put the tree where it can, or open the way (chmod o+x)" >&2
        exit 1
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        as "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 >"$dir/initdb.log" 2>&1 || {
            cat "$dir/initdb.log" >&2
            exit 1
        }
    fi
    as "$bindir/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 30 \
        -o "-c listen_addresses='' -c unix_socket_directories='$dir' -c fsync=off ${PGCLUSTER_OPTS:-}" \
        start >/dev/null
    as "$bindir/psql" -h "$dir" -U postgres -d postgres -qtAc \
        "SELECT 1 FROM pg_database WHERE datname = 'cutover'" | grep -q 1 ||
        as "$bindir/psql" -h "$dir" -U postgres -d postgres -qc "CREATE DATABASE cutover"
    echo "pgcluster: up on $dir (database cutover, user postgres)"
    ;;
stop)
    [ -f "$dir/data/postmaster.pid" ] && as "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
psql)
    "$bindir/psql" -X -h "$dir" -U postgres -d cutover -v ON_ERROR_STOP=1 "$@"
    ;;
*)
    echo "$usage" >&2
    exit 2
    ;;
esac
