package eventlog

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"
)

func TestAppendAssignsChain(t *testing.T) {
	srv := startEtcd(t)
	ctx := testCtx(t)
	clk := newFakeClock()
	l := newLog(t, srv.Client(), WithClock(clk))

	r1, err := l.Append(ctx, Event{Kind: KindCAPrepared, Subject: "spiffe://example.org", Actor: "scheduler", KeyID: "ab01"})
	if err != nil {
		t.Fatal(err)
	}
	if r1.Seq != 1 || r1.PrevHash != GenesisHash || r1.V != 1 || !r1.Time.Equal(t0) {
		t.Fatalf("first record = %+v", r1)
	}
	clk.Advance(time.Second)
	recs, err := l.AppendBatch(ctx, []Event{
		{Kind: KindSVIDIssued, Subject: "spiffe://example.org/w", Serial: "01"},
		{Kind: "vault.lease.renewed", Subject: "spiffe://example.org/w", Details: map[string]string{"path": "db/creds/x"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if recs[0].Seq != 2 || recs[1].Seq != 3 || recs[0].PrevHash != r1.Hash || recs[1].PrevHash != recs[0].Hash {
		t.Fatalf("batch not chained: %+v", recs)
	}
	got, err := l.Range(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[2].Hash != recs[1].Hash || got[2].Details["path"] != "db/creds/x" {
		t.Fatalf("range = %+v", got)
	}
	if !bytes.Equal(got[1].Line(), recs[0].Line()) {
		t.Fatalf("stored line differs:\n%s\n%s", got[1].Line(), recs[0].Line())
	}
	s, err := l.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Seq != 3 || s.Hash != recs[1].Hash || s.Kind != "vault.lease.renewed" {
		t.Fatalf("state = %+v", s)
	}

	// Time never goes backwards along the chain.
	clk.Advance(-time.Hour)
	r4, err := l.Append(ctx, Event{Kind: KindAgentAttested})
	if err != nil {
		t.Fatal(err)
	}
	if r4.Time.Before(recs[1].Time) {
		t.Fatalf("time went backwards: %s < %s", r4.Time, recs[1].Time)
	}
}

func TestAppendRejectsInvalidEvents(t *testing.T) {
	srv := startEtcd(t)
	ctx := testCtx(t)
	l := newLog(t, srv.Client())
	big := string(bytes.Repeat([]byte("x"), maxFieldBytes+1))
	for name, e := range map[string]Event{
		"unknown kind":      {Kind: "ca.exploded"},
		"empty kind":        {},
		"checkpoint":        {Kind: KindCheckpoint},
		"anchor":            {Kind: KindArchiveAnchor},
		"bad utf8":          {Kind: KindSVIDIssued, Subject: "\xff"},
		"long subject":      {Kind: KindSVIDIssued, Subject: big},
		"empty details key": {Kind: KindSVIDIssued, Details: map[string]string{"": "x"}},
		"vault bad suffix":  {Kind: "vault.lease.Renewed"},
	} {
		if _, err := l.Append(ctx, e); err == nil {
			t.Errorf("%s: appended", name)
		}
	}
	if s, _ := l.State(ctx); s.Seq != 0 {
		t.Fatalf("invalid events were written: %+v", s)
	}
}

// Two Log instances on two clients (two server replicas) append
// concurrently, singly and in batches, while two checkpointers run: the
// chain has every event exactly once, no gaps, no fork, and verifies.
func TestConcurrentAppendsNeverForkOrGap(t *testing.T) {
	srv := startEtcd(t)
	ctx := testCtx(t)
	p := newPKI(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	logs := []*Log{newLog(t, srv.Client()), newLog(t, newClient(t, srv))}

	const writers, perWriter = 4, 30
	var wg sync.WaitGroup
	errs := make(chan error, writers*perWriter+8)
	for w := range writers {
		l := logs[w%2]
		wg.Go(func() {
			for i := 0; i < perWriter; {
				n := 1 + i%3
				n = min(n, perWriter-i)
				events := make([]Event, n)
				for j := range events {
					events[j] = Event{Kind: KindSVIDIssued, Subject: "spiffe://example.org/w", Details: map[string]string{"id": fmt.Sprintf("%d-%d", w, i+j)}}
				}
				if _, err := l.AppendBatch(ctx, events); err != nil {
					errs <- err
					return
				}
				i += n
			}
		})
	}
	for i := range 2 {
		cp := NewCheckpointer(logs[i], p.keys())
		wg.Go(func() {
			for range 10 {
				if _, _, err := cp.Checkpoint(ctx); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	recs, err := logs[0].Range(ctx, 1, MaxRange)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	prev := GenesisHash
	for i, r := range recs {
		if r.Seq != uint64(i+1) || r.PrevHash != prev || ComputeHash(r) != r.Hash {
			t.Fatalf("record %d: seq %d prev %s (want %s)", i+1, r.Seq, r.PrevHash, prev)
		}
		prev = r.Hash
		if r.Kind == KindSVIDIssued {
			id := r.Details["id"]
			if seen[id] {
				t.Fatalf("event %s appended twice", id)
			}
			seen[id] = true
		}
	}
	if len(seen) != writers*perWriter {
		t.Fatalf("%d events in the log, want %d", len(seen), writers*perWriter)
	}
	var buf bytes.Buffer
	if _, err := logs[1].Export(ctx, &buf, 0, 0); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(&buf, p.rootsList(), VerifyOptions{AllowUnsignedTail: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != len(recs) || rep.Kinds[string(KindSVIDIssued)] != writers*perWriter {
		t.Fatalf("report = %+v", rep)
	}
}

func (p *pki) rootsList() []*x509.Certificate { return []*x509.Certificate{p.root} }

func TestLastAndFilter(t *testing.T) {
	srv := startEtcd(t)
	ctx := testCtx(t)
	clk := newFakeClock()
	l := newLog(t, srv.Client(), WithClock(clk))
	kinds := []Kind{KindSVIDIssued, KindCAPrepared, "vault.lease.renewed", KindAgentRenewed}
	for i := range 1200 { // more than two pages
		if i%100 == 0 {
			clk.Advance(time.Minute)
		}
		if _, err := l.Append(ctx, Event{Kind: kinds[i%len(kinds)], Serial: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name  string
		n     int
		f     Filter
		want  int
		first string // serial of the first returned
	}{
		{"last 5", 5, Filter{}, 5, "1195"},
		{"last 3 ca", 3, Filter{Kinds: []string{"ca.*"}}, 3, "1189"},
		{"vault family", 2, Filter{Kinds: []string{"vault.lease.*"}}, 2, "1194"},
		{"since", 1000, Filter{Since: t0.Add(12 * time.Minute)}, 100, "1100"},
		{"since+kind", 1000, Filter{Since: t0.Add(12 * time.Minute), Kinds: []string{string(KindAgentRenewed)}}, 25, "1103"},
		{"all fits", 2000, Filter{Kinds: []string{string(KindCAPrepared)}}, 300, "1"},
	}
	for _, tc := range tests {
		got, err := l.Last(ctx, tc.n, tc.f)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != tc.want || got[0].Serial != tc.first {
			t.Errorf("%s: got %d records starting at %q, want %d from %q", tc.name, len(got), serialOf(got), tc.want, tc.first)
		}
		for i := 1; i < len(got); i++ {
			if got[i].Seq <= got[i-1].Seq {
				t.Errorf("%s: not in order", tc.name)
			}
		}
	}
}

func serialOf(recs []Record) string {
	if len(recs) == 0 {
		return ""
	}
	return recs[0].Serial
}

func TestMatchKind(t *testing.T) {
	tests := []struct {
		patterns []string
		kind     string
		want     bool
	}{
		{nil, "ca.prepared", true},
		{[]string{"ca.prepared"}, "ca.prepared", true},
		{[]string{"ca.prepared"}, "ca.activated", false},
		{[]string{"ca.*"}, "ca.activated", true},
		{[]string{"ca.*"}, "cat.x", false},
		{[]string{"vault.lease.*"}, "vault.lease.renewed", true},
		{[]string{"vault.*"}, "vault.lease.renewed", true},
		{[]string{"*"}, "checkpoint", true},
		{[]string{"svid.issued", "agent.*"}, "agent.banned", true},
	}
	for _, tc := range tests {
		if got := MatchKind(tc.patterns, tc.kind); got != tc.want {
			t.Errorf("MatchKind(%q, %q) = %v", tc.patterns, tc.kind, got)
		}
	}
	if err := (Filter{Kinds: []string{"CA.*"}}).Validate(); err == nil {
		t.Error("invalid pattern accepted")
	}
	if err := (Filter{Kinds: []string{"ca.*", "svid.issued", "*"}}).Validate(); err != nil {
		t.Error(err)
	}
}

func TestExportRange(t *testing.T) {
	srv := startEtcd(t)
	ctx := testCtx(t)
	l := newLog(t, srv.Client())
	for range 7 {
		if _, err := l.Append(ctx, Event{Kind: KindAgentRenewed}); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	st, err := l.Export(ctx, &buf, 3, 5)
	if err != nil {
		t.Fatal(err)
	}
	if st.Records != 3 || st.FirstSeq != 3 || st.LastSeq != 5 || st.SHA256 != ExportDigest(buf.Bytes()) {
		t.Fatalf("stats = %+v", st)
	}
	if n := bytes.Count(buf.Bytes(), []byte("\n")); n != 3 {
		t.Fatalf("%d lines", n)
	}
	if _, err := Verify(bytes.NewReader(buf.Bytes()), nil, VerifyOptions{}); err == nil {
		t.Fatal("a partial export without anchor verified without Partial")
	}
	rep, err := Verify(bytes.NewReader(buf.Bytes()), nil, VerifyOptions{Partial: true, AllowUnsignedTail: true})
	if err != nil || rep.StartConfirmed || rep.Records != 3 {
		t.Fatalf("partial verify: %+v, %v", rep, err)
	}
	var ve *VerifyError
	if _, err := Verify(bytes.NewReader(buf.Bytes()), nil, VerifyOptions{StartPrevHash: GenesisHash}); !errors.As(err, &ve) || ve.Line != 1 {
		t.Fatalf("wrong start hash: %v", err)
	}
}
