package scheduler

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// termState is the leader's state for one term.
type termState struct {
	t      Term
	cancel context.CancelCauseFunc
	sem    chan struct{} // one token per running handler
	wake   chan struct{} // buffered(1): something may be due earlier
	// wakeAt is the due time (Unix ns) the loop sleeps until; the watcher
	// wakes it for items due before that. MaxInt64 while not sleeping.
	wakeAt atomic.Int64

	// commits carries completions to the committers, which write several
	// in one transaction.
	commits chan *pendingCompletion

	mu      sync.Mutex
	running map[string]struct{}
}

// pendingCompletion is a worker's request to complete a claim.
type pendingCompletion struct {
	c    claim
	next *Item
	res  chan completionResult // buffered(1)
}

type completionResult struct {
	result string
	err    error
}

func (ts *termState) signal() {
	select {
	case ts.wake <- struct{}{}:
	default:
	}
}

func (ts *termState) isRunning(id string) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	_, ok := ts.running[id]
	return ok
}

func (ts *termState) setRunning(id string, on bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if on {
		ts.running[id] = struct{}{}
	} else {
		delete(ts.running, id)
	}
}

// runTerm is the leader's loop for term t. It returns when ctx ends or on
// ErrNotLeader or persistent etcd errors, after its handlers return.
func (s *Scheduler) runTerm(parent context.Context, t Term) error {
	ctx, cancel := context.WithCancelCause(parent)
	ts := &termState{
		t:       t,
		cancel:  cancel,
		sem:     make(chan struct{}, s.cfg.concurrency),
		wake:    make(chan struct{}, 1),
		commits: make(chan *pendingCompletion, s.cfg.concurrency),
		running: make(map[string]struct{}),
	}
	ts.wakeAt.Store(math.MaxInt64)
	var wg, committers sync.WaitGroup
	for range numCommitters {
		committers.Go(func() { s.commitLoop(ts) })
	}
	defer func() {
		cancel(nil) // handlers still running see the term end
		wg.Wait()   // and complete (or not) through the committers
		close(ts.commits)
		committers.Wait()
	}()

	n, err := s.requeue(ctx, t)
	if err != nil {
		return err
	}
	if n > 0 {
		s.log.Info("scheduler: requeued items of earlier leaders", "count", n)
	}

	// Watch the due index from the current revision on; every scan below
	// reads at a later revision, so no schedule falls between the two.
	hdr, err := s.cli.Get(ctx, t.Key)
	if err != nil {
		return fmt.Errorf("scheduler: %w", err)
	}
	wg.Go(func() { s.watchDue(ctx, ts, hdr.Header.Revision+1) })

	var lastGauges time.Time
	errs := 0
	fail := func(err error) error {
		if errors.Is(err, ErrNotLeader) || ctx.Err() != nil {
			return err
		}
		errs++
		s.log.Warn("scheduler: etcd error in dispatch loop", "err", err, "consecutive", errs)
		if errs >= maxConsecutiveErrors {
			return fmt.Errorf("scheduler: stepping down after %d consecutive errors: %w", errs, err)
		}
		if !sleepCtx(ctx, time.Duration(errs)*100*time.Millisecond) {
			return ctx.Err()
		}
		return nil
	}
	for {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		now := s.cfg.clock.Now()
		if now.Sub(lastGauges) >= s.cfg.gaugeInterval || now.Before(lastGauges) {
			lastGauges = now
			s.refreshGauges(ctx, now)
		}
		ents, err := s.scanDue(ctx, now, s.cfg.fetchBatch)
		if err != nil {
			if err := fail(err); err != nil {
				return err
			}
			continue
		}
		cands := ents[:0]
		seen := make(map[string]struct{}, len(ents))
		for _, e := range ents {
			if _, dup := seen[e.id]; dup || ts.isRunning(e.id) {
				continue
			}
			seen[e.id] = struct{}{}
			cands = append(cands, e)
		}
		if len(cands) > 0 {
			if err := s.dispatch(ctx, ts, cands, &wg); err != nil {
				if err := fail(err); err != nil {
					return err
				}
				continue
			}
			errs = 0
			continue
		}

		// Nothing to start now: sleep until the next due item, a wake-up
		// from the watcher or a finished handler, or the gauge refresh.
		next, ok, err := s.nextDue(ctx, now, s.cfg.gaugeInterval)
		if err != nil {
			if err := fail(err); err != nil {
				return err
			}
			continue
		}
		errs = 0
		sleep := s.cfg.gaugeInterval
		if ok {
			sleep = min(sleep, time.Duration(next-unixNanos(now)))
		}
		// Items scheduled before the end of this sleep wake the loop.
		ts.wakeAt.Store(unixNanos(now.Add(sleep)))
		timer := s.cfg.clock.NewTimer(sleep)
		select {
		case <-ctx.Done():
		case <-ts.wake:
		case <-timer.C():
		}
		timer.Stop()
		ts.wakeAt.Store(math.MaxInt64)
	}
}

// dispatch claims and starts handlers for cands, in order, as handler
// slots and rate tokens allow.
func (s *Scheduler) dispatch(ctx context.Context, ts *termState, cands []dueEntry, wg *sync.WaitGroup) error {
	release := func(n int) {
		for range n {
			<-ts.sem
		}
	}
	for len(cands) > 0 {
		select {
		case ts.sem <- struct{}{}:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		n := 1
	more:
		for n < min(len(cands), maxClaimBatch) {
			select {
			case ts.sem <- struct{}{}:
				n++
			default:
				break more
			}
		}
		granted, err := s.takeTokens(ctx, n)
		if err != nil {
			release(n)
			return err
		}
		release(n - granted)
		batch := cands[:granted]
		cands = cands[granted:]
		claims, err := s.claim(ctx, ts.t, batch)
		release(granted - len(claims))
		for _, c := range claims {
			s.running.Add(1)
			ts.setRunning(c.item.ID, true)
			wg.Go(func() { s.work(ctx, ts, c) })
		}
		if err != nil {
			if errors.Is(err, ErrNotLeader) {
				ts.cancel(err)
			}
			return err
		}
	}
	return nil
}

// takeTokens waits (on the scheduler's clock) for one rate token, then
// takes up to n-1 more that are available at once. It returns how many.
func (s *Scheduler) takeTokens(ctx context.Context, n int) (int, error) {
	now := s.cfg.clock.Now()
	r := s.limiter.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		timer := s.cfg.clock.NewTimer(d)
		select {
		case <-timer.C():
		case <-ctx.Done():
			timer.Stop()
			r.CancelAt(s.cfg.clock.Now())
			return 0, context.Cause(ctx)
		}
	}
	got := 1
	for got < n {
		now := s.cfg.clock.Now()
		r := s.limiter.ReserveN(now, 1)
		if r.DelayFrom(now) > 0 {
			r.CancelAt(now)
			break
		}
		got++
	}
	return got, nil
}

// work runs the handler for one claim and completes it.
func (s *Scheduler) work(ctx context.Context, ts *termState, c claim) {
	defer func() {
		ts.setRunning(c.item.ID, false)
		<-ts.sem
		s.running.Add(-1)
		ts.signal()
	}()
	it := c.item
	log := s.log.With("id", it.ID, "kind", it.Kind, "attempt", it.Attempt, "leader_rev", ts.t.Rev)
	start := s.cfg.clock.Now()
	if !it.NotAfter.IsZero() && start.After(it.NotAfter) {
		log.Warn("scheduler: item runs after its credential expired", "due_at", it.DueAt, "not_after", it.NotAfter)
	}

	var next *Item
	var herr error
	if c.decodeErr != nil {
		// An undecodable record would fail for ever: drop it loudly.
		log.Error("scheduler: dropping undecodable item", "err", c.decodeErr)
	} else {
		t0 := time.Now()
		next, herr = s.call(ctx, ts.t, it)
		s.m.latency.WithLabelValues(it.Kind).Observe(time.Since(t0).Seconds())
	}
	if herr != nil && ctx.Err() != nil {
		// The term ended under the handler: leave the claim for the next
		// leader, which requeues it at once.
		s.m.dispatched.WithLabelValues(it.Kind, "abandoned").Inc()
		log.Info("scheduler: handler interrupted by end of term", "err", herr)
		return
	}
	now := s.cfg.clock.Now()
	if herr == nil && next != nil {
		n := *next
		n.ID = it.ID
		if n.Kind == "" {
			n.Kind = it.Kind
		}
		if err := n.validate(); err != nil {
			herr = fmt.Errorf("scheduler: handler returned an invalid next item: %w", err)
		} else {
			next = &n
		}
	}
	retry := herr != nil
	if retry {
		n := it
		n.Attempt++
		delay := Backoff(n.Attempt, s.cfg.backoffBase, s.cfg.backoffMax)
		n.DueAt = now.Add(delay)
		next = &n
		log.Warn("scheduler: handler failed; retrying", "err", herr, "retry_in", delay)
	}

	// Complete even if the term just ended: the fence decides, and a
	// completion that still lands saves the next leader a re-run.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.completeTimeout())
	defer cancel()
	var result string
	var err error
	for attempt := 1; ; attempt++ {
		result, err = ts.complete(cctx, c, next)
		if err == nil || errors.Is(err, ErrNotLeader) || errors.Is(err, errClaimLost) ||
			attempt == 3 || !sleepCtx(cctx, time.Duration(attempt)*100*time.Millisecond) {
			break
		}
	}
	switch {
	case err == nil:
		if retry && result == "rescheduled" {
			result = "retry"
		}
	case errors.Is(err, ErrNotLeader), errors.Is(err, errClaimLost):
		result = "fenced"
		log.Warn("scheduler: completion fenced off; the next leader requeues the item", "err", err)
		ts.cancel(ErrNotLeader)
	default:
		result = "error"
		log.Error("scheduler: cannot complete item; stepping down so the next term requeues it", "err", err)
		ts.cancel(err)
	}
	s.m.dispatched.WithLabelValues(it.Kind, result).Inc()
}

// call runs the handler for it with the term in its context, a timeout,
// and panics turned into errors.
func (s *Scheduler) call(ctx context.Context, t Term, it Item) (next *Item, err error) {
	h := s.handler(it.Kind)
	if h == nil {
		return nil, fmt.Errorf("scheduler: no handler for kind %q", it.Kind)
	}
	hctx, cancel := context.WithTimeout(withTerm(ctx, t), s.cfg.handlerTimeout)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			next, err = nil, fmt.Errorf("scheduler: handler for %q panicked: %v", it.Kind, r)
		}
	}()
	it.Payload = append([]byte(nil), it.Payload...)
	return h.Handle(hctx, it)
}

// watchDue wakes the loop when an item is scheduled earlier than the time
// it sleeps until. On a compacted or broken watch it rewatches from the
// current revision and wakes the loop, which rescans.
func (s *Scheduler) watchDue(ctx context.Context, ts *termState, rev int64) {
	for failures := 0; ctx.Err() == nil; {
		wch := s.cli.Watch(clientv3.WithRequireLeader(ctx), s.keys.dueIndex(),
			clientv3.WithPrefix(), clientv3.WithRev(rev), clientv3.WithFilterDelete())
		for resp := range wch {
			if err := resp.Err(); err != nil {
				s.log.Debug("scheduler: due-index watch ended", "err", err)
				break
			}
			failures = 0
			rev = resp.Header.Revision + 1
			for _, ev := range resp.Events {
				if ns, _, err := s.keys.parseDue(string(ev.Kv.Key)); err == nil && ns <= ts.wakeAt.Load() {
					ts.signal()
					break
				}
			}
		}
		if ctx.Err() != nil {
			return
		}
		failures++
		if !sleepCtx(ctx, min(time.Duration(failures)*100*time.Millisecond, 2*time.Second)) {
			return
		}
		// Rewatch from now; the rescan this wakes covers everything before.
		resp, err := s.cli.Get(ctx, ts.t.Key)
		if err != nil {
			continue
		}
		rev = resp.Header.Revision + 1
		ts.signal()
	}
}

// refreshGauges updates the items and backlog gauges.
func (s *Scheduler) refreshGauges(ctx context.Context, now time.Time) {
	if n, err := s.Count(ctx); err == nil {
		s.m.items.Set(float64(n))
	}
	if n, err := s.CountDue(ctx, now); err == nil {
		s.m.backlog.Set(float64(n))
	}
}

// complete hands a completion to the committers and waits for its result.
func (ts *termState) complete(ctx context.Context, c claim, next *Item) (string, error) {
	p := &pendingCompletion{c: c, next: next, res: make(chan completionResult, 1)}
	select {
	case ts.commits <- p:
	case <-ctx.Done():
		return "", fmt.Errorf("scheduler: complete %s: %w", c.item.ID, ctx.Err())
	}
	select {
	case r := <-p.res:
		return r.result, r.err
	case <-ctx.Done():
		return "", fmt.Errorf("scheduler: complete %s: %w", c.item.ID, ctx.Err())
	}
}

// commitLoop writes the completions queued at once in one transaction
// (up to maxCompleteBatch); if that transaction's compares fail, it
// completes them one by one, which sorts out which ones changed.
func (s *Scheduler) commitLoop(ts *termState) {
	for p := range ts.commits {
		batch := []*pendingCompletion{p}
	drain:
		for len(batch) < maxCompleteBatch {
			select {
			case q, ok := <-ts.commits:
				if !ok {
					break drain
				}
				batch = append(batch, q)
			default:
				break drain
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.completeTimeout())
		if len(batch) > 1 {
			results, err := s.completeBatch(ctx, ts.t, batch)
			if err != nil || results != nil {
				for i, q := range batch {
					r := completionResult{err: err}
					if err == nil {
						r.result = results[i]
					}
					q.res <- r
				}
				cancel()
				continue
			}
		}
		for _, q := range batch {
			r, err := s.complete(ctx, ts.t, q.c, q.next)
			q.res <- completionResult{result: r, err: err}
		}
		cancel()
	}
}
