// Package procfs parses the per-process files of Linux's /proc that Signet
// reads to identify a peer process: <pid>/stat (its start time, which
// tells a process from a later one with the same pid) and <pid>/status
// (its user and group IDs; its resident set size for the measurement
// tools), <pid>/cgroup and <pid>/mountinfo (its control groups and its
// cgroup mounts, where the container workload attestors find its
// container).
package procfs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// MaxFileSize bounds the bytes read from one /proc file.
const MaxFileSize = 64 << 10

// ErrMalformed is wrapped by the errors of ParseStat and ParseStatus.
var ErrMalformed = errors.New("procfs: malformed")

// Stat holds the fields of /proc/<pid>/stat that Signet uses.
type Stat struct {
	// Comm is field 2 without its parentheses. The process chooses it
	// (prctl PR_SET_NAME, its executable's name), so it may hold spaces
	// and parentheses; fields are counted after its last ')'.
	Comm string
	// State is field 3 (R, S, D, Z, ...).
	State string
	// StartTime is field 22: when the process started, in clock ticks
	// after boot.
	StartTime uint64
}

// ParseStat parses the contents of /proc/<pid>/stat.
func ParseStat(b []byte) (Stat, error) {
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return Stat{}, fmt.Errorf("%w stat: no comm field", ErrMalformed)
	}
	fields := strings.Fields(string(b[end+1:]))
	const startTime = 22 - 3 // fields[0] is field 3
	if len(fields) <= startTime {
		return Stat{}, fmt.Errorf("%w stat: %d fields after comm, want at least %d", ErrMalformed, len(fields), startTime+1)
	}
	st, err := strconv.ParseUint(fields[startTime], 10, 64)
	if err != nil {
		return Stat{}, fmt.Errorf("%w stat: starttime %q", ErrMalformed, fields[startTime])
	}
	return Stat{Comm: string(b[open+1 : end]), State: fields[0], StartTime: st}, nil
}

// Status holds the lines of /proc/<pid>/status that Signet uses.
type Status struct {
	Name string
	// UIDs and GIDs are as listed: real, effective, saved set, filesystem.
	UIDs, GIDs []uint32
	// Groups are the supplementary group IDs.
	Groups []uint32
	// RSS is the resident set size in bytes (VmRSS; 0 where the kernel
	// lists none, as for kernel threads).
	RSS uint64
}

// EffectiveUID returns the effective UID (the only one listed, if one).
func (s Status) EffectiveUID() uint32 { return effective(s.UIDs) }

// EffectiveGID returns the effective GID (the only one listed, if one).
func (s Status) EffectiveGID() uint32 { return effective(s.GIDs) }

func effective(ids []uint32) uint32 {
	if len(ids) > 1 {
		return ids[1]
	}
	return ids[0] // ParseStatus refuses an empty list
}

// ParseStatus parses the contents of /proc/<pid>/status. The Uid and Gid
// lines must be present with at least one ID each; every ID must be a
// 32-bit decimal number.
func ParseStatus(b []byte) (Status, error) {
	var st Status
	var haveUID, haveGID bool
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var err error
		switch key {
		case "Name":
			st.Name = strings.TrimSpace(value)
		case "Uid":
			st.UIDs, err = parseIDs(key, value)
			haveUID = true
		case "Gid":
			st.GIDs, err = parseIDs(key, value)
			haveGID = true
		case "Groups":
			st.Groups, err = parseIDs(key, value)
		case "VmRSS":
			st.RSS, err = parseKB(key, value)
		}
		if err != nil {
			return Status{}, err
		}
	}
	if err := sc.Err(); err != nil {
		return Status{}, fmt.Errorf("%w status: %w", ErrMalformed, err)
	}
	if !haveUID || !haveGID || len(st.UIDs) == 0 || len(st.GIDs) == 0 {
		return Status{}, fmt.Errorf("%w status: no Uid or Gid", ErrMalformed)
	}
	return st, nil
}

func parseIDs(key, value string) ([]uint32, error) {
	fields := strings.Fields(value)
	ids := make([]uint32, 0, len(fields))
	for _, f := range fields {
		n, err := strconv.ParseUint(f, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%w status: %s: %q is not an ID", ErrMalformed, key, f)
		}
		ids = append(ids, uint32(n))
	}
	return ids, nil
}

// parseKB parses a "<n> kB" value into bytes.
func parseKB(key, value string) (uint64, error) {
	f := strings.Fields(value)
	if len(f) != 2 || f[1] != "kB" {
		return 0, fmt.Errorf("%w status: %s: %q is not a size in kB", ErrMalformed, key, value)
	}
	kb, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil || kb > (1<<64-1)/1024 {
		return 0, fmt.Errorf("%w status: %s: %q is not a size in kB", ErrMalformed, key, value)
	}
	return kb * 1024, nil
}

// ReadStat reads and parses <dir>/stat, dir being /proc/<pid>.
func ReadStat(dir string) (Stat, error) {
	b, err := readFile(filepath.Join(dir, "stat"))
	if err != nil {
		return Stat{}, err
	}
	st, err := ParseStat(b)
	if err != nil {
		return Stat{}, fmt.Errorf("%s: %w", filepath.Join(dir, "stat"), err)
	}
	return st, nil
}

// ReadStatus reads and parses <dir>/status, dir being /proc/<pid>.
func ReadStatus(dir string) (Status, error) {
	b, err := readFile(filepath.Join(dir, "status"))
	if err != nil {
		return Status{}, err
	}
	st, err := ParseStatus(b)
	if err != nil {
		return Status{}, fmt.Errorf("%s: %w", filepath.Join(dir, "status"), err)
	}
	return st, nil
}

// readFile reads at most MaxFileSize bytes of path. Errors keep the
// *fs.PathError of os.Open, so callers can test for fs.ErrNotExist.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize))
	if err != nil {
		return nil, fmt.Errorf("procfs: read %s: %w", path, err)
	}
	return b, nil
}

// Cgroup is one line of /proc/<pid>/cgroup: "hierarchy-ID:controllers:path".
// Under cgroup v2 (the unified hierarchy) the line is "0::<path>"; under
// v1 each hierarchy has its own line, named by its controllers
// ("cpu,cpuacct") or by "name=systemd".
type Cgroup struct {
	HierarchyID, Controllers, Path string
}

// ParseCgroup parses the contents of /proc/<pid>/cgroup. Every non-empty
// line must have at least three colon-separated fields (the path may hold
// colons).
func ParseCgroup(b []byte) ([]Cgroup, error) {
	var out []Cgroup
	for line := range strings.SplitSeq(string(b), "\n") {
		if line == "" {
			continue
		}
		f := strings.SplitN(line, ":", 3)
		if len(f) < 3 {
			return nil, fmt.Errorf("%w cgroup: line %q has %d colon-separated fields, want 3", ErrMalformed, line, len(f))
		}
		out = append(out, Cgroup{HierarchyID: f[0], Controllers: f[1], Path: f[2]})
	}
	return out, nil
}

// ReadCgroup reads and parses <dir>/cgroup, dir being /proc/<pid>.
func ReadCgroup(dir string) ([]Cgroup, error) {
	b, err := readFile(filepath.Join(dir, "cgroup"))
	if err != nil {
		return nil, err
	}
	cg, err := ParseCgroup(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "cgroup"), err)
	}
	return cg, nil
}

// Mount is one line of /proc/<pid>/mountinfo, the fields Signet reads.
type Mount struct {
	// Root is the directory of the mounted file system that is the mount's
	// root (field 4): for a cgroup file system, the cgroup the mount shows.
	Root string
	// MountPoint is where it is mounted (field 5).
	MountPoint string
	// FSType is the file system type ("cgroup", "cgroup2", "tmpfs", ...).
	FSType string
}

// ParseMountInfo parses the contents of /proc/<pid>/mountinfo (proc(5)):
// "id parent major:minor root mount-point options [optional...] - fstype
// source super-options", with spaces, tabs, newlines and backslashes in
// paths escaped in octal.
func ParseMountInfo(b []byte) ([]Mount, error) {
	var out []Mount
	for line := range strings.SplitSeq(string(b), "\n") {
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		sep := slices.Index(f, "-")
		if sep < 6 || sep+1 >= len(f) {
			return nil, fmt.Errorf("%w mountinfo: line %q", ErrMalformed, line)
		}
		out = append(out, Mount{Root: unescapeOctal(f[3]), MountPoint: unescapeOctal(f[4]), FSType: f[sep+1]})
	}
	return out, nil
}

// unescapeOctal undoes the kernel's \ooo escapes in mountinfo paths.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// ReadMountInfo reads and parses <dir>/mountinfo, dir being /proc/<pid>.
func ReadMountInfo(dir string) ([]Mount, error) {
	b, err := readFile(filepath.Join(dir, "mountinfo"))
	if err != nil {
		return nil, err
	}
	m, err := ParseMountInfo(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "mountinfo"), err)
	}
	return m, nil
}
