package eventlog

import (
	"bytes"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"
)

// buildLog writes a small log with two checkpoints and returns its export
// lines and the PKI that signed them. Records: 1-4 events, 5 checkpoint,
// 6-8 events, 9 checkpoint, 10 event.
func buildLog(t *testing.T) ([][]byte, *pki) {
	t.Helper()
	srv := startEtcd(t)
	ctx := testCtx(t)
	clk := newFakeClock()
	p := newPKI(t, t0.Add(-time.Hour), t0.Add(24*time.Hour))
	l := newLog(t, srv.Client(), WithClock(clk))
	cp := NewCheckpointer(l, p.keys())
	events := []Event{
		{Kind: KindCAPrepared, Subject: "spiffe://example.org", Actor: "scheduler", KeyID: "0a0b"},
		{Kind: KindSVIDIssued, Subject: "spiffe://example.org/w1", Actor: "spiffe://example.org/spire/agent/x", Serial: "1f", Details: map[string]string{"entry_id": "e1", "expires_at": "2026-03-01T13:00:00Z"}},
		{Kind: KindAgentAttested, Subject: "spiffe://example.org/spire/agent/x", Serial: "20"},
		{Kind: KindCAActivated, Subject: "spiffe://example.org", KeyID: "0a0b"},
	}
	for _, e := range events {
		clk.Advance(time.Second)
		if _, err := l.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok, err := cp.Checkpoint(ctx); err != nil || !ok {
		t.Fatalf("checkpoint: %v %v", ok, err)
	}
	if _, ok, err := cp.Checkpoint(ctx); err != nil || ok {
		t.Fatalf("second checkpoint on a checkpoint head: %v %v", ok, err)
	}
	for _, e := range []Event{
		{Kind: KindAgentRenewed, Subject: "spiffe://example.org/w1", Serial: "21"},
		{Kind: "vault.lease.renewed", Subject: "spiffe://example.org/w1", Details: map[string]string{"lease_id": "db/creds/x/1"}},
		{Kind: KindJWTKeyTainted, Subject: "spiffe://example.org", KeyID: "kid-1"},
	} {
		clk.Advance(time.Second)
		if _, err := l.Append(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := cp.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(ctx, Event{Kind: KindAgentEvicted, Subject: "spiffe://example.org/spire/agent/x"}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := l.ExportSigned(ctx, &buf, 0, 0, p.keys()); err != nil {
		t.Fatal(err)
	}
	return bytes.Split(bytes.TrimSuffix(buf.Bytes(), []byte("\n")), []byte("\n")), p
}

func join(lines [][]byte) []byte { return append(bytes.Join(lines, []byte("\n")), '\n') }

func TestVerifyClean(t *testing.T) {
	lines, p := buildLog(t)
	rep, err := Verify(bytes.NewReader(join(lines)), []*x509.Certificate{p.root}, VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := Report{Records: 10, FirstSeq: 1, LastSeq: 10, StartConfirmed: true, Checkpoints: 2, LastCheckpointSeq: 9, SignedThrough: 10, Unsigned: 0,
		Trailers: 1, ExportSigned: true, ExportSigner: "spiffe://example.org/spire/server", LogSize: 10}
	if rep.Records != want.Records || rep.FirstSeq != want.FirstSeq || rep.LastSeq != want.LastSeq ||
		rep.StartConfirmed != want.StartConfirmed || rep.Checkpoints != want.Checkpoints ||
		rep.LastCheckpointSeq != want.LastCheckpointSeq || rep.SignedThrough != want.SignedThrough || rep.Unsigned != want.Unsigned ||
		rep.Trailers != want.Trailers || rep.ExportSigned != want.ExportSigned || rep.ExportSigner != want.ExportSigner || rep.LogSize != want.LogSize {
		t.Fatalf("report = %+v", rep)
	}
	if len(rep.Signers) != 1 || rep.Signers[0] != "spiffe://example.org/spire/server" {
		t.Fatalf("signers = %v", rep.Signers)
	}
	if _, err := Verify(bytes.NewReader(join(lines)), []*x509.Certificate{p.root}, VerifyOptions{Signers: []string{"spiffe://example.org/other"}}); err == nil {
		t.Fatal("checkpoint by a signer not allowed verified")
	}
	// CRLF line endings are tolerated.
	crlf := bytes.ReplaceAll(join(lines), []byte("\n"), []byte("\r\n"))
	if _, err := Verify(bytes.NewReader(crlf), []*x509.Certificate{p.root}, VerifyOptions{}); err != nil {
		t.Fatalf("CRLF: %v", err)
	}
}

// Every kind of tampering is caught at the right record.
func TestVerifyTampering(t *testing.T) {
	lines, p := buildLog(t)
	roots := []*x509.Certificate{p.root}
	rec := func(i int) Record {
		r, err := ParseRecord(lines[i])
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// edit re-encodes record i (0-based) after f changes it, keeping its
	// stored hash.
	edit := func(i int, f func(r *Record)) [][]byte {
		out := make([][]byte, len(lines))
		copy(out, lines)
		r := rec(i)
		r.line = nil
		f(&r)
		b, err := r.encode()
		if err != nil {
			t.Fatal(err)
		}
		out[i] = b
		return out
	}
	raw := func(i int, old, new string) [][]byte {
		out := make([][]byte, len(lines))
		copy(out, lines)
		if !bytes.Contains(out[i], []byte(old)) {
			t.Fatalf("line %d has no %q", i+1, old)
		}
		out[i] = bytes.Replace(out[i], []byte(old), []byte(new), 1)
		return out
	}
	without := func(i int) [][]byte {
		out := append([][]byte{}, lines[:i]...)
		return append(out, lines[i+1:]...)
	}
	swap := func(i, j int) [][]byte {
		out := make([][]byte, len(lines))
		copy(out, lines)
		out[i], out[j] = out[j], out[i]
		return out
	}
	tests := []struct {
		name   string
		lines  [][]byte
		seq    uint64
		line   int
		reason string
	}{
		{"removed record 3", without(2), 4, 3, "want 3"},
		{"removed first record", without(0), 2, 1, "nothing confirms"},
		{"removed checkpoint", without(4), 6, 5, "want 5"},
		{"reordered 6 and 7", swap(5, 6), 7, 6, "want 6"},
		{"edited v", edit(1, func(r *Record) { r.V = 2 }), 2, 2, "schema version 2"},
		{"edited seq", edit(1, func(r *Record) { r.Seq = 7 }), 7, 2, "want 2"},
		{"edited time", edit(1, func(r *Record) { r.Time = r.Time.Add(time.Millisecond) }), 2, 2, "hash mismatch"},
		{"time not canonical", raw(1, "Z\"", "+00:00\""), 2, 2, "canonical"},
		{"edited kind", edit(1, func(r *Record) { r.Kind = KindAgentRenewed }), 2, 2, "hash mismatch"},
		{"edited subject", edit(1, func(r *Record) { r.Subject = "spiffe://example.org/evil" }), 2, 2, "hash mismatch"},
		{"edited actor", edit(1, func(r *Record) { r.Actor = "admin" }), 2, 2, "hash mismatch"},
		{"edited serial", edit(1, func(r *Record) { r.Serial = "ff" }), 2, 2, "hash mismatch"},
		{"edited key_id", edit(0, func(r *Record) { r.KeyID = "0a0c" }), 1, 1, "hash mismatch"},
		{"edited details value", edit(1, func(r *Record) { r.Details["entry_id"] = "e2" }), 2, 2, "hash mismatch"},
		{"added details", edit(2, func(r *Record) { r.Details = map[string]string{"x": "y"} }), 3, 3, "hash mismatch"},
		{"removed details", edit(1, func(r *Record) { r.Details = nil }), 2, 2, "hash mismatch"},
		{"edited prev_hash", edit(6, func(r *Record) { r.PrevHash = rec(4).Hash }), 7, 7, "not the hash of record 6"},
		{"edited hash", edit(6, func(r *Record) { r.Hash = strings.Repeat("a", 64) }), 7, 7, "hash mismatch"},
		{"rehashed edit", edit(6, func(r *Record) { r.Serial = "99"; r.Hash = ComputeHash(*r) }), 8, 8, "not the hash of record 7"},
		{"edited tree_size", edit(4, func(r *Record) { r.Checkpoint.TreeSize = 3; r.Hash = ComputeHash(*r) }), 5, 5, "tree_size 3"},
		{"edited signature", edit(8, func(r *Record) { r.Checkpoint.Signature[8] ^= 1; r.Hash = ComputeHash(*r) }), 9, 9, "bad signature"},
		{"dropped chain", edit(8, func(r *Record) { r.Checkpoint.Chain = nil; r.Hash = ComputeHash(*r) }), 9, 9, "no certificate chain"},
		{"checkpoint field on event", edit(3, func(r *Record) { r.Checkpoint = rec(4).Checkpoint; r.Hash = ComputeHash(*r) }), 4, 4, "exactly on checkpoint"},
		{"unknown field", raw(2, `"kind"`, `"extra":1,"kind"`), 3, 3, "unknown field"},
		{"field in another case", raw(2, `"serial"`, `"Serial"`), 3, 3, "unknown field"},
		{"case-folded duplicate", raw(2, `"kind"`, `"KIND":"ca.revoked","kind"`), 3, 3, "unknown field"},
		{"unknown checkpoint field", raw(4, `"sig_alg"`, `"Sig_alg"`), 5, 5, "unknown field"},
		{"duplicate field", raw(2, `"kind"`, `"serial":"21","kind"`), 3, 3, "duplicate field"},
		{"not json", append(append([][]byte{}, lines[:3]...), []byte("{oops")), 0, 4, "invalid record JSON"},
		{"blank line", append(append(append([][]byte{}, lines[:3]...), []byte("")), lines[3:]...), 4, 4, "empty line"},
		{"invalid utf8", raw(1, "w1", "w\xff"), 2, 2, "UTF-8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(bytes.NewReader(join(tc.lines)), roots, VerifyOptions{})
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("err = %v, want a *VerifyError", err)
			}
			if ve.Seq != tc.seq || ve.Line != tc.line || !strings.Contains(ve.Reason, tc.reason) {
				t.Fatalf("got seq %d line %d %q; want seq %d line %d containing %q", ve.Seq, ve.Line, ve.Reason, tc.seq, tc.line, tc.reason)
			}
		})
	}
}

// Checkpoints signed by the wrong key, by a key outside the trust bundle,
// or by a certificate not valid at the checkpoint's time fail at that
// checkpoint.
func TestVerifyCheckpointSigners(t *testing.T) {
	p := newPKI(t, t0.Add(-time.Hour), t0.Add(time.Hour))
	other := newPKI(t, t0.Add(-time.Hour), t0.Add(time.Hour))
	tests := []struct {
		name    string
		keys    KeySource
		advance time.Duration
		reason  string
	}{
		{"key does not match certificate", StaticKey(mustKey(t), []*x509.Certificate{p.server}), 0, "bad signature"},
		{"not chaining to the bundle", other.keys(), 0, "does not chain to the trust bundle"},
		{"expired at checkpoint time", p.keys(), 2 * time.Hour, "is not valid at 2026-03-01T14:00:00Z"},
		{"self-signed leaf", func() KeySource {
			k := mustKey(t)
			tmpl := &x509.Certificate{
				SerialNumber: p.server.SerialNumber, NotBefore: p.server.NotBefore, NotAfter: p.server.NotAfter,
				KeyUsage: x509.KeyUsageDigitalSignature, URIs: p.server.URIs,
			}
			return StaticKey(k, []*x509.Certificate{mustCert(t, tmpl, tmpl, k.Public(), k)})
		}(), 0, "does not chain"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := startEtcd(t)
			ctx := testCtx(t)
			clk := newFakeClock()
			l := newLog(t, srv.Client(), WithClock(clk))
			for range 3 {
				if _, err := l.Append(ctx, Event{Kind: KindSVIDIssued}); err != nil {
					t.Fatal(err)
				}
			}
			// A good checkpoint first, so the bad one is not the first record
			// checked.
			if _, _, err := NewCheckpointer(l, p.keys()).Checkpoint(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := l.Append(ctx, Event{Kind: KindSVIDIssued}); err != nil {
				t.Fatal(err)
			}
			clk.Advance(tc.advance)
			r, ok, err := NewCheckpointer(l, tc.keys).Checkpoint(ctx)
			if err != nil || !ok {
				t.Fatalf("checkpoint: %v %v", ok, err)
			}
			if _, err := l.Append(ctx, Event{Kind: KindSVIDIssued}); err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if _, err := l.Export(ctx, &buf, 0, 0); err != nil {
				t.Fatal(err)
			}
			_, err = Verify(&buf, []*x509.Certificate{p.root}, VerifyOptions{})
			var ve *VerifyError
			if !errors.As(err, &ve) || ve.Seq != r.Seq || ve.Line != int(r.Seq) || !strings.Contains(ve.Reason, tc.reason) {
				t.Fatalf("err = %v; want record %d failing with %q", err, r.Seq, tc.reason)
			}
		})
	}
}

// The chain is checked at the checkpoint's time, not at verification time.
func TestVerifyCheckpointAtItsTime(t *testing.T) {
	srv := startEtcd(t)
	ctx := testCtx(t)
	clk := newFakeClock()
	// Valid around t0 only, long ago from the verifier's point of view.
	p := newPKI(t, t0.Add(-time.Minute), t0.Add(time.Minute))
	l := newLog(t, srv.Client(), WithClock(clk))
	if _, err := l.Append(ctx, Event{Kind: KindCAActivated}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := NewCheckpointer(l, p.keys()).Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := l.ExportSigned(ctx, &buf, 0, 0, p.keys()); err != nil {
		t.Fatal(err)
	}
	if rep, err := Verify(bytes.NewReader(buf.Bytes()), []*x509.Certificate{p.root}, VerifyOptions{}); err != nil || rep.Checkpoints != 1 || rep.Trailers != 1 {
		t.Fatalf("%+v %v", rep, err)
	}
	// Without roots, a checkpoint cannot verify.
	if _, err := Verify(bytes.NewReader(buf.Bytes()), nil, VerifyOptions{}); err == nil || !strings.Contains(err.Error(), "no trust bundle") {
		t.Fatalf("checkpoint without a trust bundle: %v", err)
	}
}

// The canonical encoding is pinned: docs/audit-log.md shows this record
// and its hash.
func TestHashGolden(t *testing.T) {
	r := Record{
		V: 1, Seq: 1, Time: time.Date(2026, 3, 1, 12, 0, 0, 500000000, time.UTC),
		Kind: KindSVIDIssued, Subject: "spiffe://example.org/web", Actor: "spiffe://example.org/spire/agent/join_token/abc",
		Serial: "1f2e", Details: map[string]string{"entry_id": "e-1", "expires_at": "2026-03-01T13:00:00Z"},
		PrevHash: GenesisHash,
	}
	r.Hash = ComputeHash(r)
	const wantHash = "bf6f2c2631c2ce85bf76d65af340cce32cf3b999444aaeac325430d081ada8e1"
	if r.Hash != wantHash {
		t.Errorf("hash = %s, want %s", r.Hash, wantHash)
	}
	const wantLine = `{"v":1,"seq":1,"time":"2026-03-01T12:00:00.5Z","kind":"svid.issued","subject":"spiffe://example.org/web","actor":"spiffe://example.org/spire/agent/join_token/abc","serial":"1f2e","details":{"entry_id":"e-1","expires_at":"2026-03-01T13:00:00Z"},"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","hash":"bf6f2c2631c2ce85bf76d65af340cce32cf3b999444aaeac325430d081ada8e1"}`
	if got := string(r.Line()); got != wantLine {
		t.Errorf("line = %s\nwant   %s", got, wantLine)
	}
	back, err := ParseRecord(r.Line())
	if err != nil || ComputeHash(back) != r.Hash {
		t.Fatalf("round trip: %v", err)
	}
}
