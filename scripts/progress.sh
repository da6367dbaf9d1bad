#!/usr/bin/env bash
# Runs a long Go command (a build, an install, a module download, go vet) and, instead of minutes of
# silence or a wall of "go: downloading", prints what it is doing, then a progress line every 30 s:
# elapsed time, modules downloaded so far (new .zip files in Go's module cache) and packages compiled
# (the package names `go build -v` / `go install -v` print). The command's whole output goes to
# LE_TOOLS_DIR/logs/NAME.log; when it fails, its messages (without the package-name lines) are printed.
#
# Usage: scripts/progress.sh NAME MESSAGE -- COMMAND...
# Environment: LE_PROGRESS_TOTAL   number of packages to compile, if known (prints "N/TOTAL")
#              LE_PROGRESS_EVERY   seconds between progress lines (default 30)
set -uo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/lib.sh
. "$SCRIPT_DIR/lib.sh"

if [ $# -lt 4 ] || [ "$3" != "--" ]; then
  echo "usage: $0 NAME MESSAGE -- COMMAND..." >&2
  exit 2
fi
name="$1" message="$2"
shift 3
every="${LE_PROGRESS_EVERY:-30}"
total="${LE_PROGRESS_TOTAL:-}"
logdir="$(le_tools_dir)/logs"
mkdir -p "$logdir"
log="$logdir/$name.log"

say() { printf '%s: %s\n' "$name" "$*" >&2; }
dur() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

modcache="$(go env GOMODCACHE 2>/dev/null)/cache/download"
zips() { find "$modcache" -name '*.zip' 2>/dev/null | grep -c . ; }
# Lines `go build -v` prints for each package it compiles: an import path and nothing else.
is_pkg='^[A-Za-z0-9_.~-]+(/[A-Za-z0-9_.~+-]+)*$'
status() { # [final]
  local pkgs last mods
  mods=$(($(zips) - zips0))
  pkgs="$(grep -cE "$is_pkg" "$log")"
  last="$(grep -E "$is_pkg" "$log" | tail -n 1)"
  printf '%s modules downloaded' "$mods"
  [ "$pkgs" = 0 ] && [ -z "$total" ] || printf ', %s%s packages compiled' "$pkgs" "${total:+/$total}"
  [ -z "$last" ] || [ -n "${1:-}" ] || printf ' (last: %s)' "$last"
}

say "$message"
zips0="$(zips)"
start=$SECONDS
"$@" >"$log" 2>&1 &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null; say "interrupted (output in $log)"; exit 130' INT TERM
next=$((SECONDS + every))
while kill -0 "$pid" 2>/dev/null; do
  if [ $SECONDS -ge $next ]; then
    say "$(dur $((SECONDS - start))) elapsed: $(status)"
    next=$((SECONDS + every))
  fi
  if [ $((SECONDS - start)) -lt 5 ]; then sleep 0.2; else sleep 1; fi
done
wait "$pid"
rc=$?
trap - INT TERM
if [ $rc -ne 0 ]; then
  say "FAILED (exit $rc) after $(dur $((SECONDS - start))); its messages:"
  grep -vE -e "$is_pkg" -e '^go: downloading ' "$log" | tail -n 400 >&2
  say "whole output: $log"
  exit $rc
fi
say "done in $(dur $((SECONDS - start))): $(status final)"
