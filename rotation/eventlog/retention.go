package eventlog

import (
	"context"
	"errors"
	"time"
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
// the last checkpoint among them if there is one.
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
	// The count bound gives a cut directly; the age bound needs a scan.
	var upto uint64
	if p.KeepRecords > 0 && s.Seq-s.ArchivedSeq > p.KeepRecords {
		upto = s.Seq - p.KeepRecords
	}
	end := min(s.Seq, from+p.MaxBatch-1)
	scanTo := min(max(upto, from), end)
	if p.KeepAge > 0 {
		scanTo = end // records older than the cutoff may lie past the count cut
	}
	cutoff := now.Add(-p.KeepAge)
	var lastCP, lastOld uint64
	for next := from; next <= scanTo; {
		recs, err := l.Range(ctx, next, int(min(scanTo-next+1, pageSize)))
		if err != nil {
			return RetentionPlan{}, err
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			if r.Seq > scanTo {
				break
			}
			if p.KeepAge > 0 && r.Time.Before(cutoff) {
				lastOld = r.Seq
			}
			if r.Kind == KindCheckpoint && r.Seq <= max(upto, lastOld) {
				lastCP = r.Seq
			}
			next = r.Seq + 1
		}
		if p.KeepAge > 0 && lastOld < next-1 && upto < next {
			break // records are in time order: the rest are younger
		}
	}
	upto = min(max(upto, lastOld), end)
	if upto < from || upto-from+1 < p.MinBatch {
		return RetentionPlan{}, nil
	}
	if lastCP >= from && lastCP <= upto {
		return RetentionPlan{From: from, Upto: lastCP, AtCheckpoint: true}, nil
	}
	return RetentionPlan{From: from, Upto: upto}, nil
}
