package ca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// localUpstream is a real root CA in memory that signs intermediates, as
// Vault PKI does; rotate replaces its root (a new issuer).
type localUpstream struct {
	t    *testing.T
	mu   sync.Mutex
	root *x509.Certificate
	key  *ecdsa.PrivateKey
	n    int64
}

func newLocalUpstream(t *testing.T) *localUpstream {
	u := &localUpstream{t: t}
	u.rotate()
	return u
}

func (u *localUpstream) rotate() {
	u.mu.Lock()
	defer u.mu.Unlock()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		u.t.Fatal(err)
	}
	u.n++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(u.n), Subject: pkix.Name{CommonName: "upstream root"},
		NotBefore: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		u.t.Fatal(err)
	}
	if u.root, err = x509.ParseCertificate(der); err != nil {
		u.t.Fatal(err)
	}
	u.key = key
}

func (u *localUpstream) skid() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return ca.X509AuthorityID(u.root)
}

func (u *localUpstream) SignIntermediate(_ context.Context, td spiffeid.TrustDomain, csrDER []byte, ttl time.Duration) ([]*x509.Certificate, []*x509.Certificate, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, nil, err
	}
	u.n++
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(u.n), Subject: csr.Subject, URIs: []*url.URL{td.ID().URL()},
		NotBefore: now, NotAfter: now.Add(ttl),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}, u.root, csr.PublicKey, u.key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return []*x509.Certificate{cert}, []*x509.Certificate{u.root}, nil
}

// TestUpstreamTaintAndRevoke: with an upstream authority the local X.509
// authorities are not tainted or revoked; the upstream authority that
// signed an old one is, as in SPIRE, and only that one.
func TestUpstreamTaintAndRevoke(t *testing.T) {
	up := newLocalUpstream(t)
	clk := &authClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	m, err := ca.New(ca.Config{TrustDomain: authTD, Path: filepath.Join(t.TempDir(), "ca.json"), Now: clk.now, CATTL: 6 * time.Hour, Upstream: up})
	if err != nil {
		t.Fatal(err)
	}
	if !m.IsUpstreamAuthority() {
		t.Fatal("a manager with an upstream authority does not report one")
	}
	firstRoot := up.skid()
	first := byStatus(m.X509Authorities(), ca.StatusActive)[0]
	if first.UpstreamAuthorityID != firstRoot {
		t.Fatalf("active authority's upstream ID %q, want %q", first.UpstreamAuthorityID, firstRoot)
	}
	// The upstream rotates its root; the next authority is signed by it.
	up.rotate()
	secondRoot := up.skid()
	next, err := m.PrepareX509()
	if err != nil {
		t.Fatal(err)
	}
	upstreamOps := []struct {
		name string
		do   func(string) ([]ca.AuthorityInfo, error)
	}{
		{"taint", m.TaintX509Upstream},
		{"revoke", m.RevokeX509Upstream},
	}
	// Nothing is old yet: the new root signed a prepared authority, the
	// old root the active one.
	for _, op := range upstreamOps {
		for _, tc := range []struct {
			skid string
			want error
		}{
			{"", ca.ErrNoAuthorityID},
			{firstRoot, ca.ErrSignsActive},
			{secondRoot, ca.ErrNotOld},
			{"00ff", ca.ErrAuthorityNotFound},
		} {
			if _, err := op.do(tc.skid); !errors.Is(err, tc.want) {
				t.Errorf("%s upstream %q before activation: %v, want %v", op.name, tc.skid, err, tc.want)
			}
		}
	}
	if _, err := m.ActivateX509(next.ID); err != nil {
		t.Fatal(err)
	}
	// Local taint and revoke are refused under an upstream authority.
	if _, err := m.TaintX509(first.ID); !errors.Is(err, ca.ErrUpstreamAuthority) {
		t.Fatalf("local taint: %v, want ErrUpstreamAuthority", err)
	}
	if _, err := m.RevokeX509(first.ID); !errors.Is(err, ca.ErrUpstreamAuthority) {
		t.Fatalf("local revoke: %v, want ErrUpstreamAuthority", err)
	}
	steps := []struct {
		name string
		do   func(string) ([]ca.AuthorityInfo, error)
		skid string
		want error
	}{
		{"taint the active's upstream", m.TaintX509Upstream, secondRoot, ca.ErrSignsActive},
		{"revoke before taint", m.RevokeX509Upstream, firstRoot, ca.ErrNotTainted},
		{"taint (upper case)", m.TaintX509Upstream, strings.ToUpper(firstRoot), nil},
		{"taint again", m.TaintX509Upstream, firstRoot, ca.ErrAlreadyTainted},
		{"revoke", m.RevokeX509Upstream, firstRoot, nil},
		{"revoke again", m.RevokeX509Upstream, firstRoot, ca.ErrAuthorityNotFound},
	}
	for _, st := range steps {
		before, _ := m.Bundle().SequenceNumber()
		got, err := st.do(st.skid)
		if !errors.Is(err, st.want) || (err == nil) != (st.want == nil) {
			t.Fatalf("%s: %v, want %v", st.name, err, st.want)
		}
		after, _ := m.Bundle().SequenceNumber()
		if err != nil {
			if after != before {
				t.Fatalf("%s: refused but the bundle changed", st.name)
			}
			continue
		}
		if len(got) != 1 || got[0].ID != first.ID {
			t.Fatalf("%s: changed %+v, want the first authority %s", st.name, got, first.ID)
		}
		if after == before {
			t.Fatalf("%s: bundle sequence did not change", st.name)
		}
	}
	for _, a := range m.X509Authorities() {
		if a.ID == first.ID {
			t.Fatal("the revoked authority is still in the lifecycle")
		}
	}
	for _, r := range m.Bundle().X509Authorities() {
		if ca.X509AuthorityID(r) == firstRoot {
			t.Fatal("the revoked upstream root is still in the bundle")
		}
	}
}

// TestUpstreamOperationsNeedAnUpstream: without an upstream authority the
// upstream variants are refused and the local ones apply.
func TestUpstreamOperationsNeedAnUpstream(t *testing.T) {
	m, _ := newAuthManager(t, filepath.Join(t.TempDir(), "ca.json"))
	if m.IsUpstreamAuthority() {
		t.Fatal("self-signed CA reports an upstream authority")
	}
	if _, err := m.TaintX509Upstream("00ff"); !errors.Is(err, ca.ErrNoUpstreamAuthority) {
		t.Fatalf("taint upstream: %v", err)
	}
	if _, err := m.RevokeX509Upstream("00ff"); !errors.Is(err, ca.ErrNoUpstreamAuthority) {
		t.Fatalf("revoke upstream: %v", err)
	}
	if a := byStatus(m.X509Authorities(), ca.StatusActive)[0]; a.UpstreamAuthorityID != "" {
		t.Fatalf("self-signed authority has upstream ID %q", a.UpstreamAuthorityID)
	}
}
