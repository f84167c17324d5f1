// Package clock is Signet's one source of time for loops and deadlines:
// a small Clock interface (Now, timers, tickers) with the wall clock as
// Real and a manually advanced fake in clock/fakeclock for tests.
package clock

import (
	"context"
	"time"
)

// Clock reads the time and makes timers and tickers. Production code
// takes one by injection (Real by default) so tests can run it on a fake.
type Clock interface {
	Now() time.Time
	// NewTimer returns a timer that fires once, d from now (at once when
	// d <= 0), like time.NewTimer.
	NewTimer(d time.Duration) Timer
	// NewTicker returns a ticker firing every d, like time.NewTicker; it
	// panics if d <= 0.
	NewTicker(d time.Duration) Ticker
}

// Timer is a one-shot timer, as *time.Timer: after Stop or Reset returns,
// no stale value is received from C.
type Timer interface {
	C() <-chan time.Time
	// Stop prevents the timer from firing; it reports whether it was
	// still pending.
	Stop() bool
	// Reset makes the timer fire d from now; it reports whether it was
	// still pending.
	Reset(d time.Duration) bool
}

// Ticker delivers ticks every period, as *time.Ticker: a tick is dropped
// when the previous one has not been received.
type Ticker interface {
	C() <-chan time.Time
	Stop()
	// Reset stops the ticker and restarts it with period d.
	Reset(d time.Duration)
}

// Real returns the wall clock.
func Real() Clock { return wall{} }

// Or returns c, or the wall clock when c is nil: the default for an
// injected Clock field.
func Or(c Clock) Clock {
	if c == nil {
		return Real()
	}
	return c
}

// Since returns the time elapsed on c since t.
func Since(c Clock, t time.Time) time.Duration { return c.Now().Sub(t) }

// Until returns the duration on c until t.
func Until(c Clock, t time.Time) time.Duration { return t.Sub(c.Now()) }

// Sleep waits d on c. It reports false, at once, if ctx ends first; a
// non-positive d returns at once, true unless ctx has ended.
func Sleep(ctx context.Context, c Clock, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := c.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}

type wall struct{}

var _ Clock = wall{}

func (wall) Now() time.Time { return time.Now() }

func (wall) NewTimer(d time.Duration) Timer { return wallTimer{time.NewTimer(d)} }

func (wall) NewTicker(d time.Duration) Ticker { return wallTicker{time.NewTicker(d)} }

type wallTimer struct{ t *time.Timer }

var _ Timer = wallTimer{}

func (r wallTimer) C() <-chan time.Time        { return r.t.C }
func (r wallTimer) Stop() bool                 { return r.t.Stop() }
func (r wallTimer) Reset(d time.Duration) bool { return r.t.Reset(d) }

type wallTicker struct{ t *time.Ticker }

var _ Ticker = wallTicker{}

func (r wallTicker) C() <-chan time.Time   { return r.t.C }
func (r wallTicker) Stop()                 { r.t.Stop() }
func (r wallTicker) Reset(d time.Duration) { r.t.Reset(d) }
