package spire

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/signet-id/signet/attest/k8spsat"
	"github.com/signet-id/signet/conformance/kubetest"
	agentapi "github.com/signet-id/signet/server/api/agent"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// TestSPIREAgentK8sPSATToSignetServer: a real spire-agent v1.13.3 with its
// k8s_psat NodeAttestor, reading a pod-bound token issued by a real
// kube-apiserver, attests to a Signet server with k8s_psat (the
// TokenReview goes to that kube-apiserver); the agent ID and selectors are
// SPIRE's, and a workload entry parented to a node entry that selects the
// agent by a k8s_psat selector is served.
func TestSPIREAgentK8sPSATToSignetServer(t *testing.T) {
	bins := spireBinaries(t)
	k := kubetest.Start(t)
	ag := k.NewAgent(t, kubetest.AgentSpec{NodeLabels: map[string]string{"topology.kubernetes.io/zone": "z1"}})
	att, err := k8spsat.NewAttestor(k8spsat.Config{TrustDomain: td, Clusters: map[string]k8spsat.ClusterConfig{
		"demo": {
			ServiceAccountAllowList: []string{"spire:spire-agent"},
			KubeConfigFile:          k.KubeconfigFile,
			AllowedNodeLabelKeys:    []string{"topology.kubernetes.io/zone"},
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	srv := startSignet(t, signetOptions{now: time.Now, nodeAttestors: []agentapi.NodeAttestor{att}})
	agentID := spiffeid.RequireFromSegments(td, "spire", "agent", "k8s_psat", "demo", string(ag.Node.UID))
	me := spiffeid.RequireFromPath(td, "/workload/k8spsat")
	node := spiffeid.RequireFromPath(td, "/node/z1")
	srv.createEntry(t, &types.Entry{SpiffeId: protoID(node), ParentId: protoID(spiffeid.RequireFromPath(td, "/spire/server")),
		Selectors: []*types.Selector{{Type: "k8s_psat", Value: "agent_node_label:topology.kubernetes.io/zone:z1"}}})
	srv.createEntry(t, &types.Entry{SpiffeId: protoID(me), ParentId: protoID(node), Selectors: []*types.Selector{uidSelector()}})

	dir := shortDir(t)
	tokenPath := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenPath, []byte(ag.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	socket := startSPIREAgent(t, bins.agent, srv, dir, "spire-agent-k8spsat.conf.tmpl", map[string]any{"Cluster": "demo", "TokenPath": tokenPath})

	a, err := srv.agentRecord(agentID)
	if err != nil {
		t.Fatalf("agent %s not recorded: %v", agentID, err)
	}
	want := []string{
		"k8s_psat:agent_node_ip:192.0.2.10",
		"k8s_psat:agent_node_label:topology.kubernetes.io/zone:z1",
		"k8s_psat:agent_node_name:node-0",
		"k8s_psat:agent_node_uid:" + string(ag.Node.UID),
		"k8s_psat:agent_ns:spire",
		"k8s_psat:agent_pod_name:spire-agent-0",
		"k8s_psat:agent_pod_uid:" + string(ag.Pod.UID),
		"k8s_psat:agent_sa:spire-agent",
		"k8s_psat:cluster:demo",
	}
	var got []string
	for _, s := range a.Selectors {
		got = append(got, s.Type+":"+s.Value)
	}
	slices.Sort(got)
	if a.AttestationType != "k8s_psat" || !a.CanReattest || !slices.Equal(got, want) {
		t.Fatalf("agent record %+v\nselectors %q\nwant %q", a, got, want)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	svid, err := workloadapi.FetchX509SVID(ctx, workloadapi.WithAddr("unix://"+socket))
	if err != nil {
		t.Fatalf("FetchX509SVID: %v", err)
	}
	if svid.ID != me {
		t.Fatalf("SVID %v, want %v (entry selected by k8s_psat:agent_node_label)", svid.ID, me)
	}
}
