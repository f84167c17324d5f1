package container

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signet-id/signet/internal/procfs"
)

// FuzzFromCgroupFile feeds arbitrary /proc/<pid>/cgroup contents (seeded
// with every fixture) to the parser and the locator: neither may panic,
// and whatever is found has the shape of a container ID and a pod UID.
func FuzzFromCgroupFile(f *testing.F) {
	fixtures, _ := filepath.Glob("testdata/*.cgroup")
	for _, p := range fixtures {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cgs, err := procfs.ParseCgroup(b)
		if err != nil {
			return
		}
		in, err := FromCgroups(cgs)
		if err != nil {
			return
		}
		if in.ContainerID != "" && !containerIDWord.MatchString(in.ContainerID) {
			t.Fatalf("container ID %q", in.ContainerID)
		}
		if in.PodUID != "" && (in.ContainerID == "" || len(in.PodUID) != 36 || strings.Contains(in.PodUID, "_")) {
			t.Fatalf("pod UID %q with container %q", in.PodUID, in.ContainerID)
		}
	})
}
