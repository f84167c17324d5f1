package verify_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"time"

	"github.com/signet-id/signet/pq/verify"
)

// newCert signs tmpl with parentKey under parent (tmpl itself when parent
// is nil, for a self-signed root).
func newCert(tmpl, parent *x509.Certificate, pub crypto.PublicKey, parentKey crypto.Signer) *x509.Certificate {
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		panic(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return c
}

// exampleChain builds, in memory, a classical trust domain's root and an
// X.509-SVID for spiffe://example.org/web signed by it.
func exampleChain(now time.Time) (root, leaf *x509.Certificate) {
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	td, _ := url.Parse("spiffe://example.org")
	root = newCert(&x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "example.org root"},
		URIs:                  []*url.URL{td},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil, rootKey.Public(), rootKey)
	id, _ := url.Parse("spiffe://example.org/web")
	leaf = newCert(&x509.Certificate{
		SerialNumber:          big.NewInt(2),
		URIs:                  []*url.URL{id},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(time.Hour),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}, root, leafKey.Public(), rootKey)
	return root, leaf
}

// A relying party verifies a presented chain (leaf first) against the trust
// domain's roots and learns the SPIFFE ID and which profile protected it.
// Classical roots publish no ML-DSA key, so a classic chain is accepted
// without AllowClassical.
func ExampleVerifyX509() {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	root, leaf := exampleChain(now)

	res, err := verify.VerifyX509([]*x509.Certificate{leaf}, []*x509.Certificate{root}, verify.Options{
		Now:       func() time.Time { return now },
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(res.ID, res.Profile, "PQ verified:", res.PQVerified, "path length:", len(res.Chain))
	fmt.Println("roots are post-quantum:", verify.RootsArePQ([]*x509.Certificate{root}))
	// Output:
	// spiffe://example.org/web classic PQ verified: false path length: 2
	// roots are post-quantum: false
}

// RequirePQ refuses a chain that is not protected by ML-DSA signatures end
// to end; callers branch on the error with errors.Is.
func ExampleVerifyX509_requirePQ() {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	root, leaf := exampleChain(now)

	_, err := verify.VerifyX509([]*x509.Certificate{leaf}, []*x509.Certificate{root}, verify.Options{
		RequirePQ: true,
		Now:       func() time.Time { return now },
	})
	fmt.Println(errors.Is(err, verify.ErrAltMissing))
	// Output: true
}

// The X509-SVID shape is checked before any signature: a CA certificate
// presented as a workload's SVID is refused.
func ExampleCheckSVIDShape() {
	root, leaf := exampleChain(time.Now())

	id, err := verify.CheckSVIDShape([]*x509.Certificate{leaf})
	fmt.Println(id, err)

	_, err = verify.CheckSVIDShape([]*x509.Certificate{root})
	fmt.Println(errors.Is(err, verify.ErrLeafIsCA), errors.Is(err, verify.ErrNotSVID))
	// Output:
	// spiffe://example.org/web <nil>
	// true true
}
