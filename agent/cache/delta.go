package cache

import (
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// Delta is a change to the cache's state, applied by Apply.
type Delta struct {
	// SetBundles replaces the bundles with Bundle and Federated (as in
	// Update); without it they stay.
	SetBundles bool
	Bundle     *spiffebundle.Bundle
	Federated  map[spiffeid.TrustDomain]*spiffebundle.Bundle
	// Entries are added, or replace the entries of the same ID (an
	// invalid one removes the entry it would replace).
	Entries []*types.Entry
	// RemoveEntries are the IDs of entries removed, with their SVIDs.
	RemoveEntries []string
	// SVIDs are added, or replace the SVIDs of the same entry ID.
	SVIDs map[string]*X509SVID
	// RemoveSVIDs are the entry IDs whose SVIDs are dropped; the entries
	// stay.
	RemoveSVIDs []string
}

// Apply changes the state by d atomically and notifies the subscribers
// whose view changed. It costs the size of d (and of the affected
// subscribers' views), not of the whole state.
func (c *Cache) Apply(d Delta) {
	recs := make([]*record, 0, len(d.Entries))
	for _, e := range d.Entries {
		if r, ok := c.newRecord(e); ok {
			recs = append(recs, r)
		} else if e != nil && e.Id != "" {
			d.RemoveEntries = append(d.RemoveEntries, e.Id)
		}
	}

	c.mu.Lock()
	st := c.st
	oldBundle := st.bundle
	// affected holds the selector keys of every record whose entry or
	// SVID changed: only a subscriber holding one of them can see it.
	affected := make(map[string]struct{})
	touch := func(id string) {
		if r := st.byID[id]; r != nil {
			for _, k := range r.selectors {
				affected[k] = struct{}{}
			}
		}
	}
	if d.SetBundles {
		c.setBundles(st, d.Bundle, d.Federated)
	}
	for _, id := range d.RemoveEntries {
		touch(id)
		st.remove(id)
		delete(st.svids, id)
	}
	for _, r := range recs {
		touch(r.entry.Id)
		st.add(r)
		touch(r.entry.Id)
	}
	for _, id := range d.RemoveSVIDs {
		touch(id)
		delete(st.svids, id)
	}
	for id, s := range d.SVIDs {
		touch(id)
		st.svids[id] = s
	}
	if jwtKeysRemoved(oldBundle, st.bundle) {
		c.jwt.clear()
	}
	var missing []string
	if d.SetBundles {
		missing = c.notifyLocked(nil)
	} else {
		missing = c.notifyLocked(func(sub *Subscription) bool {
			for k := range sub.selectors {
				if _, ok := affected[k]; ok {
					return true
				}
			}
			return false
		})
	}
	c.mu.Unlock()
	c.tellDemand(missing)
}
