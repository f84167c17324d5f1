package ca_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/signet-id/signet/ca"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// memState is an in-memory ca.StateStore: one value and its revision,
// compared on every Save, as one etcd key is.
type memState struct {
	mu     sync.Mutex
	sealed []byte
	rev    int64
	next   int64
}

var _ ca.StateStore = (*memState)(nil)

func (m *memState) String() string { return "memory state" }

func (m *memState) Load(context.Context) ([]byte, int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return bytes.Clone(m.sealed), m.rev, nil
}

func (m *memState) Save(_ context.Context, sealed []byte, prevRev int64) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if prevRev != m.rev {
		return 0, ca.ErrStaleState
	}
	m.next++
	m.sealed, m.rev = bytes.Clone(sealed), m.next+100
	return m.rev, nil
}

// tamper rewrites the stored value in place (an attacker with etcd access).
func (m *memState) tamper(f func([]byte) []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sealed = f(bytes.Clone(m.sealed))
}

func sealed(t *testing.T, st ca.StateStore, kek byte, ad string) *ca.SealedStorage {
	t.Helper()
	s, err := ca.NewSealedStorage(ca.SealedConfig{Store: st, KEK: bytes.Repeat([]byte{kek}, ca.KEKSize), AssociatedData: []byte(ad)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSealedStorage: the sealed state opens only with the same key and
// associated data and untouched bytes; a write over a state changed since
// the last read is refused as stale.
func TestSealedStorage(t *testing.T) {
	plain := []byte(`{"x509":"private keys"}`)
	for _, tc := range []struct {
		name string
		// after one Save by the writer (kek 1, ad "/td/ca/state"), change
		// the stored value or pick the reader's key and associated data.
		tamper  func([]byte) []byte
		kek     byte
		ad      string
		wantErr error
	}{
		{name: "same key and place", kek: 1, ad: "/td/ca/state"},
		{name: "wrong key", kek: 2, ad: "/td/ca/state", wantErr: ca.ErrUnseal},
		{name: "other associated data", kek: 1, ad: "/other/ca/state", wantErr: ca.ErrUnseal},
		{name: "tampered ciphertext", kek: 1, ad: "/td/ca/state", wantErr: ca.ErrUnseal,
			tamper: func(b []byte) []byte { b[len(b)/2] ^= 1; return b }},
		{name: "tampered nonce", kek: 1, ad: "/td/ca/state", wantErr: ca.ErrUnseal,
			tamper: func(b []byte) []byte { b[0] ^= 0x80; return b }},
		{name: "truncated tag", kek: 1, ad: "/td/ca/state", wantErr: ca.ErrUnseal,
			tamper: func(b []byte) []byte { return b[:len(b)-1] }},
		{name: "truncated below the nonce", kek: 1, ad: "/td/ca/state", wantErr: ca.ErrUnseal,
			tamper: func(b []byte) []byte { return b[:5] }},
		{name: "empty", kek: 1, ad: "/td/ca/state", wantErr: ca.ErrUnseal,
			tamper: func(b []byte) []byte { return []byte{} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &memState{}
			w := sealed(t, st, 1, "/td/ca/state")
			if _, err := w.Load(); err != nil {
				t.Fatal(err)
			}
			if err := w.Save(plain); err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(st.sealed, []byte("private keys")) {
				t.Fatal("the stored state is in clear")
			}
			if tc.tamper != nil {
				st.tamper(tc.tamper)
			}
			got, err := sealed(t, st, tc.kek, tc.ad).Load()
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Load: %v, want %v", err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "private keys") {
				t.Fatalf("error %q leaks the state", err)
			}
			if err == nil && !bytes.Equal(got, plain) {
				t.Fatalf("Load = %q, want %q", got, plain)
			}
		})
	}
}

// TestSealedStorageStaleCompareAndSwap: two replicas over one store; the
// one that saves over a state it has not read is refused with
// ErrStaleState and succeeds after reloading.
func TestSealedStorageStaleCompareAndSwap(t *testing.T) {
	st := &memState{}
	a, b := sealed(t, st, 1, "k"), sealed(t, st, 1, "k")
	for _, step := range []struct {
		name    string
		do      func() error
		wantErr error
	}{
		{"a reads the empty state", func() error { _, err := a.Load(); return err }, nil},
		{"b reads the empty state", func() error { _, err := b.Load(); return err }, nil},
		{"a creates", func() error { return a.Save([]byte("a1")) }, nil},
		{"b creates over a's state", func() error { return b.Save([]byte("b1")) }, ca.ErrStaleState},
		{"b reloads", func() error {
			got, err := b.Load()
			if err == nil && string(got) != "a1" {
				t.Errorf("b reloaded %q", got)
			}
			return err
		}, nil},
		{"b updates", func() error { return b.Save([]byte("b2")) }, nil},
		{"a updates over b's state", func() error { return a.Save([]byte("a2")) }, ca.ErrStaleState},
		{"a saved nothing", func() error {
			got, err := sealed(t, st, 1, "k").Load()
			if err == nil && string(got) != "b2" {
				t.Errorf("stored %q, want b2", got)
			}
			return err
		}, nil},
	} {
		if err := step.do(); !errors.Is(err, step.wantErr) || (err == nil) != (step.wantErr == nil) {
			t.Fatalf("%s: %v, want %v", step.name, err, step.wantErr)
		}
	}
}

// TestSealedStorageBacksAManager: two managers sharing a sealed store see
// one CA, and the second one's transitions follow the first's.
func TestSealedStorageBacksAManager(t *testing.T) {
	st := &memState{}
	td := spiffeid.RequireTrustDomainFromString("example.org")
	m1, err := ca.New(ca.Config{TrustDomain: td, Storage: sealed(t, st, 1, "k")})
	if err != nil {
		t.Fatal(err)
	}
	m2, err := ca.New(ca.Config{TrustDomain: td, Storage: sealed(t, st, 1, "k")})
	if err != nil {
		t.Fatal(err)
	}
	c1, _ := m1.X509Authority()
	c2, _ := m2.X509Authority()
	if !c1.Equal(c2) {
		t.Fatal("the managers hold different CAs")
	}
	if _, err := ca.New(ca.Config{TrustDomain: td, Storage: sealed(t, st, 9, "k")}); !errors.Is(err, ca.ErrUnseal) {
		t.Fatalf("a manager with the wrong key: %v, want ErrUnseal", err)
	}
}

func TestNewSealedStorageRefusesABadKey(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  ca.SealedConfig
	}{
		{"no store", ca.SealedConfig{KEK: make([]byte, ca.KEKSize)}},
		{"short key", ca.SealedConfig{Store: &memState{}, KEK: make([]byte, 16)}},
		{"no key", ca.SealedConfig{Store: &memState{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ca.NewSealedStorage(tc.cfg); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}
