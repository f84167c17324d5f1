package taint_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/signet-id/signet/rotation/taint"
)

// script is a counter that returns its values in turn and advances a fake
// clock by one second per poll.
type script struct {
	values []int
	err    error // returned once the values run out
	now    time.Time
	calls  int
}

func (s *script) count(context.Context) (int, error) {
	s.calls++
	s.now = s.now.Add(time.Second)
	if len(s.values) == 0 {
		if s.err != nil {
			return 0, s.err
		}
		return 5, nil
	}
	v := s.values[0]
	s.values = s.values[1:]
	return v, nil
}

func TestWait(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	boom := errors.New("boom")
	cases := []struct {
		name         string
		values       []int
		err          error
		initial      int
		timeout      time.Duration
		wantReplaced int
		wantElapsed  time.Duration
		wantPolls    int
		wantProgress []int
		wantErr      error
		wantLeft     int
	}{
		{name: "already none", values: []int{0}, wantReplaced: 0, wantElapsed: time.Second, wantPolls: 1, wantProgress: []int{0}},
		{name: "drains", values: []int{3, 3, 2, 0}, wantReplaced: 3, wantElapsed: 4 * time.Second, wantPolls: 4, wantProgress: []int{3, 2, 0}},
		{name: "count before the taint is the total", values: []int{1, 0}, initial: 4, wantReplaced: 4, wantElapsed: 2 * time.Second, wantPolls: 2, wantProgress: []int{1, 0}},
		{name: "a count that grows raises the total", values: []int{2, 6, 1, 0}, wantReplaced: 6, wantElapsed: 4 * time.Second, wantPolls: 4, wantProgress: []int{2, 6, 1, 0}},
		{name: "counter fails", values: []int{2}, err: boom, wantReplaced: 2, wantPolls: 2, wantProgress: []int{2}, wantErr: boom, wantLeft: 2},
		{name: "times out", timeout: 20 * time.Millisecond, wantReplaced: 5, wantProgress: []int{5}, wantErr: context.DeadlineExceeded, wantLeft: 5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := &script{values: tc.values, err: tc.err, now: start}
			var progress []int
			res, err := taint.Wait(context.Background(), s.count, taint.Options{
				Interval:   time.Millisecond,
				Timeout:    tc.timeout,
				Start:      start,
				Initial:    tc.initial,
				Now:        func() time.Time { return s.now },
				OnProgress: func(p taint.Progress) { progress = append(progress, p.Remaining) },
			})
			if tc.wantErr != nil {
				var nr *taint.NotReplacedError
				if !errors.Is(err, tc.wantErr) || !errors.As(err, &nr) {
					t.Fatalf("error %v, want %v in a *NotReplacedError", err, tc.wantErr)
				}
				if nr.Remaining != tc.wantLeft || nr.Initial != tc.wantReplaced {
					t.Fatalf("not replaced: %d of %d, want %d of %d", nr.Remaining, nr.Initial, tc.wantLeft, tc.wantReplaced)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if res.Replaced != tc.wantReplaced || res.Elapsed != tc.wantElapsed || res.Polls != tc.wantPolls {
					t.Fatalf("result %+v, want replaced %d in %v after %d polls", res, tc.wantReplaced, tc.wantElapsed, tc.wantPolls)
				}
			}
			if len(progress) != len(tc.wantProgress) {
				t.Fatalf("progress %v, want %v", progress, tc.wantProgress)
			}
			for i := range progress {
				if progress[i] != tc.wantProgress[i] {
					t.Fatalf("progress %v, want %v", progress, tc.wantProgress)
				}
			}
		})
	}
}

func TestWaitCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := taint.Wait(ctx, func(context.Context) (int, error) { return 1, nil }, taint.Options{Interval: time.Hour})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
}
