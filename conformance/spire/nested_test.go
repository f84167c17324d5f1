package spire

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/server"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// downstreamAgent starts a real spire-server v1.13.3 of trust domain td and
// a spire-agent under it whose Workload API serves this process's uid an
// entry with downstream = true. It returns the server, the agent's socket
// and the SPIRE bundle.
func downstreamAgent(t *testing.T, bins binaries) (*spireServer, string, *x509bundle.Bundle) {
	t.Helper()
	sp := startSPIREServer(t, bins)
	tok := sp.joinToken(t)
	agentID := spiffeid.RequireFromSegments(td, "spire", "agent", "join_token", tok)
	sp.mustCLI(t, "entry", "create", "-parentID", agentID.String(), "-spiffeID", spiffeid.RequireFromPath(td, "/signet/server").String(),
		"-selector", uidSelector().Type+":"+uidSelector().Value, "-downstream")
	bundlePath := writeTemp(t, "spire.pem", sp.mustCLI(t, "bundle", "show"))
	socket := startSPIREAgentAt(t, bins.agent, sp.addr, bundlePath, td.Name(), shortDir(t), "spire-agent.conf.tmpl", map[string]any{"JoinToken": tok})
	b, err := x509bundle.Load(td, bundlePath)
	if err != nil {
		t.Fatal(err)
	}
	return sp, socket, b
}

// TestSignetUnderSPIRE nests Signet under a real spire-server v1.13.3
// (UpstreamAuthority "spire"): Signet's intermediate is signed through a
// downstream entry, its bundle roots are SPIRE's, and a workload SVID that
// Signet mints (served by a real spire-agent attested to Signet) verifies
// with go-spiffe against SPIRE's bundle alone. Then the spire-server stops
// and Signet's clock passes the CA's half-life: the rotation fails with the
// upstream named and nothing is half-rotated (the old CA stays active, no
// prepared authority).
func TestSignetUnderSPIRE(t *testing.T) {
	bins := spireBinaries(t)
	sp, socket, spireBundle := downstreamAgent(t, bins)
	host, port, _ := strings.Cut(sp.addr, ":")
	p, _ := strconv.Atoi(port)
	clk := &clock{}
	srv := startSignet(t, signetOptions{now: clk.Now, upstreamSPIRE: &server.UpstreamSPIREConfig{ServerAddress: host, ServerPort: p, WorkloadAPISocket: socket}})

	roots := srv.CA().Bundle().X509Authorities()
	if len(roots) == 0 {
		t.Fatal("Signet publishes no X.509 authorities")
	}
	for _, r := range roots {
		if !spireBundle.HasX509Authority(r) {
			t.Fatalf("Signet publishes %s, which is not a SPIRE root", r.Subject)
		}
	}
	if err := activeCA(srv).CheckSignatureFrom(spireBundle.X509Authorities()[0]); err != nil {
		t.Fatalf("Signet's active CA is not signed by SPIRE's root: %v", err)
	}

	token := srv.token(t)
	agentID := spiffeid.RequireFromSegments(td, "spire", "agent", "join_token", token)
	me := spiffeid.RequireFromPath(td, "/workload/nested")
	srv.createEntry(t, &types.Entry{SpiffeId: protoID(me), ParentId: protoID(agentID), Selectors: []*types.Selector{uidSelector()}})
	wl := startSPIREAgent(t, bins.agent, srv, shortDir(t), "spire-agent.conf.tmpl", map[string]any{"JoinToken": token})
	workloadSVID(t, wl, me, spireBundle, "the spire-agent under Signet (against SPIRE's bundle)")
	before := srv.CA().X509Slots()
	active := activeCA(srv)
	sp.stop()
	life := active.NotAfter.Sub(active.NotBefore)
	clk.Set(time.Until(active.NotBefore.Add(life * 2 / 3)))
	if _, err := srv.CA().Rotate(); err == nil || !strings.Contains(err.Error(), "NewDownstreamX509CA") {
		t.Fatalf("Rotate with the upstream down = %v, want an error naming NewDownstreamX509CA", err)
	}
	after := srv.CA().X509Slots()
	if len(after) != len(before) || !activeCA(srv).Equal(active) || preparedCA(srv) != nil {
		t.Fatalf("half-rotated: %d slots before, %d after; active changed %v; prepared %v", len(before), len(after), !activeCA(srv).Equal(active), preparedCA(srv) != nil)
	}
}

// TestSignetUnderSPIREUnreachable: with the upstream spire-server down, or
// no Workload API socket, the Signet server refuses to start and says
// which.
func TestSignetUnderSPIREUnreachable(t *testing.T) {
	bins := spireBinaries(t)
	_, socket, _ := downstreamAgent(t, bins)
	for _, tc := range []struct {
		name string
		cfg  server.UpstreamSPIREConfig
		want string
	}{
		{"upstream server down", server.UpstreamSPIREConfig{ServerAddress: "127.0.0.1", ServerPort: freePort(t), WorkloadAPISocket: socket}, "NewDownstreamX509CA"},
		{"no workload API socket", server.UpstreamSPIREConfig{ServerAddress: "127.0.0.1", ServerPort: 1, WorkloadAPISocket: filepath.Join(t.TempDir(), "none.sock")}, "workload_api_socket"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := runSignetUntilRefused(t, td, tc.cfg)
			if !strings.Contains(err.Error(), "upstream authority") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run = %v, want an error naming %q", err, tc.want)
			}
		})
	}
}
