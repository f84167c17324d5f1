package purecert_test

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/signet-id/signet/conformance/svidspec"
	"github.com/signet-id/signet/pq/mldsa"
	"github.com/signet-id/signet/pq/pqtest"
	"github.com/signet-id/signet/pq/purecert"
)

func pure(t testing.TB, now time.Time) *pqtest.Chain {
	t.Helper()
	c, err := pqtest.Pure(now)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestSPIFFEConformance(t *testing.T) {
	c := pure(t, time.Now())
	if err := svidspec.CheckX509SVID(c.Certs()); err != nil {
		t.Fatal(err)
	}
	if err := svidspec.CheckCA(c.Root.Cert); err != nil {
		t.Fatal(err)
	}
	if len(c.Leaf.Cert.URIs) != 1 || c.Leaf.Cert.URIs[0].String() != pqtest.LeafID {
		t.Fatalf("leaf URIs %v", c.Leaf.Cert.URIs)
	}
	for _, n := range []pqtest.Node{c.Root, c.Intermediate, c.Leaf} {
		pk, err := purecert.PublicKey(n.Cert)
		if err != nil || !pk.Equal(n.AltKey.PublicKey()) {
			t.Fatalf("PublicKey: %v", err)
		}
	}
	if alg, _ := purecert.SignatureAlgorithm(c.Root.Cert); alg != mldsa.MLDSA65 {
		t.Fatalf("root signed with %v", alg)
	}
	if alg, _ := purecert.SignatureAlgorithm(c.Leaf.Cert); alg != mldsa.MLDSA44 {
		t.Fatalf("leaf signed with %v", alg)
	}
	if !bytes.Equal(c.Leaf.Cert.AuthorityKeyId, c.Intermediate.Cert.SubjectKeyId) || len(c.Intermediate.Cert.SubjectKeyId) != 20 {
		t.Fatal("AKI/SKI do not chain")
	}
}

// TestExtensionsMatchCryptoX509 checks the DER of every generated extension
// against what crypto/x509 writes for the same template.
func TestExtensionsMatchCryptoX509(t *testing.T) {
	now := time.Now()
	c := pure(t, now)
	ec := pqtest.NewECKey()
	u, _ := url.Parse("spiffe://example.org/a")
	templates := map[string]*x509.Certificate{
		"leaf": pqtest.LeafTemplate(pqtest.LeafID, now, time.Hour),
		"ca":   pqtest.CATemplate("ca", now, time.Hour),
		"many": {
			SerialNumber: bigOne(), NotBefore: now, NotAfter: now.Add(time.Hour),
			KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement | x509.KeyUsageDecipherOnly,
			ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageAny, x509.ExtKeyUsageCodeSigning},
			UnknownExtKeyUsage:    []asn1.ObjectIdentifier{{1, 2, 3, 4}},
			DNSNames:              []string{"a.example", "b.example"},
			EmailAddresses:        []string{"x@example.org"},
			IPAddresses:           []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
			URIs:                  []*url.URL{u},
			BasicConstraintsValid: true, IsCA: true, MaxPathLen: 0, MaxPathLenZero: true,
			SubjectKeyId: []byte{1, 2, 3},
		},
		"pathlen2": {
			SerialNumber: bigOne(), Subject: pkix.Name{CommonName: "x"}, NotBefore: now, NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true, MaxPathLen: 2,
			ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 2, 3}, Critical: true, Value: []byte{5, 0}}},
		},
	}
	for name, tm := range templates {
		t.Run(name, func(t *testing.T) {
			// The parent without its key: Go 1.27 parses it and would
			// refuse the ECDSA signer.
			parent := *c.Intermediate.Cert
			parent.PublicKey = nil
			gder, err := x509.CreateCertificate(rand.Reader, tm, &parent, ec.Public(), ec)
			if err != nil {
				t.Fatal(err)
			}
			pder, err := purecert.CreateCertificate(rand.Reader, tm, c.Intermediate.Cert, c.Leaf.AltKey.PublicKey(), c.Intermediate.AltKey)
			if err != nil {
				t.Fatal(err)
			}
			g, _ := x509.ParseCertificate(gder)
			p, err := x509.ParseCertificate(pder)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(g.RawIssuer, p.RawIssuer) || !bytes.Equal(g.RawSubject, p.RawSubject) || g.SerialNumber.Cmp(p.SerialNumber) != 0 {
				t.Fatal("names or serial differ")
			}
			if !g.NotBefore.Equal(p.NotBefore) || !g.NotAfter.Equal(p.NotAfter) {
				t.Fatal("validity differs")
			}
			if len(g.Extensions) != len(p.Extensions) {
				t.Fatalf("crypto/x509 wrote %d extensions, purecert %d", len(g.Extensions), len(p.Extensions))
			}
			for _, ge := range g.Extensions {
				found := false
				for _, pe := range p.Extensions {
					if pe.Id.Equal(ge.Id) && !(ge.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 14}) && tm.SubjectKeyId == nil) {
						found = true
						if pe.Critical != ge.Critical || !bytes.Equal(pe.Value, ge.Value) {
							t.Errorf("extension %v differs: crypto/x509 %x critical=%v, purecert %x critical=%v", ge.Id, ge.Value, ge.Critical, pe.Value, pe.Critical)
						}
					}
				}
				if !found && !(ge.Id.Equal(asn1.ObjectIdentifier{2, 5, 29, 14}) && tm.SubjectKeyId == nil) {
					t.Errorf("purecert lacks extension %v", ge.Id)
				}
			}
		})
	}
}

func bigOne() *bigInt { return newBig(1) }

func TestValidityEncoding(t *testing.T) {
	c := pure(t, time.Now())
	tm := pqtest.LeafTemplate(pqtest.LeafID, time.Now(), time.Hour)
	tm.NotAfter = time.Date(2051, 3, 4, 5, 6, 7, 999, time.FixedZone("x", 3600))
	der, err := purecert.CreateCertificate(rand.Reader, tm, c.Intermediate.Cert, c.Leaf.AltKey.PublicKey(), c.Intermediate.AltKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if !cert.NotAfter.Equal(time.Date(2051, 3, 4, 4, 6, 7, 0, time.UTC)) {
		t.Fatalf("NotAfter %v", cert.NotAfter)
	}
	if !bytes.Contains(der, []byte("20510304040607Z")) {
		t.Fatal("2051 is not a GeneralizedTime")
	}
}

func TestVerify(t *testing.T) {
	now := time.Now()
	c := pure(t, now)
	got, err := purecert.Verify(c.Certs(), purecert.VerifyOptions{Roots: []*x509.Certificate{c.Root.Cert}, CurrentTime: now})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[2] != c.Root.Cert {
		t.Fatalf("verified chain of %d", len(got))
	}
	// A chain that includes the root itself.
	if _, err := purecert.Verify(append(c.Certs(), c.Root.Cert), purecert.VerifyOptions{Roots: []*x509.Certificate{c.Root.Cert}, CurrentTime: now}); err != nil {
		t.Fatal(err)
	}
}

func create(t *testing.T, tm, parent *x509.Certificate, pub *mldsa.PublicKey, priv *mldsa.PrivateKey) *x509.Certificate {
	t.Helper()
	der, err := purecert.CreateCertificate(rand.Reader, tm, parent, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestVerifyRejects(t *testing.T) {
	now := time.Now()
	c := pure(t, now)
	other := pure(t, now)
	hybrid, err := pqtest.Hybrid(now)
	if err != nil {
		t.Fatal(err)
	}
	roots := []*x509.Certificate{c.Root.Cert}
	leafKey := c.Leaf.AltKey.PublicKey()

	// Leaf whose signature is broken.
	tampered := append([]byte(nil), c.Leaf.Cert.Raw...)
	tampered[len(tampered)-5] ^= 1
	tamperedCert, _ := x509.ParseCertificate(tampered)

	// Leaf signed by a key that is not the intermediate's.
	// (CreateCertificate refuses that when it knows the parent's key.)
	keyless := *c.Intermediate.Cert
	keyless.RawSubjectPublicKeyInfo = nil
	wrongKey := create(t, pqtest.LeafTemplate(pqtest.LeafID, now, time.Hour), &keyless, leafKey, other.Intermediate.AltKey)
	// Leaf issued by another leaf.
	byLeaf := create(t, pqtest.LeafTemplate(pqtest.LeafID, now, time.Hour), c.Leaf.Cert, leafKey, c.Leaf.AltKey)
	// Intermediate with pathLen 0 issuing another intermediate.
	zt := pqtest.CATemplate("zero", now, time.Hour)
	zt.MaxPathLenZero = true
	zero := create(t, zt, c.Root.Cert, c.Intermediate.AltKey.PublicKey(), c.Root.AltKey)
	sub := create(t, pqtest.CATemplate("sub", now, time.Hour), zero, other.Intermediate.AltKey.PublicKey(), c.Intermediate.AltKey)
	subLeaf := create(t, pqtest.LeafTemplate(pqtest.LeafID, now, time.Hour), sub, leafKey, other.Intermediate.AltKey)
	// Unknown critical extension.
	ct := pqtest.LeafTemplate(pqtest.LeafID, now, time.Hour)
	ct.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 2, 3, 4}, Critical: true, Value: []byte{5, 0}}}
	critical := create(t, ct, c.Intermediate.Cert, leafKey, c.Intermediate.AltKey)
	// Leaf with only clientAuth.
	et := pqtest.LeafTemplate(pqtest.LeafID, now, time.Hour)
	et.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	clientOnly := create(t, et, c.Intermediate.Cert, leafKey, c.Intermediate.AltKey)

	tests := []struct {
		name  string
		chain []*x509.Certificate
		opts  purecert.VerifyOptions
		want  error
	}{
		{"expired", c.Certs(), purecert.VerifyOptions{Roots: roots, CurrentTime: now.Add(2 * time.Hour)}, purecert.ErrExpired},
		{"not yet valid", c.Certs(), purecert.VerifyOptions{Roots: roots, CurrentTime: now.Add(-time.Hour)}, purecert.ErrExpired},
		{"other root", c.Certs(), purecert.VerifyOptions{Roots: []*x509.Certificate{other.Root.Cert}, CurrentTime: now}, purecert.ErrUnknownAuthority},
		{"no roots", c.Certs(), purecert.VerifyOptions{CurrentTime: now}, purecert.ErrUnknownAuthority},
		{"tampered leaf", []*x509.Certificate{tamperedCert, c.Intermediate.Cert}, purecert.VerifyOptions{Roots: roots, CurrentTime: now}, purecert.ErrBadSignature},
		{"leaf signed by foreign key", []*x509.Certificate{wrongKey, c.Intermediate.Cert}, purecert.VerifyOptions{Roots: roots, CurrentTime: now}, purecert.ErrBadSignature},
		{"intermediate of another chain", []*x509.Certificate{c.Leaf.Cert, other.Intermediate.Cert}, purecert.VerifyOptions{Roots: roots, CurrentTime: now}, purecert.ErrBadSignature},
		{"issued by a leaf", []*x509.Certificate{byLeaf, c.Leaf.Cert, c.Intermediate.Cert}, purecert.VerifyOptions{Roots: roots, CurrentTime: now}, purecert.ErrNotCA},
		{"name chaining", []*x509.Certificate{c.Leaf.Cert, c.Root.Cert}, purecert.VerifyOptions{Roots: roots, CurrentTime: now}, purecert.ErrNameChaining},
		{"path length", []*x509.Certificate{subLeaf, sub, zero}, purecert.VerifyOptions{Roots: roots, CurrentTime: now}, purecert.ErrPathLength},
		{"critical extension", []*x509.Certificate{critical, c.Intermediate.Cert}, purecert.VerifyOptions{Roots: roots, CurrentTime: now}, purecert.ErrCriticalExtension},
		{"key usage", []*x509.Certificate{clientOnly, c.Intermediate.Cert}, purecert.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, purecert.ErrKeyUsage},
		{"hybrid chain", hybrid.Certs(), purecert.VerifyOptions{Roots: []*x509.Certificate{hybrid.Root.Cert}, CurrentTime: now}, purecert.ErrNotMLDSA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := purecert.Verify(tt.chain, tt.opts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			var ce *purecert.CertificateError
			if !errors.As(err, &ce) {
				t.Fatalf("%T is not a *CertificateError", err)
			}
		})
	}
	// The path length chain is fine without the constraint.
	if _, err := purecert.Verify([]*x509.Certificate{c.Leaf.Cert, c.Intermediate.Cert}, purecert.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		t.Fatal(err)
	}
}

func TestCreateRejects(t *testing.T) {
	now := time.Now()
	c := pure(t, now)
	ec := pqtest.NewECKey()
	nc := pqtest.CATemplate("nc", now, time.Hour)
	nc.PermittedURIDomains = []string{"example.org"}
	leaf := pqtest.LeafTemplate(pqtest.LeafID, now, time.Hour)
	tests := map[string]func() error{
		"classical signer": func() error {
			_, err := purecert.CreateCertificate(rand.Reader, leaf, c.Intermediate.Cert, c.Leaf.AltKey.PublicKey(), ec)
			return err
		},
		"signer does not match parent": func() error {
			_, err := purecert.CreateCertificate(rand.Reader, leaf, c.Intermediate.Cert, c.Leaf.AltKey.PublicKey(), c.Root.AltKey)
			return err
		},
		"self-signed with another key": func() error {
			_, err := purecert.CreateCertificate(rand.Reader, nc, nc, c.Leaf.AltKey.PublicKey(), c.Root.AltKey)
			return err
		},
		"name constraints": func() error {
			_, err := purecert.CreateCertificate(rand.Reader, nc, c.Root.Cert, c.Intermediate.AltKey.PublicKey(), c.Root.AltKey)
			return err
		},
		"nil key": func() error {
			_, err := purecert.CreateCertificate(rand.Reader, leaf, c.Intermediate.Cert, nil, c.Intermediate.AltKey)
			return err
		},
	}
	for name, f := range tests {
		if f() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestCertificateRequest(t *testing.T) {
	k := pqtest.NewMLDSAKey(mldsa.MLDSA44)
	u, _ := url.Parse(pqtest.LeafID)
	der, err := purecert.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}, DNSNames: []string{"web.example"}}, k)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	if len(csr.URIs) != 1 || csr.URIs[0].String() != pqtest.LeafID || len(csr.DNSNames) != 1 {
		t.Fatalf("SANs %v %v", csr.URIs, csr.DNSNames)
	}
	pub, err := purecert.CheckCertificateRequest(csr)
	if err != nil || !pub.Equal(k.PublicKey()) {
		t.Fatalf("CheckCertificateRequest: %v", err)
	}
	bad := append([]byte(nil), der...)
	bad[len(bad)-3] ^= 1
	bc, _ := x509.ParseCertificateRequest(bad)
	if _, err := purecert.CheckCertificateRequest(bc); !errors.Is(err, purecert.ErrBadSignature) {
		t.Fatalf("tampered CSR: %v", err)
	}
	ec := pqtest.NewECKey()
	classic, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, ec)
	cc, _ := x509.ParseCertificateRequest(classic)
	if _, err := purecert.CheckCertificateRequest(cc); !errors.Is(err, purecert.ErrNotMLDSA) {
		t.Fatalf("classic CSR: %v", err)
	}
	// A CSR without any requested extension.
	if _, err := purecert.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, k); err != nil {
		t.Fatal(err)
	}
}
