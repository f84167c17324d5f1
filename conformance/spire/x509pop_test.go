package spire

import (
	"context"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/attest/x509pop"
	"github.com/signet-id/signet/attest/x509pop/x509poptest"
	agentapi "github.com/signet-id/signet/server/api/agent"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// TestSPIREAgentX509popToSignetServer: a real spire-agent v1.13.3 with its
// x509pop NodeAttestor (leaf, intermediate, URI SAN) attests to a Signet
// server with x509pop; the agent ID and selectors are SPIRE's, and a
// workload gets its SVID through the agent.
func TestSPIREAgentX509popToSignetServer(t *testing.T) {
	bins := spireBinaries(t)
	now := time.Now()
	root := x509poptest.NewCA(t, "x509pop root", nil, now.Add(-time.Hour))
	inter := x509poptest.NewCA(t, "x509pop intermediate", root, now.Add(-time.Hour))
	leaf, key := inter.Issue(t, x509poptest.Leaf{
		CN: "node1.example.org", URIs: []string{"x509pop://example.org/datacenter/dc1"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(2 * time.Hour),
	})
	att, err := x509pop.NewAttestor(x509pop.Config{TrustDomain: td, Roots: []*x509.Certificate{root.Cert}})
	if err != nil {
		t.Fatal(err)
	}
	srv := startSignet(t, signetOptions{now: time.Now, nodeAttestors: []agentapi.NodeAttestor{att}})
	agentID := spiffeid.RequireFromSegments(td, "spire", "agent", "x509pop", x509pop.Fingerprint(leaf))
	me := spiffeid.RequireFromPath(td, "/workload/x509pop")
	// The workload's entry selects the agent by an x509pop selector.
	node := spiffeid.RequireFromPath(td, "/node/dc1")
	srv.createEntry(t, &types.Entry{SpiffeId: protoID(node), ParentId: protoID(spiffeid.RequireFromPath(td, "/spire/server")),
		Selectors: []*types.Selector{{Type: "x509pop", Value: "san:datacenter:dc1"}}})
	srv.createEntry(t, &types.Entry{SpiffeId: protoID(me), ParentId: protoID(node), Selectors: []*types.Selector{uidSelector()}})

	dir := shortDir(t)
	kp, cp, ip := x509poptest.WriteFiles(t, dir, key, leaf, inter.Cert)
	socket := startSPIREAgent(t, bins.agent, srv, dir, "spire-agent-x509pop.conf.tmpl", map[string]any{"KeyPath": kp, "CertPath": cp, "IntermediatesPath": ip})

	a, err := srv.agentRecord(agentID)
	if err != nil {
		t.Fatalf("agent %s not recorded: %v", agentID, err)
	}
	want := []string{
		"x509pop:subject:cn:node1.example.org",
		"x509pop:ca:fingerprint:" + x509pop.Fingerprint(inter.Cert),
		"x509pop:ca:fingerprint:" + x509pop.Fingerprint(root.Cert),
		"x509pop:serialnumber:" + x509pop.SerialNumberHex(leaf.SerialNumber),
		"x509pop:san:datacenter:dc1",
	}
	var got []string
	for _, s := range a.Selectors {
		got = append(got, s.Type+":"+s.Value)
	}
	if a.AttestationType != "x509pop" || !a.CanReattest || strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("agent record %+v\nselectors %v\nwant %v", a, got, want)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	svid, err := workloadapi.FetchX509SVID(ctx, workloadapi.WithAddr("unix://"+socket))
	if err != nil {
		t.Fatalf("FetchX509SVID: %v", err)
	}
	if svid.ID != me {
		t.Fatalf("SVID %v, want %v (entry selected by x509pop:san)", svid.ID, me)
	}
}
