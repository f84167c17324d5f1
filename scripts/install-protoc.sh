#!/usr/bin/env bash
# Installs the code generators `go generate ./...` needs. Generated code is
# committed, so builds and tests do not need this.
set -euo pipefail
command -v protoc >/dev/null || { apt-get update -qq && apt-get install -y -qq protobuf-compiler; }
go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
