package agent_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/clock/fakeclock"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// logBuffer collects an agent's text logs.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// running is an agent started by runAgent.
type running struct {
	*agent.Agent
	cfg    agent.Config
	logs   *logBuffer
	done   chan error
	cancel context.CancelFunc
}

// runAgent runs a second agent against e's server with its own data dir
// and socket under dir, adjusted by adjust.
func (e *env) runAgent(t *testing.T, dir string, adjust func(*agent.Config)) *running {
	t.Helper()
	logs := &logBuffer{}
	cfg := agent.Config{
		TrustDomain:     td,
		ServerAddresses: []string{e.srv.AgentAddr().String()},
		DataDir:         filepath.Join(dir, "data"),
		SocketPath:      filepath.Join(dir, "public", "api.sock"),
		TrustBundle:     e.srv.CA().Bundle().X509Authorities(),
		SyncInterval:    pollInterval,
		Logger:          slog.New(slog.NewTextHandler(logs, nil)),
	}
	if adjust != nil {
		adjust(&cfg)
	}
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Agent: a, cfg: cfg, logs: logs, done: make(chan error, 1), cancel: cancel}
	go func() { r.done <- a.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop stops the agent (once) and returns Run's error.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok {
			close(r.done)
		}
		return err
	case <-time.After(deliveryBound):
		t.Fatal("agent did not stop")
	}
	return nil
}

// exit waits for Run to return on its own.
func (r *running) exit(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.done:
		close(r.done)
		return err
	case <-time.After(deliveryBound):
		t.Fatalf("agent still running after %v; logs:\n%s", deliveryBound, r.logs)
	}
	return nil
}

func (e *env) newToken(t *testing.T) string {
	t.Helper()
	tok, err := agentv1.NewAgentClient(e.admin).CreateJoinToken(testContext(t), &agentv1.CreateJoinTokenRequest{Ttl: 600})
	if err != nil {
		t.Fatal(err)
	}
	return tok.Value
}

func tokenID(tok string) spiffeid.ID {
	return spiffeid.RequireFromSegments(td, "spire", "agent", "join_token", tok)
}

func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func (r *running) waitAttested(t *testing.T, want spiffeid.ID) {
	t.Helper()
	deadline := time.Now().Add(deliveryBound)
	for r.AgentID() != want {
		if time.Now().After(deadline) {
			t.Fatalf("agent ID %v, want %v; logs:\n%s", r.AgentID(), want, r.logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPermanentErrorsStopTheAgent: an agent that the server refuses, or
// whose verified server names another trust domain, stops with
// ErrPermanent and a message that says what to change, instead of
// retrying forever. (A server that does not verify is not permanent:
// TestInterceptedFirstContactDoesNotStopAgent.)
func TestPermanentErrorsStopTheAgent(t *testing.T) {
	e := start(t)
	spent := e.agentID.Path()[len("/spire/agent/join_token/"):]
	for _, tc := range []struct {
		name   string
		adjust func(*agent.Config)
		want   []string
	}{
		{"spent join token", func(c *agent.Config) { c.JoinToken = spent }, []string{"refused to attest", "has already been used", "signet token generate"}},
		{"unknown join token", func(c *agent.Config) { c.JoinToken = "no-such-token" }, []string{"refused to attest", "signet token generate"}},
		{"no join token", nil, []string{"no join token", "--join-token"}},
		{"another trust domain", func(c *agent.Config) {
			c.TrustDomain = spiffeid.RequireTrustDomainFromString("other.org")
			c.JoinToken = e.newToken(t)
		}, []string{`verified by the agent's bundle, is in trust domain "example.org"`, `configured for "other.org"`, "--trust-domain example.org"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.runAgent(t, shortDir(t), tc.adjust)
			err := r.exit(t)
			if !errors.Is(err, agent.ErrPermanent) {
				t.Fatalf("Run: %v; want ErrPermanent", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if !strings.Contains(r.logs.String(), "level=ERROR") {
				t.Errorf("no ERROR log for the permanent error:\n%s", r.logs)
			}
		})
	}
}

// TestBannedAgentStops: a running agent that the operator bans is refused
// by the server, cannot attest again (banned), and stops with ErrPermanent.
func TestBannedAgentStops(t *testing.T) {
	e := start(t)
	tok := e.newToken(t)
	r := e.runAgent(t, shortDir(t), func(c *agent.Config) { c.JoinToken = tok })
	r.waitAttested(t, tokenID(tok))
	if _, err := agentv1.NewAgentClient(e.admin).BanAgent(testContext(t), &agentv1.BanAgentRequest{
		Id: &types.SPIFFEID{TrustDomain: td.Name(), Path: tokenID(tok).Path()}}); err != nil {
		t.Fatal(err)
	}
	err := r.exit(t)
	if !errors.Is(err, agent.ErrPermanent) || !strings.Contains(err.Error(), "banned") {
		t.Fatalf("Run: %v; want ErrPermanent naming the ban", err)
	}
}

// fetchX509 calls FetchX509SVID on socket as the test's user and returns
// the first response or the error.
func fetchX509(t *testing.T, socket string) (*workload.X509SVIDResponse, error) {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := metadata.AppendToOutgoingContext(testContext(t), "workload.spiffe.io", "true")
	stream, err := workload.NewSpiffeWorkloadAPIClient(conn).FetchX509SVID(ctx, &workload.X509SVIDRequest{})
	if err != nil {
		return nil, err
	}
	return stream.Recv()
}

// TestUnreachableServerBacksOff: with no server listening, the agent
// retries with exponential backoff and jitter on its clock (each wait in
// the upper half of 1s, 2s, 4s, ... up to the bound), and workloads get
// Unavailable with the reason meanwhile.
func TestUnreachableServerBacksOff(t *testing.T) {
	e := start(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	clk := fakeclock.New(time.Now())
	dir := shortDir(t)
	r := e.runAgent(t, dir, func(c *agent.Config) {
		c.ServerAddresses = []string{dead}
		c.JoinToken = e.newToken(t)
		c.Clock = clk
	})
	<-r.Ready()
	want := time.Second
	for step := range 10 {
		if err := clk.WaitForTimers(testContext(t), 1); err != nil {
			t.Fatalf("step %d: the agent never waited on its clock: %v", step, err)
		}
		due, _ := clk.Next()
		wait := due.Sub(clk.Now())
		if wait < want/2 || wait >= want {
			t.Fatalf("step %d: wait %v, want in [%v, %v)", step, wait, want/2, want)
		}
		if step == 0 {
			_, err := fetchX509(t, r.cfg.SocketPath)
			if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "agent is not attested yet: ") ||
				!strings.Contains(err.Error(), dead) {
				t.Fatalf("FetchX509SVID before attestation: %v; want Unavailable with the reason", err)
			}
		}
		clk.Advance(wait)
		want = min(2*want, 2*time.Minute)
	}
	if n := strings.Count(r.logs.String(), "retry_in="); n < 10 {
		t.Errorf("%d retry warnings, want one per attempt:\n%s", n, r.logs)
	}
}

// TestUnresolvableServerBacksOff: a server address whose name does not
// resolve (RFC 6761 reserves .invalid) is retried with the same backoff,
// the log names the address and the resolver's error, the agent is not
// healthy (so not ready) and workloads get Unavailable with that reason.
func TestUnresolvableServerBacksOff(t *testing.T) {
	e := start(t)
	const addr = "nosuchhost.invalid:8081"
	clk := fakeclock.New(time.Now())
	r := e.runAgent(t, shortDir(t), func(c *agent.Config) {
		c.ServerAddresses = []string{addr}
		c.JoinToken = e.newToken(t)
		c.Clock = clk
	})
	<-r.Ready()
	want := time.Second
	for step := range 4 {
		if err := clk.WaitForTimers(testContext(t), 1); err != nil {
			t.Fatalf("step %d: the agent never waited on its clock: %v", step, err)
		}
		due, _ := clk.Next()
		wait := due.Sub(clk.Now())
		if wait < want/2 || wait >= want {
			t.Fatalf("step %d: wait %v, want in [%v, %v)", step, wait, want/2, want)
		}
		clk.Advance(wait)
		want *= 2
	}
	if err := clk.WaitForTimers(testContext(t), 1); err != nil {
		t.Fatal(err)
	}
	reason := `server address "` + addr + `" does not resolve: `
	_, err := fetchX509(t, r.cfg.SocketPath)
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), reason) {
		t.Fatalf("FetchX509SVID: %v; want Unavailable saying %q", err, reason)
	}
	if err := r.Healthy(); err == nil || !strings.Contains(err.Error(), reason) {
		t.Fatalf("Healthy: %v; want not healthy saying %q", err, reason)
	}
	logs := r.logs.String()
	if !strings.Contains(logs, `server address \"`+addr+`\" does not resolve: lookup nosuchhost.invalid`) {
		t.Errorf("the log does not name the address and the resolver error:\n%s", logs)
	}
	if strings.Contains(logs, "produced zero addresses") {
		t.Errorf("the log says gRPC's cryptic resolver error:\n%s", logs)
	}
}

// TestJoinTokenWithCachedSVID: an agent restarted on its data dir with a
// new join token keeps its identity and warns that the token is not used
// and how to use it; with Reattest it attests with the new token.
func TestJoinTokenWithCachedSVID(t *testing.T) {
	e := start(t)
	dir := shortDir(t)
	first := e.newToken(t)
	r := e.runAgent(t, dir, func(c *agent.Config) { c.JoinToken = first })
	r.waitAttested(t, tokenID(first))
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}

	second := e.newToken(t)
	r = e.runAgent(t, dir, func(c *agent.Config) { c.JoinToken = second })
	<-r.Ready()
	if id := r.AgentID(); id != tokenID(first) {
		t.Fatalf("agent ID %v, want the cached %v", id, tokenID(first))
	}
	logs := r.logs.String()
	if !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, "join token not used") || !strings.Contains(logs, "--reattest") {
		t.Errorf("no warning that the join token is not used:\n%s", logs)
	}
	if strings.Contains(logs, second) {
		t.Errorf("the join token is in the logs:\n%s", logs)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}

	r = e.runAgent(t, dir, func(c *agent.Config) { c.JoinToken = second; c.Reattest = true })
	r.waitAttested(t, tokenID(second))
}

// waitFile waits until path exists.
func waitFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(deliveryBound)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not written within %v", path, deliveryBound)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestServerRefusingCachedSVIDReattests: an agent whose cached SVID the
// (verified) server refuses in the TLS handshake, its CA being new, attests
// again with its configured join token instead of retrying forever.
func TestServerRefusingCachedSVIDReattests(t *testing.T) {
	old := start(t)
	dir := shortDir(t)
	tok := old.newToken(t)
	r := old.runAgent(t, dir, func(c *agent.Config) { c.JoinToken = tok })
	r.waitAttested(t, tokenID(tok))
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	// No cached bundle: the agent verifies the new server with the bundle
	// it is given, and presents its old SVID.
	if err := os.Remove(filepath.Join(r.cfg.DataDir, "svid-cache.json")); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	reset := start(t)
	fresh := reset.newToken(t)
	r = reset.runAgent(t, dir, func(c *agent.Config) { c.JoinToken = fresh })
	r.waitAttested(t, tokenID(fresh))
}

// TestInsecureBootstrapWarns: an agent run with InsecureBootstrap attests
// without a bundle, and says at WARN that its first connection is not
// verified and what to use instead.
func TestInsecureBootstrapWarns(t *testing.T) {
	e := start(t)
	tok := e.newToken(t)
	r := e.runAgent(t, shortDir(t), func(c *agent.Config) {
		c.JoinToken = tok
		c.TrustBundle = nil
		c.InsecureBootstrap = true
	})
	r.waitAttested(t, tokenID(tok))
	logs := r.logs.String()
	if !strings.Contains(logs, "level=WARN msg=\"insecure_bootstrap: the first connection to the server is not verified") ||
		!strings.Contains(logs, "--trust-bundle") {
		t.Errorf("no WARN about insecure_bootstrap:\n%s", logs)
	}
}
