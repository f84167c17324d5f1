package store

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/uuid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	clientv3 "go.etcd.io/etcd/client/v3"
)

const (
	maxEntryIDLength = 255
	maxHintLength    = 1024
)

func (s *Store) entryKey(id string) string   { return s.prefix + entriesDir + id }
func (s *Store) entrySimKey(h string) string { return s.prefix + entryKeysDir + h }

// similarityHash identifies SPIRE's "similar entry" triple: the same
// spiffe_id, parent_id and selector set.
func similarityHash(e *types.Entry) string {
	sels := make([]string, 0, len(e.Selectors))
	for _, k := range selKeys(e.Selectors) {
		sels = append(sels, k.Type+"\x00"+k.Value)
	}
	slices.Sort(sels)
	h := sha256.New()
	write := func(s string) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	write(protoIDString(e.SpiffeId))
	write(protoIDString(e.ParentId))
	for _, s := range sels {
		write(s)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf("store: "+format+": %w", append(args, ErrInvalid)...)
}

// normalizeID parses a SPIFFE ID message, requires it to be a member of
// the store's trust domain with a non-empty path, and returns its
// canonical form.
func (s *Store) normalizeID(field string, id *types.SPIFFEID) (*types.SPIFFEID, error) {
	if id == nil {
		return nil, invalidf("missing %s", field)
	}
	td, err := spiffeid.TrustDomainFromString(id.TrustDomain)
	if err != nil {
		return nil, invalidf("invalid %s: %v", field, err)
	}
	parsed, err := spiffeid.FromPath(td, id.Path)
	if err != nil {
		return nil, invalidf("invalid %s: %v", field, err)
	}
	if !parsed.MemberOf(s.td) {
		return nil, invalidf("invalid %s: %q is not a member of trust domain %q", field, parsed, s.td)
	}
	if parsed.Path() == "" {
		return nil, invalidf("invalid %s: %q has an empty path", field, parsed)
	}
	return &types.SPIFFEID{TrustDomain: parsed.TrustDomain().Name(), Path: parsed.Path()}, nil
}

// normalizeEntry validates e and returns a canonical copy.
func (s *Store) normalizeEntry(e *types.Entry) (*types.Entry, error) {
	if e == nil {
		return nil, invalidf("missing entry")
	}
	if len(e.Id) > maxEntryIDLength {
		return nil, invalidf("entry ID too long")
	}
	for _, r := range e.Id {
		if !validEntryIDRune(r) {
			return nil, invalidf("entry ID contains invalid characters")
		}
	}
	if err := checkEntryLimits(e); err != nil {
		return nil, err
	}
	out := cloneEntry(e)
	var err error
	if out.SpiffeId, err = s.normalizeID("spiffe_id", e.SpiffeId); err != nil {
		return nil, err
	}
	if out.ParentId, err = s.normalizeID("parent_id", e.ParentId); err != nil {
		return nil, err
	}
	if len(e.Selectors) == 0 {
		return nil, invalidf("missing selectors")
	}
	for _, sel := range e.Selectors {
		switch {
		case sel.GetType() == "":
			return nil, invalidf("missing selector type")
		case strings.Contains(sel.Type, ":"):
			return nil, invalidf("selector type contains ':'")
		case sel.Value == "":
			return nil, invalidf("missing selector value")
		}
	}
	if e.StoreSvid {
		for _, sel := range e.Selectors[1:] {
			if sel.Type != e.Selectors[0].Type {
				return nil, invalidf("selector types must be the same when store SVID is enabled")
			}
		}
	}
	if e.X509SvidTtl < 0 {
		return nil, invalidf("x509_svid_ttl must not be negative")
	}
	if e.JwtSvidTtl < 0 {
		return nil, invalidf("jwt_svid_ttl must not be negative")
	}
	if len(e.Hint) > maxHintLength {
		return nil, invalidf("hint is too long, max length is %d characters", maxHintLength)
	}
	out.FederatesWith = out.FederatesWith[:0]
	for _, name := range e.FederatesWith {
		td, err := spiffeid.TrustDomainFromString(name)
		if err != nil {
			return nil, invalidf("invalid federated trust domain %q: %v", name, err)
		}
		if !slices.Contains(out.FederatesWith, td.Name()) {
			out.FederatesWith = append(out.FederatesWith, td.Name())
		}
	}
	if len(out.FederatesWith) == 0 {
		out.FederatesWith = nil
	}
	return out, nil
}

func validEntryIDRune(r rune) bool {
	return r == '-' || r == '.' || r == '_' ||
		('0' <= r && r <= '9') || ('A' <= r && r <= 'Z') || ('a' <= r && r <= 'z')
}

func (s *Store) newEntryID() (string, error) {
	s.randMu.Lock()
	defer s.randMu.Unlock()
	u, err := uuid.NewRandomFromReader(s.rand)
	if err != nil {
		return "", fmt.Errorf("store: generate entry ID: %w", err)
	}
	return u.String(), nil
}

// bundleCmps requires every federated trust domain to have a bundle.
func (s *Store) bundleCmps(tds []string) ([]clientv3.Cmp, []clientv3.Op) {
	cmps := make([]clientv3.Cmp, 0, len(tds))
	gets := make([]clientv3.Op, 0, len(tds))
	for _, td := range tds {
		k := s.bundleKey(td)
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(k), ">", 0))
		gets = append(gets, clientv3.OpGet(k, clientv3.WithCountOnly()))
	}
	return cmps, gets
}

func missingBundle(tds []string, offset int, resp *clientv3.TxnResponse) error {
	for i, td := range tds {
		if resp.Responses[offset+i].GetResponseRange().Count == 0 {
			return invalidf("unable to find federated bundle %q", td)
		}
	}
	return nil
}

// CreateEntry stores a new entry. An empty ID is replaced by a random
// UUID; created_at is set from the clock and revision_number to 0.
//
// If a similar entry (same spiffe_id, parent_id and selector set) exists,
// CreateEntry returns that entry together with an error wrapping
// ErrAlreadyExists. An entry with the same ID yields a nil entry and an
// error wrapping ErrAlreadyExists. Federated trust domains must have a
// bundle in the store (else ErrInvalid).
func (s *Store) CreateEntry(ctx context.Context, e *types.Entry) (*types.Entry, error) {
	ne, err := s.normalizeEntry(e)
	if err != nil {
		return nil, err
	}
	if ne.Id == "" {
		if ne.Id, err = s.newEntryID(); err != nil {
			return nil, err
		}
	}
	ne.CreatedAt = s.now().Unix()
	ne.RevisionNumber = 0
	value, err := encode(ne)
	if err != nil {
		return nil, err
	}
	key, simKey := s.entryKey(ne.Id), s.entrySimKey(similarityHash(ne))
	bcmps, bgets := s.bundleCmps(ne.FederatesWith)

	for range maxAttempts {
		cmps := append([]clientv3.Cmp{
			clientv3.Compare(clientv3.CreateRevision(simKey), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(key), "=", 0),
		}, bcmps...)
		elseOps := append([]clientv3.Op{clientv3.OpGet(simKey), clientv3.OpGet(key, clientv3.WithCountOnly())}, bgets...)
		resp, err := s.txn(ctx, cmps, []clientv3.Op{clientv3.OpPut(key, value), clientv3.OpPut(simKey, ne.Id)}, elseOps...)
		if err != nil {
			return nil, err
		}
		if resp.Succeeded {
			return ne, nil
		}
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			existing, _, err := s.fetchEntry(ctx, string(kvs[0].Value))
			if errors.Is(err, ErrNotFound) {
				continue // deleted meanwhile; try again
			}
			if err != nil {
				return nil, err
			}
			return existing, fmt.Errorf("store: similar entry %q already exists: %w", existing.Id, ErrAlreadyExists)
		}
		if resp.Responses[1].GetResponseRange().Count > 0 {
			return nil, fmt.Errorf("store: entry %q: %w", ne.Id, ErrAlreadyExists)
		}
		if err := missingBundle(ne.FederatesWith, 2, resp); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("store: create entry %q: %w", ne.Id, ErrConflict)
}

// fetchEntry reads an entry directly from etcd.
func (s *Store) fetchEntry(ctx context.Context, id string) (*types.Entry, int64, error) {
	resp, err := s.cli.Get(ctx, s.entryKey(id))
	if err != nil {
		return nil, 0, fmt.Errorf("store: get entry: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, fmt.Errorf("store: entry %q: %w", id, ErrNotFound)
	}
	e := new(types.Entry)
	if err := decode(resp.Kvs[0].Value, e); err != nil {
		return nil, 0, err
	}
	return e, resp.Kvs[0].ModRevision, nil
}

// applyEntryMask copies the fields selected by mask (nil: all updatable
// fields) from src into dst. id, created_at and revision_number are never
// copied.
func applyEntryMask(dst, src *types.Entry, mask *types.EntryMask) {
	all := mask == nil
	if all || mask.SpiffeId {
		dst.SpiffeId = src.SpiffeId
	}
	if all || mask.ParentId {
		dst.ParentId = src.ParentId
	}
	if all || mask.Selectors {
		dst.Selectors = src.Selectors
	}
	if all || mask.FederatesWith {
		dst.FederatesWith = src.FederatesWith
	}
	if all || mask.Admin {
		dst.Admin = src.Admin
	}
	if all || mask.Downstream {
		dst.Downstream = src.Downstream
	}
	if all || mask.ExpiresAt {
		dst.ExpiresAt = src.ExpiresAt
	}
	if all || mask.DnsNames {
		dst.DnsNames = src.DnsNames
	}
	if all || mask.StoreSvid {
		dst.StoreSvid = src.StoreSvid
	}
	if all || mask.X509SvidTtl {
		dst.X509SvidTtl = src.X509SvidTtl
	}
	if all || mask.JwtSvidTtl {
		dst.JwtSvidTtl = src.JwtSvidTtl
	}
	if all || mask.Hint {
		dst.Hint = src.Hint
	}
}

// UpdateEntry updates the fields of entry e.Id selected by mask (nil: all
// updatable fields) and increments its revision_number. The update is a
// read-compare-write retried while the entry changes concurrently, so
// concurrent updates of different fields are all kept. It fails with
// ErrNotFound if the entry does not exist, and ErrAlreadyExists if the
// result would be similar to another entry.
func (s *Store) UpdateEntry(ctx context.Context, e *types.Entry, mask *types.EntryMask) (*types.Entry, error) {
	if e == nil || e.Id == "" {
		return nil, invalidf("missing entry ID")
	}
	src := cloneEntry(e)
	return s.updateEntryWith(ctx, e.Id, func(cur *types.Entry) {
		applyEntryMask(cur, src, mask)
	})
}

// updateEntryWith applies modify to a copy of the current entry and writes
// the result, retrying while the entry changes concurrently.
func (s *Store) updateEntryWith(ctx context.Context, id string, modify func(*types.Entry)) (*types.Entry, error) {
	key := s.entryKey(id)
	for range maxAttempts {
		cur, modRev, err := s.fetchEntry(ctx, id)
		if err != nil {
			return nil, err
		}
		merged := cloneEntry(cur)
		modify(merged)
		merged.Id, merged.CreatedAt = cur.Id, cur.CreatedAt
		ne, err := s.normalizeEntry(merged)
		if err != nil {
			return nil, err
		}
		ne.RevisionNumber = cur.RevisionNumber + 1
		value, err := encode(ne)
		if err != nil {
			return nil, err
		}
		oldSim, newSim := s.entrySimKey(similarityHash(cur)), s.entrySimKey(similarityHash(ne))
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", modRev)}
		ops := []clientv3.Op{clientv3.OpPut(key, value)}
		elseOps := []clientv3.Op{clientv3.OpGet(key, clientv3.WithCountOnly())}
		if newSim != oldSim {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(newSim), "=", 0))
			ops = append(ops, clientv3.OpDelete(oldSim), clientv3.OpPut(newSim, ne.Id))
			elseOps = append(elseOps, clientv3.OpGet(newSim))
		} else {
			elseOps = append(elseOps, clientv3.OpGet(newSim, clientv3.WithCountOnly()))
		}
		bcmps, bgets := s.bundleCmps(ne.FederatesWith)
		cmps = append(cmps, bcmps...)
		elseOps = append(elseOps, bgets...)
		resp, err := s.txn(ctx, cmps, ops, elseOps...)
		if err != nil {
			return nil, err
		}
		if resp.Succeeded {
			return ne, nil
		}
		if newSim != oldSim {
			if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 && string(kvs[0].Value) != ne.Id {
				return nil, fmt.Errorf("store: similar entry %q already exists: %w", string(kvs[0].Value), ErrAlreadyExists)
			}
		}
		if err := missingBundle(ne.FederatesWith, 2, resp); err != nil {
			return nil, err
		}
		// The entry changed (or vanished) since it was read: re-read.
	}
	return nil, fmt.Errorf("store: update entry %q: %w", id, ErrConflict)
}

// DeleteEntry deletes an entry; ErrNotFound if it does not exist.
func (s *Store) DeleteEntry(ctx context.Context, id string) error {
	if id == "" {
		return invalidf("missing entry ID")
	}
	key := s.entryKey(id)
	for range maxAttempts {
		cur, modRev, err := s.fetchEntry(ctx, id)
		if err != nil {
			return err
		}
		// The similarity key was written with the entry and cannot have
		// been taken by another entry while this one is unchanged.
		resp, err := s.txn(ctx,
			[]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", modRev)},
			[]clientv3.Op{clientv3.OpDelete(key), clientv3.OpDelete(s.entrySimKey(similarityHash(cur)))})
		if err != nil {
			return err
		}
		if resp.Succeeded {
			return nil
		}
	}
	return fmt.Errorf("store: delete entry %q: %w", id, ErrConflict)
}

// GetEntry returns an entry by ID; ErrNotFound if it does not exist.
func (s *Store) GetEntry(ctx context.Context, id string) (*types.Entry, error) {
	if err := s.readIndex(ctx); err != nil {
		return nil, err
	}
	defer s.mu.RUnlock()
	r, ok := s.idx.entries[id]
	if !ok {
		return nil, fmt.Errorf("store: entry %q: %w", id, ErrNotFound)
	}
	return cloneEntry(r.e), nil
}

// ListEntries returns the entries matching f, ordered by ID. With pageSize
// > 0 at most pageSize entries are returned, starting after pageToken, and
// next is the token for the following page ("" when there are no more).
func (s *Store) ListEntries(ctx context.Context, f EntryFilter, pageSize int, pageToken string) (entries []*types.Entry, next string, err error) {
	if err := s.readIndex(ctx); err != nil {
		return nil, "", err
	}
	defer s.mu.RUnlock()

	limit := pageSize
	if limit <= 0 {
		limit = len(s.idx.entries)
	}
	var recs []*entryRec
	more := false
	cands, all := f.candidates(s.idx)
	if all {
		s.idx.entryIDs.AscendGreaterOrEqual(pageToken, func(id string) bool {
			if id == pageToken && pageToken != "" {
				return true
			}
			r := s.idx.entries[id]
			if !f.matches(r) {
				return true
			}
			if len(recs) == limit {
				more = true
				return false
			}
			recs = append(recs, r)
			return true
		})
	} else {
		for id, r := range cands {
			if (pageToken == "" || id > pageToken) && f.matches(r) {
				recs = append(recs, r)
			}
		}
		slices.SortFunc(recs, func(a, b *entryRec) int { return strings.Compare(a.id, b.id) })
		if len(recs) > limit {
			recs, more = recs[:limit], true
		}
	}
	entries = make([]*types.Entry, 0, len(recs))
	for _, r := range recs {
		entries = append(entries, cloneEntry(r.e))
	}
	if more && pageSize > 0 && len(recs) > 0 {
		next = recs[len(recs)-1].id
	}
	return entries, next, nil
}

// CountEntries counts the entries matching f.
func (s *Store) CountEntries(ctx context.Context, f EntryFilter) (int, error) {
	if err := s.readIndex(ctx); err != nil {
		return 0, err
	}
	defer s.mu.RUnlock()
	cands, all := f.candidates(s.idx)
	if all {
		cands = s.idx.entries
	}
	n := 0
	for _, r := range cands {
		if f.matches(r) {
			n++
		}
	}
	return n, nil
}

// cloneEntry deep-copies an entry (faster than proto.Clone).
func cloneEntry(e *types.Entry) *types.Entry {
	if e == nil {
		return nil
	}
	out := &types.Entry{
		Id:             e.Id,
		SpiffeId:       cloneID(e.SpiffeId),
		ParentId:       cloneID(e.ParentId),
		X509SvidTtl:    e.X509SvidTtl,
		FederatesWith:  slices.Clone(e.FederatesWith),
		Admin:          e.Admin,
		Downstream:     e.Downstream,
		ExpiresAt:      e.ExpiresAt,
		DnsNames:       slices.Clone(e.DnsNames),
		RevisionNumber: e.RevisionNumber,
		StoreSvid:      e.StoreSvid,
		JwtSvidTtl:     e.JwtSvidTtl,
		Hint:           e.Hint,
		CreatedAt:      e.CreatedAt,
	}
	if e.Selectors != nil {
		out.Selectors = make([]*types.Selector, len(e.Selectors))
		for i, sel := range e.Selectors {
			out.Selectors[i] = &types.Selector{Type: sel.GetType(), Value: sel.GetValue()}
		}
	}
	return out
}

func cloneID(id *types.SPIFFEID) *types.SPIFFEID {
	if id == nil {
		return nil
	}
	return &types.SPIFFEID{TrustDomain: id.TrustDomain, Path: id.Path}
}
