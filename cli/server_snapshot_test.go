package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/server"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// runServerOn runs a real server on dataDir until the returned stop is
// called; it returns the admin socket.
func runServerOn(t *testing.T, dataDir, sock string) (stop func()) {
	t.Helper()
	srv, err := server.New(server.Config{
		TrustDomain: spiffeid.RequireTrustDomainFromString("example.org"),
		DataDir:     dataDir,
		BindAddress: "127.0.0.1:0",
		AdminSocket: sock,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("server on %s did not start: %v", dataDir, err)
	case <-time.After(time.Minute):
		cancel()
		t.Fatal("server did not start within a minute")
	}
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

// copyFile copies src to dst with src's mode, as cp -a does for the
// files docs/operations.md backs up.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	fi, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, fi.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
}

// TestSnapshotBackupWipeRestore follows docs/operations.md: with the
// server running, `server snapshot save` plus a copy of ca/ and
// trust_domain; the data directory is wiped; `server snapshot restore`
// and the copied files put it back, and a server started on it serves the
// same entries and the same bundle. Saving over an existing file and
// restoring over an existing etcd directory are refused.
func TestSnapshotBackupWipeRestore(t *testing.T) {
	dir, err := os.MkdirTemp("", "sg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	dataDir, sock := filepath.Join(dir, "server"), filepath.Join(dir, "api.sock")
	backup := filepath.Join(dir, "backup")
	snap := filepath.Join(backup, "signet.db")
	if err := os.MkdirAll(backup, 0o700); err != nil {
		t.Fatal(err)
	}

	stop := runServerOn(t, dataDir, sock)
	for _, id := range []string{"web", "db"} {
		cli(t, sock, 0, "entry", "create", "--parent-id", "spiffe://example.org/spire/agent/x",
			"--spiffe-id", "spiffe://example.org/"+id, "--selector", "unix:uid:1000")
	}
	bundle, _ := cli(t, sock, 0, "bundle", "show")
	code, out, errOut := run(t, "server", "snapshot", "save", snap, "--data-dir", dataDir)
	if code != 0 || !strings.HasPrefix(out, "Saved snapshot "+snap+": revision ") || !strings.Contains(errOut, "ca/") {
		t.Fatalf("snapshot save: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if fi, err := os.Stat(snap); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("snapshot file: %v, mode %v; want 0600", err, fi.Mode())
	}
	code, _, errOut = run(t, "server", "snapshot", "save", snap, "--data-dir", dataDir)
	if code == 0 || !strings.Contains(errOut, "exists: choose a new file name") {
		t.Fatalf("snapshot save over an existing file: exit %d, stderr %q", code, errOut)
	}
	copyFile(t, filepath.Join(dataDir, "ca", "ca.json"), filepath.Join(backup, "ca", "ca.json"))
	copyFile(t, filepath.Join(dataDir, "trust_domain"), filepath.Join(backup, "trust_domain"))
	stop()

	if err := os.RemoveAll(dataDir); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = run(t, "server", "snapshot", "save", snap+".2", "--data-dir", dataDir)
	if code == 0 || !strings.Contains(errOut, "no embedded etcd running") {
		t.Fatalf("snapshot save with no server: exit %d, stderr %q", code, errOut)
	}
	code, out, errOut = run(t, "server", "snapshot", "restore", snap, "--data-dir", dataDir)
	if code != 0 || !strings.HasPrefix(out, "Restored "+snap+" into "+filepath.Join(dataDir, "etcd")) {
		t.Fatalf("snapshot restore: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, _, errOut = run(t, "server", "snapshot", "restore", snap, "--data-dir", dataDir)
	if code == 0 || !strings.Contains(errOut, "exists: a snapshot restores into a new directory only") {
		t.Fatalf("snapshot restore over an existing etcd: exit %d, stderr %q", code, errOut)
	}
	copyFile(t, filepath.Join(backup, "ca", "ca.json"), filepath.Join(dataDir, "ca", "ca.json"))
	copyFile(t, filepath.Join(backup, "trust_domain"), filepath.Join(dataDir, "trust_domain"))

	runServerOn(t, dataDir, sock)
	out, _ = cli(t, sock, 0, "entry", "show")
	mustContain(t, "entry show after restore", out, "Found 2 entries", "spiffe://example.org/web", "spiffe://example.org/db")
	if after, _ := cli(t, sock, 0, "bundle", "show"); after != bundle {
		t.Errorf("bundle after restore differs:\n%s\nwant:\n%s", after, bundle)
	}
}
