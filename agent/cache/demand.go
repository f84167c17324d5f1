package cache

// WithDemand sets a function told which entries' X.509-SVIDs workloads
// want, so that an agent minting lazily obtains only those: the entry IDs
// a workload matches when it subscribes or fetches its view, and the
// matched entries still without an SVID whenever an open subscription's
// view is recomputed. It is called without the cache's lock held and must
// not block for long.
func WithDemand(f func(entryIDs []string)) Option {
	return func(c *Cache) { c.demand = f }
}

// tellDemand passes ids to the demand function, if any.
func (c *Cache) tellDemand(ids []string) {
	if c.demand != nil && len(ids) > 0 {
		c.demand(ids)
	}
}

// notifyLocked pushes a new view to every subscriber (that want accepts,
// if not nil) whose view changed, and returns the IDs of the entries
// these subscribers match that have no SVID. Callers hold c.mu.
func (c *Cache) notifyLocked(want func(*Subscription) bool) []string {
	st := c.st
	views := make(map[string]*WorkloadUpdate)
	var missing []string
	for sub := range c.subs {
		if want != nil && !want(sub) {
			continue
		}
		wu, ok := views[sub.key]
		if !ok {
			var m []string
			wu, m = st.workloadUpdate(sub.selectors)
			views[sub.key] = wu
			missing = append(missing, m...)
		}
		if equalUpdates(sub.last, wu) {
			continue
		}
		sub.last = wu
		sub.push(wu)
	}
	return missing
}

// matchedIDs returns the IDs of the entries set matches when there is a
// demand function (nil otherwise). Callers hold c.mu.
func (c *Cache) matchedIDs(set selectorSet) []string {
	if c.demand == nil {
		return nil
	}
	recs := c.st.match(set)
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = r.entry.Id
	}
	return ids
}

// SubscribedEntries returns the IDs of the entries that open
// subscriptions match: the SVIDs in use.
func (c *Cache) SubscribedEntries() map[string]bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := map[string]bool{}
	done := map[string]bool{}
	for sub := range c.subs {
		if done[sub.key] {
			continue
		}
		done[sub.key] = true
		for _, r := range c.st.match(sub.selectors) {
			out[r.entry.Id] = true
		}
	}
	return out
}
