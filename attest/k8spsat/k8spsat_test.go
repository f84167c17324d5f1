package k8spsat

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/signet-id/signet/attest"
	"github.com/signet-id/signet/conformance/kubetest"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

func payload(t *testing.T, cluster, token string) []byte {
	t.Helper()
	b, err := json.Marshal(attestationData{Cluster: cluster, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wantStatus(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || st.Code() != code || !strings.Contains(st.Message(), msg) {
		t.Fatalf("error %v, want %v containing %q", err, code, msg)
	}
}

// selectorValues returns the k8s_psat selector values of res.
func selectorValues(t *testing.T, res attest.NodeResult) []string {
	t.Helper()
	var out []string
	for _, s := range res.Selectors {
		if s.Type != Type {
			t.Fatalf("selector type %q", s.Type)
		}
		out = append(out, s.Value)
	}
	return out
}

// forge re-signs token's claims, changed by edit, with a key of its own.
func forge(t *testing.T, token string, edit func(map[string]any)) string {
	t.Helper()
	claims := kubetest.Claims(t, token)
	if edit != nil {
		edit(claims)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// closedPort is a loopback port nothing listens on.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestAttestWithKubeAPIServer runs the server half against two real
// kube-apiservers ("alpha" and "beta"): an agent pod's token is named and
// selected exactly as SPIRE does; every attack or mistake gets its
// precise code.
func TestAttestWithKubeAPIServer(t *testing.T) {
	alpha, beta := kubetest.Start(t), kubetest.Start(t)
	a, err := NewAttestor(Config{TrustDomain: td, Clusters: map[string]ClusterConfig{
		"alpha": {
			ServiceAccountAllowList: []string{"spire:spire-agent"},
			KubeConfigFile:          alpha.KubeconfigFile,
			AllowedNodeLabelKeys:    []string{"topology.kubernetes.io/zone", "kubernetes.io/arch"},
			AllowedPodLabelKeys:     []string{"app"},
		},
		"beta": {ServiceAccountAllowList: []string{"spire:spire-agent"}, REST: beta.Config},
		"api-audience": {
			ServiceAccountAllowList: []string{"spire:spire-agent"}, REST: alpha.Config, Audience: []string{},
		},
		"down": {
			ServiceAccountAllowList: []string{"spire:spire-agent"},
			REST:                    &rest.Config{Host: "https://" + closedPort(t), TLSClientConfig: rest.TLSClientConfig{CAData: alpha.CAPEM}},
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	agent := alpha.NewAgent(t, kubetest.AgentSpec{
		NodeLabels: map[string]string{"topology.kubernetes.io/zone": "z1", "kubernetes.io/arch": "amd64", "secret": "x"},
		PodLabels:  map[string]string{"app": "spire-agent", "pod-template-hash": "abc"},
	})

	res, err := a.Attest(ctx, attest.NodeRequest{Payload: payload(t, "alpha", agent.Token)})
	if err != nil {
		t.Fatalf("attest: %v", err)
	}
	wantID := "spiffe://example.org/spire/agent/k8s_psat/alpha/" + string(agent.Node.UID)
	if res.AgentID.String() != wantID || !res.CanReattest {
		t.Fatalf("agent %v reattest %v, want %s reattestable", res.AgentID, res.CanReattest, wantID)
	}
	want := []string{
		"cluster:alpha",
		"agent_ns:spire",
		"agent_sa:spire-agent",
		"agent_pod_name:spire-agent-0",
		"agent_pod_uid:" + string(agent.Pod.UID),
		"agent_node_ip:192.0.2.10",
		"agent_node_name:node-0",
		"agent_node_uid:" + string(agent.Node.UID),
		"agent_node_label:kubernetes.io/arch:amd64",
		"agent_node_label:topology.kubernetes.io/zone:z1",
		"agent_pod_label:app:spire-agent",
	}
	if got := selectorValues(t, res); !slices.Equal(got, want) {
		t.Fatalf("selectors\n got %q\nwant %q", got, want)
	}

	// The same agent in beta: its own node, its own ID.
	betaAgent := beta.NewAgent(t, kubetest.AgentSpec{})
	res, err = a.Attest(ctx, attest.NodeRequest{Payload: payload(t, "beta", betaAgent.Token)})
	if err != nil || res.AgentID.String() != "spiffe://example.org/spire/agent/k8s_psat/beta/"+string(betaAgent.Node.UID) {
		t.Fatalf("beta: %v, %v", res.AgentID, err)
	}

	other := alpha.CreateServiceAccount(t, "spire", "other")
	otherPod := alpha.CreatePod(t, kubetest.PodSpec{Namespace: "spire", Name: "other-0", ServiceAccount: other.Name, Node: "node-0", HostIP: "192.0.2.10"})
	gone := alpha.CreatePod(t, kubetest.PodSpec{Namespace: "spire", Name: "gone-0", ServiceAccount: "spire-agent", Node: "node-0"})
	goneToken := alpha.PodToken(t, gone, []string{"spire-server"}, 10*time.Minute)
	alpha.DeletePod(t, gone)
	unscheduled := alpha.CreatePod(t, kubetest.PodSpec{Namespace: "spire", Name: "pending-0", ServiceAccount: "spire-agent"})
	noNode := alpha.CreatePod(t, kubetest.PodSpec{Namespace: "spire", Name: "lost-0", ServiceAccount: "spire-agent", Node: "no-such-node"})
	past := time.Now().Add(-time.Hour).Unix()
	expired := kubetest.Claims(t, agent.Token)
	expired["iat"], expired["nbf"], expired["exp"] = past-600, past-600, past
	unbound := tokenRequest(t, alpha, "spire", "spire-agent", nil)

	tests := []struct {
		name, cluster, token string
		code                 codes.Code
		msg                  string
	}{
		{"wrong audience", "alpha", alpha.PodToken(t, agent.Pod, []string{"other"}, 10*time.Minute), codes.PermissionDenied,
			`token not authenticated according to TokenReview API: [invalid bearer token, token audiences ["other"] is invalid for the target audiences ["spire-server"]]`},
		{"token of another cluster", "alpha", betaAgent.Token, codes.PermissionDenied, "token not authenticated according to TokenReview API: [invalid bearer token"},
		{"token of alpha claimed for beta", "beta", agent.Token, codes.PermissionDenied, "token not authenticated according to TokenReview API"},
		{"forged signature", "alpha", forge(t, agent.Token, nil), codes.PermissionDenied, "token not authenticated according to TokenReview API"},
		{"expired, signed by the cluster's key", "alpha", alpha.SignToken(t, expired), codes.PermissionDenied, "token not authenticated according to TokenReview API: [invalid bearer token, service account token has expired]"},
		{"not a JWT", "alpha", "not-a-token", codes.PermissionDenied, "token not authenticated according to TokenReview API"},
		{"pod deleted", "alpha", goneToken, codes.PermissionDenied, "token not authenticated according to TokenReview API"},
		{"service account not allowed", "alpha", alpha.PodToken(t, otherPod, []string{"spire-server"}, 10*time.Minute), codes.PermissionDenied, `"spire:other" is not an allowed service account`},
		{"token not bound to a pod", "alpha", unbound, codes.PermissionDenied, "token is not bound to a pod: pod name: missing authentication.kubernetes.io/pod-name"},
		{"pod not on a node", "alpha", alpha.PodToken(t, unscheduled, []string{"spire-server"}, 10*time.Minute), codes.FailedPrecondition, "pod spire/pending-0 is not scheduled to a node"},
		{"node missing", "alpha", alpha.PodToken(t, noNode, []string{"spire-server"}, 10*time.Minute), codes.FailedPrecondition, `fail to get node from k8s API server: nodes "no-such-node" not found`},
		{"spire-server token where the API audience is asked", "api-audience", agent.Token, codes.PermissionDenied, "token not authenticated according to TokenReview API"},
		{"unknown cluster", "gamma", agent.Token, codes.PermissionDenied, `not configured for cluster "gamma"`},
		{"API server down", "down", agent.Token, codes.Unavailable, "unable to query token review API"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := a.Attest(ctx, attest.NodeRequest{Payload: payload(t, tt.cluster, tt.token)})
			if !res.AgentID.IsZero() {
				t.Fatalf("attested as %v", res.AgentID)
			}
			wantStatus(t, err, tt.code, tt.msg)
		})
	}

	// audience = []: the API server's own audience is asked for.
	apiToken := alpha.PodToken(t, agent.Pod, []string{kubetest.APIAudience}, 10*time.Minute)
	if _, err := a.Attest(ctx, attest.NodeRequest{Payload: payload(t, "api-audience", apiToken)}); err != nil {
		t.Fatalf("token for the API audience: %v", err)
	}
}

// tokenRequest is a token of ns/sa bound to nothing (or to ref).
func tokenRequest(t *testing.T, c *kubetest.Cluster, ns, sa string, ref *authenticationv1.BoundObjectReference) string {
	t.Helper()
	secs := int64(600)
	resp, err := c.Client.CoreV1().ServiceAccounts(ns).CreateToken(t.Context(), sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"spire-server"}, ExpirationSeconds: &secs, BoundObjectRef: ref},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Status.Token
}

// TestAttestMalformedPayload: payloads that do not parse are refused
// before any API call (the cluster's API server is unreachable).
func TestAttestMalformedPayload(t *testing.T) {
	a, err := NewAttestor(Config{TrustDomain: td, Clusters: map[string]ClusterConfig{
		"c": {ServiceAccountAllowList: []string{"ns:sa"}, REST: &rest.Config{Host: "https://" + closedPort(t)}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		payload []byte
		msg     string
	}{
		{"empty", nil, "missing attestation payload"},
		{"not JSON", []byte("{"), "failed to unmarshal data payload"},
		{"array", []byte(`["c","t"]`), "failed to unmarshal data payload"},
		{"token a number", []byte(`{"cluster":"c","token":1}`), "failed to unmarshal data payload"},
		{"no cluster", []byte(`{"token":"t"}`), "missing cluster in attestation data"},
		{"no token", []byte(`{"cluster":"c"}`), "missing token in attestation data"},
		{"oversized", []byte(`{"cluster":"c","token":"` + strings.Repeat("a", MaxPayload) + `"}`), "over the limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.Attest(t.Context(), attest.NodeRequest{Payload: tt.payload})
			wantStatus(t, err, codes.InvalidArgument, tt.msg)
		})
	}
	if err := a.CheckPayload(make([]byte, MaxPayload+1)); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("CheckPayload: %v", err)
	}
}

func TestNewAttestorRefuses(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		msg  string
	}{
		{"no trust domain", Config{}, "trust domain is required"},
		{"empty allow list", Config{TrustDomain: td, Clusters: map[string]ClusterConfig{"c": {}}}, `cluster "c" configuration must have at least one service account allowed`},
		{"cluster name not a path segment", Config{TrustDomain: td, Clusters: map[string]ClusterConfig{"a/b": {ServiceAccountAllowList: []string{"ns:sa"}}}}, `cluster name "a/b" is not a valid SPIFFE ID path segment`},
		{"missing kubeconfig", Config{TrustDomain: td, Clusters: map[string]ClusterConfig{"c": {ServiceAccountAllowList: []string{"ns:sa"}, KubeConfigFile: "/nonexistent/kubeconfig"}}}, "kube_config_file /nonexistent/kubeconfig"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewAttestor(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err %v, want %q", err, tt.msg)
			}
		})
	}
	// In-cluster configuration is looked up at attestation time, as SPIRE.
	a, err := NewAttestor(Config{TrustDomain: td, Clusters: map[string]ClusterConfig{"c": {ServiceAccountAllowList: []string{"ns:sa"}}}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.Attest(context.Background(), attest.NodeRequest{Payload: []byte(`{"cluster":"c","token":"t"}`)})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("in-cluster config outside a cluster: %v", err)
	}
}

func TestServiceAccountNames(t *testing.T) {
	tests := []struct {
		user, ns, name string
		ok             bool
	}{
		{"system:serviceaccount:spire:spire-agent", "spire", "spire-agent", true},
		{"system:serviceaccount:spire:", "", "", false},
		{"system:serviceaccount::agent", "", "", false},
		{"system:serviceaccount:a:b:c", "", "", false},
		{"system:node:node-0", "", "", false},
		{"a:b:spire:spire-agent", "", "", false},
		{"", "", "", false},
	}
	for _, tt := range tests {
		ns, name, ok := serviceAccountNames(tt.user)
		if ns != tt.ns || name != tt.name || ok != tt.ok {
			t.Errorf("%q: %q %q %v", tt.user, ns, name, ok)
		}
	}
}
