// Package container finds the container a process runs in, and the
// Kubernetes pod holding it, the way SPIRE's container locator does for
// its k8s and docker workload attestors: from the roots of the process's
// cgroup mounts (/proc/<pid>/mountinfo), else from its control groups
// (/proc/<pid>/cgroup). The container ID is the last 64-hex-digit word of
// a cgroup path, and the pod UID the last "pod<uid>" word before it (the
// underscores of the systemd driver's rendering turned back into dashes).
// cgroup v1 (one line per hierarchy, all must agree) and v2 are read,
// under the cgroupfs and systemd drivers and the docker, containerd,
// CRI-O and podman runtimes.
package container

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/signet-id/signet/internal/procfs"
)

// ErrConflict is returned when the cgroups of one process name two
// different containers or pods: the safe answer is none.
var ErrConflict = errors.New("container: cgroups name more than one container or pod")

var (
	// podUIDWord matches the pod UID as the kubelet writes it into cgroup
	// names: "pod<uid>" with the UID's dashes (cgroupfs driver) or
	// underscores (systemd driver, which reserves dashes).
	podUIDWord = regexp.MustCompile(`\bpod([[:xdigit:]]{8}[-_][[:xdigit:]]{4}[-_][[:xdigit:]]{4}[-_][[:xdigit:]]{4}[-_][[:xdigit:]]{12})\b`)
	// containerIDWord matches a container ID: 64 hex digits by convention
	// of every OCI runtime.
	containerIDWord = regexp.MustCompile(`\b([[:xdigit:]]{64})\b`)
)

// Info is where a process runs. An empty ContainerID means the process is
// not in a container (then PodUID is empty too); an empty PodUID with a
// ContainerID means the pod is not known from the cgroups (the process is
// in a container outside Kubernetes, or the cgroup namespace hides the
// pod's level).
type Info struct {
	PodUID      string
	ContainerID string
}

// Locate returns where the process pid runs, as SPIRE's locator: from
// the roots of its cgroup mounts (<procRoot>/<pid>/mountinfo: a
// container's /sys/fs/cgroup shows its own cgroup), else from
// <procRoot>/<pid>/cgroup (a workload whose mounts show nothing, as one in
// the agent's own pod). A process without these files (it exited, or
// /proc is not Linux's) is not in a container, as for SPIRE.
func Locate(procRoot string, pid int32) (Info, error) {
	if pid <= 0 {
		return Info{}, fmt.Errorf("container: invalid pid %d", pid)
	}
	dir := filepath.Join(procRoot, strconv.Itoa(int(pid)))
	mounts, err := procfs.ReadMountInfo(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return Info{}, fmt.Errorf("container: %w", err)
	}
	var roots []string
	for _, m := range mounts {
		if m.FSType == "cgroup" || m.FSType == "cgroup2" {
			roots = append(roots, m.Root)
		}
	}
	in, err := FromPaths(roots)
	if err != nil || in.ContainerID != "" {
		return in, err
	}
	cgs, err := procfs.ReadCgroup(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return Info{}, nil
	}
	if err != nil {
		return Info{}, fmt.Errorf("container: %w", err)
	}
	paths := make([]string, len(cgs))
	for i, cg := range cgs {
		paths[i] = cg.Path
	}
	return FromPaths(paths)
}

// FromPaths returns where a process runs from its cgroup paths (or its
// cgroup mounts' roots). A path that names a pod wins over one that names
// only a container (kind on a docker host lists the node container's own
// cgroup next to the pod's); otherwise every path that names a container
// must name the same one. Paths that name no container are skipped.
func FromPaths(paths []string) (Info, error) {
	var got Info
	for _, p := range paths {
		in := fromPath(p)
		switch {
		case in.ContainerID == "":
			continue
		case got.PodUID != "" && in.PodUID == "":
			continue
		case got.PodUID == "" && in.PodUID != "":
			got = in
			continue
		}
		if got.ContainerID != "" && (in.ContainerID != got.ContainerID || in.PodUID != got.PodUID) {
			return Info{}, fmt.Errorf("%w: %q and %q", ErrConflict, got.PodUID+"/"+got.ContainerID, in.PodUID+"/"+in.ContainerID)
		}
		got = in
	}
	return got, nil
}

// fromPath walks a cgroup path from its end: the last container ID, then
// the last pod UID before it (possibly in the same segment, as runtimes
// that join them with a colon write it).
func fromPath(p string) Info {
	rest, seg := pop(p)
	var in Info
	for seg != "" || rest != "" {
		if m := containerIDWord.FindStringSubmatchIndex(seg); m != nil {
			in.ContainerID = seg[m[2]:m[3]]
			seg = seg[:m[2]]
			break
		}
		rest, seg = pop(rest)
	}
	if in.ContainerID == "" {
		return Info{}
	}
	for seg != "" || rest != "" {
		if m := podUIDWord.FindStringSubmatch(seg); m != nil {
			in.PodUID = strings.ReplaceAll(m[1], "_", "-")
			break
		}
		rest, seg = pop(rest)
	}
	return in
}

// pop splits the last segment off a slash-separated path.
func pop(p string) (rest, seg string) {
	rest, seg = path.Split(p)
	return strings.TrimSuffix(rest, "/"), seg
}
