// Package ca manages a trust domain's signing authorities: the X.509 CA and
// the JWT signing keys, their lifecycle slots (prepared, active, old), their
// persistence, and the trust bundle they make up. It knows nothing of etcd
// or gRPC.
package ca

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/url"
	"sync"
	"time"

	"github.com/signet-id/signet/pq/mldsa"
	"github.com/signet-id/signet/rotation/renewal"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Defaults as in SPIRE.
const (
	DefaultCATTL       = 24 * time.Hour
	DefaultRefreshHint = 5 * time.Minute
)

// Status is the lifecycle state of an authority slot.
type Status string

// Slot states, as in SPIRE's CA manager.
const (
	StatusPrepared Status = "prepared"
	StatusActive   Status = "active"
	StatusOld      Status = "old"
)

// X509Slot is one X.509 CA in the lifecycle.
type X509Slot struct {
	Status  Status
	Tainted bool
	Cert    *x509.Certificate
	Key     crypto.Signer
	// KeyRef is the key's reference in the key manager; empty when the
	// key is in the CA state.
	KeyRef string
	// AltKey is the ML-DSA alternative signing key (hybrid profile only).
	AltKey crypto.Signer
	// UpstreamChain and UpstreamRoots are set when an upstream authority
	// signed Cert: the intermediates above it and the roots published in
	// the bundle.
	UpstreamChain []*x509.Certificate
	UpstreamRoots []*x509.Certificate
}

// JWTSlot is one JWT signing key in the lifecycle.
type JWTSlot struct {
	Status    Status
	Tainted   bool
	KeyID     string
	NotBefore time.Time
	NotAfter  time.Time
	Key       crypto.Signer
	// KeyRef is the key's reference in the key manager; empty when the
	// key is in the CA state.
	KeyRef string
	// AltKey and AltKeyID are the ML-DSA-44 companion key of a hybrid
	// profile's JWT key.
	AltKey   crypto.Signer
	AltKeyID string
}

// Config configures a Manager.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	// Path is the file the authorities persist to (mode 0600). Empty keeps
	// them in memory only, unless Storage is set.
	Path string
	// Storage overrides Path, e.g. with encrypted state shared by server
	// replicas in etcd.
	Storage Storage
	// CATTL is the lifetime of each X.509 CA and JWT key. Default 24h.
	CATTL time.Duration
	// RefreshHint is published in the bundle. Default 5m.
	RefreshHint time.Duration
	// Profile selects classic, hybrid or pq credentials. Default classic.
	Profile Profile
	// Upstream, if set, signs the X.509 authorities (classic profile).
	Upstream UpstreamAuthority
	// KeyManager, if set, creates and holds the X.509 CA and JWT signing
	// keys (classic and hybrid profiles); the state keeps references.
	KeyManager KeyManager
	Now        func() time.Time
	Rand       io.Reader
	Logger     *slog.Logger
}

// Manager holds the authorities of one trust domain. It is safe for
// concurrent use.
type Manager struct {
	cfg Config

	storage Storage
	mu      sync.RWMutex
	x509    []*X509Slot
	jwt     []*JWTSlot
	// published are downstream servers' JWT authorities (PublishJWTAuthority).
	published []JWTAuthority
	sequence  uint64
	subs      map[chan struct{}]struct{}

	// keys caches the signers of key manager keys by reference.
	keysMu sync.Mutex
	keys   map[string]crypto.Signer
}

// New loads the authorities from cfg.Path, or creates and persists a fresh
// active X.509 CA and JWT key when there are none.
func New(cfg Config) (*Manager, error) {
	if cfg.TrustDomain.IsZero() {
		return nil, errors.New("ca: trust domain is required")
	}
	if cfg.CATTL <= 0 {
		cfg.CATTL = DefaultCATTL
	}
	if cfg.RefreshHint <= 0 {
		cfg.RefreshHint = DefaultRefreshHint
	}
	if cfg.Profile == "" {
		cfg.Profile = ProfileClassic
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.KeyManager != nil && cfg.Profile == ProfilePQ {
		return nil, fmt.Errorf("ca: the pq profile signs with ML-DSA keys only, and key manager %s cannot hold ML-DSA keys: use the classic or hybrid profile with a key manager, or remove the KeyManager block", cfg.KeyManager.Kind())
	}
	m := &Manager{cfg: cfg, subs: map[chan struct{}]struct{}{}, storage: cfg.Storage, keys: map[string]crypto.Signer{}}
	if m.storage == nil {
		m.storage = memoryStorage{}
		if cfg.Path != "" {
			m.storage = FileStorage{Path: cfg.Path}
		}
	}
	if err := m.load(); err != nil {
		return nil, err
	}
	if _, err := m.Rotate(); err != nil {
		return nil, err
	}
	return m, nil
}

// X509Authority returns the active X.509 CA certificate and key.
func (m *Manager) X509Authority() (*x509.Certificate, crypto.Signer) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, s := range m.x509 {
		if s.Status == StatusActive {
			return s.Cert, s.Key
		}
	}
	return nil, nil
}

// JWTKey returns the active JWT signing key and its key ID.
func (m *Manager) JWTKey() (string, crypto.Signer) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, s := range m.jwt {
		if s.Status == StatusActive {
			return s.KeyID, s.Key
		}
	}
	return "", nil
}

// X509Slots returns a copy of the X.509 slots, newest first.
func (m *Manager) X509Slots() []X509Slot {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]X509Slot, 0, len(m.x509))
	for i := len(m.x509) - 1; i >= 0; i-- {
		out = append(out, *m.x509[i])
	}
	return out
}

// JWTSlots returns a copy of the JWT slots, newest first.
func (m *Manager) JWTSlots() []JWTSlot {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]JWTSlot, 0, len(m.jwt))
	for i := len(m.jwt) - 1; i >= 0; i-- {
		out = append(out, *m.jwt[i])
	}
	return out
}

// Bundle returns the trust domain's bundle: every X.509 CA and JWT key that
// is prepared, active, or old and not yet expired.
func (m *Manager) Bundle() *spiffebundle.Bundle {
	m.mu.RLock()
	defer m.mu.RUnlock()
	b := spiffebundle.New(m.cfg.TrustDomain)
	for _, s := range m.x509 {
		if s.UpstreamRoots != nil {
			for _, r := range s.UpstreamRoots {
				b.AddX509Authority(r) // de-duplicated by the bundle
			}
			continue
		}
		b.AddX509Authority(s.Cert)
	}
	for _, s := range m.jwt {
		if isMLDSA(s.Key) {
			continue // published in signet_mldsa_keys, see MLDSAJWTKeys
		}
		_ = b.AddJWTAuthority(s.KeyID, s.Key.Public())
	}
	now := m.cfg.Now()
	for _, p := range m.published {
		if p.NotAfter.After(now) {
			_ = b.AddJWTAuthority(p.KeyID, p.PublicKey)
		}
	}
	b.SetSequenceNumber(m.sequence)
	b.SetRefreshHint(m.cfg.RefreshHint)
	return b
}

// Changed returns a channel that receives a value after every change of the
// authorities (and so of the bundle), and a function that stops it.
func (m *Manager) Changed() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	m.mu.Lock()
	m.subs[ch] = struct{}{}
	m.mu.Unlock()
	return ch, func() {
		m.mu.Lock()
		delete(m.subs, ch)
		m.mu.Unlock()
	}
}

// Rotate advances the lifecycle at the current time, as SPIRE does: it
// prepares the next authority once half of the active one's lifetime has
// passed, activates it when a sixth of the lifetime remains, and drops old
// authorities once they have expired. It reports whether anything changed.
func (m *Manager) Rotate() (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	// Nothing half-rotated: a failure (a key manager that is down, a
	// refused upstream) restores the slots as they were and deletes the
	// keys created on the way.
	undo := m.snapshotLocked()
	var created []string
	fail := func(err error) (bool, error) {
		undo()
		m.discardKeys(created...)
		return false, err
	}
	now := m.cfg.Now()
	changed := false

	// X.509.
	active := m.activeX509()
	if active == nil || !now.Before(active.Cert.NotAfter) {
		s, err := m.newX509Slot(now)
		if err != nil {
			return fail(err)
		}
		created = append(created, s.KeyRef)
		if active != nil {
			active.Status = StatusOld
		}
		s.Status = StatusActive
		m.x509 = append(m.x509, s)
		changed = true
	} else {
		pol := renewal.Default()
		prepared := m.preparedX509()
		if prepared == nil && !now.Before(pol.CAPrepareAt(active.Cert.NotBefore, active.Cert.NotAfter)) {
			s, err := m.newX509Slot(now)
			if err != nil {
				return fail(err)
			}
			created = append(created, s.KeyRef)
			m.x509 = append(m.x509, s)
			prepared = s
			changed = true
		}
		if prepared != nil && !now.Before(pol.CAActivateAt(active.Cert.NotBefore, active.Cert.NotAfter)) {
			active.Status = StatusOld
			prepared.Status = StatusActive
			changed = true
			m.cfg.Logger.Info("activated X.509 authority", "subject_key_id", hex.EncodeToString(prepared.Cert.SubjectKeyId))
		}
	}
	var dropped []string
	kept := m.x509[:0:0]
	for _, s := range m.x509 {
		if s.Status == StatusOld && !now.Before(s.Cert.NotAfter) {
			changed = true
			dropped = append(dropped, s.KeyRef)
			continue
		}
		kept = append(kept, s)
	}
	m.x509 = kept

	// JWT.
	aj := m.activeJWT()
	if aj == nil || !now.Before(aj.NotAfter) {
		s, err := m.newJWTSlot(now)
		if err != nil {
			return fail(err)
		}
		created = append(created, s.KeyRef)
		if aj != nil {
			aj.Status = StatusOld
		}
		s.Status = StatusActive
		m.jwt = append(m.jwt, s)
		changed = true
	} else {
		pol := renewal.Default()
		pj := m.preparedJWT()
		if pj == nil && !now.Before(pol.CAPrepareAt(aj.NotBefore, aj.NotAfter)) {
			s, err := m.newJWTSlot(now)
			if err != nil {
				return fail(err)
			}
			created = append(created, s.KeyRef)
			m.jwt = append(m.jwt, s)
			pj = s
			changed = true
		}
		if pj != nil && !now.Before(pol.CAActivateAt(aj.NotBefore, aj.NotAfter)) {
			aj.Status = StatusOld
			pj.Status = StatusActive
			changed = true
			m.cfg.Logger.Info("activated JWT key", "kid", pj.KeyID)
		}
	}
	keptJ := m.jwt[:0:0]
	for _, s := range m.jwt {
		if s.Status == StatusOld && !now.Before(s.NotAfter) {
			changed = true
			dropped = append(dropped, s.KeyRef)
			continue
		}
		keptJ = append(keptJ, s)
	}
	m.jwt = keptJ

	if !changed {
		return false, nil
	}
	m.sequence++
	if err := m.saveLocked(); err != nil {
		if errors.Is(err, ErrStaleState) {
			// Another replica advanced the lifecycle first: adopt its
			// state instead of ours, so no authority is activated twice.
			m.discardKeys(created...)
			if lerr := m.load(); lerr != nil {
				return false, lerr
			}
			m.notifyLocked()
			return true, nil
		}
		return fail(err)
	}
	m.discardKeys(dropped...) // expired: nothing verifies against them
	m.notifyLocked()
	return true, nil
}

func (m *Manager) notifyLocked() {
	for ch := range m.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (m *Manager) activeX509() *X509Slot {
	for _, s := range m.x509 {
		if s.Status == StatusActive {
			return s
		}
	}
	return nil
}

func (m *Manager) preparedX509() *X509Slot {
	for _, s := range m.x509 {
		if s.Status == StatusPrepared {
			return s
		}
	}
	return nil
}

func (m *Manager) activeJWT() *JWTSlot {
	for _, s := range m.jwt {
		if s.Status == StatusActive {
			return s
		}
	}
	return nil
}

func (m *Manager) preparedJWT() *JWTSlot {
	for _, s := range m.jwt {
		if s.Status == StatusPrepared {
			return s
		}
	}
	return nil
}

func (m *Manager) newX509Slot(now time.Time) (*X509Slot, error) {
	if m.cfg.Upstream != nil {
		return m.newUpstreamSlot()
	}
	serial, err := rand.Int(m.cfg.Rand, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("ca: serial number: %w", err)
	}
	serial.Add(serial, big.NewInt(1))
	tdURL := &url.URL{Scheme: "spiffe", Host: m.cfg.TrustDomain.Name()}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Country:      []string{"US"},
			Organization: []string{"Signet"},
			SerialNumber: serial.String(),
		},
		NotBefore:             now.Add(-10 * time.Second),
		NotAfter:              now.Add(m.cfg.CATTL),
		URIs:                  []*url.URL{tdURL},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	cert, key, ref, altKey, err := m.signCA(tmpl)
	if err != nil {
		return nil, err
	}
	m.cfg.Logger.Info("prepared X.509 authority", "subject_key_id", hex.EncodeToString(cert.SubjectKeyId), "not_after", cert.NotAfter, "profile", string(m.cfg.Profile))
	return &X509Slot{Status: StatusPrepared, Cert: cert, Key: key, KeyRef: ref, AltKey: altKey}, nil
}

func (m *Manager) newJWTSlot(now time.Time) (*JWTSlot, error) {
	key, ref, altKey, err := m.newJWTKeys()
	if err != nil {
		return nil, err
	}
	kid, err := keyID(key.Public())
	if err != nil {
		m.discardKeys(ref)
		return nil, err
	}
	s := &JWTSlot{Status: StatusPrepared, KeyID: kid, NotBefore: now, NotAfter: now.Add(m.cfg.CATTL), Key: key, KeyRef: ref, AltKey: altKey}
	if altKey != nil {
		if s.AltKeyID, err = keyID(altKey.Public()); err != nil {
			m.discardKeys(ref)
			return nil, err
		}
	}
	m.cfg.Logger.Info("prepared JWT key", "kid", kid, "profile", string(m.cfg.Profile))
	return s, nil
}

func isMLDSA(k crypto.Signer) bool {
	_, ok := k.(*mldsa.PrivateKey)
	return ok
}

// keyID derives a key ID from the SHA-256 of the public key's SPKI.
func keyID(pub crypto.PublicKey) (string, error) {
	var der []byte
	var err error
	if mp, ok := pub.(*mldsa.PublicKey); ok {
		der, err = mldsa.MarshalPKIXPublicKey(mp)
	} else {
		der, err = x509.MarshalPKIXPublicKey(pub)
	}
	if err != nil {
		return "", fmt.Errorf("ca: marshal public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:18]), nil
}
