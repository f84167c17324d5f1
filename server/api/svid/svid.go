// Package svid implements the SPIRE SVID API (spire.api.server.svid.v1) for
// Signet: agents obtain X.509-SVIDs and JWT-SVIDs for the entries they are
// authorized for; admins mint SVIDs directly.
package svid

import (
	"context"
	"crypto/x509"
	"log/slog"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/clock"
	"github.com/signet-id/signet/issuer"
	"github.com/signet-id/signet/server/api/apiutil"
	"github.com/signet-id/signet/server/store"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// MaxBatch bounds the number of SVIDs one BatchNewX509SVID call may request.
const MaxBatch = 1000

// Store is the state the service needs.
type Store interface {
	GetAgent(ctx context.Context, id spiffeid.ID) (*types.Agent, error)
	AuthorizedEntries(ctx context.Context, agentID spiffeid.ID, selectors []*types.Selector) ([]*types.Entry, error)
	ListEntries(ctx context.Context, f store.EntryFilter, pageSize int, pageToken string) ([]*types.Entry, string, error)
}

// Issuer mints SVIDs.
type Issuer interface {
	X509SVID(p issuer.X509Params) ([]*x509.Certificate, error)
	JWTSVID(p issuer.JWTParams) (string, time.Time, error)
}

// Events receives issuance events (for the rotation event log and for
// tracking which authority signed the SVIDs agents hold). agentID and
// entryID are zero and empty for admin mints; authorityID is the issuing
// CA's authority ID (ca.IssuerAuthorityID of the leaf).
type Events interface {
	SVIDIssued(ctx context.Context, agentID spiffeid.ID, entryID string, id spiffeid.ID, serial, authorityID string, expiresAt time.Time)
}

// The store's tracker records which authority signed each agent's SVIDs.
var _ Events = (*store.SVIDTracker)(nil)

// Config configures the service.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	Store       Store
	Issuer      Issuer
	Events      Events
	// DownstreamCA, if set, serves NewDownstreamX509CA.
	DownstreamCA DownstreamCA
	// Clock stamps IssuedAt on minted JWT-SVIDs (default the wall
	// clock); give it the issuer's.
	Clock  clock.Clock
	Logger *slog.Logger
}

// Service implements svidv1.SVIDServer.
type Service struct {
	svidv1.UnsafeSVIDServer
	cfg Config
}

var _ svidv1.SVIDServer = (*Service)(nil)

// New returns the service.
func New(cfg Config) *Service {
	cfg.Clock = clock.Or(cfg.Clock)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg}
}

// authorized returns the entries the calling agent may obtain SVIDs for,
// keyed by entry ID.
func (s *Service) authorized(ctx context.Context) (map[string]*types.Entry, error) {
	agentID, err := apiutil.CallerAgent(ctx)
	if err != nil {
		return nil, err
	}
	a, err := s.cfg.Store.GetAgent(ctx, agentID)
	if err != nil {
		return nil, apiutil.StoreError("failed to fetch caller agent", err, store.ErrNotFound, nil, nil)
	}
	entries, err := s.cfg.Store.AuthorizedEntries(ctx, agentID, a.Selectors)
	if err != nil {
		return nil, apiutil.StoreError("failed to fetch authorized entries", err, nil, nil, nil)
	}
	out := make(map[string]*types.Entry, len(entries))
	for _, e := range entries {
		out[e.Id] = e
	}
	return out, nil
}

// BatchNewX509SVID mints one X.509-SVID per parameter, each for an entry
// the calling agent is authorized for (SPIRE SVID API).
func (s *Service) BatchNewX509SVID(ctx context.Context, req *svidv1.BatchNewX509SVIDRequest) (*svidv1.BatchNewX509SVIDResponse, error) {
	if len(req.Params) == 0 {
		return nil, status.Error(codes.InvalidArgument, "missing parameters")
	}
	if len(req.Params) > MaxBatch {
		return nil, status.Errorf(codes.InvalidArgument, "too many parameters: %d, at most %d per call", len(req.Params), MaxBatch)
	}
	entries, err := s.authorized(ctx)
	if err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(req.Params))
	resp := &svidv1.BatchNewX509SVIDResponse{}
	for _, p := range req.Params {
		resp.Results = append(resp.Results, s.newX509(ctx, p, entries, seen))
	}
	return resp, nil
}

func result(code codes.Code, msg string) *svidv1.BatchNewX509SVIDResponse_Result {
	return &svidv1.BatchNewX509SVIDResponse_Result{Status: &types.Status{Code: int32(code), Message: msg}}
}

func (s *Service) newX509(ctx context.Context, p *svidv1.NewX509SVIDParams, entries map[string]*types.Entry, seen map[string]bool) *svidv1.BatchNewX509SVIDResponse_Result {
	if p == nil || p.EntryId == "" {
		return result(codes.InvalidArgument, "missing entry ID")
	}
	if seen[p.EntryId] {
		return result(codes.InvalidArgument, "entry ID "+p.EntryId+" requested more than once in this batch")
	}
	seen[p.EntryId] = true
	if len(p.Csr) == 0 {
		return result(codes.InvalidArgument, "missing CSR")
	}
	e, ok := entries[p.EntryId]
	if !ok {
		return result(codes.NotFound, "entry "+p.EntryId+" not found or not authorized for this agent")
	}
	csr, err := issuer.ParseCSRInfo(p.Csr)
	if err != nil {
		return result(codes.InvalidArgument, "malformed CSR: "+err.Error())
	}
	id, err := apiutil.IDFromProto("entry spiffe_id", s.cfg.TrustDomain, e.SpiffeId)
	if err != nil {
		return result(codes.Internal, "stored entry is invalid: "+err.Error())
	}
	chain, err := s.cfg.Issuer.X509SVID(issuer.X509Params{
		ID:           id,
		PublicKey:    csr.PublicKey,
		AltPublicKey: csr.AltPublicKey,
		TTL:          time.Duration(e.X509SvidTtl) * time.Second,
		DNSNames:     e.DnsNames,
	})
	if err != nil {
		return result(codes.Internal, "failed to sign X509-SVID: "+err.Error())
	}
	if s.cfg.Events != nil {
		agentID, _ := apiutil.CallerAgent(ctx)
		s.cfg.Events.SVIDIssued(ctx, agentID, e.Id, id, chain[0].SerialNumber.String(), ca.IssuerAuthorityID(chain[0]), chain[0].NotAfter)
	}
	return &svidv1.BatchNewX509SVIDResponse_Result{
		Status: &types.Status{Code: int32(codes.OK), Message: "OK"},
		Svid:   apiutil.X509SVIDToProto(id, chain),
	}
}

// NewJWTSVID mints a JWT-SVID for an entry the calling agent is authorized
// for (SPIRE SVID API).
func (s *Service) NewJWTSVID(ctx context.Context, req *svidv1.NewJWTSVIDRequest) (*svidv1.NewJWTSVIDResponse, error) {
	if req.EntryId == "" {
		return nil, status.Error(codes.InvalidArgument, "missing entry ID")
	}
	if err := checkAudience(req.Audience); err != nil {
		return nil, err
	}
	entries, err := s.authorized(ctx)
	if err != nil {
		return nil, err
	}
	e, ok := entries[req.EntryId]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "entry %s not found or not authorized for this agent", req.EntryId)
	}
	id, err := apiutil.IDFromProto("entry spiffe_id", s.cfg.TrustDomain, e.SpiffeId)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "stored entry is invalid: %v", err)
	}
	svid, err := s.mintJWT(id, req.Audience, time.Duration(e.JwtSvidTtl)*time.Second)
	if err != nil {
		return nil, err
	}
	return &svidv1.NewJWTSVIDResponse{Svid: svid}, nil
}

// MintX509SVID mints an X.509-SVID for the SPIFFE ID of a CSR, without a
// registration entry (SPIRE SVID API, admin callers).
func (s *Service) MintX509SVID(ctx context.Context, req *svidv1.MintX509SVIDRequest) (*svidv1.MintX509SVIDResponse, error) {
	if len(req.Csr) == 0 {
		return nil, status.Error(codes.InvalidArgument, "missing CSR")
	}
	if req.Ttl < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "invalid ttl %d: must not be negative", req.Ttl)
	}
	info, err := issuer.ParseCSRInfo(req.Csr)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "malformed CSR: %v", err)
	}
	csr := info.Request
	if len(csr.URIs) != 1 {
		return nil, status.Errorf(codes.InvalidArgument, "CSR must have exactly one URI SAN, the SPIFFE ID (found %d)", len(csr.URIs))
	}
	id, err := spiffeid.FromURI(csr.URIs[0])
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "CSR URI SAN is not a valid SPIFFE ID: %v", err)
	}
	if id.TrustDomain() != s.cfg.TrustDomain {
		return nil, status.Errorf(codes.InvalidArgument, "CSR SPIFFE ID %q is not a member of trust domain %q", id, s.cfg.TrustDomain)
	}
	if id.Path() == "" {
		return nil, status.Errorf(codes.InvalidArgument, "CSR SPIFFE ID %q has no path", id)
	}
	if err := checkMintID(id); err != nil {
		return nil, err
	}
	if len(csr.DNSNames) > store.MaxDNSNamesPerEntry {
		return nil, status.Errorf(codes.InvalidArgument, "CSR has %d DNS names, at most %d", len(csr.DNSNames), store.MaxDNSNamesPerEntry)
	}
	for _, dns := range csr.DNSNames {
		if err := apiutil.CheckDNSName(dns); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "CSR DNS name %q: %v", dns, err)
		}
	}
	chain, err := s.cfg.Issuer.X509SVID(issuer.X509Params{ID: id, PublicKey: info.PublicKey, AltPublicKey: info.AltPublicKey, TTL: time.Duration(req.Ttl) * time.Second, DNSNames: csr.DNSNames, Subject: csr.Subject})
	if err != nil {
		return nil, status.Errorf(codes.Internal, "failed to sign X509-SVID: %v", err)
	}
	if s.cfg.Events != nil {
		s.cfg.Events.SVIDIssued(ctx, spiffeid.ID{}, "", id, chain[0].SerialNumber.String(), ca.IssuerAuthorityID(chain[0]), chain[0].NotAfter)
	}
	return &svidv1.MintX509SVIDResponse{Svid: apiutil.X509SVIDToProto(id, chain)}, nil
}

// MintJWTSVID mints a JWT-SVID for a SPIFFE ID of the trust domain, without
// a registration entry (SPIRE SVID API, admin callers).
func (s *Service) MintJWTSVID(ctx context.Context, req *svidv1.MintJWTSVIDRequest) (*svidv1.MintJWTSVIDResponse, error) {
	id, err := apiutil.IDFromProto("SPIFFE ID", s.cfg.TrustDomain, req.Id)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if id.Path() == "" {
		return nil, status.Errorf(codes.InvalidArgument, "invalid SPIFFE ID: %q has no path", id)
	}
	if err := checkMintID(id); err != nil {
		return nil, err
	}
	if err := checkAudience(req.Audience); err != nil {
		return nil, err
	}
	if req.Ttl < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "invalid ttl %d: must not be negative", req.Ttl)
	}
	svid, err := s.mintJWT(id, req.Audience, time.Duration(req.Ttl)*time.Second)
	if err != nil {
		return nil, err
	}
	return &svidv1.MintJWTSVIDResponse{Svid: svid}, nil
}

func (s *Service) mintJWT(id spiffeid.ID, aud []string, ttl time.Duration) (*types.JWTSVID, error) {
	tok, exp, err := s.cfg.Issuer.JWTSVID(issuer.JWTParams{ID: id, Audience: aud, TTL: ttl})
	if err != nil {
		return nil, status.Errorf(codes.Internal, "failed to sign JWT-SVID: %v", err)
	}
	return &types.JWTSVID{Token: tok, Id: apiutil.IDToProto(id), ExpiresAt: exp.Unix(), IssuedAt: s.cfg.Clock.Now().Unix()}, nil
}

func checkAudience(aud []string) error {
	if len(aud) == 0 {
		return status.Error(codes.InvalidArgument, "at least one audience is required")
	}
	if len(aud) > MaxAudiences {
		return status.Errorf(codes.InvalidArgument, "too many audiences: %d, at most %d per JWT-SVID", len(aud), MaxAudiences)
	}
	for _, a := range aud {
		if a == "" {
			return status.Error(codes.InvalidArgument, "audience must not contain empty values")
		}
		if len(a) > MaxAudienceLength {
			return status.Errorf(codes.InvalidArgument, "audience of %d bytes, at most %d", len(a), MaxAudienceLength)
		}
	}
	return nil
}
