#!/usr/bin/env bash
# Benchmark: N single-certificate issuances through Vault (vault write, which waits, + vault read)
# and N with the lego CLI (lego run), against the same Pebble + BIND 9 environment on 127.0.0.1.
# Prints every run's seconds and min/median/max for both. Then the fairness benchmark
# (TestBenchFairness): fair workers, forced_renewal_interval and the order budget vs baselines.
#
# Usage: scripts/bench.sh        Environment: LE_BENCH_N (default 5), LE_PLUGIN_BIN, LE_PLUGIN_VERSION.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"
le_prepare bench
export LE_BENCH_N="${LE_BENCH_N:-5}"

bash "$REPO/scripts/tools.sh" lego >/dev/null
export LE_LEGO_BIN="$LE_TOOLS_DIR/bin/lego"
"$LE_LEGO_BIN" --version >&2

cd "$REPO/e2e"
set +e
go test -tags bench -count=1 -v -timeout 30m -run '^(TestBenchIssuance|TestBenchFairness)$' . 2>&1 |
  grep -v -E '^(=== RUN|--- PASS|PASS$|ok )'
rc=${PIPESTATUS[0]}
exit "$rc"
