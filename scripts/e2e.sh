#!/usr/bin/env bash
# Runs the end-to-end tests (e2e/, a separate Go module) against a real environment: a Vault dev
# server with the plugin, Pebble and BIND 9, all on 127.0.0.1 (started and stopped by the tests
# themselves through scripts/env-up.sh / env-down.sh).
#
# Usage: scripts/e2e.sh [go test flags, e.g. -run TestIssueEndToEnd]
# Environment: LE_PLUGIN_BIN (default bin/plugins/vault-plugin-secrets-letsencrypt, from `make build`),
#              LE_PLUGIN_VERSION (default v0.1.0), LE_TOOLS_DIR, LE_E2E_STATE_DIR (keep state/logs there).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"
le_prepare e2e

echo "e2e: plugin $LE_PLUGIN_BIN ($LE_PLUGIN_VERSION), tools in $LE_TOOLS_DIR" >&2
cd "$REPO/e2e"
exec go test -count=1 -v -timeout 55m -parallel 6 "$@" ./...
