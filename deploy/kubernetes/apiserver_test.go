package kubernetes

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/conformance/kubetest"
	"github.com/signet-id/signet/k8s/k8sbundle"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	clientset "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// fieldManager is the server-side apply manager of these tests.
const fieldManager = "signet-deploy-test"

var apiextensionsGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// applier applies rendered objects to a cluster by server-side apply.
type applier struct {
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func newApplier(t *testing.T, c *kubetest.Cluster) *applier {
	t.Helper()
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	return &applier{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))}
}

// apply server-side applies o (a dry run unless real) with strict field
// validation, as `kubectl apply --server-side [--dry-run=server]` does.
func (a *applier) apply(ctx context.Context, o *unstructured.Unstructured, real bool) error {
	gvk := o.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return err
	}
	var ri dynamic.ResourceInterface = a.dyn.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ri = a.dyn.Resource(m.Resource).Namespace(o.GetNamespace())
	}
	body, err := json.Marshal(o.Object)
	if err != nil {
		return err
	}
	force := true
	opts := metav1.PatchOptions{FieldManager: fieldManager, Force: &force, FieldValidation: "Strict"}
	if !real {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	_, err = ri.Patch(ctx, o.GetName(), types.ApplyPatchType, body, opts)
	return err
}

// install applies the CRDs and namespaces among objs for real and waits
// for the CRDs to be Established, as a user's first apply does; it
// returns the rest.
func (a *applier) install(t *testing.T, objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	t.Helper()
	ctx := t.Context()
	var rest, crds []*unstructured.Unstructured
	for _, o := range objs {
		switch o.GetKind() {
		case "CustomResourceDefinition", "Namespace":
			if err := a.apply(ctx, o, true); err != nil {
				t.Fatalf("apply %s %s: %v", o.GetKind(), o.GetName(), err)
			}
			if o.GetKind() == "CustomResourceDefinition" {
				crds = append(crds, o)
			}
		default:
			rest = append(rest, o)
		}
	}
	crdRes := a.dyn.Resource(apiextensionsGVR)
	for _, crd := range crds {
		established := false
		for i := 0; i < 150 && !established; i++ { // up to ~30 s
			got, err := crdRes.Get(ctx, crd.GetName(), metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
			for _, c := range conds {
				c := c.(map[string]any)
				established = established || (c["type"] == "Established" && c["status"] == "True")
			}
			if !established {
				time.Sleep(200 * time.Millisecond)
			}
		}
		if !established {
			t.Fatalf("CRD %s not Established", crd.GetName())
		}
	}
	a.mapper.Reset() // the CRDs' kinds are served now
	return rest
}

// TestManifestsServerSideDryRun: every object of the base and of each
// overlay is admitted by a real kube-apiserver (server-side apply, dry
// run, strict field validation) after the CRDs and the namespace are
// installed; a deliberately broken overlay (an out-of-range projected
// token lifetime, and a misspelt field) is refused, so the check fails
// when a manifest is wrong.
func TestManifestsServerSideDryRun(t *testing.T) {
	c := kubetest.Start(t)
	a := newApplier(t, c)
	tests := []struct {
		dir string
		// reject names the objects the API server must refuse, with a
		// piece of each refusal; nil: every object is admitted.
		reject map[string]string
	}{
		{dir: "base"},
		{dir: "overlays/single"},
		{dir: "overlays/ha"},
		{dir: "testdata/invalid", reject: map[string]string{
			"DaemonSet/signet-agent":    "expirationSeconds",
			"StatefulSet/signet-server": "hostPid",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			rest := a.install(t, render(t, tt.dir))
			rejected := map[string]bool{}
			for _, o := range rest {
				id := o.GetKind() + "/" + o.GetName()
				err := a.apply(t.Context(), o, false)
				want, mustReject := tt.reject[id]
				switch {
				case err == nil && mustReject:
					t.Errorf("%s: admitted, want a refusal mentioning %q", id, want)
				case err != nil && !mustReject:
					t.Errorf("%s: refused: %v", id, err)
				case err != nil && !strings.Contains(err.Error(), want):
					t.Errorf("%s: refused for another reason: %v; want %q", id, err, want)
				case err != nil:
					rejected[id] = true
				}
			}
			for id := range tt.reject {
				if !rejected[id] {
					t.Errorf("%s was not refused (is it still rendered?)", id)
				}
			}
		})
	}
}

// TestRBACLeastPrivilege: with the rendered RBAC installed for real, the
// API server's authorizer (SubjectAccessReview) lets each service account
// do what its daemon does and refuses what it does not: the server pod
// reviews tokens, reads pods and nodes, watches the CRDs and endpoint
// slices, writes the CRDs' status and holds its own Lease in its namespace
// only; it cannot read secrets, change pods, the CRDs' specs or other
// leases, or record events (the controller records none). The agent reads its kubelet's pods and
// can do nothing else: no TokenReview, no nodes/proxy, no secrets.
func TestRBACLeastPrivilege(t *testing.T) {
	c := kubetest.Start(t)
	a := newApplier(t, c)
	rest := a.install(t, render(t, "overlays/single"))
	for _, o := range rest {
		switch o.GetKind() {
		case "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding":
			if err := a.apply(t.Context(), o, true); err != nil {
				t.Fatalf("apply %s %s: %v", o.GetKind(), o.GetName(), err)
			}
		}
	}
	const (
		server = "system:serviceaccount:signet:signet-server"
		agent  = "system:serviceaccount:signet:signet-agent"
	)
	type ra = authorizationv1.ResourceAttributes
	tests := []struct {
		user  string
		attr  ra
		allow bool
	}{
		{server, ra{Group: "authentication.k8s.io", Resource: "tokenreviews", Verb: "create"}, true},
		{server, ra{Resource: "pods", Verb: "get", Namespace: "team-a"}, true},
		{server, ra{Resource: "pods", Verb: "watch"}, true},
		{server, ra{Resource: "nodes", Verb: "get"}, true},
		{server, ra{Resource: "namespaces", Verb: "list"}, true},
		{server, ra{Group: "spire.spiffe.io", Resource: "clusterspiffeids", Verb: "watch"}, true},
		{server, ra{Group: "spire.spiffe.io", Resource: "clusterstaticentries", Subresource: "status", Verb: "update"}, true},
		{server, ra{Group: "discovery.k8s.io", Resource: "endpointslices", Verb: "list"}, true},
		{server, ra{Group: "coordination.k8s.io", Resource: "leases", Verb: "create", Namespace: "signet"}, true},
		{server, ra{Group: "coordination.k8s.io", Resource: "leases", Verb: "update", Namespace: "signet", Name: "signet-k8s-controller"}, true},
		{server, ra{Group: "coordination.k8s.io", Resource: "leases", Verb: "update", Namespace: "signet", Name: "another-lease"}, false},
		{server, ra{Group: "coordination.k8s.io", Resource: "leases", Verb: "list", Namespace: "signet"}, false},
		{server, ra{Resource: "events", Verb: "create", Namespace: "team-a"}, false},
		{server, ra{Group: "coordination.k8s.io", Resource: "leases", Verb: "create", Namespace: "kube-system"}, false},
		{server, ra{Resource: "secrets", Verb: "list"}, false},
		{server, ra{Resource: "secrets", Verb: "get", Namespace: "signet"}, false},
		{server, ra{Resource: "pods", Verb: "delete", Namespace: "team-a"}, false},
		{server, ra{Resource: "pods", Verb: "create", Namespace: "signet"}, false},
		{server, ra{Resource: "serviceaccounts", Subresource: "token", Verb: "create", Namespace: "signet"}, false},
		{server, ra{Group: "spire.spiffe.io", Resource: "clusterspiffeids", Verb: "update"}, false},
		{server, ra{Group: "spire.spiffe.io", Resource: "clusterspiffeids", Verb: "delete"}, false},
		{server, ra{Resource: "nodes", Subresource: "proxy", Verb: "get"}, false},
		{server, ra{Group: "rbac.authorization.k8s.io", Resource: "clusterrolebindings", Verb: "create"}, false},
		{server, ra{Resource: "configmaps", Verb: "get", Namespace: "signet", Name: "signet-bundle"}, true},
		{server, ra{Resource: "configmaps", Verb: "update", Namespace: "signet", Name: "signet-bundle"}, true},
		{server, ra{Resource: "configmaps", Verb: "patch", Namespace: "signet", Name: "signet-bundle"}, true},
		{server, ra{Resource: "configmaps", Verb: "create", Namespace: "signet"}, true},
		{server, ra{Resource: "configmaps", Verb: "update", Namespace: "signet", Name: "signet-server"}, false},
		{server, ra{Resource: "configmaps", Verb: "delete", Namespace: "signet", Name: "signet-bundle"}, false},
		{server, ra{Resource: "configmaps", Verb: "list", Namespace: "signet"}, false},
		{server, ra{Resource: "configmaps", Verb: "create", Namespace: "kube-system"}, false},
		{server, ra{Resource: "configmaps", Verb: "update", Namespace: "kube-system", Name: "signet-bundle"}, false},
		{agent, ra{Resource: "configmaps", Verb: "update", Namespace: "signet", Name: "signet-bundle"}, false},
		{agent, ra{Resource: "nodes", Subresource: "pods", Verb: "get"}, true},
		{agent, ra{Group: "authentication.k8s.io", Resource: "tokenreviews", Verb: "create"}, false},
		{agent, ra{Resource: "nodes", Subresource: "proxy", Verb: "get"}, false},
		{agent, ra{Resource: "pods", Verb: "list"}, false},
		{agent, ra{Resource: "nodes", Verb: "get"}, false},
		{agent, ra{Resource: "secrets", Verb: "get", Namespace: "signet"}, false},
		{agent, ra{Group: "spire.spiffe.io", Resource: "clusterspiffeids", Verb: "list"}, false},
	}
	for _, tt := range tests {
		attr := tt.attr
		sar, err := c.Client.AuthorizationV1().SubjectAccessReviews().Create(t.Context(), &authorizationv1.SubjectAccessReview{
			Spec: authorizationv1.SubjectAccessReviewSpec{
				User:               tt.user,
				Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:signet", "system:authenticated"},
				ResourceAttributes: &attr,
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if sar.Status.Allowed != tt.allow {
			t.Errorf("%s %s %s/%s in %q: allowed %v, want %v (%s)", tt.user, attr.Verb, attr.Resource, attr.Subresource, attr.Namespace,
				sar.Status.Allowed, tt.allow, sar.Status.Reason)
		}
	}

	// The server's Notifier "k8sbundle", with the server account's token,
	// creates the bundle ConfigMap and then updates it; it cannot write
	// another ConfigMap (its own configuration).
	bundle := func() []*x509.Certificate { return nil } // Sync is given the PEM
	asServer := clientAs(t, c, "signet", "signet-server")
	n, err := k8sbundle.New(k8sbundle.Config{Client: asServer, Namespace: "signet", ConfigMap: "signet-bundle", Key: "bundle.pem", Bundle: bundle})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"created", "updated"} {
		if got, err := n.Sync(t.Context(), want+"\n"); err != nil || got != want {
			t.Errorf("k8sbundle as signet-server: %q, %v; want %s", got, err, want)
		}
	}
	if _, err := c.Client.CoreV1().ConfigMaps("signet").Create(t.Context(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "signet-server"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	other, err := k8sbundle.New(k8sbundle.Config{Client: asServer, Namespace: "signet", ConfigMap: "signet-server", Key: "server.conf", Bundle: bundle})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Sync(t.Context(), "x"); !apierrors.IsForbidden(errors.Unwrap(err)) {
		t.Errorf("k8sbundle as signet-server wrote the ConfigMap signet-server: %v", err)
	}

	// The same, end to end for the property that matters most: a token of
	// the agent's account cannot review tokens, the server's can.
	for _, tt := range []struct {
		account string
		allow   bool
	}{{"signet-server", true}, {"signet-agent", false}} {
		cs := clientAs(t, c, "signet", tt.account)
		review := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: "not-a-token"}}
		_, err := cs.AuthenticationV1().TokenReviews().Create(t.Context(), review, metav1.CreateOptions{})
		if got := err == nil; got != tt.allow || (err != nil && !apierrors.IsForbidden(err)) {
			t.Errorf("%s creates a TokenReview: err %v, want allowed %v", tt.account, err, tt.allow)
		}
	}
}

// clientAs is a client that authenticates with a token of service
// account ns/name for the API server's audience.
func clientAs(t *testing.T, c *kubetest.Cluster, ns, name string) *clientset.Clientset {
	t.Helper()
	ttl := int64(600)
	tr, err := c.Client.CoreV1().ServiceAccounts(ns).CreateToken(t.Context(), name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &ttl}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.AnonymousClientConfig(c.Config)
	cfg.BearerToken = tr.Status.Token
	cs, err := clientset.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}
