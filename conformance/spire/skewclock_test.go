package spire

import (
	"sync"
	"time"

	sclock "github.com/signet-id/signet/clock"
)

// skewed is the wall clock read through now (nil: the wall clock itself).
// Its timers fire when now reaches their deadline, so moving the harness
// clock forward fires them as time passing would: the server's scheduler,
// asleep until a CA item falls due, wakes when the test jumps past the due
// time. Tickers run on real time.
func skewed(now func() time.Time) sclock.Clock {
	if now == nil {
		return nil
	}
	return skewedClock{Clock: sclock.Real(), now: now}
}

type skewedClock struct {
	sclock.Clock
	now func() time.Time
}

func (c skewedClock) Now() time.Time { return c.now() }

// skewPoll is how often a skewed timer compares now with its deadline.
const skewPoll = 20 * time.Millisecond

func (c skewedClock) NewTimer(d time.Duration) sclock.Timer {
	t := &skewTimer{now: c.now, c: make(chan time.Time, 1)}
	t.Reset(d)
	return t
}

// skewTimer polls now until its deadline; Stop and Reset end the poll, and
// drain C, so no stale value is received after they return.
type skewTimer struct {
	now  func() time.Time
	c    chan time.Time
	mu   sync.Mutex
	stop chan struct{} // nil when not pending
}

var _ sclock.Timer = (*skewTimer)(nil)

func (t *skewTimer) C() <-chan time.Time { return t.c }

func (t *skewTimer) Stop() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stopLocked()
}

func (t *skewTimer) stopLocked() bool {
	pending := t.stop != nil
	if pending {
		close(t.stop)
		t.stop = nil
	}
	select {
	case <-t.c:
	default:
	}
	return pending
}

func (t *skewTimer) Reset(d time.Duration) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	pending := t.stopLocked()
	deadline := t.now().Add(d)
	stop := make(chan struct{})
	t.stop = stop
	go func() {
		tick := time.NewTicker(skewPoll)
		defer tick.Stop()
		for {
			if now := t.now(); !now.Before(deadline) {
				t.mu.Lock()
				if t.stop == stop {
					t.stop = nil
					t.c <- now
				}
				t.mu.Unlock()
				return
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	return pending
}
