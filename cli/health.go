package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/signet-id/signet/config"
	"github.com/signet-id/signet/telemetry"
)

// serveHealth serves SPIRE's health_checks listener: live answers 200
// while the process runs; ready answers 200 while ready reports true and
// 500 otherwise, both with a small JSON body. It returns the address it listens
// on; stop shuts the listener.
func serveHealth(h *config.HealthChecks, ready func() bool, log *slog.Logger) (addr string, stop func(), err error) {
	lis, err := net.Listen("tcp", h.Address())
	if err != nil {
		return "", nil, fmt.Errorf("health_checks listener %s: %w (choose another health_checks bind_port)", h.Address(), err)
	}
	live, readyPath := h.Paths()
	mux := http.NewServeMux()
	telemetry.HandleHealth(mux, live, readyPath, ready)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(lis) }()
	log.Info("serving health checks", "address", lis.Addr().String(), "live_path", live, "ready_path", readyPath)
	return lis.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = hs.Shutdown(ctx)
	}, nil
}

// closed reports whether ch is closed: a daemon's ready signal.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
