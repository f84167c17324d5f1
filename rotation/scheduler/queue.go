package scheduler

import (
	"context"
	"fmt"
	"math"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Limits on reads.
const (
	// DefaultDueLimit is the number of items DueBefore returns for
	// limit <= 0.
	DefaultDueLimit = 1000
	// MaxDueLimit bounds the items one DueBefore call returns.
	MaxDueLimit = 10000
	// getBatch bounds the gets in one read transaction.
	getBatch = 100
)

// Schedule creates the item, or replaces the item with the same ID: its
// record and due-index key are written in one transaction that also
// removes the old due-index key. Rescheduling an item whose handler is
// running supersedes that run: its result is discarded when it completes.
func (s *Scheduler) Schedule(ctx context.Context, it Item) error {
	if err := it.validate(); err != nil {
		return err
	}
	ik := s.keys.item(it.ID)
	dk := s.keys.due(unixNanos(it.DueAt), it.ID)
	val := encodeItem(it)

	// Fast path: a new item.
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(ik), "=", 0)).
		Then(clientv3.OpPut(ik, val), clientv3.OpPut(dk, "")).
		Else(clientv3.OpGet(ik)).
		Commit()
	for range maxAttempts {
		if err != nil {
			return fmt.Errorf("scheduler: schedule %s: %w", it.ID, err)
		}
		if resp.Succeeded {
			return nil
		}
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 { // deleted in between: create again
			resp, err = s.cli.Txn(ctx).
				If(clientv3.Compare(clientv3.CreateRevision(ik), "=", 0)).
				Then(clientv3.OpPut(ik, val), clientv3.OpPut(dk, "")).
				Else(clientv3.OpGet(ik)).
				Commit()
			continue
		}
		ops := []clientv3.Op{clientv3.OpPut(ik, val), clientv3.OpPut(dk, "")}
		if old, derr := decodeItem(kvs[0].Value); derr == nil {
			if odk := s.keys.due(unixNanos(old.DueAt), it.ID); odk != dk {
				ops = append(ops, clientv3.OpDelete(odk))
			}
		} else {
			// The old due key cannot be derived; if one is left it is
			// stale (its ModRevision differs from the item's) and the
			// leader deletes it when it comes due.
			s.log.Warn("scheduler: replacing undecodable item", "id", it.ID, "err", derr)
		}
		resp, err = s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(ik), "=", kvs[0].ModRevision)).
			Then(ops...).
			Else(clientv3.OpGet(ik)).
			Commit()
	}
	return fmt.Errorf("%w: schedule %s", ErrConflict, it.ID)
}

// Cancel deletes the item and its due-index key. A handler already running
// for it completes without effect. It returns ErrNotFound if there is no
// such item.
func (s *Scheduler) Cancel(ctx context.Context, id string) error {
	ik := s.keys.item(id)
	for range maxAttempts {
		resp, err := s.cli.Get(ctx, ik)
		if err != nil {
			return fmt.Errorf("scheduler: cancel %s: %w", id, err)
		}
		if len(resp.Kvs) == 0 {
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		kv := resp.Kvs[0]
		ops := []clientv3.Op{clientv3.OpDelete(ik)}
		if old, derr := decodeItem(kv.Value); derr == nil {
			ops = append(ops, clientv3.OpDelete(s.keys.due(unixNanos(old.DueAt), id)))
		}
		tr, err := s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(ik), "=", kv.ModRevision)).
			Then(ops...).
			Commit()
		if err != nil {
			return fmt.Errorf("scheduler: cancel %s: %w", id, err)
		}
		if tr.Succeeded {
			return nil
		}
	}
	return fmt.Errorf("%w: cancel %s", ErrConflict, id)
}

// Get returns the item with the given ID (pending or in flight).
func (s *Scheduler) Get(ctx context.Context, id string) (Item, error) {
	resp, err := s.cli.Get(ctx, s.keys.item(id))
	if err != nil {
		return Item{}, fmt.Errorf("scheduler: get %s: %w", id, err)
	}
	if len(resp.Kvs) == 0 {
		return Item{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return decodeItem(resp.Kvs[0].Value)
}

// Count returns the number of items (pending and in flight).
func (s *Scheduler) Count(ctx context.Context) (int64, error) {
	resp, err := s.cli.Get(ctx, s.keys.items(), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("scheduler: count: %w", err)
	}
	return resp.Count, nil
}

// CountDue returns the number of pending items due at or before t (the
// backlog when t is now).
func (s *Scheduler) CountDue(ctx context.Context, t time.Time) (int64, error) {
	resp, err := s.cli.Get(ctx, s.keys.dueIndex(), clientv3.WithRange(s.dueEnd(t)), clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("scheduler: count due: %w", err)
	}
	return resp.Count, nil
}

// DueBefore returns up to limit pending items due at or before t, earliest
// first (ties by ID). Items in flight are not included.
func (s *Scheduler) DueBefore(ctx context.Context, t time.Time, limit int) ([]Item, error) {
	if limit <= 0 {
		limit = DefaultDueLimit
	}
	limit = min(limit, MaxDueLimit)
	ents, err := s.scanDue(ctx, t, limit)
	if err != nil {
		return nil, err
	}
	out := make([]Item, 0, len(ents))
	for start := 0; start < len(ents); start += getBatch {
		chunk := ents[start:min(start+getBatch, len(ents))]
		ops := make([]clientv3.Op, len(chunk))
		for i, e := range chunk {
			ops[i] = clientv3.OpGet(s.keys.item(e.id))
		}
		resp, err := s.cli.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return nil, fmt.Errorf("scheduler: due items: %w", err)
		}
		for i, r := range resp.Responses {
			kvs := r.GetResponseRange().Kvs
			if len(kvs) == 0 || kvs[0].ModRevision != chunk[i].rev {
				continue // changed since the scan
			}
			it, err := decodeItem(kvs[0].Value)
			if err != nil {
				return nil, err
			}
			out = append(out, it)
		}
	}
	return out, nil
}

// dueEntry is one due-index key.
type dueEntry struct {
	key string
	id  string
	ns  int64
	rev int64 // ModRevision, equal to the item's while the key is current
}

// scanDue reads up to limit due-index keys due at or before t. Its cost
// in etcd grows with the backlog (due items), not with the items
// scheduled for later.
func (s *Scheduler) scanDue(ctx context.Context, t time.Time, limit int) ([]dueEntry, error) {
	resp, err := s.cli.Get(ctx, s.keys.dueIndex(),
		clientv3.WithRange(s.dueEnd(t)), clientv3.WithLimit(int64(limit)), clientv3.WithKeysOnly())
	if err != nil {
		return nil, fmt.Errorf("scheduler: scan due: %w", err)
	}
	ents := make([]dueEntry, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		ns, id, err := s.keys.parseDue(string(kv.Key))
		if err != nil {
			s.log.Warn("scheduler: skipping malformed due key", "err", err)
			continue
		}
		ents = append(ents, dueEntry{key: string(kv.Key), id: id, ns: ns, rev: kv.ModRevision})
	}
	return ents, nil
}

// nextDue returns the due time of the earliest pending item due after t
// and no later than t+horizon. The horizon keeps the scan cheap: etcd
// walks the whole range of a limited Get to count it, so the range must
// not reach the far future.
func (s *Scheduler) nextDue(ctx context.Context, t time.Time, horizon time.Duration) (int64, bool, error) {
	resp, err := s.cli.Get(ctx, s.dueEnd(t),
		clientv3.WithRange(s.dueEnd(t.Add(horizon))), clientv3.WithLimit(1), clientv3.WithKeysOnly())
	if err != nil {
		return 0, false, fmt.Errorf("scheduler: next due: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return 0, false, nil
	}
	ns, _, err := s.keys.parseDue(string(resp.Kvs[0].Key))
	if err != nil {
		return 0, false, err
	}
	return ns, true, nil
}

// dueEnd is the exclusive range end of due keys at or before t.
func (s *Scheduler) dueEnd(t time.Time) string {
	ns := unixNanos(t)
	if ns == math.MaxInt64 {
		return clientv3.GetPrefixRangeEnd(s.keys.dueIndex())
	}
	return s.keys.dueBound(ns + 1)
}
