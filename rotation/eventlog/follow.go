package eventlog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/signet-id/signet/clock"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Follow streams the records with seq >= fromSeq (fromSeq 0: from the
// first record still in the log): first those already written, then new
// ones as they are appended, in order and without gaps. It reads what
// exists, then watches etcd from the revision it read at; when the watch
// is compacted (or a gap shows up) it re-reads from the last seq it sent.
// The channel is closed when ctx is done or the etcd client is closed.
func (l *Log) Follow(ctx context.Context, fromSeq uint64) (<-chan Record, error) {
	// Fail early if etcd cannot be read at all.
	if _, err := l.State(ctx); err != nil {
		return nil, err
	}
	ch := make(chan Record, 64)
	go l.follow(ctx, max(fromSeq, 1), ch)
	return ch, nil
}

func (l *Log) follow(ctx context.Context, next uint64, ch chan<- Record) {
	defer close(ch)
	send := func(r Record) bool {
		select {
		case ch <- r:
			next = r.Seq + 1
			return true
		case <-ctx.Done():
			return false
		}
	}
	backoff := 50 * time.Millisecond
	// Each iteration catches up by reading, then watches until the watch
	// ends; it ends for good when ctx is done or the client is closed.
	for ctx.Err() == nil && l.cli.Ctx().Err() == nil {
		recs, rev, err := l.rangeRev(ctx, next, pageSize)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			l.log.Warn("eventlog: follow: read failed, retrying", "from_seq", next, "error", err)
			if !clock.Sleep(ctx, clock.Real(), backoff) {
				return
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		for _, r := range recs {
			// r.Seq > next only when records before it were archived.
			if !send(r) {
				return
			}
		}
		if len(recs) == pageSize {
			continue // more to read before watching
		}
		if l.afterCatchUp != nil {
			l.afterCatchUp(rev)
		}
		relist, err := l.watchFrom(ctx, rev+1, &next, send)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			l.log.Warn("eventlog: follow: watch failed, re-reading", "from_seq", next, "error", err)
			if !clock.Sleep(ctx, clock.Real(), backoff) {
				return
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		if relist {
			l.log.Debug("eventlog: follow: re-reading", "from_seq", next)
		}
		backoff = 50 * time.Millisecond
	}
}

// watchFrom watches the records from revision rev and sends those that
// continue the sequence at *next. It returns relist=true when it must
// re-read from *next (compacted watch, or a record missing from the
// watch), or an error when the watch failed otherwise.
func (l *Log) watchFrom(ctx context.Context, rev int64, next *uint64, send func(Record) bool) (relist bool, err error) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := l.cli.Watch(wctx, l.recPrefix, clientv3.WithPrefix(), clientv3.WithRev(rev))
	for resp := range wch {
		if resp.CompactRevision != 0 || errors.Is(resp.Err(), rpctypes.ErrCompacted) {
			return true, nil
		}
		if err := resp.Err(); err != nil {
			return false, err
		}
		for _, ev := range resp.Events {
			if ev.Type != clientv3.EventTypePut {
				continue // archived records being deleted
			}
			r, err := l.parseKV(ev.Kv)
			if err != nil {
				return false, err
			}
			switch {
			case r.Seq < *next:
				continue
			case r.Seq > *next:
				return true, nil
			}
			if !send(r) {
				return false, ctx.Err()
			}
		}
	}
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	return false, fmt.Errorf("eventlog: watch closed")
}
