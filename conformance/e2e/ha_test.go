package e2e

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/server"
	"github.com/signet-id/signet/server/etcdserver"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestHAReplicasShareStateAndAgentsFailOver runs three server replicas on a
// three-member etcd cluster (all on loopback). They share entries, agents
// and one CA (sealed in etcd). An agent that knows all three keeps serving,
// and keeps getting new identities, after the replica it used is killed.
func TestHAReplicasShareStateAndAgentsFailOver(t *testing.T) {
	dir := shortDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	members, err := etcdserver.StartCluster(ctx, filepath.Join(dir, "etcd"), 3)
	if err != nil {
		t.Fatal(err)
	}
	var endpoints []string
	for _, m := range members {
		endpoints = append(endpoints, m.Endpoints()...)
	}
	t.Cleanup(func() {
		for _, m := range members {
			m.Close()
		}
	})
	kek := filepath.Join(dir, "kek")
	key := make([]byte, 32)
	rand.Read(key)
	if err := os.WriteFile(kek, key, 0o600); err != nil {
		t.Fatal(err)
	}

	var replicas []*testServer
	for i := 0; i < 3; i++ {
		rdir := filepath.Join(dir, fmt.Sprintf("r%d", i))
		srv, err := server.New(server.Config{
			TrustDomain:      td,
			DataDir:          rdir,
			BindAddress:      "127.0.0.1:0",
			AdminSocket:      filepath.Join(rdir, "admin.sock"),
			Etcd:             server.EtcdConfig{Endpoints: endpoints, CertFile: members[0].TLS().CertFile, KeyFile: members[0].TLS().KeyFile, CAFile: members[0].TLS().CAFile},
			CAKEKFile:        kek,
			RotationInterval: time.Second,
			Logger:           testLogger(t).With("replica", i),
		})
		if err != nil {
			t.Fatal(err)
		}
		rctx, rcancel := context.WithCancel(context.Background())
		ts := &testServer{Server: srv, dir: rdir, cancel: rcancel, done: make(chan error, 1)}
		go func() { ts.done <- srv.Run(rctx) }()
		select {
		case <-srv.Ready():
		case err := <-ts.done:
			t.Fatalf("replica %d: %v", i, err)
		}
		ts.admin, err = grpc.NewClient("unix://"+srv.AdminSocket(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(ts.stop)
		replicas = append(replicas, ts)
	}
	for i, r := range replicas[1:] {
		if !r.CA().Bundle().Equal(replicas[0].CA().Bundle()) {
			t.Fatalf("replica %d has its own CA; replicas must share one", i+1)
		}
	}

	// Token on replica 0, entry on replica 1, agent knows all three.
	token := replicas[0].token(t, 600)
	me := spiffeid.RequireFromPath(td, "/ha")
	replicas[1].createEntry(t, me, agentIDFor(token), uidSelector(os.Getuid()))
	var addrs []string
	for _, r := range replicas {
		addrs = append(addrs, r.AgentAddr().String())
	}
	a, err := agent.New(agent.Config{
		TrustDomain:     td,
		ServerAddresses: addrs,
		JoinToken:       token,
		DataDir:         filepath.Join(dir, "agent"),
		SocketPath:      filepath.Join(dir, "wl.sock"),
		TrustBundle:     replicas[0].CA().Bundle().X509Authorities(),
		Logger:          testLogger(t).With("component", "agent"),
		SyncInterval:    2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithCancel(context.Background())
	adone := make(chan error, 1)
	go func() { adone <- a.Run(actx) }()
	t.Cleanup(func() { acancel(); <-adone })
	<-a.Ready()

	addr := workloadapi.WithAddr("unix://" + filepath.Join(dir, "wl.sock"))
	client, err := workloadapi.New(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	x, err := fetchX509(ctx, client)
	if err != nil || x.DefaultSVID().ID != me {
		t.Fatalf("first fetch: %v", err)
	}

	// Exactly one replica leads the rotation scheduler.
	leader := -1
	waitFor(t, 30*time.Second, "a scheduler leader", func() bool {
		n := 0
		for i, r := range replicas {
			if r.SchedulerLeader() {
				n, leader = n+1, i
			}
		}
		return n == 1
	})
	// Kill the scheduler leader, and the replica the agent is using (the
	// first address) if that is another one.
	killed := time.Now()
	replicas[leader].stop()
	if leader != 0 {
		replicas[0].stop()
	}
	var survivors []*testServer
	for i, r := range replicas {
		if i != leader && i != 0 {
			survivors = append(survivors, r)
		}
	}
	waitFor(t, 30*time.Second, "a new scheduler leader", func() bool {
		for _, r := range survivors {
			if r.SchedulerLeader() {
				return true
			}
		}
		return false
	})
	t.Logf("a surviving replica leads the scheduler %v after the leader was killed", time.Since(killed).Round(time.Millisecond))

	// The agent fails over: a new entry created on replica 2 reaches the
	// workload, and JWT-SVIDs (minted by a server per request) still work.
	second := spiffeid.RequireFromPath(td, "/ha/second")
	survivors[0].createEntry(t, second, agentIDFor(token), uidSelector(os.Getuid()))
	waitFor(t, 60*time.Second, "the new entry's SVID after failover", func() bool {
		x, err := client.FetchX509Context(ctx)
		return err == nil && len(x.SVIDs) == 2
	})
	t.Logf("entry created on another replica reached the workload %v after the agent's replica was killed", time.Since(killed).Round(time.Millisecond))
	if _, err := client.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "after-failover", Subject: me}); err != nil {
		t.Fatalf("JWT-SVID after failover: %v", err)
	}
	for _, r := range survivors {
		if !r.CA().Bundle().Equal(survivors[0].CA().Bundle()) {
			t.Fatal("surviving replicas disagree on the bundle")
		}
	}
}
