# shellcheck shell=bash
# Shared by scripts/migrate-lecertvend.sh and scripts/migrate-certbot.sh (source it; it defines, runs
# nothing). It imports one certificate into the engine (vault write <mount>/certs/<name> role=...
# certificate=@... private_key=@... chain=@...) and counts what was migrated, skipped and failed, with
# the reasons, for the summary line. Keys only ever go from a file to the vault CLI: nothing here prints
# a key, and Vault's error messages are cut before any PEM block they might hold.
#
# The caller sets MIG_TOOL (its name in messages), MIG_MOUNT (the engine's mount), MIG_ROLE, and may
# set MIG_DRY_RUN=1 (print what would be done, write nothing) and MIG_OVERWRITE=1 (replace a stored
# certificate that is not the one being migrated). It calls mig_tmpdir once before anything else.
#
# Idempotent: a certificate whose serial the engine already serves is skipped ("already migrated"),
# and one the engine serves with another serial (renewed by the engine since, or another certificate
# under that name) is never replaced without --overwrite. A second run therefore writes nothing.

MIG_TOOL="${MIG_TOOL:-migrate}"
MIG_DRY_RUN="${MIG_DRY_RUN:-0}"
MIG_OVERWRITE="${MIG_OVERWRITE:-0}"
MIG_MIGRATED=0
MIG_SKIPPED=0
MIG_FAILED=0
declare -A MIG_SKIP_REASONS=() # reason -> count
MIG_SKIP_ORDER=()              # reasons in the order first seen

mig_say() { printf '%s: %s\n' "$MIG_TOOL" "$*"; }
mig_warn() { printf '%s: %s\n' "$MIG_TOOL" "$*" >&2; }
mig_die() {
  printf '%s: ERROR: %s\n' "$MIG_TOOL" "$*" >&2
  exit 2
}

# mig_tmpdir: makes MIG_TMP, a private (0700) temporary directory removed when the script exits,
# and files created from here on 0600.
mig_tmpdir() {
  umask 077
  MIG_TMP="$(mktemp -d "${TMPDIR:-/tmp}/le-migrate.XXXXXXXX")" || mig_die "cannot create a temporary directory"
  chmod 700 "$MIG_TMP"
  trap 'rm -rf "$MIG_TMP"' EXIT
  trap 'exit 130' INT TERM # exit runs the EXIT trap
}

# mig_require_vault: the vault CLI is there and talks to a Vault (VAULT_ADDR, VAULT_TOKEN as usual).
mig_require_vault() {
  command -v vault >/dev/null 2>&1 || mig_die "the vault CLI is not on PATH"
  command -v openssl >/dev/null 2>&1 || mig_die "openssl is not on PATH (Debian package openssl)"
  vault token lookup -format=json >/dev/null 2>"$MIG_TMP/token.err" ||
    mig_die "vault token lookup failed (set VAULT_ADDR and VAULT_TOKEN): $(mig_clip "$MIG_TMP/token.err")"
}

# mig_clip FILE: the start of an error message in FILE on one line, at most 300 characters, cut before
# anything that looks like a PEM block.
mig_clip() {
  local s code=""
  s="$(head -c 4000 "$1" 2>/dev/null | tr '\n\t' '  ' | tr -s ' ')"
  s="${s%%-----BEGIN*}"
  # The CLI's "Error ...: Error making API request. URL: ... Code: 400. Errors: * msg": keep the code
  # and the messages.
  if [[ "$s" == *"Errors: "* ]]; then
    [[ "$s" =~ Code:\ ([0-9]+) ]] && code="HTTP ${BASH_REMATCH[1]}: "
    s="$code${s#*Errors: }"
  fi
  s="${s#"${s%%[! ]*}"}"
  s="${s%"${s##*[! ]}"}"
  printf '%s' "${s:0:300}"
}

# mig_norm_serial SERIAL: lower-case hex without separators and leading zeros (the engine prints
# colon-separated hex, openssl upper-case hex).
mig_norm_serial() {
  local s="${1//[:[:space:]-]/}"
  s="${s,,}"
  s="${s#"${s%%[!0]*}"}"
  printf '%s' "$s"
}

# mig_cert_serial FILE: the normalized serial of the first certificate in FILE; fails if there is none.
mig_cert_serial() {
  local out
  out="$(openssl x509 -in "$1" -noout -serial 2>/dev/null)" || return 1
  out="${out#serial=}"
  [ -n "$out" ] || return 1
  mig_norm_serial "$out"
}

# mig_skip SOURCE REASON [DETAIL]: counts SOURCE as skipped for REASON (summary) and says why.
mig_skip() {
  local src="$1" reason="$2" detail="${3:-}"
  MIG_SKIPPED=$((MIG_SKIPPED + 1))
  if [ -z "${MIG_SKIP_REASONS[$reason]+x}" ]; then
    MIG_SKIP_REASONS[$reason]=0
    MIG_SKIP_ORDER+=("$reason")
  fi
  MIG_SKIP_REASONS[$reason]=$((MIG_SKIP_REASONS[$reason] + 1))
  mig_say "skipped $src: $reason${detail:+ ($detail)}"
}

# mig_fail SOURCE MESSAGE: counts SOURCE as failed.
mig_fail() {
  MIG_FAILED=$((MIG_FAILED + 1))
  mig_warn "FAILED $1: $2"
}

# mig_stored_serial NAME: reads <mount>/certs/NAME. Returns 0 with MIG_STORED set to the normalized
# serial it serves, 1 when there is no such certificate, 2 (MIG_ERR says why) when it cannot tell.
mig_stored_serial() {
  local out
  MIG_STORED="" MIG_ERR=""
  if out="$(vault read -format=table -field=serial_number "$MIG_MOUNT/certs/$1" 2>"$MIG_TMP/read.err")"; then
    MIG_STORED="$(mig_norm_serial "$out")"
    return 0
  fi
  if grep -q 'No value found' "$MIG_TMP/read.err"; then
    return 1
  fi
  MIG_ERR="$(mig_clip "$MIG_TMP/read.err")"
  return 2
}

# mig_import SOURCE NAME CERT KEY [CHAIN]: imports the PEM files CERT (a leaf, or a full chain), KEY
# and CHAIN (optional) as <mount>/certs/NAME with role MIG_ROLE. SOURCE names the origin in messages.
mig_import() {
  local src="$1" name="$2" cert="$3" key="$4" chain="${5:-}" serial expiry
  if ! serial="$(mig_cert_serial "$cert")"; then
    mig_skip "$src" "not a PEM certificate"
    return 0
  fi
  expiry="$(openssl x509 -in "$cert" -noout -enddate 2>/dev/null)"
  expiry="${expiry#notAfter=}"
  if ! openssl x509 -in "$cert" -noout -checkend 0 >/dev/null 2>&1; then
    mig_skip "$src" "expired" "serial $serial expired $expiry"
    return 0
  fi
  if [ ! -s "$key" ]; then
    mig_skip "$src" "no private key"
    return 0
  fi

  local rc=0
  mig_stored_serial "$name" || rc=$?
  case $rc in
    0)
      if [ "$MIG_STORED" = "$serial" ]; then
        mig_skip "$src" "already migrated" "$MIG_MOUNT/certs/$name serves serial $serial"
        return 0
      fi
      if [ "$MIG_OVERWRITE" != 1 ]; then
        mig_skip "$src" "the engine serves another certificate under that name" \
          "$MIG_MOUNT/certs/$name serves serial $MIG_STORED, not $serial; --overwrite replaces it"
        return 0
      fi
      ;;
    1) ;;
    *)
      mig_fail "$src" "cannot read $MIG_MOUNT/certs/$name: $MIG_ERR"
      return 0
      ;;
  esac

  if [ "$MIG_DRY_RUN" = 1 ]; then
    MIG_MIGRATED=$((MIG_MIGRATED + 1))
    mig_say "would migrate $src -> $MIG_MOUNT/certs/$name (role $MIG_ROLE, serial $serial, expires $expiry)"
    return 0
  fi
  local -a args=("role=$MIG_ROLE" "certificate=@$cert" "private_key=@$key")
  # A cert that holds the full chain already (lecertvend's cert, certbot's fullchain.pem) is sent
  # alone: the engine takes the chain from it, and a second copy would not link.
  if [ -n "$chain" ] && [ -s "$chain" ] && [ "$(grep -c -e '-----BEGIN CERTIFICATE-----' "$cert")" -le 1 ]; then
    args+=("chain=@$chain")
  fi
  # The answer may carry the key: it goes nowhere.
  if ! vault write -format=json "$MIG_MOUNT/certs/$name" "${args[@]}" >/dev/null 2>"$MIG_TMP/write.err"; then
    mig_fail "$src" "vault write $MIG_MOUNT/certs/$name: $(mig_clip "$MIG_TMP/write.err")"
    return 0
  fi
  rc=0
  mig_stored_serial "$name" || rc=$?
  if [ $rc != 0 ] || [ "$MIG_STORED" != "$serial" ]; then
    mig_fail "$src" "$MIG_MOUNT/certs/$name was written but serves serial '${MIG_STORED}' instead of $serial ${MIG_ERR}"
    return 0
  fi
  MIG_MIGRATED=$((MIG_MIGRATED + 1))
  mig_say "migrated $src -> $MIG_MOUNT/certs/$name (role $MIG_ROLE, serial $serial, expires $expiry)"
}

# mig_summary [WHAT]: the summary line ("summary: 3 migrated, 1 skipped (1 not a certificate), 0
# failed"); returns 1 when something failed.
mig_summary() {
  local what="${1:-certificates}" verb="migrated" reasons="" r
  [ "$MIG_DRY_RUN" = 1 ] && verb="to migrate (dry run, nothing written)"
  for r in "${MIG_SKIP_ORDER[@]}"; do
    reasons="${reasons:+$reasons, }${MIG_SKIP_REASONS[$r]} $r"
  done
  mig_say "summary: $what: $MIG_MIGRATED $verb, $MIG_SKIPPED skipped${reasons:+ ($reasons)}, $MIG_FAILED failed"
  [ "$MIG_FAILED" = 0 ]
}
