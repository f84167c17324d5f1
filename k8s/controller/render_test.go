package controller

import (
	"slices"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func testRenderer(t *testing.T) *renderer {
	t.Helper()
	return &renderer{
		td: spiffeid.RequireTrustDomainFromString("example.org"), clusterName: "prod", clusterDomain: "cluster.local",
		parentID: template.Must(template.New("p").Parse(DefaultParentIDTemplate)),
	}
}

var (
	testNode = &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1", UID: "node-uid-1"}}
	testPod  = &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "shop", UID: "pod-uid-1", Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{ServiceAccountName: "web", NodeName: "node-1"},
	}
)

func TestPodEntryRendering(t *testing.T) {
	r := testRenderer(t)
	for _, tc := range []struct {
		name    string
		spec    ClusterSPIFFEIDSpec
		svcs    []string
		id      string
		sels    []string
		dns     []string
		wantErr string
	}{
		{name: "default template", id: "spiffe://example.org/ns/shop/sa/web", sels: []string{"k8s:pod-uid:pod-uid-1"}},
		{name: "labels and selectors", spec: ClusterSPIFFEIDSpec{
			SPIFFEIDTemplate:          "spiffe://{{ .TrustDomain }}/{{ .ClusterName }}/{{ index .PodMeta.Labels \"app\" }}",
			WorkloadSelectorTemplates: []string{"k8s:ns:{{ .PodMeta.Namespace }}", "k8s:pod-label:app:web"},
		}, id: "spiffe://example.org/prod/web", sels: []string{"k8s:pod-uid:pod-uid-1", "k8s:ns:shop", "k8s:pod-label:app:web"}},
		{name: "dns names deduplicated, services added", spec: ClusterSPIFFEIDSpec{
			DNSNameTemplates:     []string{"{{ .PodMeta.Name }}.{{ .ClusterDomain }}", "{{ .PodMeta.Name }}.{{ .ClusterDomain }}", "web"},
			AutoPopulateDNSNames: true,
		}, svcs: []string{"web", "web.shop"}, id: "spiffe://example.org/ns/shop/sa/web", sels: []string{"k8s:pod-uid:pod-uid-1"},
			dns: []string{"web-0.cluster.local", "web", "web.shop"}},
		{name: "services ignored without autoPopulateDNSNames", svcs: []string{"web"}, id: "spiffe://example.org/ns/shop/sa/web", sels: []string{"k8s:pod-uid:pod-uid-1"}},
		{name: "missing label", spec: ClusterSPIFFEIDSpec{SPIFFEIDTemplate: "spiffe://example.org/{{ .PodMeta.Labels.team }}"}, wantErr: "is not a SPIFFE ID"},
		{name: "other trust domain", spec: ClusterSPIFFEIDSpec{SPIFFEIDTemplate: "spiffe://other.org/x"}, wantErr: `is not in trust domain "example.org"`},
		{name: "template execution error", spec: ClusterSPIFFEIDSpec{SPIFFEIDTemplate: "spiffe://example.org/{{ .PodMeta.Nope }}"}, wantErr: "spiffeIDTemplate"},
		{name: "selector without colon", spec: ClusterSPIFFEIDSpec{WorkloadSelectorTemplates: []string{"{{ .PodMeta.Name }}"}}, wantErr: `selector "web-0": want type:value`},
		{name: "selector with empty value", spec: ClusterSPIFFEIDSpec{WorkloadSelectorTemplates: []string{"k8s:"}}, wantErr: "empty value"},
		{name: "empty dns name", spec: ClusterSPIFFEIDSpec{DNSNameTemplates: []string{"{{ .PodMeta.Annotations.x }}"}}, wantErr: `"<no value>" is not a DNS name`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parseSpec(&tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			e, err := r.podEntry(p, testNode, testPod, tc.svcs)
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("rendered %v, want error %q", e, tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %q, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := idString(e.SpiffeId); got != tc.id {
				t.Errorf("SPIFFE ID %s, want %s", got, tc.id)
			}
			if got := idString(e.ParentId); got != "spiffe://example.org/spire/agent/k8s_psat/prod/node-uid-1" {
				t.Errorf("parent %s", got)
			}
			var sels []string
			for _, s := range e.Selectors {
				sels = append(sels, s.Type+":"+s.Value)
			}
			if !slices.Equal(sels, tc.sels) || !slices.Equal(e.DnsNames, tc.dns) {
				t.Errorf("selectors %q dns %q, want %q %q", sels, e.DnsNames, tc.sels, tc.dns)
			}
		})
	}
}

func TestSpecRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec ClusterSPIFFEIDSpec
		want string
	}{
		{"unparsable template", ClusterSPIFFEIDSpec{SPIFFEIDTemplate: "{{ .x"}, "spiffeIDTemplate"},
		{"unparsable dns template", ClusterSPIFFEIDSpec{DNSNameTemplates: []string{"{{"}}, "dnsNameTemplates[0]"},
		{"bad selector operator", ClusterSPIFFEIDSpec{PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Near"}}}}, "podSelector"},
		{"bad federatesWith", ClusterSPIFFEIDSpec{FederatesWith: []string{"Not A TD"}}, "federatesWith"},
		{"negative ttl", ClusterSPIFFEIDSpec{TTL: metav1.Duration{Duration: -time.Second}}, "negative"},
	} {
		if _, err := parseSpec(&tc.spec); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %q", tc.name, err, tc.want)
		}
	}
}

func TestStaticEntryRendering(t *testing.T) {
	ok := ClusterStaticEntrySpec{SPIFFEID: "spiffe://example.org/a", ParentID: "spiffe://example.org/b", Selectors: []string{"unix:uid:1"},
		X509SVIDTTL: metav1.Duration{Duration: time.Hour}, FederatesWith: []string{"other.org"}, StoreSVID: true}
	e, err := staticEntry(&ok)
	if err != nil || e.X509SvidTtl != 3600 || !e.StoreSvid || !slices.Equal(e.FederatesWith, []string{"other.org"}) {
		t.Fatalf("%v, %v", e, err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*ClusterStaticEntrySpec)
		want string
	}{
		{"bad id", func(s *ClusterStaticEntrySpec) { s.SPIFFEID = "x" }, "spiffeID"},
		{"bad parent", func(s *ClusterStaticEntrySpec) { s.ParentID = "x" }, "parentID"},
		{"no selectors", func(s *ClusterStaticEntrySpec) { s.Selectors = nil }, "at least one"},
		{"bad selector", func(s *ClusterStaticEntrySpec) { s.Selectors = []string{":x"} }, "empty type"},
	} {
		s := ok
		tc.mod(&s)
		if _, err := staticEntry(&s); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestEntryIdentity: the key (and so the ID) depends on the SPIFFE ID,
// parent and selector set only, not on selector order or other fields.
func TestEntryIdentity(t *testing.T) {
	id := &types.SPIFFEID{TrustDomain: "example.org", Path: "/a"}
	parent := &types.SPIFFEID{TrustDomain: "example.org", Path: "/p"}
	a := &types.Entry{SpiffeId: id, ParentId: parent, Selectors: []*types.Selector{{Type: "k8s", Value: "x"}, {Type: "k8s", Value: "y"}}}
	b := &types.Entry{SpiffeId: id, ParentId: parent, Selectors: []*types.Selector{{Type: "k8s", Value: "y"}, {Type: "k8s", Value: "x"}}, X509SvidTtl: 5, Hint: "h"}
	c := &types.Entry{SpiffeId: id, ParentId: parent, Selectors: []*types.Selector{{Type: "k8s", Value: "x:y"}}}
	if entryKey(a) != entryKey(b) {
		t.Error("selector order changed the key")
	}
	if entryKey(a) == entryKey(c) {
		t.Error("different selector sets share a key")
	}
	if got := entryID("k8s.prod.", entryKey(a)); !strings.HasPrefix(got, "k8s.prod.") || len(got) != len("k8s.prod.")+32 {
		t.Errorf("entry ID %q", got)
	}
	if !outdated(b, a) || outdated(a, &types.Entry{SpiffeId: id, ParentId: parent}) {
		t.Error("outdated compares the wrong fields")
	}
	if outdated(&types.Entry{DnsNames: []string{"a", "b"}}, &types.Entry{DnsNames: []string{"b", "a"}}) {
		t.Error("DNS name order counted as a change")
	}
}

func TestRelationshipRendering(t *testing.T) {
	ok := ClusterFederatedTrustDomainSpec{TrustDomain: "other.org", BundleEndpointURL: "https://other.org:8443/bundle",
		BundleEndpointProfile: BundleEndpointProfile{Type: ProfileHTTPSSPIFFE, EndpointSPIFFEID: "spiffe://other.org/spire/server"}}
	fr, err := relationship(&ok)
	if err != nil || fr.GetHttpsSpiffe().GetEndpointSpiffeId() != "spiffe://other.org/spire/server" {
		t.Fatalf("%v, %v", fr, err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*ClusterFederatedTrustDomainSpec)
		want string
	}{
		{"http url", func(s *ClusterFederatedTrustDomainSpec) { s.BundleEndpointURL = "http://other.org" }, "https URL"},
		{"userinfo", func(s *ClusterFederatedTrustDomainSpec) { s.BundleEndpointURL = "https://u:p@other.org" }, "no userinfo"},
		{"bad td", func(s *ClusterFederatedTrustDomainSpec) { s.TrustDomain = "Other Org" }, "trustDomain"},
		{"spiffe profile without id", func(s *ClusterFederatedTrustDomainSpec) { s.BundleEndpointProfile.EndpointSPIFFEID = "" }, "endpointSPIFFEID"},
		{"unknown profile", func(s *ClusterFederatedTrustDomainSpec) { s.BundleEndpointProfile.Type = "http" }, "want https_spiffe or https_web"},
		{"bad bundle", func(s *ClusterFederatedTrustDomainSpec) { s.TrustDomainBundle = "{" }, "trustDomainBundle"},
	} {
		s := ok
		tc.mod(&s)
		if _, err := relationship(&s); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

func FuzzParseSelector(f *testing.F) {
	for _, s := range []string{"k8s:pod-uid:x", "unix:uid:0", ":", "a:", ":b", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := parseSelector(s)
		if err != nil {
			return
		}
		if sel.Type == "" || sel.Value == "" || sel.Type+":"+sel.Value != s {
			t.Fatalf("parseSelector(%q) = %v", s, sel)
		}
	})
}
