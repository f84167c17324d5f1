package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/signet-id/signet/server/keyspace"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
)

// Federation relationships are few and read rarely (the API, the bundle
// refresher's reload), so they are read from etcd directly rather than
// kept in the index. The relationship record holds the endpoint and its
// profile; its trust domain bundle is the federated bundle under
// BundlesDir, as in SPIRE, so that creating a relationship with a bundle
// sets that bundle and deleting it keeps the bundle.

func (s *Store) relationshipKey(td string) string { return s.prefix + keyspace.FederationDir + td }

func normalizeRelationship(fr *types.FederationRelationship) (rec, bundle proto.Message, td string, err error) {
	if fr == nil {
		return nil, nil, "", invalidf("missing federation relationship")
	}
	t, err := spiffeid.TrustDomainFromString(fr.TrustDomain)
	if err != nil {
		return nil, nil, "", invalidf("invalid federation relationship trust domain %q: %v", fr.TrustDomain, err)
	}
	r := proto.Clone(fr).(*types.FederationRelationship)
	r.TrustDomain = t.Name()
	var b *types.Bundle
	if r.TrustDomainBundle != nil {
		b = r.TrustDomainBundle
		if b.TrustDomain != t.Name() {
			return nil, nil, "", invalidf("trust domain bundle %q does not match relationship trust domain %q", b.TrustDomain, t.Name())
		}
	}
	r.TrustDomainBundle = nil
	if b == nil {
		return r, nil, t.Name(), nil
	}
	return r, b, t.Name(), nil
}

// CreateRelationship stores a federation relationship and, when it
// carries one, sets its trust domain bundle in the same transaction.
// ErrAlreadyExists if a relationship with the trust domain exists.
func (s *Store) CreateRelationship(ctx context.Context, fr *types.FederationRelationship) (*types.FederationRelationship, error) {
	rec, b, td, err := normalizeRelationship(fr)
	if err != nil {
		return nil, err
	}
	value, err := encode(rec)
	if err != nil {
		return nil, err
	}
	key := s.relationshipKey(td)
	ops := []clientv3.Op{clientv3.OpPut(key, value)}
	if b != nil {
		bv, err := encode(b)
		if err != nil {
			return nil, err
		}
		ops = append(ops, clientv3.OpPut(s.bundleKey(td), bv))
	}
	resp, err := s.txn(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)}, ops)
	if err != nil {
		return nil, err
	}
	if !resp.Succeeded {
		return nil, fmt.Errorf("store: federation relationship %q: %w", td, ErrAlreadyExists)
	}
	return s.withBundle(ctx, rec.(*types.FederationRelationship))
}

// UpdateRelationship reads the relationship of td, lets update modify a
// copy (it may set TrustDomainBundle to replace the bundle too) and
// writes it back if it has not changed meanwhile, retrying otherwise.
// ErrNotFound if there is none; the trust domain cannot be changed.
func (s *Store) UpdateRelationship(ctx context.Context, td spiffeid.TrustDomain, update func(*types.FederationRelationship) error) (*types.FederationRelationship, error) {
	if td.IsZero() {
		return nil, invalidf("missing trust domain")
	}
	key := s.relationshipKey(td.Name())
	for range maxAttempts {
		resp, err := s.cli.Get(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("store: get federation relationship: %w", err)
		}
		if len(resp.Kvs) == 0 {
			return nil, fmt.Errorf("store: federation relationship %q: %w", td, ErrNotFound)
		}
		next := new(types.FederationRelationship)
		if err := decode(resp.Kvs[0].Value, next); err != nil {
			return nil, err
		}
		if err := update(next); err != nil {
			return nil, err
		}
		next.TrustDomain = td.Name()
		rec, b, _, err := normalizeRelationship(next)
		if err != nil {
			return nil, err
		}
		value, err := encode(rec)
		if err != nil {
			return nil, err
		}
		ops := []clientv3.Op{clientv3.OpPut(key, value)}
		if b != nil {
			bv, err := encode(b)
			if err != nil {
				return nil, err
			}
			ops = append(ops, clientv3.OpPut(s.bundleKey(td.Name()), bv))
		}
		tr, err := s.txn(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", resp.Kvs[0].ModRevision)}, ops)
		if err != nil {
			return nil, err
		}
		if tr.Succeeded {
			return s.withBundle(ctx, rec.(*types.FederationRelationship))
		}
	}
	return nil, fmt.Errorf("store: update federation relationship %q: %w", td, ErrConflict)
}

// GetRelationship returns the relationship of td with its trust domain
// bundle, if one is stored; ErrNotFound if there is none.
func (s *Store) GetRelationship(ctx context.Context, td spiffeid.TrustDomain) (*types.FederationRelationship, error) {
	resp, err := s.cli.Get(ctx, s.relationshipKey(td.Name()))
	if err != nil {
		return nil, fmt.Errorf("store: get federation relationship: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("store: federation relationship %q: %w", td, ErrNotFound)
	}
	fr := new(types.FederationRelationship)
	if err := decode(resp.Kvs[0].Value, fr); err != nil {
		return nil, err
	}
	return s.withBundle(ctx, fr)
}

// ListRelationships returns relationships ordered by trust domain with
// their bundles, pageSize at a time (all when pageSize <= 0); next is the
// token of the following page, "" after the last.
func (s *Store) ListRelationships(ctx context.Context, pageSize int, pageToken string) (out []*types.FederationRelationship, next string, err error) {
	dir := s.prefix + keyspace.FederationDir
	from := dir
	if pageToken != "" {
		if strings.ContainsAny(pageToken, "/\x00") {
			return nil, "", invalidf("malformed page token %q", pageToken)
		}
		from = dir + pageToken + "\x00"
	}
	opts := []clientv3.OpOption{clientv3.WithRange(clientv3.GetPrefixRangeEnd(dir)), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)}
	if pageSize > 0 {
		opts = append(opts, clientv3.WithLimit(int64(pageSize)))
	}
	resp, err := s.cli.Get(ctx, from, opts...)
	if err != nil {
		return nil, "", fmt.Errorf("store: list federation relationships: %w", err)
	}
	for _, kv := range resp.Kvs {
		fr := new(types.FederationRelationship)
		if err := decode(kv.Value, fr); err != nil {
			s.log.Error("store: skipping undecodable federation relationship", "key", string(kv.Key), "error", err)
			continue
		}
		if fr, err = s.withBundle(ctx, fr); err != nil {
			return nil, "", err
		}
		out = append(out, fr)
	}
	if pageSize > 0 && resp.More && len(resp.Kvs) > 0 {
		next = strings.TrimPrefix(string(resp.Kvs[len(resp.Kvs)-1].Key), dir)
	}
	return out, next, nil
}

// DeleteRelationship deletes the relationship of td and keeps its bundle
// (as SPIRE does); ErrNotFound if there is none.
func (s *Store) DeleteRelationship(ctx context.Context, td spiffeid.TrustDomain) error {
	key := s.relationshipKey(td.Name())
	resp, err := s.txn(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), ">", 0)}, []clientv3.Op{clientv3.OpDelete(key)})
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		return fmt.Errorf("store: federation relationship %q: %w", td, ErrNotFound)
	}
	return nil
}

func (s *Store) withBundle(ctx context.Context, fr *types.FederationRelationship) (*types.FederationRelationship, error) {
	td, err := spiffeid.TrustDomainFromString(fr.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("store: federation relationship record %q: %w", fr.TrustDomain, err)
	}
	b, err := s.GetBundle(ctx, td)
	switch {
	case err == nil:
		fr.TrustDomainBundle = b
	case isNotFound(err):
	default:
		return nil, err
	}
	return fr, nil
}
