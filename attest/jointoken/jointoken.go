// Package jointoken is join-token node attestation, both halves: the
// agent presents a single-use token (Evidence), and the server spends it
// and names the agent spiffe://<td>/spire/agent/join_token/<token>
// (Attestor), as SPIRE does.
package jointoken

import (
	"context"
	"errors"
	"time"

	"github.com/signet-id/signet/spireid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Type is the attestation type name of join tokens.
const Type = "join_token"

// Limits (docs/limits.md).
const (
	// MaxLength bounds a join token, in bytes. The server checks it
	// before anything else in an attestation.
	MaxLength = 256
	// MinCustomLength is the shortest token an admin may choose
	// (generated tokens are UUIDs, 122 random bits).
	MinCustomLength = 16
	// MaxTTL bounds a join token's lifetime.
	MaxTTL = 24 * time.Hour
)

// AgentID returns the SPIFFE ID an agent attested with token gets.
func AgentID(td spiffeid.TrustDomain, token string) (spiffeid.ID, error) {
	return spireid.AgentID(td, Type, token)
}

// ErrNoChallenge is the answer to a challenge from the server: join-token
// attestation has no challenge step.
var ErrNoChallenge = errors.New("jointoken: join token attestation has no challenges")

// Evidence is the agent half: it presents the token.
type Evidence struct{ token string }

// NewEvidence returns the evidence for token.
func NewEvidence(token string) *Evidence { return &Evidence{token: token} }

// Type returns "join_token".
func (e *Evidence) Type() string { return Type }

// Payload returns the token.
func (e *Evidence) Payload(context.Context) ([]byte, error) {
	if e.token == "" {
		return nil, errors.New("jointoken: no join token")
	}
	return []byte(e.token), nil
}

// Respond refuses every challenge: a join token proves nothing more.
func (e *Evidence) Respond(context.Context, []byte) ([]byte, error) {
	return nil, ErrNoChallenge
}
