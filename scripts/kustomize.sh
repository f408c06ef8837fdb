#!/usr/bin/env bash
# Installs the pinned kustomize into <repo>/.cache/bin/kustomize (git-ignored) and prints its path.
#
#   scripts/kustomize.sh            install if missing or of another version; print the path
#   scripts/kustomize.sh build DIR  install if needed, then `kustomize build DIR`
#
# Built from source through the Go module proxy (`go install`), the one place this project's
# machines and CI fetch Go tools from; idempotent: a warm cache answers at once.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# v5.8.2 is the newest release that builds with Go 1.26 (v5.8.3 wants a newer toolchain).
KUSTOMIZE_VERSION="v5.8.2"
BIN_DIR="$REPO/.cache/bin"
BIN="$BIN_DIR/kustomize"

die() { printf 'kustomize.sh: ERROR: %s\n' "$*" >&2; exit 1; }

installed_version() { [[ -x "$BIN" ]] && "$BIN" version 2>/dev/null | head -n1 || true; }

install() {
    [[ "$(installed_version)" == "$KUSTOMIZE_VERSION" ]] && return 0
    local go; go="$(command -v go || echo /usr/local/go/bin/go)"
    [[ -x "$go" ]] || die "Go is needed to build kustomize $KUSTOMIZE_VERSION (install Go >= 1.26)"
    mkdir -p "$BIN_DIR" "$REPO/.state"
    local log="$REPO/.state/kustomize-build.log" t0=$SECONDS
    printf 'kustomize: building %s with go install (one-time: 1-4 min with empty Go caches, seconds with warm ones; log %s)...\n' \
        "$KUSTOMIZE_VERSION" ".state/kustomize-build.log" >&2
    # GOWORK/GOFLAGS: build the module on its own, ignoring any workspace or our repo's git.
    if ! GOWORK=off GOFLAGS=-mod=mod GOBIN="$BIN_DIR" CGO_ENABLED=0 GOTOOLCHAIN=local \
        "$go" install -trimpath "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        die "go install of kustomize $KUSTOMIZE_VERSION failed"
    fi
    [[ "$(installed_version)" == "$KUSTOMIZE_VERSION" ]] \
        || die "built $BIN but it reports '$(installed_version)', not $KUSTOMIZE_VERSION"
    printf 'kustomize: %s built in %ss\n' "$KUSTOMIZE_VERSION" "$((SECONDS - t0))" >&2
}

install
case "${1:-}" in
    "") echo "$BIN" ;;
    build) shift; exec "$BIN" build "$@" ;;
    *) die "usage: scripts/kustomize.sh [build DIR]" ;;
esac
