package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestValidateOIDCDiscoveryProvider: `signet server validate` refuses each
// inconsistent oidc_discovery_provider with what is wrong and what to do,
// and accepts a good one; --oidc-address alone is the shorthand.
func TestValidateOIDCDiscoveryProvider(t *testing.T) {
	dir := t.TempDir()
	n := 0
	conf := func(server, block string) string {
		n++
		p := filepath.Join(dir, fmt.Sprintf("c%d.conf", n))
		src := "server {\n trust_domain = \"example.org\"\n" + server + "}\noidc_discovery_provider {\n listen_address = \"127.0.0.1:8443\"\n" + block + "}\n"
		if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tt := range []struct {
		name, server, block, want string
	}{
		{"plain http issuer over TLS", "", "issuer = \"http://oidc.example.org\"\n",
			`issuer "http://oidc.example.org" is plain http but the provider serves TLS: use https, or set allow_insecure_http`},
		{"issuer not a URL", "", "issuer = \"oidc.example.org\"\n", `issuer "oidc.example.org" must be an http(s) URL`},
		{"jwks_uri not a URL", "", "domains = [\"oidc.example.org\"]\njwks_uri = \"/keys\"\n", `jwks_uri "/keys" must be an http(s) URL`},
		{"http with a certificate", "", "domains = [\"oidc.example.org\"]\nallow_insecure_http = true\nserving_cert_file {\n cert_file_path = \"c\"\n key_file_path = \"k\"\n}\n",
			"allow_insecure_http serves plain HTTP and takes no serving_cert_file"},
		{"http requiring PQ", "", "domains = [\"oidc.example.org\"]\nallow_insecure_http = true\nrequire_pq_key_exchange = true\n",
			"require_pq_key_exchange needs TLS, but allow_insecure_http serves plain HTTP"},
		{"missing certificate", "", "domains = [\"oidc.example.org\"]\nserving_cert_file {\n cert_file_path = \"" + filepath.Join(dir, "none.crt") + "\"\n key_file_path = \"k\"\n}\n",
			"serving_cert_file: tlspolicy: serving certificate " + filepath.Join(dir, "none.crt")},
		{"jwt_issuer differs", " jwt_issuer = \"https://other.example.org\"\n", "domains = [\"oidc.example.org\"]\n",
			`jwt_issuer "https://other.example.org" differs from the oidc_discovery_provider issuer "https://oidc.example.org"`},
		{"health path on /keys", "", "domains = [\"oidc.example.org\"]\nhealth_checks {\n live_path = \"/keys\"\n}\n", `path "/keys" is not a distinct absolute path`},
	} {
		code, out, errOut := run(t, "server", "validate", "--config", conf(tt.server, tt.block))
		if code == 0 || out != "" || !strings.Contains(errOut, tt.want) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want %q", tt.name, code, out, errOut, tt.want)
		}
	}
	for _, args := range [][]string{
		{"--config", conf(" jwt_issuer = \"https://oidc.example.org/\"\n", "domains = [\"oidc.example.org\"]\nset_key_use = true\nhealth_checks {}\n")},
		{"--config", conf("", "issuer = \"http://127.0.0.1:8080\"\nallow_insecure_http = true\n")},
		{"--trust-domain", "example.org", "--oidc-address", "127.0.0.1:8443"},
	} {
		if code, out, errOut := run(t, append([]string{"server", "validate"}, args...)...); code != 0 || out != "configuration is valid\n" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
	if code, _, errOut := run(t, "server", "validate", "--trust-domain", "example.org", "--oidc-address", "8443"); code == 0 || !strings.Contains(errOut, `listen_address "8443" is not host:port`) {
		t.Errorf("--oidc-address 8443: exit %d, stderr %q", code, errOut)
	}
	p := filepath.Join(dir, "jwt_issuer.conf")
	if err := os.WriteFile(p, []byte("server {\n trust_domain = \"example.org\"\n jwt_issuer = \"oidc.example.org\"\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := run(t, "server", "validate", "--config", p); code == 0 || !strings.Contains(errOut, `server: jwt_issuer: oidcdiscovery: issuer "oidc.example.org" must be an http(s) URL`) {
		t.Errorf("jwt_issuer without a scheme: exit %d, stderr %q", code, errOut)
	}
}

// TestOIDCFromFile: the block maps to the server's settings; the flag
// overrides listen_address.
func TestOIDCFromFile(t *testing.T) {
	f := serverFlags{configPath: filepath.Join("..", "config", "testdata", "oidc.conf"), oidcAddress: "127.0.0.1:9443"}
	cfg, _, err := f.build(nil)
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.OIDC
	if o == nil || o.Address != "127.0.0.1:9443" || o.Issuer != "https://oidc.example.org" || !o.SetKeyUse || o.RequirePQ || o.InsecureHTTP ||
		o.CertFile != "/etc/signet/oidc.crt" || o.FileSyncInterval.String() != "30m0s" || o.LivePath != "/live" || o.ReadyPath != "/ready" ||
		cfg.JWTIssuer != "https://oidc.example.org" {
		t.Fatalf("OIDC %+v, jwt_issuer %q", o, cfg.JWTIssuer)
	}
}
