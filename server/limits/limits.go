// Package limits bounds what one network peer can make the server do on the
// agent listener: connections per source IP, streams per connection, the
// handshake time, idle connections, the attestation rate per source IP, the
// wait for an AttestAgent stream's first message, and the signing rate per
// agent. Every refusal is a ResourceExhausted status naming the limit.
package limits

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/signet-id/signet/clock"
	"github.com/signet-id/signet/server/caller"
	"github.com/signet-id/signet/telemetry"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
)

// Defaults, chosen after SPIRE's (pkg/server/api/limits: 1 attestation and
// 500 signatures per second) where SPIRE has one.
const (
	DefaultHandshakeTimeout     = 10 * time.Second
	DefaultMaxConcurrentStreams = 100
	DefaultMaxConnsPerIP        = 256
	DefaultIdleTimeout          = 5 * time.Minute
	DefaultKeepaliveMinTime     = 10 * time.Second
	DefaultAttestRate           = 1
	DefaultAttestBurst          = 10
	DefaultFirstMessageTimeout  = 10 * time.Second
	DefaultSignRate             = 500
	// DefaultSignBurst lets one full BatchNewX509SVID (1000 params) through.
	DefaultSignBurst  = 1000
	DefaultMaxTracked = 100000
	// Streams of peers without a client certificate: every one may make
	// the server allocate a message of up to 4 MiB.
	DefaultMaxUnauthStreamsPerIP = 16
	DefaultMaxUnauthStreams      = 512
)

// Config sets the limits. Zero fields take the defaults; a negative
// MaxConnsPerIP, AttestRate or SignRate disables that limit.
type Config struct {
	// HandshakeTimeout bounds a new connection's TLS and HTTP/2 handshake.
	HandshakeTimeout time.Duration
	// MaxConcurrentStreams bounds the RPCs in flight on one connection.
	MaxConcurrentStreams uint32
	// MaxConnsPerIP bounds the open connections from one source IP.
	MaxConnsPerIP int
	// IdleTimeout closes a connection that has had no RPC in flight for
	// this long.
	IdleTimeout time.Duration
	// KeepaliveMinTime is the shortest interval between a client's pings;
	// clients pinging more often are disconnected.
	KeepaliveMinTime time.Duration
	// AttestRate (per second) and AttestBurst bound AttestAgent calls per
	// source IP.
	AttestRate  float64
	AttestBurst int
	// FirstMessageTimeout bounds the wait for an AttestAgent stream's
	// first message.
	FirstMessageTimeout time.Duration
	// SignRate (SVIDs per second) and SignBurst bound what one agent may
	// have signed: each BatchNewX509SVID parameter and each NewJWTSVID
	// counts one.
	SignRate  float64
	SignBurst int
	// MaxTracked bounds the per-IP and per-agent rate tables.
	MaxTracked int
	// MaxUnauthStreamsPerIP and MaxUnauthStreams bound the RPCs in flight
	// from peers without a client certificate, per source IP and in all.
	MaxUnauthStreamsPerIP int
	MaxUnauthStreams      int
	// OpenMethod reports whether a method may be called without a client
	// certificate; other methods are refused for such peers before their
	// message is read. Nil allows every method (the interceptors decide).
	OpenMethod func(method string) bool
	// Clock is the rate limiters' clock (default the wall clock; the
	// server passes its own). Connection timeouts run on real time.
	Clock clock.Clock
}

func (c Config) withDefaults() Config {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.HandshakeTimeout, DefaultHandshakeTimeout)
	def(&c.IdleTimeout, DefaultIdleTimeout)
	def(&c.KeepaliveMinTime, DefaultKeepaliveMinTime)
	def(&c.FirstMessageTimeout, DefaultFirstMessageTimeout)
	if c.MaxConcurrentStreams == 0 {
		c.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	if c.MaxConnsPerIP == 0 {
		c.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if c.AttestRate == 0 {
		c.AttestRate = DefaultAttestRate
	}
	if c.AttestBurst <= 0 {
		c.AttestBurst = DefaultAttestBurst
	}
	if c.SignRate == 0 {
		c.SignRate = DefaultSignRate
	}
	if c.SignBurst <= 0 {
		c.SignBurst = DefaultSignBurst
	}
	if c.MaxTracked <= 0 {
		c.MaxTracked = DefaultMaxTracked
	}
	if c.MaxUnauthStreamsPerIP == 0 {
		c.MaxUnauthStreamsPerIP = DefaultMaxUnauthStreamsPerIP
	}
	if c.MaxUnauthStreams == 0 {
		c.MaxUnauthStreams = DefaultMaxUnauthStreams
	}
	c.Clock = clock.Or(c.Clock)
	return c
}

// Limiter enforces a Config on one gRPC server and its listener.
type Limiter struct {
	cfg    Config
	log    *slog.Logger
	attest *table
	sign   *table
	conns  *connTable
	unauth *streamCount

	refused *prometheus.CounterVec
}

// New returns a Limiter; its refusal counter is registered with reg (nil:
// not registered).
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) *Limiter {
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &Limiter{
		cfg:    cfg,
		log:    log,
		attest: newTable(cfg.AttestRate, cfg.AttestBurst, cfg.MaxTracked),
		sign:   newTable(cfg.SignRate, cfg.SignBurst, cfg.MaxTracked),
		conns:  &connTable{max: cfg.MaxConnsPerIP, open: map[string]int{}, over: map[string]bool{}},
		unauth: &streamCount{maxPerIP: cfg.MaxUnauthStreamsPerIP, max: cfg.MaxUnauthStreams, perIP: map[string]int{}},
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "signet_server_limit_refusals_total",
			Help: "Connections and RPCs on the agent listener refused by a limit, by limit.",
		}, []string{"limit"}),
	}
	if reg != nil {
		reg.MustRegister(l.refused)
	}
	log.Debug("agent listener limits", "limits", cfg.String())
	return l
}

// Config returns the effective limits (defaults applied).
func (l *Limiter) Config() Config { return l.cfg }

// ServerOptions returns the options that enforce the limits. Append them
// after the authentication interceptors: the signing limit needs the
// caller established.
func (l *Limiter) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ConnectionTimeout(l.cfg.HandshakeTimeout),
		grpc.MaxConcurrentStreams(l.cfg.MaxConcurrentStreams),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: l.cfg.KeepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: l.cfg.IdleTimeout}),
		grpc.InTapHandle(l.tap),
		grpc.ChainUnaryInterceptor(l.sizeUnary, l.unary),
		grpc.ChainStreamInterceptor(l.sizeStream, l.stream),
	}
}

// Method names the limits apply to.
const (
	attestMethod = "/spire.api.server.agent.v1.Agent/AttestAgent"
	batchMethod  = "/spire.api.server.svid.v1.SVID/BatchNewX509SVID"
	jwtMethod    = "/spire.api.server.svid.v1.SVID/NewJWTSVID"
)

func (l *Limiter) refuse(limit, format string, args ...any) error {
	l.refused.WithLabelValues(limit).Inc()
	err := status.Errorf(codes.ResourceExhausted, "limits: "+format, args...)
	telemetry.SecurityEvent(context.Background(), l.log, telemetry.EventRateLimited,
		append([]slog.Attr{slog.String(telemetry.FieldLimit, limit)}, telemetry.Status(err)...)...)
	return err
}

// tap runs before a stream is created (before any message is read): it
// refuses every stream of a connection over the per-IP connection limit,
// and AttestAgent streams over the per-IP attestation rate.
func (l *Limiter) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ctx, nil
	}
	if l.conns.isOver(p.Addr.String()) {
		return nil, l.refuse("max_conns_per_ip", "too many connections from %s: at most %d per source IP (limit max_conns_per_ip); close idle connections", hostIP(p.Addr), l.cfg.MaxConnsPerIP)
	}
	ip := hostIP(p.Addr)
	anonymous := !hasClientCert(p)
	if anonymous && l.cfg.OpenMethod != nil && !l.cfg.OpenMethod(info.FullMethodName) {
		return nil, status.Errorf(codes.PermissionDenied, "limits: method %s needs an agent or admin client certificate", info.FullMethodName)
	}
	if info.FullMethodName == attestMethod && l.cfg.AttestRate > 0 {
		if !l.attest.allow(ip, l.cfg.Clock.Now(), 1) {
			return nil, l.refuse("attest_rate", "attestation rate from %s exceeded: at most %g per second per source IP, burst %d (limit attest_rate); retry later", ip, l.cfg.AttestRate, l.cfg.AttestBurst)
		}
	}
	if anonymous {
		if which := l.unauth.acquire(ip); which != "" {
			return nil, l.refuse(which, "too many RPCs in flight without a client certificate: at most %d per source IP and %d in all (limit %s)", l.cfg.MaxUnauthStreamsPerIP, l.cfg.MaxUnauthStreams, which)
		}
		// The stream's context ends with the stream, whatever ends it.
		context.AfterFunc(ctx, func() { l.unauth.release(ip) })
	}
	return ctx, nil
}

func hasClientCert(p *peer.Peer) bool {
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	return ok && len(ti.State.PeerCertificates) > 0
}

// streamCount counts the streams in flight of peers without a client
// certificate.
type streamCount struct {
	maxPerIP, max int
	mu            sync.Mutex
	perIP         map[string]int
	total         int
}

// acquire counts a new stream from ip, or returns the name of the limit
// it would exceed.
func (c *streamCount) acquire(ip string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.maxPerIP > 0 && c.perIP[ip] >= c.maxPerIP {
		return "max_unauthenticated_streams_per_ip"
	}
	if c.max > 0 && c.total >= c.max {
		return "max_unauthenticated_streams"
	}
	c.perIP[ip]++
	c.total++
	return ""
}

func (c *streamCount) release(ip string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.perIP[ip]--; c.perIP[ip] <= 0 {
		delete(c.perIP, ip)
	}
	c.total--
}

// unary applies the per-agent signing rate.
func (l *Limiter) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	var n int
	switch info.FullMethod {
	case batchMethod:
		if r, ok := req.(*svidv1.BatchNewX509SVIDRequest); ok {
			n = len(r.Params)
		}
	case jwtMethod:
		n = 1
	}
	if n > 0 && l.cfg.SignRate > 0 {
		if c, ok := caller.FromContext(ctx); ok && c.Kind == caller.Agent {
			// A batch is charged in full: one larger than the burst could
			// otherwise sign more than the rate allows.
			if n > l.cfg.SignBurst {
				return nil, l.refuse("sign_burst", "batch of %d SVIDs from agent %s is larger than the signing burst of %d (limit sign_burst); send smaller batches", n, c.ID, l.cfg.SignBurst)
			}
			if !l.sign.allow(c.ID.String(), l.cfg.Clock.Now(), n) {
				return nil, l.refuse("sign_rate", "signing rate of agent %s exceeded: at most %g SVIDs per second, burst %d (limit sign_rate); retry later", c.ID, l.cfg.SignRate, l.cfg.SignBurst)
			}
		}
	}
	return h(ctx, req)
}

// stream bounds the wait for an AttestAgent stream's first message.
func (l *Limiter) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if info.FullMethod != attestMethod {
		return h(srv, ss)
	}
	return h(srv, &firstMessageStream{ServerStream: ss, l: l})
}

// firstMessageStream fails the first RecvMsg that takes longer than
// FirstMessageTimeout. The handler then returns, which ends the stream and
// the pending receive.
type firstMessageStream struct {
	grpc.ServerStream
	l    *Limiter
	done bool
}

func (s *firstMessageStream) RecvMsg(m any) error {
	if s.done {
		return s.ServerStream.RecvMsg(m)
	}
	s.done = true
	got := make(chan error, 1)
	go func() { got <- s.ServerStream.RecvMsg(m) }()
	t := time.NewTimer(s.l.cfg.FirstMessageTimeout)
	defer t.Stop()
	select {
	case err := <-got:
		return err
	case <-t.C:
		return s.l.refuse("first_message_timeout", "no attestation request within %s of opening the stream (limit first_message_timeout)", s.l.cfg.FirstMessageTimeout)
	}
}

// hostIP returns the IP of a TCP address (the whole string otherwise).
func hostIP(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// table is a bounded set of token buckets by key.
type table struct {
	mu        sync.Mutex
	limit     rate.Limit
	burst     int
	max       int
	m         map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	lim  *rate.Limiter
	last time.Time
}

func newTable(r float64, burst, max int) *table {
	return &table{limit: rate.Limit(r), burst: burst, max: max, m: map[string]*bucket{}}
}

// allow takes n tokens from key's bucket at now. A full table first drops
// buckets that have refilled (at most once a second); if it is still full,
// new keys are refused.
func (t *table) allow(key string, now time.Time, n int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.m[key]
	if b == nil {
		if len(t.m) >= t.max && now.Sub(t.lastSweep) >= time.Second {
			t.sweep(now)
		}
		if len(t.m) >= t.max {
			return false
		}
		b = &bucket{lim: rate.NewLimiter(t.limit, t.burst)}
		t.m[key] = b
	}
	b.last = now
	return b.lim.AllowN(now, n)
}

func (t *table) sweep(now time.Time) {
	t.lastSweep = now
	refill := time.Duration(float64(t.burst) / float64(t.limit) * float64(time.Second))
	for k, b := range t.m {
		if now.Sub(b.last) >= refill {
			delete(t.m, k)
		}
	}
}

// String describes the limits for logs.
func (c Config) String() string {
	return fmt.Sprintf("handshake_timeout=%s max_concurrent_streams=%d max_conns_per_ip=%d idle_timeout=%s attest_rate=%g/s burst %d first_message_timeout=%s sign_rate=%g/s burst %d",
		c.HandshakeTimeout, c.MaxConcurrentStreams, c.MaxConnsPerIP, c.IdleTimeout, c.AttestRate, c.AttestBurst, c.FirstMessageTimeout, c.SignRate, c.SignBurst)
}
