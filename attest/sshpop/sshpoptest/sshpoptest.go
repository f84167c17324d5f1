// Package sshpoptest builds throwaway SSH host PKIs for sshpop tests: a
// host CA, host certificates signed by it, and the key and certificate
// files sshd keeps.
package sshpoptest

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// NewSigner returns a fresh ed25519 SSH signer (a CA or a host key).
func NewSigner(t testing.TB) ssh.Signer {
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

// AuthorizedKey is pub in authorized_keys format, as sshpop's
// cert_authorities holds a CA.
func AuthorizedKey(pub ssh.PublicKey) string {
	return string(ssh.MarshalAuthorizedKey(pub))
}

// Cert shapes a certificate. The zero value is a host certificate for
// node1.example.com, serial 7, valid from an hour before now to an hour
// after.
type Cert struct {
	CertType   uint32 // default ssh.HostCert
	Principals []string
	KeyID      string
	Serial     uint64
	After      time.Time
	Before     time.Time
}

// Sign signs a certificate for key with ca.
func Sign(t testing.TB, ca ssh.Signer, key ssh.PublicKey, c Cert) *ssh.Certificate {
	t.Helper()
	if c.CertType == 0 {
		c.CertType = ssh.HostCert
	}
	if c.Principals == nil {
		c.Principals = []string{"node1.example.com"}
	}
	if c.Serial == 0 {
		c.Serial = 7
	}
	now := time.Now()
	if c.After.IsZero() {
		c.After = now.Add(-time.Hour)
	}
	if c.Before.IsZero() {
		c.Before = now.Add(time.Hour)
	}
	cert := &ssh.Certificate{
		Key:             key,
		Serial:          c.Serial,
		CertType:        c.CertType,
		KeyId:           c.KeyID,
		ValidPrincipals: c.Principals,
		ValidAfter:      uint64(c.After.Unix()),
		ValidBefore:     uint64(c.Before.Unix()),
	}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	return cert
}

// WriteHost writes key (OpenSSH format) and cert as sshd keeps them, mode
// 0600, into dir, and returns their paths. cert is normally an
// *ssh.Certificate; refusal tests may pass a plain public key.
func WriteHost(t testing.TB, dir string, key crypto.PrivateKey, cert ssh.PublicKey) (keyPath, certPath string) {
	t.Helper()
	block, err := ssh.MarshalPrivateKey(key, "")
	if err != nil {
		t.Fatal(err)
	}
	keyPath = filepath.Join(dir, "ssh_host_ed25519_key")
	certPath = filepath.Join(dir, "ssh_host_ed25519_key-cert.pub")
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certPath, ssh.MarshalAuthorizedKey(cert), 0o600); err != nil {
		t.Fatal(err)
	}
	return keyPath, certPath
}

// Host is a host key with its certificate and files.
type Host struct {
	Key      ed25519.PrivateKey
	Cert     *ssh.Certificate
	KeyPath  string
	CertPath string
}

// NewHost makes an ed25519 host key, a certificate for it signed by ca as
// c says, and writes both into dir.
func NewHost(t testing.TB, dir string, ca ssh.Signer, c Cert) Host {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	cert := Sign(t, ca, key, c)
	kp, cp := WriteHost(t, dir, priv, cert)
	return Host{Key: priv, Cert: cert, KeyPath: kp, CertPath: cp}
}
