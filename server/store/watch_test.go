package store

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func recvEvent(t *testing.T, ctx context.Context, ch <-chan Event) Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("event channel closed")
		}
		return ev
	case <-ctx.Done():
		t.Fatal("no event before the test deadline")
	}
	return Event{}
}

func TestCompactedWatchRelists(t *testing.T) {
	ctx := testCtx(t)
	td := testTD(t)
	writer := newTestStore(t, td)
	agent := id(td, "/spire/agent/a")
	keep := mustCreateEntry(t, writer, &types.Entry{SpiffeId: id(td, "/keep"), ParentId: agent, Selectors: sels("a:1")})
	gone := mustCreateEntry(t, writer, &types.Entry{SpiffeId: id(td, "/gone"), ParentId: agent, Selectors: sels("a:2")})

	// A store whose index is at rev, with its watch not yet running.
	s, err := New(testEtcd.Client(), td)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := s.relist(ctx)
	if err != nil {
		t.Fatal(err)
	}
	events, cancelSub := s.Subscribe()
	defer cancelSub()

	// Changes after rev, then compact them away.
	added := mustCreateEntry(t, writer, &types.Entry{SpiffeId: id(td, "/added"), ParentId: id(td, "/spire/agent/b"), Selectors: sels("a:3")})
	if _, err := writer.UpdateEntry(ctx, &types.Entry{Id: keep.Id, Hint: "updated"}, &types.EntryMask{Hint: true}); err != nil {
		t.Fatal(err)
	}
	if err := writer.DeleteEntry(ctx, gone.Id); err != nil {
		t.Fatal(err)
	}
	if _, err := writer.CreateBundle(ctx, &types.Bundle{TrustDomain: "fed.test"}); err != nil {
		t.Fatal(err)
	}
	if _, err := writer.CreateAgent(ctx, &types.Agent{Id: agent}); err != nil {
		t.Fatal(err)
	}
	resp, err := testEtcd.Client().Get(ctx, "/", clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := testEtcd.Client().Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}

	watchCtx, stopWatch := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.watchFrom(watchCtx, rev)
	}()
	defer func() { stopWatch(); <-done }()

	ev := recvEvent(t, ctx, events)
	if !ev.Resync {
		t.Fatalf("first event after compaction is not a resync: %+v", ev)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	got, _, err := s.ListEntries(ctx, EntryFilter{}, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	want, _, _ := writer.ListEntries(ctx, EntryFilter{}, 0, "")
	if !slices.Equal(entryIDs(got), entryIDs(want)) || len(got) != 2 {
		t.Fatalf("relisted entries %v, want %v", entryIDs(got), entryIDs(want))
	}
	if e, _ := s.GetEntry(ctx, keep.Id); e.Hint != "updated" {
		t.Fatalf("relisted entry not updated: %v", e)
	}
	if _, err := s.GetEntry(ctx, added.Id); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetBundle(ctx, spiffeid.RequireTrustDomainFromString("fed.test")); err != nil {
		t.Fatal(err)
	}
	// The resync event describes the differences.
	wantParents := []string{"spiffe://" + td.Name() + "/spire/agent/a", "spiffe://" + td.Name() + "/spire/agent/b"}
	if !slices.Equal(ev.EntryParentIDs, wantParents) || !slices.Equal(ev.Bundles, []string{"fed.test"}) || !slices.Equal(ev.Agents, wantParents[:1]) {
		t.Fatalf("resync event %+v", ev)
	}

	// The watch continues after the relist.
	later := mustCreateEntry(t, writer, &types.Entry{SpiffeId: id(td, "/later"), ParentId: agent, Selectors: sels("a:4")})
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetEntry(ctx, later.Id); err != nil {
		t.Fatalf("entry written after relist: %v", err)
	}
}

func TestSubscribe(t *testing.T) {
	ctx := testCtx(t)
	td := testTD(t)
	s := newTestStore(t, td)
	events, cancel := s.Subscribe()
	idStr := func(path string) string { return spiffeid.RequireFromPath(td, path).String() }

	a1, a2 := id(td, "/spire/agent/a1"), id(td, "/spire/agent/a2")
	if _, err := s.CreateAgent(ctx, &types.Agent{Id: a1, Selectors: sels("k8s:cluster:prod", "k8s:node:1")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateAgent(ctx, &types.Agent{Id: a2}); err != nil {
		t.Fatal(err)
	}
	mustCreateEntry(t, s, &types.Entry{SpiffeId: id(td, "/direct"), ParentId: a2, Selectors: sels("u:1")})
	mustCreateEntry(t, s, &types.Entry{SpiffeId: id(td, "/prod"), ParentId: id(td, "/spire/server"), Selectors: sels("k8s:cluster:prod")})
	child := mustCreateEntry(t, s, &types.Entry{SpiffeId: id(td, "/prod/child"), ParentId: id(td, "/prod"), Selectors: sels("u:2")})
	grandchild := mustCreateEntry(t, s, &types.Entry{SpiffeId: id(td, "/prod/grandchild"), ParentId: id(td, "/prod/child"), Selectors: sels("u:3")})
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}

	// Nobody read: everything coalesced into one pending event.
	ev := recvEvent(t, ctx, events)
	select {
	case extra := <-events:
		t.Fatalf("more than one pending event: %+v", extra)
	default:
	}
	if want := []string{idStr("/spire/agent/a1"), idStr("/spire/agent/a2")}; !slices.Equal(ev.AffectedAgents, want) || !slices.Equal(ev.Agents, want) {
		t.Fatalf("coalesced event %+v", ev)
	}
	if want := []string{idStr("/prod"), idStr("/prod/child"), idStr("/spire/agent/a2"), idStr("/spire/server")}; !slices.Equal(ev.EntryParentIDs, want) {
		t.Fatalf("coalesced parents %v, want %v", ev.EntryParentIDs, want)
	}
	if ev.Revision != s.Revision() {
		t.Fatalf("event revision %d, index revision %d", ev.Revision, s.Revision())
	}

	tests := []struct {
		name         string
		write        func() error
		wantAffected []string
		wantBundles  []string
	}{
		{"alias child", func() error {
			_, err := s.UpdateEntry(ctx, &types.Entry{Id: child.Id, Hint: "x"}, &types.EntryMask{Hint: true})
			return err
		}, []string{idStr("/spire/agent/a1")}, nil},
		{"alias grandchild", func() error { return s.DeleteEntry(ctx, grandchild.Id) }, []string{idStr("/spire/agent/a1")}, nil},
		{"entry moved between agents", func() error {
			_, err := s.UpdateEntry(ctx, &types.Entry{Id: child.Id, ParentId: a2}, &types.EntryMask{ParentId: true})
			return err
		}, []string{idStr("/spire/agent/a1"), idStr("/spire/agent/a2")}, nil},
		{"bundle", func() error {
			_, err := s.SetBundle(ctx, &types.Bundle{TrustDomain: "fed.test"})
			return err
		}, nil, []string{"fed.test"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.write(); err != nil {
				t.Fatal(err)
			}
			ev := recvEvent(t, ctx, events)
			if !slices.Equal(ev.AffectedAgents, tt.wantAffected) || !slices.Equal(ev.Bundles, tt.wantBundles) {
				t.Fatalf("event %+v", ev)
			}
		})
	}

	cancel()
	if _, ok := <-events; ok {
		t.Fatal("channel open after cancel")
	}
	cancel() // idempotent
}

// BenchmarkAuthorizedEntries measures the authorization crawl over 10k
// entries: 1000 agents with 8 direct entries each, 10 node aliases with
// 200 entries each.
func BenchmarkAuthorizedEntries(b *testing.B) {
	ctx := testCtx(b)
	td := testTD(b)
	s, err := New(testEtcd.Client(), td)
	if err != nil {
		b.Fatal(err)
	}
	const agents, perAgent, aliases, perAlias = 1000, 8, 10, 200
	var ops []clientv3.Op
	flush := func() {
		if _, err := testEtcd.Client().Txn(ctx).Then(ops...).Commit(); err != nil {
			b.Fatal(err)
		}
		ops = ops[:0]
	}
	put := func(e *types.Entry) {
		v, err := encode(e)
		if err != nil {
			b.Fatal(err)
		}
		ops = append(ops, clientv3.OpPut(s.entryKey(e.Id), v))
		if len(ops) == 100 {
			flush()
		}
	}
	for a := range agents {
		for i := range perAgent {
			put(&types.Entry{Id: fmt.Sprintf("a%d-%d", a, i), SpiffeId: id(td, fmt.Sprintf("/agent%d/w%d", a, i)), ParentId: id(td, fmt.Sprintf("/spire/agent/n%d", a)), Selectors: sels(fmt.Sprintf("unix:uid:%d", i))})
		}
	}
	for al := range aliases {
		put(&types.Entry{Id: fmt.Sprintf("alias%d", al), SpiffeId: id(td, fmt.Sprintf("/alias%d", al)), ParentId: id(td, "/spire/server"), Selectors: sels(fmt.Sprintf("k8s:cluster:%d", al), "k8s:region:x")})
		for i := range perAlias {
			put(&types.Entry{Id: fmt.Sprintf("al%d-%d", al, i), SpiffeId: id(td, fmt.Sprintf("/alias%d/w%d", al, i)), ParentId: id(td, fmt.Sprintf("/alias%d", al)), Selectors: sels(fmt.Sprintf("k8s:ns:%d", i))})
		}
	}
	flush()
	if err := s.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if n, _ := s.CountEntries(ctx, EntryFilter{}); n != agents*perAgent+aliases*(perAlias+1) {
		b.Fatalf("loaded %d entries", n)
	}

	b.ResetTimer()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		a := i % agents
		agentID := spiffeid.RequireFromPath(td, fmt.Sprintf("/spire/agent/n%d", a))
		got, err := s.AuthorizedEntries(ctx, agentID, sels(fmt.Sprintf("k8s:cluster:%d", a%aliases), "k8s:region:x", "k8s:node:n"))
		if err != nil {
			b.Fatal(err)
		}
		if len(got) != perAgent+perAlias {
			b.Fatalf("%d authorized entries", len(got))
		}
	}
}
