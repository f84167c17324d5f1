package secrets_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	secretsv1 "github.com/signet-id/signet/proto/signet/secrets/v1"
	vsecrets "github.com/signet-id/signet/secrets"
	"github.com/signet-id/signet/secrets/vaulttest"
	secretsapi "github.com/signet-id/signet/server/api/secrets"
	"github.com/signet-id/signet/server/caller"
	"github.com/signet-id/signet/server/etcdserver"
	"github.com/signet-id/signet/server/etcdserver/etcdtest"
	"github.com/signet-id/signet/server/store"
)

var testEtcd *etcdserver.Server

func TestMain(m *testing.M) { etcdtest.Main(m, &testEtcd) }

var tds etcdtest.TrustDomains

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// callerHeader carries the calling agent's SPIFFE ID in these tests, in
// place of the server's mTLS authentication (which the server package owns).
const callerHeader = "x-test-caller"

func callerInterceptors() []grpc.ServerOption {
	authn := func(ctx context.Context) context.Context {
		md, _ := metadata.FromIncomingContext(ctx)
		if v := md.Get(callerHeader); len(v) == 1 {
			if v[0] == "admin" {
				return caller.NewContext(ctx, caller.Caller{Kind: caller.Admin, Local: true})
			}
			return caller.NewContext(ctx, caller.Caller{Kind: caller.Agent, ID: spiffeid.RequireFromString(v[0])})
		}
		return ctx
	}
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			return h(authn(ctx), req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			return h(srv, &ctxStream{ServerStream: ss, ctx: authn(ss.Context())})
		}),
	}
}

type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (c *ctxStream) Context() context.Context { return c.ctx }

type env struct {
	td       spiffeid.TrustDomain
	agentID  spiffeid.ID
	webID    spiffeid.ID
	store    *store.Store
	api      *secretsapi.API
	vault    *vaulttest.Server
	conn     *grpc.ClientConn
	logs     *syncBuf
	webEntry string
}

func setup(t *testing.T) *env {
	t.Helper()
	vs := vaulttest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	td := tds.Next(t)
	logs := &syncBuf{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	st, err := store.New(testEtcd.Client(), td)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{
		td: td, store: st, vault: vs, logs: logs,
		agentID: spiffeid.RequireFromPath(td, "/spire/agent/join_token/n1"),
		webID:   spiffeid.RequireFromPath(td, "/ns/prod/web"),
	}
	if _, err := st.CreateAgent(ctx, &types.Agent{Id: &types.SPIFFEID{TrustDomain: td.Name(), Path: e.agentID.Path()}, X509SvidSerialNumber: "1"}); err != nil {
		t.Fatal(err)
	}
	ent, err := st.CreateEntry(ctx, &types.Entry{
		SpiffeId:  &types.SPIFFEID{TrustDomain: td.Name(), Path: e.webID.Path()},
		ParentId:  &types.SPIFFEID{TrustDomain: td.Name(), Path: e.agentID.Path()},
		Selectors: []*types.Selector{{Type: "unix", Value: "uid:1000"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.webEntry = ent.Id

	vc, err := vsecrets.NewClient(vsecrets.ClientConfig{Address: vs.Addr, Auth: vsecrets.TokenAuth{Token: vaulttest.RootToken}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	broker, err := vsecrets.NewBroker(vsecrets.BrokerConfig{Client: vc, PollInterval: 100 * time.Millisecond, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(broker.Close)
	ps, err := vsecrets.NewPolicyStore(testEtcd.Client(), td)
	if err != nil {
		t.Fatal(err)
	}
	e.api, err = secretsapi.New(secretsapi.Config{TrustDomain: td, Store: st, Policies: ps, Broker: broker, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	go e.api.Run(ctx)

	g := grpc.NewServer(callerInterceptors()...)
	e.api.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	e.conn, err = grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.conn.Close() })
	return e
}

func as(ctx context.Context, who string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, callerHeader, who)
}

func (e *env) createPolicy(t *testing.T, p *secretsv1.SecretPolicy) {
	t.Helper()
	if _, err := secretsv1.NewSecretPoliciesClient(e.conn).CreatePolicy(as(context.Background(), "admin"), &secretsv1.CreatePolicyRequest{Policy: p}); err != nil {
		t.Fatal(err)
	}
}

func (e *env) watch(t *testing.T, ctx context.Context, name string, id spiffeid.ID) grpc.ServerStreamingClient[secretsv1.Secret] {
	t.Helper()
	s, err := secretsv1.NewSecretsClient(e.conn).Watch(as(ctx, e.agentID.String()), &secretsv1.WatchSecretRequest{Name: name, SpiffeId: id.String()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (e *env) noLeak(t *testing.T, values ...string) {
	t.Helper()
	logs := e.logs.String()
	for _, v := range values {
		if strings.Contains(logs, v) {
			t.Errorf("secret value %q appears in the logs", v)
		}
	}
}

func TestWatchDeliversAndPushesVersions(t *testing.T) {
	e := setup(t)
	e.vault.PutKV(t, "secret", "web/db", map[string]any{"password": "pw-one"})
	e.createPolicy(t, &secretsv1.SecretPolicy{Id: "db", SpiffeIdPattern: "spiffe://" + e.td.Name() + "/ns/prod/*", Path: "secret/web/db", Engine: "kv2", Field: "password"})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := e.watch(t, ctx, "db", e.webID)
	m, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Value) != "pw-one" || m.Version != 1 || m.SpiffeId != e.webID.String() || m.Name != "db" {
		t.Fatalf("first message: version %d, id %s", m.Version, m.SpiffeId)
	}
	e.vault.PutKV(t, "secret", "web/db", map[string]any{"password": "pw-two"})
	m, err = s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Value) != "pw-two" || m.Version != 2 {
		t.Fatalf("second message: version %d", m.Version)
	}

	list, err := secretsv1.NewSecretPoliciesClient(e.conn).ListPolicies(as(ctx, "admin"), &secretsv1.ListPoliciesRequest{})
	if err != nil || len(list.Policies) != 1 || list.Policies[0].Id != "db" {
		t.Fatalf("ListPolicies = %v, %v", list, err)
	}
	e.noLeak(t, "pw-one", "pw-two")
}

func TestWatchDenied(t *testing.T) {
	e := setup(t)
	e.vault.PutKV(t, "secret", "admin", map[string]any{"k": "top-secret-admin"})
	e.createPolicy(t, &secretsv1.SecretPolicy{Id: "admin", SpiffeIdPattern: "spiffe://" + e.td.Name() + "/admin/*", Path: "secret/admin", Engine: "kv2"})
	e.createPolicy(t, &secretsv1.SecretPolicy{Id: "open", SpiffeIdPattern: "spiffe://" + e.td.Name() + "/**", Path: "secret/admin", Engine: "kv2"})

	tests := []struct {
		name   string
		secret string
		id     spiffeid.ID
	}{
		{"pattern does not match", "admin", e.webID},
		{"no such policy", "nope", e.webID},
		{"agent holds no such entry", "open", spiffeid.RequireFromPath(e.td, "/admin/x")},
	}
	var msgs []string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := e.watch(t, context.Background(), tt.secret, tt.id)
			m, err := s.Recv()
			if status.Code(err) != codes.PermissionDenied {
				t.Fatalf("Recv = %v, %v; want PermissionDenied", m, err)
			}
			if strings.Contains(err.Error(), "top-secret-admin") {
				t.Fatal("the error carries the secret")
			}
			msgs = append(msgs, strings.ReplaceAll(status.Convert(err).Message(), tt.secret, "NAME"))
		})
	}
	// A denied caller cannot tell a missing policy from a non-matching one.
	if len(msgs) == 3 && msgs[0] != msgs[1] {
		t.Fatalf("denials differ: %q vs %q", msgs[0], msgs[1])
	}
	// Callers other than agents are refused.
	s, err := secretsv1.NewSecretsClient(e.conn).Watch(as(context.Background(), "admin"), &secretsv1.WatchSecretRequest{Name: "open", SpiffeId: e.webID.String()})
	if err == nil {
		_, err = s.Recv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("admin Watch = %v; want PermissionDenied", err)
	}
	e.noLeak(t, "top-secret-admin")
}

func TestDeletingPolicyOrEntryStopsDelivery(t *testing.T) {
	e := setup(t)
	e.vault.PutKV(t, "secret", "a", map[string]any{"v": "value-a"})
	e.createPolicy(t, &secretsv1.SecretPolicy{Id: "a", SpiffeIdPattern: e.webID.String(), Path: "secret/a", Engine: "kv2", Field: "v"})
	e.createPolicy(t, &secretsv1.SecretPolicy{Id: "tok", SpiffeIdPattern: e.webID.String(), Path: "auth/token/create", Engine: "leased",
		Field: "client_token", Params: map[string]string{"ttl": "1h", "policies": "default"}})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sa := e.watch(t, ctx, "a", e.webID)
	if _, err := sa.Recv(); err != nil {
		t.Fatal(err)
	}
	st := e.watch(t, ctx, "tok", e.webID)
	m, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	token := string(m.Value)
	vc := e.vault.Client(t)
	if _, err := vc.Auth().Token().Lookup(token); err != nil {
		t.Fatalf("token does not work: %v", err)
	}

	// Deleting the policy ends the stream and revokes the lease.
	if _, err := secretsv1.NewSecretPoliciesClient(e.conn).DeletePolicy(as(ctx, "admin"), &secretsv1.DeletePolicyRequest{Id: "tok"}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("after policy deletion Recv = %v; want PermissionDenied", err)
	}
	if _, err := vc.Auth().Token().Lookup(token); err == nil {
		t.Fatal("token still valid after its policy was deleted")
	}
	if _, err := secretsv1.NewSecretPoliciesClient(e.conn).DeletePolicy(as(ctx, "admin"), &secretsv1.DeletePolicyRequest{Id: "tok"}); status.Code(err) != codes.NotFound {
		t.Fatalf("second DeletePolicy = %v; want NotFound", err)
	}

	// Deleting the entry ends the other stream.
	if err := e.store.DeleteEntry(ctx, e.webEntry); err != nil {
		t.Fatal(err)
	}
	e.api.EntriesChanged()
	if _, err := sa.Recv(); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("after entry deletion Recv = %v; want PermissionDenied", err)
	}
	e.noLeak(t, "value-a", token)
}
