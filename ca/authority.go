package ca

import (
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Kind names the two sorts of authority a Manager holds.
type Kind string

// Authority kinds.
const (
	KindX509 Kind = "X.509"
	KindJWT  Kind = "JWT"
)

// Sentinel reasons of a refused lifecycle transition. A *TransitionError
// wraps one of them; callers branch with errors.Is.
var (
	// ErrNoAuthorityID: the request named no authority.
	ErrNoAuthorityID = errors.New("no authority ID provided")
	// ErrAuthorityNotFound: no authority of that kind has the ID (it may
	// have expired or been revoked).
	ErrAuthorityNotFound = errors.New("no authority with that ID")
	// ErrActiveAuthority: the operation does not apply to the active
	// authority (it signs everything issued now).
	ErrActiveAuthority = errors.New("the authority is the active one")
	// ErrNotPrepared: only a prepared authority can be activated.
	ErrNotPrepared = errors.New("the authority is not prepared")
	// ErrNotOld: only an old authority (one that was active and has been
	// replaced) can be tainted or revoked.
	ErrNotOld = errors.New("the authority is not old")
	// ErrAlreadyTainted: the authority is already tainted.
	ErrAlreadyTainted = errors.New("the authority is already tainted")
	// ErrNotTainted: only a tainted authority can be revoked.
	ErrNotTainted = errors.New("the authority is not tainted")
	// ErrUpstreamAuthority: local X.509 authorities signed by an upstream
	// authority are not tainted or revoked one by one; the upstream
	// authority that signed them is.
	ErrUpstreamAuthority = errors.New("the X.509 authorities are signed by an upstream authority")
	// ErrNoUpstreamAuthority: the operation needs an upstream authority
	// and none is configured.
	ErrNoUpstreamAuthority = errors.New("no upstream authority is configured")
	// ErrSignsActive: the upstream authority signed the active authority.
	ErrSignsActive = errors.New("the upstream authority signed the active authority")
)

// TransitionError reports a lifecycle transition that the authority's
// current state does not allow (a failed precondition).
type TransitionError struct {
	Op          string // "activate", "taint" or "revoke"
	Kind        Kind
	AuthorityID string
	// Status is the authority's current status; empty when it was not
	// found.
	Status Status
	// Err is one of the sentinel reasons above.
	Err error
}

func (e *TransitionError) Error() string {
	s := fmt.Sprintf("ca: cannot %s %s authority", e.Op, e.Kind)
	if e.AuthorityID != "" {
		s += " " + e.AuthorityID
	}
	if e.Status != "" {
		s += " (" + string(e.Status) + ")"
	}
	return s + ": " + e.Err.Error()
}

func (e *TransitionError) Unwrap() error { return e.Err }

// AuthorityInfo describes one authority in the lifecycle, as admins see it.
type AuthorityInfo struct {
	Kind Kind
	// ID is the authority ID: for X.509 the lower-case hex subject key ID
	// of the CA certificate, for JWT the key ID (kid), as in SPIRE.
	ID        string
	Status    Status
	Tainted   bool
	NotBefore time.Time
	NotAfter  time.Time
	// UpstreamAuthorityID is, for an X.509 authority signed by an
	// upstream authority, the lower-case hex subject key ID of the
	// upstream certificate that signed it (as SPIRE reports it); empty
	// for a self-signed authority.
	UpstreamAuthorityID string
	// KeyManager names where the signing key lives: the key manager's
	// kind (pkcs11, hashicorp_vault, ...) or "state" (the CA state).
	KeyManager string
	// KeyURI is the key's reference in the key manager, or the CA state's
	// location (a file path, or etcd:<key> sealed under the KEK).
	KeyURI string
	// AltKeyLocation, for the hybrid profile, is where the ML-DSA
	// alternative key lives: always the CA state, since no key manager
	// here holds ML-DSA keys.
	AltKeyLocation string
}

// KeyIDString formats a subject or authority key identifier as an X.509
// authority ID: lower-case hex, as SPIRE prints it.
func KeyIDString(keyID []byte) string { return hex.EncodeToString(keyID) }

// X509AuthorityID returns the authority ID of an X.509 CA certificate.
func X509AuthorityID(cert *x509.Certificate) string { return KeyIDString(cert.SubjectKeyId) }

// IssuerAuthorityID returns the authority ID of the CA that signed cert
// (from its authority key identifier); empty when cert has none.
func IssuerAuthorityID(cert *x509.Certificate) string { return KeyIDString(cert.AuthorityKeyId) }

// AuthorityID returns the slot's authority ID (see AuthorityInfo.ID).
func (s X509Slot) AuthorityID() string { return X509AuthorityID(s.Cert) }

// AuthorityID returns the slot's authority ID, its key ID.
func (s JWTSlot) AuthorityID() string { return s.KeyID }

// lifecycleSlot is what the transitions need of a slot of either kind.
type lifecycleSlot interface {
	info() AuthorityInfo
	setStatus(Status)
	setTainted()
}

func (s *X509Slot) info() AuthorityInfo {
	return AuthorityInfo{Kind: KindX509, ID: s.AuthorityID(), Status: s.Status, Tainted: s.Tainted, NotBefore: s.Cert.NotBefore, NotAfter: s.Cert.NotAfter,
		UpstreamAuthorityID: s.upstreamAuthorityID()}
}

// upstreamAuthorityID is the subject key ID of the upstream certificate
// that signed the slot, or "" when the slot is self-signed.
func (s *X509Slot) upstreamAuthorityID() string {
	if s.UpstreamRoots == nil {
		return ""
	}
	return IssuerAuthorityID(s.Cert)
}
func (s *X509Slot) setStatus(st Status) { s.Status = st }
func (s *X509Slot) setTainted()         { s.Tainted = true }

func (s *JWTSlot) info() AuthorityInfo {
	return AuthorityInfo{Kind: KindJWT, ID: s.KeyID, Status: s.Status, Tainted: s.Tainted, NotBefore: s.NotBefore, NotAfter: s.NotAfter}
}
func (s *JWTSlot) setStatus(st Status) { s.Status = st }
func (s *JWTSlot) setTainted()         { s.Tainted = true }

// IsUpstreamAuthority reports whether the X.509 CAs are signed by an
// upstream authority (e.g. Vault PKI). Then, as in SPIRE, the local X.509
// authorities cannot be tainted or revoked: the upstream authority that
// signed an old one is (TaintX509Upstream, RevokeX509Upstream).
func (m *Manager) IsUpstreamAuthority() bool { return m.cfg.Upstream != nil }

// X509Authorities describes the X.509 authorities, newest first.
func (m *Manager) X509Authorities() []AuthorityInfo {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := infos(m.x509)
	for i := range out {
		s := m.x509[len(m.x509)-1-i]
		m.describeKeys(&out[i], s.KeyRef, s.AltKey != nil)
	}
	return out
}

// JWTAuthorities describes the JWT signing keys, newest first.
func (m *Manager) JWTAuthorities() []AuthorityInfo {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := infos(m.jwt)
	for i := range out {
		s := m.jwt[len(m.jwt)-1-i]
		m.describeKeys(&out[i], s.KeyRef, s.AltKey != nil)
	}
	return out
}

// describeKeys fills in where an authority's keys live.
func (m *Manager) describeKeys(info *AuthorityInfo, ref string, alt bool) {
	info.KeyManager, info.KeyURI = m.keyLocation(ref)
	if alt {
		info.AltKeyLocation = m.storage.String()
	}
}

// X509AuthorityIDs returns the IDs of every X.509 authority in the
// lifecycle (prepared, active and old).
func (m *Manager) X509AuthorityIDs() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]string, 0, len(m.x509))
	for _, s := range m.x509 {
		out = append(out, s.AuthorityID())
	}
	return out
}

func infos[S lifecycleSlot](slots []S) []AuthorityInfo {
	out := make([]AuthorityInfo, 0, len(slots))
	for i := len(slots) - 1; i >= 0; i-- {
		out = append(out, slots[i].info())
	}
	return out
}

// PrepareX509 creates a new X.509 CA in the prepared slot, now, whatever
// the schedule says, and publishes it in the bundle. An authority that was
// already prepared (and so never signed anything) is replaced, as SPIRE
// does.
func (m *Manager) PrepareX509() (AuthorityInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, err := m.newX509Slot(m.cfg.Now())
	if err != nil {
		return AuthorityInfo{}, err
	}
	undo := m.snapshotLocked()
	kept := m.x509[:0:0]
	var replaced []string
	for _, o := range m.x509 {
		if o.Status != StatusPrepared {
			kept = append(kept, o)
		} else {
			replaced = append(replaced, o.KeyRef)
		}
	}
	m.x509 = append(kept, s)
	if err := m.commitLocked(undo); err != nil {
		m.discardKeys(s.KeyRef)
		return AuthorityInfo{}, err
	}
	m.discardKeys(replaced...) // never signed anything
	return s.info(), nil
}

// PrepareJWT creates a new JWT signing key in the prepared slot (replacing
// a prepared one) and publishes it in the bundle.
func (m *Manager) PrepareJWT() (AuthorityInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, err := m.newJWTSlot(m.cfg.Now())
	if err != nil {
		return AuthorityInfo{}, err
	}
	undo := m.snapshotLocked()
	kept := m.jwt[:0:0]
	var replaced []string
	for _, o := range m.jwt {
		if o.Status != StatusPrepared {
			kept = append(kept, o)
		} else {
			replaced = append(replaced, o.KeyRef)
		}
	}
	m.jwt = append(kept, s)
	if err := m.commitLocked(undo); err != nil {
		m.discardKeys(s.KeyRef)
		return AuthorityInfo{}, err
	}
	m.discardKeys(replaced...) // never signed anything
	return s.info(), nil
}

// ActivateX509 makes the prepared X.509 authority with the given ID the
// active one; the active one becomes old (it stays in the bundle until it
// expires or is revoked).
func (m *Manager) ActivateX509(id string) (AuthorityInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return activate(m, KindX509, m.x509, id)
}

// ActivateJWT makes the prepared JWT key with the given ID the active one.
func (m *Manager) ActivateJWT(id string) (AuthorityInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return activate(m, KindJWT, m.jwt, id)
}

// TaintX509 marks an old X.509 authority as tainted: everything it signed
// must be replaced now. The active authority cannot be tainted; activate a
// new one first.
func (m *Manager) TaintX509(id string) (AuthorityInfo, error) {
	if m.IsUpstreamAuthority() {
		return AuthorityInfo{}, &TransitionError{Op: "taint", Kind: KindX509, AuthorityID: id, Err: ErrUpstreamAuthority}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return taint(m, KindX509, m.x509, id)
}

// TaintJWT marks an old JWT key as tainted.
func (m *Manager) TaintJWT(id string) (AuthorityInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return taint(m, KindJWT, m.jwt, id)
}

// RevokeX509 removes a tainted old X.509 authority from the lifecycle and
// the bundle: what it signed no longer verifies.
func (m *Manager) RevokeX509(id string) (AuthorityInfo, error) {
	if m.IsUpstreamAuthority() {
		return AuthorityInfo{}, &TransitionError{Op: "revoke", Kind: KindX509, AuthorityID: id, Err: ErrUpstreamAuthority}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	info, i, err := revocable(KindX509, m.x509, id)
	if err != nil {
		return AuthorityInfo{}, err
	}
	ref := m.x509[i].KeyRef
	undo := m.snapshotLocked()
	m.x509 = append(m.x509[:i:i], m.x509[i+1:]...)
	if err := m.commitLocked(undo); err != nil {
		return AuthorityInfo{}, err
	}
	m.discardKeys(ref) // revoked: no longer trusted
	m.cfg.Logger.Info("revoked X.509 authority", "authority_id", id)
	return info, nil
}

// RevokeJWT removes a tainted old JWT key from the lifecycle and the
// bundle.
func (m *Manager) RevokeJWT(id string) (AuthorityInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	info, i, err := revocable(KindJWT, m.jwt, id)
	if err != nil {
		return AuthorityInfo{}, err
	}
	ref := m.jwt[i].KeyRef
	undo := m.snapshotLocked()
	m.jwt = append(m.jwt[:i:i], m.jwt[i+1:]...)
	if err := m.commitLocked(undo); err != nil {
		return AuthorityInfo{}, err
	}
	m.discardKeys(ref) // revoked: no longer trusted
	m.cfg.Logger.Info("revoked JWT key", "kid", id)
	return info, nil
}

// find returns the index of the slot with authority ID id, or -1.
func find[S lifecycleSlot](slots []S, id string) int {
	for i, s := range slots {
		if s.info().ID == id {
			return i
		}
	}
	return -1
}

// lookup finds id for op, refusing an empty ID, an unknown one, and the
// active authority.
func lookup[S lifecycleSlot](op string, kind Kind, slots []S, id string) (int, error) {
	refuse := func(st Status, reason error) error {
		return &TransitionError{Op: op, Kind: kind, AuthorityID: id, Status: st, Err: reason}
	}
	if id == "" {
		return -1, refuse("", ErrNoAuthorityID)
	}
	i := find(slots, id)
	if i < 0 {
		return -1, refuse("", ErrAuthorityNotFound)
	}
	if st := slots[i].info().Status; st == StatusActive {
		return -1, refuse(st, ErrActiveAuthority)
	}
	return i, nil
}

func activate[S lifecycleSlot](m *Manager, kind Kind, slots []S, id string) (AuthorityInfo, error) {
	i, err := lookup("activate", kind, slots, id)
	if err != nil {
		return AuthorityInfo{}, err
	}
	next := slots[i]
	if st := next.info().Status; st != StatusPrepared {
		return AuthorityInfo{}, &TransitionError{Op: "activate", Kind: kind, AuthorityID: id, Status: st, Err: ErrNotPrepared}
	}
	undo := m.snapshotLocked()
	for _, s := range slots {
		if s.info().Status == StatusActive {
			s.setStatus(StatusOld)
		}
	}
	next.setStatus(StatusActive)
	if err := m.commitLocked(undo); err != nil {
		return AuthorityInfo{}, err
	}
	m.cfg.Logger.Info("activated authority by request", "kind", string(kind), "authority_id", id)
	return next.info(), nil
}

func taint[S lifecycleSlot](m *Manager, kind Kind, slots []S, id string) (AuthorityInfo, error) {
	i, err := lookup("taint", kind, slots, id)
	if err != nil {
		return AuthorityInfo{}, err
	}
	s := slots[i]
	info := s.info()
	switch {
	case info.Status != StatusOld:
		return AuthorityInfo{}, &TransitionError{Op: "taint", Kind: kind, AuthorityID: id, Status: info.Status, Err: ErrNotOld}
	case info.Tainted:
		return AuthorityInfo{}, &TransitionError{Op: "taint", Kind: kind, AuthorityID: id, Status: info.Status, Err: ErrAlreadyTainted}
	}
	undo := m.snapshotLocked()
	s.setTainted()
	if err := m.commitLocked(undo); err != nil {
		return AuthorityInfo{}, err
	}
	m.cfg.Logger.Warn("tainted authority", "kind", string(kind), "authority_id", id)
	return s.info(), nil
}

func revocable[S lifecycleSlot](kind Kind, slots []S, id string) (AuthorityInfo, int, error) {
	i, err := lookup("revoke", kind, slots, id)
	if err != nil {
		return AuthorityInfo{}, -1, err
	}
	info := slots[i].info()
	switch {
	case info.Status != StatusOld:
		return AuthorityInfo{}, -1, &TransitionError{Op: "revoke", Kind: kind, AuthorityID: id, Status: info.Status, Err: ErrNotOld}
	case !info.Tainted:
		return AuthorityInfo{}, -1, &TransitionError{Op: "revoke", Kind: kind, AuthorityID: id, Status: info.Status, Err: ErrNotTainted}
	}
	return info, i, nil
}

// snapshotLocked records the slots and sequence so that a change whose
// persistence fails can be undone. Caller holds m.mu.
func (m *Manager) snapshotLocked() func() {
	x := make([]X509Slot, len(m.x509))
	for i, s := range m.x509 {
		x[i] = *s
	}
	j := make([]JWTSlot, len(m.jwt))
	for i, s := range m.jwt {
		j[i] = *s
	}
	seq := m.sequence
	pub := append([]JWTAuthority(nil), m.published...)
	return func() {
		m.published = pub
		m.x509 = m.x509[:0:0]
		for i := range x {
			m.x509 = append(m.x509, &x[i])
		}
		m.jwt = m.jwt[:0:0]
		for i := range j {
			m.jwt = append(m.jwt, &j[i])
		}
		m.sequence = seq
	}
}

// commitLocked bumps the bundle sequence, persists, and notifies Changed
// subscribers; when persisting fails it undoes the change. Caller holds
// m.mu.
func (m *Manager) commitLocked(undo func()) error {
	m.sequence++
	if err := m.saveLocked(); err != nil {
		undo()
		return err
	}
	m.notifyLocked()
	return nil
}
