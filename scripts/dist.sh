#!/usr/bin/env bash
# make dist: release artifacts of the plugin, one per platform, with the version stamped in, their
# SHA256SUMS, and the exact `vault plugin register` line for each platform.
#
#   DIST_DIR/vault-plugin-secrets-letsencrypt_<version>_<os>_<arch>       the plugin binary (what goes
#                                                                        into Vault's plugin_directory)
#   DIST_DIR/vault-plugin-secrets-letsencrypt_<version>_<os>_<arch>.zip   the same binary, zipped (the
#                                                                        shape HashiCorp ships plugins in)
#   DIST_DIR/SHA256SUMS                                                   sha256sum of every file above
#
# The binary keeps its versioned name in the plugin directory: `vault plugin register -command=` names
# that file, and two versions registered side by side (the upgrade path: register the new one, tune the
# mount, reload) need two files, each matching its own -sha256.
#
# Builds are reproducible: CGO_ENABLED=0, -trimpath, -buildvcs=false (nothing from .git enters the
# binary besides the version string), -ldflags "-s -w" (no symbol table or DWARF: a third smaller; panics
# still print symbolized stacks); the same source, version and Go toolchain give the same sha256 on any
# machine. Zips hold one file with a fixed
# timestamp (the commit's time) and no extra attributes (zip -X), so they are reproducible too.
#
# Usage: scripts/dist.sh                   build (see above)
#        scripts/dist.sh --print-version   print the version a build would stamp, build nothing
# Environment:
#   VERSION    the version to stamp (semver with a leading v, e.g. v0.2.0). Default: the tag at HEAD
#              (git describe --tags --exact-match) when the worktree is clean, otherwise a development
#              version: v<next patch after the last tag>-dev.<commits since it>+g<sha>[.dirty]
#              (v0.0.0-dev.<commits>+g<sha> without any tag), which Vault accepts and orders after the
#              last tag and before the next release.
#   PLATFORMS  space-separated os/arch list (default: linux/amd64 linux/arm64 darwin/amd64 darwin/arm64)
#   DIST_DIR   output directory (default: <repo>/dist); artifacts of earlier runs there are removed
# Progress goes to stderr; stdout is the summary (artifacts, checksums, the commands to register, enable
# and upgrade), which the upgrade test (e2e/upgrade_test.go) runs as printed.
set -euo pipefail

# The whole script is one function, read by bash before it runs: editing this file while a build runs
# cannot change what that build does next.
main() {
# The zips' timestamps are the commit's time in UTC whatever the builder's time zone.
export TZ=UTC
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$SCRIPT_DIR/lib.sh"
le_load_requirements

PLUGIN="vault-plugin-secrets-letsencrypt"
MODULE="github.com/letsencrypt-vault/vault-plugin-secrets-letsencrypt"
PLATFORMS="${PLATFORMS:-linux/amd64 linux/arm64 darwin/amd64 darwin/arm64}"
DIST_DIR="${DIST_DIR:-$REPO/dist}"

log() { printf 'dist: %s\n' "$*" >&2; }
die() { printf 'dist: ERROR: %s\n' "$*" >&2; exit 1; }
dur() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }
mib() { printf '%d.%d MiB' $(($1 / 1048576)) $(($1 % 1048576 * 10 / 1048576)); } # bytes, rounded down

print_version=""
case "${1:-}" in
  "") ;;
  --print-version) print_version=1 ;;
  *) die "usage: $0 [--print-version]" ;;
esac
if [ -n "$print_version" ]; then
  le_require git || die "missing commands (above); 'bash scripts/tools.sh dist' installs them"
else
  le_require go git zip sha256sum stat touch || die "missing commands (above); 'bash scripts/tools.sh dist' installs them"
fi
cd "$REPO"

# semver with a leading v: what Vault's plugin catalog accepts for -version, and what the binary reports
# as its running version (registration fails when the two differ).
SEMVER_RE='^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$'

git rev-parse --git-dir >/dev/null 2>&1 || [ -n "${VERSION:-}" ] ||
  die "not a git checkout: give the version, e.g. make dist VERSION=v0.1.0"
dirty=""
if git rev-parse --git-dir >/dev/null 2>&1 && [ -n "$(git status --porcelain --untracked-files=no)" ]; then
  dirty=1
fi

if [ -n "${VERSION:-}" ]; then
  version="$VERSION"
  source_of_version="VERSION"
elif [ -z "$dirty" ] && tag="$(git describe --tags --exact-match --match 'v[0-9]*' HEAD 2>/dev/null)"; then
  version="$tag"
  source_of_version="the tag at HEAD"
else
  sha="$(git rev-parse --short=12 HEAD)"
  if last="$(git describe --tags --abbrev=0 --match 'v[0-9]*' HEAD 2>/dev/null)" && [[ "$last" =~ $SEMVER_RE ]]; then
    base="v${BASH_REMATCH[1]}.${BASH_REMATCH[2]}.$((BASH_REMATCH[3] + 1))"
    n="$(git rev-list --count "$last..HEAD")"
    source_of_version="$n commits after $last"
  else
    base="v0.0.0"
    n="$(git rev-list --count HEAD)"
    source_of_version="no release tag"
  fi
  version="$base-dev.$n+g$sha${dirty:+.dirty}"
  source_of_version="development build: $source_of_version${dirty:+, uncommitted changes}"
fi
[[ "$version" =~ $SEMVER_RE ]] ||
  die "version \"$version\" is not semver with a leading v (e.g. v0.2.0 or v0.2.0-rc.1): Vault refuses it for -version"
if [ -n "$print_version" ]; then
  printf '%s\n' "$version"
  exit 0
fi

commit="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
# The zip entries' timestamp: the commit's time, so a rebuild of the same commit gives the same zip.
stamp="$(git log -1 --format=%cd --date=format-local:%Y%m%d%H%M.%S 2>/dev/null || echo 200001010000.00)"

mkdir -p "$DIST_DIR"
DIST_DIR="$(cd "$DIST_DIR" && pwd)"
case "$DIST_DIR" in / | "$HOME" | "$REPO") die "refusing to use $DIST_DIR as the output directory" ;; esac
rm -f "$DIST_DIR/${PLUGIN}_"* "$DIST_DIR/SHA256SUMS"

log "$PLUGIN $version ($source_of_version), commit $commit, $(go env GOVERSION)"
log "platforms: $PLATFORMS -> $DIST_DIR"

declare -A BIN_SHA
artifacts=()
built=()
total_start=$SECONDS
for p in $PLATFORMS; do
  goos="${p%/*}" goarch="${p#*/}"
  [ -n "$goos" ] && [ -n "$goarch" ] && [ "$goos/$goarch" = "$p" ] || die "bad platform \"$p\" (want os/arch, e.g. linux/amd64)"
  name="${PLUGIN}_${version}_${goos}_${goarch}"
  start=$SECONDS
  log "building $p (cross-compiling every lego DNS provider: several minutes per platform the first time)"
  # -trimpath and -buildvcs=false keep anything but the source, the version and the toolchain out of the
  # binary; GOFLAGS is set so that a user's own GOFLAGS (e.g. -race, -cover) cannot change the result.
  CGO_ENABLED=0 GOOS="$goos" GOARCH="$goarch" GOFLAGS="-mod=readonly" \
    go build -trimpath -buildvcs=false \
    -ldflags "-s -w -X $MODULE/backend.Version=$version" \
    -o "$DIST_DIR/$name" "./cmd/$PLUGIN" || die "go build for $p failed"
  chmod 0755 "$DIST_DIR/$name"
  touch -t "$stamp" "$DIST_DIR/$name"
  (cd "$DIST_DIR" && rm -f "$name.zip" && zip -q -X -9 "$name.zip" "$name") || die "zip for $p failed"
  BIN_SHA[$p]="$(sha256sum "$DIST_DIR/$name" | cut -d' ' -f1)"
  artifacts+=("$name" "$name.zip")
  built+=("$p")
  log "built $p in $(dur $((SECONDS - start))): $name ($(mib "$(stat -c %s "$DIST_DIR/$name")"), zip $(mib "$(stat -c %s "$DIST_DIR/$name.zip")"))"
done
(cd "$DIST_DIR" && sha256sum "${artifacts[@]}" >SHA256SUMS)
log "done in $(dur $((SECONDS - total_start)))"

# ---------------------------------------------------------------- summary (stdout)

cat <<EOF
$PLUGIN $version ($source_of_version)
commit $commit, $(go env GOVERSION), CGO_ENABLED=0, -trimpath; built in $(dur $((SECONDS - total_start)))

Artifacts in $DIST_DIR (check them: cd $DIST_DIR && sha256sum -c SHA256SUMS):
EOF
for a in "${artifacts[@]}"; do
  printf '  %-12s %s\n' "$(mib "$(stat -c %s "$DIST_DIR/$a")")" "$a"
done
printf '\nSHA256SUMS:\n'
sed 's/^/  /' "$DIST_DIR/SHA256SUMS"

cat <<EOF

Install: copy the binary for the Vault server's platform into its plugin_directory under the same name
(or unzip the .zip there), on every node of a cluster, then register it once. For each platform:
EOF
for p in "${built[@]}"; do
  name="${PLUGIN}_${version}_${p%/*}_${p#*/}"
  printf '  %-13s vault plugin register -sha256=%s -version=%s -command=%s secret %s\n' \
    "$p:" "${BIN_SHA[$p]}" "$version" "$name" "$PLUGIN"
done
cat <<EOF

New mount:
  vault secrets enable -path=letsencrypt -plugin-version=$version $PLUGIN

Upgrade (or downgrade) an existing mount to $version once it is registered; certificates, accounts and
renewal schedules stay in the mount's storage and carry over. Tune it, then reload it in one of three ways:
  vault secrets tune -plugin-version=$version letsencrypt
  vault write sys/plugins/reload/backend mounts=letsencrypt           # this mount on this node
  vault plugin reload -type=secret -plugin=$PLUGIN     # every mount of the plugin on this node
  vault plugin reload -scope=global -type=secret -plugin=$PLUGIN   # every node running it (Enterprise: performance standbys, replicated clusters)
  vault secrets list -detailed    # the mount's "Running Version" is then $version
(vault plugin reload -mounts=letsencrypt fails in the root namespace with Vault 1.21's CLI: it asks
sys/plugins/reload/unknown/, "unsupported path"; the vault write line above is that request done right.)
EOF
}

main "$@"; exit $?
