// Package fakeclock is a manually advanced clock.Clock for tests: time
// stands still until Advance or Set moves it, and timers and tickers fire
// in time order as it passes them. Production code must not import it.
package fakeclock

import (
	"context"
	"sync"
	"time"

	"github.com/signet-id/signet/clock"
)

// Clock is a fake clock.Clock. The zero value is not usable; use New.
type Clock struct {
	mu      sync.Mutex
	now     time.Time
	seq     uint64
	waiters []*waiter     // pending timers and running tickers
	changed chan struct{} // closed and replaced when waiters change
}

var _ clock.Clock = (*Clock)(nil)

// waiter is a pending timer (period 0) or a running ticker.
type waiter struct {
	at     time.Time
	period time.Duration
	seq    uint64 // creation order, to fire equal deadlines stably
	c      chan time.Time
}

// New returns a fake clock reading start.
func New(start time.Time) *Clock {
	return &Clock{now: start, changed: make(chan struct{})}
}

// Now returns the fake time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer returns a timer that fires once the clock has moved d on; a
// non-positive d fires at once.
func (c *Clock) NewTimer(d time.Duration) clock.Timer {
	t := &timer{c: c, w: &waiter{c: make(chan time.Time, 1)}}
	t.Reset(d)
	return t
}

// NewTicker returns a ticker firing every d of fake time. It panics if
// d <= 0, as time.NewTicker does.
func (c *Clock) NewTicker(d time.Duration) clock.Ticker {
	if d <= 0 {
		panic("fakeclock: non-positive interval for NewTicker")
	}
	t := &ticker{c: c, w: &waiter{c: make(chan time.Time, 1)}}
	t.Reset(d)
	return t
}

// Advance moves the clock d forward, firing every timer and ticker tick
// due on the way in time order. A ticker passed several times fires each
// time, but, as with time.Ticker, a tick is dropped while the previous one
// is still unread. Advance does not wait for receivers to act.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.advanceLocked(c.now.Add(d))
}

// Set moves the clock to t. Forward, it fires what is due as Advance
// does; backward, it fires nothing (deadlines stay where they were).
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.Before(c.now) {
		c.now = t
		return
	}
	c.advanceLocked(t)
}

func (c *Clock) advanceLocked(to time.Time) {
	fired := false
	for {
		w := c.earliestLocked()
		if w == nil || w.at.After(to) {
			break
		}
		c.now = w.at
		dropped := false
		select {
		case w.c <- w.at:
		default: // the previous tick is unread: drop this one
			dropped = true
		}
		fired = true
		if w.period == 0 {
			c.removeLocked(w)
			continue
		}
		w.at = w.at.Add(w.period)
		if dropped {
			// Until another waiter fires, the tick stays unread and
			// further ticks would be dropped too: skip them, so a long
			// Advance over a short period costs no more than a few.
			limit := to
			for _, o := range c.waiters {
				if o != w && o.at.Before(limit) {
					limit = o.at
				}
			}
			if n := limit.Sub(w.at) / w.period; n > 0 {
				w.at = w.at.Add(n * w.period)
			}
		}
	}
	c.now = to
	if fired {
		c.notifyLocked()
	}
}

func (c *Clock) earliestLocked() *waiter {
	var first *waiter
	for _, w := range c.waiters {
		if first == nil || w.at.Before(first.at) || (w.at.Equal(first.at) && w.seq < first.seq) {
			first = w
		}
	}
	return first
}

// removeLocked drops w and reports whether it was pending.
func (c *Clock) removeLocked(w *waiter) bool {
	for i, x := range c.waiters {
		if x == w {
			c.waiters = append(c.waiters[:i], c.waiters[i+1:]...)
			return true
		}
	}
	return false
}

// scheduleLocked (re)arms w d from now: a timer with d <= 0 fires at once.
func (c *Clock) scheduleLocked(w *waiter, d time.Duration) {
	// Like time.Timer since Go 1.23: no stale value after Stop or Reset.
	select {
	case <-w.c:
	default:
	}
	c.seq++
	w.seq, w.at = c.seq, c.now.Add(d)
	if w.period == 0 && d <= 0 {
		w.c <- c.now
		return
	}
	c.waiters = append(c.waiters, w)
}

// Timers returns the number of pending timers and running tickers.
func (c *Clock) Timers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

// Next returns when the earliest pending timer or ticker fires.
func (c *Clock) Next() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if w := c.earliestLocked(); w != nil {
		return w.at, true
	}
	return time.Time{}, false
}

// WaitForTimers blocks until at least n timers and tickers are pending, or
// ctx ends (returning its error). A test calls it before Advance to know
// that the loop under test is waiting on the clock.
func (c *Clock) WaitForTimers(ctx context.Context, n int) error {
	for {
		c.mu.Lock()
		have, ch := len(c.waiters), c.changed
		c.mu.Unlock()
		if have >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (c *Clock) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

type timer struct {
	c *Clock
	w *waiter
}

var _ clock.Timer = (*timer)(nil)

func (t *timer) C() <-chan time.Time { return t.w.c }

func (t *timer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	pending := t.c.removeLocked(t.w)
	select {
	case <-t.w.c:
	default:
	}
	if pending {
		t.c.notifyLocked()
	}
	return pending
}

func (t *timer) Reset(d time.Duration) bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	pending := t.c.removeLocked(t.w)
	t.c.scheduleLocked(t.w, d)
	t.c.notifyLocked()
	return pending
}

type ticker struct {
	c *Clock
	w *waiter
}

var _ clock.Ticker = (*ticker)(nil)

func (t *ticker) C() <-chan time.Time { return t.w.c }

func (t *ticker) Stop() {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	select {
	case <-t.w.c: // no stale tick after Stop, as time.Ticker
	default:
	}
	if t.c.removeLocked(t.w) {
		t.c.notifyLocked()
	}
}

func (t *ticker) Reset(d time.Duration) {
	if d <= 0 {
		panic("fakeclock: non-positive interval for Ticker.Reset")
	}
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	t.c.removeLocked(t.w)
	t.w.period = d
	t.c.scheduleLocked(t.w, d)
	t.c.notifyLocked()
}
