# shellcheck shell=bash
# Shared by the scripts (source it; it defines and exports, runs nothing else).
#
# le_prepare NAME: sets REPO-relative defaults for LE_PLUGIN_BIN and LE_PLUGIN_VERSION, fails with a
# how-to when the plugin binary is missing, and installs or builds what NAME (demo, e2e or bench)
# needs when missing (scripts/tools.sh NAME), exporting LE_TOOLS_DIR.
#
# le_load_requirements and friends read scripts/requirements.txt, the one list of every external
# command the scripts and tests run and how scripts/tools.sh installs it.

le_repo() { (cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd); }

# le_tools_dir: where scripts/tools.sh puts its binaries (under bin/) and logs (under logs/).
le_tools_dir() { printf '%s\n' "${LE_TOOLS_DIR:-$HOME/.cache/vault-plugin-secrets-letsencrypt}"; }

le_prepare() {
  local name="$1" repo
  repo="$(le_repo)"
  export LE_PLUGIN_BIN="${LE_PLUGIN_BIN:-$repo/bin/plugins/vault-plugin-secrets-letsencrypt}"
  export LE_PLUGIN_VERSION="${LE_PLUGIN_VERSION:-v0.1.0}"
  if [ ! -f "$LE_PLUGIN_BIN" ]; then
    echo "$name: plugin binary not found at $LE_PLUGIN_BIN: run 'make build'" >&2
    exit 1
  fi
  LE_TOOLS_DIR="$(bash "$repo/scripts/tools.sh" "$name" | tail -n 1)"
  export LE_TOOLS_DIR
}

# le_load_requirements: reads scripts/requirements.txt into the arrays LE_REQ_CMD, LE_REQ_FOR,
# LE_REQ_SRC, LE_REQ_WHAT and LE_REQ_NOTE (one element per command, in file order).
le_load_requirements() {
  local file line
  file="${LE_REQUIREMENTS:-$(dirname "${BASH_SOURCE[0]}")/requirements.txt}"
  LE_REQ_CMD=() LE_REQ_FOR=() LE_REQ_SRC=() LE_REQ_WHAT=() LE_REQ_NOTE=()
  local -a fields
  while IFS= read -r line || [ -n "$line" ]; do
    line="${line%%#*}"
    read -r -a fields <<<"$line"
    [ ${#fields[@]} -gt 0 ] || continue
    if [ ${#fields[@]} -lt 4 ]; then
      echo "requirements: bad line in $file (want COMMAND FOR SOURCE WHAT [NOTE]): $line" >&2
      return 1
    fi
    LE_REQ_CMD+=("${fields[0]}") LE_REQ_FOR+=("${fields[1]}") LE_REQ_SRC+=("${fields[2]}")
    LE_REQ_WHAT+=("${fields[3]}") LE_REQ_NOTE+=("${fields[*]:4}")
  done <"$file"
}

# le_req_select WORD: prints the indices of the commands WORD names: a command (dig), a purpose
# (demo, e2e, lint, bench, dist; test = e2e + lint), bind (the BIND 9 programs), apt, tools, or all.
le_req_select() {
  local word="$1" i hit=1
  for i in "${!LE_REQ_CMD[@]}"; do
    case "$word" in
      all) ;;
      apt | tools) [ "${LE_REQ_SRC[$i]}" = "$word" ] || continue ;;
      bind) case "${LE_REQ_WHAT[$i]}" in bind9*) ;; *) continue ;; esac ;;
      demo | e2e | lint | bench | dist | test) le_req_for "$i" "$word" || continue ;;
      *) [ "${LE_REQ_CMD[$i]}" = "$word" ] || continue ;;
    esac
    printf '%s\n' "$i"
    hit=0
  done
  return $hit
}

# le_req_for I PURPOSE: true when command I is needed for PURPOSE (test means e2e or lint).
le_req_for() {
  local p
  for p in ${LE_REQ_FOR[$1]//,/ }; do
    case "$p" in all | "$2") return 0 ;; esac
    if [ "$2" = test ]; then case "$p" in e2e | lint) return 0 ;; esac; fi
  done
  return 1
}

# le_go_binary_is BIN PKG@VERSION: true when the Go binary BIN was built from PKG's module at VERSION
# (go version -m reads the build information stamped into every Go binary).
le_go_binary_is() {
  local bin="$1" pkg="${2%@*}" ver="${2##*@}" kind path v rest
  while read -r kind path v rest; do
    case "$kind" in mod | dep) ;; *) continue ;; esac
    [ "$v" = "$ver" ] || continue
    case "$pkg" in "$path" | "$path"/*) return 0 ;; esac
  done < <(go version -m "$bin" 2>/dev/null)
  return 1
}

# le_req_check I: true when command I is there. Sets LE_REQ_PATH to where it is, or LE_REQ_PROBLEM
# to what is wrong. Debian's sbin directories count even when they are not on PATH (env-up.sh adds them).
le_req_check() {
  local i="$1" cmd="${LE_REQ_CMD[$1]}" PATH="$PATH:/usr/sbin:/sbin" bin
  LE_REQ_PATH="" LE_REQ_PROBLEM=""
  case "${LE_REQ_SRC[$i]}" in
    tools)
      bin="$(le_tools_dir)/bin/$cmd"
      if [ ! -x "$bin" ]; then LE_REQ_PROBLEM="not built yet"; return 1; fi
      if command -v go >/dev/null 2>&1 && ! le_go_binary_is "$bin" "${LE_REQ_WHAT[$i]}"; then
        LE_REQ_PROBLEM="$bin is not ${LE_REQ_WHAT[$i]}"; return 1
      fi
      LE_REQ_PATH="$bin" ;;
    *)
      if ! LE_REQ_PATH="$(command -v "$cmd")" || [ -z "$LE_REQ_PATH" ]; then
        LE_REQ_PATH="" LE_REQ_PROBLEM="not found"; return 1
      fi ;;
  esac
}

# le_req_how I: how command I is installed, in words.
le_req_how() {
  local i="$1"
  case "${LE_REQ_SRC[$i]}" in
    apt) printf 'Debian package %s' "${LE_REQ_WHAT[$i]}" ;;
    tools) printf 'scripts/tools.sh %s builds %s' "${LE_REQ_CMD[$i]}" "${LE_REQ_WHAT[$i]}" ;;
    go) printf 'part of Go %s' "${LE_REQ_WHAT[$i]}" ;;
    *) printf 'unknown source %s' "${LE_REQ_SRC[$i]}" ;;
  esac
  [ -z "${LE_REQ_NOTE[$i]}" ] || printf ' (%s)' "${LE_REQ_NOTE[$i]}"
}

# le_req_version NAME: the VERSION of a tools command's PKG@VERSION (e.g. pebble -> v2.10.1).
le_req_version() {
  local i
  for i in "${!LE_REQ_CMD[@]}"; do
    if [ "${LE_REQ_CMD[$i]}" = "$1" ]; then printf '%s\n' "${LE_REQ_WHAT[$i]##*@}"; return 0; fi
  done
  return 1
}

# le_require NAME...: true when every named command is there; otherwise prints, for each missing one,
# how to get it, and returns 1.
le_require() {
  local name i ok=0
  for name in "$@"; do
    for i in $(le_req_select "$name"); do
      le_req_check "$i" && continue
      printf '%s %s: %s; run: bash scripts/tools.sh %s\n' "$name" "$LE_REQ_PROBLEM" "$(le_req_how "$i")" "$name" >&2
      ok=1
    done
  done
  return $ok
}
