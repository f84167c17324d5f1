package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/agent/workloadapi"
	"github.com/signet-id/signet/internal/nobodytest"
	"github.com/signet-id/signet/privdir"
	"github.com/signet-id/signet/server"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Attack tests for review findings 3, 11 and 13 (issue 10, item 3): each
// performs the attack, as uid 65534 where it is local, and shows it fail.

const (
	helperEnv  = "SIGNET_FILES_HELPER"
	helperArgs = "SIGNET_FILES_HELPER_ARGS"
	// exitBound is a generous bound on how long a refused start may take
	// (not a timing assertion: only that it exits at all).
	exitBound = 90 * time.Second
)

// TestHelperFilesProcess is the child side of the attack tests: it runs
// the signet command line (with SIGINT/SIGTERM cancelling it, as
// cmd/signet does) or one attacker action, then exits.
func TestHelperFilesProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("helper process for the attack tests")
	}
	args := strings.Split(os.Getenv(helperArgs), "\n")
	switch mode {
	case "signet":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := Main(ctx, args, os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	case "dial":
		c, err := net.Dial("unix", args[0])
		report(err)
		c.Close()
	case "create":
		report(os.WriteFile(args[0], []byte("planted"), 0o666))
	case "read":
		_, err := os.ReadFile(args[0])
		report(err)
	case "list":
		_, err := os.ReadDir(args[0])
		report(err)
	case "rename":
		report(os.Rename(args[0], args[1]))
	}
	os.Exit(0)
}

func report(err error) {
	if err != nil {
		fmt.Println("FAILED:", err)
		os.Exit(3)
	}
	fmt.Println("OK")
}

// helperBinary copies the test binary where uid 65534 can execute it (the
// go build cache directory is root-only).
func helperBinary(t *testing.T) string {
	t.Helper()
	return nobodytest.TestBinary(t, publicDir(t), "cli.test")
}

// helper returns a command running TestHelperFilesProcess in mode.
func helper(bin, mode string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, "-test.run=^TestHelperFilesProcess$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, helperArgs+"="+strings.Join(args, "\n"))
	return cmd
}

// publicDir returns a short 0755 directory (socket paths are limited to
// 108 bytes), so that uid 65534 reaches what the test puts in it.
func publicDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "sgf")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// stickyDir stands in for /tmp: world-writable with the sticky bit.
func stickyDir(t *testing.T) string {
	t.Helper()
	d := publicDir(t)
	if err := os.Chmod(d, fs.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	return d
}

func serverArgs(dataDir, sock string) []string {
	a := []string{"server", "run", "--trust-domain", "example.org", "--data-dir", dataDir, "--bind-address", "127.0.0.1:0"}
	if sock != "" {
		a = append(a, "--socket-path", sock)
	}
	return a
}

// runFor runs the command line in-process like run, but cancels it after
// exitBound (a start the attack should have stopped would run forever).
func runFor(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), exitBound)
	defer cancel()
	var out, errOut bytes.Buffer
	code := Main(ctx, args, &out, &errOut)
	if ctx.Err() != nil {
		t.Errorf("still running after %v", exitBound)
	}
	return code, out.String(), errOut.String()
}

// runBounded runs cmd and waits at most exitBound for it to exit.
func runBounded(t *testing.T, cmd *exec.Cmd) (int, string) {
	t.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), out.String()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, out.String()
	case <-time.After(exitBound):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("process still running after %v:\n%s", exitBound, out.String())
		return 0, ""
	}
}

// (a) uid 65534 pre-creates the data directory (0777, as in /tmp) and
// plants ca/ca.json: the root server refuses to start and names the path.
func TestAttackSquattedDataDir(t *testing.T) {
	nobodytest.RequireRoot(t)
	d := filepath.Join(stickyDir(t), "signet-server")
	nobodytest.Shell(t, "umask 000; mkdir -m 0777 "+d+" "+d+"/ca && echo '{\"version\":1}' > "+d+"/ca/ca.json")
	code, _, errOut := runFor(t, serverArgs(d, "")...)
	if code != 1 {
		t.Fatalf("server started in an attacker's directory: exit %d\n%s", code, errOut)
	}
	mustContain(t, "stderr", errOut, "refusing "+d+":", "owned by uid 65534", "remove it")
	if _, err := os.Stat(filepath.Join(d, "etcd")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("server wrote into the attacker's directory: %v", err)
	}
}

// (a') the data directory is root's but ca/ca.json is not private: owned
// by uid 65534, or readable by others. The CA is not loaded.
func TestAttackPlantedCAState(t *testing.T) {
	nobodytest.RequireRoot(t)
	for _, tt := range []struct {
		name string
		prep func(t *testing.T, path string)
		want string
	}{
		{"owned by uid 65534", func(t *testing.T, p string) {
			if err := os.Chown(p, nobodytest.UID, nobodytest.UID); err != nil {
				t.Fatal(err)
			}
		}, "owned by uid 65534"},
		{"mode 0644", func(t *testing.T, p string) {
			if err := os.Chmod(p, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "mode 0644 is looser than 0600"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := t.TempDir()
			caFile := filepath.Join(d, "ca", "ca.json")
			if err := os.MkdirAll(filepath.Dir(caFile), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(caFile, []byte(`{"version":1}`), 0o600); err != nil {
				t.Fatal(err)
			}
			tt.prep(t, caFile)
			sock := filepath.Join(publicDir(t), "a.sock")
			code, _, errOut := runFor(t, serverArgs(d, sock)...)
			if code != 1 {
				t.Fatalf("exit %d\n%s", code, errOut)
			}
			mustContain(t, "stderr", errOut, "refusing "+caFile+":", tt.want)
		})
	}
}

// (b) symlinks to a root-only file planted at the bundle file's names
// (including the fixed bundle.spiffe.json.tmp the old code wrote through):
// by uid 65534 in its own directory the server refuses to start; left in
// root's directory they are replaced, never followed. The victim is
// untouched either way.
func TestAttackSymlinkedTempFile(t *testing.T) {
	nobodytest.RequireRoot(t)
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("ORIGINAL-ROOT-ONLY"), 0o600); err != nil {
		t.Fatal(err)
	}
	check := func() {
		t.Helper()
		if b, _ := os.ReadFile(victim); string(b) != "ORIGINAL-ROOT-ONLY" {
			t.Fatalf("victim overwritten: %.60q", b)
		}
	}

	d := filepath.Join(stickyDir(t), "signet-server")
	nobodytest.Shell(t, "umask 000; mkdir -m 0777 "+d+" && ln -s "+victim+" "+d+"/bundle.spiffe.json.tmp && ln -s "+victim+" "+d+"/bundle.spiffe.json")
	code, _, errOut := runFor(t, serverArgs(d, "")...)
	if code != 1 || !strings.Contains(errOut, "refusing "+d) {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	check()

	d = t.TempDir()
	for _, n := range []string{server.BundleFile, server.BundleFile + ".tmp"} {
		if err := os.Symlink(victim, filepath.Join(d, n)); err != nil {
			t.Fatal(err)
		}
	}
	startServerIn(t, d)
	check()
	fi, err := os.Lstat(filepath.Join(d, server.BundleFile))
	if err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("bundle file: %v %v, want a regular file", fi, err)
	}
}

// (c) a second server on the same data directory exits at once with a
// message naming the first one's pid (it used to wait on etcd forever).
func TestAttackSecondServerSameDataDir(t *testing.T) {
	nobodytest.RequireRoot(t)
	d := t.TempDir()
	startServerIn(t, d)
	sock2 := filepath.Join(publicDir(t), "b.sock")
	code, out := runBounded(t, helper(os.Args[0], "signet", serverArgs(d, sock2)...))
	if code == 0 {
		t.Fatalf("second server exited 0:\n%s", out)
	}
	mustContain(t, "output", out, "data directory "+d+" is in use by another signet process (pid "+strconv.Itoa(os.Getpid())+")", "--data-dir")
}

// (c') the same for the agent.
func TestAttackSecondAgentSameDataDir(t *testing.T) {
	nobodytest.RequireRoot(t)
	d := t.TempDir()
	ag, err := agent.New(agent.Config{
		TrustDomain:       spiffeid.RequireTrustDomainFromString("example.org"),
		ServerAddresses:   []string{"127.0.0.1:1"},
		JoinToken:         "unused-token-0123456789",
		InsecureBootstrap: true,
		DataDir:           d,
		SocketPath:        filepath.Join(publicDir(t), "w.sock"),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ag.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-ag.Ready():
	case err := <-done:
		t.Fatalf("agent: %v", err)
	}
	args := []string{"agent", "run", "--trust-domain", "example.org", "--data-dir", d, "--insecure-bootstrap",
		"--join-token", "unused-token-0123456789", "--server-address", "127.0.0.1:1", "--socket-path", filepath.Join(publicDir(t), "w2.sock")}
	code, out := runBounded(t, helper(os.Args[0], "signet", args...))
	if code == 0 {
		t.Fatalf("second agent exited 0:\n%s", out)
	}
	mustContain(t, "output", out, "data directory "+d+" is in use by another signet process (pid "+strconv.Itoa(os.Getpid())+")")
}

// (d) a second server pointed at a live server's admin socket does not
// unlink it: it refuses, naming the socket, and the first keeps serving.
func TestAttackAdminSocketTakeover(t *testing.T) {
	nobodytest.RequireRoot(t)
	sock, _ := startServer(t, "example.org")
	code, _, errOut := runFor(t, serverArgs(t.TempDir(), sock)...)
	if code != 1 {
		t.Fatalf("second server on a live admin socket: exit %d\n%s", code, errOut)
	}
	mustContain(t, "stderr", errOut, sock+" answers connections", "choose another socket path")
	out, _ := cli(t, sock, 0, "healthcheck")
	mustContain(t, "healthcheck", out, "Server is healthy.")
}

// The admin socket default follows --data-dir, for the server and for the
// admin commands.
func TestAdminSocketDefaultFollowsDataDir(t *testing.T) {
	d := t.TempDir()
	f := serverFlags{trustDomain: "example.org", dataDir: d}
	cfg, _, err := f.build(nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(d, "private", "api.sock"); cfg.AdminSocket != want {
		t.Fatalf("admin socket %s, want %s", cfg.AdminSocket, want)
	}
	a := adminFlags{dataDir: d}
	if a.socket() != cfg.AdminSocket {
		t.Fatalf("admin commands use %s, server %s", a.socket(), cfg.AdminSocket)
	}
	code, _, errOut := run(t, "healthcheck", "--data-dir", d)
	if code != 1 || !strings.Contains(errOut, filepath.Join(d, "private", "api.sock")) {
		t.Fatalf("healthcheck --data-dir: exit %d %s", code, errOut)
	}
}

// (e) SIGTERM while start-up is blocked (embedded etcd waiting for the
// bolt file lock, as a second server on the same etcd did) stops the
// process.
func TestSIGTERMDuringStartup(t *testing.T) {
	nobodytest.RequireRoot(t)
	d := t.TempDir()
	snap := filepath.Join(d, "etcd", "member", "snap")
	if err := os.MkdirAll(snap, 0o700); err != nil {
		t.Fatal(err)
	}
	db, err := os.OpenFile(filepath.Join(snap, "db"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := syscall.Flock(int(db.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	cmd := helper(os.Args[0], "signet", serverArgs(d, filepath.Join(publicDir(t), "e.sock"))...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// Wait (bounded) until the child has opened the bolt file: it is then
	// inside etcd's start-up, blocked on the lock we hold.
	opened := false
	for i := 0; i < 1200 && !opened; i++ {
		opened = hasOpen(cmd.Process.Pid, db.Name())
		if !opened {
			select {
			case err := <-done:
				t.Fatalf("server exited before reaching etcd: %v\n%s", err, out.String())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	if !opened {
		_ = cmd.Process.Kill()
		t.Fatalf("server never opened %s:\n%s", db.Name(), out.String())
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(exitBound):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("SIGTERM during start-up ignored for %v:\n%s", exitBound, out.String())
	}
	mustContain(t, "output", out.String(), "start-up interrupted")
	if strings.Contains(out.String(), "server ready") {
		t.Fatalf("server finished start-up; the test did not catch it blocked:\n%s", out.String())
	}
}

// hasOpen reports whether process pid has path open.
func hasOpen(pid int, path string) bool {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && l == path {
			return true
		}
	}
	return false
}

// (f) the agent's default Workload API socket (root's layout) is outside
// the 0700 data directory, in a 0755 directory: uid 65534 connects, but
// cannot create files in it or rename the socket away.
func TestWorkloadSocketDefaultReachableNotWritable(t *testing.T) {
	nobodytest.RequireRoot(t)
	l := privdir.DefaultLayout(0, func(string) string { return "" })
	if strings.HasPrefix(l.WorkloadSocket, l.AgentDataDir+"/") {
		t.Fatalf("default socket %s is inside the agent data dir %s", l.WorkloadSocket, l.AgentDataDir)
	}
	root := publicDir(t)
	// The agent data dir is created 0700 beside it, as the agent does.
	if err := privdir.EnsureDir(filepath.Join(root, l.AgentDataDir), 0o700); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(root, l.WorkloadSocket)
	lis, err := workloadapi.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	fi, err := os.Stat(filepath.Dir(sock))
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("public dir: %v %v, want 0755", fi, err)
	}
	bin := helperBinary(t)
	nobody := func(mode string, args ...string) (int, string) {
		cmd := helper(bin, mode, args...)
		cmd.Dir = "/"
		return runBounded(t, nobodytest.As(cmd))
	}
	if code, out := nobody("dial", sock); code != 0 {
		t.Fatalf("uid 65534 cannot connect to %s: %s", sock, out)
	}
	if code, out := nobody("create", filepath.Join(filepath.Dir(sock), "evil.sock")); code != 3 || !strings.Contains(out, "permission denied") {
		t.Fatalf("uid 65534 created a file in the socket dir: exit %d %s", code, out)
	}
	if code, out := nobody("rename", sock, filepath.Join(filepath.Dir(sock), "stolen.sock")); code != 3 || !strings.Contains(out, "permission denied") {
		t.Fatalf("uid 65534 renamed the socket: exit %d %s", code, out)
	}
	if code, out := nobody("dial", filepath.Join(root, l.AgentDataDir, "x.sock")); code != 3 || !strings.Contains(out, "permission denied") {
		t.Fatalf("uid 65534 reached into the 0700 agent data dir: exit %d %s", code, out)
	}
}

// startServerIn runs a real server in-process on dataDir (admin socket in
// a separate short directory) until the test ends.
func startServerIn(t *testing.T, dataDir string) *server.Server {
	t.Helper()
	srv, err := server.New(server.Config{
		TrustDomain: spiffeid.RequireTrustDomainFromString("example.org"),
		DataDir:     dataDir,
		BindAddress: "127.0.0.1:0",
		AdminSocket: filepath.Join(publicDir(t), "api.sock"),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	select {
	case <-srv.Ready():
	case err := <-done:
		t.Fatalf("server did not start: %v", err)
	}
	return srv
}
