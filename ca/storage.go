package ca

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/signet-id/signet/privdir"
	"github.com/signet-id/signet/rotation/renewal"
)

// Storage persists the encoded CA state (private keys included). Replicas
// that share a Storage must see each other's writes: Save fails with
// ErrStaleState when the stored state changed since this manager last
// loaded or saved it, so two replicas never both apply a transition.
type Storage interface {
	// Load returns the stored state, or nil when there is none.
	Load() ([]byte, error)
	// Save replaces the stored state.
	Save(data []byte) error
	// String names the storage in errors, e.g. a path.
	String() string
}

// ErrStaleState is returned by Storage.Save when another writer changed the
// state first; the manager reloads and re-evaluates.
var ErrStaleState = errors.New("ca: state changed by another replica")

// FileStorage keeps the state in one file, written atomically with mode
// 0600 in a checked 0700 directory. Load refuses a file (or directory)
// that another user could have written: not owned by the running user, or
// with a mode looser than 0600.
type FileStorage struct{ Path string }

var _ Storage = FileStorage{}

func (f FileStorage) String() string { return f.Path }

// Load implements Storage.
func (f FileStorage) Load() ([]byte, error) {
	data, err := privdir.ReadFile(f.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return data, err
}

// Save implements Storage.
func (f FileStorage) Save(data []byte) error {
	dir := filepath.Dir(f.Path)
	if err := privdir.EnsureDir(dir, 0o700); err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	if err := privdir.WriteFile(f.Path, data, 0o600); err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	return nil
}

// memoryStorage keeps nothing.
type memoryStorage struct{}

func (memoryStorage) Load() ([]byte, error) { return nil, nil }
func (memoryStorage) Save([]byte) error     { return nil }
func (memoryStorage) String() string        { return "memory" }

// Reload re-reads the shared storage, for example after a watch saw another
// replica write it. It reports whether the state changed.
func (m *Manager) Reload() (bool, error) {
	data, err := m.storage.Load()
	if err != nil {
		return false, fmt.Errorf("ca: reload state: %w", err)
	}
	if len(data) == 0 {
		return false, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	before := m.sequence
	if err := m.decodeLocked(data); err != nil {
		return false, err
	}
	if m.sequence == before {
		return false, nil
	}
	m.notifyLocked()
	return true, nil
}

// NextTransition returns when Rotate will next change something: the
// active authority's half-life (prepare), its last sixth (activate), or an
// old authority's expiry (drop), for X.509 and JWT alike. The rotation
// scheduler keeps a due item at that time.
func (m *Manager) NextTransition() time.Time {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var next time.Time
	consider := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	pol := renewal.Default()
	step := func(active, prepared bool, notBefore, notAfter time.Time) {
		switch {
		case !active:
		case !prepared:
			consider(pol.CAPrepareAt(notBefore, notAfter))
		default:
			consider(pol.CAActivateAt(notBefore, notAfter))
		}
		consider(notAfter)
	}
	if a := m.activeX509(); a != nil {
		step(true, m.preparedX509() != nil, a.Cert.NotBefore, a.Cert.NotAfter)
	}
	for _, s := range m.x509 {
		if s.Status == StatusOld {
			consider(s.Cert.NotAfter)
		}
	}
	if a := m.activeJWT(); a != nil {
		step(true, m.preparedJWT() != nil, a.NotBefore, a.NotAfter)
	}
	for _, s := range m.jwt {
		if s.Status == StatusOld {
			consider(s.NotAfter)
		}
	}
	return next
}
