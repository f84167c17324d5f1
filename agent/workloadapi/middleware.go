package workloadapi

import (
	"context"
	"errors"
	"log/slog"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/signet-id/signet/agent/peercred"
	"github.com/signet-id/signet/agent/sds"
	"github.com/signet-id/signet/telemetry"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// SecurityHeader is the metadata key every Workload API request must carry
// with the value "true".
const SecurityHeader = "workload.spiffe.io"

// headerExempt reports whether a method may be called without the security
// header: gRPC's own services (health, reflection) and Envoy's SDS, which
// cannot set it. Everything else on the socket, including services other
// than the Workload API, requires it.
func headerExempt(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/grpc.") || strings.HasPrefix(fullMethod, "/envoy.")
}

func checkHeader(ctx context.Context, fullMethod string) error {
	if headerExempt(fullMethod) {
		return nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if !hasSecurityHeader(md.Get(SecurityHeader)) {
		return errMissingHeader
	}
	return nil
}

var errMissingHeader = status.Error(codes.InvalidArgument, "security header missing from request")

// attestError marks a failed workload attestation (the status it carries
// goes to the caller unchanged).
type attestError struct{ err error }

func (e attestError) Error() string              { return e.err.Error() }
func (e attestError) Unwrap() error              { return e.err }
func (e attestError) GRPCStatus() *status.Status { return status.Convert(e.err) }

// denialReason is the reason label of a refused call (signet_workload_api_denials_total),
// or "" if err is no denial.
func denialReason(err error) string {
	var ae attestError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &ae):
		if status.Code(err) == codes.ResourceExhausted {
			return "rate_limited"
		}
		return "attestation_failed"
	case errors.Is(err, errMissingHeader):
		return "missing_security_header"
	case errors.Is(err, sds.ErrNotAuthorized):
		return "not_authorized"
	}
	switch status.Code(err) {
	case codes.PermissionDenied:
		return "no_identity"
	case codes.ResourceExhausted:
		return "rate_limited"
	}
	return ""
}

// methodName returns the last element of a full gRPC method name.
func methodName(fullMethod string) string {
	if i := strings.LastIndexByte(fullMethod, '/'); i >= 0 {
		return fullMethod[i+1:]
	}
	return fullMethod
}

func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	method := methodName(info.FullMethod)
	resp, err := func() (any, error) {
		done, err := s.lim.call(ctx)
		if err != nil {
			return nil, err
		}
		defer done()
		if err := checkHeader(ctx, info.FullMethod); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}()
	s.finish(ctx, method, err)
	return resp, err
}

func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	method := methodName(info.FullMethod)
	err := func() error {
		done, err := s.lim.call(ss.Context())
		if err != nil {
			return err
		}
		defer done()
		if err := checkHeader(ss.Context(), info.FullMethod); err != nil {
			return err
		}
		s.m.streamsOpen.WithLabelValues(method).Inc()
		defer s.m.streamsOpen.WithLabelValues(method).Dec()
		return handler(srv, ss)
	}()
	s.finish(ss.Context(), method, err)
	return err
}

func (s *Server) finish(ctx context.Context, method string, err error) {
	code := status.Code(err)
	s.m.requests.WithLabelValues(method, code.String()).Inc()
	if reason := denialReason(err); reason != "" {
		s.m.denials.WithLabelValues(reason).Inc()
		event := telemetry.EventAuthorizationDenied
		if reason == "rate_limited" {
			event = telemetry.EventRateLimited
		}
		ai, _ := peercred.FromContext(ctx)
		telemetry.SecurityEvent(ctx, s.log, event, slog.String(telemetry.FieldMethod, method), slog.String(telemetry.FieldDenial, reason),
			slog.Int(telemetry.FieldUID, int(ai.UID)), slog.Int(telemetry.FieldPID, int(ai.PID)),
			slog.String(telemetry.FieldCode, code.String()), slog.String(telemetry.FieldReason, status.Convert(err).Message()))
	}
	switch code {
	case codes.OK, codes.Canceled:
		s.log.DebugContext(ctx, "workloadapi: request", slog.String("method", method), slog.String("code", code.String()))
	default:
		s.log.InfoContext(ctx, "workloadapi: request failed", slog.String("method", method),
			slog.String("code", code.String()), slog.String("error", status.Convert(err).Message()))
	}
}

type metrics struct {
	connsTotal  prometheus.Counter
	connsOpen   prometheus.Gauge
	requests    *prometheus.CounterVec
	streamsOpen *prometheus.GaugeVec
	messages    *prometheus.CounterVec
	refused     *prometheus.CounterVec
	denials     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "signet", "workload_api"
	m := &metrics{
		connsTotal: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "connections_total",
			Help: "Workload API connections accepted.",
		}),
		connsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "connections_open",
			Help: "Workload API connections currently open.",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "requests_total",
			Help: "Workload API requests by method and gRPC status code (streams count when they end).",
		}, []string{"method", "code"}),
		streamsOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "streams_open",
			Help: "Workload API streams currently open, by method.",
		}, []string{"method"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "stream_messages_total",
			Help: "Workload API stream messages sent, by method.",
		}, []string{"method"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "limit_refusals_total",
			Help: "Workload API connections and calls refused by a per-uid limit, by limit.",
		}, []string{"limit"}),
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "denials_total",
			Help: "Workload API calls refused, by reason: no_identity, attestation_failed, rate_limited, missing_security_header, not_authorized (SDS names the caller does not hold).",
		}, []string{"reason"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.connsTotal, m.connsOpen, m.requests, m.streamsOpen, m.messages, m.refused, m.denials} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *metrics) sent(method string) { m.messages.WithLabelValues(method).Inc() }

// connStats counts connections.
type connStats struct{ m *metrics }

var _ stats.Handler = connStats{}

func (h connStats) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (h connStats) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context   { return ctx }
func (h connStats) HandleRPC(context.Context, stats.RPCStats)                         {}

func (h connStats) HandleConn(_ context.Context, s stats.ConnStats) {
	switch s.(type) {
	case *stats.ConnBegin:
		h.m.connsTotal.Inc()
		h.m.connsOpen.Inc()
	case *stats.ConnEnd:
		h.m.connsOpen.Dec()
	}
}
