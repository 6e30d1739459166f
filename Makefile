GO ?= go
BIN := stale-exporter
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
VERSION_PKG := github.com/prometheus/common/version
LDFLAGS := -s -w -X $(VERSION_PKG).Version=$(VERSION) \
	-X $(VERSION_PKG).Revision=$(shell git rev-parse HEAD 2>/dev/null) \
	-X $(VERSION_PKG).Branch=$(shell git rev-parse --abbrev-ref HEAD 2>/dev/null) \
	-X $(VERSION_PKG).BuildUser=$(shell id -un)@$(shell hostname) \
	-X $(VERSION_PKG).BuildDate=$(shell date -u +%Y%m%d-%H:%M:%S)

.PHONY: build test test-deps vet bench fleet run dist

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/stale-exporter

# Installs and starts what the tests need (PostgreSQL, dockerd, Prometheus
# tools), then vets and runs every test. Packages run one at a time: they
# share the Docker engine.
test: test-deps vet
	$(GO) test -p 1 -count=1 -timeout 30m ./...

test-deps:
	bash scripts/test-deps.sh

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt needed'; exit 1; }
	$(GO) vet ./...

bench: test-deps
	$(GO) test -p 1 -run '^$$' -bench 'Scan|SteadyScrape' -benchtime 20x ./internal/scan/
	$(GO) test -p 1 -run '^$$' -bench 'MeasureStale' -benchtime 5x ./internal/scan/
	$(GO) test -p 1 -run '^$$' -bench . -benchtime 5x ./cleanup/

# The simulated fleet: 10 and 20 engines of 1,000 instances, events off and on.
fleet:
	bash scripts/fleet.sh

# A snapshot release into dist/: tarballs, .deb, .rpm, checksums (scripts/dist.sh).
dist:
	bash scripts/dist.sh

# Installs and starts what it needs, then runs the exporter (scripts/run.sh).
run:
	bash scripts/run.sh
