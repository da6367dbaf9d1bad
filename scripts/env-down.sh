#!/usr/bin/env bash
# Stops the environment started by scripts/env-up.sh STATE_DIR: every process named by a
# STATE_DIR/*.pid file, plus leftover plugin processes running from STATE_DIR/plugins.
# Safe to call twice, and on a directory where start-up failed halfway. Logs stay in STATE_DIR.
#
# Usage: scripts/env-down.sh STATE_DIR
set -uo pipefail

STATE_ARG="${1:-}"
if [ -z "$STATE_ARG" ]; then
  echo "usage: $0 STATE_DIR" >&2
  exit 2
fi
if [ ! -d "$STATE_ARG" ]; then
  echo "env-down: nothing to stop ($STATE_ARG does not exist)" >&2
  exit 0
fi
STATE_DIR="$(cd "$STATE_ARG" && pwd)"

stop_pid() { # PID NAME
  local pid="$1" name="$2"
  [ -n "$pid" ] && [ "$pid" != "$$" ] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || { echo "env-down: stopped $name ($pid)" >&2; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  echo "env-down: killed $name ($pid)" >&2
}

# Vault first (it stops its plugin processes), then Pebble, then BIND, the watchdog last.
stopped=0
for name in vault pebble named watchdog; do
  f="$STATE_DIR/$name.pid"
  [ -f "$f" ] || continue
  stop_pid "$(cat "$f" 2>/dev/null)" "$name"
  rm -f "$f"
  stopped=1
done
for f in "$STATE_DIR"/*.pid; do # anything else a later version may have added
  [ -f "$f" ] || continue
  name="$(basename "$f" .pid)"
  stop_pid "$(cat "$f" 2>/dev/null)" "$name"
  rm -f "$f"
  stopped=1
done

# Plugin processes whose executable lives in this environment's plugin directory (only possible
# when Vault died without stopping them).
if [ -d "$STATE_DIR/plugins" ]; then
  for proc in /proc/[0-9]*; do
    exe="$(readlink "$proc/exe" 2>/dev/null)" || continue
    case "$exe" in
      "$STATE_DIR/plugins/"*) stop_pid "${proc#/proc/}" "plugin $(basename "$exe")" ;;
    esac
  done
fi

[ $stopped = 1 ] && echo "env-down: environment in $STATE_DIR stopped" >&2
exit 0
