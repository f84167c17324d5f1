package scheduler

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/signet-id/signet/clock/fakeclock"
	"github.com/signet-id/signet/rotation/renewal"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// execLog records handler executions (concurrency-safe).
type execLog struct {
	mu   sync.Mutex
	runs []execRun
}

type execRun struct {
	Item
	At  time.Time // scheduler clock when the handler ran
	Rev int64     // leader term revision
}

func (l *execLog) add(ctx context.Context, now time.Time, it Item) {
	term, _ := TermFrom(ctx)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.runs = append(l.runs, execRun{Item: it, At: now, Rev: term.Rev})
}

func (l *execLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.runs)
}

func (l *execLog) snapshot() []execRun {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.runs)
}

func TestDispatchInDueOrder(t *testing.T) {
	ctx := context.Background()
	cli := startEtcd(t)
	clk := fakeclock.New(t0)
	s := newTestScheduler(t, cli, WithClock(clk), WithConcurrency(1))
	var log execLog
	s.Handle("svid", HandlerFunc(func(ctx context.Context, it Item) (*Item, error) {
		log.add(ctx, clk.Now(), it)
		return nil, nil
	}))

	// 40 items, due every 250ms over 10s, scheduled shuffled; pairs share a
	// due time (ordered by ID).
	var want []string
	var items []Item
	for i := range 40 {
		it := Item{ID: fmt.Sprintf("svid/%02d", i), Kind: "svid", DueAt: t0.Add(time.Duration(i/2+1) * 500 * time.Millisecond)}
		items = append(items, it)
		want = append(want, it.ID)
	}
	rand.New(rand.NewPCG(3, 4)).Shuffle(len(items), func(i, j int) { items[i], items[j] = items[j], items[i] })
	for _, it := range items {
		if err := s.Schedule(ctx, it); err != nil {
			t.Fatal(err)
		}
	}
	run(t, s)
	drive(t, clk, s, time.Second, 100, func() bool { return log.len() == 40 })

	runs := log.snapshot()
	var got []string
	for _, r := range runs {
		got = append(got, r.ID)
		if r.At.Before(r.DueAt) {
			t.Errorf("%s ran at %v, before its due time %v", r.ID, r.At.Sub(t0), r.DueAt.Sub(t0))
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("execution order\n got %q\nwant %q", got, want)
	}
	waitFor(t, 10*time.Second, "items deleted", func() bool {
		n, err := s.Count(ctx)
		return err == nil && n == 0
	})
	if keys := keysUnder(t, cli, testPrefix(t)+"inflight/"); len(keys) != 0 {
		t.Fatalf("claims left: %q", keys)
	}
}

func TestHandlerReschedulesWithJitter(t *testing.T) {
	ctx := context.Background()
	clk := fakeclock.New(t0)
	s := newTestScheduler(t, startEtcd(t), WithClock(clk))
	const life = time.Hour
	rng := rand.NewChaCha8([32]byte{9})
	var log execLog
	s.Handle("svid", HandlerFunc(func(ctx context.Context, it Item) (*Item, error) {
		now := clk.Now()
		log.add(ctx, now, it)
		if log.len() == 5 {
			return nil, nil
		}
		// "Renew": a new credential valid for an hour, due again at 50–80%.
		return &Item{DueAt: renewal.Default().Jittered(now, now.Add(life), rng), NotAfter: now.Add(life), Payload: []byte("renewed")}, nil
	}))
	if err := s.Schedule(ctx, Item{ID: "svid/a/b", Kind: "svid", DueAt: t0, NotAfter: t0.Add(life)}); err != nil {
		t.Fatal(err)
	}
	run(t, s)
	drive(t, clk, s, time.Minute, 1000, func() bool { return log.len() == 5 })

	runs := log.snapshot()
	for i, r := range runs {
		if r.Kind != "svid" || r.Attempt != 0 {
			t.Errorf("run %d: kind %q attempt %d", i, r.Kind, r.Attempt)
		}
		if r.At.Before(r.DueAt) {
			t.Errorf("run %d at %v before due %v", i, r.At, r.DueAt)
		}
		if i == 0 {
			continue
		}
		prev := runs[i-1].At
		lo, hi := prev.Add(life/2), prev.Add(life*8/10)
		if r.DueAt.Before(lo) || r.DueAt.After(hi) {
			t.Errorf("run %d due %v, outside [50%%, 80%%] of the lifetime issued at %v", i, r.DueAt.Sub(prev), prev.Sub(t0))
		}
		if string(r.Payload) != "renewed" || !r.NotAfter.Equal(prev.Add(life)) {
			t.Errorf("run %d: payload %q not_after %v", i, r.Payload, r.NotAfter)
		}
	}
	waitFor(t, 10*time.Second, "item deleted", func() bool {
		_, err := s.Get(ctx, "svid/a/b")
		return errors.Is(err, ErrNotFound)
	})
}

func TestRetryWithCappedBackoff(t *testing.T) {
	ctx := context.Background()
	clk := fakeclock.New(t0)
	reg := prometheus.NewRegistry()
	const base, limit = time.Second, 4 * time.Second
	s := newTestScheduler(t, startEtcd(t), WithClock(clk), WithBackoff(base, limit), WithRegisterer(reg))
	var log execLog
	s.Handle("ca", HandlerFunc(func(ctx context.Context, it Item) (*Item, error) {
		log.add(ctx, clk.Now(), it)
		switch it.Attempt {
		case 0, 1, 2:
			return nil, errors.New("upstream CA unavailable")
		case 3:
			panic("handler bug")
		case 4:
			return &Item{Kind: "", DueAt: time.Time{}}, nil // invalid next: retried too
		}
		return nil, nil
	}))
	if err := s.Schedule(ctx, Item{ID: "ca/x509/1", Kind: "ca", DueAt: t0}); err != nil {
		t.Fatal(err)
	}
	run(t, s)
	drive(t, clk, s, 500*time.Millisecond, 200, func() bool { return log.len() == 6 })

	runs := log.snapshot()
	for i, r := range runs {
		if r.Attempt != i {
			t.Fatalf("run %d has Attempt %d", i, r.Attempt)
		}
		if r.At.Before(r.DueAt) {
			t.Errorf("run %d at %v before due %v", i, r.At, r.DueAt)
		}
		if i > 0 {
			// The retry is due Backoff(attempt) after the failed run.
			if want := runs[i-1].At.Add(Backoff(i, base, limit)); !r.DueAt.Equal(want) {
				t.Errorf("retry %d due %v after the failure, want %v", i, r.DueAt.Sub(runs[i-1].At), Backoff(i, base, limit))
			}
		}
	}
	if got := runs[5].DueAt.Sub(runs[4].At); got != limit {
		t.Errorf("fifth retry delay %v, want the cap %v", got, limit)
	}
	waitFor(t, 10*time.Second, "item deleted", func() bool {
		_, err := s.Get(ctx, "ca/x509/1")
		return errors.Is(err, ErrNotFound)
	})
	if got := counterValue(t, s.m.dispatched.WithLabelValues("ca", "retry")); got != 5 {
		t.Errorf("dispatched{result=retry} = %v, want 5", got)
	}
	if got := counterValue(t, s.m.dispatched.WithLabelValues("ca", "done")); got != 1 {
		t.Errorf("dispatched{result=done} = %v, want 1", got)
	}
}

func TestUnknownKindIsRetried(t *testing.T) {
	ctx := context.Background()
	clk := fakeclock.New(t0)
	s := newTestScheduler(t, startEtcd(t), WithClock(clk), WithBackoff(time.Minute, time.Hour))
	if err := s.Schedule(ctx, Item{ID: "x/1", Kind: "nobody", DueAt: t0}); err != nil {
		t.Fatal(err)
	}
	run(t, s)
	waitFor(t, 10*time.Second, "retry scheduled", func() bool {
		it, err := s.Get(ctx, "x/1")
		return err == nil && it.Attempt == 1 && it.DueAt.Equal(t0.Add(time.Minute))
	})
}

func TestRateLimitOnFakeClock(t *testing.T) {
	ctx := context.Background()
	clk := fakeclock.New(t0)
	const ratePerSec, burst, n = 10, 2, 50
	s := newTestScheduler(t, startEtcd(t), WithClock(clk), WithRate(ratePerSec, burst), WithConcurrency(4))
	var log execLog
	s.Handle("svid", HandlerFunc(func(ctx context.Context, it Item) (*Item, error) {
		log.add(ctx, clk.Now(), it)
		return nil, nil
	}))
	for i := range n {
		if err := s.Schedule(ctx, Item{ID: fmt.Sprintf("svid/%03d", i), Kind: "svid", DueAt: t0}); err != nil {
			t.Fatal(err)
		}
	}
	run(t, s)
	drive(t, clk, s, 100*time.Millisecond, 1000, func() bool { return log.len() == n })

	runs := log.snapshot()
	perSecond := map[int]int{}
	for _, r := range runs {
		perSecond[int(r.At.Sub(t0)/time.Second)]++
	}
	t.Logf("dispatched per fake second: %v", perSecond)
	for sec, c := range perSecond {
		if c > ratePerSec+burst {
			t.Errorf("second %d: %d dispatches > rate %d + burst %d", sec, c, ratePerSec, burst)
		}
	}
	// Token bucket: any k consecutive dispatches span at least (k-burst)/rate.
	for i := range runs {
		for j := i + burst; j < len(runs); j++ {
			k := j - i + 1
			min := time.Duration(k-burst) * time.Second / ratePerSec
			if span := runs[j].At.Sub(runs[i].At); span < min {
				t.Fatalf("dispatches %d..%d span %v < %v", i, j, span, min)
			}
		}
	}
	drain := runs[n-1].At.Sub(t0)
	if want := time.Duration(n-burst) * time.Second / ratePerSec; drain < want || drain > want+time.Second {
		t.Errorf("backlog of %d drained in %v, want about %v", n, drain, want)
	}
}

func TestScheduleEarlierWakesSleepingLeader(t *testing.T) {
	ctx := context.Background()
	clk := fakeclock.New(t0)
	s := newTestScheduler(t, startEtcd(t), WithClock(clk))
	var log execLog
	s.Handle("k", HandlerFunc(func(ctx context.Context, it Item) (*Item, error) {
		log.add(ctx, clk.Now(), it)
		return nil, nil
	}))
	if err := s.Schedule(ctx, Item{ID: "late", Kind: "k", DueAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	run(t, s)
	waitFor(t, 10*time.Second, "leader sleeping until the late item", func() bool {
		next, ok := clk.Next()
		return ok && next.Equal(t0.Add(time.Hour))
	})

	// Due earlier than the sleep: the loop re-plans its sleep.
	if err := s.Schedule(ctx, Item{ID: "sooner", Kind: "k", DueAt: t0.Add(10 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "leader sleeping until the sooner item", func() bool {
		next, ok := clk.Next()
		return ok && next.Equal(t0.Add(10*time.Second))
	})
	// Due now: runs without the clock moving.
	if err := s.Schedule(ctx, Item{ID: "now", Kind: "k", DueAt: t0}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "due item run", func() bool { return log.len() == 1 })
	if r := log.snapshot()[0]; r.ID != "now" || !r.At.Equal(t0) {
		t.Fatalf("ran %q at %v", r.ID, r.At)
	}
	drive(t, clk, s, time.Hour, 10, func() bool { return log.len() == 3 })
	if r := log.snapshot(); r[1].ID != "sooner" || r[2].ID != "late" {
		t.Fatalf("runs %v", r)
	}
}

// blockingHandler blocks each run until released.
type blockingHandler struct {
	started chan Item
	release chan *Item
}

func (h *blockingHandler) Handle(ctx context.Context, it Item) (*Item, error) {
	h.started <- it
	return <-h.release, nil
}

func TestRescheduleOrCancelWhileRunning(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Scheduler, Item) error
		runs   int // total runs expected
	}{
		{"reschedule supersedes the run", func(s *Scheduler, it Item) error {
			it.Payload = []byte("v2")
			return s.Schedule(context.Background(), it)
		}, 2},
		{"cancel discards the run", func(s *Scheduler, it Item) error {
			return s.Cancel(context.Background(), it.ID)
		}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			clk := fakeclock.New(t0)
			cli := startEtcd(t)
			s := newTestScheduler(t, cli, WithClock(clk))
			h := &blockingHandler{started: make(chan Item, 2), release: make(chan *Item, 2)}
			s.Handle("k", h)
			it := Item{ID: "agent/1", Kind: "k", DueAt: t0, Payload: []byte("v1")}
			if err := s.Schedule(ctx, it); err != nil {
				t.Fatal(err)
			}
			run(t, s)
			first := <-h.started
			if string(first.Payload) != "v1" {
				t.Fatalf("first run payload %q", first.Payload)
			}
			if err := tc.change(s, it); err != nil {
				t.Fatal(err)
			}
			// The first run asks to be rescheduled in a day; that result
			// must be discarded.
			h.release <- &Item{DueAt: t0.Add(24 * time.Hour)}
			if tc.runs == 2 {
				second := <-h.started
				if string(second.Payload) != "v2" {
					t.Fatalf("second run payload %q, want v2", second.Payload)
				}
				h.release <- nil
			}
			waitFor(t, 10*time.Second, "item gone", func() bool {
				n, err := s.Count(ctx)
				return err == nil && n == 0
			})
			waitFor(t, 10*time.Second, "claims released", func() bool {
				return len(keysUnder(t, cli, testPrefix(t)+"inflight/")) == 0 && s.Running() == 0
			})
			if got := counterValue(t, s.m.dispatched.WithLabelValues("k", "superseded")); got != 1 {
				t.Errorf("dispatched{result=superseded} = %v, want 1", got)
			}
			select {
			case it := <-h.started:
				t.Fatalf("unexpected run %+v", it)
			default:
			}
		})
	}
}

func TestHandlerTermFencesItsOwnWrites(t *testing.T) {
	ctx := context.Background()
	cli := startEtcd(t)
	clk := fakeclock.New(t0)
	s := newTestScheduler(t, cli, WithClock(clk))
	done := make(chan error, 1)
	s.Handle("ca", HandlerFunc(func(hctx context.Context, it Item) (*Item, error) {
		term, ok := TermFrom(hctx)
		if !ok {
			done <- errors.New("no term in handler context")
			return nil, nil
		}
		cur, _ := s.CurrentTerm()
		if term != cur {
			done <- fmt.Errorf("handler term %+v, scheduler term %+v", term, cur)
			return nil, nil
		}
		resp, err := cli.Txn(hctx).If(term.Cmp()).Then(clientv3.OpPut("/test/activated", it.ID)).Commit()
		if err == nil && !resp.Succeeded {
			err = errors.New("fenced write failed under the current term")
		}
		done <- err
		return nil, err
	}))
	if err := s.Schedule(ctx, Item{ID: "ca/x509/next", Kind: "ca", DueAt: t0}); err != nil {
		t.Fatal(err)
	}
	run(t, s)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
