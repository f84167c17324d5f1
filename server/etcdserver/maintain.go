package etcdserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Maintenance defaults.
const (
	DefaultMaintainInterval = time.Minute
	// DefaultWarnRatio is the DB size / quota at which a WARN is logged.
	DefaultWarnRatio = 0.8
	// DefaultDefragMinFree is the free space in the DB file (size minus
	// size in use) above which, if it is also over half the file, the
	// embedded member is defragmented.
	DefaultDefragMinFree = 64 << 20
	warnEvery            = time.Hour
	defragEvery          = 10 * time.Minute
)

// MaintainerConfig configures a Maintainer.
type MaintainerConfig struct {
	Client *clientv3.Client
	// Embedded: the client's member is ours (defragment it; recover from
	// NOSPACE by compacting, defragmenting and disarming the alarm). For
	// an external cluster those are left to its operator, and only
	// reported.
	Embedded bool
	// Quota is the backend quota assumed when the members do not report
	// one (etcd before 3.6); 0 means DefaultQuotaBackendBytes.
	Quota int64
	// CompactionRetention, if > 0, makes the Maintainer compact the MVCC
	// history older than this (revision-based, from revisions it sampled),
	// when IsLeader says so. Use it for an external cluster; the embedded
	// member auto-compacts (Config.CompactionRetention).
	CompactionRetention time.Duration
	// IsLeader gates compaction to one replica; nil means always.
	IsLeader func() bool
	// Interval between checks; 0 means DefaultMaintainInterval.
	Interval time.Duration
	// WarnRatio: 0 means DefaultWarnRatio.
	WarnRatio float64
	// DefragMinFree: 0 means DefaultDefragMinFree.
	DefragMinFree int64
	Registerer    prometheus.Registerer
	Logger        *slog.Logger
	Now           func() time.Time
}

// Maintainer keeps etcd's state bounded and observable: DB size and quota
// gauges, a WARN well before the quota, NOSPACE alarm handling, history
// compaction for external clusters, and defragmentation of the embedded
// member.
type Maintainer struct {
	cfg      MaintainerConfig
	samples  []revSample
	lastWarn time.Time
	lastDefr time.Time
	m        maintMetrics
}

type revSample struct {
	at  time.Time
	rev int64
}

type maintMetrics struct {
	size, inUse, quota, ratio, nospace prometheus.Gauge
	compactions, defrags, disarms      prometheus.Counter
	compactRev                         prometheus.Gauge
}

// Status is one check's view of the cluster (the largest member).
type Status struct {
	DBSize, DBSizeInUse, Quota int64
	Revision                   int64
	NoSpace                    bool
	Compacted, Defragmented    bool
	Disarmed                   bool
}

// NewMaintainer returns a Maintainer; its gauges are registered with
// cfg.Registerer.
func NewMaintainer(cfg MaintainerConfig) (*Maintainer, error) {
	if cfg.Client == nil {
		return nil, errors.New("etcdserver: maintainer needs a client")
	}
	if cfg.Quota <= 0 {
		cfg.Quota = DefaultQuotaBackendBytes
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultMaintainInterval
	}
	if cfg.WarnRatio <= 0 {
		cfg.WarnRatio = DefaultWarnRatio
	}
	if cfg.DefragMinFree <= 0 {
		cfg.DefragMinFree = DefaultDefragMinFree
	}
	if cfg.IsLeader == nil {
		cfg.IsLeader = func() bool { return true }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	}
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	m := maintMetrics{
		size:        g("signet_etcd_db_size_bytes", "Size of the etcd backend database file (largest member)."),
		inUse:       g("signet_etcd_db_size_in_use_bytes", "Bytes of the etcd backend database in use (largest member)."),
		quota:       g("signet_etcd_quota_bytes", "etcd backend quota: writes fail with NOSPACE beyond it."),
		ratio:       g("signet_etcd_db_quota_ratio", "etcd database size divided by the backend quota."),
		nospace:     g("signet_etcd_alarm_nospace", "1 while etcd's NOSPACE alarm is raised (every write fails)."),
		compactRev:  g("signet_etcd_compacted_revision", "Revision the maintainer last compacted etcd to."),
		compactions: c("signet_etcd_compactions_total", "History compactions done by the maintainer."),
		defrags:     c("signet_etcd_defragmentations_total", "Defragmentations of the embedded etcd member."),
		disarms:     c("signet_etcd_alarm_disarms_total", "NOSPACE alarms disarmed after recovering space."),
	}
	for _, col := range []prometheus.Collector{m.size, m.inUse, m.quota, m.ratio, m.nospace, m.compactRev, m.compactions, m.defrags, m.disarms} {
		if err := cfg.Registerer.Register(col); err != nil {
			return nil, fmt.Errorf("etcdserver: register maintainer metrics: %w", err)
		}
	}
	return &Maintainer{cfg: cfg, m: m}, nil
}

// Run checks every Interval until ctx is done.
func (m *Maintainer) Run(ctx context.Context) {
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := m.Check(ctx); err != nil && ctx.Err() == nil {
			m.cfg.Logger.Warn("etcd maintenance check failed; retrying next interval", "interval", m.cfg.Interval, "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Check runs one maintenance pass.
func (m *Maintainer) Check(ctx context.Context) (Status, error) {
	var st Status
	now := m.cfg.Now()
	eps := m.cfg.Client.Endpoints()
	var biggest string
	for _, ep := range eps {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := m.cfg.Client.Status(cctx, ep)
		cancel()
		if err != nil {
			m.cfg.Logger.Debug("etcd member status failed", "endpoint", ep, "error", err)
			continue
		}
		if resp.DbSize >= st.DBSize {
			st.DBSize, st.DBSizeInUse, biggest = resp.DbSize, resp.DbSizeInUse, ep
		}
		if resp.DbSizeQuota > st.Quota {
			st.Quota = resp.DbSizeQuota
		}
		st.Revision = max(st.Revision, resp.Header.GetRevision())
	}
	if biggest == "" {
		return st, fmt.Errorf("etcdserver: no etcd member answered a status request (%v)", eps)
	}
	if st.Quota <= 0 {
		st.Quota = m.cfg.Quota
	}
	alarms, err := m.cfg.Client.AlarmList(ctx)
	if err != nil {
		return st, fmt.Errorf("etcdserver: list etcd alarms: %w", err)
	}
	var raised []*etcdserverpb.AlarmMember
	for _, a := range alarms.Alarms {
		if a.Alarm == etcdserverpb.AlarmType_NOSPACE {
			st.NoSpace = true
			raised = append(raised, a)
		}
	}
	m.samples = append(m.samples, revSample{at: now, rev: st.Revision})
	if st.NoSpace {
		m.m.nospace.Set(1)
		m.cfg.Logger.Error("etcd NOSPACE alarm: the backend quota is exhausted and every write fails (attestation, renewals, entry changes, events)",
			"db_size_bytes", st.DBSize, "quota_bytes", st.Quota,
			"fix", m.fixHint())
		if m.cfg.Embedded {
			m.recover(ctx, &st, biggest, raised)
		}
	} else {
		m.m.nospace.Set(0)
	}
	if m.cfg.CompactionRetention > 0 && m.cfg.IsLeader() {
		if err := m.compact(ctx, &st, now); err != nil {
			m.cfg.Logger.Warn("etcd history compaction failed", "error", err)
		}
	}
	if m.cfg.Embedded && !st.Defragmented && m.shouldDefrag(st, now) {
		if err := m.defrag(ctx, &st, biggest); err != nil {
			m.cfg.Logger.Warn("etcd defragmentation failed", "error", err)
		}
	}
	ratio := float64(st.DBSize) / float64(st.Quota)
	m.m.size.Set(float64(st.DBSize))
	m.m.inUse.Set(float64(st.DBSizeInUse))
	m.m.quota.Set(float64(st.Quota))
	m.m.ratio.Set(ratio)
	if ratio >= m.cfg.WarnRatio && !st.NoSpace && (m.lastWarn.IsZero() || now.Sub(m.lastWarn) >= warnEvery) {
		m.lastWarn = now
		m.cfg.Logger.Warn("etcd database is close to its backend quota; at the quota every write fails with NOSPACE",
			"db_size_bytes", st.DBSize, "db_size_in_use_bytes", st.DBSizeInUse, "quota_bytes", st.Quota,
			"ratio", fmt.Sprintf("%.2f", ratio), "fix", m.fixHint())
	} else if ratio < m.cfg.WarnRatio {
		m.lastWarn = time.Time{}
	}
	return st, nil
}

func (m *Maintainer) fixHint() string {
	if m.cfg.Embedded {
		return "lower the event log retention (--event-log-keep-records, --event-log-keep-age) or raise --etcd-quota-bytes; the server compacts, defragments and disarms NOSPACE itself once space is free"
	}
	return "compact and defragment the external etcd cluster (etcdctl compact, etcdctl defrag), lower the event log retention, raise its --quota-backend-bytes, then etcdctl alarm disarm"
}

func (m *Maintainer) shouldDefrag(st Status, now time.Time) bool {
	free := st.DBSize - st.DBSizeInUse
	if free < m.cfg.DefragMinFree || free*2 < st.DBSize {
		return false
	}
	return m.lastDefr.IsZero() || now.Sub(m.lastDefr) >= defragEvery
}

// compact compacts to the newest sampled revision older than the
// retention, keeping that much history for watchers.
func (m *Maintainer) compact(ctx context.Context, st *Status, now time.Time) error {
	cut := -1
	for i, s := range m.samples {
		if now.Sub(s.at) >= m.cfg.CompactionRetention {
			cut = i
		}
	}
	if cut < 0 {
		return nil
	}
	rev := m.samples[cut].rev
	m.samples = m.samples[cut+1:]
	return m.compactTo(ctx, st, rev)
}

func (m *Maintainer) compactTo(ctx context.Context, st *Status, rev int64) error {
	_, err := m.cfg.Client.Compact(ctx, rev, clientv3.WithCompactPhysical())
	if err != nil && !errors.Is(err, rpctypes.ErrCompacted) {
		return fmt.Errorf("etcdserver: compact to revision %d: %w", rev, err)
	}
	if err == nil {
		st.Compacted = true
		m.m.compactions.Inc()
		m.m.compactRev.Set(float64(rev))
		m.cfg.Logger.Debug("compacted etcd history", "revision", rev)
	}
	return nil
}

func (m *Maintainer) defrag(ctx context.Context, st *Status, ep string) error {
	before := st.DBSize
	if _, err := m.cfg.Client.Defragment(ctx, ep); err != nil {
		return fmt.Errorf("etcdserver: defragment %s: %w", ep, err)
	}
	m.lastDefr = m.cfg.Now()
	m.m.defrags.Inc()
	st.Defragmented = true
	if resp, err := m.cfg.Client.Status(ctx, ep); err == nil {
		st.DBSize, st.DBSizeInUse = resp.DbSize, resp.DbSizeInUse
	}
	m.cfg.Logger.Info("defragmented the embedded etcd member", "db_size_before_bytes", before, "db_size_bytes", st.DBSize)
	return nil
}

// recover frees space on the embedded member under NOSPACE: compact all
// history (watchers relist), defragment, and disarm the alarm if the DB
// file is back under the quota.
func (m *Maintainer) recover(ctx context.Context, st *Status, ep string, raised []*etcdserverpb.AlarmMember) {
	if err := m.compactTo(ctx, st, st.Revision); err != nil {
		m.cfg.Logger.Error("NOSPACE recovery: compaction failed", "error", err)
		return
	}
	if err := m.defrag(ctx, st, ep); err != nil {
		m.cfg.Logger.Error("NOSPACE recovery: defragmentation failed", "error", err)
		return
	}
	if st.DBSize >= st.Quota {
		m.cfg.Logger.Error("NOSPACE recovery: the live data itself fills the quota; not disarming the alarm",
			"db_size_bytes", st.DBSize, "quota_bytes", st.Quota, "fix", m.fixHint())
		return
	}
	// Disarm even when still near the quota: the event-log retention
	// pass (mostly deletes) then gets to free space; etcd raises the alarm
	// again if a write would cross the quota.
	for _, a := range raised {
		if _, err := m.cfg.Client.AlarmDisarm(ctx, (*clientv3.AlarmMember)(a)); err != nil {
			m.cfg.Logger.Error("NOSPACE recovery: disarm failed", "error", err)
			return
		}
	}
	st.Disarmed, st.NoSpace = true, false
	m.m.disarms.Inc()
	m.m.nospace.Set(0)
	m.cfg.Logger.Warn("NOSPACE recovered: compacted, defragmented and disarmed the alarm", "db_size_bytes", st.DBSize, "quota_bytes", st.Quota)
}
