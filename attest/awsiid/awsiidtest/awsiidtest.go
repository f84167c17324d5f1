// Package awsiidtest stands in for AWS in aws_iid tests: signing
// certificates of a test "region" and an instance metadata service
// (IMDSv2, on 127.0.0.1) that serves a document they signed.
package awsiidtest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digitorus/pkcs7"
	"github.com/signet-id/signet/attest/awsiid"
)

// Signer is a region's signing certificate and key, as AWS's.
type Signer struct {
	Cert *x509.Certificate
	Key  *rsa.PrivateKey
	// Path is a PEM file of Cert.
	Path string
	// SHA1 makes SignPKCS7 use a SHA-1 digest (fullsailor/pkcs7's default,
	// what SPIRE's own tests sign with) instead of SHA-256.
	SHA1 bool
}

// NewSigner makes a self-signed RSA signer of bits (1024 or 2048) and
// writes its certificate to a file in t.TempDir().
func NewSigner(t testing.TB, bits int) *Signer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{Organization: []string{"Amazon Web Services LLC (test)"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "aws-"+big.NewInt(int64(bits)).String()+".pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &Signer{Cert: cert, Key: key, Path: p}
}

// SignPKCS7 returns the RSA-2048 signature of doc as the metadata service
// serves it: base64 DER PKCS #7 SignedData with the content, no armour.
func (s *Signer) SignPKCS7(t testing.TB, doc []byte) string {
	t.Helper()
	sd, err := pkcs7.NewSignedData(doc)
	if err != nil {
		t.Fatal(err)
	}
	if !s.SHA1 {
		sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	}
	if err := sd.AddSigner(s.Cert, s.Key, pkcs7.SignerInfoConfig{}); err != nil {
		t.Fatal(err)
	}
	der, err := sd.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

// SignRSA returns the RSA-1024 style signature of doc: base64 PKCS #1
// v1.5 over SHA-256.
func (s *Signer) SignRSA(t testing.TB, doc []byte) string {
	t.Helper()
	sum := sha256.Sum256(doc)
	sig, err := rsa.SignPKCS1v15(rand.Reader, s.Key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

// Document returns a plausible instance identity document.
func Document(account, region, instance string) awsiid.Document {
	return awsiid.Document{
		AccountID: account, Architecture: "x86_64", AvailabilityZone: region + "a",
		ImageID: "ami-0123456789abcdef0", InstanceID: instance, InstanceType: "t3.micro",
		PendingTime: "2026-12-01T10:00:00Z", PrivateIP: "10.0.0.7", Region: region, Version: "2017-09-30",
	}
}

// MarshalDocument is the document's bytes as IMDS serves them (indented
// JSON).
func MarshalDocument(t testing.TB, d awsiid.Document) []byte {
	t.Helper()
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// IMDS is an instance metadata service stand-in that requires an IMDSv2
// session token, as an instance with IMDSv2 enforced does.
type IMDS struct {
	URL string

	mu    sync.Mutex
	files map[string]string
	token string
}

// NewIMDS serves doc with its signatures by s2048 (PKCS #7) and s1024
// (PKCS #1 v1.5) on 127.0.0.1 until the test ends.
func NewIMDS(t testing.TB, doc []byte, s2048, s1024 *Signer) *IMDS {
	t.Helper()
	m := &IMDS{token: "imds-session-" + base64.RawURLEncoding.EncodeToString(doc[:8])}
	m.Set(string(doc), s1024.SignRSA(t, doc), s2048.SignPKCS7(t, doc))
	srv := httptest.NewServer(http.HandlerFunc(m.serve))
	t.Cleanup(srv.Close)
	m.URL = srv.URL
	return m
}

// Set replaces what the service serves.
func (m *IMDS) Set(doc, sig, rsa2048 string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.files = map[string]string{"document": doc, "signature": sig, "rsa2048": rsa2048}
}

func (m *IMDS) serve(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r.URL.Path == "/latest/api/token" {
		if r.Method != http.MethodPut || r.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds") == "" {
			http.Error(w, "bad token request", http.StatusBadRequest)
			return
		}
		// IMDS echoes the lifetime; the AWS SDK needs it to use the token.
		w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", r.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds"))
		_, _ = w.Write([]byte(m.token))
		return
	}
	if r.Method != http.MethodGet {
		http.Error(w, "method", http.StatusMethodNotAllowed)
		return
	}
	if r.Header.Get("X-Aws-Ec2-Metadata-Token") != m.token {
		http.Error(w, "", http.StatusUnauthorized)
		return
	}
	name, ok := strings.CutPrefix(r.URL.Path, "/latest/dynamic/instance-identity/")
	body, found := m.files[name]
	if !ok || !found {
		http.NotFound(w, r)
		return
	}
	_, _ = w.Write([]byte(body))
}
