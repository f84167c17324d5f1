package scheduler

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestScheduleGetCancelCount(t *testing.T) {
	ctx := context.Background()
	cli := startEtcd(t)
	s := newTestScheduler(t, cli)
	p := testPrefix(t)

	it := Item{ID: "svid/agent-1/entry-1", Kind: "svid", DueAt: t0.Add(time.Hour), NotAfter: t0.Add(2 * time.Hour), Payload: []byte("p1")}
	if err := s.Schedule(ctx, it); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, it.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != it.ID || got.Kind != it.Kind || !got.DueAt.Equal(it.DueAt) || !got.NotAfter.Equal(it.NotAfter) ||
		string(got.Payload) != "p1" || got.Attempt != 0 {
		t.Fatalf("Get = %+v, want %+v", got, it)
	}
	wantDue := fmt.Sprintf("due/%020d/%s", it.DueAt.UnixNano(), it.ID)
	if keys := keysUnder(t, cli, p); !slices.Equal(keys, []string{wantDue, "items/" + it.ID}) {
		t.Fatalf("keys = %q", keys)
	}

	// Upsert moves the due-index key in the same transaction.
	it.DueAt = t0.Add(30 * time.Minute)
	it.Payload = []byte("p2")
	if err := s.Schedule(ctx, it); err != nil {
		t.Fatal(err)
	}
	wantDue = fmt.Sprintf("due/%020d/%s", it.DueAt.UnixNano(), it.ID)
	if keys := keysUnder(t, cli, p); !slices.Equal(keys, []string{wantDue, "items/" + it.ID}) {
		t.Fatalf("keys after reschedule = %q", keys)
	}
	resp, err := cli.Txn(ctx).Then(
		clientOpGet(p+wantDue), clientOpGet(p+"items/"+it.ID)).Commit()
	if err != nil {
		t.Fatal(err)
	}
	if a, b := firstKV(resp, 0).ModRevision, firstKV(resp, 1).ModRevision; a != b {
		t.Fatalf("due key revision %d != item revision %d", a, b)
	}
	// Same due time again: the key is rewritten, not duplicated.
	if err := s.Schedule(ctx, it); err != nil {
		t.Fatal(err)
	}
	if keys := keysUnder(t, cli, p); len(keys) != 2 {
		t.Fatalf("keys after identical schedule = %q", keys)
	}

	if err := s.Schedule(ctx, Item{ID: "ca/x509/1", Kind: "ca", DueAt: t0}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Count(ctx); err != nil || n != 2 {
		t.Fatalf("Count = %d, %v; want 2", n, err)
	}
	if n, err := s.CountDue(ctx, t0.Add(30*time.Minute)); err != nil || n != 2 {
		t.Fatalf("CountDue(t0+30m) = %d, %v; want 2 (inclusive)", n, err)
	}
	if n, err := s.CountDue(ctx, t0.Add(30*time.Minute-1)); err != nil || n != 1 {
		t.Fatalf("CountDue(t0+30m-1ns) = %d, %v; want 1", n, err)
	}

	if err := s.Cancel(ctx, it.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, it.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Cancel: %v, want ErrNotFound", err)
	}
	if err := s.Cancel(ctx, it.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Cancel: %v, want ErrNotFound", err)
	}
	if keys := keysUnder(t, cli, p); !slices.Equal(keys, []string{fmt.Sprintf("due/%020d/ca/x509/1", t0.UnixNano()), "items/ca/x509/1"}) {
		t.Fatalf("keys after cancel = %q", keys)
	}
}

func TestScheduleRejectsInvalidItems(t *testing.T) {
	ctx := context.Background()
	s := newTestScheduler(t, startEtcd(t))
	ok := Item{ID: "a", Kind: "k", DueAt: t0}
	for _, tc := range []struct {
		name string
		edit func(*Item)
	}{
		{"empty ID", func(it *Item) { it.ID = "" }},
		{"long ID", func(it *Item) { it.ID = strings.Repeat("x", MaxIDLen+1) }},
		{"NUL in ID", func(it *Item) { it.ID = "a\x00b" }},
		{"invalid UTF-8", func(it *Item) { it.ID = "a\xffb" }},
		{"empty kind", func(it *Item) { it.Kind = "" }},
		{"zero due", func(it *Item) { it.DueAt = time.Time{} }},
		{"big payload", func(it *Item) { it.Payload = make([]byte, MaxPayload+1) }},
		{"negative attempt", func(it *Item) { it.Attempt = -1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			it := ok
			tc.edit(&it)
			if err := s.Schedule(ctx, it); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Schedule: %v, want ErrInvalid", err)
			}
		})
	}
	if n, err := s.Count(ctx); err != nil || n != 0 {
		t.Fatalf("Count = %d, %v", n, err)
	}
}

func TestDueBeforeOrder(t *testing.T) {
	ctx := context.Background()
	s := newTestScheduler(t, startEtcd(t))

	// 60 items, due at 20 distinct seconds (3 per second), scheduled in a
	// shuffled order; plus one item far in the future and one before 1970.
	var want []Item
	for sec := range 20 {
		for j := range 3 {
			want = append(want, Item{ID: fmt.Sprintf("svid/%c/%02d", 'a'+j, sec), Kind: "svid", DueAt: t0.Add(time.Duration(sec) * time.Second)})
		}
	}
	shuffled := slices.Clone(want)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for _, it := range shuffled {
		if err := s.Schedule(ctx, it); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Schedule(ctx, Item{ID: "far", Kind: "k", DueAt: time.Date(2500, 1, 1, 0, 0, 0, 0, time.UTC)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Schedule(ctx, Item{ID: "old", Kind: "k", DueAt: time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)}); err != nil {
		t.Fatal(err)
	}

	ids := func(its []Item) []string {
		out := make([]string, len(its))
		for i, it := range its {
			out[i] = it.ID
		}
		return out
	}
	got, err := s.DueBefore(ctx, t0.Add(19*time.Second), 0)
	if err != nil {
		t.Fatal(err)
	}
	if w := append([]string{"old"}, ids(want)...); !slices.Equal(ids(got), w) {
		t.Fatalf("DueBefore order:\n got %q\nwant %q", ids(got), w)
	}
	got, err = s.DueBefore(ctx, t0.Add(5*time.Second), 4)
	if err != nil {
		t.Fatal(err)
	}
	if w := append([]string{"old"}, ids(want[:3])...); !slices.Equal(ids(got), w) {
		t.Fatalf("DueBefore limit 4 = %q, want %q", ids(got), w)
	}
	got, err = s.DueBefore(ctx, time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 62 || got[61].ID != "far" {
		t.Fatalf("DueBefore(far future) returned %d items, last %q", len(got), got[len(got)-1].ID)
	}
}
