#!/usr/bin/env bash
# Demo: starts a real environment in <repo>/.demo (Vault dev server with the plugin, Pebble as the
# ACME CA, BIND 9 for DNS-01) and issues a certificate with the vault CLI, echoing each command.
# The environment keeps running afterwards; stop it with `make demo-stop`
# (scripts/env-down.sh .demo).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="$REPO/.demo"
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"
le_prepare demo

bash "$REPO/scripts/env-up.sh" "$STATE_DIR"
set -E
trap 'echo "demo: a step failed; the environment is still running (logs in $STATE_DIR/*.log); stop it with: make demo-stop" >&2' ERR
# shellcheck disable=SC1091
. "$STATE_DIR/env.sh"

BOLD="" RESET=""
if [ -t 1 ]; then BOLD=$'\e[1m' RESET=$'\e[0m'; fi

# run DISPLAY -- CMD...: prints DISPLAY as the command a user would type, then runs CMD.
run() {
  local display="$1"; shift
  [ "$1" = "--" ] && shift
  printf '\n%s$ %s%s\n' "$BOLD" "$display" "$RESET"
  "$@"
}
vault() { "$VAULT_BIN" "$@"; }
export VAULT_ADDR VAULT_TOKEN

cat <<EOF

Environment is up (state and logs in $STATE_DIR):
  Vault   $VAULT_ADDR  (root token: $VAULT_TOKEN), plugin mounted at letsencrypt/
  Pebble  $PEBBLE_DIRECTORY  (ACME test CA; its HTTPS is signed by $PEBBLE_TLS_CA)
  BIND    $DNS_ADDR  (zone $ZONE, TSIG key $TSIG_KEY_NAME)

The commands below use these variables; to type them yourself first run:
  . $STATE_DIR/env.sh
EOF

run "vault write letsencrypt/accounts/pebble directory_url=\$PEBBLE_DIRECTORY terms_of_service_agreed=true contact=admin@$ZONE ca_bundle=@\$PEBBLE_TLS_CA" -- \
  vault write letsencrypt/accounts/pebble directory_url="$PEBBLE_DIRECTORY" terms_of_service_agreed=true \
  contact="admin@$ZONE" ca_bundle=@"$PEBBLE_TLS_CA"

run "vault write letsencrypt/config/dns/bind provider=rfc2136 credentials=RFC2136_NAMESERVER=\$DNS_ADDR credentials=RFC2136_TSIG_KEY=$TSIG_KEY_NAME credentials=RFC2136_TSIG_ALGORITHM=$TSIG_ALGORITHM credentials=RFC2136_TSIG_SECRET=\$TSIG_SECRET zones=$ZONE resolvers=\$DNS_ADDR polling_interval=500ms propagation_timeout=60s" -- \
  vault write letsencrypt/config/dns/bind provider=rfc2136 \
  credentials="RFC2136_NAMESERVER=$DNS_ADDR" credentials="RFC2136_TSIG_KEY=$TSIG_KEY_NAME" \
  credentials="RFC2136_TSIG_ALGORITHM=$TSIG_ALGORITHM" credentials="RFC2136_TSIG_SECRET=$TSIG_SECRET" \
  zones="$ZONE" resolvers="$DNS_ADDR" polling_interval=500ms propagation_timeout=60s

run "vault read letsencrypt/config/dns/bind" -- vault read letsencrypt/config/dns/bind

# profile=default: Pebble picks a random profile (90 days or 5 minutes here) for orders naming none.
run "vault write letsencrypt/roles/web account=pebble dns=bind allowed_domains=$ZONE allow_subdomains=true allow_wildcard_certificates=true allowed_cert_names=www profile=default" -- \
  vault write letsencrypt/roles/web account=pebble dns=bind allowed_domains="$ZONE" \
  allow_subdomains=true allow_wildcard_certificates=true allowed_cert_names=www profile=default

run "vault write letsencrypt/certs/www role=web domains=www.$ZONE,*.$ZONE" -- \
  vault write letsencrypt/certs/www role=web domains="www.$ZONE,*.$ZONE"

# The write waits for issuance (30s by default); should it still be pending, a read waits too and
# answers 503 until the certificate is there.
printf '\n%s$ vault read letsencrypt/certs/www%s\n' "$BOLD" "$RESET"
ok=0
for _ in $(seq 1 12); do
  if out="$(vault read letsencrypt/certs/www 2>&1)"; then ok=1; break; fi
  echo "(not issued yet, retrying: $(echo "$out" | tail -n 2 | tr '\n' ' '))"
  sleep 5
done
echo "$out"
if [ $ok != 1 ]; then
  echo "demo: the certificate was not issued; see $STATE_DIR/vault.log and $STATE_DIR/pebble.log" >&2
  echo "demo: the environment is still running; stop it with 'make demo-stop'" >&2
  exit 1
fi

if command -v openssl >/dev/null 2>&1; then
  run "vault read -field=certificate letsencrypt/certs/www | openssl x509 -noout -subject -ext subjectAltName -issuer -dates" -- \
    bash -c '"$1" read -field=certificate letsencrypt/certs/www | openssl x509 -noout -subject -ext subjectAltName -issuer -dates' _ "$VAULT_BIN"
fi

cat <<EOF

Done. The environment keeps running. To use it from your shell:
  export VAULT_ADDR=$VAULT_ADDR VAULT_TOKEN=$VAULT_TOKEN
  vault list letsencrypt/certs
  vault read letsencrypt/certs/www
(or '. $STATE_DIR/env.sh', which also sets PEBBLE_*, DNS_ADDR, TSIG_* and VAULT_BIN=$VAULT_BIN)
Logs: $STATE_DIR/{vault,pebble,named}.log
Stop everything with:  make demo-stop
EOF
