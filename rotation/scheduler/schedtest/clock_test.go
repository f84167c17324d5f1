package schedtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/signet-id/signet/rotation/scheduler"
	"github.com/signet-id/signet/rotation/scheduler/schedtest"
)

var _ scheduler.Clock = (*schedtest.Clock)(nil)

func TestClockTimers(t *testing.T) {
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	c := schedtest.NewClock(start)
	if !c.Now().Equal(start) {
		t.Fatalf("Now = %v", c.Now())
	}
	t1, _ := c.NewTimer(2 * time.Second)
	t2, stop2 := c.NewTimer(time.Second)
	t3, _ := c.NewTimer(3 * time.Second)
	if n := c.Timers(); n != 3 {
		t.Fatalf("Timers = %d, want 3", n)
	}
	if next, ok := c.Next(); !ok || !next.Equal(start.Add(time.Second)) {
		t.Fatalf("Next = %v, %v", next, ok)
	}
	if !stop2() || stop2() {
		t.Fatal("stop: want true then false")
	}
	c.Advance(2500 * time.Millisecond)
	select {
	case at := <-t1:
		if !at.Equal(start.Add(2500 * time.Millisecond)) {
			t.Fatalf("t1 fired with %v", at)
		}
	default:
		t.Fatal("t1 did not fire")
	}
	select {
	case <-t2:
		t.Fatal("stopped timer fired")
	case <-t3:
		t.Fatal("t3 fired early")
	default:
	}
	if n := c.Timers(); n != 1 {
		t.Fatalf("Timers = %d, want 1", n)
	}
	c.Advance(time.Second)
	<-t3

	now, _ := c.NewTimer(0)
	<-now // a non-positive duration fires at once
	if n := c.Timers(); n != 0 {
		t.Fatalf("Timers = %d, want 0", n)
	}
}

func TestClockWaitTimers(t *testing.T) {
	c := schedtest.NewClock(time.Unix(0, 0))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() { c.NewTimer(time.Minute) }()
	if err := c.WaitTimers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithCancel(context.Background())
	cancelShort()
	if err := c.WaitTimers(short, 2); err == nil {
		t.Fatal("WaitTimers returned nil with a cancelled context")
	}
}
