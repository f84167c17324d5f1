package ca

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// StateStore holds the sealed CA state of replicas that share it (for
// example one etcd key). It only stores bytes: sealing is SealedStorage's.
type StateStore interface {
	// Load returns the sealed state and the revision it was written at,
	// or nil and 0 when there is none.
	Load(ctx context.Context) (sealed []byte, rev int64, err error)
	// Save writes sealed if the stored revision is still prevRev (0: no
	// state yet) and returns the new revision; it returns ErrStaleState
	// when another writer changed the state first.
	Save(ctx context.Context, sealed []byte, prevRev int64) (rev int64, err error)
	// String names the store in errors.
	String() string
}

// ErrUnseal is returned when the sealed state cannot be opened (wrong key-encryption
// key, truncated, or tampered with).
var ErrUnseal = errors.New("ca: cannot unseal the CA state: wrong key-encryption key, or the state was truncated or tampered with")

// KEKSize is the size of a key-encryption key (AES-256).
const KEKSize = 32

// SealedStorage is a Storage that seals the state with AES-256-GCM under
// a key-encryption key only the server replicas hold, so private keys
// never reach the StateStore in clear. The associated data binds a sealed
// state to its place (e.g. its etcd key). Writes compare the revision last
// loaded or saved, so replicas never overwrite each other's transitions.
type SealedStorage struct {
	store   StateStore
	aead    cipher.AEAD
	ad      []byte
	rand    io.Reader
	timeout time.Duration

	mu   sync.Mutex
	seen int64
}

var _ Storage = (*SealedStorage)(nil)

// SealedConfig configures a SealedStorage.
type SealedConfig struct {
	Store StateStore
	// KEK is the KEKSize-byte key-encryption key.
	KEK []byte
	// AssociatedData is authenticated with every sealed state.
	AssociatedData []byte
	// Rand draws nonces (default crypto/rand).
	Rand io.Reader
	// Timeout bounds each Load and Save (default 10s).
	Timeout time.Duration
}

// NewSealedStorage returns a SealedStorage over cfg.Store.
func NewSealedStorage(cfg SealedConfig) (*SealedStorage, error) {
	if cfg.Store == nil {
		return nil, errors.New("ca: sealed storage: a state store is required")
	}
	if len(cfg.KEK) != KEKSize {
		return nil, fmt.Errorf("ca: sealed storage: key-encryption key has %d bytes, want %d", len(cfg.KEK), KEKSize)
	}
	block, err := aes.NewCipher(cfg.KEK)
	if err != nil {
		return nil, fmt.Errorf("ca: sealed storage: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("ca: sealed storage: %w", err)
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	return &SealedStorage{store: cfg.Store, aead: aead, ad: cfg.AssociatedData, rand: cfg.Rand, timeout: cfg.Timeout}, nil
}

// String implements Storage.
func (s *SealedStorage) String() string { return s.store.String() }

// Seal encrypts plain: a fresh nonce followed by the ciphertext and tag.
func (s *SealedStorage) Seal(plain []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := io.ReadFull(s.rand, nonce); err != nil {
		return nil, fmt.Errorf("ca: seal: nonce: %w", err)
	}
	return s.aead.Seal(nonce, nonce, plain, s.ad), nil
}

// Open decrypts what Seal returned; it fails with ErrUnseal.
func (s *SealedStorage) Open(sealed []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n+s.aead.Overhead() {
		return nil, ErrUnseal
	}
	plain, err := s.aead.Open(nil, sealed[:n], sealed[n:], s.ad)
	if err != nil {
		return nil, ErrUnseal
	}
	return plain, nil
}

// Load implements Storage: it reads and opens the sealed state and
// remembers its revision for the next Save.
func (s *SealedStorage) Load() ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	sealed, rev, err := s.store.Load(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen = rev
	if rev == 0 && len(sealed) == 0 {
		return nil, nil
	}
	return s.Open(sealed)
}

// Save implements Storage: it seals data and writes it if the state is
// still at the revision last seen (else ErrStaleState).
func (s *SealedStorage) Save(data []byte) error {
	sealed, err := s.Seal(data)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	rev, err := s.store.Save(ctx, sealed, s.seen)
	if err != nil {
		return err
	}
	s.seen = rev
	return nil
}
