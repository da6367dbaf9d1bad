#!/usr/bin/env bash
# make doctor: checks that every external command the scripts, the Makefile and the tests run is
# there (the list: scripts/requirements.txt), one line per command; when some are missing, prints the
# one command that installs them all and exits 1. Installs nothing, changes nothing, takes a second.
#
# Usage: scripts/doctor.sh [--install] [--quiet] [PURPOSE...]
#   PURPOSE    demo, e2e, lint, bench, dist or test (e2e + lint); default: everything
#   --install  then installs what is missing with scripts/tools.sh and checks again, failing unless
#              everything is there (make demo, make test and make bench start with this)
#   --quiet    prints only what is missing
set -uo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
. "$SCRIPT_DIR/lib.sh"
le_load_requirements || exit 2

install=0 quiet=0 purposes=()
for a in "$@"; do
  case "$a" in
    --install) install=1 ;;
    --quiet) quiet=1 ;;
    demo | e2e | lint | bench | dist | test) purposes+=("$a") ;;
    *) echo "usage: $0 [--install] [--quiet] [demo|e2e|lint|bench|dist|test]..." >&2; exit 2 ;;
  esac
done
[ ${#purposes[@]} -gt 0 ] || purposes=(all)

say() { printf 'doctor: %s\n' "$*"; }

sel=()
for p in "${purposes[@]}"; do
  for i in $(le_req_select "$p"); do
    case " ${sel[*]:-} " in *" $i "*) ;; *) sel+=("$i") ;; esac
  done
done
if [ "${purposes[*]}" = all ]; then what="everything"; else what="make ${purposes[*]}"; fi

# check: one line per command (only the missing ones with --quiet); sets missing=(indices).
check() {
  local i
  missing=()
  for i in "${sel[@]}"; do
    if le_req_check "$i"; then
      [ $quiet = 1 ] || printf '  ok       %-16s %s\n' "${LE_REQ_CMD[$i]}" "$LE_REQ_PATH"
    else
      printf '  MISSING  %-16s %s: %s\n' "${LE_REQ_CMD[$i]}" "$LE_REQ_PROBLEM" "$(le_req_how "$i")"
      missing+=("$i")
    fi
  done
}

# advise: the one command that installs everything missing.
advise() {
  local i pkgs=() names=() go=0 cmd
  for i in "${missing[@]}"; do
    names+=("${LE_REQ_CMD[$i]}")
    case "${LE_REQ_SRC[$i]}" in
      apt) case " ${pkgs[*]:-} " in *" ${LE_REQ_WHAT[$i]} "*) ;; *) pkgs+=("${LE_REQ_WHAT[$i]}") ;; esac ;;
      go) go=1 ;;
    esac
  done
  if [ "${purposes[*]}" = all ]; then cmd="make tools"; else cmd="bash scripts/tools.sh ${purposes[*]}"; fi
  say "${#missing[@]} of ${#sel[@]} commands missing (${names[*]}). Install them all with:"
  if [ ${#pkgs[@]} -gt 0 ] && [ "$(id -u)" != 0 ]; then
    printf '    sudo apt-get install -y %s && %s\n' "${pkgs[*]}" "$cmd"
  else
    printf '    %s\n' "$cmd"
  fi
  [ $go = 0 ] || say "(Go itself is missing: install Go 1.26 or later first)"
}

[ $quiet = 1 ] || say "checking the ${#sel[@]} external commands $what runs (scripts/requirements.txt)"
check
if [ ${#missing[@]} -eq 0 ]; then
  [ $quiet = 1 ] || say "all ${#sel[@]} are there"
  exit 0
fi
if [ $install = 0 ]; then
  advise
  exit 1
fi

names=()
for i in "${missing[@]}"; do names+=("${LE_REQ_CMD[$i]}"); done
say "installing the ${#missing[@]} missing: bash scripts/tools.sh ${names[*]}"
bash "$SCRIPT_DIR/tools.sh" "${names[@]}" >/dev/null
rc=$?
quiet=1
check
if [ ${#missing[@]} -gt 0 ]; then
  say "scripts/tools.sh failed (exit $rc); still missing:"
  advise
  exit 1
fi
say "all ${#sel[@]} are there now"
