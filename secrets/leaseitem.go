package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/signet-id/signet/rotation/scheduler"
)

// KindLeaseItem is the rotation scheduler kind of a lease's next renewal
// or replacement. The server routes it to Broker.HandleLease.
const KindLeaseItem = "vault.lease"

// ErrNotOwner is returned for a lease item that belongs to a source on
// another server replica; the caller forwards it to that replica (LeaseItemOwner).
var ErrNotOwner = errors.New("secrets: lease item of another replica")

// LeaseScheduler is the part of the rotation scheduler the broker uses to
// keep one item per lease (a *scheduler.Scheduler).
type LeaseScheduler interface {
	Schedule(ctx context.Context, it scheduler.Item) error
	Cancel(ctx context.Context, id string) error
}

var _ LeaseScheduler = (*scheduler.Scheduler)(nil)

// leasePayload is a lease item's payload. It names the lease by the hash
// of its ID only: lease IDs and accessors never go to etcd.
type leasePayload struct {
	Replica     string `json:"replica"`
	Policy      string `json:"policy"`
	SPIFFEID    string `json:"spiffe_id"`
	LeaseIDHash string `json:"lease_id_hash"`
	Renew       bool   `json:"renew"`
}

// leaseItemID names the item of source s: one per replica, policy and
// SPIFFE ID, hashed so that the key stays short.
func (b *Broker) leaseItemID(k sourceKey) string {
	return "vault/lease/" + HashID(b.cfg.Replica) + "/" + HashID(k.policy+"\x00"+k.id)
}

// LeaseItemOwner returns the broker replica (BrokerConfig.Replica) that
// holds the lease of a KindLeaseItem item.
func LeaseItemOwner(it scheduler.Item) (string, error) {
	var p leasePayload
	if err := json.Unmarshal(it.Payload, &p); err != nil {
		return "", fmt.Errorf("secrets: lease item %s: %w", it.ID, err)
	}
	return p.Replica, nil
}

// scheduleLease writes the item that makes l's next action (at, renew)
// due through the rotation scheduler. It reports false if there is no
// scheduler or the write failed (the source then keeps its own timer).
func (s *source) scheduleLease(ctx context.Context, l *lease, at time.Time, renew bool) bool {
	sch := s.b.cfg.Scheduler
	if sch == nil || l == nil || l.ttl <= 0 {
		return false
	}
	payload, _ := json.Marshal(leasePayload{
		Replica: s.b.cfg.Replica, Policy: s.policy.ID, SPIFFEID: s.id.String(),
		LeaseIDHash: l.hash(), Renew: renew,
	})
	it := scheduler.Item{ID: s.b.leaseItemID(s.key), Kind: KindLeaseItem, DueAt: at, NotAfter: l.expiresAt(), Payload: payload}
	// Not cancelled with the source: a write that lands after the stop's
	// Cancel would leave the item behind.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := sch.Schedule(ctx, it); err != nil {
		s.b.log.Warn("secrets: lease renewal not scheduled; this replica times it itself", "policy", s.policy.ID,
			"spiffe_id", s.id.String(), "lease_id_hash", l.hash(), "error", err)
		return false
	}
	return true
}

// cancelLeaseItem removes the source's item (best effort: an item left
// behind finds no source and is dropped).
func (s *source) cancelLeaseItem(ctx context.Context) {
	sch := s.b.cfg.Scheduler
	if sch == nil || s.policy.Engine == EngineKV2 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := sch.Cancel(ctx, s.b.leaseItemID(s.key)); err != nil && !errors.Is(err, scheduler.ErrNotFound) {
		s.b.log.Debug("secrets: lease item not cancelled", "policy", s.policy.ID, "error", err)
	}
}

// HandleLease runs a KindLeaseItem item: it wakes the source holding the
// lease, which renews or replaces it and schedules the lease's next item.
// It returns ErrNotOwner for an item of another replica; an item whose
// source or lease is gone is dropped (nil).
func (b *Broker) HandleLease(_ context.Context, it scheduler.Item) error {
	var p leasePayload
	if err := json.Unmarshal(it.Payload, &p); err != nil {
		return nil // malformed: nothing to retry
	}
	if p.Replica != b.cfg.Replica {
		return ErrNotOwner
	}
	b.mu.Lock()
	s := b.sources[sourceKey{p.Policy, p.SPIFFEID}]
	b.mu.Unlock()
	if s == nil {
		return nil
	}
	s.mu.Lock()
	current := s.lease != nil && s.lease.hash() == p.LeaseIDHash
	s.mu.Unlock()
	if !current {
		return nil
	}
	select {
	case s.leaseDue <- struct{}{}:
	default:
	}
	return nil
}

// Replica returns the name lease items of this broker carry.
func (b *Broker) Replica() string { return b.cfg.Replica }
