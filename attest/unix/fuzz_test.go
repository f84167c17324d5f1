package unix

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// FuzzProcParsers fuzzes the /proc/<pid>/status and /proc/<pid>/stat
// parsers the unix attestor derives uid, gid, groups and the pid-reuse
// start time from. An accepted status must yield numeric ids.
func FuzzProcParsers(f *testing.F) {
	f.Add([]byte("Name:\tsh\nUid:\t0\t0\t0\t0\nGid:\t5\t6\t7\t8\nGroups:\t1 2 x 3\n"), []byte("1 (a) b) S "+strings.Repeat("1 ", 18)+"99 1\n"))
	f.Add([]byte("Uid: 1\nGid:\n"), []byte("1 (x)"))
	f.Add([]byte("Uid:\t4294967296\t1\nGid:\t-1 2\n"), []byte(")"))
	dir := f.TempDir() // one directory for every input (calls run one at a time per worker)
	f.Fuzz(func(t *testing.T, status, stat []byte) {
		if err := os.WriteFile(filepath.Join(dir, "status"), status, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "stat"), stat, 0o600); err != nil {
			t.Fatal(err)
		}
		if st, err := readStatus(dir); err == nil {
			for _, id := range append([]string{st.uid, st.gid}, st.groups...) {
				if _, err := strconv.ParseUint(id, 10, 32); err != nil {
					t.Fatalf("non-numeric id %q from %q", id, status)
				}
			}
		}
		if s, err := readStartTime(dir); err == nil {
			if _, err := strconv.ParseUint(s, 10, 64); err != nil {
				t.Fatalf("start time %q from %q", s, stat)
			}
		}
	})
}
