module github.com/signet-id/signet/conformance/bench

go 1.26.8

require (
	github.com/spiffe/go-spiffe/v2 v2.9.0
	github.com/spiffe/spire-api-sdk v1.13.3
	golang.org/x/image v0.47.0
	google.golang.org/grpc v1.85.0
)

require (
	github.com/Microsoft/go-winio v0.6.2 // indirect
	github.com/go-jose/go-jose/v4 v4.1.9 // indirect
	golang.org/x/net v0.61.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/text v0.43.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260817212433-ac3dfec99bb1 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)

// The harness builds ./cmd/signet from the main module as a binary and
// imports none of its packages; the replace keeps any future import on this
// checkout rather than a published version.
replace github.com/signet-id/signet => ../..
