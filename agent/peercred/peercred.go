// Package peercred provides gRPC transport credentials for a Unix domain
// socket listener that identify the connecting process from the kernel
// (SO_PEERCRED), so the Workload API can attest its callers.
//
// The credentials do not encrypt or authenticate the transport. They record
// the caller's PID, UID and GID at connection time together with a handle
// on the process (a pidfd and its start time) and the identity of its
// executable, so that around attesting the PID the server can check with
// AuthInfo.Verify that the PID still names the process that connected, was
// not reused, still has the credentials the kernel recorded at connect()
// and has not executed another program since. Attest wraps an attestor in
// those checks; every Workload API service calls it.
package peercred

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// AuthType is returned by AuthInfo.AuthType and Info().SecurityProtocol.
const AuthType = "peercred"

// ErrCallerGone is returned by Verify when the process that connected has
// exited or its PID now names another process.
var ErrCallerGone = errors.New("peercred: calling process is gone")

// ErrCallerChanged is returned by Verify when the process that connected
// now has other credentials than the kernel recorded at connect() (a
// setuid/setgid exec, a non-dumpable process) or runs another executable.
var ErrCallerChanged = errors.New("peercred: calling process changed since it connected")

// AuthInfo is the peer information of one connection.
type AuthInfo struct {
	credentials.CommonAuthInfo
	// PID, UID and GID of the peer when it connected (SO_PEERCRED; UID
	// and GID are the effective IDs).
	PID int32
	UID uint32
	GID uint32
	// Refused is the admission hook's error (see WithAdmit) when the
	// connection was accepted only to refuse its RPCs; then no process
	// handle is held and Verify fails.
	Refused error

	w *watcher
}

// RefusedError is what an admission hook returns to refuse a connection.
type RefusedError struct {
	// Reason names the limit and what to do.
	Reason string
	// CloseNow closes the connection during the handshake instead of
	// answering its RPCs with Reason.
	CloseNow bool
}

func (e *RefusedError) Error() string { return e.Reason }

// AuthType implements credentials.AuthInfo.
func (AuthInfo) AuthType() string { return AuthType }

// Verify reports whether the process that opened the connection is still
// alive at PID. Call it after attesting PID: a nil error means the
// attestation described the caller rather than a process that reused its
// PID. Errors wrap ErrCallerGone.
func (a AuthInfo) Verify() error {
	if a.Refused != nil {
		return fmt.Errorf("%w: connection refused: %w", ErrCallerGone, a.Refused)
	}
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
	pidfds   *pidfdTable
	admit    func(uid uint32) (release func(), err error)
}

// WithAdmit sets a hook called in every handshake with the peer's UID. It
// returns an error (a *RefusedError to control how) to refuse the
// connection, and a function, if not nil, called once when the connection
// closes (refused or not).
func WithAdmit(f func(uid uint32) (release func(), err error)) Option {
	return func(c *config) { c.admit = f }
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
	c := config{procRoot: "/proc", pidfds: newPidfdTable()}
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

// conn releases the process watcher and the admission slot when the
// connection closes.
type conn struct {
	net.Conn
	w       *watcher    // nil for a refused connection
	release func()      // admission slot, may be nil
	timer   *time.Timer // closes a refused connection

	once sync.Once
}

func (c *conn) Close() error {
	c.once.Do(func() {
		if c.timer != nil {
			c.timer.Stop()
		}
		if c.w != nil {
			c.w.close()
		}
		if c.release != nil {
			c.release()
		}
	})
	return c.Conn.Close()
}
