// Package proto holds the .proto files of Signet's own gRPC services and
// their generated Go code. Regenerate with `go generate ./proto/...`: it
// runs generate.sh, which needs the pinned protoc (scripts/install-protoc.sh)
// and uses the protoc plugins pinned as tool dependencies in go.mod.
package proto

//go:generate sh generate.sh
