// Package containertest makes fake proc roots for the tests of the
// container workload attestors: real pods and containers do not run where
// the tests do, so the caller's cgroups come from a file.
package containertest

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// ProcRoot returns a new directory under t.TempDir() holding
// <pid>/cgroup with the given contents, to pass as an attestor's proc root.
func ProcRoot(t testing.TB, pid int32, cgroup string) string {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, strconv.Itoa(int(pid)))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup"), []byte(cgroup), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}
