package container

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/signet-id/signet/internal/container/containertest"
	"github.com/signet-id/signet/internal/procfs"
)

const (
	podContainer    = "3f8a1c2e9b7d4a6f0e5c8b2a1d9f7e6c4b3a2918f7e6d5c4b3a29180f7e6d5c4"
	dockerContainer = "b52e7f1a0c9d8e3f4a6b5c7d8e9f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b"
	podUID          = "6f2b1c3d-8e4a-4b5c-9d6e-7f8091a2b3c4"
)

func TestLocateFixtures(t *testing.T) {
	inPod := Info{PodUID: podUID, ContainerID: podContainer}
	for _, tc := range []struct {
		fixture string
		want    Info
		err     error
	}{
		{"v1-cgroupfs-docker", inPod, nil},
		{"v1-systemd-docker", inPod, nil},
		{"v1-cgroupfs-containerd", inPod, nil},
		{"v1-systemd-crio", inPod, nil},
		{"v1-kind", inPod, nil},
		{"v2-cgroupfs-containerd", inPod, nil},
		{"v2-systemd-containerd", inPod, nil},
		{"v2-cgroupns-containerd", inPod, nil},
		{"v2-systemd-crio-guaranteed", inPod, nil},
		{"v2-cgroupfs-crio-colon", inPod, nil},
		{"v2-colon-joined", inPod, nil},
		// The agent's cgroup namespace hides the pod level: the
		// container is known, the pod is not.
		{"v2-cgroupns-crio", Info{ContainerID: podContainer}, nil},
		{"v1-docker", Info{ContainerID: dockerContainer}, nil},
		{"v2-docker", Info{ContainerID: dockerContainer}, nil},
		{"v2-podman", Info{ContainerID: dockerContainer}, nil},
		{"v1-not-in-container", Info{}, nil},
		{"v2-not-in-container", Info{}, nil},
		{"conflict-container", Info{}, ErrConflict},
		{"conflict-pod", Info{}, ErrConflict},
		{"malformed", Info{}, procfs.ErrMalformed},
		// The mounts name the container; the cgroup file, seen through a
		// cgroup namespace, does not.
		{"mountinfo-v2-containerd", inPod, nil},
		{"mountinfo-v1-docker", Info{ContainerID: dockerContainer}, nil},
		// No cgroup mount names a container: the cgroup file does.
		{"mountinfo-fallback", inPod, nil},
		{"mountinfo-conflict", Info{}, ErrConflict},
		{"mountinfo-malformed", Info{}, procfs.ErrMalformed},
	} {
		t.Run(tc.fixture, func(t *testing.T) {
			root := fakeProc(t, 4242, tc.fixture)
			got, err := Locate(root, 4242)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Locate = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestLocateNoProcess(t *testing.T) {
	got, err := Locate(t.TempDir(), 4242)
	if err != nil || got != (Info{}) {
		t.Fatalf("Locate(no such process) = %+v, %v; want not in a container", got, err)
	}
}

func TestLocateSelf(t *testing.T) {
	// This test runs outside any container; whatever the host's cgroups,
	// reading the real file works.
	if _, err := Locate("/proc", int32(os.Getpid())); err != nil {
		t.Fatal(err)
	}
}

func TestFromPathEdges(t *testing.T) {
	for _, tc := range []struct {
		path string
		want Info
	}{
		{"/", Info{}},
		{"", Info{}},
		// A pod UID after the container ID does not count.
		{"/" + podContainer + "/pod" + podUID, Info{ContainerID: podContainer}},
		// 63 or 65 hex digits are not a container ID.
		{"/docker/" + podContainer[1:], Info{}},
		{"/docker/" + podContainer + "0", Info{}},
		{"/a//b/" + podContainer + "/", Info{ContainerID: podContainer}},
	} {
		if got := fromPath(tc.path); got != tc.want {
			t.Errorf("fromPath(%q) = %+v, want %+v", tc.path, got, tc.want)
		}
	}
}

// fakeProc makes a proc root in which pid's cgroup and mountinfo files
// are testdata/<fixture>.cgroup and .mountinfo, those that exist.
func fakeProc(t *testing.T, pid int32, fixture string) string {
	t.Helper()
	root := t.TempDir()
	found := false
	for _, name := range []string{"cgroup", "mountinfo"} {
		b, err := os.ReadFile(filepath.Join("testdata", fixture+"."+name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		containertest.WriteFile(t, root, pid, name, string(b))
		found = true
	}
	if !found {
		t.Fatalf("no fixture %s", fixture)
	}
	return root
}

func TestLocateInvalidPID(t *testing.T) {
	for _, pid := range []int32{0, -1} {
		if _, err := Locate("/proc", pid); err == nil {
			t.Errorf("Locate(%d) accepted", pid)
		}
	}
}
