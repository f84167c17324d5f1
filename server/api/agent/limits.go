package agent

import (
	"time"

	"github.com/signet-id/signet/server/api/apiutil"
	"github.com/signet-id/signet/server/store"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Join token limits (docs/limits.md).
const (
	// MaxJoinTokenLength bounds a join token, in bytes. AttestAgent checks
	// it before anything else.
	MaxJoinTokenLength = 256
	// MinCustomJoinTokenLength is the shortest token an admin may choose
	// (generated tokens are UUIDs, 122 random bits).
	MinCustomJoinTokenLength = 16
	// MaxJoinTokenTTL bounds a join token's lifetime.
	MaxJoinTokenTTL = 24 * time.Hour
)

// checkJoinTokenRequest applies the limits to a CreateJoinToken request's
// lifetime and custom token.
func checkJoinTokenRequest(ttl int32, token string) error {
	if time.Duration(ttl)*time.Second > MaxJoinTokenTTL {
		return status.Errorf(codes.InvalidArgument, "invalid ttl: %d seconds exceeds the maximum join token lifetime of %d seconds (%s)", ttl, int(MaxJoinTokenTTL.Seconds()), MaxJoinTokenTTL)
	}
	if token != "" && len(token) < MinCustomJoinTokenLength {
		return status.Errorf(codes.InvalidArgument, "invalid token: %d characters, a custom join token needs at least %d (omit it to get a random one)", len(token), MinCustomJoinTokenLength)
	}
	if len(token) > MaxJoinTokenLength {
		return status.Errorf(codes.InvalidArgument, "invalid token: longer than %d characters", MaxJoinTokenLength)
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
