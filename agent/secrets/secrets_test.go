package secrets_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
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

	"github.com/signet-id/signet/agent/cache"
	"github.com/signet-id/signet/agent/cache/cachetest"
	agentsecrets "github.com/signet-id/signet/agent/secrets"
	"github.com/signet-id/signet/agent/workloadapi"
	"github.com/signet-id/signet/attest/unix"
	secretsv1 "github.com/signet-id/signet/proto/signet/secrets/v1"
)

var (
	td    = spiffeid.RequireTrustDomainFromString("example.org")
	webID = spiffeid.RequireFromString("spiffe://example.org/web")
)

// upstream is a stand-in for the Signet server's Secrets service on a real
// loopback gRPC listener: it records requests and streams what the test
// sends on values, or refuses with refuse.
type upstream struct {
	secretsv1.UnimplementedSecretsServer
	values chan *secretsv1.Secret
	refuse error

	mu   sync.Mutex
	reqs []*secretsv1.WatchSecretRequest

	srv  *grpc.Server
	conn *grpc.ClientConn
}

func startUpstream(t *testing.T, refuse error) *upstream {
	t.Helper()
	u := &upstream{values: make(chan *secretsv1.Secret, 8), refuse: refuse}
	u.srv = grpc.NewServer()
	secretsv1.RegisterSecretsServer(u.srv, u)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go u.srv.Serve(lis)
	t.Cleanup(u.srv.Stop)
	u.conn, err = grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.conn.Close() })
	return u
}

func (u *upstream) Watch(req *secretsv1.WatchSecretRequest, s grpc.ServerStreamingServer[secretsv1.Secret]) error {
	u.mu.Lock()
	u.reqs = append(u.reqs, req)
	u.mu.Unlock()
	if u.refuse != nil {
		return u.refuse
	}
	for {
		select {
		case <-s.Context().Done():
			return nil
		case v := <-u.values:
			if err := s.Send(v); err != nil {
				return err
			}
		}
	}
}

func (u *upstream) requests() []*secretsv1.WatchSecretRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]*secretsv1.WatchSecretRequest(nil), u.reqs...)
}

// session switches the "current server connection" as agent sessions do.
type session struct {
	mu sync.Mutex
	up *upstream
}

func (s *session) set(u *upstream) {
	s.mu.Lock()
	s.up = u
	s.mu.Unlock()
}

func (s *session) client(context.Context) (secretsv1.SecretsClient, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.up == nil {
		return nil, agentsecrets.ErrNotConnected
	}
	return secretsv1.NewSecretsClient(s.up.conn), nil
}

type env struct {
	svc  *agentsecrets.Service
	sess *session
	conn *grpc.ClientConn
}

// start serves the Workload API and WorkloadSecrets on a fresh Unix socket;
// the cache holds an entry for this test process's uid when matchSelf.
func start(t *testing.T, matchSelf bool) *env {
	t.Helper()
	ca := cachetest.NewCA(t, td)
	c := cache.New(td)
	uid := os.Getuid()
	if !matchSelf {
		uid++
	}
	entry := &types.Entry{
		Id:        "entry-web",
		SpiffeId:  &types.SPIFFEID{TrustDomain: td.Name(), Path: webID.Path()},
		ParentId:  &types.SPIFFEID{TrustDomain: td.Name(), Path: "/spire/agent/x"},
		Selectors: []*types.Selector{{Type: "unix", Value: "uid:" + strconv.Itoa(uid)}},
	}
	c.Update(cache.Update{Bundle: ca.Bundle(), Entries: []*types.Entry{entry},
		SVIDs: map[string]*cache.X509SVID{entry.Id: ca.X509SVID(t, webID)}})
	att := unix.New()
	wl, err := workloadapi.New(workloadapi.Config{Cache: c, Attestor: att, TrustDomain: td})
	if err != nil {
		t.Fatal(err)
	}
	sess := &session{}
	svc, err := agentsecrets.New(agentsecrets.Config{Attestor: att, Cache: c, Server: sess.client, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	g := wl.NewGRPCServer()
	svc.Register(g)
	dir, err := os.MkdirTemp("", "sg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "api.sock")
	l, err := workloadapi.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(l)
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &env{svc: svc, sess: sess, conn: conn}
}

func (e *env) watch(t *testing.T, ctx context.Context, name string, header bool) grpc.ServerStreamingClient[secretsv1.Secret] {
	t.Helper()
	if header {
		ctx = metadata.AppendToOutgoingContext(ctx, workloadapi.SecurityHeader, "true")
	}
	s, err := secretsv1.NewWorkloadSecretsClient(e.conn).Watch(ctx, &secretsv1.WorkloadWatchSecretRequest{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testTimeout bounds every RPC of these tests, so that a regression fails
// the test instead of hanging until go test's timeout. A safety net, not a
// timing assertion.
const testTimeout = 30 * time.Second

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func secret(v string, version int64) *secretsv1.Secret {
	return &secretsv1.Secret{Name: "db", SpiffeId: webID.String(), Value: []byte(v), Version: version}
}

func TestWorkloadWatchForwardsAndReconnects(t *testing.T) {
	e := start(t, true)
	up := startUpstream(t, nil)
	e.sess.set(up)
	ctx := testContext(t)

	s := e.watch(t, ctx, "db", true)
	up.values <- secret("one", 1)
	m, err := s.Recv()
	if err != nil || string(m.Value) != "one" {
		t.Fatalf("Recv = %v, %v", m, err)
	}
	reqs := up.requests()
	if len(reqs) != 1 || reqs[0].Name != "db" || reqs[0].SpiffeId != webID.String() || reqs[0].EntryId != "entry-web" {
		t.Fatalf("forwarded requests = %v", reqs)
	}
	up.values <- secret("two", 2)
	if m, err := s.Recv(); err != nil || string(m.Value) != "two" {
		t.Fatalf("Recv = %v, %v", m, err)
	}

	// The session ends (server gone); the next one reaches another
	// server, and the workload's stream continues.
	e.sess.set(nil)
	up.srv.Stop()
	up2 := startUpstream(t, nil)
	e.sess.set(up2)
	up2.values <- secret("two", 2) // the same state again is not repeated
	up2.values <- secret("three", 3)
	if m, err := s.Recv(); err != nil || string(m.Value) != "three" {
		t.Fatalf("after reconnect Recv = %v, %v", m, err)
	}
}

func TestWorkloadWatchRefusals(t *testing.T) {
	t.Run("no security header", func(t *testing.T) {
		e := start(t, true)
		e.sess.set(startUpstream(t, nil))
		if _, err := e.watch(t, testContext(t), "db", false).Recv(); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("Recv = %v; want InvalidArgument", err)
		}
	})
	t.Run("no identity", func(t *testing.T) {
		e := start(t, false)
		up := startUpstream(t, nil)
		e.sess.set(up)
		if _, err := e.watch(t, testContext(t), "db", true).Recv(); status.Code(err) != codes.PermissionDenied {
			t.Fatalf("Recv = %v; want PermissionDenied", err)
		}
		if len(up.requests()) != 0 {
			t.Fatal("a request without identity was forwarded")
		}
	})
	t.Run("server denies", func(t *testing.T) {
		e := start(t, true)
		e.sess.set(startUpstream(t, status.Error(codes.PermissionDenied, `secret "db" is not available`)))
		_, err := e.watch(t, testContext(t), "db", true).Recv()
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("Recv = %v; want PermissionDenied", err)
		}
	})
}

func TestFileSink(t *testing.T) {
	e := start(t, true)
	up := startUpstream(t, nil)
	e.sess.set(up)
	dir := t.TempDir()
	path := filepath.Join(dir, "db.secret")
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	done := make(chan error, 1)
	go func() { done <- e.svc.RunSink(ctx, agentsecrets.Sink{Name: "db", SPIFFEID: webID, Path: path}) }()

	for i, v := range []string{"first", "second"} {
		up.values <- secret(v, int64(i+1))
		var got []byte
		for range 400 {
			if b, err := os.ReadFile(path); err == nil && string(b) == v {
				got = b
				break
			}
			time.Sleep(25 * time.Millisecond)
		}
		if string(got) != v {
			t.Fatalf("file never held %q", v)
		}
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != 0o400 {
			t.Fatalf("mode = %v, %v; want 0400", fi.Mode(), err)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("temporary files left: %v", ents)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
