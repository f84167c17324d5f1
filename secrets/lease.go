package secrets

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	vault "github.com/hashicorp/vault/api"

	"github.com/signet-id/signet/rotation/renewal"
)

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

func (s *source) stepLeased(ctx context.Context, forced bool) (time.Time, error) {
	s.mu.Lock()
	l := s.lease
	s.mu.Unlock()
	now := s.b.clock.Now()
	if l != nil {
		at, renew := leaseAction(l)
		if now.Before(at) && !forced {
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
	s.b.log.Info("secrets: lease renewed", "policy", s.policy.ID, "spiffe_id", s.id.String(),
		"lease_id_hash", l.hash(), "ttl", granted.String(), "capped", !l.renew)
	// The audit event is recorded before the workloads hear of the
	// renewal, so the log never lags what was delivered.
	s.b.event(KindLeaseRenewed, s, map[string]string{"lease_id_hash": l.hash(), "ttl_seconds": strconv.Itoa(int(granted / time.Second))})
	if v != nil {
		s.publish(Update{Value: v})
	}
	return nil
}
