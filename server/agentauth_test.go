package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/server"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

// testServer is a real server (embedded etcd, agent listener on loopback,
// admin socket) run for one test.
type testServer struct {
	*server.Server
	admin *grpc.ClientConn
	roots *x509.CertPool
}

func startServer(t *testing.T) *testServer {
	t.Helper()
	return startServerWith(t, nil)
}

// startServerWith is startServer with a hook to adjust the configuration.
func startServerWith(t testing.TB, configure func(*server.Config)) *testServer {
	t.Helper()
	// Unix socket paths are limited to 108 bytes: keep the directory short.
	dir, err := os.MkdirTemp("", "sg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg := server.Config{
		TrustDomain: td,
		DataDir:     filepath.Join(dir, "server"),
		BindAddress: "127.0.0.1:0",
		AdminSocket: filepath.Join(dir, "admin", "api.sock"),
	}
	if configure != nil {
		configure(&cfg)
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	select {
	case <-srv.Ready():
	case err := <-done:
		t.Fatalf("server: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("server did not start within 60s")
	}
	admin, err := grpc.NewClient("unix://"+srv.AdminSocket(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	roots := x509.NewCertPool()
	for _, c := range srv.CA().Bundle().X509Authorities() {
		roots.AddCert(c)
	}
	return &testServer{Server: srv, admin: admin, roots: roots}
}

func testContext(t *testing.T) context.Context {
	// A safety net against hangs, not a timing assertion.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// dial connects to the agent listener presenting cert (none if nil).
func (s *testServer) dial(t *testing.T, cert *tls.Certificate) *grpc.ClientConn {
	t.Helper()
	tc := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: s.roots, ServerName: "localhost"}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	conn, err := grpc.NewClient(s.AgentAddr().String(), grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func newCSR(t *testing.T) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, csr
}

// attest runs join-token attestation and returns the agent's ID and its
// SVID as a TLS client certificate.
func (s *testServer) attest(t *testing.T) (spiffeid.ID, *tls.Certificate) {
	t.Helper()
	ctx := testContext(t)
	tok, err := agentv1.NewAgentClient(s.admin).CreateJoinToken(ctx, &agentv1.CreateJoinTokenRequest{Ttl: 600})
	if err != nil {
		t.Fatal(err)
	}
	key, csr := newCSR(t)
	stream, err := agentv1.NewAgentClient(s.dial(t, nil)).AttestAgent(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_Params_{Params: &agentv1.AttestAgentRequest_Params{
		Data:   &types.AttestationData{Type: "join_token", Payload: []byte(tok.Value)},
		Params: &agentv1.AgentX509SVIDParams{Csr: csr},
	}}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("attest: %v", err)
	}
	id := spiffeid.RequireFromSegments(td, "spire", "agent", "join_token", tok.Value)
	return id, &tls.Certificate{PrivateKey: key, Certificate: resp.GetResult().GetSvid().GetCertChain()}
}

// agentCall makes a call only agents may make.
func agentCall(ctx context.Context, conn *grpc.ClientConn) error {
	_, err := entryv1.NewEntryClient(conn).GetAuthorizedEntries(ctx, &entryv1.GetAuthorizedEntriesRequest{})
	return err
}

func wantDenied(t *testing.T, err error, msg string) {
	t.Helper()
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), msg) {
		t.Fatalf("got %v (%v), want PermissionDenied saying %q", status.Code(err), err, msg)
	}
}

func protoID(id spiffeid.ID) *types.SPIFFEID {
	return &types.SPIFFEID{TrustDomain: id.TrustDomain().Name(), Path: id.Path()}
}

// TestSupersededAgentSVIDRefused: after RenewAgent, the SVID the agent held
// before is refused, on the connection it renewed over and on a new one.
func TestSupersededAgentSVIDRefused(t *testing.T) {
	s := startServer(t)
	ctx := testContext(t)
	_, oldCert := s.attest(t)
	oldConn := s.dial(t, oldCert)
	if err := agentCall(ctx, oldConn); err != nil {
		t.Fatalf("freshly attested agent refused: %v", err)
	}

	key, csr := newCSR(t)
	resp, err := agentv1.NewAgentClient(oldConn).RenewAgent(ctx, &agentv1.RenewAgentRequest{Params: &agentv1.AgentX509SVIDParams{Csr: csr}})
	if err != nil {
		t.Fatalf("renew: %v", err)
	}
	newCert := &tls.Certificate{PrivateKey: key, Certificate: resp.Svid.CertChain}
	if err := agentCall(ctx, s.dial(t, newCert)); err != nil {
		t.Fatalf("renewed SVID refused: %v", err)
	}

	wantDenied(t, agentCall(ctx, oldConn), "not its current one")
	wantDenied(t, agentCall(ctx, s.dial(t, oldCert)), "not its current one")
	// The old SVID cannot renew itself into a fresh one either.
	_, csr2 := newCSR(t)
	_, err = agentv1.NewAgentClient(s.dial(t, oldCert)).RenewAgent(ctx, &agentv1.RenewAgentRequest{Params: &agentv1.AgentX509SVIDParams{Csr: csr2}})
	wantDenied(t, err, "not its current one")
}

// TestBannedAndEvictedAgentSVIDRefused: BanAgent and DeleteAgent take
// effect on the agent's current, unexpired SVID at once.
func TestBannedAndEvictedAgentSVIDRefused(t *testing.T) {
	s := startServer(t)
	ctx := testContext(t)
	admin := agentv1.NewAgentClient(s.admin)

	banned, bannedCert := s.attest(t)
	evicted, evictedCert := s.attest(t)
	bannedConn, evictedConn := s.dial(t, bannedCert), s.dial(t, evictedCert)
	for _, c := range []*grpc.ClientConn{bannedConn, evictedConn} {
		if err := agentCall(ctx, c); err != nil {
			t.Fatalf("freshly attested agent refused: %v", err)
		}
	}

	if _, err := admin.BanAgent(ctx, &agentv1.BanAgentRequest{Id: protoID(banned)}); err != nil {
		t.Fatal(err)
	}
	wantDenied(t, agentCall(ctx, bannedConn), "banned")
	wantDenied(t, agentCall(ctx, s.dial(t, bannedCert)), "banned")
	_, csr := newCSR(t)
	_, err := agentv1.NewAgentClient(bannedConn).RenewAgent(ctx, &agentv1.RenewAgentRequest{Params: &agentv1.AgentX509SVIDParams{Csr: csr}})
	wantDenied(t, err, "banned")

	if _, err := admin.DeleteAgent(ctx, &agentv1.DeleteAgentRequest{Id: protoID(evicted)}); err != nil {
		t.Fatal(err)
	}
	wantDenied(t, agentCall(ctx, evictedConn), "not attested or has been evicted")
	wantDenied(t, agentCall(ctx, s.dial(t, evictedCert)), "not attested or has been evicted")

	// A caller without a certificate gets nothing an agent may have.
	if err := agentCall(ctx, s.dial(t, nil)); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("caller without a certificate: got %v, want PermissionDenied", err)
	}
}
