#!/usr/bin/env bash
# Start Debian's PostgreSQL on 127.0.0.1 for the storage tests and print the line that points them at it:
#     eval "$(.ci/postgres.sh)"     # exports ASCLEPIUS_TEST_PG_URL
# Installs the postgresql package when it is missing (needs root and a package mirror). Logs go to stderr.
set -euo pipefail
PORT="${ASCLEPIUS_PG_PORT:-54329}"
DB="${ASCLEPIUS_PG_DB:-asclepius_test}"
ROOT="${ASCLEPIUS_PG_DIR:-/tmp/asclepius-ci-pg}"

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "installing postgresql" >&2
    apt-get update -qq >&2 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql >&2
fi
BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

if [ -f "$ROOT/data/postmaster.pid" ] && as_pg "$BIN/pg_ctl" -D "$ROOT/data" status >/dev/null 2>&1; then
    echo "PostgreSQL already running in $ROOT" >&2
else
    rm -rf "$ROOT"
    mkdir -p "$ROOT"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$ROOT"
    as_pg "$BIN/initdb" -D "$ROOT/data" -A trust -U postgres -E UTF8 --no-sync >&2
    as_pg "$BIN/pg_ctl" -D "$ROOT/data" -l "$ROOT/log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $PORT -k $ROOT -c max_connections=200" start >&2
fi
if ! as_pg "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$DB'" \
        | grep -q 1; then
    as_pg "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres "$DB" >&2
fi
echo "export ASCLEPIUS_TEST_PG_URL=postgresql+psycopg://postgres@127.0.0.1:$PORT/$DB"
