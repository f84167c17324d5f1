package scheduler

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// campaign wins an election on s's prefix with a fresh session.
func campaign(t *testing.T, s *Scheduler) (Term, *concurrency.Session) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sess, err := concurrency.NewSession(s.cli, concurrency.WithTTL(30))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	el := concurrency.NewElection(sess, s.keys.election())
	if err := el.Campaign(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	return Term{Key: el.Key(), Rev: el.Rev()}, sess
}

func TestDeposedTermCannotClaimOrComplete(t *testing.T) {
	ctx := context.Background()
	cli := startEtcd(t)
	s := newTestScheduler(t, cli)
	p := testPrefix(t)
	for _, id := range []string{"a", "b", "c"} {
		if err := s.Schedule(ctx, Item{ID: id, Kind: "k", DueAt: t0}); err != nil {
			t.Fatal(err)
		}
	}
	ents, err := s.scanDue(ctx, t0, 10)
	if err != nil || len(ents) != 3 {
		t.Fatalf("scan: %v %v", ents, err)
	}

	old, sess := campaign(t, s)
	claims, err := s.claim(ctx, old, ents[:1])
	if err != nil || len(claims) != 1 || claims[0].item.ID != "a" {
		t.Fatalf("claim under the live term: %v, %v", claims, err)
	}

	// Depose: revoke the session lease, which deletes the leader key.
	if _, err := cli.Revoke(ctx, sess.Lease()); err != nil {
		t.Fatal(err)
	}
	before := keysUnder(t, cli, p+"due/")
	for name, fn := range map[string]func() error{
		"claim one":   func() error { _, err := s.claim(ctx, old, ents[1:2]); return err },
		"claim batch": func() error { _, err := s.claim(ctx, old, ents[1:]); return err },
		"complete":    func() error { _, err := s.complete(ctx, old, claims[0], nil); return err },
		"reschedule": func() error {
			_, err := s.complete(ctx, old, claims[0], &Item{ID: "a", Kind: "k", DueAt: t0.Add(time.Hour)})
			return err
		},
	} {
		if err := fn(); !errors.Is(err, ErrNotLeader) {
			t.Errorf("%s under the deposed term: %v, want ErrNotLeader", name, err)
		}
	}
	if after := keysUnder(t, cli, p+"due/"); !slices.Equal(before, after) {
		t.Fatalf("due index changed under the deposed term: %q -> %q", before, after)
	}
	if keys := keysUnder(t, cli, p+"inflight/"); !slices.Equal(keys, []string{"a"}) {
		t.Fatalf("claims = %q, want [a]", keys)
	}

	// A new leader requeues the orphaned claim; the old term stays fenced
	// off even now that a leader key exists again.
	cur, _ := campaign(t, s)
	if cur.Rev <= old.Rev {
		t.Fatalf("new term revision %d <= old %d", cur.Rev, old.Rev)
	}
	n, err := s.requeue(ctx, cur)
	if err != nil || n != 1 {
		t.Fatalf("requeue = %d, %v; want 1", n, err)
	}
	if it, err := s.Get(ctx, "a"); err != nil || it.Attempt != 1 || !it.DueAt.Equal(t0) {
		t.Fatalf("requeued item = %+v, %v; want attempt 1, due t0", it, err)
	}
	if _, err := s.complete(ctx, old, claims[0], nil); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("old term complete after takeover: %v", err)
	}
	if _, err := s.claim(ctx, old, ents[1:2]); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("old term claim after takeover: %v", err)
	}
	ents, err = s.scanDue(ctx, t0, 10)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.claim(ctx, cur, ents)
	if err != nil || len(got) != 3 {
		t.Fatalf("new term claims %d, %v; want 3", len(got), err)
	}
	for _, c := range got {
		if _, err := s.complete(ctx, cur, c, nil); err != nil {
			t.Fatal(err)
		}
	}
	if keys := keysUnder(t, cli, p+"items/"); len(keys) != 0 {
		t.Fatalf("items left: %q", keys)
	}
}

func TestDeposedLeaderRunIsFencedOff(t *testing.T) {
	ctx := context.Background()
	cli := startEtcd(t)
	newClient := func() *clientv3.Client {
		c, err := clientv3.New(clientv3.Config{Endpoints: cli.Endpoints(), DialTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	const effect = "/test/effect/ca-activated"
	// sideEffect is what a CA handler would do: a write fenced by the term.
	sideEffect := func(hctx context.Context, c *clientv3.Client, who string) (bool, error) {
		term, _ := TermFrom(hctx)
		resp, err := c.Txn(context.WithoutCancel(hctx)).If(term.Cmp()).
			Then(clientv3.OpPut(effect, who)).Commit()
		if err != nil {
			return false, err
		}
		return resp.Succeeded, nil
	}

	c1, c2 := newClient(), newClient()
	r1 := newTestScheduler(t, c1, WithName("r1"))
	r2 := newTestScheduler(t, c2, WithName("r2"))
	started1, release1 := make(chan struct{}), make(chan struct{})
	wrote1 := make(chan bool, 1)
	r1.Handle("ca", HandlerFunc(func(hctx context.Context, it Item) (*Item, error) {
		close(started1)
		<-release1 // a handler stuck past the end of its term
		ok, err := sideEffect(hctx, c1, "r1")
		wrote1 <- ok
		return nil, err
	}))
	var runs2 execLog
	r2.Handle("ca", HandlerFunc(func(hctx context.Context, it Item) (*Item, error) {
		runs2.add(hctx, time.Now(), it)
		ok, err := sideEffect(hctx, c2, "r2")
		if err == nil && !ok {
			err = errors.New("fenced write failed under the live term")
		}
		return nil, err
	}))

	run(t, r1)
	waitFor(t, 30*time.Second, "r1 leads", r1.IsLeader)
	run(t, r2)
	if err := r1.Schedule(ctx, Item{ID: "ca/x509/next", Kind: "ca", DueAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	<-started1

	// Depose r1 as if its lease had expired during a partition.
	term1, _ := r1.CurrentTerm()
	resp, err := cli.Get(ctx, term1.Key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("leader key: %v %v", resp, err)
	}
	if _, err := cli.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "r2 runs the requeued item", func() bool { return runs2.len() == 1 })
	if r := runs2.snapshot()[0]; r.Attempt != 1 || r.Rev <= term1.Rev {
		t.Fatalf("r2 run: attempt %d rev %d (r1 rev %d)", r.Attempt, r.Rev, term1.Rev)
	}
	close(release1)
	if <-wrote1 {
		t.Fatal("deposed leader's fenced side effect was applied")
	}
	waitFor(t, 30*time.Second, "r1 completion fenced off", func() bool {
		return counterValue(t, r1.m.dispatched.WithLabelValues("ca", "fenced")) == 1
	})
	got, err := cli.Get(ctx, effect)
	if err != nil || len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "r2" || got.Kvs[0].Version != 1 {
		t.Fatalf("side effect = %v, %v; want written once by r2", got.Kvs, err)
	}
	if n, err := r2.Count(ctx); err != nil || n != 0 {
		t.Fatalf("items left: %d, %v", n, err)
	}
	if v := counterValue(t, r2.m.requeued); v != 1 {
		t.Fatalf("r2 requeued %v items, want 1", v)
	}
}
