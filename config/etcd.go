package config

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Compaction modes of the etcd block's auto_compaction_mode.
const (
	CompactionPeriodic = "periodic"
	CompactionRevision = "revision"
)

// EtcdState is the etcd block's state settings, parsed. Zero values mean
// the defaults.
type EtcdState struct {
	// QuotaBackendBytes is the backend quota in bytes.
	QuotaBackendBytes int64
	// CompactionRetention is the periodic retention; negative never
	// compacts.
	CompactionRetention time.Duration
	// CompactionRevisions is the revision mode's retention.
	CompactionRevisions int64
	// SnapshotCount is the raft snapshot interval.
	SnapshotCount uint64
}

// State parses the block's state settings (checked by LoadServer). A nil
// block has the defaults.
func (e *Etcd) State() (EtcdState, error) {
	var st EtcdState
	if e == nil {
		return st, nil
	}
	var err error
	if st.QuotaBackendBytes, err = ParseSize(e.QuotaBackendBytes); err != nil {
		return st, fmt.Errorf("etcd: quota_backend_bytes: %w", err)
	}
	switch e.AutoCompactionMode {
	case "", CompactionPeriodic:
		if e.AutoCompactionRetention == "0" {
			st.CompactionRetention = -1
			break
		}
		d, err := Duration(e.AutoCompactionRetention)
		if err != nil {
			return st, fmt.Errorf("etcd: auto_compaction_retention: %w (periodic mode takes a duration; \"0\" never compacts)", err)
		}
		if d == 0 && e.AutoCompactionRetention != "" {
			d = -1
		}
		st.CompactionRetention = d
	case CompactionRevision:
		if len(e.Endpoints) > 0 {
			return st, errors.New("etcd: auto_compaction_mode \"revision\" is for the embedded member: with endpoints the scheduler leader compacts by time (periodic)")
		}
		n, err := strconv.ParseInt(e.AutoCompactionRetention, 10, 64)
		if err != nil || n < 1 {
			return st, fmt.Errorf("etcd: auto_compaction_retention %q: revision mode takes a count of revisions to keep, e.g. \"10000\"", e.AutoCompactionRetention)
		}
		st.CompactionRevisions = n
	default:
		return st, fmt.Errorf("etcd: auto_compaction_mode %q: use periodic or revision", e.AutoCompactionMode)
	}
	if e.SnapshotCount < 0 {
		return st, fmt.Errorf("etcd: snapshot_count %d must not be negative", e.SnapshotCount)
	}
	if e.SnapshotCount > 0 && len(e.Endpoints) > 0 {
		return st, errors.New("etcd: snapshot_count is for the embedded member: with endpoints set it on the cluster's members (--snapshot-count)")
	}
	st.SnapshotCount = uint64(e.SnapshotCount)
	return st, nil
}

func (e *Etcd) check() error {
	if e == nil {
		return nil
	}
	if len(e.Endpoints) == 0 && (e.CertFile != "" || e.KeyFile != "" || e.CAFile != "" || e.Insecure) {
		return errors.New("etcd: cert_file, key_file, ca_file and insecure are for an external cluster: set endpoints, or remove them to use the embedded member")
	}
	_, err := e.State()
	return err
}
