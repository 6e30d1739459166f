#!/usr/bin/env bash
# Makes this machine ready for the tests: installs what is missing (Debian,
# as root), starts PostgreSQL and dockerd if they are not running, and gives
# the tests a PostgreSQL superuser named as the current user (they create
# and drop a database each). This is the test set-up; running the exporter
# (scripts/run.sh) needs none of it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v prometheus >/dev/null && command -v promtool >/dev/null || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null && command -v amtool >/dev/null || need+=(prometheus-alertmanager)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v pg_ctlcluster >/dev/null || need+=(postgresql)
command -v debootstrap >/dev/null || need+=(debootstrap)
install_packages "${need[@]}"

if [ -z "${STALE_EXPORTER_TEST_DSN:-}" ]; then
  start_postgres
  if [ "$(id -u)" = 0 ]; then
    # Tests connect over the socket as the current user.
    as_postgres psql -h "$PG_SOCKET_DIR" -p "$PG_PORT" -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'root'" | grep -q 1 ||
      as_postgres createuser -h "$PG_SOCKET_DIR" -p "$PG_PORT" --superuser root
  fi
fi

if [ -z "${DOCKER_HOST:-}" ]; then
  start_docker
fi
