// Package apiutil holds the small conversions and checks shared by the
// server's SPIRE API services: SPIFFE ID and selector validation, proto
// conversions, and mapping store errors to gRPC status codes.
package apiutil

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/signet-id/signet/server/caller"
	"github.com/signet-id/signet/server/store"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// IDFromProto converts and validates a SPIFFE ID message. The ID must be in
// td (when td is not zero). what names the field in error messages.
func IDFromProto(what string, td spiffeid.TrustDomain, p *types.SPIFFEID) (spiffeid.ID, error) {
	if p == nil {
		return spiffeid.ID{}, fmt.Errorf("invalid %s: request must specify a SPIFFE ID", what)
	}
	if err := store.CheckIDLength(what, p); err != nil {
		return spiffeid.ID{}, fmt.Errorf("invalid %w", err)
	}
	td2, err := spiffeid.TrustDomainFromString(p.TrustDomain)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("invalid %s: trust domain %q: %w", what, p.TrustDomain, err)
	}
	id, err := spiffeid.FromPath(td2, p.Path)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("invalid %s: path %q: %w", what, p.Path, err)
	}
	if !td.IsZero() && td2 != td {
		return spiffeid.ID{}, fmt.Errorf("invalid %s: %q is not a member of trust domain %q", what, id, td)
	}
	return id, nil
}

// IDToProto converts a SPIFFE ID to its message.
func IDToProto(id spiffeid.ID) *types.SPIFFEID {
	return &types.SPIFFEID{TrustDomain: id.TrustDomain().Name(), Path: id.Path()}
}

// ProtoToString renders a SPIFFE ID message as a string without validating.
func ProtoToString(p *types.SPIFFEID) string {
	if p == nil {
		return ""
	}
	return "spiffe://" + p.TrustDomain + p.Path
}

// X509SVIDToProto converts an issued chain to its message.
func X509SVIDToProto(id spiffeid.ID, chain []*x509.Certificate) *types.X509SVID {
	out := &types.X509SVID{Id: IDToProto(id), ExpiresAt: chain[0].NotAfter.Unix()}
	for _, c := range chain {
		out.CertChain = append(out.CertChain, c.Raw)
	}
	return out
}

// StoreError maps a store error to a status with the given message prefix.
// notFound and exists are compared with errors.Is.
func StoreError(msg string, err error, notFound, exists, conflict error) error {
	switch {
	case notFound != nil && errors.Is(err, notFound):
		return status.Errorf(codes.NotFound, "%s: not found", msg)
	case exists != nil && errors.Is(err, exists):
		return status.Errorf(codes.AlreadyExists, "%s: already exists", msg)
	case conflict != nil && errors.Is(err, conflict):
		return status.Errorf(codes.Aborted, "%s: concurrent update, retry", msg)
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, msg)
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, msg)
	default:
		return status.Errorf(codes.Internal, "%s: %v", msg, err)
	}
}

// CallerAgent returns the calling agent's ID or a PermissionDenied status.
func CallerAgent(ctx context.Context) (spiffeid.ID, error) {
	c, ok := caller.FromContext(ctx)
	if !ok || c.Kind != caller.Agent || c.ID.IsZero() {
		return spiffeid.ID{}, status.Error(codes.PermissionDenied, "caller is not an attested agent")
	}
	return c.ID, nil
}

// CallerDownstream returns the SPIFFE ID of the calling downstream server,
// or PermissionDenied.
func CallerDownstream(ctx context.Context) (spiffeid.ID, error) {
	c, ok := caller.FromContext(ctx)
	if !ok || c.Kind != caller.Downstream || c.ID.IsZero() {
		return spiffeid.ID{}, status.Error(codes.PermissionDenied, "caller is not a downstream server")
	}
	return c.ID, nil
}

// CallerAttr is the caller field of an admin change's log record: the
// caller's SPIFFE ID, "admin_socket" for the local admin socket, or its
// kind when it has no ID.
func CallerAttr(ctx context.Context) slog.Attr {
	c, ok := caller.FromContext(ctx)
	switch {
	case !ok:
		return slog.String("caller", "unknown")
	case !c.ID.IsZero():
		return slog.String("caller", c.ID.String())
	case c.Local:
		return slog.String("caller", "admin_socket")
	default:
		return slog.String("caller", c.Kind.String())
	}
}

// CheckSelector validates one selector: type and value non-empty, no ':'
// in the type.
func CheckSelector(s *types.Selector) error {
	if s == nil {
		return errors.New("selector is nil")
	}
	if s.Type == "" {
		return errors.New("missing selector type")
	}
	if strings.Contains(s.Type, ":") {
		return fmt.Errorf("selector type %q contains ':'", s.Type)
	}
	if s.Value == "" {
		return fmt.Errorf("missing value for selector type %q", s.Type)
	}
	return nil
}

// CheckDNSName validates a DNS name for an X.509-SVID SAN (labels of
// letters, digits, hyphens and underscores, as SPIRE accepts; a leading
// "*." wildcard is allowed).
func CheckDNSName(name string) error {
	n := strings.TrimPrefix(name, "*.")
	if n == "" || len(name) > 253 {
		return errors.New("empty or longer than 253 characters")
	}
	for _, label := range strings.Split(n, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("label %q must be 1 to 63 characters", label)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("label %q must not start or end with '-'", label)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return fmt.Errorf("label %q contains %q", label, r)
			}
		}
	}
	return nil
}
