package e2e

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/cli"
	"github.com/signet-id/signet/rotation/eventlog"
	"github.com/signet-id/signet/server"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// TestAuditForgeAndTruncation performs the attacks of review findings 4
// and 7 on a real export of a real server: a workload rewrites the
// history, re-links the hash chain and re-signs every checkpoint and the
// export trailer with its own (genuine, issuer-signed) X.509-SVID; and an
// export is cut after a checkpoint or in the middle. Verification must
// fail, naming the signer or the first unsigned record.
func TestAuditForgeAndTruncation(t *testing.T) {
	dir := shortDir(t)
	srv := startServerWith(t, dir, func(o *serverOptions) { o.checkpointInterval = 300 * time.Millisecond })
	token := srv.token(t, 600)
	me := spiffeid.RequireFromPath(td, "/audited")
	srv.createEntry(t, me, agentIDFor(token), uidSelector(os.Getuid()))
	ag := startAgent(t, srv, dir, token)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+ag.socket)))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	wl, err := src.GetX509SVID() // the attacker's own identity: an ordinary workload
	if err != nil {
		t.Fatal(err)
	}

	run := func(args ...string) (string, int) {
		var out, errb bytes.Buffer
		code := cli.Main(ctx, args, &out, &errb)
		return out.String() + errb.String(), code
	}
	export := filepath.Join(dir, "events.jsonl")
	var lines []string
	// Wait for two stored checkpoints with records between them (a second
	// entry makes the agent fetch another SVID after the first checkpoint).
	second := false
	waitFor(t, 60*time.Second, "two checkpoints with records between them", func() bool {
		out, code := run("audit", "export", "--socket-path", srv.AdminSocket(), "--out", export)
		if code != 0 {
			t.Logf("export: %s", out)
			return false
		}
		lines = strings.Split(strings.TrimSpace(readFile(t, export)), "\n")
		cps := checkpointLines(lines)
		if len(cps) >= 1 && !second {
			second = true
			srv.createEntry(t, spiffeid.RequireFromPath(td, "/audited-2"), agentIDFor(token), uidSelector(os.Getuid()))
		}
		return len(cps) >= 2 && cps[1] > cps[0]+1
	})
	bundle := filepath.Join(srv.dir, "server", server.BundleFile)
	if !eventlog.IsTrailer([]byte(lines[len(lines)-1])) {
		t.Fatalf("the export does not end with a trailer: %.80s", lines[len(lines)-1])
	}
	if out, code := run("audit", "verify", export, "--bundle", bundle); code != 0 || !strings.Contains(out, "exported:") {
		t.Fatalf("verify of a clean export failed (%d):\n%s", code, out)
	}
	cps := checkpointLines(lines)
	write := func(name string, ls []string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.Join(ls, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	t.Run("history re-signed with a workload SVID", func(t *testing.T) {
		forged, firstCP := forge(t, lines, wl)
		p := write("forged.jsonl", forged)
		out, code := run("audit", "verify", p, "--bundle", bundle)
		want := fmt.Sprintf("FAILED: record seq %d (%s line %d): checkpoint: signed by %s, which is not an allowed checkpoint signer (allowed: spiffe://example.org/spire/server",
			firstCP, p, firstCP, me)
		if code != 1 || !strings.Contains(out, want) {
			t.Fatalf("exit %d, want 1 and %q:\n%s", code, want, out)
		}
		// The forgery itself is well formed: an auditor who explicitly
		// allows that workload as a signer would accept it. So the
		// failure above is the signer rule, nothing incidental.
		if out, code := run("audit", "verify", p, "--bundle", bundle, "--signer", me.String()); code != 0 {
			t.Fatalf("forgery with the workload allowed: exit %d\n%s", code, out)
		}
	})

	t.Run("cut right after the first checkpoint", func(t *testing.T) {
		p := write("cut-at-checkpoint.jsonl", lines[:cps[0]])
		out, code := run("audit", "verify", p, "--bundle", bundle)
		want := fmt.Sprintf("FAILED: record seq %d (%s line %d): the export ends with checkpoint seq %d but has no export trailer", cps[0], p, cps[0], cps[0])
		if code != 1 || !strings.Contains(out, want) {
			t.Fatalf("exit %d, want 1 and %q:\n%s", code, want, out)
		}
	})

	t.Run("cut in the middle, unsigned tail", func(t *testing.T) {
		cut := cps[0] + 1 // one record after the first checkpoint
		p := write("cut-middle.jsonl", lines[:cut])
		out, code := run("audit", "verify", p, "--bundle", bundle)
		want := fmt.Sprintf("FAILED: record seq %d (%s line %d): unsigned: record %d is not covered by any signature", cut, p, cut, cut)
		if code != 1 || !strings.Contains(out, want) {
			t.Fatalf("exit %d, want 1 and %q:\n%s", code, want, out)
		}
		out, code = run("audit", "verify", p, "--bundle", bundle, "--allow-unsigned-tail")
		if code != 0 || !strings.Contains(out, "WARNING: the export does not end with an export trailer (accepted because of --allow-unsigned-tail): records after seq "+fmt.Sprint(cut)+" may be missing; unsigned records after the last signature: 1") ||
			!strings.Contains(out, fmt.Sprintf("unsigned:    1 record after the last signature (seq %d..%d)", cut, cut)) {
			t.Fatalf("--allow-unsigned-tail: exit %d\n%s", code, out)
		}
	})

	t.Run("trailer stripped", func(t *testing.T) {
		p := write("no-trailer.jsonl", lines[:len(lines)-1])
		out, code := run("audit", "verify", p, "--bundle", bundle)
		if code != 1 || !strings.Contains(out, "FAILED: record seq") || !strings.Contains(out, "--allow-unsigned-tail") {
			t.Fatalf("exit %d:\n%s", code, out)
		}
	})

	t.Run("pinned head", func(t *testing.T) {
		var r eventlog.Record
		if err := json.Unmarshal([]byte(lines[cps[1]-1]), &r); err != nil {
			t.Fatal(err)
		}
		head := fmt.Sprintf("%d:%s", r.Seq, r.Hash)
		if out, code := run("audit", "verify", export, "--bundle", bundle, "--expect-head", head); code != 0 {
			t.Fatalf("--expect-head of a record in the export: exit %d\n%s", code, out)
		}
		// An older, genuinely signed export that ends before the pinned
		// head is caught.
		p := write("older.jsonl", lines[:cps[0]])
		out, code := run("audit", "verify", p, "--bundle", bundle, "--allow-unsigned-tail", "--expect-head", head)
		if code != 1 || !strings.Contains(out, fmt.Sprintf("before the expected head seq %d", r.Seq)) {
			t.Fatalf("exit %d:\n%s", code, out)
		}
	})
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkpointLines returns the 1-based line numbers (= seqs, in a full
// export from seq 1) of the checkpoint records.
func checkpointLines(lines []string) []int {
	var out []int
	for i, l := range lines {
		if strings.Contains(l, `"kind":"checkpoint"`) {
			out = append(out, i+1)
		}
	}
	return out
}

// forge is the review's auditforge, with only exported API: it rewrites
// every agent.attested record as an svid.issued of another subject,
// re-links the chain, and re-signs every checkpoint and the trailer with
// svid. It returns the lines and the seq of the first checkpoint.
func forge(t *testing.T, lines []string, svid *x509svid.SVID) ([]string, int) {
	t.Helper()
	var chain [][]byte
	for _, c := range svid.Certificates {
		chain = append(chain, c.Raw)
	}
	sign := func(body []byte) []byte {
		d := sha256.Sum256(body)
		sig, err := svid.PrivateKey.Sign(rand.Reader, d[:], crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	prev, last := eventlog.GenesisHash, eventlog.Record{}
	firstCP, rewrote := 0, 0
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		if eventlog.IsTrailer([]byte(l)) {
			tr, err := eventlog.ParseTrailer([]byte(l))
			if err != nil {
				t.Fatal(err)
			}
			tr.TreeSize, tr.HeadHash, tr.Chain = last.Seq, last.Hash, chain
			tr.SigAlg = x509.ECDSAWithSHA256.String()
			tr.Signature = sign(eventlog.TrailerBody(tr.Subject, tr.TreeSize, tr.HeadHash, tr.LogSize, tr.Time))
			out = append(out, string(tr.Line()))
			continue
		}
		r, err := eventlog.ParseRecord([]byte(l))
		if err != nil {
			t.Fatal(err)
		}
		if r.Kind == eventlog.KindAgentAttested {
			r.Kind, r.Subject = eventlog.KindSVIDIssued, "spiffe://example.org/forged"
			rewrote++
		}
		r.PrevHash = prev
		if r.Checkpoint != nil {
			if firstCP == 0 {
				firstCP = int(r.Seq)
			}
			r.Actor = svid.ID.String()
			r.Checkpoint.HeadHash, r.Checkpoint.Chain = prev, chain
			r.Checkpoint.SigAlg = x509.ECDSAWithSHA256.String()
			r.Checkpoint.Signature = sign(eventlog.CheckpointBody(r.Subject, r.Checkpoint.TreeSize, prev, r.Time))
		}
		r.Hash = eventlog.ComputeHash(r)
		b, err := json.Marshal(r) // a fresh encoding of the edited record
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
		prev, last = r.Hash, r
	}
	if rewrote == 0 || firstCP == 0 {
		t.Fatalf("nothing forged: %d records rewritten, first checkpoint %d", rewrote, firstCP)
	}
	return out, firstCP
}
