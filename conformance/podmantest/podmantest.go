// Package podmantest runs real containers for tests: a rootful podman
// with its own storage in a temporary directory, containers run by runc
// under the cgroupfs manager (this host's hybrid cgroup v1 is beyond
// crun), and podman's Docker-compatible Engine API service on a Unix
// socket. Images are imported from static binaries the tests build: no
// registry is reachable.
package podmantest

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Podman is one podman installation's state and its Engine API service.
type Podman struct {
	t   testing.TB
	dir string
	// Socket is the Engine API's socket as a unix:///path URL.
	Socket string
}

// Start starts podman's service; it skips the test where podman cannot
// run (not root, or scripts/install-debs.sh has not installed podman and
// runc), and fails it there under CI=true, where both must hold.
// Everything is removed at the test's end.
func Start(t testing.TB) *Podman {
	t.Helper()
	unavailable := t.Skipf
	if os.Getenv("CI") == "true" {
		unavailable = t.Fatalf
	}
	if os.Geteuid() != 0 {
		unavailable("rootful podman needs root")
	}
	for _, bin := range []string{"podman", "runc"} {
		if _, err := exec.LookPath(bin); err != nil {
			unavailable("%s not installed (scripts/install-debs.sh installs it)", bin)
		}
	}
	dir, err := os.MkdirTemp("", "signet-podman-")
	if err != nil {
		t.Fatal(err)
	}
	p := &Podman{t: t, dir: dir}
	t.Cleanup(func() {
		p.Run("system", "reset", "--force")
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

func (p *Podman) globalArgs() []string {
	return []string{
		"--root", filepath.Join(p.dir, "storage"), "--runroot", filepath.Join(p.dir, "run"),
		"--tmpdir", filepath.Join(p.dir, "tmp"), "--storage-driver", "vfs",
		"--runtime", "runc", "--cgroup-manager", "cgroupfs", "--events-backend", "file",
	}
}

// Run runs a podman command and returns its trimmed standard output.
func (p *Podman) Run(args ...string) string {
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

// Sleeper is the source of a program that sleeps, for a container that
// only has to exist.
const Sleeper = "package main\n\nimport \"time\"\n\nfunc main() { time.Sleep(10 * time.Minute) }\n"

// BuildGo builds a static binary of the Go package in dir (a directory
// path, relative to the working directory, inside a module) and returns
// its path.
func (p *Podman) BuildGo(dir string) string {
	p.t.Helper()
	out := filepath.Join(p.dir, "bin", filepath.Base(dir))
	build := exec.Command("go", "build", "-o", out, ".")
	build.Dir = dir
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GOWORK=off")
	if b, err := build.CombinedOutput(); err != nil {
		p.t.Fatalf("go build %s: %v: %s", dir, err, b)
	}
	return out
}

// BuildFetchSVID builds the fetchsvid workload (this package's
// fetchsvid directory) and returns the binary's path.
func (p *Podman) BuildFetchSVID() string {
	p.t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		p.t.Fatal("podmantest: cannot locate its source")
	}
	return p.BuildGo(filepath.Join(filepath.Dir(file), "fetchsvid"))
}

// BuildSleeper builds Sleeper and returns the binary's path.
func (p *Podman) BuildSleeper() string {
	p.t.Helper()
	src := filepath.Join(p.dir, "sleeper")
	if err := os.MkdirAll(src, 0o755); err != nil {
		p.t.Fatal(err)
	}
	for name, s := range map[string]string{"go.mod": "module sleeper\n\ngo 1.22\n", "main.go": Sleeper} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(s), 0o644); err != nil {
			p.t.Fatal(err)
		}
	}
	return p.BuildGo(src)
}

// Import makes an image named name holding only the binary bin, as /app,
// its entrypoint.
func (p *Podman) Import(name, bin string) {
	p.t.Helper()
	b, err := os.ReadFile(bin)
	if err != nil {
		p.t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "app", Mode: 0o755, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
		p.t.Fatal(err)
	}
	if _, err := tw.Write(b); err != nil {
		p.t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		p.t.Fatal(err)
	}
	tarball := filepath.Join(p.dir, filepath.Base(bin)+".tar")
	if err := os.WriteFile(tarball, buf.Bytes(), 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.Run("import", "--change", `ENTRYPOINT ["/app"]`, tarball, name)
}

// RunContainer starts a detached container of image with the podman run
// options opts and returns its ID and the host PID of its process. It has
// no network; its ulimits are low (podman's default raises them, which
// this VM refuses).
func (p *Podman) RunContainer(image string, opts ...string) (id string, pid int32) {
	p.t.Helper()
	runArgs := append([]string{"run", "-d", "--network", "none",
		"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"}, opts...)
	id = p.Run(append(runArgs, image)...)
	p.t.Cleanup(func() { p.Run("rm", "--force", "--time", "0", id) })
	var n int
	if _, err := fmt.Sscan(p.Run("inspect", "--format", "{{.State.Pid}}", id), &n); err != nil || n <= 0 {
		p.t.Fatalf("container %s pid %d: %v", id, n, err)
	}
	return id, int32(n)
}

// RunOnce runs a container of image to its end, with the podman run
// options opts (no network, low ulimits, as RunContainer), removes it and
// returns its standard output, trimmed. A failed exit is not an error:
// the caller judges the output.
func (p *Podman) RunOnce(image string, opts ...string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append(p.globalArgs(), "run", "--rm", "--network", "none",
		"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")
	cmd := exec.CommandContext(ctx, "podman", append(append(args, opts...), image)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		p.t.Fatalf("podman run %s: %v: %s", image, err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// PodCgroupParent returns a cgroup parent (podman run --cgroup-parent)
// shaped as the kubelet's cgroupfs driver makes a pod's,
// <prefix>/kubepods/besteffort/pod<uid>, so that a container run under it
// sits in the cgroups of that pod. The cgroups are removed at the test's
// end.
func (p *Podman) PodCgroupParent(podUID string) string {
	p.t.Helper()
	top := "signettest-" + filepath.Base(p.dir)
	p.t.Cleanup(func() {
		// conmon may outlive the removed container a moment: its
		// cgroup is removable once it has exited.
		for i := 0; i < 100; i++ {
			dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", top))
			if d := filepath.Join("/sys/fs/cgroup", top); dirExists(d) {
				dirs = append(dirs, d)
			}
			if len(dirs) == 0 {
				return
			}
			for _, d := range dirs {
				removeCgroupTree(d)
			}
			time.Sleep(50 * time.Millisecond)
		}
		p.t.Errorf("podmantest: cgroups under %s not removed", top)
	})
	return "/" + top + "/kubepods/besteffort/pod" + podUID
}

func dirExists(d string) bool {
	fi, err := os.Stat(d)
	return err == nil && fi.IsDir()
}

// removeCgroupTree removes a cgroup and its children, deepest first (a
// cgroup directory is removed with rmdir once it has no processes).
func removeCgroupTree(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			removeCgroupTree(filepath.Join(dir, e.Name()))
		}
	}
	_ = os.Remove(dir)
}
