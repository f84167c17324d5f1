package spire

import (
	"context"
	"crypto/x509"
	"testing"
	"time"

	"github.com/signet-id/signet/attest/tpmdevid"
	"github.com/signet-id/signet/attest/tpmdevid/tpmdevidtest"
	"github.com/signet-id/signet/attest/x509pop/x509poptest"
	agentapi "github.com/signet-id/signet/server/api/agent"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// TestSPIREAgentTPMDevIDToSignetServer: a real spire-agent v1.13.3 with
// its tpm_devid NodeAttestor, its tpm_device_path naming a swtpm Unix
// socket (go-tpm opens a socket as a TPM simulator), attests to a Signet
// server with tpm_devid: DevID chain and EK certificate from test CAs,
// credential activation in the real TPM; SPIRE's agent ID and selectors
// are recorded and a workload parented to the agent gets its SVID.
func TestSPIREAgentTPMDevIDToSignetServer(t *testing.T) {
	bins := spireBinaries(t)
	now := time.Now()
	root := x509poptest.NewCA(t, "devid-root", nil, now.Add(-time.Hour))
	inter := x509poptest.NewCA(t, "devid-intermediate", root, now.Add(-time.Hour))
	ekCA := x509poptest.NewCA(t, "tpm-manufacturer", nil, now.Add(-time.Hour))
	dir := shortDir(t)
	dev := tpmdevidtest.ProvisionAt(t, tpmdevidtest.StartSWTPMUnix(t, dir), tpmdevidtest.Options{
		EKCA: ekCA, DevIDCA: inter, Intermediates: []*x509poptest.CA{inter},
		DevID:         x509poptest.Leaf{CN: "node-1", NotBefore: now.Add(-time.Minute), NotAfter: now.Add(2 * time.Hour)},
		DevIDPassword: "devid-pass",
	})

	att, err := tpmdevid.NewAttestor(tpmdevid.Config{TrustDomain: td, DevIDRoots: []*x509.Certificate{root.Cert}, EKRoots: []*x509.Certificate{ekCA.Cert}})
	if err != nil {
		t.Fatal(err)
	}
	srv := startSignet(t, signetOptions{now: time.Now, nodeAttestors: []agentapi.NodeAttestor{att}})
	agentID := spiffeid.RequireFromSegments(td, "spire", "agent", "tpm_devid", tpmdevid.Fingerprint(dev.DevIDCert))
	me := spiffeid.RequireFromPath(td, "/workload/tpmdevid")
	srv.createEntry(t, &types.Entry{SpiffeId: protoID(me), ParentId: protoID(agentID), Selectors: []*types.Selector{uidSelector()}})

	socket := startSPIREAgent(t, bins.agent, srv, dir, "spire-agent-tpmdevid.conf.tmpl", map[string]any{
		"DevIDCertPath": dev.CertPath, "DevIDPrivPath": dev.PrivPath, "DevIDPubPath": dev.PubPath,
		"DevIDPassword": "devid-pass", "TPMDevicePath": dev.Address,
	})

	a, err := srv.agentRecord(agentID)
	if err != nil {
		t.Fatalf("agent %s not recorded: %v", agentID, err)
	}
	want := []string{"subject:cn:node-1", "issuer:cn:devid-intermediate",
		"ca:fingerprint:" + tpmdevid.Fingerprint(inter.Cert), "ca:fingerprint:" + tpmdevid.Fingerprint(root.Cert)}
	if a.AttestationType != tpmdevid.Type || !a.CanReattest || len(a.Selectors) != len(want) {
		t.Fatalf("agent record %+v, want type tpm_devid, reattestable, selectors %v", a, want)
	}
	for i, s := range a.Selectors {
		if s.Type != tpmdevid.Type || s.Value != want[i] {
			t.Fatalf("selector %d %v, want tpm_devid:%s", i, s, want[i])
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	svid, err := workloadapi.FetchX509SVID(ctx, workloadapi.WithAddr("unix://"+socket))
	if err != nil {
		t.Fatalf("FetchX509SVID: %v", err)
	}
	if svid.ID != me {
		t.Fatalf("SVID %v, want %v (entry parented to the tpm_devid agent ID)", svid.ID, me)
	}
}
