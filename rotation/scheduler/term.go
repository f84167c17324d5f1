package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Term identifies one leadership term: the leader's election key and that
// key's create revision. The key is bound to the leader's session lease;
// once the lease ends, no later key has the same create revision.
type Term struct {
	Key string
	Rev int64
}

// Cmp is the fence: a compare that holds only while the term lasts.
// Include it in every transaction whose effect must not outlive the
// leadership that decided it.
func (t Term) Cmp() clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(t.Key), "=", t.Rev)
}

type termCtxKey struct{}

func withTerm(ctx context.Context, t Term) context.Context {
	return context.WithValue(ctx, termCtxKey{}, t)
}

// TermFrom returns the leadership term a Handler runs under.
func TermFrom(ctx context.Context) (Term, bool) {
	t, ok := ctx.Value(termCtxKey{}).(Term)
	return t, ok
}

// claim is one item moved from the due index to inflight/<id>.
type claim struct {
	item        Item
	itemRev     int64 // ModRevision of items/<id> when claimed
	inflightRev int64 // ModRevision of inflight/<id>
	decodeErr   error
}

// claim claims the entries for term t in one transaction, or one by one if
// that fails. It returns the claims made; ErrNotLeader if t has ended.
func (s *Scheduler) claim(ctx context.Context, t Term, ents []dueEntry) ([]claim, error) {
	if len(ents) > 1 {
		cs, ok, err := s.claimTxn(ctx, t, ents)
		if err != nil || ok {
			return cs, err
		}
	}
	var out []claim
	for _, e := range ents {
		cs, ok, err := s.claimTxn(ctx, t, []dueEntry{e})
		if err != nil {
			return out, err
		}
		if ok {
			out = append(out, cs...)
			continue
		}
		if err := s.diagnoseClaim(ctx, t, e); err != nil {
			return out, err
		}
	}
	return out, nil
}

func (s *Scheduler) claimTxn(ctx context.Context, t Term, ents []dueEntry) ([]claim, bool, error) {
	now := unixNanos(s.cfg.clock.Now())
	cmps := make([]clientv3.Cmp, 0, 1+3*len(ents))
	ops := make([]clientv3.Op, 0, 3*len(ents))
	cmps = append(cmps, t.Cmp())
	for _, e := range ents {
		ik, fk := s.keys.item(e.id), s.keys.inflight(e.id)
		rec, _ := json.Marshal(inflightRecord{LeaderRev: t.Rev, ItemRev: e.rev, Replica: s.cfg.name, ClaimedNs: now})
		cmps = append(cmps,
			clientv3.Compare(clientv3.ModRevision(e.key), "=", e.rev),
			clientv3.Compare(clientv3.ModRevision(ik), "=", e.rev),
			clientv3.Compare(clientv3.CreateRevision(fk), "=", 0))
		ops = append(ops, clientv3.OpDelete(e.key), clientv3.OpPut(fk, string(rec)), clientv3.OpGet(ik))
	}
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return nil, false, fmt.Errorf("scheduler: claim: %w", err)
	}
	if !resp.Succeeded {
		return nil, false, nil
	}
	out := make([]claim, len(ents))
	for i, e := range ents {
		c := claim{itemRev: e.rev, inflightRev: resp.Header.Revision}
		kvs := resp.Responses[3*i+2].GetResponseRange().Kvs
		if len(kvs) == 1 {
			c.item, c.decodeErr = decodeItem(kvs[0].Value)
		} else {
			c.decodeErr = fmt.Errorf("%w: item %s vanished", ErrCorrupt, e.id)
		}
		if c.decodeErr != nil {
			c.item = Item{ID: e.id, Kind: "unknown"}
		}
		out[i] = c
	}
	return out, true, nil
}

// diagnoseClaim explains a failed single claim: ErrNotLeader if the term
// ended; otherwise it clears what blocks the item (a stale due key, a
// claim left by an earlier term) and returns nil so the scan retries.
func (s *Scheduler) diagnoseClaim(ctx context.Context, t Term, e dueEntry) error {
	ik, fk := s.keys.item(e.id), s.keys.inflight(e.id)
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(t.Key), clientv3.OpGet(e.key), clientv3.OpGet(ik), clientv3.OpGet(fk)).Commit()
	if err != nil {
		return fmt.Errorf("scheduler: claim %s: %w", e.id, err)
	}
	leader, due, item, infl := firstKV(resp, 0), firstKV(resp, 1), firstKV(resp, 2), firstKV(resp, 3)
	switch {
	case leader == nil || leader.CreateRevision != t.Rev:
		return ErrNotLeader
	case due == nil || due.ModRevision != e.rev:
		return nil // rescheduled or cancelled meanwhile
	case infl != nil:
		var rec inflightRecord
		if json.Unmarshal(infl.Value, &rec) == nil && rec.LeaderRev == t.Rev {
			return nil // our own run; it completes first
		}
		// A claim from an earlier term that requeue has not cleared.
		_, err := s.resolveStale(ctx, t, e.id, infl)
		return err
	case item == nil || item.ModRevision != due.ModRevision:
		// A due key that does not belong to the current item.
		r, err := s.cli.Txn(ctx).
			If(t.Cmp(), clientv3.Compare(clientv3.ModRevision(e.key), "=", e.rev)).
			Then(clientv3.OpDelete(e.key)).Commit()
		if err != nil {
			return fmt.Errorf("scheduler: delete stale due key %s: %w", e.id, err)
		}
		if !r.Succeeded {
			return s.checkTerm(ctx, t)
		}
		s.log.Warn("scheduler: deleted stale due key", "id", e.id)
		return nil
	}
	return nil
}

// complete ends a claim: it deletes the item (next == nil) or replaces it
// with next, and deletes the claim. The result is "done" or "rescheduled",
// or "superseded" if the item was rescheduled or cancelled while its
// handler ran (then only the claim is deleted).
func (s *Scheduler) complete(ctx context.Context, t Term, c claim, next *Item) (string, error) {
	ik, fk := s.keys.item(c.item.ID), s.keys.inflight(c.item.ID)
	ops := []clientv3.Op{clientv3.OpDelete(fk)}
	result := "done"
	if next == nil {
		ops = append(ops, clientv3.OpDelete(ik))
	} else {
		result = "rescheduled"
		ops = append(ops, clientv3.OpPut(ik, encodeItem(*next)),
			clientv3.OpPut(s.keys.due(unixNanos(next.DueAt), next.ID), ""))
	}
	resp, err := s.cli.Txn(ctx).
		If(t.Cmp(),
			clientv3.Compare(clientv3.ModRevision(fk), "=", c.inflightRev),
			clientv3.Compare(clientv3.ModRevision(ik), "=", c.itemRev)).
		Then(ops...).
		Else(clientv3.OpGet(t.Key), clientv3.OpGet(fk)).
		Commit()
	if err != nil {
		return "", fmt.Errorf("scheduler: complete %s: %w", c.item.ID, err)
	}
	if resp.Succeeded {
		return result, nil
	}
	if leader := firstKV(resp, 0); leader == nil || leader.CreateRevision != t.Rev {
		return "", ErrNotLeader
	}
	if infl := firstKV(resp, 1); infl == nil || infl.ModRevision != c.inflightRev {
		return "", errClaimLost
	}
	// The item changed under the running handler: the newer schedule wins.
	resp, err = s.cli.Txn(ctx).
		If(t.Cmp(), clientv3.Compare(clientv3.ModRevision(fk), "=", c.inflightRev)).
		Then(clientv3.OpDelete(fk)).
		Commit()
	if err != nil {
		return "", fmt.Errorf("scheduler: release %s: %w", c.item.ID, err)
	}
	if !resp.Succeeded {
		if err := s.checkTerm(ctx, t); err != nil {
			return "", err
		}
		return "", errClaimLost
	}
	return "superseded", nil
}

// completeBatch completes several claims in one transaction. It returns
// nil results (and no error) if any compare failed, for the caller to
// complete them one by one.
func (s *Scheduler) completeBatch(ctx context.Context, t Term, batch []*pendingCompletion) ([]string, error) {
	cmps := make([]clientv3.Cmp, 0, 1+2*len(batch))
	ops := make([]clientv3.Op, 0, 3*len(batch))
	results := make([]string, len(batch))
	cmps = append(cmps, t.Cmp())
	for i, p := range batch {
		ik, fk := s.keys.item(p.c.item.ID), s.keys.inflight(p.c.item.ID)
		cmps = append(cmps,
			clientv3.Compare(clientv3.ModRevision(fk), "=", p.c.inflightRev),
			clientv3.Compare(clientv3.ModRevision(ik), "=", p.c.itemRev))
		ops = append(ops, clientv3.OpDelete(fk))
		if p.next == nil {
			results[i] = "done"
			ops = append(ops, clientv3.OpDelete(ik))
		} else {
			results[i] = "rescheduled"
			ops = append(ops, clientv3.OpPut(ik, encodeItem(*p.next)),
				clientv3.OpPut(s.keys.due(unixNanos(p.next.DueAt), p.next.ID), ""))
		}
	}
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return nil, fmt.Errorf("scheduler: complete batch: %w", err)
	}
	if !resp.Succeeded {
		return nil, nil
	}
	return results, nil
}

// errClaimLost: the claim record was replaced or removed by someone else,
// which only a newer leader does.
var errClaimLost = errors.New("scheduler: claim taken over")

// requeue puts back the items claimed by earlier terms (whose leader died
// or lost its lease mid-run) and returns how many it requeued.
func (s *Scheduler) requeue(ctx context.Context, t Term) (int, error) {
	from, end := s.keys.inflights(), clientv3.GetPrefixRangeEnd(s.keys.inflights())
	n := 0
	for page := 0; ; page++ {
		resp, err := s.cli.Get(ctx, from, clientv3.WithRange(end), clientv3.WithLimit(500))
		if err != nil {
			return n, fmt.Errorf("scheduler: list claims: %w", err)
		}
		for _, kv := range resp.Kvs {
			var rec inflightRecord
			if json.Unmarshal(kv.Value, &rec) == nil && rec.LeaderRev == t.Rev {
				continue
			}
			ok, err := s.resolveStale(ctx, t, string(kv.Key)[len(s.keys.inflights()):], kv)
			if err != nil {
				return n, err
			}
			if ok {
				n++
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return n, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// resolveStale removes a claim left by an earlier term. If the item is
// unchanged since that claim, it goes back to the due index at its due
// time with Attempt+1 (reported as true); otherwise (rescheduled or
// cancelled since) only the claim is removed.
func (s *Scheduler) resolveStale(ctx context.Context, t Term, id string, infl *mvccpb.KeyValue) (bool, error) {
	ik, fk := s.keys.item(id), s.keys.inflight(id)
	var rec inflightRecord
	if err := json.Unmarshal(infl.Value, &rec); err != nil {
		rec = inflightRecord{} // undecodable: treat the item as changed
	}
	for range maxAttempts {
		resp, err := s.cli.Get(ctx, ik)
		if err != nil {
			return false, fmt.Errorf("scheduler: requeue %s: %w", id, err)
		}
		cmps := []clientv3.Cmp{t.Cmp(), clientv3.Compare(clientv3.ModRevision(fk), "=", infl.ModRevision)}
		ops := []clientv3.Op{clientv3.OpDelete(fk)}
		requeued := false
		if len(resp.Kvs) == 1 && resp.Kvs[0].ModRevision == rec.ItemRev {
			if it, err := decodeItem(resp.Kvs[0].Value); err == nil {
				it.Attempt++
				cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(ik), "=", rec.ItemRev))
				ops = append(ops, clientv3.OpPut(ik, encodeItem(it)), clientv3.OpPut(s.keys.due(unixNanos(it.DueAt), id), ""))
				requeued = true
			}
		}
		tr, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
		if err != nil {
			return false, fmt.Errorf("scheduler: requeue %s: %w", id, err)
		}
		if tr.Succeeded {
			if requeued {
				s.m.requeued.Inc()
				s.log.Info("scheduler: requeued item claimed by an earlier leader", "id", id, "claim_leader_rev", rec.LeaderRev)
			}
			return requeued, nil
		}
		if err := s.checkTerm(ctx, t); err != nil {
			return false, err
		}
		cur, err := s.cli.Get(ctx, fk)
		if err != nil {
			return false, fmt.Errorf("scheduler: requeue %s: %w", id, err)
		}
		if len(cur.Kvs) == 0 || cur.Kvs[0].ModRevision != infl.ModRevision {
			return false, nil // someone else resolved it
		}
		// The item changed between the read and the write: read again.
	}
	return false, fmt.Errorf("%w: requeue %s", ErrConflict, id)
}

// checkTerm returns ErrNotLeader if t has ended.
func (s *Scheduler) checkTerm(ctx context.Context, t Term) error {
	resp, err := s.cli.Get(ctx, t.Key)
	if err != nil {
		return fmt.Errorf("scheduler: check leadership: %w", err)
	}
	if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != t.Rev {
		return ErrNotLeader
	}
	return nil
}

func firstKV(resp *clientv3.TxnResponse, i int) *mvccpb.KeyValue {
	if i >= len(resp.Responses) {
		return nil
	}
	kvs := resp.Responses[i].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return nil
	}
	return kvs[0]
}
