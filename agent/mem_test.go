package agent_test

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"

	"github.com/signet-id/signet/agent"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc/codes"
)

var agentHeapProfile = flag.String("agentheap", "", "BenchmarkAgentHeap10kEntries writes the heap profile, agent synced, to this file")

// BenchmarkAgentHeap10kEntries reports the in-use heap (after GC) of a
// real server and an agent holding its 10,000 authorized entries and
// serving one workload; the server is in-process, so compare runs, and
// read the agent's share in the profile -agentheap writes (go tool pprof
// -top -inuse_space -focus signet/agent). Run with -benchtime=1x.
func BenchmarkAgentHeap10kEntries(b *testing.B) {
	const n = 10000
	for range b.N {
		e := startWith(b, nil, nil)
		admin := entryv1.NewEntryClient(e.admin)
		for start := 0; start < n; start += 1000 {
			var batch []*types.Entry
			for i := start; i < start+1000; i++ {
				batch = append(batch, &types.Entry{
					SpiffeId:  &types.SPIFFEID{TrustDomain: td.Name(), Path: fmt.Sprintf("/mem/%d", i)},
					ParentId:  &types.SPIFFEID{TrustDomain: td.Name(), Path: e.agentID.Path()},
					Selectors: []*types.Selector{uidSelector(), {Type: "unix", Value: fmt.Sprintf("gid:%d", 100000+i)}},
				})
			}
			resp, err := admin.BatchCreateEntry(testContext(b), &entryv1.BatchCreateEntryRequest{Entries: batch})
			if err != nil {
				b.Fatal(err)
			}
			for i, r := range resp.Results {
				if c := codes.Code(r.Status.Code); c != codes.OK {
					b.Fatalf("create entry %d: %v %s", start+i, c, r.Status.Message)
				}
			}
		}
		one := []*types.Selector{uidSelector(), {Type: "unix", Value: "gid:100007"}}
		e.waitFor(b, "10,000 entries held", func() bool {
			return entriesHeld(e.agent) == n
		})
		e.waitFor(b, "the workload's SVID", func() bool { return e.agent.Cache().FetchWorkloadUpdate(one).HasIdentity() })

		with := heapInuse()
		if *agentHeapProfile != "" {
			f, err := os.Create(*agentHeapProfile)
			if err != nil {
				b.Fatal(err)
			}
			if err := pprof.WriteHeapProfile(f); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
		b.ReportMetric(float64(with)/(1<<20), "heap-MiB")
	}
}

// entriesHeld counts the entries in a's cache (every one of them matches
// a workload holding all the benchmark's selectors).
func entriesHeld(a *agent.Agent) int {
	sels := []*types.Selector{uidSelector()}
	for i := range 10000 {
		sels = append(sels, &types.Selector{Type: "unix", Value: fmt.Sprintf("gid:%d", 100000+i)})
	}
	return len(a.Cache().MatchingEntries(sels))
}

func heapInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
