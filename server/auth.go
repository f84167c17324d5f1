package server

import (
	"context"
	"errors"
	"log/slog"

	auditv1 "github.com/signet-id/signet/proto/signet/audit/v1"
	cav1 "github.com/signet-id/signet/proto/signet/ca/v1"
	notifyv1 "github.com/signet-id/signet/proto/signet/notify/v1"
	secretsv1 "github.com/signet-id/signet/proto/signet/secrets/v1"
	"github.com/signet-id/signet/server/caller"
	"github.com/signet-id/signet/server/limits"
	"github.com/signet-id/signet/server/store"
	"github.com/signet-id/signet/spireid"
	"github.com/signet-id/signet/telemetry"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	bundlev1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/bundle/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	localauthorityv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/localauthority/v1"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	trustdomainv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/trustdomain/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
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
	// accessDownstream: callers with the X.509-SVID of a downstream entry
	// (as SPIRE's allow_downstream).
	accessDownstream
)

// policy lists every method the server serves, keyed by the generated
// *_FullMethodName constants. Methods not listed are refused;
// TestAccessRulesMatchServedMethods checks that the list and the methods
// the two gRPC servers serve are the same.
var policy = map[string]access{
	healthpb.Health_Check_FullMethodName: accessAny,
	healthpb.Health_List_FullMethodName:  accessAny,
	healthpb.Health_Watch_FullMethodName: accessAny,

	agentv1.Agent_AttestAgent_FullMethodName:     accessAny,
	agentv1.Agent_RenewAgent_FullMethodName:      accessAgent,
	agentv1.Agent_PostStatus_FullMethodName:      accessAgent,
	agentv1.Agent_CountAgents_FullMethodName:     accessAdmin,
	agentv1.Agent_ListAgents_FullMethodName:      accessAdmin,
	agentv1.Agent_GetAgent_FullMethodName:        accessAdmin,
	agentv1.Agent_DeleteAgent_FullMethodName:     accessAdmin,
	agentv1.Agent_BanAgent_FullMethodName:        accessAdmin,
	agentv1.Agent_CreateJoinToken_FullMethodName: accessAdmin,

	entryv1.Entry_CountEntries_FullMethodName:          accessAdmin,
	entryv1.Entry_ListEntries_FullMethodName:           accessAdmin,
	entryv1.Entry_GetEntry_FullMethodName:              accessAdmin,
	entryv1.Entry_BatchCreateEntry_FullMethodName:      accessAdmin,
	entryv1.Entry_BatchUpdateEntry_FullMethodName:      accessAdmin,
	entryv1.Entry_BatchDeleteEntry_FullMethodName:      accessAdmin,
	entryv1.Entry_GetAuthorizedEntries_FullMethodName:  accessAgent,
	entryv1.Entry_SyncAuthorizedEntries_FullMethodName: accessAgent,

	svidv1.SVID_BatchNewX509SVID_FullMethodName:    accessAgent,
	svidv1.SVID_NewJWTSVID_FullMethodName:          accessAgent,
	svidv1.SVID_MintX509SVID_FullMethodName:        accessAdmin,
	svidv1.SVID_MintJWTSVID_FullMethodName:         accessAdmin,
	svidv1.SVID_NewDownstreamX509CA_FullMethodName: accessDownstream,

	bundlev1.Bundle_GetBundle_FullMethodName:                  accessAny,
	bundlev1.Bundle_CountBundles_FullMethodName:               accessAdmin,
	bundlev1.Bundle_ListFederatedBundles_FullMethodName:       accessAdmin,
	bundlev1.Bundle_GetFederatedBundle_FullMethodName:         accessAgentOrAdmin,
	bundlev1.Bundle_BatchCreateFederatedBundle_FullMethodName: accessAdmin,
	bundlev1.Bundle_BatchUpdateFederatedBundle_FullMethodName: accessAdmin,
	bundlev1.Bundle_BatchSetFederatedBundle_FullMethodName:    accessAdmin,
	bundlev1.Bundle_BatchDeleteFederatedBundle_FullMethodName: accessAdmin,
	bundlev1.Bundle_AppendBundle_FullMethodName:               accessAdmin,
	bundlev1.Bundle_PublishJWTAuthority_FullMethodName:        accessDownstream,

	trustdomainv1.TrustDomain_ListFederationRelationships_FullMethodName:       accessAdmin,
	trustdomainv1.TrustDomain_GetFederationRelationship_FullMethodName:         accessAdmin,
	trustdomainv1.TrustDomain_BatchCreateFederationRelationship_FullMethodName: accessAdmin,
	trustdomainv1.TrustDomain_BatchUpdateFederationRelationship_FullMethodName: accessAdmin,
	trustdomainv1.TrustDomain_BatchDeleteFederationRelationship_FullMethodName: accessAdmin,
	trustdomainv1.TrustDomain_RefreshBundle_FullMethodName:                     accessAdmin,

	notifyv1.Notifier_Watch_FullMethodName: accessAgent,

	localauthorityv1.LocalAuthority_GetJWTAuthorityState_FullMethodName:        accessAdmin,
	localauthorityv1.LocalAuthority_PrepareJWTAuthority_FullMethodName:         accessAdmin,
	localauthorityv1.LocalAuthority_ActivateJWTAuthority_FullMethodName:        accessAdmin,
	localauthorityv1.LocalAuthority_TaintJWTAuthority_FullMethodName:           accessAdmin,
	localauthorityv1.LocalAuthority_RevokeJWTAuthority_FullMethodName:          accessAdmin,
	localauthorityv1.LocalAuthority_GetX509AuthorityState_FullMethodName:       accessAdmin,
	localauthorityv1.LocalAuthority_PrepareX509Authority_FullMethodName:        accessAdmin,
	localauthorityv1.LocalAuthority_ActivateX509Authority_FullMethodName:       accessAdmin,
	localauthorityv1.LocalAuthority_TaintX509Authority_FullMethodName:          accessAdmin,
	localauthorityv1.LocalAuthority_TaintX509UpstreamAuthority_FullMethodName:  accessAdmin,
	localauthorityv1.LocalAuthority_RevokeX509Authority_FullMethodName:         accessAdmin,
	localauthorityv1.LocalAuthority_RevokeX509UpstreamAuthority_FullMethodName: accessAdmin,
	secretsv1.Secrets_Watch_FullMethodName:                                     accessAgent,
	secretsv1.SecretPolicies_CreatePolicy_FullMethodName:                       accessAdmin,
	secretsv1.SecretPolicies_ListPolicies_FullMethodName:                       accessAdmin,
	secretsv1.SecretPolicies_DeletePolicy_FullMethodName:                       accessAdmin,
	cav1.CA_ListAuthorities_FullMethodName:                                     accessAdmin,
	cav1.CA_CountSVIDsByAuthority_FullMethodName:                               accessAdmin,
	auditv1.Audit_Tail_FullMethodName:                                          accessAdmin,
	auditv1.Audit_Export_FullMethodName:                                        accessAdmin,
	auditv1.Audit_Archive_FullMethodName:                                       accessAdmin,
}

// grpcServers builds the gRPC servers of the agent listener (TLS, agent
// authentication, limits) and of the admin socket, each with every service
// registered.
func (s *Server) grpcServers(lim *limits.Limiter) (agentSrv, adminSrv *grpc.Server) {
	agentSrv = grpc.NewServer(append(append(append(s.rpc.ServerOptions("agent"), s.agentInterceptors()...),
		grpc.Creds(kexCreds{TransportCredentials: credentials.NewTLS(s.agentTLSConfig()), observe: s.observeKEX}),
		grpc.MaxRecvMsgSize(4<<20)), lim.ServerOptions()...)...)
	adminSrv = grpc.NewServer(append(append(s.rpc.ServerOptions("admin"), s.adminInterceptors()...), grpc.MaxRecvMsgSize(4<<20))...)
	for _, g := range []*grpc.Server{agentSrv, adminSrv} {
		s.register(g)
	}
	return agentSrv, adminSrv
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
	case accessDownstream:
		return k == caller.Downstream
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
	authorize := func(ctx context.Context, method string) (context.Context, error) {
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
	check := func(ctx context.Context, method string) (context.Context, error) {
		ctx2, err := authorize(ctx, method)
		if err != nil {
			telemetry.SecurityEvent(ctx, s.log, telemetry.EventAuthorizationDenied, append([]slog.Attr{
				slog.String(telemetry.FieldMethod, method), telemetry.Peer(ctx)}, telemetry.Status(err)...)...)
		}
		return ctx2, err
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
// handshake): an agent with a current record, an admin workload, or a
// downstream server. An entry marked both admin and downstream makes an
// admin caller (SPIRE grants both; Signet one kind per caller).
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
	admin, downstream := s.entryRoles(ctx, id)
	switch {
	case admin:
		return caller.NewContext(ctx, caller.Caller{Kind: caller.Admin, ID: id}), nil
	case downstream:
		return caller.NewContext(ctx, caller.Caller{Kind: caller.Downstream, ID: id}), nil
	}
	return caller.NewContext(ctx, caller.Caller{Kind: caller.Unauthenticated, ID: id}), nil
}

// entryRoles reports whether id is an admin ID or belongs to a
// registration entry marked admin, and whether it belongs to one marked
// downstream.
func (s *Server) entryRoles(ctx context.Context, id spiffeid.ID) (admin, downstream bool) {
	for _, a := range s.cfg.AdminIDs {
		if a == id {
			admin = true
		}
	}
	entries, _, err := s.store.ListEntries(ctx, store.EntryFilter{BySpiffeID: id}, 0, "")
	if err != nil {
		return admin, false
	}
	for _, e := range entries {
		admin = admin || e.Admin
		downstream = downstream || e.Downstream
	}
	return admin, downstream
}
