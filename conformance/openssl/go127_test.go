//go:build go1.27

package openssl

import (
	"bytes"
	"crypto/mldsa"
	"crypto/rand"
	"crypto/x509"
	"testing"
	"time"

	"github.com/signet-id/signet/pq/altsig"
	pqmldsa "github.com/signet-id/signet/pq/mldsa"
	"github.com/signet-id/signet/pq/pqtest"
	"github.com/signet-id/signet/pq/purecert"
)

// Go 1.27's crypto/x509 verifies ML-DSA certificate chains. Run with
// GOTOOLCHAIN=go1.27.3 go test ./conformance/openssl/...

func TestGo127VerifiesPureChain(t *testing.T) {
	now := time.Now()
	c, err := pqtest.Pure(now)
	if err != nil {
		t.Fatal(err)
	}
	// Reparse from DER with the 1.27 parser.
	parse := func(c *x509.Certificate) *x509.Certificate {
		out, err := x509.ParseCertificate(c.Raw)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	root, inter, leaf := parse(c.Root.Cert), parse(c.Intermediate.Cert), parse(c.Leaf.Cert)
	if _, ok := leaf.PublicKey.(*mldsa.PublicKey); !ok {
		t.Fatalf("Go 1.27 parsed the leaf key as %T", leaf.PublicKey)
	}
	if leaf.SignatureAlgorithm != x509.MLDSA44 || root.SignatureAlgorithm != x509.MLDSA65 {
		t.Fatalf("signature algorithms %v / %v", leaf.SignatureAlgorithm, root.SignatureAlgorithm)
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	inters := x509.NewCertPool()
	inters.AddCert(inter)
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inters, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		t.Fatalf("Go 1.27 crypto/x509 rejected the pure ML-DSA chain: %v", err)
	}
	if len(chains) != 1 || len(chains[0]) != 3 {
		t.Fatalf("chains %v", chains)
	}
	// A leaf from another chain does not verify.
	other, err := pqtest.Pure(now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parse(other.Leaf.Cert).Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: now}); err == nil {
		t.Fatal("Go 1.27 accepted a foreign leaf")
	}
}

func TestGo127ReadsPKCS8Seed(t *testing.T) {
	for _, alg := range []pqmldsa.Algorithm{pqmldsa.MLDSA44, pqmldsa.MLDSA65} {
		sk, err := pqmldsa.GenerateKey(rand.Reader, alg)
		if err != nil {
			t.Fatal(err)
		}
		der, err := pqmldsa.MarshalPKCS8PrivateKey(sk)
		if err != nil {
			t.Fatal(err)
		}
		k, err := x509.ParsePKCS8PrivateKey(der)
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		gk, ok := k.(*mldsa.PrivateKey)
		if !ok {
			t.Fatalf("%T", k)
		}
		if !bytes.Equal(gk.PublicKey().Bytes(), sk.PublicKey().Bytes()) {
			t.Fatalf("%s: Go 1.27 derived another public key", alg)
		}
		// And Go 1.27 writes the same bytes.
		back, err := x509.MarshalPKCS8PrivateKey(gk)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(back, der) {
			t.Fatalf("%s: Go 1.27 PKCS#8 differs from ours", alg)
		}
		spki, _ := pqmldsa.MarshalPKIXPublicKey(sk.PublicKey())
		gspki, err := x509.MarshalPKIXPublicKey(gk.PublicKey())
		if err != nil || !bytes.Equal(spki, gspki) {
			t.Fatalf("%s: SubjectPublicKeyInfo differs: %v", alg, err)
		}
	}
}

func TestGo127VerifiesAltSignatures(t *testing.T) {
	c, err := pqtest.Hybrid(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []struct{ cert, issuer *x509.Certificate }{
		{c.Root.Cert, c.Root.Cert}, {c.Intermediate.Cert, c.Root.Cert}, {c.Leaf.Cert, c.Intermediate.Cert},
	} {
		a, err := altsig.Parse(l.cert.Raw)
		if err != nil {
			t.Fatal(err)
		}
		ext, err := altsig.AltPublicKey(l.issuer)
		if err != nil {
			t.Fatal(err)
		}
		spki, _ := pqmldsa.MarshalPKIXPublicKey(ext)
		pub, err := x509.ParsePKIXPublicKey(spki)
		if err != nil {
			t.Fatal(err)
		}
		if err := mldsa.Verify(pub.(*mldsa.PublicKey), a.PreTBS, a.Signature, nil); err != nil {
			t.Fatalf("Go 1.27 crypto/mldsa rejects the alt signature of %s: %v", l.cert.Subject, err)
		}
	}
}

func TestGo127ChecksPureCSR(t *testing.T) {
	k := pqtest.NewMLDSAKey(pqmldsa.MLDSA44)
	der, err := purecert.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{"web.example"}}, k)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatalf("Go 1.27 rejects the pure ML-DSA CSR: %v", err)
	}
}
