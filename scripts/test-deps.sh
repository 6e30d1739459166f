#!/usr/bin/env bash
# Makes this machine ready for the tests: installs what is missing (Debian,
# as root), starts PostgreSQL and dockerd if they are not running.
set -euo pipefail

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v prometheus >/dev/null && command -v promtool >/dev/null || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null && command -v amtool >/dev/null || need+=(prometheus-alertmanager)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v pg_ctlcluster >/dev/null || need+=(postgresql)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing ${need[*]}: install them or run as root" >&2
    exit 1
  fi
  echo "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ -z "${STALE_EXPORTER_TEST_DSN:-}" ]; then
  if ! pg_isready -q -h /var/run/postgresql; then
    cluster=$(pg_lsclusters -h | awk 'NR==1 {print $1, $2}')
    # shellcheck disable=SC2086
    setsid pg_ctlcluster $cluster start
  fi
  for _ in $(seq 1 30); do pg_isready -q -h /var/run/postgresql && break; sleep 1; done
  if [ "$(id -u)" = 0 ]; then
    # Tests connect over the socket as the current user.
    su postgres -c "psql -tAc \"SELECT 1 FROM pg_roles WHERE rolname = 'root'\"" | grep -q 1 ||
      su postgres -c "createuser --superuser root"
  fi
fi

if [ -z "${DOCKER_HOST:-}" ] && ! docker info >/dev/null 2>&1; then
  echo "starting dockerd"
  # Its own session: it outlives whatever started it.
  setsid nohup dockerd >/tmp/stale-exporter-dockerd.log 2>&1 </dev/null &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start:" >&2; tail -20 /tmp/stale-exporter-dockerd.log >&2; exit 1; }
fi
