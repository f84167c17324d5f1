package altsig_test

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"testing"
	"time"

	"github.com/signet-id/signet/conformance/svidspec"
	"github.com/signet-id/signet/pq/altsig"
	"github.com/signet-id/signet/pq/internal/certder"
	"github.com/signet-id/signet/pq/mldsa"
	"github.com/signet-id/signet/pq/pqtest"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

func hybrid(t testing.TB) *pqtest.Chain {
	t.Helper()
	c, err := pqtest.Hybrid(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCreateCertificateLayout(t *testing.T) {
	c := hybrid(t)
	for _, n := range []struct {
		name   string
		cert   *x509.Certificate
		altKey *mldsa.PrivateKey
		issuer *mldsa.PrivateKey
	}{
		{"root", c.Root.Cert, c.Root.AltKey, c.Root.AltKey},
		{"intermediate", c.Intermediate.Cert, c.Intermediate.AltKey, c.Root.AltKey},
		{"leaf", c.Leaf.Cert, c.Leaf.AltKey, c.Intermediate.AltKey},
	} {
		t.Run(n.name, func(t *testing.T) {
			// The three extensions, non-critical, in this order, last.
			exts := n.cert.Extensions
			if len(exts) < 3 {
				t.Fatalf("%d extensions", len(exts))
			}
			tail := exts[len(exts)-3:]
			for i, oid := range []asn1OID{altsig.OIDSubjectAltPublicKeyInfo, altsig.OIDAltSignatureAlgorithm, altsig.OIDAltSignatureValue} {
				if !tail[i].Id.Equal(oid) || tail[i].Critical {
					t.Fatalf("extension %d is %v critical=%v, want non-critical %v", i, tail[i].Id, tail[i].Critical, oid)
				}
			}
			if len(n.cert.UnhandledCriticalExtensions) != 0 {
				t.Fatal("unhandled critical extensions")
			}
			pk, err := altsig.AltPublicKey(n.cert)
			if err != nil || !pk.Equal(n.altKey.PublicKey()) {
				t.Fatalf("AltPublicKey: %v", err)
			}
			a, err := altsig.Parse(n.cert.Raw)
			if err != nil {
				t.Fatal(err)
			}
			if a.SignatureAlgorithm != n.issuer.Algorithm() || len(a.Signature) != n.issuer.Algorithm().SignatureSize() {
				t.Fatalf("alt algorithm %v, signature %d bytes", a.SignatureAlgorithm, len(a.Signature))
			}
			if err := altsig.VerifyAlt(n.cert, n.issuer.PublicKey()); err != nil {
				t.Fatal(err)
			}
			// PreTBS is exactly the final TBS minus the signature field and
			// minus the altSignatureValue extension.
			tbs, err := certder.ParseTBS(n.cert.RawTBSCertificate)
			if err != nil {
				t.Fatal(err)
			}
			var manual []byte
			manual = append(manual, tbs.Version...)
			manual = append(manual, tbs.Serial...)
			for _, f := range [][]byte{tbs.Issuer, tbs.Validity, tbs.Subject, tbs.SPKI} {
				manual = append(manual, f...)
			}
			var extBody []byte
			for _, e := range tbs.Extensions[:len(tbs.Extensions)-1] {
				extBody = append(extBody, e.Raw...)
			}
			manual = append(manual, derWrap(0xa3, derWrap(0x30, extBody))...)
			manual = derWrap(0x30, manual)
			pre, err := altsig.PreTBSCertificate(n.cert.Raw)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(pre, manual) || !bytes.Equal(pre, a.PreTBS) {
				t.Fatal("PreTBSCertificate differs from TBS minus signature and altSignatureValue")
			}
		})
	}
}

type asn1OID = []int

func derWrap(tag byte, body []byte) []byte {
	n := len(body)
	switch {
	case n < 0x80:
		return append([]byte{tag, byte(n)}, body...)
	case n < 0x100:
		return append([]byte{tag, 0x81, byte(n)}, body...)
	default:
		return append([]byte{tag, 0x82, byte(n >> 8), byte(n)}, body...)
	}
}

func TestClassicVerifiersAcceptHybridChain(t *testing.T) {
	c := hybrid(t)
	// crypto/x509.
	roots := x509.NewCertPool()
	roots.AddCert(c.Root.Cert)
	inter := x509.NewCertPool()
	inter.AddCert(c.Intermediate.Cert)
	if _, err := c.Leaf.Cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("crypto/x509: %v", err)
	}
	// The SPIFFE X509-SVID rules.
	if err := svidspec.CheckX509SVID(c.Certs()); err != nil {
		t.Fatal(err)
	}
	if err := svidspec.CheckCA(c.Root.Cert); err != nil {
		t.Fatal(err)
	}
	// Unmodified go-spiffe v2.
	td := spiffeid.RequireTrustDomainFromString(pqtest.TrustDomain)
	bundle := x509bundle.FromX509Authorities(td, []*x509.Certificate{c.Root.Cert})
	id, _, err := x509svid.ParseAndVerify([][]byte{c.Leaf.Cert.Raw, c.Intermediate.Cert.Raw}, bundle)
	if err != nil {
		t.Fatalf("go-spiffe: %v", err)
	}
	if id.String() != pqtest.LeafID {
		t.Fatalf("go-spiffe saw %s", id)
	}
}

func TestVerifyAltRejects(t *testing.T) {
	c := hybrid(t)
	other := pqtest.NewMLDSAKey(mldsa.MLDSA44)
	// Leaf signed by an intermediate whose ML-DSA key is not the one in the
	// intermediate's certificate.
	wrongIssuer, err := altsig.CreateCertificate(rand.Reader, pqtest.LeafTemplate(pqtest.LeafID, time.Now(), time.Hour),
		c.Intermediate.Cert, c.Leaf.Key.Public(), c.Intermediate.Key, other, c.Leaf.AltKey.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	wrongIssuerCert, _ := x509.ParseCertificate(wrongIssuer)

	flipped := flipAltSignature(t, c.Leaf.Cert)

	tests := []struct {
		name   string
		cert   *x509.Certificate
		issuer *mldsa.PublicKey
		want   error
	}{
		{"wrong issuer alt key", wrongIssuerCert, c.Intermediate.AltKey.PublicKey(), altsig.ErrBadSignature},
		{"issuer key of other algorithm", c.Leaf.Cert, c.Root.AltKey.PublicKey(), altsig.ErrAlgorithmMismatch},
		{"altered alt signature", flipped, c.Intermediate.AltKey.PublicKey(), altsig.ErrBadSignature},
		{"no alt extensions", pqtestClassicLeaf(t), c.Intermediate.AltKey.PublicKey(), altsig.ErrNoAltSignature},
		{"nil issuer key", c.Leaf.Cert, nil, altsig.ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := altsig.VerifyAlt(tt.cert, tt.issuer); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func pqtestClassicLeaf(t *testing.T) *x509.Certificate {
	c, err := pqtest.Classic(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if altsig.HasAlt(c.Leaf.Cert) {
		t.Fatal("classic leaf has alt extensions")
	}
	if _, err := altsig.AltPublicKey(c.Leaf.Cert); !errors.Is(err, altsig.ErrNoAltPublicKey) {
		t.Fatalf("AltPublicKey on classic cert: %v", err)
	}
	return c.Leaf.Cert
}

// flipAltSignature returns cert with one bit of its altSignatureValue flipped
// (the classical signature is then invalid too, which VerifyAlt ignores).
func flipAltSignature(t *testing.T, cert *x509.Certificate) *x509.Certificate {
	t.Helper()
	a, err := altsig.Parse(cert.Raw)
	if err != nil {
		t.Fatal(err)
	}
	raw := append([]byte(nil), cert.Raw...)
	i := bytes.Index(raw, a.Signature)
	if i < 0 {
		t.Fatal("signature not found")
	}
	raw[i+100] ^= 0x01
	out, err := x509.ParseCertificate(raw)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCreateCertificateArguments(t *testing.T) {
	c := hybrid(t)
	now := time.Now()
	leafTmpl := pqtest.LeafTemplate(pqtest.LeafID, now, time.Hour)
	pub := c.Leaf.Key.Public()
	altPub := c.Leaf.AltKey.PublicKey()

	withAlt := pqtest.LeafTemplate(pqtest.LeafID, now, time.Hour)
	withAlt.ExtraExtensions = []pkix.Extension{{Id: altsig.OIDAltSignatureValue, Value: []byte{3, 1, 0}}}

	tests := []struct {
		name string
		call func() error
	}{
		{"issuer key does not match parent", func() error {
			_, err := altsig.CreateCertificate(rand.Reader, leafTmpl, c.Intermediate.Cert, pub, c.Root.Key, c.Intermediate.AltKey, altPub)
			return err
		}},
		{"alt signer is not ML-DSA", func() error {
			_, err := altsig.CreateCertificate(rand.Reader, leafTmpl, c.Intermediate.Cert, pub, c.Intermediate.Key, c.Intermediate.Key, altPub)
			return err
		}},
		{"nil subject alt key", func() error {
			_, err := altsig.CreateCertificate(rand.Reader, leafTmpl, c.Intermediate.Cert, pub, c.Intermediate.Key, c.Intermediate.AltKey, nil)
			return err
		}},
		{"template already has alt extension", func() error {
			_, err := altsig.CreateCertificate(rand.Reader, withAlt, c.Intermediate.Cert, pub, c.Intermediate.Key, c.Intermediate.AltKey, altPub)
			return err
		}},
		{"signature algorithm does not fit key", func() error {
			tm := pqtest.LeafTemplate(pqtest.LeafID, now, time.Hour)
			tm.SignatureAlgorithm = x509.SHA256WithRSA
			_, err := altsig.CreateCertificate(rand.Reader, tm, c.Intermediate.Cert, pub, c.Intermediate.Key, c.Intermediate.AltKey, altPub)
			return err
		}},
	}
	for _, tt := range tests {
		if err := tt.call(); err == nil {
			t.Errorf("%s: accepted", tt.name)
		}
	}
}

func TestRequestedSignatureAlgorithm(t *testing.T) {
	c := hybrid(t)
	tm := pqtest.LeafTemplate(pqtest.LeafID, time.Now(), time.Hour)
	tm.SignatureAlgorithm = x509.ECDSAWithSHA384
	der, err := altsig.CreateCertificate(rand.Reader, tm, c.Intermediate.Cert, c.Leaf.Key.Public(), c.Intermediate.Key, c.Intermediate.AltKey, c.Leaf.AltKey.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	if cert.SignatureAlgorithm != x509.ECDSAWithSHA384 {
		t.Fatalf("signature algorithm %v", cert.SignatureAlgorithm)
	}
	if err := cert.CheckSignatureFrom(c.Intermediate.Cert); err != nil {
		t.Fatal(err)
	}
}

func FuzzParse(f *testing.F) {
	c, err := pqtest.Hybrid(time.Now())
	if err != nil {
		f.Fatal(err)
	}
	cl, err := pqtest.Classic(time.Now())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(c.Leaf.Cert.Raw)
	f.Add(c.Root.Cert.Raw)
	f.Add(cl.Leaf.Cert.Raw) // small seeds, so that mutations are cheap
	f.Add([]byte{0x30, 0x03, 0x30, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, der []byte) {
		a, err := altsig.Parse(der)
		if err != nil {
			return
		}
		if a.Signature != nil && a.PreTBS == nil {
			t.Fatal("signature without PreTBS")
		}
		if _, err := altsig.PreTBSCertificate(der); err != nil {
			t.Fatalf("Parse accepted what PreTBSCertificate rejects: %v", err)
		}
	})
}
