#!/usr/bin/env bash
# Runs stale-exporter on this machine, taking over nothing. It installs and
# starts only what running needs, and only where it is to use this
# machine's own: PostgreSQL (unless STALE_EXPORTER_STORE_DSN names a store,
# which it then never touches) and Docker (unless DOCKER_HOST names an
# engine). For the local store it creates, once, a role stale_exporter that
# is no superuser and owns only its database stale_exporter, with a random
# password kept in STALE_EXPORTER_HOME (default ~/.stale-exporter) with the
# admin API token it makes. It builds the exporter with version stamping and
# runs it on the engine with adoption on, so that labelled containers show
# up at once; run again, it reuses all of that. Arguments go to the
# exporter; STALE_EXPORTER_LISTEN (default :9817) moves it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

home=${STALE_EXPORTER_HOME:-$HOME/.stale-exporter}
mkdir -p "$home"
chmod 700 "$home"

need=()
[ -n "${DOCKER_HOST:-}" ] || command -v dockerd >/dev/null || need+=(docker.io)
[ -n "${STALE_EXPORTER_STORE_DSN:-}" ] || command -v pg_ctlcluster >/dev/null || need+=(postgresql)
install_packages "${need[@]}"

if [ -z "${STALE_EXPORTER_STORE_DSN:-}" ]; then
  start_postgres
  passfile="$home/pgpass"
  if [ ! -s "$passfile" ]; then
    password=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
    # A database an earlier run made as another owner is handed to the
    # role, with what is in it, so that the role needs no more rights.
    as_postgres psql -q -v ON_ERROR_STOP=1 -h "$PG_SOCKET_DIR" -p "$PG_PORT" -d postgres -v password="$password" <<'SQL'
SELECT 'CREATE ROLE stale_exporter LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION'
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'stale_exporter') \gexec
ALTER ROLE stale_exporter NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'password';
SELECT 'CREATE DATABASE stale_exporter OWNER stale_exporter'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'stale_exporter') \gexec
ALTER DATABASE stale_exporter OWNER TO stale_exporter;
\connect stale_exporter
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT format('ALTER TABLE %I.%I OWNER TO stale_exporter', schemaname, tablename) AS q
    FROM pg_tables WHERE schemaname = 'public' AND tableowner <> 'stale_exporter' LOOP
    EXECUTE r.q;
  END LOOP;
  FOR r IN SELECT format('ALTER FUNCTION %s OWNER TO stale_exporter', p.oid::regprocedure) AS q
    FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace AND pg_get_userbyid(p.proowner) <> 'stale_exporter' LOOP
    EXECUTE r.q;
  END LOOP;
END $$;
SQL
    (umask 077 && printf '*:%s:stale_exporter:stale_exporter:%s\n' "$PG_PORT" "$password" >"$passfile")
    echo "Created the PostgreSQL role stale_exporter (no superuser) and its database stale_exporter"
  fi
  # Password authentication over TCP: the role is not this account.
  export STALE_EXPORTER_STORE_DSN="host=127.0.0.1 port=$PG_PORT dbname=stale_exporter user=stale_exporter passfile=$passfile"
fi
[ -n "${DOCKER_HOST:-}" ] || start_docker

bin="$home/stale-exporter"
make -s build BIN="$bin"

tokens="$home/tokens.yml"
if [ ! -s "$tokens" ]; then
  token=$("$bin" tokens add --file="$tokens" --name=admin --role=admin 2>/dev/null)
  (umask 077 && printf '%s\n' "$token" >"$home/admin-token")
  echo "Created an admin API token, shown once (also in $home/admin-token): $token"
fi

listen=${STALE_EXPORTER_LISTEN:-:9817}
port=${listen##*:}
cat <<MSG
stale-exporter on port $port:
  metrics:           http://localhost:$port/metrics
  stale containers:  http://localhost:$port/api/containers/stale
  from the CLI:      STALE_EXPORTER_TOKEN=\$(cat $home/admin-token) $bin list --url=http://localhost:$port
MSG
exec "$bin" --docker.adopt --api.tokens-file="$tokens" --web.listen-address="$listen" "$@"
