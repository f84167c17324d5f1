// Package nobodytest lets tests that run as root act as the unprivileged
// uid 65534 ("nobody"): the attack tests drop to it to show that another
// local user cannot reach what Signet protects.
package nobodytest

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// UID is the uid (and gid) the tests act as.
const UID = 65534

// RequireRoot skips tb unless it runs as root, which dropping to UID (or
// chowning files to it) needs.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root to act as uid 65534")
	}
}

// As makes cmd run as UID and returns it.
func As(cmd *exec.Cmd) *exec.Cmd {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: UID, Gid: UID}
	return cmd
}

// Shell runs script with /bin/sh as UID and fails tb if it fails.
func Shell(tb testing.TB, script string) {
	tb.Helper()
	if out, err := As(exec.Command("/bin/sh", "-c", script)).CombinedOutput(); err != nil {
		tb.Fatalf("uid %d: %s: %v\n%s", UID, script, err, out)
	}
}

// TestBinary copies the running test binary to dir/name (mode 0755) so that
// UID can execute it (the go build directory is root-only), and returns the
// copy's path. dir must be traversable by UID.
func TestBinary(tb testing.TB, dir, name string) string {
	tb.Helper()
	self, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	dst := filepath.Join(dir, name)
	CopyFile(tb, self, dst, 0o755)
	return dst
}

// CopyFile copies src to dst, which must not exist, and then sets mode
// (after writing, since writes clear the setuid bit).
func CopyFile(tb testing.TB, src, dst string, mode os.FileMode) {
	tb.Helper()
	in, err := os.Open(src)
	if err != nil {
		tb.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o700)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		tb.Fatal(err)
	}
	if err := out.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := os.Chmod(dst, mode); err != nil {
		tb.Fatal(err)
	}
}
