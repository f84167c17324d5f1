// Package bundle implements the SPIRE Bundle API (spire.api.server.bundle.v1)
// for Signet: the trust domain's own bundle, built from the CA's
// authorities, and federated bundles kept in the store.
package bundle

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"time"

	bundlecodec "github.com/signet-id/signet/bundle"
	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/server/api/apiutil"
	"github.com/signet-id/signet/server/store"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Source provides the trust domain's own bundle.
type Source interface {
	Bundle() *spiffebundle.Bundle
}

// Publisher adds downstream servers' JWT authorities to the bundle
// (*ca.Manager).
type Publisher interface {
	PublishJWTAuthority(a ca.JWTAuthority) ([]ca.JWTAuthority, error)
}

var _ Publisher = (*ca.Manager)(nil)

// Store keeps federated bundles.
type Store interface {
	CreateBundle(ctx context.Context, b *types.Bundle) (*types.Bundle, error)
	GetBundle(ctx context.Context, td spiffeid.TrustDomain) (*types.Bundle, error)
	SetBundle(ctx context.Context, b *types.Bundle) (*types.Bundle, error)
	DeleteBundle(ctx context.Context, td spiffeid.TrustDomain, mode store.BundleDeleteMode) error
	ListBundles(ctx context.Context, pageSize int, pageToken string) ([]*types.Bundle, string, error)
	CountBundles(ctx context.Context) (int, error)
}

// Config configures the service.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	Source      Source
	Store       Store
	// Publisher, if set, serves PublishJWTAuthority.
	Publisher Publisher
	Logger    *slog.Logger
}

// Service implements bundlev1.BundleServer.
type Service struct {
	bundlev1.UnsafeBundleServer
	cfg Config
}

var _ bundlev1.BundleServer = (*Service)(nil)

// New returns the service.
func New(cfg Config) *Service {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg}
}

func applyMask(b *types.Bundle, m *types.BundleMask) *types.Bundle {
	if m == nil {
		return b
	}
	out := &types.Bundle{TrustDomain: b.TrustDomain}
	if m.X509Authorities {
		out.X509Authorities = b.X509Authorities
	}
	if m.JwtAuthorities {
		out.JwtAuthorities = b.JwtAuthorities
	}
	if m.RefreshHint {
		out.RefreshHint = b.RefreshHint
	}
	if m.SequenceNumber {
		out.SequenceNumber = b.SequenceNumber
	}
	return out
}

// lifecycle is implemented by sources that know their authorities'
// lifecycle (ca.Manager): SPIRE publishes each JWT key's expiry and marks
// tainted authorities, so that agents replace what they signed.
type lifecycle interface {
	X509Authorities() []ca.AuthorityInfo
	JWTAuthorities() []ca.AuthorityInfo
}

var _ lifecycle = (*ca.Manager)(nil)

// GetBundle returns the trust domain's own bundle, with each JWT key's
// expiry and the tainted flags of its authorities.
func (s *Service) GetBundle(ctx context.Context, req *bundlev1.GetBundleRequest) (*types.Bundle, error) {
	b, err := bundlecodec.ToProto(s.cfg.Source.Bundle())
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if lc, ok := s.cfg.Source.(lifecycle); ok {
		addLifecycle(b, lc)
	}
	return applyMask(b, req.OutputMask), nil
}

// addLifecycle sets the JWT keys' expiry and the tainted flags.
func addLifecycle(b *types.Bundle, lc lifecycle) {
	tainted := map[string]bool{}
	for _, a := range lc.X509Authorities() {
		tainted[a.ID] = a.Tainted
	}
	for _, a := range b.X509Authorities {
		if c, err := x509.ParseCertificate(a.Asn1); err == nil {
			a.Tainted = tainted[ca.X509AuthorityID(c)]
		}
	}
	jwt := map[string]ca.AuthorityInfo{}
	for _, a := range lc.JWTAuthorities() {
		jwt[a.ID] = a
	}
	for _, k := range b.JwtAuthorities {
		if a, ok := jwt[k.KeyId]; ok {
			k.ExpiresAt = a.NotAfter.Unix()
			k.Tainted = a.Tainted
		}
	}
}

// CountBundles counts the federated bundles.
func (s *Service) CountBundles(ctx context.Context, _ *bundlev1.CountBundlesRequest) (*bundlev1.CountBundlesResponse, error) {
	n, err := s.cfg.Store.CountBundles(ctx)
	if err != nil {
		return nil, apiutil.StoreError("failed to count bundles", err, nil, nil, nil)
	}
	return &bundlev1.CountBundlesResponse{Count: int32(n + 1)}, nil
}

// ListFederatedBundles lists the federated bundles, paginated.
func (s *Service) ListFederatedBundles(ctx context.Context, req *bundlev1.ListFederatedBundlesRequest) (*bundlev1.ListFederatedBundlesResponse, error) {
	// As in SPIRE, a page size below one lists everything at once.
	bs, next, err := s.cfg.Store.ListBundles(ctx, max(int(req.PageSize), 0), req.PageToken)
	if err != nil {
		if errors.Is(err, store.ErrInvalid) {
			return nil, status.Errorf(codes.InvalidArgument, "invalid page_token: %v", err)
		}
		return nil, apiutil.StoreError("failed to list bundles", err, nil, nil, nil)
	}
	out := &bundlev1.ListFederatedBundlesResponse{NextPageToken: next}
	for _, b := range bs {
		out.Bundles = append(out.Bundles, applyMask(b, req.OutputMask))
	}
	return out, nil
}

func (s *Service) federatedTD(name string) (spiffeid.TrustDomain, error) {
	td, err := spiffeid.TrustDomainFromString(name)
	if err != nil {
		return td, status.Errorf(codes.InvalidArgument, "trust domain argument is not valid: %v", err)
	}
	if td == s.cfg.TrustDomain {
		return td, status.Errorf(codes.InvalidArgument, "%q is this server's own trust domain, not a federated one; use GetBundle", name)
	}
	return td, nil
}

// GetFederatedBundle returns the bundle of one federated trust domain.
func (s *Service) GetFederatedBundle(ctx context.Context, req *bundlev1.GetFederatedBundleRequest) (*types.Bundle, error) {
	td, err := s.federatedTD(req.TrustDomain)
	if err != nil {
		return nil, err
	}
	b, err := s.cfg.Store.GetBundle(ctx, td)
	if err != nil {
		return nil, apiutil.StoreError("bundle for "+td.Name(), err, store.ErrNotFound, nil, nil)
	}
	return applyMask(b, req.OutputMask), nil
}

func batchStatus(err error) *types.Status {
	if err == nil {
		return &types.Status{Code: int32(codes.OK), Message: "OK"}
	}
	st := status.Convert(err)
	return &types.Status{Code: int32(st.Code()), Message: st.Message()}
}

// checkFederated validates a federated bundle from a request.
func (s *Service) checkFederated(b *types.Bundle) (*types.Bundle, error) {
	if b == nil {
		return nil, status.Error(codes.InvalidArgument, "missing bundle")
	}
	td, err := s.federatedTD(b.TrustDomain)
	if err != nil {
		return nil, err
	}
	if _, err := bundlecodec.FromProto(b); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "failed to convert bundle: %v", err)
	}
	out := proto.Clone(b).(*types.Bundle)
	out.TrustDomain = td.Name()
	return out, nil
}

// BatchCreateFederatedBundle creates federated bundles, one status per
// bundle; an existing trust domain is AlreadyExists.
func (s *Service) BatchCreateFederatedBundle(ctx context.Context, req *bundlev1.BatchCreateFederatedBundleRequest) (*bundlev1.BatchCreateFederatedBundleResponse, error) {
	resp := &bundlev1.BatchCreateFederatedBundleResponse{}
	for _, in := range req.Bundle {
		b, err := s.checkFederated(in)
		if err == nil {
			if _, err = s.cfg.Store.CreateBundle(ctx, b); err != nil {
				err = apiutil.StoreError("bundle", err, nil, store.ErrAlreadyExists, nil)
			}
		}
		r := &bundlev1.BatchCreateFederatedBundleResponse_Result{Status: batchStatus(err)}
		if err == nil {
			r.Bundle = applyMask(b, req.OutputMask)
		}
		resp.Results = append(resp.Results, r)
	}
	return resp, nil
}

// BatchUpdateFederatedBundle updates existing federated bundles (the
// fields in the input mask), one status per bundle.
func (s *Service) BatchUpdateFederatedBundle(ctx context.Context, req *bundlev1.BatchUpdateFederatedBundleRequest) (*bundlev1.BatchUpdateFederatedBundleResponse, error) {
	resp := &bundlev1.BatchUpdateFederatedBundleResponse{}
	for _, in := range req.Bundle {
		b, err := s.checkFederated(in)
		if err == nil {
			var cur *types.Bundle
			cur, err = s.cfg.Store.GetBundle(ctx, spiffeid.RequireTrustDomainFromString(b.TrustDomain))
			if err != nil {
				err = apiutil.StoreError("bundle", err, store.ErrNotFound, nil, nil)
			} else {
				b = mergeMask(cur, b, req.InputMask)
				if _, err = s.cfg.Store.SetBundle(ctx, b); err != nil {
					err = apiutil.StoreError("bundle", err, store.ErrNotFound, nil, store.ErrConflict)
				}
			}
		}
		r := &bundlev1.BatchUpdateFederatedBundleResponse_Result{Status: batchStatus(err)}
		if err == nil {
			r.Bundle = applyMask(b, req.OutputMask)
		}
		resp.Results = append(resp.Results, r)
	}
	return resp, nil
}

func mergeMask(cur, in *types.Bundle, m *types.BundleMask) *types.Bundle {
	if m == nil {
		return in
	}
	out := proto.Clone(cur).(*types.Bundle)
	if m.X509Authorities {
		out.X509Authorities = in.X509Authorities
	}
	if m.JwtAuthorities {
		out.JwtAuthorities = in.JwtAuthorities
	}
	if m.RefreshHint {
		out.RefreshHint = in.RefreshHint
	}
	if m.SequenceNumber {
		out.SequenceNumber = in.SequenceNumber
	}
	return out
}

// BatchSetFederatedBundle creates or replaces federated bundles, one
// status per bundle.
func (s *Service) BatchSetFederatedBundle(ctx context.Context, req *bundlev1.BatchSetFederatedBundleRequest) (*bundlev1.BatchSetFederatedBundleResponse, error) {
	resp := &bundlev1.BatchSetFederatedBundleResponse{}
	for _, in := range req.Bundle {
		b, err := s.checkFederated(in)
		if err == nil {
			if _, err = s.cfg.Store.SetBundle(ctx, b); err != nil {
				err = apiutil.StoreError("bundle", err, nil, nil, store.ErrConflict)
			}
		}
		r := &bundlev1.BatchSetFederatedBundleResponse_Result{Status: batchStatus(err)}
		if err == nil {
			r.Bundle = applyMask(b, req.OutputMask)
		}
		resp.Results = append(resp.Results, r)
	}
	return resp, nil
}

// BatchDeleteFederatedBundle deletes federated bundles, one status per
// trust domain.
func (s *Service) BatchDeleteFederatedBundle(ctx context.Context, req *bundlev1.BatchDeleteFederatedBundleRequest) (*bundlev1.BatchDeleteFederatedBundleResponse, error) {
	resp := &bundlev1.BatchDeleteFederatedBundleResponse{}
	var mode store.BundleDeleteMode
	switch req.Mode {
	case bundlev1.BatchDeleteFederatedBundleRequest_RESTRICT:
		mode = store.BundleDeleteRestrict
	case bundlev1.BatchDeleteFederatedBundleRequest_DELETE:
		mode = store.BundleDeleteEntries
	case bundlev1.BatchDeleteFederatedBundleRequest_DISSOCIATE:
		mode = store.BundleDeleteDissociate
	default:
		return nil, status.Errorf(codes.InvalidArgument, "unknown delete mode %v", req.Mode)
	}
	for _, name := range req.TrustDomains {
		td, err := s.federatedTD(name)
		if err == nil {
			if err = s.cfg.Store.DeleteBundle(ctx, td, mode); err != nil {
				if errors.Is(err, store.ErrInUse) {
					err = status.Errorf(codes.FailedPrecondition, "bundle for %s is still used by entries that federate with it; delete with mode DELETE or DISSOCIATE", td.Name())
				} else {
					err = apiutil.StoreError("bundle for "+td.Name(), err, store.ErrNotFound, nil, nil)
				}
			}
		}
		resp.Results = append(resp.Results, &bundlev1.BatchDeleteFederatedBundleResponse_Result{Status: batchStatus(err), TrustDomain: name})
	}
	return resp, nil
}

// AppendBundle serves downstream servers, which Signet does not support
// yet: Unimplemented.
func (s *Service) AppendBundle(context.Context, *bundlev1.AppendBundleRequest) (*types.Bundle, error) {
	return nil, status.Error(codes.Unimplemented, "appending to the local bundle is not supported: Signet manages its own authorities")
}

// PublishJWTAuthority adds a downstream server's JWT authority to the
// trust domain's bundle (SPIRE Bundle API, downstream callers) and returns
// the bundle's JWT authorities.
func (s *Service) PublishJWTAuthority(ctx context.Context, req *bundlev1.PublishJWTAuthorityRequest) (*bundlev1.PublishJWTAuthorityResponse, error) {
	if s.cfg.Publisher == nil {
		return nil, status.Error(codes.Unimplemented, "publishing JWT authorities is not configured on this server")
	}
	k := req.JwtAuthority
	if k == nil {
		return nil, status.Error(codes.InvalidArgument, "missing JWT authority")
	}
	if len(k.PublicKey) == 0 {
		return nil, status.Error(codes.InvalidArgument, "invalid JWT authority: missing public key")
	}
	pub, err := x509.ParsePKIXPublicKey(k.PublicKey)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "invalid JWT authority %q: public key: %v", k.KeyId, err)
	}
	var notAfter time.Time
	if k.ExpiresAt > 0 {
		notAfter = time.Unix(k.ExpiresAt, 0)
	}
	keys, err := s.cfg.Publisher.PublishJWTAuthority(ca.JWTAuthority{KeyID: k.KeyId, PublicKey: pub, NotAfter: notAfter})
	switch {
	case errors.Is(err, ca.ErrInvalidJWTAuthority):
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	case errors.Is(err, ca.ErrJWTKeyIDInUse):
		return nil, status.Errorf(codes.AlreadyExists, "%v", err)
	case errors.Is(err, ca.ErrTooManyJWTKeys):
		return nil, status.Errorf(codes.ResourceExhausted, "%v", err)
	case err != nil:
		return nil, status.Errorf(codes.Internal, "failed to publish JWT authority: %v", err)
	}
	s.cfg.Logger.Info("published JWT authority", apiutil.CallerAttr(ctx), slog.String("kid", k.KeyId), slog.Time("not_after", notAfter))
	resp := &bundlev1.PublishJWTAuthorityResponse{}
	for _, a := range keys {
		der, err := x509.MarshalPKIXPublicKey(a.PublicKey)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "failed to marshal JWT authority %q: %v", a.KeyID, err)
		}
		resp.JwtAuthorities = append(resp.JwtAuthorities, &types.JWTKey{PublicKey: der, KeyId: a.KeyID, ExpiresAt: a.NotAfter.Unix()})
	}
	return resp, nil
}
