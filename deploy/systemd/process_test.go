package systemd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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

	"golang.org/x/sys/unix"

	"github.com/signet-id/signet/agent/workloadapi"
	attestunix "github.com/signet-id/signet/attest/unix"
	"github.com/signet-id/signet/cli"
	"github.com/signet-id/signet/config"
	"github.com/signet-id/signet/deploy/deploytest"
	"github.com/signet-id/signet/privdir"
)

// The test binary doubles as a helper run under another uid:
// SIGNET_SYSTEMD_TEST_HELPER=attest attests the process whose PID is in
// SIGNET_SYSTEMD_TEST_ARG with the unix workload attestor and prints its
// selectors; =dial connects to the Unix socket named there.
const (
	helperEnv = "SIGNET_SYSTEMD_TEST_HELPER"
	argEnv    = "SIGNET_SYSTEMD_TEST_ARG"
)

// The uids of the workload and of the agent in the tests that run
// processes as other users.
const (
	workloadUID = 65533
	agentUID    = 65534
)

func helperMain() bool {
	switch os.Getenv(helperEnv) {
	case "attest":
		pid, err := strconv.Atoi(os.Getenv(argEnv))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		sels, err := attestunix.New().Attest(context.Background(), int32(pid))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		for _, s := range sels {
			fmt.Println(s.Type + ":" + s.Value)
		}
	case "dial":
		c, err := net.Dial("unix", os.Getenv(argEnv))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		c.Close()
	default:
		return false
	}
	os.Exit(0)
	return true
}

// requireRoot: the tests that run processes as other users need root (CI
// runs as root); elsewhere they are skipped, unless CI=true.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		msg := "runs processes as other uids: needs root"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// publicDir returns a new directory, mode 0755, that other users can
// search (t.TempDir is 0700).
func publicDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "signet-systemd-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// helper copies the test binary where other users can run it.
func helper(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	p := filepath.Join(publicDir(t), "helper")
	dst, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// runAs runs the helper as uid (and gid) with the ambient capabilities
// caps and returns its stdout.
func runAs(t *testing.T, exe string, uid uint32, caps []uintptr, mode, arg string) (string, error) {
	t.Helper()
	cmd := exec.Command(exe)
	cmd.Env = []string{helperEnv + "=" + mode, argEnv + "=" + arg}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}, AmbientCaps: caps}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// capNumbers maps the capability names a unit grants to their numbers.
func capNumbers(t *testing.T, names []string) []uintptr {
	t.Helper()
	known := map[string]uintptr{"CAP_SYS_PTRACE": unix.CAP_SYS_PTRACE, "CAP_DAC_READ_SEARCH": unix.CAP_DAC_READ_SEARCH}
	var caps []uintptr
	for _, n := range names {
		c, ok := known[n]
		if !ok {
			t.Fatalf("capability %s: not one this test knows; add it and show why the agent needs it", n)
		}
		caps = append(caps, c)
	}
	return caps
}

// TestAgentCapability: the agent units grant exactly CAP_SYS_PTRACE, and
// that is what a non-root agent needs to attest another user's process
// with unix:path and unix:sha256: the attestor, run as uid 65534 with the
// unit's ambient capabilities, gets them for a process of uid 65533;
// without a capability, or with CAP_DAC_READ_SEARCH instead, it gets the
// uid and gid selectors only.
func TestAgentCapability(t *testing.T) {
	requireRoot(t)
	var granted []uintptr
	for _, u := range units {
		pu := parseUnit(t, u.file)
		amb, bnd := strings.Fields(pu.last("AmbientCapabilities")), strings.Fields(pu.last("CapabilityBoundingSet"))
		want := []string{}
		if u.daemon == "agent" {
			want = []string{"CAP_SYS_PTRACE"}
			granted = capNumbers(t, amb)
		}
		if !slices.Equal(amb, want) || !slices.Equal(bnd, want) {
			t.Fatalf("%s: AmbientCapabilities %q, CapabilityBoundingSet %q; want both %q", u.file, amb, bnd, want)
		}
	}
	exe := helper(t)
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatal(err)
	}
	if sleep, err = filepath.EvalSymlinks(sleep); err != nil {
		t.Fatal(err)
	}
	workload := exec.Command(sleep, "600")
	workload.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: workloadUID, Gid: workloadUID}}
	if err := workload.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = workload.Process.Kill()
		_ = workload.Wait()
	})
	pid := strconv.Itoa(workload.Process.Pid)
	uidSel := "unix:uid:" + strconv.Itoa(workloadUID)
	for _, tt := range []struct {
		name     string
		caps     []uintptr
		wantPath bool
	}{
		{"the unit's capabilities", granted, true},
		{"no capability", nil, false},
		{"CAP_DAC_READ_SEARCH", []uintptr{unix.CAP_DAC_READ_SEARCH}, false},
	} {
		out, err := runAs(t, exe, agentUID, tt.caps, "attest", pid)
		if err != nil {
			t.Fatalf("%s: attest: %v", tt.name, err)
		}
		sels := strings.Fields(out)
		hasPath := slices.Contains(sels, "unix:path:"+sleep)
		hasSHA := slices.ContainsFunc(sels, func(s string) bool { return strings.HasPrefix(s, "unix:sha256:") })
		if !slices.Contains(sels, uidSel) || hasPath != tt.wantPath || hasSHA != tt.wantPath {
			t.Errorf("%s: selectors %q; want %s, and path and sha256 selectors: %v", tt.name, sels, uidSel, tt.wantPath)
		}
	}
}

// dirMode reads an octal mode setting.
func dirMode(t *testing.T, pu unit, key string) os.FileMode {
	t.Helper()
	m, err := strconv.ParseUint(pu.last(key), 8, 32)
	if err != nil {
		t.Fatalf("%s=%q: %v", key, pu.last(key), err)
	}
	return os.FileMode(m)
}

// mkdirMode creates dir (parents 0755, like systemd) with exactly mode.
func mkdirMode(t *testing.T, dir string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
}

// TestDirectoryModes: the directories systemd creates with the units'
// StateDirectoryMode and RuntimeDirectoryMode pass Signet's own checks:
// the data directory is accepted as private, and the Workload API socket
// is created in the runtime directory (0777) where any other user can
// reach it. A group-writable directory is refused by the same checks.
func TestDirectoryModes(t *testing.T) {
	root := publicDir(t)
	for i, u := range units {
		if len(u.dropIns) > 0 {
			continue
		}
		pu := parseUnit(t, u.file)
		state := filepath.Join(root, strconv.Itoa(i), "lib", "signet", u.daemon)
		mkdirMode(t, state, dirMode(t, pu, "StateDirectoryMode"))
		if err := privdir.CheckDir(state); err != nil {
			t.Errorf("%s: StateDirectoryMode=%s: %v", u.file, pu.last("StateDirectoryMode"), err)
		}
		if err := privdir.EnsureDir(state, 0o700); err != nil {
			t.Errorf("%s: StateDirectoryMode=%s: %v", u.file, pu.last("StateDirectoryMode"), err)
		}
		if u.daemon != "agent" {
			continue
		}
		run := filepath.Join(root, strconv.Itoa(i), "run", "signet", "agent", "public")
		mkdirMode(t, run, dirMode(t, pu, "RuntimeDirectoryMode"))
		sock := filepath.Join(run, "api.sock")
		l, err := workloadapi.Listen(sock)
		if err != nil {
			t.Errorf("%s: RuntimeDirectoryMode=%s: %v", u.file, pu.last("RuntimeDirectoryMode"), err)
			continue
		}
		l.Close()
		if err := privdir.OthersReach(sock); err != nil {
			t.Errorf("%s: RuntimeDirectoryMode=%s: %v", u.file, pu.last("RuntimeDirectoryMode"), err)
		}
	}
	loose := filepath.Join(root, "loose")
	mkdirMode(t, loose, 0o775)
	if err := privdir.CheckDir(loose); !errors.Is(err, privdir.ErrUnsafe) {
		t.Errorf("a 0775 data directory: %v, want ErrUnsafe", err)
	}
	if _, err := workloadapi.Listen(filepath.Join(loose, "api.sock")); !errors.Is(err, privdir.ErrUnsafe) {
		t.Errorf("a socket in a 0775 directory: %v, want ErrUnsafe", err)
	}
}

// TestWorkloadSocketReachable: a workload of another uid connects to the
// Workload API socket in a directory made with the agent unit's
// RuntimeDirectoryMode; with the data directory's mode (0700) it cannot.
func TestWorkloadSocketReachable(t *testing.T) {
	requireRoot(t)
	exe := helper(t)
	pu := parseUnit(t, "signet-agent.service")
	for _, tt := range []struct {
		key  string
		dial bool
	}{{"RuntimeDirectoryMode", true}, {"StateDirectoryMode", false}} {
		dir := filepath.Join(publicDir(t), "public")
		mkdirMode(t, dir, dirMode(t, pu, tt.key))
		sock := filepath.Join(dir, "api.sock")
		l, err := workloadapi.Listen(sock)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		_, err = runAs(t, exe, workloadUID, nil, "dial", sock)
		l.Close()
		if (err == nil) != tt.dial {
			t.Errorf("directory made with %s=%s: uid %d dials: %v; want success %v", tt.key, pu.last(tt.key), workloadUID, err, tt.dial)
		}
	}
}

// expand resolves the unit specifiers the units use, for a system
// service: %S state, %t runtime, %i the instance.
func expand(s, instance string) string {
	return strings.NewReplacer("%S", "/var/lib", "%t", "/run", "%i", instance).Replace(s)
}

// TestExecStart: every ExecStart is `signet <daemon> run` with --config in
// /etc/signet (per instance for templates), --data-dir the unit's
// StateDirectory and, for the agent, --socket-path in its
// RuntimeDirectory; the bare-metal example configuration names the same
// directories; and the signet CLI accepts the command line (as `validate`)
// with that example.
func TestExecStart(t *testing.T) {
	for _, u := range units {
		if len(u.dropIns) > 0 {
			continue
		}
		t.Run(name(u.file, u.instance), func(t *testing.T) {
			pu := parseUnit(t, u.file)
			args := strings.Fields(expand(pu.last("ExecStart"), u.instance))
			if len(args) < 3 || args[0] != "/usr/local/bin/signet" || args[1] != u.daemon || args[2] != "run" {
				t.Fatalf("ExecStart %q, want /usr/local/bin/signet %s run ...", args, u.daemon)
			}
			flags := map[string]string{}
			for i := 3; i < len(args); i += 2 {
				if i+1 >= len(args) || !strings.HasPrefix(args[i], "--") {
					t.Fatalf("ExecStart %q: want --flag value pairs", args)
				}
				flags[args[i]] = args[i+1]
			}
			want := map[string]string{
				"--config":   filepath.Join("/etc/signet", u.instance, u.daemon+".hcl"),
				"--data-dir": filepath.Join("/var/lib", expand(pu.last("StateDirectory"), u.instance)),
			}
			if u.daemon == "agent" {
				want["--socket-path"] = filepath.Join("/run", expand(pu.last("RuntimeDirectory"), u.instance), "api.sock")
			}
			if len(flags) != len(want) {
				t.Errorf("flags %q, want %q", flags, want)
			}
			for k, v := range want {
				if flags[k] != v {
					t.Errorf("%s %q, want %q", k, flags[k], v)
				}
			}

			example := filepath.Join("..", "examples", "baremetal", u.daemon+".hcl")
			src, err := os.ReadFile(example)
			if err != nil {
				t.Fatal(err)
			}
			if u.instance == "" {
				dataDir, sock := exampleDirs(t, u.daemon, example)
				if dataDir != flags["--data-dir"] || sock != flags["--socket-path"] {
					t.Errorf("%s names data_dir %q and socket_path %q; the unit %q and %q", example, dataDir, sock, flags["--data-dir"], flags["--socket-path"])
				}
			}
			root := t.TempDir()
			ca := deploytest.NewAuthority(t, "example CA")
			ca.WriteBundle(t, filepath.Join(root, "etc/signet/node-ca.pem"))
			ca.WriteBundle(t, filepath.Join(root, "etc/signet/bundle.pem"))
			deploytest.WriteFile(t, filepath.Join(root, "etc/signet/join-token"), []byte("token\n"), 0o600)
			conf := filepath.Join(root, "config.hcl")
			deploytest.WriteFile(t, conf, []byte(deploytest.Rehome(t, string(src), root, "/etc/signet/")), 0o600)
			flags["--config"] = conf
			cmd := []string{u.daemon, "validate"}
			for i := 3; i < len(args); i += 2 {
				cmd = append(cmd, args[i], flags[args[i]])
			}
			var out bytes.Buffer
			if code := cli.Main(t.Context(), cmd, &out, &out); code != 0 || out.String() != "configuration is valid\n" {
				t.Errorf("signet %q: exit %d: %s", cmd, code, out.String())
			}
		})
	}
}

// exampleDirs returns the data_dir and (agent) socket_path of an example.
func exampleDirs(t *testing.T, daemon, path string) (string, string) {
	t.Helper()
	if daemon == "server" {
		f, err := config.LoadServer(path)
		if err != nil {
			t.Fatal(err)
		}
		return f.Server.DataDir, ""
	}
	f, err := config.LoadAgent(path)
	if err != nil {
		t.Fatal(err)
	}
	return f.Agent.DataDir, f.Agent.SocketPath
}
