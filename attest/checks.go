package attest

import (
	"context"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// AssessTOFU refuses an agent ID that was attested before, as SPIRE's
// trust-on-first-use methods do: the evidence is static, so whoever copied
// it must not get a second agent.
func AssessTOFU(ctx context.Context, req NodeRequest, id spiffeid.ID) error {
	if req.Attested == nil {
		return nil
	}
	ok, err := req.Attested(ctx, id)
	switch {
	case err != nil:
		if _, isStatus := status.FromError(err); isStatus {
			return err
		}
		return status.Errorf(codes.Internal, "unable to look up agent: %v", err)
	case ok:
		return status.Error(codes.PermissionDenied, "attestation data has already been used to attest an agent")
	}
	return nil
}

// CheckPayload refuses, as InvalidArgument, a payload over limit bytes
// (before anything parses it) and an empty one; prefix names the method
// in the message ("awsiid").
func CheckPayload(prefix string, payload []byte, limit int) error {
	if n := len(payload); n > limit {
		return status.Errorf(codes.InvalidArgument, "%s: payload is %d bytes, longer than the limit of %d", prefix, n, limit)
	}
	if len(payload) == 0 {
		return status.Error(codes.InvalidArgument, "missing attestation payload")
	}
	return nil
}
