package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// TestSecurityEventJSONFields: the field names and levels a SIEM matches
// on, as a slog JSON handler writes them.
func TestSecurityEventJSONFields(t *testing.T) {
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 4242}})
	for _, tc := range []struct {
		name  string
		event string
		attrs []slog.Attr
		level string
		want  map[string]any
	}{
		{"attestation failed", EventAttestationFailed,
			append([]slog.Attr{slog.String(FieldMethod, "x509pop"), slog.String(FieldAgentID, "spiffe://example.org/spire/agent/x509pop/abc"), Peer(ctx)},
				Status(status.Error(codes.PermissionDenied, "certificate is not signed by a trusted root"))...),
			"WARN", map[string]any{"method": "x509pop", "agent_id": "spiffe://example.org/spire/agent/x509pop/abc", "peer": "192.0.2.7:4242",
				"code": "PermissionDenied", "reason": "certificate is not signed by a trusted root"}},
		{"authorization denied", EventAuthorizationDenied,
			append([]slog.Attr{slog.String(FieldMethod, "/spire.api.server.entry.v1.Entry/BatchCreateEntry"), Peer(context.Background())},
				Status(errors.New("plain"))...),
			"WARN", map[string]any{"method": "/spire.api.server.entry.v1.Entry/BatchCreateEntry", "peer": "", "code": "Unknown", "reason": "plain"}},
		{"rate limited", EventRateLimited, []slog.Attr{slog.String(FieldLimit, "attest_rate")},
			"WARN", map[string]any{"limit": "attest_rate"}},
		{"ca transition", EventCATransition,
			[]slog.Attr{slog.String(FieldKind, "x509"), slog.String(FieldAuthorityID, "ab12"), slog.String(FieldFrom, "prepared"), slog.String(FieldTo, "active")},
			"INFO", map[string]any{"kind": "x509", "authority_id": "ab12", "from": "prepared", "to": "active"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			SecurityEvent(ctx, slog.New(slog.NewJSONHandler(&b, nil)), tc.event, tc.attrs...)
			var got map[string]any
			if err := json.Unmarshal(b.Bytes(), &got); err != nil {
				t.Fatalf("not one JSON record: %q", b.String())
			}
			want := map[string]any{"event": tc.event, "category": "security", "level": tc.level, "msg": "security event: " + tc.event}
			for k, v := range tc.want {
				want[k] = v
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("field %s: %v, want %v", k, got[k], v)
				}
			}
			if len(got) != len(want)+1 { // + time
				t.Errorf("fields: %v, want exactly %v and time", got, want)
			}
		})
	}
}
