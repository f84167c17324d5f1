package cli

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/signet-id/signet/config"
)

// TestJoinTokenNotInCmdline starts real `signet agent run` processes with
// the join token in a file, in $SIGNET_JOIN_TOKEN and in an agent HCL
// join_token_file, and checks that each attests while its
// /proc/<pid>/cmdline (what ps shows every local user) holds no token
// (review finding 19). --join-token still works, with the token visible
// there and a warning logged, which also shows the check can see it.
func TestJoinTokenNotInCmdline(t *testing.T) {
	sock, srv := startServer(t, "example.org")
	dir, err := os.MkdirTemp("", "sgjt") // short: Unix socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bundle, _ := cli(t, sock, 0, "bundle", "show")
	bundlePath := filepath.Join(dir, "bundle.pem")
	if err := os.WriteFile(bundlePath, []byte(bundle), 0o644); err != nil {
		t.Fatal(err)
	}
	modes := []struct {
		name    string
		visible bool // the token is expected in cmdline
		setup   func(tok, d string) (args, env []string)
	}{
		{"file", false, func(tok, d string) ([]string, []string) {
			p := filepath.Join(d, "token")
			writeFile(t, p, tok+"\n")
			return []string{"--join-token-file", p}, nil
		}},
		{"env", false, func(tok, d string) ([]string, []string) {
			return nil, []string{JoinTokenEnv + "=" + tok}
		}},
		{"hcl join_token_file", false, func(tok, d string) ([]string, []string) {
			p, c := filepath.Join(d, "token"), filepath.Join(d, "agent.hcl")
			writeFile(t, p, tok)
			writeFile(t, c, "agent {\n  join_token_file = \""+p+"\"\n}\n")
			return []string{"--config", c}, nil
		}},
		{"flag", true, func(tok, d string) ([]string, []string) {
			return []string{"--join-token", tok}, nil
		}},
	}
	for i, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			out, _ := cli(t, sock, 0, "token", "generate")
			f := strings.Fields(out)
			if len(f) == 0 {
				t.Fatalf("token generate printed %q", out)
			}
			tok := f[len(f)-1]
			d := filepath.Join(dir, strconv.Itoa(i))
			if err := os.Mkdir(d, 0o700); err != nil {
				t.Fatal(err)
			}
			extra, env := m.setup(tok, d)
			args := append([]string{"-test.run=^TestHelperAgentMain$", "--", "agent", "run",
				"--trust-domain", "example.org", "--server-address", srv.AgentAddr().String(),
				"--trust-bundle", bundlePath, "--data-dir", filepath.Join(d, "data"),
				"--socket-path", filepath.Join(d, "wl.sock")}, extra...)
			cmd := exec.Command(os.Args[0], args...)
			cmd.Env = append(append(os.Environ(), "SIGNET_TEST_AGENT_MAIN=1"), env...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			defer func() {
				_ = cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-exited:
				case <-time.After(10 * time.Second):
					_ = cmd.Process.Kill()
					<-exited
				}
			}()

			// Wait (bounded) until the server lists the agent.
			agentID := "spiffe://example.org/spire/agent/join_token/" + tok
			deadline := time.Now().Add(30 * time.Second)
			for {
				out, _ := cli(t, sock, 0, "agent", "list")
				if strings.Contains(out, agentID) {
					break
				}
				select {
				case err := <-exited:
					t.Fatalf("agent exited before attesting: %v\nstderr: %s", err, stderr.String())
				case <-time.After(100 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					t.Fatalf("agent did not attest within 30s\nstderr: %s", stderr.String())
				}
			}
			cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/cmdline")
			if err != nil {
				t.Fatal(err)
			}
			if got := bytes.Contains(cmdline, []byte(tok)); got != m.visible {
				t.Fatalf("token in /proc/%d/cmdline: %v, want %v (cmdline %q)", cmd.Process.Pid, got, m.visible, cmdline)
			}
			if warned := strings.Contains(stderr.String(), "visible to every local user"); warned != m.visible {
				t.Fatalf("warning logged: %v, want %v\nstderr: %s", warned, m.visible, stderr.String())
			}
		})
	}
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestHelperAgentMain is the `signet` process of TestJoinTokenNotInCmdline:
// it runs Main on the arguments after "--".
func TestHelperAgentMain(t *testing.T) {
	if os.Getenv("SIGNET_TEST_AGENT_MAIN") != "1" {
		t.Skip("helper process")
	}
	var args []string
	for i, a := range os.Args {
		if a == "--" {
			args = os.Args[i+1:]
			break
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	os.Exit(Main(ctx, args, os.Stdout, os.Stderr))
}

func TestJoinTokenFlags(t *testing.T) {
	dir := t.TempDir()
	empty, big := filepath.Join(dir, "empty"), filepath.Join(dir, "big")
	writeFile(t, empty, " \n")
	writeFile(t, big, strings.Repeat("x", maxJoinTokenFile+1))
	for _, tt := range []struct {
		name string
		f    agentFlags
		want string
	}{
		{"both flags", agentFlags{joinToken: "a", joinTokenFile: empty}, "exclusive"},
		{"empty file", agentFlags{joinTokenFile: empty}, "is empty"},
		{"big file", agentFlags{joinTokenFile: big}, "larger than 4096 bytes"},
		{"missing file", agentFlags{joinTokenFile: filepath.Join(dir, "none")}, "no such file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.f.resolveJoinToken(config.Agent{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
}

// TestAgentRunReattestFlag: `agent run --reattest` exists and reaches the
// agent's configuration.
func TestAgentRunReattestFlag(t *testing.T) {
	if newAgentRunCommand().Flags().Lookup("reattest") == nil {
		t.Fatal("agent run has no --reattest flag")
	}
	f := agentFlags{trustDomain: "example.org", dataDir: t.TempDir(), reattest: true}
	cfg, _, err := f.build()
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Reattest {
		t.Fatal("--reattest did not set agent.Config.Reattest")
	}
}
