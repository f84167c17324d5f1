package spire

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/ca"
	signetcli "github.com/signet-id/signet/cli"
)

// startSignetAgent runs a Signet agent against s with the join token tok
// and returns its Workload API socket; the agent stops with the test.
func startSignetAgent(t *testing.T, s *signetServer, serverAddr, tok string, reg prometheus.Registerer) string {
	t.Helper()
	dir := shortDir(t)
	logs := &logBuffer{}
	dumpOnFailure(t, "signet agent", logs)
	sock := filepath.Join(dir, "wl.sock")
	a, err := agent.New(agent.Config{
		TrustDomain:     td,
		ServerAddresses: []string{serverAddr},
		JoinToken:       tok,
		DataDir:         filepath.Join(dir, "agent"),
		SocketPath:      sock,
		TrustBundle:     s.CA().Bundle().X509Authorities(),
		Logger:          slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registry:        reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-a.Ready():
	case err := <-done:
		t.Fatalf("signet agent: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("signet agent did not serve")
	}
	return sock
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// spireHealthcheck runs spire-agent healthcheck and returns its exit
// code and output.
func spireHealthcheck(t *testing.T, bin string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, append([]string{"healthcheck"}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String()
	}
	t.Fatalf("spire-agent healthcheck: %v", err)
	return 0, ""
}

func signetHealthcheck(args ...string) (int, string) {
	var out bytes.Buffer
	code := signetcli.Main(context.Background(), append([]string{"agent", "healthcheck"}, args...), &out, &out)
	return code, out.String()
}

// TestAgentHealthcheck: spire-agent healthcheck and signet agent
// healthcheck against a Signet agent that is attested, one that is not
// (its join token is unknown to the server), and a socket nobody serves.
func TestAgentHealthcheck(t *testing.T) {
	bins := spireBinaries(t)
	sreg := prometheus.NewRegistry()
	s := startSignet(t, signetOptions{registry: sreg})
	const check = "/grpc.health.v1.Health/Check"

	t.Run("attested", func(t *testing.T) {
		areg := prometheus.NewRegistry()
		sock := startSignetAgent(t, s, s.AgentAddr().String(), s.token(t), areg)
		var code int
		var out string
		// Attestation completes after the Workload API serves.
		waitFor(t, 30*time.Second, "the agent to report healthy", func() bool {
			code, out = spireHealthcheck(t, bins.agent, "-socketPath", sock)
			return code == 0
		})
		if !strings.Contains(out, "Agent is healthy.") {
			t.Errorf("spire-agent healthcheck: %q", out)
		}
		for _, args := range [][]string{
			{"-socketPath", sock},
			{"--socket-path", sock, "--shallow"},
			{"--socket-path", sock, "--verbose"},
			{"-socketPath", sock, "-shallow", "-verbose"},
		} {
			code, out := signetHealthcheck(args...)
			if code != 0 || !strings.Contains(out, "Agent is healthy.") {
				t.Errorf("signet agent healthcheck %q: exit %d %q", args, code, out)
			}
			if strings.Contains(strings.Join(args, " "), "verbose") &&
				!strings.Contains(out, "spiffe://example.org/spire/agent/join_token/") {
				t.Errorf("signet agent healthcheck %q: no agent ID in %q", args, out)
			}
		}
		if code, out := spireHealthcheck(t, bins.agent, "-socketPath", sock, "-shallow", "-verbose"); code != 0 {
			t.Errorf("spire-agent healthcheck -shallow -verbose: exit %d %q", code, out)
		}
		// Per-RPC metrics: the health checks on the agent, the
		// attestation on the server.
		if n := sample(t, areg, "signet_grpc_server_handled_total", "server", "workload", "method", check, "code", "OK"); n < 6 {
			t.Errorf("workload health checks counted: %v, want at least 6", n)
		}
		if n := sample(t, sreg, "signet_grpc_server_handled_total", "server", "agent", "method", "/spire.api.server.agent.v1.Agent/AttestAgent", "code", "OK"); n != 1 {
			t.Errorf("AttestAgent OK counted: %v, want 1", n)
		}
		// Expiry gauges: the agent SVID, and the active X.509 and JWT
		// authorities by authority ID.
		if v := sample(t, areg, "signet_agent_svid_expiry_seconds"); v <= 0 || v > 3600 {
			t.Errorf("agent SVID expiry seconds: %v", v)
		}
		for _, a := range append(s.CA().X509Authorities(), s.CA().JWTAuthorities()...) {
			if a.Status != ca.StatusActive {
				continue
			}
			kind := map[ca.Kind]string{ca.KindX509: "x509", ca.KindJWT: "jwt"}[a.Kind]
			want := time.Until(a.NotAfter).Seconds()
			if v := sample(t, sreg, "signet_server_ca_expiry_seconds", "kind", kind, "authority_id", a.ID); v <= 0 || v > want+1 {
				t.Errorf("CA expiry seconds %s %s: %v, want about %v", kind, a.ID, v, want)
			}
		}
	})

	t.Run("not attested", func(t *testing.T) {
		areg := prometheus.NewRegistry()
		// No server answers at this address: the agent keeps retrying (a
		// refused token would stop it: a permanent error) and serves the
		// Workload API meanwhile, unattested.
		sock := startSignetAgent(t, s, closedAddr(t), s.token(t), areg)
		code, out := spireHealthcheck(t, bins.agent, "-socketPath", sock)
		if code != 1 || !strings.Contains(out, `Agent is unhealthy: agent returned status "NOT_SERVING"`) {
			t.Errorf("spire-agent healthcheck: exit %d %q", code, out)
		}
		code, out = signetHealthcheck("--socket-path", sock)
		if code != 1 || !strings.Contains(out, "agent is unhealthy: not attested to a server yet") {
			t.Errorf("signet agent healthcheck: exit %d %q", code, out)
		}
		if n, err := testutilCount(areg, "signet_agent_svid_expiry_seconds"); err != nil || n != 0 {
			t.Errorf("agent SVID expiry before attestation: %d series (%v), want none", n, err)
		}
	})

	t.Run("nobody serving", func(t *testing.T) {
		sock := filepath.Join(shortDir(t), "none.sock")
		if code, out := spireHealthcheck(t, bins.agent, "-socketPath", sock); code != 1 || !strings.Contains(out, "Agent is unhealthy") {
			t.Errorf("spire-agent healthcheck: exit %d %q", code, out)
		}
		code, out := signetHealthcheck("--socket-path", sock, "--timeout", "2s")
		if code != 1 || !strings.Contains(out, "agent is unhealthy: cannot reach the agent") {
			t.Errorf("signet agent healthcheck: exit %d %q", code, out)
		}
	})

	t.Run("usage", func(t *testing.T) {
		if code, out := signetHealthcheck("--bogus"); code != 2 {
			t.Errorf("--bogus: exit %d %q", code, out)
		}
		if code, out := signetHealthcheck("--help"); code != 0 || !strings.Contains(out, "--socket-path") {
			t.Errorf("--help: exit %d %q", code, out)
		}
	})
}

// sample sums the counter, gauge or histogram count series of name whose
// labels include the given name/value pairs.
func sample(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue series
				}
			}
			v += m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
	}
	return v
}

// testutilCount counts the series of a family.
func testutilCount(reg *prometheus.Registry, name string) (int, error) {
	mfs, err := reg.Gather()
	n := 0
	for _, mf := range mfs {
		if mf.GetName() == name {
			n += len(mf.GetMetric())
		}
	}
	return n, err
}
