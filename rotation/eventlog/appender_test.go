package eventlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestAppenderBatchesEverything(t *testing.T) {
	srv := startEtcd(t)
	ctx := testCtx(t)
	l := newLog(t, srv.Client())
	reg := prometheus.NewRegistry()
	a := NewAppender(l, WithRegisterer(reg), WithQueueSize(50), WithMaxBatch(20))

	const producers, each = 8, 100
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range each {
				kind := KindSVIDIssued
				if i%10 == 0 {
					kind = KindAgentRenewed
				}
				if err := a.Append(ctx, Event{Kind: kind, Details: map[string]string{"id": fmt.Sprintf("%d-%d", p, i)}}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := l.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Seq != producers*each {
		t.Fatalf("head seq %d after flush, want %d", s.Seq, producers*each)
	}
	if got := metricValue(t, a.metrics.appended.WithLabelValues(string(KindSVIDIssued))); got != producers*each*9/10 {
		t.Fatalf("appended{svid.issued} = %v", got)
	}
	if got := metricValue(t, a.metrics.queueDepth); got != 0 {
		t.Fatalf("queue depth %v after flush", got)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var count uint64
	for _, mf := range mfs {
		if mf.GetName() == "signet_eventlog_append_latency_seconds" {
			count = mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	if count == 0 {
		t.Fatal("no append latency observed")
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Append(ctx, Event{Kind: KindSVIDIssued}); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	var buf bytes.Buffer
	if _, err := l.Export(ctx, &buf, 0, 0); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(&buf, nil, VerifyOptions{AllowUnsignedTail: true})
	if err != nil || rep.Records != producers*each {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

func TestAppenderCloseWritesQueued(t *testing.T) {
	srv := startEtcd(t)
	ctx := testCtx(t)
	l := newLog(t, srv.Client())
	a := NewAppender(l)
	for range 250 {
		if err := a.Append(ctx, Event{Kind: KindAgentRenewed}); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if s, _ := l.State(ctx); s.Seq != 250 {
		t.Fatalf("%d records written", s.Seq)
	}
}

// When etcd cannot be written, the queue fills, Append blocks until its
// ctx ends, and Close reports the events it could not write.
func TestAppenderFullQueueBlocksAndLossIsReported(t *testing.T) {
	srv := startEtcd(t)
	ctx := testCtx(t)
	cli := newClient(t, srv)
	l := newLog(t, cli)
	_ = cli.Close() // every write fails from now on
	a := NewAppender(l, WithQueueSize(1), WithFlushInterval(0))

	if err := a.Append(ctx, Event{Kind: KindSVIDIssued}); err != nil { // taken by the writer, which retries
		t.Fatal(err)
	}
	if err := a.Append(ctx, Event{Kind: KindSVIDIssued}); err != nil { // waits for the writer to take the first, then sits in the queue
		t.Fatal(err)
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := a.Append(done, Event{Kind: KindSVIDIssued}); !errors.Is(err, context.Canceled) {
		t.Fatalf("append to a full queue: %v", err)
	}
	if err := a.Append(ctx, Event{Kind: "nope"}); err == nil || errors.Is(err, context.Canceled) {
		t.Fatalf("invalid event: %v", err)
	}
	err := a.Close(done)
	if err == nil || !strings.Contains(err.Error(), "2 events not written") {
		t.Fatalf("close: %v", err)
	}
	if got := metricValue(t, a.metrics.lost); got != 2 {
		t.Fatalf("lost = %v", got)
	}
	if err := a.Flush(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("flush after close: %v", err)
	}
}

// metricValue reads a counter or gauge.
func metricValue(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	if c := d.GetCounter(); c != nil {
		return c.GetValue()
	}
	return d.GetGauge().GetValue()
}
