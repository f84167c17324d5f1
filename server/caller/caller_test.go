package caller_test

import (
	"context"
	"testing"

	"github.com/signet-id/signet/server/caller"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TestZeroCallerHoldsNoPrivilege: a context without a caller, and the zero
// Caller, are unauthenticated, so a listener that forgets to authenticate
// grants nothing.
func TestZeroCallerHoldsNoPrivilege(t *testing.T) {
	c, ok := caller.FromContext(context.Background())
	if ok {
		t.Fatal("a bare context carries a caller")
	}
	if c.Kind != caller.Unauthenticated || c.Local || !c.ID.IsZero() {
		t.Fatalf("caller of a bare context is %+v, want the unauthenticated zero caller", c)
	}
	if (caller.Caller{}).Kind != caller.Unauthenticated {
		t.Fatal("the zero Caller is not unauthenticated")
	}
}

func TestContextRoundTrip(t *testing.T) {
	agent := caller.Caller{Kind: caller.Agent, ID: spiffeid.RequireFromString("spiffe://example.org/spire/agent/join_token/x")}
	ctx := caller.NewContext(context.Background(), agent)
	if got, ok := caller.FromContext(ctx); !ok || got != agent {
		t.Fatalf("got %+v, %v; want %+v", got, ok, agent)
	}
	// A later authentication replaces the earlier one.
	admin := caller.Caller{Kind: caller.Admin, Local: true}
	if got, _ := caller.FromContext(caller.NewContext(ctx, admin)); got != admin {
		t.Fatalf("got %+v, want %+v", got, admin)
	}
	if got, _ := caller.FromContext(ctx); got != agent {
		t.Fatal("the parent context changed")
	}
}

func TestKindString(t *testing.T) {
	for _, tt := range []struct {
		k    caller.Kind
		want string
	}{
		{caller.Unauthenticated, "unauthenticated"},
		{caller.Agent, "agent"},
		{caller.Admin, "admin"},
		{caller.Kind(42), "unauthenticated"},
		{caller.Kind(-1), "unauthenticated"},
	} {
		if got := tt.k.String(); got != tt.want {
			t.Errorf("Kind(%d).String() = %q, want %q", int(tt.k), got, tt.want)
		}
	}
}
