package store

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// BenchmarkEntryMemory loads n registration entries (8 per agent, one
// unix:uid selector each, as BenchmarkAuthorizedEntries) into the
// package's embedded etcd in transactions of 100, starts a store on them
// (list, then watch: the in-memory indexes) and reports, per entry, the
// heap the process holds afterwards (etcd's MVCC index and the store's
// indexes, both in this process) and the etcd database bytes; load-e/s is
// the raw transaction rate (not the entry API's).
//
//	nice go test -run '^$' -bench BenchmarkEntryMemory -benchtime 1x -count 3 ./server/store/
//	SIGNET_BENCH_ENTRIES=300000 nice go test -run '^$' -bench BenchmarkEntryMemory -benchtime 1x ./server/store/
func BenchmarkEntryMemory(b *testing.B) {
	for _, n := range benchEntryCounts() {
		b.Run("entries="+strconv.Itoa(n), func(b *testing.B) {
			for b.Loop() {
				entryMemory(b, n)
			}
		})
	}
}

func entryMemory(b *testing.B, n int) {
	ctx := testCtx(b)
	td := testTD(b)
	cli := testEtcd.Client()
	heap := func() float64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return float64(ms.HeapInuse)
	}
	dbSize := func() float64 {
		st, err := cli.Status(ctx, testEtcd.Endpoints()[0])
		if err != nil {
			b.Fatal(err)
		}
		return float64(st.DbSizeInUse)
	}
	s, err := New(cli, td)
	if err != nil {
		b.Fatal(err)
	}
	heap0, db0 := heap(), dbSize()
	start := time.Now()
	ops := make([]clientv3.Op, 0, 100)
	for i := range n {
		a := i / 8
		e := &types.Entry{Id: fmt.Sprintf("e%d", i), SpiffeId: id(td, fmt.Sprintf("/agent%d/w%d", a, i%8)),
			ParentId: id(td, fmt.Sprintf("/spire/agent/n%d", a)), Selectors: sels(fmt.Sprintf("unix:uid:%d", i%8))}
		v, err := encode(e)
		if err != nil {
			b.Fatal(err)
		}
		ops = append(ops, clientv3.OpPut(s.entryKey(e.Id), v))
		if len(ops) == cap(ops) || i == n-1 {
			if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
				b.Fatal(err)
			}
			ops = ops[:0]
		}
	}
	load := time.Since(start)
	if err := s.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if got, _ := s.CountEntries(ctx, EntryFilter{}); got != n {
		b.Fatalf("loaded %d entries, want %d", got, n)
	}
	b.ReportMetric((heap()-heap0)/float64(n), "heap-B/entry")
	b.ReportMetric((dbSize()-db0)/float64(n), "db-B/entry")
	b.ReportMetric(float64(n)/load.Seconds(), "load-e/s")
	if _, err := cli.Delete(ctx, s.entryKey(""), clientv3.WithPrefix()); err != nil {
		b.Fatal(err)
	}
}

// benchEntryCounts are BenchmarkEntryMemory's sizes: 10k and 100k, or the
// comma-separated SIGNET_BENCH_ENTRIES.
func benchEntryCounts() []int {
	v := os.Getenv("SIGNET_BENCH_ENTRIES")
	if v == "" {
		return []int{10000, 100000}
	}
	var ns []int
	for _, f := range strings.Split(v, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
			ns = append(ns, n)
		}
	}
	return ns
}
