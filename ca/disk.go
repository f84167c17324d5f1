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
}

type diskX509 struct {
	Status  Status `json:"status"`
	Tainted bool   `json:"tainted,omitempty"`
	Cert    []byte `json:"cert"`
	Key     []byte `json:"key"`
	AltKey  []byte `json:"alt_key,omitempty"`
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
	Key       []byte    `json:"key"`
	AltKey    []byte    `json:"alt_key,omitempty"`
	AltKeyID  string    `json:"alt_kid,omitempty"`
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
		key, err := parseSigner(d.Key)
		if err != nil {
			return fmt.Errorf("ca: %s: X.509 authority %d: %w", m.storage, i, err)
		}
		slot := &X509Slot{Status: d.Status, Tainted: d.Tainted, Cert: cert, Key: key}
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
		key, err := parseSigner(d.Key)
		if err != nil {
			return fmt.Errorf("ca: %s: JWT key %d: %w", m.storage, i, err)
		}
		slot := &JWTSlot{Status: d.Status, Tainted: d.Tainted, KeyID: d.KeyID, NotBefore: d.NotBefore, NotAfter: d.NotAfter, Key: key, AltKeyID: d.AltKeyID}
		if len(d.AltKey) > 0 {
			if slot.AltKey, err = parseSigner(d.AltKey); err != nil {
				return fmt.Errorf("ca: %s: JWT key %d alt key: %w", m.storage, i, err)
			}
		}
		m.jwt = append(m.jwt, slot)
	}
	m.sequence = st.Sequence
	return nil
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
		key, err := marshalKey(s.Key)
		if err != nil {
			return fmt.Errorf("ca: marshal X.509 CA key: %w", err)
		}
		dx := diskX509{Status: s.Status, Tainted: s.Tainted, Cert: s.Cert.Raw, Key: key, UpstreamChain: rawCerts(s.UpstreamChain), UpstreamRoots: rawCerts(s.UpstreamRoots)}
		if s.AltKey != nil {
			if dx.AltKey, err = marshalKey(s.AltKey); err != nil {
				return fmt.Errorf("ca: marshal X.509 CA alt key: %w", err)
			}
		}
		st.X509 = append(st.X509, dx)
	}
	for _, s := range m.jwt {
		key, err := marshalKey(s.Key)
		if err != nil {
			return fmt.Errorf("ca: marshal JWT key: %w", err)
		}
		dj := diskJWTKey{Status: s.Status, Tainted: s.Tainted, KeyID: s.KeyID, NotBefore: s.NotBefore, NotAfter: s.NotAfter, Key: key, AltKeyID: s.AltKeyID}
		if s.AltKey != nil {
			if dj.AltKey, err = marshalKey(s.AltKey); err != nil {
				return fmt.Errorf("ca: marshal JWT alt key: %w", err)
			}
		}
		st.JWT = append(st.JWT, dj)
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
