package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/cli"
	"github.com/signet-id/signet/server"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// TestRotationEventLogEndToEnd drives real issuance, exports the event log
// with the CLI and verifies it offline against the bundle, then checks that
// an edited export fails at the edited record.
func TestRotationEventLogEndToEnd(t *testing.T) {
	dir := shortDir(t)
	srv := startServerWith(t, dir, func(o *serverOptions) { o.checkpointInterval = 500 * time.Millisecond })
	token := srv.token(t, 600)
	me := spiffeid.RequireFromPath(td, "/audited")
	srv.createEntry(t, me, agentIDFor(token), uidSelector(os.Getuid()))
	ag := startAgent(t, srv, dir, token)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr("unix://"+ag.socket)))
	if err != nil {
		t.Fatal(err)
	}
	src.Close()

	run := func(args ...string) (string, int) {
		var out, errb bytes.Buffer
		code := cli.Main(ctx, args, &out, &errb)
		return out.String() + errb.String(), code
	}
	export := filepath.Join(dir, "events.jsonl")
	waitFor(t, 30*time.Second, "agent, SVID and checkpoint events", func() bool {
		out, code := run("audit", "export", "--socket-path", srv.AdminSocket(), "--out", export)
		if code != 0 {
			t.Logf("export: %s", out)
			return false
		}
		data, _ := os.ReadFile(export)
		s := string(data)
		return strings.Contains(s, `"agent.attested"`) && strings.Contains(s, `"svid.issued"`) && strings.Contains(s, `"checkpoint"`)
	})
	bundle := filepath.Join(srv.dir, "server", server.BundleFile)
	if out, code := run("audit", "verify", export, "--bundle", bundle); code != 0 {
		t.Fatalf("verify of a clean export failed (%d):\n%s", code, out)
	}
	// Edit one record's subject: verification names that record.
	data, _ := os.ReadFile(export)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	edited := -1
	for i, l := range lines {
		if strings.Contains(l, `"svid.issued"`) {
			lines[i] = strings.Replace(l, me.String(), "spiffe://example.org/forged", 1)
			edited = i
			break
		}
	}
	tampered := filepath.Join(dir, "tampered.jsonl")
	os.WriteFile(tampered, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
	out, code := run("audit", "verify", tampered, "--bundle", bundle)
	if code == 0 {
		t.Fatal("verify accepted an edited export")
	}
	if !strings.Contains(out, "line "+strconv.Itoa(edited+1)) {
		t.Fatalf("verify did not name line %d:\n%s", edited+1, out)
	}
}
