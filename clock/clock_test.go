package clock_test

import (
	"context"
	"testing"
	"time"

	"github.com/signet-id/signet/clock"
	"github.com/signet-id/signet/clock/fakeclock"
)

func TestReal(t *testing.T) {
	c := clock.Or(nil)
	before := time.Now()
	if now := c.Now(); now.Before(before) {
		t.Fatalf("Now %v before %v", now, before)
	}
	tm := c.NewTimer(time.Millisecond)
	<-tm.C()
	if tm.Stop() {
		t.Fatal("Stop of a fired timer = true")
	}
	tk := c.NewTicker(time.Millisecond)
	<-tk.C()
	tk.Reset(time.Hour)
	tk.Stop()
}

func TestSleep(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		d    time.Duration
		want bool
	}{
		{"zero duration", context.Background(), 0, true},
		{"negative duration", context.Background(), -time.Second, true},
		{"zero duration, context ended", cancelled, 0, false},
		{"context ended before the clock", cancelled, time.Hour, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fakeclock.New(t0)
			if got := clock.Sleep(tt.ctx, c, tt.d); got != tt.want {
				t.Fatalf("Sleep = %v, want %v", got, tt.want)
			}
			if n := c.Timers(); n != 0 {
				t.Fatalf("Sleep left %d timers", n)
			}
		})
	}
	c := fakeclock.New(t0)
	if d := clock.Since(c, t0.Add(-time.Minute)); d != time.Minute {
		t.Fatalf("Since = %v", d)
	}
	if d := clock.Until(c, t0.Add(time.Minute)); d != time.Minute {
		t.Fatalf("Until = %v", d)
	}
}
