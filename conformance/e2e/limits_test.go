package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/signet-id/signet/clock"
	"github.com/signet-id/signet/clock/fakeclock"
	"github.com/signet-id/signet/server"
	"github.com/signet-id/signet/server/limits"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// frozen is a rate-limiter clock that never advances: buckets do not
// refill during a test, so the outcome does not depend on its speed.
func frozen() clock.Clock { return fakeclock.New(time.Now()) }

// startLimitedServer starts a server on loopback with the given limits.
func startLimitedServer(t testing.TB, lim limits.Config) *testServer {
	t.Helper()
	dir := shortDir(t)
	srv, err := server.New(server.Config{
		TrustDomain:      td,
		DataDir:          filepath.Join(dir, "server"),
		BindAddress:      "127.0.0.1:0",
		AdminSocket:      filepath.Join(dir, "admin.sock"),
		Logger:           testLogger(t).With("component", "server"),
		RotationInterval: time.Second,
		Registry:         prometheus.NewRegistry(),
		Limits:           lim,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{Server: srv, dir: dir, cancel: cancel, done: make(chan error, 1)}
	go func() { ts.done <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-ts.done:
		t.Fatalf("server: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("server did not start")
	}
	ts.admin, err = dialAdmin(srv.AdminSocket())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ts.stop)
	return ts
}

func (s *testServer) roots() *x509.CertPool {
	roots := x509.NewCertPool()
	for _, c := range s.CA().Bundle().X509Authorities() {
		roots.AddCert(c)
	}
	return roots
}

// dialFrom connects to the agent listener without a client certificate
// from the given loopback source IP (127.0.0.0/8 are distinct IPs).
func dialFrom(t testing.TB, srv *testServer, ip string) *grpc.ClientConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	conn, err := grpc.NewClient(srv.AgentAddr().String(),
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13, RootCAs: srv.roots(), ServerName: "localhost"})),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func healthCheck(conn *grpc.ClientConn) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

// wantRefusal fails unless err is a status with code naming limit.
func wantRefusal(t testing.TB, what string, err error, code codes.Code, limit string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), limit) {
		t.Fatalf("%s: %v, want %v naming %q", what, err, code, limit)
	}
}

// Attack: one client opens far more streams on one connection than the
// server allows, ignoring the server's SETTINGS (a raw HTTP/2 client, as
// grpc-go would queue them). The streams beyond the limit are refused.
func TestAttackManyStreamsOnOneConnection(t *testing.T) {
	const maxStreams, attempts = 8, 40
	srv := startLimitedServer(t, limits.Config{MaxConcurrentStreams: maxStreams})
	c, err := tls.Dial("tcp", srv.AgentAddr().String(), &tls.Config{RootCAs: srv.roots(), ServerName: "localhost", NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var hdr bytes.Buffer
	enc := hpack.NewEncoder(&hdr)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "https"}, {":path", "/grpc.health.v1.Health/Watch"},
		{":authority", "localhost"}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	for i := range attempts {
		id := uint32(2*i + 1)
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hdr.Bytes(), EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
		// An empty HealthCheckRequest, then half-close: a streaming Watch.
		if err := fr.WriteData(id, true, []byte{0, 0, 0, 0, 0}); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	answered, refused := map[uint32]bool{}, map[uint32]bool{}
	for len(answered)+len(refused) < attempts {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("after %d answered and %d refused streams: %v", len(answered), len(refused), err)
		}
		switch f := f.(type) {
		case *http2.HeadersFrame:
			answered[f.StreamID] = true
		case *http2.RSTStreamFrame:
			if f.ErrCode == http2.ErrCodeRefusedStream {
				refused[f.StreamID] = true
			}
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		}
	}
	t.Logf("%d streams opened on one connection: %d served, %d refused (REFUSED_STREAM)", attempts, len(answered), len(refused))
	if len(answered) != maxStreams || len(refused) != attempts-maxStreams {
		t.Fatalf("served %d and refused %d streams, want %d and %d", len(answered), len(refused), maxStreams, attempts-maxStreams)
	}
}

// Attack: many connections from one source IP. Those over the limit get
// ResourceExhausted naming it; another IP is unaffected.
func TestAttackManyConnectionsFromOneIP(t *testing.T) {
	const maxConns = 3
	srv := startLimitedServer(t, limits.Config{MaxConnsPerIP: maxConns})
	for i := range maxConns {
		if err := healthCheck(dialFrom(t, srv, "127.0.0.2")); err != nil {
			t.Fatalf("connection %d within the limit: %v", i, err)
		}
	}
	err := healthCheck(dialFrom(t, srv, "127.0.0.2"))
	wantRefusal(t, "connection over the limit", err, codes.ResourceExhausted, "max_conns_per_ip")
	t.Logf("connection %d from 127.0.0.2: %v", maxConns+1, err)
	if err := healthCheck(dialFrom(t, srv, "127.0.0.3")); err != nil {
		t.Fatalf("another source IP: %v", err)
	}
}

// Attack: a connection that never completes the TLS handshake is closed
// after HandshakeTimeout (it was held 120 s).
func TestAttackStalledHandshakeIsDropped(t *testing.T) {
	srv := startLimitedServer(t, limits.Config{HandshakeTimeout: 300 * time.Millisecond})
	c, err := net.Dial("tcp", srv.AgentAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte{0x16, 0x03, 0x01}) // three bytes of a TLS record
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err = c.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("stalled handshake still open after 30 s (read: %v)", err)
	}
}

func attestRaw(conn *grpc.ClientConn, payload []byte, csr []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := agentv1.NewAgentClient(conn).AttestAgent(ctx)
	if err != nil {
		return err
	}
	p := &agentv1.AttestAgentRequest_Params{Data: &types.AttestationData{Type: "join_token", Payload: payload}}
	if csr != nil {
		p.Params = &agentv1.AgentX509SVIDParams{Csr: csr}
	}
	// A stream the server refused at once fails Send with io.EOF; Recv
	// then returns its status.
	_ = stream.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_Params_{Params: p}})
	_, err = stream.Recv()
	return err
}

// Attack: an AttestAgent flood from one IP. After the burst every attempt
// is ResourceExhausted before its message is read; another IP still gets
// an answer.
func TestAttackAttestFloodFromOneIP(t *testing.T) {
	const burst, attempts = 3, 12
	srv := startLimitedServer(t, limits.Config{AttestBurst: burst, Clock: frozen()})
	conn := dialFrom(t, srv, "127.0.0.2")
	csr := testCSR(t)
	refused := 0
	for i := range attempts {
		err := attestRaw(conn, fmt.Appendf(nil, "wrong-token-%04d-xxxxxxxx", i), csr)
		if i < burst {
			wantRefusal(t, fmt.Sprintf("attempt %d (within the burst)", i), err, codes.InvalidArgument, "does not exist")
			continue
		}
		wantRefusal(t, fmt.Sprintf("attempt %d", i), err, codes.ResourceExhausted, "attest_rate")
		refused++
	}
	t.Logf("%d AttestAgent calls from one IP: %d refused with ResourceExhausted", attempts, refused)
	err := attestRaw(dialFrom(t, srv, "127.0.0.3"), []byte("wrong-token-other-ip-xxxx"), csr)
	wantRefusal(t, "another IP", err, codes.InvalidArgument, "does not exist")
}

// Attack: an AttestAgent stream that never sends its first message is
// ended with ResourceExhausted naming the limit (it was held forever).
func TestAttackIdleAttestStreamIsEnded(t *testing.T) {
	srv := startLimitedServer(t, limits.Config{FirstMessageTimeout: 200 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := agentv1.NewAgentClient(dialFrom(t, srv, "127.0.0.2")).AttestAgent(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	wantRefusal(t, "idle AttestAgent stream", err, codes.ResourceExhausted, "first_message_timeout")
}

// Attack: a join token larger than 256 bytes is refused before anything
// else is looked at (here there is not even a CSR); an AttestAgent message
// over its kind's receive limit (64 KiB, far below gRPC's 4 MiB) is
// refused before the handler sees it.
func TestAttackOversizedJoinToken(t *testing.T) {
	srv := startLimitedServer(t, limits.Config{})
	conn := dialFrom(t, srv, "127.0.0.2")
	err := attestRaw(conn, bytes.Repeat([]byte("a"), 257), nil)
	wantRefusal(t, "257-byte token", err, codes.InvalidArgument, "longer than the limit of 256")
	for _, n := range []int{limits.MaxAttestMessageBytes + 1, 1 << 20, 3 << 20} {
		err := attestRaw(conn, bytes.Repeat([]byte("a"), n), nil)
		wantRefusal(t, fmt.Sprintf("%d-byte token", n), err, codes.ResourceExhausted, "max_message_bytes")
	}
}

// etcdProposals reads the embedded etcd's committed-proposals gauge (etcd
// registers it with the default registry of this process).
func etcdProposals(t testing.TB) float64 {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "etcd_server_proposals_committed_total" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("etcd_server_proposals_committed_total not found")
	return 0
}

// Attack: guessing join tokens. A wrong token is a read, not a raft
// proposal and WAL fsync (it was one per guess).
func TestAttackWrongTokensCostNoProposal(t *testing.T) {
	const guesses = 200
	srv := startLimitedServer(t, limits.Config{AttestRate: -1})
	conn := dialFrom(t, srv, "127.0.0.2")
	csr := testCSR(t)
	if err := attestRaw(conn, []byte("warm-up-wrong-token-xxxx"), csr); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("warm-up: %v", err)
	}
	before := etcdProposals(t)
	for i := range guesses {
		err := attestRaw(conn, fmt.Appendf(nil, "guess-%06d-xxxxxxxxxx", i), csr)
		wantRefusal(t, fmt.Sprintf("guess %d", i), err, codes.InvalidArgument, "does not exist")
	}
	delta := etcdProposals(t) - before
	t.Logf("%d wrong join tokens: etcd proposals committed +%v (background writes included)", guesses, delta)
	// The server's own background writes (scheduler, event log) may land
	// in the window; one proposal per guess would be >= guesses.
	if delta >= guesses/4 {
		t.Fatalf("%d wrong tokens cost %v etcd proposals", guesses, delta)
	}
	// A real token still works after the guesses.
	if _, id := rawAgent(t, srv, srv.token(t, 600)); id.IsZero() {
		t.Fatal("no agent ID")
	}
}

// Attack: a peer without a client certificate holds many streams (2000
// health Watch streams were held on one connection; each unary call may
// make the server allocate 4 MiB). Those beyond the per-IP cap are refused
// before any message is read, and calls to methods that need a
// certificate are refused before their message is read.
func TestAttackUnauthenticatedStreamsAreBounded(t *testing.T) {
	const perIP = 4
	srv := startLimitedServer(t, limits.Config{MaxUnauthStreamsPerIP: perIP})
	conn := dialFrom(t, srv, "127.0.0.2")
	h := healthpb.NewHealthClient(conn)
	var cancels []context.CancelFunc
	defer func() {
		for _, c := range cancels {
			c()
		}
	}()
	watch := func(c healthpb.HealthClient) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cancels = append(cancels, cancel)
		s, err := c.Watch(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return err
		}
		_, err = s.Recv()
		return err
	}
	for i := range perIP {
		if err := watch(h); err != nil {
			t.Fatalf("stream %d within the limit: %v", i, err)
		}
	}
	err := watch(h)
	wantRefusal(t, "stream over the per-IP limit", err, codes.ResourceExhausted, "max_unauthenticated_streams_per_ip")
	t.Logf("stream %d without a certificate from 127.0.0.2: %v", perIP+1, err)
	if err := watch(healthpb.NewHealthClient(dialFrom(t, srv, "127.0.0.3"))); err != nil {
		t.Fatalf("another source IP: %v", err)
	}
	cancels[0]() // a stream ends: its slot is free again
	waitFor(t, 20*time.Second, "a freed stream slot", func() bool { return watch(h) == nil })

	_, err = agentv1.NewAgentClient(dialFrom(t, srv, "127.0.0.4")).ListAgents(context.Background(), &agentv1.ListAgentsRequest{})
	wantRefusal(t, "ListAgents without a certificate", err, codes.PermissionDenied, "needs an agent or admin client certificate")
}
