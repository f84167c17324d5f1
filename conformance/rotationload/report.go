package rotationload

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/signet-id/signet/rotation/taint"
)

// MarkdownTables formats results as two Markdown tables: the rotation
// figures and the memory and etcd figures.
func MarkdownTables(rs []Result) string {
	var b strings.Builder
	b.WriteString("| agents × entries | SVIDs rotated | agent keys | initial load | server count → 0 | SVIDs/s | agents holding only new: all (p50 / p90) | longest count call | ECDSA P-256 ceiling | ratio | CPU busy | CPU per SVID (process) / per raw signature | load avg before / after |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rs {
		keys := "fresh per SVID"
		if r.ReuseKey {
			keys = "one per agent and round"
		}
		fmt.Fprintf(&b, "| %d × %d | %d (%d workload + %d agent) | %s | %s | %s | %.0f | %s (%s / %s) | %s | %.0f/s (%d workers) | %.1f%% | %.0f%% | %s / %s | %.1f / %.1f |\n",
			r.Agents, r.EntriesPerAgent, r.SVIDs(), r.Agents*r.EntriesPerAgent, r.Agents, keys,
			dur(r.LoadElapsed), dur(r.ServerElapsed), r.ServerRate(), dur(r.AgentsElapsed), dur(r.AgentsP50), dur(r.AgentsP90), dur(r.PollMax),
			r.Ceiling().PerSecond(), r.Ceiling().Workers, 100*r.CeilingRatio(), 100*r.CPUBusy(),
			micro(r.CPUPerSVID()), micro(r.Ceiling().CPUPerCertificate()), r.LoadBefore, r.LoadAfter)
	}
	b.WriteString("\n| agents × entries | registration entries | etcd keys | etcd DB (in use) | heap: server started | heap: loaded (server + etcd + agents) | heap: after, agents gone (server + etcd) | RSS loaded |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "| %d × %d | %d | %d (%s) | %s (%s) | %s | %s | %s | %s |\n",
			r.Agents, r.EntriesPerAgent, r.Entries, r.Etcd.Keys, prefixes(r.Etcd.ByPrefix),
			mib(uint64(r.Etcd.DBSize)), mib(uint64(r.Etcd.DBSizeInUse)),
			mib(r.MemBaseline.HeapAlloc), mib(r.MemLoaded.HeapAlloc), mib(r.MemServer.HeapAlloc), mib(r.MemLoaded.RSS))
	}
	return b.String()
}

func dur(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Millisecond).String()
	}
}

func micro(d time.Duration) string { return fmt.Sprintf("%d µs", d.Microseconds()) }

func mib(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// prefixes lists key counts by prefix, largest first.
func prefixes(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if m[a] != m[b] {
			return m[b] - m[a]
		}
		return strings.Compare(a, b)
	})
	var parts []string
	other := 0
	for i, k := range keys {
		if i < 6 {
			parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
		} else {
			other += m[k]
		}
	}
	if other > 0 {
		parts = append(parts, fmt.Sprintf("other %d", other))
	}
	return strings.Join(parts, ", ")
}

// ProgressString renders the server's count while waiting as
// "count@elapsed" steps.
func ProgressString(ps []taint.Progress) string {
	parts := make([]string, 0, len(ps))
	for _, p := range ps {
		parts = append(parts, fmt.Sprintf("%d@%s", p.Remaining, dur(p.Elapsed)))
	}
	return strings.Join(parts, " → ")
}
