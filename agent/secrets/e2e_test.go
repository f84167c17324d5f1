package secrets_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/signet-id/signet/agent/cache"
	"github.com/signet-id/signet/agent/cache/cachetest"
	agentsecrets "github.com/signet-id/signet/agent/secrets"
	"github.com/signet-id/signet/agent/workloadapi"
	"github.com/signet-id/signet/attest/unix"
	secretsv1 "github.com/signet-id/signet/proto/signet/secrets/v1"
	vsecrets "github.com/signet-id/signet/secrets"
	"github.com/signet-id/signet/secrets/vaulttest"
	secretsapi "github.com/signet-id/signet/server/api/secrets"
	"github.com/signet-id/signet/server/caller"
	"github.com/signet-id/signet/server/etcdserver"
	"github.com/signet-id/signet/server/store"
)

// TestEndToEnd runs the whole chain with real parts: a workload (this test
// process, attested by uid) asks the agent's WorkloadSecrets service on a
// Unix socket; the agent forwards to the server's Secrets service over
// loopback gRPC; the server checks the entry (embedded etcd) and the
// policy, and the broker reads a real Vault dev server. Only the server's
// mTLS authentication is stood in for: the agent's connection is marked as
// the agent by a header.
func TestEndToEnd(t *testing.T) {
	vs := vaulttest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
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

	// Server side.
	agentID := spiffeid.RequireFromPath(td, "/spire/agent/join_token/n1")
	st, err := store.New(etcd.Client(), td)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.CreateAgent(ctx, &types.Agent{Id: &types.SPIFFEID{TrustDomain: td.Name(), Path: agentID.Path()}, X509SvidSerialNumber: "1"}); err != nil {
		t.Fatal(err)
	}
	entry, err := st.CreateEntry(ctx, &types.Entry{
		SpiffeId:  &types.SPIFFEID{TrustDomain: td.Name(), Path: webID.Path()},
		ParentId:  &types.SPIFFEID{TrustDomain: td.Name(), Path: agentID.Path()},
		Selectors: []*types.Selector{{Type: "unix", Value: "uid:" + strconv.Itoa(os.Getuid())}},
	})
	if err != nil {
		t.Fatal(err)
	}
	vc, err := vsecrets.NewClient(vsecrets.ClientConfig{Address: vs.Addr, Auth: vsecrets.TokenAuth{Token: vaulttest.RootToken}})
	if err != nil {
		t.Fatal(err)
	}
	broker, err := vsecrets.NewBroker(vsecrets.BrokerConfig{Client: vc, PollInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(broker.Close)
	policies, err := vsecrets.NewPolicyStore(etcd.Client(), td)
	if err != nil {
		t.Fatal(err)
	}
	api, err := secretsapi.New(secretsapi.Config{TrustDomain: td, Store: st, Policies: policies, Broker: broker})
	if err != nil {
		t.Fatal(err)
	}
	go api.Run(ctx)
	markAgent := func(ctx context.Context) context.Context {
		if md, _ := metadata.FromIncomingContext(ctx); len(md.Get("x-test-agent")) == 1 {
			return caller.NewContext(ctx, caller.Caller{Kind: caller.Agent, ID: agentID})
		}
		return caller.NewContext(ctx, caller.Caller{Kind: caller.Admin, Local: true})
	}
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			return h(markAgent(ctx), req)
		}),
		grpc.ChainStreamInterceptor(func(s any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			return h(s, &ctxStream{ServerStream: ss, ctx: markAgent(ss.Context())})
		}))
	api.Register(srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	serverConn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, d *grpc.StreamDesc, cc *grpc.ClientConn, m string, s grpc.Streamer, o ...grpc.CallOption) (grpc.ClientStream, error) {
			return s(metadata.AppendToOutgoingContext(ctx, "x-test-agent", "1"), d, cc, m, o...)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { serverConn.Close() })
	adminConn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { adminConn.Close() })

	// Agent side.
	ca := cachetest.NewCA(t, td)
	c := cache.New(td)
	c.Update(cache.Update{Bundle: ca.Bundle(), Entries: []*types.Entry{entry},
		SVIDs: map[string]*cache.X509SVID{entry.Id: ca.X509SVID(t, webID)}})
	att := unix.New()
	wl, err := workloadapi.New(workloadapi.Config{Cache: c, Attestor: att, TrustDomain: td})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := agentsecrets.New(agentsecrets.Config{Attestor: att, Cache: c, MaxBackoff: 200 * time.Millisecond,
		Server: func(context.Context) (secretsv1.SecretsClient, error) {
			return secretsv1.NewSecretsClient(serverConn), nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	g := wl.NewGRPCServer()
	svc.Register(g)
	sock := filepath.Join(dir, "api.sock")
	l, err := workloadapi.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(l)
	t.Cleanup(g.Stop)
	wconn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wconn.Close() })

	// An admin grants the secret; Vault holds version 1.
	vs.PutKV(t, "secret", "web/db", map[string]any{"password": "e2e-one"})
	if _, err := secretsv1.NewSecretPoliciesClient(adminConn).CreatePolicy(ctx, &secretsv1.CreatePolicyRequest{Policy: &secretsv1.SecretPolicy{
		Id: "db", SpiffeIdPattern: "spiffe://example.org/*", Path: "secret/web/db", Engine: "kv2", Field: "password"}}); err != nil {
		t.Fatal(err)
	}

	// A file sink on the agent and a workload stream.
	sinkPath := filepath.Join(dir, "db.secret")
	go svc.RunSink(ctx, agentsecrets.Sink{Name: "db", SPIFFEID: webID, Path: sinkPath})
	wctx := metadata.AppendToOutgoingContext(ctx, workloadapi.SecurityHeader, "true")
	stream, err := secretsv1.NewWorkloadSecretsClient(wconn).Watch(wctx, &secretsv1.WorkloadWatchSecretRequest{Name: "db"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := stream.Recv()
	if err != nil || string(m.Value) != "e2e-one" || m.SpiffeId != webID.String() {
		t.Fatalf("first value: %v", err)
	}
	vs.PutKV(t, "secret", "web/db", map[string]any{"password": "e2e-two"})
	if m, err := stream.Recv(); err != nil || string(m.Value) != "e2e-two" || m.Version != 2 {
		t.Fatalf("pushed value: %v", err)
	}
	waitFile(t, sinkPath, "e2e-two")

	// Deleting the policy stops delivery.
	if _, err := secretsv1.NewSecretPoliciesClient(adminConn).DeletePolicy(ctx, &secretsv1.DeletePolicyRequest{Id: "db"}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("after the policy was deleted: %v; want PermissionDenied", err)
	}
}

func waitFile(t *testing.T, path, want string) {
	t.Helper()
	for range 400 {
		if b, err := os.ReadFile(path); err == nil && string(b) == want {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("%s never held the expected value", path)
}

type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (c *ctxStream) Context() context.Context { return c.ctx }
