package etcdserver

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"go.uber.org/zap"
)

// TestZapLoggerLevels: etcd's listener errors at a clean stop reach the
// log at DEBUG; the same message with any other error, and every other
// etcd error, stays at ERROR; below error level nothing is forwarded.
func TestZapLoggerLevels(t *testing.T) {
	const serving = "setting up serving from embedded etcd failed."
	for _, tc := range []struct {
		name  string
		log   func(*zap.Logger)
		level string // "" = nothing logged
	}{
		{"http server closed", func(l *zap.Logger) { l.Error(serving, zap.Error(errors.New("http: Server closed"))) }, "DEBUG"},
		{"mux closed", func(l *zap.Logger) { l.Error(serving, zap.Error(errors.New("mux: server closed"))) }, "DEBUG"},
		{"closed conn", func(l *zap.Logger) {
			l.Error(serving, zap.Error(errors.New("accept unix /d/client.sock: use of closed network connection")))
		}, "DEBUG"},
		{"real serving failure", func(l *zap.Logger) { l.Error(serving, zap.Error(errors.New("listen unix: permission denied"))) }, "ERROR"},
		{"other error", func(l *zap.Logger) { l.Error("failed to save snapshot", zap.Error(errors.New("disk full"))) }, "ERROR"},
		{"warning", func(l *zap.Logger) { l.Warn("slow fdatasync") }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			tc.log(newZapLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))))
			out := buf.String()
			if tc.level == "" {
				if out != "" {
					t.Fatalf("logged %q, want nothing", out)
				}
				return
			}
			if !strings.Contains(out, "level="+tc.level+" ") || !strings.Contains(out, `msg="etcd: `) {
				t.Fatalf("logged %q, want level=%s", out, tc.level)
			}
		})
	}
}
