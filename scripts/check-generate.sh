#!/usr/bin/env bash
# Fails if generated code is stale: runs `go generate ./...` (with the
# pinned protoc from scripts/install-protoc.sh and the protoc plugins pinned
# in go.mod) and then `git diff --exit-code`, so a .proto edited without
# regenerating, or generated files edited by hand, fail here.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-protoc.sh >/dev/null
go generate ./...
if ! git diff --exit-code --stat; then
	echo "check-generate.sh: generated files differ from the committed ones; run go generate ./... and commit" >&2
	exit 1
fi
if untracked="$(git status --porcelain --untracked-files=normal | grep '^??')"; then
	echo "check-generate.sh: go generate wrote new files:" >&2
	echo "$untracked" >&2
	exit 1
fi
