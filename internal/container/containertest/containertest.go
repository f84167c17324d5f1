// Package containertest makes fake proc roots for the tests of the
// container workload attestors: real pods and containers do not run where
// the tests do, so the caller's cgroups come from a file.
package containertest

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// ProcRoot returns a new directory under t.TempDir() holding
// <pid>/cgroup with the given contents, to pass as an attestor's proc root.
func ProcRoot(t testing.TB, pid int32, cgroup string) string {
	t.Helper()
	root := t.TempDir()
	WriteFile(t, root, pid, "cgroup", cgroup)
	return root
}

// WriteFile writes <root>/<pid>/<name> (cgroup, mountinfo).
func WriteFile(t testing.TB, root string, pid int32, name, contents string) {
	t.Helper()
	dir := filepath.Join(root, strconv.Itoa(int(pid)))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(contents), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Values returns the selectors' values, failing the test if one is not
// of type typ.
func Values(t testing.TB, typ string, sel []*types.Selector) []string {
	t.Helper()
	var out []string
	for _, s := range sel {
		if s.GetType() != typ {
			t.Fatalf("selector %s:%s, want type %q", s.GetType(), s.GetValue(), typ)
		}
		out = append(out, s.GetValue())
	}
	return out
}
