package agent_test

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"
)

// TestHealthFollowsAgentSVIDExpiry: an attested agent is healthy; once
// its clock passes the agent SVID's expiry (the server, on the wall
// clock, can only issue SVIDs that are already expired on the agent's
// clock) it is not, and says why; the expiry gauge goes negative.
func TestHealthFollowsAgentSVIDExpiry(t *testing.T) {
	e, clk := startFake(t, time.Hour, time.Minute)
	if r := e.agent.HealthReason(); r != "" {
		t.Fatalf("attested agent unhealthy: %s", r)
	}
	if err := e.agent.Healthy(); err != nil {
		t.Fatalf("Healthy of an attested agent: %v", err)
	}
	// The agent's clock started before the SVID was issued on the wall
	// clock: a little over the hour is left on it.
	if v := gaugeValue(t, e, "signet_agent_svid_expiry_seconds"); v <= 0 || v > 2*3600 {
		t.Errorf("expiry gauge of a fresh SVID: %v", v)
	}
	clk.Advance(3 * time.Hour)
	if r := e.agent.HealthReason(); !strings.Contains(r, "agent SVID expired at") {
		t.Errorf("reason after expiry: %q", r)
	}
	if err := e.agent.Healthy(); err == nil || !strings.Contains(err.Error(), "agent SVID expired at") {
		t.Errorf("Healthy after expiry: %v (the health_checks ready path would still answer 200)", err)
	}
	if v := gaugeValue(t, e, "signet_agent_svid_expiry_seconds"); v >= 0 {
		t.Errorf("expiry gauge after expiry: %v, want negative", v)
	}
}

func gaugeValue(t *testing.T, e *env, name string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no single %s series", name)
	return 0
}

// TestWorkloadSVIDExpiryGauge: the soonest-expiry gauge of the cached
// workload SVIDs is absent with none cached, then counts down to the
// earliest NotAfter on the agent's clock, and is negative once that has
// passed.
func TestWorkloadSVIDExpiryGauge(t *testing.T) {
	const name = "signet_agent_workload_svid_expiry_seconds"
	// Long agent SVID and poll interval: nothing renews while the test
	// moves the clock.
	e, clk := startFake(t, 4*time.Hour, 2*time.Hour)
	if n := seriesCount(t, e, name); n != 0 {
		t.Fatalf("%d %s series with no workload SVID cached", n, name)
	}
	first := e.workloadLeaf(t, e.createEntry(t, "/workload/a").Id, func(*x509.Certificate) bool { return true })
	second := e.workloadLeaf(t, e.createEntry(t, "/workload/b").Id, func(*x509.Certificate) bool { return true })
	soonest := first.NotAfter
	if second.NotAfter.Before(soonest) {
		soonest = second.NotAfter
	}
	if got, want := gaugeValue(t, e, name), soonest.Sub(clk.Now()).Seconds(); got != want {
		t.Errorf("%s = %v, want %v (soonest NotAfter %v)", name, got, want, soonest)
	}
	// Past the renewal times: the agent renews, but the server (on the
	// wall clock) can only issue SVIDs already expired on the agent's.
	clk.Advance(soonest.Sub(clk.Now()) + time.Hour)
	if got := gaugeValue(t, e, name); got >= 0 {
		t.Errorf("%s an hour after the soonest expiry = %v, want negative", name, got)
	}
}

func seriesCount(t *testing.T, e *env, name string) int {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return len(mf.GetMetric())
		}
	}
	return 0
}
