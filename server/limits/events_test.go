package limits

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/signet-id/signet/telemetry"
)

// TestRefusalIsRateLimitedEvent: a limit's refusal is logged as a
// rate_limited security event naming the limit.
func TestRefusalIsRateLimitedEvent(t *testing.T) {
	var b bytes.Buffer
	l := New(Config{}, slog.New(slog.NewJSONHandler(&b, nil)), prometheus.NewRegistry())
	if err := l.checkSize("/m", &healthpb.HealthCheckRequest{Service: strings.Repeat("x", MaxSmallMessageBytes)}); err == nil {
		t.Fatal("oversized message accepted")
	}
	var ev map[string]any
	if err := json.Unmarshal(b.Bytes(), &ev); err != nil {
		t.Fatalf("want one JSON record: %q", b.String())
	}
	if ev[telemetry.FieldEvent] != telemetry.EventRateLimited || ev[telemetry.FieldLimit] != "max_message_bytes" ||
		ev[telemetry.FieldCode] != "ResourceExhausted" || ev["level"] != "WARN" {
		t.Errorf("event: %v", ev)
	}
}
