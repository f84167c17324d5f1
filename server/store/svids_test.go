package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/signet-id/signet/clock/fakeclock"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	clientv3 "go.etcd.io/etcd/client/v3"
)

const (
	authA = "aaaa01"
	authB = "bbbb02"
)

type svidFixture struct {
	t      *testing.T
	td     spiffeid.TrustDomain
	clk    *fakeclock.Clock
	st     *Store
	agents []spiffeid.ID
}

func newSVIDFixture(t *testing.T, agents int) *svidFixture {
	t.Helper()
	f := &svidFixture{t: t, td: testTD(t), clk: fakeclock.New(time.Unix(1800000000, 0))}
	f.st = newTestStore(t, f.td, WithClock(f.clk))
	for i := range agents {
		f.agents = append(f.agents, f.addAgent(fmt.Sprintf("a%d", i)))
	}
	return f
}

func (f *svidFixture) addAgent(name string) spiffeid.ID {
	f.t.Helper()
	aid := spiffeid.RequireFromPath(f.td, "/spire/agent/join_token/"+name)
	if _, err := f.st.CreateAgent(testCtx(f.t), &types.Agent{Id: id(f.td, aid.Path()), AttestationType: "join_token"}); err != nil {
		f.t.Fatal(err)
	}
	return aid
}

func (f *svidFixture) entry(parent spiffeid.ID, path string) string {
	f.t.Helper()
	return mustCreateEntry(f.t, f.st, &types.Entry{
		SpiffeId: id(f.td, path), ParentId: id(f.td, parent.Path()), Selectors: sels("unix:uid:1"),
	}).Id
}

func (f *svidFixture) count(tr *SVIDTracker, authority string) int {
	f.t.Helper()
	n, err := tr.CountSVIDsByAuthority(testCtx(f.t), authority, f.clk.Now())
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}

func (f *svidFixture) issue(tr *SVIDTracker, agent spiffeid.ID, entryID, authority string, ttl time.Duration) {
	wid := spiffeid.RequireFromPath(f.td, "/w/"+entryID)
	tr.SVIDIssued(context.Background(), agent, entryID, wid, "1", authority, f.clk.Now().Add(ttl))
}

// svidKeys counts the raw records in etcd.
func (f *svidFixture) svidKeys() int64 {
	f.t.Helper()
	resp, err := testEtcd.Client().Get(testCtx(f.t), f.st.prefix+svidsDir, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		f.t.Fatal(err)
	}
	return resp.Count
}

func both() []string { return []string{authA, authB} }

// TestSVIDTrackingCounts follows records through renewal under another
// authority, coalescing, expiry, entry deletion, agent eviction and
// pruning, checking the count of each authority after every step.
func TestSVIDTrackingCounts(t *testing.T) {
	f := newSVIDFixture(t, 2)
	a1, a2 := f.agents[0], f.agents[1]
	e1, e2, e3 := f.entry(a1, "/one"), f.entry(a1, "/two"), f.entry(a2, "/three")
	tr := NewSVIDTracker(f.st, both, WithPruneInterval(0))
	ctx := testCtx(t)

	steps := []struct {
		name         string
		do           func()
		wantA, wantB int
		wantKeys     int64 // raw records in etcd; -1: do not check
	}{
		{"nothing issued", func() {}, 0, 0, 0},
		{"three issued by A", func() {
			f.issue(tr, a1, e1, authA, time.Hour)
			f.issue(tr, a1, e2, authA, time.Hour)
			f.issue(tr, a2, e3, authA, 10*time.Minute)
		}, 3, 0, 3},
		{"e1 renewed by B replaces its A record", func() { f.issue(tr, a1, e1, authB, time.Hour) }, 2, 1, 3},
		{"renewed twice before a flush: the latest wins", func() {
			f.issue(tr, a1, e2, authA, time.Hour)
			f.issue(tr, a1, e2, authB, time.Hour)
		}, 1, 2, 3},
		{"the agents' own SVIDs count too", func() {
			tr.SVIDIssued(ctx, a1, "", a1, "7", authA, f.clk.Now().Add(time.Hour))
			tr.SVIDIssued(ctx, a2, "", a2, "8", authA, f.clk.Now().Add(time.Hour))
		}, 3, 2, 5},
		{"an agent SVID renewed by B", func() { tr.SVIDIssued(ctx, a2, "", a2, "9", authB, f.clk.Now().Add(time.Hour)) }, 2, 3, 5},
		{"admin mints and records without an authority are not tracked", func() {
			tr.SVIDIssued(ctx, spiffeid.ID{}, "", spiffeid.RequireFromPath(f.td, "/minted"), "9", authA, f.clk.Now().Add(time.Hour))
			tr.SVIDIssued(ctx, a1, e1, spiffeid.RequireFromPath(f.td, "/w"), "9", "", f.clk.Now().Add(time.Hour))
		}, 2, 3, 5},
		{"e3's SVID expires", func() { f.clk.Advance(11 * time.Minute) }, 1, 3, 5},
		{"e1 deleted", func() {
			if err := f.st.DeleteEntry(ctx, e1); err != nil {
				t.Fatal(err)
			}
		}, 1, 2, 5},
		{"a1 evicted: its entries' and its own SVIDs no longer count", func() {
			if err := f.st.DeleteAgent(ctx, a1); err != nil {
				t.Fatal(err)
			}
		}, 0, 1, 5},
		{"pruned within the grace period: only the expired record goes", func() {
			n, err := f.st.PruneSVIDRecords(ctx, f.clk.Now(), time.Hour)
			if err != nil || n != 1 {
				t.Fatalf("pruned %d, %v; want 1", n, err)
			}
		}, 0, 1, 4},
		{"pruned after the grace period: orphans go too", func() {
			n, err := f.st.PruneSVIDRecords(ctx, f.clk.Now(), time.Minute)
			if err != nil || n != 3 {
				t.Fatalf("pruned %d, %v; want 3", n, err)
			}
		}, 0, 1, 1},
	}
	for _, s := range steps {
		s.do()
		if a, b := f.count(tr, authA), f.count(tr, authB); a != s.wantA || b != s.wantB {
			t.Fatalf("%s: counts A=%d B=%d, want A=%d B=%d", s.name, a, b, s.wantA, s.wantB)
		}
		if s.wantKeys >= 0 {
			if n := f.svidKeys(); n != s.wantKeys {
				t.Fatalf("%s: %d records in etcd, want %d", s.name, n, s.wantKeys)
			}
		}
	}
}

// TestSVIDTrackingBatches checks that a flush of many records takes as few
// etcd transactions as the per-transaction limit allows.
func TestSVIDTrackingBatches(t *testing.T) {
	const agents, entries = 40, 25 // 1000 records
	f := newSVIDFixture(t, agents)
	var ids []string
	for i := range entries {
		ids = append(ids, f.entry(f.agents[0], fmt.Sprintf("/e%d", i)))
	}
	tr := NewSVIDTracker(f.st, both, WithBatchSize(1<<20), WithPruneInterval(0))
	for _, a := range f.agents {
		for _, e := range ids {
			f.issue(tr, a, e, authA, time.Hour)
		}
	}
	ctx := testCtx(t)
	before, err := testEtcd.Client().Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	after, err := testEtcd.Client().Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	// Each record is a put plus a delete under the other authority.
	wantTxns := int64((agents*entries*2 + maxTxnOps - 1) / maxTxnOps)
	if got := after.Header.Revision - before.Header.Revision; got != wantTxns {
		t.Fatalf("flush took %d transactions, want %d", got, wantTxns)
	}
	if n := f.count(tr, authA); n != agents*entries {
		t.Fatalf("count %d, want %d", n, agents*entries)
	}
}

// TestSVIDTrackingConcurrentReplicas issues from many goroutines into two
// trackers on two stores (two server replicas) with their background
// writers running, renews everything under a new authority on the other
// replica, and checks both replicas agree on the counts.
func TestSVIDTrackingConcurrentReplicas(t *testing.T) {
	const agents, entries = 20, 20
	f := newSVIDFixture(t, agents)
	var ids []string
	for i := range entries {
		ids = append(ids, f.entry(f.agents[0], fmt.Sprintf("/e%d", i)))
	}
	st2 := newTestStore(t, f.td, WithClock(f.clk))
	tr1 := NewSVIDTracker(f.st, both, WithBatchSize(64), WithFlushInterval(20*time.Millisecond))
	tr2 := NewSVIDTracker(st2, both, WithBatchSize(64), WithFlushInterval(20*time.Millisecond))
	ctx, cancel := context.WithCancel(testCtx(t))
	var runs sync.WaitGroup
	for _, tr := range []*SVIDTracker{tr1, tr2} {
		runs.Go(func() { _ = tr.Run(ctx) })
	}
	issueAll := func(tr *SVIDTracker, authority string) {
		var wg sync.WaitGroup
		for _, a := range f.agents {
			wg.Go(func() {
				for _, e := range ids {
					f.issue(tr, a, e, authority, time.Hour)
				}
			})
		}
		wg.Wait()
	}
	issueAll(tr1, authA)
	if n := f.count(tr1, authA); n != agents*entries {
		t.Fatalf("replica 1 counts %d under A, want %d", n, agents*entries)
	}
	if err := st2.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	issueAll(tr2, authB)
	if err := tr2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for i, tr := range []*SVIDTracker{tr1, tr2} {
		if a, b := f.count(tr, authA), f.count(tr, authB); a != 0 || b != agents*entries {
			t.Fatalf("replica %d: A=%d B=%d, want A=0 B=%d", i+1, a, b, agents*entries)
		}
	}
	// Stopping flushes what is queued.
	f.issue(tr1, f.agents[0], ids[0], authA, time.Hour)
	cancel()
	runs.Wait()
	if n, err := f.st.CountSVIDsByAuthority(testCtx(t), authA, f.clk.Now()); err != nil || n != 1 {
		t.Fatalf("after stop: A=%d, %v; want 1", n, err)
	}
}

func TestSVIDRecordValidation(t *testing.T) {
	f := newSVIDFixture(t, 1)
	ctx := testCtx(t)
	good := SVIDRecord{AgentID: f.agents[0].String(), EntryID: "e", AuthorityID: authA, ExpiresAt: f.clk.Now().Add(time.Hour)}
	cases := map[string]func(r *SVIDRecord){
		"no authority":         func(r *SVIDRecord) { r.AuthorityID = "" },
		"slash in authority":   func(r *SVIDRecord) { r.AuthorityID = "a/b" },
		"hash in entry ID":     func(r *SVIDRecord) { r.EntryID = "a#b" },
		"bad agent ID":         func(r *SVIDRecord) { r.AgentID = "agent" },
		"foreign agent":        func(r *SVIDRecord) { r.AgentID = "spiffe://other.test/spire/agent/x" },
		"agent ID has no path": func(r *SVIDRecord) { r.AgentID = "spiffe://" + f.td.Name() },
	}
	for name, mutate := range cases {
		r := good
		mutate(&r)
		if err := f.st.PutSVIDRecords(ctx, []SVIDRecord{r}, nil); !isInvalid(err) {
			t.Errorf("%s: error %v, want ErrInvalid", name, err)
		}
	}
	if _, err := f.st.CountSVIDsByAuthority(ctx, "", f.clk.Now()); !isInvalid(err) {
		t.Errorf("count with empty authority: %v, want ErrInvalid", err)
	}
	if n := f.svidKeys(); n != 0 {
		t.Fatalf("%d records written", n)
	}
}

func isInvalid(err error) bool { return errors.Is(err, ErrInvalid) }
