package server_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/rotation/renewal"
	"github.com/signet-id/signet/server"
)

// TestCALifecycleRunsOnSchedulerAtPolicyTimes: with a 20s CA TTL and a
// rotation tick far longer than the test, the rotation scheduler alone
// prepares the next X.509 authority at the policy's prepare time and
// activates it at its activate time.
func TestCALifecycleRunsOnSchedulerAtPolicyTimes(t *testing.T) {
	s := startServerWith(t, func(c *server.Config) {
		c.CATTL = 20 * time.Second
		c.RotationInterval = time.Hour
	})
	pol := renewal.Default()
	slot := func(st ca.Status) *ca.X509Slot {
		for _, sl := range s.CA().X509Slots() {
			if sl.Status == st {
				return &sl
			}
		}
		return nil
	}
	first := slot(ca.StatusActive)
	if first == nil {
		t.Fatal("no active X.509 authority")
	}
	prepareAt := pol.CAPrepareAt(first.Cert.NotBefore, first.Cert.NotAfter)
	activateAt := pol.CAActivateAt(first.Cert.NotBefore, first.Cert.NotAfter)
	const slack = 3 * time.Second

	waitUntil := func(what string, deadline time.Time, cond func() bool) time.Time {
		t.Helper()
		for time.Now().Before(deadline) {
			if cond() {
				return time.Now()
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("%s: not by %v", what, deadline)
		return time.Time{}
	}
	at := waitUntil("prepare", prepareAt.Add(slack), func() bool { return slot(ca.StatusPrepared) != nil })
	if at.Before(prepareAt) {
		t.Fatalf("prepared at %v, before the policy's %v", at, prepareAt)
	}
	at = waitUntil("activate", activateAt.Add(slack), func() bool {
		a := slot(ca.StatusActive)
		return a != nil && !bytes.Equal(a.Cert.Raw, first.Cert.Raw)
	})
	if at.Before(activateAt) {
		t.Fatalf("activated at %v, before the policy's %v", at, activateAt)
	}
}
