// Package cache is the agent's in-memory identity cache: the trust bundles,
// the workload registration entries authorized for this agent and their
// X.509-SVIDs, and the JWT-SVIDs minted for workloads.
//
// The agent's sync loop replaces the whole state with Update, or applies
// what changed since with Apply (a Delta: entries added, replaced or
// removed, SVIDs replaced), which costs the size of the change, not of the
// state. Workload API
// handlers Subscribe with a workload's selectors and receive a
// WorkloadUpdate at once and then whenever what that workload sees changes.
// Each subscription holds only the latest update (a channel of size one), so
// a slow reader never blocks Update or other subscribers.
//
// Values handed to Update (entries, bundles, SVIDs) are shared with
// subscribers and must not be modified afterwards; subscribers must not
// modify what they receive.
package cache

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/signet-id/signet/clock"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/protobuf/proto"
)

// X509SVID is an X.509-SVID and its private key.
type X509SVID struct {
	// Chain is the leaf certificate followed by any intermediates.
	Chain []*x509.Certificate
	Key   crypto.Signer
	// AltKey is the ML-DSA key matching the leaf's subjectAltPublicKeyInfo
	// (hybrid profile). The Workload API has no field for it; it stays in
	// the agent.
	AltKey crypto.Signer
}

// Update is the full state of the cache.
type Update struct {
	// Bundle is the agent's own trust domain bundle (X.509 authorities and
	// JWT keys).
	Bundle *spiffebundle.Bundle
	// Federated holds the bundles of foreign trust domains.
	Federated map[spiffeid.TrustDomain]*spiffebundle.Bundle
	// Entries are the workload entries authorized for this agent.
	Entries []*types.Entry
	// SVIDs are the current X.509-SVIDs, keyed by entry ID.
	SVIDs map[string]*X509SVID
}

// Identity is one entry a workload matches, with its X.509-SVID.
type Identity struct {
	Entry *types.Entry
	SVID  *X509SVID
}

// WorkloadUpdate is what one workload sees.
type WorkloadUpdate struct {
	// Identities are the matched entries that have an X.509-SVID, in
	// ascending entry ID order.
	Identities []Identity
	// Bundle is the own trust domain's bundle; nil before the first Update.
	Bundle *spiffebundle.Bundle
	// Federated holds the bundles named by the identities' federates_with
	// that the cache has.
	Federated map[spiffeid.TrustDomain]*spiffebundle.Bundle
}

// HasIdentity reports whether the workload has at least one identity.
func (u *WorkloadUpdate) HasIdentity() bool { return len(u.Identities) > 0 }

// Option configures a Cache.
type Option func(*Cache)

// WithClock sets the clock (default the wall clock). Nil keeps the
// default.
func WithClock(clk clock.Clock) Option {
	return func(c *Cache) {
		if clk != nil {
			c.now = clk.Now
		}
	}
}

// WithLogger sets the logger (default: discard). Nil keeps the default.
func WithLogger(l *slog.Logger) Option {
	return func(c *Cache) {
		if l != nil {
			c.log = l
		}
	}
}

// WithJWTMinter sets the minter FetchJWTSVID uses on a cache miss.
func WithJWTMinter(m JWTMinter) Option {
	return func(c *Cache) { c.minter = m }
}

// WithJWTCacheSize bounds the number of cached JWT-SVIDs (default 1000).
func WithJWTCacheSize(n int) Option {
	return func(c *Cache) {
		if n > 0 {
			c.jwt.max = n
		}
	}
}

// Cache is the agent's identity cache. It is safe for concurrent use.
type Cache struct {
	td     spiffeid.TrustDomain
	now    func() time.Time
	log    *slog.Logger
	minter JWTMinter
	demand func([]string)

	mu   sync.RWMutex
	st   *state
	subs map[*Subscription]struct{}

	jwt jwtCache
}

// New returns an empty cache for the trust domain td.
func New(td spiffeid.TrustDomain, opts ...Option) *Cache {
	c := &Cache{
		td:   td,
		now:  time.Now,
		log:  slog.New(slog.DiscardHandler),
		st:   &state{byID: map[string]*record{}, bySelector: map[string]*recordSet{}, svids: map[string]*X509SVID{}},
		subs: make(map[*Subscription]struct{}),
		jwt:  jwtCache{max: 1000, m: make(map[string]*JWTSVID)},
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// TrustDomain returns the cache's own trust domain.
func (c *Cache) TrustDomain() spiffeid.TrustDomain { return c.td }

// Update replaces the cache's state atomically and notifies every
// subscriber whose view changed. Invalid entries (no ID, bad SPIFFE ID, no
// selectors, duplicate ID) are skipped and logged.
func (c *Cache) Update(u Update) {
	st := c.buildState(u)

	c.mu.Lock()
	old := c.st
	c.st = st

	if jwtKeysRemoved(old.bundle, st.bundle) {
		// Tokens signed by a key that left the bundle no longer verify.
		c.jwt.clear()
	}

	missing := c.notifyLocked(nil)
	c.mu.Unlock()
	c.tellDemand(missing)
}

// Subscribe returns a subscription for a workload with the given selectors.
// The current view is available on Updates at once.
func (c *Cache) Subscribe(selectors []*types.Selector) *Subscription {
	set := newSelectorSet(selectors)
	c.mu.Lock()
	wu, _ := c.st.workloadUpdate(set)
	matched := c.matchedIDs(set)
	s := &Subscription{
		c:         c,
		key:       set.key(),
		selectors: set,
		ch:        make(chan *WorkloadUpdate, 1),
		last:      wu,
	}
	s.ch <- wu
	c.subs[s] = struct{}{}
	c.mu.Unlock()
	c.tellDemand(matched)
	return s
}

// FetchWorkloadUpdate returns the current view of a workload with the given
// selectors.
func (c *Cache) FetchWorkloadUpdate(selectors []*types.Selector) *WorkloadUpdate {
	set := newSelectorSet(selectors)
	c.mu.RLock()
	wu, _ := c.st.workloadUpdate(set)
	matched := c.matchedIDs(set)
	c.mu.RUnlock()
	c.tellDemand(matched)
	return wu
}

// MatchingEntries returns the entries whose selectors are all among the
// given selectors, in ascending entry ID order, whether or not they have an
// X.509-SVID yet.
func (c *Cache) MatchingEntries(selectors []*types.Selector) []*types.Entry {
	set := newSelectorSet(selectors)
	c.mu.RLock()
	defer c.mu.RUnlock()
	recs := c.st.match(set)
	out := make([]*types.Entry, len(recs))
	for i, r := range recs {
		out[i] = r.entry
	}
	return out
}

// Subscription delivers a workload's view of the cache.
type Subscription struct {
	c         *Cache
	key       string
	selectors selectorSet

	// Guarded by c.mu.
	ch     chan *WorkloadUpdate
	last   *WorkloadUpdate
	closed bool
}

// Updates returns the channel of updates. It holds at most one, the
// latest; it is closed by Close.
func (s *Subscription) Updates() <-chan *WorkloadUpdate { return s.ch }

// Close ends the subscription. It is safe to call more than once.
func (s *Subscription) Close() {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	delete(s.c.subs, s)
	close(s.ch)
}

// push replaces any pending update with u. Callers hold c.mu, so there is
// only ever one sender and the send cannot block.
func (s *Subscription) push(u *WorkloadUpdate) {
	select {
	case <-s.ch:
	default:
	}
	select {
	case s.ch <- u:
	default:
	}
}

// record is a validated entry.
type record struct {
	entry         *types.Entry
	selectors     []string
	federatesWith []spiffeid.TrustDomain
}

type state struct {
	bundle    *spiffebundle.Bundle
	federated map[spiffeid.TrustDomain]*spiffebundle.Bundle
	// byID holds the records by entry ID; bySelector indexes them by each
	// of their selectors (then by entry ID).
	byID       map[string]*record
	bySelector map[string]*recordSet
	svids      map[string]*X509SVID
}

// recordSet holds the records of one selector. Most selectors (a
// workload's own gid, pod UID, ...) belong to a single entry, so that one
// is held without a map: thousands of one-element maps were a large part
// of the index.
type recordSet struct {
	one  *record            // the only record, while many is nil
	many map[string]*record // by entry ID, once there are two or more
}

func (s *recordSet) add(r *record) {
	switch {
	case s.many != nil:
		s.many[r.entry.Id] = r
	case s.one == nil || s.one.entry.Id == r.entry.Id:
		s.one = r
	default:
		s.many = map[string]*record{s.one.entry.Id: s.one, r.entry.Id: r}
		s.one = nil
	}
}

// remove drops the record of entry ID id and reports whether the set is
// empty.
func (s *recordSet) remove(id string) bool {
	if s.many == nil {
		if s.one != nil && s.one.entry.Id == id {
			s.one = nil
		}
		return s.one == nil
	}
	delete(s.many, id)
	if len(s.many) == 1 {
		for _, r := range s.many {
			s.one = r
		}
		s.many = nil
	}
	return s.one == nil && len(s.many) == 0
}

// each calls f with every record of the set.
func (s *recordSet) each(f func(*record)) {
	if s == nil {
		return
	}
	if s.one != nil {
		f(s.one)
	}
	for _, r := range s.many {
		f(r)
	}
}

// add indexes r, replacing any record of the same entry ID.
func (st *state) add(r *record) {
	st.remove(r.entry.Id)
	st.byID[r.entry.Id] = r
	for _, k := range r.selectors {
		m := st.bySelector[k]
		if m == nil {
			m = &recordSet{}
			st.bySelector[k] = m
		}
		m.add(r)
	}
}

// remove drops the record of entry ID id, if any.
func (st *state) remove(id string) {
	r, ok := st.byID[id]
	if !ok {
		return
	}
	delete(st.byID, id)
	for _, k := range r.selectors {
		if m := st.bySelector[k]; m != nil && m.remove(id) {
			delete(st.bySelector, k)
		}
	}
}

func (c *Cache) buildState(u Update) *state {
	st := &state{
		byID:       make(map[string]*record, len(u.Entries)),
		bySelector: make(map[string]*recordSet),
		svids:      make(map[string]*X509SVID, len(u.SVIDs)),
	}
	for id, s := range u.SVIDs {
		st.svids[id] = s
	}
	c.setBundles(st, u.Bundle, u.Federated)

	for _, e := range u.Entries {
		r, ok := c.newRecord(e)
		if !ok {
			continue
		}
		if st.byID[e.Id] != nil {
			c.log.Warn("cache: skipping entry with duplicate ID", slog.String("entry_id", e.Id))
			continue
		}
		st.add(r)
	}
	return st
}

// setBundles validates and sets the bundles of st.
func (c *Cache) setBundles(st *state, own *spiffebundle.Bundle, federated map[spiffeid.TrustDomain]*spiffebundle.Bundle) {
	st.bundle = nil
	st.federated = make(map[spiffeid.TrustDomain]*spiffebundle.Bundle, len(federated))
	u := Update{Bundle: own, Federated: federated}
	if u.Bundle != nil {
		if u.Bundle.TrustDomain() != c.td {
			c.log.Error("cache: ignoring bundle of another trust domain",
				slog.String("trust_domain", u.Bundle.TrustDomain().String()),
				slog.String("want", c.td.String()))
		} else {
			st.bundle = u.Bundle
		}
	}
	for td, b := range u.Federated {
		if b == nil || td == c.td || b.TrustDomain() != td {
			c.log.Warn("cache: ignoring federated bundle", slog.String("trust_domain", td.String()))
			continue
		}
		st.federated[td] = b
	}
}

func (c *Cache) newRecord(e *types.Entry) (*record, bool) {
	if e == nil || e.Id == "" {
		c.log.Warn("cache: skipping entry without ID")
		return nil, false
	}
	if _, err := EntrySPIFFEID(e); err != nil {
		c.log.Warn("cache: skipping entry with invalid SPIFFE ID", slog.String("entry_id", e.Id), slog.Any("error", err))
		return nil, false
	}
	set := newSelectorSet(e.Selectors)
	if len(set) == 0 {
		// An entry without selectors would match every workload.
		c.log.Warn("cache: skipping entry without selectors", slog.String("entry_id", e.Id))
		return nil, false
	}
	r := &record{entry: e, selectors: set.sorted()}
	for _, fw := range e.FederatesWith {
		td, err := spiffeid.TrustDomainFromString(fw)
		if err != nil {
			c.log.Warn("cache: ignoring invalid federates_with", slog.String("entry_id", e.Id), slog.String("trust_domain", fw))
			continue
		}
		r.federatesWith = append(r.federatesWith, td)
	}
	return r, true
}

// match returns the records whose selectors are a subset of set, sorted by
// entry ID.
func (st *state) match(set selectorSet) []*record {
	var out []*record
	seen := make(map[*record]bool)
	for k := range set {
		st.bySelector[k].each(func(r *record) {
			if seen[r] {
				return
			}
			seen[r] = true
			if set.containsAll(r.selectors) {
				out = append(out, r)
			}
		})
	}
	slices.SortFunc(out, func(a, b *record) int { return strings.Compare(a.entry.Id, b.entry.Id) })
	return out
}

// workloadUpdate returns the view of a workload with selectors set, and
// the IDs of the entries it matches that have no SVID.
func (st *state) workloadUpdate(set selectorSet) (*WorkloadUpdate, []string) {
	wu := &WorkloadUpdate{
		Bundle:    st.bundle,
		Federated: make(map[spiffeid.TrustDomain]*spiffebundle.Bundle),
	}
	var missing []string
	for _, r := range st.match(set) {
		svid := st.svids[r.entry.Id]
		if svid == nil || len(svid.Chain) == 0 || svid.Key == nil {
			missing = append(missing, r.entry.Id)
			continue
		}
		wu.Identities = append(wu.Identities, Identity{Entry: r.entry, SVID: svid})
		for _, td := range r.federatesWith {
			if b, ok := st.federated[td]; ok {
				wu.Federated[td] = b
			}
		}
	}
	return wu, missing
}

// EntrySPIFFEID returns the SPIFFE ID of an entry.
func EntrySPIFFEID(e *types.Entry) (spiffeid.ID, error) {
	if e.GetSpiffeId() == nil {
		return spiffeid.ID{}, errMissingSPIFFEID
	}
	td, err := spiffeid.TrustDomainFromString(e.SpiffeId.TrustDomain)
	if err != nil {
		return spiffeid.ID{}, err
	}
	return spiffeid.FromPath(td, e.SpiffeId.Path)
}

// selectorSet is a set of selector keys.
type selectorSet map[string]struct{}

// selectorKey encodes a selector injectively (type length, type, value).
func selectorKey(s *types.Selector) string {
	return strconv.Itoa(len(s.Type)) + ":" + s.Type + s.Value
}

func newSelectorSet(sel []*types.Selector) selectorSet {
	set := make(selectorSet, len(sel))
	for _, s := range sel {
		if s == nil {
			continue
		}
		set[selectorKey(s)] = struct{}{}
	}
	return set
}

func (s selectorSet) containsAll(keys []string) bool {
	for _, k := range keys {
		if _, ok := s[k]; !ok {
			return false
		}
	}
	return true
}

func (s selectorSet) sorted() []string {
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// key identifies the set, so that subscribers with equal sets share one
// computed view.
func (s selectorSet) key() string {
	var b strings.Builder
	for _, k := range s.sorted() {
		b.WriteString(strconv.Itoa(len(k)))
		b.WriteByte(':')
		b.WriteString(k)
	}
	return b.String()
}

func equalUpdates(a, b *WorkloadUpdate) bool {
	if a == nil || b == nil {
		return a == b
	}
	if !a.Bundle.Equal(b.Bundle) || len(a.Federated) != len(b.Federated) || len(a.Identities) != len(b.Identities) {
		return false
	}
	for td, ab := range a.Federated {
		if !ab.Equal(b.Federated[td]) {
			return false
		}
	}
	for i := range a.Identities {
		ai, bi := a.Identities[i], b.Identities[i]
		if ai.Entry != bi.Entry && !proto.Equal(ai.Entry, bi.Entry) {
			return false
		}
		if !equalSVIDs(ai.SVID, bi.SVID) {
			return false
		}
	}
	return true
}

func equalSVIDs(a, b *X509SVID) bool {
	if a == b {
		return true
	}
	if len(a.Chain) != len(b.Chain) {
		return false
	}
	for i := range a.Chain {
		if !bytes.Equal(a.Chain[i].Raw, b.Chain[i].Raw) {
			return false
		}
	}
	return true
}

// jwtKeysRemoved reports whether a JWT key of old is missing from cur.
func jwtKeysRemoved(old, cur *spiffebundle.Bundle) bool {
	if old == nil {
		return false
	}
	for kid := range old.JWTAuthorities() {
		if cur == nil || !cur.HasJWTAuthority(kid) {
			return true
		}
	}
	return false
}
