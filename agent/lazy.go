package agent

import "container/list"

// DefaultX509SVIDCacheMaxSize is SPIRE's default x509_svid_cache_max_size:
// the most workload X.509-SVIDs the agent keeps for workloads that are
// not connected.
const DefaultX509SVIDCacheMaxSize = 1000

// wantSet holds the entry IDs whose X.509-SVIDs workloads asked for, most
// recently asked first, bounded by max: the agent mints only these. The
// Agent's mu guards it.
type wantSet struct {
	max   int
	order *list.List // of string, most recent at the front
	elems map[string]*list.Element
}

func newWantSet(max int) *wantSet {
	return &wantSet{max: max, order: list.New(), elems: map[string]*list.Element{}}
}

// touch marks id as just asked for.
func (w *wantSet) touch(id string) {
	if el, ok := w.elems[id]; ok {
		w.order.MoveToFront(el)
		return
	}
	w.elems[id] = w.order.PushFront(id)
}

func (w *wantSet) has(id string) bool { _, ok := w.elems[id]; return ok }

func (w *wantSet) remove(id string) {
	if el, ok := w.elems[id]; ok {
		w.order.Remove(el)
		delete(w.elems, id)
	}
}

func (w *wantSet) len() int { return len(w.elems) }

// overflow returns the least recently asked IDs beyond max, skipping the
// pinned ones (in use by a connected workload: SPIRE too keeps those
// beyond its bound).
func (w *wantSet) overflow(pinned map[string]bool) []string {
	var out []string
	extra := len(w.elems) - w.max
	for el := w.order.Back(); el != nil && len(out) < extra; el = el.Prev() {
		if id := el.Value.(string); !pinned[id] {
			out = append(out, id)
		}
	}
	return out
}

// demand is the cache's demand function: workloads match entryIDs. Their
// SVIDs are kept (most recent use first) and the session mints the
// missing ones and drops the least recently used beyond the bound. It
// may run inside a publish (the cache calls it from Apply), so it only
// records and signals.
func (a *Agent) demand(entryIDs []string) {
	a.mu.Lock()
	kick := false
	for _, id := range entryIDs {
		if _, ok := a.entries[id]; !ok {
			continue
		}
		a.wanted.touch(id)
		if a.svids[id] == nil {
			kick = true
		}
	}
	if a.wanted.len() > a.wanted.max {
		kick = true
	}
	a.mu.Unlock()
	if kick {
		select {
		case a.mintKick <- struct{}{}:
		default:
		}
	}
}

// evict drops the least recently used SVIDs beyond the bound that no
// connected workload uses. The session goroutine calls it.
func (a *Agent) evict() {
	a.mu.Lock()
	over := a.wanted.len() > a.wanted.max
	a.mu.Unlock()
	if !over {
		return
	}
	pinned := a.cache.SubscribedEntries()
	a.mu.Lock()
	victims := a.wanted.overflow(pinned)
	for _, id := range victims {
		a.wanted.remove(id)
		if a.svids[id] != nil {
			delete(a.svids, id)
			delete(a.svidRev, id)
			a.dirtySVIDs[id] = struct{}{}
		}
	}
	a.mu.Unlock()
	if len(victims) > 0 {
		a.m.svidsEvicted.Add(float64(len(victims)))
		a.publish(false)
	}
}
