package ca

import (
	"crypto"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"time"

	"github.com/signet-id/signet/pq/mldsa"
)

const stateVersion = 1

type diskState struct {
	Version  int          `json:"version"`
	Sequence uint64       `json:"sequence"`
	X509     []diskX509   `json:"x509"`
	JWT      []diskJWTKey `json:"jwt"`
	// Published are downstream servers' JWT authorities.
	Published []diskPublishedJWT `json:"published_jwt,omitempty"`
}

type diskX509 struct {
	Status  Status `json:"status"`
	Tainted bool   `json:"tainted,omitempty"`
	Cert    []byte `json:"cert"`
	// Key is the PKCS#8 private key, or empty when a key manager holds
	// it: then KeyManager and KeyRef name it.
	Key        []byte `json:"key,omitempty"`
	KeyManager string `json:"key_manager,omitempty"`
	KeyRef     string `json:"key_ref,omitempty"`
	AltKey     []byte `json:"alt_key,omitempty"`
	// UpstreamChain and UpstreamRoots are DER certificates (upstream
	// authority only).
	UpstreamChain [][]byte `json:"upstream_chain,omitempty"`
	UpstreamRoots [][]byte `json:"upstream_roots,omitempty"`
}

type diskJWTKey struct {
	Status    Status    `json:"status"`
	Tainted   bool      `json:"tainted,omitempty"`
	KeyID     string    `json:"kid"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	// Key, KeyManager and KeyRef: as diskX509's.
	Key        []byte `json:"key,omitempty"`
	KeyManager string `json:"key_manager,omitempty"`
	KeyRef     string `json:"key_ref,omitempty"`
	AltKey     []byte `json:"alt_key,omitempty"`
	AltKeyID   string `json:"alt_kid,omitempty"`
}

// load reads the persisted state into m (replacing its slots); empty
// storage is not an error.
func (m *Manager) load() error {
	data, err := m.storage.Load()
	if err != nil {
		return fmt.Errorf("ca: load state: %w", err)
	}
	if len(data) == 0 {
		return nil
	}
	return m.decodeLocked(data)
}

// decodeLocked replaces m's slots with the encoded state data.
func (m *Manager) decodeLocked(data []byte) error {
	var st diskState
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("ca: parse %s: %w", m.storage, err)
	}
	if st.Version != stateVersion {
		return fmt.Errorf("ca: %s has state version %d, want %d", m.storage, st.Version, stateVersion)
	}
	m.x509, m.jwt = nil, nil
	for i, d := range st.X509 {
		cert, err := x509.ParseCertificate(d.Cert)
		if err != nil {
			return fmt.Errorf("ca: %s: X.509 authority %d: %w", m.storage, i, err)
		}
		key, err := m.stateKey(d.Key, d.KeyManager, d.KeyRef)
		if err != nil {
			return fmt.Errorf("ca: %s: X.509 authority %d: %w", m.storage, i, err)
		}
		if d.KeyRef != "" && !publicKeysEqual(key.Public(), cert.PublicKey) {
			return fmt.Errorf("ca: %s: X.509 authority %d: key %s is not the key of its certificate", m.storage, i, d.KeyRef)
		}
		slot := &X509Slot{Status: d.Status, Tainted: d.Tainted, Cert: cert, Key: key, KeyRef: d.KeyRef}
		if slot.UpstreamChain, err = parseCerts(d.UpstreamChain); err != nil {
			return fmt.Errorf("ca: %s: X.509 authority %d upstream chain: %w", m.storage, i, err)
		}
		if slot.UpstreamRoots, err = parseCerts(d.UpstreamRoots); err != nil {
			return fmt.Errorf("ca: %s: X.509 authority %d upstream roots: %w", m.storage, i, err)
		}
		if len(d.AltKey) > 0 {
			if slot.AltKey, err = parseSigner(d.AltKey); err != nil {
				return fmt.Errorf("ca: %s: X.509 authority %d alt key: %w", m.storage, i, err)
			}
		}
		m.x509 = append(m.x509, slot)
	}
	for i, d := range st.JWT {
		key, err := m.stateKey(d.Key, d.KeyManager, d.KeyRef)
		if err != nil {
			return fmt.Errorf("ca: %s: JWT key %d: %w", m.storage, i, err)
		}
		if kid, err := keyID(key.Public()); d.KeyRef != "" && (err != nil || kid != d.KeyID) {
			return fmt.Errorf("ca: %s: JWT key %d: key %s is not the key of kid %s", m.storage, i, d.KeyRef, d.KeyID)
		}
		slot := &JWTSlot{Status: d.Status, Tainted: d.Tainted, KeyID: d.KeyID, NotBefore: d.NotBefore, NotAfter: d.NotAfter, Key: key, KeyRef: d.KeyRef, AltKeyID: d.AltKeyID}
		if len(d.AltKey) > 0 {
			if slot.AltKey, err = parseSigner(d.AltKey); err != nil {
				return fmt.Errorf("ca: %s: JWT key %d alt key: %w", m.storage, i, err)
			}
		}
		m.jwt = append(m.jwt, slot)
	}
	m.sequence = st.Sequence
	return m.decodePublished(st.Published)
}

// stateKey returns a slot's signing key: parsed from the state, or opened
// in the key manager that the state names.
func (m *Manager) stateKey(der []byte, kind, ref string) (crypto.Signer, error) {
	if ref == "" {
		return parseSigner(der)
	}
	return m.openKey(kind, ref)
}

// publicKeysEqual compares two public keys of any type.
func publicKeysEqual(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

func parseSigner(der []byte) (crypto.Signer, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		mk, merr := mldsa.ParsePKCS8PrivateKey(der)
		if merr != nil {
			return nil, fmt.Errorf("parse private key: %w", err)
		}
		return mk, nil
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("private key of type %T cannot sign", k)
	}
	return s, nil
}

// saveLocked writes the state atomically with mode 0600.
func (m *Manager) saveLocked() error {
	st := diskState{Version: stateVersion, Sequence: m.sequence}
	for _, s := range m.x509 {
		dx := diskX509{Status: s.Status, Tainted: s.Tainted, Cert: s.Cert.Raw, UpstreamChain: rawCerts(s.UpstreamChain), UpstreamRoots: rawCerts(s.UpstreamRoots)}
		var err error
		if dx.Key, dx.KeyManager, dx.KeyRef, err = m.stateKeyFields(s.Key, s.KeyRef); err != nil {
			return fmt.Errorf("ca: marshal X.509 CA key: %w", err)
		}
		if s.AltKey != nil {
			if dx.AltKey, err = marshalKey(s.AltKey); err != nil {
				return fmt.Errorf("ca: marshal X.509 CA alt key: %w", err)
			}
		}
		st.X509 = append(st.X509, dx)
	}
	for _, s := range m.jwt {
		dj := diskJWTKey{Status: s.Status, Tainted: s.Tainted, KeyID: s.KeyID, NotBefore: s.NotBefore, NotAfter: s.NotAfter, AltKeyID: s.AltKeyID}
		var err error
		if dj.Key, dj.KeyManager, dj.KeyRef, err = m.stateKeyFields(s.Key, s.KeyRef); err != nil {
			return fmt.Errorf("ca: marshal JWT key: %w", err)
		}
		if s.AltKey != nil {
			if dj.AltKey, err = marshalKey(s.AltKey); err != nil {
				return fmt.Errorf("ca: marshal JWT alt key: %w", err)
			}
		}
		st.JWT = append(st.JWT, dj)
	}
	var err error
	if st.Published, err = m.encodePublished(); err != nil {
		return err
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("ca: encode state: %w", err)
	}
	if err := m.storage.Save(data); err != nil {
		return fmt.Errorf("ca: save state: %w", err)
	}
	return nil
}

// stateKeyFields is what the state records of a slot's key: the PKCS#8
// key, or the key manager and reference of a key held there.
func (m *Manager) stateKeyFields(key crypto.Signer, ref string) (der []byte, kind, keyRef string, err error) {
	if ref != "" {
		return nil, m.cfg.KeyManager.Kind(), ref, nil
	}
	der, err = marshalKey(key)
	return der, "", "", err
}

func parseCerts(ders [][]byte) ([]*x509.Certificate, error) {
	if len(ders) == 0 {
		return nil, nil
	}
	out := make([]*x509.Certificate, 0, len(ders))
	for _, der := range ders {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func rawCerts(cs []*x509.Certificate) [][]byte {
	var out [][]byte
	for _, c := range cs {
		out = append(out, c.Raw)
	}
	return out
}
