package spire

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
	"time"

	"github.com/signet-id/signet/attest/sshpop"
	"github.com/signet-id/signet/attest/sshpop/sshpoptest"
	agentapi "github.com/signet-id/signet/server/api/agent"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"golang.org/x/crypto/ssh"
)

// TestSPIREAgentSSHPOPToSignetServer: a real spire-agent v1.13.3 with its
// sshpop NodeAttestor (an ed25519 host key, a host certificate from an
// ECDSA host CA) attests to a Signet server with sshpop; the agent ID is
// SPIRE's fingerprint form, and a workload parented to the agent gets its
// SVID through the agent.
func TestSPIREAgentSSHPOPToSignetServer(t *testing.T) {
	bins := spireBinaries(t)
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := ssh.NewSignerFromKey(caKey)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	dir := shortDir(t)
	h := sshpoptest.NewHost(t, dir, ca, sshpoptest.Cert{
		Serial: 42, KeyID: "node1", Principals: []string{"node1.example.org"},
		After: now.Add(-time.Hour), Before: now.Add(2 * time.Hour),
	})
	cert, keyPath, certPath := h.Cert, h.KeyPath, h.CertPath

	att, err := sshpop.NewAttestor(sshpop.ServerConfig{
		TrustDomain:     td,
		CertAuthorities: []string{sshpoptest.AuthorizedKey(ca.PublicKey())},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := startSignet(t, signetOptions{now: time.Now, nodeAttestors: []agentapi.NodeAttestor{att}})
	agentID := spiffeid.RequireFromSegments(td, "spire", "agent", "sshpop", sshpop.Fingerprint(cert))
	me := spiffeid.RequireFromPath(td, "/workload/sshpop")
	srv.createEntry(t, &types.Entry{SpiffeId: protoID(me), ParentId: protoID(agentID), Selectors: []*types.Selector{uidSelector()}})

	socket := startSPIREAgent(t, bins.agent, srv, dir, "spire-agent-sshpop.conf.tmpl", map[string]any{"HostKeyPath": keyPath, "HostCertPath": certPath})

	a, err := srv.agentRecord(agentID)
	if err != nil {
		t.Fatalf("agent %s not recorded: %v", agentID, err)
	}
	if a.AttestationType != "sshpop" || !a.CanReattest || len(a.Selectors) != 0 {
		t.Fatalf("agent record %+v, want type sshpop, reattestable, no selectors", a)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	svid, err := workloadapi.FetchX509SVID(ctx, workloadapi.WithAddr("unix://"+socket))
	if err != nil {
		t.Fatalf("FetchX509SVID: %v", err)
	}
	if svid.ID != me {
		t.Fatalf("SVID %v, want %v (entry parented to the sshpop agent ID)", svid.ID, me)
	}
}
