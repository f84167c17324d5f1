package server_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signet-id/signet/server"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestCleanStopLogsNoError: a server stopped cleanly (the context
// SIGINT/SIGTERM cancels) with a client connected to its agent listener
// logs "server stopped" and no ERROR record, in text and in JSON, though
// embedded etcd reports its closed listeners as errors while it stops.
func TestCleanStopLogsNoError(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			var logs syncBuffer
			opts := &slog.HandlerOptions{Level: slog.LevelDebug}
			h := slog.Handler(slog.NewTextHandler(&logs, opts))
			errLine := "level=ERROR"
			if format == "json" {
				h, errLine = slog.NewJSONHandler(&logs, opts), `"level":"ERROR"`
			}
			dir, err := os.MkdirTemp("", "sg")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			srv, err := server.New(server.Config{
				TrustDomain: td,
				DataDir:     filepath.Join(dir, "server"),
				BindAddress: "127.0.0.1:0",
				AdminSocket: filepath.Join(dir, "admin", "api.sock"),
				Logger:      slog.New(h),
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- srv.Run(ctx) }()
			select {
			case <-srv.Ready():
			case err := <-done:
				t.Fatalf("server: %v", err)
			case <-time.After(60 * time.Second):
				t.Fatal("server did not start within 60s")
			}
			roots := x509.NewCertPool()
			for _, c := range srv.CA().Bundle().X509Authorities() {
				roots.AddCert(c)
			}
			ts := &testServer{Server: srv, roots: roots}
			if _, err := healthpb.NewHealthClient(ts.dial(t, nil)).Check(testContext(t), &healthpb.HealthCheckRequest{}); err != nil {
				t.Fatalf("health over the agent listener: %v", err)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("Run after a clean stop: %v", err)
			}
			out := logs.String()
			if !strings.Contains(out, "server stopped") {
				t.Errorf("no \"server stopped\" record:\n%s", out)
			}
			for _, line := range strings.Split(out, "\n") {
				if strings.Contains(line, errLine) {
					t.Errorf("ERROR record on a clean stop: %s", line)
				}
			}
		})
	}
}
