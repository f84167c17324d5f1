package sshpop

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/crypto/ssh"
)

var (
	td = spiffeid.RequireTrustDomainFromString("example.org")
	t0 = time.Unix(1_800_000_000, 0)
)

// newSigner returns a fresh ed25519 SSH signer.
func newSigner(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// certOpts shape a test certificate; the zero value is a host
// certificate for node1.example.com valid an hour either side of t0.
type certOpts struct {
	certType   uint32
	principals []string
	keyID      string
	after      time.Time
	before     time.Time
}

// newCert signs a certificate for key with ca.
func newCert(t testing.TB, ca ssh.Signer, key ssh.PublicKey, o certOpts) *ssh.Certificate {
	t.Helper()
	if o.certType == 0 {
		o.certType = ssh.HostCert
	}
	if o.principals == nil {
		o.principals = []string{"node1.example.com"}
	}
	if o.after.IsZero() {
		o.after = t0.Add(-time.Hour)
	}
	if o.before.IsZero() {
		o.before = t0.Add(time.Hour)
	}
	c := &ssh.Certificate{
		Key:             key,
		Serial:          7,
		CertType:        o.certType,
		KeyId:           o.keyID,
		ValidPrincipals: o.principals,
		ValidAfter:      uint64(o.after.Unix()),
		ValidBefore:     uint64(o.before.Unix()),
	}
	if err := c.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	return c
}

// authorizedKey is pub in authorized_keys format, as cert_authorities
// holds it.
func authorizedKey(pub ssh.PublicKey) string {
	return string(ssh.MarshalAuthorizedKey(pub))
}

// writeHost writes a host key and certificate as sshd keeps them and
// returns the agent config naming them.
func writeHost(t testing.TB, key ed25519.PrivateKey, cert ssh.PublicKey) AgentConfig {
	t.Helper()
	dir := t.TempDir()
	block, err := ssh.MarshalPrivateKey(key, "")
	if err != nil {
		t.Fatal(err)
	}
	cfg := AgentConfig{HostKeyPath: filepath.Join(dir, "ssh_host_ed25519_key"), HostCertPath: filepath.Join(dir, "ssh_host_ed25519_key-cert.pub")}
	if err := os.WriteFile(cfg.HostKeyPath, pemEncode(block), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.HostCertPath, ssh.MarshalAuthorizedKey(cert), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func pemEncode(b *pem.Block) []byte { return pem.EncodeToMemory(b) }
