// Package workloadapi is the agent's SPIFFE Workload API server: the
// X.509-SVID and JWT-SVID profiles of the SPIFFE Workload API
// (github.com/spiffe/go-spiffe/v2/proto/spiffe/workload), served on a Unix
// socket to any local process.
//
// Callers are identified by the kernel (SO_PEERCRED, see package peercred)
// and attested by an Attestor into selectors, bound to the process,
// credentials and executable that opened the connection; they receive the
// identities of the cache entries whose selectors are a subset of theirs.
// Connections and calls are limited per uid (Limits). Behaviour follows
// the Workload API specification: every request must carry the metadata
// "workload.spiffe.io: true" (else InvalidArgument), a caller without an
// identity gets PermissionDenied, and each stream sends the full state at
// once and again whenever it changes. The WIT-SVID profile is not
// implemented (Unimplemented). Envoy's SDS (package sds) is served on the
// same socket with the same attestation and limits.
package workloadapi

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/signet-id/signet/agent/cache"
	"github.com/signet-id/signet/agent/peercred"
	"github.com/signet-id/signet/agent/sds"
	"github.com/signet-id/signet/clock"
	"github.com/signet-id/signet/telemetry"
)

// Attestor turns the process ID of a caller into selectors.
type Attestor interface {
	Attest(ctx context.Context, pid int32) ([]*types.Selector, error)
}

// Cache is the part of the agent's identity cache the server reads.
type Cache interface {
	Subscribe(selectors []*types.Selector) *cache.Subscription
	FetchWorkloadUpdate(selectors []*types.Selector) *cache.WorkloadUpdate
	MatchingEntries(selectors []*types.Selector) []*types.Entry
	FetchJWTSVID(ctx context.Context, entry *types.Entry, audience []string) (*cache.JWTSVID, error)
}

var _ Cache = (*cache.Cache)(nil)

// Config configures a Server.
type Config struct {
	// Cache and Attestor are required.
	Cache    Cache
	Attestor Attestor
	// TrustDomain is the agent's trust domain; JWT-SVIDs of other trust
	// domains have their claims reduced to sub, aud and exp (plus
	// AllowedForeignJWTClaims) by ValidateJWTSVID, as SPIRE does.
	TrustDomain             spiffeid.TrustDomain
	AllowedForeignJWTClaims []string
	// AllowUnauthenticatedVerifiers lets callers without an identity fetch
	// bundles (FetchX509Bundles, FetchJWTBundles), as SPIRE's option of
	// the same name.
	AllowUnauthenticatedVerifiers bool
	// ProcRoot is the procfs mount point for the peer credentials
	// (default "/proc").
	ProcRoot string
	// Limits bound connections and calls per local user (zero: defaults).
	Limits Limits
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Registerer, if set, receives the server's metrics.
	Registerer prometheus.Registerer
	// NotReady, if set, returns why the agent cannot issue identities yet
	// (not attested, server unreachable) or nil. A caller without an
	// identity then gets Unavailable with that reason instead of
	// PermissionDenied "no identity issued", and retries.
	NotReady func() error
	// SDS names the resources of Envoy's SDS on the socket (zero:
	// SPIRE's defaults).
	SDS sds.Settings
	// PendingTimeout bounds how long a FetchX509SVID stream waits for
	// its first SVID when the caller matches entries whose SVIDs are
	// still being obtained (the agent mints them on demand); it then ends
	// with Unavailable and the client retries. Zero:
	// DefaultPendingTimeout.
	PendingTimeout time.Duration
	// Clock times PendingTimeout (default the wall clock).
	Clock clock.Clock
}

// DefaultPendingTimeout is the default Config.PendingTimeout.
const DefaultPendingTimeout = 30 * time.Second

// Server implements the SPIFFE Workload API.
type Server struct {
	workload.UnimplementedSpiffeWorkloadAPIServer

	cache         Cache
	attestor      Attestor
	td            spiffeid.TrustDomain
	allowedClaims map[string]bool
	allowUnauth   bool
	procRoot      string
	limits        Limits
	lim           *uidLimiter
	log           *slog.Logger
	m             *metrics
	notReady      func() error
	rpc           *telemetry.RPCMetrics
	sds           *sds.Handler
	pending       time.Duration
	clock         clock.Clock
}

var _ workload.SpiffeWorkloadAPIServer = (*Server)(nil)

// New returns a Server.
func New(c Config) (*Server, error) {
	if c.Cache == nil || c.Attestor == nil {
		return nil, errors.New("workloadapi: cache and attestor are required")
	}
	if c.TrustDomain.IsZero() {
		return nil, errors.New("workloadapi: trust domain is required")
	}
	s := &Server{
		cache:         c.Cache,
		attestor:      c.Attestor,
		td:            c.TrustDomain,
		allowedClaims: make(map[string]bool),
		allowUnauth:   c.AllowUnauthenticatedVerifiers,
		procRoot:      c.ProcRoot,
		log:           c.Logger,
		notReady:      c.NotReady,
		pending:       c.PendingTimeout,
		clock:         clock.Or(c.Clock),
	}
	if s.pending <= 0 {
		s.pending = DefaultPendingTimeout
	}
	if s.procRoot == "" {
		s.procRoot = "/proc"
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	for _, claim := range c.AllowedForeignJWTClaims {
		s.allowedClaims[claim] = true
	}
	m, err := newMetrics(c.Registerer)
	if err != nil {
		return nil, err
	}
	s.m = m
	if s.rpc, err = telemetry.NewRPCMetrics(c.Registerer); err != nil {
		return nil, err
	}
	s.limits = c.Limits.withDefaults()
	s.lim = newUIDLimiter(s.limits, m)
	s.sds, err = sds.New(sds.Config{
		Attest: s.Attest, Cache: c.Cache, NoIdentity: s.noIdentity, AllowUnauthenticatedVerifiers: s.allowUnauth,
		Settings: c.SDS, Logger: s.log, Registerer: c.Registerer,
	})
	if err != nil {
		return nil, fmt.Errorf("workloadapi: %w", err)
	}
	return s, nil
}

var errNoIdentity = status.Error(codes.PermissionDenied, "no identity issued")

// errPending skips a stream update: the caller's identity is on its way.
var errPending = errors.New("workloadapi: identity pending")

// noIdentity is the error for a caller without an identity: Unavailable
// with the reason while the agent is not attested yet, errNoIdentity once
// it is.
func (s *Server) noIdentity() error {
	if s.notReady != nil {
		if err := s.notReady(); err != nil {
			return status.Errorf(codes.Unavailable, "agent is not attested yet: %v", err)
		}
	}
	return errNoIdentity
}

// Attest identifies the caller of an RPC on the socket's gRPC server (see
// peercred.Attest: the selectors describe the process, credentials and
// executable that opened the connection). Its error is the status for the
// caller. Other services on the socket (SDS) attest their callers with it.
func (s *Server) Attest(ctx context.Context) ([]*types.Selector, error) {
	ai, selectors, err := peercred.Attest(ctx, s.attestor.Attest)
	if err != nil {
		s.log.WarnContext(ctx, "workloadapi: workload attestation failed",
			slog.Int("pid", int(ai.PID)), slog.Int("uid", int(ai.UID)), slog.Any("error", err))
		return nil, attestError{err}
	}
	return selectors, nil
}

// FetchX509SVID implements the Workload API.
func (s *Server) FetchX509SVID(_ *workload.X509SVIDRequest, stream grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	return streamUpdates(s, stream, "FetchX509SVID", func(ctx context.Context, selectors []*types.Selector, u *cache.WorkloadUpdate) (*workload.X509SVIDResponse, error) {
		ids := uniqueHints(u.Identities)
		if len(ids) == 0 {
			if len(s.cache.MatchingEntries(selectors)) > 0 {
				// An entry matches but its SVID is still being minted:
				// the next update brings it.
				return nil, errPending
			}
			s.log.DebugContext(ctx, "workloadapi: no identity issued", slog.Any("selectors", selectorStrings(selectors)))
			return nil, s.noIdentity()
		}
		resp, err := x509SVIDResponse(ids, u)
		if err != nil {
			s.log.ErrorContext(ctx, "workloadapi: compose X.509-SVID response", slog.Any("error", err))
			return nil, status.Errorf(codes.Unavailable, "could not compose response: %v", err)
		}
		return resp, nil
	})
}

// streamUpdates serves one Workload API stream: it attests the caller,
// follows its view of the cache, and sends the message build makes from
// every change (the full state each time, never the same one twice). An
// error from build ends the stream with it.
func streamUpdates[T any, PT interface {
	*T
	proto.Message
}](s *Server, stream grpc.ServerStreamingServer[T], method string, build func(context.Context, []*types.Selector, *cache.WorkloadUpdate) (PT, error)) error {
	ctx := stream.Context()
	selectors, err := s.Attest(ctx)
	if err != nil {
		return err
	}
	sub := s.cache.Subscribe(selectors)
	defer sub.Close()
	var prev PT
	// pending fires when the first identity took too long to arrive.
	var pending clock.Timer
	var pendingC <-chan time.Time
	defer func() {
		if pending != nil {
			pending.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-pendingC:
			s.log.WarnContext(ctx, "workloadapi: identity still pending", slog.String("method", method), slog.Duration("waited", s.pending))
			return status.Errorf(codes.Unavailable, "identity not issued within %v: the agent is still obtaining it; retry", s.pending)
		case u, ok := <-sub.Updates():
			if !ok {
				return status.Error(codes.Unavailable, "cache subscription closed")
			}
			resp, err := build(ctx, selectors, u)
			if errors.Is(err, errPending) {
				if prev == nil && pending == nil {
					pending = s.clock.NewTimer(s.pending)
					pendingC = pending.C()
				}
				continue
			}
			if pending != nil {
				pending.Stop()
				pending, pendingC = nil, nil
			}
			if err != nil {
				return err
			}
			if prev != nil && proto.Equal(prev, resp) {
				continue
			}
			if err := peercred.Reverify(ctx); err != nil {
				s.log.WarnContext(ctx, "workloadapi: ending stream of a changed caller", slog.String("method", method), slog.Any("error", err))
				return err
			}
			if err := stream.Send(resp); err != nil {
				return err
			}
			s.m.sent(method)
			prev = resp
		}
	}
}

// bundlesVisible checks that the caller may see bundles in u.
func (s *Server) bundlesVisible(u *cache.WorkloadUpdate) error {
	if !u.HasIdentity() && !s.allowUnauth {
		return s.noIdentity()
	}
	if u.Bundle == nil {
		return status.Error(codes.Unavailable, "bundle not available")
	}
	return nil
}

// FetchX509Bundles implements the Workload API.
func (s *Server) FetchX509Bundles(_ *workload.X509BundlesRequest, stream grpc.ServerStreamingServer[workload.X509BundlesResponse]) error {
	return streamUpdates(s, stream, "FetchX509Bundles", func(_ context.Context, _ []*types.Selector, u *cache.WorkloadUpdate) (*workload.X509BundlesResponse, error) {
		if err := s.bundlesVisible(u); err != nil {
			return nil, err
		}
		resp := &workload.X509BundlesResponse{Bundles: map[string][]byte{
			u.Bundle.TrustDomain().IDString(): concatDER(u.Bundle.X509Authorities()),
		}}
		for td, b := range u.Federated {
			resp.Bundles[td.IDString()] = concatDER(b.X509Authorities())
		}
		return resp, nil
	})
}

// FetchJWTSVID implements the Workload API.
func (s *Server) FetchJWTSVID(ctx context.Context, req *workload.JWTSVIDRequest) (*workload.JWTSVIDResponse, error) {
	if len(req.Audience) == 0 || slices.Contains(req.Audience, "") {
		return nil, status.Error(codes.InvalidArgument, "audience must be specified")
	}
	if req.SpiffeId != "" {
		if _, err := spiffeid.FromString(req.SpiffeId); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "invalid requested SPIFFE ID: %v", err)
		}
	}
	selectors, err := s.Attest(ctx)
	if err != nil {
		return nil, err
	}

	resp := new(workload.JWTSVIDResponse)
	for _, e := range uniqueHintEntries(s.cache.MatchingEntries(selectors)) {
		id, err := cache.EntrySPIFFEID(e)
		if err != nil {
			continue
		}
		if req.SpiffeId != "" && id.String() != req.SpiffeId {
			continue
		}
		svid, err := s.cache.FetchJWTSVID(ctx, e, req.Audience)
		if err != nil {
			s.log.ErrorContext(ctx, "workloadapi: fetch JWT-SVID", slog.String("spiffe_id", id.String()), slog.Any("error", err))
			return nil, status.Errorf(codes.Unavailable, "could not fetch JWT-SVID: %v", err)
		}
		resp.Svids = append(resp.Svids, &workload.JWTSVID{SpiffeId: id.String(), Svid: svid.Token, Hint: e.Hint})
	}
	if len(resp.Svids) == 0 {
		return nil, s.noIdentity()
	}
	return resp, nil
}

// FetchJWTBundles implements the Workload API.
func (s *Server) FetchJWTBundles(_ *workload.JWTBundlesRequest, stream grpc.ServerStreamingServer[workload.JWTBundlesResponse]) error {
	return streamUpdates(s, stream, "FetchJWTBundles", func(ctx context.Context, _ []*types.Selector, u *cache.WorkloadUpdate) (*workload.JWTBundlesResponse, error) {
		if err := s.bundlesVisible(u); err != nil {
			return nil, err
		}
		resp := &workload.JWTBundlesResponse{Bundles: make(map[string][]byte)}
		for _, b := range append([]*spiffebundle.Bundle{u.Bundle}, federated(u)...) {
			resp.Bundles[b.TrustDomain().IDString()] = s.marshalJWKS(ctx, b)
		}
		return resp, nil
	})
}

// ValidateJWTSVID implements the Workload API. The token is validated
// against the bundles the caller can see: its own trust domain's and those
// of the trust domains its identities federate with.
func (s *Server) ValidateJWTSVID(ctx context.Context, req *workload.ValidateJWTSVIDRequest) (*workload.ValidateJWTSVIDResponse, error) {
	if req.Audience == "" {
		return nil, status.Error(codes.InvalidArgument, "audience must be specified")
	}
	if req.Svid == "" {
		return nil, status.Error(codes.InvalidArgument, "svid must be specified")
	}
	selectors, err := s.Attest(ctx)
	if err != nil {
		return nil, err
	}
	u := s.cache.FetchWorkloadUpdate(selectors)
	var bundles []*jwtbundle.Bundle
	if u.Bundle != nil {
		bundles = append(bundles, u.Bundle.JWTBundle())
	}
	for _, b := range federated(u) {
		bundles = append(bundles, b.JWTBundle())
	}

	svid, err := jwtsvid.ParseAndValidate(req.Svid, jwtbundle.NewSet(bundles...), []string{req.Audience})
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}

	claims := make(map[string]any, len(svid.Claims))
	for k, v := range svid.Claims {
		if !svid.ID.MemberOf(s.td) && !s.foreignClaimAllowed(k) {
			continue
		}
		claims[k] = v
	}
	// RFC 7519 allows a single audience as a string; always answer a list.
	if aud, ok := claims["aud"].(string); ok {
		claims["aud"] = []string{aud}
	}
	st, err := structFromClaims(claims)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "cannot represent claims: %v", err)
	}
	return &workload.ValidateJWTSVIDResponse{SpiffeId: svid.ID.String(), Claims: st}, nil
}

func (s *Server) foreignClaimAllowed(claim string) bool {
	switch claim {
	case "sub", "aud", "exp":
		return true
	}
	return s.allowedClaims[claim]
}

func structFromClaims(claims map[string]any) (*structpb.Struct, error) {
	b, err := json.Marshal(claims)
	if err != nil {
		return nil, err
	}
	st := new(structpb.Struct)
	if err := protojson.Unmarshal(b, st); err != nil {
		return nil, err
	}
	return st, nil
}

// marshalJWKS encodes the JWT authorities of b as a standard JWK Set, keys
// ordered by key ID so that equal bundles encode equally. Keys that JOSE
// cannot represent are left out.
func (s *Server) marshalJWKS(ctx context.Context, b *spiffebundle.Bundle) []byte {
	auth := b.JWTAuthorities()
	kids := make([]string, 0, len(auth))
	for kid := range auth {
		kids = append(kids, kid)
	}
	slices.Sort(kids)
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(kids))}
	for _, kid := range kids {
		k := jose.JSONWebKey{Key: auth[kid], KeyID: kid}
		if _, err := k.MarshalJSON(); err != nil {
			s.log.WarnContext(ctx, "workloadapi: leaving unsupported JWT key out of JWKS",
				slog.String("trust_domain", b.TrustDomain().String()), slog.String("kid", kid), slog.Any("error", err))
			continue
		}
		set.Keys = append(set.Keys, k)
	}
	out, err := json.Marshal(set)
	if err != nil {
		// Every key was checked above.
		panic(fmt.Sprintf("workloadapi: marshal JWKS: %v", err))
	}
	return out
}

func x509SVIDResponse(ids []cache.Identity, u *cache.WorkloadUpdate) (*workload.X509SVIDResponse, error) {
	if u.Bundle == nil {
		return nil, errors.New("bundle not available")
	}
	bundle := concatDER(u.Bundle.X509Authorities())
	resp := &workload.X509SVIDResponse{
		Svids:            make([]*workload.X509SVID, 0, len(ids)),
		FederatedBundles: make(map[string][]byte, len(u.Federated)),
	}
	for td, b := range u.Federated {
		resp.FederatedBundles[td.IDString()] = concatDER(b.X509Authorities())
	}
	for _, id := range ids {
		spiffeID, err := cache.EntrySPIFFEID(id.Entry)
		if err != nil {
			return nil, err
		}
		key, err := x509.MarshalPKCS8PrivateKey(id.SVID.Key)
		if err != nil {
			return nil, fmt.Errorf("marshal key for %s: %w", spiffeID, err)
		}
		resp.Svids = append(resp.Svids, &workload.X509SVID{
			SpiffeId:    spiffeID.String(),
			X509Svid:    concatDER(id.SVID.Chain),
			X509SvidKey: key,
			Bundle:      bundle,
			Hint:        id.Entry.Hint,
		})
	}
	return resp, nil
}

func federated(u *cache.WorkloadUpdate) []*spiffebundle.Bundle {
	out := make([]*spiffebundle.Bundle, 0, len(u.Federated))
	for _, b := range u.Federated {
		out = append(out, b)
	}
	return out
}

func concatDER(certs []*x509.Certificate) []byte {
	var n int
	for _, c := range certs {
		n += len(c.Raw)
	}
	out := make([]byte, 0, n)
	for _, c := range certs {
		out = append(out, c.Raw...)
	}
	return out
}

// hintWinner reports whether a should be kept over b when both carry the
// same hint: the older entry wins, then the smaller ID (as SPIRE does).
func hintWinner(a, b *types.Entry) bool {
	if a.CreatedAt != b.CreatedAt {
		return a.CreatedAt < b.CreatedAt
	}
	return a.Id < b.Id
}

// uniqueHintEntries drops entries whose non-empty hint is also carried by
// a winning entry, keeping order: the spec requires hints to be unique in
// a response.
func uniqueHintEntries(entries []*types.Entry) []*types.Entry {
	best := make(map[string]*types.Entry)
	for _, e := range entries {
		if e.Hint == "" {
			continue
		}
		if cur, ok := best[e.Hint]; !ok || hintWinner(e, cur) {
			best[e.Hint] = e
		}
	}
	out := make([]*types.Entry, 0, len(entries))
	for _, e := range entries {
		if e.Hint == "" || best[e.Hint] == e {
			out = append(out, e)
		}
	}
	return out
}

func uniqueHints(ids []cache.Identity) []cache.Identity {
	entries := make([]*types.Entry, len(ids))
	for i, id := range ids {
		entries[i] = id.Entry
	}
	keep := uniqueHintEntries(entries)
	out := make([]cache.Identity, 0, len(keep))
	for _, id := range ids {
		if slices.Contains(keep, id.Entry) {
			out = append(out, id)
		}
	}
	return out
}

func selectorStrings(sel []*types.Selector) []string {
	out := make([]string, len(sel))
	for i, s := range sel {
		out[i] = s.Type + ":" + s.Value
	}
	return out
}

// hasSecurityHeader reports whether the request carries exactly
// "workload.spiffe.io: true".
func hasSecurityHeader(values []string) bool {
	return len(values) == 1 && values[0] == "true"
}
