package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/signet-id/signet/server/etcdserver"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// haRun is one handler execution in the HA test.
type haRun struct {
	rev        int64
	start, end time.Time
}

// TestHALeaderKillUnderLoad runs three scheduler replicas, each with its
// own client, on a three-member etcd cluster; schedules 2000 items due over
// three seconds; kills the leader replica mid-run (severs all its
// connections, so it can neither resign nor complete, and its lease lapses
// after the TTL); and checks that another replica takes
// over, every item runs, and only items in flight at the kill run twice,
// never concurrently and never twice under one leader.
func TestHALeaderKillUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-member etcd cluster")
	}
	const (
		items       = 2000
		spread      = 3 * time.Second
		concurrency = 16
		ttl         = 2 * time.Second
	)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	servers, err := etcdserver.StartCluster(ctx, t.TempDir(), 3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, srv := range servers {
			srv.Close()
		}
	})
	prefix := testPrefix(t)

	var mu sync.Mutex
	runs := map[string][]haRun{}
	total := 0
	handler := HandlerFunc(func(hctx context.Context, it Item) (*Item, error) {
		term, _ := TermFrom(hctx)
		r := haRun{rev: term.Rev, start: time.Now()}
		// Work: 5ms, or 300ms for one item in 25, so that long runs are
		// in flight when the leader is killed. It stops when its context
		// ends, as handlers must.
		work := 5 * time.Millisecond
		if string(it.Payload) == "long" {
			work = 300 * time.Millisecond
		}
		select {
		case <-time.After(work):
		case <-hctx.Done():
		}
		r.end = time.Now()
		mu.Lock()
		runs[it.ID] = append(runs[it.ID], r)
		total++
		mu.Unlock()
		return nil, hctx.Err()
	})
	executed := func() int {
		mu.Lock()
		defer mu.Unlock()
		return total
	}

	reps := make([]*Scheduler, 3)
	clis := make([]*clientv3.Client, 3)
	proxies := make([]*cutProxy, 3)
	stops := make([]func(), 3)
	for i := range reps {
		proxies[i] = newCutProxy(t, servers[i].Endpoints()[0])
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{proxies[i].Endpoint()}, TLS: servers[i].ClientConfig().TLS, DialTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		clis[i] = c
		t.Cleanup(func() { c.Close() })
		reps[i] = newTestScheduler(t, c, WithName(fmt.Sprintf("replica-%d", i)),
			WithSessionTTL(ttl), WithConcurrency(concurrency))
		reps[i].Handle("svid", handler)
		stops[i] = run(t, reps[i])
	}
	leader := func() int {
		for i, r := range reps {
			if r.IsLeader() {
				return i
			}
		}
		return -1
	}
	waitFor(t, 30*time.Second, "a leader", func() bool { return leader() >= 0 })

	// Schedule through a non-leader's client, concurrently.
	start := time.Now().Add(500 * time.Millisecond)
	sched := reps[(leader()+1)%3]
	var wg sync.WaitGroup
	errs := make(chan error, items)
	sem := make(chan struct{}, 32)
	for i := range items {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			due := start.Add(spread * time.Duration(i) / items)
			it := Item{ID: fmt.Sprintf("svid/agent-%d/entry-%d", i%50, i), Kind: "svid", DueAt: due, NotAfter: due.Add(time.Hour)}
			if i%25 == 0 {
				it.Payload = []byte("long")
			}
			errs <- sched.Schedule(ctx, it)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	waitFor(t, 60*time.Second, "a quarter of the items executed", func() bool { return executed() >= items/4 })
	victim := leader()
	if victim < 0 {
		t.Fatal("no leader at kill time")
	}
	oldTerm, _ := reps[victim].CurrentTerm()
	killedAt := time.Now()
	proxies[victim].Cut()
	executedAtKill := executed()

	// The claims the dead leader left: the only items allowed to run twice.
	survivor := clis[(victim+1)%3]
	resp, err := survivor.Get(ctx, prefix+"inflight/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	inflightAtKill := map[string]bool{}
	for _, kv := range resp.Kvs {
		var rec inflightRecord
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			t.Fatal(err)
		}
		if rec.LeaderRev == oldTerm.Rev {
			inflightAtKill[string(kv.Key)[len(prefix+"inflight/"):]] = true
		}
	}
	if len(inflightAtKill) > concurrency {
		t.Fatalf("%d items in flight at the kill, more than the concurrency %d", len(inflightAtKill), concurrency)
	}

	// Poll for both: the killed replica noticing it may have lost its lease,
	// and another replica winning the election.
	newLeader := -1
	var failover, stepDown time.Duration
	waitFor(t, 10*ttl+10*time.Second, "another replica leads and the killed one steps down", func() bool {
		if stepDown == 0 && !reps[victim].IsLeader() {
			stepDown = time.Since(killedAt)
		}
		for i, r := range reps {
			if newLeader < 0 && i != victim && r.IsLeader() {
				newLeader, failover = i, time.Since(killedAt)
			}
		}
		return stepDown > 0 && newLeader >= 0
	})
	waitFor(t, 2*time.Minute, "every item executed and deleted", func() bool {
		mu.Lock()
		n := len(runs)
		mu.Unlock()
		if n < items {
			return false
		}
		c, err := reps[newLeader].Count(ctx)
		return err == nil && c == 0
	})
	finished := time.Since(killedAt)
	stops[victim]()

	mu.Lock()
	defer mu.Unlock()
	rerun := 0
	for id, rs := range runs {
		if len(rs) == 1 {
			continue
		}
		revs := map[int64]bool{}
		for _, r := range rs {
			if revs[r.rev] {
				t.Errorf("%s ran twice under leader revision %d", id, r.rev)
			}
			revs[r.rev] = true
		}
		if !inflightAtKill[id] {
			t.Errorf("%s ran %d times but was not in flight at the kill", id, len(rs))
		}
		for i := 1; i < len(rs); i++ {
			if rs[i].start.Before(rs[i-1].end) {
				t.Errorf("%s: runs under revisions %d and %d overlap", id, rs[i-1].rev, rs[i].rev)
			}
		}
		rerun++
	}
	if rerun > concurrency {
		t.Errorf("%d items re-ran, more than the concurrency bound %d", rerun, concurrency)
	}
	if len(runs) != items {
		t.Errorf("%d distinct items ran, want %d", len(runs), items)
	}
	if left := keysUnder(t, survivor, prefix+"inflight/"); len(left) != 0 {
		t.Errorf("claims left: %q", left)
	}
	t.Logf("killed leader replica-%d (rev %d) after %d of %d executions; %d items in flight at the kill; "+
		"replica-%d led %.2fs later (session TTL %v); the killed replica stepped down %.2fs after the kill; all done %.2fs after the kill; %d items re-ran; %d executions in all",
		victim, oldTerm.Rev, executedAtKill, items, len(inflightAtKill), newLeader, failover.Seconds(), ttl, stepDown.Seconds(),
		finished.Seconds(), rerun, total)
}

// TestRunReturnsWhenCutOff cuts a leader and a follower (waiting in its
// campaign) off from etcd: the leader steps down on its own, and both Run
// calls return promptly when cancelled.
func TestRunReturnsWhenCutOff(t *testing.T) {
	cli := startEtcd(t)
	var reps [2]*Scheduler
	var proxies [2]*cutProxy
	var stops [2]func()
	for i := range reps {
		proxies[i] = newCutProxy(t, cli.Endpoints()[0])
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{proxies[i].Endpoint()}, DialTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		reps[i] = newTestScheduler(t, c, WithName(fmt.Sprintf("r%d", i)), WithSessionTTL(2*time.Second))
		stops[i] = run(t, reps[i])
		if i == 0 {
			waitFor(t, 30*time.Second, "r0 leads", reps[0].IsLeader)
		}
	}
	// Let r1 reach its campaign wait.
	waitFor(t, 30*time.Second, "r1 campaigning", func() bool {
		resp, err := cli.Get(context.Background(), testPrefix(t)+"leader/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		return err == nil && resp.Count == 2
	})
	for _, p := range proxies {
		p.Cut()
	}
	waitFor(t, 30*time.Second, "the cut-off leader steps down", func() bool { return !reps[0].IsLeader() })
	for i, stop := range stops {
		start := time.Now()
		stop() // fails the test if Run does not return within 30s
		t.Logf("r%d: Run returned %v after cancel", i, time.Since(start).Round(time.Millisecond))
	}
}
