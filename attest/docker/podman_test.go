package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// podman is a rootful podman with its own storage under a test's temp
// dir, running containers with runc under the cgroupfs manager (this
// host's hybrid cgroup v1 is beyond crun), and its Docker-compatible
// Engine API service on a Unix socket.
type podman struct {
	t      *testing.T
	dir    string
	Socket string // unix:///...
}

// startPodman skips the test where podman cannot run (not root, or
// scripts/install-debs.sh has not installed podman and runc).
func startPodman(t *testing.T) *podman {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("rootful podman needs root")
	}
	for _, bin := range []string{"podman", "runc"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (scripts/install-debs.sh installs it)", bin)
		}
	}
	dir, err := os.MkdirTemp("", "signet-podman-")
	if err != nil {
		t.Fatal(err)
	}
	p := &podman{t: t, dir: dir}
	t.Cleanup(func() {
		p.run("system", "reset", "--force")
		_ = os.RemoveAll(dir)
	})
	sock := filepath.Join(dir, "docker.sock")
	ctx, cancel := context.WithCancel(context.Background())
	svc := exec.CommandContext(ctx, "podman", append(p.globalArgs(), "system", "service", "--time=0", "unix://"+sock)...)
	svc.Stderr = &bytes.Buffer{}
	if err := svc.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = svc.Wait()
	})
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if i == 600 {
			t.Fatalf("podman system service did not create %s: %s", sock, svc.Stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.Socket = "unix://" + sock
	return p
}

func (p *podman) globalArgs() []string {
	return []string{
		"--root", filepath.Join(p.dir, "storage"), "--runroot", filepath.Join(p.dir, "run"),
		"--tmpdir", filepath.Join(p.dir, "tmp"), "--storage-driver", "vfs",
		"--runtime", "runc", "--cgroup-manager", "cgroupfs", "--events-backend", "file",
	}
}

// run runs a podman command and returns its trimmed standard output.
func (p *podman) run(args ...string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "podman", append(p.globalArgs(), args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		p.t.Fatalf("podman %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// importSleeper builds a static program that sleeps and imports it as an
// image (no registry is reachable from the tests).
func (p *podman) importSleeper(name string) {
	p.t.Helper()
	src := filepath.Join(p.dir, "sleeper")
	if err := os.MkdirAll(src, 0o755); err != nil {
		p.t.Fatal(err)
	}
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(src, name), []byte(s), 0o644); err != nil {
			p.t.Fatal(err)
		}
	}
	write("go.mod", "module sleeper\n\ngo 1.22\n")
	write("main.go", "package main\n\nimport \"time\"\n\nfunc main() { time.Sleep(10 * time.Minute) }\n")
	build := exec.Command("go", "build", "-o", "sleeper", ".")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		p.t.Fatalf("go build sleeper: %v: %s", err, out)
	}
	bin, err := os.ReadFile(filepath.Join(src, "sleeper"))
	if err != nil {
		p.t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "sleeper", Mode: 0o755, Size: int64(len(bin)), Typeflag: tar.TypeReg}); err != nil {
		p.t.Fatal(err)
	}
	if _, err := tw.Write(bin); err != nil {
		p.t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		p.t.Fatal(err)
	}
	tarball := filepath.Join(p.dir, "sleeper.tar")
	if err := os.WriteFile(tarball, buf.Bytes(), 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.run("import", "--change", `ENTRYPOINT ["/sleeper"]`, tarball, name)
}

// runContainer starts a detached container and returns its ID and the
// host PID of its process. The ulimits are this host's (podman's default
// raises them, which the VM refuses).
func (p *podman) runContainer(image string, args ...string) (id string, pid int32) {
	p.t.Helper()
	runArgs := append([]string{"run", "-d", "--network", "none",
		"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"}, args...)
	id = p.run(append(runArgs, image)...)
	p.t.Cleanup(func() { p.run("rm", "--force", "--time", "0", id) })
	var n int
	if _, err := fmt.Sscan(p.run("inspect", "--format", "{{.State.Pid}}", id), &n); err != nil || n <= 0 {
		p.t.Fatalf("container %s pid %d: %v", id, n, err)
	}
	return id, int32(n)
}
