#!/bin/sh
# The official postgres image's entrypoint conventions that the compose file relies on, for
# Debian's postgresql-15: flags alone are postgres's; started as root, it hands PGDATA to the
# user postgres and drops to it; with an empty PGDATA it creates the cluster (UTF-8;
# POSTGRES_USER, default postgres, as its superuser with POSTGRES_PASSWORD; password
# authentication from other hosts), creates POSTGRES_DB (default: the user's name), runs
# /docker-entrypoint-initdb.d/*.sql and *.sh (executed when executable, else sourced) against
# it on a server that listens on the Unix socket only, and stops that server. Not supported:
# *_FILE secrets, POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD, *.sql.gz.
set -eu
case "${1:-}" in -*) set -- postgres "$@" ;; esac
if [ "${1:-}" = postgres ] && [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown -R postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    HOME=/var/lib/postgresql exec setpriv --reuid=postgres --regid=postgres --init-groups \
        "$0" "$@"
fi
if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo "error: POSTGRES_PASSWORD must be set for a new database" >&2
        exit 1
    fi
    user=${POSTGRES_USER:-postgres}
    db=${POSTGRES_DB:-$user}
    pwfile=$(mktemp)
    trap 'rm -f "$pwfile"' EXIT
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    initdb --username="$user" --pwfile="$pwfile" --auth-local=trust \
        --auth-host=scram-sha-256 --encoding=UTF8 -D "$PGDATA" >/dev/null
    rm -f "$pwfile"
    trap - EXIT
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -k /var/run/postgresql" start >/dev/null
    if [ "$db" != postgres ]; then
        psql -X -q -v ON_ERROR_STOP=1 -h /var/run/postgresql -U "$user" -d postgres \
            -c "CREATE DATABASE \"$db\""
    fi
    for file in /docker-entrypoint-initdb.d/*; do
        case "$file" in
            *.sql) echo "running $file"
                psql -X -q -v ON_ERROR_STOP=1 -h /var/run/postgresql -U "$user" -d "$db" -f "$file" ;;
            *.sh) echo "running $file"
                if [ -x "$file" ]; then
                    "$file"
                else
                    # shellcheck source=/dev/null
                    . "$file"
                fi ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    echo "database $db ready for $user"
fi
exec "$@"
