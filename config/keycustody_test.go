package config_test

import (
	"strings"
	"testing"

	"github.com/signet-id/signet/config"
)

// TestKeyCustodyBlocks: KeyManager "kms" and "hashicorp_vault" and
// UpstreamAuthority "disk" are read (no warning) with SPIRE's field names.
func TestKeyCustodyBlocks(t *testing.T) {
	f, err := config.LoadServer(write(t, `
server { trust_domain = "example.org" }
plugins {
  KeyManager "kms" {
    plugin_data { uri = "pkcs11:module-path=/usr/lib/softhsm/libsofthsm2.so;token=signet?pin-source=/etc/signet/pin" }
  }
  UpstreamAuthority "disk" {
    plugin_data {
      cert_file_path   = "/etc/signet/up.pem"
      key_file_path    = "/etc/signet/up.key"
      bundle_file_path = "/etc/signet/roots.pem"
    }
  }
}
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Warnings) != 0 {
		t.Fatalf("warnings %v", f.Warnings)
	}
	var km config.KMSKeyManagerData
	if err := config.DecodePluginData(f.Plugins.KeyManagers[0], &km); err != nil || !strings.HasPrefix(km.URI, "pkcs11:") {
		t.Fatalf("kms plugin_data %+v %v", km, err)
	}
	var up config.DiskUpstreamData
	if err := config.DecodePluginData(f.Plugins.UpstreamAuthorities[0], &up); err != nil || up.BundleFilePath != "/etc/signet/roots.pem" {
		t.Fatalf("disk plugin_data %+v %v", up, err)
	}

	f, err = config.LoadServer(write(t, `
server { trust_domain = "example.org" }
plugins {
  KeyManager "hashicorp_vault" {
    plugin_data {
      transit_engine_path = "signet-transit"
      key_identifier_file = "/var/lib/signet/kid"
    }
  }
}
`))
	if err != nil {
		t.Fatal(err)
	}
	d, err := config.DecodeVaultKeyManager(f.Plugins.KeyManagers[0])
	if err != nil || d.TransitEnginePath != "signet-transit" {
		t.Fatalf("hashicorp_vault plugin_data %+v %v", d, err)
	}
}

// TestKeyCustodyRefusals: two key managers, SPIRE's cloud key manager
// names, a Vault address or token in the key manager's plugin_data, and an
// upstream authority other than disk are refused with the alternative.
func TestKeyCustodyRefusals(t *testing.T) {
	for _, c := range []struct{ name, plugins, want string }{
		{"two key managers", "KeyManager \"kms\" {\nplugin_data { uri = \"pkcs11:token=a\" }\n}\nKeyManager \"hashicorp_vault\" {}", "at most one KeyManager block"},
		{"aws_kms", "KeyManager \"aws_kms\" {\nplugin_data { region = \"x\" }\n}", "use KeyManager \"kms\""},
		{"memory", `KeyManager "memory" {}`, "no memory-only mode"},
		{"spire vault upstream", `UpstreamAuthority "vault" {}`, "upstream_pki_mount"},
		{"awssecret upstream", `UpstreamAuthority "awssecret" {}`, "UpstreamAuthority \"disk\", UpstreamAuthority \"spire\" or Vault PKI"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := config.LoadServer(write(t, "server { trust_domain = \"example.org\" }\nplugins {\n"+c.plugins+"\n}\n"))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("load: %v, want %q", err, c.want)
			}
		})
	}
	for _, c := range []struct{ name, data, want string }{
		{"vault_addr", `vault_addr = "https://vault:8200"`, "set address in the `vault` block"},
		{"token_auth", "token_auth {\ntoken = \"s.secret\"\n}", "never a token in the configuration"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := config.LoadServer(write(t, "server { trust_domain = \"example.org\" }\nplugins {\nKeyManager \"hashicorp_vault\" {\nplugin_data {\n"+c.data+"\n}\n}\n}\n"))
			if err != nil {
				t.Fatal(err)
			}
			_, err = config.DecodeVaultKeyManager(f.Plugins.KeyManagers[0])
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "s.secret") {
				t.Fatalf("decode: %v, want %q", err, c.want)
			}
		})
	}
}
