package cache_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signet-id/signet/clock/fakeclock"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"

	"github.com/signet-id/signet/agent/cache"
	"github.com/signet-id/signet/agent/cache/cachetest"
)

var (
	td     = spiffeid.RequireTrustDomainFromString("example.org")
	fedTD  = spiffeid.RequireTrustDomainFromString("partner.test")
	fedTD2 = spiffeid.RequireTrustDomainFromString("other.test")
)

func sel(values ...string) []*types.Selector {
	out := make([]*types.Selector, len(values))
	for i, v := range values {
		typ, val, _ := strings.Cut(v, ":")
		out[i] = &types.Selector{Type: typ, Value: val}
	}
	return out
}

func entry(id, path string, selectors ...string) *types.Entry {
	return &types.Entry{
		Id:        id,
		SpiffeId:  &types.SPIFFEID{TrustDomain: td.Name(), Path: path},
		ParentId:  &types.SPIFFEID{TrustDomain: td.Name(), Path: "/agent"},
		Selectors: sel(selectors...),
	}
}

func ids(entries []*types.Entry) []string {
	out := make([]string, len(entries))
	for i, e := range entries {
		out[i] = e.Id
	}
	return out
}

func identityIDs(u *cache.WorkloadUpdate) []string {
	out := make([]string, len(u.Identities))
	for i, id := range u.Identities {
		out[i] = id.Entry.Id
	}
	return out
}

func TestMatchingEntries(t *testing.T) {
	noSel := entry("e-nosel", "/nosel")
	noSel.Selectors = nil
	badID := entry("e-bad", "no-leading-slash", "unix:uid:1000")
	entries := []*types.Entry{
		entry("e3", "/uid", "unix:uid:1000"),
		entry("e1", "/uid-gid", "unix:uid:1000", "unix:gid:1000"),
		entry("e2", "/root", "unix:uid:0"),
		entry("e4", "/k8s", "k8s:ns:default", "unix:uid:1000"),
		entry("e1", "/duplicate", "unix:uid:1000"),
		noSel,
		badID,
		nil,
	}
	c := cache.New(td)
	c.Update(cache.Update{Entries: entries})

	tests := []struct {
		name      string
		selectors []*types.Selector
		want      []string
	}{
		{"uid only", sel("unix:uid:1000"), []string{"e3"}},
		{"uid and gid", sel("unix:uid:1000", "unix:gid:1000"), []string{"e1", "e3"}},
		{"superset", sel("unix:uid:1000", "unix:gid:1000", "k8s:ns:default", "unix:path:/bin/x"), []string{"e1", "e3", "e4"}},
		{"other uid", sel("unix:uid:0"), []string{"e2"}},
		{"no match", sel("unix:uid:5"), []string{}},
		{"type matters", sel("k8s:uid:1000"), []string{}},
		{"no selectors", nil, []string{}},
		{"nil selector ignored", []*types.Selector{nil, {Type: "unix", Value: "uid:0"}}, []string{"e2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ids(c.MatchingEntries(tt.selectors)); !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// fixture is a CA, a cache and its current update, for tests that evolve
// the state step by step.
type fixture struct {
	t  *testing.T
	ca *cachetest.CA
	c  *cache.Cache
	u  cache.Update
}

func newFixture(t *testing.T, opts ...cache.Option) *fixture {
	ca := cachetest.NewCA(t, td)
	f := &fixture{t: t, ca: ca, c: cache.New(td, opts...)}
	f.u = cache.Update{
		Bundle:    ca.Bundle(),
		Federated: map[spiffeid.TrustDomain]*spiffebundle.Bundle{},
		SVIDs:     map[string]*cache.X509SVID{},
	}
	return f
}

// addEntry adds an entry and issues its SVID.
func (f *fixture) addEntry(e *types.Entry) {
	f.u.Entries = append(f.u.Entries, e)
	f.rotate(e.Id)
}

func (f *fixture) rotate(entryID string) {
	for _, e := range f.u.Entries {
		if e.Id == entryID {
			id, err := cache.EntrySPIFFEID(e)
			if err != nil {
				f.t.Fatal(err)
			}
			svids := make(map[string]*cache.X509SVID, len(f.u.SVIDs)+1)
			for k, v := range f.u.SVIDs {
				svids[k] = v
			}
			svids[entryID] = f.ca.X509SVID(f.t, id)
			f.u.SVIDs = svids
			return
		}
	}
	f.t.Fatalf("no entry %s", entryID)
}

func (f *fixture) apply() { f.c.Update(f.u) }

func recv(t *testing.T, s *cache.Subscription) *cache.WorkloadUpdate {
	t.Helper()
	select {
	case u, ok := <-s.Updates():
		if !ok {
			t.Fatal("subscription closed")
		}
		return u
	default:
		t.Fatal("no update pending")
		return nil
	}
}

func noUpdate(t *testing.T, s *cache.Subscription) {
	t.Helper()
	select {
	case u := <-s.Updates():
		t.Fatalf("unexpected update with identities %q", identityIDs(u))
	default:
	}
}

func TestSubscribeDeliversCurrentStateAndChanges(t *testing.T) {
	f := newFixture(t)
	f.addEntry(entry("e1", "/web", "unix:uid:1000"))
	f.addEntry(entry("e9", "/db", "unix:uid:0"))
	f.apply()

	s := f.c.Subscribe(sel("unix:uid:1000", "unix:gid:1000"))
	defer s.Close()
	u := recv(t, s)
	if got := identityIDs(u); !slices.Equal(got, []string{"e1"}) {
		t.Fatalf("identities %q", got)
	}
	if !u.Bundle.Equal(f.u.Bundle) {
		t.Fatal("bundle not delivered")
	}
	first := u.Identities[0].SVID.Chain[0].SerialNumber

	// The same state again, as fresh but equal objects: no notification.
	f.u.Bundle = f.ca.Bundle()
	f.u.Entries = []*types.Entry{entry("e1", "/web", "unix:uid:1000"), entry("e9", "/db", "unix:uid:0")}
	f.apply()
	noUpdate(t, s)

	// Another workload's SVID rotates: no notification.
	f.rotate("e9")
	f.apply()
	noUpdate(t, s)

	// Our SVID rotates.
	f.rotate("e1")
	f.apply()
	u = recv(t, s)
	if u.Identities[0].SVID.Chain[0].SerialNumber.Cmp(first) == 0 {
		t.Fatal("SVID not rotated")
	}

	// A new matching entry appears, first without an SVID (not an
	// identity yet), then with one.
	f.u.Entries = append(f.u.Entries, entry("e2", "/web-admin", "unix:gid:1000"))
	f.apply()
	noUpdate(t, s)
	f.rotate("e2")
	f.apply()
	if got := identityIDs(recv(t, s)); !slices.Equal(got, []string{"e1", "e2"}) {
		t.Fatalf("identities %q", got)
	}

	// The entry changes (hint).
	f.u.Entries[2] = entry("e2", "/web-admin", "unix:gid:1000")
	f.u.Entries[2].Hint = "admin"
	f.apply()
	if got := recv(t, s).Identities[1].Entry.Hint; got != "admin" {
		t.Fatalf("hint %q", got)
	}

	// The bundle changes.
	b := f.ca.Bundle()
	b.SetSequenceNumber(2)
	f.u.Bundle = b
	f.apply()
	if seq, _ := recv(t, s).Bundle.SequenceNumber(); seq != 2 {
		t.Fatalf("sequence %d", seq)
	}

	// All our entries are removed.
	f.u.Entries = f.u.Entries[1:2]
	f.apply()
	if u := recv(t, s); u.HasIdentity() {
		t.Fatalf("identities %q after removal", identityIDs(u))
	}
}

func TestFederatedBundlesFollowFederatesWith(t *testing.T) {
	f := newFixture(t)
	fedCA, fedCA2 := cachetest.NewCA(t, fedTD), cachetest.NewCA(t, fedTD2)
	f.u.Federated[fedTD] = fedCA.Bundle()
	f.u.Federated[fedTD2] = fedCA2.Bundle()
	e1 := entry("e1", "/web", "unix:uid:1000")
	e1.FederatesWith = []string{"partner.test", "missing.test", "not a trust domain"}
	e2 := entry("e2", "/db", "unix:uid:0")
	e2.FederatesWith = []string{"spiffe://other.test"}
	e3 := entry("e3", "/no-svid", "unix:uid:1000")
	e3.FederatesWith = []string{"other.test"}
	f.addEntry(e1)
	f.addEntry(e2)
	f.u.Entries = append(f.u.Entries, e3) // no SVID: not an identity
	f.apply()

	tests := []struct {
		name      string
		selectors []*types.Selector
		want      []spiffeid.TrustDomain
	}{
		{"web", sel("unix:uid:1000"), []spiffeid.TrustDomain{fedTD}},
		{"db", sel("unix:uid:0"), []spiffeid.TrustDomain{fedTD2}},
		{"both", sel("unix:uid:0", "unix:uid:1000"), []spiffeid.TrustDomain{fedTD, fedTD2}},
		{"none", sel("unix:uid:7"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := f.c.FetchWorkloadUpdate(tt.selectors)
			if len(u.Federated) != len(tt.want) {
				t.Fatalf("got %d federated bundles, want %d", len(u.Federated), len(tt.want))
			}
			for _, want := range tt.want {
				if b := u.Federated[want]; b == nil || b.TrustDomain() != want {
					t.Errorf("missing bundle for %s", want)
				}
			}
		})
	}

	// A federated bundle update reaches only subscribers that see it.
	web := f.c.Subscribe(sel("unix:uid:1000"))
	defer web.Close()
	db := f.c.Subscribe(sel("unix:uid:0"))
	defer db.Close()
	recv(t, web)
	recv(t, db)
	nb := fedCA.Bundle()
	nb.SetSequenceNumber(7)
	f.u.Federated = map[spiffeid.TrustDomain]*spiffebundle.Bundle{fedTD: nb, fedTD2: f.u.Federated[fedTD2]}
	f.apply()
	if seq, _ := recv(t, web).Federated[fedTD].SequenceNumber(); seq != 7 {
		t.Fatalf("sequence %d", seq)
	}
	noUpdate(t, db)
}

func TestForeignBundlesIgnored(t *testing.T) {
	f := newFixture(t)
	f.u.Bundle = cachetest.NewCA(t, fedTD).Bundle() // wrong trust domain
	f.u.Federated[td] = f.ca.Bundle()               // own trust domain as federated
	f.u.Federated[fedTD2] = cachetest.NewCA(t, fedTD).Bundle()
	e := entry("e1", "/web", "unix:uid:1000")
	e.FederatesWith = []string{td.Name(), fedTD2.Name()}
	f.addEntry(e)
	f.apply()
	u := f.c.FetchWorkloadUpdate(sel("unix:uid:1000"))
	if u.Bundle != nil || len(u.Federated) != 0 {
		t.Fatalf("bundle %v, federated %v", u.Bundle, u.Federated)
	}
}

// TestSlowSubscriber never reads one subscription while the state changes
// many times: Update does not block, the other subscriber sees every
// change, and the slow one then reads only the latest state.
func TestSlowSubscriber(t *testing.T) {
	f := newFixture(t)
	f.addEntry(entry("e1", "/web", "unix:uid:1000"))
	f.apply()
	slow := f.c.Subscribe(sel("unix:uid:1000"))
	defer slow.Close()
	fast := f.c.Subscribe(sel("unix:uid:1000"))
	defer fast.Close()
	recv(t, fast)

	for i := range 10 {
		f.rotate("e1")
		f.apply()
		u := recv(t, fast)
		if !u.Identities[0].SVID.Chain[0].Equal(f.u.SVIDs["e1"].Chain[0]) {
			t.Fatalf("fast subscriber missed rotation %d", i)
		}
	}
	u := recv(t, slow)
	if !u.Identities[0].SVID.Chain[0].Equal(f.u.SVIDs["e1"].Chain[0]) {
		t.Fatal("slow subscriber did not get the latest SVID")
	}
	noUpdate(t, slow)
}

func TestSubscriptionClose(t *testing.T) {
	f := newFixture(t)
	f.addEntry(entry("e1", "/web", "unix:uid:1000"))
	f.apply()
	s := f.c.Subscribe(sel("unix:uid:1000"))
	recv(t, s)
	s.Close()
	s.Close()
	f.rotate("e1")
	f.apply()
	if _, ok := <-s.Updates(); ok {
		t.Fatal("update after Close")
	}
}

func TestSubscribeBeforeFirstUpdate(t *testing.T) {
	c := cache.New(td)
	s := c.Subscribe(sel("unix:uid:1000"))
	defer s.Close()
	u := recv(t, s)
	if u.Bundle != nil || u.HasIdentity() {
		t.Fatal("empty cache delivered identities")
	}
	ca := cachetest.NewCA(t, td)
	e := entry("e1", "/web", "unix:uid:1000")
	c.Update(cache.Update{
		Bundle:  ca.Bundle(),
		Entries: []*types.Entry{e},
		SVIDs:   map[string]*cache.X509SVID{"e1": ca.X509SVID(t, spiffeid.RequireFromPath(td, "/web"))},
	})
	if u := recv(t, s); !u.HasIdentity() || u.Bundle == nil {
		t.Fatal("first state not delivered")
	}
}

func TestConcurrentUpdatesAndSubscribers(t *testing.T) {
	f := newFixture(t)
	f.addEntry(entry("e1", "/web", "unix:uid:1000"))
	f.apply()
	updates := make([]cache.Update, 20)
	for i := range updates {
		f.rotate("e1")
		updates[i] = f.u
	}

	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 20 {
				s := f.c.Subscribe(sel("unix:uid:1000"))
				if u := <-s.Updates(); u == nil {
					t.Error("nil update")
				}
				_ = f.c.MatchingEntries(sel("unix:uid:1000"))
				s.Close()
			}
		})
	}
	wg.Go(func() {
		for _, u := range updates {
			f.c.Update(u)
		}
	})
	wg.Wait()
	s := f.c.Subscribe(sel("unix:uid:1000"))
	defer s.Close()
	if got := recv(t, s).Identities[0].SVID; got != updates[len(updates)-1].SVIDs["e1"] {
		t.Fatal("final state not the last update")
	}
}

func TestFetchJWTSVIDCachesUntilHalfLife(t *testing.T) {
	clk := fakeclock.New(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	ca := cachetest.NewCA(t, td)
	ca.Now = clk.Now
	ca.JWTTTL = 10 * time.Minute
	c := cache.New(td, cache.WithClock(clk), cache.WithJWTMinter(ca))
	e := entry("e1", "/web", "unix:uid:1000")
	c.Update(cache.Update{Bundle: ca.Bundle(), Entries: []*types.Entry{e}})
	ctx := context.Background()

	first, err := c.FetchJWTSVID(ctx, e, []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	if first.ID.String() != "spiffe://example.org/web" || !first.ExpiresAt.Equal(clk.Now().Add(10*time.Minute)) {
		t.Fatalf("unexpected SVID %+v", first)
	}

	clk.Advance(4*time.Minute + 59*time.Second)
	again, err := c.FetchJWTSVID(ctx, e, []string{"b", "a", "a"})
	if err != nil {
		t.Fatal(err)
	}
	if again.Token != first.Token || ca.Mints() != 1 {
		t.Fatalf("token re-minted before half-life (mints %d)", ca.Mints())
	}

	other, err := c.FetchJWTSVID(ctx, e, []string{"a"})
	if err != nil {
		t.Fatal(err)
	}
	if other.Token == first.Token || ca.Mints() != 2 {
		t.Fatal("different audience served from cache")
	}

	clk.Advance(time.Second)
	renewed, err := c.FetchJWTSVID(ctx, e, []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	if renewed.Token == first.Token || ca.Mints() != 3 {
		t.Fatalf("token not re-minted at half-life (mints %d)", ca.Mints())
	}
}

func TestJWTCacheClearedWhenKeyLeavesBundle(t *testing.T) {
	ca := cachetest.NewCA(t, td)
	c := cache.New(td, cache.WithJWTMinter(ca))
	e := entry("e1", "/web", "unix:uid:1000")
	c.Update(cache.Update{Bundle: ca.Bundle(), Entries: []*types.Entry{e}})
	ctx := context.Background()
	if _, err := c.FetchJWTSVID(ctx, e, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	// An unrelated bundle change keeps the cached token.
	b := ca.Bundle()
	b.SetSequenceNumber(1)
	c.Update(cache.Update{Bundle: b, Entries: []*types.Entry{e}})
	if _, err := c.FetchJWTSVID(ctx, e, []string{"a"}); err != nil || ca.Mints() != 1 {
		t.Fatalf("mints %d, err %v", ca.Mints(), err)
	}
	// Removing the signing key drops it.
	b = ca.Bundle()
	b.RemoveJWTAuthority(ca.JWTKeyID())
	c.Update(cache.Update{Bundle: b, Entries: []*types.Entry{e}})
	if _, err := c.FetchJWTSVID(ctx, e, []string{"a"}); err != nil || ca.Mints() != 2 {
		t.Fatalf("mints %d, err %v", ca.Mints(), err)
	}
}

func TestJWTCacheBounded(t *testing.T) {
	ca := cachetest.NewCA(t, td)
	c := cache.New(td, cache.WithJWTMinter(ca), cache.WithJWTCacheSize(3))
	e := entry("e1", "/web", "unix:uid:1000")
	ctx := context.Background()
	for i := range 10 {
		if _, err := c.FetchJWTSVID(ctx, e, []string{fmt.Sprint("aud", i)}); err != nil {
			t.Fatal(err)
		}
	}
	// The most recent audiences are still cached.
	if _, err := c.FetchJWTSVID(ctx, e, []string{"aud9"}); err != nil || ca.Mints() != 10 {
		t.Fatalf("mints %d, err %v", ca.Mints(), err)
	}
}

type failingMinter struct{}

var errMint = errors.New("server unavailable")

func (failingMinter) MintJWTSVID(context.Context, spiffeid.ID, []string) (string, time.Time, error) {
	return "", time.Time{}, errMint
}

func TestFetchJWTSVIDErrors(t *testing.T) {
	e := entry("e1", "/web", "unix:uid:1000")
	ctx := context.Background()
	if _, err := cache.New(td).FetchJWTSVID(ctx, e, []string{"a"}); !errors.Is(err, cache.ErrNoJWTMinter) {
		t.Fatalf("got %v, want ErrNoJWTMinter", err)
	}
	c := cache.New(td, cache.WithJWTMinter(failingMinter{}))
	if _, err := c.FetchJWTSVID(ctx, e, []string{"a"}); !errors.Is(err, errMint) {
		t.Fatalf("got %v, want mint error", err)
	}
	if _, err := c.FetchJWTSVID(ctx, e, nil); err == nil {
		t.Fatal("empty audience accepted")
	}
	if _, err := c.FetchJWTSVID(ctx, &types.Entry{Id: "x"}, []string{"a"}); err == nil {
		t.Fatal("entry without SPIFFE ID accepted")
	}
}
