package limits

import (
	"fmt"
	"testing"
	"time"
)

type step struct {
	key  string
	at   time.Duration
	n    int
	want bool
}

func TestTableRateAndBound(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	cases := []struct {
		name  string
		rate  float64
		burst int
		max   int
		steps []step
	}{
		{name: "burst then refill", rate: 1, burst: 2, max: 10, steps: []step{{"a", 0, 1, true}, {"a", 0, 1, true}, {"a", 0, 1, false}, {"b", 0, 1, true}, {"a", time.Second, 1, true}, {"a", time.Second, 1, false}}},
		{name: "batch takes n", rate: 500, burst: 1000, max: 10, steps: []step{{"a", 0, 1000, true}, {"a", 0, 1, false}, {"a", time.Second, 500, true}, {"a", time.Second, 1, false}}},
		{name: "full table refuses new keys until buckets refill", rate: 1, burst: 1, max: 2, steps: []step{{"a", 0, 1, true}, {"b", 0, 1, true}, {"c", 0, 1, false}, {"c", 2 * time.Second, 1, true}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tb := newTable(tc.rate, tc.burst, tc.max)
			for i, s := range tc.steps {
				if got := tb.allow(s.key, t0.Add(s.at), s.n); got != s.want {
					t.Fatalf("step %d (%s at +%s, n=%d): allowed %v, want %v", i, s.key, s.at, s.n, got, s.want)
				}
				if len(tb.m) > tc.max {
					t.Fatalf("table holds %d keys, more than %d", len(tb.m), tc.max)
				}
			}
		})
	}
}

func TestConnTableBoundsOverLimitConnections(t *testing.T) {
	ct := &connTable{max: 2, open: map[string]int{}, over: map[string]bool{}}
	for i := range 2 {
		if ok, _ := ct.admit("10.0.0.1", fmt.Sprint("10.0.0.1:", i)); !ok {
			t.Fatalf("connection %d within the limit refused", i)
		}
	}
	kept := 0
	for i := range maxOverPerIP + 5 {
		ok, keep := ct.admit("10.0.0.1", fmt.Sprint("10.0.0.1:", 100+i))
		if ok {
			t.Fatalf("connection %d over the limit admitted", i)
		}
		if keep {
			kept++
			if !ct.isOver(fmt.Sprint("10.0.0.1:", 100+i)) {
				t.Fatal("kept connection is not marked over the limit")
			}
		}
	}
	if kept != maxOverPerIP {
		t.Fatalf("kept %d over-limit connections to report the refusal, want %d", kept, maxOverPerIP)
	}
	if ok, _ := ct.admit("10.0.0.2", "10.0.0.2:1"); !ok {
		t.Fatal("another IP refused")
	}
	ct.release("10.0.0.1", "10.0.0.1:0", true)
	if ok, _ := ct.admit("10.0.0.1", "10.0.0.1:200"); !ok {
		t.Fatal("a freed slot was not reusable")
	}
	for i := range maxOverPerIP {
		ct.release("10.0.0.1", fmt.Sprint("10.0.0.1:", 100+i), false)
	}
	if len(ct.over) != 0 || len(ct.overOpen) != 0 {
		t.Fatalf("over-limit bookkeeping not released: %v %v", ct.over, ct.overOpen)
	}
}

func TestDefaults(t *testing.T) {
	c := Config{AttestRate: -1}.withDefaults()
	if c.HandshakeTimeout != DefaultHandshakeTimeout || c.MaxConcurrentStreams != DefaultMaxConcurrentStreams || c.SignRate != DefaultSignRate || c.AttestRate != -1 {
		t.Fatalf("defaults: %s", c)
	}
}
