#!/usr/bin/env bash
# Runs the end-to-end tests (e2e/, a separate Go module) against a real environment: a Vault dev
# server with the plugin, Pebble and BIND 9, all on 127.0.0.1 (started and stopped by the tests
# themselves through scripts/env-up.sh / env-down.sh).
#
# Usage: scripts/e2e.sh [go test flags, e.g. -run TestIssueEndToEnd]
#        Without -run/-skip/-bench, TestSoakNeverExpired runs in a second go test process beside the
#        rest, from the start (see below).
# Environment: LE_PLUGIN_BIN (default bin/plugins/vault-plugin-secrets-letsencrypt, from `make build`),
#              LE_PLUGIN_VERSION (default v0.1.0), LE_TOOLS_DIR, LE_E2E_STATE_DIR (keep state/logs there).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"
le_prepare e2e

echo "e2e: plugin $LE_PLUGIN_BIN ($LE_PLUGIN_VERSION), tools in $LE_TOOLS_DIR" >&2
cd "$REPO/e2e"
GO_TEST=(go test -count=1 -v -timeout 55m -parallel 6)
SOAK='^TestSoakNeverExpired$'

# With a test selection (-run, -skip, -bench), one go test run as asked.
for arg in "$@"; do
  case "$arg" in
    -run|-run=*|-skip|-skip=*|-bench|-bench=*|-test.run*|-test.skip*|-test.bench*) exec "${GO_TEST[@]}" "$@" ./... ;;
  esac
done

# The whole suite: the 30-minute soak runs in a go test process of its own, started now. Inside the
# main run it would wait for one of the -parallel slots, in no set order, and could start after most
# other tests, its 30 minutes then coming on top of theirs. Its output follows the main run's.
soak_log="$(mktemp "${TMPDIR:-/tmp}/le-e2e-soak.XXXXXX")"
soak_env=()
if [ -n "${LE_E2E_STATE_DIR:-}" ]; then
  soak_env=(LE_E2E_STATE_DIR="$LE_E2E_STATE_DIR/soak-run")
fi
env "${soak_env[@]}" "${GO_TEST[@]}" -run "$SOAK" "$@" ./... >"$soak_log" 2>&1 &
soak_pid=$!
trap 'kill "$soak_pid" 2>/dev/null || true' INT TERM
rc=0
"${GO_TEST[@]}" -skip "$SOAK" "$@" ./... || rc=$?
echo "e2e: the main run ended (exit $rc); waiting for the soak's go test process" >&2
soak_rc=0
wait "$soak_pid" || soak_rc=$?
echo "===== the soak's go test process (exit $soak_rc), output from $soak_log =====" >&2
cat "$soak_log"
rm -f "$soak_log"
if [ "$rc" -eq 0 ]; then rc=$soak_rc; fi
exit "$rc"
