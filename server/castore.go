package server

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/signet-id/signet/ca"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// etcdCAStorage keeps the CA state in etcd, sealed with AES-256-GCM under a
// key-encryption key that only the server replicas hold: private keys never
// reach etcd in clear. Writes compare the key's revision, so replicas cannot
// overwrite each other's transitions.
type etcdCAStorage struct {
	cli  *clientv3.Client
	key  string
	aead cipher.AEAD

	mu   sync.Mutex
	seen int64
}

var _ ca.Storage = (*etcdCAStorage)(nil)

// loadKEK reads a 32-byte key-encryption key (raw, or 64 hex characters).
func loadKEK(path string) ([]byte, error) {
	if path == "" {
		return nil, errors.New("server: servers sharing an external etcd keep the CA keys there, sealed with a key-encryption key: set ca_kek_path / --ca-kek-file to a file of 32 random bytes shared by the replicas (e.g. `head -c32 /dev/urandom > kek`)")
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("server: CA key-encryption key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("server: CA key-encryption key %s is readable by group or others (mode %v); chmod 600 it", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("server: CA key-encryption key: %w", err)
	}
	if len(data) != 32 {
		return nil, fmt.Errorf("server: CA key-encryption key %s has %d bytes, want 32", path, len(data))
	}
	return data, nil
}

func newEtcdCAStorage(cli *clientv3.Client, key string, kek []byte) (*etcdCAStorage, error) {
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, fmt.Errorf("server: CA key-encryption key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("server: CA key-encryption key: %w", err)
	}
	return &etcdCAStorage{cli: cli, key: key, aead: aead}, nil
}

func (e *etcdCAStorage) String() string { return "etcd:" + e.key }

func (e *etcdCAStorage) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 10*time.Second)
}

func (e *etcdCAStorage) Load() ([]byte, error) {
	ctx, cancel := e.ctx()
	defer cancel()
	resp, err := e.cli.Get(ctx, e.key)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(resp.Kvs) == 0 {
		e.seen = 0
		return nil, nil
	}
	kv := resp.Kvs[0]
	e.seen = kv.ModRevision
	n := e.aead.NonceSize()
	if len(kv.Value) < n {
		return nil, errors.New("sealed CA state is truncated")
	}
	plain, err := e.aead.Open(nil, kv.Value[:n], kv.Value[n:], []byte(e.key))
	if err != nil {
		return nil, errors.New("cannot unseal the CA state: wrong key-encryption key, or the state was tampered with")
	}
	return plain, nil
}

func (e *etcdCAStorage) Save(data []byte) error {
	nonce := make([]byte, e.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	sealed := e.aead.Seal(nonce, nonce, data, []byte(e.key))
	e.mu.Lock()
	defer e.mu.Unlock()
	ctx, cancel := e.ctx()
	defer cancel()
	resp, err := e.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(e.key), "=", e.seen)).
		Then(clientv3.OpPut(e.key, string(sealed))).
		Commit()
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		return ca.ErrStaleState
	}
	e.seen = resp.Header.Revision
	return nil
}

// watchCA reloads the CA when another replica changes it, and returns when
// ctx is done.
func (s *Server) watchCA(ctx context.Context, st *etcdCAStorage) {
	for ctx.Err() == nil {
		wch := st.cli.Watch(clientv3.WithRequireLeader(ctx), st.key)
		for resp := range wch {
			if resp.Err() != nil {
				break
			}
			changed, err := s.ca.Reload()
			if err != nil {
				s.log.Error("failed to reload the CA state written by another replica", "error", err)
				continue
			}
			if changed {
				s.kickCA()
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}
