package etcdserver

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// snapFiles counts the raft snapshot files of a member's data directory.
func snapFiles(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "member", "snap"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".snap") {
			n++
		}
	}
	return n
}

// The state settings reach the member: snapshot_count makes it snapshot
// to disk after that many writes (and not before, with the default), and
// revision compaction replaces periodic.
func TestStateSettingsReachTheMember(t *testing.T) {
	tests := []struct {
		name      string
		cfg       Config
		wantSnap  bool
		wantMode  string
		wantRet   string
		wantCatch uint64
	}{
		{"defaults", Config{}, false, embed.CompactorModePeriodic, "5m0s", singleCatchUpEntries},
		{"snapshot 50, revisions 1000", Config{SnapshotCount: 50, CompactionRevisions: 1000}, true, embed.CompactorModeRevision, "1000", singleCatchUpEntries},
		{"no compaction", Config{CompactionRetention: -1}, false, embed.CompactorModePeriodic, "0", singleCatchUpEntries},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cfg := tt.cfg
			cfg.Dir = t.TempDir()
			s, err := Start(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ec := s.etcd.Config()
			if ec.AutoCompactionMode != tt.wantMode || ec.AutoCompactionRetention != tt.wantRet || ec.SnapshotCatchUpEntries != tt.wantCatch {
				t.Errorf("compaction %s %q, catch-up %d; want %s %q, %d", ec.AutoCompactionMode, ec.AutoCompactionRetention, ec.SnapshotCatchUpEntries, tt.wantMode, tt.wantRet, tt.wantCatch)
			}
			for i := range 120 {
				if _, err := s.Client().Put(ctx, "/k/"+strconv.Itoa(i), "v"); err != nil {
					t.Fatal(err)
				}
			}
			// A snapshot is written by the apply loop after the write
			// that crosses the count; poll, bounded.
			got := false
			for i := 0; i < 100 && !got; i++ {
				got = snapFiles(t, cfg.Dir) > 0
				if !got && tt.wantSnap {
					time.Sleep(50 * time.Millisecond)
				}
				if !tt.wantSnap {
					break
				}
			}
			if got != tt.wantSnap {
				t.Errorf("snapshot on disk after 120 writes: %v, want %v", got, tt.wantSnap)
			}
		})
	}
}
