# Shared by the demo, e2e and bench scripts (source it; it defines and exports, runs nothing else).
#
# le_prepare NAME: sets REPO-relative defaults for LE_PLUGIN_BIN and LE_PLUGIN_VERSION, fails with a
# how-to when the plugin binary is missing, and installs or builds vault, Pebble and BIND when
# missing (scripts/tools.sh), exporting LE_TOOLS_DIR.
le_prepare() {
  local name="$1" repo
  repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  export LE_PLUGIN_BIN="${LE_PLUGIN_BIN:-$repo/bin/plugins/vault-plugin-secrets-letsencrypt}"
  export LE_PLUGIN_VERSION="${LE_PLUGIN_VERSION:-v0.1.0}"
  if [ ! -f "$LE_PLUGIN_BIN" ]; then
    echo "$name: plugin binary not found at $LE_PLUGIN_BIN: run 'make build'" >&2
    exit 1
  fi
  LE_TOOLS_DIR="$(bash "$repo/scripts/tools.sh" vault pebble bind | tail -n 1)"
  export LE_TOOLS_DIR
}
