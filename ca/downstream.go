package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"time"
)

// ErrDownstreamProfile is returned when a downstream CA is requested from a
// trust domain whose profile is not classic: SPIRE servers below Signet
// sign classic chains only.
var ErrDownstreamProfile = errors.New("downstream X.509 CAs are signed in the classic profile only")

// ErrNoActiveX509 is returned when there is no active X.509 authority to
// sign with.
var ErrNoActiveX509 = errors.New("no active X.509 authority")

// downstreamCushion backdates a downstream CA's NotBefore against clock
// skew, as the trust domain's own CAs are.
const downstreamCushion = 10 * time.Second

// SignDownstreamX509CA signs pub as the intermediate CA of a downstream
// server of the trust domain (SPIRE's NewDownstreamX509CA): SPIFFE ID the
// trust domain, IsCA, CertSign and CRLSign. Its lifetime is ttl (the CA
// TTL when zero or negative), at most the CA TTL and never past the
// active authority's NotAfter. It returns the chain to present (the new
// CA, then the active authority and its upstream intermediates when it is
// not self-signed; never a root) and the trust domain's X.509 roots.
func (m *Manager) SignDownstreamX509CA(pub crypto.PublicKey, ttl time.Duration) (chain, roots []*x509.Certificate, err error) {
	if m.cfg.Profile != ProfileClassic {
		return nil, nil, fmt.Errorf("ca: %w, not %s", ErrDownstreamProfile, m.cfg.Profile)
	}
	switch pub.(type) {
	case *ecdsa.PublicKey, *rsa.PublicKey, ed25519.PublicKey:
	default:
		return nil, nil, fmt.Errorf("ca: downstream CA public key of type %T is not supported (use ECDSA, RSA or Ed25519)", pub)
	}
	if ttl <= 0 || ttl > m.cfg.CATTL {
		ttl = m.cfg.CATTL
	}
	m.mu.RLock()
	active := m.activeX509()
	var parent *x509.Certificate
	var key crypto.Signer
	var inter []*x509.Certificate
	if active != nil {
		parent, key = active.Cert, active.Key
		if active.UpstreamRoots != nil {
			inter = append([]*x509.Certificate{active.Cert}, active.UpstreamChain...)
		}
	}
	m.mu.RUnlock()
	if parent == nil || key == nil {
		return nil, nil, fmt.Errorf("ca: sign downstream CA: %w", ErrNoActiveX509)
	}
	now := m.cfg.Now()
	notAfter := now.Add(ttl)
	if notAfter.After(parent.NotAfter) {
		notAfter = parent.NotAfter
	}
	if !notAfter.After(now) {
		return nil, nil, fmt.Errorf("ca: sign downstream CA: the active authority expired at %s", parent.NotAfter.UTC().Format(time.RFC3339))
	}
	serial, err := rand.Int(m.cfg.Rand, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, fmt.Errorf("ca: serial number: %w", err)
	}
	serial.Add(serial, big.NewInt(1))
	// As SPIRE: the parent's subject, OU DOWNSTREAM-<length of the
	// parent's chain below the roots>.
	subject := parent.Subject
	subject.OrganizationalUnit = []string{fmt.Sprintf("DOWNSTREAM-%d", max(len(inter), 1))}
	subject.SerialNumber = serial.String()
	subject.ExtraNames = nil
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		NotBefore:             now.Add(-downstreamCushion),
		NotAfter:              notAfter,
		URIs:                  []*url.URL{{Scheme: "spiffe", Host: m.cfg.TrustDomain.Name()}},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(m.cfg.Rand, tmpl, parent, pub, key)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: sign downstream CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("ca: parse downstream CA: %w", err)
	}
	m.cfg.Logger.Info("signed downstream X.509 CA", "subject_key_id", KeyIDString(cert.SubjectKeyId), "not_after", cert.NotAfter, "issuer_key_id", KeyIDString(parent.SubjectKeyId))
	return append([]*x509.Certificate{cert}, inter...), m.Bundle().X509Authorities(), nil
}
