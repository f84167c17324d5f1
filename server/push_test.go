package server_test

import (
	"context"
	"crypto/tls"
	"testing"

	notifyv1 "github.com/signet-id/signet/proto/signet/notify/v1"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
)

// watchEntries opens an agent's push stream, waits for its HELLO, and
// returns a channel of the ENTRIES_CHANGED revisions it receives.
func (s *testServer) watchEntries(t *testing.T, ctx context.Context, cert *tls.Certificate) <-chan int64 {
	t.Helper()
	stream, err := notifyv1.NewNotifierClient(s.dial(t, cert)).Watch(ctx, &notifyv1.WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	hello, err := stream.Recv()
	if err != nil || hello.Kind != notifyv1.Notification_KIND_HELLO {
		t.Fatalf("first notification %v, %v; want HELLO", hello, err)
	}
	revs := make(chan int64, 64)
	go func() {
		defer close(revs)
		for {
			n, err := stream.Recv()
			if err != nil {
				return
			}
			if n.Kind == notifyv1.Notification_KIND_ENTRIES_CHANGED {
				revs <- n.Revision
			}
		}
	}()
	return revs
}

func (s *testServer) createEntry(t *testing.T, ctx context.Context, path string, parent spiffeid.ID) {
	t.Helper()
	resp, err := entryv1.NewEntryClient(s.admin).BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{Entries: []*types.Entry{{
		SpiffeId:  protoID(spiffeid.RequireFromPath(td, path)),
		ParentId:  protoID(parent),
		Selectors: []*types.Selector{{Type: "unix", Value: "uid:1000"}},
	}}})
	if err != nil || codes.Code(resp.Results[0].Status.Code) != codes.OK {
		t.Fatalf("create entry: %v %v", err, resp)
	}
}

func next(t *testing.T, ctx context.Context, revs <-chan int64, who string) int64 {
	t.Helper()
	select {
	case r, ok := <-revs:
		if !ok {
			t.Fatalf("%s: push stream ended", who)
		}
		return r
	case <-ctx.Done():
		t.Fatalf("%s: no ENTRIES_CHANGED push", who)
	}
	return 0
}

// TestEntryPushOnlyToAffectedAgents: an entry change is pushed to the
// agent it concerns and not to the others. Agent B's first ENTRIES_CHANGED
// must be the one for its own entry, created after three entries of agent
// A whose pushes A has each received (pushes go out in store order).
func TestEntryPushOnlyToAffectedAgents(t *testing.T) {
	s := startServer(t)
	ctx := testContext(t)
	idA, certA := s.attest(t)
	idB, certB := s.attest(t)
	revsA := s.watchEntries(t, ctx, certA)
	revsB := s.watchEntries(t, ctx, certB)

	var lastA int64
	for _, p := range []string{"/a/1", "/a/2", "/a/3"} {
		s.createEntry(t, ctx, p, idA)
		r := next(t, ctx, revsA, "agent A")
		if r <= lastA {
			t.Fatalf("agent A pushed revision %d after %d", r, lastA)
		}
		lastA = r
	}
	s.createEntry(t, ctx, "/b/1", idB)
	if r := next(t, ctx, revsB, "agent B"); r <= lastA {
		t.Fatalf("agent B was pushed revision %d, a change of agent A's entries (A's last is %d)", r, lastA)
	}
}
