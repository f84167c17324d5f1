package vaultpki_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/url"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/signet-id/signet/conformance/svidspec"
	"github.com/signet-id/signet/secrets"
	"github.com/signet-id/signet/secrets/vaultpki"
	"github.com/signet-id/signet/secrets/vaulttest"
)

var (
	td    = spiffeid.RequireTrustDomainFromString("example.org")
	webID = spiffeid.RequireFromString("spiffe://example.org/web")
)

// TestVaultRootedChainVerifiedByGoSPIFFE has a real Vault root CA sign the
// trust domain's intermediate, mints an X.509-SVID with it, and verifies
// the chain with go-spiffe against a bundle holding only Vault's root. A
// second CSR (the next CA, at rotation) is signed the same way.
func TestVaultRootedChainVerifiedByGoSPIFFE(t *testing.T) {
	vs := vaulttest.Start(t)
	vc := vs.Client(t)
	if err := vc.Sys().Mount("pki", &vault.MountInput{Type: "pki", Config: vault.MountConfigInput{MaxLeaseTTL: "87600h"}}); err != nil {
		t.Fatal(err)
	}
	vs.Write(t, "pki/root/generate/internal", map[string]any{"common_name": "Vault Test Root", "ttl": "87600h", "key_type": "ec", "key_bits": 256})

	client, err := secrets.NewClient(secrets.ClientConfig{Address: vs.Addr, Auth: secrets.TokenAuth{Token: vaulttest.RootToken}})
	if err != nil {
		t.Fatal(err)
	}
	up, err := vaultpki.New(vaultpki.Config{Client: client})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var prevRoot []byte
	for round := range 2 {
		caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject: pkix.Name{Organization: []string{"Signet"}, CommonName: "Signet CA"},
			URIs:    []*url.URL{td.ID().URL()},
		}, caKey)
		if err != nil {
			t.Fatal(err)
		}
		signed, err := up.SignIntermediate(ctx, td, csr, 24*time.Hour)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if len(signed.Roots) != 1 || len(signed.Chain) != 1 {
			t.Fatalf("round %d: %d roots, chain of %d", round, len(signed.Roots), len(signed.Chain))
		}
		inter := signed.Chain[0]
		if err := svidspec.CheckCA(inter); err != nil {
			t.Fatalf("round %d: intermediate is not a SPIFFE signing certificate: %v", round, err)
		}
		if prevRoot != nil && string(prevRoot) != string(signed.Roots[0].Raw) {
			t.Fatal("the root changed between rotations")
		}
		prevRoot = signed.Roots[0].Raw

		leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
			SerialNumber: big.NewInt(int64(round + 2)), NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
			URIs:                  []*url.URL{webID.URL()},
			KeyUsage:              x509.KeyUsageDigitalSignature,
			BasicConstraintsValid: true,
			ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		}, inter, leafKey.Public(), caKey)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		chain := append([]*x509.Certificate{leaf}, signed.Chain...)
		if err := svidspec.CheckX509SVID(chain); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		id, _, err := x509svid.Verify(chain, x509bundle.FromX509Authorities(td, signed.Roots))
		if err != nil {
			t.Fatalf("round %d: go-spiffe rejects the Vault-rooted chain: %v", round, err)
		}
		if id != webID {
			t.Fatalf("id = %v", id)
		}
	}
}
