package ca_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/conformance/svidspec"
)

// TestSignDownstreamX509CA: a downstream CA is a SPIFFE CA of the trust
// domain for the given key; its chain holds the active authority and the
// upstream intermediates (never a root) when an upstream signed it, and
// its lifetime is capped by the CA TTL and the active authority's expiry.
func TestSignDownstreamX509CA(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	up := newLocalUpstream(t)
	for _, tt := range []struct {
		name      string
		cfg       ca.Config
		ttl       time.Duration
		wantChain int
		wantLife  time.Duration
	}{
		{"self-signed, ttl", ca.Config{TrustDomain: td, Now: clk.Now, CATTL: 6 * time.Hour}, time.Hour, 1, time.Hour},
		{"self-signed, zero ttl is the CA TTL", ca.Config{TrustDomain: td, Now: clk.Now, CATTL: 6 * time.Hour}, 0, 1, 6 * time.Hour},
		{"self-signed, ttl above the CA TTL", ca.Config{TrustDomain: td, Now: clk.Now, CATTL: 6 * time.Hour}, 48 * time.Hour, 1, 6 * time.Hour},
		{"upstream", ca.Config{TrustDomain: td, Now: clk.Now, CATTL: 6 * time.Hour, Upstream: up}, time.Hour, 2, time.Hour},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ca.New(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			clk.Advance(time.Hour) // the active CA now expires in 5h
			active, _ := m.X509Authority()
			chain, roots, err := m.SignDownstreamX509CA(&key.PublicKey, tt.ttl)
			if err != nil {
				t.Fatal(err)
			}
			if len(chain) != tt.wantChain {
				t.Fatalf("chain of %d, want %d", len(chain), tt.wantChain)
			}
			c := chain[0]
			if err := svidspec.CheckCA(c); err != nil {
				t.Fatal(err)
			}
			if len(c.URIs) != 1 || c.URIs[0].String() != td.IDString() || !key.PublicKey.Equal(c.PublicKey) {
				t.Fatalf("downstream CA URIs %v / key mismatch", c.URIs)
			}
			want := clk.Now().Add(tt.wantLife)
			if want.After(active.NotAfter) {
				want = active.NotAfter
			}
			if !c.NotAfter.Equal(want) {
				t.Fatalf("NotAfter %v, want %v", c.NotAfter, want)
			}
			pool := x509.NewCertPool()
			for _, r := range roots {
				pool.AddCert(r)
				if r.Equal(c) {
					t.Fatal("the downstream CA is a bundle root")
				}
			}
			inter := x509.NewCertPool()
			for _, i := range chain[1:] {
				inter.AddCert(i)
				if i.Equal(roots[0]) {
					t.Fatal("the chain carries a root")
				}
			}
			if _, err := c.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: clk.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
				t.Fatalf("downstream CA does not chain to the bundle: %v", err)
			}
		})
	}
	t.Run("pq profile", func(t *testing.T) {
		m, err := ca.New(ca.Config{TrustDomain: td, Profile: ca.ProfilePQ})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := m.SignDownstreamX509CA(&key.PublicKey, 0); !errors.Is(err, ca.ErrDownstreamProfile) {
			t.Fatalf("got %v, want ErrDownstreamProfile", err)
		}
	})
}

// TestPublishJWTAuthorityPersists: a published JWT authority is in the
// bundle, survives a restart, and leaves the bundle when it expires.
func TestPublishJWTAuthorityPersists(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	path := filepath.Join(t.TempDir(), "ca.json")
	m, err := ca.New(ca.Config{TrustDomain: td, Path: path, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	seq, _ := m.Bundle().SequenceNumber()
	keys, err := m.PublishJWTAuthority(ca.JWTAuthority{KeyID: "ds", PublicKey: &key.PublicKey, NotAfter: clk.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 {
		t.Fatalf("%d JWT authorities, want Signet's and the published one", len(keys))
	}
	if s2, _ := m.Bundle().SequenceNumber(); s2 != seq+1 {
		t.Fatalf("bundle sequence %d, want %d", s2, seq+1)
	}
	m2, err := ca.New(ca.Config{TrustDomain: td, Path: path, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := m2.Bundle().FindJWTAuthority("ds"); !ok || !key.PublicKey.Equal(got) {
		t.Fatal("published JWT authority lost across restart")
	}
	clk.Advance(time.Hour)
	if _, ok := m2.Bundle().FindJWTAuthority("ds"); ok {
		t.Fatal("expired published JWT authority still in the bundle")
	}
	if _, err := m2.PublishJWTAuthority(ca.JWTAuthority{KeyID: "late", PublicKey: &key.PublicKey, NotAfter: clk.Now()}); !errors.Is(err, ca.ErrInvalidJWTAuthority) {
		t.Fatalf("publishing an expired key: %v, want ErrInvalidJWTAuthority", err)
	}
}
