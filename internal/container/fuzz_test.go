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
	seed(f, "testdata/*.cgroup")
	f.Fuzz(func(t *testing.T, b []byte) {
		cgs, err := procfs.ParseCgroup(b)
		if err != nil {
			return
		}
		paths := make([]string, len(cgs))
		for i, cg := range cgs {
			paths[i] = cg.Path
		}
		checkFound(t, paths)
	})
}

// FuzzFromMountInfo does the same for /proc/<pid>/mountinfo contents.
func FuzzFromMountInfo(f *testing.F) {
	seed(f, "testdata/*.mountinfo")
	f.Fuzz(func(t *testing.T, b []byte) {
		mounts, err := procfs.ParseMountInfo(b)
		if err != nil {
			return
		}
		roots := make([]string, len(mounts))
		for i, m := range mounts {
			roots[i] = m.Root
		}
		checkFound(t, roots)
	})
}

func seed(f *testing.F, glob string) {
	fixtures, _ := filepath.Glob(glob)
	for _, p := range fixtures {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

func checkFound(t *testing.T, paths []string) {
	in, err := FromPaths(paths)
	if err != nil {
		return
	}
	if in.ContainerID != "" && !containerIDWord.MatchString(in.ContainerID) {
		t.Fatalf("container ID %q", in.ContainerID)
	}
	if in.PodUID != "" && (in.ContainerID == "" || len(in.PodUID) != 36 || strings.Contains(in.PodUID, "_")) {
		t.Fatalf("pod UID %q with container %q", in.PodUID, in.ContainerID)
	}
}
