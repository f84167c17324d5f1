package config_test

import (
	"strings"
	"testing"

	"github.com/signet-id/signet/config"
)

// The plugins block of a stock SPIRE server.conf: DataStore "sql" with
// sqlite3 and KeyManager "disk" are accepted with a warning naming what
// Signet does instead; the NodeAttestor is read.
func TestStockSPIREServerPlugins(t *testing.T) {
	f, err := config.LoadServer(write(t, `
server { trust_domain = "example.org" }
plugins {
  DataStore "sql" {
    plugin_data {
      database_type     = "sqlite3"
      connection_string = "/opt/spire/data/datastore.sqlite3"
    }
  }
  NodeAttestor "join_token" {
    plugin_data {}
  }
  KeyManager "disk" {
    plugin_data { keys_path = "/opt/spire/data/keys.json" }
  }
}
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Warnings) != 2 || !strings.Contains(f.Warnings[0], `DataStore "sql" is ignored: Signet keeps its state in etcd`) ||
		!strings.Contains(f.Warnings[1], `KeyManager "disk" is ignored: Signet keeps the CA keys in a file under data_dir`) {
		t.Fatalf("warnings %q", f.Warnings)
	}
	f, err = config.LoadServer(write(t, "server {}\nplugins {\nDataStore \"sql\" {\nplugin_data = { database_type = \"sqlite3\", connection_string = \"x\" }\n}\n}\n"))
	if err != nil || len(f.Warnings) != 1 {
		t.Fatalf("plugin_data as an attribute: %v %+v", err, f)
	}
	a, err := config.LoadAgent(write(t, "agent {}\nplugins {\nKeyManager \"disk\" {\nplugin_data { directory = \"/x\" }\n}\nWorkloadAttestor \"unix\" {}\n}\n"))
	if err != nil || len(a.Warnings) != 1 || !strings.Contains(a.Warnings[0], "SVID key in a file under data_dir") {
		t.Fatalf("agent KeyManager disk: %v %+v", err, a)
	}
}

func TestRefusedPluginKinds(t *testing.T) {
	tests := []struct{ side, block, want string }{
		{"server", "DataStore \"sql\" {\nplugin_data { database_type = \"postgres\" }\n}", `plugins: DataStore "sql" is not supported: Signet keeps its state in etcd, not in SQL: remove the block to use the embedded etcd under data_dir, or share state between servers with an ` + "`etcd {"},
		{"server", "DataStore \"sql\" {\nplugin_data = { database_type = \"postgres\", connection_string = \"x\" }\n}", `DataStore "sql" is not supported`},
		{"server", `DataStore "sql" {}`, `DataStore "sql" is not supported`},
		{"server", `KeyManager "memory" {}`, `KeyManager "memory" is not supported: Signet keeps its keys on disk`},
		{"server", "KeyManager \"aws_kms\" {\nplugin_data { region = \"x\" }\n}", `KeyManager "aws_kms" is not supported: use KeyManager "kms"`},
		{"server", `UpstreamAuthority "vault" {}`, "vault { upstream_pki_mount"},
		{"server", `UpstreamAuthority "awssecret" {}`, `UpstreamAuthority "awssecret" is not supported: the upstream authority is UpstreamAuthority "disk", UpstreamAuthority "spire" or Vault PKI`},
		{"server", `Notifier "gcs_bucket" {}`, `Notifier "gcs_bucket" is not supported: the only notifier is Notifier "k8sbundle"`},
		{"agent", `Notifier "k8sbundle" {}`, `Notifier "k8sbundle" belongs in the server's configuration, not the agent's`},
		{"server", `BundlePublisher "aws_s3" {}`, "bundle publishers are not supported"},
		{"server", `CredentialComposer "uniqueid" {}`, "credential composers are not supported"},
		{"server", `SVIDStore "aws_secretsmanager" {}`, `SVIDStore "aws_secretsmanager" belongs in the agent's configuration, not the server's`},
		{"server", `NodeResolver "azure" {}`, `unknown plugin kind "NodeResolver" (SPIRE's kinds: NodeAttestor, WorkloadAttestor, DataStore, KeyManager`},
		{"server", `DataStore {}`, "takes one label, its type"},
		{"agent", `SVIDStore "gcp_secretmanager" {}`, "SVID stores are not supported"},
		{"agent", `DataStore "sql" {}`, `DataStore "sql" belongs in the server's configuration, not the agent's`},
		{"agent", `KeyManager "memory" {}`, "has no memory-only mode"},
	}
	for _, tt := range tests {
		t.Run(tt.side+" "+tt.block, func(t *testing.T) {
			p := write(t, tt.side+" {}\nplugins {\n"+tt.block+"\n}\n")
			var err error
			if tt.side == "server" {
				_, err = config.LoadServer(p)
			} else {
				_, err = config.LoadAgent(p)
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v\nwant %q", err, tt.want)
			}
			if !strings.Contains(err.Error(), "c.hcl:3,") {
				t.Errorf("error %q does not name the block's line", err)
			}
		})
	}
}

func TestTopLevelBlocks(t *testing.T) {
	f, err := config.LoadServer(write(t, `server {}
telemetry {
  Prometheus { port = "9988" }
  InMem { enabled = false }
}
health_checks {
  listener_enabled = true
  bind_address = "::1"
  bind_port = 8080
  live_path = "/l"
}
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Telemetry.MetricsAddress(); got != "localhost:9988" {
		t.Errorf("metrics address %q", got)
	}
	live, ready := f.HealthChecks.Paths()
	if got := f.HealthChecks.Address(); got != "[::1]:8080" || !f.HealthChecks.ListenerEnabled || live != "/l" || ready != "/ready" {
		t.Errorf("health %q %+v", got, f.HealthChecks)
	}
	tests := []struct{ side, src, want string }{
		{"server", `telemetry { DogStatsd = [{ address = "localhost:8125" }] }`, "DogStatsd is not supported: Signet exports Prometheus metrics only"},
		{"server", `telemetry { Prometheus = { port = 1 } }`, "write Prometheus as a block"},
		{"server", "telemetry {\nPrometheus {\nhost = \"127.0.0.1:9988\"\nport = 9988\n}\n}", "is a host; put the port in port"},
		{"server", "telemetry {\nPrometheus { host = \"x\" }\n}", `"port" is required`},
		{"agent", `health_checks { bind_port = "http" }`, `bind_port "http" is not a TCP port`},
		{"agent", "health_checks {\nlive_path = \"/x\"\nready_path = \"/x\"\n}", "both"},
		{"agent", `health_checks { bind_address = "localhost:80" }`, "is a host; put the port in bind_port"},
		{"server", "federation {\nbundle_endpoint {}\n}", `unknown block "federation" in the server's configuration (it takes server, etcd, vault, limits, plugins, telemetry, health_checks, oidc_discovery_provider)`},
		{"agent", `etcd { endpoints = [] }`, `unknown block "etcd" in the agent's configuration`},
	}
	for _, tt := range tests {
		p := write(t, tt.side+" {}\n"+tt.src+"\n")
		var err error
		if tt.side == "server" {
			_, err = config.LoadServer(p)
		} else {
			_, err = config.LoadAgent(p)
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err %v\nwant %q", tt.src, err, tt.want)
		}
	}
}

// SPIRE splits host and port; a host:port in the host key is refused
// with what to write instead, and IPv6 literals are hosts.
func TestHostPortSplit(t *testing.T) {
	for _, tt := range []struct{ src, want string }{
		{`server { bind_address = "127.0.0.1:8481" }`, `server: bind_address "127.0.0.1:8481" is a host; put the port in bind_port (bind_address = "127.0.0.1", bind_port = 8481)`},
		{`server { bind_address = "[::1]:8481" }`, `(bind_address = "::1", bind_port = 8481)`},
		{`server { bind_address = "a:b:c" }`, "is not a host name or IP address"},
		{`agent { server_address = "127.0.0.1:8081" }`, `agent: server_address "127.0.0.1:8081" is a host; put the port in server_port (server_address = "127.0.0.1", server_port = 8081)`},
	} {
		p := write(t, tt.src)
		var err error
		if strings.HasPrefix(tt.src, "server") {
			_, err = config.LoadServer(p)
		} else {
			_, err = config.LoadAgent(p)
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err %v\nwant %q", tt.src, err, tt.want)
		}
	}
	for _, src := range []string{`server { bind_address = "::1" }`, `server { bind_address = "[::1]" }`, `server { bind_address = "fe80::1%eth0" }`} {
		if _, err := config.LoadServer(write(t, src)); err != nil && !strings.Contains(src, "%") {
			t.Errorf("%s: %v", src, err)
		}
	}
	if _, err := config.LoadAgent(write(t, `agent { server_address = "::1" }`)); err != nil {
		t.Errorf("IPv6 server_address: %v", err)
	}
}

func TestExpandEnv(t *testing.T) {
	env := map[string]string{"HOME": "/home/op", "TD": "example.org"}
	getenv := func(k string) string { return env[k] }
	src := `server {
  trust_domain = "${TD}"
  data_dir     = "$HOME/signet-data"
  socket_path  = "/run/$UNSET/a$$b.sock"
}
`
	p := write(t, src)
	f, err := config.LoadServerWith(p, config.Options{ExpandEnv: true, Getenv: getenv})
	if err != nil {
		t.Fatal(err)
	}
	if f.Server.TrustDomain != "example.org" || f.Server.DataDir != "/home/op/signet-data" || f.Server.SocketPath != "/run//a$b.sock" {
		t.Fatalf("expanded %+v", f.Server)
	}
	// Without -expandEnv, $HOME stays literal (as SPIRE) and ${TD} is an
	// HCL interpolation, refused with a hint.
	_, err = config.LoadServer(p)
	if err == nil || !strings.Contains(err.Error(), "run with -expandEnv") {
		t.Fatalf("without expansion: %v", err)
	}
	f, err = config.LoadServer(write(t, `server { data_dir = "$HOME/x" }`))
	if err != nil || f.Server.DataDir != "$HOME/x" {
		t.Fatalf("literal $: %v %+v", err, f)
	}
}
