package ca

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// MaxPublishedJWTKeys bounds the JWT authorities that downstream servers
// may add to the bundle; expired ones are dropped first.
const MaxPublishedJWTKeys = 64

// ErrInvalidJWTAuthority is returned for a JWT authority that cannot be
// published (no key ID, no or unusable public key, no or past expiry).
var ErrInvalidJWTAuthority = errors.New("invalid JWT authority")

// ErrJWTKeyIDInUse is returned when a published key ID is already in the
// bundle with another public key.
var ErrJWTKeyIDInUse = errors.New("key ID already in the bundle with another public key")

// ErrTooManyJWTKeys is returned when MaxPublishedJWTKeys unexpired keys
// are published already.
var ErrTooManyJWTKeys = errors.New("too many published JWT authorities")

// JWTAuthority is a JWT signing key in the bundle, with its expiry.
type JWTAuthority struct {
	KeyID     string
	PublicKey crypto.PublicKey
	NotAfter  time.Time
}

type diskPublishedJWT struct {
	KeyID     string    `json:"kid"`
	PublicKey []byte    `json:"public_key"`
	NotAfter  time.Time `json:"not_after"`
}

// PublishJWTAuthority adds a downstream server's JWT authority to the
// trust domain's bundle until it expires, as SPIRE's PublishJWTAuthority
// does. Publishing a key again is idempotent (the later expiry wins). It
// returns every JWT authority the bundle now holds.
func (m *Manager) PublishJWTAuthority(a JWTAuthority) ([]JWTAuthority, error) {
	now := m.cfg.Now()
	switch {
	case a.KeyID == "":
		return nil, fmt.Errorf("ca: %w: missing key ID", ErrInvalidJWTAuthority)
	case a.PublicKey == nil:
		return nil, fmt.Errorf("ca: %w: missing public key", ErrInvalidJWTAuthority)
	case a.NotAfter.IsZero():
		return nil, fmt.Errorf("ca: %w: missing expiry", ErrInvalidJWTAuthority)
	case !a.NotAfter.After(now):
		return nil, fmt.Errorf("ca: %w: expired at %s", ErrInvalidJWTAuthority, a.NotAfter.UTC().Format(time.RFC3339))
	}
	if _, err := x509.MarshalPKIXPublicKey(a.PublicKey); err != nil {
		return nil, fmt.Errorf("ca: %w: public key: %w", ErrInvalidJWTAuthority, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.jwt {
		if s.KeyID == a.KeyID && !publicKeysEqual(s.Key.Public(), a.PublicKey) {
			return nil, fmt.Errorf("ca: publish JWT authority %q: %w", a.KeyID, ErrJWTKeyIDInUse)
		}
	}
	undo := m.snapshotLocked()
	kept := m.published[:0:0]
	found := false
	for _, p := range m.published {
		if !p.NotAfter.After(now) {
			continue
		}
		if p.KeyID == a.KeyID {
			if !publicKeysEqual(p.PublicKey, a.PublicKey) {
				return nil, fmt.Errorf("ca: publish JWT authority %q: %w", a.KeyID, ErrJWTKeyIDInUse)
			}
			found = true
			if a.NotAfter.After(p.NotAfter) {
				p.NotAfter = a.NotAfter
			}
		}
		kept = append(kept, p)
	}
	if !found {
		if len(kept) >= MaxPublishedJWTKeys {
			return nil, fmt.Errorf("ca: publish JWT authority %q: %w (at most %d)", a.KeyID, ErrTooManyJWTKeys, MaxPublishedJWTKeys)
		}
		kept = append(kept, a)
	}
	m.published = kept
	if err := m.commitLocked(undo); err != nil {
		return nil, err
	}
	m.cfg.Logger.Info("published downstream JWT authority", "kid", a.KeyID, "not_after", a.NotAfter)
	return m.jwtAuthoritiesLocked(now), nil
}

// JWTAuthoritiesInBundle returns the JWT authorities of the bundle: the
// trust domain's own (classic and hybrid profiles) and the unexpired
// published ones.
func (m *Manager) JWTAuthoritiesInBundle() []JWTAuthority {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.jwtAuthoritiesLocked(m.cfg.Now())
}

func (m *Manager) jwtAuthoritiesLocked(now time.Time) []JWTAuthority {
	var out []JWTAuthority
	for _, s := range m.jwt {
		if isMLDSA(s.Key) {
			continue
		}
		out = append(out, JWTAuthority{KeyID: s.KeyID, PublicKey: s.Key.Public(), NotAfter: s.NotAfter})
	}
	for _, p := range m.published {
		if p.NotAfter.After(now) {
			out = append(out, p)
		}
	}
	return out
}

func (m *Manager) encodePublished() ([]diskPublishedJWT, error) {
	var out []diskPublishedJWT
	for _, p := range m.published {
		der, err := x509.MarshalPKIXPublicKey(p.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("ca: marshal published JWT authority %q: %w", p.KeyID, err)
		}
		out = append(out, diskPublishedJWT{KeyID: p.KeyID, PublicKey: der, NotAfter: p.NotAfter})
	}
	return out, nil
}

func (m *Manager) decodePublished(ds []diskPublishedJWT) error {
	m.published = nil
	for i, d := range ds {
		pub, err := x509.ParsePKIXPublicKey(d.PublicKey)
		if err != nil {
			return fmt.Errorf("ca: %s: published JWT authority %d: %w", m.storage, i, err)
		}
		m.published = append(m.published, JWTAuthority{KeyID: d.KeyID, PublicKey: pub, NotAfter: d.NotAfter})
	}
	return nil
}
