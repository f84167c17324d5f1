package spire

import (
	"context"
	"testing"
	"time"

	"github.com/signet-id/signet/attest/awsiid"
	"github.com/signet-id/signet/attest/awsiid/awsiidtest"
	"github.com/signet-id/signet/attest/gcpiit"
	"github.com/signet-id/signet/attest/gcpiit/gcpiittest"
	agentapi "github.com/signet-id/signet/server/api/agent"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// cloudAgent runs a real spire-agent v1.13.3 with the node attestor typ
// configured by pluginData against a Signet server serving att, and
// checks the agent record (type, selectors, not reattestable) and that a
// workload parented to agentID gets its SVID.
func cloudAgent(t *testing.T, att agentapi.NodeAttestor, typ, pluginData string, agentID spiffeid.ID, selectors []string) {
	t.Helper()
	bins := spireBinaries(t)
	srv := startSignet(t, signetOptions{now: time.Now, nodeAttestors: []agentapi.NodeAttestor{att}})
	me := spiffeid.RequireFromPath(td, "/workload/"+typ)
	srv.createEntry(t, &types.Entry{SpiffeId: protoID(me), ParentId: protoID(agentID), Selectors: []*types.Selector{uidSelector()}})
	socket := startSPIREAgent(t, bins.agent, srv, shortDir(t), "spire-agent-cloud.conf.tmpl", map[string]any{"NodeAttestor": typ, "PluginData": pluginData})

	a, err := srv.agentRecord(agentID)
	if err != nil {
		t.Fatalf("agent %s not recorded: %v", agentID, err)
	}
	if a.AttestationType != typ || a.CanReattest || len(a.Selectors) != len(selectors) {
		t.Fatalf("agent record %+v, want type %s, not reattestable, selectors %v", a, typ, selectors)
	}
	for i, s := range a.Selectors {
		if s.Type != typ || s.Value != selectors[i] {
			t.Fatalf("selector %d = %v, want %s:%s", i, s, typ, selectors[i])
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	svid, err := workloadapi.FetchX509SVID(ctx, workloadapi.WithAddr("unix://"+socket))
	if err != nil {
		t.Fatalf("FetchX509SVID: %v", err)
	}
	if svid.ID != me {
		t.Fatalf("SVID %v, want %v", svid.ID, me)
	}
}

// TestSPIREAgentAWSIIDToSignetServer: spire-agent's aws_iid plugin (the
// AWS SDK's IMDSv2 client, pointed by ec2_metadata_endpoint at a loopback
// stand-in serving a document signed by a test key) attests to a Signet
// server trusting that key; the agent ID and selectors are SPIRE's.
func TestSPIREAgentAWSIIDToSignetServer(t *testing.T) {
	s2048, s1024 := awsiidtest.NewSigner(t, 2048), awsiidtest.NewSigner(t, 1024)
	imds := awsiidtest.NewIMDS(t, awsiidtest.MarshalDocument(t, awsiidtest.Document("123456789012", "us-test-1", "i-0spire")), s2048, s1024)
	cfg, err := awsiid.ConfigFromPluginData(td, awsiid.ServerPluginData{AccountIDAllowList: []string{"123456789012"},
		RSA2048Certificates: map[string]string{"us-test-1": s2048.Path}})
	if err != nil {
		t.Fatal(err)
	}
	att, err := awsiid.NewAttestor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cloudAgent(t, att, awsiid.Type, `ec2_metadata_endpoint = "`+imds.URL+`"`,
		spiffeid.RequireFromPath(td, "/spire/agent/aws_iid/123456789012/us-test-1/i-0spire"),
		[]string{"az:us-test-1a", "image:id:ami-0123456789abcdef0", "instance:id:i-0spire", "region:us-test-1"})
}

// TestSPIREAgentGCPIITToSignetServer: spire-agent's gcp_iit plugin
// (identity_token_host pointed at a loopback metadata server stand-in
// minting tokens with a test key) attests to a Signet server fetching that
// key from a loopback stand-in of Google's certs URL.
func TestSPIREAgentGCPIITToSignetServer(t *testing.T) {
	g := gcpiittest.NewGoogle(t, "key-1")
	host := gcpiittest.NewMetadata(t, g, gcpiittest.Instance("signet-test", "europe-west1-b", "node-1", "4242"), time.Now)
	att, err := gcpiit.NewAttestor(gcpiit.Config{TrustDomain: td, ProjectIDs: []string{"signet-test"}, CertsURL: g.CertsURL})
	if err != nil {
		t.Fatal(err)
	}
	cloudAgent(t, att, gcpiit.Type, `identity_token_host = "`+host+`"`,
		spiffeid.RequireFromPath(td, "/spire/agent/gcp_iit/signet-test/4242"),
		[]string{"project-id:signet-test", "zone:europe-west1-b", "instance-name:node-1"})
}
