package issuer_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"testing"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/issuer"
	"github.com/signet-id/signet/pq/altsig"
	"github.com/signet-id/signet/pq/mldsa"
	"github.com/signet-id/signet/pq/purecert"
	"github.com/signet-id/signet/pq/verify"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// FuzzParseCSRInfo fuzzes the CSR parser the served path uses (the agent
// API's AttestAgent/RenewAgent and the SVID API's MintX509SVID and
// BatchNewX509SVID all call issuer.ParseCSRInfo), with classic, hybrid and
// pure ML-DSA seeds. A request it accepts must be signable by an issuer of
// the matching profile, and the SVID must verify.
func FuzzParseCSRInfo(f *testing.F) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	alt, _ := mldsa.GenerateKey(rand.Reader, mldsa.MLDSA44)
	classic, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, ec)
	edCSR, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, ed)
	hybrid, err := altsig.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, ec, alt)
	if err != nil {
		f.Fatal(err)
	}
	pure, err := purecert.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, alt)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range [][]byte{classic, edCSR, hybrid, pure, {0x30, 0x00}, {}} {
		f.Add(s)
	}
	td := spiffeid.RequireTrustDomainFromString("example.org")
	id := spiffeid.RequireFromPath(td, "/w")
	issuers := map[ca.Profile]*issuer.Issuer{}
	roots := map[ca.Profile][]*x509.Certificate{}
	for _, p := range []ca.Profile{ca.ProfileClassic, ca.ProfileHybrid, ca.ProfilePQ} {
		m, err := ca.New(ca.Config{TrustDomain: td, Profile: p})
		if err != nil {
			f.Fatal(err)
		}
		iss, err := issuer.New(issuer.Config{TrustDomain: td, Authority: m})
		if err != nil {
			f.Fatal(err)
		}
		issuers[p], roots[p] = iss, m.Bundle().X509Authorities()
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		info, err := issuer.ParseCSRInfo(der)
		if err != nil {
			return
		}
		p := ca.ProfileClassic
		if _, ok := info.PublicKey.(*mldsa.PublicKey); ok {
			p = ca.ProfilePQ
		} else if info.AltPublicKey != nil {
			p = ca.ProfileHybrid
		}
		chain, err := issuers[p].X509SVID(issuer.X509Params{ID: id, PublicKey: info.PublicKey, AltPublicKey: info.AltPublicKey})
		if err != nil {
			t.Fatalf("accepted CSR cannot be signed by a %s issuer: %v", p, err)
		}
		res, err := verify.VerifyX509(chain, roots[p], verify.Options{RequirePQ: p != ca.ProfileClassic})
		if err != nil {
			t.Fatalf("SVID from an accepted CSR does not verify: %v", err)
		}
		if res.ID != id {
			t.Fatalf("verified %v", res.ID)
		}
	})
}
