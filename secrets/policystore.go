package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Errors of the PolicyStore, for errors.Is.
var (
	ErrPolicyNotFound = errors.New("secrets: policy not found")
	ErrPolicyExists   = errors.New("secrets: policy already exists")
	// ErrConflict: the policy changed between read and write.
	ErrConflict = errors.New("secrets: policy changed concurrently")
)

const (
	policiesDir   = "secretpolicies/"
	policyVersion = 1
	// maxPolicies bounds one List.
	maxPolicies = 10000
)

// PolicyStore keeps secret policies in etcd under
// /signet/<trust-domain>/secretpolicies/<id>, as JSON {"v":1,"policy":...}.
// Creates require the key to be absent (CreateRevision 0) and deletes the
// ModRevision that was read, so concurrent replicas never lose updates.
type PolicyStore struct {
	cli    *clientv3.Client
	prefix string
}

// PolicyStoreOption configures a PolicyStore.
type PolicyStoreOption func(*PolicyStore)

// WithPolicyPrefix sets the etcd key prefix of the policies (default
// /signet/<trust-domain>/secretpolicies/; the server passes its key
// layout's).
func WithPolicyPrefix(p string) PolicyStoreOption {
	return func(s *PolicyStore) {
		if !strings.HasSuffix(p, "/") {
			p += "/"
		}
		s.prefix = p
	}
}

// NewPolicyStore returns the policy store of trust domain td.
func NewPolicyStore(cli *clientv3.Client, td spiffeid.TrustDomain, opts ...PolicyStoreOption) (*PolicyStore, error) {
	if cli == nil {
		return nil, errors.New("secrets: etcd client is required")
	}
	if td.IsZero() {
		return nil, errors.New("secrets: trust domain is required")
	}
	s := &PolicyStore{cli: cli, prefix: "/signet/" + td.Name() + "/" + policiesDir}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

type storedPolicy struct {
	V      int    `json:"v"`
	Policy Policy `json:"policy"`
}

func (s *PolicyStore) key(id string) string { return s.prefix + id }

func decodePolicy(value []byte, modRev int64) (Policy, error) {
	var sp storedPolicy
	if err := json.Unmarshal(value, &sp); err != nil {
		return Policy{}, fmt.Errorf("secrets: decode policy: %w", err)
	}
	if sp.V != policyVersion {
		return Policy{}, fmt.Errorf("secrets: unsupported policy record version %d", sp.V)
	}
	sp.Policy.Revision = modRev
	return sp.Policy, nil
}

// Create stores a new policy.
func (s *PolicyStore) Create(ctx context.Context, p Policy) (Policy, error) {
	if err := p.Validate(); err != nil {
		return Policy{}, err
	}
	p.Revision = 0
	b, err := json.Marshal(storedPolicy{V: policyVersion, Policy: p})
	if err != nil {
		return Policy{}, fmt.Errorf("secrets: encode policy: %w", err)
	}
	k := s.key(p.ID)
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, string(b))).
		Commit()
	if err != nil {
		return Policy{}, fmt.Errorf("secrets: create policy %q: %w", p.ID, err)
	}
	if !resp.Succeeded {
		return Policy{}, fmt.Errorf("secrets: create policy %q: %w", p.ID, ErrPolicyExists)
	}
	p.Revision = resp.Header.Revision
	return p, nil
}

// Get returns the policy id.
func (s *PolicyStore) Get(ctx context.Context, id string) (Policy, error) {
	resp, err := s.cli.Get(ctx, s.key(id))
	if err != nil {
		return Policy{}, fmt.Errorf("secrets: get policy %q: %w", id, err)
	}
	if len(resp.Kvs) == 0 {
		return Policy{}, fmt.Errorf("secrets: policy %q: %w", id, ErrPolicyNotFound)
	}
	return decodePolicy(resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
}

// List returns every policy, ordered by ID.
func (s *PolicyStore) List(ctx context.Context) ([]Policy, error) {
	resp, err := s.cli.Get(ctx, s.prefix, clientv3.WithPrefix(), clientv3.WithLimit(maxPolicies),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("secrets: list policies: %w", err)
	}
	out := make([]Policy, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		p, err := decodePolicy(kv.Value, kv.ModRevision)
		if err != nil {
			return nil, fmt.Errorf("secrets: policy %q: %w", strings.TrimPrefix(string(kv.Key), s.prefix), err)
		}
		out = append(out, p)
	}
	return out, nil
}

// Delete removes the policy id. If revision is not zero, the policy must
// still be at that revision (else ErrConflict).
func (s *PolicyStore) Delete(ctx context.Context, id string, revision int64) error {
	k := s.key(id)
	cmp := clientv3.Compare(clientv3.CreateRevision(k), ">", 0)
	if revision != 0 {
		cmp = clientv3.Compare(clientv3.ModRevision(k), "=", revision)
	}
	resp, err := s.cli.Txn(ctx).If(cmp).Then(clientv3.OpDelete(k)).Else(clientv3.OpGet(k, clientv3.WithCountOnly())).Commit()
	if err != nil {
		return fmt.Errorf("secrets: delete policy %q: %w", id, err)
	}
	if !resp.Succeeded {
		if revision != 0 && resp.Responses[0].GetResponseRange().Count > 0 {
			return fmt.Errorf("secrets: delete policy %q: %w", id, ErrConflict)
		}
		return fmt.Errorf("secrets: delete policy %q: %w", id, ErrPolicyNotFound)
	}
	return nil
}

// PolicyEvent is a change to a policy seen by Watch.
type PolicyEvent struct {
	ID      string
	Deleted bool
	// Policy is the new policy (zero when Deleted).
	Policy Policy
}

// Watch sends policy changes after the current revision until ctx is
// done, re-establishing the etcd watch when it fails. After a compaction
// it lists the policies again and reports every listed policy (as
// changed) and every previously known one that disappeared (as deleted).
// The channel is closed when ctx is done.
func (s *PolicyStore) Watch(ctx context.Context) (<-chan PolicyEvent, error) {
	cur, rev, err := s.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	ch := make(chan PolicyEvent, 16)
	go func() {
		defer close(ch)
		send := func(ev PolicyEvent) bool {
			select {
			case ch <- ev:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for ctx.Err() == nil {
			wch := s.cli.Watch(clientv3.WithRequireLeader(ctx), s.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
			relist := false
			for resp := range wch {
				if resp.CompactRevision != 0 {
					relist = true
					break
				}
				if resp.Err() != nil {
					break
				}
				for _, ev := range resp.Events {
					id := strings.TrimPrefix(string(ev.Kv.Key), s.prefix)
					rev = ev.Kv.ModRevision
					if ev.Type == clientv3.EventTypeDelete {
						delete(cur, id)
						if !send(PolicyEvent{ID: id, Deleted: true}) {
							return
						}
						continue
					}
					p, err := decodePolicy(ev.Kv.Value, ev.Kv.ModRevision)
					if err != nil {
						continue
					}
					cur[id] = true
					if !send(PolicyEvent{ID: id, Policy: p}) {
						return
					}
				}
			}
			if !relist {
				select {
				case <-ctx.Done():
					return
				case <-time.After(500 * time.Millisecond):
				}
				continue
			}
			fresh, newRev, err := s.snapshot(ctx)
			if err != nil {
				continue
			}
			for id := range cur {
				if !fresh[id] && !send(PolicyEvent{ID: id, Deleted: true}) {
					return
				}
			}
			ps, _ := s.List(ctx)
			for _, p := range ps {
				if !send(PolicyEvent{ID: p.ID, Policy: p}) {
					return
				}
			}
			cur, rev = fresh, newRev
		}
	}()
	return ch, nil
}

func (s *PolicyStore) snapshot(ctx context.Context) (map[string]bool, int64, error) {
	resp, err := s.cli.Get(ctx, s.prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithLimit(maxPolicies))
	if err != nil {
		return nil, 0, fmt.Errorf("secrets: list policies: %w", err)
	}
	ids := make(map[string]bool, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		ids[strings.TrimPrefix(string(kv.Key), s.prefix)] = true
	}
	return ids, resp.Header.Revision, nil
}
