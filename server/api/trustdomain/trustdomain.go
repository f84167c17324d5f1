// Package trustdomain implements the SPIRE TrustDomain API
// (spire.api.server.trustdomain.v1) for Signet: federation relationships
// kept in the store, and on-demand refreshes of their bundles.
package trustdomain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"

	bundlecodec "github.com/signet-id/signet/bundle"
	"github.com/signet-id/signet/server/api/apiutil"
	"github.com/signet-id/signet/server/store"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	trustdomainv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/trustdomain/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Store keeps federation relationships.
type Store interface {
	CreateRelationship(ctx context.Context, fr *types.FederationRelationship) (*types.FederationRelationship, error)
	UpdateRelationship(ctx context.Context, td spiffeid.TrustDomain, update func(*types.FederationRelationship) error) (*types.FederationRelationship, error)
	GetRelationship(ctx context.Context, td spiffeid.TrustDomain) (*types.FederationRelationship, error)
	ListRelationships(ctx context.Context, pageSize int, pageToken string) ([]*types.FederationRelationship, string, error)
	DeleteRelationship(ctx context.Context, td spiffeid.TrustDomain) error
}

var _ Store = (*store.Store)(nil)

// Refresher fetches federated bundles from their endpoints.
type Refresher interface {
	// Reload makes the refresher re-read the relationships now.
	Reload()
	// Refresh fetches and stores the bundle of td now; managed is false
	// when no relationship with td exists.
	Refresh(ctx context.Context, td spiffeid.TrustDomain) (managed bool, err error)
}

// Config configures the service.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	Store       Store
	Refresher   Refresher
	Logger      *slog.Logger
}

// Service implements trustdomainv1.TrustDomainServer.
type Service struct {
	trustdomainv1.UnsafeTrustDomainServer
	cfg Config
}

var _ trustdomainv1.TrustDomainServer = (*Service)(nil)

// New returns the service.
func New(cfg Config) *Service {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg}
}

var allFields = &types.FederationRelationshipMask{BundleEndpointUrl: true, BundleEndpointProfile: true, TrustDomainBundle: true}

func applyMask(fr *types.FederationRelationship, m *types.FederationRelationshipMask) *types.FederationRelationship {
	if m == nil {
		return fr
	}
	out := &types.FederationRelationship{TrustDomain: fr.TrustDomain}
	if m.BundleEndpointUrl {
		out.BundleEndpointUrl = fr.BundleEndpointUrl
	}
	if m.BundleEndpointProfile {
		out.BundleEndpointProfile = fr.BundleEndpointProfile
	}
	if m.TrustDomainBundle {
		out.TrustDomainBundle = fr.TrustDomainBundle
	}
	return out
}

// ListFederationRelationships lists the relationships, paginated; a page
// size below one lists everything at once, as in SPIRE.
func (s *Service) ListFederationRelationships(ctx context.Context, req *trustdomainv1.ListFederationRelationshipsRequest) (*trustdomainv1.ListFederationRelationshipsResponse, error) {
	frs, next, err := s.cfg.Store.ListRelationships(ctx, max(int(req.PageSize), 0), req.PageToken)
	if err != nil {
		if errors.Is(err, store.ErrInvalid) {
			return nil, status.Errorf(codes.InvalidArgument, "invalid page_token: %v", err)
		}
		return nil, apiutil.StoreError("failed to list federation relationships", err, nil, nil, nil)
	}
	out := &trustdomainv1.ListFederationRelationshipsResponse{NextPageToken: next}
	for _, fr := range frs {
		out.FederationRelationships = append(out.FederationRelationships, applyMask(fr, req.OutputMask))
	}
	return out, nil
}

func parseTD(name string) (spiffeid.TrustDomain, error) {
	if name == "" {
		return spiffeid.TrustDomain{}, status.Error(codes.InvalidArgument, "missing trust domain")
	}
	td, err := spiffeid.TrustDomainFromString(name)
	if err != nil {
		return td, status.Errorf(codes.InvalidArgument, "failed to parse trust domain: %v", err)
	}
	return td, nil
}

// GetFederationRelationship returns one relationship.
func (s *Service) GetFederationRelationship(ctx context.Context, req *trustdomainv1.GetFederationRelationshipRequest) (*types.FederationRelationship, error) {
	td, err := parseTD(req.TrustDomain)
	if err != nil {
		return nil, err
	}
	fr, err := s.cfg.Store.GetRelationship(ctx, td)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, status.Error(codes.NotFound, "federation relationship does not exist")
		}
		return nil, apiutil.StoreError("failed to fetch federation relationship", err, nil, nil, nil)
	}
	return applyMask(fr, req.OutputMask), nil
}

func batchStatus(err error) *types.Status {
	if err == nil {
		return &types.Status{Code: int32(codes.OK), Message: "OK"}
	}
	st := status.Convert(err)
	return &types.Status{Code: int32(st.Code()), Message: st.Message()}
}

// check validates the fields of fr that mask selects (all when nil) as
// SPIRE does, and returns a normalized copy. (Both create and update
// validate every field, as SPIRE; the mask parameter is kept for callers
// that validate partially.)
func (s *Service) check(fr *types.FederationRelationship, mask *types.FederationRelationshipMask) (*types.FederationRelationship, error) {
	if fr == nil {
		return nil, status.Error(codes.InvalidArgument, "failed to convert federation relationship: missing federation relationship")
	}
	if mask == nil {
		mask = allFields
	}
	invalid := func(format string, args ...any) error {
		return status.Errorf(codes.InvalidArgument, "failed to convert federation relationship: "+format, args...)
	}
	td, err := spiffeid.TrustDomainFromString(fr.TrustDomain)
	if err != nil {
		return nil, invalid("failed to parse trust domain: %v", err)
	}
	if td == s.cfg.TrustDomain {
		return nil, status.Errorf(codes.InvalidArgument, "unable to create or update a federation relationship for the server trust domain %q", td.Name())
	}
	out := proto.Clone(fr).(*types.FederationRelationship)
	out.TrustDomain = td.Name()
	if mask.BundleEndpointUrl {
		if err := CheckEndpointURL(fr.BundleEndpointUrl); err != nil {
			return nil, invalid("%v", err)
		}
	}
	if mask.BundleEndpointProfile {
		switch p := fr.BundleEndpointProfile.(type) {
		case *types.FederationRelationship_HttpsSpiffe:
			if p.HttpsSpiffe == nil {
				return nil, invalid("bundle endpoint profile does not contain \"HttpsSpiffe\"")
			}
			id, err := spiffeid.FromString(p.HttpsSpiffe.EndpointSpiffeId)
			if err != nil {
				return nil, invalid("failed to parse endpoint SPIFFE ID: %v", err)
			}
			out.BundleEndpointProfile = &types.FederationRelationship_HttpsSpiffe{HttpsSpiffe: &types.HTTPSSPIFFEProfile{EndpointSpiffeId: id.String()}}
		case *types.FederationRelationship_HttpsWeb:
			out.BundleEndpointProfile = &types.FederationRelationship_HttpsWeb{HttpsWeb: &types.HTTPSWebProfile{}}
		default:
			return nil, invalid("unsupported bundle endpoint profile type: %T (use https_web or https_spiffe)", fr.BundleEndpointProfile)
		}
	}
	if mask.TrustDomainBundle && fr.TrustDomainBundle != nil {
		if _, err := bundlecodec.FromProto(fr.TrustDomainBundle); err != nil {
			return nil, invalid("failed to parse bundle: %v", err)
		}
		btd, err := spiffeid.TrustDomainFromString(fr.TrustDomainBundle.TrustDomain)
		if err != nil || btd != td {
			return nil, invalid("trust domain bundle (%q) must match the trust domain of the federation relationship (%q)", fr.TrustDomainBundle.TrustDomain, td.Name())
		}
		out.TrustDomainBundle.TrustDomain = td.Name()
	} else {
		out.TrustDomainBundle = nil
	}
	return out, nil
}

// CheckEndpointURL validates a bundle endpoint URL as SPIRE does: https,
// a host, no user info.
func CheckEndpointURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return fmt.Errorf("failed to parse bundle endpoint URL: %w", err)
	case u.Scheme != "https":
		return errors.New("bundle endpoint URL must use the https scheme")
	case u.Host == "":
		return errors.New("bundle endpoint URL must specify the host")
	case u.User != nil:
		return errors.New("bundle endpoint URL must not contain user info")
	}
	return nil
}

// BatchCreateFederationRelationship creates relationships, one status
// each; a relationship's trust domain bundle, if given, is set as the
// federated bundle.
func (s *Service) BatchCreateFederationRelationship(ctx context.Context, req *trustdomainv1.BatchCreateFederationRelationshipRequest) (*trustdomainv1.BatchCreateFederationRelationshipResponse, error) {
	resp := &trustdomainv1.BatchCreateFederationRelationshipResponse{}
	changed := false
	for _, in := range req.FederationRelationships {
		fr, err := s.check(in, nil)
		if err == nil {
			if fr, err = s.cfg.Store.CreateRelationship(ctx, fr); err != nil {
				err = apiutil.StoreError("failed to create federation relationship", err, nil, store.ErrAlreadyExists, nil)
			}
		}
		r := &trustdomainv1.BatchCreateFederationRelationshipResponse_Result{Status: batchStatus(err)}
		if err == nil {
			changed = true
			r.FederationRelationship = applyMask(fr, req.OutputMask)
			s.logChange(ctx, "federation relationship created", fr)
		}
		resp.Results = append(resp.Results, r)
	}
	if changed {
		s.cfg.Refresher.Reload()
	}
	return resp, nil
}

// BatchUpdateFederationRelationship updates the fields of the input mask
// (all when none) of existing relationships, one status each.
func (s *Service) BatchUpdateFederationRelationship(ctx context.Context, req *trustdomainv1.BatchUpdateFederationRelationshipRequest) (*trustdomainv1.BatchUpdateFederationRelationshipResponse, error) {
	mask := req.InputMask
	if mask == nil {
		mask = allFields
	}
	resp := &trustdomainv1.BatchUpdateFederationRelationshipResponse{}
	changed := false
	for _, in := range req.FederationRelationships {
		// As SPIRE, every field is validated whatever the mask; only the
		// masked ones are applied.
		fr, err := s.check(in, nil)
		if err == nil {
			fr, err = s.cfg.Store.UpdateRelationship(ctx, spiffeid.RequireTrustDomainFromString(fr.TrustDomain), func(cur *types.FederationRelationship) error {
				if mask.BundleEndpointUrl {
					cur.BundleEndpointUrl = fr.BundleEndpointUrl
				}
				if mask.BundleEndpointProfile {
					cur.BundleEndpointProfile = fr.BundleEndpointProfile
				}
				if mask.TrustDomainBundle && fr.TrustDomainBundle != nil {
					cur.TrustDomainBundle = fr.TrustDomainBundle
				}
				return nil
			})
			if err != nil {
				if errors.Is(err, store.ErrNotFound) {
					err = status.Error(codes.NotFound, "failed to update federation relationship: federation relationship does not exist")
				} else {
					err = apiutil.StoreError("failed to update federation relationship", err, nil, nil, store.ErrConflict)
				}
			}
		}
		r := &trustdomainv1.BatchUpdateFederationRelationshipResponse_Result{Status: batchStatus(err)}
		if err == nil {
			changed = true
			r.FederationRelationship = applyMask(fr, req.OutputMask)
			s.logChange(ctx, "federation relationship updated", fr)
		}
		resp.Results = append(resp.Results, r)
	}
	if changed {
		s.cfg.Refresher.Reload()
	}
	return resp, nil
}

// BatchDeleteFederationRelationship deletes relationships, one status per
// trust domain; their bundles stay (delete them with the Bundle API).
func (s *Service) BatchDeleteFederationRelationship(ctx context.Context, req *trustdomainv1.BatchDeleteFederationRelationshipRequest) (*trustdomainv1.BatchDeleteFederationRelationshipResponse, error) {
	resp := &trustdomainv1.BatchDeleteFederationRelationshipResponse{}
	changed := false
	for _, name := range req.TrustDomains {
		td, err := parseTD(name)
		if err == nil {
			if err = s.cfg.Store.DeleteRelationship(ctx, td); err != nil {
				if errors.Is(err, store.ErrNotFound) {
					err = status.Error(codes.NotFound, "federation relationship not found")
				} else {
					err = apiutil.StoreError("failed to delete federation relationship", err, nil, nil, nil)
				}
			}
		}
		r := &trustdomainv1.BatchDeleteFederationRelationshipResponse_Result{Status: batchStatus(err), TrustDomain: name}
		if err == nil {
			changed = true
			r.TrustDomain = td.Name()
			s.cfg.Logger.InfoContext(ctx, "federation relationship deleted", "trust_domain", td.Name())
		}
		resp.Results = append(resp.Results, r)
	}
	if changed {
		s.cfg.Refresher.Reload()
	}
	return resp, nil
}

// RefreshBundle fetches the bundle of a related trust domain now. A fetch
// that fails leaves the stored bundle as it was; the status says why.
func (s *Service) RefreshBundle(ctx context.Context, req *trustdomainv1.RefreshBundleRequest) (*emptypb.Empty, error) {
	td, err := parseTD(req.TrustDomain)
	if err != nil {
		return nil, err
	}
	managed, err := s.cfg.Refresher.Refresh(ctx, td)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "failed to refresh bundle: %v", err)
	}
	if !managed {
		return nil, status.Errorf(codes.NotFound, "no relationship with trust domain %q", td.Name())
	}
	return &emptypb.Empty{}, nil
}

func (s *Service) logChange(ctx context.Context, msg string, fr *types.FederationRelationship) {
	attrs := []any{"trust_domain", fr.TrustDomain, "bundle_endpoint_url", fr.BundleEndpointUrl}
	if p, ok := fr.BundleEndpointProfile.(*types.FederationRelationship_HttpsSpiffe); ok {
		attrs = append(attrs, "bundle_endpoint_profile", "https_spiffe", "endpoint_spiffe_id", p.HttpsSpiffe.EndpointSpiffeId)
	} else {
		attrs = append(attrs, "bundle_endpoint_profile", "https_web")
	}
	s.cfg.Logger.InfoContext(ctx, msg, attrs...)
}
