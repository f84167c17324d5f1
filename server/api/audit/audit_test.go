package audit_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/signet-id/signet/clock/fakeclock"
	auditv1 "github.com/signet-id/signet/proto/signet/audit/v1"
	"github.com/signet-id/signet/rotation/eventlog"
	"github.com/signet-id/signet/server/api/audit"
	"github.com/signet-id/signet/server/etcdserver"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// setup serves the Audit API over a real Unix socket on a log in a real
// embedded etcd.
func setup(t *testing.T) (context.Context, *eventlog.Log, *fakeclock.Clock, auditv1.AuditClient) {
	t.Helper()
	return setupWith(t, nil)
}

// setupWith is setup with a signer for export trailers.
func setupWith(t *testing.T, signer eventlog.KeySource) (context.Context, *eventlog.Log, *fakeclock.Clock, auditv1.AuditClient) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	srv, err := etcdserver.Start(ctx, etcdserver.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	clk := fakeclock.New(t0)
	l, err := eventlog.New(srv.Client(), "/signet/example.org/events/", eventlog.WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "sg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	sock := filepath.Join(dir, "api.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	auditv1.RegisterAuditServer(g, audit.New(audit.Config{Log: l, Signer: signer}))
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return ctx, l, clk, auditv1.NewAuditClient(conn)
}

func fill(t *testing.T, ctx context.Context, l *eventlog.Log, clk *fakeclock.Clock, n int) {
	t.Helper()
	kinds := []eventlog.Kind{eventlog.KindSVIDIssued, eventlog.KindCAPrepared, eventlog.KindAgentAttested}
	for i := range n {
		clk.Advance(time.Minute)
		if _, err := l.Append(ctx, eventlog.Event{Kind: kinds[i%3], Serial: strconv.Itoa(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
}

func tail(t *testing.T, ctx context.Context, c auditv1.AuditClient, req *auditv1.TailRequest) ([]uint64, error) {
	t.Helper()
	stream, err := c.Tail(ctx, req)
	if err != nil {
		return nil, err
	}
	var seqs []uint64
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return seqs, nil
		}
		if err != nil {
			return seqs, err
		}
		rec, perr := eventlog.ParseRecord(r.Json)
		if perr != nil || rec.Seq != r.Seq || string(rec.Kind) != r.Kind {
			t.Fatalf("record %d: %v", r.Seq, perr)
		}
		seqs = append(seqs, r.Seq)
	}
}

func TestTail(t *testing.T) {
	ctx, l, clk, c := setup(t)
	fill(t, ctx, l, clk, 30)
	tests := []struct {
		name  string
		req   *auditv1.TailRequest
		first uint64
		n     int
	}{
		{"default last 20", &auditv1.TailRequest{}, 11, 20},
		{"last 3", &auditv1.TailRequest{Limit: 3}, 28, 3},
		{"last 2 ca", &auditv1.TailRequest{Limit: 2, Kinds: []string{"ca.*"}}, 26, 2},
		{"since", &auditv1.TailRequest{Since: timestamppb.New(t0.Add(25 * time.Minute))}, 25, 6},
		{"from 5", &auditv1.TailRequest{FromSeq: 5}, 5, 26},
		{"from 5 limit 4 agents", &auditv1.TailRequest{FromSeq: 5, Limit: 4, Kinds: []string{string(eventlog.KindAgentAttested)}}, 6, 4},
		{"from past head", &auditv1.TailRequest{FromSeq: 99}, 0, 0},
	}
	for _, tc := range tests {
		seqs, err := tail(t, ctx, c, tc.req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(seqs) != tc.n || (tc.n > 0 && seqs[0] != tc.first) {
			t.Errorf("%s: got %v", tc.name, seqs)
		}
	}
	for _, kinds := range [][]string{{"CA.*"}, {"ca..x"}} {
		if _, err := tail(t, ctx, c, &auditv1.TailRequest{Kinds: kinds}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("kinds %q: %v", kinds, err)
		}
	}
}

func TestTailFollow(t *testing.T) {
	ctx, l, clk, c := setup(t)
	fill(t, ctx, l, clk, 5)
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.Tail(fctx, &auditv1.TailRequest{Limit: 2, Follow: true, Kinds: []string{string(eventlog.KindSVIDIssued), string(eventlog.KindCAPrepared)}})
	if err != nil {
		t.Fatal(err)
	}
	recv := func(want ...uint64) {
		t.Helper()
		for _, w := range want {
			r, err := stream.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if r.Seq != w {
				t.Fatalf("got seq %d, want %d", r.Seq, w)
			}
		}
	}
	recv(4, 5)              // the last two matching: 4 svid, 5 ca
	fill(t, ctx, l, clk, 6) // 6 svid, 7 ca, 8 agent, 9 svid, 10 ca, 11 agent
	recv(6, 7, 9, 10)
	cancel()
	if _, err := stream.Recv(); status.Code(err) != codes.Canceled {
		t.Fatalf("after cancel: %v", err)
	}
}

func export(t *testing.T, ctx context.Context, c auditv1.AuditClient, req *auditv1.ExportRequest) ([]byte, error) {
	t.Helper()
	stream, err := c.Export(ctx, req)
	if err != nil {
		return nil, err
	}
	var out []byte
	for {
		ch, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if len(ch.Data) == 0 || ch.Data[len(ch.Data)-1] != '\n' {
			t.Fatal("chunk does not end at a line end")
		}
		out = append(out, ch.Data...)
	}
}

func TestExportAndArchive(t *testing.T) {
	ctx, l, clk, c := setup(t)
	fill(t, ctx, l, clk, 2000) // several chunks
	got, err := export(t, ctx, c, &auditv1.ExportRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if _, err := l.Export(ctx, &want, 0, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatal("exported bytes differ from the log's export")
	}
	if rep, err := eventlog.Verify(bytes.NewReader(got), nil, eventlog.VerifyOptions{AllowUnsignedTail: true}); err != nil || rep.Records != 2000 {
		t.Fatalf("verify: %+v %v", rep, err)
	}
	if _, err := export(t, ctx, c, &auditv1.ExportRequest{FromSeq: 9, ToSeq: 3}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("from > to: %v", err)
	}

	part, err := export(t, ctx, c, &auditv1.ExportRequest{ToSeq: 1500})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		req  *auditv1.ArchiveRequest
		code codes.Code
	}{
		{&auditv1.ArchiveRequest{Sha256: eventlog.ExportDigest(part)}, codes.InvalidArgument},
		{&auditv1.ArchiveRequest{UptoSeq: 1500, Sha256: "XYZ"}, codes.InvalidArgument},
		{&auditv1.ArchiveRequest{UptoSeq: 1499, Sha256: eventlog.ExportDigest(part)}, codes.FailedPrecondition},
		{&auditv1.ArchiveRequest{UptoSeq: 3000, Sha256: eventlog.ExportDigest(part)}, codes.FailedPrecondition},
	} {
		if _, err := c.Archive(ctx, tc.req); status.Code(err) != tc.code {
			t.Errorf("archive %v: %v, want %s", tc.req, err, tc.code)
		}
	}
	resp, err := c.Archive(ctx, &auditv1.ArchiveRequest{UptoSeq: 1500, Sha256: eventlog.ExportDigest(part)})
	if err != nil {
		t.Fatal(err)
	}
	if resp.ArchivedRecords != 1500 || resp.Anchor.Kind != string(eventlog.KindArchiveAnchor) || resp.Anchor.Seq != 2001 {
		t.Fatalf("archive response: %v", resp)
	}
	rest, err := export(t, ctx, c, &auditv1.ExportRequest{})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := eventlog.Verify(bytes.NewReader(rest), nil, eventlog.VerifyOptions{AllowUnsignedTail: true})
	if err != nil || rep.FirstSeq != 1501 || !rep.StartConfirmed {
		t.Fatalf("rest: %+v %v", rep, err)
	}
	if rep, err := eventlog.Verify(bytes.NewReader(append(part, rest...)), nil, eventlog.VerifyOptions{AllowUnsignedTail: true}); err != nil || rep.Records != 2001 {
		t.Fatalf("archive+rest: %+v %v", rep, err)
	}
}
