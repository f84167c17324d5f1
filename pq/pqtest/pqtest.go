// Package pqtest builds SPIFFE-shaped certificate chains for the three
// credential profiles (classic, hybrid, pq) for tests and benchmarks of the
// pq packages and of their consumers. It is not for production issuance.
package pqtest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net/url"
	"time"

	"github.com/signet-id/signet/pq/altsig"
	"github.com/signet-id/signet/pq/mldsa"
	"github.com/signet-id/signet/pq/purecert"
)

// TrustDomain is the trust domain of the chains built here.
const TrustDomain = "example.org"

// LeafID is the SPIFFE ID of the leaves built here.
const LeafID = "spiffe://example.org/workload/web"

// Node is one certificate of a chain with its keys.
type Node struct {
	Cert   *x509.Certificate
	Key    crypto.Signer     // classical key (nil for pure ML-DSA certs)
	AltKey *mldsa.PrivateKey // ML-DSA key (alternative key for hybrid, subject key for pq)
}

// Chain is root → intermediate → leaf.
type Chain struct {
	Root, Intermediate, Leaf Node
}

// Certs returns the X.509-SVID chain as presented by a workload: leaf then
// intermediate (the root is in the bundle).
func (c *Chain) Certs() []*x509.Certificate {
	return []*x509.Certificate{c.Leaf.Cert, c.Intermediate.Cert}
}

func nextSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err)
	}
	return n.Add(n, big.NewInt(1))
}

// CATemplate returns a SPIFFE CA template: cA=true, keyCertSign|cRLSign, URI
// SAN spiffe://<TrustDomain> (no path).
func CATemplate(cn string, now time.Time, ttl time.Duration) *x509.Certificate {
	u, _ := url.Parse("spiffe://" + TrustDomain)
	return &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{Country: []string{"US"}, Organization: []string{"Signet"}, CommonName: cn},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(ttl),
		URIs:                  []*url.URL{u},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
}

// LeafTemplate returns an X.509-SVID template for id: cA=false, key usage
// digitalSignature (critical), EKU serverAuth+clientAuth, one URI SAN.
func LeafTemplate(id string, now time.Time, ttl time.Duration) *x509.Certificate {
	u, err := url.Parse(id)
	if err != nil {
		panic(err)
	}
	return &x509.Certificate{
		SerialNumber:          nextSerial(),
		Subject:               pkix.Name{Country: []string{"US"}, Organization: []string{"Signet"}},
		NotBefore:             now.Add(-10 * time.Second),
		NotAfter:              now.Add(ttl),
		URIs:                  []*url.URL{u},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
}

// NewECKey returns a fresh ECDSA P-256 key.
func NewECKey() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

// NewMLDSAKey returns a fresh ML-DSA key.
func NewMLDSAKey(alg mldsa.Algorithm) *mldsa.PrivateKey {
	k, err := mldsa.GenerateKey(rand.Reader, alg)
	if err != nil {
		panic(err)
	}
	return k
}

func parse(der []byte, err error) (*x509.Certificate, error) {
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// Classic builds an ECDSA P-256 chain.
func Classic(now time.Time) (*Chain, error) {
	var c Chain
	var err error
	c.Root.Key = NewECKey()
	rt := CATemplate("root", now, 24*time.Hour)
	if c.Root.Cert, err = parse(x509.CreateCertificate(rand.Reader, rt, rt, c.Root.Key.Public(), c.Root.Key)); err != nil {
		return nil, fmt.Errorf("root: %w", err)
	}
	c.Intermediate.Key = NewECKey()
	if c.Intermediate.Cert, err = parse(x509.CreateCertificate(rand.Reader, CATemplate("intermediate", now, 12*time.Hour), c.Root.Cert, c.Intermediate.Key.Public(), c.Root.Key)); err != nil {
		return nil, fmt.Errorf("intermediate: %w", err)
	}
	c.Leaf.Key = NewECKey()
	if c.Leaf.Cert, err = parse(x509.CreateCertificate(rand.Reader, LeafTemplate(LeafID, now, time.Hour), c.Intermediate.Cert, c.Leaf.Key.Public(), c.Intermediate.Key)); err != nil {
		return nil, fmt.Errorf("leaf: %w", err)
	}
	return &c, nil
}

// Hybrid builds an ECDSA P-256 chain with alternative signatures: ML-DSA-65
// root, ML-DSA-44 intermediate and leaf.
func Hybrid(now time.Time) (*Chain, error) {
	var c Chain
	var err error
	c.Root.Key, c.Root.AltKey = NewECKey(), NewMLDSAKey(mldsa.MLDSA65)
	rt := CATemplate("root", now, 24*time.Hour)
	if c.Root.Cert, err = parse(altsig.CreateCertificate(rand.Reader, rt, rt, c.Root.Key.Public(), c.Root.Key, c.Root.AltKey, c.Root.AltKey.PublicKey())); err != nil {
		return nil, fmt.Errorf("root: %w", err)
	}
	c.Intermediate.Key, c.Intermediate.AltKey = NewECKey(), NewMLDSAKey(mldsa.MLDSA44)
	if c.Intermediate.Cert, err = parse(altsig.CreateCertificate(rand.Reader, CATemplate("intermediate", now, 12*time.Hour), c.Root.Cert, c.Intermediate.Key.Public(), c.Root.Key, c.Root.AltKey, c.Intermediate.AltKey.PublicKey())); err != nil {
		return nil, fmt.Errorf("intermediate: %w", err)
	}
	c.Leaf.Key, c.Leaf.AltKey = NewECKey(), NewMLDSAKey(mldsa.MLDSA44)
	if c.Leaf.Cert, err = parse(altsig.CreateCertificate(rand.Reader, LeafTemplate(LeafID, now, time.Hour), c.Intermediate.Cert, c.Leaf.Key.Public(), c.Intermediate.Key, c.Intermediate.AltKey, c.Leaf.AltKey.PublicKey())); err != nil {
		return nil, fmt.Errorf("leaf: %w", err)
	}
	return &c, nil
}

// Pure builds a pure ML-DSA chain: ML-DSA-65 root, ML-DSA-44 intermediate
// and leaf.
func Pure(now time.Time) (*Chain, error) {
	var c Chain
	var err error
	c.Root.AltKey = NewMLDSAKey(mldsa.MLDSA65)
	rt := CATemplate("root", now, 24*time.Hour)
	if c.Root.Cert, err = parse(purecert.CreateCertificate(rand.Reader, rt, rt, c.Root.AltKey.PublicKey(), c.Root.AltKey)); err != nil {
		return nil, fmt.Errorf("root: %w", err)
	}
	c.Intermediate.AltKey = NewMLDSAKey(mldsa.MLDSA44)
	if c.Intermediate.Cert, err = parse(purecert.CreateCertificate(rand.Reader, CATemplate("intermediate", now, 12*time.Hour), c.Root.Cert, c.Intermediate.AltKey.PublicKey(), c.Root.AltKey)); err != nil {
		return nil, fmt.Errorf("intermediate: %w", err)
	}
	c.Leaf.AltKey = NewMLDSAKey(mldsa.MLDSA44)
	if c.Leaf.Cert, err = parse(purecert.CreateCertificate(rand.Reader, LeafTemplate(LeafID, now, time.Hour), c.Intermediate.Cert, c.Leaf.AltKey.PublicKey(), c.Intermediate.AltKey)); err != nil {
		return nil, fmt.Errorf("leaf: %w", err)
	}
	return &c, nil
}
