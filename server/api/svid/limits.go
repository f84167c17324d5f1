package svid

import (
	"github.com/signet-id/signet/server/store"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// MaxAudiences bounds the audiences of one JWT-SVID.
const MaxAudiences = 32

// MaxAudienceLength bounds one audience, in bytes.
const MaxAudienceLength = 1024

// checkMintID refuses to mint IDs in the reserved /spire namespace: the
// server's and agents' IDs come only from the server itself and from
// attestation (SPIRE refuses them too).
func checkMintID(id spiffeid.ID) error {
	if store.IsReservedPath(id.Path()) {
		return status.Errorf(codes.InvalidArgument, "invalid SPIFFE ID: %q is in the reserved namespace %s/ (only the server and attestation issue those IDs)", id, store.ReservedPrefix)
	}
	return nil
}
