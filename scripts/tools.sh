#!/usr/bin/env bash
# Installs what the demo, the tests, the lint and the benchmark run, when it is missing: the commands of
# scripts/requirements.txt (the one list: scripts/doctor.sh checks it, scripts/scripts_test.go keeps it
# complete). By SOURCE:
#   apt    Debian packages (BIND 9, dig, curl, ...): apt-get install -y, and apt-get update then again
#          only if that fails. Needs root; otherwise it prints the sudo apt-get line to run and fails.
#   tools  Go programs, built into ~/.cache/vault-plugin-secrets-letsencrypt/bin (LE_TOOLS_DIR/bin):
#          vault (from source: 20 to 30 minutes the first time), pebble, consul-template, staticcheck, lego.
#          Builds print what they do and a progress line every 30 s (scripts/progress.sh); binaries,
#          downloaded modules and compiled packages stay cached, so the next run takes a second.
#   go     the Go toolchain: install it yourself.
# Prints the tools directory on stdout as its last line.
#
# Usage: scripts/tools.sh [WHAT...]   WHAT: a command (vault, dig, ...), a purpose (demo, e2e, lint,
#                                     bench, dist, test), bind, apt, tools or all (the default)
#        scripts/tools.sh --plan [WHAT...]   prints how each command would be installed; installs nothing
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
. "$SCRIPT_DIR/lib.sh"
# The Debian packages it installs from that list include BIND's programs: named and tsig-keygen
# (bind9), named-checkconf and named-checkzone (bind9-utils), dig and nsupdate (bind9-dnsutils);
# nginx (the HTTP-01 tests' reverse proxy) and certbot (the migration tests and make bench);
# prometheus and promtool (package prometheus: the monitoring test and docs/operator.md); jq (the
# docs' JSON pipes) and zip (make dist).
# Nomad is not installed and no test runs it: e2e/testdata/nomad holds a job file whose template
# blocks the real consul-template renders (Nomad embeds consul-template; see README).
le_load_requirements

TOOLS_DIR="$(le_tools_dir)"
BIN="$TOOLS_DIR/bin"

# What building vault needs besides github.com/hashicorp/vault itself (requirements.txt has its version).
VAULT_SDK_VERSION="v0.20.0"
VAULT_API_VERSION="v1.22.0"

log() { printf 'tools: %s\n' "$*" >&2; }
progress() { bash "$SCRIPT_DIR/progress.sh" "$@"; }

# ---------------------------------------------------------------- builders of the tools entries
# build_NAME PKG@VERSION builds NAME into $BIN; commands without one are installed with go_install.

build_vault() {
  local what="$1" version="${1##*@}" src="$TOOLS_DIR/src/vault" total
  log "vault ${version}: building HashiCorp Vault from source, the first time only: 20 to 30 minutes on 2 cores"
  log "vault: (downloads about 620 modules, then compiles about 2,600 packages; progress every 30 s; cached in $BIN)"
  mkdir -p "$src"
  cat >"$src/main.go" <<'GO'
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
      go mod edit -require="${what%@*}@${version}" \
        -require="github.com/hashicorp/vault/sdk@${VAULT_SDK_VERSION}" \
        -require="github.com/hashicorp/vault/api@${VAULT_API_VERSION}")
  fi
  (cd "$src" && progress vault-modules "vault: resolving and downloading its modules (go mod tidy)" -- \
    env GOFLAGS="${GOFLAGS:-} -mod=mod" go mod tidy)
  total="$(cd "$src" && go list -deps . 2>/dev/null | grep -c .)" || total=""
  (cd "$src" && LE_PROGRESS_TOTAL="$total" progress vault "vault: compiling${total:+ $total packages}" -- \
    go build -v -o "$BIN/vault.tmp" -ldflags "-X github.com/hashicorp/vault/version.Version=${version#v}" .)
  mv "$BIN/vault.tmp" "$BIN/vault"
}

# lego's CLI: `go install …/lego@version` asks the proxy for the module's version list, which some
# proxies refuse, so build it from a small module that names the version.
build_lego() {
  local what="$1" version="${1##*@}" src="$TOOLS_DIR/src/lego"
  mkdir -p "$src"
  printf 'module local/legobin\n\ngo 1.26\n\nrequire github.com/go-acme/lego/v4 %s\n' "$version" >"$src/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "${what%@*}" >"$src/tools.go"
  (cd "$src" && progress lego-modules "lego ${version}: resolving and downloading its modules (go mod tidy)" -- \
    env GOFLAGS="${GOFLAGS:-} -mod=mod" go mod tidy)
  (cd "$src" && progress lego "lego: compiling the lego CLI" -- go build -v -o "$BIN/lego.tmp" "${what%@*}")
  mv "$BIN/lego.tmp" "$BIN/lego"
}

go_install() { # NAME PKG@VERSION
  progress "$1" "go install $2 (into $BIN)" -- env GOBIN="$BIN" go install -v "$2"
}

# ---------------------------------------------------------------- Debian packages

install_apt() { # PACKAGE...
  if [ "$(id -u)" != 0 ]; then
    log "missing Debian packages; install them as root, then run this again:"
    log "  sudo apt-get install -y $*"
    return 1
  fi
  log "installing Debian packages: $* (apt-get install -y, about a minute)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "$@" >&2 || {
    log "apt-get install failed; updating the package lists (apt-get update) and trying again"
    apt-get update -q >&2 && apt-get install -y -q "$@" >&2
  }
}

# ---------------------------------------------------------------- what to install

plan=0
if [ "${1:-}" = "--plan" ]; then plan=1; shift; fi
want=("$@")
[ ${#want[@]} -gt 0 ] || want=(all)
sel=()
for w in "${want[@]}"; do
  idx="$(le_req_select "$w")" || { log "unknown tool or purpose '$w' (see scripts/requirements.txt)"; exit 2; }
  for i in $idx; do
    case " ${sel[*]:-} " in *" $i "*) ;; *) sel+=("$i") ;; esac
  done
done

# how I: the command that installs entry I (for --plan); fails for an entry tools.sh cannot install.
how() {
  local i="$1" what="${LE_REQ_WHAT[$1]}"
  case "${LE_REQ_SRC[$i]}" in
    apt) echo "apt-get install -y $what" ;;
    go) echo "part of the Go toolchain $what: install Go yourself" ;;
    tools)
      case "$what" in *?@v?*) ;; *) echo "ERROR: tools entry '$what' is not PKG@VERSION"; return 1 ;; esac
      if declare -F "build_${LE_REQ_CMD[$i]}" >/dev/null; then
        echo "build_${LE_REQ_CMD[$i]} $what into $BIN"
      else
        echo "go install $what into $BIN"
      fi ;;
    *) echo "ERROR: unknown source '${LE_REQ_SRC[$i]}'"; return 1 ;;
  esac
}

if [ $plan = 1 ]; then
  rc=0
  for i in "${sel[@]}"; do
    line="$(how "$i")" || rc=1
    printf '%s\t%s\n' "${LE_REQ_CMD[$i]}" "$line"
  done
  exit $rc
fi

mkdir -p "$BIN"
missing() { # prints the selected indices whose command is missing
  local i
  for i in "${sel[@]}"; do le_req_check "$i" || echo "$i"; done
}
todo="$(missing)"
if [ -n "$todo" ]; then
  # One install at a time: a second run (another make target, an e2e test) waits, then finds it done.
  exec 9>"$TOOLS_DIR/.lock"
  if ! flock -n 9; then
    log "another scripts/tools.sh is installing (lock $TOOLS_DIR/.lock); waiting for it to finish"
    flock 9
    todo="$(missing)"
  fi
fi

pkgs=() builds=() failed=0
for i in $todo; do
  case "${LE_REQ_SRC[$i]}" in
    apt) case " ${pkgs[*]:-} " in *" ${LE_REQ_WHAT[$i]} "*) ;; *) pkgs+=("${LE_REQ_WHAT[$i]}") ;; esac ;;
    tools) builds+=("$i") ;;
    go) log "${LE_REQ_CMD[$i]} not found: install Go ${LE_REQ_WHAT[$i]} or later and put it on PATH"; failed=1 ;;
    *) log "${LE_REQ_CMD[$i]}: unknown source '${LE_REQ_SRC[$i]}' in scripts/requirements.txt"; failed=1 ;;
  esac
done
if [ ${#pkgs[@]} -gt 0 ]; then install_apt "${pkgs[@]}" || failed=1; fi
for i in "${builds[@]}"; do
  name="${LE_REQ_CMD[$i]}" what="${LE_REQ_WHAT[$i]}"
  le_req_check "$i" || [ "$LE_REQ_PROBLEM" = "not built yet" ] || log "$name: rebuilding ($LE_REQ_PROBLEM)"
  if declare -F "build_$name" >/dev/null; then "build_$name" "$what"; else go_install "$name" "$what"; fi
  le_req_check "$i" || { log "$name: still wrong after the build: $LE_REQ_PROBLEM"; failed=1; }
done
[ $failed = 0 ] || exit 1
echo "$TOOLS_DIR"
