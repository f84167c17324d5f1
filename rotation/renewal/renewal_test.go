package renewal

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// fixedReader yields the same byte for ever.
type fixedReader byte

func (r fixedReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("no entropy") }

// TestDefaultTimes pins every fraction of Default against the arithmetic
// the callers spelled before the policy existed.
func TestDefaultTimes(t *testing.T) {
	p := Default()
	for _, tc := range []struct {
		name string
		life time.Duration
		got  func(nb, na time.Time) time.Time
		want func(life time.Duration) time.Duration // offset from nb
	}{
		{"renew 1h", time.Hour, p.RenewAt, func(l time.Duration) time.Duration { return l / 2 }},
		{"renew odd", 7*time.Second + 1, p.RenewAt, func(l time.Duration) time.Duration { return l / 2 }},
		{"pushed 1h", time.Hour, p.PushedRenewAt, func(l time.Duration) time.Duration { return l * 85 / 100 }},
		{"pushed odd", 333*time.Millisecond + 7, p.PushedRenewAt, func(l time.Duration) time.Duration { return l * 85 / 100 }},
		{"ca prepare 24h", 24 * time.Hour, p.CAPrepareAt, func(l time.Duration) time.Duration { return l / 2 }},
		{"ca activate 24h", 24 * time.Hour, p.CAActivateAt, func(l time.Duration) time.Duration { return l - l/6 }},
		{"ca activate odd", 24*time.Hour + 5, p.CAActivateAt, func(l time.Duration) time.Duration { return l - l/6 }},
		{"zero life", 0, p.RenewAt, func(time.Duration) time.Duration { return 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.got(t0, t0.Add(tc.life))
			if want := t0.Add(tc.want(tc.life)); !got.Equal(want) {
				t.Fatalf("got %v, want %v", got, want)
			}
		})
	}
}

func TestLeaseRenewAt(t *testing.T) {
	p := Default()
	for _, tc := range []struct {
		name      string
		ttl       time.Duration
		renewable bool
		want      time.Duration
	}{
		{"renewable 1h", time.Hour, true, 40 * time.Minute},
		{"renewable odd", 10*time.Second + 1, true, (10*time.Second + 1) * 2 / 3},
		{"non-renewable 1h", time.Hour, false, 51 * time.Minute},
		{"non-renewable odd", 10*time.Second + 1, false, (10*time.Second + 1) * 85 / 100},
		{"zero ttl", 0, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			at, renew := p.LeaseRenewAt(t0, tc.ttl, tc.renewable)
			if !at.Equal(t0.Add(tc.want)) || renew != tc.renewable {
				t.Fatalf("LeaseRenewAt = %v, %v; want %v, %v", at, renew, t0.Add(tc.want), tc.renewable)
			}
		})
	}
}

func TestFraction(t *testing.T) {
	for _, tc := range []struct {
		f     Fraction
		d     time.Duration
		want  time.Duration
		float float64
	}{
		{Fraction{1, 2}, 3, 1, 0.5},
		{Fraction{4, 5}, time.Second, 800 * time.Millisecond, 0.8},
		{Fraction{2, 3}, 10, 6, 2.0 / 3},
		{Fraction{85, 100}, time.Minute, 51 * time.Second, 0.85},
		{Fraction{1, 6}, 13, 2, 1.0 / 6},
	} {
		if got := tc.f.Of(tc.d); got != tc.want {
			t.Errorf("%v.Of(%v) = %v, want %v", tc.f, tc.d, got, tc.want)
		}
		if got := tc.f.Float(); got != tc.float {
			t.Errorf("%v.Float() = %v, want %v", tc.f, got, tc.float)
		}
	}
}

func TestJitteredBounds(t *testing.T) {
	p := Default()
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
			got := p.Jittered(issued, notAfter, tc.r)
			// 0xff..ff is 1-2^-53 of the window: within a nanosecond of 80%.
			if d := got.Sub(tc.want); d < -time.Microsecond || d > 0 {
				t.Fatalf("Jittered = %v, want %v", got, tc.want)
			}
		})
	}

	// A deterministic stream: every draw inside the window, and the window
	// covered evenly (10 deciles of 10000 draws).
	rng := rand.NewChaCha8([32]byte{1, 2, 3})
	var deciles [10]int
	const n = 10000
	for range n {
		got := p.Jittered(issued, notAfter, rng)
		if got.Before(lo) || got.After(hi) {
			t.Fatalf("Jittered = %v outside [%v, %v]", got, lo, hi)
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

func TestJitteredEdgeCases(t *testing.T) {
	p := Default()
	long := t0.Add(200 * 365 * 24 * time.Hour)
	for _, tc := range []struct {
		name     string
		notAfter time.Time
		r        interface{ Read([]byte) (int, error) }
		check    func(time.Time) bool
	}{
		{"zero lifetime", t0, fixedReader(0x80), func(g time.Time) bool { return g.Equal(t0) }},
		{"negative lifetime", t0.Add(-time.Hour), fixedReader(0x80), func(g time.Time) bool { return g.Equal(t0) }},
		{"failing rand gives 50%", t0.Add(time.Hour), errReader{}, func(g time.Time) bool { return g.Equal(t0.Add(30 * time.Minute)) }},
		// A lifetime near the int64 limit does not overflow.
		{"long lifetime", long, fixedReader(0xff), func(g time.Time) bool { return !g.Before(t0) && !g.After(long) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := p.Jittered(t0, tc.notAfter, tc.r); !tc.check(got) {
				t.Fatalf("Jittered = %v", got)
			}
		})
	}
}
