#!/usr/bin/env bash
# Migrates the certificates lecertvend keeps in a KV secrets engine into the letsencrypt engine.
#
# lecertvend stores each certificate as a KV secret <prefix>/<folder>/<domain>/<secret> (KV v2 at
# secret/: secret/data/lecertvend/<team>/<domain>/<secret>) with the fields cert (the certificate, often
# the full chain), key (its private key) and, sometimes, chain (PEM). This walks a prefix recursively
# (vault kv list), and imports every secret that holds cert and key as <mount>/certs/<name-prefix><path
# below the prefix> with the given role: the engine serves it at once, orders nothing, and renews it
# when due. Other secrets (lecertvend's own credentials: cftoken, lecertvend) are skipped and never read
# beyond their cert field.
#
# Usage: scripts/migrate-lecertvend.sh --prefix PATH --role ROLE [--kv-mount secret] [--mount letsencrypt]
#            [--name-prefix PREFIX] [--dry-run] [--overwrite]
#   --prefix       the KV path to walk, below the KV mount (e.g. lecertvend/team-a)
#   --role         the engine's role the certificates are imported under (it must allow their names)
#   --kv-mount     the KV mount (v1 or v2; default secret)
#   --mount        the letsencrypt engine's mount (default letsencrypt)
#   --name-prefix  prepended to the path below --prefix to make the certificate's name (e.g. team-a/)
#   --dry-run      say what would be migrated; write nothing
#   --overwrite    replace a certificate the engine already serves under that name with another serial
#                  (default: skip it; the engine may have renewed it since the last migration)
# The vault CLI uses VAULT_ADDR, VAULT_TOKEN etc. as usual. Safe to run again: what the engine already
# serves is skipped. Keys pass through a private temporary directory (0700, removed on exit) and are
# never printed. Exit status: 0 when nothing failed, 1 when something did, 2 on bad usage.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MIG_TOOL="migrate-lecertvend"
# shellcheck source=scripts/migrate-lib.sh
. "$SCRIPT_DIR/migrate-lib.sh"

usage() {
  sed -n 's/^# \{0,1\}//; /^Usage:/,/^The vault CLI/p' "${BASH_SOURCE[0]}" | sed '$d' >&2
  exit 2
}

KV_MOUNT="secret"
PREFIX=""
MIG_MOUNT="letsencrypt"
MIG_ROLE=""
NAME_PREFIX=""
while [ $# -gt 0 ]; do
  case "$1" in
    --kv-mount) KV_MOUNT="${2:?--kv-mount needs a value}"; shift 2 ;;
    --prefix) PREFIX="${2:?--prefix needs a value}"; shift 2 ;;
    --mount) MIG_MOUNT="${2:?--mount needs a value}"; shift 2 ;;
    --role) MIG_ROLE="${2:?--role needs a value}"; shift 2 ;;
    --name-prefix) NAME_PREFIX="${2?--name-prefix needs a value}"; shift 2 ;;
    --dry-run) MIG_DRY_RUN=1; shift ;;
    --overwrite) MIG_OVERWRITE=1; shift ;;
    -h | --help) usage ;;
    *) mig_warn "unknown argument $1"; usage ;;
  esac
done
KV_MOUNT="${KV_MOUNT%/}"
MIG_MOUNT="${MIG_MOUNT%/}"
PREFIX="${PREFIX#/}"
PREFIX="${PREFIX%/}"
[ -n "$PREFIX" ] || { mig_warn "--prefix is required"; usage; }
[ -n "$MIG_ROLE" ] || { mig_warn "--role is required"; usage; }
case "$MIG_ROLE" in @* | *=*) mig_die "bad role name $MIG_ROLE" ;; esac

mig_tmpdir
mig_require_vault

# kv_field PATH FIELD FILE: writes FIELD of the KV secret PATH to FILE. Returns 0 when written, 1 when
# the secret has no such field (or no current version), 2 on another error (message in MIG_ERR).
kv_field() {
  MIG_ERR=""
  if vault kv get -mount="$KV_MOUNT" -field="$2" "$1" >"$3" 2>"$MIG_TMP/kv.err"; then
    return 0
  fi
  : >"$3"
  if grep -q -e 'not present in secret' -e 'No value found' "$MIG_TMP/kv.err"; then
    return 1
  fi
  MIG_ERR="$(mig_clip "$MIG_TMP/kv.err")"
  return 2
}

# migrate_secret PATH: imports the KV secret PATH (below the KV mount) if it is a certificate.
migrate_secret() {
  local path="$1" rel name d rc
  rel="${path#"$PREFIX"/}"
  name="$NAME_PREFIX$rel"
  d="$MIG_TMP/item"
  rm -rf "$d"
  mkdir "$d"
  rc=0
  kv_field "$path" cert "$d/cert.pem" || rc=$?
  case $rc in
    0) ;;
    1) mig_skip "$KV_MOUNT/$path" "not a certificate (no cert field)"; rm -rf "$d"; return 0 ;;
    *) mig_fail "$KV_MOUNT/$path" "vault kv get: $MIG_ERR"; rm -rf "$d"; return 0 ;;
  esac
  rc=0
  kv_field "$path" key "$d/key.pem" || rc=$?
  case $rc in
    0) ;;
    1) mig_skip "$KV_MOUNT/$path" "no private key (no key field)"; rm -rf "$d"; return 0 ;;
    *) mig_fail "$KV_MOUNT/$path" "vault kv get: $MIG_ERR"; rm -rf "$d"; return 0 ;;
  esac
  rc=0
  kv_field "$path" chain "$d/chain.pem" || rc=$?
  if [ $rc -ge 2 ]; then
    mig_fail "$KV_MOUNT/$path" "vault kv get: $MIG_ERR"
    rm -rf "$d"
    return 0
  fi
  mig_import "$KV_MOUNT/$path" "$name" "$d/cert.pem" "$d/key.pem" "$d/chain.pem"
  rm -rf "$d"
}

# walk PATH: every secret below the KV folder PATH, depth first, in the order vault lists them.
walk() {
  local path="$1" key
  local -a keys=()
  if ! vault kv list -format=table -mount="$KV_MOUNT" "$path" >"$MIG_TMP/list.out" 2>"$MIG_TMP/list.err"; then
    if grep -q 'No value found' "$MIG_TMP/list.err"; then
      # An empty folder; nothing at all under the prefix is rather a wrong --kv-mount or --prefix.
      [ "$path" != "$PREFIX" ] || mig_fail "$KV_MOUNT/$path/" "nothing there (check --kv-mount and --prefix)"
      return 0
    fi
    mig_fail "$KV_MOUNT/$path/" "vault kv list: $(mig_clip "$MIG_TMP/list.err")"
    return 0
  fi
  # The table: "Keys", a line of dashes, then one key per line (folders end in /).
  mapfile -t keys < <(sed '1,/^--*$/d' "$MIG_TMP/list.out")
  for key in "${keys[@]}"; do
    [ -n "$key" ] || continue
    case "$key" in
      */) walk "$path/${key%/}" ;;
      *) migrate_secret "$path/$key" ;;
    esac
  done
}

mode=""
[ "$MIG_DRY_RUN" = 0 ] || mode=" [dry run: nothing is written]"
mig_say "walking $KV_MOUNT/$PREFIX/ into $MIG_MOUNT/certs/$NAME_PREFIX* (role $MIG_ROLE)$mode"
walk "$PREFIX"
mig_summary certificates
