package ca

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// KeyManager holds signing keys that never leave it: a PKCS#11 token, a
// cloud KMS, Vault Transit. When one is configured the Manager creates
// every new X.509 CA key and JWT signing key there (ECDSA P-256) and the
// CA state records only the key's reference, so replicas that share the
// state share the keys by reference. The hybrid profile's ML-DSA keys stay
// in the CA state (sealed under the KEK in etcd, or the 0600 state file):
// no key manager here holds ML-DSA keys.
type KeyManager interface {
	// CreateKey creates a new, non-exportable ECDSA P-256 signing key
	// labelled label (unique per call) and returns its reference (a key
	// URI or ID, never key material) and a signer that signs in the key
	// manager.
	CreateKey(ctx context.Context, label string) (ref string, signer crypto.Signer, err error)
	// Signer returns a signer for the existing key ref; an error wrapping
	// ErrKeyNotFound when the key manager has no such key.
	Signer(ctx context.Context, ref string) (crypto.Signer, error)
	// Kind names the key manager in the state and in `signet ca show`,
	// e.g. pkcs11, awskms, hashicorp_vault.
	Kind() string
}

// KeyDeleter is implemented by key managers that can delete a key. The
// Manager deletes a key it created for a transition that then failed, so
// a refused rotation leaves nothing behind.
type KeyDeleter interface {
	DeleteKey(ctx context.Context, ref string) error
}

// ErrKeyNotFound is returned when the key manager has no key with the
// reference the CA state names (deleted, another token, another Vault mount).
var ErrKeyNotFound = errors.New("the key manager has no such key")

// KeyManagerError reports a key manager that failed an operation: down,
// refusing the credentials, or missing a key. The Manager's state is
// unchanged when it returns one.
type KeyManagerError struct {
	Op   string // "create", "open"
	Kind string // the key manager's kind
	Ref  string // the key reference, when there is one
	Err  error
}

func (e *KeyManagerError) Error() string {
	s := fmt.Sprintf("ca: key manager %s: %s key", e.Kind, e.Op)
	if e.Ref != "" {
		s += " " + e.Ref
	}
	return s + ": " + e.Err.Error()
}

func (e *KeyManagerError) Unwrap() error { return e.Err }

// keyManagerTimeout bounds one key manager call.
const keyManagerTimeout = 30 * time.Second

// StateKeyManager is the KeyLocation kind of a key kept in the CA state.
const StateKeyManager = "state"

// newSigningKey creates the ECDSA P-256 key of a new authority: in the key
// manager when one is configured (ref is then its reference), else in
// memory (ref empty; the key goes into the CA state).
func (m *Manager) newSigningKey(kind Kind) (crypto.Signer, string, error) {
	km := m.cfg.KeyManager
	if km == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), m.cfg.Rand)
		if err != nil {
			return nil, "", fmt.Errorf("ca: generate %s key: %w", kind, err)
		}
		return k, "", nil
	}
	var suffix [6]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return nil, "", fmt.Errorf("ca: key label: %w", err)
	}
	kindName := "jwt"
	if kind == KindX509 {
		kindName = "x509"
	}
	label := fmt.Sprintf("signet-%s-%s-%s", kindName,
		m.cfg.Now().UTC().Format("20060102t150405"), hex.EncodeToString(suffix[:]))
	ctx, cancel := context.WithTimeout(context.Background(), keyManagerTimeout)
	defer cancel()
	ref, signer, err := km.CreateKey(ctx, label)
	if err != nil {
		return nil, "", &KeyManagerError{Op: "create", Kind: km.Kind(), Err: err}
	}
	if _, ok := signer.Public().(*ecdsa.PublicKey); !ok {
		m.discardKeys(ref)
		return nil, "", &KeyManagerError{Op: "create", Kind: km.Kind(), Ref: ref, Err: fmt.Errorf("the key manager returned a %T key, want ECDSA P-256", signer.Public())}
	}
	m.cfg.Logger.Info("created key in key manager", "kind", string(kind), "key_manager", km.Kind(), "key_uri", ref)
	return signer, ref, nil
}

// openKey returns the signer of the key ref in the key manager of kind.
// Signers are cached by reference, so reloading the shared state does not
// reopen every key.
func (m *Manager) openKey(kind, ref string) (crypto.Signer, error) {
	km := m.cfg.KeyManager
	if km == nil {
		return nil, fmt.Errorf("ca: the CA state names key %s in key manager %s, but no key manager is configured: configure the KeyManager that holds it", ref, kind)
	}
	if km.Kind() != kind {
		return nil, fmt.Errorf("ca: the CA state names key %s in key manager %s, but the configured key manager is %s", ref, kind, km.Kind())
	}
	m.keysMu.Lock()
	defer m.keysMu.Unlock()
	if s, ok := m.keys[ref]; ok {
		return s, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), keyManagerTimeout)
	defer cancel()
	s, err := km.Signer(ctx, ref)
	if err != nil {
		return nil, &KeyManagerError{Op: "open", Kind: kind, Ref: ref, Err: err}
	}
	m.keys[ref] = s
	return s, nil
}

// discardKeys deletes keys created for a transition that failed (best
// effort: a key manager that cannot delete keeps an unused key).
func (m *Manager) discardKeys(refs ...string) {
	d, ok := m.cfg.KeyManager.(KeyDeleter)
	for _, ref := range refs {
		if ref == "" || !ok {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), keyManagerTimeout)
		if err := d.DeleteKey(ctx, ref); err != nil {
			m.cfg.Logger.Warn("failed to delete an unused key from the key manager", "key_manager", m.cfg.KeyManager.Kind(), "key_uri", ref, "error", err)
		}
		cancel()
	}
}

// keyLocation says where a slot's key lives: its key manager and
// reference, or the CA state.
func (m *Manager) keyLocation(ref string) (kind, where string) {
	if ref == "" || m.cfg.KeyManager == nil {
		return StateKeyManager, m.storage.String()
	}
	return m.cfg.KeyManager.Kind(), ref
}

// KeyManagerKind names the configured key manager, or "state" when the keys
// are in the CA state.
func (m *Manager) KeyManagerKind() string {
	if m.cfg.KeyManager == nil {
		return StateKeyManager
	}
	return m.cfg.KeyManager.Kind()
}
