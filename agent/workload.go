package agent

import (
	"context"

	"github.com/signet-id/signet/agent/workloadapi"
	"github.com/signet-id/signet/attest/unix"
)

// serveWorkloadAPI starts the Workload API on the configured socket and
// returns a function that stops it.
func (a *Agent) serveWorkloadAPI(ctx context.Context) (func(), error) {
	att := a.cfg.Attestor
	if att == nil {
		att = unix.New(unix.WithLogger(a.log))
	}
	srv, err := workloadapi.New(workloadapi.Config{
		Cache:       a.cache,
		Attestor:    att,
		TrustDomain: a.cfg.TrustDomain,
		Logger:      a.log,
		Registerer:  a.cfg.Registry,
	})
	if err != nil {
		return nil, err
	}
	l, err := workloadapi.Listen(a.cfg.SocketPath)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.ServeListener(ctx, l); err != nil {
			a.log.Error("Workload API stopped", "error", err)
		}
	}()
	a.log.Info("serving the Workload API", "socket", a.cfg.SocketPath)
	return func() { cancel(); <-done }, nil
}
