package server

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/signet-id/signet/rotation/scheduler"
	"github.com/signet-id/signet/secrets"
	"github.com/signet-id/signet/server/etcdserver"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestLeaseItemHandedToOwningReplica: the leader runs a lease item of
// another replica by a kick key under that replica's prefix; the replica
// picks it up and deletes it. An item of the leader itself writes no kick.
func TestLeaseItemHandedToOwningReplica(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir, err := os.MkdirTemp("", "sgl")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	e, err := etcdserver.Start(ctx, etcdserver.Config{Dir: filepath.Join(dir, "etcd")})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	cli := e.Client()
	td := spiffeid.RequireTrustDomainFromString("example.org")
	replica := func(name string) *Server {
		vc, err := secrets.NewClient(secrets.ClientConfig{Address: "http://127.0.0.1:1", Auth: secrets.TokenAuth{Token: "unused"}})
		if err != nil {
			t.Fatal(err)
		}
		b, err := secrets.NewBroker(secrets.BrokerConfig{Client: vc, Replica: name})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Close)
		return &Server{cfg: Config{TrustDomain: td}, etcd: cli, leases: b, log: slog.New(slog.DiscardHandler)}
	}
	leader, owner := replica("a"), replica("b")
	item := func(replica string) scheduler.Item {
		return scheduler.Item{ID: "vault/lease/" + replica + "/x", Kind: secrets.KindLeaseItem, DueAt: time.Now(),
			Payload: []byte(`{"replica":"` + replica + `","policy":"p","spiffe_id":"spiffe://example.org/w","lease_id_hash":"h"}`)}
	}
	count := func(prefix string) int64 {
		resp, err := cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		return resp.Count
	}

	if _, err := leader.handleLease(ctx, item("a")); err != nil {
		t.Fatal(err)
	}
	if n := count("/signet-lease-kick/"); n != 0 {
		t.Fatalf("own item wrote %d kicks", n)
	}
	if _, err := leader.handleLease(ctx, item("b")); err != nil {
		t.Fatal(err)
	}
	if n := count(leader.leaseKickPrefix("b")); n != 1 {
		t.Fatalf("%d kicks for replica b, want 1", n)
	}
	wctx, wcancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); owner.watchLeaseKicks(wctx) }()
	defer func() { wcancel(); <-done }()
	for count(leader.leaseKickPrefix("b")) != 0 {
		if ctx.Err() != nil {
			t.Fatal("replica b did not take its kick")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
