package workloadapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"

	"github.com/signet-id/signet/agent/peercred"
	"github.com/signet-id/signet/privdir"
)

// maxRecvMsgSize bounds request messages; the largest legitimate one is a
// JWT-SVID to validate.
const maxRecvMsgSize = 256 << 10

// NewGRPCServer returns a gRPC server with the Workload API and Envoy's SDS
// (envoy.service.secret.v3, package sds) registered,
// peer-credential transport credentials, the per-uid and per-connection
// limits, the security header check, metrics and logging. Other services
// for the same socket (such as signet.secrets) may be registered on it
// before serving; they require the security header and count against the
// limits too.
func (s *Server) NewGRPCServer(opts ...grpc.ServerOption) *grpc.Server {
	opts = append(append(append(s.rpc.ServerOptions("workload"), []grpc.ServerOption{
		grpc.Creds(peercred.NewCredentials(peercred.WithProcRoot(s.procRoot), peercred.WithAdmit(s.lim.admit))),
		grpc.ChainUnaryInterceptor(s.unaryInterceptor),
		grpc.ChainStreamInterceptor(s.streamInterceptor),
		grpc.StatsHandler(connStats{s.m}),
		grpc.MaxRecvMsgSize(maxRecvMsgSize),
	}...), s.limits.serverOptions()...), opts...)
	g := grpc.NewServer(opts...)
	workload.RegisterSpiffeWorkloadAPIServer(g, s)
	s.sds.Register(g)
	return g
}

// Listen creates the Workload API socket at path. It creates the parent
// directory (0755) if needed and refuses one that is not owned by the
// running user or is writable by group or others, replaces a stale socket
// but refuses one a live process answers on, refuses to replace anything
// else, and makes the socket connectable by every user (mode 0777, as
// SPIRE does): callers are told apart by attestation, not file permissions.
func Listen(path string) (net.Listener, error) {
	if err := privdir.EnsureDir(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("workloadapi: socket directory: %w", err)
	}
	l, err := privdir.ListenUnix(path, 0o777)
	if err != nil {
		return nil, fmt.Errorf("workloadapi: %w", err)
	}
	return l, nil
}

// Serve listens on the Unix socket at path and serves the Workload API
// until ctx is done.
func (s *Server) Serve(ctx context.Context, path string) error {
	l, err := Listen(path)
	if err != nil {
		return err
	}
	return s.ServeListener(ctx, l)
}

// ServeListener serves the Workload API on l until ctx is done, then
// stops the server (closing open streams; clients reconnect) and closes l.
func (s *Server) ServeListener(ctx context.Context, l net.Listener) error {
	return serveGRPC(ctx, s.NewGRPCServer(), l)
}

func serveGRPC(ctx context.Context, g *grpc.Server, l net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(l) }()
	select {
	case err := <-errc:
		return fmt.Errorf("workloadapi: serve: %w", err)
	case <-ctx.Done():
		g.Stop()
		if err := <-errc; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("workloadapi: serve: %w", err)
		}
		return nil
	}
}
