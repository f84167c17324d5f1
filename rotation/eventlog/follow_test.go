package eventlog

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/signet-id/signet/conformance/tooltest"
)

func appendN(t *testing.T, ctx context.Context, l *Log, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if _, err := l.Append(ctx, Event{Kind: KindSVIDIssued, Serial: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
}

// receive takes n records from ch and checks they are seqs from, from+1, ...
func receive(t *testing.T, ctx context.Context, ch <-chan Record, from uint64, n int) {
	t.Helper()
	for i := range n {
		select {
		case r, ok := <-ch:
			if !ok {
				t.Fatalf("follow channel closed after %d records", i)
			}
			if want := from + uint64(i); r.Seq != want {
				t.Fatalf("got seq %d, want %d", r.Seq, want)
			}
			if ComputeHash(r) != r.Hash {
				t.Fatalf("record %d: bad hash", r.Seq)
			}
		case <-ctx.Done():
			t.Fatalf("timed out after %d of %d records", i, n)
		}
	}
}

func TestFollowSeesNewRecords(t *testing.T) {
	srv := startEtcd(t)
	ctx := testCtx(t)
	l := newLog(t, srv.Client())
	other := newLog(t, newClient(t, srv)) // another replica appends
	appendN(t, ctx, l, 0, 3)

	fctx, cancel := context.WithCancel(ctx)
	ch, err := l.Follow(fctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	receive(t, ctx, ch, 2, 2)      // the existing 2 and 3
	appendN(t, ctx, other, 3, 600) // more than a page, while following
	if _, err := other.AppendBatch(ctx, []Event{{Kind: KindCATainted}, {Kind: KindCARevoked}}); err != nil {
		t.Fatal(err)
	}
	receive(t, ctx, ch, 4, 602)
	cancel()
	for range ch { // drains and ends
	}

	// Following from far ahead waits for that seq.
	ch, err = l.Follow(ctx, 700)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, ctx, other, 603, 100)
	receive(t, ctx, ch, 700, 6)
}

// A watch that starts on a compacted revision makes Follow re-read from the
// last seq it sent; nothing is lost or repeated.
func TestFollowHandlesCompaction(t *testing.T) {
	srv := startEtcd(t)
	ctx := testCtx(t)
	logs := &tooltest.Buffer{}
	l := newLog(t, srv.Client(), WithLogger(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	appendN(t, ctx, l, 0, 5)
	var compactions atomic.Int32
	l.afterCatchUp = func(rev int64) {
		if compactions.Load() > 0 {
			return
		}
		compactions.Add(1)
		// Between the catch-up read and the watch: more records are
		// appended and the history is compacted past rev.
		appendN(t, ctx, l, 5, 5)
		resp, err := srv.Client().Get(ctx, "x")
		if err != nil {
			t.Error(err)
			return
		}
		if _, err := srv.Client().Compact(ctx, resp.Header.Revision, nil...); err != nil {
			t.Error(err)
		}
		if resp.Header.Revision <= rev {
			t.Errorf("compacted at %d, not past %d", resp.Header.Revision, rev)
		}
	}
	ch, err := l.Follow(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	receive(t, ctx, ch, 1, 10)
	appendN(t, ctx, l, 10, 3)
	receive(t, ctx, ch, 11, 3)
	if compactions.Load() != 1 {
		t.Fatal("compaction hook did not run")
	}
	if !strings.Contains(logs.String(), "re-reading") {
		t.Fatalf("the watch was not compacted; log:\n%s", logs.String())
	}
}

func TestFollowEndsWithClient(t *testing.T) {
	srv := startEtcd(t)
	ctx := testCtx(t)
	cli := newClient(t, srv)
	l := newLog(t, cli)
	ch, err := l.Follow(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	_ = cli.Close()
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("record from an empty log")
		}
	case <-ctx.Done():
		t.Fatal("follow did not end when the client closed")
	}
}

func TestArchiveThenVerifyRest(t *testing.T) {
	srv := startEtcd(t)
	ctx := testCtx(t)
	clk := newFakeClock()
	p := newPKI(t, t0.Add(-time.Hour), t0.Add(time.Hour))
	roots := []*x509.Certificate{p.root}
	l := newLog(t, srv.Client(), WithClock(clk))
	cp := NewCheckpointer(l, p.keys())
	appendN(t, ctx, l, 0, 6)
	if _, _, err := cp.Checkpoint(ctx); err != nil { // seq 7
		t.Fatal(err)
	}
	appendN(t, ctx, l, 6, 3) // 8..10

	// A follower that started before the archive keeps going.
	ch, err := l.Follow(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	receive(t, ctx, ch, 1, 10)

	var archive1 bytes.Buffer
	anchor, err := l.Archive(ctx, 5, &archive1, ArchiveActor("admin"))
	if err != nil {
		t.Fatal(err)
	}
	if anchor.Seq != 11 || anchor.Kind != KindArchiveAnchor || anchor.Details[DetailArchivedSeq] != "5" ||
		anchor.Details[DetailArchivedSHA256] != ExportDigest(archive1.Bytes()) || anchor.Actor != "admin" {
		t.Fatalf("anchor = %+v", anchor)
	}
	receive(t, ctx, ch, 11, 1)
	s, err := l.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.ArchivedSeq != 5 || s.Seq != 11 {
		t.Fatalf("state = %+v", s)
	}
	if recs, _ := l.Range(ctx, 1, 100); len(recs) != 6 || recs[0].Seq != 6 {
		t.Fatalf("after archive, range starts at %d (%d records)", recs[0].Seq, len(recs))
	}

	// The archive verifies on its own.
	rep, err := Verify(bytes.NewReader(archive1.Bytes()), roots, VerifyOptions{AllowUnsignedTail: true})
	if err != nil || rep.Records != 5 || rep.LastSeq != 5 {
		t.Fatalf("archive: %+v %v", rep, err)
	}
	archiveHead := rep.HeadHash
	// The rest verifies: its start is confirmed by the anchor record.
	if _, _, err := cp.Checkpoint(ctx); err != nil { // seq 12
		t.Fatal(err)
	}
	var rest bytes.Buffer
	if _, err := l.Export(ctx, &rest, 0, 0); err != nil {
		t.Fatal(err)
	}
	rep, err = Verify(bytes.NewReader(rest.Bytes()), roots, VerifyOptions{AllowUnsignedTail: true})
	if err != nil || !rep.StartConfirmed || rep.FirstSeq != 6 || rep.LastSeq != 12 || rep.StartPrevHash != archiveHead {
		t.Fatalf("rest: %+v %v", rep, err)
	}
	// Archive + rest verify as one export.
	both := append(append([]byte{}, archive1.Bytes()...), rest.Bytes()...)
	if rep, err := Verify(bytes.NewReader(both), roots, VerifyOptions{AllowUnsignedTail: true}); err != nil || rep.Records != 12 {
		t.Fatalf("archive+rest: %+v %v", rep, err)
	}
	// The rest without its first record: nothing confirms the start.
	cut := rest.Bytes()[bytes.IndexByte(rest.Bytes(), '\n')+1:]
	var ve *VerifyError
	if _, err := Verify(bytes.NewReader(cut), roots, VerifyOptions{AllowUnsignedTail: true}); !errors.As(err, &ve) || ve.Line != 1 || ve.Seq != 7 {
		t.Fatalf("cut rest: %v", err)
	}
	if rep, err := Verify(bytes.NewReader(cut), roots, VerifyOptions{Partial: true, AllowUnsignedTail: true}); err != nil || rep.StartConfirmed {
		t.Fatalf("cut rest, partial: %+v %v", rep, err)
	}

	// Archive everything: the anchor is then the only record, and it
	// confirms itself.
	var archive2 bytes.Buffer
	anchor2, err := l.Archive(ctx, 12, &archive2)
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := Verify(bytes.NewReader(archive2.Bytes()), roots, VerifyOptions{StartPrevHash: archiveHead, AllowUnsignedTail: true}); err != nil || rep.Records != 7 {
		t.Fatalf("archive 2: %+v %v", rep, err)
	}
	var last bytes.Buffer
	if _, err := l.Export(ctx, &last, 0, 0); err != nil {
		t.Fatal(err)
	}
	if rep, err := Verify(bytes.NewReader(last.Bytes()), roots, VerifyOptions{AllowUnsignedTail: true}); err != nil || rep.Records != 1 || rep.FirstSeq != anchor2.Seq || !rep.StartConfirmed {
		t.Fatalf("after full archive: %+v %v", rep, err)
	}
	all := append(append(append([]byte{}, archive1.Bytes()...), archive2.Bytes()...), last.Bytes()...)
	if rep, err := Verify(bytes.NewReader(all), roots, VerifyOptions{AllowUnsignedTail: true}); err != nil || rep.Records != 13 {
		t.Fatalf("all archives: %+v %v", rep, err)
	}

	// Bad ranges.
	for _, upto := range []uint64{0, 12, 99} {
		if _, err := l.Archive(ctx, upto, &bytes.Buffer{}); !errors.Is(err, ErrInvalidRange) {
			t.Errorf("archive up to %d: %v", upto, err)
		}
	}
}

func TestArchiveDigestMismatchDeletesNothing(t *testing.T) {
	srv := startEtcd(t)
	ctx := testCtx(t)
	l := newLog(t, srv.Client())
	appendN(t, ctx, l, 0, 4)
	var buf bytes.Buffer
	if _, err := l.Export(ctx, &buf, 0, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := l.ArchiveDigest(ctx, 2, ExportDigest(buf.Bytes())); !errors.Is(err, ErrArchiveMismatch) {
		t.Fatalf("digest of 1..3 accepted for 1..2: %v", err)
	}
	if recs, _ := l.Range(ctx, 1, 10); len(recs) != 4 {
		t.Fatalf("%d records left", len(recs))
	}
	if _, err := l.ArchiveDigest(ctx, 3, ExportDigest(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	if recs, _ := l.Range(ctx, 1, 10); len(recs) != 2 || recs[0].Seq != 4 {
		t.Fatalf("after archive: %+v", recs)
	}
}
