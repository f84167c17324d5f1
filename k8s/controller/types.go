package controller

import (
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Group and Version of the custom resources (spire-controller-manager's).
const (
	Group   = "spire.spiffe.io"
	Version = "v1alpha1"
)

// The resources the controller watches.
var (
	ClusterSPIFFEIDResource             = schema.GroupVersionResource{Group: Group, Version: Version, Resource: "clusterspiffeids"}
	ClusterStaticEntryResource          = schema.GroupVersionResource{Group: Group, Version: Version, Resource: "clusterstaticentries"}
	ClusterFederatedTrustDomainResource = schema.GroupVersionResource{Group: Group, Version: Version, Resource: "clusterfederatedtrustdomains"}
)

// ClusterSPIFFEIDSpec is a ClusterSPIFFEID's spec.
type ClusterSPIFFEIDSpec struct {
	SPIFFEIDTemplate          string                `json:"spiffeIDTemplate"`
	TTL                       metav1.Duration       `json:"ttl,omitempty"`
	JWTTTL                    metav1.Duration       `json:"jwtTtl,omitempty"`
	DNSNameTemplates          []string              `json:"dnsNameTemplates,omitempty"`
	WorkloadSelectorTemplates []string              `json:"workloadSelectorTemplates,omitempty"`
	FederatesWith             []string              `json:"federatesWith,omitempty"`
	NamespaceSelector         *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
	PodSelector               *metav1.LabelSelector `json:"podSelector,omitempty"`
	Admin                     bool                  `json:"admin,omitempty"`
	Downstream                bool                  `json:"downstream,omitempty"`
	AutoPopulateDNSNames      bool                  `json:"autoPopulateDNSNames,omitempty"`
	ClassName                 string                `json:"className,omitempty"`
	Fallback                  bool                  `json:"fallback,omitempty"`
	Hint                      string                `json:"hint,omitempty"`
}

// ClusterSPIFFEIDStats are the counts of a ClusterSPIFFEID's last
// reconciliation (status.stats).
type ClusterSPIFFEIDStats struct {
	NamespacesSelected     int `json:"namespacesSelected"`
	NamespacesIgnored      int `json:"namespacesIgnored"`
	PodsSelected           int `json:"podsSelected"`
	PodEntryRenderFailures int `json:"podEntryRenderFailures"`
	EntriesMasked          int `json:"entriesMasked"`
	EntriesToSet           int `json:"entriesToSet"`
	EntryFailures          int `json:"entryFailures"`
}

// ClusterSPIFFEIDStatus is a ClusterSPIFFEID's status.
type ClusterSPIFFEIDStatus struct {
	Stats ClusterSPIFFEIDStats `json:"stats"`
}

// ClusterSPIFFEID is the custom resource.
type ClusterSPIFFEID struct {
	metav1.ObjectMeta `json:"metadata"`
	Spec              ClusterSPIFFEIDSpec   `json:"spec"`
	Status            ClusterSPIFFEIDStatus `json:"status"`
}

// ClusterStaticEntrySpec is a ClusterStaticEntry's spec.
type ClusterStaticEntrySpec struct {
	SPIFFEID      string          `json:"spiffeID"`
	ParentID      string          `json:"parentID"`
	Selectors     []string        `json:"selectors"`
	FederatesWith []string        `json:"federatesWith,omitempty"`
	X509SVIDTTL   metav1.Duration `json:"x509SVIDTTL,omitempty"`
	JWTSVIDTTL    metav1.Duration `json:"jwtSVIDTTL,omitempty"`
	DNSNames      []string        `json:"dnsNames,omitempty"`
	Hint          string          `json:"hint,omitempty"`
	Admin         bool            `json:"admin,omitempty"`
	Downstream    bool            `json:"downstream,omitempty"`
	StoreSVID     bool            `json:"storeSVID,omitempty"`
	ClassName     string          `json:"className,omitempty"`
}

// ClusterStaticEntryStatus is a ClusterStaticEntry's status.
type ClusterStaticEntryStatus struct {
	Rendered bool `json:"rendered"`
	Masked   bool `json:"masked"`
	Set      bool `json:"set"`
}

// ClusterStaticEntry is the custom resource.
type ClusterStaticEntry struct {
	metav1.ObjectMeta `json:"metadata"`
	Spec              ClusterStaticEntrySpec   `json:"spec"`
	Status            ClusterStaticEntryStatus `json:"status"`
}

// BundleEndpointProfile is how the bundle endpoint authenticates.
type BundleEndpointProfile struct {
	Type             string `json:"type"`
	EndpointSPIFFEID string `json:"endpointSPIFFEID,omitempty"`
}

// The bundle endpoint profile types.
const (
	ProfileHTTPSSPIFFE = "https_spiffe"
	ProfileHTTPSWeb    = "https_web"
)

// ClusterFederatedTrustDomainSpec is a ClusterFederatedTrustDomain's spec.
type ClusterFederatedTrustDomainSpec struct {
	TrustDomain           string                `json:"trustDomain"`
	BundleEndpointURL     string                `json:"bundleEndpointURL"`
	BundleEndpointProfile BundleEndpointProfile `json:"bundleEndpointProfile"`
	TrustDomainBundle     string                `json:"trustDomainBundle,omitempty"`
	ClassName             string                `json:"className,omitempty"`
}

// ClusterFederatedTrustDomain is the custom resource.
type ClusterFederatedTrustDomain struct {
	metav1.ObjectMeta `json:"metadata"`
	Spec              ClusterFederatedTrustDomainSpec `json:"spec"`
}

// fromUnstructured decodes an object of the dynamic client into its type
// through JSON, so that metav1.Duration and label selectors decode as the
// API server's own JSON does.
func fromUnstructured[T any](u *unstructured.Unstructured) (*T, error) {
	b, err := json.Marshal(u.Object)
	if err != nil {
		return nil, fmt.Errorf("controller: encode %s %q: %w", u.GetKind(), u.GetName(), err)
	}
	out := new(T)
	if err := json.Unmarshal(b, out); err != nil {
		return nil, fmt.Errorf("controller: decode %s %q: %w", u.GetKind(), u.GetName(), err)
	}
	return out, nil
}

// statusObject returns u with its status replaced by status, for an
// update of the status subresource.
func statusObject(u *unstructured.Unstructured, status any) (*unstructured.Unstructured, error) {
	b, err := json.Marshal(status)
	if err != nil {
		return nil, fmt.Errorf("controller: encode status: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("controller: encode status: %w", err)
	}
	out := u.DeepCopy()
	out.Object["status"] = m
	return out, nil
}
