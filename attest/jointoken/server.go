package jointoken

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/signet-id/signet/attest"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Store spends join tokens. ConsumeJoinToken deletes token atomically and
// returns its expiry; a token that does not exist (or was already used)
// and one that had expired fail with the errors named in Config.
type Store interface {
	ConsumeJoinToken(ctx context.Context, token string, now time.Time) (time.Time, error)
}

// Config configures the server half.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	Tokens      Store
	// NotFound and Expired are the Store's errors for a missing and an
	// expired token, compared with errors.Is.
	NotFound, Expired error
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Attestor is the server half: it spends the token the agent presents.
// Its errors are gRPC statuses, sent to the agent as they are.
type Attestor struct{ cfg Config }

// NewAttestor returns the server half.
func NewAttestor(cfg Config) (*Attestor, error) {
	switch {
	case cfg.TrustDomain.IsZero():
		return nil, errors.New("jointoken: trust domain is required")
	case cfg.Tokens == nil:
		return nil, errors.New("jointoken: token store is required")
	case cfg.NotFound == nil || cfg.Expired == nil:
		return nil, errors.New("jointoken: the store's not-found and expired errors are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Attestor{cfg: cfg}, nil
}

// Type returns "join_token".
func (a *Attestor) Type() string { return Type }

// CheckPayload refuses a token longer than MaxLength. The server calls it
// before it looks at anything else in the request.
func (a *Attestor) CheckPayload(payload []byte) error {
	if n := len(payload); n > MaxLength {
		return status.Errorf(codes.InvalidArgument, "failed to attest: join token is %d bytes, longer than the limit of %d", n, MaxLength)
	}
	return nil
}

// Attest spends the token and returns the agent's ID. An agent attested
// by join token cannot attest again (CanReattest false), and has no
// selectors. Admit, when set, is asked before the token is spent, so a
// refused agent does not use up its token.
func (a *Attestor) Attest(ctx context.Context, req attest.NodeRequest) (attest.NodeResult, error) {
	if err := a.CheckPayload(req.Payload); err != nil {
		return attest.NodeResult{}, err
	}
	token := string(req.Payload)
	if token == "" {
		return attest.NodeResult{}, status.Error(codes.InvalidArgument, "failed to attest: join token is empty")
	}
	agentID, err := AgentID(a.cfg.TrustDomain, token)
	if err != nil {
		return attest.NodeResult{}, status.Errorf(codes.InvalidArgument, "failed to attest: join token is not usable in a SPIFFE ID: %v", err)
	}
	if req.Admit != nil {
		if err := req.Admit(ctx, agentID); err != nil {
			if status.Code(err) == codes.AlreadyExists {
				// The token's agent exists: this value was used already
				// (a replayed token, or a new one of the same value). As
				// SPIRE answers a spent token; the new one stays unspent.
				return attest.NodeResult{}, status.Error(codes.InvalidArgument, usedMessage)
			}
			return attest.NodeResult{}, err
		}
	}
	if _, err := a.cfg.Tokens.ConsumeJoinToken(ctx, token, a.cfg.Now()); err != nil {
		return attest.NodeResult{}, a.consumeError(err)
	}
	return attest.NodeResult{AgentID: agentID}, nil
}

// usedMessage is SPIRE's answer to a token that is unknown or was used.
const usedMessage = "failed to attest: join token does not exist or has already been used"

func (a *Attestor) consumeError(err error) error {
	const msg = "failed to fetch join token"
	switch {
	case errors.Is(err, a.cfg.NotFound):
		return status.Error(codes.InvalidArgument, usedMessage)
	case errors.Is(err, a.cfg.Expired):
		return status.Error(codes.InvalidArgument, "join token expired")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, msg)
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, msg)
	default:
		return status.Error(codes.Internal, fmt.Sprintf("%s: %v", msg, err))
	}
}
