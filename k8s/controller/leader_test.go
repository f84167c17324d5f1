package controller_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/signet-id/signet/k8s/controller"
	trustdomainv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/trustdomain/v1"
)

// TestLeaderElectionOneReplicaAtATime: of two replicas on one Lease only
// the leader reconciles; when it stops (releasing the Lease) the other
// takes over and reconciles.
func TestLeaderElectionOneReplicaAtATime(t *testing.T) {
	e := newEnv(t)
	e.k.CreateNamespace(t, "signet-system")
	type replica struct {
		rc     *runningController
		cancel context.CancelFunc
		done   chan error
	}
	start := func(id string) *replica {
		r := &replica{rc: &runningController{reg: prometheus.NewRegistry()}, done: make(chan error, 1)}
		c, err := controller.New(controller.Config{
			TrustDomain: td, ClusterName: cluster, WatchClassless: true, Resync: 200 * time.Millisecond,
			Kube: e.k.Client, Dynamic: e.dyn, Entries: e.ent, TrustDomains: trustdomainv1.NewTrustDomainClient(e.conn),
			Logger: testLogger(t).With("replica", id), Registry: r.rc.reg,
		})
		if err != nil {
			t.Fatal(err)
		}
		var ctx context.Context
		ctx, r.cancel = context.WithCancel(context.Background())
		go func() {
			r.done <- c.RunElected(ctx, controller.LeaderElection{Namespace: "signet-system", Identity: id,
				LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: 500 * time.Millisecond})
		}()
		t.Cleanup(func() { r.cancel(); <-r.done })
		return r
	}
	a := start("a")
	eventually(t, "replica a reconciling", func() bool { return a.rc.passes(t, "ok") > 0 })
	b := start("b")
	passes := a.rc.passes(t, "ok")
	eventually(t, "a few more passes of a", func() bool { return a.rc.passes(t, "ok") >= passes+5 })
	if n := b.rc.passes(t, "ok") + b.rc.passes(t, "error"); n != 0 {
		t.Fatalf("the follower reconciled %d times", n)
	}
	a.cancel()
	if err := <-a.done; err != nil {
		t.Fatalf("replica a: %v", err)
	}
	a.done <- nil // for the cleanup
	eventually(t, "replica b taking over", func() bool { return b.rc.passes(t, "ok") > 0 })
}
