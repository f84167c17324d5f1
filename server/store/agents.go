package store

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
)

func (s *Store) agentKey(id string) string { return s.prefix + agentsDir + id }

func (s *Store) checkAgentID(id spiffeid.ID) error {
	if id.IsZero() {
		return invalidf("missing agent ID")
	}
	if !id.MemberOf(s.td) {
		return invalidf("agent ID %q is not a member of trust domain %q", id, s.td)
	}
	if id.Path() == "" {
		return invalidf("agent ID %q has an empty path", id)
	}
	return nil
}

// normalizeAgent validates a and returns a copy with a canonical ID.
func (s *Store) normalizeAgent(a *types.Agent) (*types.Agent, spiffeid.ID, error) {
	if a == nil {
		return nil, spiffeid.ID{}, invalidf("missing agent")
	}
	pid, err := s.normalizeID("agent ID", a.Id)
	if err != nil {
		return nil, spiffeid.ID{}, err
	}
	id, err := spiffeid.FromPath(s.td, pid.Path)
	if err != nil {
		return nil, spiffeid.ID{}, invalidf("invalid agent ID: %v", err)
	}
	out := proto.Clone(a).(*types.Agent)
	out.Id = pid
	return out, id, nil
}

// CreateAgent stores a new agent record keyed by its SPIFFE ID;
// ErrAlreadyExists if one exists.
func (s *Store) CreateAgent(ctx context.Context, a *types.Agent) (*types.Agent, error) {
	na, id, err := s.normalizeAgent(a)
	if err != nil {
		return nil, err
	}
	value, err := encode(na)
	if err != nil {
		return nil, err
	}
	key := s.agentKey(id.String())
	resp, err := s.txn(ctx,
		[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)},
		[]clientv3.Op{clientv3.OpPut(key, value)})
	if err != nil {
		return nil, err
	}
	if !resp.Succeeded {
		return nil, fmt.Errorf("store: agent %q: %w", id, ErrAlreadyExists)
	}
	return na, nil
}

// GetAgent returns an agent record; ErrNotFound if there is none.
func (s *Store) GetAgent(ctx context.Context, id spiffeid.ID) (*types.Agent, error) {
	if err := s.readIndex(ctx); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	r, ok := s.idx.agents[id.String()]
	if !ok {
		return nil, fmt.Errorf("store: agent %q: %w", id, ErrNotFound)
	}
	return proto.Clone(r.a).(*types.Agent), nil
}

// fetchAgent reads an agent record directly from etcd.
func (s *Store) fetchAgent(ctx context.Context, id spiffeid.ID) (*types.Agent, int64, error) {
	resp, err := s.cli.Get(ctx, s.agentKey(id.String()))
	if err != nil {
		return nil, 0, fmt.Errorf("store: get agent: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, fmt.Errorf("store: agent %q: %w", id, ErrNotFound)
	}
	a := new(types.Agent)
	if err := decode(resp.Kvs[0].Value, a); err != nil {
		return nil, 0, err
	}
	return a, resp.Kvs[0].ModRevision, nil
}

// UpdateAgent reads the agent's current record from etcd, lets update
// modify a copy, and writes it back if the record has not changed since it
// was read (ModRevision compare). When it has, the read and update are
// repeated, so update must be safe to call more than once; if update
// returns an error, UpdateAgent returns it without writing. ErrNotFound if
// the agent does not exist; the agent's ID cannot be changed.
func (s *Store) UpdateAgent(ctx context.Context, id spiffeid.ID, update func(*types.Agent) error) (*types.Agent, error) {
	if err := s.checkAgentID(id); err != nil {
		return nil, err
	}
	key := s.agentKey(id.String())
	for range maxAttempts {
		cur, modRev, err := s.fetchAgent(ctx, id)
		if err != nil {
			return nil, err
		}
		next := proto.Clone(cur).(*types.Agent)
		if err := update(next); err != nil {
			return nil, err
		}
		next.Id = cur.Id
		value, err := encode(next)
		if err != nil {
			return nil, err
		}
		resp, err := s.txn(ctx,
			[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", modRev)},
			[]clientv3.Op{clientv3.OpPut(key, value)})
		if err != nil {
			return nil, err
		}
		if resp.Succeeded {
			return next, nil
		}
	}
	return nil, fmt.Errorf("store: update agent %q: %w", id, ErrConflict)
}

// DeleteAgent deletes an agent record; ErrNotFound if there is none.
func (s *Store) DeleteAgent(ctx context.Context, id spiffeid.ID) error {
	if err := s.checkAgentID(id); err != nil {
		return err
	}
	key := s.agentKey(id.String())
	resp, err := s.txn(ctx,
		[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), ">", 0)},
		[]clientv3.Op{clientv3.OpDelete(key)})
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		return fmt.Errorf("store: agent %q: %w", id, ErrNotFound)
	}
	return nil
}

// ListAgents returns the agents matching f ordered by SPIFFE ID, paginated
// like ListEntries.
func (s *Store) ListAgents(ctx context.Context, f AgentFilter, pageSize int, pageToken string) (agents []*types.Agent, next string, err error) {
	if err := s.readIndex(ctx); err != nil {
		return nil, "", err
	}
	defer s.mu.RUnlock()
	limit := pageSize
	if limit <= 0 {
		limit = len(s.idx.agents)
	}
	more := false
	var last string
	if f.BySelectors != nil && len(f.BySelectors.Selectors) > 0 && f.BySelectors.Match != MatchAny && f.BySelectors.Match != MatchSubset {
		// Narrow by the first filter selector: every match has it.
		var recs []*agentRec
		for id, r := range s.idx.agentsBySelector[selKeys(f.BySelectors.Selectors)[0]] {
			if (pageToken == "" || id > pageToken) && f.matches(r) {
				recs = append(recs, r)
			}
		}
		slices.SortFunc(recs, func(a, b *agentRec) int { return strings.Compare(a.id, b.id) })
		if len(recs) > limit {
			recs, more = recs[:limit], true
		}
		for _, r := range recs {
			agents = append(agents, proto.Clone(r.a).(*types.Agent))
			last = r.id
		}
	} else {
		s.idx.agentIDs.AscendGreaterOrEqual(pageToken, func(id string) bool {
			if id == pageToken && pageToken != "" {
				return true
			}
			r := s.idx.agents[id]
			if !f.matches(r) {
				return true
			}
			if len(agents) == limit {
				more = true
				return false
			}
			agents = append(agents, proto.Clone(r.a).(*types.Agent))
			last = id
			return true
		})
	}
	if more && pageSize > 0 {
		next = last
	}
	return agents, next, nil
}

// CountAgents counts the agents matching f.
func (s *Store) CountAgents(ctx context.Context, f AgentFilter) (int, error) {
	if err := s.readIndex(ctx); err != nil {
		return 0, err
	}
	defer s.mu.RUnlock()
	n := 0
	for _, r := range s.idx.agents {
		if f.matches(r) {
			n++
		}
	}
	return n, nil
}
