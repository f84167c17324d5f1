package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/signet-id/signet/rotation/scheduler"
	"github.com/signet-id/signet/secrets"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Vault lease renewals are scheduler items (secrets.KindLeaseItem). The
// lease and its value live in the memory of the replica that streams the
// secret, while the scheduler runs items on its leader: the leader hands
// an item of another replica over through a short-lived key under that
// replica's kick prefix, which the replica watches. Items and kicks carry
// only the hash of a lease ID.

// leaseKickTTL bounds how long a kick for a replica that went away stays
// in etcd (seconds).
const leaseKickTTL = 120

func (s *Server) leaseKickPrefix(replica string) string {
	return "/signet-lease-kick/" + s.cfg.TrustDomain.Name() + "/" + replica + "/"
}

// leaseScheduler lets the broker, built before the scheduler, use it.
type leaseScheduler struct{ s *Server }

var _ secrets.LeaseScheduler = leaseScheduler{}

func (l leaseScheduler) Schedule(ctx context.Context, it scheduler.Item) error {
	if l.s.sched == nil {
		return errors.New("server: scheduler not started")
	}
	return l.s.sched.Schedule(ctx, it)
}

func (l leaseScheduler) Cancel(ctx context.Context, id string) error {
	if l.s.sched == nil {
		return errors.New("server: scheduler not started")
	}
	return l.s.sched.Cancel(ctx, id)
}

// handleLease runs a lease item on the leader: here if this replica holds
// the lease, else by a kick to the replica that does. The replica acting
// on the lease schedules its next item, superseding this one.
func (s *Server) handleLease(ctx context.Context, it scheduler.Item) (*scheduler.Item, error) {
	if s.leases == nil {
		return nil, nil // no Vault here (any more): drop
	}
	err := s.leases.HandleLease(ctx, it)
	if !errors.Is(err, secrets.ErrNotOwner) {
		return nil, err
	}
	owner, err := secrets.LeaseItemOwner(it)
	if err != nil || owner == "" {
		return nil, nil // malformed: drop
	}
	val, err := json.Marshal(it)
	if err != nil {
		return nil, fmt.Errorf("server: lease kick: %w", err)
	}
	grant, err := s.etcd.Grant(ctx, leaseKickTTL)
	if err != nil {
		return nil, fmt.Errorf("server: lease kick: %w", err)
	}
	if _, err := s.etcd.Put(ctx, s.leaseKickPrefix(owner)+it.ID, string(val), clientv3.WithLease(grant.ID)); err != nil {
		return nil, fmt.Errorf("server: lease kick: %w", err)
	}
	return nil, nil
}

// watchLeaseKicks runs the lease items the leader hands to this replica.
func (s *Server) watchLeaseKicks(ctx context.Context) {
	prefix := s.leaseKickPrefix(s.leases.Replica())
	run := func(key, val []byte) {
		var it scheduler.Item
		if err := json.Unmarshal(val, &it); err == nil {
			if err := s.leases.HandleLease(ctx, it); err != nil {
				s.log.Warn("lease kick not handled", "item", it.ID, "error", err)
			}
		}
		if _, err := s.etcd.Delete(ctx, string(key)); err != nil && ctx.Err() == nil {
			s.log.Debug("lease kick not deleted", "error", err)
		}
	}
	for ctx.Err() == nil {
		resp, err := s.etcd.Get(ctx, prefix, clientv3.WithPrefix())
		if err == nil {
			for _, kv := range resp.Kvs {
				run(kv.Key, kv.Value)
			}
			wch := s.etcd.Watch(clientv3.WithRequireLeader(ctx), prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
			for wr := range wch {
				if wr.Err() != nil {
					break
				}
				for _, ev := range wr.Events {
					if ev.Type == clientv3.EventTypePut {
						run(ev.Kv.Key, ev.Kv.Value)
					}
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}
