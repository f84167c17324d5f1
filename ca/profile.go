package ca

import (
	"crypto"
	"crypto/x509"
	"fmt"

	"github.com/signet-id/signet/pq/altsig"
	"github.com/signet-id/signet/pq/mldsa"
	"github.com/signet-id/signet/pq/purecert"
)

// Profile is a trust domain's credential profile (DESIGN §4).
type Profile string

// Credential profiles.
const (
	// ProfileClassic: ECDSA P-256 chains and ES256 JWT-SVIDs.
	ProfileClassic Profile = "classic"
	// ProfileHybrid: the classic chain plus ML-DSA alternative signatures on
	// every certificate (ML-DSA-65 roots), and ES256 JWT-SVIDs that also
	// carry an ML-DSA-44 signature in a private claim.
	ProfileHybrid Profile = "hybrid"
	// ProfilePQ: pure ML-DSA chains (ML-DSA-65 CA) and ML-DSA-44 JWT-SVIDs.
	ProfilePQ Profile = "pq"
)

// ParseProfile parses a profile name; empty means classic.
func ParseProfile(s string) (Profile, error) {
	switch Profile(s) {
	case "", ProfileClassic:
		return ProfileClassic, nil
	case ProfileHybrid, ProfilePQ:
		return Profile(s), nil
	}
	return "", fmt.Errorf("ca: unknown credential profile %q (use classic, hybrid or pq)", s)
}

// signCA creates the self-signed CA certificate for tmpl in the profile and
// returns it with its signing key (and the key's reference when a key
// manager holds it) and, for hybrid, its ML-DSA alt key, which stays in
// the CA state.
func (m *Manager) signCA(tmpl *x509.Certificate) (cert *x509.Certificate, key crypto.Signer, ref string, altKey crypto.Signer, err error) {
	var der []byte
	switch m.cfg.Profile {
	case ProfilePQ:
		k, gerr := mldsa.GenerateKey(m.cfg.Rand, mldsa.MLDSA65)
		if gerr != nil {
			return nil, nil, "", nil, fmt.Errorf("ca: generate ML-DSA-65 CA key: %w", gerr)
		}
		key = k
		der, err = purecert.CreateCertificate(m.cfg.Rand, tmpl, tmpl, k.PublicKey(), k)
	case ProfileHybrid:
		ak, gerr := mldsa.GenerateKey(m.cfg.Rand, mldsa.MLDSA65)
		if gerr != nil {
			return nil, nil, "", nil, fmt.Errorf("ca: generate ML-DSA-65 alt key: %w", gerr)
		}
		if key, ref, err = m.newSigningKey(KindX509); err != nil {
			return nil, nil, "", nil, err
		}
		altKey = ak
		der, err = altsig.CreateCertificate(m.cfg.Rand, tmpl, tmpl, key.Public(), key, ak, ak.PublicKey())
	default:
		if key, ref, err = m.newSigningKey(KindX509); err != nil {
			return nil, nil, "", nil, err
		}
		der, err = x509.CreateCertificate(m.cfg.Rand, tmpl, tmpl, key.Public(), key)
	}
	if err == nil {
		cert, err = x509.ParseCertificate(der)
	}
	if err != nil {
		m.discardKeys(ref)
		return nil, nil, "", nil, fmt.Errorf("ca: self-sign X.509 CA (%s): %w", m.cfg.Profile, err)
	}
	return cert, key, ref, altKey, nil
}

// newJWTKeys generates a JWT key pair set for the profile: the signing key
// (and its reference when a key manager holds it) and, for hybrid, the
// ML-DSA-44 key of the private claim.
func (m *Manager) newJWTKeys() (key crypto.Signer, ref string, altKey crypto.Signer, err error) {
	switch m.cfg.Profile {
	case ProfilePQ:
		k, err := mldsa.GenerateKey(m.cfg.Rand, mldsa.MLDSA44)
		if err != nil {
			return nil, "", nil, fmt.Errorf("ca: generate ML-DSA-44 JWT key: %w", err)
		}
		return k, "", nil, nil
	case ProfileHybrid:
		ak, err := mldsa.GenerateKey(m.cfg.Rand, mldsa.MLDSA44)
		if err != nil {
			return nil, "", nil, fmt.Errorf("ca: generate ML-DSA-44 JWT key: %w", err)
		}
		key, ref, err := m.newSigningKey(KindJWT)
		if err != nil {
			return nil, "", nil, err
		}
		return key, ref, ak, nil
	default:
		key, ref, err := m.newSigningKey(KindJWT)
		return key, ref, nil, err
	}
}

// marshalKey encodes a classical or ML-DSA private key as PKCS#8.
func marshalKey(k crypto.Signer) ([]byte, error) {
	if mk, ok := k.(*mldsa.PrivateKey); ok {
		return mldsa.MarshalPKCS8PrivateKey(mk)
	}
	return x509.MarshalPKCS8PrivateKey(k)
}

// X509AltKey returns the active X.509 CA's ML-DSA alternative signing key
// (hybrid profile), or nil.
func (m *Manager) X509AltKey() crypto.Signer {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if s := m.activeX509(); s != nil {
		return s.AltKey
	}
	return nil
}

// JWTAltKey returns the active JWT key's ML-DSA companion (hybrid profile)
// and its key ID, or nil.
func (m *Manager) JWTAltKey() (string, crypto.Signer) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if s := m.activeJWT(); s != nil && s.AltKey != nil {
		return s.AltKeyID, s.AltKey
	}
	return "", nil
}

// Profile returns the manager's credential profile.
func (m *Manager) Profile() Profile { return m.cfg.Profile }

// MLDSAJWTKeys returns the ML-DSA JWT verification keys by key ID (hybrid
// companions, or pq signing keys). They are published in the bundle outside
// the `keys` array, in the signet_mldsa_keys member.
func (m *Manager) MLDSAJWTKeys() map[string]*mldsa.PublicKey {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := map[string]*mldsa.PublicKey{}
	for _, s := range m.jwt {
		if s.AltKey != nil {
			if pub, err := mldsa.SignerPublicKey(s.AltKey); err == nil {
				out[s.AltKeyID] = pub
			}
		}
		if pub, err := mldsa.SignerPublicKey(s.Key); err == nil {
			out[s.KeyID] = pub
		}
	}
	return out
}
