GO ?= go
BIN := stale-exporter
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/prometheus/common/version.Version=$(VERSION) \
	-X github.com/prometheus/common/version.Revision=$(shell git rev-parse HEAD 2>/dev/null)

.PHONY: build test test-deps vet bench run

build:
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/stale-exporter

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
	$(GO) test -p 1 -run '^$$' -bench 'Scan' -benchtime 20x ./internal/scan/
	$(GO) test -p 1 -run '^$$' -bench 'MeasureStale' -benchtime 5x ./internal/scan/
	$(GO) test -p 1 -run '^$$' -bench . -benchtime 5x ./cleanup/

# Installs and starts what it needs, then runs the exporter (scripts/run.sh).
run:
	bash scripts/run.sh
