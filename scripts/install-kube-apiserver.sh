#!/usr/bin/env bash
# Builds kube-apiserver from the pinned tool module
# conformance/tools/kubeapiserver (k8s.io/kubernetes plus a replace block for
# its staging modules) into a per-version cache and prints the binary's path.
# Re-running is cheap: an existing binary is reused. With --cached it only
# prints the path of an existing binary (exit 1 if there is none) and builds
# nothing.
#
# Release-style flags as Kubernetes' hack/lib/golang.sh: static, trimmed,
# with the version stamped so that /version reports it. A cold build took
# about 4 minutes on 2 idle cores (38 min on 2 cores shared with other
# builds) with a peak RSS of 2.3 GB; see
# conformance/tools/kubeapiserver/README.md.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mod="$root/conformance/tools/kubeapiserver"
version="$(grep -oE 'k8s\.io/kubernetes v[^ ]+' "$mod/go.mod" | head -1 | cut -d' ' -f2)"
[[ -n "$version" ]] || { echo "install-kube-apiserver: no k8s.io/kubernetes version in $mod/go.mod" >&2; exit 2; }
dir="${SIGNET_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/signet-tools}/kube-apiserver-$version"
if [[ -x "$dir/kube-apiserver" ]]; then
  echo "$dir/kube-apiserver"; exit 0
fi
if [[ "${1:-}" == "--cached" ]]; then
  echo "install-kube-apiserver: kube-apiserver $version is not built yet: run scripts/install-kube-apiserver.sh" >&2
  exit 1
fi
minor="$(echo "$version" | cut -d. -f2)"
ld="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ld="$ld -X $p.gitVersion=$version -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
done
mkdir -p "$dir.tmp"
( cd "$mod" && CGO_ENABLED=0 go build -trimpath -tags=selinux,notest,grpcnotrace -ldflags="$ld" \
    -o "$dir.tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver ) >&2
rm -rf "$dir"; mv "$dir.tmp" "$dir"
echo "$dir/kube-apiserver"
