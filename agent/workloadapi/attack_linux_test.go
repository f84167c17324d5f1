//go:build linux

package workloadapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	agentsecrets "github.com/signet-id/signet/agent/secrets"
	"github.com/signet-id/signet/attest/unix"
	"github.com/signet-id/signet/internal/nobodytest"
	secretsv1 "github.com/signet-id/signet/proto/signet/secrets/v1"
)

// The attacker of these tests runs as this unprivileged user.

// attackResult is one Workload API call made by the attacker's child on the
// inherited connection.
type attackResult struct {
	Op    string   `json:"op"`
	Code  string   `json:"code"`
	Msg   string   `json:"msg,omitempty"`
	IDs   []string `json:"ids,omitempty"`
	Keys  int      `json:"keys,omitempty"`
	Value string   `json:"value,omitempty"`
}

// suidCapableDir returns a new directory, traversable by every user, on a
// filesystem not mounted nosuid (so that a setuid bit in it takes effect).
func suidCapableDir(t *testing.T) string {
	t.Helper()
	mounts, err := os.ReadFile("/proc/mounts")
	if err != nil {
		t.Fatal(err)
	}
	nosuid := func(dir string) bool {
		best, opts := "", ""
		for _, line := range strings.Split(string(mounts), "\n") {
			f := strings.Fields(line)
			if len(f) < 4 {
				continue
			}
			mp := f[1]
			if (dir == mp || strings.HasPrefix(dir, strings.TrimSuffix(mp, "/")+"/")) && len(mp) >= len(best) {
				best, opts = mp, f[3]
			}
		}
		return slices.Contains(strings.Split(opts, ","), "nosuid")
	}
	wd, _ := os.Getwd()
	for _, base := range []string{os.TempDir(), "/var/tmp", wd} {
		real, err := filepath.EvalSymlinks(base)
		if err != nil || nosuid(real) {
			continue
		}
		dir, err := os.MkdirTemp(real, "signet-suid-")
		if err != nil {
			continue
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	t.Skip("no filesystem without nosuid for the setuid binary")
	return ""
}

// upstreamSecrets answers every forwarded secret watch with a value naming
// the identity it was released to, and a second version once next is
// closed.
type upstreamSecrets struct {
	secretsv1.UnimplementedSecretsServer
	next chan struct{}
}

func (u upstreamSecrets) Watch(req *secretsv1.WatchSecretRequest, s grpc.ServerStreamingServer[secretsv1.Secret]) error {
	value := &secretsv1.Secret{Name: req.Name, SpiffeId: req.SpiffeId, Value: []byte("value-for-" + req.SpiffeId), ContentType: "text/plain", Version: 1}
	if err := s.Send(value); err != nil {
		return err
	}
	select {
	case <-s.Context().Done():
		return nil
	case <-u.next:
	}
	value.Version, value.Value = 2, []byte("second-value-for-"+req.SpiffeId)
	if err := s.Send(value); err != nil {
		return err
	}
	<-s.Context().Done()
	return nil
}

// secretsService returns the agent's WorkloadSecrets service forwarding to
// a real upstream gRPC server on a Unix socket in dir.
func secretsService(t *testing.T, e *env, dir string, next chan struct{}) func(*grpc.Server) {
	t.Helper()
	sock := filepath.Join(dir, "upstream.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	up := grpc.NewServer()
	secretsv1.RegisterSecretsServer(up, upstreamSecrets{next: next})
	go up.Serve(l)
	t.Cleanup(up.Stop)
	cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return func(g *grpc.Server) {
		svc, err := agentsecrets.New(agentsecrets.Config{
			Attestor: unix.New(), Cache: e.cache,
			Server: func(context.Context) (secretsv1.SecretsClient, error) { return secretsv1.NewSecretsClient(cc), nil },
		})
		if err != nil {
			t.Fatal(err)
		}
		svc.Register(g)
	}
}

// TestSetuidExecAfterConnect is the attack of finding 2 of the 2026-12
// security review: uid 65534 connects to the Workload API, hands the
// connection to a child and executes another program (a setuid-root copy
// of sleep, or a plain one that an entry selects by path); the child then
// asks for SVIDs and secrets on the inherited connection. Every call must
// be refused: the selectors would describe root, or the other program,
// not the process that connected. The control run (no exec) shows the
// same mechanics yield uid 65534's own identity.
func TestSetuidExecAfterConnect(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a setuid-root binary and drop to uid 65534")
	}
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	dir := suidCapableDir(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	attacker := filepath.Join(dir, "attacker")
	nobodytest.CopyFile(t, self, attacker, 0o755)
	suidSleep := filepath.Join(dir, "suid-sleep")
	nobodytest.CopyFile(t, sleep, suidSleep, 0o755|os.ModeSetuid)
	plainSleep := filepath.Join(dir, "plain-sleep")
	nobodytest.CopyFile(t, sleep, plainSleep, 0o755)

	rootEntry := newEntry("root", "/root-workload", "uid:0")
	nobodyEntry := newEntry("nobody", "/nobody-workload", "uid:65534")
	pathEntry := newEntry("path", "/plain-sleep", "uid:65534", "path:"+plainSleep)
	suidEntry := newEntry("suid", "/suid-sleep", "path:"+suidSleep)
	e := startServer(t, nil, func(e *env, g *grpc.Server) { secretsService(t, e, dir, make(chan struct{}))(g) }, rootEntry, nobodyEntry, pathEntry, suidEntry)
	// Let uid 65534 reach the socket: only attestation may stop it.
	if err := os.Chmod(filepath.Dir(filepath.Dir(e.sock)), 0o755); err != nil {
		t.Fatal(err)
	}

	allOps := []string{"x509", "jwt", "x509bundles", "jwtbundles", "validate", "secret"}
	tests := []struct {
		name   string
		target string // program executed after connect; "" for none
		want   map[string]string
		ids    []string // SPIFFE IDs the child may receive
	}{
		{"control: no exec", "", map[string]string{
			"x509": "OK", "jwt": "OK", "x509bundles": "OK", "jwtbundles": "OK", "validate": "InvalidArgument", "secret": "OK",
		}, []string{"spiffe://example.org/nobody-workload"}},
		{"setuid-root exec", suidSleep, nil, nil},
		{"plain exec of a path-selected program", plainSleep, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			results, pid := runAttack(t, attacker, e.sock, tt.target, "", nil)
			if tt.target != "" {
				// The attack really happened: the connecting pid now runs
				// the target (as root for the setuid one).
				if exe, err := os.Readlink("/proc/" + pid + "/exe"); err != nil || exe != tt.target {
					t.Fatalf("attacker pid %s runs %q (%v), want %s", pid, exe, err, tt.target)
				}
				if tt.target == suidSleep {
					st, _ := os.ReadFile("/proc/" + pid + "/status")
					if !strings.Contains(string(st), "\nUid:\t65534\t0\t0\t0\n") {
						t.Fatalf("setuid exec did not take effect:\n%s", st)
					}
				}
			}
			for _, op := range allOps {
				r, ok := results[op]
				if !ok {
					t.Errorf("%s: no result", op)
					continue
				}
				want := "PermissionDenied"
				if tt.want != nil {
					want = tt.want[op]
				}
				if r.Code != want {
					t.Errorf("%s: got %s (%s), want %s", op, r.Code, r.Msg, want)
				}
				for _, id := range r.IDs {
					if !slices.Contains(tt.ids, id) {
						t.Errorf("%s: attacker received %s", op, id)
					}
				}
				if tt.want == nil && (r.Keys > 0 || r.Value != "") {
					t.Errorf("%s: attacker received %d keys, value %q", op, r.Keys, r.Value)
				}
				t.Logf("%s: %s %v %s", op, r.Code, r.IDs, r.Msg)
			}
			if tt.want != nil {
				if r := results["x509"]; r.Keys != 1 || !slices.Equal(r.IDs, tt.ids) {
					t.Errorf("control x509: ids %v keys %d", r.IDs, r.Keys)
				}
				if r := results["secret"]; r.Value != "value-for-spiffe://example.org/nobody-workload" {
					t.Errorf("control secret: %q", r.Value)
				}
			}
		})
	}
}

// TestStreamEndsWhenCallerExecsSetuid: streams attested while uid 65534
// was itself get no further update (a rotated SVID, a new secret version)
// once the connecting process has executed a setuid-root program; they end
// with PermissionDenied.
func TestStreamEndsWhenCallerExecsSetuid(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a setuid-root binary and drop to uid 65534")
	}
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	dir := suidCapableDir(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	attacker := filepath.Join(dir, "attacker")
	nobodytest.CopyFile(t, self, attacker, 0o755)
	suidSleep := filepath.Join(dir, "suid-sleep")
	nobodytest.CopyFile(t, sleep, suidSleep, 0o755|os.ModeSetuid)
	next := make(chan struct{})
	e := startServer(t, nil, func(e *env, g *grpc.Server) { secretsService(t, e, dir, next)(g) },
		newEntry("root", "/root-workload", "uid:0"), newEntry("nobody", "/nobody-workload", "uid:65534"))
	if err := os.Chmod(filepath.Dir(filepath.Dir(e.sock)), 0o755); err != nil {
		t.Fatal(err)
	}
	results, _ := runAttack(t, attacker, e.sock, suidSleep, "stream", func() {
		e.rotate("nobody")
		e.rotate("root")
		e.apply()
		close(next)
	})
	for _, op := range []string{"x509", "secret"} {
		before, after := results[op+"-before-exec"], results[op+"-after-exec"]
		if before.Code != "OK" || !slices.Equal(before.IDs, []string{"spiffe://example.org/nobody-workload"}) {
			t.Errorf("%s before exec: %+v", op, before)
		}
		if after.Code != "PermissionDenied" || len(after.IDs) != 0 || after.Value != "" {
			t.Errorf("%s after setuid exec: %+v, want PermissionDenied and nothing delivered", op, after)
		}
		t.Logf("%s before exec: %s %v; after: %s %s", op, before.Code, before.IDs, after.Code, after.Msg)
	}
}

// runAttack starts the attacker as uid 65534 and returns its child's
// results by operation and the attacker's pid.
func runAttack(t *testing.T, attacker, sock, target string, mode string, onReady func()) (map[string]attackResult, string) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command(attacker, "-test.run=^TestHelperAttacker$")
	cmd.Env = append(os.Environ(), "SIGNET_ATTACK_ROLE=attacker", "SIGNET_ATTACK_SOCK="+sock, "SIGNET_ATTACK_TARGET="+target, "SIGNET_ATTACK_MODE="+mode)
	cmd.Stdout = w
	cmd.Stderr = os.Stderr
	nobodytest.As(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	results := make(map[string]attackResult)
	// A safety net against hangs, not a timing assertion.
	deadline := time.After(60 * time.Second)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("attacker output ended without DONE; results %v", results)
			}
			if line == "DONE" {
				return results, strconv.Itoa(cmd.Process.Pid)
			}
			if line == "READY" && onReady != nil {
				onReady()
				continue
			}
			var res attackResult
			if err := json.Unmarshal([]byte(line), &res); err != nil || res.Op == "" {
				t.Logf("attacker: %s", line)
				continue
			}
			results[res.Op] = res
		case <-deadline:
			t.Fatalf("attacker did not finish; results %v", results)
		}
	}
}

// TestHelperAttacker is the attacker process of TestSetuidExecAfterConnect
// (SIGNET_ATTACK_ROLE=attacker) and its child (=child).
func TestHelperAttacker(t *testing.T) {
	switch os.Getenv("SIGNET_ATTACK_ROLE") {
	case "attacker":
		attackerMain()
	case "child":
		attackChildMain()
	default:
		t.Skip("helper process only")
	}
}

func fail(msg string, err error) {
	os.Stderr.WriteString("attacker: " + msg + ": " + err.Error() + "\n")
	os.Exit(2)
}

// attackerMain connects, waits until the agent has completed its handshake
// (its HTTP/2 settings frame is readable, peeked without consuming it),
// starts the child with the connection as fd 3, and executes the target.
func attackerMain() {
	c, err := net.Dial("unix", os.Getenv("SIGNET_ATTACK_SOCK"))
	if err != nil {
		fail("dial", err)
	}
	f, err := c.(*net.UnixConn).File()
	if err != nil {
		fail("file", err)
	}
	buf := make([]byte, 1)
	if _, _, err := syscall.Recvfrom(int(f.Fd()), buf, syscall.MSG_PEEK); err != nil {
		fail("peek", err)
	}
	target := os.Getenv("SIGNET_ATTACK_TARGET")
	self, _ := os.Executable()
	child := exec.Command(self, "-test.run=^TestHelperAttacker$")
	child.Env = append(os.Environ(), "SIGNET_ATTACK_ROLE=child", "SIGNET_ATTACK_SELF="+self)
	// fd 4: the child closes it once its stream is open ("stream" mode).
	ready, readyW, err := os.Pipe()
	if err != nil {
		fail("pipe", err)
	}
	child.ExtraFiles = []*os.File{f, readyW}
	child.Stdout, child.Stderr = os.Stdout, os.Stderr
	if err := child.Start(); err != nil {
		fail("start child", err)
	}
	readyW.Close()
	if target == "" {
		child.Wait()
		os.Exit(0)
	}
	if os.Getenv("SIGNET_ATTACK_MODE") == "stream" {
		io.Copy(io.Discard, ready)
	}
	err = syscall.Exec(target, []string{target, "120"}, os.Environ())
	fail("exec", err)
}

// attackChildMain waits for its parent to have executed the target, then
// speaks gRPC on the inherited connection and prints one JSON line per call.
func attackChildMain() {
	if os.Getenv("SIGNET_ATTACK_MODE") == "stream" {
		streamChildMain()
		return
	}
	waitParentExec()
	attackCalls(dialInherited())
}

// waitParentExec waits (bounded) until the parent has executed the target.
func waitParentExec() {
	if os.Getenv("SIGNET_ATTACK_TARGET") != "" {
		self := os.Getenv("SIGNET_ATTACK_SELF")
		parent := "/proc/" + strconv.Itoa(os.Getppid()) + "/exe"
		for i := 0; i < 400; i++ {
			// Unreadable (a setuid process) or another program: exec done.
			if exe, err := os.Readlink(parent); err != nil || exe != self {
				break
			}
			time.Sleep(25 * time.Millisecond)
		}
	}
}

// dialInherited returns a gRPC client on the inherited connection (fd 3).
func dialInherited() *grpc.ClientConn {
	fc, err := net.FileConn(os.NewFile(3, "wl"))
	if err != nil {
		fail("fileconn", err)
	}
	cc, err := grpc.NewClient("passthrough:///wl", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) { return fc, nil }))
	if err != nil {
		fail("client", err)
	}
	return cc
}

// streamChildMain opens an X.509 stream on the inherited connection while
// its parent is still the process that connected, lets the parent exec
// (closing fd 4), prints READY and reports the next update.
func streamChildMain() {
	cc := dialInherited()
	wl := workload.NewSpiffeWorkloadAPIClient(cc)
	out := json.NewEncoder(os.Stdout)
	ctx, cancel := context.WithTimeout(withHeader(context.Background()), 30*time.Second)
	defer cancel()
	report := func(op string, resp *workload.X509SVIDResponse, err error) {
		r := attackResult{Op: op, Code: status.Code(err).String(), Msg: status.Convert(err).Message()}
		for _, sv := range resp.GetSvids() {
			r.IDs = append(r.IDs, sv.SpiffeId)
			if len(sv.X509SvidKey) > 0 {
				r.Keys++
			}
		}
		out.Encode(r)
	}
	s, err := wl.FetchX509SVID(ctx, &workload.X509SVIDRequest{})
	if err != nil {
		fail("stream", err)
	}
	resp, err := s.Recv()
	report("x509-before-exec", resp, err)
	sec, err := secretsv1.NewWorkloadSecretsClient(cc).Watch(ctx, &secretsv1.WorkloadWatchSecretRequest{Name: "db"})
	if err != nil {
		fail("secret watch", err)
	}
	reportSecret := func(op string) {
		m, err := sec.Recv()
		r := attackResult{Op: op, Code: status.Code(err).String(), Msg: status.Convert(err).Message(), Value: string(m.GetValue())}
		if m.GetSpiffeId() != "" {
			r.IDs = []string{m.GetSpiffeId()}
		}
		out.Encode(r)
	}
	reportSecret("secret-before-exec")
	os.NewFile(4, "ready").Close()
	waitParentExec()
	os.Stdout.WriteString("READY\n")
	resp, err = s.Recv()
	report("x509-after-exec", resp, err)
	reportSecret("secret-after-exec")
	os.Stdout.WriteString("DONE\n")
	os.Exit(0)
}

// attackCalls makes every Workload API and WorkloadSecrets call once and
// prints one JSON line per call.
func attackCalls(cc *grpc.ClientConn) {
	wl := workload.NewSpiffeWorkloadAPIClient(cc)
	sec := secretsv1.NewWorkloadSecretsClient(cc)
	out := json.NewEncoder(os.Stdout)
	call := func(op string, f func(ctx context.Context) (attackResult, error)) {
		ctx, cancel := context.WithTimeout(withHeader(context.Background()), 20*time.Second)
		defer cancel()
		r, err := f(ctx)
		r.Op, r.Code, r.Msg = op, status.Code(err).String(), status.Convert(err).Message()
		out.Encode(r)
	}
	call("x509", func(ctx context.Context) (attackResult, error) {
		var r attackResult
		s, err := wl.FetchX509SVID(ctx, &workload.X509SVIDRequest{})
		if err != nil {
			return r, err
		}
		resp, err := s.Recv()
		for _, sv := range resp.GetSvids() {
			r.IDs = append(r.IDs, sv.SpiffeId)
			if len(sv.X509SvidKey) > 0 {
				r.Keys++
			}
		}
		return r, err
	})
	call("jwt", func(ctx context.Context) (attackResult, error) {
		var r attackResult
		resp, err := wl.FetchJWTSVID(ctx, &workload.JWTSVIDRequest{Audience: []string{"a"}})
		for _, sv := range resp.GetSvids() {
			r.IDs = append(r.IDs, sv.SpiffeId)
		}
		return r, err
	})
	call("x509bundles", func(ctx context.Context) (attackResult, error) {
		s, err := wl.FetchX509Bundles(ctx, &workload.X509BundlesRequest{})
		if err == nil {
			_, err = s.Recv()
		}
		return attackResult{}, err
	})
	call("jwtbundles", func(ctx context.Context) (attackResult, error) {
		s, err := wl.FetchJWTBundles(ctx, &workload.JWTBundlesRequest{})
		if err == nil {
			_, err = s.Recv()
		}
		return attackResult{}, err
	})
	call("validate", func(ctx context.Context) (attackResult, error) {
		_, err := wl.ValidateJWTSVID(ctx, &workload.ValidateJWTSVIDRequest{Audience: "a", Svid: "not.a.token"})
		return attackResult{}, err
	})
	call("secret", func(ctx context.Context) (attackResult, error) {
		var r attackResult
		s, err := sec.Watch(ctx, &secretsv1.WorkloadWatchSecretRequest{Name: "db"})
		if err != nil {
			return r, err
		}
		m, err := s.Recv()
		r.Value = string(m.GetValue())
		if m.GetSpiffeId() != "" {
			r.IDs = []string{m.GetSpiffeId()}
		}
		return r, err
	})
	os.Stdout.WriteString("DONE\n")
	os.Exit(0)
}
