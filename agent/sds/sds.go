// Package sds serves Envoy's Secret Discovery Service
// (envoy.service.secret.v3, state of the world) on the agent's Workload
// API socket, with SPIRE's resource names: "default" (the workload's first
// identity), any SPIFFE ID it holds, "ROOTCA" (the own trust domain
// bundle), "ALL" (every bundle it may see, one SPIFFE certificate
// validator config) and any trust domain ID it may see (that bundle).
// Callers are attested as Workload API callers are; streams follow the
// caller's view of the agent cache and push when it changes. DeltaSecrets
// is not implemented (Unimplemented). See docs/sds.md.
package sds

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strconv"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/signet-id/signet/agent/cache"
	"github.com/signet-id/signet/agent/peercred"
)

// Cache is the part of the agent's identity cache SDS reads.
type Cache interface {
	Subscribe(selectors []*types.Selector) *cache.Subscription
	FetchWorkloadUpdate(selectors []*types.Selector) *cache.WorkloadUpdate
	MatchingEntries(selectors []*types.Selector) []*types.Entry
}

// Config configures a Handler.
type Config struct {
	// Attest identifies the caller of an RPC by its selectors (the
	// Workload API server's Attest). Required.
	Attest func(ctx context.Context) ([]*types.Selector, error)
	// Cache is required.
	Cache Cache
	// NoIdentity returns the error for a caller without an identity that
	// asks for everything (default PermissionDenied).
	NoIdentity func() error
	// AllowUnauthenticatedVerifiers lets callers without an identity see
	// the bundles, as on the Workload API.
	AllowUnauthenticatedVerifiers bool
	Settings                      Settings
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Registerer, if set, receives the metrics.
	Registerer prometheus.Registerer
}

// Handler implements SecretDiscoveryService.
type Handler struct {
	secretv3.UnimplementedSecretDiscoveryServiceServer

	attest      func(context.Context) ([]*types.Selector, error)
	cache       Cache
	noIdentity  func() error
	allowUnauth bool
	set         Settings
	log         *slog.Logger
	m           *metrics
}

var _ secretv3.SecretDiscoveryServiceServer = (*Handler)(nil)

// New returns a Handler.
func New(c Config) (*Handler, error) {
	if c.Attest == nil || c.Cache == nil {
		return nil, errors.New("sds: attest and cache are required")
	}
	if err := c.Settings.Validate(); err != nil {
		return nil, err
	}
	h := &Handler{
		attest: c.Attest, cache: c.Cache, noIdentity: c.NoIdentity, allowUnauth: c.AllowUnauthenticatedVerifiers,
		set: c.Settings.WithDefaults(), log: c.Logger,
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.noIdentity == nil {
		h.noIdentity = func() error { return status.Error(codes.PermissionDenied, "no identity issued") }
	}
	var err error
	if h.m, err = newMetrics(c.Registerer); err != nil {
		return nil, err
	}
	return h, nil
}

// Register registers the service on g.
func (h *Handler) Register(g grpc.ServiceRegistrar) {
	secretv3.RegisterSecretDiscoveryServiceServer(g, h)
}

// errPending: an identity the request needs is being minted.
var errPending = errors.New("sds: identity pending")

// build answers req from the caller's view u.
func (h *Handler) build(req *discoveryv3.DiscoveryRequest, selectors []*types.Selector, u *cache.WorkloadUpdate) (*discoveryv3.DiscoveryResponse, error) {
	if req.TypeUrl != "" && req.TypeUrl != SecretTypeURL {
		return nil, status.Errorf(codes.InvalidArgument, "unsupported type URL %q (want %s)", req.TypeUrl, SecretTypeURL)
	}
	v := view{u: u, bundles: u.HasIdentity() || h.allowUnauth, spiffe: h.useSPIFFEValidator(req.Node)}
	res, err := h.resources(req, v)
	if errors.Is(err, ErrNotAuthorized) || (err == nil && len(res) == 0 && !v.bundles) {
		// Nothing (or not all) of what was asked is visible: wait if an
		// identity is on its way, else refuse.
		if len(h.cache.MatchingEntries(selectors)) > len(u.Identities) {
			return nil, errPending
		}
		if err == nil {
			err = h.noIdentity()
		}
	}
	if err != nil {
		return nil, err
	}
	return &discoveryv3.DiscoveryResponse{TypeUrl: SecretTypeURL, Resources: res}, nil
}

// FetchSecrets implements SecretDiscoveryService: one answer from the
// current view, without version or nonce.
func (h *Handler) FetchSecrets(ctx context.Context, req *discoveryv3.DiscoveryRequest) (*discoveryv3.DiscoveryResponse, error) {
	selectors, err := h.attest(ctx)
	if err != nil {
		return nil, err
	}
	resp, err := h.build(req, selectors, h.cache.FetchWorkloadUpdate(selectors))
	if errors.Is(err, errPending) {
		return nil, status.Error(codes.Unavailable, "identity is being issued; retry")
	}
	if err != nil {
		return nil, err
	}
	h.m.responses.WithLabelValues("FetchSecrets").Inc()
	return resp, nil
}

// StreamSecrets implements SecretDiscoveryService as Envoy speaks it: the
// first request names the resources; each response carries a new
// version_info and nonce; a request whose response_nonce is not the last
// one sent is stale and ignored; an ACK (version_info of the last
// response) or NACK (error_detail) sends nothing unless the resource names
// changed. A response is pushed whenever the requested resources change
// (SVID rotation, entry or bundle change), never the same one twice.
func (h *Handler) StreamSecrets(stream grpc.BidiStreamingServer[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse]) error {
	ctx := stream.Context()
	selectors, err := h.attest(ctx)
	if err != nil {
		return err
	}
	sub := h.cache.Subscribe(selectors)
	defer sub.Close()
	h.m.streamsOpen.Inc()
	defer h.m.streamsOpen.Dec()

	reqs := make(chan *discoveryv3.DiscoveryRequest)
	recvErr := make(chan error, 1)
	go func() {
		for {
			req, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case reqs <- req:
			case <-ctx.Done():
				return
			}
		}
	}()

	var (
		st   streamState
		u    *cache.WorkloadUpdate
		last *discoveryv3.DiscoveryRequest
	)
	for {
		force := false
		select {
		case <-ctx.Done():
			return nil
		case err := <-recvErr:
			if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
				return nil
			}
			return err
		case req := <-reqs:
			if !st.accept(ctx, h, req) {
				continue
			}
			if last != nil && req.Node == nil {
				req.Node = last.Node
			}
			changed := last == nil || namesChanged(last.ResourceNames, req.ResourceNames)
			last = req
			if !changed {
				continue
			}
			force = true
		case nu, ok := <-sub.Updates():
			if !ok {
				return status.Error(codes.Unavailable, "cache subscription closed")
			}
			u = nu
		}
		if last == nil || u == nil {
			continue
		}
		resp, err := h.build(last, selectors, u)
		if errors.Is(err, errPending) {
			continue
		}
		if err != nil {
			h.log.InfoContext(ctx, "sds: cannot answer request", slog.Any("resource_names", last.ResourceNames), slog.Any("error", err))
			return err
		}
		if !force && st.sent != nil && sameResources(st.sent.Resources, resp.Resources) {
			continue
		}
		// The caller must still be the process that connected.
		if err := peercred.Reverify(ctx); err != nil {
			h.log.WarnContext(ctx, "sds: ending stream of a changed caller", slog.Any("error", err))
			return err
		}
		// Counted before the send, so that a client that received it
		// sees it counted.
		h.m.responses.WithLabelValues("StreamSecrets").Inc()
		if err := st.send(stream, resp); err != nil {
			return err
		}
	}
}

// streamState is the xDS bookkeeping of one stream.
type streamState struct {
	version int64
	sent    *discoveryv3.DiscoveryResponse
}

// accept judges a request: false for a stale one (its nonce is not the
// last sent), which is ignored. A NACK (error_detail set; version_info
// is then the last version applied) is logged and counted; a request
// after it carries that older version too, without error_detail, and is
// no NACK.
func (st *streamState) accept(ctx context.Context, h *Handler, req *discoveryv3.DiscoveryRequest) bool {
	if st.sent == nil {
		return true
	}
	if req.ResponseNonce != st.sent.Nonce {
		h.log.DebugContext(ctx, "sds: ignoring request with a stale nonce", slog.String("nonce", req.ResponseNonce), slog.String("want", st.sent.Nonce))
		return false
	}
	if req.ErrorDetail != nil {
		h.m.nacks.Inc()
		h.log.WarnContext(ctx, "sds: Envoy rejected secrets", slog.String("version", st.sent.VersionInfo),
			slog.String("applied_version", req.VersionInfo), slog.Any("resource_names", req.ResourceNames),
			slog.String("error", req.ErrorDetail.GetMessage()))
	}
	return true
}

// send gives resp the next version and a fresh nonce and sends it.
func (st *streamState) send(stream grpc.BidiStreamingServer[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse], resp *discoveryv3.DiscoveryResponse) error {
	var n [8]byte
	if _, err := rand.Read(n[:]); err != nil {
		return status.Errorf(codes.Internal, "nonce: %v", err)
	}
	st.version++
	resp.VersionInfo = strconv.FormatInt(st.version, 10)
	resp.Nonce = hex.EncodeToString(n[:])
	if err := stream.Send(resp); err != nil {
		return err
	}
	st.sent = resp
	return nil
}

// namesChanged reports whether two resource name lists differ as sets.
func namesChanged(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return !slices.Equal(slices.Compact(a), slices.Compact(b))
}

func sameResources(a, b []*anypb.Any) bool {
	return slices.EqualFunc(a, b, func(x, y *anypb.Any) bool { return proto.Equal(x, y) })
}

type metrics struct {
	streamsOpen prometheus.Gauge
	responses   *prometheus.CounterVec
	nacks       prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "signet", "sds"
	m := &metrics{
		streamsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "streams_open",
			Help: "SDS StreamSecrets streams currently open.",
		}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "responses_total",
			Help: "SDS responses sent (stream pushes and fetches), by method.",
		}, []string{"method"}),
		nacks: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "nacks_total",
			Help: "SDS responses Envoy rejected (NACK).",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.streamsOpen, m.responses, m.nacks} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
