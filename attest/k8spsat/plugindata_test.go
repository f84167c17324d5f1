package k8spsat

import (
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

func decodePluginData(t *testing.T, src string) (Config, error) {
	t.Helper()
	f, diags := hclsyntax.ParseConfig([]byte(src), "plugin_data.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	var d ServerPluginData
	if diags := gohcl.DecodeBody(f.Body, nil, &d); diags.HasErrors() {
		return Config{}, diags
	}
	return ConfigFromPluginData(td, d)
}

// TestConfigFromPluginData reads SPIRE's documented plugin_data shape.
func TestConfigFromPluginData(t *testing.T) {
	cfg, err := decodePluginData(t, `
clusters = {
  "prod" = {
    service_account_allow_list = ["spire:spire-agent", "spire:other"]
    kube_config_file = "/etc/kube/prod"
    allowed_node_label_keys = ["zone"]
    allowed_pod_label_keys = ["app"]
  }
  "dev" = {
    service_account_allow_list = ["spire:spire-agent"]
    audience = []
  }
  staging = {
    service_account_allow_list = ["spire:spire-agent"],
    audience = ["a", "b"],
  }
}`)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]ClusterConfig{
		"prod": {
			ServiceAccountAllowList: []string{"spire:spire-agent", "spire:other"},
			KubeConfigFile:          "/etc/kube/prod",
			AllowedNodeLabelKeys:    []string{"zone"},
			AllowedPodLabelKeys:     []string{"app"},
		},
		"dev":     {ServiceAccountAllowList: []string{"spire:spire-agent"}, Audience: []string{}},
		"staging": {ServiceAccountAllowList: []string{"spire:spire-agent"}, Audience: []string{"a", "b"}},
	}
	if !reflect.DeepEqual(cfg.Clusters, want) || cfg.TrustDomain != td {
		t.Fatalf("config %+v\nwant %+v", cfg.Clusters, want)
	}
	if cfg.Clusters["prod"].Audience != nil {
		t.Fatal("an absent audience must stay nil (the default applies)")
	}

	empty, err := decodePluginData(t, ``)
	if err != nil || len(empty.Clusters) != 0 {
		t.Fatalf("no clusters: %+v %v", empty, err)
	}
}

func TestConfigFromPluginDataRefuses(t *testing.T) {
	tests := []struct{ name, src, msg string }{
		{"clusters a list", `clusters = ["a"]`, "an object of cluster name"},
		{"cluster a string", `clusters = { a = "x" }`, `cluster "a": an object is required`},
		{"unknown key", `clusters = { a = { service_account_allow_list = ["n:s"], audiences = ["x"] } }`, `cluster "a": unsupported key "audiences"`},
		{"allow list a string", `clusters = { a = { service_account_allow_list = "n:s" } }`, "service_account_allow_list: a list of string is required"},
		{"kubeconfig a list", `clusters = { a = { service_account_allow_list = ["n:s"], kube_config_file = ["x"] } }`, "kube_config_file: a string is required"},
		{"unknown attribute", `cluster = {}`, `Unsupported argument`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodePluginData(t, tt.src)
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err %v, want %q", err, tt.msg)
			}
		})
	}
}
