package cli

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/internal/nobodytest"
	"github.com/signet-id/signet/privdir"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TestDefaultLayoutServesOtherUIDs: with the default layout (root's
// DefaultLayout, rooted in a test directory), uid 65534 fetches its
// X.509-SVID over the agent's Workload API socket when an entry selects
// unix:uid:65534, and cannot list the agent's data directory nor read its
// agent SVID.
func TestDefaultLayoutServesOtherUIDs(t *testing.T) {
	nobodytest.RequireRoot(t)
	sock, srv := startServer(t, "example.org")
	out, _ := cli(t, sock, 0, "token", "generate", "-o", "json")
	var tok struct{ Value string }
	if err := json.Unmarshal([]byte(out), &tok); err != nil || tok.Value == "" {
		t.Fatalf("token generate -o json: %q: %v", out, err)
	}
	root := publicDir(t)
	layout := privdir.DefaultLayout(0, func(string) string { return "" })
	dataDir := filepath.Join(root, layout.AgentDataDir)
	wsock := filepath.Join(root, layout.WorkloadSocket)
	ag, err := agent.New(agent.Config{
		TrustDomain:     spiffeid.RequireTrustDomainFromString("example.org"),
		ServerAddresses: []string{srv.AgentAddr().String()},
		JoinToken:       tok.Value,
		DataDir:         dataDir,
		SocketPath:      wsock,
		TrustBundle:     srv.CA().Bundle().X509Authorities(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ag.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	agentID := "spiffe://example.org/spire/agent/join_token/" + tok.Value
	cli(t, sock, 0, "entry", "create", "--parent-id", agentID, "--spiffe-id", "spiffe://example.org/nobody", "--selector", "unix:uid:65534")

	bin := helperBinary(t)
	var code int
	var got string
	// The entry reaches the agent by push; a bounded number of tries.
	for range 50 {
		code, got = runBounded(t, nobodytest.As(helper(bin, "signet", "fetch", "x509", "--socket-path", wsock)))
		if code == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code != 0 {
		t.Fatalf("uid 65534: fetch x509 over %s: exit %d\n%s", wsock, code, got)
	}
	mustContain(t, "fetch output", got, "spiffe://example.org/nobody")

	for _, tc := range []struct{ mode, path string }{
		{"list", dataDir},
		{"read", filepath.Join(dataDir, "agent-svid.json")},
	} {
		code, got := runBounded(t, nobodytest.As(helper(bin, tc.mode, tc.path)))
		if code != 3 || !strings.Contains(got, "permission denied") {
			t.Errorf("uid 65534: %s %s: exit %d, want permission denied\n%s", tc.mode, tc.path, code, got)
		}
	}
	fi, err := os.Stat(dataDir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("agent data dir mode %v, %v; want 0700", fi.Mode().Perm(), err)
	}
}

// TestSocketBehindPrivateDirHint: a Workload API socket in a 0700
// directory refuses uid 65534, and `signet fetch` says which directory
// stops it and what to change (not "run as the user that owns the socket").
func TestSocketBehindPrivateDirHint(t *testing.T) {
	nobodytest.RequireRoot(t)
	priv := filepath.Join(publicDir(t), "agent")
	if err := os.Mkdir(priv, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(priv, "api.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	code, got := runBounded(t, nobodytest.As(helper(helperBinary(t), "signet", "fetch", "x509", "--socket-path", path)))
	if code == 0 {
		t.Fatalf("uid 65534 reached a socket in a 0700 directory:\n%s", got)
	}
	mustContain(t, "fetch output", got, "directory "+priv+" (mode 0700) is not searchable by uid 65534", "--socket-path", "chmod o+x "+priv)
	if strings.Contains(got, "run as the user that owns the socket") {
		t.Errorf("misleading hint:\n%s", got)
	}
}

// TestFetchFromUnattestedAgent: `signet fetch x509` against a real agent
// that cannot reach its server says the agent is not attested yet and why,
// not that no registration entry matches.
func TestFetchFromUnattestedAgent(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	dir := publicDir(t)
	wsock := filepath.Join(dir, "public", "api.sock")
	ag, err := agent.New(agent.Config{
		TrustDomain:       spiffeid.RequireTrustDomainFromString("example.org"),
		ServerAddresses:   []string{dead},
		JoinToken:         "unused-token-0123456789",
		InsecureBootstrap: true,
		DataDir:           filepath.Join(dir, "data"),
		SocketPath:        wsock,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ag.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-ag.Ready()
	code, _, errOut := run(t, "fetch", "x509", "--socket-path", wsock)
	if code != 1 {
		t.Fatalf("exit %d, want 1; stderr %q", code, errOut)
	}
	mustContain(t, "stderr", errOut, "Unavailable: agent is not attested yet: ", "see its log")
	if strings.Contains(errOut, "registration entry") || strings.Contains(errOut, "cannot reach") {
		t.Errorf("misleading hint: %q", errOut)
	}
}
