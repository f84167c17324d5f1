// Package container finds the container a process runs in, and the
// Kubernetes pod holding it, from the process's control groups
// (/proc/<pid>/cgroup), the way SPIRE's container locator does for its k8s
// and docker workload attestors: the container ID is the last 64-hex-digit
// word of a cgroup path, and the pod UID the last "pod<uid>" word before it
// (with the underscores of the systemd driver's rendering turned back into
// dashes). Both cgroup v1 (one line per hierarchy, every line must agree)
// and v2 (one "0::" line) are read, under the cgroupfs and systemd drivers
// and the docker, containerd and CRI-O runtimes.
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

// Locate reads <procRoot>/<pid>/cgroup and returns where the process runs.
// A process without a cgroup file (it exited, or /proc is not Linux's) is
// not in a container, as for SPIRE.
func Locate(procRoot string, pid int32) (Info, error) {
	if pid <= 0 {
		return Info{}, fmt.Errorf("container: invalid pid %d", pid)
	}
	cgs, err := procfs.ReadCgroup(filepath.Join(procRoot, strconv.Itoa(int(pid))))
	if errors.Is(err, fs.ErrNotExist) {
		return Info{}, nil
	}
	if err != nil {
		return Info{}, fmt.Errorf("container: %w", err)
	}
	return FromCgroups(cgs)
}

// FromCgroups returns where a process with these cgroups runs. A cgroup
// that names a pod wins over one that names only a container (kind on a
// docker host lists the node container's own cgroup next to the pod's);
// otherwise every cgroup that names a container must name the same one.
func FromCgroups(cgs []procfs.Cgroup) (Info, error) {
	var got Info
	for _, cg := range cgs {
		in := fromPath(cg.Path)
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
