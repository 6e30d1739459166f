#!/bin/sh
# On purge, removes the tokens file the package made; the user stays, as
# Debian's packages leave system users, so that files it owned keep a name.
set -e
if [ "$1" = purge ]; then
  rm -f /etc/stale-exporter/tokens.yml
  rmdir /etc/stale-exporter 2>/dev/null || true
fi
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null || true
fi
