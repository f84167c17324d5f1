package eventlog

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// DefaultRetentionBatch bounds the records one retention pass archives.
const DefaultRetentionBatch = 100_000

// RetentionPolicy says how much of the log stays in etcd. Records beyond
// it are archived (exported to a file, then deleted with an
// archive.anchor record; see Archive), never just deleted.
type RetentionPolicy struct {
	// KeepRecords is how many records stay in etcd; 0 means no count
	// bound.
	KeepRecords uint64
	// KeepAge archives records older than this; 0 means no age bound.
	KeepAge time.Duration
	// MaxBatch bounds the records one pass archives; 0 means
	// DefaultRetentionBatch.
	MaxBatch uint64
	// MinBatch: a pass archives nothing unless at least this many records
	// are due, so that the records a pass itself appends (a checkpoint,
	// the archive.anchor) do not start another one.
	MinBatch uint64
}

// Validate rejects a policy that bounds nothing.
func (p RetentionPolicy) Validate() error {
	if p.KeepRecords == 0 && p.KeepAge <= 0 {
		return errors.New("eventlog: retention policy bounds nothing: set a record count or an age")
	}
	return nil
}

// RetentionPlan is what one retention pass archives: records From..Upto
// (Upto 0: nothing). AtCheckpoint is true when record Upto is a signed
// checkpoint, so the archive file ends with a signature over its chain;
// otherwise the caller must make sure a checkpoint follows Upto (append
// one) before archiving, so that no record leaves etcd before a signed
// checkpoint covers it.
type RetentionPlan struct {
	From, Upto   uint64
	AtCheckpoint bool
}

// PlanRetention returns the records the policy moves out of etcd now: all
// records past the count or age bound, at most MaxBatch of them, cut at
// the last checkpoint among them if there is one. It reads O(log n)
// records for the age bound and scans backwards from the cut to the
// nearest checkpoint (at most MaxBatch records).
func (l *Log) PlanRetention(ctx context.Context, p RetentionPolicy, now time.Time) (RetentionPlan, error) {
	if err := p.Validate(); err != nil {
		return RetentionPlan{}, err
	}
	if p.MaxBatch == 0 {
		p.MaxBatch = DefaultRetentionBatch
	}
	s, err := l.State(ctx)
	if err != nil {
		return RetentionPlan{}, err
	}
	from := s.ArchivedSeq + 1
	if s.Seq < from {
		return RetentionPlan{}, nil
	}
	end := min(s.Seq, from+p.MaxBatch-1)
	var upto uint64
	if p.KeepRecords > 0 && s.Seq-s.ArchivedSeq > p.KeepRecords {
		upto = s.Seq - p.KeepRecords
	}
	if p.KeepAge > 0 && upto < end {
		old, err := l.lastBefore(ctx, max(upto+1, from), end, now.Add(-p.KeepAge))
		if err != nil {
			return RetentionPlan{}, err
		}
		upto = max(upto, old)
	}
	upto = min(upto, end)
	if upto < from || upto-from+1 < p.MinBatch {
		return RetentionPlan{}, nil
	}
	cp, err := l.lastCheckpoint(ctx, from, upto)
	if err != nil {
		return RetentionPlan{}, err
	}
	if cp != 0 {
		return RetentionPlan{From: from, Upto: cp, AtCheckpoint: true}, nil
	}
	return RetentionPlan{From: from, Upto: upto}, nil
}

// lastBefore returns the last seq in [lo, hi] whose record is stamped
// before cutoff (0 if none), by binary search: record times never
// decrease along the log.
func (l *Log) lastBefore(ctx context.Context, lo, hi uint64, cutoff time.Time) (uint64, error) {
	var found uint64
	for lo <= hi {
		mid := lo + (hi-lo)/2
		recs, err := l.Range(ctx, mid, 1)
		if err != nil {
			return 0, err
		}
		if len(recs) == 0 || recs[0].Seq != mid {
			return 0, fmt.Errorf("%w: record %d is missing (archived meanwhile?)", ErrInvalidRange, mid)
		}
		if recs[0].Time.Before(cutoff) {
			found, lo = mid, mid+1
		} else {
			if mid == 0 {
				break
			}
			hi = mid - 1
		}
	}
	return found, nil
}

// lastCheckpoint returns the seq of the last checkpoint record in
// [lo, hi] (0 if none), scanning backwards from hi.
func (l *Log) lastCheckpoint(ctx context.Context, lo, hi uint64) (uint64, error) {
	end := l.recKey(hi + 1)
	for {
		resp, err := l.cli.Get(ctx, l.recKey(lo), clientv3.WithRange(end),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(pageSize))
		if err != nil {
			return 0, fmt.Errorf("eventlog: scan for a checkpoint: %w", err)
		}
		for _, kv := range resp.Kvs {
			r, err := l.parseKV(kv)
			if err != nil {
				return 0, err
			}
			if r.Kind == KindCheckpoint {
				return r.Seq, nil
			}
		}
		if len(resp.Kvs) < pageSize {
			return 0, nil
		}
		end = string(resp.Kvs[len(resp.Kvs)-1].Key) // exclusive
	}
}
