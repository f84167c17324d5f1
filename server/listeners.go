package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/signet-id/signet/server/limits"
	"google.golang.org/grpc"
)

// listeners opens the agent listener (mTLS, limited per peer) and the
// admin socket, each with its gRPC server.
func (s *Server) listeners() ([]grpcListener, error) {
	lim := limits.New(s.limitsConfig(), s.log, s.cfg.Registry)
	agentSrv, adminSrv := s.grpcServers(lim)

	lis, err := net.Listen("tcp", s.cfg.BindAddress)
	if err != nil {
		return nil, fmt.Errorf("server: listen on %s: %w (choose another --bind-address)", s.cfg.BindAddress, err)
	}
	s.agentAddr.Store(lis.Addr().(*net.TCPAddr))
	lis = lim.Listener(lis)
	adminLis, err := listenAdmin(s.cfg.AdminSocket)
	if err != nil {
		lis.Close()
		return nil, err
	}
	return []grpcListener{
		{name: "agent listener", srv: agentSrv, lis: lis},
		{name: "admin socket", srv: adminSrv, lis: adminLis, stopped: func() { _ = os.Remove(s.cfg.AdminSocket) }},
	}, nil
}

// grpcListener serves a gRPC server on a listener until ctx is done, then
// stops it gracefully (forcibly after shutdownGrace).
type grpcListener struct {
	name    string
	srv     *grpc.Server
	lis     net.Listener
	stopped func() // if set, runs once the server stopped
}

var _ subsystem = grpcListener{}

func (l grpcListener) Name() string { return l.name }

func (l grpcListener) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- l.srv.Serve(l.lis) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		err = fmt.Errorf("serve: %w", err)
	}
	graceful := make(chan struct{})
	go func() {
		l.srv.GracefulStop()
		close(graceful)
	}()
	select {
	case <-graceful:
	case <-time.After(shutdownGrace):
		l.srv.Stop()
	}
	if err == nil {
		// Serve returns once the server stopped (nil after a stop); wait
		// for it so the listener is closed when Run returns.
		if serr := <-errc; serr != nil {
			err = fmt.Errorf("serve: %w", serr)
		}
	}
	if l.stopped != nil {
		l.stopped()
	}
	return err
}

// httpListener serves an HTTP handler on a listener (over TLS with tls,
// plain HTTP without) until ctx is done, then shuts down gracefully
// (forcibly after shutdownGrace). Failed handshakes and other connection
// errors go to log at debug level: the public endpoints draw scanners.
type httpListener struct {
	name string
	lis  net.Listener
	tls  *tls.Config
	h    http.Handler
	log  *slog.Logger
}

var _ subsystem = httpListener{}

func (l httpListener) Name() string { return l.name }

func (l httpListener) Run(ctx context.Context) error {
	srv := &http.Server{
		Handler:           l.h,
		ErrorLog:          slog.NewLogLogger(l.log.Handler(), slog.LevelDebug),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    16 << 10,
	}
	lis := l.lis
	if l.tls != nil {
		lis = tls.NewListener(lis, l.tls)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}
