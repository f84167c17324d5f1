package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
)

// spire-server's `entry create -data` file runs against a real server,
// with spire-server's single-dash flags; the entries are stored.
func TestEntryCreateData(t *testing.T) {
	sock, _ := startServer(t, "example.org")
	var b strings.Builder
	b.WriteString(`{"entries": [`)
	const n = 1203 // more than one batch
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"selectors": [{"type": "unix", "value": "uid:%d"}], "spiffe_id": "spiffe://example.org/w%d",
			"parent_id": "spiffe://example.org/spire/agent/x", "x509_svid_ttl": 600, "dns_names": ["w%d.example.org"]}`, i, i, i)
	}
	b.WriteString(`]}`)
	p := filepath.Join(t.TempDir(), "entries.json")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run(t, "entry", "create", "-data", p, "-socketPath", sock)
	if code != 0 || strings.Count(out, "Entry ID") != n || !strings.Contains(out, "spiffe://example.org/w1202") {
		t.Fatalf("entry create -data: exit %d, %d entries printed, stderr %.500q", code, strings.Count(out, "Entry ID"), errOut)
	}
	out, _ = cli(t, sock, 0, "entry", "show", "--spiffe-id", "spiffe://example.org/w7")
	mustContain(t, "entry show", out, "uid:7", "w7.example.org", "X509-SVID TTL    : 600")
	// From stdin, and again: the duplicate is reported as in SPIRE.
	code, _, errOut = runStdin(t, `{"entries": [{"selectors": [{"type": "unix", "value": "uid:7"}], "spiffe_id": "spiffe://example.org/w7", "parent_id": "spiffe://example.org/spire/agent/x", "x509_svid_ttl": 600, "dns_names": ["w7.example.org"]}]}`,
		"entry", "create", "--data", "-", "--socket-path", sock)
	if code != 1 || !strings.Contains(errOut, "AlreadyExists") {
		t.Fatalf("duplicate from stdin: exit %d, %q", code, errOut)
	}
}

func TestSpireEntryFields(t *testing.T) {
	p := filepath.Join(t.TempDir(), "e.json")
	src := `{"entries": [{"selectors": [{"type": "unix", "value": "uid:1"}, {"type": "unix", "value": "gid:2"}],
		"parent_id": "spiffe://example.org/a", "spiffe_id": "spiffe://example.org/w", "x509_svid_ttl": 60, "jwt_svid_ttl": 30,
		"federates_with": ["spiffe://other.org", "third.org"], "entry_id": "id1", "admin": true, "downstream": true,
		"entryExpiry": 1900000000, "dns_names": ["a", "b"], "revision_number": 3, "hint": "h", "created_at": 5}]}`
	if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	es, err := readEntryData(p, nil)
	if err != nil || len(es) != 1 {
		t.Fatal(es, err)
	}
	want := &types.Entry{
		Id: "id1", SpiffeId: sid("example.org", "/w"), ParentId: sid("example.org", "/a"),
		Selectors:   []*types.Selector{{Type: "unix", Value: "uid:1"}, {Type: "unix", Value: "gid:2"}},
		X509SvidTtl: 60, JwtSvidTtl: 30, FederatesWith: []string{"other.org", "third.org"}, Admin: true, Downstream: true,
		ExpiresAt: 1900000000, DnsNames: []string{"a", "b"}, Hint: "h",
	}
	assertProto(t, es[0], want)
	if reqs := entryDataRequests(make([]*types.Entry, 2001)); len(reqs) != 3 || len(reqs[2].Entries) != 1 {
		t.Errorf("batches %d", len(reqs))
	}
}

func TestEntryCreateDataRefuses(t *testing.T) {
	dir := t.TempDir()
	file := func(s string) string {
		p := filepath.Join(dir, fmt.Sprintf("e%d.json", len(s)))
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ok := `{"entries": [{"selectors": [{"type": "unix", "value": "uid:1"}], "spiffe_id": "spiffe://example.org/w", "parent_id": "spiffe://example.org/a"}]}`
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--data", file(`{"entries": [{"spiffeID": "x"}]}`)}, `unknown field "spiffeID" (want spire-server's format`},
		{[]string{"--data", file(`{"entries": []}`)}, "holds no entries"},
		{[]string{"--data", file(`{"entries": [{"spiffe_id": "spiffe://example.org/w", "parent_id": "spiffe://example.org/a", "selectors": [{"type": "unix", "value": "uid:1"}], "store_svid": true}]}`)}, "entry 1 (spiffe_id \"spiffe://example.org/w\"): store_svid is not supported"},
		{[]string{"--data", file(`{"entries": [{"spiffe_id": "example.org/w", "parent_id": "spiffe://example.org/a", "selectors": [{"type": "unix", "value": "uid:1"}]}]}`)}, "invalid spiffe_id"},
		{[]string{"--data", file(`{"entries": [{"spiffe_id": "spiffe://example.org/w", "parent_id": "spiffe://example.org/a"}]}`)}, "no selectors"},
		{[]string{"--data", filepath.Join(dir, "none.json")}, "no such file"},
		{[]string{"--data", file(ok), "--spiffe-id", "spiffe://example.org/x"}, "--data and --spiffe-id are exclusive"},
		{[]string{"-storeSVID", "--spiffe-id", "spiffe://example.org/x"}, "--store-svid is not supported: Signet has no SVID stores"},
	}
	for _, tt := range tests {
		code, out, errOut := run(t, append(append([]string{"entry", "create"}, tt.args...), "--socket-path", "/nonexistent/api.sock")...)
		if code != 2 || out != "" || !strings.Contains(errOut, tt.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want %q", tt.args, code, out, errOut, tt.want)
		}
	}
}

func runStdin(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := mainIO(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}
