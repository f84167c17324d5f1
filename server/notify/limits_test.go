package notify_test

import (
	"testing"

	"github.com/signet-id/signet/server/notify"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A second Watch of the same agent ends the first: one agent cannot hold
// more than one push stream.
func TestSecondWatchOfAnAgentClosesTheFirst(t *testing.T) {
	h := notify.New(state{}, nil)
	c := serve(t, h)
	const agent = "spiffe://example.org/spire/agent/a"
	first := watch(t, c, agent)
	if _, err := first.Recv(); err != nil {
		t.Fatal(err)
	}
	second := watch(t, c, agent)
	if _, err := second.Recv(); err != nil {
		t.Fatal(err)
	}
	_, err := first.Recv()
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("first Watch after a second one: %v, want ResourceExhausted", err)
	}
	t.Logf("first Watch ended: %v", err)
	other := watch(t, c, "spiffe://example.org/spire/agent/b")
	if _, err := other.Recv(); err != nil {
		t.Fatalf("another agent's Watch: %v", err)
	}
}
