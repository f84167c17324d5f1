package federation

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	bundlecodec "github.com/signet-id/signet/bundle"
	"github.com/signet-id/signet/clock"
	"github.com/signet-id/signet/tlspolicy"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// Store is what the refresher needs of the server's store.
type Store interface {
	ListRelationships(ctx context.Context, pageSize int, pageToken string) ([]*types.FederationRelationship, string, error)
	GetBundle(ctx context.Context, td spiffeid.TrustDomain) (*types.Bundle, error)
	SetBundle(ctx context.Context, b *types.Bundle) (*types.Bundle, error)
}

// Defaults of Config.
const (
	// DefaultRefreshHint is the refresh interval of a bundle that carries
	// no refresh hint (SPIRE's).
	DefaultRefreshHint = 5 * time.Minute
	// DefaultMinRefresh is the shortest refresh interval honoured, however
	// small the hint (SPIRE's minimum refresh hint).
	DefaultMinRefresh = time.Minute
	// DefaultRetry bounds the wait before retrying a failed fetch.
	DefaultRetry = 30 * time.Second
	// DefaultReloadInterval is how often relationships are re-read from
	// the store (a change on this replica reloads at once).
	DefaultReloadInterval = 10 * time.Second
	// DefaultFetchTimeout bounds one fetch.
	DefaultFetchTimeout = 30 * time.Second
)

// Config configures a Refresher.
type Config struct {
	// TrustDomain is the server's own trust domain.
	TrustDomain spiffeid.TrustDomain
	Store       Store
	// NotFound is the store's "no such bundle" error (errors.Is).
	NotFound error
	// Static are relationships from the configuration file; they override
	// stored relationships with the same trust domain.
	Static []Relationship
	// Leader reports whether this replica refreshes on schedule (one
	// replica of an HA deployment does); nil means always. Refresh on
	// demand works on every replica.
	Leader func() bool
	// LocalBundle is the server's own bundle, for https_spiffe endpoints
	// of its own trust domain.
	LocalBundle func() *spiffebundle.Bundle
	// WebRoots verify https_web endpoints (nil: the system roots).
	WebRoots *x509.CertPool

	MinRefresh     time.Duration
	Retry          time.Duration
	ReloadInterval time.Duration
	FetchTimeout   time.Duration

	Clock    clock.Clock
	Logger   *slog.Logger
	Registry prometheus.Registerer
}

// Refresher keeps federated bundles current: one loop that fetches each
// relationship's bundle when it is due and stores it when it changed.
type Refresher struct {
	cfg     Config
	fetcher *fetcher
	log     *slog.Logger
	reload  chan struct{}
	m       refreshMetrics

	mu   sync.Mutex
	rels map[spiffeid.TrustDomain]Relationship
	due  map[spiffeid.TrustDomain]time.Time
	// last is the outcome of each trust domain's last fetch.
	last map[spiffeid.TrustDomain]error
}

type refreshMetrics struct {
	refreshes   *prometheus.CounterVec
	lastSuccess *prometheus.GaugeVec
	updates     *prometheus.CounterVec
}

// New returns a Refresher; Run drives it.
func New(cfg Config) (*Refresher, error) {
	if cfg.Store == nil {
		return nil, errors.New("federation: store is required")
	}
	for _, rel := range cfg.Static {
		if err := rel.check(cfg.TrustDomain); err != nil {
			return nil, err
		}
	}
	if cfg.MinRefresh <= 0 {
		cfg.MinRefresh = DefaultMinRefresh
	}
	if cfg.Retry <= 0 {
		cfg.Retry = DefaultRetry
	}
	if cfg.ReloadInterval <= 0 {
		cfg.ReloadInterval = DefaultReloadInterval
	}
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = DefaultFetchTimeout
	}
	if cfg.Leader == nil {
		cfg.Leader = func() bool { return true }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	cfg.Clock = clock.Or(cfg.Clock)
	r := &Refresher{
		cfg:    cfg,
		log:    cfg.Logger.With("component", "federation"),
		reload: make(chan struct{}, 1),
		rels:   map[spiffeid.TrustDomain]Relationship{},
		due:    map[spiffeid.TrustDomain]time.Time{},
		last:   map[spiffeid.TrustDomain]error{},
	}
	r.fetcher = &fetcher{bundle: r.storedBundle, webRoots: cfg.WebRoots, timeout: cfg.FetchTimeout, policy: tlspolicy.Policy{AllowClassical: true}}
	r.m.refreshes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "signet_server_federation_refreshes_total",
		Help: "Federated bundle fetches from bundle endpoints, by trust domain and result (success or failure).",
	}, []string{"trust_domain", "result"})
	r.m.lastSuccess = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "signet_server_federation_last_refresh_timestamp_seconds",
		Help: "Unix time of the last successful fetch of each federated trust domain's bundle.",
	}, []string{"trust_domain"})
	r.m.updates = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "signet_server_federation_bundle_updates_total",
		Help: "Fetched federated bundles that differed from the stored one and replaced it, by trust domain.",
	}, []string{"trust_domain"})
	if err := registerAll(cfg.Registry, r.m.refreshes, r.m.lastSuccess, r.m.updates); err != nil {
		return nil, err
	}
	return r, nil
}

func registerAll(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("federation: register metrics: %w", err)
		}
	}
	return nil
}

func (r *Refresher) storedBundle(ctx context.Context, td spiffeid.TrustDomain) (*spiffebundle.Bundle, error) {
	if td == r.cfg.TrustDomain && r.cfg.LocalBundle != nil {
		return r.cfg.LocalBundle(), nil
	}
	p, err := r.cfg.Store.GetBundle(ctx, td)
	if err != nil {
		if r.isNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("federation: read bundle of %q: %w", td.Name(), err)
	}
	b, err := bundlecodec.FromProto(p)
	if err != nil {
		return nil, fmt.Errorf("federation: stored bundle of %q: %w", td.Name(), err)
	}
	return b, nil
}

func (r *Refresher) isNotFound(err error) bool {
	return r.cfg.NotFound != nil && errors.Is(err, r.cfg.NotFound)
}
