// Package telemetry is the one home of what Signet's daemons tell
// operators beyond their logs: per-RPC metrics for the gRPC servers (the
// server's agent and admin listeners, the agent's Workload API socket),
// structured security events for a SIEM, and the /live and /ready health
// check handlers.
package telemetry

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// RPCMetrics counts and times the calls a gRPC server handles, by method
// and status code. It holds the metric families; one is shared by every gRPC server
// of a process, told apart by the server label.
type RPCMetrics struct {
	handled *prometheus.CounterVec
	seconds *prometheus.HistogramVec
	now     func() time.Time
}

// NewRPCMetrics registers the families with reg (if nil, they are kept but not
// exported). Families already registered by another NewRPCMetrics on reg are
// shared.
func NewRPCMetrics(reg prometheus.Registerer) (*RPCMetrics, error) {
	m := &RPCMetrics{
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signet_grpc_server_handled_total",
			Help: "gRPC calls completed, by server, full method and status code (streams count when they end).",
		}, []string{"server", "method", "code"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "signet_grpc_server_handling_seconds",
			Help:    "Time from the start of a gRPC call to its end, by server, full method and status code (streams: their lifetime).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"server", "method", "code"}),
		now: time.Now,
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.handled, err = register(reg, m.handled); err != nil {
		return nil, err
	}
	if m.seconds, err = register(reg, m.seconds); err != nil {
		return nil, err
	}
	return m, nil
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	if err != nil {
		return c, errors.Join(errors.New("telemetry: register"), err)
	}
	return c, nil
}

// ServerOptions returns the interceptors for the gRPC server named server
// (the server label, e.g. "agent", "admin", "workload"). Put them first so
// calls refused by later interceptors are counted too. A nil m counts
// nothing.
func (m *RPCMetrics) ServerOptions(server string) []grpc.ServerOption {
	if m == nil {
		return nil
	}
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			start := m.now()
			resp, err := h(ctx, req)
			m.observe(server, info.FullMethod, start, err)
			return resp, err
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			start := m.now()
			err := h(srv, ss)
			m.observe(server, info.FullMethod, start, err)
			return err
		}),
	}
}

func (m *RPCMetrics) observe(server, method string, start time.Time, err error) {
	code := status.Code(err).String()
	m.handled.WithLabelValues(server, method, code).Inc()
	m.seconds.WithLabelValues(server, method, code).Observe(m.now().Sub(start).Seconds())
}
