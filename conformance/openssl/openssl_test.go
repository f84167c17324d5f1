package openssl

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/conformance/tooltest"
	"github.com/signet-id/signet/pq/altsig"
	"github.com/signet-id/signet/pq/mldsa"
	"github.com/signet-id/signet/pq/pqtest"
	"github.com/signet-id/signet/pq/purecert"
)

// openssl runs the tool and returns its combined output and whether it
// exited 0.
func openssl(t *testing.T, args ...string) (string, bool) {
	t.Helper()
	cmd := exec.Command(tooltest.OpenSSL(t), args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) {
			t.Fatalf("running openssl %v: %v", args, err)
		}
	}
	return string(out), err == nil
}

func mustOpenSSL(t *testing.T, args ...string) string {
	t.Helper()
	out, ok := openssl(t, args...)
	if !ok {
		t.Fatalf("openssl %s failed:\n%s", strings.Join(args, " "), out)
	}
	return out
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func certPEM(certs ...*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

func TestVersion(t *testing.T) {
	out := mustOpenSSL(t, "version")
	if !strings.HasPrefix(out, "OpenSSL 3.5") {
		t.Fatalf("not OpenSSL 3.5: %s", out)
	}
	t.Log(strings.TrimSpace(out))
}

// verifyChain runs openssl verify on leaf with the intermediate untrusted
// and root as the trust anchor.
func verifyChain(t *testing.T, c *pqtest.Chain, extra ...string) (string, bool) {
	dir := t.TempDir()
	root := writeFile(t, dir, "root.pem", certPEM(c.Root.Cert))
	inter := writeFile(t, dir, "int.pem", certPEM(c.Intermediate.Cert))
	leaf := writeFile(t, dir, "leaf.pem", certPEM(c.Leaf.Cert))
	args := append([]string{"verify"}, extra...)
	args = append(args, "-CAfile", root, "-untrusted", inter, leaf)
	return openssl(t, args...)
}

func TestVerifyHybridChain(t *testing.T) {
	c, err := pqtest.Hybrid(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, flags := range [][]string{nil, {"-x509_strict"}, {"-x509_strict", "-purpose", "sslserver"}, {"-x509_strict", "-purpose", "sslclient"}} {
		out, ok := verifyChain(t, c, flags...)
		if !ok || !strings.Contains(out, ": OK") {
			t.Fatalf("openssl verify %v rejected the hybrid chain:\n%s", flags, out)
		}
	}
}

func TestVerifyPureChain(t *testing.T) {
	c, err := pqtest.Pure(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, flags := range [][]string{nil, {"-x509_strict"}, {"-x509_strict", "-purpose", "sslserver"}, {"-x509_strict", "-purpose", "sslclient"}} {
		out, ok := verifyChain(t, c, flags...)
		if !ok || !strings.Contains(out, ": OK") {
			t.Fatalf("openssl verify %v rejected the pure ML-DSA chain:\n%s", flags, out)
		}
	}
	// And it is not a rubber stamp: a leaf signed by a foreign key fails.
	other, err := pqtest.Pure(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	mixed := *c
	mixed.Leaf = other.Leaf
	if out, ok := verifyChain(t, &mixed); ok {
		t.Fatalf("openssl verify accepted a leaf of another chain:\n%s", out)
	}
	// openssl parses the certificate and names the algorithms.
	dir := t.TempDir()
	leaf := writeFile(t, dir, "leaf.pem", certPEM(c.Leaf.Cert))
	out := mustOpenSSL(t, "x509", "-in", leaf, "-noout", "-text")
	if !strings.Contains(out, "ML-DSA-44") {
		t.Fatalf("openssl x509 -text does not show ML-DSA-44:\n%s", out)
	}
}

func TestAltSignaturesWithPkeyutl(t *testing.T) {
	c, err := pqtest.Hybrid(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	links := []struct {
		name         string
		cert, issuer *x509.Certificate
	}{
		{"root", c.Root.Cert, c.Root.Cert},
		{"intermediate", c.Intermediate.Cert, c.Root.Cert},
		{"leaf", c.Leaf.Cert, c.Intermediate.Cert},
	}
	for _, l := range links {
		t.Run(l.name, func(t *testing.T) {
			dir := t.TempDir()
			a, err := altsig.Parse(l.cert.Raw)
			if err != nil {
				t.Fatal(err)
			}
			issuerAlt, err := altsig.AltPublicKey(l.issuer)
			if err != nil {
				t.Fatal(err)
			}
			spki, err := mldsa.MarshalPKIXPublicKey(issuerAlt)
			if err != nil {
				t.Fatal(err)
			}
			// OpenSSL parses the subjectAltPublicKeyInfo value as a key.
			spkiFile := writeFile(t, dir, "issuer-alt.der", spki)
			pubPEM := filepath.Join(dir, "issuer-alt.pem")
			out := mustOpenSSL(t, "pkey", "-pubin", "-inform", "DER", "-in", spkiFile, "-out", pubPEM)
			_ = out
			if text := mustOpenSSL(t, "pkey", "-pubin", "-in", pubPEM, "-noout", "-text"); !strings.Contains(text, issuerAlt.Algorithm().String()) {
				t.Fatalf("openssl does not see an %s key:\n%s", issuerAlt.Algorithm(), text)
			}
			pre := writeFile(t, dir, "pretbs.der", a.PreTBS)
			sig := writeFile(t, dir, "alt.sig", a.Signature)
			out = mustOpenSSL(t, "pkeyutl", "-verify", "-rawin", "-pubin", "-inkey", pubPEM, "-in", pre, "-sigfile", sig)
			if !strings.Contains(out, "Signature Verified Successfully") {
				t.Fatalf("pkeyutl:\n%s", out)
			}
			// A one-bit change of the PreTBS must fail.
			bad := append([]byte(nil), a.PreTBS...)
			bad[len(bad)/2] ^= 1
			badFile := writeFile(t, dir, "bad.der", bad)
			if out, ok := openssl(t, "pkeyutl", "-verify", "-rawin", "-pubin", "-inkey", pubPEM, "-in", badFile, "-sigfile", sig); ok {
				t.Fatalf("pkeyutl accepted an altered PreTBS:\n%s", out)
			}
		})
	}
}

func TestPKCS8Interop(t *testing.T) {
	for _, alg := range []mldsa.Algorithm{mldsa.MLDSA44, mldsa.MLDSA65} {
		t.Run(alg.String(), func(t *testing.T) {
			dir := t.TempDir()
			// Ours → OpenSSL.
			sk, err := mldsa.GenerateKey(rand.Reader, alg)
			if err != nil {
				t.Fatal(err)
			}
			der, err := mldsa.MarshalPKCS8PrivateKey(sk)
			if err != nil {
				t.Fatal(err)
			}
			keyFile := writeFile(t, dir, "ours.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
			pubFile := filepath.Join(dir, "ours-pub.der")
			mustOpenSSL(t, "pkey", "-in", keyFile, "-pubout", "-outform", "DER", "-out", pubFile)
			gotPub, err := os.ReadFile(pubFile)
			if err != nil {
				t.Fatal(err)
			}
			wantPub, _ := mldsa.MarshalPKIXPublicKey(sk.PublicKey())
			if !bytes.Equal(gotPub, wantPub) {
				t.Fatal("OpenSSL derived another public key from our PKCS#8 seed")
			}
			// OpenSSL signs with our key; we verify.
			msg := writeFile(t, dir, "msg", []byte("signet interop"))
			sigFile := filepath.Join(dir, "msg.sig")
			mustOpenSSL(t, "pkeyutl", "-sign", "-rawin", "-inkey", keyFile, "-in", msg, "-out", sigFile)
			sig, _ := os.ReadFile(sigFile)
			if !sk.PublicKey().Verify([]byte("signet interop"), sig) {
				t.Fatal("OpenSSL's signature with our key does not verify")
			}

			// OpenSSL → ours (its default "seed-priv" both form, and seed-only).
			for _, format := range []string{"", "seed-only"} {
				genFile := filepath.Join(dir, "gen"+format+".der")
				args := []string{"genpkey", "-algorithm", alg.String(), "-outform", "DER", "-out", genFile}
				if format != "" {
					args = append(args, "-provparam", "ml-dsa.output_formats="+format)
				}
				mustOpenSSL(t, args...)
				gen, _ := os.ReadFile(genFile)
				k, err := mldsa.ParsePKCS8PrivateKey(gen)
				if err != nil {
					t.Fatalf("parsing OpenSSL's %q key: %v", format, err)
				}
				osPub := filepath.Join(dir, "gen-pub"+format+".der")
				mustOpenSSL(t, "pkey", "-inform", "DER", "-in", genFile, "-pubout", "-outform", "DER", "-out", osPub)
				want, _ := os.ReadFile(osPub)
				got, _ := mldsa.MarshalPKIXPublicKey(k.PublicKey())
				if !bytes.Equal(got, want) {
					t.Fatalf("public key of OpenSSL's %q key differs", format)
				}
			}
		})
	}
}

func TestCertificateRequests(t *testing.T) {
	dir := t.TempDir()
	u, _ := url.Parse(pqtest.LeafID)
	tmpl := &x509.CertificateRequest{URIs: []*url.URL{u}}
	ec := pqtest.NewECKey()
	alt := pqtest.NewMLDSAKey(mldsa.MLDSA44)
	hybrid, err := altsig.CreateCertificateRequest(rand.Reader, tmpl, ec, alt)
	if err != nil {
		t.Fatal(err)
	}
	pure, err := purecert.CreateCertificateRequest(rand.Reader, tmpl, alt)
	if err != nil {
		t.Fatal(err)
	}
	for name, der := range map[string][]byte{"hybrid": hybrid, "pure": pure} {
		f := writeFile(t, dir, name+".pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
		out := mustOpenSSL(t, "req", "-in", f, "-verify", "-noout")
		if !strings.Contains(out, "verify OK") {
			t.Fatalf("%s CSR: %s", name, out)
		}
	}
}
