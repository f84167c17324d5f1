package cli

import (
	"time"

	"github.com/signet-id/signet/config"
	"github.com/signet-id/signet/server"
	"github.com/spf13/pflag"
)

// stateFlags are `server run`'s flags for etcd transport security and
// bounded state.
type stateFlags struct {
	etcdInsecure        bool
	quotaBytes          int64
	compactionRetention time.Duration
	keepRecords         int64
	keepAge             time.Duration
}

func (f *stateFlags) register(fl *pflag.FlagSet) {
	fl.BoolVar(&f.etcdInsecure, "etcd-insecure", false, "accept an external etcd without TLS client certificates (plaintext endpoints or no --etcd-cert): anyone who reaches it controls the trust domain")
	fl.Int64Var(&f.quotaBytes, "etcd-quota-bytes", 0, "embedded etcd backend quota in bytes; writes fail beyond it (default 2 GiB)")
	fl.DurationVar(&f.compactionRetention, "etcd-compaction-retention", 0, "MVCC history kept by compaction, negative to never compact (default 5m)")
	fl.Int64Var(&f.keepRecords, "event-log-keep-records", 0, "event-log records kept in etcd; older ones are archived to DATA_DIR/events-archive, negative for no count bound (default 20000)")
	fl.DurationVar(&f.keepAge, "event-log-keep-age", 0, "archive event-log records older than this, e.g. 720h (default: no age bound)")
}

// apply sets cfg's state settings from the etcd block's (file) and the
// flags, which override them.
func (f *stateFlags) apply(cfg *server.Config, fileInsecure bool, file config.EtcdState) {
	cfg.Etcd.Insecure = f.etcdInsecure || fileInsecure
	cfg.State = server.StateConfig{
		QuotaBackendBytes:   file.QuotaBackendBytes,
		CompactionRetention: file.CompactionRetention,
		CompactionRevisions: file.CompactionRevisions,
		SnapshotCount:       file.SnapshotCount,
		EventLogKeepRecords: f.keepRecords,
		EventLogKeepAge:     f.keepAge,
	}
	if f.quotaBytes != 0 {
		cfg.State.QuotaBackendBytes = f.quotaBytes
	}
	if f.compactionRetention != 0 {
		cfg.State.CompactionRetention = f.compactionRetention
		cfg.State.CompactionRevisions = 0
	}
}
