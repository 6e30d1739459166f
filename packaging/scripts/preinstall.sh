#!/bin/sh
# Creates the system user stale-exporter runs as, once.
set -e
if ! getent group stale-exporter >/dev/null; then
  groupadd --system stale-exporter
fi
if ! getent passwd stale-exporter >/dev/null; then
  useradd --system --gid stale-exporter --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin --comment "stale-exporter" stale-exporter
fi
