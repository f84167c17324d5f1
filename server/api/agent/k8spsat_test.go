package agent_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/signet-id/signet/attest/k8spsat"
	"github.com/signet-id/signet/conformance/kubetest"
	"github.com/signet-id/signet/server/caller"
	"github.com/signet-id/signet/server/store"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	"google.golang.org/grpc/codes"
)

func psatPayload(t *testing.T, cluster, token string) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]string{"cluster": cluster, "token": token})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAttestAgentK8sPSAT runs k8s_psat attestation through the
// AttestAgent stream against a real kube-apiserver: the agent pod's token
// stores the agent as SPIRE names and selects it; the agent re-attests
// with a fresh token into the same record; bad evidence gets its precise
// code and stores nothing; a banned node stays out.
func TestAttestAgentK8sPSAT(t *testing.T) {
	k := kubetest.Start(t)
	a, err := k8spsat.NewAttestor(k8spsat.Config{TrustDomain: td, Clusters: map[string]k8spsat.ClusterConfig{
		"prod": {ServiceAccountAllowList: []string{"spire:spire-agent"}, REST: k.Config, AllowedNodeLabelKeys: []string{"zone"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, a)
	ag := k.NewAgent(t, kubetest.AgentSpec{NodeLabels: map[string]string{"zone": "z1"}})
	noChallenge := func([]byte) []byte { t.Fatal("k8s_psat has no challenge"); return nil }

	res, err := e.attestStream(t, k8spsat.Type, psatPayload(t, "prod", ag.Token), noChallenge)
	if err != nil {
		t.Fatalf("attest: %v", err)
	}
	wantID := "spiffe://example.org/spire/agent/k8s_psat/prod/" + string(ag.Node.UID)
	if got := res.GetSvid().GetId(); got.GetPath() != spiffeid.RequireFromString(wantID).Path() || !res.Reattestable {
		t.Fatalf("SVID for %v, reattestable %v; want %s", got, res.Reattestable, wantID)
	}
	rec, err := e.store.GetAgent(testContext(t), spiffeid.RequireFromString(wantID))
	if err != nil {
		t.Fatal(err)
	}
	var sels []string
	for _, s := range rec.Selectors {
		sels = append(sels, s.Type+":"+s.Value)
	}
	slices.Sort(sels)
	want := []string{
		"k8s_psat:agent_node_ip:192.0.2.10",
		"k8s_psat:agent_node_label:zone:z1",
		"k8s_psat:agent_node_name:node-0",
		"k8s_psat:agent_node_uid:" + string(ag.Node.UID),
		"k8s_psat:agent_ns:spire",
		"k8s_psat:agent_pod_name:spire-agent-0",
		"k8s_psat:agent_pod_uid:" + string(ag.Pod.UID),
		"k8s_psat:agent_sa:spire-agent",
		"k8s_psat:cluster:prod",
	}
	if rec.AttestationType != k8spsat.Type || !rec.CanReattest || !slices.Equal(sels, want) {
		t.Fatalf("agent record %v\nselectors %q\nwant %q", rec, sels, want)
	}

	other := k.CreateServiceAccount(t, "spire", "other")
	otherPod := k.CreatePod(t, kubetest.PodSpec{Namespace: "spire", Name: "other-0", ServiceAccount: other.Name, Node: "node-0"})
	tests := []struct {
		name    string
		payload []byte
		code    codes.Code
		msg     string
	}{
		{"wrong audience", psatPayload(t, "prod", k.PodToken(t, ag.Pod, []string{"other"}, 10*time.Minute)), codes.PermissionDenied, "token not authenticated according to TokenReview API"},
		{"unknown cluster", psatPayload(t, "dev", ag.Token), codes.PermissionDenied, `not configured for cluster "dev"`},
		{"service account not allowed", psatPayload(t, "prod", k.PodToken(t, otherPod, []string{"spire-server"}, 10*time.Minute)), codes.PermissionDenied, `"spire:other" is not an allowed service account`},
		{"malformed payload", []byte(`{"cluster":"prod"`), codes.InvalidArgument, "failed to unmarshal data payload"},
		{"payload too large", make([]byte, k8spsat.MaxPayload+1), codes.InvalidArgument, "over the limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := e.attestStream(t, k8spsat.Type, tt.payload, noChallenge)
			if res.GetSvid() != nil {
				t.Fatalf("an SVID was issued (%v)", err)
			}
			wantStatus(t, err, tt.code, tt.msg)
			if n, err := e.store.CountAgents(testContext(t), store.AgentFilter{}); err != nil || n != 1 {
				t.Fatalf("%d agents stored (%v), want only the first", n, err)
			}
		})
	}

	// A fresh token of the same pod re-attests into the same record.
	again, err := e.attestStream(t, k8spsat.Type, psatPayload(t, "prod", k.PodToken(t, ag.Pod, []string{"spire-server"}, 10*time.Minute)), noChallenge)
	if err != nil {
		t.Fatalf("re-attest: %v", err)
	}
	rec2, err := e.store.GetAgent(testContext(t), spiffeid.RequireFromString(wantID))
	if err != nil {
		t.Fatal(err)
	}
	if again.GetSvid().GetId().GetPath() != rec.Id.Path || rec2.X509SvidSerialNumber == rec.X509SvidSerialNumber {
		t.Fatalf("after re-attestation: record %v (before %v)", rec2, rec)
	}
	if n, err := e.store.CountAgents(testContext(t), store.AgentFilter{}); err != nil || n != 1 {
		t.Fatalf("%d agents stored after re-attestation (%v), want 1", n, err)
	}

	// A banned node cannot come back with another token.
	admin := caller.NewContext(testContext(t), caller.Caller{Kind: caller.Admin, Local: true})
	if _, err := e.svc.BanAgent(admin, &agentv1.BanAgentRequest{Id: rec.Id}); err != nil {
		t.Fatal(err)
	}
	banned, err := e.attestStream(t, k8spsat.Type, psatPayload(t, "prod", ag.Token), noChallenge)
	if banned.GetSvid() != nil {
		t.Fatal("a banned node was issued an SVID by re-attesting")
	}
	wantStatus(t, err, codes.PermissionDenied, "agent is banned")
}
