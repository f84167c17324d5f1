package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

func entryIDs(es []*types.Entry) []string {
	out := make([]string, 0, len(es))
	for _, e := range es {
		out = append(out, e.Id)
	}
	sort.Strings(out)
	return out
}

func TestListEntriesFilters(t *testing.T) {
	ctx := testCtx(t)
	td := testTD(t)
	s := newTestStore(t, td)
	for _, b := range []string{"td1.test", "td2.test", "td3.test"} {
		if _, err := s.CreateBundle(ctx, &types.Bundle{TrustDomain: b}); err != nil {
			t.Fatal(err)
		}
	}
	yes, no := true, false
	agentA, agentB := id(td, "/spire/agent/a"), id(td, "/spire/agent/b")
	for _, e := range []*types.Entry{
		{Id: "e1", SpiffeId: id(td, "/w1"), ParentId: agentA, Selectors: sels("a:1", "b:2", "c:3"), FederatesWith: []string{"td1.test", "td2.test", "td3.test"}},
		{Id: "e2", SpiffeId: id(td, "/w2"), ParentId: agentA, Selectors: sels("a:1", "b:2"), FederatesWith: []string{"td1.test", "td2.test"}, Hint: "internal"},
		{Id: "e3", SpiffeId: id(td, "/w3"), ParentId: agentB, Selectors: sels("a:1"), FederatesWith: []string{"td1.test"}, Downstream: true},
		{Id: "e4", SpiffeId: id(td, "/w1"), ParentId: agentB, Selectors: sels("d:4"), Hint: "internal"},
	} {
		mustCreateEntry(t, s, e)
	}
	sm := func(m MatchBehavior, ss ...string) *SelectorMatch {
		return &SelectorMatch{Selectors: sels(ss...), Match: m}
	}
	fm := func(m MatchBehavior, tds ...string) *FederatesWithMatch {
		return &FederatesWithMatch{TrustDomains: tds, Match: m}
	}
	tests := []struct {
		name   string
		filter EntryFilter
		want   []string
	}{
		{"none", EntryFilter{}, []string{"e1", "e2", "e3", "e4"}},
		{"spiffe id", EntryFilter{BySpiffeID: spiffeid.RequireFromPath(td, "/w1")}, []string{"e1", "e4"}},
		{"parent id", EntryFilter{ByParentID: spiffeid.RequireFromPath(td, "/spire/agent/a")}, []string{"e1", "e2"}},
		{"spiffe and parent", EntryFilter{BySpiffeID: spiffeid.RequireFromPath(td, "/w1"), ByParentID: spiffeid.RequireFromPath(td, "/spire/agent/b")}, []string{"e4"}},
		{"unknown parent", EntryFilter{ByParentID: spiffeid.RequireFromPath(td, "/nope")}, nil},
		{"hint", EntryFilter{ByHint: "internal"}, []string{"e2", "e4"}},
		{"downstream true", EntryFilter{ByDownstream: &yes}, []string{"e3"}},
		{"downstream false", EntryFilter{ByDownstream: &no}, []string{"e1", "e2", "e4"}},

		{"selectors exact a:1 b:2", EntryFilter{BySelectors: sm(MatchExact, "a:1", "b:2")}, []string{"e2"}},
		{"selectors exact order and dupes", EntryFilter{BySelectors: sm(MatchExact, "b:2", "a:1", "a:1")}, []string{"e2"}},
		{"selectors exact a:1", EntryFilter{BySelectors: sm(MatchExact, "a:1")}, []string{"e3"}},
		{"selectors subset a:1 b:2", EntryFilter{BySelectors: sm(MatchSubset, "a:1", "b:2")}, []string{"e2", "e3"}},
		{"selectors subset a:1 b:2 c:3 d:4", EntryFilter{BySelectors: sm(MatchSubset, "a:1", "b:2", "c:3", "d:4")}, []string{"e1", "e2", "e3", "e4"}},
		{"selectors subset b:2", EntryFilter{BySelectors: sm(MatchSubset, "b:2")}, nil},
		{"selectors superset a:1", EntryFilter{BySelectors: sm(MatchSuperset, "a:1")}, []string{"e1", "e2", "e3"}},
		{"selectors superset a:1 b:2", EntryFilter{BySelectors: sm(MatchSuperset, "a:1", "b:2")}, []string{"e1", "e2"}},
		{"selectors any c:3 d:4", EntryFilter{BySelectors: sm(MatchAny, "c:3", "d:4")}, []string{"e1", "e4"}},
		{"selectors any z:9", EntryFilter{BySelectors: sm(MatchAny, "z:9")}, nil},

		{"federates exact td1 td2", EntryFilter{ByFederatesWith: fm(MatchExact, "td1.test", "td2.test")}, []string{"e2"}},
		{"federates subset td1 td2", EntryFilter{ByFederatesWith: fm(MatchSubset, "td1.test", "td2.test")}, []string{"e2", "e3"}},
		{"federates subset td2", EntryFilter{ByFederatesWith: fm(MatchSubset, "td2.test")}, nil},
		{"federates superset td2", EntryFilter{ByFederatesWith: fm(MatchSuperset, "td2.test")}, []string{"e1", "e2"}},
		{"federates any td3 td9", EntryFilter{ByFederatesWith: fm(MatchAny, "td3.test", "td9.test")}, []string{"e1"}},

		{"combined", EntryFilter{ByParentID: spiffeid.RequireFromPath(td, "/spire/agent/a"), BySelectors: sm(MatchSuperset, "a:1"), ByHint: "internal"}, []string{"e2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, next, err := s.ListEntries(ctx, tt.filter, 0, "")
			if err != nil {
				t.Fatal(err)
			}
			if next != "" {
				t.Fatalf("next = %q without a page size", next)
			}
			if ids := entryIDs(got); !slices.Equal(ids, tt.want) {
				t.Fatalf("got %v, want %v", ids, tt.want)
			}
			n, err := s.CountEntries(ctx, tt.filter)
			if err != nil {
				t.Fatal(err)
			}
			if n != len(tt.want) {
				t.Fatalf("count = %d, want %d", n, len(tt.want))
			}
		})
	}
}

func TestListEntriesPagination(t *testing.T) {
	ctx := testCtx(t)
	td := testTD(t)
	s := newTestStore(t, td)
	const total = 23
	for i := range total {
		sel := "even:yes"
		if i%2 == 1 {
			sel = "odd:yes"
		}
		mustCreateEntry(t, s, &types.Entry{SpiffeId: id(td, fmt.Sprintf("/w%d", i)), ParentId: id(td, "/spire/agent/a"), Selectors: sels(sel)})
	}
	for _, tc := range []struct {
		name   string
		filter EntryFilter
		want   int
	}{
		{"all", EntryFilter{}, total},
		{"indexed filter", EntryFilter{BySelectors: &SelectorMatch{Selectors: sels("odd:yes"), Match: MatchExact}}, total / 2},
		{"parent", EntryFilter{ByParentID: spiffeid.RequireFromPath(td, "/spire/agent/a")}, total},
	} {
		for _, pageSize := range []int{1, 5, 11, total, 100} {
			t.Run(fmt.Sprintf("%s/page%d", tc.name, pageSize), func(t *testing.T) {
				seen := map[string]int{}
				token := ""
				pages := 0
				for range total + 2 { // bounded walk
					page, next, err := s.ListEntries(ctx, tc.filter, pageSize, token)
					if err != nil {
						t.Fatal(err)
					}
					if len(page) > pageSize {
						t.Fatalf("page of %d > %d", len(page), pageSize)
					}
					pages++
					for _, e := range page {
						seen[e.Id]++
					}
					if next == "" {
						break
					}
					token = next
				}
				if len(seen) != tc.want {
					t.Fatalf("saw %d distinct entries, want %d", len(seen), tc.want)
				}
				for id, n := range seen {
					if n != 1 {
						t.Fatalf("entry %s returned %d times", id, n)
					}
				}
				if wantPages := (tc.want + pageSize - 1) / pageSize; pages != max(wantPages, 1) {
					t.Fatalf("%d pages, want %d", pages, wantPages)
				}
			})
		}
	}
}

func TestAuthorizedEntries(t *testing.T) {
	ctx := testCtx(t)
	td := testTD(t)
	s := newTestStore(t, td)
	server := id(td, "/spire/server")
	agent := spiffeid.RequireFromPath(td, "/spire/agent/k8s/node1")
	mk := func(idStr, spiffe string, parent *types.SPIFFEID, ss ...string) *types.Entry {
		return mustCreateEntry(t, s, &types.Entry{Id: idStr, SpiffeId: id(td, spiffe), ParentId: parent, Selectors: sels(ss...)})
	}
	mk("direct", "/direct", id(td, agent.Path()), "unix:uid:1")
	mk("child", "/child", id(td, "/direct"), "unix:uid:2")
	mk("grandchild", "/grandchild", id(td, "/child"), "unix:uid:3")
	mk("cycle", "/direct", id(td, "/grandchild"), "unix:uid:4") // parent chain loops back
	mk("alias", "/cluster/prod", server, "k8s:cluster:prod", "k8s:zone:a")
	mk("alias-child", "/via-alias", id(td, "/cluster/prod"), "k8s:ns:x")
	mk("alias-grandchild", "/via-alias-2", id(td, "/via-alias"), "k8s:ns:y")
	mk("alias-other", "/cluster/dev", server, "k8s:cluster:dev")
	mk("alias-other-child", "/via-dev", id(td, "/cluster/dev"), "k8s:ns:z")
	mk("alias-strict", "/cluster/prod-strict", server, "k8s:cluster:prod", "k8s:zone:a", "k8s:extra:1")
	mk("alias-strict-child", "/via-strict", id(td, "/cluster/prod-strict"), "k8s:ns:s")
	mk("other-agent", "/other", id(td, "/spire/agent/k8s/node2"), "unix:uid:1")

	tests := []struct {
		name      string
		selectors []string
		want      []string
	}{
		{"no selectors", nil, []string{"child", "cycle", "direct", "grandchild"}},
		{"alias subset of agent selectors", []string{"k8s:cluster:prod", "k8s:zone:a", "k8s:node:n1"},
			[]string{"alias-child", "alias-grandchild", "child", "cycle", "direct", "grandchild"}},
		{"alias exactly agent selectors", []string{"k8s:cluster:prod", "k8s:zone:a"},
			[]string{"alias-child", "alias-grandchild", "child", "cycle", "direct", "grandchild"}},
		{"agent lacks one alias selector", []string{"k8s:cluster:prod"}, []string{"child", "cycle", "direct", "grandchild"}},
		{"two aliases", []string{"k8s:cluster:prod", "k8s:zone:a", "k8s:extra:1", "k8s:cluster:dev"},
			[]string{"alias-child", "alias-grandchild", "alias-other-child", "alias-strict-child", "child", "cycle", "direct", "grandchild"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.AuthorizedEntries(ctx, agent, sels(tt.selectors...))
			if err != nil {
				t.Fatal(err)
			}
			if ids := entryIDs(got); !slices.Equal(ids, tt.want) {
				t.Fatalf("got %v, want %v", ids, tt.want)
			}
		})
	}
	// Returned entries are copies.
	got, _ := s.AuthorizedEntries(ctx, agent, nil)
	got[0].Hint = "mutated"
	again, _ := s.GetEntry(ctx, got[0].Id)
	if again.Hint == "mutated" {
		t.Fatal("AuthorizedEntries returned the indexed entry itself")
	}
}

func TestJoinTokens(t *testing.T) {
	ctx := testCtx(t)
	td := testTD(t)
	s := newTestStore(t, td)
	now := time.Unix(1700000000, 0)
	const token = "0f1e2d3c-secret-token"
	if err := s.CreateJoinToken(ctx, token, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateJoinToken(ctx, token, now.Add(time.Hour)); !errors.Is(err, ErrAlreadyExists) {
		t.Fatalf("duplicate token: %v", err)
	}
	// The token itself is never stored.
	resp, err := testEtcd.Client().Get(ctx, s.prefix, clientWithPrefix()...)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if containsBytes(kv.Key, token) || containsBytes(kv.Value, token) {
			t.Fatalf("clear token stored in %s", kv.Key)
		}
	}

	// Concurrent consumers: exactly one succeeds.
	results := make(chan error, 8)
	for range 8 {
		go func() {
			exp, err := s.ConsumeJoinToken(ctx, token, now)
			if err == nil && !exp.Equal(now.Add(time.Hour)) {
				err = fmt.Errorf("expiry %v", exp)
			}
			results <- err
		}()
	}
	okCount := 0
	for range 8 {
		switch err := <-results; {
		case err == nil:
			okCount++
		case !errors.Is(err, ErrNotFound):
			t.Fatal(err)
		}
	}
	if okCount != 1 {
		t.Fatalf("%d consumers succeeded", okCount)
	}
	if _, err := s.ConsumeJoinToken(ctx, "unknown", now); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown token: %v", err)
	}

	// Expired: ErrExpired once, then gone.
	if err := s.CreateJoinToken(ctx, "expiring", now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ConsumeJoinToken(ctx, "expiring", now.Add(time.Minute)); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired token: %v", err)
	}
	if _, err := s.ConsumeJoinToken(ctx, "expiring", now); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired token reused: %v", err)
	}

	// Pruning removes only expired tokens.
	for i, exp := range []time.Duration{-time.Hour, -time.Minute, time.Hour} {
		if err := s.CreateJoinToken(ctx, fmt.Sprintf("p%d", i), now.Add(exp)); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.PruneJoinTokens(ctx, now)
	if err != nil || n != 2 {
		t.Fatalf("pruned %d, %v", n, err)
	}
	if _, err := s.ConsumeJoinToken(ctx, "p2", now); err != nil {
		t.Fatalf("live token pruned: %v", err)
	}
	if err := s.CreateJoinToken(ctx, "", now); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty token: %v", err)
	}
}

func TestAgents(t *testing.T) {
	ctx := testCtx(t)
	td := testTD(t)
	s := newTestStore(t, td)
	agent := func(name, attType string, expires int64, banned, reattest bool, ss ...string) *types.Agent {
		return &types.Agent{Id: id(td, "/spire/agent/"+name), AttestationType: attType, X509SvidExpiresAt: expires, Banned: banned, CanReattest: reattest, Selectors: sels(ss...), X509SvidSerialNumber: "1"}
	}
	for _, a := range []*types.Agent{
		agent("a", "join_token", 100, false, false, "jt:x"),
		agent("b", "x509pop", 200, false, true, "x509pop:subject:cn:b", "x509pop:ca:1"),
		agent("c", "x509pop", 300, true, true, "x509pop:ca:1"),
		agent("d", "k8s_psat", 400, false, true),
	} {
		if _, err := s.CreateAgent(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.CreateAgent(ctx, agent("a", "x", 1, false, false)); !errors.Is(err, ErrAlreadyExists) {
		t.Fatalf("duplicate agent: %v", err)
	}
	if _, err := s.CreateAgent(ctx, &types.Agent{Id: &types.SPIFFEID{TrustDomain: "other.test", Path: "/spire/agent/x"}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("foreign agent: %v", err)
	}
	aID := spiffeid.RequireFromPath(td, "/spire/agent/a")
	got, err := s.GetAgent(ctx, aID)
	if err != nil {
		t.Fatal(err)
	}
	assertProtoEqual(t, got, agent("a", "join_token", 100, false, false, "jt:x"))

	// An update callback error aborts without writing.
	boom := errors.New("boom")
	if _, err := s.UpdateAgent(ctx, aID, func(a *types.Agent) error { a.Banned = true; return boom }); !errors.Is(err, boom) {
		t.Fatalf("update error: %v", err)
	}
	updated, err := s.UpdateAgent(ctx, aID, func(a *types.Agent) error {
		a.X509SvidSerialNumber = "2"
		a.Id = id(td, "/spire/agent/renamed") // ignored
		return nil
	})
	if err != nil || updated.X509SvidSerialNumber != "2" || updated.Id.Path != "/spire/agent/a" {
		t.Fatalf("update: %v, %v", updated, err)
	}
	if got, _ := s.GetAgent(ctx, aID); got.X509SvidSerialNumber != "2" || got.Banned {
		t.Fatalf("after update: %v", got)
	}

	yes, no := true, false
	tests := []struct {
		name   string
		filter AgentFilter
		want   []string
	}{
		{"all", AgentFilter{}, []string{"a", "b", "c", "d"}},
		{"attestation type", AgentFilter{ByAttestationType: "x509pop"}, []string{"b", "c"}},
		{"banned", AgentFilter{ByBanned: &yes}, []string{"c"}},
		{"not banned", AgentFilter{ByBanned: &no}, []string{"a", "b", "d"}},
		{"can reattest", AgentFilter{ByCanReattest: &yes}, []string{"b", "c", "d"}},
		{"expires before", AgentFilter{ByExpiresBefore: time.Unix(300, 0)}, []string{"a", "b"}},
		{"selectors exact", AgentFilter{BySelectors: &SelectorMatch{Selectors: sels("x509pop:ca:1"), Match: MatchExact}}, []string{"c"}},
		{"selectors superset", AgentFilter{BySelectors: &SelectorMatch{Selectors: sels("x509pop:ca:1"), Match: MatchSuperset}}, []string{"b", "c"}},
		{"selectors subset", AgentFilter{BySelectors: &SelectorMatch{Selectors: sels("x509pop:ca:1", "jt:x"), Match: MatchSubset}}, []string{"a", "c"}},
		{"selectors any", AgentFilter{BySelectors: &SelectorMatch{Selectors: sels("jt:x", "x509pop:subject:cn:b"), Match: MatchAny}}, []string{"a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, pageSize := range []int{0, 1, 3} {
				var names []string
				token := ""
				for range 10 {
					page, next, err := s.ListAgents(ctx, tt.filter, pageSize, token)
					if err != nil {
						t.Fatal(err)
					}
					for _, a := range page {
						names = append(names, a.Id.Path[len("/spire/agent/"):])
					}
					if next == "" {
						break
					}
					token = next
				}
				if !slices.Equal(names, tt.want) {
					t.Fatalf("page size %d: got %v, want %v", pageSize, names, tt.want)
				}
			}
			n, err := s.CountAgents(ctx, tt.filter)
			if err != nil || n != len(tt.want) {
				t.Fatalf("count = %d, %v", n, err)
			}
		})
	}

	if err := s.DeleteAgent(ctx, aID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAgent(ctx, aID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := s.GetAgent(ctx, aID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get deleted: %v", err)
	}
	if _, err := s.UpdateAgent(ctx, aID, func(*types.Agent) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update deleted: %v", err)
	}
}

func TestBundles(t *testing.T) {
	ctx := testCtx(t)
	td := testTD(t)
	s := newTestStore(t, td)
	for _, name := range []string{"c.test", "a.test", "b.test", "d.test"} {
		if _, err := s.CreateBundle(ctx, &types.Bundle{TrustDomain: name, RefreshHint: 60}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.CreateBundle(ctx, &types.Bundle{TrustDomain: "spiffe://a.test"}); !errors.Is(err, ErrAlreadyExists) {
		t.Fatalf("duplicate bundle: %v", err)
	}
	if _, err := s.CreateBundle(ctx, &types.Bundle{TrustDomain: "Not Valid"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("invalid bundle: %v", err)
	}
	aTD := spiffeid.RequireTrustDomainFromString("a.test")
	b, err := s.GetBundle(ctx, aTD)
	if err != nil || b.RefreshHint != 60 {
		t.Fatalf("get: %v, %v", b, err)
	}
	if _, err := s.UpdateBundle(ctx, aTD, func(b *types.Bundle) error { b.SequenceNumber = 5; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetBundle(ctx, &types.Bundle{TrustDomain: "e.test", SequenceNumber: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetBundle(ctx, &types.Bundle{TrustDomain: "e.test", SequenceNumber: 2}); err != nil {
		t.Fatal(err)
	}
	if b, _ := s.GetBundle(ctx, aTD); b.SequenceNumber != 5 || b.RefreshHint != 60 {
		t.Fatalf("after update: %v", b)
	}
	if b, _ := s.GetBundle(ctx, spiffeid.RequireTrustDomainFromString("e.test")); b.SequenceNumber != 2 {
		t.Fatalf("after set: %v", b)
	}
	var names []string
	token := ""
	for range 10 {
		page, next, err := s.ListBundles(ctx, 2, token)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range page {
			names = append(names, b.TrustDomain)
		}
		if next == "" {
			break
		}
		token = next
	}
	if want := []string{"a.test", "b.test", "c.test", "d.test", "e.test"}; !slices.Equal(names, want) {
		t.Fatalf("list = %v", names)
	}
	if n, _ := s.CountBundles(ctx); n != 5 {
		t.Fatalf("count = %d", n)
	}

	// Delete modes.
	agent := id(td, "/spire/agent/x")
	e1 := mustCreateEntry(t, s, &types.Entry{SpiffeId: id(td, "/1"), ParentId: agent, Selectors: sels("a:1"), FederatesWith: []string{"a.test", "b.test"}})
	e2 := mustCreateEntry(t, s, &types.Entry{SpiffeId: id(td, "/2"), ParentId: agent, Selectors: sels("a:1"), FederatesWith: []string{"b.test"}})
	if err := s.DeleteBundle(ctx, aTD, BundleDeleteRestrict); !errors.Is(err, ErrInUse) {
		t.Fatalf("restrict: %v", err)
	}
	if err := s.DeleteBundle(ctx, aTD, BundleDeleteDissociate); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetEntry(ctx, e1.Id); !slices.Equal(got.FederatesWith, []string{"b.test"}) {
		t.Fatalf("dissociated entry federates with %v", got.FederatesWith)
	}
	if err := s.DeleteBundle(ctx, spiffeid.RequireTrustDomainFromString("b.test"), BundleDeleteEntries); err != nil {
		t.Fatal(err)
	}
	for _, e := range []*types.Entry{e1, e2} {
		if _, err := s.GetEntry(ctx, e.Id); !errors.Is(err, ErrNotFound) {
			t.Fatalf("entry %s survived bundle deletion: %v", e.Id, err)
		}
	}
	if err := s.DeleteBundle(ctx, aTD, BundleDeleteRestrict); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete missing: %v", err)
	}
	if _, err := s.GetBundle(ctx, aTD); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get deleted: %v", err)
	}
	// An entry cannot federate with a deleted bundle.
	if _, err := s.CreateEntry(ctx, &types.Entry{SpiffeId: id(td, "/3"), ParentId: agent, Selectors: sels("a:1"), FederatesWith: []string{"a.test"}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("federate with deleted bundle: %v", err)
	}
}

func TestUnstartedStore(t *testing.T) {
	s, err := New(testEtcd.Client(), testTD(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := s.GetEntry(ctx, "x"); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("read before start: %v", err)
	}
	if _, err := New(nil, testTD(t)); err == nil {
		t.Fatal("New without client succeeded")
	}
	if _, err := New(testEtcd.Client(), spiffeid.TrustDomain{}); err == nil {
		t.Fatal("New without trust domain succeeded")
	}
}
