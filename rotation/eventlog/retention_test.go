package eventlog

import (
	"testing"
	"time"
)

// TestPlanRetention appends 30 records a minute apart with checkpoints at
// seqs 10 and 20, and checks where each policy cuts.
func TestPlanRetention(t *testing.T) {
	ctx := testCtx(t)
	clk := newFakeClock()
	l := newLog(t, startEtcd(t).Client(), WithClock(clk))
	cp := NewCheckpointer(l, newPKI(t, t0.Add(-time.Hour), t0.Add(24*time.Hour)).keys())
	for i := 1; i <= 30; i++ {
		clk.Advance(time.Minute)
		if i == 10 || i == 20 {
			if _, ok, err := cp.Checkpoint(ctx); err != nil || !ok {
				t.Fatalf("checkpoint at %d: %v %v", i, ok, err)
			}
			continue
		}
		if _, err := l.Append(ctx, Event{Kind: KindSVIDIssued, Subject: "spiffe://example.org/w", Actor: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	now := clk.Now() // record i is stamped t0 + i minutes; now = t0+30m
	for _, tc := range []struct {
		name string
		p    RetentionPolicy
		want RetentionPlan
	}{
		{"under the count", RetentionPolicy{KeepRecords: 30}, RetentionPlan{}},
		{"count cut at a checkpoint", RetentionPolicy{KeepRecords: 5}, RetentionPlan{From: 1, Upto: 20, AtCheckpoint: true}},
		{"count cut before any checkpoint", RetentionPolicy{KeepRecords: 25}, RetentionPlan{From: 1, Upto: 5}},
		{"count cut, checkpoint 10 below", RetentionPolicy{KeepRecords: 15}, RetentionPlan{From: 1, Upto: 10, AtCheckpoint: true}},
		{"batch bound", RetentionPolicy{KeepRecords: 1, MaxBatch: 15}, RetentionPlan{From: 1, Upto: 10, AtCheckpoint: true}},
		{"batch bound, no checkpoint", RetentionPolicy{KeepRecords: 1, MaxBatch: 8}, RetentionPlan{From: 1, Upto: 8}},
		{"below the minimum batch", RetentionPolicy{KeepRecords: 25, MinBatch: 6}, RetentionPlan{}},
		{"at the minimum batch", RetentionPolicy{KeepRecords: 25, MinBatch: 5}, RetentionPlan{From: 1, Upto: 5}},
		{"age", RetentionPolicy{KeepAge: 12*time.Minute + time.Second}, RetentionPlan{From: 1, Upto: 10, AtCheckpoint: true}},
		{"age, nothing old", RetentionPolicy{KeepAge: time.Hour}, RetentionPlan{}},
		{"age beats count", RetentionPolicy{KeepRecords: 28, KeepAge: 5*time.Minute + time.Second}, RetentionPlan{From: 1, Upto: 20, AtCheckpoint: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := l.PlanRetention(ctx, tc.p, now)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("plan = %+v, want %+v", got, tc.want)
			}
		})
	}
	if _, err := l.PlanRetention(ctx, RetentionPolicy{}, now); err == nil {
		t.Error("a policy bounding nothing was accepted")
	}
	// After archiving up to 10 the plan starts at 11.
	if _, err := l.Archive(ctx, 10, discardSyncer{}); err != nil {
		t.Fatal(err)
	}
	got, err := l.PlanRetention(ctx, RetentionPolicy{KeepRecords: 5}, now)
	if err != nil {
		t.Fatal(err)
	}
	// 31 records now (the anchor is 31): keep 5 → cut 26, last checkpoint 20.
	if want := (RetentionPlan{From: 11, Upto: 20, AtCheckpoint: true}); got != want {
		t.Errorf("after archive: plan = %+v, want %+v", got, want)
	}
}

type discardSyncer struct{}

func (discardSyncer) Write(b []byte) (int, error) { return len(b), nil }
