package spire

import (
	"context"
	"testing"

	trustdomainv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/trustdomain/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

func webRelationship(trustDomain, url string) *types.FederationRelationship {
	return &types.FederationRelationship{TrustDomain: trustDomain, BundleEndpointUrl: url,
		BundleEndpointProfile: &types.FederationRelationship_HttpsWeb{HttpsWeb: &types.HTTPSWebProfile{}}}
}

func spiffeRelationship(trustDomain, url, id string) *types.FederationRelationship {
	return &types.FederationRelationship{TrustDomain: trustDomain, BundleEndpointUrl: url,
		BundleEndpointProfile: &types.FederationRelationship_HttpsSpiffe{HttpsSpiffe: &types.HTTPSSPIFFEProfile{EndpointSpiffeId: id}}}
}

// TestTrustDomainAPISemanticsAgainstSPIRE makes the same TrustDomain API
// calls against a Signet server and a real spire-server and compares the
// status codes (whole call and per item), responses, masks and
// pagination.
func TestTrustDomainAPISemanticsAgainstSPIRE(t *testing.T) {
	bins := spireBinaries(t)
	ss := startSPIREServer(t, bins)
	sgs := startSignet(t, signetOptions{})
	sg := newBackend(t, "signet", bins.server, sgs.AdminSocket(), sgs.AgentAddr().String())
	sp := newBackend(t, "spire", bins.server, ss.socket, ss.addr)
	client := func(b *backend) trustdomainv1.TrustDomainClient { return trustdomainv1.NewTrustDomainClient(b.admin) }
	withBundle := spiffeRelationship("b.example", "https://127.0.0.1:1", "spiffe://b.example/spire/server")
	withBundle.TrustDomainBundle = federatedBundle(t, "b.example")
	mismatch := webRelationship("c.example", "https://c.example")
	mismatch.TrustDomainBundle = federatedBundle(t, "d.example")
	get := func(name string, mask *types.FederationRelationshipMask) func(context.Context, *backend) (any, error) {
		return func(ctx context.Context, b *backend) (any, error) {
			return client(b).GetFederationRelationship(ctx, &trustdomainv1.GetFederationRelationshipRequest{TrustDomain: name, OutputMask: mask})
		}
	}
	runAPICases(t, sg, sp, []apiCase{
		{name: "BatchCreateFederationRelationship per-item status", call: func(ctx context.Context, b *backend) (any, error) {
			r, err := client(b).BatchCreateFederationRelationship(ctx, &trustdomainv1.BatchCreateFederationRelationshipRequest{
				FederationRelationships: []*types.FederationRelationship{
					webRelationship("a.example", "https://a.example/bundle"),
					withBundle,
					webRelationship(td.Name(), "https://own.example"),
					webRelationship("Bad Name", "https://x.example"),
					webRelationship("c.example", "http://c.example"),
					webRelationship("c.example", "https://"),
					webRelationship("c.example", "https://u:p@c.example"),
					spiffeRelationship("c.example", "https://c.example", "not an id"),
					{TrustDomain: "c.example", BundleEndpointUrl: "https://c.example"},
					mismatch,
					webRelationship("e.example", "https://e.example"),
					webRelationship("f.example", "https://f.example"),
				},
			})
			if err != nil {
				return nil, err
			}
			return codesOf(r.Results), nil
		}},
		{name: "BatchCreateFederationRelationship existing trust domain", call: func(ctx context.Context, b *backend) (any, error) {
			r, err := client(b).BatchCreateFederationRelationship(ctx, &trustdomainv1.BatchCreateFederationRelationshipRequest{
				FederationRelationships: []*types.FederationRelationship{webRelationship("a.example", "https://a.example/other")},
			})
			if err != nil {
				return nil, err
			}
			return codesOf(r.Results), nil
		},
			deviation:  "SPIRE reports its database's UNIQUE constraint as Internal; Signet says AlreadyExists",
			expectDiff: []string{`.response: "0:AlreadyExists" vs "0:Internal"`}},
		{name: "BatchUpdateFederationRelationship unknown trust domain", call: func(ctx context.Context, b *backend) (any, error) {
			r, err := client(b).BatchUpdateFederationRelationship(ctx, &trustdomainv1.BatchUpdateFederationRelationshipRequest{
				FederationRelationships: []*types.FederationRelationship{webRelationship("g.example", "https://g.example")},
			})
			if err != nil {
				return nil, err
			}
			return codesOf(r.Results), nil
		},
			deviation:  "SPIRE reports a missing record as Internal (record not found); Signet says NotFound",
			expectDiff: []string{`.response: "0:NotFound" vs "0:Internal"`}},
		{name: "GetFederationRelationship https_web", call: get("a.example", nil)},
		{name: "GetFederationRelationship https_spiffe with bundle", call: get("b.example", nil)},
		{name: "GetFederationRelationship output mask", call: get("b.example", &types.FederationRelationshipMask{BundleEndpointUrl: true})},
		{name: "GetFederationRelationship unknown", call: get("nope.example", nil)},
		{name: "GetFederationRelationship bad name", call: get("Bad Name", nil)},
		{name: "ListFederationRelationships all", call: func(ctx context.Context, b *backend) (any, error) {
			return client(b).ListFederationRelationships(ctx, &trustdomainv1.ListFederationRelationshipsRequest{OutputMask: &types.FederationRelationshipMask{BundleEndpointUrl: true}})
		}},
		{name: "ListFederationRelationships paginated", call: func(ctx context.Context, b *backend) (any, error) {
			return pages(2, func(token string) ([]string, string, error) {
				r, err := client(b).ListFederationRelationships(ctx, &trustdomainv1.ListFederationRelationshipsRequest{PageSize: 2, PageToken: token})
				if err != nil {
					return nil, "", err
				}
				var names []string
				for _, fr := range r.FederationRelationships {
					names = append(names, fr.TrustDomain)
				}
				return names, r.NextPageToken, nil
			})
		}},
		{name: "BatchUpdateFederationRelationship per-item status", call: func(ctx context.Context, b *backend) (any, error) {
			r, err := client(b).BatchUpdateFederationRelationship(ctx, &trustdomainv1.BatchUpdateFederationRelationshipRequest{
				FederationRelationships: []*types.FederationRelationship{
					spiffeRelationship("a.example", "https://a.example:8443", "spiffe://a.example/spire/server"),
					webRelationship("c.example", "ftp://c.example"),
					{TrustDomain: "e.example", BundleEndpointUrl: "https://e.example"},
				},
			})
			if err != nil {
				return nil, err
			}
			return codesOf(r.Results), nil
		}},
		{name: "BatchUpdateFederationRelationship input mask validates every field", call: func(ctx context.Context, b *backend) (any, error) {
			r, err := client(b).BatchUpdateFederationRelationship(ctx, &trustdomainv1.BatchUpdateFederationRelationshipRequest{
				FederationRelationships: []*types.FederationRelationship{{TrustDomain: "f.example", BundleEndpointUrl: "https://f.example:9443"}},
				InputMask:               &types.FederationRelationshipMask{BundleEndpointUrl: true},
			})
			if err != nil {
				return nil, err
			}
			return codesOf(r.Results), nil
		}},
		{name: "BatchUpdateFederationRelationship input mask applies masked fields", call: func(ctx context.Context, b *backend) (any, error) {
			if _, err := client(b).BatchUpdateFederationRelationship(ctx, &trustdomainv1.BatchUpdateFederationRelationshipRequest{
				FederationRelationships: []*types.FederationRelationship{spiffeRelationship("f.example", "https://f.example:9443", "spiffe://f.example/x")},
				InputMask:               &types.FederationRelationshipMask{BundleEndpointUrl: true},
			}); err != nil {
				return nil, err
			}
			return client(b).GetFederationRelationship(ctx, &trustdomainv1.GetFederationRelationshipRequest{TrustDomain: "f.example"})
		}},
		{name: "BatchDeleteFederationRelationship per-item status", call: func(ctx context.Context, b *backend) (any, error) {
			r, err := client(b).BatchDeleteFederationRelationship(ctx, &trustdomainv1.BatchDeleteFederationRelationshipRequest{TrustDomains: []string{"e.example", "e.example", "", "Bad Name"}})
			if err != nil {
				return nil, err
			}
			return codesOf(r.Results), nil
		}},
		{name: "RefreshBundle unknown", call: func(ctx context.Context, b *backend) (any, error) {
			return client(b).RefreshBundle(ctx, &trustdomainv1.RefreshBundleRequest{TrustDomain: "nope.example"})
		}},
		{name: "RefreshBundle bad name", call: func(ctx context.Context, b *backend) (any, error) {
			return client(b).RefreshBundle(ctx, &trustdomainv1.RefreshBundleRequest{TrustDomain: "Bad Name"})
		}},
		{name: "RefreshBundle unreachable endpoint", call: func(ctx context.Context, b *backend) (any, error) {
			return client(b).RefreshBundle(ctx, &trustdomainv1.RefreshBundleRequest{TrustDomain: "b.example"})
		}},
	})
}
