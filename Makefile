# vault-plugin-secrets-letsencrypt — build, demo and tests.
VERSION   ?= v0.1.0
PLUGIN    := vault-plugin-secrets-letsencrypt
MODULE    := github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt
BIN_DIR   := $(CURDIR)/bin
PLUGIN_BIN:= $(BIN_DIR)/plugins/$(PLUGIN)

export LE_PLUGIN_BIN     := $(PLUGIN_BIN)
export LE_PLUGIN_VERSION := $(VERSION)

.PHONY: all build tools test test-unit test-e2e demo demo-stop bench bench-tick fmt vet fuzz clean

all: build

## build: compile the plugin into bin/plugins/ with its version.
build:
	go build -trimpath -ldflags "-X $(MODULE)/backend.Version=$(VERSION)" -o $(PLUGIN_BIN) ./cmd/$(PLUGIN)

## tools: install or build the real parts (vault, Pebble, BIND, consul-template, lego) when missing.
tools:
	bash scripts/tools.sh all

## test: unit tests, then the end-to-end suite against real Vault, Pebble and BIND.
test: vet test-unit test-e2e

test-unit:
	go test -race -count=1 ./...

test-e2e: build tools
	bash scripts/e2e.sh

## demo: a Vault dev server with the plugin, Pebble and BIND; issues a certificate and shows it.
demo: build
	bash scripts/tools.sh vault pebble bind
	bash scripts/demo.sh

demo-stop:
	bash scripts/env-down.sh $(CURDIR)/.demo

## bench: time issuance through Vault against the lego CLI (same Pebble and BIND), and the
## periodic tick with 10,000 stored certificates (none due, 100 due).
bench: build bench-tick
	bash scripts/tools.sh vault pebble bind lego
	bash scripts/bench.sh

bench-tick:
	go test -run '^$$' -bench BenchmarkPeriodicTick ./backend/

fuzz:
	go test -run '^$$' -fuzz FuzzCanonicalDomain -fuzztime 30s ./paths/

vet:
	go vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BIN_DIR)
