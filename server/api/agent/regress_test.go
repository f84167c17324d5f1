package agent_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signet-id/signet/attest/jointoken"
	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/issuer"
	agentapi "github.com/signet-id/signet/server/api/agent"
	"github.com/signet-id/signet/server/caller"
	"github.com/signet-id/signet/server/etcdserver"
	"github.com/signet-id/signet/server/store"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type env struct {
	svc    *agentapi.Service
	store  *store.Store
	client agentv1.AgentClient
	clock  *clock
}

// newEnv runs the Agent API on a real store (embedded etcd) and a real
// issuer, served over loopback gRPC for the streaming AttestAgent.
func newEnv(t *testing.T, attestors ...agentapi.NodeAttestor) *env {
	t.Helper()
	return newEnvWith(t, func(*store.Store) []agentapi.NodeAttestor { return attestors })
}

// newEnvWith is newEnv with attestors built on the env's store (join
// tokens next to another method).
func newEnvWith(t *testing.T, attestors func(*store.Store) []agentapi.NodeAttestor, tweaks ...func(*agentapi.Config)) *env {
	t.Helper()
	ctx := testContext(t)
	dir, err := os.MkdirTemp("", "sg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	etcd, err := etcdserver.Start(ctx, etcdserver.Config{Dir: filepath.Join(dir, "etcd")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { etcd.Close() })
	st, err := store.New(etcd.Client(), td)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	clk := &clock{now: time.Now()}
	m, err := ca.New(ca.Config{TrustDomain: td, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	iss, err := issuer.New(issuer.Config{TrustDomain: td, Authority: m, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	cfg := agentapi.Config{TrustDomain: td, Store: st, Issuer: iss, Now: clk.Now, NodeAttestors: attestors(st)}
	for _, tweak := range tweaks {
		tweak(&cfg)
	}
	svc := agentapi.New(cfg)
	g := grpc.NewServer()
	agentv1.RegisterAgentServer(g, svc)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &env{svc: svc, store: st, client: agentv1.NewAgentClient(conn), clock: clk}
}

func testContext(t *testing.T) context.Context {
	// A safety net against hangs, not a timing assertion.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func newCSR(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

// attest runs AttestAgent with the given attestation type and payload.
func (e *env) attest(t *testing.T, typ, payload string) (*agentv1.AttestAgentResponse_Result, error) {
	t.Helper()
	stream, err := e.client.AttestAgent(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_Params_{Params: &agentv1.AttestAgentRequest_Params{
		Data:   &types.AttestationData{Type: typ, Payload: []byte(payload)},
		Params: &agentv1.AgentX509SVIDParams{Csr: newCSR(t)},
	}}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	return resp.GetResult(), err
}

func (e *env) token(t *testing.T, value string, ttl int32) string {
	t.Helper()
	ctx := caller.NewContext(testContext(t), caller.Caller{Kind: caller.Admin, Local: true})
	tok, err := e.svc.CreateJoinToken(ctx, &agentv1.CreateJoinTokenRequest{Token: value, Ttl: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return tok.Value
}

func wantStatus(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), msg) {
		t.Fatalf("got %v (%v), want %v saying %q", status.Code(err), err, code, msg)
	}
}

func asAgent(t *testing.T, id spiffeid.ID) context.Context {
	return caller.NewContext(testContext(t), caller.Caller{Kind: caller.Agent, ID: id})
}

func TestAttestAgentJoinTokenRefusals(t *testing.T) {
	e := newEnv(t)

	// A good token attests once, and the record holds the SVID's serial.
	good := e.token(t, "", 600)
	res, err := e.attest(t, jointoken.Type, good)
	if err != nil {
		t.Fatalf("attest: %v", err)
	}
	leaf, err := x509.ParseCertificate(res.Svid.CertChain[0])
	if err != nil {
		t.Fatal(err)
	}
	id, _ := jointoken.AgentID(td, good)
	rec, err := e.store.GetAgent(testContext(t), id)
	if err != nil {
		t.Fatal(err)
	}
	if rec.X509SvidSerialNumber != leaf.SerialNumber.String() {
		t.Fatalf("agent record has serial %s, SVID has %s", rec.X509SvidSerialNumber, leaf.SerialNumber)
	}
	// Evict the agent, so that reusing its token is refused for the token
	// alone, not because the agent record exists.
	if err := e.store.DeleteAgent(testContext(t), id); err != nil {
		t.Fatal(err)
	}

	expired := e.token(t, "", 60)
	e.clock.Add(61 * time.Second)
	tests := []struct {
		name, typ, token string
		code             codes.Code
		msg              string
	}{
		{"used token", jointoken.Type, good, codes.InvalidArgument, "does not exist or has already been used"},
		{"unknown token", jointoken.Type, "0123456789abcdef0123456789abcdef", codes.InvalidArgument, "does not exist or has already been used"},
		{"expired token", jointoken.Type, expired, codes.InvalidArgument, "expired"},
		{"expired token, second try", jointoken.Type, expired, codes.InvalidArgument, "does not exist or has already been used"},
		{"empty token", jointoken.Type, "", codes.InvalidArgument, "join token is empty"},
		{"token not usable in an ID", jointoken.Type, "a/../b", codes.InvalidArgument, "not usable in a SPIFFE ID"},
		{"unknown attestor", "x509pop", good, codes.FailedPrecondition, "could not find node attestor"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := e.attest(t, tt.typ, tt.token)
			if res.GetSvid() != nil {
				t.Fatalf("an SVID was issued (%v)", err)
			}
			wantStatus(t, err, tt.code, tt.msg)
		})
	}
}

// TestBannedAgentCannotReturn: a banned agent can neither renew nor attest
// again under the same ID, even with a fresh token of the same value.
func TestBannedAgentCannotReturn(t *testing.T) {
	e := newEnv(t)
	const value = "banned-agent-token-0123456789abcdef"
	if _, err := e.attest(t, jointoken.Type, e.token(t, value, 600)); err != nil {
		t.Fatal(err)
	}
	id, _ := jointoken.AgentID(td, value)
	admin := caller.NewContext(testContext(t), caller.Caller{Kind: caller.Admin, Local: true})
	if _, err := e.svc.BanAgent(admin, &agentv1.BanAgentRequest{Id: &types.SPIFFEID{TrustDomain: td.Name(), Path: id.Path()}}); err != nil {
		t.Fatal(err)
	}
	rec, err := e.store.GetAgent(testContext(t), id)
	if err != nil {
		t.Fatal(err)
	}
	if !rec.Banned || rec.X509SvidSerialNumber != "" {
		t.Fatalf("banned record: banned=%v serial=%q, want banned and no current SVID", rec.Banned, rec.X509SvidSerialNumber)
	}

	_, err = e.svc.RenewAgent(asAgent(t, id), &agentv1.RenewAgentRequest{Params: &agentv1.AgentX509SVIDParams{Csr: newCSR(t)}})
	wantStatus(t, err, codes.PermissionDenied, "banned")

	res, err := e.attest(t, jointoken.Type, e.token(t, value, 600))
	if res.GetSvid() != nil {
		t.Fatal("a banned agent attested again")
	}
	wantStatus(t, err, codes.PermissionDenied, "banned")

	_, err = e.svc.BanAgent(admin, &agentv1.BanAgentRequest{Id: &types.SPIFFEID{TrustDomain: td.Name(), Path: "/spire/agent/join_token/nobody"}})
	wantStatus(t, err, codes.NotFound, "not found")
}

// TestRenewAgentNeedsAnAgent: only an attested agent renews, and renewal
// makes the new SVID the current one.
func TestRenewAgentNeedsAnAgent(t *testing.T) {
	e := newEnv(t)
	tok := e.token(t, "", 600)
	if _, err := e.attest(t, jointoken.Type, tok); err != nil {
		t.Fatal(err)
	}
	id, _ := jointoken.AgentID(td, tok)
	req := &agentv1.RenewAgentRequest{Params: &agentv1.AgentX509SVIDParams{Csr: newCSR(t)}}

	for name, ctx := range map[string]context.Context{
		"no caller":    testContext(t),
		"admin caller": caller.NewContext(testContext(t), caller.Caller{Kind: caller.Admin, Local: true}),
		"workload":     caller.NewContext(testContext(t), caller.Caller{Kind: caller.Unauthenticated, ID: spiffeid.RequireFromPath(td, "/web")}),
	} {
		_, err := e.svc.RenewAgent(ctx, req)
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s: got %v, want PermissionDenied", name, err)
		}
	}
	_, err := e.svc.RenewAgent(asAgent(t, spiffeid.RequireFromPath(td, "/spire/agent/join_token/evicted")), req)
	wantStatus(t, err, codes.NotFound, "not found")
	_, err = e.svc.RenewAgent(asAgent(t, id), &agentv1.RenewAgentRequest{})
	wantStatus(t, err, codes.InvalidArgument, "missing CSR")

	resp, err := e.svc.RenewAgent(asAgent(t, id), req)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(resp.Svid.CertChain[0])
	if err != nil {
		t.Fatal(err)
	}
	rec, err := e.store.GetAgent(testContext(t), id)
	if err != nil {
		t.Fatal(err)
	}
	if rec.X509SvidSerialNumber != leaf.SerialNumber.String() {
		t.Fatalf("after renewal the record's serial is %s, the new SVID's %s", rec.X509SvidSerialNumber, leaf.SerialNumber)
	}
}
