#!/usr/bin/env bash
# Installs or builds the real parts the demo and the end-to-end tests need, when they are missing:
# the vault binary (built from source, cached), Pebble, consul-template, the lego CLI (for the benchmark)
# and BIND 9 (Debian package). Prints the tools directory on stdout as its last line.
#
# Usage: scripts/tools.sh [vault|pebble|consul-template|lego|bind|all]...
set -euo pipefail

TOOLS_DIR="${LE_TOOLS_DIR:-$HOME/.cache/vault-plugin-secrets-letsencrypt}"
BIN="$TOOLS_DIR/bin"
mkdir -p "$BIN"

VAULT_VERSION="v1.21.0"
VAULT_SDK_VERSION="v0.20.0"
PEBBLE_VERSION="v2.10.1"
CONSUL_TEMPLATE_VERSION="v0.41.1"
LEGO_VERSION="v4.35.2"

log() { printf 'tools: %s\n' "$*" >&2; }

build_vault() {
  if [ -x "$BIN/vault" ] && "$BIN/vault" version 2>/dev/null | grep -q "${VAULT_VERSION}"; then return; fi
  log "building vault ${VAULT_VERSION} from source (about 12 minutes on two cores, cached in $BIN)"
  local src="$TOOLS_DIR/src/vault"
  mkdir -p "$src"
  cat > "$src/main.go" <<'GO'
// Command vault is the real HashiCorp Vault CLI and server, built from its released module.
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() {
	os.Exit(command.Run(os.Args[1:]))
}
GO
  if [ ! -f "$src/go.mod" ]; then
    (cd "$src" && go mod init local/vaultbin >/dev/null 2>&1 &&
      go mod edit -require="github.com/hashicorp/vault@${VAULT_VERSION}" \
        -require="github.com/hashicorp/vault/sdk@${VAULT_SDK_VERSION}" \
        -require="github.com/hashicorp/vault/api@v1.22.0")
  fi
  (cd "$src" && GOFLAGS=-mod=mod go mod tidy >&2 && \
    go build -o "$BIN/vault.tmp" \
      -ldflags "-X github.com/hashicorp/vault/version.Version=${VAULT_VERSION#v}" . >&2)
  mv "$BIN/vault.tmp" "$BIN/vault"
}

go_install() { # name module@version
  local name="$1" mod="$2"
  if [ -x "$BIN/$name" ]; then return; fi
  log "installing $mod"
  GOBIN="$BIN" go install "$mod" >&2
}

# lego's CLI: `go install …/lego@version` asks the proxy for the module's version list, which some
# proxies refuse, so build it from a small module that names the version.
build_lego() {
  if [ -x "$BIN/lego" ]; then return; fi
  log "building the lego CLI ${LEGO_VERSION}"
  local src="$TOOLS_DIR/src/lego"
  mkdir -p "$src"
  printf 'module local/legobin\n\ngo 1.26\n\nrequire github.com/go-acme/lego/v4 %s\n' "$LEGO_VERSION" > "$src/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/go-acme/lego/v4/cmd/lego"\n' > "$src/tools.go"
  (cd "$src" && GOFLAGS=-mod=mod go mod tidy >&2 && go build -o "$BIN/lego.tmp" github.com/go-acme/lego/v4/cmd/lego >&2)
  mv "$BIN/lego.tmp" "$BIN/lego"
}

install_bind() {
  if command -v named >/dev/null 2>&1 && command -v tsig-keygen >/dev/null 2>&1; then return; fi
  if [ "$(id -u)" != 0 ]; then
    log "BIND 9 is missing: run 'sudo apt-get install bind9 bind9-utils' and try again"; exit 1
  fi
  log "installing BIND 9 from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y bind9 bind9-utils >&2 || { apt-get update >&2 && apt-get install -y bind9 bind9-utils >&2; }
}

want=("$@")
[ ${#want[@]} -gt 0 ] || want=(all)
for w in "${want[@]}"; do
  case "$w" in
    vault) build_vault ;;
    pebble) go_install pebble "github.com/letsencrypt/pebble/v2/cmd/pebble@${PEBBLE_VERSION}" ;;
    consul-template) go_install consul-template "github.com/hashicorp/consul-template@${CONSUL_TEMPLATE_VERSION}" ;;
    lego) build_lego ;;
    bind) install_bind ;;
    all)
      install_bind
      go_install pebble "github.com/letsencrypt/pebble/v2/cmd/pebble@${PEBBLE_VERSION}"
      go_install consul-template "github.com/hashicorp/consul-template@${CONSUL_TEMPLATE_VERSION}"
      build_lego
      build_vault
      ;;
    *) log "unknown tool $w"; exit 2 ;;
  esac
done
echo "$TOOLS_DIR"
