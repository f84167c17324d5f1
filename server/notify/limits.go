package notify

import (
	"slices"

	notifyv1 "github.com/signet-id/signet/proto/signet/notify/v1"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// MaxPendingEntryIDs bounds the entry IDs of a RENEW_NOW waiting for an
// agent; beyond it the notification collapses to "renew all".
const MaxPendingEntryIDs = 1000

// add makes w its agent's watcher, ending the agent's previous Watch: an
// agent holds one push stream, so a flood of Watch calls costs one.
func (h *Hub) add(w *watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if old := h.byAgent[w.agent]; old != nil {
		close(old.replaced)
	}
	h.byAgent[w.agent] = w
	h.watchers[w] = struct{}{}
}

func (h *Hub) remove(w *watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.watchers, w)
	if h.byAgent[w.agent] == w {
		delete(h.byAgent, w.agent)
	}
}

func errReplaced(agent spiffeid.ID) error {
	return status.Errorf(codes.ResourceExhausted, "notify: Watch of agent %s replaced by a newer one (limit: one Watch per agent)", agent)
}

// mergeEntryIDs returns the entry IDs of a RENEW_NOW queued after prev (if
// hadPrev): nil (renew all) if either is "all" or the union exceeds
// MaxPendingEntryIDs, otherwise the union without duplicates.
func mergeEntryIDs(prev *notifyv1.Notification, hadPrev bool, ids []string) []string {
	var out []string
	if hadPrev {
		if len(prev.EntryIds) == 0 {
			return nil
		}
		out = slices.Clone(prev.EntryIds)
	}
	if len(ids) == 0 {
		return nil
	}
	seen := make(map[string]bool, len(out)+len(ids))
	for _, id := range out {
		seen[id] = true
	}
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		out = append(out, id)
		if len(out) > MaxPendingEntryIDs {
			return nil
		}
	}
	return out
}
