package store

import (
	"testing"

	"github.com/signet-id/signet/server/etcdserver"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestSyncSeesWritesOutsideThePrefix(t *testing.T) {
	ctx := testCtx(t)
	s := newTestStore(t, testTD(t))
	// The newest revision belongs to a key the store does not watch; Sync
	// still returns (through a watch progress notification).
	if _, err := testEtcd.Client().Put(ctx, "/elsewhere/"+t.Name(), "x"); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestReplicasSurviveMemberLoss runs two store replicas on a 3-member etcd
// cluster, stops the member one replica's watch is attached to, and checks
// that both replicas keep converging and that writes keep their guarantees.
func TestReplicasSurviveMemberLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-member etcd cluster")
	}
	ctx := testCtx(t)
	servers, err := etcdserver.StartCluster(ctx, t.TempDir(), 3)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, s := range servers {
			s.Close()
		}
	}()
	var all []string
	for _, s := range servers {
		all = append(all, s.Endpoints()...)
	}
	// Replica a starts on member 0 only, so its watch stream is there.
	cliA, err := clientv3.New(servers[0].ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer cliA.Close()
	td := spiffeid.RequireTrustDomainFromString("ha.test")
	a, err := New(cliA, td)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := New(servers[1].Client(), td)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cliA.SetEndpoints(all...)

	e := mustCreateEntry(t, a, &types.Entry{SpiffeId: id(td, "/w"), ParentId: id(td, "/spire/agent/a"), Selectors: sels("a:1")})
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetEntry(ctx, e.Id); err != nil {
		t.Fatalf("replica b: %v", err)
	}

	// (A graceful member stop waits for a's open watch stream to end, up
	// to etcd's request timeout.)
	if err := servers[0].Close(); err != nil {
		t.Fatal(err)
	}

	// Writes through b are seen by a, whose watch must move to a live member.
	updated, err := b.UpdateEntry(ctx, &types.Entry{Id: e.Id, Hint: "after"}, &types.EntryMask{Hint: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := a.GetEntry(ctx, e.Id)
	if err != nil {
		t.Fatal(err)
	}
	if got.Hint != "after" || got.RevisionNumber != updated.RevisionNumber {
		t.Fatalf("replica a after member loss: %v", got)
	}
	// And a's own writes still work and are read back.
	if _, err := a.UpdateEntry(ctx, &types.Entry{Id: e.Id, Hint: "from-a"}, &types.EntryMask{Hint: true}); err != nil {
		t.Fatal(err)
	}
	if got, _ := a.GetEntry(ctx, e.Id); got.Hint != "from-a" || got.RevisionNumber != 2 {
		t.Fatalf("replica a read-your-writes: %v", got)
	}
}
