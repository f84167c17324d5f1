package server_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/rotation/renewal"
	"github.com/signet-id/signet/server"
	"github.com/signet-id/signet/server/etcdserver"
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
	checkCALifecycle(t, s.CA(), s.CA())
}

// checkCALifecycle waits until m prepares and then activates the next
// X.509 authority, no earlier than the renewal policy's times and within a
// few seconds of them, and view (another replica's manager, or m) follows.
func checkCALifecycle(t *testing.T, m, view *ca.Manager) {
	t.Helper()
	pol := renewal.Default()
	slotOf := func(mgr *ca.Manager, st ca.Status) *ca.X509Slot {
		for _, sl := range mgr.X509Slots() {
			if sl.Status == st {
				return &sl
			}
		}
		return nil
	}
	slot := func(st ca.Status) *ca.X509Slot { return slotOf(m, st) }
	first := slot(ca.StatusActive)
	if first == nil {
		t.Fatal("no active X.509 authority")
	}
	prepareAt := pol.CAPrepareAt(first.Cert.NotBefore, first.Cert.NotAfter)
	activateAt := pol.CAActivateAt(first.Cert.NotBefore, first.Cert.NotAfter)
	const slack = 5 * time.Second // a loaded machine

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
	at := waitUntil("prepare", prepareAt.Add(slack), func() bool {
		return slot(ca.StatusPrepared) != nil && slotOf(view, ca.StatusPrepared) != nil
	})
	if at.Before(prepareAt) {
		t.Fatalf("prepared at %v, before the policy's %v", at, prepareAt)
	}
	at = waitUntil("activate", activateAt.Add(slack), func() bool {
		a, v := slot(ca.StatusActive), slotOf(view, ca.StatusActive)
		return a != nil && v != nil && !bytes.Equal(a.Cert.Raw, first.Cert.Raw) && bytes.Equal(a.Cert.Raw, v.Cert.Raw)
	})
	if at.Before(activateAt) {
		t.Fatalf("activated at %v, before the policy's %v", at, activateAt)
	}
}

// TestCALifecycleHAOnSchedulerAtPolicyTimes: two replicas on one external
// etcd share the CA; the scheduler leader alone advances it at the policy
// times, and the other replica follows.
func TestCALifecycleHAOnSchedulerAtPolicyTimes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "sgha")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	members, err := etcdserver.StartCluster(ctx, filepath.Join(dir, "etcd"), 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { members[0].Close() })
	kek := filepath.Join(dir, "kek")
	key := make([]byte, 32)
	rand.Read(key)
	if err := os.WriteFile(kek, key, 0o600); err != nil {
		t.Fatal(err)
	}
	var replicas []*testServer
	for i := range 2 {
		replicas = append(replicas, startServerWith(t, func(c *server.Config) {
			c.DataDir = filepath.Join(dir, fmt.Sprintf("r%d", i))
			c.AdminSocket = filepath.Join(dir, fmt.Sprintf("r%d.sock", i))
			c.Etcd = server.EtcdConfig{Endpoints: members[0].Endpoints(), CertFile: members[0].TLS().CertFile, KeyFile: members[0].TLS().KeyFile, CAFile: members[0].TLS().CAFile}
			c.CAKEKFile = kek
			c.CATTL = 20 * time.Second
			c.RotationInterval = time.Hour
		}))
	}
	checkCALifecycle(t, replicas[0].CA(), replicas[1].CA())
}
