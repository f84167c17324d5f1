package server

import (
	"context"
	"path/filepath"

	"github.com/signet-id/signet/server/etcdserver"
)

// embeddedMember is the embedded etcd member's name.
const embeddedMember = "signet"

// EtcdDir is the embedded etcd member's directory inside a server data
// directory.
func EtcdDir(dataDir string) string { return filepath.Join(dataDir, "etcd") }

// SaveSnapshot writes a snapshot of the embedded etcd of the server
// running on dataDir to path (0600; an existing path is refused). The CA
// key (dataDir/ca) and the trust domain record are files beside it, not
// in etcd: a backup copies them too (docs/operations.md).
func SaveSnapshot(ctx context.Context, dataDir, path string) (etcdserver.SnapshotInfo, error) {
	return etcdserver.SaveSnapshot(ctx, EtcdDir(dataDir), path)
}

// RestoreSnapshot recreates the embedded etcd of dataDir from a snapshot
// saved by SaveSnapshot. dataDir/etcd must not exist (no server can be
// running on it).
func RestoreSnapshot(path, dataDir string) (etcdserver.SnapshotInfo, error) {
	return etcdserver.RestoreSnapshot(path, EtcdDir(dataDir), embeddedMember)
}
