package issuer_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/conformance/svidspec"
	"github.com/signet-id/signet/issuer"
	"github.com/signet-id/signet/pq/altsig"
	pqjwt "github.com/signet-id/signet/pq/jwt"
	"github.com/signet-id/signet/pq/mldsa"
	"github.com/signet-id/signet/pq/purecert"
	"github.com/signet-id/signet/pq/verify"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

func newProfileIssuer(t *testing.T, p ca.Profile) (*issuer.Issuer, *ca.Manager) {
	t.Helper()
	m, err := ca.New(ca.Config{TrustDomain: td, Profile: p})
	if err != nil {
		t.Fatal(err)
	}
	iss, err := issuer.New(issuer.Config{TrustDomain: td, Authority: m})
	if err != nil {
		t.Fatal(err)
	}
	return iss, m
}

func keySet(m *ca.Manager) pqjwt.KeySet {
	ks := pqjwt.KeySet{Classic: map[string]crypto.PublicKey{}, PQ: m.MLDSAJWTKeys()}
	for kid, k := range m.Bundle().JWTAuthorities() {
		ks.Classic[kid] = k
	}
	return ks
}

func TestHybridProfile(t *testing.T) {
	iss, m := newProfileIssuer(t, ca.ProfileHybrid)
	id := spiffeid.RequireFromString("spiffe://example.org/w")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	alt, err := mldsa.GenerateKey(rand.Reader, mldsa.MLDSA44)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := iss.X509SVID(issuer.X509Params{ID: id, PublicKey: key.Public()}); !errors.Is(err, issuer.ErrInvalidCSR) {
		t.Fatalf("hybrid leaf without an ML-DSA key: %v, want ErrInvalidCSR", err)
	}
	chain, err := iss.X509SVID(issuer.X509Params{ID: id, PublicKey: key.Public(), AltPublicKey: alt.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	if err := svidspec.CheckX509SVID(chain); err != nil {
		t.Fatal(err)
	}
	// Unmodified go-spiffe verifies the classical part.
	if _, _, err := x509svid.Verify(chain, m.Bundle()); err != nil {
		t.Fatalf("go-spiffe: %v", err)
	}
	// A PQ-aware verifier demands and checks every alt signature.
	res, err := verify.VerifyX509(chain, m.Bundle().X509Authorities(), verify.Options{RequirePQ: true})
	if err != nil {
		t.Fatalf("pq verify: %v", err)
	}
	if res.Profile != verify.Hybrid {
		t.Fatalf("profile %v, want hybrid", res.Profile)
	}

	tok, _, err := iss.JWTSVID(issuer.JWTParams{ID: id, Audience: []string{"db"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := svidspec.CheckJWTSVID(tok); err != nil {
		t.Fatal(err)
	}
	if _, err := jwtsvid.ParseAndValidate(tok, jwtbundle.FromJWTAuthorities(td, m.Bundle().JWTAuthorities()), []string{"db"}); err != nil {
		t.Fatalf("go-spiffe rejects the hybrid JWT-SVID: %v", err)
	}
	pt, err := pqjwt.Verify(tok, keySet(m), pqjwt.VerifyOptions{RequirePQ: true, Audience: []string{"db"}})
	if err != nil {
		t.Fatalf("pq JWT verify: %v", err)
	}
	if pt.Subject != id.String() {
		t.Fatalf("sub %q", pt.Subject)
	}
}

func TestPQProfile(t *testing.T) {
	iss, m := newProfileIssuer(t, ca.ProfilePQ)
	id := spiffeid.RequireFromString("spiffe://example.org/w")
	key, err := mldsa.GenerateKey(rand.Reader, mldsa.MLDSA44)
	if err != nil {
		t.Fatal(err)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := iss.X509SVID(issuer.X509Params{ID: id, PublicKey: ec.Public()}); !errors.Is(err, issuer.ErrInvalidCSR) {
		t.Fatalf("ECDSA leaf in a pq trust domain: %v, want ErrInvalidCSR", err)
	}
	chain, err := iss.X509SVID(issuer.X509Params{ID: id, PublicKey: key.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	if err := svidspec.CheckX509SVID(chain); err != nil {
		t.Fatal(err)
	}
	res, err := verify.VerifyX509(chain, m.Bundle().X509Authorities(), verify.Options{RequirePQ: true})
	if err != nil {
		t.Fatalf("pq verify: %v", err)
	}
	if res.Profile != verify.PQ {
		t.Fatalf("profile %v, want pq", res.Profile)
	}
	if len(m.Bundle().JWTAuthorities()) != 0 {
		t.Fatal("ML-DSA JWT keys must not be in the bundle's keys array")
	}
	tok, exp, err := iss.JWTSVID(issuer.JWTParams{ID: id, Audience: []string{"db"}, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	pt, err := pqjwt.Verify(tok, keySet(m), pqjwt.VerifyOptions{RequirePQ: true, Audience: []string{"db"}})
	if err != nil {
		t.Fatalf("pq JWT verify: %v", err)
	}
	if pt.Alg != "ML-DSA-44" || !pt.Expiry.Equal(exp) {
		t.Fatalf("alg %q exp %v (want %v)", pt.Alg, pt.Expiry, exp)
	}
}

func TestParseCSRInfo(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	alt, _ := mldsa.GenerateKey(rand.Reader, mldsa.MLDSA44)
	spki, err := mldsa.MarshalPKIXPublicKey(alt.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	// Requesting an ML-DSA key without proving possession is refused.
	noProof, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 72}, Value: spki}},
	}, ec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := issuer.ParseCSRInfo(noProof); !errors.Is(err, issuer.ErrInvalidCSR) {
		t.Fatalf("CSR without ML-DSA proof of possession: %v, want ErrInvalidCSR", err)
	}
	der, err := altsig.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, ec, alt)
	if err != nil {
		t.Fatal(err)
	}
	info, err := issuer.ParseCSRInfo(der)
	if err != nil {
		t.Fatal(err)
	}
	if info.AltPublicKey == nil || !info.AltPublicKey.Equal(alt.PublicKey()) {
		t.Fatal("alt public key not extracted")
	}
	// A pure ML-DSA request.
	pure, err := purecert.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, alt)
	if err != nil {
		t.Fatal(err)
	}
	pinfo, err := issuer.ParseCSRInfo(pure)
	if err != nil {
		t.Fatal(err)
	}
	if pk, ok := pinfo.PublicKey.(*mldsa.PublicKey); !ok || !pk.Equal(alt.PublicKey()) {
		t.Fatalf("pure CSR key %T", pinfo.PublicKey)
	}
}
