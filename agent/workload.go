package agent

import (
	"context"
	"errors"

	agentsecrets "github.com/signet-id/signet/agent/secrets"
	"github.com/signet-id/signet/agent/workloadapi"
	"github.com/signet-id/signet/attest/unix"
	"github.com/signet-id/signet/privdir"
	secretsv1 "github.com/signet-id/signet/proto/signet/secrets/v1"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// serveWorkloadAPI starts the Workload API, and beside it the
// signet.secrets.v1 WorkloadSecrets service, on the configured socket; it
// returns a function that stops them.
func (a *Agent) serveWorkloadAPI(ctx context.Context) (func(), error) {
	att := a.cfg.Attestor
	if att == nil {
		att = unix.New(unix.WithLogger(a.log))
	}
	srv, err := workloadapi.New(workloadapi.Config{
		Cache:       a.cache,
		Attestor:    att,
		TrustDomain: a.cfg.TrustDomain,
		Limits:      a.cfg.WorkloadLimits,
		Logger:      a.log,
		Registerer:  a.cfg.Registry,
		NotReady:    a.notReady,
		SDS:         a.cfg.SDS,
	})
	if err != nil {
		return nil, err
	}
	sec, err := agentsecrets.New(agentsecrets.Config{Attestor: att, Cache: a.cache, Server: a.secretsClient, Logger: a.log})
	if err != nil {
		return nil, err
	}
	g := srv.NewGRPCServer()
	sec.Register(g)
	healthpb.RegisterHealthServer(g, healthServer{a: a})
	l, err := workloadapi.Listen(a.cfg.SocketPath)
	if err != nil {
		return nil, err
	}
	if err := privdir.OthersReach(a.cfg.SocketPath); err != nil {
		a.log.Warn("workloads of other users cannot reach the Workload API socket", "error", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := g.Serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			a.log.Error("Workload API stopped", "error", err)
		}
	}()
	for _, sink := range a.cfg.SecretSinks {
		go func() {
			if err := sec.RunSink(ctx, sink); err != nil && ctx.Err() == nil {
				a.log.Error("secret file sink stopped", "secret", sink.Name, "path", sink.Path, "error", err)
			}
		}()
	}
	a.log.Info("serving the Workload API", "socket", a.cfg.SocketPath)
	return func() { cancel(); g.Stop(); <-done }, nil
}

// secretsClient returns the current server session's secrets client.
func (a *Agent) secretsClient(context.Context) (secretsv1.SecretsClient, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conn == nil {
		return nil, agentsecrets.ErrNotConnected
	}
	return a.conn.Secrets(), nil
}
