package cache_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"

	"github.com/signet-id/signet/agent/cache"
	"github.com/signet-id/signet/agent/cache/cachetest"
)

// TestApplyMatchesUpdate applies random deltas (entries added, replaced
// with other selectors, removed; SVIDs issued and dropped) to one cache
// and the resulting full state with Update to another: every workload
// sees the same in both after each step.
func TestApplyMatchesUpdate(t *testing.T) {
	f := newFixture(t)
	full := cache.New(td)
	inc := cache.New(td)
	inc.Apply(cache.Delta{SetBundles: true, Bundle: f.u.Bundle})
	selectors := []string{"unix:uid:1", "unix:uid:2", "unix:gid:1", "unix:gid:2"}
	workloads := [][]*types.Selector{
		sel("unix:uid:1"), sel("unix:uid:1", "unix:gid:1"), sel("unix:uid:2", "unix:gid:2"), sel(selectors...), sel("unix:uid:9"),
	}
	entries := map[string]*types.Entry{}
	svids := map[string]*cache.X509SVID{}
	rng := rand.New(rand.NewPCG(1, 2))
	for step := range 300 {
		id := fmt.Sprintf("e%d", rng.IntN(40))
		var d cache.Delta
		switch op := rng.IntN(4); {
		case op <= 1: // add or replace, with an SVID
			picked := []string{selectors[rng.IntN(len(selectors))]}
			if rng.IntN(2) == 0 {
				picked = append(picked, selectors[rng.IntN(len(selectors))])
			}
			e := entry(id, "/w/"+id, picked...)
			e.RevisionNumber = int64(step)
			entries[id] = e
			d.Entries = []*types.Entry{e}
			if op == 0 {
				s := f.ca.X509SVID(t, cachetestID(t, e))
				svids[id] = s
				d.SVIDs = map[string]*cache.X509SVID{id: s}
			}
		case op == 2: // remove
			delete(entries, id)
			delete(svids, id)
			d.RemoveEntries = []string{id}
		default: // drop the SVID only
			delete(svids, id)
			d.RemoveSVIDs = []string{id}
		}
		inc.Apply(d)
		u := cache.Update{Bundle: f.u.Bundle, SVIDs: svids}
		for _, e := range entries {
			u.Entries = append(u.Entries, e)
		}
		full.Update(u)
		for _, w := range workloads {
			got, want := inc.FetchWorkloadUpdate(w), full.FetchWorkloadUpdate(w)
			if !slices.Equal(identityIDs(got), identityIDs(want)) {
				t.Fatalf("step %d, workload %v: Apply serves %q, Update %q", step, w, identityIDs(got), identityIDs(want))
			}
			if g, w := ids(inc.MatchingEntries(w)), ids(full.MatchingEntries(w)); !slices.Equal(g, w) {
				t.Fatalf("step %d: Apply matches %q, Update %q", step, g, w)
			}
			for i := range got.Identities {
				if got.Identities[i].SVID != want.Identities[i].SVID {
					t.Fatalf("step %d: entry %s served another SVID", step, got.Identities[i].Entry.Id)
				}
			}
		}
	}
}

func cachetestID(t *testing.T, e *types.Entry) spiffeid.ID {
	t.Helper()
	id, err := cache.EntrySPIFFEID(e)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestApplyNotifiesOnlyAffectedWorkloads: a delta for one workload's
// entry reaches that workload's subscription and no other; a bundle
// change reaches all.
func TestApplyNotifiesOnlyAffectedWorkloads(t *testing.T) {
	f := newFixture(t)
	f.addEntry(entry("web", "/web", "unix:uid:1000"))
	f.addEntry(entry("db", "/db", "unix:uid:0"))
	f.apply()
	web := f.c.Subscribe(sel("unix:uid:1000"))
	defer web.Close()
	db := f.c.Subscribe(sel("unix:uid:0"))
	defer db.Close()
	recv(t, web)
	recv(t, db)

	// A new SVID for web.
	s := f.ca.X509SVID(t, cachetestID(t, f.u.Entries[0]))
	f.c.Apply(cache.Delta{SVIDs: map[string]*cache.X509SVID{"web": s}})
	if u := recv(t, web); u.Identities[0].SVID != s {
		t.Fatal("web not served its new SVID")
	}
	noUpdate(t, db)

	// web's entry moves to uid 0: both views change.
	f.c.Apply(cache.Delta{Entries: []*types.Entry{entry("web", "/web", "unix:uid:0")}})
	if got := identityIDs(recv(t, web)); len(got) != 0 {
		t.Fatalf("web still served %q", got)
	}
	if got := identityIDs(recv(t, db)); !slices.Equal(got, []string{"db", "web"}) {
		t.Fatalf("db served %q", got)
	}

	// Removing db's entry: only db's view changes.
	f.c.Apply(cache.Delta{RemoveEntries: []string{"db"}})
	if got := identityIDs(recv(t, db)); !slices.Equal(got, []string{"web"}) {
		t.Fatalf("db served %q after removal", got)
	}
	noUpdate(t, web)

	// A new bundle reaches every subscriber.
	b := cachetest.NewCA(t, td).Bundle()
	f.c.Apply(cache.Delta{SetBundles: true, Bundle: b})
	for _, sub := range []*cache.Subscription{web, db} {
		if u := recv(t, sub); !u.Bundle.Equal(b) {
			t.Fatal("new bundle not delivered")
		}
	}
}
