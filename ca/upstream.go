package ca

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// UpstreamAuthority signs the trust domain's intermediate CA, as SPIRE's
// UpstreamAuthority plugins do (e.g. Vault PKI). The bundle then carries
// the upstream roots instead of Signet's own self-signed CA.
type UpstreamAuthority interface {
	// SignIntermediate signs csrDER as an intermediate CA of td valid for
	// ttl. It returns the new CA certificate first, then any upstream
	// intermediates, and the roots to publish.
	SignIntermediate(ctx context.Context, td spiffeid.TrustDomain, csrDER []byte, ttl time.Duration) (chain, roots []*x509.Certificate, err error)
}

// upstreamTimeout bounds one upstream signing.
const upstreamTimeout = 30 * time.Second

// newUpstreamSlot creates an X.509 CA signed by the upstream authority: the
// key is generated here and only a CSR leaves the server.
func (m *Manager) newUpstreamSlot() (*X509Slot, error) {
	if m.cfg.Profile != ProfileClassic {
		return nil, fmt.Errorf("ca: an upstream authority supports the classic profile only, not %s", m.cfg.Profile)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), m.cfg.Rand)
	if err != nil {
		return nil, fmt.Errorf("ca: generate X.509 CA key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(m.cfg.Rand, &x509.CertificateRequest{
		Subject: pkix.Name{Country: []string{"US"}, Organization: []string{"Signet"}},
		URIs:    []*url.URL{{Scheme: "spiffe", Host: m.cfg.TrustDomain.Name()}},
	}, key)
	if err != nil {
		return nil, fmt.Errorf("ca: create CA CSR: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), upstreamTimeout)
	defer cancel()
	chain, roots, err := m.cfg.Upstream.SignIntermediate(ctx, m.cfg.TrustDomain, csr, m.cfg.CATTL)
	if err != nil {
		return nil, fmt.Errorf("ca: upstream authority: %w", err)
	}
	if len(chain) == 0 || len(roots) == 0 {
		return nil, fmt.Errorf("ca: upstream authority returned %d certificates and %d roots", len(chain), len(roots))
	}
	if !chain[0].IsCA {
		return nil, fmt.Errorf("ca: upstream authority returned a certificate that is not a CA")
	}
	if pub, ok := chain[0].PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(key.Public()) {
		return nil, fmt.Errorf("ca: upstream authority returned a certificate for another key")
	}
	m.cfg.Logger.Info("upstream authority signed X.509 authority", "subject_key_id", KeyIDString(chain[0].SubjectKeyId), "not_after", chain[0].NotAfter)
	return &X509Slot{Status: StatusPrepared, Cert: chain[0], Key: key, UpstreamChain: chain[1:], UpstreamRoots: roots}, nil
}

// IsUpstream reports whether the manager's X.509 authorities are signed by
// an upstream authority.
func (m *Manager) IsUpstream() bool { return m.cfg.Upstream != nil }

// X509Intermediates returns the certificates that an SVID issued by the
// active authority must carry after its leaf: the authority itself when it
// is not self-signed, then the upstream intermediates.
func (m *Manager) X509Intermediates() []*x509.Certificate {
	m.mu.RLock()
	defer m.mu.RUnlock()
	a := m.activeX509()
	if a == nil || a.UpstreamRoots == nil {
		return nil
	}
	return append([]*x509.Certificate{a.Cert}, a.UpstreamChain...)
}
