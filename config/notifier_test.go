package config_test

import (
	"strings"
	"testing"

	"github.com/signet-id/signet/config"
)

// TestK8sBundleNotifier: Notifier "k8sbundle" is read with SPIRE's names
// and defaults, without a warning; SPIRE settings Signet does not support
// are refused by name, and so is a second block.
func TestK8sBundleNotifier(t *testing.T) {
	tests := []struct {
		name, data string
		want       config.K8sBundleData
		err        string
	}{
		{name: "no plugin_data", want: config.K8sBundleData{Namespace: "spire", ConfigMap: "spire-bundle", ConfigMapKey: "bundle.crt"}},
		{name: "empty strings take the defaults", data: `plugin_data {
  namespace = ""
  config_map = ""
  config_map_key = ""
  kube_config_file_path = ""
}`, want: config.K8sBundleData{Namespace: "spire", ConfigMap: "spire-bundle", ConfigMapKey: "bundle.crt"}},
		{name: "all set", data: `plugin_data {
  namespace = "signet"
  config_map = "signet-bundle"
  config_map_key = "bundle.pem"
  kube_config_file_path = "/etc/kube.conf"
}`, want: config.K8sBundleData{Namespace: "signet", ConfigMap: "signet-bundle", ConfigMapKey: "bundle.pem", KubeConfigFilePath: "/etc/kube.conf"}},
		{name: "webhook_label", data: `plugin_data { webhook_label = "spiffe.io/webhook" }`, err: "webhook_label is not supported: CA bundles of webhook configurations"},
		{name: "api_service_label", data: `plugin_data { api_service_label = "x" }`, err: "api_service_label is not supported"},
		{name: "clusters", data: `plugin_data { clusters = [{ kube_config_file_path = "/a" }] }`, err: "clusters is not supported: one cluster per Notifier"},
		{name: "misspelt", data: `plugin_data { namespaces = "x" }`, err: "namespaces is not supported: unknown setting"},
		{name: "wrong type", data: `plugin_data { namespace = ["x"] }`, err: "c.hcl:4,27-28: Unsuitable value type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := config.LoadServer(write(t, "server {}\nplugins {\nNotifier \"k8sbundle\" {\n"+tt.data+"\n}\n}\n"))
			if err == nil {
				if len(f.Warnings) != 0 || len(f.Plugins.Notifiers) != 1 {
					t.Fatalf("warnings %v, notifiers %d", f.Warnings, len(f.Plugins.Notifiers))
				}
				var d config.K8sBundleData
				d, err = config.DecodeK8sBundle(f.Plugins.Notifiers[0])
				d.Remain = nil
				if err == nil && d != tt.want {
					t.Fatalf("decoded %+v, want %+v", d, tt.want)
				}
			}
			if tt.err == "" && err != nil {
				t.Fatal(err)
			}
			if tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Fatalf("err %v, want %q", err, tt.err)
			}
		})
	}
	_, err := config.LoadServer(write(t, "server {}\nplugins {\nNotifier \"k8sbundle\" {}\nNotifier \"k8sbundle\" {}\n}\n"))
	if err == nil || !strings.Contains(err.Error(), `Notifier "k8sbundle" is configured twice`) {
		t.Fatalf("two k8sbundle blocks: %v", err)
	}
}
