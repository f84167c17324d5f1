package scheduler

import "time"

// Clock is the scheduler's source of time: due times, sleeps until the
// next due item, rate limiting and retry backoff all use it.
// schedtest.Clock is a fake for tests.
type Clock interface {
	Now() time.Time
	// NewTimer returns a channel that receives once d has elapsed and a
	// function that stops the timer (reporting whether it was still
	// pending), like time.NewTimer.
	NewTimer(d time.Duration) (<-chan time.Time, func() bool)
}

// RealClock is the wall clock.
type RealClock struct{}

var _ Clock = RealClock{}

// Now returns time.Now().
func (RealClock) Now() time.Time { return time.Now() }

// NewTimer wraps time.NewTimer.
func (RealClock) NewTimer(d time.Duration) (<-chan time.Time, func() bool) {
	t := time.NewTimer(d)
	return t.C, t.Stop
}
