package agent_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/agent/cache"
	"github.com/signet-id/signet/clock/fakeclock"
	"github.com/signet-id/signet/server"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
)

// lazySelectors are the selectors of workload i of createLazy's entries.
func lazySelectors(i int) []*types.Selector {
	return []*types.Selector{uidSelector(), {Type: "unix", Value: fmt.Sprintf("gid:%d", 200000+i)}}
}

// createLazy registers n entries for the agent, entry i for workload i.
func (e *env) createLazy(t *testing.T, n int) []*types.Entry {
	t.Helper()
	return e.createLazyFrom(t, 0, n)
}

// createLazyFrom registers entries from to from+n-1.
func (e *env) createLazyFrom(t *testing.T, from, n int) []*types.Entry {
	t.Helper()
	var batch []*types.Entry
	for i := from; i < from+n; i++ {
		batch = append(batch, &types.Entry{
			SpiffeId:  &types.SPIFFEID{TrustDomain: td.Name(), Path: fmt.Sprintf("/lazy/%d", i)},
			ParentId:  &types.SPIFFEID{TrustDomain: td.Name(), Path: e.agentID.Path()},
			Selectors: lazySelectors(i),
		})
	}
	resp, err := entryv1.NewEntryClient(e.admin).BatchCreateEntry(testContext(t), &entryv1.BatchCreateEntryRequest{Entries: batch})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]*types.Entry, n)
	for i, r := range resp.Results {
		if c := codes.Code(r.Status.Code); c != codes.OK {
			t.Fatalf("create entry %d: %v %s", i, c, r.Status.Message)
		}
		out[i] = r.Entry
	}
	// Wait until the agent holds them all (MatchingEntries asks for no
	// SVID).
	var all []*types.Selector
	for i := from; i < from+n; i++ {
		all = append(all, lazySelectors(i)...)
	}
	e.waitFor(t, fmt.Sprintf("the agent to hold %d entries", n), func() bool {
		return len(e.agent.Cache().MatchingEntries(all)) == n
	})
	return out
}

// nextUpdate waits for the subscription's next update accepted by ok.
func nextUpdate(t *testing.T, sub *cache.Subscription, what string, ok func(*cache.WorkloadUpdate) bool) *cache.WorkloadUpdate {
	t.Helper()
	timeout := time.After(deliveryBound)
	for {
		select {
		case u := <-sub.Updates():
			if ok(u) {
				return u
			}
		case <-timeout:
			t.Fatalf("no %s within %v", what, deliveryBound)
		}
	}
}

func leafOf(u *cache.WorkloadUpdate) string {
	if len(u.Identities) == 0 {
		return ""
	}
	return u.Identities[0].SVID.Chain[0].SerialNumber.String()
}

// TestLazyMintingOnlyForWorkloadsSeen: of 5,000 entries, with a cache of
// 100, the agent mints only the SVIDs of the three workloads that
// subscribe; the first update waits for them; and a watching workload
// gets its SVID's rotation.
func TestLazyMintingOnlyForWorkloadsSeen(t *testing.T) {
	const n = 5000
	e, clk := startFakeWith(t, func(c *agent.Config) { c.X509SVIDCacheMaxSize = 100 })
	issued := func() float64 { return e.metric(t, "signet_agent_workload_svids_issued_total", "") }
	e.createLazy(t, n)
	if got := issued(); got != 0 {
		t.Fatalf("%v SVIDs minted before any workload attested", got)
	}

	var watch *cache.Subscription
	for _, i := range []int{7, 4999, 2500} {
		sub := e.agent.Cache().Subscribe(lazySelectors(i))
		defer sub.Close()
		// The first view may precede the SVID; the next brings it.
		u := nextUpdate(t, sub, fmt.Sprintf("SVID for workload %d", i), (*cache.WorkloadUpdate).HasIdentity)
		if got := u.Identities[0].Entry.SpiffeId.Path; got != fmt.Sprintf("/lazy/%d", i) {
			t.Fatalf("workload %d served %s", i, got)
		}
		if watch == nil {
			watch = sub
		}
	}
	if got := issued(); got != 3 {
		t.Fatalf("%v SVIDs minted for 3 workloads seen among %d entries", got, n)
	}
	// The disk copy holds what serves them, not every entry (it is
	// written just after the cache is served).
	var disk struct {
		Entries []json.RawMessage `json:"entries"`
		SVIDs   map[string]any    `json:"svids"`
	}
	e.waitFor(t, "three SVIDs on disk", func() bool {
		raw, err := os.ReadFile(filepath.Join(e.dataDir, "svid-cache.json"))
		if err != nil || json.Unmarshal(raw, &disk) != nil {
			return false
		}
		return len(disk.SVIDs) == 3
	})
	if len(disk.Entries) != 3 {
		t.Fatalf("disk copy holds %d entries with the 3 SVIDs, want 3", len(disk.Entries))
	}

	// The watching workload's SVID is renewed on the agent's clock and
	// reaches it.
	old := leafOf(e.agent.Cache().FetchWorkloadUpdate(lazySelectors(7)))
	waitSessionIdle(t, clk)
	due, ok := clk.Next()
	if !ok {
		t.Fatal("no pending timer")
	}
	clk.Advance(due.Sub(clk.Now()))
	nextUpdate(t, watch, "rotated SVID", func(u *cache.WorkloadUpdate) bool { return leafOf(u) != "" && leafOf(u) != old })
	if got := issued(); got < 4 || got > 6 {
		t.Fatalf("%v SVIDs minted after the renewal; want the 3 first and up to the 3 renewed", got)
	}
}

// TestSVIDCacheEvictsLeastRecentlyUsed: with x509_svid_cache_max_size 2,
// a third workload's SVID evicts the least recently used one of a
// workload that left, never that of a workload still connected; an
// evicted SVID is minted again when its workload returns.
func TestSVIDCacheEvictsLeastRecentlyUsed(t *testing.T) {
	e := startWith(t, nil, func(c *agent.Config) { c.X509SVIDCacheMaxSize = 2 })
	e.createLazy(t, 5)
	evicted := func() float64 { return e.metric(t, "signet_agent_workload_svids_evicted_total", "") }
	issued := func() float64 { return e.metric(t, "signet_agent_workload_svids_issued_total", "") }
	visit := func(i int) *cache.Subscription {
		sub := e.agent.Cache().Subscribe(lazySelectors(i))
		nextUpdate(t, sub, fmt.Sprintf("SVID for workload %d", i), (*cache.WorkloadUpdate).HasIdentity)
		return sub
	}
	cached := func(i int) bool {
		sub := e.agent.Cache().Subscribe(lazySelectors(i))
		defer sub.Close()
		return (<-sub.Updates()).HasIdentity() // the view before any mint
	}

	// Workload 1 stays connected; 0 and 2 come and go.
	visit(0).Close()
	stay := visit(1)
	defer stay.Close()
	visit(2).Close() // three wanted, bound 2: 0 (least recent, gone) goes
	e.waitFor(t, "an eviction", func() bool { return evicted() == 1 })
	if got := issued(); got != 3 {
		t.Fatalf("%v SVIDs minted for three workloads", got)
	}
	// Checking the cache touches the entry, so check 0 last.
	if !cached(1) || !cached(2) {
		t.Fatal("a recently used SVID was evicted")
	}

	// Workload 3 arrives: the least recently used of the workloads gone
	// is 2 (1 is connected, though it was asked for before 2).
	visit(3).Close()
	e.waitFor(t, "a second eviction", func() bool { return evicted() == 2 })
	if !cached(1) {
		t.Fatal("the SVID of a connected workload was evicted")
	}
	if cached(0) {
		t.Fatal("workload 0's SVID was not evicted")
	}
	// Asking for 0 again mints it again.
	visit(0).Close()
	if got := issued(); got != 5 {
		t.Fatalf("%v SVIDs minted; want 5 (0, 1, 2, 3, then 0 again)", got)
	}
}

// TestEvictionWhenAnEntryArrivesForAWaitingWorkload: a workload waits
// for an entry that does not exist yet; when it arrives, the agent mints
// its SVID and evicts, beyond the bound of 1, the SVID of a workload that
// left.
func TestEvictionWhenAnEntryArrivesForAWaitingWorkload(t *testing.T) {
	e := startWith(t, nil, func(c *agent.Config) { c.X509SVIDCacheMaxSize = 1 })
	e.createLazy(t, 1)
	first := e.agent.Cache().Subscribe(lazySelectors(0))
	nextUpdate(t, first, "SVID for workload 0", (*cache.WorkloadUpdate).HasIdentity)
	first.Close()

	waiting := e.agent.Cache().Subscribe(lazySelectors(1))
	defer waiting.Close()
	e.createLazyFrom(t, 1, 1)
	nextUpdate(t, waiting, "SVID for workload 1", (*cache.WorkloadUpdate).HasIdentity)
	e.waitFor(t, "workload 0's SVID evicted", func() bool {
		return e.metric(t, "signet_agent_workload_svids_evicted_total", "") == 1
	})
}

// startFakeWith is startFake with the agent configuration adjusted.
func startFakeWith(t *testing.T, agentCfg func(*agent.Config)) (*env, *fakeclock.Clock) {
	t.Helper()
	clk := fakeclock.New(time.Now())
	e := startWith(t,
		func(c *server.Config) { c.AgentSVIDTTL = 4 * time.Hour },
		func(c *agent.Config) { c.Clock = clk; c.SyncInterval = 2 * time.Hour; agentCfg(c) })
	return e, clk
}
