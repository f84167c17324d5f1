package altsig

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/url"
	"testing"

	"github.com/signet-id/signet/pq/internal/certder"
	"github.com/signet-id/signet/pq/mldsa"
)

func csrTemplate() *x509.CertificateRequest {
	u, _ := url.Parse("spiffe://example.org/workload")
	return &x509.CertificateRequest{URIs: []*url.URL{u}}
}

func TestCertificateRequest(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	alt, _ := mldsa.GenerateKey(rand.Reader, mldsa.MLDSA44)
	der, err := CreateCertificateRequest(rand.Reader, csrTemplate(), ec, alt)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatal(err)
	}
	if len(csr.Extensions) < 2 || !csr.Extensions[len(csr.Extensions)-1].Id.Equal(OIDSubjectAltPublicKeyInfo) {
		t.Fatalf("subjectAltPublicKeyInfo not requested: %v", csr.Extensions)
	}
	if len(csr.URIs) != 1 || csr.URIs[0].String() != "spiffe://example.org/workload" {
		t.Fatalf("URIs %v", csr.URIs)
	}
	pub, err := CheckCertificateRequest(csr)
	if err != nil || !pub.Equal(alt.PublicKey()) {
		t.Fatalf("CheckCertificateRequest: %v", err)
	}

	// A classic CSR.
	classic, _ := x509.CreateCertificateRequest(rand.Reader, csrTemplate(), ec)
	cc, _ := x509.ParseCertificateRequest(classic)
	if _, err := CheckCertificateRequest(cc); !errors.Is(err, ErrNoAltPublicKey) {
		t.Fatalf("classic CSR: %v", err)
	}

	// Someone else's ML-DSA key requested (classical signature redone): no
	// proof of possession.
	other, _ := mldsa.GenerateKey(rand.Reader, mldsa.MLDSA44)
	spki, _ := mldsa.MarshalPKIXPublicKey(other.PublicKey())
	mine, _ := mldsa.MarshalPKIXPublicKey(alt.PublicKey())
	c, _ := certder.ParseCertificate(der)
	info := bytes.Replace(c.TBS, mine, spki, 1)
	sig, _ := ecdsaSign(ec, info)
	swapped, _ := (&certder.Certificate{TBS: info, SignatureAlgorithm: c.SignatureAlgorithm, Signature: sig}).Marshal()
	sc, err := x509.ParseCertificateRequest(swapped)
	if err != nil {
		t.Fatal(err)
	}
	if err := sc.CheckSignature(); err != nil {
		t.Fatal(err)
	}
	if _, err := CheckCertificateRequest(sc); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("swapped key: %v", err)
	}

	// The extension requested without proof (as a plain ExtraExtension).
	tm := csrTemplate()
	tm.ExtraExtensions = []pkix.Extension{{Id: OIDSubjectAltPublicKeyInfo, Value: mine}}
	np, _ := x509.CreateCertificateRequest(rand.Reader, tm, ec)
	npc, _ := x509.ParseCertificateRequest(np)
	if _, err := CheckCertificateRequest(npc); !errors.Is(err, ErrNoAltSignature) {
		t.Fatalf("no proof: %v", err)
	}

	// The classical signature still guards the whole request.
	bad := append([]byte(nil), der...)
	bad[len(bad)-3] ^= 1
	bc, _ := x509.ParseCertificateRequest(bad)
	if _, err := CheckCertificateRequest(bc); err == nil {
		t.Fatal("broken classical signature accepted")
	}
}

func ecdsaSign(k *ecdsa.PrivateKey, msg []byte) ([]byte, error) {
	h := sha256.Sum256(msg)
	return ecdsa.SignASN1(rand.Reader, k, h[:])
}

func FuzzCheckCertificateRequest(f *testing.F) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	alt, _ := mldsa.GenerateKey(rand.Reader, mldsa.MLDSA44)
	der, err := CreateCertificateRequest(rand.Reader, csrTemplate(), ec, alt)
	if err != nil {
		f.Fatal(err)
	}
	small, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, ec)
	f.Add(der)
	f.Add(small) // a small seed, so that mutations are cheap
	f.Fuzz(func(t *testing.T, der []byte) {
		csr, err := x509.ParseCertificateRequest(der)
		if err != nil {
			return
		}
		_, _ = CheckCertificateRequest(csr)
	})
}
