package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net/url"
	"slices"
	"strings"
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
// key is generated here (or in the key manager) and only a CSR leaves the
// server.
func (m *Manager) newUpstreamSlot() (*X509Slot, error) {
	if m.cfg.Profile != ProfileClassic {
		return nil, fmt.Errorf("ca: an upstream authority supports the classic profile only, not %s", m.cfg.Profile)
	}
	key, ref, err := m.newSigningKey(KindX509)
	if err != nil {
		return nil, err
	}
	slot, err := m.signByUpstream(key)
	if err != nil {
		m.discardKeys(ref)
		return nil, err
	}
	slot.KeyRef = ref
	return slot, nil
}

// signByUpstream has the upstream authority sign an intermediate CA for
// key: only a CSR leaves the server.
func (m *Manager) signByUpstream(key crypto.Signer) (*X509Slot, error) {
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

// TaintX509Upstream taints the old X.509 authorities that the upstream
// authority with subject key ID skid signed (lower-case hex; case does not
// matter): whatever they signed is to be replaced. As in SPIRE it refuses
// without an upstream authority, an empty ID, the upstream authority of
// the active authority, and one that signed no old authority. It returns
// the authorities it tainted.
func (m *Manager) TaintX509Upstream(skid string) ([]AuthorityInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	skid = strings.ToLower(skid)
	signed, err := m.signedByUpstreamLocked("taint", skid)
	if err != nil {
		return nil, err
	}
	undo := m.snapshotLocked()
	var out []AuthorityInfo
	for _, s := range signed {
		if !s.Tainted {
			s.setTainted()
			out = append(out, s.info())
		}
	}
	if len(out) == 0 {
		return nil, &TransitionError{Op: "taint", Kind: KindX509, AuthorityID: skid, Status: StatusOld, Err: ErrAlreadyTainted}
	}
	if err := m.commitLocked(undo); err != nil {
		return nil, err
	}
	m.cfg.Logger.Warn("tainted upstream authority", "subject_key_id", skid, "authorities", len(out))
	return out, nil
}

// RevokeX509Upstream removes the old X.509 authorities that the tainted
// upstream authority skid signed from the lifecycle and the bundle, with
// the refusals of TaintX509Upstream, and also when it is not tainted. It
// returns the authorities it removed.
func (m *Manager) RevokeX509Upstream(skid string) ([]AuthorityInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	skid = strings.ToLower(skid)
	signed, err := m.signedByUpstreamLocked("revoke", skid)
	if err != nil {
		return nil, err
	}
	for _, s := range signed {
		if !s.Tainted {
			return nil, &TransitionError{Op: "revoke", Kind: KindX509, AuthorityID: skid, Status: StatusOld, Err: ErrNotTainted}
		}
	}
	undo := m.snapshotLocked()
	out := make([]AuthorityInfo, 0, len(signed))
	kept := m.x509[:0:0]
	for _, s := range m.x509 {
		if slices.Contains(signed, s) {
			out = append(out, s.info())
			continue
		}
		kept = append(kept, s)
	}
	m.x509 = kept
	if err := m.commitLocked(undo); err != nil {
		return nil, err
	}
	m.cfg.Logger.Info("revoked upstream authority", "subject_key_id", skid, "authorities", len(out))
	return out, nil
}

// signedByUpstreamLocked returns the old X.509 slots that the upstream
// authority skid signed, or the reason op cannot apply to it. Caller holds
// m.mu.
func (m *Manager) signedByUpstreamLocked(op, skid string) ([]*X509Slot, error) {
	refuse := func(st Status, reason error) error {
		return &TransitionError{Op: op + " upstream", Kind: KindX509, AuthorityID: skid, Status: st, Err: reason}
	}
	if !m.IsUpstreamAuthority() {
		return nil, refuse("", ErrNoUpstreamAuthority)
	}
	if skid == "" {
		return nil, refuse("", ErrNoAuthorityID)
	}
	if a := m.activeX509(); a != nil && a.upstreamAuthorityID() == skid {
		return nil, refuse(StatusActive, ErrSignsActive)
	}
	var old []*X509Slot
	var prepared bool
	for _, s := range m.x509 {
		if s.upstreamAuthorityID() != skid {
			continue
		}
		switch s.Status {
		case StatusOld:
			old = append(old, s)
		case StatusPrepared:
			prepared = true
		}
	}
	switch {
	case len(old) > 0:
		return old, nil
	case prepared:
		return nil, refuse(StatusPrepared, ErrNotOld)
	default:
		return nil, refuse("", ErrAuthorityNotFound)
	}
}

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
