package ca_test

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
)

// sharedStorage is a compare-and-swap store shared by several managers, as
// etcd is shared by server replicas. Each view remembers the version it
// last saw.
type sharedStorage struct {
	mu      sync.Mutex
	data    []byte
	version int
	saves   int
}

type view struct {
	s    *sharedStorage
	seen int
}

func (v *view) Load() ([]byte, error) {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	v.seen = v.s.version
	return bytes.Clone(v.s.data), nil
}

func (v *view) Save(data []byte) error {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	if v.s.version != v.seen {
		return ca.ErrStaleState
	}
	v.s.data = bytes.Clone(data)
	v.s.version++
	v.s.saves++
	v.seen = v.s.version
	return nil
}

func (v *view) String() string { return "shared" }

func TestReplicasShareOneLifecycle(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	shared := &sharedStorage{}
	a, err := ca.New(ca.Config{TrustDomain: td, Now: clk.Now, CATTL: 6 * time.Hour, Storage: &view{s: shared}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := ca.New(ca.Config{TrustDomain: td, Now: clk.Now, CATTL: 6 * time.Hour, Storage: &view{s: shared}})
	if err != nil {
		t.Fatal(err)
	}
	if !a.Bundle().Equal(b.Bundle()) {
		t.Fatal("second replica created its own CA instead of loading the shared one")
	}
	// Both replicas run the lifecycle at the same moments; each transition
	// is applied once, and both converge on the same state.
	for step := 0; step < 12; step++ {
		clk.Advance(30 * time.Minute)
		if _, err := a.Rotate(); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Rotate(); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Reload(); err != nil {
			t.Fatal(err)
		}
		ca1, _ := a.X509Authority()
		ca2, _ := b.X509Authority()
		if !ca1.Equal(ca2) {
			t.Fatalf("step %d: replicas disagree on the active authority", step)
		}
		if !a.Bundle().Equal(b.Bundle()) {
			t.Fatalf("step %d: replicas disagree on the bundle", step)
		}
	}
	// Creation, then with a 6h CA over 6h: prepare at 3h, activate at 5h,
	// drop the expired first CA at 6h. Each is saved exactly once, whichever
	// replica got there first.
	if shared.saves != 4 {
		t.Fatalf("%d saves, want 4 (create, prepare, activate, drop)", shared.saves)
	}
}

func TestNextTransition(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m, err := ca.New(ca.Config{TrustDomain: td, Now: clk.Now, CATTL: 6 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	// Fresh: the next event is preparing at half-life (3h, less the 10s
	// the CA is backdated; the JWT key is not backdated, so it is later).
	cur, _ := m.X509Authority()
	want := cur.NotBefore.Add(cur.NotAfter.Sub(cur.NotBefore) / 2)
	if got := m.NextTransition(); !got.Equal(want) {
		t.Fatalf("next transition %v, want %v", got, want)
	}
	// Walking from transition to transition, Rotate changes something at
	// each one.
	for i := 0; i < 4; i++ {
		clk.t = m.NextTransition()
		changed, err := m.Rotate()
		if err != nil {
			t.Fatal(err)
		}
		if !changed {
			t.Fatalf("step %d: Rotate at the announced transition %v changed nothing", i, clk.t)
		}
	}
}
