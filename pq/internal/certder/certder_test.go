package certder

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"testing"
	"time"
)

func testCert(t testing.TB, extra ...pkix.Extension) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: "x"},
		NotBefore: time.Unix(1e9, 0), NotAfter: time.Unix(2e9, 0),
		DNSNames: []string{"a.example"}, ExtraExtensions: extra,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestRoundTrip(t *testing.T) {
	der := testCert(t, pkix.Extension{Id: asn1.ObjectIdentifier{1, 2, 3}, Value: []byte{5, 0}})
	c, err := ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Marshal()
	if err != nil || !bytes.Equal(out, der) {
		t.Fatalf("certificate round trip: %v", err)
	}
	tbs, err := ParseTBS(c.TBS)
	if err != nil {
		t.Fatal(err)
	}
	again, err := tbs.Marshal()
	if err != nil || !bytes.Equal(again, c.TBS) {
		t.Fatalf("TBS round trip: %v", err)
	}
	if len(tbs.Extensions) != 2 {
		t.Fatalf("%d extensions", len(tbs.Extensions))
	}
	pre, err := tbs.MarshalPre(asn1.ObjectIdentifier{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(pre, tbs.Signature) || bytes.Contains(pre, tbs.Extensions[1].Raw) || !bytes.Contains(pre, tbs.Extensions[0].Raw) {
		t.Fatal("PreTBS content")
	}
	// Dropping the only remaining extension removes the [3] element.
	tbs.Extensions = tbs.Extensions[1:]
	pre, _ = tbs.MarshalPre(asn1.ObjectIdentifier{1, 2, 3})
	if !bytes.HasSuffix(pre, tbs.SPKI) {
		t.Fatal("empty extensions element kept")
	}
}

func TestRejects(t *testing.T) {
	dup := testCert(t, pkix.Extension{Id: asn1.ObjectIdentifier{1, 2, 3}, Value: []byte{5, 0}})
	c, _ := ParseCertificate(dup)
	tbs, _ := ParseTBS(c.TBS)
	tbs.Extensions = append(tbs.Extensions, tbs.Extensions[1])
	raw, _ := tbs.Marshal()
	if _, err := ParseTBS(raw); !errors.Is(err, ErrMalformed) {
		t.Fatalf("duplicate extension: %v", err)
	}
	if _, err := ParseCertificate(append(dup, 0)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("trailing data: %v", err)
	}
	if _, err := ParseTBS(append(append([]byte(nil), c.TBS...), 0)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("trailing data after TBS: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(testCert(f))
	f.Fuzz(func(t *testing.T, der []byte) {
		c, err := ParseCertificate(der)
		if err != nil {
			return
		}
		if out, err := c.Marshal(); err != nil || !bytes.Equal(out, der) {
			t.Fatalf("certificate does not round-trip: %v", err)
		}
		tbs, err := ParseTBS(c.TBS)
		if err != nil {
			return
		}
		if out, err := tbs.Marshal(); err != nil || !bytes.Equal(out, c.TBS) {
			t.Fatalf("TBS does not round-trip: %v", err)
		}
		if _, err := tbs.MarshalPre(asn1.ObjectIdentifier{2, 5, 29, 74}); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzParseCRI(f *testing.F) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{"a"}}, k)
	c, _ := ParseCertificate(csr)
	f.Add(c.TBS)
	f.Fuzz(func(t *testing.T, der []byte) {
		cri, err := ParseCRI(der)
		if err != nil {
			return
		}
		out, err := cri.Marshal(nil)
		if err != nil || !bytes.Equal(out, der) {
			t.Fatalf("CRI does not round-trip: %v", err)
		}
	})
}
