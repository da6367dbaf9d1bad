#!/usr/bin/env bash
# Benchmark: N single-certificate issuances through Vault (vault write, which waits, + vault read)
# and N with the lego CLI (lego run), against the same Pebble + BIND 9 environment on 127.0.0.1.
# Prints every run's seconds and min/median/max for both.
#
# Usage: scripts/bench.sh        Environment: LE_BENCH_N (default 5), LE_PLUGIN_BIN, LE_PLUGIN_VERSION.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export LE_PLUGIN_BIN="${LE_PLUGIN_BIN:-$REPO/bin/plugins/vault-plugin-secrets-letsencrypt}"
export LE_PLUGIN_VERSION="${LE_PLUGIN_VERSION:-v0.1.0}"
export LE_BENCH_N="${LE_BENCH_N:-5}"
LEGO_VERSION="v4.35.2"

if [ ! -f "$LE_PLUGIN_BIN" ]; then
  echo "bench: plugin binary not found at $LE_PLUGIN_BIN: run 'make build'" >&2
  exit 1
fi

LE_TOOLS_DIR="$(bash "$REPO/scripts/tools.sh" vault pebble bind | tail -n 1)"
export LE_TOOLS_DIR

bash "$REPO/scripts/tools.sh" lego >/dev/null
export LE_LEGO_BIN="$LE_TOOLS_DIR/bin/lego"
"$LE_LEGO_BIN" --version >&2

cd "$REPO/e2e"
set +e
go test -tags bench -count=1 -v -timeout 30m -run '^TestBenchIssuance$' . 2>&1 |
  grep -v -E '^(=== RUN|--- PASS|PASS$|ok )'
rc=${PIPESTATUS[0]}
exit "$rc"
