package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/server"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("SIGNET_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// shortDir returns a directory with a short path (Unix socket paths are
// limited to 108 bytes), removed after the test.
func shortDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "sg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

type testServer struct {
	*server.Server
	dir    string
	cancel context.CancelFunc
	done   chan error
	admin  *grpc.ClientConn
}

// serverOptions adjust a test server's configuration.
type serverOptions struct {
	agentTTL time.Duration
	profile  ca.Profile
	registry *prometheus.Registry
	// checkpointInterval shortens the event log's checkpoint interval.
	checkpointInterval time.Duration
	// vault makes the server broker secrets.
	vault *server.VaultConfig
	// logTo receives the server's debug log.
	logTo io.Writer
	// oidc serves the OIDC discovery provider.
	oidc *server.OIDCConfig
}

// syncWriter is a goroutine-safe log sink for tests that scan logs.
type syncWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func startServer(t testing.TB, dir string) *testServer {
	return startServerWith(t, dir, nil)
}

func startServerWith(t testing.TB, dir string, opt func(*serverOptions)) *testServer {
	t.Helper()
	var o serverOptions
	if opt != nil {
		opt(&o)
	}
	var reg prometheus.Registerer
	if o.registry != nil {
		reg = o.registry
	}
	log := testLogger(t).With("component", "server")
	if o.logTo != nil {
		log = slog.New(slog.NewTextHandler(o.logTo, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := server.New(server.Config{
		TrustDomain:        td,
		DataDir:            filepath.Join(dir, "server"),
		BindAddress:        "127.0.0.1:0",
		AdminSocket:        filepath.Join(dir, "admin.sock"),
		Logger:             log,
		RotationInterval:   time.Second,
		AgentSVIDTTL:       o.agentTTL,
		Profile:            o.profile,
		Registry:           reg,
		CheckpointInterval: o.checkpointInterval,
		Vault:              o.vault,
		OIDC:               o.oidc,
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
	ts.admin, err = grpc.NewClient("unix://"+srv.AdminSocket(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ts.stop)
	return ts
}

func (s *testServer) stop() {
	if s.cancel == nil {
		return
	}
	s.admin.Close()
	s.cancel()
	<-s.done
	s.cancel = nil
}

func (s *testServer) token(t testing.TB, ttl int32) string {
	t.Helper()
	tok, err := agentv1.NewAgentClient(s.admin).CreateJoinToken(context.Background(), &agentv1.CreateJoinTokenRequest{Ttl: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return tok.Value
}

func agentIDFor(token string) spiffeid.ID {
	return spiffeid.RequireFromSegments(td, "spire", "agent", "join_token", token)
}

func protoID(id spiffeid.ID) *types.SPIFFEID {
	return &types.SPIFFEID{TrustDomain: id.TrustDomain().Name(), Path: id.Path()}
}

// createEntry registers id under parent for the given selectors and returns
// the entry.
func (s *testServer) createEntry(t testing.TB, id, parent spiffeid.ID, sels ...*types.Selector) *types.Entry {
	t.Helper()
	resp, err := entryv1.NewEntryClient(s.admin).BatchCreateEntry(context.Background(), &entryv1.BatchCreateEntryRequest{Entries: []*types.Entry{{
		SpiffeId: protoID(id), ParentId: protoID(parent), Selectors: sels,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if c := codes.Code(resp.Results[0].Status.Code); c != codes.OK {
		t.Fatalf("create entry: %v %s", c, resp.Results[0].Status.Message)
	}
	return resp.Results[0].Entry
}

func uidSelector(uid int) *types.Selector {
	return &types.Selector{Type: "unix", Value: "uid:" + strconv.Itoa(uid)}
}

type testAgent struct {
	*agent.Agent
	socket string
	cancel context.CancelFunc
	done   chan error
}

// startAgent starts an agent; opts adjust its configuration.
func startAgent(t testing.TB, srv *testServer, dir, token string, opts ...func(*agent.Config)) *testAgent {
	t.Helper()
	cfg := agent.Config{
		TrustDomain:     td,
		ServerAddresses: []string{srv.AgentAddr().String()},
		JoinToken:       token,
		DataDir:         filepath.Join(dir, "agent"),
		SocketPath:      filepath.Join(dir, "wl.sock"),
		TrustBundle:     srv.CA().Bundle().X509Authorities(),
		Logger:          testLogger(t).With("component", "agent"),
		SyncInterval:    5 * time.Second,
	}
	for _, o := range opts {
		o(&cfg)
	}
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ta := &testAgent{Agent: a, socket: filepath.Join(dir, "wl.sock"), cancel: cancel, done: make(chan error, 1)}
	go func() { ta.done <- a.Run(ctx) }()
	select {
	case <-a.Ready():
	case err := <-ta.done:
		t.Fatalf("agent: %v", err)
	}
	t.Cleanup(ta.stop)
	return ta
}

func (a *testAgent) stop() {
	if a.cancel == nil {
		return
	}
	a.cancel()
	<-a.done
	a.cancel = nil
}

// rawAgent attests over the real agent API with token and returns a
// connection authenticated by the new agent SVID.
func rawAgent(t testing.TB, srv *testServer, token string) (*grpc.ClientConn, spiffeid.ID) {
	t.Helper()
	roots := x509.NewCertPool()
	for _, c := range srv.CA().Bundle().X509Authorities() {
		roots.AddCert(c)
	}
	base := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots, ServerName: "localhost"}
	conn, err := grpc.NewClient(srv.AgentAddr().String(), grpc.WithTransportCredentials(credentials.NewTLS(base)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	svid, err := attestWith(conn, token, csr)
	if err != nil {
		t.Fatalf("attest: %v", err)
	}
	cert := tls.Certificate{PrivateKey: key, Certificate: svid}
	tc := base.Clone()
	tc.Certificates = []tls.Certificate{cert}
	mconn, err := grpc.NewClient(srv.AgentAddr().String(), grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mconn.Close() })
	return mconn, agentIDFor(token)
}

func attestWith(conn *grpc.ClientConn, token string, csr []byte) ([][]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stream, err := agentv1.NewAgentClient(conn).AttestAgent(ctx)
	if err != nil {
		return nil, err
	}
	if err := stream.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_Params_{Params: &agentv1.AttestAgentRequest_Params{
		Data:   &types.AttestationData{Type: "join_token", Payload: []byte(token)},
		Params: &agentv1.AgentX509SVIDParams{Csr: csr},
	}}}); err != nil {
		return nil, err
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	return resp.GetResult().GetSvid().GetCertChain(), nil
}

// dialTLS connects to the agent listener without a client certificate.
func dialTLS(t testing.TB, srv *testServer, roots *x509.CertPool) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(srv.AgentAddr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots, ServerName: "localhost"})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func (s *testServer) agentRecord(ctx context.Context, id spiffeid.ID) (*types.Agent, error) {
	return agentv1.NewAgentClient(s.admin).GetAgent(ctx, &agentv1.GetAgentRequest{Id: protoID(id)})
}
