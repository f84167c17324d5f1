#!/usr/bin/env bash
# Builds promtool from the pinned tool module conformance/tools/promtool
# (github.com/prometheus/prometheus/cmd/promtool) into a per-version cache
# and prints the binary's path; build logs go to stderr. Re-running is
# cheap: an existing binary is reused. With --cached it only prints the
# path of an existing binary (exit 1 if there is none) and builds nothing.
#
# -tags=remove_all_sd drops the service-discovery plugins that
# prometheus/plugins registers (aws, azure, gce, consul, …; 1364 → 1117
# packages). promtool still imports discovery/file and discovery/kubernetes
# itself, and `check rules` / `test rules` need no discovery at all.
# `promtool --version` reports the module version. A cold build (empty
# GOCACHE; the modules, already downloaded, took 30 s more) took 190 s of
# CPU: 8.5 min wall on 2 cores shared with other builds, peak RSS 0.9 GB.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mod="$root/conformance/tools/promtool"
version="$(grep -oE 'github\.com/prometheus/prometheus v[^ ]+' "$mod/go.mod" | head -1 | cut -d' ' -f2)"
[[ -n "$version" ]] || { echo "install-promtool: no github.com/prometheus/prometheus version in $mod/go.mod" >&2; exit 2; }
dir="${SIGNET_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/signet-tools}/promtool-$version"
if [[ -x "$dir/promtool" ]]; then
  echo "$dir/promtool"; exit 0
fi
if [[ "${1:-}" == "--cached" ]]; then
  echo "install-promtool: promtool $version is not built yet: run scripts/install-promtool.sh" >&2
  exit 1
fi
rm -rf "$dir.tmp"; mkdir -p "$dir.tmp"
( cd "$mod" && CGO_ENABLED=0 go build -trimpath -tags=remove_all_sd \
    -ldflags="-s -w -X github.com/prometheus/common/version.Version=$version" \
    -o "$dir.tmp/promtool" github.com/prometheus/prometheus/cmd/promtool ) >&2
rm -rf "$dir"; mv "$dir.tmp" "$dir"
echo "$dir/promtool"
