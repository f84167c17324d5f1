package agent_test

import (
	"fmt"
	"testing"

	"github.com/signet-id/signet/agent"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
)

// TestSyncManyEntriesThenOnlyChanges: a real server with 2,000 entries
// for the agent (four pages of SyncAuthorizedEntries) syncs them all; an
// update of one then transfers that entry alone, and a deleted entry
// disappears from the cache with its SVID, with no entry transferred.
func TestSyncManyEntriesThenOnlyChanges(t *testing.T) {
	const n = 2000
	// Room for every SVID: the workload below asks for all of them.
	e := startWith(t, nil, func(c *agent.Config) { c.X509SVIDCacheMaxSize = n })
	received := func() float64 { return e.metric(t, "signet_agent_entries_received_total", "") }

	var batch []*types.Entry
	for i := range n {
		batch = append(batch, &types.Entry{
			SpiffeId:  &types.SPIFFEID{TrustDomain: td.Name(), Path: fmt.Sprintf("/many/%d", i)},
			ParentId:  &types.SPIFFEID{TrustDomain: td.Name(), Path: e.agentID.Path()},
			Selectors: []*types.Selector{uidSelector(), {Type: "unix", Value: fmt.Sprintf("gid:%d", 100000+i)}},
		})
	}
	admin := entryv1.NewEntryClient(e.admin)
	resp, err := admin.BatchCreateEntry(testContext(t), &entryv1.BatchCreateEntryRequest{Entries: batch})
	if err != nil {
		t.Fatal(err)
	}
	created := make([]*types.Entry, n)
	for i, r := range resp.Results {
		if c := codes.Code(r.Status.Code); c != codes.OK {
			t.Fatalf("create entry %d: %v %s", i, c, r.Status.Message)
		}
		created[i] = r.Entry
	}

	workload := func(i int) []*types.Selector {
		return []*types.Selector{uidSelector(), {Type: "unix", Value: fmt.Sprintf("gid:%d", 100000+i)}}
	}
	served := func(i int) *types.Entry {
		for _, id := range e.agent.Cache().FetchWorkloadUpdate(workload(i)).Identities {
			if id.Entry.Id == created[i].Id && id.SVID != nil {
				return id.Entry
			}
		}
		return nil
	}
	e.waitFor(t, "all 2,000 entries served", func() bool {
		return len(e.agent.Cache().FetchWorkloadUpdate(allSelectors()).Identities) == n
	})
	for i := range n {
		if served(i) == nil {
			t.Fatalf("entry %d (%s) has no SVID", i, created[i].Id)
		}
	}
	// Syncs pushed while the batch was being created got the entries in
	// full while they were at most a page (SPIRE's protocol); from here
	// on there are four pages and only changes are transferred.
	base := received()

	// One entry changes: only it is transferred.
	upd := &types.Entry{Id: created[1234].Id, Hint: "updated"}
	uresp, err := admin.BatchUpdateEntry(testContext(t), &entryv1.BatchUpdateEntryRequest{Entries: []*types.Entry{upd}, InputMask: &types.EntryMask{Hint: true}})
	if err != nil || codes.Code(uresp.Results[0].Status.Code) != codes.OK {
		t.Fatalf("update: %v %v", err, uresp.GetResults())
	}
	e.waitFor(t, "the updated entry", func() bool { s := served(1234); return s != nil && s.Hint == "updated" })
	if got := received() - base; got != 1 {
		t.Fatalf("after one update, %v entries received in all, want 1", got)
	}

	// One entry is deleted: it disappears, and nothing is transferred.
	dresp, err := admin.BatchDeleteEntry(testContext(t), &entryv1.BatchDeleteEntryRequest{Ids: []string{created[42].Id}})
	if err != nil || codes.Code(dresp.Results[0].Status.Code) != codes.OK {
		t.Fatalf("delete: %v %v", err, dresp.GetResults())
	}
	e.waitFor(t, "the deleted entry gone", func() bool { return len(e.agent.Cache().MatchingEntries(allSelectors())) == n-1 })
	if served(42) != nil || len(e.agent.Cache().MatchingEntries(workload(42))) != 0 {
		t.Fatal("the deleted entry is still served")
	}
	if got := received() - base; got != 1 {
		t.Fatalf("after a deletion, %v entries received in all, want 1 (the update's)", got)
	}
	if served(43) == nil || served(1234) == nil {
		t.Fatal("other entries lost")
	}
}

// allSelectors are the selectors of a workload matching every /many/
// entry.
func allSelectors() []*types.Selector {
	sels := []*types.Selector{uidSelector()}
	for i := range 2000 {
		sels = append(sels, &types.Selector{Type: "unix", Value: fmt.Sprintf("gid:%d", 100000+i)})
	}
	return sels
}
