// Package tooltest finds the external tools the interop tests run:
// OpenSSL 3.5 from shared/tools beside the repository. A missing tool fails
// the test when CI=true and skips it otherwise.
package tooltest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// OpenSSL returns the path of shared/tools/openssl35, found by walking up
// from the working directory (the repository is checked out beside
// shared/).
func OpenSSL(t testing.TB) string {
	t.Helper()
	if p, err := findUp(filepath.Join("shared", "tools", "openssl35")); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("shared/tools/openssl35 not found beside the repository")
	}
	t.Skip("shared/tools/openssl35 not found beside the repository")
	return ""
}

// RunOpenSSL runs OpenSSL with args and returns its combined output and
// whether it exited 0.
func RunOpenSSL(t testing.TB, stdin string, args ...string) (string, bool) {
	t.Helper()
	cmd := exec.Command(OpenSSL(t), args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) {
			t.Fatalf("running openssl %v: %v", args, err)
		}
	}
	return string(out), err == nil
}
