package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/signet-id/signet/config"
)

func write(t *testing.T, src string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.hcl")
	if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadServer(t *testing.T) {
	f, err := config.LoadServer(write(t, `
server {
  trust_domain = "example.org"
  bind_port    = 8081
  data_dir     = "/var/lib/signet"
  ca_ttl       = "48h"
}
etcd {
  endpoints = ["https://127.0.0.1:2379"]
}
`))
	if err != nil {
		t.Fatal(err)
	}
	if f.Server.TrustDomain != "example.org" || f.Server.BindPort != 8081 || f.Server.CATTL != "48h" {
		t.Fatalf("decoded %+v", f.Server)
	}
	if f.Etcd == nil || len(f.Etcd.Endpoints) != 1 {
		t.Fatalf("etcd %+v", f.Etcd)
	}
}

func TestLoadServerErrors(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"no block", `agent {}`, ""},
		{"missing server", ``, "no `server"},
		{"bad duration", `server { ca_ttl = "soon" }`, "ca_ttl"},
		{"unknown attribute", `server { trust_domian = "x" }`, "trust_domian"},
		{"bad port", `server { bind_port = 70000 }`, "bind_port"},
		{"syntax", `server {`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.LoadServer(write(t, tt.src))
			if err == nil {
				t.Fatal("expected an error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestLoadAgent(t *testing.T) {
	f, err := config.LoadAgent(write(t, `agent {
  trust_domain   = "example.org"
  server_address = "127.0.0.1"
  server_port    = 8081
  join_token     = "abc"
  sds {
    default_svid_name              = "svid"
    default_all_bundles_name       = "bundles"
    disable_spiffe_cert_validation = true
  }
}`))
	if err != nil {
		t.Fatal(err)
	}
	if f.Agent.ServerAddress != "127.0.0.1" || f.Agent.JoinToken != "abc" {
		t.Fatalf("decoded %+v", f.Agent)
	}
	if s := f.Agent.SDS; s == nil || *s != (config.SDS{DefaultSVIDName: "svid", DefaultAllBundlesName: "bundles", DisableSPIFFECertValidation: true}) {
		t.Fatalf("sds block decoded as %+v", f.Agent.SDS)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`server { trust_domain = "example.org" }`))
	f.Add([]byte(`agent { server_port = 1 }`))
	// The review's deep.hcl, scaled down: past MaxNesting is enough.
	f.Add([]byte("server {\n  admin_ids = " + strings.Repeat("[", 70) + strings.Repeat("]", 70) + "\n}\n"))
	f.Add([]byte("server {\n  trust_domain = " + strings.Repeat("(", 63) + "1" + strings.Repeat(")", 63) + "\n}\n"))
	f.Add([]byte(`server { trust_domain = "${"${"a"}"}-$${x}" }` + "\n" + `agent { x = !!-1 }`))
	f.Add([]byte("agent {\n  trust_domain = <<-EOT\n  [[{(\n  EOT\n}\n# ]]\n/* ) */\n"))
	f.Add([]byte("server {}\nplugins {\nDataStore \"sql\" {\nplugin_data { database_type = \"sqlite3\" }\n}\nKeyManager {}\nX \"y\" \"z\" {}\n}\ntelemetry {\nPrometheus { port = 1 }\nStatsd = []\n}\nhealth_checks { bind_port = \"80\" }\nfoo {}\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		var s config.ServerFile
		_ = config.Parse("fuzz.hcl", src, &s)
		var a config.AgentFile
		_ = config.Parse("fuzz.hcl", src, &a)
	})
}
