package cli

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/agent"
	"github.com/signet-id/signet/server"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// startServer runs a real Signet server (embedded etcd) in-process and
// returns its admin socket and the server.
func startServer(t *testing.T, td string) (string, *server.Server) {
	t.Helper()
	sockDir, err := os.MkdirTemp("", "sg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "api.sock")
	srv, err := server.New(server.Config{
		TrustDomain: spiffeid.RequireTrustDomainFromString(td),
		DataDir:     t.TempDir(),
		BindAddress: "127.0.0.1:0",
		AdminSocket: sock,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && ctx.Err() == nil {
			t.Errorf("server: %v", err)
		}
	})
	select {
	case <-srv.Ready():
	case err := <-done:
		t.Fatalf("server did not start: %v", err)
	}
	return sock, srv
}

// cli runs signet against the admin socket and checks the exit code.
func cli(t *testing.T, sock string, wantCode int, args ...string) (string, string) {
	t.Helper()
	code, out, errOut := run(t, append(args, "--socket-path", sock)...)
	if code != wantCode {
		t.Fatalf("signet %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, wantCode, out, errOut)
	}
	return out, errOut
}

func mustContain(t *testing.T, what, s string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(s, w) {
			t.Errorf("%s %q does not contain %q", what, s, w)
		}
	}
}

func TestAdminCommandsAgainstServer(t *testing.T) {
	sock, _ := startServer(t, "example.org")

	// Health.
	out, _ := cli(t, sock, 0, "healthcheck")
	mustContain(t, "healthcheck", out, "Server is healthy.")
	out, _ = cli(t, sock, 0, "healthcheck", "--shallow", "--verbose")
	mustContain(t, "healthcheck", out, "Checking server health at "+sock, "Server is healthy.")

	// Empty server.
	out, _ = cli(t, sock, 0, "agent", "list")
	if out != "No attested agents found\n" {
		t.Errorf("agent list: %q", out)
	}
	out, _ = cli(t, sock, 0, "agent", "list", "-o", "json")
	if out != `{"agents":[],"next_page_token":""}`+"\n" {
		t.Errorf("agent list json: %q", out)
	}
	out, _ = cli(t, sock, 0, "agent", "count")
	mustContain(t, "agent count", out, "0 attested agents")
	out, _ = cli(t, sock, 0, "entry", "count")
	if out != "0 registration entries\n" {
		t.Errorf("entry count: %q", out)
	}
	out, _ = cli(t, sock, 0, "entry", "show")
	if out != "Found 0 entries\n" {
		t.Errorf("entry show: %q", out)
	}
	_, errOut := cli(t, sock, 1, "agent", "show", "--spiffe-id", "spiffe://example.org/spire/agent/join_token/none")
	mustContain(t, "agent show", errOut, "fetching agent spiffe://example.org/spire/agent/join_token/none: NotFound")

	// Join tokens.
	out, errOut = cli(t, sock, 0, "token", "generate")
	if !strings.HasPrefix(out, "Token: ") || len(strings.TrimSpace(strings.TrimPrefix(out, "Token: "))) < 8 {
		t.Errorf("token generate: %q", out)
	}
	mustContain(t, "token generate stderr", errOut, "Warning: Missing SPIFFE ID")
	out, errOut = cli(t, sock, 0, "token", "generate", "--spiffe-id", "spiffe://example.org/node1", "--ttl", "10m", "-o", "json")
	var tok struct {
		Value     string `json:"value"`
		ExpiresAt string `json:"expires_at"`
	}
	if err := json.Unmarshal([]byte(out), &tok); err != nil || tok.Value == "" || tok.ExpiresAt == "" || errOut != "" {
		t.Errorf("token generate json: %q (%v), stderr %q", out, err, errOut)
	}

	// Create an entry.
	parent := "spiffe://example.org/spire/agent/join_token/abc"
	out, _ = cli(t, sock, 0, "entry", "create", "--parent-id", parent, "--spiffe-id", "spiffe://example.org/web",
		"--selector", "unix:uid:1000", "--selector", "unix:gid:1000", "--x509-svid-ttl", "1h", "--dns", "web.example.org", "--hint", "h1")
	mustContain(t, "entry create", out, "SPIFFE ID        : spiffe://example.org/web", "Parent ID        : "+parent,
		"X509-SVID TTL    : 3600", "Selector         : unix:uid:1000", "DNS name         : web.example.org", "Hint             : h1")
	id := fieldValue(out, "Entry ID")
	if id == "" || id == "(none)" {
		t.Fatalf("no entry ID in %q", out)
	}
	out, _ = cli(t, sock, 0, "entry", "create", "--node", "--spiffe-id", "spiffe://example.org/nodes/all", "--selector", "join_token:abc", "-o", "json")
	var created struct {
		Results []struct {
			Status struct{ Code int } `json:"status"`
			Entry  struct {
				ID       string `json:"id"`
				ParentID struct {
					Path string `json:"path"`
				} `json:"parent_id"`
			} `json:"entry"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil || len(created.Results) != 1 || created.Results[0].Status.Code != 0 ||
		created.Results[0].Entry.ParentID.Path != "/spire/server" {
		t.Fatalf("node entry create json: %q (%v)", out, err)
	}
	nodeID := created.Results[0].Entry.ID

	// Show with filters.
	// (The token generated with --spiffe-id made a third entry, as in SPIRE.)
	out, _ = cli(t, sock, 0, "entry", "show")
	mustContain(t, "entry show", out, "Found 3 entries", "SPIFFE ID        : spiffe://example.org/node1")
	out, _ = cli(t, sock, 0, "entry", "show", "--spiffe-id", "spiffe://example.org/web")
	mustContain(t, "entry show --spiffe-id", out, "Found 1 entry\n", "Entry ID         : "+id)
	out, _ = cli(t, sock, 0, "entry", "show", "--entry-id", nodeID)
	mustContain(t, "entry show --entry-id", out, "Found 1 entry\n", "spiffe://example.org/nodes/all")
	out, _ = cli(t, sock, 0, "entry", "show", "--selector", "unix:uid:1000", "--match", "exact")
	mustContain(t, "entry show exact", out, "Found 0 entries")
	out, _ = cli(t, sock, 0, "entry", "show", "--selector", "unix:uid:1000", "--match", "superset")
	mustContain(t, "entry show superset", out, "Found 1 entry\n", id)
	out, _ = cli(t, sock, 0, "entry", "show", "--selector", "unix:uid:1000", "--selector", "join_token:abc", "--match", "any")
	mustContain(t, "entry show any", out, "Found 2 entries")
	out, _ = cli(t, sock, 0, "entry", "show", "--parentID", "spiffe://example.org/spire/server")
	mustContain(t, "entry show --parentID", out, "Found 1 entry\n", nodeID)
	out, _ = cli(t, sock, 0, "entry", "count", "--parent-id", parent)
	if out != "1 registration entry\n" {
		t.Errorf("entry count --parent-id: %q", out)
	}

	// Update changes only what is given.
	out, _ = cli(t, sock, 0, "entry", "update", "--entry-id", id, "--x509-svid-ttl", "30m", "--jwt-svid-ttl", "120")
	mustContain(t, "entry update", out, "X509-SVID TTL    : 1800", "JWT-SVID TTL     : 120", "Selector         : unix:uid:1000",
		"Selector         : unix:gid:1000", "DNS name         : web.example.org", "Hint             : h1")
	out, _ = cli(t, sock, 0, "entry", "show", "--entry-id", id, "-o", "json")
	var shown struct {
		Entries []struct {
			X509SvidTTL int    `json:"x509_svid_ttl"`
			JwtSvidTTL  int    `json:"jwt_svid_ttl"`
			Hint        string `json:"hint"`
			Selectors   []struct{ Type, Value string }
		} `json:"entries"`
	}
	if err := json.Unmarshal([]byte(out), &shown); err != nil || len(shown.Entries) != 1 || shown.Entries[0].X509SvidTTL != 1800 ||
		shown.Entries[0].JwtSvidTTL != 120 || shown.Entries[0].Hint != "h1" || len(shown.Entries[0].Selectors) != 2 {
		t.Errorf("entry after update: %q (%v)", out, err)
	}

	// Bad input: refused, with a clear message, and nothing changes.
	before, _ := cli(t, sock, 0, "entry", "show", "-o", "json")
	_, errOut = cli(t, sock, 2, "entry", "create", "--parent-id", parent, "--spiffe-id", "example.org/web", "--selector", "unix:uid:1")
	mustContain(t, "malformed ID", errOut, `invalid --spiffe-id "example.org/web"`, "spiffe://<trust-domain>/<path>")
	_, errOut = cli(t, sock, 2, "entry", "create", "--parent-id", parent, "--spiffe-id", "spiffe://example.org/x", "--selector", "uid1000")
	mustContain(t, "malformed selector", errOut, `invalid --selector "uid1000": must be formatted as type:value`)
	_, errOut = cli(t, sock, 2, "entry", "create", "--parent-id", parent, "--spiffe-id", "spiffe://example.org/x", "--selector", "a:b", "--bogus")
	mustContain(t, "unknown flag", errOut, "unknown flag: --bogus", "signet entry create --help")
	_, errOut = cli(t, sock, 1, "entry", "create", "--parent-id", parent, "--spiffe-id", "spiffe://other.org/web", "--selector", "unix:uid:1")
	mustContain(t, "foreign trust domain", errOut, "Failed to create the following entry (InvalidArgument:", "SPIFFE ID        : spiffe://other.org/web",
		"failed to create 1 of 1 entry")
	_, errOut = cli(t, sock, 1, "entry", "create", "--parent-id", parent, "--spiffe-id", "spiffe://example.org/web",
		"--selector", "unix:uid:1000", "--selector", "unix:gid:1000")
	mustContain(t, "duplicate entry", errOut, "Failed to create the following entry (AlreadyExists:", "Existing entry   : "+id)
	_, errOut = cli(t, sock, 1, "entry", "update", "--entry-id", id, "--parent-id", "spiffe://other.org/agent")
	mustContain(t, "foreign parent on update", errOut, "Failed to update the following entry (InvalidArgument:")
	_, errOut = cli(t, sock, 1, "entry", "update", "--entry-id", "no-such-entry", "--hint", "x")
	mustContain(t, "update of a missing entry", errOut, `fetching entry "no-such-entry": NotFound`)
	_, errOut = cli(t, sock, 2, "entry", "update", "--entry-id", id)
	mustContain(t, "update with nothing", errOut, "nothing to update")
	after, _ := cli(t, sock, 0, "entry", "show", "-o", "json")
	if before != after {
		t.Errorf("rejected requests changed state:\nbefore %s\nafter  %s", before, after)
	}

	// Bundles.
	pemOut, _ := cli(t, sock, 0, "bundle", "show")
	var certs []*x509.Certificate
	for rest := []byte(pemOut); ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 || !certs[0].IsCA || certs[0].URIs[0].String() != "spiffe://example.org" {
		t.Fatalf("bundle show pem: %q", pemOut)
	}
	docOut, _ := cli(t, sock, 0, "bundle", "show", "--format", "spiffe")
	sb, err := spiffebundle.Parse(spiffeid.RequireTrustDomainFromString("example.org"), []byte(docOut))
	if err != nil {
		t.Fatalf("bundle show spiffe: %v\n%s", err, docOut)
	}
	if !sb.HasX509Authority(certs[0]) || len(sb.JWTAuthorities()) == 0 {
		t.Errorf("SPIFFE bundle: %d X.509 authorities, %d JWT authorities", len(sb.X509Authorities()), len(sb.JWTAuthorities()))
	}
	if _, ok := sb.SequenceNumber(); !ok || !strings.Contains(docOut, `"spiffe_sequence"`) {
		t.Errorf("SPIFFE bundle has no spiffe_sequence:\n%s", docOut)
	}
	out, _ = cli(t, sock, 0, "bundle", "show", "-o", "json")
	mustContain(t, "bundle show json", out, `"trust_domain":"example.org"`, `"x509_authorities":[{"asn1":`)
	out, _ = cli(t, sock, 0, "bundle", "count")
	if out != "1 bundle\n" {
		t.Errorf("bundle count: %q", out)
	}

	// Federated bundles: set from a file (this server's own bundle stands in
	// for another trust domain's), list, delete.
	fedFile := filepath.Join(t.TempDir(), "other.pem")
	if err := os.WriteFile(fedFile, []byte(pemOut), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _ = cli(t, sock, 0, "bundle", "set", "--id", "spiffe://other.org", "--path", fedFile)
	mustContain(t, "bundle set", out, "bundle set.")
	out, _ = cli(t, sock, 0, "bundle", "list")
	mustContain(t, "bundle list", out, "* other.org", "-----BEGIN CERTIFICATE-----")
	out, _ = cli(t, sock, 0, "bundle", "list", "--id", "other.org", "--format", "spiffe")
	if _, err := spiffebundle.Parse(spiffeid.RequireTrustDomainFromString("other.org"), []byte(out)); err != nil {
		t.Errorf("bundle list --id: %v\n%s", err, out)
	}
	out, _ = cli(t, sock, 0, "bundle", "count")
	if out != "2 bundles\n" {
		t.Errorf("bundle count: %q", out)
	}
	_, errOut = cli(t, sock, 2, "bundle", "set", "--id", "other.org", "--path", fedFile, "--format", "spiffe")
	mustContain(t, "bundle set wrong format", errOut, "not a SPIFFE bundle", "--format pem")
	out, _ = cli(t, sock, 0, "bundle", "delete", "--id", "other.org")
	mustContain(t, "bundle delete", out, "bundle other.org deleted.")
	_, errOut = cli(t, sock, 1, "bundle", "delete", "--id", "other.org")
	mustContain(t, "bundle delete again", errOut, "failed to delete the federated bundle of other.org: NotFound")

	// Delete entries; a missing one is reported per item.
	out, errOut = cli(t, sock, 1, "entry", "delete", "--entry-id", id, "--entry-id", "no-such-entry")
	mustContain(t, "entry delete stdout", out, "Deleted entry with ID: "+id)
	mustContain(t, "entry delete stderr", errOut, "Failed to delete entry with ID no-such-entry (NotFound:", "failed to delete 1 of 2 entries")
	cli(t, sock, 0, "entry", "delete", "--entry-id", nodeID)
	out, _ = cli(t, sock, 0, "entry", "count")
	if out != "1 registration entry\n" {
		t.Errorf("entry count after delete: %q", out)
	}
}

// fieldValue returns the value of "Name : value" in spire-style output.
func fieldValue(out, name string) string {
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == name {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func TestAdminSocketErrors(t *testing.T) {
	dir, err := os.MkdirTemp("", "sg")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	missing := filepath.Join(dir, "api.sock")
	for _, args := range [][]string{
		{"entry", "show"}, {"agent", "list"}, {"token", "generate", "--spiffe-id", "spiffe://example.org/n"},
		{"bundle", "show"}, {"healthcheck"}, {"entry", "create", "--parent-id", "spiffe://example.org/a", "--spiffe-id", "spiffe://example.org/b", "--selector", "a:b"},
	} {
		code, _, errOut := run(t, append(args, "--socket-path", missing)...)
		if code != 1 || !strings.Contains(errOut, "cannot reach the Signet server admin socket at "+missing+": no such file (is `signet server run` running? use --socket-path)") {
			t.Errorf("%v: exit %d, %q", args, code, errOut)
		}
	}
	// A socket file nobody listens on.
	code, _, errOut := run(t, "entry", "show", "--socket-path", dir)
	if code != 1 || !strings.Contains(errOut, "not a Unix socket") {
		t.Errorf("directory as socket: exit %d, %q", code, errOut)
	}
	// Usage errors come before any connection attempt.
	code, _, errOut = run(t, "agent", "evict", "--socket-path", missing)
	if code != 2 || !strings.Contains(errOut, "--spiffe-id is required") {
		t.Errorf("evict without id: exit %d, %q", code, errOut)
	}
}

// TestFetchAgainstAgent drives the fetch commands against a real agent
// attested to a real server, with the entry and token made by the admin
// commands.
func TestFetchAgainstAgent(t *testing.T) {
	sock, srv := startServer(t, "example.org")
	td := spiffeid.RequireTrustDomainFromString("example.org")

	out, _ := cli(t, sock, 0, "token", "generate", "-o", "json")
	var tok struct{ Value string }
	if err := json.Unmarshal([]byte(out), &tok); err != nil {
		t.Fatal(err)
	}
	agentID := "spiffe://example.org/spire/agent/join_token/" + tok.Value
	uid := strconv.Itoa(os.Getuid())
	cli(t, sock, 0, "entry", "create", "--parent-id", agentID, "--spiffe-id", "spiffe://example.org/me", "--selector", "unix:uid:"+uid)

	bundlePEM, _ := cli(t, sock, 0, "bundle", "show")
	var roots []*x509.Certificate
	for rest := []byte(bundlePEM); ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		roots = append(roots, c)
	}

	wlDir, err := os.MkdirTemp("", "sg")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(wlDir)
	wl := filepath.Join(wlDir, "wl.sock")
	ag, err := agent.New(agent.Config{
		TrustDomain:     td,
		ServerAddresses: []string{srv.AgentAddr().String()},
		JoinToken:       tok.Value,
		DataDir:         t.TempDir(),
		SocketPath:      wl,
		TrustBundle:     roots,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ag.Run(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case <-ag.Ready():
	case err := <-done:
		t.Fatalf("agent: %v", err)
	}

	// The agent may still be syncing the entry: retry a bounded number of times.
	var code int
	var errOut string
	for range 100 {
		code, out, errOut = run(t, "fetch", "x509", "--socket-path", wl, "-o", "json")
		if code == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code != 0 {
		t.Fatalf("fetch x509: exit %d: %s", code, errOut)
	}
	var got x509FetchJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got.SVIDs) != 1 || got.SVIDs[0].SPIFFEID != "spiffe://example.org/me" {
		t.Fatalf("fetch x509 json: %q (%v)", out, err)
	}

	dir := t.TempDir()
	run(t, "fetch", "x509", "--socket-path", wl, "--write", dir, "--silent")
	svid, err := x509svid.Load(filepath.Join(dir, "svid.0.pem"), filepath.Join(dir, "svid.0.key"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	inter := x509.NewCertPool()
	for _, c := range svid.Certificates[1:] {
		inter.AddCert(c)
	}
	if _, err := svid.Certificates[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("written SVID does not chain to `bundle show`: %v", err)
	}

	code, out, errOut = run(t, "fetch", "jwt", "--socket-path", wl, "--audience", "db")
	if code != 0 || !strings.HasPrefix(out, "token(spiffe://example.org/me):\n\teyJ") {
		t.Errorf("fetch jwt: exit %d, %q %q", code, out, errOut)
	}
	code, out, errOut = run(t, "fetch", "bundle", "--socket-path", wl, "--format", "spiffe")
	if code != 0 {
		t.Fatalf("fetch bundle: exit %d: %s", code, errOut)
	}
	fb, err := spiffebundle.Parse(td, []byte(out))
	if err != nil || !fb.HasX509Authority(roots[0]) || len(fb.JWTAuthorities()) == 0 {
		t.Errorf("fetch bundle: %v\n%s", err, out)
	}

	// The agent shows up in the admin view.
	out, _ = cli(t, sock, 0, "agent", "list")
	mustContain(t, "agent list", out, "Found 1 attested agent:", "SPIFFE ID         : "+agentID, "Attestation type  : join_token")
	out, _ = cli(t, sock, 0, "agent", "show", "--spiffe-id", agentID)
	mustContain(t, "agent show", out, "Found an attested agent given its SPIFFE ID", agentID)
}
