package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/ca"
	cav1 "github.com/signet-id/signet/proto/signet/ca/v1"
	"github.com/signet-id/signet/rotation/taint"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	localauthorityv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/localauthority/v1"
)

// TestTaintForcesRotation runs a forced rotation end to end: several
// agents hold workload SVIDs signed by the active X.509 authority; an admin
// prepares and activates a new one and taints the old one; the server
// pushes renew-now and counts the SVIDs the old authority still signs
// until none is left. The time it took is logged.
func TestTaintForcesRotation(t *testing.T) {
	const agents, entriesPerAgent = 3, 4
	dir := shortDir(t)
	srv := startServer(t, dir)
	la := localauthorityv1.NewLocalAuthorityClient(srv.admin)
	cas := cav1.NewCAClient(srv.admin)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	state, err := la.GetX509AuthorityState(ctx, &localauthorityv1.GetX509AuthorityStateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	old := state.Active.AuthorityId

	var sockets, tokens []string
	var started []*testAgent
	for i := range agents {
		adir := filepath.Join(dir, fmt.Sprintf("a%d", i))
		if err := os.MkdirAll(adir, 0o700); err != nil {
			t.Fatal(err)
		}
		token := srv.token(t, 600)
		for j := range entriesPerAgent {
			srv.createEntry(t, spiffeid.RequireFromPath(td, fmt.Sprintf("/agent%d/workload%d", i, j)), agentIDFor(token), uidSelector(os.Getuid()))
		}
		ta := startAgent(t, srv, adir, token)
		started = append(started, ta)
		tokens = append(tokens, token)
		sockets = append(sockets, ta.socket)
	}

	// issuers returns, over every agent's Workload API, how many SVIDs
	// each authority signed.
	issuers := func() (map[string]int, error) {
		out := map[string]int{}
		for _, sock := range sockets {
			svids, err := workloadapi.FetchX509SVIDs(ctx, workloadapi.WithAddr("unix://"+sock))
			if err != nil {
				return nil, err
			}
			for _, s := range svids {
				out[ca.IssuerAuthorityID(s.Certificates[0])]++
			}
		}
		return out, nil
	}
	count := func(ctx context.Context) (int, error) {
		r, err := cas.CountSVIDsByAuthority(ctx, &cav1.CountSVIDsByAuthorityRequest{AuthorityId: old})
		return int(r.GetCount()), err
	}
	// The count covers the workload SVIDs, and the agents' own SVIDs when
	// the agent API reports them too.
	total, tracked := agents*entriesPerAgent, 0
	waitFor(t, time.Minute, "every workload SVID issued and tracked", func() bool {
		got, err := issuers()
		n, cerr := count(ctx)
		tracked = n
		return err == nil && cerr == nil && got[old] == total && (n == total || n == total+agents)
	})

	prep, err := la.PrepareX509Authority(ctx, &localauthorityv1.PrepareX509AuthorityRequest{})
	if err != nil {
		t.Fatal(err)
	}
	next := prep.PreparedAuthority.AuthorityId
	if _, err := la.ActivateX509Authority(ctx, &localauthorityv1.ActivateX509AuthorityRequest{AuthorityId: next}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := la.TaintX509Authority(ctx, &localauthorityv1.TaintX509AuthorityRequest{AuthorityId: old}); err != nil {
		t.Fatal(err)
	}
	res, err := taint.Wait(ctx, count, taint.Options{Start: start, Initial: tracked, Interval: 50 * time.Millisecond, Timeout: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("forced rotation: all %d SVIDs on %d agents signed by %s replaced in %s (%d polls)", res.Replaced, agents, old, res.Elapsed.Round(time.Millisecond), res.Polls)
	if res.Replaced != tracked {
		t.Fatalf("replaced %d, want the %d tracked before the taint", res.Replaced, tracked)
	}

	// What the workloads hold agrees with the server's count.
	got, err := issuers()
	if err != nil {
		t.Fatal(err)
	}
	if got[old] != 0 || got[next] != total {
		t.Fatalf("workload SVIDs by issuing authority %v, want all %d by %s", got, total, next)
	}

	if _, err := la.RevokeX509Authority(ctx, &localauthorityv1.RevokeX509AuthorityRequest{AuthorityId: old}); err != nil {
		t.Fatal(err)
	}
	for _, c := range srv.CA().Bundle().X509Authorities() {
		if ca.X509AuthorityID(c) == old {
			t.Fatal("revoked authority still in the bundle")
		}
	}

	// After the revoke, an agent restarted from its data directory must
	// still reach the server (its own SVID and the server's are new).
	started[1].stop()
	adir := filepath.Join(dir, "a1")
	a, err := agent.New(agent.Config{
		TrustDomain: td, ServerAddresses: []string{srv.AgentAddr().String()}, JoinToken: tokens[1],
		DataDir: filepath.Join(adir, "agent"), SocketPath: filepath.Join(adir, "wl2.sock"),
		TrustBundle: srv.CA().Bundle().X509Authorities(), Logger: testLogger(t), SyncInterval: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(rctx) }()
	defer func() { rcancel(); <-done }()
	srv.createEntry(t, spiffeid.RequireFromPath(td, "/after-revoke"), agentIDFor(tokens[1]), uidSelector(os.Getuid()))
	waitFor(t, 30*time.Second, "restarted agent serves a new entry's SVID", func() bool {
		svids, err := workloadapi.FetchX509SVIDs(ctx, workloadapi.WithAddr("unix://"+filepath.Join(adir, "wl2.sock")))
		return err == nil && len(svids) == entriesPerAgent+1
	})
}
