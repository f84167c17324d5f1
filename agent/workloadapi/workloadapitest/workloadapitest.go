// Package workloadapitest serves a real Workload API server (with the
// services NewGRPCServer registers, such as SDS) on a fresh Unix socket for
// tests of the agent's workload-facing services.
package workloadapitest

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/signet-id/signet/agent/workloadapi"
)

// Serve serves srv on a socket in a new temporary directory until the test
// ends and returns the socket's path (<dir>/agent/api.sock; dir is mode
// 0700 and removed at the end).
func Serve(tb testing.TB, srv *workloadapi.Server) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "sg")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "agent", "api.sock")
	l, err := workloadapi.Listen(sock)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeListener(ctx, l) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("serve: %v", err)
		}
	})
	return sock
}
