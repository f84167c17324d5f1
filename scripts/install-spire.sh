#!/usr/bin/env bash
# Builds spire-server and spire-agent v1.13.3 from the pinned tool module
# conformance/tools/spire into a per-version cache and prints the directory.
# Re-running is cheap: existing binaries are reused.
set -euo pipefail
version=v1.13.3
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${SIGNET_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/signet-tools}/spire-$version"
if [[ -x "$dir/spire-server" && -x "$dir/spire-agent" ]]; then
  echo "$dir"; exit 0
fi
mkdir -p "$dir.tmp"
( cd "$root/conformance/tools/spire" && GOBIN="$dir.tmp" go install github.com/spiffe/spire/cmd/spire-server github.com/spiffe/spire/cmd/spire-agent ) >&2
rm -rf "$dir"; mv "$dir.tmp" "$dir"
echo "$dir"
