package secrets

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/rotation/eventlog"
	"github.com/signet-id/signet/rotation/renewal"
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
	KindLeaseIssued  = eventlog.KindVaultLeasePrefix + "issued"
	KindLeaseRenewed = eventlog.KindVaultLeasePrefix + "renewed"
	KindLeaseRevoked = eventlog.KindVaultLeasePrefix + "revoked"
	KindLeaseExpired = eventlog.KindVaultLeasePrefix + "expired"
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
	Clock  Clock
	Logger *slog.Logger
	// Registerer, if set, receives the broker's metrics.
	Registerer prometheus.Registerer
}

// Broker reads secrets from Vault for policies and SPIFFE IDs and keeps
// them current for subscribers. It is safe for concurrent use.
type Broker struct {
	cfg    BrokerConfig
	client *Client
	clock  Clock
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
		cfg.Clock = RealClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Actor == "" {
		cfg.Actor = "signet-server"
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

// Update is one message to a subscriber: a new Value, or (only while no
// value could be read yet) the error that prevents it.
type Update struct {
	Value *Value
	Err   error
}

// Subscription receives the current value of one secret for one SPIFFE
// ID at once (when known) and then every change. It holds only the latest
// update, so a slow reader never blocks the broker.
type Subscription struct {
	src  *source
	ch   chan Update
	done chan struct{}
	once sync.Once
	err  error // set before done is closed
}

// Updates delivers the secret's states.
func (s *Subscription) Updates() <-chan Update { return s.ch }

// Done is closed when the broker stops delivery (policy or entry deleted:
// Err wraps ErrRevoked).
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Err is why Done was closed.
func (s *Subscription) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Close stops the subscription.
func (s *Subscription) Close() { s.src.unsubscribe(s) }

func (s *Subscription) push(u Update) {
	select {
	case s.ch <- u:
		return
	default:
	}
	select { // drop the stale update, keep the latest
	case <-s.ch:
	default:
	}
	select {
	case s.ch <- u:
	default:
	}
}

func (s *Subscription) end(err error) {
	s.once.Do(func() {
		s.err = err
		close(s.done)
	})
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

func (b *Broker) event(kind string, s *source, details map[string]string) {
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

// lease is a Vault lease held in memory only.
type lease struct {
	id       string // sys/leases lease ID; empty for token leases
	accessor string // token leases: renewed and revoked by accessor
	ttl      time.Duration
	origTTL  time.Duration
	renew    bool // renewable and not yet capped by a max TTL
	obtained time.Time
}

func (l *lease) hash() string {
	if l.id != "" {
		return HashID(l.id)
	}
	return HashID(l.accessor)
}

func (l *lease) expiresAt() time.Time { return l.obtained.Add(l.ttl) }

// leaseAction says when the next renewal or replacement of l is due, by
// the renewal policy: renewable leases are renewed at 2/3 of their TTL;
// non-renewable ones (and renewable ones whose renewal was capped by a max
// TTL) are replaced by a new read at 85% of their TTL.
func leaseAction(l *lease) (at time.Time, renew bool) {
	return renewal.Default().LeaseRenewAt(l.obtained, l.ttl, l.renew)
}

// source is one secret for one SPIFFE ID: its current value, its lease,
// its subscribers and the goroutine that keeps it current.
type source struct {
	b      *Broker
	key    sourceKey
	policy Policy
	id     spiffeid.ID

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	wake   chan struct{}

	mu       sync.Mutex
	subs     map[*Subscription]struct{}
	cur      *Value
	lastErr  error
	lease    *lease
	kvVer    int
	kvStamp  time.Time
	count    int64 // leases obtained
	idleFrom time.Time
	stopped  bool
}

func (b *Broker) newSource(p Policy, id spiffeid.ID) *source {
	ctx, cancel := context.WithCancel(b.ctx)
	s := &source{
		b: b, key: sourceKey{p.ID, id.String()}, policy: p, id: id,
		ctx: ctx, cancel: cancel, done: make(chan struct{}), wake: make(chan struct{}, 1),
		subs: map[*Subscription]struct{}{},
	}
	b.wg.Add(1)
	b.m.watched.Inc()
	go func() {
		defer b.wg.Done()
		defer b.m.watched.Dec()
		defer close(s.done)
		s.run()
	}()
	return s
}

func (s *source) samePolicy(p Policy) bool {
	a, c := s.policy, p
	if a.ID != c.ID || a.SPIFFEIDPattern != c.SPIFFEIDPattern || a.Path != c.Path || a.Engine != c.Engine || a.Field != c.Field || len(a.Params) != len(c.Params) {
		return false
	}
	for k, v := range a.Params {
		if c.Params[k] != v {
			return false
		}
	}
	return a.Revision == 0 || c.Revision == 0 || a.Revision == c.Revision
}

func (s *source) subscribe() *Subscription {
	sub := &Subscription{src: s, ch: make(chan Update, 1), done: make(chan struct{})}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		sub.end(fmt.Errorf("%w: secret %q stopped", ErrRevoked, s.policy.ID))
		return sub
	}
	s.subs[sub] = struct{}{}
	s.idleFrom = time.Time{}
	if s.cur != nil {
		sub.push(Update{Value: s.cur})
	} else if s.lastErr != nil {
		sub.push(Update{Err: s.lastErr})
	}
	return sub
}

func (s *source) unsubscribe(sub *Subscription) {
	s.mu.Lock()
	if _, ok := s.subs[sub]; ok {
		delete(s.subs, sub)
		if len(s.subs) == 0 {
			s.idleFrom = s.b.clock.Now()
			s.poke()
		}
	}
	s.mu.Unlock()
	sub.end(errors.New("secrets: subscription closed"))
}

// poke wakes the run loop (to notice idleness).
func (s *source) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *source) publish(u Update) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u.Value != nil {
		s.cur, s.lastErr = u.Value, nil
	} else {
		if s.cur != nil {
			return // keep serving the last value
		}
		s.lastErr = u.Err
	}
	for sub := range s.subs {
		sub.push(u)
	}
}

// stop ends the source; with revoke it revokes the current lease first.
func (s *source) stop(revoke bool, why error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.stopCtx(ctx, revoke, why)
}

func (s *source) stopCtx(ctx context.Context, revoke bool, why error) {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	subs := s.subs
	s.subs = map[*Subscription]struct{}{}
	s.mu.Unlock()
	s.cancel()
	<-s.done
	if revoke {
		s.revokeLease(ctx)
	}
	for sub := range subs {
		sub.end(why)
	}
}

func (s *source) revokeLease(ctx context.Context) {
	s.mu.Lock()
	l := s.lease
	s.lease = nil
	s.mu.Unlock()
	if l == nil || (l.id == "" && l.accessor == "") {
		return
	}
	err := s.b.client.do(ctx, func(api *vault.Client) error {
		if l.id != "" {
			return vaultErr("revoke lease", "sys/leases/revoke", api.Sys().RevokeWithContext(ctx, l.id))
		}
		return vaultErr("revoke token", "auth/token/revoke-accessor", api.Auth().Token().RevokeAccessorWithContext(ctx, l.accessor))
	})
	s.b.m.observe("revoke", err)
	if err != nil {
		s.b.log.Warn("secrets: lease revocation failed; it expires at its TTL", "policy", s.policy.ID,
			"spiffe_id", s.id.String(), "lease_id_hash", l.hash(), "error", err)
		return
	}
	s.b.log.Info("secrets: lease revoked", "policy", s.policy.ID, "spiffe_id", s.id.String(), "lease_id_hash", l.hash())
	s.b.event(KindLeaseRevoked, s, map[string]string{"lease_id_hash": l.hash()})
}

// run keeps the source current until it is stopped or idle too long.
func (s *source) run() {
	log := s.b.log.With("policy", s.policy.ID, "spiffe_id", s.id.String())
	backoff := time.Duration(0)
	var due time.Time // next scheduled action; zero: read now
	failing := false
	for {
		now := s.b.clock.Now()
		if s.idleExpired(now) {
			if s.b.drop(s) {
				log.Debug("secrets: dropping idle secret")
				go s.stop(true, fmt.Errorf("%w: idle", ErrRevoked))
			}
			return
		}
		wait := due.Sub(now)
		if idle := s.idleDeadline(); !idle.IsZero() {
			wait = min(wait, idle.Sub(now))
		}
		if wait > 0 {
			ch, stopT := s.b.clock.NewTimer(wait)
			select {
			case <-s.ctx.Done():
				stopT()
				return
			case <-s.wake:
				stopT()
				continue
			case <-ch:
			}
			if s.b.clock.Now().Before(due) {
				continue // woke for the idle deadline
			}
		}
		if s.ctx.Err() != nil {
			return
		}
		next, err := s.step(s.ctx)
		if s.ctx.Err() != nil {
			return
		}
		if err != nil {
			backoff = min(max(2*backoff, time.Second), s.b.cfg.MaxBackoff)
			if !failing {
				log.Warn("secrets: vault read failed; keeping the last value and retrying", "error", err, "retry_in", backoff.String())
			} else {
				log.Debug("secrets: vault read failed again", "error", err, "retry_in", backoff.String())
			}
			failing = true
			s.publish(Update{Err: err})
			due = s.b.clock.Now().Add(backoff)
			continue
		}
		if failing {
			log.Info("secrets: vault reachable again")
		}
		failing, backoff = false, 0
		due = next
	}
}

func (s *source) idleDeadline() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.idleFrom.IsZero() {
		return time.Time{}
	}
	return s.idleFrom.Add(s.b.cfg.IdleTimeout)
}

func (s *source) idleExpired(now time.Time) bool {
	d := s.idleDeadline()
	return !d.IsZero() && !now.Before(d)
}

// step does the next due action and returns when the following one is due.
func (s *source) step(ctx context.Context) (time.Time, error) {
	switch s.policy.Engine {
	case EngineKV2:
		return s.stepKV2(ctx)
	default:
		return s.stepLeased(ctx)
	}
}

func (s *source) stepKV2(ctx context.Context) (time.Time, error) {
	mount, path := mustSplitKV2(s.policy.Path)
	poll := s.b.clock.Now().Add(s.b.cfg.PollInterval)
	s.mu.Lock()
	have, ver, stamp := s.cur != nil, s.kvVer, s.kvStamp
	s.mu.Unlock()
	if have {
		var md *vault.KVMetadata
		err := s.b.client.do(ctx, func(api *vault.Client) error {
			var err error
			md, err = api.KVv2(mount).GetMetadata(ctx, path)
			return kvErr("read metadata", s.policy.Path, err)
		})
		s.b.m.observe("kv2_poll", err)
		if err == nil && md != nil {
			cv := md.Versions[strconv.Itoa(md.CurrentVersion)]
			if md.CurrentVersion == ver && cv.CreatedTime.Equal(stamp) {
				return poll, nil
			}
		} else if err != nil && !errors.Is(err, ErrVaultDenied) {
			return time.Time{}, err
		}
		// Changed, or no metadata access: read the data.
	}
	var sec *vault.KVSecret
	err := s.b.client.do(ctx, func(api *vault.Client) error {
		var err error
		sec, err = api.KVv2(mount).Get(ctx, path)
		return kvErr("read", s.policy.Path, err)
	})
	s.b.m.observe("kv2_read", err)
	if err != nil {
		return time.Time{}, err
	}
	data, ct, err := encodeData(sec.Data, s.policy.Field)
	if err != nil {
		return time.Time{}, err
	}
	var newVer int
	var newStamp time.Time
	if sec.VersionMetadata != nil {
		newVer, newStamp = sec.VersionMetadata.Version, sec.VersionMetadata.CreatedTime
	}
	if have && newVer == ver && newStamp.Equal(stamp) {
		return poll, nil
	}
	s.mu.Lock()
	s.kvVer, s.kvStamp = newVer, newStamp
	s.mu.Unlock()
	v := &Value{
		Name: s.policy.ID, SPIFFEID: s.id, Data: data, ContentType: ct,
		Version: int64(newVer), UpdatedAt: s.b.clock.Now(),
	}
	s.publish(Update{Value: v})
	if have {
		s.b.log.Info("secrets: new secret version delivered", "policy", s.policy.ID, "spiffe_id", s.id.String(), "version", newVer)
		s.b.event(eventlog.KindSecretVersionChanged, s, map[string]string{"version": strconv.Itoa(newVer), "previous_version": strconv.Itoa(ver)})
	} else {
		s.b.log.Debug("secrets: secret read", "policy", s.policy.ID, "spiffe_id", s.id.String(), "version", newVer)
	}
	return poll, nil
}

func mustSplitKV2(p string) (string, string) {
	m, rest, _ := splitKV2(p)
	return m, rest
}

// kvErr maps KV helper errors (which wrap vault.ErrSecretNotFound for
// missing or deleted versions) to the package's errors.
func kvErr(op, path string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, vault.ErrSecretNotFound) {
		return fmt.Errorf("%w: %s %s: no current version", ErrVaultNotFound, op, path)
	}
	return vaultErr(op, path, err)
}

func (s *source) stepLeased(ctx context.Context) (time.Time, error) {
	s.mu.Lock()
	l := s.lease
	s.mu.Unlock()
	now := s.b.clock.Now()
	if l != nil {
		at, renew := leaseAction(l)
		if now.Before(at) {
			return at, nil
		}
		if renew {
			err := s.renew(ctx, l)
			if err == nil {
				at, _ := leaseAction(l)
				return at, nil
			}
			s.b.log.Warn("secrets: lease renewal failed; reading a new one", "policy", s.policy.ID,
				"spiffe_id", s.id.String(), "lease_id_hash", l.hash(), "error", err)
		}
		if !now.Before(l.expiresAt()) {
			s.b.event(KindLeaseExpired, s, map[string]string{"lease_id_hash": l.hash()})
		}
	}
	return s.readLeased(ctx)
}

// readLeased obtains a new lease (first read or replacement).
func (s *source) readLeased(ctx context.Context) (time.Time, error) {
	var sec *vault.Secret
	err := s.b.client.do(ctx, func(api *vault.Client) error {
		var err error
		if len(s.policy.Params) > 0 {
			body := make(map[string]any, len(s.policy.Params))
			for k, v := range s.policy.Params {
				body[k] = v
			}
			sec, err = api.Logical().WriteWithContext(ctx, s.policy.Path, body)
		} else {
			sec, err = api.Logical().ReadWithContext(ctx, s.policy.Path)
		}
		return vaultErr("read", s.policy.Path, err)
	})
	s.b.m.observe("leased_read", err)
	if err != nil {
		return time.Time{}, err
	}
	if sec == nil {
		return time.Time{}, fmt.Errorf("%w: read %s: empty response", ErrVaultNotFound, s.policy.Path)
	}
	now := s.b.clock.Now()
	var (
		data map[string]any
		l    *lease
	)
	if sec.Auth != nil && sec.Auth.ClientToken != "" {
		a := sec.Auth
		data = map[string]any{
			"client_token":   a.ClientToken,
			"accessor":       a.Accessor,
			"policies":       a.Policies,
			"lease_duration": a.LeaseDuration,
			"renewable":      a.Renewable,
		}
		ttl := time.Duration(a.LeaseDuration) * time.Second
		l = &lease{accessor: a.Accessor, ttl: ttl, origTTL: ttl, renew: a.Renewable, obtained: now}
	} else {
		data = sec.Data
		ttl := time.Duration(sec.LeaseDuration) * time.Second
		l = &lease{id: sec.LeaseID, ttl: ttl, origTTL: ttl, renew: sec.Renewable && sec.LeaseID != "", obtained: now}
	}
	enc, ct, err := encodeData(data, s.policy.Field)
	if err != nil {
		// The new lease is useless to the workload: give it back.
		s.mu.Lock()
		old := s.lease
		s.lease = l
		s.mu.Unlock()
		s.revokeLease(ctx)
		s.mu.Lock()
		s.lease = old
		s.mu.Unlock()
		return time.Time{}, err
	}
	s.mu.Lock()
	old := s.lease
	s.lease = l
	s.count++
	count := s.count
	s.mu.Unlock()
	v := &Value{
		Name: s.policy.ID, SPIFFEID: s.id, Data: enc, ContentType: ct, Version: count,
		LeaseIDHash: l.hash(), LeaseTTL: l.ttl, Renewable: l.renew, UpdatedAt: now,
	}
	if l.ttl > 0 {
		v.ExpiresAt = l.expiresAt()
	}
	s.publish(Update{Value: v})
	details := map[string]string{"lease_id_hash": l.hash(), "ttl_seconds": strconv.Itoa(int(l.ttl / time.Second)), "renewable": strconv.FormatBool(l.renew)}
	if old != nil {
		details["replaces"] = old.hash()
	}
	if l.ttl > 0 {
		s.b.log.Info("secrets: lease obtained", "policy", s.policy.ID, "spiffe_id", s.id.String(),
			"lease_id_hash", l.hash(), "ttl", l.ttl.String(), "renewable", l.renew, "replaces", old != nil)
		s.b.event(KindLeaseIssued, s, details)
	}
	if l.ttl <= 0 {
		return now.Add(s.b.cfg.PollInterval), nil
	}
	at, _ := leaseAction(l)
	return at, nil
}

// renew extends l (updating it in place) and pushes the new expiry.
func (s *source) renew(ctx context.Context, l *lease) error {
	var sec *vault.Secret
	inc := int(l.origTTL / time.Second)
	err := s.b.client.do(ctx, func(api *vault.Client) error {
		var err error
		if l.id != "" {
			sec, err = api.Sys().RenewWithContext(ctx, l.id, inc)
			return vaultErr("renew lease", "sys/leases/renew", err)
		}
		sec, err = api.Auth().Token().RenewAccessorWithContext(ctx, l.accessor, inc)
		return vaultErr("renew token", "auth/token/renew-accessor", err)
	})
	s.b.m.observe("renew", err)
	if err != nil {
		return err
	}
	if sec == nil {
		return errors.New("secrets: renew: empty response")
	}
	granted := time.Duration(sec.LeaseDuration) * time.Second
	renewable := sec.Renewable
	if sec.Auth != nil {
		granted = time.Duration(sec.Auth.LeaseDuration) * time.Second
		renewable = sec.Auth.Renewable
	}
	if granted <= 0 {
		return errors.New("secrets: renew: no TTL granted")
	}
	now := s.b.clock.Now()
	s.mu.Lock()
	l.obtained, l.ttl = now, granted
	// A renewal that grants less than asked hit the lease's max TTL:
	// renewing again cannot help, so the lease is replaced before 85%.
	l.renew = renewable && granted >= l.origTTL
	var v *Value
	if s.cur != nil {
		c := *s.cur
		c.LeaseTTL, c.ExpiresAt, c.Renewable, c.UpdatedAt = granted, l.expiresAt(), l.renew, now
		v = &c
	}
	s.mu.Unlock()
	if v != nil {
		s.publish(Update{Value: v})
	}
	s.b.log.Info("secrets: lease renewed", "policy", s.policy.ID, "spiffe_id", s.id.String(),
		"lease_id_hash", l.hash(), "ttl", granted.String(), "capped", !l.renew)
	s.b.event(KindLeaseRenewed, s, map[string]string{"lease_id_hash": l.hash(), "ttl_seconds": strconv.Itoa(int(granted / time.Second))})
	return nil
}
