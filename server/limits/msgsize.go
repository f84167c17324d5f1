package limits

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// Receive limits by message kind. gRPC bounds every message of a server
// by one size (4 MiB, what a full BatchNewX509SVID of hybrid CSRs needs);
// these bound the messages that need far less, so a peer cannot make an
// attestation, a renewal or a health check carry megabytes. A message over
// its kind's limit is refused with ResourceExhausted naming the limit.
const (
	// MaxAttestMessageBytes bounds an AttestAgent message: a join token
	// (at most 256 bytes), attestation evidence, or a CSR.
	MaxAttestMessageBytes = 64 << 10
	// MaxCSRMessageBytes bounds RenewAgent: one agent CSR (a hybrid CSR
	// is about 5 KB).
	MaxCSRMessageBytes = 64 << 10
	// MaxSmallMessageBytes bounds requests that carry no more than a few
	// IDs and an output mask: health, GetBundle, Watch, NewJWTSVID.
	MaxSmallMessageBytes = 64 << 10
)

// messageLimit returns the most bytes a request of m's kind may take, or
// 0 where only gRPC's per-server limit applies.
func messageLimit(m proto.Message) int {
	switch m.ProtoReflect().Descriptor().FullName() {
	case "spire.api.server.agent.v1.AttestAgentRequest":
		return MaxAttestMessageBytes
	case "spire.api.server.agent.v1.RenewAgentRequest":
		return MaxCSRMessageBytes
	case "grpc.health.v1.HealthCheckRequest",
		"spire.api.server.bundle.v1.GetBundleRequest",
		"spire.api.server.bundle.v1.GetFederatedBundleRequest",
		"spire.api.server.svid.v1.NewJWTSVIDRequest",
		"spire.api.server.entry.v1.GetAuthorizedEntriesRequest",
		"signet.notify.v1.WatchRequest":
		return MaxSmallMessageBytes
	}
	return 0
}

// checkSize refuses a received request larger than its kind's limit.
func (l *Limiter) checkSize(method string, req any) error {
	m, ok := req.(proto.Message)
	if !ok {
		return nil
	}
	max := messageLimit(m)
	if max == 0 {
		return nil
	}
	if n := proto.Size(m); n > max {
		return l.refuse("max_message_bytes", "%s request of %d bytes is over the %d-byte limit for %s messages (limit max_message_bytes)",
			method, n, max, m.ProtoReflect().Descriptor().Name())
	}
	return nil
}

// sizeUnary applies the receive limits to unary calls.
func (l *Limiter) sizeUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := l.checkSize(info.FullMethod, req); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

// sizeStream applies the receive limits to every message of a stream.
func (l *Limiter) sizeStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	return h(srv, &sizedStream{ServerStream: ss, l: l, method: info.FullMethod})
}

type sizedStream struct {
	grpc.ServerStream
	l      *Limiter
	method string
}

func (s *sizedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return s.l.checkSize(s.method, m)
}
