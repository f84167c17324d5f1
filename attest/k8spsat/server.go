package k8spsat

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/signet-id/signet/attest"
	"github.com/signet-id/signet/spireid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// DefaultAudience is the audience tokens must carry when a cluster names
// none (SPIRE's default).
var DefaultAudience = []string{"spire-server"}

// APITimeout bounds the Kubernetes API calls of one attestation.
const APITimeout = 30 * time.Second

// ClusterConfig is one cluster's configuration (SPIRE's names in
// ServerPluginData).
type ClusterConfig struct {
	// ServiceAccountAllowList names the agents' service accounts as
	// "namespace:name" (at least one).
	ServiceAccountAllowList []string
	// Audience is the audiences the TokenReview asks for: nil means
	// DefaultAudience, empty the API server's own audiences.
	Audience []string
	// KubeConfigFile is read at each attestation for the cluster's API
	// server and credentials; empty means the in-cluster configuration.
	KubeConfigFile string
	// AllowedNodeLabelKeys and AllowedPodLabelKeys are the node and pod
	// labels that become selectors.
	AllowedNodeLabelKeys []string
	AllowedPodLabelKeys  []string
	// REST, when set, is used instead of KubeConfigFile.
	REST *rest.Config
}

// Config configures the server half.
type Config struct {
	// TrustDomain is the server's trust domain.
	TrustDomain spiffeid.TrustDomain
	// Clusters are the clusters agents may attest from, by name.
	Clusters map[string]ClusterConfig
	// Logger receives one line per attestation outcome; nil discards.
	Logger *slog.Logger
}

// ConfigFromPluginData reads d into a Config for td.
func ConfigFromPluginData(td spiffeid.TrustDomain, d ServerPluginData) (Config, error) {
	clusters, err := clustersFromValue(d.Clusters)
	if err != nil {
		return Config{}, err
	}
	return Config{TrustDomain: td, Clusters: clusters}, nil
}

// cluster is one configured cluster, ready to attest.
type cluster struct {
	name            string
	serviceAccounts map[string]bool
	audience        []string
	client          func() (kubernetes.Interface, error)
	nodeLabels      map[string]bool
	podLabels       map[string]bool
}

// Attestor is the server half. Its errors are gRPC statuses with SPIRE's
// messages where SPIRE has one; the codes are InvalidArgument for a
// malformed payload, PermissionDenied for a token, cluster or service
// account that is not trusted, FailedPrecondition when the cluster's
// objects or the server's credentials do not allow attestation, and
// Unavailable when the API server cannot be reached (SPIRE answers
// Internal for most of these).
type Attestor struct {
	td       spiffeid.TrustDomain
	clusters map[string]*cluster
	log      *slog.Logger
}

// NewAttestor checks cfg and returns the server half.
func NewAttestor(cfg Config) (*Attestor, error) {
	if cfg.TrustDomain.IsZero() {
		return nil, errors.New("k8spsat: trust domain is required")
	}
	a := &Attestor{td: cfg.TrustDomain, clusters: map[string]*cluster{}, log: cfg.Logger}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if len(cfg.Clusters) == 0 {
		a.log.Warn("k8spsat: no clusters configured, k8s_psat attestation is effectively disabled")
	}
	for name, cc := range cfg.Clusters {
		if _, err := spireid.AgentID(a.td, Type, name, "node"); err != nil {
			return nil, fmt.Errorf("k8spsat: cluster name %q is not a valid SPIFFE ID path segment: %w", name, err)
		}
		if len(cc.ServiceAccountAllowList) == 0 {
			return nil, fmt.Errorf("k8spsat: cluster %q configuration must have at least one service account allowed", name)
		}
		c := &cluster{
			name:            name,
			serviceAccounts: set(cc.ServiceAccountAllowList),
			audience:        cc.Audience,
			nodeLabels:      set(cc.AllowedNodeLabelKeys),
			podLabels:       set(cc.AllowedPodLabelKeys),
		}
		if c.audience == nil {
			c.audience = DefaultAudience
		}
		var err error
		if c.client, err = clientFunc(cc); err != nil {
			return nil, fmt.Errorf("k8spsat: cluster %q: %w", name, err)
		}
		a.clusters[name] = c
	}
	return a, nil
}

// clientFunc returns how the cluster's clientset is obtained: built once
// from a REST config, or from the kubeconfig (or in-cluster config) at
// each attestation, as SPIRE does, so that rotated credentials are used.
func clientFunc(cc ClusterConfig) (func() (kubernetes.Interface, error), error) {
	if cc.REST != nil {
		cs, err := kubernetes.NewForConfig(cc.REST)
		if err != nil {
			return nil, fmt.Errorf("unable to create clientset: %w", err)
		}
		return func() (kubernetes.Interface, error) { return cs, nil }, nil
	}
	load := func() (kubernetes.Interface, error) {
		var rc *rest.Config
		var err error
		if cc.KubeConfigFile == "" {
			rc, err = rest.InClusterConfig()
		} else {
			rc, err = clientcmd.BuildConfigFromFlags("", cc.KubeConfigFile)
		}
		if err != nil {
			return nil, fmt.Errorf("unable to create client config: %w", err)
		}
		return kubernetes.NewForConfig(rc)
	}
	if cc.KubeConfigFile != "" {
		// A named file must load now: a typo fails at startup.
		if _, err := load(); err != nil {
			return nil, fmt.Errorf("kube_config_file %s: %w", cc.KubeConfigFile, err)
		}
	}
	return load, nil
}

func set(keys []string) map[string]bool {
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}

// Type returns "k8s_psat".
func (a *Attestor) Type() string { return Type }

// CheckPayload bounds the payload before anything else is looked at.
func (a *Attestor) CheckPayload(payload []byte) error {
	if len(payload) > MaxPayload {
		return errorf(codes.InvalidArgument, "payload of %d bytes is over the limit of %d", len(payload), MaxPayload)
	}
	return nil
}

// Attest reviews the token with the cluster's API server and names the
// agent after its node. The agent may reattest (as SPIRE).
func (a *Attestor) Attest(ctx context.Context, req attest.NodeRequest) (attest.NodeResult, error) {
	d, err := parsePayload(req.Payload)
	if err != nil {
		return attest.NodeResult{}, err
	}
	c := a.clusters[d.Cluster]
	if c == nil {
		return attest.NodeResult{}, errorf(codes.PermissionDenied, "not configured for cluster %q", d.Cluster)
	}
	ctx, cancel := context.WithTimeout(ctx, APITimeout)
	defer cancel()
	res, err := a.attest(ctx, c, d.Token)
	if err != nil {
		a.log.Info("k8spsat: attestation refused", "cluster", c.name, "error", err)
		return attest.NodeResult{}, err
	}
	a.log.Info("k8spsat: attested", "cluster", c.name, "agent_id", res.AgentID.String())
	return res, nil
}

func (a *Attestor) attest(ctx context.Context, c *cluster, token string) (attest.NodeResult, error) {
	cs, err := c.client()
	if err != nil {
		return attest.NodeResult{}, errorf(codes.FailedPrecondition, "cluster %q: unable to get clientset: %v", c.name, err)
	}
	st, err := review(ctx, cs, token, c.audience)
	if err != nil {
		return attest.NodeResult{}, err
	}
	ns, sa, ok := serviceAccountNames(st.User.Username)
	if !ok {
		return attest.NodeResult{}, errorf(codes.PermissionDenied, "token is not a service account's: unexpected username format %q", st.User.Username)
	}
	if full := ns + ":" + sa; !c.serviceAccounts[full] {
		return attest.NodeResult{}, errorf(codes.PermissionDenied, "%q is not an allowed service account", full)
	}
	podName, err := oneExtra(st, extraPodName)
	if err != nil {
		return attest.NodeResult{}, errorf(codes.PermissionDenied, "token is not bound to a pod: pod name: %v", err)
	}
	podUID, err := oneExtra(st, extraPodUID)
	if err != nil {
		return attest.NodeResult{}, errorf(codes.PermissionDenied, "token is not bound to a pod: pod UID: %v", err)
	}
	pod, err := cs.CoreV1().Pods(ns).Get(ctx, podName, metav1.GetOptions{})
	if err != nil {
		return attest.NodeResult{}, apiError(codes.PermissionDenied, "fail to get pod from k8s API server", err)
	}
	if string(pod.UID) != podUID {
		return attest.NodeResult{}, errorf(codes.PermissionDenied, "pod %s/%s has UID %s, the token is bound to %s", ns, podName, pod.UID, podUID)
	}
	if pod.Spec.NodeName == "" {
		return attest.NodeResult{}, errorf(codes.FailedPrecondition, "pod %s/%s is not scheduled to a node", ns, podName)
	}
	node, err := cs.CoreV1().Nodes().Get(ctx, pod.Spec.NodeName, metav1.GetOptions{})
	if err != nil {
		return attest.NodeResult{}, apiError(codes.FailedPrecondition, "fail to get node from k8s API server", err)
	}
	nodeUID := string(node.UID)
	if nodeUID == "" {
		return attest.NodeResult{}, errorf(codes.Internal, "node UID is empty")
	}
	id, err := spireid.AgentID(a.td, Type, c.name, nodeUID)
	if err != nil {
		return attest.NodeResult{}, errorf(codes.Internal, "failed to create agent ID: %v", err)
	}
	values := []string{
		selectorValue("cluster", c.name),
		selectorValue("agent_ns", ns),
		selectorValue("agent_sa", sa),
		selectorValue("agent_pod_name", podName),
		selectorValue("agent_pod_uid", podUID),
		selectorValue("agent_node_ip", pod.Status.HostIP),
		selectorValue("agent_node_name", pod.Spec.NodeName),
		selectorValue("agent_node_uid", nodeUID),
	}
	values = append(values, labelValues("agent_node_label", node.Labels, c.nodeLabels)...)
	values = append(values, labelValues("agent_pod_label", pod.Labels, c.podLabels)...)
	sels := make([]*types.Selector, len(values))
	for i, v := range values {
		sels[i] = &types.Selector{Type: Type, Value: v}
	}
	return attest.NodeResult{AgentID: id, Selectors: sels, CanReattest: true}, nil
}

// review has the API server review token for audiences, and checks, as
// SPIRE does, that an audience-unaware reviewer is not trusted.
func review(ctx context.Context, cs kubernetes.Interface, token string, audiences []string) (authenticationv1.TokenReviewStatus, error) {
	resp, err := cs.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: audiences},
	}, metav1.CreateOptions{})
	if err != nil {
		return authenticationv1.TokenReviewStatus{}, apiError(codes.FailedPrecondition, "unable to query token review API", err)
	}
	st := resp.Status
	if st.Error != "" {
		return st, errorf(codes.PermissionDenied, "token not authenticated according to TokenReview API: %s", st.Error)
	}
	if !st.Authenticated {
		return st, errorf(codes.PermissionDenied, "token not authenticated according to TokenReview API")
	}
	if len(audiences) > 0 && !slices.ContainsFunc(audiences, func(a string) bool { return slices.Contains(st.Audiences, a) }) {
		return st, errorf(codes.PermissionDenied, "token review API did not validate audience: wanted one of %q but got %q", audiences, st.Audiences)
	}
	return st, nil
}

// oneExtra is the single value of the review's user extra key.
func oneExtra(st authenticationv1.TokenReviewStatus, key string) (string, error) {
	v, ok := st.User.Extra[key]
	if !ok {
		return "", fmt.Errorf("missing %s", key)
	}
	if len(v) != 1 || v[0] == "" {
		return "", fmt.Errorf("expected one non-empty %s, got %d", key, len(v))
	}
	return v[0], nil
}

// labelValues are SPIRE's label selector values, kind:key:value, for the
// allowed keys, sorted by key.
func labelValues(kind string, labels map[string]string, allowed map[string]bool) []string {
	var out []string
	for _, k := range slices.SortedFunc(maps.Keys(labels), cmp.Compare) {
		if allowed[k] {
			out = append(out, selectorValue(kind, k, labels[k]))
		}
	}
	return out
}

// apiError maps a failed API call: the object is gone (notFound: a
// token's pod is PermissionDenied, a pod's node FailedPrecondition), the
// server's credentials are refused (FailedPrecondition), or the API
// server did not answer (Unavailable).
func apiError(notFound codes.Code, what string, err error) error {
	switch {
	case apierrors.IsNotFound(err):
		return errorf(notFound, "%s: %v", what, err)
	case apierrors.IsForbidden(err), apierrors.IsUnauthorized(err):
		return errorf(codes.FailedPrecondition, "%s: the server's credentials are refused: %v", what, err)
	default:
		return errorf(codes.Unavailable, "%s: %v", what, err)
	}
}
