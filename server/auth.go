package server

import (
	"context"
	"errors"

	"github.com/signet-id/signet/server/caller"
	"github.com/signet-id/signet/server/store"
	"github.com/signet-id/signet/spireid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// access is who may call a method.
type access int

const (
	accessAny access = iota + 1
	accessAgent
	accessAdmin
	accessAgentOrAdmin
)

// policy lists every method the server serves. Methods not listed are
// refused.
var policy = map[string]access{
	"/grpc.health.v1.Health/Check": accessAny,
	"/grpc.health.v1.Health/List":  accessAny,
	"/grpc.health.v1.Health/Watch": accessAny,

	"/spire.api.server.agent.v1.Agent/AttestAgent":     accessAny,
	"/spire.api.server.agent.v1.Agent/RenewAgent":      accessAgent,
	"/spire.api.server.agent.v1.Agent/PostStatus":      accessAgent,
	"/spire.api.server.agent.v1.Agent/CountAgents":     accessAdmin,
	"/spire.api.server.agent.v1.Agent/ListAgents":      accessAdmin,
	"/spire.api.server.agent.v1.Agent/GetAgent":        accessAdmin,
	"/spire.api.server.agent.v1.Agent/DeleteAgent":     accessAdmin,
	"/spire.api.server.agent.v1.Agent/BanAgent":        accessAdmin,
	"/spire.api.server.agent.v1.Agent/CreateJoinToken": accessAdmin,

	"/spire.api.server.entry.v1.Entry/CountEntries":          accessAdmin,
	"/spire.api.server.entry.v1.Entry/ListEntries":           accessAdmin,
	"/spire.api.server.entry.v1.Entry/GetEntry":              accessAdmin,
	"/spire.api.server.entry.v1.Entry/BatchCreateEntry":      accessAdmin,
	"/spire.api.server.entry.v1.Entry/BatchUpdateEntry":      accessAdmin,
	"/spire.api.server.entry.v1.Entry/BatchDeleteEntry":      accessAdmin,
	"/spire.api.server.entry.v1.Entry/GetAuthorizedEntries":  accessAgent,
	"/spire.api.server.entry.v1.Entry/SyncAuthorizedEntries": accessAgent,

	"/spire.api.server.svid.v1.SVID/BatchNewX509SVID":    accessAgent,
	"/spire.api.server.svid.v1.SVID/NewJWTSVID":          accessAgent,
	"/spire.api.server.svid.v1.SVID/MintX509SVID":        accessAdmin,
	"/spire.api.server.svid.v1.SVID/MintJWTSVID":         accessAdmin,
	"/spire.api.server.svid.v1.SVID/NewDownstreamX509CA": accessAdmin,

	"/spire.api.server.bundle.v1.Bundle/GetBundle":                  accessAny,
	"/spire.api.server.bundle.v1.Bundle/CountBundles":               accessAdmin,
	"/spire.api.server.bundle.v1.Bundle/ListFederatedBundles":       accessAdmin,
	"/spire.api.server.bundle.v1.Bundle/GetFederatedBundle":         accessAgentOrAdmin,
	"/spire.api.server.bundle.v1.Bundle/BatchCreateFederatedBundle": accessAdmin,
	"/spire.api.server.bundle.v1.Bundle/BatchUpdateFederatedBundle": accessAdmin,
	"/spire.api.server.bundle.v1.Bundle/BatchSetFederatedBundle":    accessAdmin,
	"/spire.api.server.bundle.v1.Bundle/BatchDeleteFederatedBundle": accessAdmin,
	"/spire.api.server.bundle.v1.Bundle/AppendBundle":               accessAdmin,
	"/spire.api.server.bundle.v1.Bundle/PublishJWTAuthority":        accessAdmin,

	"/signet.notify.v1.Notifier/Watch": accessAgent,

	"/spire.api.server.localauthority.v1.LocalAuthority/GetJWTAuthorityState":        accessAdmin,
	"/spire.api.server.localauthority.v1.LocalAuthority/PrepareJWTAuthority":         accessAdmin,
	"/spire.api.server.localauthority.v1.LocalAuthority/ActivateJWTAuthority":        accessAdmin,
	"/spire.api.server.localauthority.v1.LocalAuthority/TaintJWTAuthority":           accessAdmin,
	"/spire.api.server.localauthority.v1.LocalAuthority/RevokeJWTAuthority":          accessAdmin,
	"/spire.api.server.localauthority.v1.LocalAuthority/GetX509AuthorityState":       accessAdmin,
	"/spire.api.server.localauthority.v1.LocalAuthority/PrepareX509Authority":        accessAdmin,
	"/spire.api.server.localauthority.v1.LocalAuthority/ActivateX509Authority":       accessAdmin,
	"/spire.api.server.localauthority.v1.LocalAuthority/TaintX509Authority":          accessAdmin,
	"/spire.api.server.localauthority.v1.LocalAuthority/TaintX509UpstreamAuthority":  accessAdmin,
	"/spire.api.server.localauthority.v1.LocalAuthority/RevokeX509Authority":         accessAdmin,
	"/spire.api.server.localauthority.v1.LocalAuthority/RevokeX509UpstreamAuthority": accessAdmin,
	"/signet.secrets.v1.Secrets/Watch":                                               accessAgent,
	"/signet.secrets.v1.SecretPolicies/CreatePolicy":                                 accessAdmin,
	"/signet.secrets.v1.SecretPolicies/ListPolicies":                                 accessAdmin,
	"/signet.secrets.v1.SecretPolicies/DeletePolicy":                                 accessAdmin,
	"/signet.ca.v1.CA/ListAuthorities":                                               accessAdmin,
	"/signet.ca.v1.CA/CountSVIDsByAuthority":                                         accessAdmin,
	"/signet.audit.v1.Audit/Tail":                                                    accessAdmin,
	"/signet.audit.v1.Audit/Export":                                                  accessAdmin,
	"/signet.audit.v1.Audit/Archive":                                                 accessAdmin,
}

// allowed reports whether a caller of kind k may call a method with access a.
func allowed(a access, k caller.Kind) bool {
	switch a {
	case accessAny:
		return true
	case accessAgent:
		return k == caller.Agent
	case accessAdmin:
		return k == caller.Admin
	case accessAgentOrAdmin:
		return k == caller.Agent || k == caller.Admin
	}
	return false
}

// adminSocketInterceptors mark every caller of the admin socket as a local
// admin and enforce the policy.
func (s *Server) adminInterceptors() []grpc.ServerOption {
	authn := func(ctx context.Context) (context.Context, error) {
		return caller.NewContext(ctx, caller.Caller{Kind: caller.Admin, Local: true}), nil
	}
	return s.interceptors(authn)
}

func (s *Server) agentInterceptors() []grpc.ServerOption {
	return s.interceptors(s.authenticateTLS)
}

func (s *Server) interceptors(authn func(context.Context) (context.Context, error)) []grpc.ServerOption {
	check := func(ctx context.Context, method string) (context.Context, error) {
		a, ok := policy[method]
		if !ok {
			return nil, status.Errorf(codes.PermissionDenied, "method %s is not served", method)
		}
		ctx, err := authn(ctx)
		if err != nil {
			return nil, err
		}
		c, _ := caller.FromContext(ctx)
		if !allowed(a, c.Kind) {
			return nil, status.Errorf(codes.PermissionDenied, "authorization denied for method %s: caller is %s", method, c.Kind)
		}
		return ctx, nil
	}
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			ctx, err := check(ctx, info.FullMethod)
			if err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			ctx, err := check(ss.Context(), info.FullMethod)
			if err != nil {
				return err
			}
			return h(srv, &wrappedStream{ServerStream: ss, ctx: ctx})
		}),
	}
}

type wrappedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (w *wrappedStream) Context() context.Context { return w.ctx }

// authenticateTLS establishes the caller of the agent listener from its
// client certificate (already verified against the bundle by the TLS
// handshake): an agent with a current record, or an admin workload.
func (s *Server) authenticateTLS(ctx context.Context) (context.Context, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "no peer information")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "connection is not TLS")
	}
	if len(ti.State.PeerCertificates) == 0 {
		return caller.NewContext(ctx, caller.Caller{Kind: caller.Unauthenticated}), nil
	}
	leaf := ti.State.PeerCertificates[0]
	id, err := x509svid.IDFromCert(leaf)
	if err != nil {
		return nil, status.Errorf(codes.Unauthenticated, "client certificate has no valid SPIFFE ID: %v", err)
	}
	if id.TrustDomain() != s.cfg.TrustDomain {
		return nil, status.Errorf(codes.PermissionDenied, "caller %q is not in trust domain %q", id, s.cfg.TrustDomain)
	}
	if spireid.IsAgentPath(id.Path()) {
		a, err := s.store.GetAgent(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return nil, status.Errorf(codes.PermissionDenied, "agent %q is not attested or has been evicted; attest again", id)
		}
		if err != nil {
			return nil, status.Errorf(codes.Internal, "failed to fetch agent: %v", err)
		}
		if a.Banned {
			return nil, status.Errorf(codes.PermissionDenied, "agent %q is banned", id)
		}
		if a.X509SvidSerialNumber != leaf.SerialNumber.String() {
			return nil, status.Errorf(codes.PermissionDenied, "agent %q presented an SVID that is not its current one", id)
		}
		return caller.NewContext(ctx, caller.Caller{Kind: caller.Agent, ID: id}), nil
	}
	if s.isAdminID(ctx, id) {
		return caller.NewContext(ctx, caller.Caller{Kind: caller.Admin, ID: id}), nil
	}
	return caller.NewContext(ctx, caller.Caller{Kind: caller.Unauthenticated, ID: id}), nil
}

// isAdminID reports whether id belongs to a registration entry marked admin.
func (s *Server) isAdminID(ctx context.Context, id spiffeid.ID) bool {
	for _, a := range s.cfg.AdminIDs {
		if a == id {
			return true
		}
	}
	entries, _, err := s.store.ListEntries(ctx, store.EntryFilter{BySpiffeID: id}, 0, "")
	if err != nil {
		return false
	}
	for _, e := range entries {
		if e.Admin {
			return true
		}
	}
	return false
}
