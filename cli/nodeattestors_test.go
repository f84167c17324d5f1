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
	kubeconfig := filepath.Join(dir, "kubeconfig")
	writeFile(t, kubeconfig, "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:6443\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: x\n")
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
		{"unknown type", `NodeAttestor "aws_iid" {
  plugin_data {}
}`, nil, `unknown NodeAttestor "aws_iid" (supported: join_token, k8s_psat, sshpop, tpm_devid, x509pop)`},
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
		{"k8s_psat", `NodeAttestor "k8s_psat" {
plugin_data {
  clusters = {
    "prod" = {
      service_account_allow_list = ["spire:spire-agent"]
      kube_config_file = "` + kubeconfig + `"
      allowed_node_label_keys = ["zone"]
    }
  }
}
}`, []string{"k8s_psat"}, ""},
		{"k8s_psat cluster without allow list", `NodeAttestor "k8s_psat" {
plugin_data {
  clusters = { "prod" = { audience = [] } }
}
}`, nil, `cluster "prod" configuration must have at least one service account allowed`},
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
		{"k8s_psat", `NodeAttestor "k8s_psat" {
plugin_data {
  cluster = "prod"
  token_path = "` + filepath.Join(dir, "token") + `"
}
}`, "k8s_psat", ""},
		{"k8s_psat without cluster", `NodeAttestor "k8s_psat" {
  plugin_data {}
}`, "", `plugin_data`},
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
		{"unknown type", `NodeAttestor "azure_msi" {
  plugin_data {}
}`, "", `unknown NodeAttestor "azure_msi" (supported: join_token, k8s_psat, sshpop, tpm_devid, x509pop)`},
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
