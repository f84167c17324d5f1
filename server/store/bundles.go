package store

import (
	"context"
	"fmt"
	"slices"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
)

func (s *Store) bundleKey(td string) string { return s.prefix + bundlesDir + td }

// BundleDeleteMode says what DeleteBundle does with entries that federate
// with the bundle's trust domain (SPIRE's BatchDeleteFederatedBundle
// modes).
type BundleDeleteMode int

const (
	// BundleDeleteRestrict refuses (ErrInUse) while entries federate with
	// the trust domain.
	BundleDeleteRestrict BundleDeleteMode = iota
	// BundleDeleteEntries deletes those entries too.
	BundleDeleteEntries
	// BundleDeleteDissociate removes the trust domain from those entries.
	BundleDeleteDissociate
)

func normalizeBundle(b *types.Bundle) (*types.Bundle, string, error) {
	if b == nil {
		return nil, "", invalidf("missing bundle")
	}
	td, err := spiffeid.TrustDomainFromString(b.TrustDomain)
	if err != nil {
		return nil, "", invalidf("invalid bundle trust domain %q: %v", b.TrustDomain, err)
	}
	out := proto.Clone(b).(*types.Bundle)
	out.TrustDomain = td.Name()
	return out, td.Name(), nil
}

// CreateBundle stores the bundle of a (federated) trust domain;
// ErrAlreadyExists if one exists.
func (s *Store) CreateBundle(ctx context.Context, b *types.Bundle) (*types.Bundle, error) {
	nb, td, err := normalizeBundle(b)
	if err != nil {
		return nil, err
	}
	value, err := encode(nb)
	if err != nil {
		return nil, err
	}
	key := s.bundleKey(td)
	resp, err := s.txn(ctx,
		[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)},
		[]clientv3.Op{clientv3.OpPut(key, value)})
	if err != nil {
		return nil, err
	}
	if !resp.Succeeded {
		return nil, fmt.Errorf("store: bundle %q: %w", td, ErrAlreadyExists)
	}
	return nb, nil
}

// SetBundle creates or replaces the bundle of a trust domain.
func (s *Store) SetBundle(ctx context.Context, b *types.Bundle) (*types.Bundle, error) {
	nb, td, err := normalizeBundle(b)
	if err != nil {
		return nil, err
	}
	value, err := encode(nb)
	if err != nil {
		return nil, err
	}
	if _, err := s.txn(ctx, nil, []clientv3.Op{clientv3.OpPut(s.bundleKey(td), value)}); err != nil {
		return nil, err
	}
	return nb, nil
}

// UpdateBundle reads the bundle of td from etcd, lets update modify a
// copy and writes it back if it has not changed meanwhile, retrying
// otherwise (update must be safe to call more than once). ErrNotFound if
// there is no bundle; the trust domain cannot be changed.
func (s *Store) UpdateBundle(ctx context.Context, td spiffeid.TrustDomain, update func(*types.Bundle) error) (*types.Bundle, error) {
	if td.IsZero() {
		return nil, invalidf("missing trust domain")
	}
	key := s.bundleKey(td.Name())
	for range maxAttempts {
		resp, err := s.cli.Get(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("store: get bundle: %w", err)
		}
		if len(resp.Kvs) == 0 {
			return nil, fmt.Errorf("store: bundle %q: %w", td, ErrNotFound)
		}
		next := new(types.Bundle)
		if err := decode(resp.Kvs[0].Value, next); err != nil {
			return nil, err
		}
		if err := update(next); err != nil {
			return nil, err
		}
		next.TrustDomain = td.Name()
		value, err := encode(next)
		if err != nil {
			return nil, err
		}
		tr, err := s.txn(ctx,
			[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", resp.Kvs[0].ModRevision)},
			[]clientv3.Op{clientv3.OpPut(key, value)})
		if err != nil {
			return nil, err
		}
		if tr.Succeeded {
			return next, nil
		}
	}
	return nil, fmt.Errorf("store: update bundle %q: %w", td, ErrConflict)
}

// GetBundle returns the bundle of td; ErrNotFound if there is none.
func (s *Store) GetBundle(ctx context.Context, td spiffeid.TrustDomain) (*types.Bundle, error) {
	if err := s.readIndex(ctx); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	r, ok := s.idx.bundles[td.Name()]
	if !ok {
		return nil, fmt.Errorf("store: bundle %q: %w", td, ErrNotFound)
	}
	return proto.Clone(r.b).(*types.Bundle), nil
}

// ListBundles returns bundles ordered by trust domain, paginated like
// ListEntries.
func (s *Store) ListBundles(ctx context.Context, pageSize int, pageToken string) (bundles []*types.Bundle, next string, err error) {
	if err := s.readIndex(ctx); err != nil {
		return nil, "", err
	}
	defer s.mu.RUnlock()
	limit := pageSize
	if limit <= 0 {
		limit = len(s.idx.bundles)
	}
	more := false
	var last string
	s.idx.bundleTDs.AscendGreaterOrEqual(pageToken, func(td string) bool {
		if td == pageToken && pageToken != "" {
			return true
		}
		if len(bundles) == limit {
			more = true
			return false
		}
		bundles = append(bundles, proto.Clone(s.idx.bundles[td].b).(*types.Bundle))
		last = td
		return true
	})
	if more && pageSize > 0 {
		next = last
	}
	return bundles, next, nil
}

// CountBundles counts the stored bundles.
func (s *Store) CountBundles(ctx context.Context) (int, error) {
	if err := s.readIndex(ctx); err != nil {
		return 0, err
	}
	defer s.mu.RUnlock()
	return len(s.idx.bundles), nil
}

// DeleteBundle deletes the bundle of td, handling entries that federate
// with td according to mode. ErrNotFound if there is no bundle; with
// BundleDeleteRestrict, ErrInUse while entries federate with td.
func (s *Store) DeleteBundle(ctx context.Context, td spiffeid.TrustDomain, mode BundleDeleteMode) error {
	if td.IsZero() {
		return invalidf("missing trust domain")
	}
	name := td.Name()
	key := s.bundleKey(name)
	entriesPrefix := s.prefix + entriesDir
	for range maxAttempts {
		if err := s.readIndex(ctx); err != nil {
			return err
		}
		rev := s.idx.rev
		var users []string
		for id, r := range s.idx.entries {
			if slices.Contains(r.feds, name) {
				users = append(users, id)
			}
		}
		s.mu.RUnlock()

		if len(users) > 0 {
			switch mode {
			case BundleDeleteEntries:
				for _, id := range users {
					if err := s.DeleteEntry(ctx, id); err != nil && !isNotFound(err) {
						return err
					}
				}
			case BundleDeleteDissociate:
				for _, id := range users {
					_, err := s.updateEntryWith(ctx, id, func(e *types.Entry) {
						e.FederatesWith = slices.DeleteFunc(e.FederatesWith, func(f string) bool { return f == name })
					})
					if err != nil && !isNotFound(err) {
						return err
					}
				}
			default:
				return fmt.Errorf("store: bundle %q is federated with by %d entries: %w", td, len(users), ErrInUse)
			}
			continue // re-check against the updated index
		}

		// No entry federated with td at rev; delete only if no entry has
		// been written since (entry writes compare the bundle's presence,
		// so the two cannot interleave).
		resp, err := s.txn(ctx,
			[]clientv3.Cmp{
				clientv3.Compare(clientv3.ModRevision(entriesPrefix), "<", rev+1).WithPrefix(),
				clientv3.Compare(clientv3.CreateRevision(key), ">", 0),
			},
			[]clientv3.Op{clientv3.OpDelete(key)},
			clientv3.OpGet(key, clientv3.WithCountOnly()))
		if err != nil {
			return err
		}
		if resp.Succeeded {
			return nil
		}
		if resp.Responses[0].GetResponseRange().Count == 0 {
			return fmt.Errorf("store: bundle %q: %w", td, ErrNotFound)
		}
		if err := s.Sync(ctx); err != nil {
			return err
		}
	}
	return fmt.Errorf("store: delete bundle %q: %w", td, ErrConflict)
}
