package cli

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"flag"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file (run `go test ./cli -run %s -update` to create it): %v", t.Name(), err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (rerun with -update if the change is intended)\n--- got:\n%s\n--- want:\n%s", path, got, want)
	}
}

// fixture is a deterministic PKI: Ed25519 keys from fixed seeds and
// certificates with fixed fields, so DER bytes (and golden files) are the
// same on every run.
type fixture struct {
	caKey, leafKey, otherKey, jwtKey ed25519.PrivateKey
	ca, leaf, other                  *x509.Certificate
}

func seededKey(label string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("signet cli test fixture " + label))
	return ed25519.NewKeyFromSeed(seed[:])
}

var (
	fixtureNotBefore = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	fixtureNotAfter  = time.Date(2126, 1, 1, 0, 0, 0, 0, time.UTC)
)

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{
		caKey:    seededKey("ca"),
		leafKey:  seededKey("leaf"),
		otherKey: seededKey("other"),
		jwtKey:   seededKey("jwt"),
	}
	mkCA := func(serial int64, td string, key ed25519.PrivateKey) *x509.Certificate {
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(serial),
			Subject:               pkix.Name{Country: []string{"US"}, Organization: []string{"SPIFFE"}, SerialNumber: td},
			NotBefore:             fixtureNotBefore,
			NotAfter:              fixtureNotAfter,
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
			BasicConstraintsValid: true,
			IsCA:                  true,
			URIs:                  []*url.URL{{Scheme: "spiffe", Host: td}},
			SubjectKeyId:          []byte(td),
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	f.ca = mkCA(1, "example.org", f.caKey)
	f.other = mkCA(2, "other.org", f.otherKey)
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(0x1234),
		Subject:      pkix.Name{Country: []string{"US"}, Organization: []string{"SPIRE"}},
		NotBefore:    fixtureNotBefore,
		NotAfter:     fixtureNotBefore.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{{Scheme: "spiffe", Host: "example.org", Path: "/web"}},
		SubjectKeyId: []byte("leaf"),
	}
	der, err := x509.CreateCertificate(rand.Reader, leafTmpl, f.ca, f.leafKey.Public(), f.caKey)
	if err != nil {
		t.Fatal(err)
	}
	if f.leaf, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) jwtPublicDER(t testing.TB) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(f.jwtKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func statusErr(code codes.Code, msg string) error { return status.Error(code, msg) }
