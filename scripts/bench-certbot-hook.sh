#!/usr/bin/env bash
# certbot's --manual DNS-01 hook for make bench (e2e/bench_test.go): certbot against the same Pebble and
# BIND as the engine and lego. auth writes the TXT record _acme-challenge.<domain> with nsupdate (TSIG
# key), then checks every second, as lego and the engine do, until BIND answers it; cleanup deletes it.
# certbot sets CERTBOT_DOMAIN and CERTBOT_VALIDATION.
#
# Usage (certbot's --manual-auth-hook / --manual-cleanup-hook):
#   bash scripts/bench-certbot-hook.sh auth|cleanup SERVER PORT TSIG_KEY_FILE
set -euo pipefail

mode="${1:-}" server="${2:-}" port="${3:-}" keyfile="${4:-}"
if [ -z "$keyfile" ] || [ -z "${CERTBOT_DOMAIN:-}" ] || [ -z "${CERTBOT_VALIDATION:-}" ]; then
  echo "usage: CERTBOT_DOMAIN=... CERTBOT_VALIDATION=... $0 auth|cleanup SERVER PORT TSIG_KEY_FILE" >&2
  exit 2
fi
name="_acme-challenge.${CERTBOT_DOMAIN}."
case "$mode" in
  auth) change="update add $name 60 IN TXT \"$CERTBOT_VALIDATION\"" ;;
  cleanup) change="update delete $name IN TXT \"$CERTBOT_VALIDATION\"" ;;
  *) echo "$0: unknown mode '$mode' (auth or cleanup)" >&2; exit 2 ;;
esac
printf 'server %s %s\n%s\nsend\n' "$server" "$port" "$change" | nsupdate -k "$keyfile"
[ "$mode" = auth ] || exit 0
for _ in $(seq 1 60); do
  if dig +short +time=1 +tries=1 @"$server" -p "$port" "$name" TXT | grep -qF -- "\"$CERTBOT_VALIDATION\""; then
    exit 0
  fi
  sleep 1
done
echo "$0: BIND at $server:$port does not answer $name TXT after 60 s" >&2
exit 1
