package transit_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"strings"
	"testing"

	vault "github.com/hashicorp/vault/api"
	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/ca/keymanager/transit"
	"github.com/signet-id/signet/secrets/vaulttest"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

type rootClient struct{ c *vault.Client }

func (r rootClient) API(context.Context) (*vault.Client, error) { return r.c, nil }

func start(t *testing.T) (*vaulttest.Server, *transit.KeyManager) {
	t.Helper()
	v := vaulttest.Start(t)
	v.Write(t, "sys/mounts/transit", map[string]any{"type": "transit"})
	km, err := transit.New(rootClient{v.Client(t)}, "transit")
	if err != nil {
		t.Fatal(err)
	}
	if err := km.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	return v, km
}

// TestTransitCreateSignDelete: a key created in the real Vault dev
// server's Transit engine is ecdsa-p256 and not exportable, signs (the
// signature verifies with the public key Vault reports), is found again by
// its reference, and is gone after DeleteKey.
func TestTransitCreateSignDelete(t *testing.T) {
	v, km := start(t)
	ctx := context.Background()
	ref, s, err := km.CreateKey(ctx, "signet-x509-a")
	if err != nil {
		t.Fatal(err)
	}
	if ref != "transit/keys/signet-x509-a" {
		t.Fatalf("ref %q", ref)
	}
	sec, err := v.Client(t).Logical().Read(ref)
	if err != nil || sec == nil {
		t.Fatalf("read key: %v", err)
	}
	if sec.Data["exportable"] != false || sec.Data["type"] != "ecdsa-p256" {
		t.Fatalf("key is %v/%v, want ecdsa-p256 not exportable", sec.Data["type"], sec.Data["exportable"])
	}
	if _, err := v.Client(t).Logical().Read("transit/export/signing-key/signet-x509-a"); err == nil {
		t.Fatal("Vault exported the CA key")
	}
	d := sha256.Sum256([]byte("signet"))
	sig, err := s.Sign(rand.Reader, d[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(s.Public().(*ecdsa.PublicKey), d[:], sig) {
		t.Fatal("transit signature does not verify")
	}
	again, err := km.Signer(ctx, ref)
	if err != nil || !again.Public().(*ecdsa.PublicKey).Equal(s.Public()) {
		t.Fatalf("reopen: %v", err)
	}
	if _, _, err := km.CreateKey(ctx, "signet-x509-a"); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second create: %v", err)
	}
	if err := km.DeleteKey(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if _, err := km.Signer(ctx, ref); !errors.Is(err, ca.ErrKeyNotFound) {
		t.Fatalf("deleted key: %v", err)
	}
	if _, err := s.Sign(rand.Reader, d[:], crypto.SHA256); err == nil {
		t.Fatal("a deleted key still signs")
	}
}

// TestTransitRefusals: an exportable key, a key of another type and a
// missing mount are refused.
func TestTransitRefusals(t *testing.T) {
	v, km := start(t)
	ctx := context.Background()
	v.Write(t, "transit/keys/exportable", map[string]any{"type": "ecdsa-p256", "exportable": true})
	if _, err := km.Signer(ctx, "transit/keys/exportable"); err == nil || !strings.Contains(err.Error(), "is exportable") {
		t.Fatalf("exportable key: %v", err)
	}
	v.Write(t, "transit/keys/rsa", map[string]any{"type": "rsa-2048"})
	if _, err := km.Signer(ctx, "transit/keys/rsa"); err == nil || !strings.Contains(err.Error(), "want ecdsa-p256") {
		t.Fatalf("rsa key: %v", err)
	}
	other, _ := transit.New(rootClient{v.Client(t)}, "nosuch")
	if err := other.Check(ctx); err == nil || !strings.Contains(err.Error(), "mount nosuch") {
		t.Fatalf("missing mount: %v", err)
	}
	if _, err := km.Signer(ctx, "nokeys"); err == nil || !strings.Contains(err.Error(), "not mount/keys/name") {
		t.Fatalf("bad ref: %v", err)
	}
}

// TestTransitCALifecycle: a CA manager whose key manager is Transit keeps
// only references in its state; preparing a new authority creates a new
// Transit key, and a restart reopens the keys from the state.
func TestTransitCALifecycle(t *testing.T) {
	v, km := start(t)
	path := t.TempDir() + "/ca.json"
	td := spiffeid.RequireTrustDomainFromString("example.org")
	m, err := ca.New(ca.Config{TrustDomain: td, Path: path, KeyManager: km})
	if err != nil {
		t.Fatal(err)
	}
	cert, key := m.X509Authority()
	if !key.Public().(*ecdsa.PublicKey).Equal(cert.PublicKey) {
		t.Fatal("CA key is not the certificate's")
	}
	info := m.X509Authorities()[0]
	if info.KeyManager != "hashicorp_vault" || !strings.HasPrefix(info.KeyURI, "transit/keys/signet-x509-") {
		t.Fatalf("X.509 key location %q %q", info.KeyManager, info.KeyURI)
	}
	if j := m.JWTAuthorities()[0]; j.KeyManager != "hashicorp_vault" || !strings.HasPrefix(j.KeyURI, "transit/keys/signet-jwt-") {
		t.Fatalf("JWT key location %q %q", j.KeyManager, j.KeyURI)
	}
	next, err := m.PrepareX509()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := v.Client(t).Logical().List("transit/keys")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(keys.Data["keys"].([]any)); n != 3 {
		t.Fatalf("transit holds %d keys, want 3 (X.509 active and prepared, JWT)", n)
	}
	m2, err := ca.New(ca.Config{TrustDomain: td, Path: path, KeyManager: km})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m2.ActivateX509(next.ID); err != nil {
		t.Fatal(err)
	}
	c2, k2 := m2.X509Authority()
	leaf := &x509.Certificate{SerialNumber: c2.SerialNumber}
	if _, err := x509.CreateCertificate(rand.Reader, leaf, c2, k2.Public(), k2); err != nil {
		t.Fatalf("sign with the reopened Transit key: %v", err)
	}
}
