package rotationload

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"
)

var (
	full     = flag.Bool("full", false, "run the full measurement: 100 agents × 100 entries (10k SVIDs) and 1000 agents × 10 entries")
	reuseKey = flag.Bool("reuse-key", false, "simulated agents use one key and CSR per round instead of a fresh one per SVID")
	profile  = flag.String("rotation-cpuprofile", "", "write a CPU profile of each rotation (from the taint until done) to `prefix`-<agents>x<entries>.pprof")
)

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("SIGNET_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// shortDir returns a directory with a short path (Unix socket paths are
// limited to 108 bytes), removed after the test.
func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "sgrl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// TestForcedRotationLoad loads a real in-process server with simulated
// agents holding X.509-SVIDs, taints the authority that signed them and
// checks that every one was replaced by the new authority and none lost.
// The timings are logged (and tabulated in docs/rotation-load.md), never
// asserted.
func TestForcedRotationLoad(t *testing.T) {
	type size struct {
		agents, entries int
		timeout         time.Duration
		ceiling         time.Duration
	}
	sizes := []size{{agents: 10, entries: 50, timeout: 3 * time.Minute, ceiling: 500 * time.Millisecond}}
	if *full {
		sizes = []size{
			{agents: 100, entries: 100, timeout: 20 * time.Minute, ceiling: 3 * time.Second},
			{agents: 1000, entries: 10, timeout: 20 * time.Minute, ceiling: 3 * time.Second},
		}
	}
	var results []Result
	for _, sz := range sizes {
		t.Run(fmt.Sprintf("%dx%d", sz.agents, sz.entries), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), sz.timeout)
			defer cancel()
			var prof io.Writer
			if *profile != "" {
				f, err := os.Create(fmt.Sprintf("%s-%dx%d.pprof", *profile, sz.agents, sz.entries))
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				prof = f
			}
			res, err := Run(ctx, Config{
				CPUProfile:      prof,
				Agents:          sz.agents,
				EntriesPerAgent: sz.entries,
				ReuseKey:        *reuseKey,
				Dir:             shortDir(t),
				CeilingDuration: sz.ceiling,
				Logger:          testLogger(t),
			})
			if err != nil {
				t.Fatal(err)
			}
			results = append(results, res)
			workload, total := sz.agents*sz.entries, res.SVIDs()
			checks := []struct {
				what      string
				got, want int
			}{
				{"registration entries counted by the server", res.Entries, workload},
				{"attested agents counted by the server", res.AgentRecords, sz.agents},
				{"old authority's SVIDs counted before the taint (workload + agent)", res.OldBefore, total},
				{"SVIDs replaced", res.Replaced, total},
				{"old authority's SVIDs counted afterwards", res.OldAfter, 0},
				{"new authority's SVIDs counted afterwards", res.NewAfter, total},
				{"agents reporting only SVIDs of the new authority", res.Converged, sz.agents},
				{"workload SVIDs held", res.Held, workload},
				{"held SVIDs verified against the new authority alone, naming their entry's ID", res.HeldVerified, workload},
				{"entries without an SVID", res.Missing, 0},
				{"agent SVIDs verified against the new authority alone", res.OwnVerified, sz.agents},
				{"entry keys in etcd", res.Etcd.ByPrefix["/signet/example.org/entries/"], workload},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s: %d, want %d", c.what, c.got, c.want)
				}
			}
			if res.AgentRenewals < sz.agents {
				t.Errorf("agents renewed their own SVID %d times, want at least %d", res.AgentRenewals, sz.agents)
			}
			for group, n := range res.KEX {
				if group != "X25519MLKEM768" && n > 0 {
					t.Errorf("%d TLS handshakes negotiated %s, want only X25519MLKEM768", n, group)
				}
			}
			if res.KEX["X25519MLKEM768"] < 3*sz.agents {
				t.Errorf("%d X25519MLKEM768 handshakes, want at least 3 per agent (attest, session, session after renewal)", res.KEX["X25519MLKEM768"])
			}
			t.Logf("%d×%d: %d SVIDs replaced; server count reached 0 in %s (%.0f SVIDs/s; longest count call %s); every agent held only new SVIDs after %s; server count %s; ceiling %.0f signatures/s (%.0f before, %.0f after) on %d workers (ratio %.1f%%); CPU busy %.0f%%; notifications %v; heap loaded %s, after %s; etcd %d keys",
				sz.agents, sz.entries, res.Replaced, dur(res.ServerElapsed), res.ServerRate(), dur(res.PollMax), dur(res.AgentsElapsed), ProgressString(res.Progress),
				res.Ceiling().PerSecond(), res.CeilingBefore.PerSecond(), res.CeilingAfter.PerSecond(), res.Ceiling().Workers, 100*res.CeilingRatio(), 100*res.CPUBusy(), res.Notifications,
				mib(res.MemLoaded.HeapAlloc), mib(res.MemServer.HeapAlloc), res.Etcd.Keys)
		})
	}
	if len(results) > 0 {
		t.Log("\n" + strings.TrimSpace(MarkdownTables(results)))
	}
}
