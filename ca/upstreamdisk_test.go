package ca_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/issuer"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// operatorCA makes a CA certificate and key signed by parent (self-signed
// when parent is nil).
func operatorCA(t *testing.T, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, isCA bool, notAfter time.Time) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter,
		BasicConstraintsValid: true, IsCA: isCA, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	if !isCA {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key
}

func writePEM(t *testing.T, dir, name, typ string, mode os.FileMode, ders ...[]byte) string {
	t.Helper()
	var out []byte
	for _, d := range ders {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: d})...)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, out, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func keyDER(t *testing.T, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	d, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// svidVerifiesAgainst issues an X.509-SVID with m and verifies it with
// go-spiffe against roots alone.
func svidVerifiesAgainst(t *testing.T, m *ca.Manager, roots ...*x509.Certificate) {
	t.Helper()
	td := spiffeid.RequireTrustDomainFromString("example.org")
	iss, err := issuer.New(issuer.Config{TrustDomain: td, Authority: m})
	if err != nil {
		t.Fatal(err)
	}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	chain, err := iss.X509SVID(issuer.X509Params{ID: spiffeid.RequireFromPath(td, "/w"), PublicKey: k.Public()})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := x509svid.Verify(chain, x509bundle.FromX509Authorities(td, roots)); err != nil {
		t.Fatalf("go-spiffe refuses the SVID against the operator's root: %v", err)
	}
	b := m.Bundle().X509Authorities()
	if len(b) != len(roots) || !b[0].Equal(roots[0]) {
		t.Fatalf("the bundle holds %d authorities, want the operator's roots only", len(b))
	}
}

// TestDiskUpstreamRoot: an operator's self-signed root on disk signs
// Signet's intermediate; SVIDs verify against that root alone, and the
// bundle publishes it.
func TestDiskUpstreamRoot(t *testing.T) {
	dir := t.TempDir()
	root, rootKey := operatorCA(t, "operator root", nil, nil, true, time.Now().Add(48*time.Hour))
	up, err := ca.LoadDiskUpstream(ca.DiskUpstreamConfig{
		CertFile: writePEM(t, dir, "root.pem", "CERTIFICATE", 0o644, root.Raw),
		KeyFile:  writePEM(t, dir, "root.key", "PRIVATE KEY", 0o600, keyDER(t, rootKey)),
	})
	if err != nil {
		t.Fatal(err)
	}
	m, err := ca.New(ca.Config{TrustDomain: spiffeid.RequireTrustDomainFromString("example.org"), Upstream: up})
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := m.X509Authority()
	if err := cert.CheckSignatureFrom(root); err != nil || m.X509Authorities()[0].UpstreamAuthorityID != ca.X509AuthorityID(root) {
		t.Fatalf("Signet's CA is not signed by the operator root: %v", err)
	}
	svidVerifiesAgainst(t, m, root)
}

// TestDiskUpstreamIntermediate: with an operator intermediate and its
// root in bundle_file_path, SVIDs carry the operator intermediate and
// verify against the root; the CA never outlives the intermediate.
func TestDiskUpstreamIntermediate(t *testing.T) {
	dir := t.TempDir()
	root, rootKey := operatorCA(t, "operator root", nil, nil, true, time.Now().Add(48*time.Hour))
	inter, interKey := operatorCA(t, "operator intermediate", root, rootKey, true, time.Now().Add(12*time.Hour))
	up, err := ca.LoadDiskUpstream(ca.DiskUpstreamConfig{
		CertFile:   writePEM(t, dir, "inter.pem", "CERTIFICATE", 0o644, inter.Raw),
		KeyFile:    writePEM(t, dir, "inter.key", "EC PRIVATE KEY", 0o600, func() []byte { d, _ := x509.MarshalECPrivateKey(interKey); return d }()),
		BundleFile: writePEM(t, dir, "bundle.pem", "CERTIFICATE", 0o644, root.Raw),
	})
	if err != nil {
		t.Fatal(err)
	}
	m, err := ca.New(ca.Config{TrustDomain: spiffeid.RequireTrustDomainFromString("example.org"), Upstream: up, CATTL: 7 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := m.X509Authority()
	if cert.NotAfter.After(inter.NotAfter) {
		t.Fatalf("CA valid until %v, beyond the operator intermediate's %v", cert.NotAfter, inter.NotAfter)
	}
	svidVerifiesAgainst(t, m, root)
}

// TestDiskUpstreamRefusals: each bad file is refused at load with what is
// wrong and which file.
func TestDiskUpstreamRefusals(t *testing.T) {
	dir := t.TempDir()
	root, rootKey := operatorCA(t, "root", nil, nil, true, time.Now().Add(48*time.Hour))
	other, otherKey := operatorCA(t, "other", nil, nil, true, time.Now().Add(48*time.Hour))
	inter, interKey := operatorCA(t, "inter", root, rootKey, true, time.Now().Add(12*time.Hour))
	leaf, leafKey := operatorCA(t, "leaf", nil, nil, false, time.Now().Add(48*time.Hour))
	expired, expiredKey := operatorCA(t, "expired", nil, nil, true, time.Now().Add(-time.Minute))
	rootPEM := writePEM(t, dir, "root.pem", "CERTIFICATE", 0o644, root.Raw)
	rootKeyPEM := writePEM(t, dir, "root.key", "PRIVATE KEY", 0o600, keyDER(t, rootKey))
	interPEM := writePEM(t, dir, "inter.pem", "CERTIFICATE", 0o644, inter.Raw)
	interKeyPEM := writePEM(t, dir, "inter.key", "PRIVATE KEY", 0o600, keyDER(t, interKey))
	otherPEM := writePEM(t, dir, "other.pem", "CERTIFICATE", 0o644, other.Raw)
	_ = otherKey
	for _, c := range []struct {
		name string
		cfg  ca.DiskUpstreamConfig
		want string
	}{
		{"no paths", ca.DiskUpstreamConfig{}, "cert_file_path and key_file_path are required"},
		{"missing cert", ca.DiskUpstreamConfig{CertFile: filepath.Join(dir, "none.pem"), KeyFile: rootKeyPEM}, "no such file"},
		{"not PEM", ca.DiskUpstreamConfig{CertFile: rootKeyPEM, KeyFile: rootKeyPEM}, "holds no PEM certificate"},
		{"not a CA", ca.DiskUpstreamConfig{CertFile: writePEM(t, dir, "leaf.pem", "CERTIFICATE", 0o644, leaf.Raw), KeyFile: writePEM(t, dir, "leaf.key", "PRIVATE KEY", 0o600, keyDER(t, leafKey))}, "is not a CA allowed to sign"},
		{"expired", ca.DiskUpstreamConfig{CertFile: writePEM(t, dir, "exp.pem", "CERTIFICATE", 0o644, expired.Raw), KeyFile: writePEM(t, dir, "exp.key", "PRIVATE KEY", 0o600, keyDER(t, expiredKey))}, "not now"},
		{"key of another cert", ca.DiskUpstreamConfig{CertFile: otherPEM, KeyFile: rootKeyPEM}, "is not the key of the certificate"},
		{"loose key file", ca.DiskUpstreamConfig{CertFile: rootPEM, KeyFile: writePEM(t, dir, "loose.key", "PRIVATE KEY", 0o644, keyDER(t, rootKey))}, "readable by group or others"},
		{"intermediate without bundle", ca.DiskUpstreamConfig{CertFile: interPEM, KeyFile: interKeyPEM}, "is not self-signed: set bundle_file_path"},
		{"bundle of another root", ca.DiskUpstreamConfig{CertFile: interPEM, KeyFile: interKeyPEM, BundleFile: otherPEM}, "does not chain to the roots"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ca.LoadDiskUpstream(c.cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("LoadDiskUpstream: %v, want %q", err, c.want)
			}
		})
	}
}
