// Package peercred provides gRPC transport credentials for a Unix domain
// socket listener that identify the connecting process from the kernel
// (SO_PEERCRED), so the Workload API can attest its callers.
//
// The credentials do not encrypt or authenticate the transport. They record
// the caller's PID, UID and GID at connection time together with a handle
// on the process (a pidfd and its start time), so that after attesting the
// PID the server can check with AuthInfo.Verify that the PID still names the
// process that connected and was not reused.
package peercred

import (
	"context"
	"errors"
	"net"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// AuthType is returned by AuthInfo.AuthType and Info().SecurityProtocol.
const AuthType = "peercred"

// ErrCallerGone is returned by Verify when the process that connected has
// exited or its PID now names another process.
var ErrCallerGone = errors.New("peercred: calling process is gone")

// AuthInfo is the peer information of one connection.
type AuthInfo struct {
	credentials.CommonAuthInfo
	// PID, UID and GID of the peer when it connected (SO_PEERCRED).
	PID int32
	UID uint32
	GID uint32

	w *watcher
}

// AuthType implements credentials.AuthInfo.
func (AuthInfo) AuthType() string { return AuthType }

// Verify reports whether the process that opened the connection is still
// alive at PID. Call it after attesting PID: a nil error means the
// attestation described the caller rather than a process that reused its
// PID. Errors wrap ErrCallerGone.
func (a AuthInfo) Verify() error {
	if a.w == nil {
		return errors.New("peercred: no process watcher for connection")
	}
	return a.w.verify()
}

// FromContext returns the peer credentials of the RPC in ctx.
func FromContext(ctx context.Context) (AuthInfo, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return AuthInfo{}, false
	}
	ai, ok := p.AuthInfo.(AuthInfo)
	return ai, ok
}

// Option configures the credentials.
type Option func(*config)

type config struct {
	procRoot string
}

// WithProcRoot sets the procfs mount point used to read process start
// times (default "/proc").
func WithProcRoot(dir string) Option {
	return func(c *config) {
		if dir != "" {
			c.procRoot = dir
		}
	}
}

// NewCredentials returns server-side transport credentials for a Unix
// socket listener. Client handshakes are not supported.
func NewCredentials(opts ...Option) credentials.TransportCredentials {
	c := config{procRoot: "/proc"}
	for _, o := range opts {
		o(&c)
	}
	return &creds{cfg: c}
}

type creds struct {
	cfg config
}

var _ credentials.TransportCredentials = (*creds)(nil)

func (c *creds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("peercred: client handshake not supported")
}

func (c *creds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return serverHandshake(c.cfg, conn)
}

func (c *creds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: AuthType}
}

func (c *creds) Clone() credentials.TransportCredentials {
	cp := *c
	return &cp
}

func (c *creds) OverrideServerName(string) error { return nil }

// conn releases the process watcher when the connection closes.
type conn struct {
	net.Conn
	w *watcher
}

func (c *conn) Close() error {
	c.w.close()
	return c.Conn.Close()
}
