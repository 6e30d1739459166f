#!/bin/sh
# Stops the service before its files go.
set -e
if [ -d /run/systemd/system ]; then
  systemctl stop stale-exporter.service stale-exporter.socket >/dev/null 2>&1 || true
fi
