package scheduler

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkScheduleDispatch schedules b.N items (due already) into a fresh
// single-member embedded etcd from 64 goroutines, measures process memory
// with all of them scheduled, then starts one scheduler replica (no rate
// limit, no-op handler) and measures how fast it drains them: claim, run,
// delete. Run with -benchtime=100000x for the 100k figures in
// docs/scheduler.md.
func BenchmarkScheduleDispatch(b *testing.B) {
	for _, conc := range []int{DefaultConcurrency, 64} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			benchScheduleDispatch(b, conc)
		})
	}
}

func benchScheduleDispatch(b *testing.B, conc int) {
	ctx := context.Background()
	cli := startEtcd(b)
	var handled atomic.Int64
	s := newTestScheduler(b, cli, WithConcurrency(conc), WithSessionTTL(5*time.Second))
	s.Handle("svid", HandlerFunc(func(context.Context, Item) (*Item, error) {
		handled.Add(1)
		return nil, nil
	}))
	heapBefore := heapInUse()
	n := b.N
	due := time.Now().Add(-time.Minute)

	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	ids := make(chan int)
	var failed atomic.Int64
	for range 64 {
		wg.Go(func() {
			for i := range ids {
				it := Item{ID: fmt.Sprintf("svid/agent-%04d/entry-%07d", i%1000, i), Kind: "svid",
					DueAt: due.Add(time.Duration(i) * time.Microsecond), NotAfter: due.Add(time.Hour),
					Payload: []byte(`{"entry":"00000000-0000-0000-0000-000000000000","serial":"0123456789abcdef"}`)}
				if err := s.Schedule(ctx, it); err != nil {
					failed.Add(1)
				}
			}
		})
	}
	for i := range n {
		ids <- i
	}
	close(ids)
	wg.Wait()
	scheduleTime := time.Since(start)
	b.StopTimer()
	if f := failed.Load(); f > 0 {
		b.Fatalf("%d schedules failed", f)
	}
	heapWith := heapInUse()
	st, err := cli.Status(ctx, cli.Endpoints()[0])
	if err != nil {
		b.Fatal(err)
	}
	b.StartTimer()

	start = time.Now()
	stop := run(b, s)
	deadline := time.Now().Add(30 * time.Minute)
	for {
		if handled.Load() >= int64(n) {
			if c, err := s.Count(ctx); err == nil && c == 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("not drained: %d of %d handled", handled.Load(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	dispatchTime := time.Since(start)
	b.StopTimer()
	stop()

	b.ReportMetric(float64(n)/scheduleTime.Seconds(), "scheduled/s")
	b.ReportMetric(float64(n)/dispatchTime.Seconds(), "dispatched/s")
	b.ReportMetric(float64(heapWith)/(1<<20), "heap-MB")
	b.ReportMetric(float64(heapWith-min(heapBefore, heapWith))/(1<<20), "heap-delta-MB")
	b.ReportMetric(float64(st.DbSize)/(1<<20), "etcd-db-MB")
	b.ReportMetric(0, "ns/op")
}

// heapInUse returns the process's in-use heap after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
