package peercred

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/signet-id/signet/attest/unix"
)

// AttestFunc turns a process ID into selectors (a workload attestor).
type AttestFunc func(ctx context.Context, pid int32) ([]*types.Selector, error)

// Attest attests the caller of the RPC in ctx with attest, then checks
// with Verify that the selectors describe the process that opened the
// connection, with the credentials and executable it had then (attestors
// check that their snapshot is consistent, as attest/unix does):
// a refused connection, a caller that changed credentials or executable
// since it connected (setuid exec, exec), or unix uid/gid selectors other
// than the connect-time SO_PEERCRED IDs all fail with PermissionDenied; a
// caller that is gone (exited, PID reused) with Unauthenticated. Errors
// are gRPC statuses; an attestor's own status is passed through, other
// attestor errors become Internal.
func Attest(ctx context.Context, attest AttestFunc) (AuthInfo, []*types.Selector, error) {
	ai, ok := FromContext(ctx)
	if !ok {
		return ai, nil, status.Error(codes.Internal, "caller credentials missing")
	}
	if ai.Refused != nil {
		return ai, nil, status.Error(codes.ResourceExhausted, ai.Refused.Error())
	}
	selectors, err := attest(ctx, ai.PID)
	if err != nil {
		if _, ok := status.FromError(err); ok {
			return ai, nil, err
		}
		return ai, nil, status.Errorf(codes.Internal, "workload attestation failed: %v", err)
	}
	// The process may have exited, executed another program or changed
	// credentials since it connected or while it was attested.
	if err := ai.Verify(); err != nil {
		return ai, nil, verifyStatus(err)
	}
	if err := bound(ai, selectors); err != nil {
		return ai, nil, status.Error(codes.PermissionDenied, err.Error())
	}
	return ai, selectors, nil
}

func verifyStatus(err error) error {
	if errors.Is(err, ErrCallerChanged) {
		return status.Errorf(codes.PermissionDenied, "caller is not the process that connected: %v", err)
	}
	return status.Errorf(codes.Unauthenticated, "could not verify existence of the original caller: %v", err)
}

// bound checks that unix uid and gid selectors name the IDs the kernel
// recorded when the caller connected.
func bound(ai AuthInfo, selectors []*types.Selector) error {
	uid := strconv.FormatUint(uint64(ai.UID), 10)
	gid := strconv.FormatUint(uint64(ai.GID), 10)
	for _, s := range selectors {
		if s.GetType() != unix.SelectorType {
			continue
		}
		kind, value, _ := strings.Cut(s.GetValue(), ":")
		if (kind == "uid" && value != uid) || (kind == "gid" && value != gid) {
			return fmt.Errorf("peercred: selector unix:%s does not match the caller's uid/gid %s/%s at connect", s.GetValue(), uid, gid)
		}
	}
	return nil
}

// Reverify checks again, before a stream sends the caller of ctx an
// update, that the caller is still the process that connected, with its
// credentials and executable; the error is a gRPC status (see Attest). A
// process that executes another program or changes credentials after its
// stream was attested stops receiving updates.
func Reverify(ctx context.Context) error {
	ai, ok := FromContext(ctx)
	if !ok {
		return status.Error(codes.Internal, "caller credentials missing")
	}
	if err := ai.Verify(); err != nil {
		return verifyStatus(err)
	}
	return nil
}
