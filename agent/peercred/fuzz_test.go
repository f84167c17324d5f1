//go:build linux

package peercred

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// FuzzReadStartTime fuzzes the /proc/<pid>/stat parser behind the
// connection's pid-reuse check: the comm field is chosen by the workload
// (prctl PR_SET_NAME, or the executable's name) and may hold spaces and
// parentheses.
func FuzzReadStartTime(f *testing.F) {
	f.Add([]byte("1234 (a) b) S 1 1 1 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 98765 1 1\n"))
	f.Add([]byte("1 (x) " + strings.Repeat("0 ", 19) + "7"))
	f.Add([]byte("1 ()"))
	f.Add([]byte(")"))
	// One directory for every input (calls run one at a time per worker).
	root := f.TempDir()
	if err := os.Mkdir(filepath.Join(root, "42"), 0o700); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, stat []byte) {
		if err := os.WriteFile(filepath.Join(root, "42", "stat"), stat, 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := readStartTime(root, 42)
		if err != nil {
			return
		}
		if st == "" || strings.ContainsAny(st, " \t\n)") {
			t.Fatalf("start time %q from %q", st, stat)
		}
		_ = strconv.Quote(st)
	})
}
