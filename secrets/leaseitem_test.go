package secrets_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/signet-id/signet/rotation/eventlog"
	"github.com/signet-id/signet/rotation/scheduler"
	"github.com/signet-id/signet/secrets"
)

// fakeVault answers the few Vault endpoints a leased secret needs: token
// lookup, a read that returns a renewable lease, lease renewal and
// revocation.
type fakeVault struct {
	leaseID  string
	password string
	ttl      int
	renews   atomic.Int32
	revokes  atomic.Int32
}

func (f *fakeVault) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reply := func(v any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	switch r.URL.Path {
	case "/v1/auth/token/lookup-self":
		reply(map[string]any{"data": map[string]any{"ttl": 0}})
	case "/v1/database/creds/app":
		reply(map[string]any{"lease_id": f.leaseID, "lease_duration": f.ttl, "renewable": true,
			"data": map[string]any{"username": "app", "password": f.password}})
	case "/v1/sys/leases/renew":
		f.renews.Add(1)
		reply(map[string]any{"lease_id": f.leaseID, "lease_duration": f.ttl, "renewable": true})
	case "/v1/sys/leases/revoke":
		f.revokes.Add(1)
		w.WriteHeader(http.StatusNoContent)
	default:
		http.NotFound(w, r)
	}
}

type eventKinds struct {
	mu    sync.Mutex
	kinds []eventlog.Kind
}

func (e *eventKinds) Append(_ context.Context, ev eventlog.Event) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.kinds = append(e.kinds, ev.Kind)
	return nil
}

func (e *eventKinds) has(kind eventlog.Kind) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, k := range e.kinds {
		if k == kind {
			return true
		}
	}
	return false
}

// TestLeaseRenewedThroughSchedulerWithoutLeaseIDInEtcd: with a scheduler,
// a lease's renewal is an item due at 2/3 of its TTL that names the lease
// only by hash; nothing in etcd carries the lease ID or the secret, and
// the item's run renews the lease and records the event.
func TestLeaseRenewedThroughSchedulerWithoutLeaseIDInEtcd(t *testing.T) {
	ctx := testCtx(t)
	td := testTD(t)
	fv := &fakeVault{leaseID: "database/creds/app/CLEARLEASEID0123456789", password: "pw-CLEARSECRET-9876", ttl: 3}
	vs := httptest.NewServer(fv)
	t.Cleanup(vs.Close)

	cli := testEtcd.Client()
	sched, err := scheduler.New(cli, scheduler.WithPrefix("/test-lease-sched/"+td.Name()+"/"), scheduler.WithSessionTTL(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	c, err := secrets.NewClient(secrets.ClientConfig{Address: vs.URL, Auth: secrets.TokenAuth{Token: "root"}, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	events := &eventKinds{}
	b, err := secrets.NewBroker(secrets.BrokerConfig{Client: c, Events: events, Scheduler: sched, Replica: "r1", MaxBackoff: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	sched.Handle(secrets.KindLeaseItem, scheduler.HandlerFunc(func(ctx context.Context, it scheduler.Item) (*scheduler.Item, error) {
		return nil, b.HandleLease(ctx, it)
	}))
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = sched.Run(sctx) }()
	t.Cleanup(func() { cancel(); <-done })

	p := secrets.Policy{ID: "db", SPIFFEIDPattern: webID.String(), Path: "database/creds/app", Engine: secrets.EngineLeased, Field: "password"}
	sub, err := b.Watch(p, webID)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var first *secrets.Value
	select {
	case u := <-sub.Updates():
		if u.Err != nil {
			t.Fatal(u.Err)
		}
		first = u.Value
	case <-ctx.Done():
		t.Fatal("no value")
	}

	// The lease item: due at 2/3 of the TTL, expiring with the lease.
	var item scheduler.Item
	deadline := time.Now().Add(10 * time.Second)
	for {
		items, err := sched.DueBefore(ctx, time.Now().Add(time.Hour), 100)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, it := range items {
			if it.Kind == secrets.KindLeaseItem {
				item, found = it, true
			}
		}
		if found || time.Now().After(deadline) {
			if !found {
				t.Fatal("no lease item scheduled")
			}
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := first.ExpiresAt.Sub(item.DueAt); got != time.Second {
		t.Errorf("item due %v before expiry, want 1s (2/3 of a 3s TTL)", got)
	}
	if !item.NotAfter.Equal(first.ExpiresAt) {
		t.Errorf("item NotAfter %v, want the lease expiry %v", item.NotAfter, first.ExpiresAt)
	}
	if !strings.Contains(string(item.Payload), secrets.HashID(fv.leaseID)) {
		t.Errorf("item payload %s does not name the lease by its hash", item.Payload)
	}

	// Nothing in etcd carries the lease ID or the secret in clear.
	resp, err := cli.Get(ctx, "\x00", clientv3.WithFromKey())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		for _, clear := range []string{fv.leaseID, "CLEARLEASEID", fv.password} {
			if strings.Contains(string(kv.Key), clear) || strings.Contains(string(kv.Value), clear) {
				t.Fatalf("etcd key %q carries %q in clear", kv.Key, clear)
			}
		}
	}

	// The item's run renews the lease and pushes the new expiry.
	select {
	case u := <-sub.Updates():
		if u.Err != nil {
			t.Fatal(u.Err)
		}
		if !u.Value.ExpiresAt.After(first.ExpiresAt) {
			t.Fatalf("renewed value expires %v, not after %v", u.Value.ExpiresAt, first.ExpiresAt)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("lease not renewed (renew calls: %d)", fv.renews.Load())
	}
	if fv.renews.Load() == 0 || !events.has(secrets.KindLeaseRenewed) {
		t.Fatalf("renew calls %d, renewed event %v", fv.renews.Load(), events.has(secrets.KindLeaseRenewed))
	}

	// Revoking the policy revokes the lease and removes its item.
	b.Revoke(ctx, p.ID)
	if fv.revokes.Load() != 1 {
		t.Fatalf("revoke calls %d, want 1", fv.revokes.Load())
	}
	if _, err := sched.Get(ctx, item.ID); !errors.Is(err, scheduler.ErrNotFound) {
		t.Fatalf("lease item after revocation: %v, want ErrNotFound", err)
	}
}
