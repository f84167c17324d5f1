package agent

import (
	"time"

	"github.com/signet-id/signet/attest/jointoken"
	"github.com/signet-id/signet/server/api/apiutil"
	"github.com/signet-id/signet/server/store"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// checkJoinTokenRequest applies the join token limits (jointoken.MaxTTL,
// MinCustomLength, MaxLength) to a CreateJoinToken request's
// lifetime and custom token.
func checkJoinTokenRequest(ttl int32, token string) error {
	if time.Duration(ttl)*time.Second > jointoken.MaxTTL {
		return status.Errorf(codes.InvalidArgument, "invalid ttl: %d seconds exceeds the maximum join token lifetime of %d seconds (%s)", ttl, int(jointoken.MaxTTL.Seconds()), jointoken.MaxTTL)
	}
	if token != "" && len(token) < jointoken.MinCustomLength {
		return status.Errorf(codes.InvalidArgument, "invalid token: %d characters, a custom join token needs at least %d (omit it to get a random one)", len(token), jointoken.MinCustomLength)
	}
	if len(token) > jointoken.MaxLength {
		return status.Errorf(codes.InvalidArgument, "invalid token: longer than %d characters", jointoken.MaxLength)
	}
	return nil
}

// aliasID validates a CreateJoinToken agent_id alias: a member of td with a
// path outside the reserved /spire namespace.
func aliasID(td spiffeid.TrustDomain, p *types.SPIFFEID) (spiffeid.ID, error) {
	id, err := apiutil.IDFromProto("agent ID", td, p)
	if err != nil {
		return id, status.Error(codes.InvalidArgument, err.Error())
	}
	if id.Path() == "" {
		return id, status.Errorf(codes.InvalidArgument, "invalid agent ID: %q has no path", id)
	}
	if store.IsReservedPath(id.Path()) {
		return id, status.Errorf(codes.InvalidArgument, "invalid agent ID: %q is in the reserved namespace %s/ (only attestation issues those IDs); choose a workload path", id, store.ReservedPrefix)
	}
	return id, nil
}
