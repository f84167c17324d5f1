package unix

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

func values(sel []*types.Selector) []string {
	out := make([]string, 0, len(sel))
	for _, s := range sel {
		if s.Type != SelectorType {
			panic("unexpected selector type " + s.Type)
		}
		out = append(out, s.Value)
	}
	return out
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// TestAttestSelf attests the test process itself through the real /proc.
func TestAttestSelf(t *testing.T) {
	a := New()
	sel, err := a.Attest(context.Background(), int32(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	got := values(sel)

	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"uid:" + strconv.Itoa(os.Geteuid()),
		"gid:" + strconv.Itoa(os.Getegid()),
		"path:" + exe,
		"sha256:" + sha256File(t, exe),
	}
	if name, err := lookupUser(strconv.Itoa(os.Geteuid())); err == nil {
		want = append(want, "user:"+name)
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("missing selector %q in %q", w, got)
		}
	}
}

// fakeProc is a procfs-shaped directory for one process.
type fakeProc struct {
	root string
	pid  int32
	dir  string
}

func newFakeProc(t *testing.T, pid int32, exe string) *fakeProc {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, strconv.Itoa(int(pid)))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := &fakeProc{root: root, pid: pid, dir: dir}
	p.writeStat(t, 4242)
	p.writeStatus(t, "1000", "1001", "27 1001 5000")
	if exe != "" {
		if err := os.Symlink(exe, filepath.Join(dir, "exe")); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func (p *fakeProc) writeStat(t *testing.T, start uint64) {
	t.Helper()
	// comm with spaces and a parenthesis, as a hostile process could name itself.
	line := fmt.Sprintf("%d (evil) name) S 1 1 1 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 %d 1000 100 18446744073709551615\n", p.pid, start)
	if err := os.WriteFile(filepath.Join(p.dir, "stat"), []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (p *fakeProc) writeStatus(t *testing.T, euid, egid, groups string) {
	t.Helper()
	s := fmt.Sprintf("Name:\tworkload\nState:\tS (sleeping)\nUid:\t0\t%s\t%s\t%s\nGid:\t0\t%s\t%s\t%s\nGroups:\t%s \n", euid, euid, euid, egid, egid, egid, groups)
	if err := os.WriteFile(filepath.Join(p.dir, "status"), []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func names(m map[string]string) func(string) (string, error) {
	return func(id string) (string, error) {
		if n, ok := m[id]; ok {
			return n, nil
		}
		return "", errors.New("unknown id")
	}
}

func writeExe(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "workload")
	if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAttestFakeProc(t *testing.T) {
	exe := writeExe(t, "#!/bin/true\n")
	sum := sha256.Sum256([]byte("#!/bin/true\n"))
	digest := hex.EncodeToString(sum[:])

	tests := []struct {
		name string
		opts []Option
		want []string
	}{
		{
			name: "all selectors",
			want: []string{
				"uid:1000", "user:alice", "gid:1001", "group:alice",
				"supplementary_gid:27", "supplementary_group:sudo",
				"supplementary_gid:1001", "supplementary_group:alice",
				"supplementary_gid:5000",
				"path:" + exe, "sha256:" + digest,
			},
		},
		{
			name: "no workload path",
			opts: []Option{WithWorkloadPath(false)},
			want: []string{
				"uid:1000", "user:alice", "gid:1001", "group:alice",
				"supplementary_gid:27", "supplementary_group:sudo",
				"supplementary_gid:1001", "supplementary_group:alice",
				"supplementary_gid:5000",
			},
		},
		{
			name: "hashing disabled",
			opts: []Option{WithSizeLimit(-1)},
			want: []string{
				"uid:1000", "user:alice", "gid:1001", "group:alice",
				"supplementary_gid:27", "supplementary_group:sudo",
				"supplementary_gid:1001", "supplementary_group:alice",
				"supplementary_gid:5000",
				"path:" + exe,
			},
		},
		{
			name: "executable over size limit",
			opts: []Option{WithSizeLimit(4)},
			want: []string{
				"uid:1000", "user:alice", "gid:1001", "group:alice",
				"supplementary_gid:27", "supplementary_group:sudo",
				"supplementary_gid:1001", "supplementary_group:alice",
				"supplementary_gid:5000",
				"path:" + exe,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newFakeProc(t, 77, exe)
			opts := append([]Option{
				WithProcRoot(p.root),
				WithUserLookup(names(map[string]string{"1000": "alice"})),
				WithGroupLookup(names(map[string]string{"1001": "alice", "27": "sudo"})),
			}, tt.opts...)
			sel, err := New(opts...).Attest(context.Background(), p.pid)
			if err != nil {
				t.Fatal(err)
			}
			if got := values(sel); !slices.Equal(got, tt.want) {
				t.Errorf("selectors\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestAttestUnreadableExecutableOmitsPath(t *testing.T) {
	p := newFakeProc(t, 78, filepath.Join(t.TempDir(), "gone"))
	sel, err := New(WithProcRoot(p.root), WithUserLookup(names(nil)), WithGroupLookup(names(nil))).
		Attest(context.Background(), p.pid)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"uid:1000", "gid:1001", "supplementary_gid:27", "supplementary_gid:1001", "supplementary_gid:5000"}
	if got := values(sel); !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestAttestNoProcess(t *testing.T) {
	root := t.TempDir()
	_, err := New(WithProcRoot(root)).Attest(context.Background(), 12345)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("got %v, want fs.ErrNotExist", err)
	}
	if _, err := New(WithProcRoot(root)).Attest(context.Background(), 0); err == nil {
		t.Fatal("pid 0 attested")
	}
}

// TestAttestDetectsProcessChange simulates the PID being reused (new start
// time) or the process changing user while attestation runs: the user
// lookup, which runs between the first and second reads of /proc, rewrites
// the fake process's files.
func TestAttestDetectsProcessChange(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(t *testing.T, p *fakeProc)
	}{
		{"pid reused", func(t *testing.T, p *fakeProc) { p.writeStat(t, 9999) }},
		{"uid changed", func(t *testing.T, p *fakeProc) { p.writeStatus(t, "0", "1001", "") }},
		{"process exited", func(t *testing.T, p *fakeProc) {
			if err := os.RemoveAll(p.dir); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newFakeProc(t, 79, "")
			lookup := func(string) (string, error) {
				tt.mutate(t, p)
				return "alice", nil
			}
			_, err := New(WithProcRoot(p.root), WithUserLookup(lookup), WithWorkloadPath(false)).
				Attest(context.Background(), p.pid)
			if !errors.Is(err, ErrProcessChanged) {
				t.Fatalf("got %v, want ErrProcessChanged", err)
			}
		})
	}
}

// TestAttestDetectsExec: the process executes another program between the
// first read of /proc and the executable's (user lookup runs in between);
// the path and sha256 would describe the new program, so attestation fails.
func TestAttestDetectsExec(t *testing.T) {
	for _, hashing := range []int64{DefaultSizeLimit, -1} {
		t.Run(fmt.Sprintf("size limit %d", hashing), func(t *testing.T) {
			first, second := writeExe(t, "first program"), writeExe(t, "second program")
			p := newFakeProc(t, 81, first)
			lookup := func(string) (string, error) {
				link := filepath.Join(p.dir, "exe")
				if err := os.Remove(link); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(second, link); err != nil {
					t.Fatal(err)
				}
				return "alice", nil
			}
			_, err := New(WithProcRoot(p.root), WithUserLookup(lookup), WithSizeLimit(hashing)).
				Attest(context.Background(), p.pid)
			if !errors.Is(err, ErrProcessChanged) {
				t.Fatalf("got %v, want ErrProcessChanged", err)
			}
		})
	}
}

func TestDigestCache(t *testing.T) {
	exe := writeExe(t, "version one")
	p := newFakeProc(t, 80, exe)
	a := New(WithProcRoot(p.root), WithUserLookup(names(nil)), WithGroupLookup(names(nil)))
	a.hashMax = 2

	digestOf := func() string {
		t.Helper()
		sel, err := a.Attest(context.Background(), p.pid)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range values(sel) {
			if d, ok := strings.CutPrefix(v, "sha256:"); ok {
				return d
			}
		}
		t.Fatal("no sha256 selector")
		return ""
	}

	if got, want := digestOf(), sha256File(t, exe); got != want {
		t.Fatalf("digest %s, want %s", got, want)
	}
	if got := digestOf(); got != sha256File(t, exe) {
		t.Fatalf("cached digest %s differs", got)
	}
	if n := len(a.hashes); n != 1 {
		t.Fatalf("cache holds %d digests, want 1", n)
	}

	// Rewriting the file (same size, new content) changes its key.
	if err := os.WriteFile(exe, []byte("version two"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got, want := digestOf(), sha256File(t, exe); got != want {
		t.Fatalf("digest after rewrite %s, want %s", got, want)
	}

	// The cache stays bounded.
	for i := range 5 {
		if err := os.WriteFile(exe, fmt.Appendf(nil, "version %d...", i), 0o755); err != nil {
			t.Fatal(err)
		}
		if got, want := digestOf(), sha256File(t, exe); got != want {
			t.Fatalf("digest %s, want %s", got, want)
		}
	}
	if n := len(a.hashes); n > 2 {
		t.Fatalf("cache holds %d digests, want at most 2", n)
	}
}
