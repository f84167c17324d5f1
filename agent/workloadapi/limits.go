package workloadapi

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/signet-id/signet/agent/peercred"
)

// Defaults of Limits.
const (
	DefaultMaxConnsPerUID    = 512
	DefaultMaxCallsPerUID    = 2048
	DefaultMaxStreamsPerConn = 100
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultHandshakeTimeout  = 10 * time.Second
)

// refusedInGrace bounds the connections per uid that are kept open after
// being refused (so that their first RPC learns why); beyond it refused
// connections are closed at once.
const refusedInGrace = 16

// Limits bound what the processes of one local user, told apart by the
// kernel's SO_PEERCRED uid, can hold open on the Workload API socket, so
// that no user can exhaust the agent's file descriptors or memory and deny
// the Workload API to the others. A zero field takes its default; a
// negative one disables that limit.
type Limits struct {
	// MaxConnsPerUID bounds open connections per uid (each costs the agent
	// a socket and a pidfd). Connections beyond it are accepted only to
	// answer their RPCs with ResourceExhausted, then closed.
	MaxConnsPerUID int
	// MaxCallsPerUID bounds concurrent RPCs (streams and unary calls, on
	// every service of the socket) per uid.
	MaxCallsPerUID int
	// MaxStreamsPerConn is the HTTP/2 MaxConcurrentStreams of every
	// connection (clients queue beyond it).
	MaxStreamsPerConn int
	// IdleTimeout closes connections that have had no RPC in flight for
	// this long (clients reconnect transparently).
	IdleTimeout time.Duration
	// HandshakeTimeout closes connections that do not complete the HTTP/2
	// preface in time.
	HandshakeTimeout time.Duration
}

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&l.MaxConnsPerUID, DefaultMaxConnsPerUID)
	def(&l.MaxCallsPerUID, DefaultMaxCallsPerUID)
	def(&l.MaxStreamsPerConn, DefaultMaxStreamsPerConn)
	if l.IdleTimeout == 0 {
		l.IdleTimeout = DefaultIdleTimeout
	}
	if l.HandshakeTimeout == 0 {
		l.HandshakeTimeout = DefaultHandshakeTimeout
	}
	return l
}

// serverOptions returns the gRPC options enforcing the per-connection
// limits.
func (l Limits) serverOptions() []grpc.ServerOption {
	var opts []grpc.ServerOption
	if l.MaxStreamsPerConn > 0 {
		opts = append(opts, grpc.MaxConcurrentStreams(uint32(l.MaxStreamsPerConn)))
	}
	if l.IdleTimeout > 0 {
		opts = append(opts, grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: l.IdleTimeout}))
	}
	if l.HandshakeTimeout > 0 {
		opts = append(opts, grpc.ConnectionTimeout(l.HandshakeTimeout))
	}
	return opts
}

// uidLimiter counts connections and calls per uid.
type uidLimiter struct {
	lim Limits
	m   *metrics

	mu      sync.Mutex
	conns   map[uint32]int
	refused map[uint32]int // refused connections still open
	calls   map[uint32]int
}

func newUIDLimiter(l Limits, m *metrics) *uidLimiter {
	return &uidLimiter{
		lim: l, m: m,
		conns:   make(map[uint32]int),
		refused: make(map[uint32]int),
		calls:   make(map[uint32]int),
	}
}

// dec decrements a per-uid count, dropping zero entries so that the maps
// do not grow with every uid ever seen.
func dec(m map[uint32]int, uid uint32) {
	if m[uid]--; m[uid] <= 0 {
		delete(m, uid)
	}
}

// admit is the peercred admission hook: it takes a connection slot for uid
// or refuses the connection.
func (u *uidLimiter) admit(uid uint32) (func(), error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	max := u.lim.MaxConnsPerUID
	if max < 0 || u.conns[uid] < max {
		u.conns[uid]++
		var once sync.Once
		return func() {
			once.Do(func() {
				u.mu.Lock()
				defer u.mu.Unlock()
				dec(u.conns, uid)
			})
		}, nil
	}
	u.m.refused.WithLabelValues("max_conns_per_uid").Inc()
	err := &peercred.RefusedError{
		Reason: fmt.Sprintf("workloadapi: uid %d already has %d Workload API connections open, the per-uid limit (agent --workload-max-conns-per-uid %d); close idle connections or raise the limit",
			uid, u.conns[uid], max),
	}
	if u.refused[uid] >= refusedInGrace {
		err.CloseNow = true
		return nil, err
	}
	u.refused[uid]++
	var once sync.Once
	return func() {
		once.Do(func() {
			u.mu.Lock()
			defer u.mu.Unlock()
			dec(u.refused, uid)
		})
	}, err
}

// call takes a call slot for the caller of ctx, or returns the status that
// refuses the call.
func (u *uidLimiter) call(ctx context.Context) (func(), error) {
	ai, ok := peercred.FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Internal, "caller credentials missing")
	}
	if ai.Refused != nil {
		return nil, status.Error(codes.ResourceExhausted, ai.Refused.Error())
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	max := u.lim.MaxCallsPerUID
	if max >= 0 && u.calls[ai.UID] >= max {
		u.m.refused.WithLabelValues("max_calls_per_uid").Inc()
		return nil, status.Errorf(codes.ResourceExhausted,
			"workloadapi: uid %d already has %d Workload API calls in progress, the per-uid limit (agent --workload-max-calls-per-uid %d); end unused streams or raise the limit",
			ai.UID, u.calls[ai.UID], max)
	}
	u.calls[ai.UID]++
	return func() {
		u.mu.Lock()
		defer u.mu.Unlock()
		dec(u.calls, ai.UID)
	}, nil
}
