// Package agent implements the SPIRE Agent API (spire.api.server.agent.v1)
// for Signet: node attestation (dispatched by type name to the methods in
// attest/), agent SVID renewal, join tokens, and the admin calls that
// list, show, evict and ban agents.
package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/signet-id/signet/attest"
	"github.com/signet-id/signet/attest/jointoken"
	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/issuer"
	"github.com/signet-id/signet/rotation/eventlog"
	"github.com/signet-id/signet/server/api/apiutil"
	"github.com/signet-id/signet/server/store"
	"github.com/signet-id/signet/spireid"
	"github.com/signet-id/signet/telemetry"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Store is the state the service needs.
type Store interface {
	CreateAgent(ctx context.Context, a *types.Agent) (*types.Agent, error)
	GetAgent(ctx context.Context, id spiffeid.ID) (*types.Agent, error)
	UpdateAgent(ctx context.Context, id spiffeid.ID, update func(*types.Agent) error) (*types.Agent, error)
	DeleteAgent(ctx context.Context, id spiffeid.ID) error
	ListAgents(ctx context.Context, f store.AgentFilter, pageSize int, pageToken string) ([]*types.Agent, string, error)
	CountAgents(ctx context.Context, f store.AgentFilter) (int, error)
	CreateJoinToken(ctx context.Context, token string, expiresAt time.Time) error
	jointoken.Store
	CreateEntry(ctx context.Context, e *types.Entry) (*types.Entry, error)
}

// Issuer mints agent SVIDs.
type Issuer interface {
	X509SVID(p issuer.X509Params) ([]*x509.Certificate, error)
}

// Events receives agent lifecycle events (for the rotation event log).
type Events interface {
	AgentEvent(ctx context.Context, kind eventlog.Kind, id spiffeid.ID, serial string)
}

// Config configures the service.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	Store       Store
	Issuer      Issuer
	// AgentTTL is the lifetime of agent SVIDs; zero means the issuer default.
	AgentTTL time.Duration
	// JoinTokenTTL is the default join token lifetime. Default 600s.
	JoinTokenTTL time.Duration
	Events       Events
	// SVIDs, if set, records every agent SVID issued (store.SVIDTracker),
	// so that a forced rotation counts the agents' own SVIDs too.
	SVIDs interface {
		SVIDIssued(ctx context.Context, agentID spiffeid.ID, entryID string, id spiffeid.ID, serial, authorityID string, expiresAt time.Time)
	}
	// NodeAttestors are the node attestation methods AttestAgent
	// dispatches to by type name. Empty: join tokens from Store.
	NodeAttestors []NodeAttestor
	// AttestationFailed, if set, is told of every refused attestation:
	// the method ("unknown" for a type not served) and the code.
	AttestationFailed func(method string, code codes.Code)
	Now               func() time.Time
	Logger            *slog.Logger
}

// Service implements agentv1.AgentServer.
type Service struct {
	agentv1.UnsafeAgentServer
	cfg       Config
	attestors map[string]NodeAttestor
}

var _ agentv1.AgentServer = (*Service)(nil)

// New returns the service.
func New(cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.JoinTokenTTL <= 0 {
		cfg.JoinTokenTTL = 600 * time.Second
	}
	return &Service{cfg: cfg, attestors: nodeAttestors(cfg)}
}

// CountAgents counts the attested agents, as SPIRE does: no filter.
func (s *Service) CountAgents(ctx context.Context, req *agentv1.CountAgentsRequest) (*agentv1.CountAgentsResponse, error) {
	var f store.AgentFilter
	if rf := req.GetFilter(); rf != nil {
		var err error
		f, err = s.filter(rf.ByAttestationType, rf.BySelectorMatch, rf.ByBanned, rf.ByCanReattest, rf.ByExpiresBefore)
		if err != nil {
			return nil, err
		}
	}
	n, err := s.cfg.Store.CountAgents(ctx, f)
	if err != nil {
		return nil, apiutil.StoreError("failed to count agents", err, nil, nil, nil)
	}
	return &agentv1.CountAgentsResponse{Count: int32(n)}, nil
}

// ListAgents lists attested agents with SPIRE's filters (attestation type,
// selector match, banned, can-reattest, expires-before), output mask and
// pagination.
func (s *Service) ListAgents(ctx context.Context, req *agentv1.ListAgentsRequest) (*agentv1.ListAgentsResponse, error) {
	var f store.AgentFilter
	if rf := req.GetFilter(); rf != nil {
		var err error
		f, err = s.filter(rf.ByAttestationType, rf.BySelectorMatch, rf.ByBanned, rf.ByCanReattest, rf.ByExpiresBefore)
		if err != nil {
			return nil, err
		}
	}
	// As in SPIRE, a page size below one lists everything at once.
	agents, next, err := s.cfg.Store.ListAgents(ctx, f, max(int(req.PageSize), 0), req.PageToken)
	if err != nil {
		if errors.Is(err, store.ErrInvalid) {
			return nil, status.Errorf(codes.InvalidArgument, "invalid page_token: %v", err)
		}
		return nil, apiutil.StoreError("failed to list agents", err, nil, nil, nil)
	}
	out := &agentv1.ListAgentsResponse{NextPageToken: next}
	for _, a := range agents {
		out.Agents = append(out.Agents, applyMask(a, req.OutputMask))
	}
	return out, nil
}

// spireTimeFormat is the layout of by_expires_before in SPIRE's Agent API.
const spireTimeFormat = "2006-01-02 15:04:05 -0700 -07"

func (s *Service) filter(attType string, sm *types.SelectorMatch, banned, reattest *wrapperspb.BoolValue, expiresBefore string) (store.AgentFilter, error) {
	f := store.AgentFilter{ByAttestationType: attType}
	if sm != nil {
		if len(sm.Selectors) == 0 {
			return f, status.Error(codes.InvalidArgument, "invalid selector match: at least one selector is required")
		}
		for _, sel := range sm.Selectors {
			if err := apiutil.CheckSelector(sel); err != nil {
				return f, status.Errorf(codes.InvalidArgument, "invalid selector match: %v", err)
			}
		}
		f.BySelectors = &store.SelectorMatch{Selectors: sm.Selectors, Match: store.MatchBehavior(sm.Match)}
	}
	if banned != nil {
		b := banned.GetValue()
		f.ByBanned = &b
	}
	if reattest != nil {
		b := reattest.GetValue()
		f.ByCanReattest = &b
	}
	if expiresBefore != "" {
		// SPIRE's format (what the spire-server CLI sends) or RFC 3339.
		t, err := time.Parse(spireTimeFormat, expiresBefore)
		if err != nil {
			t, err = time.Parse(time.RFC3339, expiresBefore)
		}
		if err != nil {
			return f, status.Errorf(codes.InvalidArgument, "invalid by_expires_before %q: want %q (as SPIRE) or RFC 3339, such as 2026-01-02T15:04:05Z", expiresBefore, spireTimeFormat)
		}
		f.ByExpiresBefore = t
	}
	return f, nil
}

// GetAgent returns one attested agent by its SPIFFE ID.
func (s *Service) GetAgent(ctx context.Context, req *agentv1.GetAgentRequest) (*types.Agent, error) {
	id, err := apiutil.IDFromProto("agent ID", s.cfg.TrustDomain, req.Id)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if !spireid.IsAgentPath(id.Path()) {
		return nil, status.Errorf(codes.InvalidArgument, "invalid agent ID: %q is not an agent ID (path must start with %s)", id, spireid.AgentPrefix)
	}
	a, err := s.cfg.Store.GetAgent(ctx, id)
	if err != nil {
		return nil, apiutil.StoreError("agent "+id.String(), err, store.ErrNotFound, nil, nil)
	}
	return applyMask(a, req.OutputMask), nil
}

func (s *Service) agentIDArg(p *types.SPIFFEID) (spiffeid.ID, error) {
	id, err := apiutil.IDFromProto("agent ID", s.cfg.TrustDomain, p)
	if err != nil {
		return id, status.Error(codes.InvalidArgument, err.Error())
	}
	if !spireid.IsAgentPath(id.Path()) {
		return id, status.Errorf(codes.InvalidArgument, "invalid agent ID: %q is not an agent ID (path must start with %s)", id, spireid.AgentPrefix)
	}
	return id, nil
}

// DeleteAgent evicts an agent: its record is removed, its SVID is no longer
// accepted, and it must attest again.
func (s *Service) DeleteAgent(ctx context.Context, req *agentv1.DeleteAgentRequest) (*emptypb.Empty, error) {
	id, err := s.agentIDArg(req.Id)
	if err != nil {
		return nil, err
	}
	if err := s.cfg.Store.DeleteAgent(ctx, id); err != nil {
		return nil, apiutil.StoreError("agent "+id.String(), err, store.ErrNotFound, nil, nil)
	}
	s.event(ctx, eventlog.KindAgentEvicted, id, "")
	s.cfg.Logger.Info("agent evicted", "agent_id", id.String())
	return &emptypb.Empty{}, nil
}

// BanAgent marks an agent banned: its SVID is refused and it cannot attest
// again with the same identity until the record is deleted.
func (s *Service) BanAgent(ctx context.Context, req *agentv1.BanAgentRequest) (*emptypb.Empty, error) {
	id, err := s.agentIDArg(req.Id)
	if err != nil {
		return nil, err
	}
	_, err = s.cfg.Store.UpdateAgent(ctx, id, func(a *types.Agent) error {
		a.Banned = true
		a.X509SvidSerialNumber = ""
		return nil
	})
	if err != nil {
		return nil, apiutil.StoreError("agent "+id.String(), err, store.ErrNotFound, nil, store.ErrConflict)
	}
	s.event(ctx, eventlog.KindAgentBanned, id, "")
	s.cfg.Logger.Info("agent banned", "agent_id", id.String())
	return &emptypb.Empty{}, nil
}

// AttestAgent attests a new agent with the node attestor of the type it
// names and issues its SVID. A refusal is a security event
// (attestation_failed) and is counted through Config.AttestationFailed.
func (s *Service) AttestAgent(stream agentv1.Agent_AttestAgentServer) error {
	var at attempt
	err := s.attestAgent(stream, &at)
	if err == nil {
		return nil
	}
	ctx := stream.Context()
	code := status.Code(err)
	if code == codes.Canceled || ctx.Err() != nil {
		return err // the agent went away; nothing was refused
	}
	method := "unknown"
	if at.attestor != nil {
		method = at.attestor.Type()
	}
	attrs := append([]slog.Attr{slog.String(telemetry.FieldMethod, method), slog.String(telemetry.FieldAgentID, idString(at.agentID)),
		telemetry.Peer(ctx)}, telemetry.Status(err)...)
	telemetry.SecurityEvent(ctx, s.cfg.Logger, telemetry.EventAttestationFailed, attrs...)
	if s.cfg.AttestationFailed != nil {
		s.cfg.AttestationFailed(method, code)
	}
	return err
}

// attempt is what an attestation got to know before it failed.
type attempt struct {
	attestor NodeAttestor
	agentID  spiffeid.ID
}

func idString(id spiffeid.ID) string {
	if id.IsZero() {
		return ""
	}
	return id.String()
}

func (s *Service) attestAgent(stream agentv1.Agent_AttestAgentServer, at *attempt) error {
	ctx := stream.Context()
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	na := s.attestors[req.GetParams().GetData().GetType()]
	at.attestor = na
	if pc, ok := na.(payloadChecker); ok {
		if err := pc.CheckPayload(req.GetParams().GetData().GetPayload()); err != nil {
			return err
		}
	}
	params := req.GetParams()
	if params == nil {
		return status.Error(codes.InvalidArgument, "malformed param: the first message must carry params")
	}
	if params.Data == nil || params.Data.Type == "" {
		return status.Error(codes.InvalidArgument, "malformed param: missing attestation data type")
	}
	if params.Params == nil || len(params.Params.Csr) == 0 {
		return status.Error(codes.InvalidArgument, "malformed param: missing CSR")
	}
	csr, err := issuer.ParseCSRInfo(params.Params.Csr)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "failed to parse CSR: %v", err)
	}
	if na == nil {
		return status.Errorf(codes.FailedPrecondition, "error getting node attestor: could not find node attestor type %q (supported: %s)", params.Data.Type, s.supported())
	}
	admitID := s.admitter(na.Type())
	admit := func(ctx context.Context, id spiffeid.ID) error {
		at.agentID = id // known from here on, for the failure event
		return admitID(ctx, id)
	}
	res, err := na.Attest(ctx, attest.NodeRequest{Payload: params.Data.Payload, Challenge: challenger(stream), Admit: admit, Attested: s.attested})
	if err != nil {
		if _, ok := status.FromError(err); ok {
			return err
		}
		return status.Errorf(codes.Internal, "failed to attest: %v", err)
	}
	agentID := res.AgentID
	at.agentID = agentID
	if agentID.TrustDomain() != s.cfg.TrustDomain || !spireid.IsAgentID(agentID) {
		return status.Errorf(codes.Internal, "failed to attest: node attestor %q returned %q, not an agent ID in %q", na.Type(), agentID, s.cfg.TrustDomain)
	}
	// Methods without single-use evidence leave the admission check to here.
	if err := admit(ctx, agentID); err != nil {
		return err
	}
	chain, err := s.cfg.Issuer.X509SVID(issuer.X509Params{ID: agentID, PublicKey: csr.PublicKey, AltPublicKey: csr.AltPublicKey, TTL: s.cfg.AgentTTL})
	if err != nil {
		return status.Errorf(codes.Internal, "failed to sign X509 SVID: %v", err)
	}
	leaf := chain[0]
	s.trackSVID(ctx, agentID, leaf)
	rec := &types.Agent{
		Id:                   apiutil.IDToProto(agentID),
		AttestationType:      na.Type(),
		X509SvidSerialNumber: leaf.SerialNumber.String(),
		X509SvidExpiresAt:    leaf.NotAfter.Unix(),
		Selectors:            res.Selectors,
		CanReattest:          res.CanReattest,
	}
	reattested, err := s.storeAttested(ctx, agentID, rec)
	if err != nil {
		return err
	}
	s.event(ctx, eventlog.KindAgentAttested, agentID, rec.X509SvidSerialNumber)
	s.cfg.Logger.Info("agent attested", "agent_id", agentID.String(), "attestation_type", na.Type(), "serial", rec.X509SvidSerialNumber, "reattested", reattested)
	return stream.Send(&agentv1.AttestAgentResponse{Step: &agentv1.AttestAgentResponse_Result_{
		Result: &agentv1.AttestAgentResponse_Result{Svid: apiutil.X509SVIDToProto(agentID, chain), Reattestable: res.CanReattest},
	}})
}

// storeAttested records a newly attested agent. A node that attests again
// with a re-attestable method (its SVID lost or expired) keeps its record,
// which takes the new SVID and selectors, as SPIRE updates its attested
// node; the previous agent SVID is then superseded. A second attestation
// through a method that is not re-attestable (join tokens) is
// AlreadyExists, one through another method PermissionDenied (see
// admitted; SPIRE lets it update the record), and a ban that lands
// meanwhile still refuses it.
func (s *Service) storeAttested(ctx context.Context, id spiffeid.ID, rec *types.Agent) (reattested bool, err error) {
	_, err = s.cfg.Store.CreateAgent(ctx, rec)
	if errors.Is(err, store.ErrAlreadyExists) && rec.CanReattest {
		_, err = s.cfg.Store.UpdateAgent(ctx, id, func(a *types.Agent) error {
			if err := admitted(id, a, rec.AttestationType); err != nil {
				return err // a ban or another method that landed meanwhile
			}
			a.X509SvidSerialNumber = rec.X509SvidSerialNumber
			a.X509SvidExpiresAt = rec.X509SvidExpiresAt
			a.Selectors = rec.Selectors
			a.CanReattest = rec.CanReattest
			return nil
		})
		if err != nil {
			if _, ok := status.FromError(err); ok {
				return false, err // admitted's refusal
			}
			return false, apiutil.StoreError("failed to update attested agent", err, store.ErrNotFound, nil, store.ErrConflict)
		}
		return true, nil
	}
	if err != nil {
		return false, apiutil.StoreError("failed to create attested agent", err, nil, store.ErrAlreadyExists, nil)
	}
	return false, nil
}

// admitter returns the admission check of an attestation with method typ
// (attest.NodeRequest.Admit): an agent ID with no record is admitted; one
// with a record only as admitted says.
func (s *Service) admitter(typ string) func(context.Context, spiffeid.ID) error {
	return func(ctx context.Context, id spiffeid.ID) error {
		if a, err := s.cfg.Store.GetAgent(ctx, id); err == nil {
			return admitted(id, a, typ)
		}
		return nil
	}
}

// admitted refuses to attest agent id, whose record is a, again with method typ
// when it is banned (it must not be re-admitted under the same ID), when it
// was attested with another method (an agent_path_template that names
// another method's IDs must not take over that method's agents: evict the
// agent first), or when its method cannot re-attest (join tokens; refused
// before the new token is spent).
func admitted(id spiffeid.ID, a *types.Agent, typ string) error {
	switch {
	case a.Banned:
		return status.Error(codes.PermissionDenied, "failed to attest: agent is banned")
	case a.AttestationType != typ:
		return status.Errorf(codes.PermissionDenied, "failed to attest: agent %s was attested with %q, not %q: another method may not attest it (evict it first)",
			id, a.AttestationType, typ)
	case !a.CanReattest:
		return status.Errorf(codes.AlreadyExists, "failed to attest: agent %s is already attested and %q cannot re-attest", id, typ)
	}
	return nil
}

// attested reports whether the store holds an agent with this ID (banned or
// not), for the trust-on-first-use methods.
func (s *Service) attested(ctx context.Context, id spiffeid.ID) (bool, error) {
	_, err := s.cfg.Store.GetAgent(ctx, id)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	default:
		return false, apiutil.StoreError("failed to look up agent", err, nil, nil, nil)
	}
}

// RenewAgent issues a fresh SVID to the calling agent.
func (s *Service) RenewAgent(ctx context.Context, req *agentv1.RenewAgentRequest) (*agentv1.RenewAgentResponse, error) {
	agentID, err := apiutil.CallerAgent(ctx)
	if err != nil {
		return nil, err
	}
	if req.Params == nil || len(req.Params.Csr) == 0 {
		return nil, status.Error(codes.InvalidArgument, "missing CSR")
	}
	csr, err := issuer.ParseCSRInfo(req.Params.Csr)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "failed to parse CSR: %v", err)
	}
	chain, err := s.cfg.Issuer.X509SVID(issuer.X509Params{ID: agentID, PublicKey: csr.PublicKey, AltPublicKey: csr.AltPublicKey, TTL: s.cfg.AgentTTL})
	if err != nil {
		return nil, status.Errorf(codes.Internal, "failed to sign X509 SVID: %v", err)
	}
	serial := chain[0].SerialNumber.String()
	s.trackSVID(ctx, agentID, chain[0])
	_, err = s.cfg.Store.UpdateAgent(ctx, agentID, func(a *types.Agent) error {
		if a.Banned {
			return errBanned
		}
		a.X509SvidSerialNumber = serial
		a.X509SvidExpiresAt = chain[0].NotAfter.Unix()
		return nil
	})
	if errors.Is(err, errBanned) {
		return nil, status.Error(codes.PermissionDenied, "agent is banned")
	}
	if err != nil {
		return nil, apiutil.StoreError("failed to update agent", err, store.ErrNotFound, nil, store.ErrConflict)
	}
	s.event(ctx, eventlog.KindAgentRenewed, agentID, serial)
	return &agentv1.RenewAgentResponse{Svid: apiutil.X509SVIDToProto(agentID, chain)}, nil
}

var errBanned = errors.New("agent: banned")

// CreateJoinToken creates a single-use join token. With agent_id set, it
// also registers that ID as an alias of the agent that will use the token.
func (s *Service) CreateJoinToken(ctx context.Context, req *agentv1.CreateJoinTokenRequest) (*types.JoinToken, error) {
	if req.Ttl < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "ttl is required, you must provide one greater than zero (got %d)", req.Ttl)
	}
	if req.Ttl == 0 {
		return nil, status.Error(codes.InvalidArgument, "ttl is required, you must provide one")
	}
	if err := checkJoinTokenRequest(req.Ttl, req.Token); err != nil {
		return nil, err
	}
	var alias spiffeid.ID
	if req.AgentId != nil {
		id, err := aliasID(s.cfg.TrustDomain, req.AgentId)
		if err != nil {
			return nil, err
		}
		alias = id
	}
	token := req.Token
	if token == "" {
		token = uuid.NewString()
	}
	agentID, err := jointoken.AgentID(s.cfg.TrustDomain, token)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "invalid token: must be usable as a SPIFFE ID path segment: %v", err)
	}
	expiresAt := s.cfg.Now().Add(time.Duration(req.Ttl) * time.Second)
	if err := s.cfg.Store.CreateJoinToken(ctx, token, expiresAt); err != nil {
		return nil, apiutil.StoreError("failed to create token", err, nil, store.ErrAlreadyExists, nil)
	}
	if !alias.IsZero() {
		_, err := s.cfg.Store.CreateEntry(ctx, &types.Entry{
			SpiffeId: apiutil.IDToProto(alias),
			ParentId: apiutil.IDToProto(agentID),
			Selectors: []*types.Selector{{
				Type: "spiffe_id", Value: agentID.String(),
			}},
		})
		if err != nil && !errors.Is(err, store.ErrAlreadyExists) {
			return nil, apiutil.StoreError("failed to create join token registration entry", err, nil, nil, nil)
		}
	}
	// The token is a credential: logged by its expiry and alias only.
	s.cfg.Logger.InfoContext(ctx, "join token created", "expires_at", expiresAt.UTC().Format(time.RFC3339),
		"alias", alias.String(), apiutil.CallerAttr(ctx))
	return &types.JoinToken{Value: token, ExpiresAt: expiresAt.Unix()}, nil
}

// PostStatus is not implemented, as in SPIRE.
func (s *Service) PostStatus(context.Context, *agentv1.PostStatusRequest) (*agentv1.PostStatusResponse, error) {
	return nil, status.Error(codes.Unimplemented, "unimplemented")
}

func (s *Service) event(ctx context.Context, kind eventlog.Kind, id spiffeid.ID, serial string) {
	if s.cfg.Events != nil {
		s.cfg.Events.AgentEvent(ctx, kind, id, serial)
	}
}

func applyMask(a *types.Agent, m *types.AgentMask) *types.Agent {
	if m == nil {
		return a
	}
	out := &types.Agent{Id: a.Id}
	if m.AttestationType {
		out.AttestationType = a.AttestationType
	}
	if m.X509SvidSerialNumber {
		out.X509SvidSerialNumber = a.X509SvidSerialNumber
	}
	if m.X509SvidExpiresAt {
		out.X509SvidExpiresAt = a.X509SvidExpiresAt
	}
	if m.Selectors {
		out.Selectors = a.Selectors
	}
	if m.Banned {
		out.Banned = a.Banned
	}
	if m.CanReattest {
		out.CanReattest = a.CanReattest
	}
	return out
}

func (s *Service) trackSVID(ctx context.Context, agentID spiffeid.ID, leaf *x509.Certificate) {
	if s.cfg.SVIDs != nil {
		s.cfg.SVIDs.SVIDIssued(ctx, agentID, "", agentID, leaf.SerialNumber.String(), ca.IssuerAuthorityID(leaf), leaf.NotAfter)
	}
}
