# vault-plugin-secrets-letsencrypt — build, demo and tests.
VERSION   ?= v0.1.0
PLUGIN    := vault-plugin-secrets-letsencrypt
MODULE    := github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt
BIN_DIR   := $(CURDIR)/bin
PLUGIN_BIN:= $(BIN_DIR)/plugins/$(PLUGIN)

# Values given on the command line reach recipes through the environment only, taken as written
# ($(value ...): make does not expand them) and quoted by the shell ("$$VAR"): a VERSION such as a git
# tag name holding $(...), backquotes or quotes runs nothing.
export LE_PLUGIN_BIN     := $(PLUGIN_BIN)
export LE_PLUGIN_VERSION := $(value VERSION)
unexport VERSION PLATFORMS DIST_DIR

.PHONY: all build dist tools doctor test test-unit test-e2e demo demo-stop bench bench-tick fmt vet lint fuzz clean \
	need-demo need-test need-bench

all: build

## build: compile the plugin into bin/plugins/ with its version (the first build downloads and
## compiles its dependencies: about 5 minutes on two cores; afterwards Go's caches make it seconds).
build:
	@bash scripts/progress.sh plugin "building $(PLUGIN_BIN) (the first time about 5 minutes: downloads and compiles the dependencies; cached afterwards)" -- \
		go build -v -trimpath -ldflags "-X $(MODULE)/backend.Version=$$LE_PLUGIN_VERSION" -o $(PLUGIN_BIN) ./cmd/$(PLUGIN)

## dist: release artifacts in dist/ (DIST_DIR): for each of PLATFORMS (default linux/amd64 linux/arm64
## darwin/amd64 darwin/arm64) the binary vault-plugin-secrets-letsencrypt_<version>_<os>_<arch> and its
## .zip, SHA256SUMS, and the vault plugin register / secrets tune / plugin reload lines to run. The version
## is VERSION when given on the command line or in the environment, else the git tag at HEAD, else a
## development version (v0.1.1-dev.3+g<sha>). Reproducible: the same source gives the same sha256.
## Cross-compiling every lego DNS provider takes minutes per platform the first time.
dist: export LE_DIST_VERSION = $(if $(filter command line environment environment override,$(origin VERSION)),$(value VERSION))
dist: export LE_DIST_PLATFORMS = $(value PLATFORMS)
dist: export LE_DIST_DIR = $(value DIST_DIR)
dist:
	@bash scripts/doctor.sh --install --quiet dist >&2
	@VERSION="$$LE_DIST_VERSION" PLATFORMS="$$LE_DIST_PLATFORMS" DIST_DIR="$$LE_DIST_DIR" bash scripts/dist.sh

## doctor: check every external command the scripts and tests run (scripts/requirements.txt): one line
## each, and the one command that installs what is missing. Installs nothing.
doctor:
	@bash scripts/doctor.sh

## tools: install everything scripts/requirements.txt lists that is missing (Debian packages; vault
## built from source, about 20 minutes the first time; Pebble, consul-template, staticcheck, lego).
tools:
	@bash scripts/tools.sh all >/dev/null

## test: lint, unit tests, then the end-to-end suite against real Vault, Pebble, BIND and consul-template.
test: need-test lint test-unit test-e2e

test-unit:
	go test -race -count=1 ./...

test-e2e: need-test build
	bash scripts/e2e.sh

## demo: a Vault dev server with the plugin, Pebble and BIND; issues a certificate and shows it.
demo: need-demo build
	bash scripts/demo.sh

demo-stop:
	bash scripts/env-down.sh $(CURDIR)/.demo

## bench: time issuance through Vault (API and CLI) against the lego CLI and certbot (same Pebble and
## BIND), fairness between tenants, forced renewals and the order budget against baselines without them
## (e2e/bench_fairness_test.go), reads against KV v2 built in and as an external plugin
## (e2e/bench_reads_test.go), and 10,000 certificates in one mount: mount start, plugin RSS, list,
## status/certs and the periodic tick (BenchmarkPeriodicTick, as bench-tick); ends with one table.
bench: need-bench build
	bash scripts/bench.sh

bench-tick:
	go test -run '^$$' -bench BenchmarkPeriodicTick ./backend/

fuzz:
	go test -run '^$$' -fuzz FuzzCanonicalDomain -fuzztime 30s ./paths/

## lint: gofmt, go vet and staticcheck (pinned in scripts/requirements.txt, installed into the tools
## cache when missing) over both modules: the plugin and e2e/. CI runs it as part of make test.
lint:
	@bash scripts/lint.sh

vet:
	go vet ./...
	cd e2e && go vet -tags bench ./...

fmt:
	find . \( -name .git -o -name testdata -o -name bin -o -name .demo -o -name .e2e \) -prune -o \
		-name '*.go' -type f -exec gofmt -w {} +

# need-X: the doctor's report for make X; installs what is missing (scripts/tools.sh), then fails
# unless everything X runs is there.
need-demo need-test need-bench:
	@bash scripts/doctor.sh --install $(@:need-%=%)

clean:
	rm -rf $(BIN_DIR) $(CURDIR)/dist
