package server

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/signet-id/signet/rotation/eventlog"
	"github.com/signet-id/signet/rotation/scheduler"
	"github.com/signet-id/signet/server/etcdserver"
	"github.com/signet-id/signet/server/keyspace"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestServerMigratesOldKeyLayout: a data dir written with the scheduler
// and the event log beside the trust domain's root (layout 1) is moved
// below the root at start; the server then schedules and appends events
// on the moved data (the hash chain continues).
func TestServerMigratesOldKeyLayout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	td := spiffeid.RequireTrustDomainFromString("example.org")
	dataDir := t.TempDir()
	const oldEvents, oldSched = "/signet-events/example.org/", "/signet-sched/example.org/"

	// Seed the old layout with the real event log and scheduler.
	e, err := etcdserver.Start(ctx, etcdserver.Config{Name: "signet", Dir: filepath.Join(dataDir, "etcd")})
	if err != nil {
		t.Fatal(err)
	}
	l, err := eventlog.New(e.Client(), oldEvents)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := l.Append(ctx, eventlog.Event{Kind: eventlog.KindSVIDIssued, Subject: "spiffe://example.org/w", Actor: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	sched, err := scheduler.New(e.Client(), scheduler.WithPrefix(oldSched))
	if err != nil {
		t.Fatal(err)
	}
	item := scheduler.Item{ID: "svid/old", Kind: kindSVID, DueAt: time.Now().Add(time.Hour), Payload: []byte(`{"agent":"spiffe://example.org/a"}`)}
	if err := sched.Schedule(ctx, item); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	srv, err := New(Config{TrustDomain: td, DataDir: dataDir, BindAddress: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(rctx) }()
	defer func() {
		rcancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	select {
	case <-srv.Ready():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-ctx.Done():
		t.Fatal("server not ready")
	}
	keys := keyspace.For(td)
	for _, p := range []string{oldEvents, oldSched} {
		resp, err := srv.etcd.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		if resp.Count != 0 {
			t.Errorf("%d keys left under %s", resp.Count, p)
		}
	}
	got, err := srv.sched.Get(ctx, item.ID)
	if err != nil {
		t.Fatalf("the moved scheduler item: %v", err)
	}
	if got.Kind != item.Kind || !got.DueAt.Equal(item.DueAt) {
		t.Fatalf("moved item %+v, want %+v", got, item)
	}
	// The server appends to the moved log: the chain goes on from seq 5.
	rec, err := srv.evlog.Append(ctx, eventlog.Event{Kind: eventlog.KindSVIDIssued, Subject: "spiffe://example.org/w2", Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Seq <= 5 {
		t.Fatalf("appended seq %d, want after the 5 migrated records", rec.Seq)
	}
	recs, err := srv.evlog.Range(ctx, 1, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) < 6 || recs[0].Seq != 1 {
		t.Fatalf("log after migration: %d records from seq %d", len(recs), recs[0].Seq)
	}
	resp, err := srv.etcd.Get(ctx, keys.Version())
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("version key: %v %v", resp, err)
	}
}
