package spire

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/agent"
	signetcli "github.com/signet-id/signet/cli"
)

// startSignetAgent runs a Signet agent against s with the join token tok
// and returns its Workload API socket; the agent stops with the test.
func startSignetAgent(t *testing.T, s *signetServer, tok string) string {
	t.Helper()
	dir := shortDir(t)
	logs := &logBuffer{}
	dumpOnFailure(t, "signet agent", logs)
	sock := filepath.Join(dir, "wl.sock")
	a, err := agent.New(agent.Config{
		TrustDomain:     td,
		ServerAddresses: []string{s.AgentAddr().String()},
		JoinToken:       tok,
		DataDir:         filepath.Join(dir, "agent"),
		SocketPath:      sock,
		TrustBundle:     s.CA().Bundle().X509Authorities(),
		Logger:          slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
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
	s := startSignet(t, signetOptions{})

	t.Run("attested", func(t *testing.T) {
		sock := startSignetAgent(t, s, s.token(t))
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
	})

	t.Run("not attested", func(t *testing.T) {
		sock := startSignetAgent(t, s, "not-a-token-the-server-issued")
		code, out := spireHealthcheck(t, bins.agent, "-socketPath", sock)
		if code != 1 || !strings.Contains(out, `Agent is unhealthy: agent returned status "NOT_SERVING"`) {
			t.Errorf("spire-agent healthcheck: exit %d %q", code, out)
		}
		code, out = signetHealthcheck("--socket-path", sock)
		if code != 1 || !strings.Contains(out, "agent is unhealthy: not attested to a server yet") {
			t.Errorf("signet agent healthcheck: exit %d %q", code, out)
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
