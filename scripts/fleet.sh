#!/usr/bin/env bash
# The simulated fleet's load run (internal/fleet/load): builds the exporter,
# then measures 10 and 20 simulated engines of 1,000 instances each against a
# PostgreSQL cluster of its own, with the events path off and on, and prints
# the table. Needs root (the cluster runs as postgres) and PostgreSQL's
# server binaries. Arguments go to the load command (-engines, -window, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
make -s build BIN="$bin/stale-exporter"
go run ./internal/fleet/load -binary "$bin/stale-exporter" "$@"
