package fakeclock_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/signet-id/signet/clock"
	"github.com/signet-id/signet/clock/fakeclock"
)

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// recv returns the value waiting on ch, if any, without blocking.
func recv(ch <-chan time.Time) (time.Time, bool) {
	select {
	case v := <-ch:
		return v, true
	default:
		return time.Time{}, false
	}
}

func TestTimers(t *testing.T) {
	type step struct {
		advance time.Duration
		fired   []int // indexes of timers expected to fire in this step
	}
	tests := []struct {
		name    string
		timers  []time.Duration
		stop    []int // stopped before any step
		steps   []step
		pending int // timers left at the end
	}{
		{name: "fires when due, not before", timers: []time.Duration{time.Second},
			steps: []step{{999 * time.Millisecond, nil}, {time.Millisecond, []int{0}}}},
		{name: "non-positive fires at once", timers: []time.Duration{0, -time.Second},
			steps: []step{{0, []int{0, 1}}}},
		{name: "several in one advance", timers: []time.Duration{3 * time.Second, time.Second, 2 * time.Second},
			steps: []step{{2500 * time.Millisecond, []int{1, 2}}, {time.Second, []int{0}}}},
		{name: "stopped never fires", timers: []time.Duration{time.Second, 2 * time.Second}, stop: []int{0},
			steps: []step{{time.Hour, []int{1}}}},
		{name: "not yet due stays pending", timers: []time.Duration{time.Minute, time.Hour},
			steps: []step{{time.Minute, []int{0}}}, pending: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fakeclock.New(t0)
			var timers []clock.Timer
			var due []time.Time
			for _, d := range tt.timers {
				timers = append(timers, c.NewTimer(d))
				due = append(due, t0.Add(max(d, 0)))
			}
			for _, i := range tt.stop {
				if !timers[i].Stop() {
					t.Fatalf("Stop of pending timer %d = false", i)
				}
				if timers[i].Stop() {
					t.Fatalf("second Stop of timer %d = true", i)
				}
			}
			for n, s := range tt.steps {
				c.Advance(s.advance)
				want := map[int]bool{}
				for _, i := range s.fired {
					want[i] = true
				}
				for i, tm := range timers {
					v, ok := recv(tm.C())
					if ok != want[i] {
						t.Fatalf("step %d: timer %d fired = %v, want %v", n, i, ok, want[i])
					}
					if ok && !v.Equal(due[i]) {
						t.Fatalf("step %d: timer %d sent %v, want its deadline %v", n, i, v, due[i])
					}
				}
			}
			if got := c.Timers(); got != tt.pending {
				t.Fatalf("Timers = %d, want %d", got, tt.pending)
			}
		})
	}
}

func TestTimerReset(t *testing.T) {
	c := fakeclock.New(t0)
	tm := c.NewTimer(time.Second)
	if !tm.Reset(time.Minute) {
		t.Fatal("Reset of a pending timer = false")
	}
	c.Advance(time.Second)
	if _, ok := recv(tm.C()); ok {
		t.Fatal("fired at its old deadline")
	}
	c.Advance(time.Minute)
	if _, ok := recv(tm.C()); !ok {
		t.Fatal("did not fire at its new deadline")
	}
	// Fired and unread, then Reset: the stale value is dropped.
	c.Advance(time.Hour)
	if tm.Reset(time.Second) {
		t.Fatal("Reset of a fired timer = true")
	}
	c.Advance(time.Hour)
	tm.Reset(time.Second)
	if _, ok := recv(tm.C()); ok {
		t.Fatal("stale value after Reset")
	}
	c.Advance(time.Second)
	if v, ok := recv(tm.C()); !ok || !v.Equal(c.Now()) {
		t.Fatalf("after Reset fired %v, %v; want %v", v, ok, c.Now())
	}
	// Stop drains a fired, unread value too.
	tm.Reset(time.Second)
	c.Advance(time.Second)
	tm.Stop()
	if _, ok := recv(tm.C()); ok {
		t.Fatal("stale value after Stop")
	}
}

func TestTicker(t *testing.T) {
	tests := []struct {
		name    string
		period  time.Duration
		advance []time.Duration // each followed by a receive
		want    []bool          // a tick was waiting after each advance
	}{
		{"once per period", time.Second, []time.Duration{time.Second, time.Second, 500 * time.Millisecond, 500 * time.Millisecond}, []bool{true, true, false, true}},
		{"many periods at once drop to one tick", time.Second, []time.Duration{10 * time.Second, 0}, []bool{true, false}},
		{"short of a period", time.Minute, []time.Duration{59 * time.Second}, []bool{false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fakeclock.New(t0)
			tk := c.NewTicker(tt.period)
			defer tk.Stop()
			for i, d := range tt.advance {
				c.Advance(d)
				if _, ok := recv(tk.C()); ok != tt.want[i] {
					t.Fatalf("advance %d: tick = %v, want %v", i, ok, tt.want[i])
				}
			}
		})
	}
}

func TestLongAdvanceOverShortTicker(t *testing.T) {
	c := fakeclock.New(t0)
	tk := c.NewTicker(time.Millisecond)
	tm := c.NewTimer(12 * time.Hour)
	c.Advance(24 * time.Hour) // ~86M periods: must not step through each
	if _, ok := recv(tk.C()); !ok {
		t.Fatal("no tick")
	}
	if _, ok := recv(tm.C()); !ok {
		t.Fatal("timer passed over did not fire")
	}
	if next, ok := c.Next(); !ok || !next.After(t0.Add(24*time.Hour)) || next.After(t0.Add(24*time.Hour+time.Millisecond)) {
		t.Fatalf("next tick at %v, want within a period after the advance", next)
	}
}

func TestTickerTicksInTimeOrder(t *testing.T) {
	// A ticker every second and a timer at 2.5s: one Advance of 3s fires
	// the ticker at 1s (the read below drains it), then the timer at its
	// own deadline; the ticker's later ticks are dropped while unread.
	c := fakeclock.New(t0)
	tk := c.NewTicker(time.Second)
	tm := c.NewTimer(2500 * time.Millisecond)
	c.Advance(3 * time.Second)
	if v, ok := recv(tk.C()); !ok || !v.Equal(t0.Add(time.Second)) {
		t.Fatalf("ticker sent %v, %v; want the first tick at 1s", v, ok)
	}
	if v, ok := recv(tm.C()); !ok || !v.Equal(t0.Add(2500*time.Millisecond)) {
		t.Fatalf("timer sent %v, %v", v, ok)
	}
	if next, ok := c.Next(); !ok || !next.Equal(t0.Add(4*time.Second)) {
		t.Fatalf("Next = %v, %v; want the ticker at 4s", next, ok)
	}
}

func TestTickerResetAndStop(t *testing.T) {
	c := fakeclock.New(t0)
	tk := c.NewTicker(time.Second)
	c.Advance(500 * time.Millisecond)
	tk.Reset(time.Minute)
	c.Advance(time.Second)
	if _, ok := recv(tk.C()); ok {
		t.Fatal("ticked on the old period after Reset")
	}
	c.Advance(time.Minute)
	if _, ok := recv(tk.C()); !ok {
		t.Fatal("no tick on the new period")
	}
	c.Advance(time.Minute)
	tk.Stop()
	if _, ok := recv(tk.C()); ok {
		t.Fatal("stale tick after Stop")
	}
	c.Advance(time.Hour)
	if _, ok := recv(tk.C()); ok {
		t.Fatal("ticked after Stop")
	}
	if n := c.Timers(); n != 0 {
		t.Fatalf("Timers = %d after Stop", n)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("NewTicker(0) did not panic")
		}
	}()
	c.NewTicker(0)
}

func TestSet(t *testing.T) {
	c := fakeclock.New(t0)
	tm := c.NewTimer(time.Hour)
	c.Set(t0.Add(-time.Hour)) // backward: nothing fires
	if _, ok := recv(tm.C()); ok || !c.Now().Equal(t0.Add(-time.Hour)) {
		t.Fatalf("backward Set: fired %v, now %v", ok, c.Now())
	}
	c.Set(t0.Add(time.Hour))
	if _, ok := recv(tm.C()); !ok {
		t.Fatal("forward Set past the deadline did not fire")
	}
}

func TestWaitForTimers(t *testing.T) {
	c := fakeclock.New(t0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	slept := make(chan bool)
	go func() { slept <- clock.Sleep(ctx, c, time.Minute) }()
	if err := c.WaitForTimers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Minute)
	if !<-slept {
		t.Fatal("Sleep reported false after the clock passed its end")
	}
	done, stop := context.WithCancel(context.Background())
	stop()
	if err := c.WaitForTimers(done, 1); err == nil {
		t.Fatal("WaitForTimers returned nil with no timers and a cancelled context")
	}
}

// TestConcurrent runs sleepers, tickers and advancers at once; under
// -race it checks the locking, and every sleeper must wake.
func TestConcurrent(t *testing.T) {
	c := fakeclock.New(t0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const sleepers = 20
	var wg sync.WaitGroup
	for i := range sleepers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !clock.Sleep(ctx, c, time.Duration(i+1)*time.Second) {
				t.Error("sleeper woken by the context, not the clock")
			}
		}()
	}
	tk := c.NewTicker(time.Second)
	defer tk.Stop()
	go func() {
		for {
			select {
			case <-tk.C():
			case <-ctx.Done():
				return
			}
		}
	}()
	if err := c.WaitForTimers(ctx, sleepers+1); err != nil {
		t.Fatal(err)
	}
	var adv sync.WaitGroup
	for range 4 {
		adv.Add(1)
		go func() {
			defer adv.Done()
			for range 10 {
				c.Advance(time.Second)
				_ = c.Now()
			}
		}()
	}
	adv.Wait()
	wg.Wait()
	if got, want := c.Now(), t0.Add(40*time.Second); !got.Equal(want) {
		t.Fatalf("Now = %v, want %v", got, want)
	}
}
