package agent_test

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/clock/fakeclock"
	"github.com/signet-id/signet/server"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// These tests run a real agent against a real server, with the agent on a
// fake clock started at the wall clock's time: its renewal timer, sync
// ticker and reconnect pause move only when the test advances the clock.
// The server stays on the wall clock, so certificates are issued and TLS
// checks them on real time; every advance stays within their lifetimes.

// startFake starts the environment with the agent on a fake clock; the
// server issues agent SVIDs for agentTTL (zero: its default).
func startFake(t *testing.T, agentTTL, syncInterval time.Duration) (*env, *fakeclock.Clock) {
	t.Helper()
	clk := fakeclock.New(time.Now())
	e := startWith(t,
		func(c *server.Config) { c.AgentSVIDTTL = agentTTL },
		func(c *agent.Config) { c.Clock = clk; c.SyncInterval = syncInterval })
	return e, clk
}

// waitSessionIdle waits until the agent's session loop is waiting on the
// clock: its sync ticker and its renewal timer are both pending.
func waitSessionIdle(t *testing.T, clk *fakeclock.Clock) {
	t.Helper()
	if err := clk.WaitForTimers(testContext(t), 2); err != nil {
		t.Fatalf("the agent's session loop never waited on the clock: %v", err)
	}
}

// workloadLeaf waits for the cache to serve entryID's SVID with a leaf
// accepted by ok, and returns that leaf.
func (e *env) workloadLeaf(t *testing.T, entryID string, ok func(*x509.Certificate) bool) *x509.Certificate {
	t.Helper()
	sub := e.agent.Cache().Subscribe([]*types.Selector{uidSelector()})
	defer sub.Close()
	timeout := time.After(deliveryBound)
	for {
		select {
		case u := <-sub.Updates():
			for _, id := range u.Identities {
				if id.Entry.Id == entryID && id.SVID != nil && ok(id.SVID.Chain[0]) {
					return id.SVID.Chain[0]
				}
			}
		case <-timeout:
			t.Fatalf("no matching SVID for entry %s within %v", entryID, deliveryBound)
		}
	}
}

// TestWorkloadRenewalOnFakeClock: moving the agent's clock to the renewal
// time of a workload SVID makes the agent renew that SVID (and only that:
// no full sync, no agent SVID renewal), within real milliseconds.
func TestWorkloadRenewalOnFakeClock(t *testing.T) {
	// A long agent SVID keeps its renewal out of the way; the poll
	// interval is longer than the workload SVID's (default 1h) lifetime.
	e, clk := startFake(t, 4*time.Hour, 2*time.Hour)
	entry := e.createEntry(t, "/workload/renew")
	old := e.workloadLeaf(t, entry.Id, func(*x509.Certificate) bool { return true })
	waitSessionIdle(t, clk)
	due, ok := clk.Next()
	if !ok {
		t.Fatal("no pending timer")
	}
	mid := old.NotBefore.Add(old.NotAfter.Sub(old.NotBefore) / 2)
	if due.Before(mid) || !due.Before(old.NotAfter) {
		t.Fatalf("renewal timer at %v; want in the second half of the SVID's life (%v to %v)", due, mid, old.NotAfter)
	}
	reads := e.metric(t, "signet_agent_entry_reads_total", "")
	dueRenewals := e.metric(t, "signet_agent_due_renewals_total", "")

	clk.Advance(due.Sub(clk.Now()) - time.Second)
	waitSessionIdle(t, clk)
	if got := e.metric(t, "signet_agent_due_renewals_total", ""); got != dueRenewals {
		t.Fatalf("%v due renewals a second before the renewal time, had %v", got, dueRenewals)
	}
	realStart := time.Now()
	clk.Advance(time.Second)
	renewed := e.workloadLeaf(t, entry.Id, func(c *x509.Certificate) bool { return c.SerialNumber.Cmp(old.SerialNumber) != 0 })
	// The server is on real time: the new SVID may share the old one's
	// second, never an earlier one.
	if renewed.NotAfter.Before(old.NotAfter) {
		t.Fatalf("renewed SVID expires %v, before the old one (%v)", renewed.NotAfter, old.NotAfter)
	}
	// The cache is served before the renewal is counted.
	e.waitFor(t, "the due renewal counted", func() bool {
		return e.metric(t, "signet_agent_due_renewals_total", "") == dueRenewals+1
	})
	if got := e.metric(t, "signet_agent_entry_reads_total", ""); got != reads {
		t.Fatalf("entry reads %v, had %v: a full sync ran, not the renewal timer", got, reads)
	}
	if n := e.metric(t, "signet_agent_svid_renewals_total", ""); n != 0 {
		t.Fatalf("%v agent SVID renewals; only the workload SVID was due", n)
	}
	t.Logf("renewed %v of fake time after start in %v of real time", due.Sub(old.NotBefore), time.Since(realStart))
}

// TestAgentRenewalOnFakeClock: at the renewal time of the agent's own SVID
// the agent renews it, ends the session, pauses a second of its clock and
// connects again presenting the new SVID.
func TestAgentRenewalOnFakeClock(t *testing.T) {
	e, clk := startFake(t, 0, 2*time.Hour)
	old := e.agent.AgentSVIDLeaf()
	waitSessionIdle(t, clk)
	due, _ := clk.Next()
	if !due.Before(old.NotAfter) {
		t.Fatalf("agent renewal timer at %v, after expiry %v", due, old.NotAfter)
	}
	syncs := e.metric(t, "signet_agent_syncs_total", "")

	clk.Advance(due.Sub(clk.Now()))
	e.waitFor(t, "agent SVID renewal and session end", func() bool {
		return e.metric(t, "signet_agent_svid_renewals_total", "") == 1 &&
			e.metric(t, "signet_agent_server_reconnects_total", "") == 1
	})
	cur := e.agent.AgentSVIDLeaf()
	if cur.SerialNumber.Cmp(old.SerialNumber) == 0 {
		t.Fatal("agent SVID serial unchanged after renewal")
	}
	if id := e.agent.AgentID(); id != e.agentID {
		t.Fatalf("agent ID %v after renewal, want %v", id, e.agentID)
	}
	// The reconnect pause runs on the agent's clock too: no new session
	// until it is advanced.
	if err := clk.WaitForTimers(testContext(t), 1); err != nil {
		t.Fatal(err)
	}
	if got := e.metric(t, "signet_agent_syncs_total", ""); got != syncs {
		t.Fatalf("%v syncs before the reconnect pause ended, had %v", got, syncs)
	}
	clk.Advance(time.Second)
	e.waitFor(t, "a sync on a new session", func() bool {
		return e.metric(t, "signet_agent_syncs_total", "") > syncs
	})
	if n := e.metric(t, "signet_agent_attestations_total", ""); n != 1 {
		t.Fatalf("%v attestations: the renewed SVID should have been accepted", n)
	}
	// A routine renewal is news, not trouble: INFO, and no WARN at all;
	// each session says it connected.
	e.waitFor(t, "a \"connected to server\" record per session", func() bool {
		return strings.Count(e.logs.String(), `level=INFO msg="connected to server"`) >= 2
	})
	logs := e.logs.String()
	if !strings.Contains(logs, `level=INFO msg="agent SVID renewed; reconnecting with it"`) {
		t.Errorf("no INFO record of the renewal:\n%s", logs)
	}
	for _, line := range strings.Split(logs, "\n") {
		if (strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR")) &&
			(strings.Contains(line, "renew") || strings.Contains(line, "session")) {
			t.Errorf("a routine renewal logged %s", line)
		}
	}
}

// TestSyncPollOnFakeClock: each time the agent's clock passes the sync
// interval the agent rereads its entries, with no push.
func TestSyncPollOnFakeClock(t *testing.T) {
	const interval = 10 * time.Minute
	e, clk := startFake(t, 4*time.Hour, interval)
	for round := 1; round <= 3; round++ {
		waitSessionIdle(t, clk)
		syncs := e.metric(t, "signet_agent_syncs_total", "")
		reads := e.metric(t, "signet_agent_entry_reads_total", "")
		clk.Advance(interval)
		e.waitFor(t, "a polled sync", func() bool {
			return e.metric(t, "signet_agent_syncs_total", "") > syncs &&
				e.metric(t, "signet_agent_entry_reads_total", "") > reads
		})
	}
	if n := e.metric(t, "signet_agent_server_reconnects_total", ""); n != 0 {
		t.Fatalf("%v reconnects during polling", n)
	}
}
