package scheduler

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/signet-id/signet/clock/fakeclock"
	"github.com/signet-id/signet/server/etcdserver"
	clientv3 "go.etcd.io/etcd/client/v3"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// startEtcd starts a single embedded etcd member for the test.
func startEtcd(t testing.TB) *clientv3.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := etcdserver.Start(ctx, etcdserver.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv.Client()
}

func testPrefix(t testing.TB) string {
	return "/test/" + strings.ReplaceAll(t.Name(), "/", "_") + "/"
}

func newTestScheduler(t testing.TB, cli *clientv3.Client, opts ...Option) *Scheduler {
	t.Helper()
	base := []Option{
		WithPrefix(testPrefix(t)),
		WithSessionTTL(2 * time.Second),
		WithRate(0, 0),
		WithGaugeInterval(24 * time.Hour),
	}
	s, err := New(cli, append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// run starts s.Run and stops it at cleanup.
func run(t testing.TB, s *Scheduler) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("Run did not return")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitFor polls cond (real time) until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// drive advances the fake clock, at most step at a time and never past
// the next pending timer, whenever s is idle (a timer pending, no handler
// running), until done holds. It is bounded by maxSteps and a real-time
// timeout.
func drive(t testing.TB, clk *fakeclock.Clock, s *Scheduler, step time.Duration, maxSteps int, done func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for i := 0; !done(); i++ {
		if i >= maxSteps {
			t.Fatalf("not done after %d clock steps (clock at %v)", maxSteps, clk.Now().Sub(t0))
		}
		if err := clk.WaitForTimers(ctx, 1); err != nil {
			t.Fatalf("scheduler never waited on the clock: %v", err)
		}
		for s.Running() > 0 {
			if ctx.Err() != nil {
				t.Fatal("handlers never finished")
			}
			time.Sleep(time.Millisecond)
		}
		if done() {
			return
		}
		next, ok := clk.Next()
		if !ok {
			continue // the timer seen was just stopped; look again
		}
		clk.Advance(min(step, next.Sub(clk.Now())))
		// Give the woken loop a moment to act before judging idleness again.
		time.Sleep(time.Millisecond)
	}
}

// keysUnder lists the keys below prefix p (test inspection).
func keysUnder(t testing.TB, cli *clientv3.Client, p string) []string {
	t.Helper()
	resp, err := cli.Get(context.Background(), p, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		out[i] = strings.TrimPrefix(string(kv.Key), p)
	}
	return out
}

func clientOpGet(k string) clientv3.Op { return clientv3.OpGet(k) }

// counterValue reads a counter.
func counterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
