package spire

import (
	"bytes"
	"context"
	"encoding/pem"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/signet-id/signet/server"
	agentapi "github.com/signet-id/signet/server/api/agent"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

// binaries locates spire-server and spire-agent: SIGNET_SPIRE_DIR, or
// scripts/install-spire.sh. Without them the test is skipped, unless CI=true.
type binaries struct{ server, agent string }

func spireBinaries(t *testing.T) binaries {
	t.Helper()
	dir := os.Getenv("SIGNET_SPIRE_DIR")
	if dir == "" {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		cmd := exec.Command(filepath.Join(root, "scripts", "install-spire.sh"))
		cmd.Dir = root
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			msg := fmt.Sprintf("SPIRE v1.13.3 binaries unavailable: SIGNET_SPIRE_DIR is unset and scripts/install-spire.sh failed: %v\n%s", err, stderr.String())
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
		dir = strings.TrimSpace(string(out))
	}
	b := binaries{server: filepath.Join(dir, "spire-server"), agent: filepath.Join(dir, "spire-agent")}
	for _, p := range []string{b.server, b.agent} {
		if _, err := os.Stat(p); err != nil {
			msg := fmt.Sprintf("SPIRE binary missing in SIGNET_SPIRE_DIR=%s: %v (build with scripts/install-spire.sh)", dir, err)
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	return b
}

// shortDir returns a directory with a short path (Unix socket paths are
// limited to 108 bytes), removed after the test.
func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "sp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// logBuffer is a goroutine-safe buffer for process and server logs.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// dumpOnFailure logs the buffer when the test has failed, or always when
// SIGNET_TEST_LOG is set.
func dumpOnFailure(t *testing.T, name string, b *logBuffer) {
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("SIGNET_TEST_LOG") != "" {
			t.Logf("--- %s log ---\n%s", name, b.String())
		}
	})
}

// proc is a SPIRE process started by a test; it is stopped at test end.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *logBuffer
	done chan struct{}
	err  error
}

func startProc(t *testing.T, name, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, out: &logBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	dumpOnFailure(t, name, p.out)
	t.Cleanup(p.stop)
	return p
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop ends the process: SIGTERM, then SIGKILL if it does not exit.
func (p *proc) stop() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// run executes a CLI command to completion and returns its stdout.
func run(ctx context.Context, bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w: %s%s", filepath.Base(bin), strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func renderConfig(t *testing.T, tmplName, out string, data any) {
	t.Helper()
	tmpl, err := template.ParseFiles(filepath.Join("testdata", tmplName))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, data); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// clock is an adjustable clock for the Signet server: real time plus an
// offset.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time           { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) Set(offset time.Duration) { c.offset.Store(int64(offset)) }

// signetServer is an in-process Signet server with an admin connection.
type signetServer struct {
	*server.Server
	dir   string
	admin *grpc.ClientConn
}

type signetOptions struct {
	now      func() time.Time
	caTTL    time.Duration
	registry prometheus.Registerer
	// nodeAttestors are served besides join tokens.
	nodeAttestors []agentapi.NodeAttestor
	// trustDomain defaults to td.
	trustDomain spiffeid.TrustDomain
	federation  server.FederationConfig
	// upstreamSPIRE, if set, signs the CA (UpstreamAuthority "spire").
	upstreamSPIRE *server.UpstreamSPIREConfig
}

func startSignet(t *testing.T, opts signetOptions) *signetServer {
	t.Helper()
	dir := shortDir(t)
	logs := &logBuffer{}
	dumpOnFailure(t, "signet server", logs)
	tdName := td
	if !opts.trustDomain.IsZero() {
		tdName = opts.trustDomain
	}
	srv, err := server.New(server.Config{
		TrustDomain:      tdName,
		Federation:       opts.federation,
		DataDir:          filepath.Join(dir, "server"),
		BindAddress:      "127.0.0.1:0",
		AdminSocket:      filepath.Join(dir, "admin.sock"),
		Logger:           slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		RotationInterval: time.Second,
		CATTL:            opts.caTTL,
		Clock:            skewed(opts.now),
		Registry:         opts.registry,
		NodeAttestors:    opts.nodeAttestors,
		UpstreamSPIRE:    opts.upstreamSPIRE,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("signet server: %v", err)
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatal("signet server did not start")
	}
	admin, err := grpc.NewClient("unix://"+srv.AdminSocket(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		admin.Close()
		cancel()
		<-done
	})
	return &signetServer{Server: srv, dir: dir, admin: admin}
}

// bundlePEM writes the server's X.509 authorities as PEM to a file.
func (s *signetServer) bundlePEM(t *testing.T) string {
	t.Helper()
	var b bytes.Buffer
	for _, c := range s.CA().Bundle().X509Authorities() {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	path := filepath.Join(s.dir, "bundle.pem")
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (s *signetServer) token(t *testing.T) string {
	t.Helper()
	tok, err := agentv1.NewAgentClient(s.admin).CreateJoinToken(context.Background(), &agentv1.CreateJoinTokenRequest{Ttl: 600})
	if err != nil {
		t.Fatal(err)
	}
	return tok.Value
}

func (s *signetServer) agentRecord(id spiffeid.ID) (*types.Agent, error) {
	return agentv1.NewAgentClient(s.admin).GetAgent(context.Background(), &agentv1.GetAgentRequest{Id: protoID(id)})
}

func (s *signetServer) createEntry(t *testing.T, e *types.Entry) *types.Entry {
	t.Helper()
	resp, err := entryv1.NewEntryClient(s.admin).BatchCreateEntry(context.Background(), &entryv1.BatchCreateEntryRequest{Entries: []*types.Entry{e}})
	if err != nil {
		t.Fatal(err)
	}
	if c := codes.Code(resp.Results[0].Status.Code); c != codes.OK {
		t.Fatalf("create entry: %v %s", c, resp.Results[0].Status.Message)
	}
	return resp.Results[0].Entry
}

// spireServer is a real spire-server process.
type spireServer struct {
	*proc
	bin    string
	socket string
	addr   string
	dir    string
}

func startSPIREServer(t *testing.T, bins binaries) *spireServer {
	t.Helper()
	return startSPIREServerWith(t, bins, "spire-server.conf.tmpl", map[string]any{"TrustDomain": td.Name()})
}

// startSPIREServerWith starts spire-server with the config template tmpl
// rendered with data plus Port, Socket and DataDir.
func startSPIREServerWith(t *testing.T, bins binaries, tmpl string, data map[string]any) *spireServer {
	t.Helper()
	dir := shortDir(t)
	var s *spireServer
	// The port is chosen before spire-server binds it; retry if another
	// process took it meanwhile.
	for attempt := 0; attempt < 3; attempt++ {
		port := freePort(t)
		cfg := filepath.Join(dir, "server.conf")
		socket := filepath.Join(dir, "api.sock")
		vals := map[string]any{"Port": port, "Socket": socket, "DataDir": filepath.Join(dir, "data")}
		maps.Copy(vals, data)
		renderConfig(t, tmpl, cfg, vals)
		s = &spireServer{proc: startProc(t, "spire-server", bins.server, "run", "-config", cfg),
			bin: bins.server, socket: socket, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir}
		if s.waitHealthy() {
			return s
		}
		s.stop()
	}
	t.Fatalf("spire-server did not become healthy:\n%s", s.out.String())
	return nil
}

// waitHealthy polls the health check until it passes or the process exits.
func (s *spireServer) waitHealthy() bool {
	for i := 0; i < 300; i++ {
		if s.exited() {
			return false
		}
		if _, err := run(context.Background(), s.bin, "healthcheck", "-socketPath", s.socket); err == nil {
			// The agent listener comes up with the API; check it too.
			if c, err := net.DialTimeout("tcp", s.addr, time.Second); err == nil {
				c.Close()
				return true
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return false
}

// cli runs a spire-server CLI command against the given admin socket.
func cli(ctx context.Context, bin, socket string, args ...string) (string, error) {
	if len(args) < 2 {
		return run(ctx, bin, append(args, "-socketPath", socket)...)
	}
	// The flag follows the subcommand path: two words ("entry show"), or
	// three for "localauthority x509 show".
	n := 2
	if args[0] == "localauthority" && len(args) >= 3 {
		n = 3
	}
	full := append(append(append([]string{}, args[:n]...), "-socketPath", socket), args[n:]...)
	return run(ctx, bin, full...)
}
