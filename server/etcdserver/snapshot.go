package etcdserver

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	clientsnapshot "go.etcd.io/etcd/client/v3/snapshot"
	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
)

// SnapshotInfo describes a snapshot file.
type SnapshotInfo struct {
	Revision  int64
	Keys      int
	SizeBytes int64
}

// SaveSnapshot writes a consistent snapshot of the running single member
// whose data directory is dir (reached on dir/client.sock, so only its
// uid can) to path, mode 0600. An existing path is refused.
func SaveSnapshot(ctx context.Context, dir, path string) (SnapshotInfo, error) {
	if _, err := os.Lstat(path); err == nil {
		return SnapshotInfo{}, fmt.Errorf("etcdserver: snapshot file %s exists: choose a new file name", path)
	}
	sock := filepath.Join(dir, ClientSocketName)
	if _, err := os.Stat(sock); err != nil {
		return SnapshotInfo{}, fmt.Errorf("etcdserver: no embedded etcd running on %s (%w): start the server on this data directory, "+
			"or, with the server stopped, copy the whole data directory instead", dir, err)
	}
	cfg := clientv3.Config{Endpoints: []string{(&url.URL{Scheme: "unix", Path: sock}).String()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}
	if _, err := clientsnapshot.SaveWithVersion(ctx, zap.NewNop(), cfg, path); err != nil {
		return SnapshotInfo{}, fmt.Errorf("etcdserver: save snapshot of %s: %w", dir, err)
	}
	return SnapshotStatus(path)
}

// SnapshotStatus reads a snapshot file's revision, key count and size,
// checking its integrity hash.
func SnapshotStatus(path string) (SnapshotInfo, error) {
	st, err := snapshot.NewV3(zap.NewNop()).Status(path)
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("etcdserver: snapshot %s: %w", path, err)
	}
	return SnapshotInfo{Revision: st.Revision, Keys: st.TotalKey, SizeBytes: st.TotalSize}, nil
}

// RestoreSnapshot creates the data directory dir of a single member named
// name (as Start runs it) from the snapshot file path. dir must not
// exist; its parent is created 0700. The restored member starts with its
// revisions bumped past any a client may have seen, the older ones marked
// compacted, so watchers relist instead of missing changes.
func RestoreSnapshot(path, dir, name string) (SnapshotInfo, error) {
	if name == "" {
		name = "signet"
	}
	info, err := SnapshotStatus(path)
	if err != nil {
		return SnapshotInfo{}, err
	}
	if _, err := os.Lstat(dir); err == nil {
		return SnapshotInfo{}, fmt.Errorf("etcdserver: %s exists: a snapshot restores into a new directory only (move the old one aside)", dir)
	} else if !errors.Is(err, os.ErrNotExist) {
		return SnapshotInfo{}, fmt.Errorf("etcdserver: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return SnapshotInfo{}, fmt.Errorf("etcdserver: create parent of %s: %w", dir, err)
	}
	placeholder := "http://localhost:0" // as Start advertises for a single member
	err = snapshot.NewV3(zap.NewNop()).Restore(snapshot.RestoreConfig{
		SnapshotPath:        path,
		Name:                name,
		OutputDataDir:       dir,
		PeerURLs:            []string{placeholder},
		InitialCluster:      name + "=" + placeholder,
		InitialClusterToken: "signet",
		RevisionBump:        1_000_000_000,
		MarkCompacted:       true,
	})
	if err != nil {
		return SnapshotInfo{}, fmt.Errorf("etcdserver: restore %s into %s: %w", path, dir, err)
	}
	return info, nil
}
