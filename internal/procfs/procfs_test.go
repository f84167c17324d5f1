package procfs

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// statLine is a /proc/<pid>/stat line with comm and starttime filled in.
func statLine(comm, start string) string {
	return "1234 (" + comm + ") S 1 1 1 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 " + start + " 1 1\n"
}

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		name, in  string
		comm      string
		start     uint64
		wantError bool
	}{
		{name: "plain", in: statLine("sh", "98765"), comm: "sh", start: 98765},
		{name: "comm with spaces", in: statLine("a b c", "7"), comm: "a b c", start: 7},
		{name: "comm with parentheses", in: statLine("x) S 1 2 (y", "42"), comm: "x) S 1 2 (y", start: 42},
		{name: "comm ending in )", in: statLine("evil)", "5"), comm: "evil)", start: 5},
		{name: "empty comm", in: statLine("", "3"), comm: "", start: 3},
		{name: "no comm", in: "1234 sh S 1\n", wantError: true},
		{name: ") before (", in: "1 )x( " + strings.Repeat("0 ", 20), wantError: true},
		{name: "too few fields", in: "1 (x) S 1 2 3\n", wantError: true},
		{name: "non-numeric starttime", in: statLine("x", "later"), wantError: true},
		{name: "negative starttime", in: statLine("x", "-1"), wantError: true},
		{name: "empty", in: "", wantError: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := ParseStat([]byte(tc.in))
			if tc.wantError {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("ParseStat(%q) = %+v, %v; want ErrMalformed", tc.in, st, err)
				}
				return
			}
			if err != nil || st.Comm != tc.comm || st.StartTime != tc.start || st.State != "S" {
				t.Fatalf("ParseStat(%q) = %+v, %v; want comm %q start %d", tc.in, st, err, tc.comm, tc.start)
			}
		})
	}
}

func TestParseStatus(t *testing.T) {
	for _, tc := range []struct {
		name, in   string
		euid, egid uint32
		uids       []uint32
		groups     []uint32
		wantError  bool
	}{
		{name: "kernel", in: "Name:\tsh\nState:\tS (sleeping)\nUid:\t1000\t1001\t1002\t1003\nGid:\t5\t6\t7\t8\nGroups:\t4 24 27 \nVmRSS:\t   2048 kB\n",
			euid: 1001, egid: 6, uids: []uint32{1000, 1001, 1002, 1003}, groups: []uint32{4, 24, 27}},
		{name: "one id", in: "Uid: 1\nGid: 2\n", euid: 1, egid: 2, uids: []uint32{1}},
		{name: "no groups", in: "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\n", uids: []uint32{0, 0, 0, 0}},
		{name: "max id", in: "Uid:\t4294967295\nGid:\t0\n", euid: 4294967295, uids: []uint32{4294967295}},
		{name: "no Gid", in: "Uid:\t0\t0\t0\t0\n", wantError: true},
		{name: "empty Gid", in: "Uid: 1\nGid:\n", wantError: true},
		{name: "id over 32 bits", in: "Uid:\t4294967296\t1\nGid:\t1\n", wantError: true},
		{name: "negative id", in: "Uid:\t1\nGid:\t-1 2\n", wantError: true},
		{name: "bad group", in: "Uid:\t1\nGid:\t1\nGroups:\t1 x\n", wantError: true},
		{name: "bad VmRSS", in: "Uid:\t1\nGid:\t1\nVmRSS:\t12 MB\n", wantError: true},
		{name: "empty", in: "", wantError: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := ParseStatus([]byte(tc.in))
			if tc.wantError {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("ParseStatus(%q) = %+v, %v; want ErrMalformed", tc.in, st, err)
				}
				return
			}
			if err != nil || st.EffectiveUID() != tc.euid || st.EffectiveGID() != tc.egid ||
				!slices.Equal(st.UIDs, tc.uids) || !slices.Equal(st.Groups, tc.groups) {
				t.Fatalf("ParseStatus(%q) = %+v, %v", tc.in, st, err)
			}
		})
	}
}

func TestParseStatusRSS(t *testing.T) {
	st, err := ParseStatus([]byte("Uid:\t1\nGid:\t1\nVmRSS:\t   2048 kB\n"))
	if err != nil || st.RSS != 2048*1024 {
		t.Fatalf("ParseStatus: RSS %d, %v; want %d", st.RSS, err, 2048*1024)
	}
}

func TestReadFiles(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadStat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ReadStat of a missing file: %v, want ErrNotExist", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(statLine("w", "11")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "status"), []byte("Uid:\t3\t4\t5\t6\nGid:\t7\t8\t9\t10\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if st, err := ReadStat(dir); err != nil || st.StartTime != 11 {
		t.Fatalf("ReadStat: %+v, %v", st, err)
	}
	if st, err := ReadStatus("/proc/self"); err == nil && st.RSS == 0 {
		t.Errorf("ReadStatus(/proc/self): RSS 0")
	}
	if st, err := ReadStatus(dir); err != nil || st.EffectiveUID() != 4 || st.EffectiveGID() != 8 || st.RSS != 0 {
		t.Fatalf("ReadStatus: %+v, %v", st, err)
	}
	// Only MaxFileSize bytes are read: a huge comm leaves too few fields.
	big := statLine(strings.Repeat("x", MaxFileSize), "1")
	if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(big), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadStat(dir); !errors.Is(err, ErrMalformed) {
		t.Fatalf("ReadStat of an oversized file: %v, want ErrMalformed", err)
	}
}

// FuzzParse fuzzes both parsers with what a workload controls (its comm,
// via prctl PR_SET_NAME or its executable's name): no panic, and what is
// accepted is consistent.
func FuzzParse(f *testing.F) {
	f.Add([]byte(statLine("a) b", "99")), []byte("Name:\tsh\nUid:\t0\t0\t0\t0\nGid:\t5\t6\t7\t8\nGroups:\t1 2 3\n"))
	f.Add([]byte("1 (x) "+strings.Repeat("0 ", 19)+"7"), []byte("Uid: 1\nGid:\n"))
	f.Add([]byte("1 ()"), []byte("Uid:\t4294967296\t1\nGid:\t-1 2\n"))
	f.Add([]byte(")"), []byte(""))
	f.Fuzz(func(t *testing.T, stat, status []byte) {
		if st, err := ParseStat(stat); err == nil {
			if strings.ContainsAny(strconv.FormatUint(st.StartTime, 10), " )") || !strings.Contains(string(stat), "("+st.Comm+")") {
				t.Fatalf("ParseStat(%q) = %+v", stat, st)
			}
		}
		if st, err := ParseStatus(status); err == nil {
			if len(st.UIDs) == 0 || len(st.GIDs) == 0 {
				t.Fatalf("ParseStatus(%q) = %+v without IDs", status, st)
			}
			_, _ = st.EffectiveUID(), st.EffectiveGID()
		}
	})
}

func TestParseCgroup(t *testing.T) {
	for _, tc := range []struct {
		name, in  string
		want      []Cgroup
		wantError bool
	}{
		{name: "v2", in: "0::/system.slice/crio.service\n", want: []Cgroup{{"0", "", "/system.slice/crio.service"}}},
		{name: "v1", in: "4:cpu,cpuacct:/kubepods\n1:name=systemd:/\n", want: []Cgroup{{"4", "cpu,cpuacct", "/kubepods"}, {"1", "name=systemd", "/"}}},
		{name: "colon in path", in: "0::/a:b:c", want: []Cgroup{{"0", "", "/a:b:c"}}},
		{name: "empty", in: ""},
		{name: "two fields", in: "0:/x\n", wantError: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseCgroup([]byte(tc.in))
			if tc.wantError {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("err %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("ParseCgroup = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestReadCgroupSelf(t *testing.T) {
	cg, err := ReadCgroup("/proc/self")
	if err != nil || len(cg) == 0 {
		t.Fatalf("ReadCgroup(/proc/self) = %v, %v", cg, err)
	}
}

func TestParseMountInfo(t *testing.T) {
	for _, tc := range []struct {
		name, in  string
		want      []Mount
		wantError bool
	}{
		{name: "cgroup2", in: "1543 1542 0:32 /../../pod.slice/cri-containerd-x.scope /sys/fs/cgroup ro,nosuid - cgroup2 cgroup rw,nsdelegate\n",
			want: []Mount{{"/../../pod.slice/cri-containerd-x.scope", "/sys/fs/cgroup", "cgroup2"}}},
		{name: "optional fields", in: "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue\n",
			want: []Mount{{"/mnt1", "/mnt2", "ext3"}}},
		{name: "escaped space", in: `36 35 98:0 /a\040b /c\134d rw - ext4 /dev/x rw`,
			want: []Mount{{"/a b", `/c\d`, "ext4"}}},
		{name: "empty", in: ""},
		{name: "no separator", in: "36 35 98:0 / /mnt rw ext4 /dev/x rw\n", wantError: true},
		{name: "no fstype", in: "36 35 98:0 / /mnt rw -\n", wantError: true},
		{name: "too few fields", in: "36 35 - ext4 /dev/x rw\n", wantError: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseMountInfo([]byte(tc.in))
			if tc.wantError {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("err %v, want ErrMalformed", err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("ParseMountInfo = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
	if m, err := ReadMountInfo("/proc/self"); err != nil || len(m) == 0 {
		t.Fatalf("ReadMountInfo(/proc/self) = %v, %v", m, err)
	}
}
