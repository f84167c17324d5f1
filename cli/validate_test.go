package cli

import (
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signet-id/signet/config"
)

// spireConf copies a stock SPIRE configuration from testdata/spire and
// points $SIGNET_TEST_DIR (expanded by -expandEnv) at a temporary
// directory holding a trust bundle.
func spireConf(t *testing.T, name string) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("SIGNET_TEST_DIR", dir)
	src, err := os.ReadFile(filepath.Join("testdata", "spire", name))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, src, 0o600); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	if err := os.WriteFile(filepath.Join(dir, "bundle.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.ca.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestValidateStockSPIREConfigs(t *testing.T) {
	server := spireConf(t, "server.conf")
	code, out, errOut := run(t, "server", "validate", "--config", server, "--expand-env")
	if code != 0 || out != "configuration is valid\n" {
		t.Fatalf("server validate: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	for _, w := range []string{`warning: ` + filepath.Dir(server), `DataStore "sql" is ignored`, `KeyManager "disk" is ignored`} {
		if !strings.Contains(errOut, w) {
			t.Errorf("stderr %q lacks %q", errOut, w)
		}
	}
	agent := spireConf(t, "agent.conf")
	code, out, errOut = run(t, "agent", "validate", "--config", agent, "--expand-env")
	if code != 0 || out != "configuration is valid\n" || !strings.Contains(errOut, `KeyManager "disk" is ignored`) {
		t.Fatalf("agent validate: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// Without -expandEnv the trust bundle path keeps its literal $.
	code, _, errOut = run(t, "agent", "validate", "--config", agent)
	if code != 2 || !strings.Contains(errOut, "trust bundle: open $SIGNET_TEST_DIR/bundle.pem") {
		t.Fatalf("agent validate without -expandEnv: exit %d, stderr %q", code, errOut)
	}
}

func TestValidateRefuses(t *testing.T) {
	dir := t.TempDir()
	n := 0
	conf := func(src string) string {
		n++
		p := filepath.Join(dir, fmt.Sprintf("c%d.conf", n))
		if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bundle := filepath.Join(dir, "bundle.pem")
	if err := os.WriteFile(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: newFixture(t).ca.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"server", "validate", "--config", conf("server {\n trust_domain = \"example.org\"\n bind_address = \"127.0.0.1:8481\"\n}\n")},
			`bind_address "127.0.0.1:8481" is a host; put the port in bind_port (bind_address = "127.0.0.1", bind_port = 8481)`},
		{[]string{"server", "validate", "--config", conf("server {\n trust_domain = \"example.org\"\n}\nplugins {\n KeyManager \"aws_kms\" {}\n}\n")},
			`KeyManager "aws_kms" is not supported`},
		{[]string{"server", "validate", "--config", conf("server {}\n")}, "a trust domain is required"},
		{[]string{"server", "validate", "--trust-domain", "example.org", "--credential-profile", "pq"}, "credential profile pq cannot be served yet"},
		{[]string{"agent", "validate", "--config", conf("agent {\n trust_domain = \"example.org\"\n server_address = \"127.0.0.1:8081\"\n}\n")},
			`server_address "127.0.0.1:8081" is a host; put the port in server_port`},
		{[]string{"agent", "validate", "--trust-domain", "example.org", "--trust-bundle", filepath.Join(dir, "none.pem")}, "none.pem: no such file"},
		{[]string{"agent", "validate", "--trust-domain", "example.org", "--insecure-bootstrap", "--trust-bundle", bundle},
			"insecure_bootstrap (--insecure-bootstrap) and trust_bundle_path (--trust-bundle) cannot both be set"},
		{[]string{"agent", "validate", "--config", conf("agent {\n trust_domain = \"example.org\"\n insecure_bootstrap = true\n trust_bundle_path = \"" + bundle + "\"\n}\n")},
			"insecure_bootstrap (--insecure-bootstrap) and trust_bundle_path (--trust-bundle) cannot both be set"},
		{[]string{"agent", "validate", "--config", conf("agent {\n trust_domain = \"example.org\"\n sds {\n default_bundle_name = \"ALL\"\n }\n}\n")},
			`agent: sds: invalid settings: default_bundle_name and default_all_bundles_name are both "ALL"`},
		{[]string{"agent", "validate", "--config", conf("agent {\n trust_domain = \"example.org\"\n sds {\n default_svid_name = \"spiffe://example.org/web\"\n }\n}\n")},
			`default_svid_name "spiffe://example.org/web" is a SPIFFE ID`},
		{[]string{"agent", "validate", "--config", conf("agent {\n trust_domain = \"example.org\"\n sds {\n default_svid_name = \"my svid\"\n }\n}\n")},
			`default_svid_name "my svid" holds spaces`},
		{[]string{"agent", "validate", "--config", conf("agent {\n trust_domain = \"example.org\"\n x509_svid_cache_max_size = -1\n}\n")},
			"x509_svid_cache_max_size -1 is negative"},
		{[]string{"agent", "validate", "--config", conf("agent {\n trust_domain = \"example.org\"\n sds {\n default_name = \"x\"\n }\n}\n")},
			`An argument named "default_name" is not expected here`},
	}
	for _, tt := range tests {
		code, out, errOut := run(t, tt.args...)
		if code == 0 || out != "" || !strings.Contains(errOut, tt.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want %q", tt.args, code, out, errOut, tt.want)
		}
	}
	code, out, _ := run(t, "server", "validate", "--trust-domain", "example.org")
	if code != 0 || out != "configuration is valid\n" {
		t.Errorf("flags only: exit %d, %q", code, out)
	}
	sds := conf("agent {\n trust_domain = \"example.org\"\n sds {\n default_svid_name = \"svid\"\n default_bundle_name = \"bundle\"\n default_all_bundles_name = \"bundles\"\n disable_spiffe_cert_validation = true\n }\n}\n")
	if code, out, errOut := run(t, "agent", "validate", "--config", sds, "--insecure-bootstrap"); code != 0 || out != "configuration is valid\n" {
		t.Errorf("sds block: exit %d, %q, %q", code, out, errOut)
	}
}

// The server.conf's telemetry and health_checks blocks reach the run
// settings; the flag overrides the Prometheus address.
func TestRunSettingsFromFile(t *testing.T) {
	p := spireConf(t, "server.conf")
	f := serverFlags{configPath: p, expandEnv: true}
	_, rs, err := f.build(nil)
	if err != nil {
		t.Fatal(err)
	}
	if rs.metrics != "127.0.0.1:9988" || rs.health == nil || rs.health.Address() != "127.0.0.1:8080" || len(rs.warnings) != 2 {
		t.Fatalf("run settings %+v", rs)
	}
	f.metricsAddress = "127.0.0.1:1"
	if _, rs, _ = f.build(nil); rs.metrics != "127.0.0.1:1" {
		t.Fatalf("flag does not override: %q", rs.metrics)
	}
}

func TestHealthListener(t *testing.T) {
	ready := make(chan struct{})
	addr, stop, err := serveHealth(&config.HealthChecks{ListenerEnabled: true, BindAddress: "127.0.0.1", BindPort: "0", ReadyPath: "/r"}, func() bool { return closed(ready) }, newLogger(io.Discard, "info", "text"))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	for _, tt := range []struct {
		path string
		code int
		body string
	}{{"/live", 200, `{"live":true}`}, {"/r", 500, `{"ready":false}`}, {"/ready", 404, "404 page not found"}} {
		if code, body := get(tt.path); code != tt.code || body != tt.body {
			t.Errorf("GET %s before ready: %d %q, want %d %q", tt.path, code, body, tt.code, tt.body)
		}
	}
	close(ready)
	if code, body := get("/r"); code != 200 || body != `{"ready":true}` {
		t.Errorf("GET /r when ready: %d %q", code, body)
	}
}
