package scheduler

import (
	"math"
	"time"
)

// Backoff returns the delay before retry number attempt (1 for the first
// retry): base doubled for every further attempt, capped at limit.
// attempt < 1 is treated as 1.
func Backoff(attempt int, base, limit time.Duration) time.Duration {
	if base <= 0 {
		return 0
	}
	if limit < base {
		limit = base
	}
	if attempt < 1 {
		attempt = 1
	}
	// base * 2^(attempt-1) without overflow.
	shift := attempt - 1
	if shift >= 62 || float64(base)*math.Pow(2, float64(shift)) >= float64(limit) {
		return limit
	}
	return base << shift
}
