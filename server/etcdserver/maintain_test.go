package etcdserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestMaintainerRecoversFromNoSpace fills a member with a small quota
// until etcd raises NOSPACE, frees the data, and checks that one pass
// reports the alarm, compacts, defragments and disarms it, after which
// writes work again.
func TestMaintainerRecoversFromNoSpace(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Start(ctx, Config{Dir: t.TempDir(), QuotaBackendBytes: 8 << 20, CompactionRetention: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cli := s.Client()
	reg := prometheus.NewRegistry()
	var logs bytes.Buffer
	m, err := NewMaintainer(MaintainerConfig{Client: cli, Embedded: true, DefragMinFree: 64 << 20, Registerer: reg,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	val := strings.Repeat("x", 64<<10)
	var full, sawHigh bool
	warnedAt := -1.0
	for i := range 400 {
		if _, err := cli.Put(ctx, fmt.Sprintf("/big/%d", i), val); err != nil {
			if !errors.Is(err, rpctypes.ErrNoSpace) {
				t.Fatal(err)
			}
			full = true
			break
		}
		st, err := m.Check(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if float64(st.DBSize)/float64(st.Quota) >= DefaultWarnRatio {
			sawHigh = true
		}
		if warnedAt < 0 && strings.Contains(logs.String(), "close to its backend quota") {
			warnedAt = float64(st.DBSize) / float64(st.Quota)
		}
	}
	if !full {
		t.Fatal("8 MiB quota never reached")
	}
	// The WARN must come while writes still succeed (the loop stops at the
	// first NOSPACE, and Check runs only after a successful Put) and not
	// below the warn ratio. The size seen can jump past 100% between two
	// checks (etcd commits its backend in batches, every 100 ms), so the
	// ratio at the WARN is not bounded above.
	if sawHigh && warnedAt < DefaultWarnRatio {
		t.Fatalf("no WARN at or above %.0f%% of the quota before NOSPACE (warned at %.2f):\n%s", 100*DefaultWarnRatio, warnedAt, logs.String())
	}
	t.Logf("WARN at %.0f%% of the quota", 100*warnedAt)
	if _, err := cli.Delete(ctx, "/big/", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	m.cfg.DefragMinFree = 1 << 20
	st, err := m.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("status after recovery: %+v", st)
	if !st.Compacted || !st.Defragmented || !st.Disarmed || st.Quota != 8<<20 {
		t.Fatalf("recovery not done: %+v", st)
	}
	if _, err := cli.Put(ctx, "/after", "ok"); err != nil {
		t.Fatalf("write after recovery: %v", err)
	}
	for name, want := range map[string]float64{"signet_etcd_alarm_disarms_total": 1, "signet_etcd_alarm_nospace": 0, "signet_etcd_quota_bytes": 8 << 20} {
		if got := metricValue(t, reg, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

// TestMaintainerCompactsKeepingTheRetention checks the revision-based
// compaction used for external clusters: history newer than the
// retention survives, older history is compacted, and only when leader.
func TestMaintainerCompactsKeepingTheRetention(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Start(ctx, Config{Dir: t.TempDir(), CompactionRetention: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cli := s.Client()
	now := time.Unix(1_000_000, 0)
	leader := false
	m, err := NewMaintainer(MaintainerConfig{Client: cli, CompactionRetention: time.Hour,
		IsLeader: func() bool { return leader }, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	put := func() int64 {
		resp, err := cli.Put(ctx, "/k", now.String())
		if err != nil {
			t.Fatal(err)
		}
		return resp.Header.Revision
	}
	r1 := put()
	if _, err := m.Check(ctx); err != nil { // samples r1
		t.Fatal(err)
	}
	r2 := put()
	now = now.Add(2 * time.Hour)
	if st, _ := m.Check(ctx); st.Compacted {
		t.Fatal("compacted while not leader")
	}
	leader = true
	now = now.Add(time.Minute)
	st, err := m.Check(ctx)
	if err != nil || !st.Compacted {
		t.Fatalf("not compacted: %+v %v", st, err)
	}
	if _, err := cli.Get(ctx, "/k", clientv3.WithRev(r1-1)); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Errorf("revision %d still readable: %v", r1-1, err)
	}
	if _, err := cli.Get(ctx, "/k", clientv3.WithRev(r2)); err != nil {
		t.Errorf("revision %d inside the retention: %v", r2, err)
	}
}

func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			m := mf.GetMetric()[0]
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}
