// Package caller carries the authenticated identity of a gRPC caller in a
// context, as established by the server's listeners and interceptors.
package caller

import (
	"context"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Kind says how a caller authenticated.
type Kind int

const (
	// Unauthenticated callers reached the agent listener without a client
	// certificate (only AttestAgent and health are allowed).
	Unauthenticated Kind = iota
	// Agent callers presented a valid, current agent X.509-SVID.
	Agent
	// Admin callers came through the local admin socket or presented the
	// X.509-SVID of an entry marked admin.
	Admin
	// Downstream callers presented the X.509-SVID of an entry marked
	// downstream (a SPIRE server nested below this one); they may only
	// have their CA signed and publish JWT authorities.
	Downstream
)

func (k Kind) String() string {
	switch k {
	case Agent:
		return "agent"
	case Admin:
		return "admin"
	case Downstream:
		return "downstream"
	default:
		return "unauthenticated"
	}
}

// Caller is the identity of the peer of one RPC.
type Caller struct {
	Kind Kind
	// ID is the SPIFFE ID from the caller's X.509-SVID; zero for callers
	// of the local admin socket.
	ID spiffeid.ID
	// Local is true for callers of the admin Unix socket.
	Local bool
}

type ctxKey struct{}

// NewContext returns ctx carrying c.
func NewContext(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, ctxKey{}, c)
}

// FromContext returns the caller stored in ctx; ok is false if none is.
func FromContext(ctx context.Context) (c Caller, ok bool) {
	c, ok = ctx.Value(ctxKey{}).(Caller)
	return c, ok
}
