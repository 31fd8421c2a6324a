# Blueprint — the two commands a new user needs are `make run` and `make test`.
SHELL := /bin/bash
PGBIN := $(shell ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
export PATH := $(PATH):/usr/local/go/bin$(if $(PGBIN),:$(PGBIN))
GO ?= go
BIN := bin/blueprint
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/blueprint-media/blueprint/internal/cli.Version=$(VERSION)

.PHONY: run build test test-short lint bench clean deps

## run: build and start every role on embedded engines (http://localhost:8080)
run: build
	@scripts/deps.sh run
	./$(BIN) --log-format text

## build: the single binary
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/blueprint

## test: the whole suite — unit, conformance, fuzz seeds, end-to-end, browser
test:
	@scripts/deps.sh test
	$(GO) vet ./...
	@test -z "$$(gofmt -l cmd internal client bench)" || { echo "gofmt needed:"; gofmt -l cmd internal client bench; exit 1; }
	$(GO) test -race -count=1 -timeout 25m ./...
	@echo "the same store tests on PostgreSQL:"
	BLUEPRINT_TEST_DB=postgres $(GO) test -race -count=1 -timeout 10m ./internal/outbox ./internal/dispatch ./internal/notify ./internal/coldstore
	BLUEPRINT_TEST_DB=postgres $(GO) test -count=1 -timeout 10m ./internal/archive
	BLUEPRINT_TEST_DB=postgres $(GO) test -race -count=1 -timeout 10m ./internal/social \
		-run 'TestFeedHybridMatchesOracle/threshold=3/seed=1|TestFanOutPaths|TestFollowErrors|TestConcurrentLikes|TestComments'

## test-short: everything except the end-to-end tests
test-short:
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /internal/e2e)

## bench: side-by-side benchmarks (see bench/README.md)
bench:
	bench/abr/run.sh
	$(GO) run ./bench/pipeline
	$(GO) run ./bench/cache

clean:
	rm -rf bin
