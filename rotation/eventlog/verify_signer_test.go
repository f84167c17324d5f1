package eventlog

import (
	"bytes"
	"crypto/x509"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
)

// signedLog appends three events and a checkpoint signed by cpKeys, then
// two events, and exports the log ending with a trailer signed by
// trKeys at the clock's time (advanced by trAfter first).
func signedLog(t *testing.T, cpKeys, trKeys KeySource, trAfter time.Duration) []byte {
	t.Helper()
	srv := startEtcd(t)
	ctx := testCtx(t)
	clk := newFakeClock()
	l := newLog(t, srv.Client(), WithClock(clk))
	appendN(t, ctx, l, 0, 3)
	if _, ok, err := NewCheckpointer(l, cpKeys, WithSubject("spiffe://example.org")).Checkpoint(ctx); err != nil || !ok {
		t.Fatalf("checkpoint: %v %v", ok, err)
	}
	appendN(t, ctx, l, 3, 2)
	clk.Advance(trAfter)
	var buf bytes.Buffer
	if _, err := l.ExportSigned(ctx, &buf, 0, 0, trKeys); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Checkpoints and trailers signed by anything but the server's own
// end-entity SVID, valid at the signature's time, fail at that line.
func TestVerifySignerRules(t *testing.T) {
	p := newPKI(t, t0.Add(-time.Hour), t0.Add(time.Hour))
	roots := p.rootsList()
	leafWith := func(mod func(*x509.Certificate)) KeySource {
		k := mustKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: p.server.SerialNumber, NotBefore: p.server.NotBefore, NotAfter: p.server.NotAfter,
			KeyUsage: x509.KeyUsageDigitalSignature, URIs: p.server.URIs,
		}
		mod(tmpl)
		return StaticKey(k, []*x509.Certificate{mustCert(t, tmpl, p.root, k.Public(), p.rootKey)})
	}
	workloadKey := mustKey(t)
	workload := StaticKey(workloadKey, []*x509.Certificate{p.leaf(t, workloadKey.Public(), "/web", t0.Add(-time.Hour), t0.Add(time.Hour))})
	agentKey := mustKey(t)
	agent := StaticKey(agentKey, []*x509.Certificate{p.leaf(t, agentKey.Public(), "/spire/agent/join_token/x", t0.Add(-time.Hour), t0.Add(time.Hour))})
	// The trust domain's CA signing with its own (CA) certificate.
	caSigner := StaticKey(p.rootKey, []*x509.Certificate{p.root})
	// A server SVID that expired before the checkpoint was made.
	oldKey := mustKey(t)
	expired := StaticKey(oldKey, []*x509.Certificate{p.leaf(t, oldKey.Public(), "/spire/server", t0.Add(-time.Hour), t0.Add(-time.Minute))})

	tests := []struct {
		name     string
		cp, tr   KeySource
		trAfter  time.Duration
		opts     VerifyOptions
		line     int
		contains string
	}{
		{"workload SVID signs the checkpoint", workload, p.keys(), 0, VerifyOptions{}, 4,
			"signed by spiffe://example.org/web, which is not an allowed checkpoint signer (allowed: spiffe://example.org/spire/server"},
		{"workload SVID signs the trailer", p.keys(), workload, 0, VerifyOptions{}, 7,
			"export trailer: signed by spiffe://example.org/web, which is not an allowed checkpoint signer"},
		{"agent SVID signs", agent, p.keys(), 0, VerifyOptions{}, 4, "spiffe://example.org/spire/agent/join_token/x, which is not an allowed"},
		{"CA certificate signs", caSigner, p.keys(), 0, VerifyOptions{}, 4, "is a CA certificate"},
		{"CA certificate signs, signer allowed by ID", caSigner, p.keys(), 0, VerifyOptions{Signers: []string{"spiffe://example.org"}}, 4, "is a CA certificate"},
		{"leaf with keyCertSign", leafWith(func(c *x509.Certificate) { c.KeyUsage |= x509.KeyUsageCertSign }), p.keys(), 0, VerifyOptions{}, 4, "is a CA certificate"},
		{"no digitalSignature", leafWith(func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageKeyEncipherment }), p.keys(), 0, VerifyOptions{}, 4, "lacks the digitalSignature"},
		{"no key usage at all", leafWith(func(c *x509.Certificate) { c.KeyUsage = 0 }), p.keys(), 0, VerifyOptions{}, 4, "lacks the digitalSignature"},
		{"two URI SANs", leafWith(func(c *x509.Certificate) {
			c.URIs = append(c.URIs, &url.URL{Scheme: "spiffe", Host: "example.org", Path: "/web"})
		}), p.keys(), 0, VerifyOptions{}, 4, "has 2 URI SANs"},
		{"expired server SVID signs the checkpoint", expired, p.keys(), 0, VerifyOptions{}, 4,
			"of spiffe://example.org/spire/server is not valid at 2026-03-01T12:00:00Z"},
		{"server SVID expired before the export", p.keys(), p.keys(), 2 * time.Hour, VerifyOptions{}, 7, "export trailer: signer certificate"},
		{"--signer replaces the default", p.keys(), p.keys(), 0, VerifyOptions{Signers: []string{"spiffe://example.org/other"}}, 4,
			"spiffe://example.org/spire/server, which is not an allowed checkpoint signer (allowed: spiffe://example.org/other"},
		{"signed in the verifier's future", p.keys(), p.keys(), 0, VerifyOptions{Now: func() time.Time { return t0.Add(-time.Hour) }}, 4, "after the verifier's clock"},
		{"export too old for --max-age", p.keys(), p.keys(), 0, VerifyOptions{MaxAge: time.Hour, Now: func() time.Time { return t0.Add(3 * time.Hour) }}, 7, "more than 1h0m0s before now"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := signedLog(t, tc.cp, tc.tr, tc.trAfter)
			_, err := Verify(bytes.NewReader(data), roots, tc.opts)
			var ve *VerifyError
			if !errors.As(err, &ve) || ve.Line != tc.line || !strings.Contains(ve.Reason, tc.contains) {
				t.Fatalf("err = %v; want line %d containing %q", err, tc.line, tc.contains)
			}
		})
	}
	// The same log signed by the server verifies, also with --max-age.
	rep, err := Verify(bytes.NewReader(signedLog(t, p.keys(), p.keys(), 0)), roots, VerifyOptions{MaxAge: time.Hour, Now: func() time.Time { return t0.Add(30 * time.Minute) }})
	if err != nil || !rep.ExportSigned || rep.Checkpoints != 1 || rep.Trailers != 1 {
		t.Fatalf("%+v %v", rep, err)
	}
}

// The default signer comes from the bundle's one trust domain.
func TestDefaultSigners(t *testing.T) {
	a := newPKI(t, t0, t0.Add(time.Hour))
	b := newPKI(t, t0, t0.Add(time.Hour))
	got, err := DefaultSigners([]*x509.Certificate{a.root, b.root}) // two generations, one trust domain
	if err != nil || len(got) != 1 || got[0] != "spiffe://example.org/spire/server" {
		t.Fatalf("%v %v", got, err)
	}
	other := *b.root
	other.URIs = []*url.URL{{Scheme: "spiffe", Host: "other.org"}}
	if _, err := DefaultSigners([]*x509.Certificate{a.root, &other}); !errors.Is(err, ErrNoDefaultSigner) || !strings.Contains(err.Error(), "example.org, other.org") {
		t.Fatalf("two trust domains: %v", err)
	}
	bare := *a.root
	bare.URIs = nil
	if _, err := DefaultSigners([]*x509.Certificate{&bare}); !errors.Is(err, ErrNoDefaultSigner) {
		t.Fatalf("no trust domain: %v", err)
	}
	if _, err := Verify(strings.NewReader(""), []*x509.Certificate{&bare}, VerifyOptions{}); !errors.Is(err, ErrNoDefaultSigner) {
		t.Fatalf("Verify without a default signer: %v", err)
	}
}

// Tampering with or misplacing the trailer, truncating, and pinning a head.
func TestVerifyTrailerAndTail(t *testing.T) {
	p := newPKI(t, t0.Add(-time.Hour), t0.Add(time.Hour))
	roots := p.rootsList()
	data := signedLog(t, p.keys(), p.keys(), 0) // 1-3, checkpoint 4, 5-6, trailer
	lines := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
	trailer := lines[6]
	rec5, err := ParseRecord(lines[4])
	if err != nil {
		t.Fatal(err)
	}
	rec6, _ := ParseRecord(lines[5])
	tr, err := ParseTrailer(trailer)
	if err != nil {
		t.Fatal(err)
	}
	retrailer := func(f func(*Trailer)) []byte {
		c := tr
		f(&c)
		return c.Line()
	}
	with := func(ls ...[]byte) [][]byte { return ls }
	tests := []struct {
		name     string
		lines    [][]byte
		opts     VerifyOptions
		seq      uint64
		line     int
		contains string
	}{
		{"trailer stripped", lines[:6], VerifyOptions{}, 5, 5, "unsigned: record 5 (and the 1 after it, up to seq 6) is not covered"},
		{"cut after the checkpoint", lines[:4], VerifyOptions{}, 4, 4, "ends with checkpoint seq 4 but has no export trailer"},
		{"cut in the middle", lines[:5], VerifyOptions{}, 5, 5, "unsigned: record 5 is not covered"},
		{"trailer moved up", append(append([][]byte{}, lines[:5]...), trailer), VerifyOptions{}, 5, 6, "export trailer: tree_size 6, but the record before it is seq 5"},
		{"trailer first", with(trailer), VerifyOptions{}, 0, 1, "before any record"},
		{"trailer head edited", append(append([][]byte{}, lines[:6]...), retrailer(func(c *Trailer) { c.HeadHash = rec5.Hash })), VerifyOptions{}, 6, 7, "head_hash"},
		{"trailer log_size edited", append(append([][]byte{}, lines[:6]...), retrailer(func(c *Trailer) { c.LogSize = 99 })), VerifyOptions{}, 6, 7, "bad signature"},
		{"trailer time edited", append(append([][]byte{}, lines[:6]...), retrailer(func(c *Trailer) { c.Time = c.Time.Add(time.Second) })), VerifyOptions{}, 6, 7, "bad signature"},
		{"trailer version 2", append(append([][]byte{}, lines[:6]...), retrailer(func(c *Trailer) { c.V = 2 })), VerifyOptions{}, 6, 7, "unsupported trailer version 2"},
		{"trailer extra member", append(append([][]byte{}, lines[:6]...), bytes.Replace(trailer, []byte(`"v":1`), []byte(`"v":1,"x":1`), 1)), VerifyOptions{}, 6, 7, "unknown field"},
		{"trailer spacing", append(append([][]byte{}, lines[:6]...), bytes.Replace(trailer, []byte(`"v":1`), []byte(`"v": 1`), 1)), VerifyOptions{}, 6, 7, "canonical"},
		{"expected head beyond the export", lines, VerifyOptions{ExpectHead: &Head{Seq: 9, Hash: rec6.Hash}}, 9, 8, "before the expected head seq 9: records 7..9 are missing"},
		{"expected head differs", lines, VerifyOptions{ExpectHead: &Head{Seq: 5, Hash: rec6.Hash}}, 5, 5, "this history differs"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Verify(bytes.NewReader(join(tc.lines)), roots, tc.opts)
			var ve *VerifyError
			if !errors.As(err, &ve) || ve.Seq != tc.seq || ve.Line != tc.line || !strings.Contains(ve.Reason, tc.contains) {
				t.Fatalf("err = %v; want seq %d line %d containing %q", err, tc.seq, tc.line, tc.contains)
			}
		})
	}
	// Accepted explicitly, the unsigned tail is reported.
	rep, err := Verify(bytes.NewReader(join(lines[:5])), roots, VerifyOptions{AllowUnsignedTail: true})
	if err != nil || rep.ExportSigned || rep.Unsigned != 1 || rep.SignedThrough != 3 {
		t.Fatalf("allowed unsigned tail: %+v %v", rep, err)
	}
	if rep, err := Verify(bytes.NewReader(data), roots, VerifyOptions{ExpectHead: &Head{Seq: 5, Hash: rec5.Hash}}); err != nil || !rep.ExportSigned || rep.SignedThrough != 6 {
		t.Fatalf("pinned head in the export: %+v %v", rep, err)
	}
}

func TestParseHead(t *testing.T) {
	h := strings.Repeat("ab", 32)
	if got, err := ParseHead("12:" + h); err != nil || got.Seq != 12 || got.Hash != h {
		t.Fatalf("%+v %v", got, err)
	}
	for _, bad := range []string{"", "12", "0:" + h, "-1:" + h, "012:" + h, "12:" + strings.ToUpper(h), "12:abc", "x:" + h} {
		if _, err := ParseHead(bad); err == nil {
			t.Errorf("ParseHead(%q) accepted", bad)
		}
	}
}

// An archive written with ArchiveSigned verifies on its own, and with the
// export of the rest as one chain; without it, only as an unsigned tail.
func TestArchiveSignedVerifies(t *testing.T) {
	p := newPKI(t, t0.Add(-time.Hour), t0.Add(time.Hour))
	srv := startEtcd(t)
	ctx := testCtx(t)
	clk := newFakeClock()
	l := newLog(t, srv.Client(), WithClock(clk))
	appendN(t, ctx, l, 0, 6)
	var archive bytes.Buffer
	anchor, err := l.Archive(ctx, 4, &archive, ArchiveSigned(p.keys()))
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSuffix(archive.Bytes(), []byte("\n")), []byte("\n"))
	if len(lines) != 5 || !IsTrailer(lines[4]) || anchor.Details[DetailArchivedSHA256] != ExportDigest(join(lines[:4])) {
		t.Fatalf("archive: %d lines, anchor %+v", len(lines), anchor.Details)
	}
	if rep, err := Verify(bytes.NewReader(archive.Bytes()), p.rootsList(), VerifyOptions{}); err != nil || !rep.ExportSigned || rep.LogSize != 6 {
		t.Fatalf("archive alone: %+v %v", rep, err)
	}
	var rest bytes.Buffer
	if _, err := l.ExportSigned(ctx, &rest, 0, 0, p.keys()); err != nil {
		t.Fatal(err)
	}
	both := append(archive.Bytes(), rest.Bytes()...)
	if rep, err := Verify(bytes.NewReader(both), p.rootsList(), VerifyOptions{}); err != nil || rep.Records != 7 || rep.Trailers != 2 {
		t.Fatalf("archive + rest: %+v %v", rep, err)
	}
	var unsigned bytes.Buffer
	if _, err := l.Archive(ctx, 5, &unsigned); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(bytes.NewReader(unsigned.Bytes()), p.rootsList(), VerifyOptions{StartPrevHash: anchor.Details[DetailArchivedHash]}); err == nil || !strings.Contains(err.Error(), "unsigned: record 5 is not covered") {
		t.Fatalf("an unsigned archive: %v", err)
	}
}
