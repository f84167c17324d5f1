package store

import (
	"maps"
	"slices"
)

// Event says what changed in the store. Events are coalesced for slow
// subscribers: one Event may describe several etcd revisions.
type Event struct {
	// Revision is the etcd revision the index reflects after the change.
	Revision int64
	// Resync is set when the index was rebuilt from a fresh list (after
	// the watch was compacted); the other fields then describe the
	// differences found, but consumers may prefer to refresh everything.
	Resync bool
	// EntryParentIDs are the parent IDs (before and after) of the entries
	// that were created, updated or deleted.
	EntryParentIDs []string
	// AffectedAgents are the SPIFFE IDs of the agents whose authorized
	// entries may have changed: agents owning a changed entry directly,
	// through ancestors, or through a node alias, and agents whose own
	// record changed.
	AffectedAgents []string
	// Agents are the SPIFFE IDs of agent records that changed.
	Agents []string
	// Bundles are the trust domains of federated bundles that changed.
	Bundles []string
}

func (e Event) merge(o Event) Event {
	return Event{
		Revision:       max(e.Revision, o.Revision),
		Resync:         e.Resync || o.Resync,
		EntryParentIDs: union(e.EntryParentIDs, o.EntryParentIDs),
		AffectedAgents: union(e.AffectedAgents, o.AffectedAgents),
		Agents:         union(e.Agents, o.Agents),
		Bundles:        union(e.Bundles, o.Bundles),
	}
}

func union(a, b []string) []string {
	if len(b) == 0 {
		return a
	}
	if len(a) == 0 {
		return b
	}
	set := make(map[string]struct{}, len(a)+len(b))
	for _, s := range a {
		set[s] = struct{}{}
	}
	for _, s := range b {
		set[s] = struct{}{}
	}
	return slices.Sorted(maps.Keys(set))
}

type subscriber struct {
	ch chan Event
}

// Subscribe returns a channel of change events and a function that cancels
// the subscription (and closes the channel). Delivery never blocks the
// store: if the subscriber has not taken the previous event yet, the new
// one is merged into it. The channel is also closed by Close.
func (s *Store) Subscribe() (<-chan Event, func()) {
	sub := &subscriber{ch: make(chan Event, 1)}
	s.subsMu.Lock()
	s.subs[sub] = struct{}{}
	s.subsMu.Unlock()
	cancel := func() {
		s.subsMu.Lock()
		defer s.subsMu.Unlock()
		if _, ok := s.subs[sub]; ok {
			delete(s.subs, sub)
			close(sub.ch)
		}
	}
	return sub.ch, cancel
}

// publish delivers ev to every subscriber without blocking. Publishers
// hold s.mu (so there is one at a time) and subsMu, and subscribers only
// receive, so after draining a full channel the send below has room.
func (s *Store) publish(ev Event) {
	s.subsMu.Lock()
	defer s.subsMu.Unlock()
	for sub := range s.subs {
		select {
		case sub.ch <- ev:
			continue
		default:
		}
		merged := ev
		select {
		case old := <-sub.ch:
			merged = old.merge(ev)
		default:
		}
		sub.ch <- merged
	}
}
