package secrets

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/rotation/eventlog"
)

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
	// leaseDue is signalled by HandleLease when the lease's item is due.
	leaseDue chan struct{}

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
		ctx: ctx, cancel: cancel, done: make(chan struct{}), wake: make(chan struct{}, 1), leaseDue: make(chan struct{}, 1),
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
		// On Close (no revoke) the item is left: it finds no source and
		// is dropped, and shutdown does not wait on etcd per secret.
		s.cancelLeaseItem(ctx)
		s.revokeLease(ctx)
	}
	for sub := range subs {
		sub.end(why)
	}
}

// run keeps the source current until it is stopped or idle too long.
func (s *source) run() {
	log := s.b.log.With("policy", s.policy.ID, "spiffe_id", s.id.String())
	backoff := time.Duration(0)
	var due time.Time // next scheduled action; zero: read now
	// scheduled: the next lease action waits for the scheduler's item
	// (HandleLease), not for due.
	scheduled := false
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
		if scheduled {
			wait = maxWait
		}
		if idle := s.idleDeadline(); !idle.IsZero() {
			wait = min(wait, idle.Sub(now))
		}
		forced := false
		if wait > 0 {
			timer := s.b.clock.NewTimer(wait)
			select {
			case <-s.ctx.Done():
				timer.Stop()
				return
			case <-s.wake:
				timer.Stop()
				continue
			case <-s.leaseDue:
				timer.Stop()
				forced = true
			case <-timer.C():
			}
			if !forced && (scheduled || s.b.clock.Now().Before(due)) {
				continue // woke for the idle deadline
			}
		}
		if s.ctx.Err() != nil {
			return
		}
		scheduled = false
		next, err := s.step(s.ctx, forced)
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
		if s.policy.Engine != EngineKV2 {
			s.mu.Lock()
			l := s.lease
			s.mu.Unlock()
			if l != nil && l.ttl > 0 {
				at, renew := leaseAction(l)
				scheduled = s.scheduleLease(s.ctx, l, at, renew)
			}
		}
	}
}

// maxWait bounds a source's sleep while the scheduler times its lease.
const maxWait = 24 * time.Hour

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
// With forced (the lease's scheduler item fell due) the lease action runs
// even if this replica's clock says it is not due yet.
func (s *source) step(ctx context.Context, forced bool) (time.Time, error) {
	switch s.policy.Engine {
	case EngineKV2:
		return s.stepKV2(ctx)
	default:
		return s.stepLeased(ctx, forced)
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
