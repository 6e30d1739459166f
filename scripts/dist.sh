#!/usr/bin/env bash
# Builds a snapshot release into dist/ with goreleaser (nothing is
# published): linux amd64 and arm64 tarballs, .deb and .rpm packages, and
# sha256sums.txt. Installs goreleaser (GORELEASER_VERSION, from the Go
# module proxy) into GOPATH/bin when it is missing, then lists what it made.
set -euo pipefail
cd "$(dirname "$0")/.."

version=${GORELEASER_VERSION:-v2.15.1}
bin="$(go env GOPATH)/bin/goreleaser"
if ! "$bin" --version 2>/dev/null | grep -Eq "GitVersion:\s*v?${version#v}$"; then
  echo "installing goreleaser $version"
  GOFLAGS=-mod=mod go install "github.com/goreleaser/goreleaser/v2@$version"
fi

REVISION=$(git rev-parse HEAD)
SHORT_REVISION=$(git rev-parse --short=12 HEAD)
BRANCH=$(git rev-parse --abbrev-ref HEAD)
export REVISION SHORT_REVISION BRANCH
start=$SECONDS
"$bin" release --snapshot --clean
echo "goreleaser took $((SECONDS - start))s; dist/:"
find dist -maxdepth 1 -type f \( -name '*.tar.gz' -o -name '*.deb' -o -name '*.rpm' -o -name 'sha256sums.txt' \) \
  -printf '%10s  %f\n' | sort -k2
