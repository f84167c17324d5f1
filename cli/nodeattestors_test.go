package cli

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/attest/sshpop/sshpoptest"
	"github.com/signet-id/signet/attest/x509pop/x509poptest"
)

// sshCA returns a host CA public key in authorized_keys format.
func sshCA(t *testing.T) string {
	t.Helper()
	return strings.TrimSpace(sshpoptest.AuthorizedKey(sshpoptest.NewSigner(t).PublicKey()))
}

func TestServerNodeAttestorsFromConfig(t *testing.T) {
	dir := t.TempDir()
	root := x509poptest.NewCA(t, "root", nil, time.Now().Add(-time.Hour))
	ca := filepath.Join(dir, "ca.pem")
	writeFile(t, ca, string(x509poptest.PEM(root.Cert)))
	tests := []struct {
		name, plugins string
		types         []string
		err           string
	}{
		{"none", ``, nil, ""},
		{"join_token only", `NodeAttestor "join_token" {
  plugin_data {}
}`, nil, ""},
		{"x509pop", `NodeAttestor "join_token" {
  plugin_data {}
}
NodeAttestor "x509pop" {
plugin_data {
  ca_bundle_path = "` + ca + `"
  agent_path_template = "/cn/{{ .Subject.CommonName }}"
}
}`, []string{"x509pop"}, ""},
		{"unknown type", `NodeAttestor "no_such_method" {
  plugin_data {}
}`, nil, `unknown NodeAttestor "no_such_method" (supported: aws_iid, azure_msi, gcp_iit, join_token, sshpop, tpm_devid, x509pop)`},
		{"aws_iid", `NodeAttestor "aws_iid" {
plugin_data {
  accountid_allow_list = ["123456789012"]
  rsa2048_certificates = { "us-test-1" = "` + ca + `" }
  skip_block_device = true
}
}`, []string{"aws_iid"}, ""},
		{"aws_iid without an account allow list", `NodeAttestor "aws_iid" {
  plugin_data {}
}`, nil, "accountid_allow_list is required"},
		{"aws_iid with AWS credentials", `NodeAttestor "aws_iid" {
plugin_data {
  accountid_allow_list = ["123456789012"]
  access_key_id = "AKIA"
}
}`, nil, "access_key_id is not supported"},
		{"gcp_iit", `NodeAttestor "gcp_iit" {
plugin_data {
  projectid_allow_list = ["signet-test"]
  google_certs_url = "http://127.0.0.1:1/oauth2/v1/certs"
}
}`, []string{"gcp_iit"}, ""},
		{"gcp_iit without a project allow list", `NodeAttestor "gcp_iit" {
  plugin_data {}
}`, nil, "projectid_allow_list is required"},
		{"gcp_iit with instance metadata", `NodeAttestor "gcp_iit" {
plugin_data {
  projectid_allow_list = ["signet-test"]
  use_instance_metadata = true
}
}`, nil, "use_instance_metadata is not supported"},
		{"azure_msi", `NodeAttestor "azure_msi" {
plugin_data {
  tenants = {
    "00000000-1111-2222-3333-444444444444" = {}
    "55555555-0000-0000-0000-000000000000" = { resource_id = "api://signet" }
  }
  oidc_issuer = "http://127.0.0.1:1/common/"
}
}`, []string{"azure_msi"}, ""},
		{"azure_msi without tenants", `NodeAttestor "azure_msi" {
  plugin_data {}
}`, nil, "at least one tenant"},
		{"azure_msi with app credentials", `NodeAttestor "azure_msi" {
plugin_data {
  tenants = { "t" = { app_id = "a", app_secret = "s", subscription_id = "x" } }
}
}`, nil, "is not supported: Signet does not call the Azure API"},
		{"tpm_devid", `NodeAttestor "tpm_devid" {
plugin_data {
  devid_ca_path = "` + ca + `"
  endorsement_ca_path = "` + ca + `"
}
}`, []string{"tpm_devid"}, ""},
		{"tpm_devid without endorsement CA", `NodeAttestor "tpm_devid" {
plugin_data {
  devid_ca_path = "` + ca + `"
}
}`, nil, "endorsement_ca_path is required"},
		{"sshpop", `NodeAttestor "sshpop" {
plugin_data {
  cert_authorities = ["` + sshCA(t) + `"]
  canonical_domain = "example.org"
}
}`, []string{"sshpop"}, ""},
		{"sshpop without a CA", `NodeAttestor "sshpop" {
  plugin_data {}
}`, nil, `one of "cert_authorities" or "cert_authorities_path" is required`},
		{"x509pop without bundle", `NodeAttestor "x509pop" {
  plugin_data {}
}`, nil, "one of ca_bundle_path or ca_bundle_paths must be configured"},
		{"x509pop unknown setting", `NodeAttestor "x509pop" {
plugin_data {
ca_bundle = "x"
}
}`, nil, "ca_bundle"},
		{"x509pop bad template", `NodeAttestor "x509pop" {
plugin_data {
  ca_bundle_path = "` + ca + `"
  agent_path_template = "{{"
}
}`, nil, "agent_path_template"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "server.hcl")
			writeFile(t, p, "server { trust_domain = \"example.org\" }\nplugins {\n"+tt.plugins+"\n}\n")
			f := serverFlags{configPath: p, dataDir: t.TempDir()}
			cfg, _, err := f.build(nil)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), p) {
					t.Fatalf("err %v, want %q naming the file", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var types []string
			for _, a := range cfg.NodeAttestors {
				types = append(types, a.Type())
			}
			if strings.Join(types, ",") != strings.Join(tt.types, ",") {
				t.Fatalf("attestors %v, want %v", types, tt.types)
			}
		})
	}
}

// sshHost writes an ed25519 host key and a host certificate for it, signed
// by a fresh CA, into dir; it returns their paths.
func sshHost(t *testing.T, dir string) (keyPath, certPath string) {
	t.Helper()
	h := sshpoptest.NewHost(t, dir, sshpoptest.NewSigner(t), sshpoptest.Cert{Principals: []string{"node.example.org"}})
	return h.KeyPath, h.CertPath
}

func TestAgentNodeEvidenceFromConfig(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	root := x509poptest.NewCA(t, "root", nil, now.Add(-time.Hour))
	leaf, key := root.Issue(t, x509poptest.Leaf{CN: "node", NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour)})
	kp, cp, _ := x509poptest.WriteFiles(t, dir, key, leaf)
	hk, hc := sshHost(t, dir)
	tests := []struct {
		name, plugins, typ, err string
	}{
		{"none", ``, "", ""},
		{"join_token", `NodeAttestor "join_token" {
  plugin_data {}
}`, "", ""},
		{"x509pop", `NodeAttestor "x509pop" {
plugin_data {
  private_key_path = "` + kp + `"
  certificate_path = "` + cp + `"
}
}`, "x509pop", ""},
		{"x509pop missing key", `NodeAttestor "x509pop" {
plugin_data {
certificate_path = "` + cp + `"
}
}`, "", "private_key_path is required"},
		{"sshpop", `NodeAttestor "sshpop" {
plugin_data {
  host_key_path = "` + hk + `"
  host_cert_path = "` + hc + `"
}
}`, "sshpop", ""},
		{"sshpop missing certificate", `NodeAttestor "sshpop" {
plugin_data {
  host_key_path = "` + hk + `"
  host_cert_path = "` + filepath.Join(dir, "absent-cert.pub") + `"
}
}`, "", "sshpop: read host cert"},
		{"tpm_devid", `NodeAttestor "tpm_devid" {
plugin_data {
  devid_cert_path = "` + cp + `"
  devid_priv_path = "` + kp + `"
  devid_pub_path = "` + kp + `"
  tpm_device_path = "/dev/tpmrm0"
}
}`, "tpm_devid", ""},
		{"tpm_devid without a public blob", `NodeAttestor "tpm_devid" {
plugin_data {
  devid_cert_path = "` + cp + `"
  devid_priv_path = "` + kp + `"
}
}`, "", "devid_pub_path is required"},
		{"unknown type", `NodeAttestor "no_such_method" {
  plugin_data {}
}`, "", `unknown NodeAttestor "no_such_method" (supported: aws_iid, azure_msi, gcp_iit, join_token, sshpop, tpm_devid, x509pop)`},
		{"aws_iid", `NodeAttestor "aws_iid" {
plugin_data {
  ec2_metadata_endpoint = "http://127.0.0.1:1/"
}
}`, "aws_iid", ""},
		{"aws_iid default endpoint", `NodeAttestor "aws_iid" {
  plugin_data {}
}`, "aws_iid", ""},
		{"gcp_iit", `NodeAttestor "gcp_iit" {
plugin_data {
  identity_token_host = "127.0.0.1:1"
  service_account = "default"
}
}`, "gcp_iit", ""},
		{"azure_msi", `NodeAttestor "azure_msi" {
plugin_data {
  resource_id = "api://signet"
  metadata_endpoint = "http://127.0.0.1:1"
}
}`, "azure_msi", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "agent.hcl")
			writeFile(t, p, "agent {\n  trust_domain = \"example.org\"\n  insecure_bootstrap = true\n}\nplugins {\n"+tt.plugins+"\n}\n")
			f := agentFlags{configPath: p}
			cfg, _, err := f.build()
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if cfg.NodeEvidence != nil {
				got = cfg.NodeEvidence.Type()
			}
			if got != tt.typ {
				t.Fatalf("evidence %q, want %q", got, tt.typ)
			}
		})
	}
}
