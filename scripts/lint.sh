#!/usr/bin/env bash
# make lint: gofmt, go vet and staticcheck (the version pinned in scripts/requirements.txt, built into
# the tools cache, never added to go.mod) over both Go modules: the plugin (the repository root) and
# the end-to-end tests (e2e/, with -tags bench so the benchmark is checked too). Runs every check,
# prints every finding, and fails if there was any. CI runs it (make test starts with it).
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"
cd "$REPO" || exit 1

say() { printf 'lint: %s\n' "$*" >&2; }
failed=()
progress() { bash "$REPO/scripts/progress.sh" "$@"; }

# gofmt -l lists the files it would change (and exits 0 even then); testdata is not Go code to format.
if ! out="$(find . \( -name .git -o -name testdata -o -name bin -o -name .demo -o -name .e2e \) -prune -o \
  -name '*.go' -type f -exec gofmt -l {} + 2>&1)"; then
  printf '%s\n' "$out" >&2
  failed+=(gofmt)
elif [ -n "$out" ]; then
  say "gofmt: these files are not formatted (make fmt formats them):"
  printf '%s\n' "$out" >&2
  failed+=(gofmt)
else
  say "gofmt: ok"
fi

progress vet "go vet ./... (plugin module; the first run compiles the dependencies: a few minutes)" -- \
  go vet ./... || failed+=("go vet")
(cd e2e && progress vet-e2e "go vet -tags bench ./... (e2e module; paths are under e2e/)" -- go vet -tags bench ./...) ||
  failed+=("go vet (e2e)")

if TOOLS_DIR="$(bash "$REPO/scripts/tools.sh" staticcheck | tail -n 1)"; then
  sc="$TOOLS_DIR/bin/staticcheck"
  progress staticcheck "staticcheck ./... (plugin module)" -- "$sc" ./... || failed+=(staticcheck)
  (cd e2e && progress staticcheck-e2e "staticcheck -tags bench ./... (e2e module; paths are under e2e/)" -- "$sc" -tags bench ./...) ||
    failed+=("staticcheck (e2e)")
else
  failed+=("staticcheck (not installed)")
fi

if [ ${#failed[@]} -gt 0 ]; then
  say "FAILED: $(printf '[%s]' "${failed[@]}" | sed 's/\]\[/], [/g')"
  exit 1
fi
say "ok: gofmt, go vet and staticcheck found nothing in either module"
