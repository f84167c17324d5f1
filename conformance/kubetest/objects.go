package kubetest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// callTimeout bounds each API call the helpers make.
const callTimeout = 30 * time.Second

func callCtx(t testing.TB) (context.Context, context.CancelFunc) {
	return context.WithTimeout(t.Context(), callTimeout)
}

// CreateNamespace creates namespace name (an existing one is fine).
func (c *Cluster) CreateNamespace(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := callCtx(t)
	defer cancel()
	_, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("kubetest: create namespace %s: %v", name, err)
	}
}

// CreateServiceAccount creates service account ns/name, and ns if
// needed. There is no controller-manager: pods must name an account that
// was created this way.
func (c *Cluster) CreateServiceAccount(t testing.TB, ns, name string) *corev1.ServiceAccount {
	t.Helper()
	c.CreateNamespace(t, ns)
	ctx, cancel := callCtx(t)
	defer cancel()
	sa, err := c.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: create service account %s/%s: %v", ns, name, err)
	}
	return sa
}

// CreateNode creates a node with labels and, when ip is set, an
// InternalIP address in its status (there is no kubelet to report it).
func (c *Cluster) CreateNode(t testing.TB, name string, labels map[string]string, ip string) *corev1.Node {
	t.Helper()
	ctx, cancel := callCtx(t)
	defer cancel()
	node, err := c.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: create node %s: %v", name, err)
	}
	if ip == "" {
		return node
	}
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}
	if node, err = c.Client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("kubetest: node %s status: %v", name, err)
	}
	return node
}

// PodSpec describes a pod for CreatePod.
type PodSpec struct {
	Namespace      string
	Name           string
	ServiceAccount string
	// Node, when set, binds the pod to that node (there is no scheduler).
	Node   string
	Labels map[string]string
	// HostIP, when set, is written to the pod's status with phase Running
	// (there is no kubelet to report it).
	HostIP string
	// Containers default to one container "main" running busybox.
	Containers []corev1.Container
}

// CreatePod creates the pod described by s; its service account must
// exist.
func (c *Cluster) CreatePod(t testing.TB, s PodSpec) *corev1.Pod {
	t.Helper()
	ctx, cancel := callCtx(t)
	defer cancel()
	containers := s.Containers
	if len(containers) == 0 {
		containers = []corev1.Container{{Name: "main", Image: "busybox:1.36", Command: []string{"sleep", "3600"}}}
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace, Labels: s.Labels},
		Spec: corev1.PodSpec{
			ServiceAccountName: s.ServiceAccount,
			NodeName:           s.Node,
			Containers:         containers,
		},
	}
	pod, err := c.Client.CoreV1().Pods(s.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: create pod %s/%s: %v", s.Namespace, s.Name, err)
	}
	if s.HostIP == "" {
		return pod
	}
	pod.Status.Phase = corev1.PodRunning
	pod.Status.HostIP = s.HostIP
	pod.Status.HostIPs = []corev1.HostIP{{IP: s.HostIP}}
	if pod, err = c.Client.CoreV1().Pods(s.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("kubetest: pod %s/%s status: %v", s.Namespace, s.Name, err)
	}
	return pod
}

// DeletePod deletes a pod at once (no kubelet: no grace period).
func (c *Cluster) DeletePod(t testing.TB, pod *corev1.Pod) {
	t.Helper()
	ctx, cancel := callCtx(t)
	defer cancel()
	zero := int64(0)
	if err := c.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatalf("kubetest: delete pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
}

// PodToken requests a projected service-account token of pod's service
// account, bound to the pod, for audiences, valid for ttl (kube-apiserver
// refuses under 10 minutes).
func (c *Cluster) PodToken(t testing.TB, pod *corev1.Pod, audiences []string, ttl time.Duration) string {
	t.Helper()
	ctx, cancel := callCtx(t)
	defer cancel()
	secs := int64(ttl / time.Second)
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		Audiences:         audiences,
		ExpirationSeconds: &secs,
		BoundObjectRef: &authenticationv1.BoundObjectReference{
			APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID,
		},
	}}
	resp, err := c.Client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, pod.Spec.ServiceAccountName, req, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: token for pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
	return resp.Status.Token
}

// Agent is a pod with its namespace, service account and node, and a
// projected token bound to it: what a SPIRE agent runs as in a cluster.
type Agent struct {
	ServiceAccount *corev1.ServiceAccount
	Node           *corev1.Node
	Pod            *corev1.Pod
	Token          string
}

// AgentSpec describes NewAgent's objects. Empty names get defaults
// ("spire", "spire-agent", "spire-agent-0", "node-0"); empty Audiences is
// ["spire-server"]; NodeIP defaults to 192.0.2.10.
type AgentSpec struct {
	Namespace, ServiceAccount, Pod, Node string
	NodeLabels, PodLabels                map[string]string
	NodeIP                               string
	Audiences                            []string
}

// NewAgent creates the namespace, service account, node and a running
// pod on it, and requests a 10-minute pod-bound token.
func (c *Cluster) NewAgent(t testing.TB, s AgentSpec) Agent {
	t.Helper()
	def := func(v *string, d string) {
		if *v == "" {
			*v = d
		}
	}
	def(&s.Namespace, "spire")
	def(&s.ServiceAccount, "spire-agent")
	def(&s.Pod, "spire-agent-0")
	def(&s.Node, "node-0")
	def(&s.NodeIP, "192.0.2.10")
	if len(s.Audiences) == 0 {
		s.Audiences = []string{"spire-server"}
	}
	var a Agent
	a.ServiceAccount = c.CreateServiceAccount(t, s.Namespace, s.ServiceAccount)
	a.Node = c.CreateNode(t, s.Node, s.NodeLabels, s.NodeIP)
	a.Pod = c.CreatePod(t, PodSpec{
		Namespace: s.Namespace, Name: s.Pod, ServiceAccount: s.ServiceAccount,
		Node: s.Node, Labels: s.PodLabels, HostIP: s.NodeIP,
	})
	a.Token = c.PodToken(t, a.Pod, s.Audiences, 10*time.Minute)
	return a
}

// Claims returns a JWT's claims, unverified.
func Claims(t testing.TB, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("kubetest: not a JWS compact token (%d parts)", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("kubetest: token payload: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(b, &claims); err != nil {
		t.Fatalf("kubetest: token claims: %v", err)
	}
	return claims
}

// SignToken signs claims with the cluster's service-account key, as
// kube-apiserver does (RS256, its key ID): to make tokens the API server
// would never issue, such as an expired one.
func (c *Cluster) SignToken(t testing.TB, claims map[string]any) string {
	t.Helper()
	kid, err := keyID(c.saKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: c.saKey},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), kid))
	if err != nil {
		t.Fatalf("kubetest: signer: %v", err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatalf("kubetest: claims: %v", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatalf("kubetest: sign: %v", err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		t.Fatalf("kubetest: serialize: %v", err)
	}
	return s
}
