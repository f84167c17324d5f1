package agent

import (
	"context"
	"crypto"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/signet-id/signet/agent/cache"
	"github.com/signet-id/signet/agent/client"
	bundlecodec "github.com/signet-id/signet/bundle"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// sync refreshes the bundle and entries and obtains missing or due SVIDs.
func (a *Agent) sync(ctx context.Context, c *client.Client) error {
	start := time.Now() // for the duration histogram: real work, real time
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	pb, err := c.Bundle(rctx)
	if err != nil {
		return fmt.Errorf("agent: get bundle: %w", err)
	}
	own, err := bundlecodec.FromProto(pb)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	// Entries are reread only when they may have changed (push, poll, new
	// session); a bundle change or renew-now reuses the ones held.
	a.mu.Lock()
	gen, fresh := a.entriesGen, a.fetchedGen == a.entriesGen && a.synced
	previous := a.federated
	a.mu.Unlock()
	var delta *client.EntrySync
	if !fresh {
		// Only this goroutine writes a.entries: reading it unlocked is safe.
		delta, err = c.SyncEntries(rctx, a.entries)
		if err != nil {
			return fmt.Errorf("agent: sync authorized entries: %w", err)
		}
		a.m.entryReads.Inc()
		a.m.entriesReceived.Add(float64(delta.Received))
		if delta.Fallback && !a.fallbackLogged {
			a.fallbackLogged = true
			a.log.Info("server has no SyncAuthorizedEntries; reading all entries with GetAuthorizedEntries")
		}
	}
	// Apply the entries' change at once, dropping the SVIDs of entries
	// that are gone.
	a.mu.Lock()
	if delta != nil {
		for _, id := range delta.Removed {
			a.removeEntry(id)
		}
		for _, e := range delta.Changed {
			a.setEntry(e)
		}
		a.synced = true
	}
	entries := slices.Collect(maps.Values(a.entries))
	a.mu.Unlock()
	federated := map[spiffeid.TrustDomain]*spiffebundle.Bundle{}
	for _, e := range entries {
		for _, name := range e.FederatesWith {
			td, err := spiffeid.TrustDomainFromString(name)
			if err != nil || federated[td] != nil {
				continue
			}
			fb, err := c.FederatedBundle(rctx, name)
			if err != nil {
				// Keep serving the last bundle held: a transient error must
				// not make workloads distrust the federated trust domain (a
				// deleted bundle, NotFound, is dropped).
				if prev := previous[td]; prev != nil && status.Code(err) != codes.NotFound {
					federated[td] = prev
				}
				a.log.Warn("federated bundle unavailable; serving the last one held", "trust_domain", name, "error", err)
				continue
			}
			if b, err := bundlecodec.FromProto(fb); err == nil {
				federated[td] = b
			}
		}
	}

	// Adopt the bundles and find the SVIDs due. SVIDs being replaced stay
	// served until their replacement arrives.
	now := a.cfg.Clock.Now()
	a.mu.Lock()
	if a.bundle == nil || !a.bundle.Equal(own) || !sameBundles(a.federated, federated) {
		a.dirtyBundles = true
	}
	a.bundle, a.federated, a.fetchedGen = own, federated, gen
	due := []*types.Entry{}
	for _, e := range entries {
		if !a.wanted.has(e.Id) {
			continue // no workload asked for it: not minted (lazily)
		}
		s := a.svids[e.Id]
		rev, known := a.svidRev[e.Id]
		if s != nil && !a.forceAll && !a.force[e.Id] && !needsRenewal(s, e, own, now, a.renewalTime(s.Chain[0]), known && rev != e.RevisionNumber) {
			continue
		}
		due = append(due, e)
	}
	slices.SortFunc(due, func(x, y *types.Entry) int { return strings.Compare(x.Id, y.Id) })
	a.forceAll = false
	a.force = map[string]bool{}
	a.mu.Unlock()
	a.publish(len(due) == 0)

	// Request the due SVIDs in batches, each with its own deadline, and
	// serve them as they arrive (at most once a second to the cache, so a
	// sync of many thousands stays cheap); the disk copy is written at the
	// end.
	issued, err := a.obtain(ctx, c, due)
	if err != nil {
		return err
	}
	a.m.syncs.Inc()
	a.m.syncSeconds.Observe(time.Since(start).Seconds())
	if issued > 0 {
		a.log.Info("synced", "entries", len(entries), "new_svids", issued, "seconds", time.Since(start).Seconds())
	}
	return nil
}

// sameBundles reports whether a and b hold equal bundles for the same
// trust domains.
func sameBundles(a, b map[spiffeid.TrustDomain]*spiffebundle.Bundle) bool {
	if len(a) != len(b) {
		return false
	}
	for td, x := range a {
		if y, ok := b[td]; !ok || !x.Equal(y) {
			return false
		}
	}
	return true
}

// needsRenewal reports whether s must be replaced: past half-life, no
// longer chaining to the bundle, or issued for an older entry revision.
func needsRenewal(s *cache.X509SVID, e *types.Entry, b *spiffebundle.Bundle, now, renewAt time.Time, entryChanged bool) bool {
	leaf := s.Chain[0]
	if !now.Before(renewAt) {
		return true
	}
	if entryChanged {
		return true
	}
	if _, _, err := x509svid.Verify(s.Chain, b); err != nil {
		return true
	}
	id, err := x509svid.IDFromCert(leaf)
	if err != nil || id.String() != "spiffe://"+e.SpiffeId.GetTrustDomain()+e.SpiffeId.GetPath() {
		return true
	}
	return false
}

// newSVIDBatch requests SVIDs for chunk (at most client.MaxBatch entries)
// with keys generated here, and returns those the server issued by entry
// ID.
func (a *Agent) newSVIDBatch(ctx context.Context, c *client.Client, chunk []*types.Entry) (map[string]*cache.X509SVID, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out := map[string]*cache.X509SVID{}
	keys := make([]crypto.Signer, len(chunk))
	altKeys := make([]crypto.Signer, len(chunk))
	reqs := make([]client.X509SVIDRequest, len(chunk))
	for i, e := range chunk {
		k, err := a.newKey()
		if err != nil {
			return nil, err
		}
		csr, alt, err := a.csr(k)
		if err != nil {
			return nil, err
		}
		keys[i], altKeys[i] = k, alt
		reqs[i] = client.X509SVIDRequest{EntryID: e.Id, CSR: csr}
	}
	results, err := c.NewX509SVIDs(ctx, reqs)
	if err != nil {
		return nil, fmt.Errorf("agent: request SVIDs: %w", err)
	}
	for i, r := range results {
		if r.Err != nil {
			a.log.Warn("server refused an SVID", "entry_id", chunk[i].Id, "code", status.Code(r.Err).String(), "message", status.Convert(r.Err).Message())
			continue
		}
		s, err := parseChain(r.SVID.GetCertChain(), keys[i])
		if err != nil {
			return nil, err
		}
		s.AltKey = altKeys[i]
		out[chunk[i].Id] = s
		a.m.svidsIssued.Inc()
	}
	return out, nil
}
