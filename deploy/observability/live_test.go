package observability

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	agentv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/agent/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/signet-id/signet/cli"
	"github.com/signet-id/signet/conformance/tooltest"
)

// TestRulesAndDashboardMetricsExported starts a real server and agent
// with `signet server run` and `signet agent run` (in process, each with
// its --metrics-address), makes them produce every labelled family the
// rules and the dashboard read (a workload fetch, a refused attestation,
// an attestation over attest_rate, Workload API calls without the
// security header and over the per-uid call limit, a scheduled SVID
// renewal), scrapes both /metrics endpoints and checks that every Signet
// metric rules.yml and signet.json name is exported.
func TestRulesAndDashboardMetricsExported(t *testing.T) {
	want := referencedMetrics(t)
	if len(want) < 10 {
		t.Fatalf("only %d metric names found in the rules and dashboard: %v", len(want), want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir, err := os.MkdirTemp("", "obs") // Unix socket paths are short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	agentPort, serverMetrics, agentMetrics := freePort(t), freePort(t), freePort(t)
	adminSock := filepath.Join(dir, "admin.sock")
	wlSock := filepath.Join(dir, "wl.sock")
	conf := filepath.Join(dir, "server.conf")
	// attest_burst 2: the agent's attestation and one refused one; the
	// next is over the limit (a token every 1000 s).
	if err := os.WriteFile(conf, []byte("server {\n  trust_domain = \"example.org\"\n}\nlimits {\n  attest_rate  = 0.001\n  attest_burst = 2\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	daemon(ctx, t, "server", "server", "run", "--config", conf, "--data-dir", filepath.Join(dir, "server"),
		"--bind-address", fmt.Sprintf("127.0.0.1:%d", agentPort), "--socket-path", adminSock,
		"--metrics-address", fmt.Sprintf("127.0.0.1:%d", serverMetrics))

	var bundle string
	waitFor(ctx, t, "the server's admin socket", func() bool {
		out, _, code := signet(ctx, "bundle", "show", "--socket-path", adminSock)
		bundle = out
		return code == 0 && strings.Contains(out, "BEGIN CERTIFICATE")
	})
	bundleFile := filepath.Join(dir, "bundle.pem")
	if err := os.WriteFile(bundleFile, []byte(bundle), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := signet(ctx, "token", "generate", "--socket-path", adminSock)
	token, ok := strings.CutPrefix(strings.TrimSpace(out), "Token: ")
	if code != 0 || !ok {
		t.Fatalf("token generate: exit %d\n%s%s", code, out, errOut)
	}
	// The shortest X.509-SVID TTL an entry may have: the server schedules
	// its renewal within the test.
	if out, errOut, code := signet(ctx, "entry", "create", "--socket-path", adminSock,
		"--parent-id", "spiffe://example.org/spire/agent/join_token/"+token,
		"--spiffe-id", "spiffe://example.org/observability", "--selector", "unix:uid:"+strconv.Itoa(os.Getuid()),
		"--x509-svid-ttl", "60"); code != 0 {
		t.Fatalf("entry create: exit %d\n%s%s", code, out, errOut)
	}
	daemon(ctx, t, "agent", "agent", "run", "--trust-domain", "example.org",
		"--server-address", fmt.Sprintf("127.0.0.1:%d", agentPort), "--join-token", token,
		"--data-dir", filepath.Join(dir, "agent"), "--socket-path", wlSock, "--trust-bundle", bundleFile,
		"--metrics-address", fmt.Sprintf("127.0.0.1:%d", agentMetrics), "--workload-max-calls-per-uid", "1")

	// A workload fetch, as any SPIFFE client makes it.
	waitFor(ctx, t, "a workload X.509-SVID", func() bool {
		fctx, fcancel := context.WithTimeout(ctx, 10*time.Second)
		defer fcancel()
		svid, err := workloadapi.FetchX509SVID(fctx, workloadapi.WithAddr("unix://"+wlSock))
		return err == nil && svid.ID.String() == "spiffe://example.org/observability"
	})

	// A refused attestation, then one over attest_rate.
	if c := attestJoinToken(ctx, t, agentPort, bundle, "observability-no-such-token"); c == codes.OK || c == codes.ResourceExhausted {
		t.Fatalf("attestation with an unknown join token: %v, want a refusal of the token", c)
	}
	if c := attestJoinToken(ctx, t, agentPort, bundle, "observability-no-such-token"); c != codes.ResourceExhausted {
		t.Fatalf("third attestation from 127.0.0.1 with attest_burst 2: %v, want ResourceExhausted", c)
	}

	// Workload API: no security header; then a second call while one
	// stream holds the uid's only call slot.
	conn, err := grpc.NewClient("unix://"+wlSock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	wl := workload.NewSpiffeWorkloadAPIClient(conn)
	// The call limit is checked first: the go-spiffe fetch's stream may
	// hold the slot for a moment after the client has its answer.
	var noHeaderErr error
	waitFor(ctx, t, "the uid's call slot after the go-spiffe fetch", func() bool {
		noHeader, err := wl.FetchJWTBundles(ctx, &workload.JWTBundlesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		_, noHeaderErr = noHeader.Recv()
		return status.Code(noHeaderErr) != codes.ResourceExhausted
	})
	if status.Code(noHeaderErr) != codes.InvalidArgument {
		t.Fatalf("Workload API call without the security header: %v, want InvalidArgument", noHeaderErr)
	}
	hctx := metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", "true")
	held, err := wl.FetchX509SVID(hctx, &workload.X509SVIDRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := held.Recv(); err != nil {
		t.Fatalf("held FetchX509SVID stream: %v", err)
	}
	second, err := wl.FetchX509Bundles(hctx, &workload.X509BundlesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := second.Recv(); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("second Workload API call of a uid limited to 1: %v, want ResourceExhausted", err)
	}

	// Scrape until every family is there (the SVID renewal the server
	// schedules comes 30 to 48 s after issuance).
	var missing []string
	waitFor(ctx, t, "every referenced metric on /metrics", func() bool {
		have := scrape(t, serverMetrics)
		for k := range scrape(t, agentMetrics) {
			have[k] = true
		}
		missing = missing[:0]
		for _, name := range want {
			if !have[name] {
				missing = append(missing, name)
			}
		}
		return len(missing) == 0
	}, func() string { return "missing: " + strings.Join(missing, ", ") })
	t.Logf("all %d referenced metric families exported: %s", len(want), strings.Join(want, " "))
}

// daemon runs `signet args...` in process until ctx ends (the test's
// cleanup waits for it) and logs its output if the test fails.
func daemon(ctx context.Context, t *testing.T, name string, args ...string) {
	t.Helper()
	dctx, cancel := context.WithCancel(ctx)
	var out tooltest.Buffer
	done := make(chan int, 1)
	go func() { done <- cli.Main(dctx, args, &out, &out) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Errorf("signet %s did not stop", name)
		}
		if t.Failed() {
			t.Logf("--- signet %s output ---\n%s", name, out.String())
		}
	})
}

// signet runs a one-shot `signet args...` in process.
func signet(ctx context.Context, args ...string) (string, string, int) {
	var out, errOut tooltest.Buffer
	code := cli.Main(ctx, args, &out, &errOut)
	return out.String(), errOut.String(), code
}

// attestJoinToken makes one AttestAgent call over the agent listener, as
// an agent without a certificate does, and returns its status code.
func attestJoinToken(ctx context.Context, t *testing.T, port int, bundlePEM, token string) codes.Code {
	t.Helper()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(bundlePEM)) {
		t.Fatal("no certificate in the server's bundle")
	}
	conn, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", port), grpc.WithTransportCredentials(credentials.NewTLS(
		&tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots, ServerName: "localhost"})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	stream, err := agentv1.NewAgentClient(conn).AttestAgent(actx)
	if err != nil {
		return status.Code(err)
	}
	if err := stream.Send(&agentv1.AttestAgentRequest{Step: &agentv1.AttestAgentRequest_Params_{Params: &agentv1.AttestAgentRequest_Params{
		Data:   &types.AttestationData{Type: "join_token", Payload: []byte(token)},
		Params: &agentv1.AgentX509SVIDParams{Csr: csr},
	}}}); err != nil {
		_, err = stream.Recv()
		return status.Code(err)
	}
	_, err = stream.Recv()
	return status.Code(err)
}

// scrape returns the metric families a /metrics endpoint exports (each
// family with a sample has a TYPE line).
func scrape(t *testing.T, port int) map[string]bool {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Logf("scrape :%d: %v", port, err)
		return map[string]bool{}
	}
	defer resp.Body.Close()
	have := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" {
			have[f[2]] = true
		}
	}
	return have
}

// waitFor polls cond every 200 ms until it holds or ctx ends; detail,
// if given, explains a failure.
func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool, detail ...func() string) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			msg := ""
			for _, d := range detail {
				msg += ": " + d()
			}
			t.Fatalf("gave up waiting for %s%s", what, msg)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
