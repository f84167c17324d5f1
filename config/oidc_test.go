package config_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/signet-id/signet/config"
)

func TestOIDCDiscoveryProviderBlock(t *testing.T) {
	f, err := config.LoadServer(filepath.Join("testdata", "oidc.conf"))
	if err != nil {
		t.Fatal(err)
	}
	p := f.OIDCDiscoveryProvider
	if p == nil || p.ListenAddress != "0.0.0.0:8443" || p.Issuer != "https://oidc.example.org" || !p.SetKeyUse ||
		len(p.Domains) != 1 || p.ServingCertFile == nil || p.ServingCertFile.FileSyncInterval != "30m" || p.HealthChecks == nil {
		t.Fatalf("oidc_discovery_provider %+v", p)
	}
	if live, ready := p.HealthChecks.Paths(); live != "/live" || ready != "/ready" {
		t.Fatalf("health paths %q %q", live, ready)
	}
	if f.Server.JWTIssuer != "https://oidc.example.org" {
		t.Fatalf("jwt_issuer %q", f.Server.JWTIssuer)
	}
}

// TestOIDCDiscoveryProviderRefusals: malformed blocks are refused with
// what is wrong and what to write.
func TestOIDCDiscoveryProviderRefusals(t *testing.T) {
	const server = "server {\n trust_domain = \"example.org\"\n}\n"
	tests := []struct{ src, want string }{
		{"oidc_discovery_provider {\n issuer = \"https://a.example\"\n}", `listen_address is required, e.g. listen_address = "0.0.0.0:8443"`},
		{"oidc_discovery_provider {\n listen_address = \"8443\"\n issuer = \"https://a.example\"\n}", `listen_address "8443" is not host:port`},
		{"oidc_discovery_provider {\n listen_address = \"0.0.0.0:99999\"\n issuer = \"https://a.example\"\n}", `listen_address "0.0.0.0:99999" is not host:port`},
		{"oidc_discovery_provider {\n listen_address = \":8443\"\n}", "set issuer (e.g. issuer = \"https://oidc.example.org\") or domains"},
		{"oidc_discovery_provider {\n listen_address = \":8443\"\n domains = [\"https://oidc.example.org\"]\n}", `domains: "https://oidc.example.org" is not a host name`},
		{"oidc_discovery_provider {\n listen_address = \":8443\"\n domains = [\"oidc.example.org:443\"]\n}", `domains: "oidc.example.org:443" is not a host name`},
		{"oidc_discovery_provider {\n listen_address = \":8443\"\n domains = [\"a.example\"]\n serving_cert_file {\n cert_file_path = \"c\"\n key_file_path = \"k\"\n file_sync_interval = \"often\"\n }\n}", "serving_cert_file: file_sync_interval: invalid duration"},
		{"oidc_discovery_provider {\n listen_address = \":8443\"\n domains = [\"a.example\"]\n health_checks {\n live_path = \"/x\"\n ready_path = \"/x\"\n }\n}", "live_path and ready_path are both"},
		{"oidc_discovery_provider {\n listen_address = \":8443\"\n domains = [\"a.example\"]\n health_checks {\n ready_path = \"ready\"\n }\n}", `path "ready" must start with /`},
		{"oidc_discovery_provider {\n listen_address = \":8443\"\n domains = [\"a.example\"]\n acme {}\n}", `Blocks of type "acme" are not expected here`},
	}
	for _, tt := range tests {
		_, err := config.LoadServer(write(t, server+tt.src))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s:\n got %v\n want %q", tt.src, err, tt.want)
		}
	}
	// The server block's former oidc_address says where it went.
	_, err := config.LoadServer(write(t, "server {\n trust_domain = \"example.org\"\n oidc_address = \":8443\"\n}\n"))
	if err == nil || !strings.Contains(err.Error(), "oidc_address became the oidc_discovery_provider { listen_address = ... } block") {
		t.Errorf("oidc_address: %v", err)
	}
}
