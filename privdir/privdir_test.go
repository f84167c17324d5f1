package privdir_test

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/signet-id/signet/internal/nobodytest"
	"github.com/signet-id/signet/privdir"
)

// base returns a fresh directory that passes the checks (root's temp dir).
func base(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "pd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func mkdir(t *testing.T, p string, mode fs.FileMode) string {
	t.Helper()
	if err := os.Mkdir(p, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckDir(t *testing.T) {
	nobodytest.RequireRoot(t)
	tests := []struct {
		name  string
		setup func(t *testing.T, b string) string
		want  string // "" = accepted; else a substring of the refusal
	}{
		{"own 0700", func(t *testing.T, b string) string { return mkdir(t, b+"/d", 0o700) }, ""},
		{"own 0755", func(t *testing.T, b string) string { return mkdir(t, b+"/d", 0o755) }, ""},
		{"group writable", func(t *testing.T, b string) string { return mkdir(t, b+"/d", 0o770) }, "mode 0770 is writable by group or others"},
		{"world writable", func(t *testing.T, b string) string { return mkdir(t, b+"/d", 0o777) }, "mode 0777 is writable by group or others"},
		{"owned by another uid", func(t *testing.T, b string) string {
			d := mkdir(t, b+"/d", 0o700)
			chown(t, d)
			return d
		}, "owned by uid 65534, not by uid 0 that runs signet"},
		{"parent owned by another uid", func(t *testing.T, b string) string {
			p := mkdir(t, b+"/p", 0o755)
			d := mkdir(t, p+"/d", 0o700)
			chown(t, p)
			return d
		}, "parent directory owned by uid 65534"},
		{"parent world writable, not sticky", func(t *testing.T, b string) string {
			p := mkdir(t, b+"/p", 0o777)
			return mkdir(t, p+"/d", 0o700)
		}, "without the sticky bit"},
		{"parent world writable and sticky (like /tmp)", func(t *testing.T, b string) string {
			p := mkdir(t, b+"/p", fs.ModeSticky|0o777)
			return mkdir(t, p+"/d", 0o700)
		}, ""},
		{"symlink by root to a good dir", func(t *testing.T, b string) string {
			d := mkdir(t, b+"/d", 0o700)
			if err := os.Symlink(d, b+"/l"); err != nil {
				t.Fatal(err)
			}
			return b + "/l"
		}, ""},
		{"symlink owned by another uid", func(t *testing.T, b string) string {
			d := mkdir(t, b+"/d", 0o700)
			if err := os.Symlink(d, b+"/l"); err != nil {
				t.Fatal(err)
			}
			if err := os.Lchown(b+"/l", nobodytest.UID, nobodytest.UID); err != nil {
				t.Fatal(err)
			}
			return b + "/l"
		}, "symlink owned by uid 65534"},
		{"symlink to a dir of another uid", func(t *testing.T, b string) string {
			d := mkdir(t, b+"/d", 0o700)
			chown(t, d)
			if err := os.Symlink(d, b+"/l"); err != nil {
				t.Fatal(err)
			}
			return b + "/l"
		}, "owned by uid 65534"},
		{"a file", func(t *testing.T, b string) string {
			if err := os.WriteFile(b+"/f", nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return b + "/f"
		}, "not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.setup(t, base(t))
			err := privdir.CheckDir(d)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("CheckDir(%s): %v", d, err)
				}
				return
			}
			if err == nil || !errors.Is(err, privdir.ErrUnsafe) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("CheckDir(%s) = %v, want ErrUnsafe containing %q", d, err, tt.want)
			}
		})
	}
}

func chown(t *testing.T, p string) {
	t.Helper()
	if err := os.Chown(p, nobodytest.UID, nobodytest.UID); err != nil {
		t.Fatal(err)
	}
}

func TestEnsureDirModes(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	b := base(t)
	d := filepath.Join(b, "a", "b", "c")
	if err := privdir.EnsureDir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]fs.FileMode{filepath.Join(b, "a"): 0o755, filepath.Join(b, "a", "b"): 0o755, d: 0o700} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %04o, want %04o", p, fi.Mode().Perm(), want)
		}
	}
	if err := os.Chmod(d, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := privdir.EnsureDir(d, 0o700); !errors.Is(err, privdir.ErrUnsafe) || !strings.Contains(err.Error(), d) {
		t.Fatalf("EnsureDir on a 0777 dir = %v, want a refusal naming %s", err, d)
	}
}

func TestReadFile(t *testing.T) {
	nobodytest.RequireRoot(t)
	tests := []struct {
		name  string
		setup func(t *testing.T, p string)
		want  string
	}{
		{"private", func(t *testing.T, p string) { write(t, p, 0o600) }, ""},
		{"0400", func(t *testing.T, p string) { write(t, p, 0o400) }, ""},
		{"group readable", func(t *testing.T, p string) { write(t, p, 0o640) }, "mode 0640 is looser than 0600"},
		{"world writable", func(t *testing.T, p string) { write(t, p, 0o666) }, "mode 0666 is looser than 0600"},
		{"owned by another uid", func(t *testing.T, p string) { write(t, p, 0o600); chown(t, p) }, "owned by uid 65534"},
		{"symlink", func(t *testing.T, p string) {
			write(t, p+".real", 0o600)
			if err := os.Symlink(p+".real", p); err != nil {
				t.Fatal(err)
			}
		}, "is a symlink"},
		{"fifo", func(t *testing.T, p string) {
			if err := syscall.Mkfifo(p, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(base(t), "ca.json")
			tt.setup(t, p)
			data, err := privdir.ReadFile(p)
			if tt.want == "" {
				if err != nil || string(data) != "state" {
					t.Fatalf("ReadFile = %q, %v", data, err)
				}
				return
			}
			if !errors.Is(err, privdir.ErrUnsafe) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("ReadFile = %v, want a refusal naming %s and containing %q", err, p, tt.want)
			}
		})
	}
	if _, err := privdir.ReadFile(filepath.Join(base(t), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v, want fs.ErrNotExist", err)
	}
	if _, err := privdir.ReadFile(filepath.Join(base(t), "nodir", "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing dir: %v, want fs.ErrNotExist", err)
	}
}

func write(t *testing.T, p string, mode fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, []byte("state"), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

// TestWriteFileDoesNotFollowSymlinks plants symlinks to a root-only victim
// at the file's name and at the fixed temporary name the old code used.
func TestWriteFileDoesNotFollowSymlinks(t *testing.T) {
	b := base(t)
	victim := filepath.Join(base(t), "victim")
	write(t, victim, 0o600)
	target := filepath.Join(b, "bundle.spiffe.json")
	for _, l := range []string{target, target + ".tmp"} {
		if err := os.Symlink(victim, l); err != nil {
			t.Fatal(err)
		}
	}
	if err := privdir.WriteFile(target, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(victim); string(got) != "state" {
		t.Fatalf("victim overwritten: %q", got)
	}
	fi, err := os.Lstat(target)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 {
		t.Fatalf("target: %v %v, want a regular 0644 file", fi, err)
	}
	if got, _ := os.ReadFile(target); string(got) != "new" {
		t.Fatalf("target = %q", got)
	}
	ents, _ := os.ReadDir(b)
	if len(ents) != 2 { // the file and the untouched planted .tmp link
		t.Fatalf("leftover files: %v", ents)
	}
	if err := os.Chmod(b, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := privdir.WriteFile(target, []byte("x"), 0o600); !errors.Is(err, privdir.ErrUnsafe) {
		t.Fatalf("write into a 0777 dir: %v, want ErrUnsafe", err)
	}
}

func TestLockDir(t *testing.T) {
	d := base(t)
	l, err := privdir.LockDir(d)
	if err != nil {
		t.Fatal(err)
	}
	_, err = privdir.LockDir(d)
	var le *privdir.LockedError
	if !errors.As(err, &le) || !errors.Is(err, privdir.ErrLocked) || le.PID != os.Getpid() {
		t.Fatalf("second lock: %v, want LockedError with pid %d", err, os.Getpid())
	}
	if !strings.Contains(err.Error(), d) || !strings.Contains(err.Error(), "--data-dir") {
		t.Fatalf("message %q does not name the dir and what to do", err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	l2, err := privdir.LockDir(d)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	l2.Unlock()
}

func TestListenUnix(t *testing.T) {
	d := base(t)
	sock := filepath.Join(d, "api.sock")
	live, err := privdir.ListenUnix(sock, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	go func() {
		for {
			c, err := live.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v %v", fi, err)
	}
	if _, err := privdir.ListenUnix(sock, 0o600); !errors.Is(err, privdir.ErrSocketInUse) || !strings.Contains(err.Error(), sock) {
		t.Fatalf("second listen: %v, want ErrSocketInUse naming %s", err, sock)
	}
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatalf("live socket gone after the refused takeover: %v", err)
	}
	c.Close()

	stale := filepath.Join(d, "stale.sock")
	sl, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	sl.(*net.UnixListener).SetUnlinkOnClose(false)
	sl.Close()
	l, err := privdir.ListenUnix(stale, 0o600)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	l.Close()

	file := filepath.Join(d, "file")
	write(t, file, 0o600)
	if _, err := privdir.ListenUnix(file, 0o600); !errors.Is(err, privdir.ErrUnsafe) {
		t.Fatalf("listen over a file: %v", err)
	}
}

func TestDefaultLayout(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	tests := []struct {
		name string
		uid  int
		env  func(string) string
		want privdir.Layout
	}{
		{"root", 0, env("HOME", "/root", "XDG_RUNTIME_DIR", "/run/user/0"),
			privdir.Layout{"/var/lib/signet/server", "/var/lib/signet/agent", "/run/signet/agent/public/api.sock"}},
		{"user with XDG", 1000, env("HOME", "/home/a", "XDG_DATA_HOME", "/d", "XDG_RUNTIME_DIR", "/run/user/1000"),
			privdir.Layout{"/d/signet/server", "/d/signet/agent", "/run/user/1000/signet/agent/public/api.sock"}},
		{"user with HOME only", 1000, env("HOME", "/home/a"),
			privdir.Layout{"/home/a/.local/share/signet/server", "/home/a/.local/share/signet/agent", "/home/a/.local/share/signet/agent-public/api.sock"}},
		{"user with nothing", 1000, env(),
			privdir.Layout{"/tmp/signet-1000/server", "/tmp/signet-1000/agent", "/tmp/signet-1000/agent-public/api.sock"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := privdir.DefaultLayout(tt.uid, tt.env)
			if got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			if strings.HasPrefix(got.WorkloadSocket, got.AgentDataDir+"/") {
				t.Fatalf("workload socket %s inside the 0700 agent data dir", got.WorkloadSocket)
			}
		})
	}
	if got := privdir.AdminSocket("/var/lib/signet/server"); got != "/var/lib/signet/server/private/api.sock" {
		t.Fatal(got)
	}
}

// TestAttackerPreCreatedDir: uid 65534 creates the directory first (0777,
// as the review did in /tmp); EnsureDir refuses it, naming it.
func TestAttackerPreCreatedDir(t *testing.T) {
	nobodytest.RequireRoot(t)
	b := base(t)
	if err := os.Chmod(b, fs.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	d := filepath.Join(b, "signet-server")
	nobodytest.Shell(t, "umask 000; mkdir -m 0777 "+d)
	err := privdir.EnsureDir(d, 0o700)
	if !errors.Is(err, privdir.ErrUnsafe) || !strings.Contains(err.Error(), d) || !strings.Contains(err.Error(), "owned by uid 65534") {
		t.Fatalf("EnsureDir(attacker's dir) = %v", err)
	}
}
