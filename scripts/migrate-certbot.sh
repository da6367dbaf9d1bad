#!/usr/bin/env bash
# Migrates a certbot configuration directory (/etc/letsencrypt) into the letsencrypt engine:
#
#   * each ACME account, accounts/<server>/<directory path>/<id>/ (private_key.json, certbot's JWK, and
#     regr.json, whose "uri" is the account's URL), becomes <mount>/accounts/<account-prefix><id>
#     (private_key, account_url, directory_url, terms_of_service_agreed=true, ca_bundle when given): the
#     same account at the CA, no new registration;
#   * each certificate, live/<name>/ (cert.pem, privkey.pem, chain.pem), becomes
#     <mount>/certs/<name-prefix><name> under the given role: served at once, no order, renewed by the
#     engine when due (with the role's account: make it one of the imported accounts to keep using it).
#
# The directory URL of an account is the "server" of a renewal/*.conf naming that account, else
# https://<server>/<directory path> as certbot derives its folder from it (or --directory-url).
#
# Usage: scripts/migrate-certbot.sh --config-dir DIR --role ROLE [--mount letsencrypt]
#            [--name-prefix PREFIX] [--account-prefix certbot-] [--account-name NAME]
#            [--directory-url URL] [--ca-bundle FILE] [--accounts-only | --certs-only]
#            [--dry-run] [--overwrite]
#   --config-dir      certbot's configuration directory (its --config-dir; default /etc/letsencrypt)
#   --role            the engine's role the certificates are imported under (not needed with --accounts-only)
#   --mount           the letsencrypt engine's mount (default letsencrypt)
#   --name-prefix     prepended to certbot's certificate name to make the engine's (e.g. team-a/)
#   --account-prefix  prepended to certbot's account id to make the engine's account name (default certbot-)
#   --account-name    the engine's account name, when the directory holds exactly one account
#   --directory-url   the CA's directory URL for every account (default: see above)
#   --ca-bundle       PEM roots of the CA's HTTPS certificate, for a private CA (the account's ca_bundle)
#   --accounts-only   import the accounts only;  --certs-only: the certificates only
#   --dry-run         say what would be done; write nothing
#   --overwrite       replace a certificate the engine already serves under that name with another serial
# The vault CLI uses VAULT_ADDR, VAULT_TOKEN etc. as usual. Safe to run again: accounts and certificates
# already there are skipped. Keys are read by the vault CLI from certbot's files and never printed.
# Certbot keeps renewing what it manages: once Vault serves a certificate, stop that (certbot delete
# --cert-name NAME, or disable certbot.timer). Exit status: 0 when nothing failed, 1 when something did,
# 2 on bad usage.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MIG_TOOL="migrate-certbot"
# shellcheck source=scripts/migrate-lib.sh
. "$SCRIPT_DIR/migrate-lib.sh"

usage() {
  sed -n 's/^# \{0,1\}//; /^Usage:/,/^The vault CLI/p' "${BASH_SOURCE[0]}" | sed '$d' >&2
  exit 2
}

CONFIG_DIR="/etc/letsencrypt"
MIG_MOUNT="letsencrypt"
MIG_ROLE=""
NAME_PREFIX=""
ACCOUNT_PREFIX="certbot-"
ACCOUNT_NAME=""
DIRECTORY_URL=""
CA_BUNDLE=""
DO_ACCOUNTS=1
DO_CERTS=1
while [ $# -gt 0 ]; do
  case "$1" in
    --config-dir) CONFIG_DIR="${2:?--config-dir needs a value}"; shift 2 ;;
    --role) MIG_ROLE="${2:?--role needs a value}"; shift 2 ;;
    --mount) MIG_MOUNT="${2:?--mount needs a value}"; shift 2 ;;
    --name-prefix) NAME_PREFIX="${2?--name-prefix needs a value}"; shift 2 ;;
    --account-prefix) ACCOUNT_PREFIX="${2?--account-prefix needs a value}"; shift 2 ;;
    --account-name) ACCOUNT_NAME="${2:?--account-name needs a value}"; shift 2 ;;
    --directory-url) DIRECTORY_URL="${2:?--directory-url needs a value}"; shift 2 ;;
    --ca-bundle) CA_BUNDLE="${2:?--ca-bundle needs a value}"; shift 2 ;;
    --accounts-only) DO_CERTS=0; shift ;;
    --certs-only) DO_ACCOUNTS=0; shift ;;
    --dry-run) MIG_DRY_RUN=1; shift ;;
    --overwrite) MIG_OVERWRITE=1; shift ;;
    -h | --help) usage ;;
    *) mig_warn "unknown argument $1"; usage ;;
  esac
done
CONFIG_DIR="${CONFIG_DIR%/}"
MIG_MOUNT="${MIG_MOUNT%/}"
[ -d "$CONFIG_DIR" ] || mig_die "$CONFIG_DIR is not a directory (--config-dir)"
[ $DO_ACCOUNTS = 1 ] || [ $DO_CERTS = 1 ] || mig_die "--accounts-only and --certs-only exclude each other"
if [ $DO_CERTS = 1 ]; then
  [ -n "$MIG_ROLE" ] || { mig_warn "--role is required (or --accounts-only)"; usage; }
  case "$MIG_ROLE" in @* | *=*) mig_die "bad role name $MIG_ROLE" ;; esac
fi
if [ -n "$CA_BUNDLE" ]; then
  [ -s "$CA_BUNDLE" ] || mig_die "--ca-bundle $CA_BUNDLE is not a readable, non-empty file"
  grep -q -e '-----BEGIN CERTIFICATE-----' "$CA_BUNDLE" || mig_die "--ca-bundle $CA_BUNDLE holds no PEM certificate"
fi

mig_tmpdir
mig_require_vault

mode=""
[ "$MIG_DRY_RUN" = 0 ] || mode=" [dry run: nothing is written]"
mig_say "migrating certbot's $CONFIG_DIR into $MIG_MOUNT/$mode"

# json_string FILE KEY: the value of the first "KEY": "..." in the JSON file FILE (certbot writes
# regr.json on one line; "uri" is a top-level key and URLs hold no quotes or backslashes).
json_string() {
  sed -n 's/.*"'"$2"'"[[:space:]]*:[[:space:]]*"\([^"\\]*\)".*/\1/p' "$1" | head -n 1
}

# renewal_server ID: the "server" of a renewal/*.conf whose "account" is ID, if any.
renewal_server() {
  local f
  [ -d "$CONFIG_DIR/renewal" ] || return 0
  for f in "$CONFIG_DIR"/renewal/*.conf; do
    [ -f "$f" ] || continue
    if grep -q -E "^[[:space:]]*account[[:space:]]*=[[:space:]]*$1[[:space:]]*$" "$f"; then
      sed -n 's/^[[:space:]]*server[[:space:]]*=[[:space:]]*\([^[:space:]]*\)[[:space:]]*$/\1/p' "$f" | head -n 1
      return 0
    fi
  done
}

# ------------------------------------------------------------------ accounts

ACC_IMPORTED=0 ACC_SKIPPED=0 ACC_FAILED=0

# import_account DIR: imports the certbot account in DIR (accounts/<server path>/<id>).
import_account() {
  local dir="$1" id server_path url uri name stored rc
  id="$(basename "$dir")"
  server_path="${dir#"$CONFIG_DIR/accounts/"}"
  server_path="${server_path%/"$id"}"
  if [ -n "$ACCOUNT_NAME" ]; then name="$ACCOUNT_NAME"; else name="$ACCOUNT_PREFIX$id"; fi
  if [ ! -s "$dir/private_key.json" ]; then
    ACC_SKIPPED=$((ACC_SKIPPED + 1))
    mig_say "skipped account $id: no private_key.json in $dir"
    return 0
  fi
  uri="$(json_string "$dir/regr.json" uri)"
  if [ -z "$uri" ]; then
    ACC_SKIPPED=$((ACC_SKIPPED + 1))
    mig_say "skipped account $id: $dir/regr.json has no \"uri\" (the account's URL)"
    return 0
  fi
  url="$DIRECTORY_URL"
  [ -n "$url" ] || url="$(renewal_server "$id")"
  [ -n "$url" ] || url="https://$server_path"

  # Already there? The same account URL means imported before; another one is a name clash.
  rc=0
  stored="$(vault read -format=table -field=account_url "$MIG_MOUNT/accounts/$name" 2>"$MIG_TMP/acc.err")" || rc=$?
  if [ $rc = 0 ]; then
    if [ "$stored" = "$uri" ]; then
      ACC_SKIPPED=$((ACC_SKIPPED + 1))
      mig_say "skipped account $id: already imported ($MIG_MOUNT/accounts/$name has account URL $uri)"
    else
      ACC_FAILED=$((ACC_FAILED + 1))
      mig_warn "FAILED account $id: $MIG_MOUNT/accounts/$name exists with another account URL ($stored, not $uri); choose another --account-prefix or --account-name"
    fi
    return 0
  fi
  if ! grep -q 'No value found' "$MIG_TMP/acc.err"; then
    ACC_FAILED=$((ACC_FAILED + 1))
    mig_warn "FAILED account $id: cannot read $MIG_MOUNT/accounts/$name: $(mig_clip "$MIG_TMP/acc.err")"
    return 0
  fi

  if [ "$MIG_DRY_RUN" = 1 ]; then
    ACC_IMPORTED=$((ACC_IMPORTED + 1))
    mig_say "would import account $id -> $MIG_MOUNT/accounts/$name (account URL $uri, directory $url${CA_BUNDLE:+, ca_bundle $CA_BUNDLE})"
    return 0
  fi
  local -a args=("private_key=@$dir/private_key.json" "account_url=$uri" "directory_url=$url" "terms_of_service_agreed=true")
  [ -z "$CA_BUNDLE" ] || args+=("ca_bundle=@$CA_BUNDLE")
  if ! vault write -format=json "$MIG_MOUNT/accounts/$name" "${args[@]}" >/dev/null 2>"$MIG_TMP/acc.err"; then
    ACC_FAILED=$((ACC_FAILED + 1))
    mig_warn "FAILED account $id: vault write $MIG_MOUNT/accounts/$name: $(mig_clip "$MIG_TMP/acc.err")"
    return 0
  fi
  stored="$(vault read -format=table -field=account_url "$MIG_MOUNT/accounts/$name" 2>"$MIG_TMP/acc.err")" || true
  if [ "$stored" != "$uri" ]; then
    ACC_FAILED=$((ACC_FAILED + 1))
    mig_warn "FAILED account $id: $MIG_MOUNT/accounts/$name was written but has account URL '$stored', not $uri"
    return 0
  fi
  ACC_IMPORTED=$((ACC_IMPORTED + 1))
  mig_say "imported account $id -> $MIG_MOUNT/accounts/$name (account URL $uri, directory $url)"
}

if [ $DO_ACCOUNTS = 1 ]; then
  accounts=()
  shopt -s globstar nullglob
  for f in "$CONFIG_DIR"/accounts/**/regr.json; do
    if [ -f "$f" ]; then accounts+=("${f%/regr.json}"); fi
  done
  shopt -u globstar nullglob
  if [ -n "$ACCOUNT_NAME" ] && [ ${#accounts[@]} -gt 1 ]; then
    mig_die "--account-name names one account, but $CONFIG_DIR/accounts holds ${#accounts[@]}: use --account-prefix"
  fi
  for dir in "${accounts[@]}"; do
    import_account "$dir"
  done
  verb="imported"
  [ "$MIG_DRY_RUN" = 0 ] || verb="to import (dry run, nothing written)"
  mig_say "summary: accounts: $ACC_IMPORTED $verb, $ACC_SKIPPED skipped, $ACC_FAILED failed"
fi

# ------------------------------------------------------------------ certificates

rc=0
if [ $DO_CERTS = 1 ]; then
  for dir in "$CONFIG_DIR"/live/*/; do
    [ -d "$dir" ] || continue
    dir="${dir%/}"
    name="$(basename "$dir")"
    if [ ! -e "$dir/cert.pem" ]; then
      mig_skip "$dir" "not a certificate (no cert.pem)"
      continue
    fi
    mig_import "$dir" "$NAME_PREFIX$name" "$dir/cert.pem" "$dir/privkey.pem" "$dir/chain.pem"
  done
  mig_summary certificates || rc=1
  if [ "$MIG_MIGRATED" -gt 0 ] && [ "$MIG_DRY_RUN" = 0 ]; then
    mig_say "certbot still renews these certificates: stop that once Vault serves them (certbot delete --cert-name NAME, or disable certbot.timer)"
  fi
fi
[ "$ACC_FAILED" = 0 ] || rc=1
exit $rc
