package telemetry

import (
	"context"
	"net"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// serve runs a gRPC server with the health service over a Unix socket,
// the metrics interceptors first and then one that refuses Check for the
// service "denied", as an authorization interceptor would.
func serve(t *testing.T, m *RPCMetrics) healthpb.HealthClient {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	deny := grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if r, ok := req.(*healthpb.HealthCheckRequest); ok && r.GetService() == "denied" {
			return nil, status.Error(codes.PermissionDenied, "denied")
		}
		return h(ctx, req)
	})
	g := grpc.NewServer(append(m.ServerOptions("test"), deny)...)
	healthpb.RegisterHealthServer(g, health.NewServer())
	go func() { _ = g.Serve(l) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return healthpb.NewHealthClient(conn)
}

func TestCountsAndTimesCallsByMethodAndCode(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := NewRPCMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	c := serve(t, m)
	ctx := context.Background()
	for range 2 {
		if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"}); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown service: %v", err)
	}
	if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{Service: "denied"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("denied: %v", err)
	}
	const check = "/grpc.health.v1.Health/Check"
	for _, tc := range []struct {
		code string
		want float64
	}{{"OK", 2}, {"NotFound", 1}, {"PermissionDenied", 1}} {
		if got := counterValue(t, m.handled.WithLabelValues("test", check, tc.code)); got != tc.want {
			t.Errorf("handled{%s}: %v, want %v", tc.code, got, tc.want)
		}
	}
	// The histogram has one series per method and code, with as many
	// observations as calls.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather (pedantic): %v", err)
	}
	var observed uint64
	for _, mf := range mfs {
		if mf.GetName() == "signet_grpc_server_handling_seconds" {
			for _, s := range mf.GetMetric() {
				observed += s.GetHistogram().GetSampleCount()
			}
		}
	}
	if observed != 4 {
		t.Errorf("histogram observations: %d, want 4", observed)
	}
}

func TestSecondNewRPCMetricsOnARegistryShares(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, err := NewRPCMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewRPCMetrics(reg)
	if err != nil {
		t.Fatalf("second New: %v", err)
	}
	if a.handled != b.handled || a.seconds != b.seconds {
		t.Error("second New did not share the registered families")
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var d dto.Metric
	if err := c.Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetCounter().GetValue()
}
