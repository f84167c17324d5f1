package secrets

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/signet-id/signet/clock"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/rotation/eventlog"
)

// Errors of the Broker, for errors.Is.
var (
	// ErrDenied: the SPIFFE ID does not match the policy.
	ErrDenied = errors.New("secrets: not authorized for this secret")
	// ErrRevoked: delivery stopped because the policy or the entry was
	// deleted (or the broker closed).
	ErrRevoked = errors.New("secrets: secret revoked")
)

// Event kinds the broker appends to the rotation event log.
const (
	KindLeaseIssued  = eventlog.KindVaultLeaseIssued
	KindLeaseRenewed = eventlog.KindVaultLeaseRenewed
	KindLeaseRevoked = eventlog.KindVaultLeaseRevoked
	KindLeaseExpired = eventlog.KindVaultLeaseExpired
)

// EventSink receives lease and version events (an *eventlog.Appender).
type EventSink interface {
	Append(ctx context.Context, e eventlog.Event) error
}

var _ EventSink = (*eventlog.Appender)(nil)

// BrokerConfig configures a Broker.
type BrokerConfig struct {
	// Client is the Vault client. Required.
	Client *Client
	// PollInterval is how often KV v2 metadata is polled for a new
	// version (and lease-less secrets are re-read). Default 30s.
	PollInterval time.Duration
	// IdleTimeout is how long a secret without subscribers is kept (and
	// its lease renewed) before it is dropped and its lease revoked, so
	// that a reconnecting agent does not cause a new lease. Default 1m.
	IdleTimeout time.Duration
	// MaxBackoff caps the retry interval while Vault fails. Default 30s.
	MaxBackoff time.Duration
	// Events, if set, receives vault.lease.* and secret.version.changed
	// events.
	Events EventSink
	// Actor names this server in events (its SPIFFE ID).
	Actor  string
	Clock  clock.Clock
	Logger *slog.Logger
	// Registerer, if set, receives the broker's metrics.
	Registerer prometheus.Registerer
	// Scheduler, if set, times every lease renewal and replacement: the
	// broker keeps one KindLeaseItem item per lease (its ID only hashed)
	// and acts when HandleLease is called for it. Without it each source
	// times its lease on Clock.
	Scheduler LeaseScheduler
	// Replica names this broker in lease items so that the server can
	// route an item to the replica holding the lease. Default: random.
	Replica string
}

// Broker reads secrets from Vault for policies and SPIFFE IDs and keeps
// them current for subscribers. It is safe for concurrent use.
type Broker struct {
	cfg    BrokerConfig
	client *Client
	clock  clock.Clock
	log    *slog.Logger
	m      *metrics

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	sources map[sourceKey]*source
	closed  bool
}

type sourceKey struct{ policy, id string }

// NewBroker returns a Broker. Close it to stop its goroutines.
func NewBroker(cfg BrokerConfig) (*Broker, error) {
	if cfg.Client == nil {
		return nil, errors.New("secrets: broker needs a vault client")
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 30 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = time.Minute
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Actor == "" {
		cfg.Actor = "signet-server"
	}
	if cfg.Replica == "" {
		var r [8]byte
		if _, err := rand.Read(r[:]); err != nil {
			return nil, fmt.Errorf("secrets: replica name: %w", err)
		}
		cfg.Replica = hex.EncodeToString(r[:])
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("secrets: register metrics: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Broker{
		cfg: cfg, client: cfg.Client, clock: cfg.Clock, log: cfg.Logger, m: m,
		ctx: ctx, cancel: cancel, sources: map[sourceKey]*source{},
	}, nil
}

// Watch subscribes id to the secret of policy p. It fails with ErrDenied
// if id does not match p. Callers must Close the subscription.
func (b *Broker) Watch(p Policy, id spiffeid.ID) (*Subscription, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if !p.Matches(id) {
		return nil, fmt.Errorf("%w: %s may not read secret %q", ErrDenied, id, p.ID)
	}
	key := sourceKey{p.ID, id.String()}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, fmt.Errorf("%w: broker closed", ErrRevoked)
	}
	src := b.sources[key]
	if src != nil && !src.samePolicy(p) {
		// The policy was replaced (deleted and created again): start
		// over with the new one.
		delete(b.sources, key)
		go src.stop(true, fmt.Errorf("%w: policy %q changed", ErrRevoked, p.ID))
		src = nil
	}
	if src == nil {
		src = b.newSource(p, id)
		b.sources[key] = src
	}
	return src.subscribe(), nil
}

// Revoke stops delivery of policy id to everyone and revokes the leases
// obtained for it. It returns once the leases are revoked (or Vault
// failed to answer; the leases then expire at their TTL).
func (b *Broker) Revoke(ctx context.Context, policyID string) {
	b.revokeWhere(ctx, func(k sourceKey) bool { return k.policy == policyID },
		fmt.Errorf("%w: policy %q deleted", ErrRevoked, policyID))
}

// RevokeFor stops delivery of policy policyID to id (its entry was
// deleted) and revokes the lease obtained for it.
func (b *Broker) RevokeFor(ctx context.Context, policyID string, id spiffeid.ID) {
	b.revokeWhere(ctx, func(k sourceKey) bool { return k.policy == policyID && k.id == id.String() },
		fmt.Errorf("%w: %s is no longer authorized for %q", ErrRevoked, id, policyID))
}

// RevokeID stops delivery of every secret to id and revokes the leases
// obtained for it.
func (b *Broker) RevokeID(ctx context.Context, id spiffeid.ID) {
	b.revokeWhere(ctx, func(k sourceKey) bool { return k.id == id.String() },
		fmt.Errorf("%w: %s is no longer registered", ErrRevoked, id))
}

func (b *Broker) revokeWhere(ctx context.Context, match func(sourceKey) bool, why error) {
	b.mu.Lock()
	var victims []*source
	for k, s := range b.sources {
		if match(k) {
			victims = append(victims, s)
			delete(b.sources, k)
		}
	}
	b.mu.Unlock()
	for _, s := range victims {
		s.stopCtx(ctx, true, why)
	}
}

// Close stops every source without revoking leases (they expire at their
// TTL; another server replica may serve the agents meanwhile) and ends
// every subscription.
func (b *Broker) Close() {
	b.mu.Lock()
	b.closed = true
	srcs := b.sources
	b.sources = map[sourceKey]*source{}
	b.mu.Unlock()
	for _, s := range srcs {
		s.stop(false, fmt.Errorf("%w: broker closed", ErrRevoked))
	}
	b.cancel()
	b.wg.Wait()
}

// drop removes an idle source from the map if it is still the one
// registered.
func (b *Broker) drop(s *source) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	// Watch subscribes under b.mu, so idleness checked here is stable.
	if b.sources[s.key] != s || !s.idleExpired(b.clock.Now()) {
		return false
	}
	delete(b.sources, s.key)
	return true
}

func (b *Broker) event(kind eventlog.Kind, s *source, details map[string]string) {
	if b.cfg.Events == nil {
		return
	}
	d := map[string]string{"policy": s.policy.ID, "path": s.policy.Path}
	for k, v := range details {
		d[k] = v
	}
	ev := eventlog.Event{Kind: kind, Subject: s.id.String(), Actor: b.cfg.Actor, Details: d}
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	if err := b.cfg.Events.Append(ctx, ev); err != nil {
		b.log.Warn("secrets: event not recorded", "kind", kind, "policy", s.policy.ID, "error", err)
	}
}
