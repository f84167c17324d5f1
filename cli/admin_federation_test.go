package cli

import (
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFederationCommandsAgainstServer drives `signet federation` through
// a real server: create from flags (with a PEM bundle) and from -data,
// list, show, update, refresh (which fails and says why: the endpoint is
// unreachable) and delete, with spire-server's single-dash flag names.
func TestFederationCommandsAgainstServer(t *testing.T) {
	sock, srv := startServer(t, "example.org")
	dir := t.TempDir()
	var pemData []byte
	for _, c := range srv.CA().Bundle().X509Authorities() {
		pemData = append(pemData, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	// A bundle for other.org made of some CA certificate (this server's):
	// the CLI and API check its form, not its origin.
	bundlePath := filepath.Join(dir, "other.pem")
	if err := os.WriteFile(bundlePath, pemData, 0o600); err != nil {
		t.Fatal(err)
	}
	out, _ := cli(t, sock, 0, "federation", "create", "-trustDomain", "other.org", "-bundleEndpointURL", "https://127.0.0.1:1",
		"-bundleEndpointProfile", "https_spiffe", "-endpointSpiffeID", "spiffe://other.org/spire/server", "-trustDomainBundlePath", bundlePath)
	mustContain(t, "create", out, "Trust domain              : other.org", "Endpoint SPIFFE ID        : spiffe://other.org/spire/server", "1 federation relationship created.")

	data := filepath.Join(dir, "rels.json")
	if err := os.WriteFile(data, []byte(`{"federationRelationships": [{"trustDomain": "web.org", "bundleEndpointURL": "https://web.org/bundle", "bundleEndpointProfile": "https_web"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cli(t, sock, 0, "federation", "create", "-data", data)
	_, errOut := cli(t, sock, 1, "federation", "create", "-data", data)
	mustContain(t, "duplicate create", errOut, "failed to create the federation relationship with web.org", "AlreadyExists")

	out, _ = cli(t, sock, 0, "federation", "list")
	mustContain(t, "list", out, "Found 2 federation relationships", "Trust domain              : other.org", "Trust domain              : web.org", "Bundle endpoint profile   : https_web")
	out, _ = cli(t, sock, 0, "federation", "show", "-trustDomain", "other.org")
	mustContain(t, "show", out, "Found a federation relationship with trust domain other.org")
	out, _ = cli(t, sock, 0, "bundle", "list", "-id", "other.org")
	mustContain(t, "bundle list", out, "-----BEGIN CERTIFICATE-----")

	cli(t, sock, 0, "federation", "update", "-trustDomain", "web.org", "-bundleEndpointURL", "https://web.org:8443/bundle", "-bundleEndpointProfile", "https_web")
	out, _ = cli(t, sock, 0, "federation", "show", "-trustDomain", "web.org", "-output", "json")
	mustContain(t, "show json", out, `"bundle_endpoint_url":"https://web.org:8443/bundle"`)

	_, errOut = cli(t, sock, 1, "federation", "refresh", "-id", "other.org")
	mustContain(t, "refresh", errOut, "refreshing the bundle of other.org", "Internal", "connection refused")
	_, errOut = cli(t, sock, 1, "federation", "show", "-trustDomain", "nobody.org")
	mustContain(t, "show unknown", errOut, "NotFound")

	out, _ = cli(t, sock, 0, "federation", "delete", "-id", "web.org")
	mustContain(t, "delete", out, "federation relationship deleted.")
	_, errOut = cli(t, sock, 1, "federation", "delete", "-id", "web.org")
	mustContain(t, "delete again", errOut, "NotFound")
	// The relationship's bundle stays after the relationship is gone.
	cli(t, sock, 0, "federation", "delete", "-id", "other.org")
	out, _ = cli(t, sock, 0, "bundle", "list", "-id", "other.org")
	mustContain(t, "bundle after delete", out, "-----BEGIN CERTIFICATE-----")
	out, _ = cli(t, sock, 0, "federation", "list")
	mustContain(t, "empty list", out, "No federation relationships found")
}

// TestFederationFlagErrors: each wrong invocation says what is wrong and
// exits 2 before contacting a server.
func TestFederationFlagErrors(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"federationRelationships": [{"trustDomain": "a.org"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"federation", "create"}, "a trust domain is required"},
		{[]string{"federation", "create", "-trustDomain", "a.org"}, "a bundle endpoint URL is required"},
		{[]string{"federation", "create", "-trustDomain", "a.org", "-bundleEndpointURL", "https://a"}, "a bundle endpoint profile is required"},
		{[]string{"federation", "create", "-trustDomain", "a.org", "-bundleEndpointURL", "https://a", "-bundleEndpointProfile", "spiffe"}, `unknown bundle endpoint profile "spiffe"`},
		{[]string{"federation", "create", "-trustDomain", "a.org", "-bundleEndpointURL", "https://a", "-bundleEndpointProfile", "https_spiffe"}, "needs --endpoint-spiffe-id"},
		{[]string{"federation", "create", "-trustDomain", "a.org", "-bundleEndpointURL", "https://a", "-bundleEndpointProfile", "https_web", "-trustDomainBundlePath", "/nonexistent"}, "cannot read --trust-domain-bundle-path"},
		{[]string{"federation", "create", "-trustDomain", "a.org", "-bundleEndpointURL", "https://a", "-bundleEndpointProfile", "https_web", "-trustDomainBundlePath", bad}, "bundle data is not PEM"},
		{[]string{"federation", "create", "-data", bad, "-trustDomain", "a.org"}, "--data gives every field"},
		{[]string{"federation", "create", "-data", bad}, "--data item 0: a bundle endpoint URL is required"},
		{[]string{"federation", "update", "-trustDomain", "Bad Name"}, `invalid trust domain "Bad Name"`},
		{[]string{"federation", "show"}, "--trust-domain is required"},
		{[]string{"federation", "delete"}, "--id is required"},
		{[]string{"federation", "refresh"}, "--id is required"},
		{[]string{"federation", "create", "-trustDomain", "a.org", "-bundleEndpointURL", "https://a", "-bundleEndpointProfile", "https_web", "-trustDomainBundleFormat", "der"}, "use pem or spiffe"},
	}
	for _, tt := range tests {
		code, out, errOut := run(t, append(tt.args, "--socket-path", "/nonexistent/api.sock")...)
		if code != 2 || out != "" || !strings.Contains(errOut, tt.want) {
			t.Errorf("signet %s: exit %d, stdout %q, stderr %q; want exit 2 and %q", strings.Join(tt.args, " "), code, out, errOut, tt.want)
		}
	}
}
