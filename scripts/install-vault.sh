#!/usr/bin/env bash
# Builds the Vault CLI from the pinned tool module conformance/tools/vault
# into a per-version cache and prints the binary's path. Re-running is
# cheap: an existing binary is reused. With --cached it only prints the
# path of an existing binary (exit 1 if there is none) and builds nothing.
#
# It is built with Vault's `minimal` build tag: the server and CLI with the
# token, approle, cert, jwt/oidc and userpass auth methods and the kv, pki,
# ssh and transit secrets engines, without the cloud and database plugins.
#
# A cold build (module downloads included) took about 19 minutes on 2 busy
# cores; see conformance/tools/vault/README.md.
#
# Vault is BUSL-1.1 licensed; Signet uses it only to test against a real
# Vault dev server and never ships it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mod="$root/conformance/tools/vault"
version="$(grep -oE 'github\.com/hashicorp/vault v[^ ]+' "$mod/go.mod" | head -1 | cut -d' ' -f2)"
[[ -n "$version" ]] || { echo "install-vault: no github.com/hashicorp/vault version in $mod/go.mod" >&2; exit 2; }
dir="${SIGNET_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/signet-tools}/vault-$version"
if [[ -x "$dir/vault" ]]; then
  echo "$dir/vault"; exit 0
fi
if [[ "${1:-}" == "--cached" ]]; then
  echo "install-vault: vault $version is not built yet: run scripts/install-vault.sh" >&2
  exit 1
fi
mkdir -p "$dir.tmp"
( cd "$mod" && go build -tags minimal -trimpath -o "$dir.tmp/vault" . ) >&2
rm -rf "$dir"; mv "$dir.tmp" "$dir"
echo "$dir/vault"
