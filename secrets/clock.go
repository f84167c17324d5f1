package secrets

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// Clock is the broker's source of time (the same shape as
// rotation/scheduler.Clock, so its fake clock works here too).
type Clock interface {
	Now() time.Time
	// NewTimer returns a channel that receives once d has elapsed and a
	// function that stops the timer.
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

// sleep waits for d on clock; it reports false if ctx ended first.
func sleep(ctx context.Context, clock Clock, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	ch, stop := clock.NewTimer(d)
	defer stop()
	select {
	case <-ctx.Done():
		return false
	case <-ch:
		return true
	}
}

// HashID returns the first 16 bytes of the SHA-256 of a lease ID or token
// accessor, in hex: the only form in which they are logged, stored or sent
// to the event log. Empty stays empty.
func HashID(id string) string {
	if id == "" {
		return ""
	}
	h := sha256.Sum256([]byte(id))
	return hex.EncodeToString(h[:16])
}
