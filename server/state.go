package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/signet-id/signet/privdir"
	"github.com/signet-id/signet/rotation/eventlog"
	"github.com/signet-id/signet/server/etcdserver"
)

// Defaults for StateConfig.
const (
	// DefaultEventLogKeepRecords is how many event-log records stay in
	// etcd (about 850 B each) before older ones are archived to files.
	// BenchmarkStateGrowth measured this setting: 1M issuances kept the
	// database file under 80 MB.
	DefaultEventLogKeepRecords = 20_000
	// DefaultRetentionInterval is how often the retention pass runs.
	DefaultRetentionInterval = 5 * time.Minute
)

// StateConfig bounds the server's etcd state.
type StateConfig struct {
	// QuotaBackendBytes is the embedded etcd's backend quota (0: 2 GiB).
	// With an external etcd it is only the quota assumed for the
	// signet_etcd_db_quota_ratio gauge when the members do not report
	// theirs.
	QuotaBackendBytes int64
	// CompactionRetention is how much MVCC history is kept (0: 5m,
	// negative: never compact). The embedded member auto-compacts; with
	// an external etcd the scheduler leader compacts.
	CompactionRetention time.Duration
	// CompactionRevisions, when positive, compacts the embedded member by
	// revision count instead (keep the last CompactionRevisions).
	CompactionRevisions int64
	// SnapshotCount is the embedded member's raft snapshot interval in
	// committed transactions (0: etcd's 10000).
	SnapshotCount uint64
	// EventLogKeepRecords is how many event-log records stay in etcd (0:
	// DefaultEventLogKeepRecords, negative: no count bound).
	EventLogKeepRecords int64
	// EventLogKeepAge archives records older than this (0: no age bound).
	EventLogKeepAge time.Duration
	// ArchiveDir receives the archived records, one JSON-lines file per
	// pass (0600, in a 0700 directory). Default DataDir/events-archive.
	ArchiveDir string
	// RetentionInterval is how often retention runs (0: 5m).
	RetentionInterval time.Duration
	// MaintainInterval is how often etcd's size, alarms, compaction and
	// fragmentation are checked (0: 1m).
	MaintainInterval time.Duration
}

func (c StateConfig) policy() eventlog.RetentionPolicy {
	var p eventlog.RetentionPolicy
	switch {
	case c.EventLogKeepRecords == 0:
		p.KeepRecords = DefaultEventLogKeepRecords
	case c.EventLogKeepRecords > 0:
		p.KeepRecords = uint64(c.EventLogKeepRecords)
	}
	p.KeepAge = max(c.EventLogKeepAge, 0)
	// Archive in chunks of a tenth of the kept records (at least 3: more
	// than the checkpoint and anchor a pass appends itself).
	p.MinBatch = max(p.KeepRecords/10, 3)
	return p
}

// ErrInsecureEtcd refuses an external etcd without TLS client
// authentication, unless EtcdConfig.Insecure is set.
var ErrInsecureEtcd = errors.New("server: insecure external etcd")

// checkExternalEtcd refuses an external etcd that any process able to
// reach it could read and write (plaintext endpoints or no client
// certificate) unless c.Insecure, and then warns.
func (s *Server) checkExternalEtcd() error {
	c := s.cfg.Etcd
	var problems []string
	for _, ep := range c.Endpoints {
		if scheme, _, ok := strings.Cut(ep, "://"); ok && scheme != "https" && scheme != "unixs" {
			problems = append(problems, fmt.Sprintf("endpoint %s is plaintext", ep))
		}
	}
	if c.CertFile == "" || c.KeyFile == "" {
		problems = append(problems, "no client certificate (--etcd-cert/--etcd-key) is set")
	}
	if len(problems) == 0 {
		return nil
	}
	what := strings.Join(problems, "; ")
	if !c.Insecure {
		return fmt.Errorf("%w: %s: whoever reaches etcd reads and writes all server state (entries, join tokens, secret policies); "+
			"use https:// endpoints with --etcd-cert, --etcd-key and --etcd-ca (cert_file, key_file, ca_file in the etcd block) on an etcd with --client-cert-auth, "+
			"or pass --etcd-insecure (insecure = true in the etcd block) to accept the risk", ErrInsecureEtcd, what)
	}
	s.log.Warn("INSECURE external etcd accepted by --etcd-insecure: anyone who can reach it can read and write all server state and mint identities",
		"problems", what, "endpoints", c.Endpoints)
	return nil
}

// stateLoops returns the loops that keep etcd bounded: the Maintainer
// (sizes, quota, alarms, compaction, defragmentation) and the event-log
// retention pass. Both act only on the scheduler leader where that
// matters (external etcd shared by replicas).
func (s *Server) stateLoops(cp *eventlog.Checkpointer) ([]subsystem, error) {
	st := s.cfg.State
	embedded := len(s.cfg.Etcd.Endpoints) == 0
	mc := etcdserver.MaintainerConfig{
		Client:     s.etcd,
		Embedded:   embedded,
		Quota:      st.QuotaBackendBytes,
		IsLeader:   s.isLeader,
		Interval:   st.MaintainInterval,
		Registerer: s.cfg.Registry,
		Logger:     s.log.With("component", "etcd-maintainer"),
		Now:        s.cfg.Clock.Now,
	}
	if !embedded {
		mc.CompactionRetention = st.CompactionRetention
		if mc.CompactionRetention == 0 {
			mc.CompactionRetention = etcdserver.DefaultCompactionRetention
		}
	}
	m, err := etcdserver.NewMaintainer(mc)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	runs := []subsystem{loop("etcd maintainer", m.Run)}
	p := st.policy()
	if p.Validate() != nil {
		s.log.Warn("event log retention is off: the event log grows until etcd's quota (set --event-log-keep-records or --event-log-keep-age)")
		return runs, nil
	}
	r := &retainer{s: s, cp: cp, keys: eventlog.SVIDKey(serverSVIDSource{s}), policy: p, dir: st.ArchiveDir, interval: st.RetentionInterval}
	if r.dir == "" {
		r.dir = filepath.Join(s.cfg.DataDir, "events-archive")
	}
	if r.interval <= 0 {
		r.interval = DefaultRetentionInterval
	}
	r.archived = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "signet_eventlog_archived_records_total",
		Help: "Event-log records moved from etcd to archive files by the retention policy.",
	})
	r.failures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "signet_eventlog_retention_failures_total",
		Help: "Event-log retention passes that failed (records stay in etcd).",
	})
	if err := registerAll(s.cfg.Registry, r.archived, r.failures); err != nil {
		return nil, err
	}
	return append(runs, loop("event log retention", r.run)), nil
}

func registerAll(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("server: register metrics: %w", err)
		}
	}
	return nil
}

// isLeader reports whether this replica leads the scheduler (the one
// replica that compacts and archives).
func (s *Server) isLeader() bool { return s.sched != nil && s.sched.IsLeader() }

// retainer archives event-log records beyond the retention policy.
type retainer struct {
	s        *Server
	cp       *eventlog.Checkpointer
	keys     eventlog.KeySource // signs each archive file's trailer
	policy   eventlog.RetentionPolicy
	dir      string
	interval time.Duration

	archived, failures prometheus.Counter
}

func (r *retainer) run(ctx context.Context) {
	t := r.s.cfg.Clock.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		if !r.s.isLeader() {
			continue
		}
		// A bounded number of passes per tick catches up on a backlog.
		for range 10 {
			n, err := r.pass(ctx)
			if err != nil {
				if ctx.Err() == nil {
					r.failures.Inc()
					r.s.log.Warn("event log retention pass failed; records stay in etcd", "error", err)
				}
				break
			}
			if n == 0 {
				break
			}
		}
	}
}

// pass archives what the policy moves out now and returns how many
// records it archived. No record leaves etcd before a signed checkpoint
// covers it: when the cut is not at a checkpoint, one is appended first.
func (r *retainer) pass(ctx context.Context) (uint64, error) {
	l := r.s.evlog
	plan, err := l.PlanRetention(ctx, r.policy, r.s.cfg.Clock.Now())
	if err != nil || plan.Upto == 0 {
		return 0, err
	}
	if !plan.AtCheckpoint {
		if _, _, err := r.cp.Checkpoint(ctx); err != nil {
			return 0, fmt.Errorf("server: sign a checkpoint before archiving records %d..%d: %w", plan.From, plan.Upto, err)
		}
	}
	if err := privdir.EnsureDir(r.dir, 0o700); err != nil {
		return 0, fmt.Errorf("server: event archive dir: %w", err)
	}
	name := filepath.Join(r.dir, fmt.Sprintf("events-%020d-%020d.jsonl", plan.From, plan.Upto))
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return 0, fmt.Errorf("server: create event archive: %w", err)
	}
	w := &syncWriter{f: f, w: bufio.NewWriterSize(f, 256<<10)}
	rec, err := l.Archive(ctx, plan.Upto, w, eventlog.ArchiveActor("retention"), eventlog.ArchiveSigned(r.keys))
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(name)
		return 0, fmt.Errorf("server: archive event records %d..%d: %w", plan.From, plan.Upto, err)
	}
	if d, err := os.Open(r.dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	n := plan.Upto - plan.From + 1
	r.archived.Add(float64(n))
	r.s.log.Info("archived event log records per the retention policy", "from_seq", plan.From, "upto_seq", plan.Upto,
		"file", name, "anchor_seq", rec.Seq, "at_checkpoint", plan.AtCheckpoint)
	return n, nil
}

// syncWriter buffers an archive file; Sync flushes and fsyncs it (Archive
// calls Sync before it deletes anything).
type syncWriter struct {
	f *os.File
	w *bufio.Writer
}

func (s *syncWriter) Write(b []byte) (int, error) { return s.w.Write(b) }

func (s *syncWriter) Sync() error {
	if err := s.w.Flush(); err != nil {
		return err
	}
	return s.f.Sync()
}
