#!/usr/bin/env bash
# Fails if generated code is stale: runs `go generate ./...` (with the
# pinned protoc from scripts/install-protoc.sh and the protoc plugins pinned
# in go.mod) and fails if that changed or added any file, so a .proto edited
# without regenerating, or generated files edited by hand, fail here. On a
# clean checkout (CI) this is `go generate ./... && git diff --exit-code`;
# in a working tree with uncommitted edits, only what go generate itself
# changes counts.
set -euo pipefail
cd "$(dirname "$0")/.."

snapshot() {
	git status --porcelain=v1 --untracked-files=all
	git diff | sha256sum
	git ls-files -z --others --exclude-standard | xargs -0 -r sha256sum
}

./scripts/install-protoc.sh >/dev/null
before="$(snapshot)"
go generate ./...
after="$(snapshot)"
if [[ "$before" != "$after" ]]; then
	echo "check-generate.sh: go generate ./... changed the tree; run it and commit what it writes:" >&2
	diff <(echo "$before") <(echo "$after") >&2 || true
	git diff --stat >&2
	exit 1
fi
