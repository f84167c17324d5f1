package store

import (
	"context"
	"strings"

	"github.com/signet-id/signet/spireid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// AuthorizedEntries returns the entries an agent may obtain SVIDs for,
// with SPIRE's semantics: entries whose parent is the agent's ID; for every
// node-alias entry (parent = the server ID) whose selectors are all among
// agentSelectors, entries whose parent is the alias's SPIFFE ID; and,
// recursively, entries whose parent is the SPIFFE ID of an entry already
// authorized. Like SPIRE v1.13, the node-alias entries themselves are not
// returned. The order is unspecified.
func (s *Store) AuthorizedEntries(ctx context.Context, agentID spiffeid.ID, agentSelectors []*types.Selector) ([]*types.Entry, error) {
	if err := s.readIndex(ctx); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()

	x := s.idx
	var out []*types.Entry
	seen := make(map[string]struct{})
	stack := []string{agentID.String()}
	for _, alias := range s.aliasesFor(x, selKeys(agentSelectors)) {
		stack = append(stack, alias.spiffeID)
	}
	for len(stack) > 0 {
		parent := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if _, ok := seen[parent]; ok || parent == s.serverID {
			continue
		}
		seen[parent] = struct{}{}
		for _, r := range x.byParent[parent] {
			out = append(out, cloneEntry(r.e))
			stack = append(stack, r.spiffeID)
		}
	}
	return out, nil
}

// aliasesFor returns the node-alias entries whose selectors are all in
// agentSels.
func (s *Store) aliasesFor(x *index, agentSels []selKey) []*entryRec {
	have := make(map[selKey]struct{}, len(agentSels))
	for _, k := range agentSels {
		have[k] = struct{}{}
	}
	var out []*entryRec
	checked := make(map[string]struct{})
	for _, k := range agentSels {
		for id, r := range x.aliasesBySelector[k] {
			if _, ok := checked[id]; ok {
				continue
			}
			checked[id] = struct{}{}
			if containsAll(have, r.sels) {
				out = append(out, r)
			}
		}
	}
	return out
}

func containsAll(have map[selKey]struct{}, want []selKey) bool {
	for _, k := range want {
		if _, ok := have[k]; !ok {
			return false
		}
	}
	return true
}

// agentsMatching adds to out the agents whose selectors include all of
// sels (the agents a node alias with selectors sels applies to).
func (s *Store) agentsMatching(x *index, sels []selKey, out map[string]struct{}) {
	if len(sels) == 0 {
		return
	}
	smallest := x.agentsBySelector[sels[0]]
	for _, k := range sels[1:] {
		if c := x.agentsBySelector[k]; len(c) < len(smallest) {
			smallest = c
		}
	}
	for id, a := range smallest {
		have := make(map[selKey]struct{}, len(a.sels))
		for _, k := range a.sels {
			have[k] = struct{}{}
		}
		if containsAll(have, sels) {
			out[id] = struct{}{}
		}
	}
}

// ancestorAgents adds to out the agents for which entries parented to
// parentID are authorized: parentID itself if it names an agent, the
// agents of node aliases with that SPIFFE ID, and, recursively, the agents
// authorized for entries whose SPIFFE ID is parentID.
func (s *Store) ancestorAgents(x *index, parentID string, seen, out map[string]struct{}) {
	agentPrefix := "spiffe://" + s.td.Name() + spireid.AgentPrefix
	stack := []string{parentID}
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if _, ok := seen[p]; ok || p == s.serverID {
			continue
		}
		seen[p] = struct{}{}
		if _, ok := x.agents[p]; ok || strings.HasPrefix(p, agentPrefix) {
			out[p] = struct{}{}
		}
		for _, r := range x.bySpiffe[p] {
			if r.parentID == s.serverID {
				s.agentsMatching(x, r.sels, out)
			} else {
				stack = append(stack, r.parentID)
			}
		}
	}
}
