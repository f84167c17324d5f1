#!/bin/sh
# Regenerates the Go code of every .proto file under proto/ with the pinned
# protoc (scripts/install-protoc.sh) and the plugins pinned as Go tool
# dependencies in go.mod (go tool protoc-gen-go, go tool protoc-gen-go-grpc).
# Run through `go generate ./proto/...` from anywhere in the module.
set -eu
cd "$(dirname "$0")"
want="libprotoc 3.21.12"
have="$(protoc --version 2>/dev/null || true)"
if [ "$have" != "$want" ]; then
	echo "proto/generate.sh: need protoc \"$want\", have \"${have:-none}\"; run scripts/install-protoc.sh" >&2
	exit 1
fi
gen_go="$(go tool -n protoc-gen-go)"
gen_grpc="$(go tool -n protoc-gen-go-grpc)"
for f in signet/*/v1/*.proto; do
	protoc --plugin=protoc-gen-go="$gen_go" --plugin=protoc-gen-go-grpc="$gen_grpc" \
		--go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative "$f"
done
