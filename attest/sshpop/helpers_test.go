package sshpop

import (
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/signet-id/signet/attest/sshpop/sshpoptest"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"golang.org/x/crypto/ssh"
)

var (
	td = spiffeid.RequireTrustDomainFromString("example.org")
	t0 = time.Unix(1_800_000_000, 0)
)

// newSigner returns a fresh ed25519 SSH signer.
func newSigner(t testing.TB) ssh.Signer { return sshpoptest.NewSigner(t) }

// certOpts shape a test certificate; the zero value is a host
// certificate for node1.example.com valid an hour either side of t0 (the
// fake clock's start).
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
	if o.after.IsZero() {
		o.after = t0.Add(-time.Hour)
	}
	if o.before.IsZero() {
		o.before = t0.Add(time.Hour)
	}
	return sshpoptest.Sign(t, ca, key, sshpoptest.Cert{CertType: o.certType, Principals: o.principals, KeyID: o.keyID, After: o.after, Before: o.before})
}

// authorizedKey is pub in authorized_keys format, as cert_authorities
// holds it.
func authorizedKey(pub ssh.PublicKey) string { return sshpoptest.AuthorizedKey(pub) }

// writeHost writes a host key and certificate as sshd keeps them and
// returns the agent config naming them.
func writeHost(t testing.TB, key ed25519.PrivateKey, cert ssh.PublicKey) AgentConfig {
	t.Helper()
	kp, cp := sshpoptest.WriteHost(t, t.TempDir(), key, cert)
	return AgentConfig{HostKeyPath: kp, HostCertPath: cp}
}
