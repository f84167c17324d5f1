package controller_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/signet-id/signet/conformance/kubetest"
	"github.com/signet-id/signet/k8s/controller"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apitypes "k8s.io/apimachinery/pkg/types"
)

// labelNamespace sets a namespace's labels.
func labelNamespace(t testing.TB, e *env, ns string, labels string) {
	t.Helper()
	patch := `{"metadata":{"labels":` + labels + `}}`
	if _, err := e.k.Client.CoreV1().Namespaces().Patch(ctxT(t), ns, apitypes.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

func relabelPod(t testing.TB, e *env, ns, name, labels string) {
	t.Helper()
	patch := `{"metadata":{"labels":` + labels + `}}`
	if _, err := e.k.Client.CoreV1().Pods(ns).Patch(ctxT(t), name, apitypes.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestCRDsTakeSPIREControllerManagerManifests: the CRDs installed from
// deploy/kubernetes/crds accept a ClusterSPIFFEID that uses every field
// of spire-controller-manager's schema, a ClusterStaticEntry and a
// ClusterFederatedTrustDomain as its documentation writes them, and the
// API server refuses what the schema forbids (with 422).
func TestCRDsTakeSPIREControllerManagerManifests(t *testing.T) {
	e := &env{k: kubetest.Start(t)}
	var err error
	if e.dyn, err = dynamicFor(e.k); err != nil {
		t.Fatal(err)
	}
	installCRDs(t, e.dyn)
	e.apply(t, controller.ClusterSPIFFEIDResource, `
apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterSPIFFEID
metadata:
  name: full
spec:
  spiffeIDTemplate: "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}"
  podSelector:
    matchLabels: {app: web}
    matchExpressions: [{key: tier, operator: In, values: [front]}]
  namespaceSelector:
    matchExpressions: [{key: kubernetes.io/metadata.name, operator: NotIn, values: [kube-system]}]
  workloadSelectorTemplates: ["k8s:ns:{{ .PodMeta.Namespace }}"]
  dnsNameTemplates: ["{{ .PodMeta.Name }}.{{ .PodMeta.Namespace }}.svc.{{ .ClusterDomain }}"]
  ttl: 1h
  jwtTtl: 5m
  federatesWith: [other.org]
  admin: false
  downstream: false
  fallback: false
  hint: web
  autoPopulateDNSNames: true
  className: signet
`)
	e.apply(t, controller.ClusterStaticEntryResource, `
apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterStaticEntry
metadata:
  name: static
spec:
  spiffeID: spiffe://example.org/legacy
  parentID: spiffe://example.org/spire/agent/join_token/abc
  selectors: ["unix:uid:1000"]
  x509SVIDTTL: 10m
  jwtSVIDTTL: 5m
  dnsNames: [legacy.example.org]
  hint: legacy
  storeSVID: true
`)
	e.apply(t, controller.ClusterFederatedTrustDomainResource, `
apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterFederatedTrustDomain
metadata:
  name: other
spec:
  trustDomain: other.org
  bundleEndpointURL: https://other.org:8443
  bundleEndpointProfile:
    type: https_spiffe
    endpointSPIFFEID: spiffe://other.org/spire/server
`)
	bad := []struct{ name, doc string }{
		{"static without selectors", `
apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterStaticEntry
metadata: {name: bad1}
spec: {spiffeID: "spiffe://example.org/a", parentID: "spiffe://example.org/b"}`},
		{"federation with an unknown profile", `
apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterFederatedTrustDomain
metadata: {name: bad2}
spec: {trustDomain: other.org, bundleEndpointURL: "https://x", bundleEndpointProfile: {type: http}}`},
		{"ttl not a string", `
apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterSPIFFEID
metadata: {name: bad3}
spec: {ttl: 5}`},
	}
	for _, b := range bad {
		gvr := controller.ClusterStaticEntryResource
		switch {
		case strings.Contains(b.doc, "ClusterFederatedTrustDomain"):
			gvr = controller.ClusterFederatedTrustDomainResource
		case strings.Contains(b.doc, "ClusterSPIFFEID"):
			gvr = controller.ClusterSPIFFEIDResource
		}
		err := createErr(t, e, gvr, b.doc)
		if !apierrors.IsInvalid(err) {
			t.Errorf("%s: create = %v, want 422 Invalid", b.name, err)
		}
	}
}

// TestPodEntriesFollowPods: a ClusterSPIFFEID with pod and namespace
// selectors gives exactly the matching pods an entry, parented to their
// node's k8s_psat agent ID and selected by pod UID; relabelling a pod out
// of the selector deletes its entry and back in recreates it; deleting
// the pod deletes the entry; status.stats counts as
// spire-controller-manager's; a second object declaring the same entries
// is masked.
func TestPodEntriesFollowPods(t *testing.T) {
	e := newEnv(t)
	e.k.CreateNamespace(t, "shop")
	e.k.CreateNamespace(t, "lab")
	labelNamespace(t, e, "shop", `{"env":"prod"}`)
	labelNamespace(t, e, "lab", `{"env":"dev"}`)
	for _, ns := range []string{"shop", "lab"} {
		e.k.CreateServiceAccount(t, ns, "web")
	}
	node := e.k.CreateNode(t, "node-1", nil, "10.0.0.11")
	web := e.k.CreatePod(t, kubetest.PodSpec{Namespace: "shop", Name: "web-0", ServiceAccount: "web", Node: "node-1", Labels: map[string]string{"app": "web"}})
	e.k.CreatePod(t, kubetest.PodSpec{Namespace: "shop", Name: "db-0", ServiceAccount: "web", Node: "node-1", Labels: map[string]string{"app": "db"}})
	e.k.CreatePod(t, kubetest.PodSpec{Namespace: "lab", Name: "web-0", ServiceAccount: "web", Node: "node-1", Labels: map[string]string{"app": "web"}})

	e.apply(t, controller.ClusterSPIFFEIDResource, `
apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterSPIFFEID
metadata: {name: web}
spec:
  podSelector: {matchLabels: {app: web}}
  namespaceSelector: {matchLabels: {env: prod}}
  workloadSelectorTemplates: ["k8s:ns:{{ .PodMeta.Namespace }}"]
  dnsNameTemplates: ["{{ .PodMeta.Name }}.{{ .PodMeta.Namespace }}.svc.{{ .ClusterDomain }}"]
  ttl: 30m
  hint: web
`)
	rc := e.start(t, nil)
	id := "spiffe://example.org/ns/shop/sa/web"
	var got []*types.Entry
	eventually(t, "the web pod's entry", func() bool { got = e.entriesFor(t, id); return len(got) == 1 })
	en := got[0]
	wantParent := "/spire/agent/k8s_psat/prod/" + string(node.UID)
	if en.ParentId.Path != wantParent || en.X509SvidTtl != 1800 || en.Hint != "web" ||
		!slices.Equal(en.DnsNames, []string{"web-0.shop.svc.cluster.local"}) || !strings.HasPrefix(en.Id, "k8s.prod.") {
		t.Fatalf("entry %v, want parent %s, ttl 1800, hint web, the DNS name, ID prefix k8s.prod.", en, wantParent)
	}
	sels := selectorStrings(en.Selectors)
	slices.Sort(sels)
	if want := []string{"k8s:ns:shop", "k8s:pod-uid:" + string(web.UID)}; !slices.Equal(sels, want) {
		t.Fatalf("selectors %q, want %q", sels, want)
	}
	if n := len(e.entries(t)); n != 1 {
		t.Fatalf("%d entries, want only the web pod's", n)
	}
	wantStats := map[string]any{"namespacesSelected": int64(1), "namespacesIgnored": int64(0), "podsSelected": int64(1),
		"podEntryRenderFailures": int64(0), "entriesMasked": int64(0), "entriesToSet": int64(1), "entryFailures": int64(0)}
	eventually(t, "status.stats", func() bool {
		st, _ := e.status(t, controller.ClusterSPIFFEIDResource, "web")["stats"].(map[string]any)
		return mapsEqual(st, wantStats)
	})

	relabelPod(t, e, "shop", "web-0", `{"app":"web-old"}`)
	eventually(t, "the relabelled pod's entry deleted", func() bool { return len(e.entriesFor(t, id)) == 0 })
	relabelPod(t, e, "shop", "web-0", `{"app":"web"}`)
	eventually(t, "the entry back", func() bool { return len(e.entriesFor(t, id)) == 1 })

	// A second object declaring the same entry is masked by the older.
	e.apply(t, controller.ClusterSPIFFEIDResource, `
apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterSPIFFEID
metadata: {name: web-again}
spec:
  podSelector: {matchLabels: {app: web}}
  namespaceSelector: {matchLabels: {env: prod}}
  workloadSelectorTemplates: ["k8s:ns:{{ .PodMeta.Namespace }}"]
`)
	eventually(t, "web-again masked", func() bool {
		st, _ := e.status(t, controller.ClusterSPIFFEIDResource, "web-again")["stats"].(map[string]any)
		return st["entriesMasked"] == int64(1) && st["entriesToSet"] == int64(0)
	})
	if n := len(e.entriesFor(t, id)); n != 1 {
		t.Fatalf("%d entries for %s, want 1", n, id)
	}

	e.k.DeletePod(t, web)
	eventually(t, "the deleted pod's entry deleted", func() bool { return len(e.entriesFor(t, id)) == 0 })
	if rc.passes(t, "error") != 0 {
		t.Fatalf("%d reconciliation passes failed", rc.passes(t, "error"))
	}
}

// TestTemplateErrorsCountAsRenderFailures: a template that renders no
// valid SPIFFE ID (a missing label, another trust domain, a bad
// selector) gives no entry and counts in podEntryRenderFailures, while
// the other pods keep theirs.
func TestTemplateErrorsCountAsRenderFailures(t *testing.T) {
	e := newEnv(t)
	e.k.CreateNamespace(t, "shop")
	e.k.CreateServiceAccount(t, "shop", "web")
	e.k.CreateNode(t, "node-1", nil, "10.0.0.11")
	e.k.CreatePod(t, kubetest.PodSpec{Namespace: "shop", Name: "a", ServiceAccount: "web", Node: "node-1", Labels: map[string]string{"app": "a", "team": "blue"}})
	e.k.CreatePod(t, kubetest.PodSpec{Namespace: "shop", Name: "b", ServiceAccount: "web", Node: "node-1", Labels: map[string]string{"app": "b"}})
	e.apply(t, controller.ClusterSPIFFEIDResource, `
apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterSPIFFEID
metadata: {name: team}
spec:
  spiffeIDTemplate: "spiffe://{{ .TrustDomain }}/team/{{ index .PodMeta.Labels \"team\" }}"
`)
	e.apply(t, controller.ClusterSPIFFEIDResource, `
apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterSPIFFEID
metadata: {name: elsewhere}
spec:
  spiffeIDTemplate: "spiffe://other.org/{{ .PodMeta.Name }}"
`)
	e.apply(t, controller.ClusterSPIFFEIDResource, `
apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterSPIFFEID
metadata: {name: badselector}
spec:
  spiffeIDTemplate: "spiffe://{{ .TrustDomain }}/sel/{{ .PodMeta.Name }}"
  workloadSelectorTemplates: ["{{ .PodMeta.Name }}"]
`)
	e.start(t, nil)
	eventually(t, "team blue's entry", func() bool { return len(e.entriesFor(t, "spiffe://example.org/team/blue")) == 1 })
	for name, want := range map[string]int64{"team": 1, "elsewhere": 2, "badselector": 2} {
		eventually(t, name+" render failures", func() bool {
			st, _ := e.status(t, controller.ClusterSPIFFEIDResource, name)["stats"].(map[string]any)
			return st["podEntryRenderFailures"] == want && st["podsSelected"] == int64(2)
		})
	}
	if n := len(e.entries(t)); n != 1 {
		t.Fatalf("%d entries, want only team blue's", n)
	}
}

// TestStaticEntriesLeaveHandMadeEntriesAlone: a ClusterStaticEntry
// becomes an entry with its status rendered and set; entries created
// through the admin API (not the controller's prefix) survive every pass,
// even one identical to a declared entry; deleting the object deletes
// only its entry.
func TestStaticEntriesLeaveHandMadeEntriesAlone(t *testing.T) {
	e := newEnv(t)
	hand := createEntry(t, e, "spiffe://example.org/by-hand", "spiffe://example.org/spire/agent/join_token/x", "unix:uid:1")
	twin := createEntry(t, e, "spiffe://example.org/twin", "spiffe://example.org/spire/agent/join_token/x", "unix:uid:2")
	e.apply(t, controller.ClusterStaticEntryResource, `
apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterStaticEntry
metadata: {name: legacy}
spec:
  spiffeID: spiffe://example.org/legacy
  parentID: spiffe://example.org/spire/agent/join_token/x
  selectors: ["unix:uid:1000", "unix:gid:1000"]
  x509SVIDTTL: 10m
  dnsNames: [legacy.example.org]
  storeSVID: true
`)
	e.apply(t, controller.ClusterStaticEntryResource, `
apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterStaticEntry
metadata: {name: twin}
spec:
  spiffeID: spiffe://example.org/twin
  parentID: spiffe://example.org/spire/agent/join_token/x
  selectors: ["unix:uid:2"]
`)
	e.apply(t, controller.ClusterStaticEntryResource, `
apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterStaticEntry
metadata: {name: broken}
spec:
  spiffeID: not-a-spiffe-id
  parentID: spiffe://example.org/spire/agent/join_token/x
  selectors: ["unix:uid:3"]
`)
	rc := e.start(t, nil)
	var legacy []*types.Entry
	eventually(t, "the static entry", func() bool { legacy = e.entriesFor(t, "spiffe://example.org/legacy"); return len(legacy) == 1 })
	if en := legacy[0]; en.X509SvidTtl != 600 || !en.StoreSvid || !slices.Equal(en.DnsNames, []string{"legacy.example.org"}) {
		t.Fatalf("static entry %v", en)
	}
	eventually(t, "statuses", func() bool {
		l := e.status(t, controller.ClusterStaticEntryResource, "legacy")
		b := e.status(t, controller.ClusterStaticEntryResource, "broken")
		w := e.status(t, controller.ClusterStaticEntryResource, "twin")
		return l["rendered"] == true && l["set"] == true && l["masked"] == false &&
			b["rendered"] == false && b["set"] == false &&
			w["rendered"] == true && w["set"] == false // the hand-made twin holds the identity
	})
	passes := rc.passes(t, "ok")
	eventually(t, "three more passes", func() bool { return rc.passes(t, "ok") >= passes+3 })
	for _, h := range []*types.Entry{hand, twin} {
		got, err := e.ent.GetEntry(ctxT(t), &entryv1.GetEntryRequest{Id: h.Id})
		if err != nil || got.RevisionNumber != h.RevisionNumber {
			t.Fatalf("hand-made entry %s: %v, %v; want it untouched", h.Id, got, err)
		}
	}
	if err := e.dyn.Resource(controller.ClusterStaticEntryResource).Delete(ctxT(t), "legacy", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the static entry deleted", func() bool { return len(e.entriesFor(t, "spiffe://example.org/legacy")) == 0 })
	if n := len(e.entries(t)); n != 2 {
		t.Fatalf("%d entries left, want the 2 hand-made ones", n)
	}
}

// TestRestartConvergesWithoutChurn: a second controller started on the
// same cluster and server (a restart, a new leader) writes nothing: the
// entries keep their IDs and revision numbers.
func TestRestartConvergesWithoutChurn(t *testing.T) {
	e := newEnv(t)
	e.k.CreateNamespace(t, "shop")
	e.k.CreateServiceAccount(t, "shop", "web")
	e.k.CreateNode(t, "node-1", nil, "10.0.0.11")
	for _, n := range []string{"a", "b", "c", "d"} {
		e.k.CreatePod(t, kubetest.PodSpec{Namespace: "shop", Name: n, ServiceAccount: "web", Node: "node-1", Labels: map[string]string{"app": "web"}})
	}
	e.apply(t, controller.ClusterSPIFFEIDResource, `
apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterSPIFFEID
metadata: {name: web}
spec:
  spiffeIDTemplate: "spiffe://{{ .TrustDomain }}/pod/{{ .PodMeta.Name }}"
  podSelector: {matchLabels: {app: web}}
  dnsNameTemplates: ["{{ .PodMeta.Name }}.example"]
  federatesWith: []
  ttl: 1h
  jwtTtl: 5m
`)
	e.apply(t, controller.ClusterStaticEntryResource, `
apiVersion: spire.spiffe.io/v1alpha1
kind: ClusterStaticEntry
metadata: {name: legacy}
spec:
  spiffeID: spiffe://example.org/legacy
  parentID: spiffe://example.org/spire/agent/join_token/x
  selectors: ["unix:uid:1000"]
`)
	first := e.start(t, nil)
	eventually(t, "5 entries", func() bool { return len(e.entries(t)) == 5 })
	before := revisions(e.entries(t))
	first.stop()

	second := e.start(t, nil)
	eventually(t, "three passes of the second controller", func() bool { return second.passes(t, "ok") >= 3 })
	for _, op := range []string{"create", "update", "delete", "failed"} {
		if n := second.writes(t, op); n != 0 {
			t.Errorf("the restarted controller made %d %s writes, want none", n, op)
		}
	}
	if after := revisions(e.entries(t)); !mapsEqualStr(before, after) {
		t.Fatalf("entries changed across the restart:\nbefore %v\nafter  %v", before, after)
	}
}

func revisions(es []*types.Entry) map[string]int64 {
	out := map[string]int64{}
	for _, e := range es {
		out[e.Id] = e.RevisionNumber
	}
	return out
}

func mapsEqualStr(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func mapsEqual(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func createEntry(t testing.TB, e *env, id, parent string, sels ...string) *types.Entry {
	t.Helper()
	var ss []*types.Selector
	for _, s := range sels {
		typ, v, _ := strings.Cut(s, ":")
		ss = append(ss, &types.Selector{Type: typ, Value: v})
	}
	toID := func(s string) *types.SPIFFEID {
		rest := strings.TrimPrefix(s, "spiffe://")
		tdn, path, _ := strings.Cut(rest, "/")
		return &types.SPIFFEID{TrustDomain: tdn, Path: "/" + path}
	}
	resp, err := e.ent.BatchCreateEntry(context.Background(), &entryv1.BatchCreateEntryRequest{Entries: []*types.Entry{{
		SpiffeId: toID(id), ParentId: toID(parent), Selectors: ss,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if c := codes.Code(resp.Results[0].Status.Code); c != codes.OK {
		t.Fatalf("create entry: %v %s", c, resp.Results[0].Status.Message)
	}
	return resp.Results[0].Entry
}
