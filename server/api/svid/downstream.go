package svid

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/issuer"
	"github.com/signet-id/signet/server/api/apiutil"
	"github.com/signet-id/signet/server/store"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DownstreamCA signs the intermediate CAs of downstream servers
// (*ca.Manager).
type DownstreamCA interface {
	SignDownstreamX509CA(pub crypto.PublicKey, ttl time.Duration) (chain, roots []*x509.Certificate, err error)
}

var _ DownstreamCA = (*ca.Manager)(nil)

// DownstreamEvents is told of every downstream CA signed, if Config.Events
// implements it: callerID is the downstream server's SPIFFE ID,
// entryID its downstream entry.
type DownstreamEvents interface {
	DownstreamCAIssued(ctx context.Context, callerID spiffeid.ID, entryID, serial, authorityID string, expiresAt time.Time)
}

// downstreamEntry returns the downstream entry of the calling downstream
// server: the first entry (by ID) with its SPIFFE ID marked downstream.
func (s *Service) downstreamEntry(ctx context.Context) (spiffeid.ID, *types.Entry, error) {
	id, err := apiutil.CallerDownstream(ctx)
	if err != nil {
		return spiffeid.ID{}, nil, err
	}
	yes := true
	entries, _, err := s.cfg.Store.ListEntries(ctx, store.EntryFilter{BySpiffeID: id, ByDownstream: &yes}, 0, "")
	if err != nil {
		return spiffeid.ID{}, nil, apiutil.StoreError("failed to fetch downstream entries", err, nil, nil, nil)
	}
	if len(entries) == 0 {
		return spiffeid.ID{}, nil, status.Errorf(codes.PermissionDenied, "caller %q has no downstream entry", id)
	}
	return id, entries[0], nil
}

// NewDownstreamX509CA signs the CSR of a downstream server (a SPIRE or
// Signet server nested below this one, authenticated by the X509-SVID of
// a downstream entry) as an intermediate CA of the trust domain (SPIRE SVID
// API). Its TTL is preferred_ttl, else the entry's X509-SVID TTL, else the
// CA TTL; at most the CA TTL and never past the active CA.
func (s *Service) NewDownstreamX509CA(ctx context.Context, req *svidv1.NewDownstreamX509CARequest) (*svidv1.NewDownstreamX509CAResponse, error) {
	if s.cfg.DownstreamCA == nil {
		return nil, status.Error(codes.Unimplemented, "downstream CAs are not configured on this server")
	}
	callerID, entry, err := s.downstreamEntry(ctx)
	if err != nil {
		return nil, err
	}
	if len(req.Csr) == 0 {
		return nil, status.Error(codes.InvalidArgument, "missing CSR")
	}
	if req.PreferredTtl < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "invalid preferred_ttl %d: must not be negative", req.PreferredTtl)
	}
	csr, err := issuer.ParseCSR(req.Csr)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "invalid CSR: %v", err)
	}
	ttl := time.Duration(req.PreferredTtl) * time.Second
	if ttl == 0 {
		ttl = time.Duration(entry.X509SvidTtl) * time.Second
	}
	chain, roots, err := s.cfg.DownstreamCA.SignDownstreamX509CA(csr.PublicKey, ttl)
	switch {
	case errors.Is(err, ca.ErrDownstreamProfile), errors.Is(err, ca.ErrNoActiveX509):
		return nil, status.Errorf(codes.FailedPrecondition, "failed to sign downstream X.509 CA: %v", err)
	case err != nil:
		return nil, status.Errorf(codes.Internal, "failed to sign downstream X.509 CA: %v", err)
	}
	if ev, ok := s.cfg.Events.(DownstreamEvents); ok {
		ev.DownstreamCAIssued(ctx, callerID, entry.Id, chain[0].SerialNumber.String(), ca.IssuerAuthorityID(chain[0]), chain[0].NotAfter)
	}
	s.cfg.Logger.Info("signed downstream X.509 CA", "caller", callerID.String(), "entry_id", entry.Id,
		"subject_key_id", ca.X509AuthorityID(chain[0]), "not_after", chain[0].NotAfter)
	resp := &svidv1.NewDownstreamX509CAResponse{}
	for _, c := range chain {
		resp.CaCertChain = append(resp.CaCertChain, c.Raw)
	}
	for _, r := range roots {
		resp.X509Authorities = append(resp.X509Authorities, r.Raw)
	}
	return resp, nil
}
