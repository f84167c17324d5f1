#!/usr/bin/env bash
# Builds golangci-lint at the pinned version with `go install` into a
# per-version cache and prints the binary's path. Re-running is cheap: an
# existing binary is reused. It is built with the project's Go toolchain, so
# it understands the language version go.mod asks for.
set -euo pipefail
version=v2.15.0
dir="${SIGNET_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/signet-tools}/golangci-lint-$version"
if [[ -x "$dir/golangci-lint" ]]; then
  echo "$dir/golangci-lint"; exit 0
fi
rm -rf "$dir.tmp"; mkdir -p "$dir.tmp"
( cd "$dir.tmp" && GOBIN="$dir.tmp" go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$version" ) >&2
rm -rf "$dir"; mv "$dir.tmp" "$dir"
echo "$dir/golangci-lint"
