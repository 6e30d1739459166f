#!/bin/sh
# Gives the user the Docker socket's group (the socket is root-equivalent:
# that is what removing containers takes), an empty tokens file it can read,
# and tells systemd about the units. Nothing is started: configure the store
# in /etc/default/stale-exporter first, then
#   systemctl enable --now stale-exporter.socket stale-exporter.service
set -e
if getent group docker >/dev/null; then
  usermod --append --groups docker stale-exporter
else
  echo "stale-exporter: no docker group yet; once Docker is installed: usermod -aG docker stale-exporter" >&2
fi
chown root:stale-exporter /etc/default/stale-exporter /etc/stale-exporter
chmod 0640 /etc/default/stale-exporter
chmod 0750 /etc/stale-exporter
if [ ! -e /etc/stale-exporter/tokens.yml ]; then
  printf 'tokens:\n' >/etc/stale-exporter/tokens.yml
  chown stale-exporter:stale-exporter /etc/stale-exporter/tokens.yml
  chmod 0600 /etc/stale-exporter/tokens.yml
fi
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null || true
fi
