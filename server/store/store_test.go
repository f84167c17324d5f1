package store

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/clock/fakeclock"
	"github.com/signet-id/signet/server/etcdserver"
	"github.com/signet-id/signet/server/etcdserver/etcdtest"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
)

// testEtcd is one embedded etcd shared by the package's tests; each test
// uses its own trust domain, hence its own key prefix.
var testEtcd *etcdserver.Server

func TestMain(m *testing.M) { etcdtest.Main(m, &testEtcd) }

var tds etcdtest.TrustDomains

func testTD(tb testing.TB) spiffeid.TrustDomain { return tds.Next(tb) }

func testCtx(tb testing.TB) context.Context { return etcdtest.Context(tb) }

func newTestStore(tb testing.TB, td spiffeid.TrustDomain, opts ...Option) *Store {
	tb.Helper()
	s, err := New(testEtcd.Client(), td, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.Start(testCtx(tb)); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func id(td spiffeid.TrustDomain, path string) *types.SPIFFEID {
	return &types.SPIFFEID{TrustDomain: td.Name(), Path: path}
}

func sels(ss ...string) []*types.Selector {
	out := make([]*types.Selector, 0, len(ss))
	for _, s := range ss {
		typ, value, _ := strings.Cut(s, ":")
		out = append(out, &types.Selector{Type: typ, Value: value})
	}
	return out
}

func mustCreateEntry(tb testing.TB, s *Store, e *types.Entry) *types.Entry {
	tb.Helper()
	out, err := s.CreateEntry(testCtx(tb), e)
	if err != nil {
		tb.Fatalf("create entry %v: %v", e, err)
	}
	return out
}

func assertProtoEqual(tb testing.TB, got, want proto.Message) {
	tb.Helper()
	if !proto.Equal(got, want) {
		tb.Fatalf("got  %v\nwant %v", got, want)
	}
}

func TestEntryCRUD(t *testing.T) {
	ctx := testCtx(t)
	td := testTD(t)
	clk := fakeclock.New(time.Unix(1700000000, 0))
	s := newTestStore(t, td, WithClock(clk))

	created := mustCreateEntry(t, s, &types.Entry{
		SpiffeId:       id(td, "/workload"),
		ParentId:       id(td, "/spire/agent/x"),
		Selectors:      sels("unix:uid:1000", "unix:gid:0"),
		X509SvidTtl:    60,
		JwtSvidTtl:     30,
		DnsNames:       []string{"a.example.org"},
		Hint:           "h",
		RevisionNumber: 7, // ignored on create
	})
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(created.Id) {
		t.Fatalf("generated ID %q is not a UUIDv4", created.Id)
	}
	if created.CreatedAt != 1700000000 || created.RevisionNumber != 0 {
		t.Fatalf("created_at=%d revision=%d", created.CreatedAt, created.RevisionNumber)
	}
	got, err := s.GetEntry(ctx, created.Id) // read-your-writes: no waiting in the test
	if err != nil {
		t.Fatal(err)
	}
	assertProtoEqual(t, got, created)

	// Masked update: only the hint changes; the revision number bumps.
	updated, err := s.UpdateEntry(ctx, &types.Entry{Id: created.Id, Hint: "new", X509SvidTtl: 999}, &types.EntryMask{Hint: true})
	if err != nil {
		t.Fatal(err)
	}
	want := proto.Clone(created).(*types.Entry)
	want.Hint, want.RevisionNumber = "new", 1
	assertProtoEqual(t, updated, want)
	got, _ = s.GetEntry(ctx, created.Id)
	assertProtoEqual(t, got, want)

	// Full update (nil mask) replaces every updatable field.
	full := &types.Entry{
		Id:        created.Id,
		SpiffeId:  id(td, "/workload2"),
		ParentId:  id(td, "/spire/agent/y"),
		Selectors: sels("k8s:ns:default"),
		Admin:     true,
		CreatedAt: 1, // not updatable
	}
	updated, err = s.UpdateEntry(ctx, full, nil)
	if err != nil {
		t.Fatal(err)
	}
	want = proto.Clone(full).(*types.Entry)
	want.CreatedAt, want.RevisionNumber = created.CreatedAt, 2
	assertProtoEqual(t, updated, want)

	if err := s.DeleteEntry(ctx, created.Id); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetEntry(ctx, created.Id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	if err := s.DeleteEntry(ctx, created.Id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := s.UpdateEntry(ctx, &types.Entry{Id: created.Id, Hint: "x"}, &types.EntryMask{Hint: true}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update missing: %v", err)
	}

	// A caller-chosen ID is kept; reusing it is AlreadyExists.
	e := mustCreateEntry(t, s, &types.Entry{Id: "my-entry_1.x", SpiffeId: id(td, "/w"), ParentId: id(td, "/spire/agent/x"), Selectors: sels("a:1")})
	if e.Id != "my-entry_1.x" {
		t.Fatalf("id = %q", e.Id)
	}
	existing, err := s.CreateEntry(ctx, &types.Entry{Id: "my-entry_1.x", SpiffeId: id(td, "/other"), ParentId: id(td, "/spire/agent/x"), Selectors: sels("a:1")})
	if !errors.Is(err, ErrAlreadyExists) || existing != nil {
		t.Fatalf("duplicate ID: %v, %v", existing, err)
	}
}

func TestEntryValidation(t *testing.T) {
	ctx := testCtx(t)
	td := testTD(t)
	s := newTestStore(t, td)
	valid := func() *types.Entry {
		return &types.Entry{SpiffeId: id(td, "/w"), ParentId: id(td, "/spire/agent/a"), Selectors: sels("a:1")}
	}
	tests := []struct {
		name   string
		modify func(e *types.Entry)
	}{
		{"missing spiffe_id", func(e *types.Entry) { e.SpiffeId = nil }},
		{"missing parent_id", func(e *types.Entry) { e.ParentId = nil }},
		{"foreign trust domain", func(e *types.Entry) { e.SpiffeId.TrustDomain = "other.test" }},
		{"empty path", func(e *types.Entry) { e.SpiffeId.Path = "" }},
		{"bad path", func(e *types.Entry) { e.SpiffeId.Path = "no-slash" }},
		{"bad trust domain", func(e *types.Entry) { e.ParentId.TrustDomain = "UPPER" }},
		{"no selectors", func(e *types.Entry) { e.Selectors = nil }},
		{"empty selector type", func(e *types.Entry) { e.Selectors = sels(":x") }},
		{"empty selector value", func(e *types.Entry) { e.Selectors = sels("a:") }},
		{"colon in type", func(e *types.Entry) { e.Selectors = []*types.Selector{{Type: "a:b", Value: "c"}} }},
		{"negative x509 ttl", func(e *types.Entry) { e.X509SvidTtl = -1 }},
		{"negative jwt ttl", func(e *types.Entry) { e.JwtSvidTtl = -1 }},
		{"long hint", func(e *types.Entry) { e.Hint = strings.Repeat("h", 1025) }},
		{"bad id chars", func(e *types.Entry) { e.Id = "a/b" }},
		{"long id", func(e *types.Entry) { e.Id = strings.Repeat("a", 256) }},
		{"store svid mixed types", func(e *types.Entry) { e.StoreSvid = true; e.Selectors = sels("a:1", "b:2") }},
		{"bad federated td", func(e *types.Entry) { e.FederatesWith = []string{"Bad TD"} }},
		{"federated td without bundle", func(e *types.Entry) { e.FederatesWith = []string{"nobundle.test"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := valid()
			tt.modify(e)
			if _, err := s.CreateEntry(ctx, e); !errors.Is(err, ErrInvalid) {
				t.Fatalf("create: err = %v, want ErrInvalid", err)
			}
		})
	}
	if n, _ := s.CountEntries(ctx, EntryFilter{}); n != 0 {
		t.Fatalf("%d entries stored by rejected creates", n)
	}

	// A rejected update leaves the entry unchanged.
	e := mustCreateEntry(t, s, valid())
	for _, tt := range tests[:13] {
		bad := valid()
		bad.Id = e.Id
		tt.modify(bad)
		if _, err := s.UpdateEntry(ctx, bad, nil); !errors.Is(err, ErrInvalid) {
			t.Fatalf("update %s: err = %v", tt.name, err)
		}
	}
	got, _ := s.GetEntry(ctx, e.Id)
	assertProtoEqual(t, got, e)
}

func TestSimilarEntry(t *testing.T) {
	ctx := testCtx(t)
	td := testTD(t)
	s := newTestStore(t, td)
	first := mustCreateEntry(t, s, &types.Entry{SpiffeId: id(td, "/w"), ParentId: id(td, "/spire/agent/a"), Selectors: sels("a:1", "b:2"), Hint: "first"})

	// Same triple, selectors in another order (and repeated): AlreadyExists
	// with the existing entry.
	existing, err := s.CreateEntry(ctx, &types.Entry{SpiffeId: id(td, "/w"), ParentId: id(td, "/spire/agent/a"), Selectors: sels("b:2", "a:1", "b:2"), Hint: "second"})
	if !errors.Is(err, ErrAlreadyExists) {
		t.Fatalf("err = %v", err)
	}
	assertProtoEqual(t, existing, first)

	// Differing in any part of the triple is fine.
	other := mustCreateEntry(t, s, &types.Entry{SpiffeId: id(td, "/w"), ParentId: id(td, "/spire/agent/a"), Selectors: sels("a:1")})
	mustCreateEntry(t, s, &types.Entry{SpiffeId: id(td, "/w"), ParentId: id(td, "/spire/agent/b"), Selectors: sels("a:1", "b:2")})
	mustCreateEntry(t, s, &types.Entry{SpiffeId: id(td, "/w2"), ParentId: id(td, "/spire/agent/a"), Selectors: sels("a:1", "b:2")})

	// Updating an entry into a similar one is refused and changes nothing.
	if _, err := s.UpdateEntry(ctx, &types.Entry{Id: other.Id, Selectors: sels("a:1", "b:2")}, &types.EntryMask{Selectors: true}); !errors.Is(err, ErrAlreadyExists) {
		t.Fatalf("update into similar: %v", err)
	}
	got, _ := s.GetEntry(ctx, other.Id)
	assertProtoEqual(t, got, other)

	// Updating fields outside the triple keeps the similarity slot.
	if _, err := s.UpdateEntry(ctx, &types.Entry{Id: first.Id, Hint: "x"}, &types.EntryMask{Hint: true}); err != nil {
		t.Fatal(err)
	}
	// Moving an entry frees its old slot and takes the new one.
	if _, err := s.UpdateEntry(ctx, &types.Entry{Id: first.Id, Selectors: sels("c:3")}, &types.EntryMask{Selectors: true}); err != nil {
		t.Fatal(err)
	}
	mustCreateEntry(t, s, &types.Entry{SpiffeId: id(td, "/w"), ParentId: id(td, "/spire/agent/a"), Selectors: sels("a:1", "b:2")})
	if _, err := s.CreateEntry(ctx, &types.Entry{SpiffeId: id(td, "/w"), ParentId: id(td, "/spire/agent/a"), Selectors: sels("c:3")}); !errors.Is(err, ErrAlreadyExists) {
		t.Fatalf("similar to moved entry: %v", err)
	}
	// Deleting frees the slot.
	if err := s.DeleteEntry(ctx, first.Id); err != nil {
		t.Fatal(err)
	}
	mustCreateEntry(t, s, &types.Entry{SpiffeId: id(td, "/w"), ParentId: id(td, "/spire/agent/a"), Selectors: sels("c:3")})
}

func TestConcurrentWritersLoseNoUpdates(t *testing.T) {
	ctx := testCtx(t)
	td := testTD(t)
	a := newTestStore(t, td)
	b := newTestStore(t, td)
	e := mustCreateEntry(t, a, &types.Entry{SpiffeId: id(td, "/w"), ParentId: id(td, "/spire/agent/a"), Selectors: sels("a:1")})
	if _, err := a.CreateAgent(ctx, &types.Agent{Id: id(td, "/spire/agent/a")}); err != nil {
		t.Fatal(err)
	}
	agentID := spiffeid.RequireFromPath(td, "/spire/agent/a")

	const perWriter = 15
	errs := make(chan error, 4*perWriter)
	for _, s := range []*Store{a, b} {
		go func() {
			for range perWriter {
				// Read-modify-write increments: a lost update would lose
				// an increment.
				_, err := s.updateEntryWith(ctx, e.Id, func(e *types.Entry) { e.X509SvidTtl++ })
				errs <- err
			}
		}()
		go func() {
			for range perWriter {
				_, err := s.UpdateAgent(ctx, agentID, func(a *types.Agent) error {
					a.X509SvidExpiresAt++
					return nil
				})
				errs <- err
			}
		}()
	}
	for range 4 * perWriter {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []*Store{a, b} {
		if err := s.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetEntry(ctx, e.Id)
		if err != nil {
			t.Fatal(err)
		}
		if got.X509SvidTtl != 2*perWriter || got.RevisionNumber != 2*perWriter {
			t.Fatalf("ttl=%d revision=%d, want %d", got.X509SvidTtl, got.RevisionNumber, 2*perWriter)
		}
		agent, err := s.GetAgent(ctx, agentID)
		if err != nil {
			t.Fatal(err)
		}
		if agent.X509SvidExpiresAt != 2*perWriter {
			t.Fatalf("agent counter = %d", agent.X509SvidExpiresAt)
		}
	}

	// Concurrent creates of the same similar entry through two replicas:
	// exactly one wins.
	results := make(chan error, 2)
	for _, s := range []*Store{a, b} {
		go func() {
			_, err := s.CreateEntry(ctx, &types.Entry{SpiffeId: id(td, "/race"), ParentId: id(td, "/spire/agent/a"), Selectors: sels("r:1")})
			results <- err
		}()
	}
	var ok, exists int
	for range 2 {
		switch err := <-results; {
		case err == nil:
			ok++
		case errors.Is(err, ErrAlreadyExists):
			exists++
		default:
			t.Fatal(err)
		}
	}
	if ok != 1 || exists != 1 {
		t.Fatalf("ok=%d exists=%d", ok, exists)
	}
}

func clientWithPrefix() []clientv3.OpOption { return []clientv3.OpOption{clientv3.WithPrefix()} }

func containsBytes(b []byte, s string) bool { return strings.Contains(string(b), s) }
