package e2e

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// TestServerScheduledRenewal checks that the server's rotation scheduler
// (not the agent's own fallback, which waits until 85% while a push stream
// is live) renews workload SVIDs, at a jittered 50-80% of their lifetime.
func TestServerScheduledRenewal(t *testing.T) {
	dir := shortDir(t)
	reg := prometheus.NewRegistry()
	srv := startServerWith(t, dir, func(o *serverOptions) { o.registry = reg })
	token := srv.token(t, 600)
	me := spiffeid.RequireFromPath(td, "/scheduled")
	e := srv.createEntry(t, me, agentIDFor(token), uidSelector(os.Getuid()))
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	// 60 s is the shortest entry TTL (entry.MinSVIDTTL).
	if resp, err := entryv1.NewEntryClient(srv.admin).BatchUpdateEntry(ctx, &entryv1.BatchUpdateEntryRequest{
		Entries: []*types.Entry{{Id: e.Id, X509SvidTtl: 60}}, InputMask: &types.EntryMask{X509SvidTtl: true},
	}); err != nil || resp.Results[0].Status.Code != 0 {
		t.Fatal(err, resp.GetResults())
	}
	ag := startAgent(t, srv, dir, token)
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+ag.socket)))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	first, _ := src.GetX509SVID()
	issued := time.Now()
	waitFor(t, 75*time.Second, "a scheduled renewal", func() bool {
		s, err := src.GetX509SVID()
		return err == nil && s.Certificates[0].SerialNumber.Cmp(first.Certificates[0].SerialNumber) != 0
	})
	t.Logf("60s SVID renewed after %v (server schedule: 50-80%% of lifetime)", time.Since(issued).Round(10*time.Millisecond))
	// The scheduler counts the item once it is completed in etcd, which
	// may be after the agent already renewed.
	waitFor(t, 20*time.Second, "the renewal to be counted as the server scheduler's", func() bool {
		return counterSum(t, reg, "signet_scheduler_dispatched_total", "kind", "svid") > 0
	})
}

func counterSum(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}
