package ca_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/conformance/svidspec"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time          { return c.t }
func (c *fakeClock) Advance(d time.Duration) { c.t = c.t.Add(d) }

func TestPersistsAcrossRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ca", "ca.json")
	m1, err := ca.New(ca.Config{TrustDomain: td, Path: path})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file mode %v, want 0600", fi.Mode().Perm())
	}
	m2, err := ca.New(ca.Config{TrustDomain: td, Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if !m1.Bundle().Equal(m2.Bundle()) {
		t.Fatal("bundle changed across restart")
	}
	c1, _ := m1.X509Authority()
	if err := svidspec.CheckCA(c1); err != nil {
		t.Fatal(err)
	}
	if got := c1.NotAfter.Sub(c1.NotBefore); got < 24*time.Hour || got > 24*time.Hour+time.Minute {
		t.Fatalf("CA lifetime %v, want 24h", got)
	}
}

func TestLifecycle(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m, err := ca.New(ca.Config{TrustDomain: td, Now: clk.Now, CATTL: 6 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	first, _ := m.X509Authority()
	firstKID, _ := m.JWTKey()
	steps := []struct {
		advance       time.Duration
		wantX509Slots int
		wantRotated   bool // active differs from the first
	}{
		{time.Hour, 1, false},              // 1h of 6h: nothing
		{2 * time.Hour, 2, false},          // 3h: half-life passed -> prepared
		{time.Hour + time.Minute, 2, true}, // 4h01m: < 1/6 (1h) remaining? no, 2h remain
		{time.Hour, 2, true},               // 5h01m: <1h remaining -> activated
		{time.Hour, 2, true},               // 6h01m: first dropped, next prepared
	}
	// Step 3 expectation: 1h59m remain > 1h, so not yet active.
	steps[2].wantRotated = false
	for i, s := range steps {
		clk.Advance(s.advance)
		if _, err := m.Rotate(); err != nil {
			t.Fatal(err)
		}
		if got := len(m.X509Slots()); got != s.wantX509Slots {
			t.Fatalf("step %d: %d X.509 slots, want %d", i, got, s.wantX509Slots)
		}
		cur, _ := m.X509Authority()
		if rotated := !cur.Equal(first); rotated != s.wantRotated {
			t.Fatalf("step %d: rotated = %v, want %v", i, rotated, s.wantRotated)
		}
		if got := len(m.Bundle().X509Authorities()); got != s.wantX509Slots {
			t.Fatalf("step %d: bundle has %d authorities, want %d", i, got, s.wantX509Slots)
		}
	}
	for _, c := range m.Bundle().X509Authorities() {
		if c.Equal(first) {
			t.Fatal("expired first authority still in the bundle")
		}
	}
	if kid, _ := m.JWTKey(); kid == firstKID {
		t.Fatal("JWT key not rotated")
	}
}
