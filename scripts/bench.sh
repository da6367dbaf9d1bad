#!/usr/bin/env bash
# Benchmark: N single-certificate issuances through Vault (vault write, which waits, + vault read;
# and the same through the HTTP API), with the lego CLI (lego run) and with certbot (DNS-01 through
# a --manual hook that runs nsupdate), against the same Pebble + BIND 9 environment on 127.0.0.1.
# Prints every run's seconds and min/median/max for each. Then the fairness benchmark
# (TestBenchFairness): fair workers, forced_renewal_interval and the order budget vs baselines.
# Then issue 10's: reads at 16 readers against KV v2 built in and as an external plugin
# (TestBenchReads), 10,000 certificates in one mount (TestBenchScale: mount start, plugin RSS,
# list, status/certs, the periodic tick), 1,000 certificates declared at once against a CA enforcing
# Let's Encrypt's limits scaled down in time (TestBench1000OrderBudget: time against the minimum the
# limits allow, 429 answers, renew_at spread), and at the end one table of those figures side by side.
#
# Usage: scripts/bench.sh        Environment: LE_BENCH_N (default 5), LE_BENCH_READ_SECONDS (10),
#                                LE_BENCH_SCALE_N (10000), LE_BENCH1K_SCALE (240: time divisor of
#                                Let's Encrypt's limits), LE_BENCH_RUN (a go test -run pattern: a
#                                part only), LE_PLUGIN_BIN, LE_PLUGIN_VERSION.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"
le_prepare bench
export LE_BENCH_N="${LE_BENCH_N:-5}"

bash "$REPO/scripts/tools.sh" lego vault-plugin-secrets-kv >/dev/null
export LE_LEGO_BIN="$LE_TOOLS_DIR/bin/lego"
export LE_KV_PLUGIN_BIN="$LE_TOOLS_DIR/bin/vault-plugin-secrets-kv"
"$LE_LEGO_BIN" --version >&2

# Every benchmark adds its figures to this table, printed at the end.
LE_BENCH_TABLE="$(mktemp)"
export LE_BENCH_TABLE
trap 'rm -f "$LE_BENCH_TABLE"' EXIT

cd "$REPO/e2e"
set +e
go test -tags bench -count=1 -v -timeout 60m \
  -run "${LE_BENCH_RUN:-^(TestBenchIssuance|TestBenchFairness|TestBenchReads|TestBenchScale|TestBench1000OrderBudget)\$}" . 2>&1 |
  grep -v -E '^(=== RUN|--- PASS|PASS$|ok )'
rc=${PIPESTATUS[0]}
if [ -s "$LE_BENCH_TABLE" ]; then
  printf '\nbench: issue 10, side by side (2 cores shared with everything else: figures are noisy)\n'
  cat "$LE_BENCH_TABLE"
fi
exit "$rc"
