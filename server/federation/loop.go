package federation

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	bundlecodec "github.com/signet-id/signet/bundle"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// FromProto converts an API relationship to the refresher's form.
func FromProto(fr *types.FederationRelationship) (Relationship, error) {
	td, err := spiffeid.TrustDomainFromString(fr.TrustDomain)
	if err != nil {
		return Relationship{}, fmt.Errorf("federation: relationship trust domain %q: %w", fr.TrustDomain, err)
	}
	rel := Relationship{TrustDomain: td, URL: fr.BundleEndpointUrl, Profile: ProfileWeb}
	if p, ok := fr.BundleEndpointProfile.(*types.FederationRelationship_HttpsSpiffe); ok {
		id, err := spiffeid.FromString(p.HttpsSpiffe.GetEndpointSpiffeId())
		if err != nil {
			return Relationship{}, fmt.Errorf("federation: relationship %q: endpoint SPIFFE ID: %w", td.Name(), err)
		}
		rel.Profile, rel.EndpointID = ProfileSPIFFE, id
	}
	return rel, nil
}

// Reload makes the loop re-read the relationships now.
func (r *Refresher) Reload() {
	select {
	case r.reload <- struct{}{}:
	default:
	}
}

// Run refreshes bundles until ctx is done: it re-reads the relationships
// every ReloadInterval (or on Reload) and, while this replica leads,
// fetches each relationship's bundle when due.
func (r *Refresher) Run(ctx context.Context) {
	timer := r.cfg.Clock.NewTimer(0)
	defer timer.Stop()
	nextLoad := time.Time{}
	for {
		now := r.cfg.Clock.Now()
		if !now.Before(nextLoad) {
			r.load(ctx)
			nextLoad = now.Add(r.cfg.ReloadInterval)
		}
		if r.cfg.Leader() {
			for _, td := range r.dueNow(now) {
				if ctx.Err() != nil {
					return
				}
				_, _ = r.Refresh(ctx, td)
			}
		}
		wake := nextLoad
		if d := r.earliestDue(); !d.IsZero() && d.Before(wake) {
			wake = d
		}
		timer.Reset(max(wake.Sub(r.cfg.Clock.Now()), 0))
		select {
		case <-ctx.Done():
			return
		case <-r.reload:
			nextLoad = time.Time{}
		case <-timer.C():
		}
	}
}

// load reads the relationships (static ones override stored ones); new
// relationships are due at once, removed ones forget their metrics.
func (r *Refresher) load(ctx context.Context) {
	rels := map[spiffeid.TrustDomain]Relationship{}
	stored, _, err := r.cfg.Store.ListRelationships(ctx, 0, "")
	if err != nil {
		r.log.Warn("failed to read federation relationships; keeping the previous set", "error", err)
		return
	}
	for _, fr := range stored {
		rel, err := FromProto(fr)
		if err != nil {
			r.log.Warn("skipping malformed federation relationship", "trust_domain", fr.TrustDomain, "error", err)
			continue
		}
		rels[rel.TrustDomain] = rel
	}
	for _, rel := range r.cfg.Static {
		rels[rel.TrustDomain] = rel
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for td, old := range r.rels {
		if _, ok := rels[td]; !ok {
			delete(r.due, td)
			delete(r.last, td)
			r.m.lastSuccess.DeleteLabelValues(td.Name())
			r.log.Info("no longer refreshing federated bundle", "trust_domain", td.Name(), "bundle_endpoint_url", old.URL)
		}
	}
	for td, rel := range rels {
		if old, ok := r.rels[td]; !ok || old != rel {
			r.due[td] = time.Time{}
		}
	}
	r.rels = rels
}

func (r *Refresher) dueNow(now time.Time) []spiffeid.TrustDomain {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []spiffeid.TrustDomain
	for td, d := range r.due {
		if !d.After(now) {
			out = append(out, td)
		}
	}
	slices.SortFunc(out, func(a, b spiffeid.TrustDomain) int { return compare(a.Name(), b.Name()) })
	return out
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (r *Refresher) earliestDue() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	var first time.Time
	for _, d := range slices.Collect(maps.Values(r.due)) {
		if first.IsZero() || d.Before(first) {
			first = d
		}
	}
	return first
}

// relationship returns the relationship of td: the loaded set, else the
// store's (a relationship created on another replica).
func (r *Refresher) relationship(ctx context.Context, td spiffeid.TrustDomain) (Relationship, bool, error) {
	r.mu.Lock()
	rel, ok := r.rels[td]
	r.mu.Unlock()
	if ok {
		return rel, true, nil
	}
	r.load(ctx)
	r.mu.Lock()
	rel, ok = r.rels[td]
	r.mu.Unlock()
	return rel, ok, nil
}

// Refresh fetches the bundle of td from its endpoint now and stores it if
// it changed. On failure the stored bundle is left as it was, the failure
// is counted and logged, and returned. managed is false when there is no
// relationship with td.
func (r *Refresher) Refresh(ctx context.Context, td spiffeid.TrustDomain) (managed bool, err error) {
	rel, ok, err := r.relationship(ctx, td)
	if err != nil || !ok {
		return ok, err
	}
	log := r.log.With("trust_domain", td.Name(), "bundle_endpoint_url", rel.URL, "bundle_endpoint_profile", string(rel.Profile))
	current, cerr := r.storedBundle(ctx, td)
	b, err := r.fetcher.fetch(ctx, rel)
	if err == nil {
		err = r.store(ctx, current, cerr, b, log)
	}
	now := r.cfg.Clock.Now()
	r.mu.Lock()
	if _, still := r.rels[td]; still {
		r.last[td] = err
		r.due[td] = now.Add(r.interval(current, b, err))
	}
	next := r.due[td]
	r.mu.Unlock()
	if err != nil {
		r.m.refreshes.WithLabelValues(td.Name(), "failure").Inc()
		log.Warn("federated bundle refresh failed; keeping the last good bundle", "error", err, "next_attempt", next)
		return true, err
	}
	r.m.refreshes.WithLabelValues(td.Name(), "success").Inc()
	r.m.lastSuccess.WithLabelValues(td.Name()).Set(float64(now.Unix()))
	log.Debug("federated bundle refreshed", "next_refresh", next)
	return true, nil
}

// store writes b unless it equals the stored bundle.
func (r *Refresher) store(ctx context.Context, current *spiffebundle.Bundle, cerr error, b *spiffebundle.Bundle, log interface {
	Info(string, ...any)
}) error {
	if cerr == nil && current != nil && current.Equal(b) {
		return nil
	}
	p, err := bundlecodec.ToProto(b)
	if err != nil {
		return fmt.Errorf("federation: convert fetched bundle: %w", err)
	}
	if _, err := r.cfg.Store.SetBundle(ctx, p); err != nil {
		return fmt.Errorf("federation: store fetched bundle: %w", err)
	}
	r.m.updates.WithLabelValues(b.TrustDomain().Name()).Inc()
	seq, _ := b.SequenceNumber()
	log.Info("federated bundle updated", "x509_authorities", len(b.X509Authorities()), "jwt_authorities", len(b.JWTAuthorities()), "sequence_number", seq)
	return nil
}

// interval is when to fetch again: the fetched (else the stored) bundle's
// refresh hint, at least MinRefresh; after a failure at most Retry.
func (r *Refresher) interval(current, fetched *spiffebundle.Bundle, err error) time.Duration {
	b := fetched
	if b == nil {
		b = current
	}
	d := DefaultRefreshHint
	if b != nil {
		if h, ok := b.RefreshHint(); ok && h > 0 {
			d = h
		}
	}
	d = max(d, r.cfg.MinRefresh)
	if err != nil {
		d = min(d, r.cfg.Retry)
	}
	return d
}

// Status is the last outcome of each relationship's fetch.
type Status struct {
	TrustDomain spiffeid.TrustDomain
	// Err is the last fetch's error, nil after a success or before the
	// first fetch.
	Err error
	// NextAttempt is when the next fetch is due.
	NextAttempt time.Time
}

// Statuses returns the status of every relationship, by trust domain.
func (r *Refresher) Statuses() []Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Status, 0, len(r.rels))
	for td := range r.rels {
		out = append(out, Status{TrustDomain: td, Err: r.last[td], NextAttempt: r.due[td]})
	}
	slices.SortFunc(out, func(a, b Status) int { return compare(a.TrustDomain.Name(), b.TrustDomain.Name()) })
	return out
}
