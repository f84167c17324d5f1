package server

import (
	"context"
	"fmt"
	"time"

	"github.com/signet-id/signet/ca"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// etcdCAState keeps the sealed CA state in one etcd key (ca.SealedStorage
// seals it); writes compare the key's revision, so replicas cannot
// overwrite each other's transitions.
type etcdCAState struct {
	cli *clientv3.Client
	key string
}

var _ ca.StateStore = etcdCAState{}

// newEtcdCAStorage returns the CA storage sealed under kek in etcd key
// key; the key is the associated data, so a sealed state copied to another
// key does not open.
func newEtcdCAStorage(cli *clientv3.Client, key string, kek []byte) (*ca.SealedStorage, etcdCAState, error) {
	st := etcdCAState{cli: cli, key: key}
	sealed, err := ca.NewSealedStorage(ca.SealedConfig{Store: st, KEK: kek, AssociatedData: []byte(key), Rand: randReader()})
	if err != nil {
		return nil, st, fmt.Errorf("server: CA key-encryption key: %w", err)
	}
	return sealed, st, nil
}

func (e etcdCAState) String() string { return "etcd:" + e.key }

// Load implements ca.StateStore.
func (e etcdCAState) Load(ctx context.Context) ([]byte, int64, error) {
	resp, err := e.cli.Get(ctx, e.key)
	if err != nil {
		return nil, 0, fmt.Errorf("server: load CA state: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, nil
	}
	return resp.Kvs[0].Value, resp.Kvs[0].ModRevision, nil
}

// Save implements ca.StateStore.
func (e etcdCAState) Save(ctx context.Context, sealed []byte, prevRev int64) (int64, error) {
	resp, err := e.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(e.key), "=", prevRev)).
		Then(clientv3.OpPut(e.key, string(sealed))).
		Commit()
	if err != nil {
		return 0, fmt.Errorf("server: save CA state: %w", err)
	}
	if !resp.Succeeded {
		return 0, ca.ErrStaleState
	}
	return resp.Header.Revision, nil
}

// watchCA reloads the CA when another replica changes it, and returns when
// ctx is done.
func (s *Server) watchCA(ctx context.Context, st etcdCAState) {
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
