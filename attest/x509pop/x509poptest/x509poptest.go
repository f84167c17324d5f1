// Package x509poptest builds throwaway PKIs for x509pop tests: a root, an
// optional intermediate, and leaves with their key and certificate files.
package x509poptest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a certificate authority with its key.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// serial returns a fresh random serial number.
func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	return n.Add(n, big.NewInt(1))
}

// NewCA returns a self-signed root (parent nil) or an intermediate signed
// by parent, valid from notBefore for a year.
func NewCA(t testing.TB, cn string, parent *CA, notBefore time.Time) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             notBefore,
		NotAfter:              notBefore.Add(365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	signer, issuer := crypto.Signer(key), tmpl
	if parent != nil {
		signer, issuer = parent.Key, parent.Cert
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: cert, Key: key}
}

// Leaf describes a leaf certificate to issue.
type Leaf struct {
	CN                  string
	URIs                []string
	RSA                 bool // an RSA-2048 key instead of P-256
	NotBefore, NotAfter time.Time
	KeyUsage            x509.KeyUsage // default DigitalSignature
}

// Issue signs a leaf and returns it and its key.
func (ca *CA) Issue(t testing.TB, l Leaf) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	var key crypto.Signer
	var err error
	if l.RSA {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	return ca.IssueFor(t, l, key.Public()), key
}

// IssueFor signs a leaf for a public key held elsewhere (l.RSA is
// ignored), such as a TPM's.
func (ca *CA) IssueFor(t testing.TB, l Leaf, pub crypto.PublicKey) *x509.Certificate {
	t.Helper()
	if l.KeyUsage == 0 {
		l.KeyUsage = x509.KeyUsageDigitalSignature
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: l.CN},
		NotBefore:    l.NotBefore,
		NotAfter:     l.NotAfter,
		KeyUsage:     l.KeyUsage,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, s := range l.URIs {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// WriteFiles writes key.pem, cert.pem (the leaf) and, with intermediates,
// intermediates.pem to dir and returns their paths.
func WriteFiles(t testing.TB, dir string, key crypto.Signer, leaf *x509.Certificate, intermediates ...*x509.Certificate) (keyPath, certPath, interPath string) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyPath = filepath.Join(dir, "key.pem")
	write(t, keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	certPath = filepath.Join(dir, "cert.pem")
	write(t, certPath, PEM(leaf))
	if len(intermediates) > 0 {
		interPath = filepath.Join(dir, "intermediates.pem")
		write(t, interPath, PEM(intermediates...))
	}
	return keyPath, certPath, interPath
}

// PEM encodes certs as PEM CERTIFICATE blocks.
func PEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

func write(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
