package controller

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/template"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Default templates.
const (
	// DefaultSPIFFEIDTemplate is the SPIFFE ID of a ClusterSPIFFEID whose
	// spiffeIDTemplate is empty.
	DefaultSPIFFEIDTemplate = "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}"
	// DefaultParentIDTemplate is the agent ID of a pod's node as the
	// k8s_psat node attestor assigns it.
	DefaultParentIDTemplate = "spiffe://{{ .TrustDomain }}/spire/agent/k8s_psat/{{ .ClusterName }}/{{ .NodeMeta.UID }}"
)

// templateData is what the templates see, as spire-controller-manager's.
type templateData struct {
	TrustDomain   string
	ClusterName   string
	ClusterDomain string
	PodMeta       *metav1.ObjectMeta
	PodSpec       *corev1.PodSpec
	NodeMeta      *metav1.ObjectMeta
	NodeSpec      *corev1.NodeSpec
}

// parsedSpec is a ClusterSPIFFEID spec with its templates and selectors
// compiled.
type parsedSpec struct {
	spec          *ClusterSPIFFEIDSpec
	spiffeID      *template.Template
	dnsNames      []*template.Template
	selectors     []*template.Template
	namespaces    labels.Selector
	pods          labels.Selector
	federatesWith []string
}

func parseSpec(spec *ClusterSPIFFEIDSpec) (*parsedSpec, error) {
	p := &parsedSpec{spec: spec}
	var err error
	src := spec.SPIFFEIDTemplate
	if strings.TrimSpace(src) == "" {
		src = DefaultSPIFFEIDTemplate
	}
	if p.spiffeID, err = template.New("spiffeIDTemplate").Parse(src); err != nil {
		return nil, fmt.Errorf("spiffeIDTemplate: %w", err)
	}
	for i, s := range spec.DNSNameTemplates {
		t, err := template.New(fmt.Sprintf("dnsNameTemplates[%d]", i)).Parse(s)
		if err != nil {
			return nil, fmt.Errorf("dnsNameTemplates[%d]: %w", i, err)
		}
		p.dnsNames = append(p.dnsNames, t)
	}
	for i, s := range spec.WorkloadSelectorTemplates {
		t, err := template.New(fmt.Sprintf("workloadSelectorTemplates[%d]", i)).Parse(s)
		if err != nil {
			return nil, fmt.Errorf("workloadSelectorTemplates[%d]: %w", i, err)
		}
		p.selectors = append(p.selectors, t)
	}
	if p.namespaces, err = labelSelector(spec.NamespaceSelector); err != nil {
		return nil, fmt.Errorf("namespaceSelector: %w", err)
	}
	if p.pods, err = labelSelector(spec.PodSelector); err != nil {
		return nil, fmt.Errorf("podSelector: %w", err)
	}
	if p.federatesWith, err = trustDomains(spec.FederatesWith); err != nil {
		return nil, err
	}
	if spec.TTL.Duration < 0 || spec.JWTTTL.Duration < 0 {
		return nil, errors.New("ttl and jwtTtl must not be negative")
	}
	return p, nil
}

// labelSelector is metav1.LabelSelectorAsSelector with nil selecting
// everything, as an empty selector does.
func labelSelector(s *metav1.LabelSelector) (labels.Selector, error) {
	if s == nil {
		return labels.Everything(), nil
	}
	return metav1.LabelSelectorAsSelector(s)
}

func trustDomains(names []string) ([]string, error) {
	out := make([]string, 0, len(names))
	for _, n := range names {
		td, err := spiffeid.TrustDomainFromString(n)
		if err != nil {
			return nil, fmt.Errorf("federatesWith %q: %w", n, err)
		}
		out = append(out, td.Name())
	}
	return out, nil
}

// renderer renders entries for one cluster.
type renderer struct {
	td            spiffeid.TrustDomain
	clusterName   string
	clusterDomain string
	parentID      *template.Template
}

// podEntry renders the entry of pod (on node) for spec. dnsNames are the
// Service names of the pod, added when spec.AutoPopulateDNSNames.
func (r *renderer) podEntry(p *parsedSpec, node *corev1.Node, pod *corev1.Pod, serviceNames []string) (*types.Entry, error) {
	data := &templateData{
		TrustDomain: r.td.Name(), ClusterName: r.clusterName, ClusterDomain: r.clusterDomain,
		NodeMeta: &node.ObjectMeta, NodeSpec: &node.Spec,
	}
	parent, err := r.renderID(r.parentID, data)
	if err != nil {
		return nil, fmt.Errorf("parent ID: %w", err)
	}
	data.PodMeta, data.PodSpec = &pod.ObjectMeta, &pod.Spec
	id, err := r.renderID(p.spiffeID, data)
	if err != nil {
		return nil, fmt.Errorf("SPIFFE ID: %w", err)
	}
	sels := []*types.Selector{{Type: "k8s", Value: "pod-uid:" + string(pod.UID)}}
	for _, t := range p.selectors {
		s, err := execute(t, data)
		if err != nil {
			return nil, err
		}
		sel, err := parseSelector(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", t.Name(), err)
		}
		sels = append(sels, sel)
	}
	var dns []string
	for _, t := range p.dnsNames {
		s, err := execute(t, data)
		if err != nil {
			return nil, err
		}
		if !validDNSName(s) {
			return nil, fmt.Errorf("%s: %q is not a DNS name", t.Name(), s)
		}
		dns = appendNew(dns, s)
	}
	if p.spec.AutoPopulateDNSNames {
		dns = appendNew(dns, serviceNames...)
	}
	return &types.Entry{
		SpiffeId:      protoID(id),
		ParentId:      protoID(parent),
		Selectors:     sels,
		X509SvidTtl:   int32(p.spec.TTL.Seconds()),
		JwtSvidTtl:    int32(p.spec.JWTTTL.Seconds()),
		FederatesWith: p.federatesWith,
		DnsNames:      dns,
		Admin:         p.spec.Admin,
		Downstream:    p.spec.Downstream,
		Hint:          p.spec.Hint,
	}, nil
}

// renderID executes t and checks the result is a SPIFFE ID of the
// controller's trust domain.
func (r *renderer) renderID(t *template.Template, data *templateData) (spiffeid.ID, error) {
	s, err := execute(t, data)
	if err != nil {
		return spiffeid.ID{}, err
	}
	id, err := spiffeid.FromString(s)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("%q is not a SPIFFE ID: %w", s, err)
	}
	if id.TrustDomain() != r.td {
		return spiffeid.ID{}, fmt.Errorf("%q is not in trust domain %q", s, r.td)
	}
	return id, nil
}

func execute(t *template.Template, data *templateData) (string, error) {
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return "", fmt.Errorf("%s: %w", t.Name(), err)
	}
	return b.String(), nil
}

// staticEntry renders a ClusterStaticEntry.
func staticEntry(spec *ClusterStaticEntrySpec) (*types.Entry, error) {
	id, err := spiffeid.FromString(spec.SPIFFEID)
	if err != nil {
		return nil, fmt.Errorf("spiffeID %q: %w", spec.SPIFFEID, err)
	}
	parent, err := spiffeid.FromString(spec.ParentID)
	if err != nil {
		return nil, fmt.Errorf("parentID %q: %w", spec.ParentID, err)
	}
	if len(spec.Selectors) == 0 {
		return nil, errors.New("selectors: at least one is needed")
	}
	sels := make([]*types.Selector, 0, len(spec.Selectors))
	for _, s := range spec.Selectors {
		sel, err := parseSelector(s)
		if err != nil {
			return nil, fmt.Errorf("selectors: %w", err)
		}
		sels = append(sels, sel)
	}
	fw, err := trustDomains(spec.FederatesWith)
	if err != nil {
		return nil, err
	}
	if spec.X509SVIDTTL.Duration < 0 || spec.JWTSVIDTTL.Duration < 0 {
		return nil, errors.New("x509SVIDTTL and jwtSVIDTTL must not be negative")
	}
	return &types.Entry{
		SpiffeId:      protoID(id),
		ParentId:      protoID(parent),
		Selectors:     sels,
		X509SvidTtl:   int32(spec.X509SVIDTTL.Seconds()),
		JwtSvidTtl:    int32(spec.JWTSVIDTTL.Seconds()),
		FederatesWith: fw,
		DnsNames:      spec.DNSNames,
		Admin:         spec.Admin,
		Downstream:    spec.Downstream,
		Hint:          spec.Hint,
		StoreSvid:     spec.StoreSVID,
	}, nil
}

// parseSelector parses "type:value"; the value may hold more colons.
func parseSelector(s string) (*types.Selector, error) {
	typ, value, ok := strings.Cut(s, ":")
	switch {
	case !ok:
		return nil, fmt.Errorf("selector %q: want type:value", s)
	case typ == "":
		return nil, fmt.Errorf("selector %q: empty type", s)
	case value == "":
		return nil, fmt.Errorf("selector %q: empty value", s)
	}
	return &types.Selector{Type: typ, Value: value}, nil
}

// validDNSName reports whether s is a DNS name (wildcards allowed): dot-
// separated labels of letters, digits, '-', '_' and '*', up to 253 bytes.
func validDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if l == "" || len(l) > 63 {
			return false
		}
		for _, r := range l {
			if !(r == '-' || r == '_' || r == '*' || ('0' <= r && r <= '9') || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z')) {
				return false
			}
		}
	}
	return true
}

func protoID(id spiffeid.ID) *types.SPIFFEID {
	return &types.SPIFFEID{TrustDomain: id.TrustDomain().Name(), Path: id.Path()}
}

func idString(id *types.SPIFFEID) string {
	if id == nil {
		return ""
	}
	return "spiffe://" + id.TrustDomain + id.Path
}

func appendNew(list []string, items ...string) []string {
	for _, s := range items {
		if !slices.Contains(list, s) {
			list = append(list, s)
		}
	}
	return list
}

// entryKey is an entry's identity: SPIFFE ID, parent ID and selector set
// (the server's similarity key), as a hex SHA-256.
func entryKey(e *types.Entry) string {
	sels := make([]string, 0, len(e.Selectors))
	for _, s := range e.Selectors {
		sels = append(sels, s.Type+":"+s.Value)
	}
	slices.Sort(sels)
	sels = slices.Compact(sels)
	h := sha256.New()
	for _, s := range append([]string{idString(e.SpiffeId), idString(e.ParentId)}, sels...) {
		fmt.Fprintf(h, "%d:%s", len(s), s)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// entryID is the ID the controller gives the entry of key: its prefix and
// the first 128 bits of the key.
func entryID(prefix, key string) string { return prefix + key[:32] }
