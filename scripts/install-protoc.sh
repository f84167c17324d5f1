#!/usr/bin/env bash
# Installs the protoc that `go generate ./...` (proto/generate.sh) needs:
# Debian's protobuf-compiler at the pinned version, the one that wrote the
# committed .pb.go headers. The protoc plugins need no install: they are
# pinned as Go tool dependencies in go.mod (go tool protoc-gen-go,
# go tool protoc-gen-go-grpc). Idempotent; generated code is committed, so
# builds and tests do not need this.
set -euo pipefail

pkg=protobuf-compiler
want_upstream=3.21.12         # any Debian revision of it (3.21.12-3, 3.21.12-3+deb12u1, ...)
want_protoc="libprotoc 3.21.12" # what `protoc --version` prints

have_pkg="$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || true)"
# Debian security updates change only the package revision; the protoc
# they ship prints the same version and writes the same code.
if [[ "$have_pkg" != "$want_upstream"-* ]]; then
	if [[ $(id -u) -ne 0 ]]; then
		echo "install-protoc.sh: $pkg $want_upstream-* is needed (have ${have_pkg:-none}); run as root" >&2
		exit 1
	fi
	apt-get update -qq
	candidate="$(apt-cache policy "$pkg" | awk '/Candidate:/ {print $2}')"
	if [[ "$candidate" != "$want_upstream"-* ]]; then
		echo "install-protoc.sh: apt offers $pkg ${candidate:-none}, the pin is $want_upstream-*; update the pin (and regenerate) deliberately" >&2
		exit 1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg=$candidate"
fi
have_protoc="$(protoc --version 2>/dev/null || true)"
if [[ "$have_protoc" != "$want_protoc" ]]; then
	echo "install-protoc.sh: protoc on PATH is \"${have_protoc:-none}\", want \"$want_protoc\" ($(command -v protoc || echo 'not found'))" >&2
	exit 1
fi
echo "$have_protoc"
