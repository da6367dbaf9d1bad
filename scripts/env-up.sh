#!/usr/bin/env bash
# Starts one real, loopback-only test environment for the letsencrypt secrets engine:
#   * BIND 9, authoritative primary for zone example.test, dynamic updates allowed with a TSIG key;
#     every name under http.example.test is 127.0.0.1 (HTTP-01: Pebble connects to its httpPort there);
#     zones delegated.test (_acme-challenge CNAMEs into example.test, and out of it) and outside.test
#     (named by no test's DNS configuration), dynamic with the same key
#   * Pebble (the ACME test CA) using that BIND server for DNS-01 validation
#   * a Vault dev server with the plugin registered (sha256 + version) and mounted at letsencrypt/
# Every port is chosen free at start, so several environments (demo, tests) can run side by side.
#
# Usage: scripts/env-up.sh STATE_DIR                  start everything, write STATE_DIR/env.sh and env.json
#        scripts/env-up.sh STATE_DIR restart-pebble   restart Pebble only, with STATE_DIR/pebble/config.json
#                                                      (same ports; Pebble loses its in-memory state and root)
# Environment:
#   LE_PLUGIN_BIN      plugin binary (default <repo>/bin/plugins/vault-plugin-secrets-letsencrypt)
#   LE_PLUGIN_VERSION  version to register (default v0.1.0)
#   LE_TOOLS_DIR       tools directory of scripts/tools.sh (default ~/.cache/vault-plugin-secrets-letsencrypt)
#   LE_ENV_OWNER_PID   if set, a watchdog stops the environment once that process is gone
#   LE_ENV_NO_VAULT=1  start BIND and Pebble only (no vault binary or plugin needed)
#
# Logs: STATE_DIR/{named,pebble,vault}.log; pids: STATE_DIR/*.pid. Stop with scripts/env-down.sh STATE_DIR.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$SCRIPT_DIR/lib.sh"
le_load_requirements

STATE_ARG="${1:-}"
MODE="${2:-up}"
if [ -z "$STATE_ARG" ]; then
  echo "usage: $0 STATE_DIR [restart-pebble]" >&2
  exit 2
fi
mkdir -p "$STATE_ARG"
STATE_DIR="$(cd "$STATE_ARG" && pwd)"
case "$STATE_DIR" in
  / | "$HOME" | "$REPO") echo "env-up: refusing to use $STATE_DIR as state directory" >&2; exit 2 ;;
esac

TOOLS_DIR="$(le_tools_dir)"
LE_PLUGIN_BIN="${LE_PLUGIN_BIN:-$REPO/bin/plugins/vault-plugin-secrets-letsencrypt}"
LE_PLUGIN_VERSION="${LE_PLUGIN_VERSION:-v0.1.0}"
PLUGIN_NAME="vault-plugin-secrets-letsencrypt"
PEBBLE_VERSION="$(le_req_version pebble)" # scripts/requirements.txt: its test certificates are used below
ZONE="example.test"
DELEGATED_ZONE="delegated.test" # CNAME-delegated DNS-01 (config/dns delegated_domains)
OUTSIDE_ZONE="outside.test"     # a zone the same key may update that no DNS configuration names
HTTP01_BASE="http.$ZONE"        # every name under it is 127.0.0.1 (HTTP-01 through a local proxy)

log() { printf 'env-up: %s\n' "$*" >&2; }
die() { printf 'env-up: ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- helpers

# port_in_use PORT: true when something listens on PORT (TCP or UDP) or it was already handed out.
USED_PORTS=" "
port_in_use() {
  local p="$1"
  case "$USED_PORTS" in *" $p "*) return 0 ;; esac
  [ -n "$(ss -Hltnu "( sport = :$p )" 2>/dev/null)" ]
}

# free_port VAR [N]: sets VAR to a port P such that P..P+N-1 are all free (N defaults to 1) and
# not handed out before (no subshell, so USED_PORTS remembers it).
free_port() {
  local var="$1" n="${2:-1}" p i ok tries=0
  while [ $tries -lt 500 ]; do
    tries=$((tries + 1))
    # Below Linux's ephemeral range (32768-60999 by default), so that no listener on port 0 or
    # outgoing connection of a test running meanwhile takes the port before its server binds it.
    p=$((20000 + RANDOM % 12000))
    ok=1
    for ((i = 0; i < n; i++)); do
      if port_in_use $((p + i)); then ok=0; break; fi
    done
    if [ $ok = 1 ]; then
      for ((i = 0; i < n; i++)); do USED_PORTS="$USED_PORTS$((p + i)) "; done
      printf -v "$var" '%s' "$p"
      return 0
    fi
  done
  die "could not find a free port"
}

# start_bg NAME CMD...: starts CMD detached (own session), output to STATE_DIR/NAME.log, pid to NAME.pid.
start_bg() {
  local name="$1"; shift
  setsid "$@" >>"$STATE_DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$STATE_DIR/$name.pid"
}

alive() { # NAME
  local f="$STATE_DIR/$1.pid"
  [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null
}

# wait_for NAME SECONDS CMD...: polls CMD until it succeeds; fails early when process NAME died.
wait_for() {
  local name="$1" secs="$2"; shift 2
  local deadline=$((SECONDS + secs))
  while ! "$@" >/dev/null 2>&1; do
    if ! alive "$name"; then
      log "$name exited during start-up; last lines of $STATE_DIR/$name.log:"
      tail -n 30 "$STATE_DIR/$name.log" >&2 || true
      return 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      log "$name did not become ready within ${secs}s; last lines of $STATE_DIR/$name.log:"
      tail -n 30 "$STATE_DIR/$name.log" >&2 || true
      return 1
    fi
    sleep 0.2
  done
}

json_str() { # JSON string literal of $1
  local s="$1"
  s="${s//\\/\\\\}"; s="${s//\"/\\\"}"
  s="${s//$'\n'/\\n}"; s="${s//$'\t'/\\t}"; s="${s//$'\r'/\\r}"
  printf '"%s"' "$s"
}

pebble_module_dir() {
  local dir
  # Run outside any module (a temporary directory) so no go.mod/go.sum is touched.
  local tmp
  tmp="$(mktemp -d)"
  dir="$(cd "$tmp" && GOFLAGS= GOWORK=off go mod download -json "github.com/letsencrypt/pebble/v2@${PEBBLE_VERSION}" 2>/dev/null |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' | head -n1)" || true
  rmdir "$tmp" 2>/dev/null || true
  [ -n "$dir" ] && [ -f "$dir/test/certs/pebble.minica.pem" ] ||
    die "cannot locate Pebble ${PEBBLE_VERSION} test certificates (go mod download github.com/letsencrypt/pebble/v2@${PEBBLE_VERSION} failed)"
  echo "$dir"
}

start_pebble() { # uses PEBBLE_BIN PEBBLE_CONFIG DNS_PORT PEBBLE_DIRECTORY PEBBLE_TLS_CA
  start_bg pebble env PEBBLE_VA_NOSLEEP=1 PEBBLE_VA_ALWAYS_VALID=0 \
    "$PEBBLE_BIN" -config "$PEBBLE_CONFIG" -dnsserver "127.0.0.1:$DNS_PORT"
  wait_for pebble 30 curl -fsS --max-time 2 --cacert "$PEBBLE_TLS_CA" "$PEBBLE_DIRECTORY" ||
    die "Pebble did not start"
  wait_for pebble 30 curl -fsS --max-time 2 --cacert "$PEBBLE_TLS_CA" "$PEBBLE_MANAGEMENT/roots/0" ||
    die "Pebble management interface did not start"
}

# ---------------------------------------------------------------- restart-pebble

if [ "$MODE" = "restart-pebble" ]; then
  [ -f "$STATE_DIR/env.sh" ] || die "$STATE_DIR/env.sh not found: start the environment first"
  # shellcheck disable=SC1091
  . "$STATE_DIR/env.sh"
  if alive pebble; then
    pid="$(cat "$STATE_DIR/pebble.pid")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  # wait until the ports are released
  for _ in $(seq 1 50); do
    [ -z "$(ss -Hltn "( sport = :${PEBBLE_DIRECTORY##*:} )" 2>/dev/null | head -c1)" ] && break
    sleep 0.1
  done
  echo "---- restart $(date -u +%FT%TZ) ----" >>"$STATE_DIR/pebble.log"
  start_pebble
  log "Pebble restarted at $PEBBLE_DIRECTORY"
  exit 0
fi
[ "$MODE" = "up" ] || die "unknown mode $MODE (expected nothing or restart-pebble)"

# ---------------------------------------------------------------- preconditions

VAULT_BIN="${VAULT_BIN:-$TOOLS_DIR/bin/vault}"
PEBBLE_BIN="${PEBBLE_BIN:-$TOOLS_DIR/bin/pebble}"
NO_VAULT="${LE_ENV_NO_VAULT:-0}"
[ "$NO_VAULT" = 1 ] || [ -x "$VAULT_BIN" ] || die "vault binary not found at $VAULT_BIN: run 'bash scripts/tools.sh vault' (builds it, ~20 minutes the first time)"
[ -x "$PEBBLE_BIN" ] || die "pebble binary not found at $PEBBLE_BIN: run 'bash scripts/tools.sh pebble'"
PATH="$PATH:/usr/sbin:/sbin" # Debian's named and tsig-keygen
# Every other command this script runs, and how to get what is missing (scripts/requirements.txt).
le_require named tsig-keygen named-checkconf named-checkzone dig curl ss setsid ||
  die "missing commands (above); 'bash scripts/tools.sh demo' installs everything this needs"
[ "$NO_VAULT" = 1 ] || [ -f "$LE_PLUGIN_BIN" ] || die "plugin binary not found at $LE_PLUGIN_BIN: run 'make build'"

# A previous environment in the same directory is stopped first.
if ls "$STATE_DIR"/*.pid >/dev/null 2>&1; then
  log "stopping the previous environment in $STATE_DIR"
  bash "$SCRIPT_DIR/env-down.sh" "$STATE_DIR" || true
fi
rm -rf "$STATE_DIR/bind" "$STATE_DIR/pebble" "$STATE_DIR/vault" "$STATE_DIR/plugins" \
  "$STATE_DIR"/*.log "$STATE_DIR"/*.pid "$STATE_DIR/env.sh" "$STATE_DIR/env.json" "$STATE_DIR/tsig.key"

# Anything that fails from here on tears down what was started.
cleanup_on_error() {
  local rc=$?
  if [ $rc -ne 0 ]; then
    log "start-up failed (exit $rc); stopping what was started (logs stay in $STATE_DIR)"
    bash "$SCRIPT_DIR/env-down.sh" "$STATE_DIR" >/dev/null 2>&1 || true
  fi
}
trap cleanup_on_error EXIT

# ---------------------------------------------------------------- BIND

free_port DNS_PORT
mkdir -p "$STATE_DIR/bind"
tsig-keygen -a hmac-sha256 tsig-key >"$STATE_DIR/tsig.key"
chmod 600 "$STATE_DIR/tsig.key"
TSIG_SECRET="$(sed -n 's/^[[:space:]]*secret "\(.*\)";.*/\1/p' "$STATE_DIR/tsig.key")"
[ -n "$TSIG_SECRET" ] || die "could not read the TSIG secret from $STATE_DIR/tsig.key"

cat >"$STATE_DIR/bind/$ZONE.db" <<EOF
\$TTL 60
@       IN SOA  ns.$ZONE. hostmaster.$ZONE. ( 1 60 60 600 1 )
        IN NS   ns.$ZONE.
ns      IN A    127.0.0.1
*.http  IN A    127.0.0.1
EOF
# www, api: delegated into example.test (acme-dns style); evil: a CNAME out of the configuration's
# zones; loop: a CNAME to itself; nocname and every other name: no CNAME at all.
cat >"$STATE_DIR/bind/$DELEGATED_ZONE.db" <<EOF
\$TTL 60
@       IN SOA  ns.$ZONE. hostmaster.$ZONE. ( 1 60 60 600 1 )
        IN NS   ns.$ZONE.
_acme-challenge.www   IN CNAME www.$DELEGATED_ZONE.acme.$ZONE.
_acme-challenge.api   IN CNAME api.$DELEGATED_ZONE.acme.$ZONE.
_acme-challenge.evil  IN CNAME evil.$OUTSIDE_ZONE.
_acme-challenge.loop  IN CNAME _acme-challenge.loop.$DELEGATED_ZONE.
EOF
cat >"$STATE_DIR/bind/$OUTSIDE_ZONE.db" <<EOF
\$TTL 60
@       IN SOA  ns.$ZONE. hostmaster.$ZONE. ( 1 60 60 600 1 )
        IN NS   ns.$ZONE.
EOF
# An empty root zone: with recursion on (so that an answer follows delegated.test's CNAMEs into
# example.test, as a CA's recursive resolver does), every name is still answered from these zones
# at once; BIND never asks a server on the Internet.
cat >"$STATE_DIR/bind/root.db" <<EOF
\$TTL 60
@          IN SOA  localhost. hostmaster.$ZONE. ( 1 60 60 600 1 )
           IN NS   localhost.
localhost. IN A    127.0.0.1
EOF

cat >"$STATE_DIR/named.conf" <<EOF
// generated by scripts/env-up.sh
options {
  directory "$STATE_DIR/bind";
  pid-file "$STATE_DIR/bind/named.pid";
  session-keyfile "$STATE_DIR/bind/session.key";
  managed-keys-directory "$STATE_DIR/bind";
  listen-on port $DNS_PORT { 127.0.0.1; };
  listen-on-v6 { none; };
  recursion yes;
  allow-recursion { 127.0.0.1; };
  allow-query-cache { 127.0.0.1; };
  dnssec-validation no;
  notify no;
  allow-transfer { none; };
};
controls { };
include "$STATE_DIR/tsig.key";
zone "." {
  type primary;
  file "$STATE_DIR/bind/root.db";
};
EOF
for z in "$ZONE" "$DELEGATED_ZONE" "$OUTSIDE_ZONE"; do
  cat >>"$STATE_DIR/named.conf" <<EOF
zone "$z" {
  type primary;
  file "$STATE_DIR/bind/$z.db";
  allow-update { key "tsig-key"; };
};
EOF
done
named-checkconf "$STATE_DIR/named.conf" || die "named-checkconf rejected $STATE_DIR/named.conf"
named-checkzone -q . "$STATE_DIR/bind/root.db" || die "named-checkzone rejected the root zone file"
for z in "$ZONE" "$DELEGATED_ZONE" "$OUTSIDE_ZONE"; do
  named-checkzone -q "$z" "$STATE_DIR/bind/$z.db" || die "named-checkzone rejected the zone file of $z"
done

log "starting BIND on 127.0.0.1:$DNS_PORT"
start_bg named named -g -c "$STATE_DIR/named.conf"
dns_ready() { dig +time=1 +tries=1 +short @127.0.0.1 -p "$DNS_PORT" "$ZONE" SOA | grep -q "ns.$ZONE"; }
wait_for named 30 dns_ready || die "BIND did not answer on 127.0.0.1:$DNS_PORT"

# ---------------------------------------------------------------- Pebble

PEBBLE_DIR="$(pebble_module_dir)"
PEBBLE_TLS_CA="$PEBBLE_DIR/test/certs/pebble.minica.pem"
free_port PEBBLE_PORT
free_port PEBBLE_MGMT_PORT
free_port PEBBLE_HTTP_PORT
free_port PEBBLE_TLS_PORT
PEBBLE_DIRECTORY="https://127.0.0.1:$PEBBLE_PORT/dir"
PEBBLE_MANAGEMENT="https://127.0.0.1:$PEBBLE_MGMT_PORT"
mkdir -p "$STATE_DIR/pebble"
PEBBLE_CONFIG="$STATE_DIR/pebble/config.json"
# An external account binding key Pebble accepts (EAB is optional: accounts without EAB work too).
PEBBLE_EAB_KID="kid-e2e"
PEBBLE_EAB_HMAC_KEY="$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
# NOTE: Pebble picks a RANDOM profile for an order that names none, so clients (roles) should
# name one: "default" (90 days, CN promoted), "shortlived" (300 s, for renewal tests) or "soak"
# (180 s, for the soak test).
cat >"$PEBBLE_CONFIG" <<EOF
{
  "pebble": {
    "listenAddress": "127.0.0.1:$PEBBLE_PORT",
    "managementListenAddress": "127.0.0.1:$PEBBLE_MGMT_PORT",
    "certificate": "$PEBBLE_DIR/test/certs/localhost/cert.pem",
    "privateKey": "$PEBBLE_DIR/test/certs/localhost/key.pem",
    "httpPort": $PEBBLE_HTTP_PORT,
    "tlsPort": $PEBBLE_TLS_PORT,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false,
    "externalAccountMACKeys": { "$PEBBLE_EAB_KID": "$PEBBLE_EAB_HMAC_KEY" },
    "retryAfter": { "authz": 1, "order": 1 },
    "keyAlgorithm": "ecdsa",
    "profiles": {
      "default": { "description": "90-day certificates, first name promoted to the subject CN", "validityPeriod": 7776000, "promoteCommonName": true },
      "shortlived": { "description": "5-minute certificates for renewal tests", "validityPeriod": 300 },
      "soak": { "description": "3-minute certificates for the soak test (TestSoakNeverExpired)", "validityPeriod": 180 }
    }
  }
}
EOF

log "starting Pebble at $PEBBLE_DIRECTORY (DNS 127.0.0.1:$DNS_PORT)"
start_pebble

# ---------------------------------------------------------------- Vault

VAULT_ADDR="" VAULT_TOKEN="" PLUGIN_SHA256=""
if [ "$NO_VAULT" != 1 ]; then
free_port VAULT_PORT 2 # dev mode also takes port+1 for the cluster listener
VAULT_ADDR="http://127.0.0.1:$VAULT_PORT"
VAULT_TOKEN="root"
mkdir -p "$STATE_DIR/plugins" "$STATE_DIR/vault"
cp "$LE_PLUGIN_BIN" "$STATE_DIR/plugins/$PLUGIN_NAME"
chmod 0755 "$STATE_DIR/plugins/$PLUGIN_NAME"
PLUGIN_SHA256="$(sha256sum "$STATE_DIR/plugins/$PLUGIN_NAME" | cut -d' ' -f1)"

log "starting Vault dev server at $VAULT_ADDR"
# HOME points into the state dir so the CLI token helper never touches the user's ~/.vault-token.
start_bg vault env HOME="$STATE_DIR/vault" VAULT_ADDR="$VAULT_ADDR" \
  "$VAULT_BIN" server -dev -dev-root-token-id="$VAULT_TOKEN" -dev-no-store-token \
  -dev-listen-address="127.0.0.1:$VAULT_PORT" -dev-plugin-dir="$STATE_DIR/plugins"
export VAULT_ADDR VAULT_TOKEN
unset VAULT_NAMESPACE VAULT_CACERT VAULT_CAPATH VAULT_CLIENT_CERT VAULT_CLIENT_KEY VAULT_SKIP_VERIFY
vault_ready() { "$VAULT_BIN" status >/dev/null 2>&1; }
wait_for vault 60 vault_ready || die "Vault dev server did not start"

log "registering $PLUGIN_NAME $LE_PLUGIN_VERSION (sha256 $PLUGIN_SHA256)"
"$VAULT_BIN" plugin register -sha256="$PLUGIN_SHA256" -version="$LE_PLUGIN_VERSION" \
  -command="$PLUGIN_NAME" secret "$PLUGIN_NAME" >&2 ||
  die "vault plugin register failed (does the binary report version $LE_PLUGIN_VERSION? see $STATE_DIR/vault.log)"
"$VAULT_BIN" secrets enable -path=letsencrypt -plugin-version="$LE_PLUGIN_VERSION" "$PLUGIN_NAME" >&2 ||
  die "vault secrets enable failed (see $STATE_DIR/vault.log)"
fi

# ---------------------------------------------------------------- env files

TSIG_KEY_NAME="tsig-key."
TSIG_ALGORITHM="hmac-sha256."
DNS_ADDR="127.0.0.1:$DNS_PORT"
VARS=(VAULT_ADDR VAULT_TOKEN VAULT_BIN PEBBLE_BIN PEBBLE_DIRECTORY PEBBLE_MANAGEMENT PEBBLE_TLS_CA
  PEBBLE_CONFIG PEBBLE_EAB_KID PEBBLE_EAB_HMAC_KEY PEBBLE_HTTP_PORT PEBBLE_TLS_PORT DNS_ADDR DNS_PORT TSIG_KEY_NAME TSIG_ALGORITHM TSIG_SECRET
  ZONE DELEGATED_ZONE OUTSIDE_ZONE HTTP01_BASE STATE_DIR LE_PLUGIN_BIN LE_PLUGIN_VERSION PLUGIN_SHA256)
{
  echo "# generated by scripts/env-up.sh; source it: . $STATE_DIR/env.sh"
  for v in "${VARS[@]}"; do printf 'export %s=%q\n' "$v" "${!v}"; done
} >"$STATE_DIR/env.sh"
{
  echo "{"
  first=1
  for v in "${VARS[@]}"; do
    [ $first = 1 ] || echo ","
    first=0
    printf '  "%s": %s' "$v" "$(json_str "${!v}")"
  done
  printf '\n}\n'
} >"$STATE_DIR/env.json"
chmod 600 "$STATE_DIR/env.sh" "$STATE_DIR/env.json"

# ---------------------------------------------------------------- watchdog

if [ -n "${LE_ENV_OWNER_PID:-}" ]; then
  start_bg watchdog bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 2; done; exec bash "$2" "$3"' \
    watchdog "$LE_ENV_OWNER_PID" "$SCRIPT_DIR/env-down.sh" "$STATE_DIR"
fi

trap - EXIT
log "environment is up (state in $STATE_DIR)"
log "  Vault   $VAULT_ADDR (token $VAULT_TOKEN), plugin mounted at letsencrypt/"
log "  Pebble  $PEBBLE_DIRECTORY, management $PEBBLE_MANAGEMENT"
log "  BIND    $DNS_ADDR, zones $ZONE $DELEGATED_ZONE $OUTSIDE_ZONE, TSIG key $TSIG_KEY_NAME (*.$HTTP01_BASE is 127.0.0.1)"
