package limits

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

func TestMessageKindLimits(t *testing.T) {
	l := New(Config{}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	big := strings.Repeat("x", MaxSmallMessageBytes)
	csr := []byte(strings.Repeat("c", MaxCSRMessageBytes))
	cases := []struct {
		name   string
		req    any
		refuse bool
	}{
		{"small health check", &healthpb.HealthCheckRequest{Service: "x"}, false},
		{"health check over the limit", &healthpb.HealthCheckRequest{Service: big}, true},
		{"renewal with an oversized CSR", &agentv1.RenewAgentRequest{Params: &agentv1.AgentX509SVIDParams{Csr: csr}}, true},
		{"renewal with a real-sized CSR", &agentv1.RenewAgentRequest{Params: &agentv1.AgentX509SVIDParams{Csr: csr[:5000]}}, false},
		// A full batch of hybrid CSRs needs megabytes: only gRPC's limit applies.
		{"large batch", &svidv1.BatchNewX509SVIDRequest{Params: []*svidv1.NewX509SVIDParams{{Csr: csr}, {Csr: csr}}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := l.checkSize("/m", tc.req)
			if !tc.refuse {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "max_message_bytes") {
				t.Fatalf("got %v, want ResourceExhausted naming max_message_bytes", err)
			}
		})
	}
}
