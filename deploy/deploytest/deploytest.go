// Package deploytest supports the tests of the deployment files: it writes
// the files a configuration names (trust bundles, certificates and keys,
// CA key-encryption keys, join tokens) under a test's directory, moves a
// configuration's absolute paths there, and runs `signet server|agent
// validate` on the result, so that validate reads real files.
package deploytest

import (
	"bytes"
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

	"github.com/signet-id/signet/cli"
)

// Authority is a throwaway CA for certificates the configurations name.
type Authority struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// NewAuthority returns a self-signed CA valid for an hour around now.
func NewAuthority(t testing.TB, name string) *Authority {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: serial(t), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &Authority{cert: cert, key: key}
}

// WriteBundle writes the CA certificate as a PEM bundle at path (0644).
func (a *Authority) WriteBundle(t testing.TB, path string) {
	t.Helper()
	WriteFile(t, path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.cert.Raw}), 0o644)
}

// WriteLeaf writes a certificate for client and node authentication that
// the CA signed (certPath, 0644) and its PKCS#8 key (keyPath, 0600).
func (a *Authority) WriteLeaf(t testing.TB, name, certPath, keyPath string) {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: serial(t), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	WriteFile(t, certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	WriteFile(t, keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600)
}

// WriteKEK writes 32 random bytes at path (0600), as
// `head -c32 /dev/urandom > kek` does.
func WriteKEK(t testing.TB, path string) {
	t.Helper()
	kek := make([]byte, 32)
	if _, err := rand.Read(kek); err != nil {
		t.Fatal(err)
	}
	WriteFile(t, path, kek, 0o600)
}

// WriteFile writes data at path with mode (exactly, whatever the umask),
// creating missing parents 0755.
func WriteFile(t testing.TB, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// Rehome returns hcl with every quoted absolute path that starts with one
// of prefixes (e.g. "/etc/signet/") moved under root: "/etc/signet/x"
// becomes "<root>/etc/signet/x". It fails the test when a prefix does not
// occur, so a stale prefix list is noticed.
func Rehome(t testing.TB, hcl, root string, prefixes ...string) string {
	t.Helper()
	for _, p := range prefixes {
		q := `"` + p
		if !strings.Contains(hcl, q) {
			t.Fatalf("deploytest: no path under %s in the configuration", p)
		}
		hcl = strings.ReplaceAll(hcl, q, `"`+filepath.Join(root, p)+"/")
	}
	return hcl
}

// Validate writes hcl to a temporary file and runs `signet <daemon>
// validate --config <file> extra...` through the cli package. It returns
// the exit code and the output (stdout and stderr together).
func Validate(t testing.TB, daemon, hcl string, extra ...string) (int, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), daemon+".hcl")
	WriteFile(t, p, []byte(hcl), 0o600)
	var out bytes.Buffer
	args := append([]string{daemon, "validate", "--config", p}, extra...)
	code := cli.Main(t.Context(), args, &out, &out)
	return code, out.String()
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	return n
}
