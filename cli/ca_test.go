package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/server/api/localauthority"
	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
)

// drainingCounter stands in for the server's SVID tracker: each count of
// an authority returns what is left and then one SVID fewer, as if an
// agent renewed one between polls.
type drainingCounter struct {
	mu    sync.Mutex
	left  map[string]int
	stuck bool // never drains
}

func (d *drainingCounter) set(id string, n int, stuck bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.left[id], d.stuck = n, stuck
}

func (d *drainingCounter) CountSVIDsByAuthority(_ context.Context, id string, _ time.Time) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := d.left[id]
	if n > 0 && !d.stuck {
		d.left[id] = n - 1
	}
	return n, nil
}

type caServer struct {
	sock    string
	m       *ca.Manager
	counter *drainingCounter
}

// startCAServer serves the LocalAuthority and signet.ca.v1 services over a
// real CA manager on a Unix socket, as the server's admin socket does.
func startCAServer(t *testing.T, withCounter bool) *caServer {
	t.Helper()
	m, err := ca.New(ca.Config{TrustDomain: spiffeid.RequireTrustDomainFromString("example.org"), Path: filepath.Join(t.TempDir(), "ca.json")})
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "sg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &caServer{sock: filepath.Join(dir, "api.sock"), m: m, counter: &drainingCounter{left: map[string]int{}}}
	cfg := localauthority.Config{CA: m}
	if withCounter {
		cfg.Counter = s.counter
	}
	g := grpc.NewServer()
	localauthority.New(cfg).Register(g)
	lis, err := net.Listen("unix", s.sock)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return s
}

// runCA runs `signet ca ...` as Main would, against the socket, and
// checks the exit code.
func runCA(t *testing.T, sock string, wantCode int, args ...string) (string, string) {
	t.Helper()
	root := &cobra.Command{Use: "signet", SilenceUsage: true, SilenceErrors: true}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(caCommand())
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	args = append([]string{"ca"}, args...)
	if sock != "" {
		args = append(args, "--socket-path", sock)
	}
	root.SetArgs(args)
	code := 0
	if err := root.ExecuteContext(context.Background()); err != nil {
		fmt.Fprintf(&errOut, "signet: %v\n", err)
		code = 1
		var ue usageError
		if errors.As(err, &ue) {
			code = 2
		}
	}
	if code != wantCode {
		t.Fatalf("signet %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, wantCode, out.String(), errOut.String())
	}
	return out.String(), errOut.String()
}

func (s *caServer) active(t *testing.T, list func(*ca.Manager) []ca.AuthorityInfo) string {
	t.Helper()
	for _, a := range list(s.m) {
		if a.Status == ca.StatusActive {
			return a.ID
		}
	}
	t.Fatal("no active authority")
	return ""
}

// authorityIDFrom returns the "Authority ID:" value of spire-server style
// output.
func authorityIDFrom(t *testing.T, out string) string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Authority ID: "); ok {
			return v
		}
	}
	t.Fatalf("no authority ID in %q", out)
	return ""
}

func TestCAForcedRotation(t *testing.T) {
	s := startCAServer(t, true)
	old := s.active(t, (*ca.Manager).X509Authorities)

	out, _ := runCA(t, s.sock, 0, "show")
	mustContain(t, "show", out, "X.509 authorities:", "JWT authorities:", "active", old, "Bundle sequence number:")

	out, _ = runCA(t, s.sock, 0, "prepare", "--x509")
	mustContain(t, "prepare", out, "Prepared X.509 authority:", "Expires at:", "Upstream authority ID: No upstream authority")
	next := authorityIDFrom(t, out)

	out, _ = runCA(t, s.sock, 0, "activate", "--x509", "--authorityID", next) // spire-server's flag name
	mustContain(t, "activate", out, "Activated X.509 authority:", next)

	// Revoking before the taint: the server refuses (SPIRE's answer).
	_, errOut := runCA(t, s.sock, 1, "revoke", "--x509", "--authority-id", old)
	mustContain(t, "revoke untainted", errOut, "Internal", "it is not possible to revoke an untainted root CA")

	s.counter.set(old, 3, false)
	out, errOut = runCA(t, s.sock, 0, "taint", "--x509", "--authority-id", old, "--wait", "--interval", "1ms")
	mustContain(t, "taint --wait", out, "Tainted X.509 authority:", old, "Waiting for agents", "All 3 SVIDs signed by "+old+" replaced in ")
	mustContain(t, "taint --wait progress", errOut, "left of 3")

	out, _ = runCA(t, s.sock, 0, "show", "--output", "json")
	var shown struct {
		X509 []struct {
			AuthorityID string `json:"authority_id"`
			Status      string `json:"status"`
			Tainted     bool   `json:"tainted"`
		} `json:"x509_authorities"`
	}
	if err := json.Unmarshal([]byte(out), &shown); err != nil {
		t.Fatalf("show --output json: %v: %s", err, out)
	}
	if len(shown.X509) != 2 || shown.X509[0].AuthorityID != next || shown.X509[1].AuthorityID != old || !shown.X509[1].Tainted || shown.X509[1].Status != "STATUS_OLD" {
		t.Fatalf("show --output json: %s", out)
	}
	out, _ = runCA(t, s.sock, 0, "show")
	mustContain(t, "show after taint", out, "yes")

	// SVIDs still in use: revoke refuses unless forced.
	s.counter.set(old, 2, true)
	_, errOut = runCA(t, s.sock, 1, "revoke", "--x509", "--authority-id", old)
	mustContain(t, "revoke in use", errOut, "refusing to revoke", "2 SVIDs", "--force")
	out, _ = runCA(t, s.sock, 0, "revoke", "--x509", "--authority-id", old, "--force", "--output", "json")
	var revoked map[string]map[string]any
	if err := json.Unmarshal([]byte(out), &revoked); err != nil || revoked["revoked_authority"]["authority_id"] != old {
		t.Fatalf("revoke --output json: %v: %s", err, out)
	}
	for _, c := range s.m.Bundle().X509Authorities() {
		if ca.X509AuthorityID(c) == old {
			t.Fatal("revoked authority still in the bundle")
		}
	}
}

func TestCATaintWaitTimesOut(t *testing.T) {
	s := startCAServer(t, true)
	old := s.active(t, (*ca.Manager).X509Authorities)
	p, err := s.m.PrepareX509()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.m.ActivateX509(p.ID); err != nil {
		t.Fatal(err)
	}
	s.counter.set(old, 4, true)
	_, errOut := runCA(t, s.sock, 1, "taint", "--x509", "--authority-id", old, "--wait", "--interval", "1ms", "--timeout", "50ms")
	mustContain(t, "timeout", errOut, "4 of 4 SVIDs signed by "+old+" not replaced", "timed out (--timeout 50ms)")

	// Already tainted: --wait still waits, from now.
	s.counter.set(old, 1, false)
	out, _ := runCA(t, s.sock, 0, "taint", "--x509", "--authority-id", old, "--wait", "--interval", "1ms", "--output", "json")
	var res map[string]any
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("json: %v: %s", err, out)
	}
	if res["authority_id"] != old || res["replaced_svids"] != float64(1) || res["elapsed"] == "" {
		t.Fatalf("taint --wait --output json: %s", out)
	}
}

func TestCAJWTLifecycle(t *testing.T) {
	s := startCAServer(t, false)
	old := s.active(t, (*ca.Manager).JWTAuthorities)
	out, _ := runCA(t, s.sock, 0, "prepare", "--jwt")
	mustContain(t, "prepare", out, "Prepared JWT authority:")
	if strings.Contains(out, "Upstream") {
		t.Fatalf("JWT output mentions an upstream authority: %s", out)
	}
	next := authorityIDFrom(t, out)
	runCA(t, s.sock, 0, "activate", "--jwt", "--authority-id", next)
	out, _ = runCA(t, s.sock, 0, "taint", "--jwt", "--authority-id", old, "--output", "json")
	mustContain(t, "taint json", out, `"tainted_authority"`, old)
	_, errOut := runCA(t, s.sock, 1, "taint", "--jwt", "--authority-id", old)
	mustContain(t, "taint again", errOut, "key is already tainted")
	out, _ = runCA(t, s.sock, 0, "revoke", "--jwt", "--authority-id", old)
	mustContain(t, "revoke", out, "Revoked JWT authority:", old)
	if _, ok := s.m.Bundle().FindJWTAuthority(old); ok {
		t.Fatal("revoked key still in the bundle")
	}

	// Without SVID tracking --wait says so before tainting anything.
	p, err := s.m.PrepareX509()
	if err != nil {
		t.Fatal(err)
	}
	oldX := s.active(t, (*ca.Manager).X509Authorities)
	if _, err := s.m.ActivateX509(p.ID); err != nil {
		t.Fatal(err)
	}
	_, errOut = runCA(t, s.sock, 1, "taint", "--x509", "--authority-id", oldX, "--wait")
	mustContain(t, "wait without tracking", errOut, "does not")
	for _, a := range s.m.X509Authorities() {
		if a.ID == oldX && a.Tainted {
			t.Fatal("authority tainted although --wait could not work")
		}
	}
	// Revoke without tracking skips the in-use check (as against SPIRE).
	runCA(t, s.sock, 0, "taint", "--x509", "--authority-id", oldX)
	runCA(t, s.sock, 0, "revoke", "--x509", "--authority-id", oldX)
}

func TestCAUsageErrors(t *testing.T) {
	s := startCAServer(t, true)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"prepare"}, "exactly one of --x509 or --jwt"},
		{[]string{"prepare", "--x509", "--jwt"}, "exactly one of --x509 or --jwt"},
		{[]string{"activate", "--x509"}, "--authority-id is required"},
		{[]string{"taint", "--jwt", "--authority-id", "k", "--wait"}, "--wait applies to --x509 only"},
		{[]string{"taint", "--x509", "--authority-id", "k", "--wait", "--timeout", "0s"}, "must be positive"},
		{[]string{"show", "extra"}, "takes no arguments"},
	}
	for _, c := range cases {
		_, errOut := runCA(t, s.sock, 2, c.args...)
		mustContain(t, strings.Join(c.args, " "), errOut, c.want)
	}
	_, errOut := runCA(t, "", 2, "rotate")
	mustContain(t, "rotate", errOut, `unknown command "rotate"`)
	_, errOut = runCA(t, s.sock, 1, "activate", "--x509", "--authority-id", "00ff")
	mustContain(t, "activate unknown", errOut, "InvalidArgument: unexpected authority ID")
}

// TestCACommandsAgainstServer runs the forced-rotation workflow through
// `signet` (the root command) against a real server's admin socket.
func TestCACommandsAgainstServer(t *testing.T) {
	sock, srv := startServer(t, "example.org")
	old := ""
	for _, a := range srv.CA().X509Authorities() {
		if a.Status == ca.StatusActive {
			old = a.ID
		}
	}
	out, _ := cli(t, sock, 0, "ca", "show")
	mustContain(t, "show", out, "X.509 authorities:", old, "Bundle sequence number:")
	out, _ = cli(t, sock, 0, "ca", "prepare", "--x509")
	next := authorityIDFrom(t, out)
	cli(t, sock, 0, "ca", "activate", "--x509", "--authority-id", next)
	out, _ = cli(t, sock, 0, "ca", "taint", "--x509", "--authority-id", old, "--wait", "--interval", "10ms")
	mustContain(t, "taint --wait", out, "All 0 SVIDs signed by "+old+" replaced in ")
	cli(t, sock, 0, "ca", "revoke", "--x509", "--authority-id", old)
	out, _ = cli(t, sock, 0, "ca", "show", "--output", "json")
	if strings.Contains(out, old) || !strings.Contains(out, next) {
		t.Fatalf("show after revoke: %s", out)
	}
}
