package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	auditv1 "github.com/signet-id/signet/proto/signet/audit/v1"
	"github.com/signet-id/signet/rotation/eventlog"
	"github.com/signet-id/signet/server/api/audit"
	"github.com/signet-id/signet/server/etcdserver"
	"github.com/spf13/cobra"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
)

// auditServer is a real event log in embedded etcd served over the Audit
// API on a Unix socket, with a CA whose server key signs checkpoints.
type auditServer struct {
	sock       string
	log        *eventlog.Log
	cp         *eventlog.Checkpointer
	bundlePEM  string // the CA as PEM
	bundleJSON string // the CA as a SPIFFE bundle
	otherPEM   string // an unrelated CA
}

func auditCert(t *testing.T, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func auditKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func auditCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	k := auditKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		URIs: []*url.URL{{Scheme: "spiffe", Host: "example.org"}},
	}
	return auditCert(t, tmpl, tmpl, k.Public(), k), k
}

func startAuditServer(t *testing.T) *auditServer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	etcd, err := etcdserver.Start(ctx, etcdserver.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = etcd.Close() })
	l, err := eventlog.New(etcd.Client(), "/signet/example.org/events/")
	if err != nil {
		t.Fatal(err)
	}
	root, rootKey := auditCA(t)
	other, _ := auditCA(t)
	serverKey := auditKey(t)
	leaf := auditCert(t, &x509.Certificate{
		SerialNumber: big.NewInt(2), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
		URIs:     []*url.URL{{Scheme: "spiffe", Host: "example.org", Path: "/spire/server"}},
	}, root, serverKey.Public(), rootKey)

	dir, err := os.MkdirTemp("", "sg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	serverSVID := eventlog.StaticKey(serverKey, []*x509.Certificate{leaf})
	s := &auditServer{
		sock: filepath.Join(dir, "api.sock"),
		log:  l,
		cp:   eventlog.NewCheckpointer(l, serverSVID),
	}
	files := t.TempDir()
	s.bundlePEM = filepath.Join(files, "bundle.pem")
	s.otherPEM = filepath.Join(files, "other.pem")
	s.bundleJSON = filepath.Join(files, "bundle.json")
	writePEM := func(path string, c *x509.Certificate) {
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writePEM(s.bundlePEM, root)
	writePEM(s.otherPEM, other)
	sb := spiffebundle.New(spiffeid.RequireTrustDomainFromString("example.org"))
	sb.AddX509Authority(root)
	js, err := sb.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.bundleJSON, js, 0o600); err != nil {
		t.Fatal(err)
	}

	lis, err := net.Listen("unix", s.sock)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	auditv1.RegisterAuditServer(g, audit.New(audit.Config{Log: l, Signer: serverSVID}))
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return s
}

// add appends n events (kinds cycling svid.issued, ca.prepared,
// agent.attested) and then a checkpoint.
func (s *auditServer) add(t *testing.T, n int) {
	t.Helper()
	ctx := context.Background()
	kinds := []eventlog.Kind{eventlog.KindSVIDIssued, eventlog.KindCAPrepared, eventlog.KindAgentAttested}
	for i := range n {
		if _, err := s.log.Append(ctx, eventlog.Event{Kind: kinds[i%3], Subject: "spiffe://example.org/w", Serial: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.cp.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
}

// runAudit runs `signet audit ...` as Main would and checks the exit code.
func runAudit(t *testing.T, ctx context.Context, out io.Writer, sock string, wantCode int, args ...string) string {
	t.Helper()
	root := &cobra.Command{Use: "signet", SilenceUsage: true, SilenceErrors: true}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(auditCommand())
	var stdout, stderr bytes.Buffer
	if out == nil {
		out = &stdout
	}
	root.SetOut(out)
	root.SetErr(&stderr)
	args = append([]string{"audit"}, args...)
	if sock != "" {
		args = append(args, "--socket-path", sock)
	}
	root.SetArgs(args)
	code := 0
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(&stderr, "signet: %v\n", err)
		code = 1
		var ue usageError
		if errors.As(err, &ue) {
			code = 2
		}
	}
	if code != wantCode {
		t.Fatalf("signet %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, wantCode, stdout.String(), stderr.String())
	}
	return stdout.String() + stderr.String()
}

func auditLines(s string) []string { return strings.Split(strings.TrimSpace(s), "\n") }

func TestAuditTail(t *testing.T) {
	s := startAuditServer(t)
	s.add(t, 30) // 1..30 events, 31 checkpoint
	ctx := context.Background()

	out := runAudit(t, ctx, nil, s.sock, 0, "tail", "-n", "3")
	if l := auditLines(out); len(l) != 3 || !strings.HasPrefix(l[0], "29  ") || !strings.Contains(l[2], "checkpoint") || !strings.Contains(l[2], "tree_size=30") {
		t.Fatalf("tail -n 3:\n%s", out)
	}
	out = runAudit(t, ctx, nil, s.sock, 0, "tail", "--kind", "ca.*", "--kind", "agent.attested", "--from-seq", "1", "--limit", "4", "--output", "json")
	var seqs []uint64
	for _, l := range auditLines(out) {
		r, err := eventlog.ParseRecord([]byte(l))
		if err != nil {
			t.Fatalf("json output line %q: %v", l, err)
		}
		seqs = append(seqs, r.Seq)
	}
	if fmt.Sprint(seqs) != "[2 3 5 6]" {
		t.Fatalf("tail --kind: %v", seqs)
	}
	since := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	if out := runAudit(t, ctx, nil, s.sock, 0, "tail", "--since", since); strings.TrimSpace(out) != "" {
		t.Fatalf("tail --since the future:\n%s", out)
	}
	if out := runAudit(t, ctx, nil, s.sock, 0, "tail", "--since", "1h", "-n", "1"); !strings.HasPrefix(out, "31  ") {
		t.Fatalf("tail --since 1h:\n%s", out)
	}
	runAudit(t, ctx, nil, s.sock, 2, "tail", "--kind", "CA")
	runAudit(t, ctx, nil, s.sock, 2, "tail", "--since", "yesterday")
	runAudit(t, ctx, nil, s.sock, 2, "tail", "extra")
}

func TestAuditTailFollow(t *testing.T) {
	s := startAuditServer(t)
	s.add(t, 3) // 1..3, checkpoint 4
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runAudit(t, ctx, pw, s.sock, 0, "tail", "--follow", "--kind", "svid.issued", "-n", "1")
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	next := func() string {
		if !sc.Scan() {
			t.Fatalf("tail --follow ended: %v", sc.Err())
		}
		return sc.Text()
	}
	if l := next(); !strings.HasPrefix(l, "1  ") {
		t.Fatalf("first line %q", l)
	}
	s.add(t, 4) // 5 svid, 6 ca, 7 agent, 8 svid, checkpoint 9
	for _, want := range []string{"5  ", "8  "} {
		if l := next(); !strings.HasPrefix(l, want) || !strings.Contains(l, "svid.issued") {
			t.Fatalf("followed line %q, want seq %s", l, want)
		}
	}
	cancel()
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	<-done
}

func TestAuditExportVerifyArchive(t *testing.T) {
	s := startAuditServer(t)
	s.add(t, 20) // 1..20, checkpoint 21
	ctx := context.Background()
	dir := t.TempDir()
	full := filepath.Join(dir, "full.jsonl")

	out := runAudit(t, ctx, nil, s.sock, 0, "export", "--out", full)
	if !strings.Contains(out, "Exported 21 records (seq 1..21) to "+full) {
		t.Fatalf("export: %s", out)
	}
	stdout := runAudit(t, ctx, nil, s.sock, 0, "export")
	data, err := os.ReadFile(full)
	if err != nil {
		t.Fatal(err)
	}
	// The same records; each export has its own trailer (signed when made).
	if records(stdout) != records(string(data)) || !eventlog.IsTrailer([]byte(auditLines(stdout)[21])) {
		t.Fatal("export to stdout differs from export to a file")
	}

	for _, b := range []string{s.bundlePEM, s.bundleJSON} {
		out := runAudit(t, ctx, nil, "", 0, "verify", full, "--bundle", b)
		if !strings.HasPrefix(out, "OK: 21 records, seq 1..21, from the first record") || !strings.Contains(out, "checkpoints: 1, the last at seq 21") ||
			!strings.Contains(out, "spiffe://example.org/spire/server") {
			t.Fatalf("verify with %s:\n%s", b, out)
		}
	}
	out = runAudit(t, ctx, nil, "", 0, "verify", full, "--bundle", s.bundlePEM, "-o", "json")
	var rep map[string]any
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep["ok"] != true || rep["records"] != float64(21) {
		t.Fatalf("verify -o json: %s", out)
	}

	// Tampered: record 3 removed.
	l := auditLines(string(data))
	cut := filepath.Join(dir, "cut.jsonl")
	if err := os.WriteFile(cut, []byte(strings.Join(append(append([]string{}, l[:2]...), l[3:]...), "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out = runAudit(t, ctx, nil, "", 1, "verify", cut, "--bundle", s.bundlePEM)
	if !strings.Contains(out, "FAILED: record seq 4 ("+cut+" line 3)") {
		t.Fatalf("verify cut:\n%s", out)
	}
	// The checkpoint does not chain to another CA.
	out = runAudit(t, ctx, nil, "", 1, "verify", full, "--bundle", s.otherPEM)
	if !strings.Contains(out, "FAILED: record seq 21") || !strings.Contains(out, "does not chain") {
		t.Fatalf("verify with another bundle:\n%s", out)
	}
	// Without its trailer the export fails at its end, unless the auditor
	// accepts an unsigned tail.
	noTrailer := filepath.Join(dir, "no-trailer.jsonl")
	if err := os.WriteFile(noTrailer, []byte(records(string(data))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out = runAudit(t, ctx, nil, "", 1, "verify", noTrailer, "--bundle", s.bundlePEM)
	if !strings.Contains(out, "FAILED: record seq 21 ("+noTrailer+" line 21): the export ends with checkpoint seq 21 but has no export trailer") {
		t.Fatalf("verify without trailer:\n%s", out)
	}
	out = runAudit(t, ctx, nil, "", 0, "verify", noTrailer, "--bundle", s.bundlePEM, "--allow-unsigned-tail")
	if !strings.Contains(out, "WARNING: the export does not end with an export trailer") {
		t.Fatalf("verify --allow-unsigned-tail:\n%s", out)
	}
	out = runAudit(t, ctx, nil, "", 0, "verify", full, "--bundle", s.bundlePEM, "--max-age", "1h", "-o", "json")
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep["export_signed"] != true || rep["export_signer"] != "spiffe://example.org/spire/server" {
		t.Fatalf("verify -o json:\n%s", out)
	}
	// --signer replaces the default.
	out = runAudit(t, ctx, nil, "", 1, "verify", full, "--bundle", s.bundlePEM, "--signer", "spiffe://example.org/auditor")
	if !strings.Contains(out, "not an allowed checkpoint signer (allowed: spiffe://example.org/auditor") {
		t.Fatalf("verify --signer:\n%s", out)
	}
	runAudit(t, ctx, nil, "", 2, "verify", full, "--bundle", s.bundlePEM, "--signer", "example.org/spire/server")
	runAudit(t, ctx, nil, "", 2, "verify", full, "--bundle", s.bundlePEM, "--expect-head", "21")
	runAudit(t, ctx, nil, "", 2, "verify", full, "--bundle", s.bundlePEM, "--max-age", "-1h")
	runAudit(t, ctx, nil, "", 2, "verify", full)
	runAudit(t, ctx, nil, "", 2, "verify", "--bundle", s.bundlePEM)
	runAudit(t, ctx, nil, "", 1, "verify", filepath.Join(dir, "missing"), "--bundle", s.bundlePEM)

	// Archive 1..10, then the rest still verifies, alone and after the archive.
	archive := filepath.Join(dir, "archive-1.jsonl")
	out = runAudit(t, ctx, nil, s.sock, 0, "archive", "--upto", "10", "--out", archive)
	if !strings.Contains(out, "Archived 10 records (seq 1..10) to "+archive) || !strings.Contains(out, "archive.anchor seq 22") {
		t.Fatalf("archive: %s", out)
	}
	runAudit(t, ctx, nil, s.sock, 2, "archive", "--upto", "15", "--out", archive) // never overwrites
	beyond := filepath.Join(dir, "beyond.jsonl")
	out = runAudit(t, ctx, nil, s.sock, 1, "archive", "--upto", "99", "--out", beyond)
	if !strings.Contains(out, "the log ends at seq 22") {
		t.Fatalf("archive beyond the head: %s", out)
	}
	if _, err := os.Stat(beyond); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a failed archive left its file")
	}
	runAudit(t, ctx, nil, s.sock, 2, "archive", "--out", beyond)
	runAudit(t, ctx, nil, s.sock, 2, "archive", "--upto", "12")

	s.add(t, 2) // 23, 24, checkpoint 25
	rest := filepath.Join(dir, "rest.jsonl")
	runAudit(t, ctx, nil, s.sock, 0, "export", "--out", rest)
	out = runAudit(t, ctx, nil, "", 0, "verify", rest, "--bundle", s.bundlePEM)
	if !strings.HasPrefix(out, "OK: 15 records, seq 11..25, continuing after archived seq 10 (start confirmed)") {
		t.Fatalf("verify rest:\n%s", out)
	}
	out = runAudit(t, ctx, nil, "", 0, "verify", archive, rest, "--bundle", s.bundlePEM)
	if !strings.HasPrefix(out, "OK: 25 records, seq 1..25") {
		t.Fatalf("verify archive + rest:\n%s", out)
	}
	// A bad record in the second file is named by file and line.
	rl := auditLines(auditRead(t, rest))
	rl[4] = strings.Replace(rl[4], `"subject":"spiffe://example.org/w"`, `"subject":"spiffe://example.org/x"`, 1)
	bad := filepath.Join(dir, "bad.jsonl")
	if err := os.WriteFile(bad, []byte(strings.Join(rl, "\n")), 0o600); err != nil { // no final newline
		t.Fatal(err)
	}
	out = runAudit(t, ctx, nil, "", 1, "verify", archive, bad, "--bundle", s.bundlePEM)
	if !strings.Contains(out, "FAILED: record seq 15 ("+bad+" line 5): hash mismatch") {
		t.Fatalf("verify archive + bad:\n%s", out)
	}
}

// records drops an export's trailer lines.
func records(export string) string {
	var keep []string
	for _, l := range auditLines(export) {
		if !eventlog.IsTrailer([]byte(l)) {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

func auditRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"2026-02-28T10:00:00Z", time.Date(2026, 2, 28, 10, 0, 0, 0, time.UTC), true},
		{"90m", now.Add(-90 * time.Minute), true},
		{"-5m", time.Time{}, false},
		{"yesterday", time.Time{}, false},
	}
	for _, tc := range tests {
		got, err := parseSince(tc.in, now)
		if (err == nil) != tc.ok || !got.Equal(tc.want) {
			t.Errorf("parseSince(%q) = %v, %v", tc.in, got, err)
		}
	}
}
