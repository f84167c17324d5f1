package server

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

// TestGroupStopsAllOnFirstFailure: the group cancels every subsystem on
// the first failure (or when its parent is done) and waits for all of
// them; wait returns the failure, named by subsystem.
func TestGroupStopsAllOnFirstFailure(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name    string
		fail    bool // one subsystem fails at once
		cancel  bool // the parent context is cancelled
		wantErr error
	}{
		{name: "parent cancelled", cancel: true},
		{name: "one subsystem fails", fail: true, wantErr: boom},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			g, gctx := newGroup(ctx, slog.New(slog.DiscardHandler))
			var stopped atomic.Int32
			for range 3 {
				g.start(gctx, loop("waiter", func(ctx context.Context) {
					<-ctx.Done()
					time.Sleep(10 * time.Millisecond) // a slow stop is waited for
					stopped.Add(1)
				}))
			}
			if tc.fail {
				g.start(gctx, unit{"failing", func(context.Context) error { return boom }})
			}
			if tc.cancel {
				cancel()
			}
			err := g.wait()
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("wait: %v, want %v", err, tc.wantErr)
			}
			if err != nil && err.Error() != "server: failing: boom" {
				t.Errorf("error %q does not name the subsystem", err)
			}
			if n := stopped.Load(); n != 3 {
				t.Errorf("wait returned with %d of 3 subsystems stopped", n)
			}
		})
	}
}
