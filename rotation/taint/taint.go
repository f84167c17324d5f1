// Package taint waits for a forced rotation to finish: after an authority
// is tainted, it polls how many credentials that authority still signs
// until none are left, and reports how long the replacement took.
package taint

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Defaults for Options.
const (
	DefaultInterval = 500 * time.Millisecond
	DefaultTimeout  = 15 * time.Minute
)

// Counter returns how many credentials signed by the tainted authority are
// still in use.
type Counter func(ctx context.Context) (int, error)

// Progress is reported whenever the remaining count changes.
type Progress struct {
	// Initial is the largest count seen (including Options.Initial).
	Initial   int
	Remaining int
	Elapsed   time.Duration
}

// Options tune Wait. The zero value is usable.
type Options struct {
	// Interval between polls. Default DefaultInterval.
	Interval time.Duration
	// Timeout bounds the wait. Default DefaultTimeout.
	Timeout time.Duration
	// Start is when the rotation began (the taint); elapsed times are
	// measured from it. Default: when Wait is called.
	Start time.Time
	// Initial is the count observed before the taint, if known.
	Initial int
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// OnProgress, if set, is called after the first poll and whenever the
	// remaining count changes.
	OnProgress func(Progress)
}

// Result is the outcome of a completed wait.
type Result struct {
	// Replaced is how many credentials were replaced: the largest count
	// seen.
	Replaced int
	// Elapsed is the time from Start until none was left.
	Elapsed time.Duration
	// Polls is how many times the counter was called.
	Polls int
}

// NotReplacedError is returned when the wait ended (timeout, cancellation
// or a failing counter) before every credential was replaced.
type NotReplacedError struct {
	Initial, Remaining int
	Elapsed            time.Duration
	Err                error
}

func (e *NotReplacedError) Error() string {
	return fmt.Sprintf("taint: %d of %d credentials not yet replaced after %s: %v", e.Remaining, e.Initial, e.Elapsed.Round(time.Millisecond), e.Err)
}

func (e *NotReplacedError) Unwrap() error { return e.Err }

// Wait polls count until it returns 0 and reports how long that took. The
// loop is bounded by opts.Timeout and ctx.
func Wait(ctx context.Context, count Counter, opts Options) (Result, error) {
	if count == nil {
		return Result{}, errors.New("taint: no counter")
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Start.IsZero() {
		opts.Start = opts.Now()
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()

	initial, last := max(opts.Initial, 0), -1
	polls := 0
	for {
		n, err := count(ctx)
		polls++
		elapsed := opts.Now().Sub(opts.Start)
		if err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return Result{Replaced: initial, Elapsed: elapsed, Polls: polls}, &NotReplacedError{Initial: initial, Remaining: max(last, 0), Elapsed: elapsed, Err: err}
		}
		initial = max(initial, n)
		if n != last && opts.OnProgress != nil {
			opts.OnProgress(Progress{Initial: initial, Remaining: n, Elapsed: elapsed})
		}
		last = n
		if n == 0 {
			return Result{Replaced: initial, Elapsed: elapsed, Polls: polls}, nil
		}
		t := time.NewTimer(opts.Interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return Result{Replaced: initial, Elapsed: opts.Now().Sub(opts.Start), Polls: polls},
				&NotReplacedError{Initial: initial, Remaining: n, Elapsed: opts.Now().Sub(opts.Start), Err: ctx.Err()}
		case <-t.C:
		}
	}
}
