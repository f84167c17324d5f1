package issuer_test

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

	"github.com/signet-id/signet/issuer"
	"github.com/signet-id/signet/pq/verify"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
)

// memoryAuthority is an issuer.Authority held in memory: a self-signed
// X.509 CA and a JWT signing key. In Signet the ca package plays this role.
type memoryAuthority struct {
	caCert *x509.Certificate
	caKey  crypto.Signer
	jwtKey crypto.Signer
}

var _ issuer.Authority = (*memoryAuthority)(nil)

func (a *memoryAuthority) X509Authority() (*x509.Certificate, crypto.Signer) {
	return a.caCert, a.caKey
}

func (a *memoryAuthority) JWTKey() (string, crypto.Signer) { return "jwt-key-1", a.jwtKey }

// newMemoryAuthority makes a CA for trust domain td, valid for a day from now.
func newMemoryAuthority(td spiffeid.TrustDomain, now time.Time) (*memoryAuthority, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	jwtKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "example CA"},
		URIs:                  []*url.URL{td.ID().URL()},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, err
	}
	caCert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &memoryAuthority{caCert: caCert, caKey: caKey, jwtKey: jwtKey}, nil
}

// An X.509-SVID minted for a workload's public key, checked against the CA
// with pq/verify.
func ExampleIssuer_X509SVID() {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	td := spiffeid.RequireTrustDomainFromString("example.org")
	authority, err := newMemoryAuthority(td, now)
	if err != nil {
		panic(err)
	}
	iss, err := issuer.New(issuer.Config{
		TrustDomain: td,
		Authority:   authority,
		Now:         func() time.Time { return now },
	})
	if err != nil {
		panic(err)
	}

	// The workload keeps its private key; only the public key is sent.
	workloadKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	chain, err := iss.X509SVID(issuer.X509Params{
		ID:        spiffeid.RequireFromPath(td, "/web"),
		PublicKey: workloadKey.Public(),
	})
	if err != nil {
		panic(err)
	}

	// A relying party checks the chain against the trust domain's roots.
	res, err := verify.VerifyX509(chain, []*x509.Certificate{authority.caCert}, verify.Options{
		Now: func() time.Time { return now },
	})
	if err != nil {
		panic(err)
	}
	leaf := chain[0]
	fmt.Println("certificates:", len(chain))
	fmt.Println("SPIFFE ID:", res.ID, res.Profile)
	fmt.Println("lifetime:", leaf.NotAfter.Sub(leaf.NotBefore.Add(issuer.Backdate)))
	fmt.Println("renew at:", issuer.RenewalTime(leaf).Format(time.RFC3339))
	// Output:
	// certificates: 1
	// SPIFFE ID: spiffe://example.org/web classic
	// lifetime: 1h0m0s
	// renew at: 2026-01-02T03:34:05Z
}

// A JWT-SVID for one audience, validated with go-spiffe against a JWT
// bundle holding the authority's public key.
func ExampleIssuer_JWTSVID() {
	now := time.Now()
	td := spiffeid.RequireTrustDomainFromString("example.org")
	authority, err := newMemoryAuthority(td, now)
	if err != nil {
		panic(err)
	}
	iss, err := issuer.New(issuer.Config{TrustDomain: td, Authority: authority})
	if err != nil {
		panic(err)
	}
	token, _, err := iss.JWTSVID(issuer.JWTParams{
		ID:       spiffeid.RequireFromPath(td, "/web"),
		Audience: []string{"db"},
	})
	if err != nil {
		panic(err)
	}

	kid, key := authority.JWTKey()
	bundle := jwtbundle.New(td)
	if err := bundle.AddJWTAuthority(kid, key.Public()); err != nil {
		panic(err)
	}
	svid, err := jwtsvid.ParseAndValidate(token, bundle, []string{"db"})
	if err != nil {
		panic(err)
	}
	fmt.Println(svid.ID, svid.Audience)
	// Output: spiffe://example.org/web [db]
}
