#!/bin/sh
# Entrypoint of the local PostgreSQL 15 image that `deploy/image postgres`
# builds from Debian's binaries: what the official postgres image's entrypoint
# does that a Helm chart relies on (POSTGRES_USER, POSTGRES_PASSWORD,
# POSTGRES_DB, POSTGRES_HOST_AUTH_METHOD, POSTGRES_INITDB_ARGS, PGDATA,
# /docker-entrypoint-initdb.d), for an image that starts as uid 999 and may
# have a read-only root filesystem. Not supported: starting as root, *_FILE
# variables, compressed init scripts.
#
# The image has dash and the PostgreSQL binaries, no coreutils: initdb
# creates PGDATA (and missing parents) and fixes its mode itself, so this
# script needs no mkdir or chmod.
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA

# Flags alone mean flags for postgres, as with the official image.
if [ $# = 0 ] || [ "${1#-}" != "$1" ]; then
  set -- postgres "$@"
fi

if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_USER:=postgres}"
  : "${POSTGRES_DB:=$POSTGRES_USER}"
  : "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
  : "${POSTGRES_PASSWORD:=}"
  if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
    echo "error: the database is uninitialized and POSTGRES_PASSWORD is not set;" \
      "set it, or POSTGRES_HOST_AUTH_METHOD=trust to allow every connection without one" >&2
    exit 1
  fi

  # The locale is C (no locale data in the image), the encoding UTF8; flags in
  # POSTGRES_INITDB_ARGS come later, so they override these.
  run_initdb() {
    # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of flags
    initdb --username="$POSTGRES_USER" --auth-local=trust --auth-host="$POSTGRES_HOST_AUTH_METHOD" \
      --locale=C --encoding=UTF8 ${POSTGRES_INITDB_ARGS:-} "$@"
  }
  if [ -n "$POSTGRES_PASSWORD" ]; then
    # A here-document, not an argument, so the password never shows in ps.
    run_initdb --pwfile=/dev/stdin <<EOF
$POSTGRES_PASSWORD
EOF
  else
    run_initdb
  fi

  printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >>"$PGDATA/pg_hba.conf"
  printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"

  # A server on the Unix socket only, so nothing outside sees a half-made
  # database, for the CREATE DATABASE and the init scripts.
  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p ${PGPORT:-5432}" -w start
  psql_() { psql -v ON_ERROR_STOP=1 --no-password --no-psqlrc --username "$POSTGRES_USER" "$@"; }
  if [ "$POSTGRES_DB" != postgres ]; then
    psql_ --dbname postgres --set db="$POSTGRES_DB" <<'EOF'
CREATE DATABASE :"db";
EOF
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh)
        echo "running $f" >&2
        # shellcheck source=/dev/null # the user's own scripts, sourced as the official image does
        . "$f"
        ;;
      *.sql) echo "running $f" >&2; psql_ --dbname "$POSTGRES_DB" -f "$f" ;;
      *) if [ -e "$f" ]; then echo "ignoring $f" >&2; fi ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop
  echo "PostgreSQL init process complete; ready for start up." >&2
fi

# PID 1 is postgres itself, so the stop signal reaches it.
exec "$@"
