package config_test

import (
	"strings"
	"testing"

	"github.com/signet-id/signet/config"
)

func TestPluginsBlock(t *testing.T) {
	f, err := config.LoadServer(write(t, `
server { trust_domain = "example.org" }
plugins {
  DataStore "sql" {
    plugin_data { database_type = "sqlite3" }
  }
  NodeAttestor "join_token" {
    plugin_data {}
  }
  NodeAttestor "x509pop" {
    plugin_data {
      ca_bundle_path      = "/etc/ca.pem"
      agent_path_template = "/cn/{{ .Subject.CommonName }}"
    }
  }
}
`))
	if err != nil {
		t.Fatal(err)
	}
	if f.Plugins == nil || len(f.Plugins.NodeAttestors) != 2 || f.Plugins.NodeAttestors[1].Type != "x509pop" {
		t.Fatalf("plugins %+v", f.Plugins)
	}
	var d struct {
		CABundlePath string `hcl:"ca_bundle_path,optional"`
		Template     string `hcl:"agent_path_template,optional"`
	}
	if err := config.DecodePluginData(f.Plugins.NodeAttestors[1], &d); err != nil {
		t.Fatal(err)
	}
	if d.CABundlePath != "/etc/ca.pem" || d.Template != "/cn/{{ .Subject.CommonName }}" {
		t.Fatalf("plugin_data %+v", d)
	}
	var none struct {
		X string `hcl:"x,optional"`
	}
	if err := config.DecodePluginData(f.Plugins.NodeAttestors[0], &none); err != nil {
		t.Fatal(err)
	}
	if err := config.DecodePluginData(f.Plugins.NodeAttestors[1], &none); err == nil || !strings.Contains(err.Error(), `NodeAttestor "x509pop": plugin_data`) {
		t.Fatalf("unknown plugin_data attribute: %v", err)
	}
}

func TestPluginsBlockErrors(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"external plugin", `NodeAttestor "x509pop" { plugin_cmd = "/bin/x" }`, `"plugin_cmd" is not supported`},
		{"twice", `NodeAttestor "x509pop" {}
NodeAttestor "x509pop" {}`, `NodeAttestor "x509pop" is configured twice`},
		{"no label", `NodeAttestor {}`, "label"},
		{"plugin_data attribute", "NodeAttestor \"x509pop\" {\nplugin_data = {}\n}", `write plugin_data as a block, without =`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config.LoadServer(write(t, "server {}\nplugins {\n"+tt.src+"\n}\n"))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
		})
	}
	_, err := config.LoadAgent(write(t, "agent {}\nplugins {\nNodeAttestor \"join_token\" {}\nNodeAttestor \"x509pop\" {}\n}\n"))
	if err == nil || !strings.Contains(err.Error(), "exactly one NodeAttestor") {
		t.Fatalf("agent with two node attestors: %v", err)
	}
}
