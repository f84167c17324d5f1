// Package cachetest provides a small in-memory CA for tests of the agent's
// cache and Workload API: a self-signed ECDSA P-256 root, X.509-SVIDs with a
// single URI SAN, and ES256 JWT-SVIDs (it implements cache.JWTMinter).
package cachetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/agent/cache"
)

// CA issues test credentials for one trust domain.
type CA struct {
	td     spiffeid.TrustDomain
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	jwtKey *ecdsa.PrivateKey
	jwtKID string

	// Now is the clock for validity periods (default time.Now).
	Now func() time.Time
	// X509TTL and JWTTTL are the SVID lifetimes (default 1h and 5m).
	X509TTL, JWTTTL time.Duration

	mu     sync.Mutex
	serial int64
	mints  int
}

var _ cache.JWTMinter = (*CA)(nil)

// NewCA returns a CA for td.
func NewCA(tb testing.TB, td spiffeid.TrustDomain) *CA {
	tb.Helper()
	ca := &CA{td: td, Now: time.Now, X509TTL: time.Hour, JWTTTL: 5 * time.Minute, jwtKID: "jwt-" + td.Name()}
	var err error
	if ca.key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		tb.Fatal(err)
	}
	if ca.jwtKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		tb.Fatal(err)
	}
	now := ca.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Organization: []string{"cachetest"}, CommonName: td.Name()},
		URIs:                  []*url.URL{td.ID().URL()},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &ca.key.PublicKey, ca.key)
	if err != nil {
		tb.Fatal(err)
	}
	if ca.cert, err = x509.ParseCertificate(der); err != nil {
		tb.Fatal(err)
	}
	ca.serial = 1
	return ca
}

// Cert returns the root certificate.
func (ca *CA) Cert() *x509.Certificate { return ca.cert }

// JWTKeyID returns the key ID of the JWT signing key.
func (ca *CA) JWTKeyID() string { return ca.jwtKID }

// Bundle returns a new bundle with the root and the JWT signing key.
func (ca *CA) Bundle() *spiffebundle.Bundle {
	b := spiffebundle.FromX509Authorities(ca.td, []*x509.Certificate{ca.cert})
	if err := b.AddJWTAuthority(ca.jwtKID, &ca.jwtKey.PublicKey); err != nil {
		panic(err)
	}
	return b
}

// X509SVID issues an X.509-SVID for id with a fresh key.
func (ca *CA) X509SVID(tb testing.TB, id spiffeid.ID) *cache.X509SVID {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	ca.mu.Lock()
	ca.serial++
	serial := ca.serial
	ca.mu.Unlock()
	now := ca.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{Organization: []string{"cachetest"}},
		URIs:                  []*url.URL{id.URL()},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(ca.X509TTL),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return &cache.X509SVID{Chain: []*x509.Certificate{cert}, Key: key}
}

// MintJWTSVID implements cache.JWTMinter with an ES256 JWT-SVID.
func (ca *CA) MintJWTSVID(_ context.Context, id spiffeid.ID, audience []string) (string, time.Time, error) {
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.ES256, Key: ca.jwtKey},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", ca.jwtKID),
	)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("cachetest: %w", err)
	}
	now := ca.Now()
	exp := now.Add(ca.JWTTTL).Truncate(time.Second)
	token, err := jwt.Signed(signer).Claims(jwt.Claims{
		Subject:  id.String(),
		Audience: jwt.Audience(audience),
		Expiry:   jwt.NewNumericDate(exp),
		IssuedAt: jwt.NewNumericDate(now),
	}).Serialize()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("cachetest: %w", err)
	}
	ca.mu.Lock()
	ca.mints++
	ca.mu.Unlock()
	return token, exp, nil
}

// Mints returns how many JWT-SVIDs MintJWTSVID has signed.
func (ca *CA) Mints() int {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	return ca.mints
}
