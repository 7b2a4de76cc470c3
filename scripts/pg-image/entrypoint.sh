#!/bin/sh
# Entry point of the local PostgreSQL 15 test image (scripts/pg-image.sh). Honours what the official image and
# Testcontainers' PostgreSqlBuilder set: POSTGRES_USER (default postgres, a superuser), POSTGRES_PASSWORD (required),
# POSTGRES_DB (default: the user's name), PGDATA. With POSTGRES_PRIMARY_HOST (and POSTGRES_PRIMARY_PORT, default 5432)
# the container starts as a streaming standby of that primary instead, cloned with pg_basebackup as POSTGRES_USER.
# Arguments are passed to postgres (for example -c max_connections=50).
set -eu
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
PGDATA=${PGDATA:-/var/lib/postgresql/data}
export PGDATA
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }

mkdir -p "$PGDATA" /run/postgresql
chown postgres:postgres "$PGDATA" /run/postgresql
chmod 700 "$PGDATA"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -n "${POSTGRES_PRIMARY_HOST:-}" ]; then
        echo "entrypoint: cloning the primary $POSTGRES_PRIMARY_HOST:${POSTGRES_PRIMARY_PORT:-5432}"
        tries=0
        until PGPASSWORD=$POSTGRES_PASSWORD as_postgres pg_basebackup -h "$POSTGRES_PRIMARY_HOST" \
                -p "${POSTGRES_PRIMARY_PORT:-5432}" -U "$POSTGRES_USER" -D "$PGDATA" -R -X stream -c fast; do
            tries=$((tries + 1))
            [ "$tries" -lt 60 ] || { echo "entrypoint: pg_basebackup kept failing" >&2; exit 1; }
            find "$PGDATA" -mindepth 1 -delete
            sleep 1
        done
    else
        pwfile=$(mktemp)
        printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
        chown postgres "$pwfile"
        as_postgres initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" -E UTF8 --locale=C.UTF-8 \
            --auth-local=trust --auth-host=scram-sha-256 >/dev/null
        rm -f "$pwfile"
        {
            echo "host all all all scram-sha-256"
            echo "host replication all all scram-sha-256"
        } >>"$PGDATA/pg_hba.conf"
        {
            echo "listen_addresses = '*'"
            echo "max_wal_senders = 10"
            echo "wal_keep_size = '64MB'"
        } >>"$PGDATA/postgresql.auto.conf"
        if [ "$POSTGRES_DB" != postgres ]; then
            # Started on the Unix socket only, so that no readiness probe sees it before it is set up.
            as_postgres pg_ctl -D "$PGDATA" -w -o "-c listen_addresses=''" start >/dev/null
            as_postgres psql -v ON_ERROR_STOP=1 -h /run/postgresql -U "$POSTGRES_USER" -d postgres -qc \
                "CREATE DATABASE \"$POSTGRES_DB\""
            as_postgres pg_ctl -D "$PGDATA" -w -m fast stop >/dev/null
        fi
    fi
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups postgres -D "$PGDATA" "$@"
