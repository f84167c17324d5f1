package scheduler

import (
	"encoding/binary"
	"io"
	"math"
	"time"
)

// Renewal window as fractions of a credential's lifetime.
const (
	RenewMinFraction = 0.5
	RenewMaxFraction = 0.8
)

// RenewAt returns a renewal time drawn uniformly between 50% and 80% of
// the lifetime [issuedAt, notAfter], reading 8 bytes from rand, so that a
// fleet of credentials issued together does not renew together.
//
// If notAfter is not after issuedAt it returns issuedAt (renew now). If
// rand fails it returns the earliest time of the window (50%), which is
// safe: renewing early never lets a credential expire.
func RenewAt(issuedAt, notAfter time.Time, rand io.Reader) time.Time {
	life := notAfter.Sub(issuedAt)
	if life <= 0 {
		return issuedAt
	}
	lo := time.Duration(float64(life) * RenewMinFraction)
	hi := time.Duration(float64(life) * RenewMaxFraction)
	var b [8]byte
	if _, err := io.ReadFull(rand, b[:]); err != nil {
		return issuedAt.Add(lo)
	}
	// 53 random bits give a uniform float64 in [0, 1).
	u := float64(binary.BigEndian.Uint64(b[:])>>11) / (1 << 53)
	off := lo + time.Duration(u*float64(hi-lo))
	off = min(max(off, lo), hi)
	return issuedAt.Add(off)
}

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
