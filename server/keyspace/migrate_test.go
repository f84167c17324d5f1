package keyspace_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/server/etcdserver"
	"github.com/signet-id/signet/server/keyspace"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	clientv3 "go.etcd.io/etcd/client/v3"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

func startEtcd(t *testing.T) *clientv3.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e, err := etcdserver.Start(ctx, etcdserver.Config{Dir: filepath.Join(t.TempDir(), "etcd")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e.Client()
}

func put(t *testing.T, cli *clientv3.Client, kv map[string]string) {
	t.Helper()
	for k, v := range kv {
		if _, err := cli.Put(context.Background(), k, v); err != nil {
			t.Fatal(err)
		}
	}
}

func dump(t *testing.T, cli *clientv3.Client, prefix string) map[string]string {
	t.Helper()
	resp, err := cli.Get(context.Background(), prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		out[string(kv.Key)] = string(kv.Value)
	}
	return out
}

// TestMigrate: layout-1 keys (scheduler and event log beside the trust
// domain's root) move below it, in more than one batch, with their
// values; the version key records the layout; a second run does nothing;
// other trust domains and the store's keys are left alone.
func TestMigrate(t *testing.T) {
	cli := startEtcd(t)
	ctx := context.Background()
	s := keyspace.For(td)
	old := map[string]string{}
	for i := range 130 { // several batches
		old[fmt.Sprintf("/signet-events/example.org/rec/%020d", i)] = fmt.Sprintf(`{"seq":%d}`, i)
	}
	old["/signet-events/example.org/head"] = `{"seq":129}`
	old["/signet-sched/example.org/items/svid/a"] = `{"id":"svid/a"}`
	old["/signet-sched/example.org/due/00000000000000000001/svid/a"] = ""
	put(t, cli, old)
	untouched := map[string]string{
		"/signet/example.org/entries/e1":       "entry",
		"/signet-sched/other.org/items/x":      "other trust domain",
		"/signet/example.org/secretpolicies/p": "policy",
	}
	put(t, cli, untouched)

	for run := range 2 {
		if err := keyspace.Migrate(ctx, cli, s, slog.New(slog.DiscardHandler)); err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		if left := len(dump(t, cli, "/signet-events/example.org/")) + len(dump(t, cli, "/signet-sched/example.org/")); left != 0 {
			t.Fatalf("run %d: %d keys left under the old prefixes", run, left)
		}
		for k, v := range old {
			to := strings.NewReplacer("/signet-events/example.org/", s.Events(), "/signet-sched/example.org/", s.Schedule()).Replace(k)
			got, ok := dump(t, cli, to)[to]
			if !ok || got != v {
				t.Fatalf("run %d: %s moved to %s as %q (present %v), want %q", run, k, to, got, ok, v)
			}
		}
		for k, v := range untouched {
			if dump(t, cli, k)[k] != v {
				t.Fatalf("run %d: %s changed", run, k)
			}
		}
		if v := dump(t, cli, s.Version())[s.Version()]; v != fmt.Sprint(keyspace.Version) {
			t.Fatalf("run %d: version %q", run, v)
		}
	}
}

// TestMigrateRefuses: a key in both layouts is a conflict (nothing is
// overwritten); a newer layout is refused.
func TestMigrateRefuses(t *testing.T) {
	ctx := context.Background()
	s := keyspace.For(td)
	for _, tc := range []struct {
		name string
		kv   map[string]string
		want error
	}{
		{"key in both layouts", map[string]string{
			"/signet-sched/example.org/items/a": "old",
			s.Schedule() + "items/a":            "new",
		}, keyspace.ErrMigrationConflict},
		{"newer layout", map[string]string{s.Version(): "99"}, keyspace.ErrNewerLayout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cli := startEtcd(t)
			put(t, cli, tc.kv)
			err := keyspace.Migrate(ctx, cli, s, slog.New(slog.DiscardHandler))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Migrate: %v, want %v", err, tc.want)
			}
			for k, v := range tc.kv {
				if dump(t, cli, k)[k] != v {
					t.Fatalf("%s changed", k)
				}
			}
		})
	}
}

// TestCheckTrustDomain: an etcd holding only another trust domain's root is
// refused with both names; an empty etcd, or one that also holds this trust
// domain's root (trust domains sharing an external etcd), is accepted.
func TestCheckTrustDomain(t *testing.T) {
	ctx := context.Background()
	cli := startEtcd(t)
	if err := keyspace.CheckTrustDomain(ctx, cli, keyspace.For(td), func(string) string { return "fix" }); err != nil {
		t.Fatalf("empty etcd: %v", err)
	}
	put(t, cli, map[string]string{"/signet/old.example/entries/e1": "x"})
	err := keyspace.CheckTrustDomain(ctx, cli, keyspace.For(td), func(string) string { return "fix it" })
	var me *keyspace.MismatchError
	if !errors.Is(err, keyspace.ErrTrustDomainMismatch) || !errors.As(err, &me) {
		t.Fatalf("other trust domain's keys: %v; want MismatchError", err)
	}
	if me.Stored != "old.example" || me.Configured != "example.org" || !strings.HasSuffix(err.Error(), "fix it") {
		t.Errorf("error = %v", err)
	}
	put(t, cli, map[string]string{keyspace.For(td).Version(): "2"})
	if err := keyspace.CheckTrustDomain(ctx, cli, keyspace.For(td), func(string) string { return "fix" }); err != nil {
		t.Fatalf("both roots: %v", err)
	}
}
