package workloadapi

import (
	"context"
	"log/slog"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
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
		return status.Error(codes.InvalidArgument, "security header missing from request")
	}
	return nil
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
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.connsTotal, m.connsOpen, m.requests, m.streamsOpen, m.messages, m.refused} {
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
