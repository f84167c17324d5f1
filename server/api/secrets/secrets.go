// Package secrets implements signet.secrets.v1 on the server: the Secrets
// service agents call (over mTLS) to watch a Vault secret for one of the
// workload entries they are authorized for, and the SecretPolicies admin
// service. Authorization is the agent's entry (the same rule as SVID
// issuance: the entry is among the agent's authorized entries) plus a
// secret policy whose SPIFFE ID pattern matches the entry's SPIFFE ID.
// Values come from a secrets.Broker and are never logged.
package secrets

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/signet-id/signet/clock"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	secretsv1 "github.com/signet-id/signet/proto/signet/secrets/v1"
	vsecrets "github.com/signet-id/signet/secrets"
	"github.com/signet-id/signet/server/caller"
	"github.com/signet-id/signet/server/store"
)

// Store is the registration state the service checks; *store.Store
// implements it.
type Store interface {
	GetAgent(ctx context.Context, id spiffeid.ID) (*types.Agent, error)
	AuthorizedEntries(ctx context.Context, agentID spiffeid.ID, agentSelectors []*types.Selector) ([]*types.Entry, error)
	CountEntries(ctx context.Context, f store.EntryFilter) (int, error)
}

var _ Store = (*store.Store)(nil)

// Policies stores secret policies; *secrets.PolicyStore implements it.
type Policies interface {
	Create(ctx context.Context, p vsecrets.Policy) (vsecrets.Policy, error)
	Get(ctx context.Context, id string) (vsecrets.Policy, error)
	List(ctx context.Context) ([]vsecrets.Policy, error)
	Delete(ctx context.Context, id string, revision int64) error
	Watch(ctx context.Context) (<-chan vsecrets.PolicyEvent, error)
}

var _ Policies = (*vsecrets.PolicyStore)(nil)

// Broker delivers secrets; *secrets.Broker implements it.
type Broker interface {
	Watch(p vsecrets.Policy, id spiffeid.ID) (*vsecrets.Subscription, error)
	Revoke(ctx context.Context, policyID string)
	RevokeFor(ctx context.Context, policyID string, id spiffeid.ID)
}

var _ Broker = (*vsecrets.Broker)(nil)

// Config configures the services.
type Config struct {
	TrustDomain spiffeid.TrustDomain
	Store       Store
	Policies    Policies
	Broker      Broker
	// RecheckInterval is how often open streams re-check that the entry
	// and the policy still authorize them (also on EntriesChanged).
	// Default 10s.
	RecheckInterval time.Duration
	// Clock paces the re-checks (default the wall clock).
	Clock  clock.Clock
	Logger *slog.Logger
}

// API holds both services.
type API struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	changed chan struct{} // closed and replaced by EntriesChanged
}

// New returns the services.
func New(cfg Config) (*API, error) {
	if cfg.Store == nil || cfg.Policies == nil || cfg.Broker == nil {
		return nil, errors.New("secrets api: store, policies and broker are required")
	}
	if cfg.TrustDomain.IsZero() {
		return nil, errors.New("secrets api: trust domain is required")
	}
	if cfg.RecheckInterval <= 0 {
		cfg.RecheckInterval = 10 * time.Second
	}
	cfg.Clock = clock.Or(cfg.Clock)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &API{cfg: cfg, log: cfg.Logger, changed: make(chan struct{})}, nil
}

// Register registers Secrets and SecretPolicies on g.
func (a *API) Register(g grpc.ServiceRegistrar) {
	secretsv1.RegisterSecretsServer(g, &secretsServer{a: a})
	secretsv1.RegisterSecretPoliciesServer(g, &policiesServer{a: a})
}

// EntriesChanged makes open streams re-check their authorization now (call
// it when registration entries or agents change).
func (a *API) EntriesChanged() {
	a.mu.Lock()
	close(a.changed)
	a.changed = make(chan struct{})
	a.mu.Unlock()
}

func (a *API) changes() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.changed
}

// Run follows policy changes (from every server replica) until ctx is
// done: a deleted policy stops delivery and revokes its leases.
func (a *API) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		ch, err := a.cfg.Policies.Watch(ctx)
		if err != nil {
			a.log.Warn("secrets: cannot watch secret policies", "error", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		for ev := range ch {
			if ev.Deleted {
				a.log.Info("secrets: policy deleted; revoking its leases", "policy", ev.ID)
				a.cfg.Broker.Revoke(ctx, ev.ID)
			}
		}
	}
	return nil
}

type secretsServer struct {
	secretsv1.UnimplementedSecretsServer
	a *API
}

const errNotAvailable = "secret %q is not available to %s"

// authorize checks that agent holds an entry for id (entryID, if set) and
// that a policy grants secret name to id.
func (a *API) authorize(ctx context.Context, agent spiffeid.ID, id spiffeid.ID, entryID, name string) (vsecrets.Policy, error) {
	denied := status.Errorf(codes.PermissionDenied, errNotAvailable, name, id)
	ag, err := a.cfg.Store.GetAgent(ctx, agent)
	if errors.Is(err, store.ErrNotFound) {
		return vsecrets.Policy{}, status.Errorf(codes.PermissionDenied, "agent %q is not attested", agent)
	}
	if err != nil {
		return vsecrets.Policy{}, status.Errorf(codes.Internal, "failed to fetch agent: %v", err)
	}
	entries, err := a.cfg.Store.AuthorizedEntries(ctx, agent, ag.Selectors)
	if err != nil {
		return vsecrets.Policy{}, status.Errorf(codes.Internal, "failed to fetch authorized entries: %v", err)
	}
	held := false
	for _, e := range entries {
		if e.SpiffeId == nil || e.SpiffeId.TrustDomain != id.TrustDomain().Name() || e.SpiffeId.Path != id.Path() {
			continue
		}
		if entryID == "" || e.Id == entryID {
			held = true
			break
		}
	}
	if !held {
		return vsecrets.Policy{}, denied
	}
	p, err := a.cfg.Policies.Get(ctx, name)
	if errors.Is(err, vsecrets.ErrPolicyNotFound) {
		return vsecrets.Policy{}, denied
	}
	if err != nil {
		return vsecrets.Policy{}, status.Errorf(codes.Internal, "failed to fetch secret policy: %v", err)
	}
	if !p.Matches(id) {
		return vsecrets.Policy{}, denied
	}
	return p, nil
}

func parseRequest(td spiffeid.TrustDomain, name, rawID string) (spiffeid.ID, error) {
	if name == "" || len(name) > 128 {
		return spiffeid.ID{}, status.Error(codes.InvalidArgument, "name must be 1-128 characters")
	}
	id, err := spiffeid.FromString(rawID)
	if err != nil {
		return spiffeid.ID{}, status.Errorf(codes.InvalidArgument, "invalid spiffe_id: %v", err)
	}
	if !id.MemberOf(td) {
		return spiffeid.ID{}, status.Errorf(codes.InvalidArgument, "spiffe_id %q is not in trust domain %q", id, td)
	}
	return id, nil
}

// Watch implements secretsv1.SecretsServer.
func (s *secretsServer) Watch(req *secretsv1.WatchSecretRequest, stream grpc.ServerStreamingServer[secretsv1.Secret]) error {
	a := s.a
	ctx := stream.Context()
	c, ok := caller.FromContext(ctx)
	if !ok || c.Kind != caller.Agent {
		return status.Error(codes.PermissionDenied, "only agents may watch secrets")
	}
	id, err := parseRequest(a.cfg.TrustDomain, req.Name, req.SpiffeId)
	if err != nil {
		return err
	}
	p, err := a.authorize(ctx, c.ID, id, req.EntryId, req.Name)
	if err != nil {
		a.log.Info("secrets: watch refused", "agent", c.ID.String(), "spiffe_id", id.String(), "secret", req.Name, "code", status.Code(err).String())
		return err
	}
	sub, err := a.cfg.Broker.Watch(p, id)
	if err != nil {
		if errors.Is(err, vsecrets.ErrDenied) {
			return status.Errorf(codes.PermissionDenied, errNotAvailable, req.Name, id)
		}
		return status.Errorf(codes.Unavailable, "secret %q: %v", req.Name, err)
	}
	defer sub.Close()
	a.log.Debug("secrets: watching", "agent", c.ID.String(), "spiffe_id", id.String(), "secret", req.Name)

	ticker := a.cfg.Clock.NewTicker(a.cfg.RecheckInterval)
	defer ticker.Stop()
	for {
		changed := a.changes()
		select {
		case <-ctx.Done():
			return nil
		case <-sub.Done():
			return status.Errorf(codes.PermissionDenied, "secret %q is no longer available to %s", req.Name, id)
		case <-ticker.C():
			if err := a.recheck(ctx, c.ID, id, req, p); err != nil {
				return err
			}
		case <-changed:
			if err := a.recheck(ctx, c.ID, id, req, p); err != nil {
				return err
			}
		case u := <-sub.Updates():
			if u.Err != nil {
				a.log.Warn("secrets: secret not readable from vault", "secret", req.Name, "spiffe_id", id.String(), "error", u.Err)
				return status.Errorf(codes.Unavailable, "secret %q cannot be read from Vault yet", req.Name)
			}
			if err := stream.Send(ToProto(u.Value)); err != nil {
				return err
			}
		}
	}
}

// recheck re-authorizes an open stream. When the entry is gone it ends
// the stream; when no entry has the SPIFFE ID any more, the lease obtained
// for it is revoked too.
func (a *API) recheck(ctx context.Context, agent, id spiffeid.ID, req *secretsv1.WatchSecretRequest, p vsecrets.Policy) error {
	cur, err := a.authorize(ctx, agent, id, req.EntryId, req.Name)
	if status.Code(err) == codes.Internal {
		a.log.Warn("secrets: re-authorization failed; keeping the stream", "error", err)
		return nil
	}
	if err == nil && cur.Revision == p.Revision {
		return nil
	}
	if err == nil {
		// The policy was replaced: the client reconnects and gets the
		// new one.
		return status.Errorf(codes.Unavailable, "secret %q changed; watch again", req.Name)
	}
	if n, cerr := a.cfg.Store.CountEntries(ctx, store.EntryFilter{BySpiffeID: id}); cerr == nil && n == 0 {
		a.cfg.Broker.RevokeFor(ctx, req.Name, id)
	}
	a.log.Info("secrets: watch no longer authorized", "agent", agent.String(), "spiffe_id", id.String(), "secret", req.Name)
	return err
}

// ToProto converts a value for the wire.
func ToProto(v *vsecrets.Value) *secretsv1.Secret {
	out := &secretsv1.Secret{
		Name:            v.Name,
		SpiffeId:        v.SPIFFEID.String(),
		Value:           v.Data,
		ContentType:     v.ContentType,
		Version:         v.Version,
		LeaseIdHash:     v.LeaseIDHash,
		LeaseTtlSeconds: int64(v.LeaseTTL / time.Second),
		Renewable:       v.Renewable,
		UpdatedAt:       v.UpdatedAt.Unix(),
	}
	if !v.ExpiresAt.IsZero() {
		out.ExpiresAt = v.ExpiresAt.Unix()
	}
	return out
}

type policiesServer struct {
	secretsv1.UnimplementedSecretPoliciesServer
	a *API
}

// PolicyToProto converts a policy for the wire.
func PolicyToProto(p vsecrets.Policy) *secretsv1.SecretPolicy {
	return &secretsv1.SecretPolicy{
		Id: p.ID, SpiffeIdPattern: p.SPIFFEIDPattern, Path: p.Path, Engine: string(p.Engine),
		Field: p.Field, Params: p.Params, Revision: p.Revision,
	}
}

// PolicyFromProto converts a policy from the wire.
func PolicyFromProto(p *secretsv1.SecretPolicy) vsecrets.Policy {
	if p == nil {
		return vsecrets.Policy{}
	}
	out := vsecrets.Policy{
		ID: p.Id, SPIFFEIDPattern: p.SpiffeIdPattern, Path: p.Path, Engine: vsecrets.Engine(p.Engine),
		Field: p.Field,
	}
	if len(p.Params) > 0 {
		out.Params = p.Params
	}
	return out
}

func (s *policiesServer) CreatePolicy(ctx context.Context, req *secretsv1.CreatePolicyRequest) (*secretsv1.SecretPolicy, error) {
	if req.Policy == nil {
		return nil, status.Error(codes.InvalidArgument, "policy is required")
	}
	p := PolicyFromProto(req.Policy)
	if err := p.Validate(); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if ptd, err := p.TrustDomain(); err != nil || ptd != s.a.cfg.TrustDomain {
		return nil, status.Errorf(codes.InvalidArgument, "spiffe_id_pattern %q is not in trust domain %q", p.SPIFFEIDPattern, s.a.cfg.TrustDomain)
	}
	out, err := s.a.cfg.Policies.Create(ctx, p)
	switch {
	case errors.Is(err, vsecrets.ErrPolicyExists):
		return nil, status.Errorf(codes.AlreadyExists, "secret policy %q already exists", p.ID)
	case errors.Is(err, vsecrets.ErrInvalidPolicy):
		return nil, status.Error(codes.InvalidArgument, err.Error())
	case err != nil:
		return nil, status.Errorf(codes.Internal, "failed to create secret policy: %v", err)
	}
	s.a.log.Info("secrets: policy created", "policy", p.ID, "pattern", p.SPIFFEIDPattern, "path", p.Path, "engine", string(p.Engine))
	return PolicyToProto(out), nil
}

func (s *policiesServer) ListPolicies(ctx context.Context, _ *secretsv1.ListPoliciesRequest) (*secretsv1.ListPoliciesResponse, error) {
	ps, err := s.a.cfg.Policies.List(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "failed to list secret policies: %v", err)
	}
	resp := &secretsv1.ListPoliciesResponse{}
	for _, p := range ps {
		resp.Policies = append(resp.Policies, PolicyToProto(p))
	}
	return resp, nil
}

func (s *policiesServer) DeletePolicy(ctx context.Context, req *secretsv1.DeletePolicyRequest) (*secretsv1.DeletePolicyResponse, error) {
	if req.Id == "" {
		return nil, status.Error(codes.InvalidArgument, "id is required")
	}
	err := s.a.cfg.Policies.Delete(ctx, req.Id, 0)
	switch {
	case errors.Is(err, vsecrets.ErrPolicyNotFound):
		return nil, status.Errorf(codes.NotFound, "secret policy %q not found", req.Id)
	case err != nil:
		return nil, status.Errorf(codes.Internal, "failed to delete secret policy: %v", err)
	}
	s.a.cfg.Broker.Revoke(ctx, req.Id)
	s.a.log.Info("secrets: policy deleted", "policy", req.Id)
	return &secretsv1.DeletePolicyResponse{}, nil
}

// Full method names, for the server's authorization table.
const (
	// MethodWatch is called by agents.
	MethodWatch = "/signet.secrets.v1.Secrets/Watch"
	// Admin methods.
	MethodCreatePolicy = "/signet.secrets.v1.SecretPolicies/CreatePolicy"
	MethodListPolicies = "/signet.secrets.v1.SecretPolicies/ListPolicies"
	MethodDeletePolicy = "/signet.secrets.v1.SecretPolicies/DeletePolicy"
)
