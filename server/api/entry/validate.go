package entry

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/signet-id/signet/server/api/apiutil"
	"github.com/signet-id/signet/server/store"
	"github.com/signet-id/signet/spireid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func okStatus() *types.Status {
	return &types.Status{Code: int32(codes.OK), Message: codes.OK.String()}
}

func errStatus(code codes.Code, msg string) *types.Status {
	return &types.Status{Code: int32(code), Message: msg}
}

// internal logs err and returns a status error for a failed store call.
func (s *Service) internal(ctx context.Context, msg string, err error) error {
	st := s.storeStatus(ctx, msg, err)
	return status.Error(codes.Code(st.Code), st.Message)
}

// storeStatus maps a store error to a per-item status.
func (s *Service) storeStatus(ctx context.Context, msg string, err error) *types.Status {
	switch {
	case errors.Is(err, store.ErrInvalid):
		return errStatus(codes.InvalidArgument, msg+": "+storeMessage(err))
	case errors.Is(err, store.ErrConflict):
		return errStatus(codes.Aborted, msg+": concurrent update, retry")
	case errors.Is(err, context.Canceled):
		return errStatus(codes.Canceled, msg+": "+err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return errStatus(codes.DeadlineExceeded, msg+": "+err.Error())
	default:
		s.log.ErrorContext(ctx, "entry API: "+msg, "error", err)
		return errStatus(codes.Internal, msg+": "+err.Error())
	}
}

// storeMessage strips the store's "store: " prefix and ErrInvalid suffix
// from a validation error.
func storeMessage(err error) string {
	msg := strings.TrimPrefix(err.Error(), "store: ")
	return strings.TrimSuffix(msg, ": "+store.ErrInvalid.Error())
}

// memberID converts a SPIFFE ID message that must name a member of the
// server's trust domain with a non-empty path.
func (s *Service) memberID(p *types.SPIFFEID) (spiffeid.ID, error) {
	if p == nil {
		return spiffeid.ID{}, errors.New("request must specify a SPIFFE ID")
	}
	td, err := spiffeid.TrustDomainFromString(p.TrustDomain)
	if err != nil {
		return spiffeid.ID{}, err
	}
	id, err := spiffeid.FromPath(td, p.Path)
	if err != nil {
		return spiffeid.ID{}, err
	}
	if !id.MemberOf(s.td) {
		return spiffeid.ID{}, fmt.Errorf("%q is not a member of trust domain %q", id, s.td)
	}
	if id.Path() == "" {
		return spiffeid.ID{}, fmt.Errorf("%q is not a member of trust domain %q; path is empty", id, s.td)
	}
	return id, nil
}

// workloadID is memberID outside the reserved /spire namespace.
func (s *Service) workloadID(p *types.SPIFFEID) (spiffeid.ID, error) {
	id, err := s.memberID(p)
	if err != nil {
		return spiffeid.ID{}, err
	}
	if path := id.Path(); spireid.IsReserved(path) {
		return spiffeid.ID{}, fmt.Errorf("%q is not a workload in trust domain %q; path is in the reserved namespace", id, s.td)
	}
	return id, nil
}

func checkSelectors(sels []*types.Selector) error {
	for _, sel := range sels {
		if err := apiutil.CheckSelector(sel); err != nil {
			return err
		}
	}
	return nil
}

// validateEntry checks the fields of e selected by mask (all when nil).
// On create, the entry ID (if set) is checked too.
func (s *Service) validateEntry(e *types.Entry, mask *types.EntryMask, create bool) error {
	if e == nil {
		return errors.New("missing entry")
	}
	all := mask == nil
	if err := s.checkLimits(e, mask); err != nil {
		return err
	}
	if create && e.Id != "" {
		if len(e.Id) > maxEntryIDLength {
			return fmt.Errorf("invalid id: longer than %d characters", maxEntryIDLength)
		}
		for _, r := range e.Id {
			if !(r == '-' || r == '.' || r == '_' || '0' <= r && r <= '9' || 'A' <= r && r <= 'Z' || 'a' <= r && r <= 'z') {
				return fmt.Errorf("invalid id: %q contains invalid characters (allowed: letters, digits, '-', '.', '_')", e.Id)
			}
		}
	}
	if all || mask.SpiffeId {
		if _, err := s.workloadID(e.SpiffeId); err != nil {
			return fmt.Errorf("invalid spiffe_id: %w", err)
		}
	}
	if all || mask.ParentId {
		if _, err := s.memberID(e.ParentId); err != nil {
			return fmt.Errorf("invalid parent_id: %w", err)
		}
	}
	if all || mask.Selectors {
		if len(e.Selectors) == 0 {
			return errors.New("invalid selectors: selector list is empty")
		}
		if err := checkSelectors(e.Selectors); err != nil {
			return fmt.Errorf("invalid selectors: %w", err)
		}
		if (all || mask.StoreSvid) && e.StoreSvid {
			for _, sel := range e.Selectors[1:] {
				if sel.Type != e.Selectors[0].Type {
					return errors.New("invalid selectors: selector types must be the same when store_svid is set")
				}
			}
		}
	}
	if (all || mask.X509SvidTtl) && e.X509SvidTtl < 0 {
		return fmt.Errorf("invalid x509_svid_ttl: %d is negative", e.X509SvidTtl)
	}
	if (all || mask.JwtSvidTtl) && e.JwtSvidTtl < 0 {
		return fmt.Errorf("invalid jwt_svid_ttl: %d is negative", e.JwtSvidTtl)
	}
	if all || mask.DnsNames {
		for _, name := range e.DnsNames {
			if err := apiutil.CheckDNSName(name); err != nil {
				return fmt.Errorf("invalid dns_names: %q: %w", name, err)
			}
		}
	}
	if all || mask.FederatesWith {
		for _, name := range e.FederatesWith {
			if _, err := spiffeid.TrustDomainFromString(name); err != nil {
				return fmt.Errorf("invalid federates_with: %q: %w", name, err)
			}
		}
	}
	if (all || mask.Hint) && len(e.Hint) > maxHintLength {
		return fmt.Errorf("invalid hint: longer than %d characters", maxHintLength)
	}
	return nil
}

// applyMask clears the fields of e not selected by mask; the ID is always
// kept. A nil mask keeps everything.
func applyMask(e *types.Entry, mask *types.EntryMask) {
	if mask == nil || e == nil {
		return
	}
	if !mask.SpiffeId {
		e.SpiffeId = nil
	}
	if !mask.ParentId {
		e.ParentId = nil
	}
	if !mask.Selectors {
		e.Selectors = nil
	}
	if !mask.X509SvidTtl {
		e.X509SvidTtl = 0
	}
	if !mask.FederatesWith {
		e.FederatesWith = nil
	}
	if !mask.Admin {
		e.Admin = false
	}
	if !mask.Downstream {
		e.Downstream = false
	}
	if !mask.ExpiresAt {
		e.ExpiresAt = 0
	}
	if !mask.DnsNames {
		e.DnsNames = nil
	}
	if !mask.RevisionNumber {
		e.RevisionNumber = 0
	}
	if !mask.StoreSvid {
		e.StoreSvid = false
	}
	if !mask.JwtSvidTtl {
		e.JwtSvidTtl = 0
	}
	if !mask.Hint {
		e.Hint = ""
	}
	if !mask.CreatedAt {
		e.CreatedAt = 0
	}
}
