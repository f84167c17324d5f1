package scheduler

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestRenewAtBounds(t *testing.T) {
	issued := t0
	life := 24 * time.Hour
	notAfter := issued.Add(life)
	lo, hi := issued.Add(life/2), issued.Add(life*8/10)

	for _, tc := range []struct {
		name string
		r    fixedReader
		want time.Time
	}{
		{"all zero bits gives 50%", 0x00, lo},
		{"all one bits gives 80%", 0xff, hi},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := RenewAt(issued, notAfter, tc.r)
			// 0xff..ff is 1-2^-53 of the window: within a nanosecond of 80%.
			if d := got.Sub(tc.want); d < -time.Microsecond || d > 0 {
				t.Fatalf("RenewAt = %v, want %v", got, tc.want)
			}
		})
	}

	// A deterministic stream: every draw inside the window, and the window
	// covered evenly (10 deciles of 10000 draws).
	rng := rand.NewChaCha8([32]byte{1, 2, 3})
	var deciles [10]int
	const n = 10000
	for range n {
		got := RenewAt(issued, notAfter, rng)
		if got.Before(lo) || got.After(hi) {
			t.Fatalf("RenewAt = %v outside [%v, %v]", got, lo, hi)
		}
		d := int(10 * float64(got.Sub(lo)) / float64(hi.Sub(lo)))
		deciles[min(d, 9)]++
	}
	for i, c := range deciles {
		if c < n/10*8/10 || c > n/10*12/10 {
			t.Errorf("decile %d has %d of %d draws: %v", i, c, n, deciles)
		}
	}
}

func TestRenewAtEdgeCases(t *testing.T) {
	if got := RenewAt(t0, t0, fixedReader(0x80)); !got.Equal(t0) {
		t.Errorf("zero lifetime: %v, want issuedAt", got)
	}
	if got := RenewAt(t0, t0.Add(-time.Hour), fixedReader(0x80)); !got.Equal(t0) {
		t.Errorf("negative lifetime: %v, want issuedAt", got)
	}
	if got := RenewAt(t0, t0.Add(time.Hour), errReader{}); !got.Equal(t0.Add(30 * time.Minute)) {
		t.Errorf("failing rand: %v, want the 50%% point", got)
	}
	// A lifetime near the int64 limit does not overflow.
	long := t0.Add(200 * 365 * 24 * time.Hour)
	if got := RenewAt(t0, long, fixedReader(0xff)); got.Before(t0) || got.After(long) {
		t.Errorf("long lifetime: %v outside the lifetime", got)
	}
}

func TestBackoff(t *testing.T) {
	for _, tc := range []struct {
		attempt     int
		base, limit time.Duration
		want        time.Duration
	}{
		{0, time.Second, time.Minute, time.Second},
		{1, time.Second, time.Minute, time.Second},
		{2, time.Second, time.Minute, 2 * time.Second},
		{3, time.Second, time.Minute, 4 * time.Second},
		{6, time.Second, time.Minute, 32 * time.Second},
		{7, time.Second, time.Minute, time.Minute},
		{1000, time.Second, time.Minute, time.Minute},
		{3, time.Second, 0, time.Second}, // limit below base
		{5, 0, time.Minute, 0},
	} {
		if got := Backoff(tc.attempt, tc.base, tc.limit); got != tc.want {
			t.Errorf("Backoff(%d, %v, %v) = %v, want %v", tc.attempt, tc.base, tc.limit, got, tc.want)
		}
	}
}
