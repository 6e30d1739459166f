#!/usr/bin/env bash
# Runs stale-exporter on this machine, from nothing: installs and starts what
# it needs (PostgreSQL and dockerd, as the tests do), creates the local
# database and an admin API token the first time, and starts the exporter on
# the local engine with adoption on, so that labelled containers show up at
# once. Running it again reuses all of that. Arguments go to the exporter.
# STALE_EXPORTER_STORE_DSN points it at another database instead;
# STALE_EXPORTER_LISTEN (default :9817) and STALE_EXPORTER_HOME (default
# ~/.stale-exporter, where the tokens live) move it.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/test-deps.sh

if [ -z "${STALE_EXPORTER_STORE_DSN:-}" ]; then
  db=stale_exporter # the exporter's default database (internal/app.LocalDatabase)
  psql -h /var/run/postgresql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 ||
    createdb -h /var/run/postgresql "$db"
fi

home=${STALE_EXPORTER_HOME:-$HOME/.stale-exporter}
mkdir -p "$home"
chmod 700 "$home"
bin="$home/stale-exporter"
go build -o "$bin" ./cmd/stale-exporter

tokens="$home/tokens.yml"
if [ ! -s "$tokens" ]; then
  out=$("$bin" token --name admin --role admin)
  token=$(printf '%s\n' "$out" | sed -n '2s/^# //p')
  printf '%s\n' "$out" | sed '/^#/d' >"$tokens"
  printf '%s\n' "$token" >"$home/admin-token"
  chmod 600 "$tokens" "$home/admin-token"
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
