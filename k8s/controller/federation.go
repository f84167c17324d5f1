package controller

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"sync"

	"github.com/signet-id/signet/bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	trustdomainv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/trustdomain/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
)

// TrustDomainClient is the part of the server's trust domain API the
// controller uses; trustdomainv1.TrustDomainClient satisfies it.
type TrustDomainClient interface {
	ListFederationRelationships(ctx context.Context, in *trustdomainv1.ListFederationRelationshipsRequest, opts ...grpc.CallOption) (*trustdomainv1.ListFederationRelationshipsResponse, error)
	BatchCreateFederationRelationship(ctx context.Context, in *trustdomainv1.BatchCreateFederationRelationshipRequest, opts ...grpc.CallOption) (*trustdomainv1.BatchCreateFederationRelationshipResponse, error)
	BatchUpdateFederationRelationship(ctx context.Context, in *trustdomainv1.BatchUpdateFederationRelationshipRequest, opts ...grpc.CallOption) (*trustdomainv1.BatchUpdateFederationRelationshipResponse, error)
	BatchDeleteFederationRelationship(ctx context.Context, in *trustdomainv1.BatchDeleteFederationRelationshipRequest, opts ...grpc.CallOption) (*trustdomainv1.BatchDeleteFederationRelationshipResponse, error)
}

var _ TrustDomainClient = trustdomainv1.TrustDomainClient(nil)

// federation reconciles ClusterFederatedTrustDomains into federation
// relationships. A relationship has no owner mark on the server, so the
// controller deletes one only when it saw the object that declared it
// deleted; relationships made by hand are updated only if an object
// declares their trust domain.
type federation struct {
	c      *Controller
	client TrustDomainClient

	mu      sync.Mutex
	deleted map[string]bool
}

func (f *federation) handler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { f.c.trigger() },
		UpdateFunc: func(old, cur any) { f.c.triggerIfChanged(old, cur) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if u, ok := obj.(*unstructured.Unstructured); ok {
				if td, _, _ := unstructured.NestedString(u.Object, "spec", "trustDomain"); td != "" {
					f.mu.Lock()
					if f.deleted == nil {
						f.deleted = map[string]bool{}
					}
					f.deleted[td] = true
					f.mu.Unlock()
				}
			}
			f.c.trigger()
		},
	}
}

// relationship renders a ClusterFederatedTrustDomain.
func relationship(spec *ClusterFederatedTrustDomainSpec) (*types.FederationRelationship, error) {
	td, err := spiffeid.TrustDomainFromString(spec.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("trustDomain %q: %w", spec.TrustDomain, err)
	}
	u, err := url.Parse(spec.BundleEndpointURL)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
		return nil, fmt.Errorf("bundleEndpointURL %q: want an https URL with a host and no userinfo", spec.BundleEndpointURL)
	}
	fr := &types.FederationRelationship{TrustDomain: td.Name(), BundleEndpointUrl: spec.BundleEndpointURL}
	switch spec.BundleEndpointProfile.Type {
	case ProfileHTTPSWeb:
		fr.BundleEndpointProfile = &types.FederationRelationship_HttpsWeb{HttpsWeb: &types.HTTPSWebProfile{}}
	case ProfileHTTPSSPIFFE:
		id, err := spiffeid.FromString(spec.BundleEndpointProfile.EndpointSPIFFEID)
		if err != nil {
			return nil, fmt.Errorf("bundleEndpointProfile.endpointSPIFFEID %q: %w", spec.BundleEndpointProfile.EndpointSPIFFEID, err)
		}
		fr.BundleEndpointProfile = &types.FederationRelationship_HttpsSpiffe{HttpsSpiffe: &types.HTTPSSPIFFEProfile{EndpointSpiffeId: id.String()}}
	default:
		return nil, fmt.Errorf("bundleEndpointProfile.type %q: want %s or %s", spec.BundleEndpointProfile.Type, ProfileHTTPSSPIFFE, ProfileHTTPSWeb)
	}
	if spec.TrustDomainBundle != "" {
		b, err := bundle.ParseSPIFFE(td, []byte(spec.TrustDomainBundle))
		if err != nil {
			return nil, fmt.Errorf("trustDomainBundle: %w", err)
		}
		if fr.TrustDomainBundle, err = bundle.ToProto(b); err != nil {
			return nil, fmt.Errorf("trustDomainBundle: %w", err)
		}
	}
	return fr, nil
}

func sameEndpoint(a, b *types.FederationRelationship) bool {
	if a.BundleEndpointUrl != b.BundleEndpointUrl {
		return false
	}
	if a.GetHttpsWeb() != nil || b.GetHttpsWeb() != nil {
		return a.GetHttpsWeb() != nil && b.GetHttpsWeb() != nil
	}
	return a.GetHttpsSpiffe().GetEndpointSpiffeId() == b.GetHttpsSpiffe().GetEndpointSpiffeId()
}

func (f *federation) reconcile(ctx context.Context) error {
	objs, err := f.c.dinf.ForResource(ClusterFederatedTrustDomainResource).Lister().List(labels.Everything())
	if err != nil {
		return fmt.Errorf("controller: list ClusterFederatedTrustDomains: %w", err)
	}
	want := map[string]*types.FederationRelationship{}
	for _, o := range objs {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		cftd, err := fromUnstructured[ClusterFederatedTrustDomain](u)
		if err != nil || !f.c.ownsClass(cftd.Spec.ClassName) {
			continue
		}
		fr, err := relationship(&cftd.Spec)
		if err != nil {
			f.c.log.Warn("controller: ClusterFederatedTrustDomain does not render", "name", u.GetName(), "error", err)
			f.c.m.renderFailures.Inc()
			continue
		}
		want[fr.TrustDomain] = fr
	}
	f.mu.Lock()
	pending := f.deleted
	f.mu.Unlock()
	if len(want) == 0 && len(pending) == 0 {
		return nil
	}
	have := map[string]*types.FederationRelationship{}
	token := ""
	for range 10000 {
		resp, err := f.client.ListFederationRelationships(ctx, &trustdomainv1.ListFederationRelationshipsRequest{PageSize: 500, PageToken: token})
		if status.Code(err) == codes.Unimplemented {
			return fmt.Errorf("controller: the server has no TrustDomain API, so ClusterFederatedTrustDomains are not applied: %w", err)
		}
		if err != nil {
			return fmt.Errorf("controller: list federation relationships: %w", err)
		}
		for _, fr := range resp.FederationRelationships {
			have[fr.TrustDomain] = fr
		}
		if token = resp.NextPageToken; token == "" {
			break
		}
	}
	var create, update []*types.FederationRelationship
	var del []string
	for td, fr := range want {
		cur, ok := have[td]
		switch {
		case !ok:
			create = append(create, fr)
		case !sameEndpoint(fr, cur):
			update = append(update, fr)
		}
	}
	for td := range pending {
		if _, declared := want[td]; !declared {
			if _, ok := have[td]; ok {
				del = append(del, td)
			}
		}
	}
	sort.Strings(del)
	var errs int
	if len(create) > 0 {
		resp, err := f.client.BatchCreateFederationRelationship(ctx, &trustdomainv1.BatchCreateFederationRelationshipRequest{FederationRelationships: create})
		if err != nil {
			return fmt.Errorf("controller: create federation relationships: %w", err)
		}
		errs += results(f, "create", resp.GetResults(), func(r *trustdomainv1.BatchCreateFederationRelationshipResponse_Result) (*types.Status, string) {
			return r.GetStatus(), r.GetFederationRelationship().GetTrustDomain()
		})
	}
	if len(update) > 0 {
		resp, err := f.client.BatchUpdateFederationRelationship(ctx, &trustdomainv1.BatchUpdateFederationRelationshipRequest{
			FederationRelationships: update,
			InputMask:               &types.FederationRelationshipMask{BundleEndpointUrl: true, BundleEndpointProfile: true},
		})
		if err != nil {
			return fmt.Errorf("controller: update federation relationships: %w", err)
		}
		errs += results(f, "update", resp.GetResults(), func(r *trustdomainv1.BatchUpdateFederationRelationshipResponse_Result) (*types.Status, string) {
			return r.GetStatus(), r.GetFederationRelationship().GetTrustDomain()
		})
	}
	if len(del) > 0 {
		resp, err := f.client.BatchDeleteFederationRelationship(ctx, &trustdomainv1.BatchDeleteFederationRelationshipRequest{TrustDomains: del})
		if err != nil {
			return fmt.Errorf("controller: delete federation relationships: %w", err)
		}
		errs += results(f, "delete", resp.GetResults(), func(r *trustdomainv1.BatchDeleteFederationRelationshipResponse_Result) (*types.Status, string) {
			return r.GetStatus(), r.GetTrustDomain()
		})
	}
	f.mu.Lock()
	for _, td := range del {
		delete(f.deleted, td)
	}
	for td := range pending {
		if _, ok := have[td]; !ok {
			delete(f.deleted, td)
		}
	}
	f.mu.Unlock()
	if errs > 0 {
		return fmt.Errorf("controller: %d federation relationship writes refused", errs)
	}
	return nil
}

// results logs each refused write and returns how many there were.
func results[R any](f *federation, op string, rs []R, get func(R) (*types.Status, string)) int {
	n := 0
	for _, r := range rs {
		st, td := get(r)
		if codes.Code(st.GetCode()) == codes.OK {
			f.c.log.Info("controller: federation relationship written", "op", op, "trust_domain", td)
			continue
		}
		n++
		f.c.log.Warn("controller: federation relationship write refused", "op", op, "trust_domain", td,
			"code", codes.Code(st.GetCode()).String(), "message", st.GetMessage())
	}
	return n
}
