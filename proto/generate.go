// Package proto holds the .proto files of Signet's own gRPC services and
// their generated Go code. Regenerate with `go generate ./proto/...`
// (needs protoc, protoc-gen-go and protoc-gen-go-grpc on PATH; see
// scripts/install-protoc.sh).
package proto

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative signet/notify/v1/notify.proto
//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative signet/ca/v1/ca.proto
//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative signet/audit/v1/audit.proto
//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative signet/secrets/v1/secrets.proto
