package config

import (
	"fmt"
	"sort"

	"github.com/hashicorp/hcl/v2"
)

// K8sBundleData is the plugin_data of Notifier "k8sbundle", with SPIRE's
// names; empty settings take SPIRE's defaults (DecodeK8sBundle).
type K8sBundleData struct {
	// Namespace is the ConfigMap's namespace (default spire).
	Namespace string `hcl:"namespace,optional"`
	// ConfigMap is the ConfigMap's name (default spire-bundle).
	ConfigMap string `hcl:"config_map,optional"`
	// ConfigMapKey is the data key holding the PEM (default bundle.crt).
	ConfigMapKey string `hcl:"config_map_key,optional"`
	// KubeConfigFilePath is a kubeconfig file; empty: the in-cluster
	// configuration of the server's pod.
	KubeConfigFilePath string   `hcl:"kube_config_file_path,optional"`
	Remain             hcl.Body `hcl:",remain"`
}

// k8sBundleRefused are SPIRE's k8sbundle settings Signet does not read.
var k8sBundleRefused = map[string]string{
	"webhook_label":     "CA bundles of webhook configurations are not maintained",
	"api_service_label": "CA bundles of APIServices are not maintained",
	"clusters":          "one cluster per Notifier: write its namespace, config_map and kube_config_file_path at the top of plugin_data",
}

// DecodeK8sBundle decodes Notifier "k8sbundle"'s plugin_data and fills
// in SPIRE's defaults; SPIRE settings Signet does not support are refused
// by name. The names are checked by the k8sbundle package.
func DecodeK8sBundle(p *Plugin) (K8sBundleData, error) {
	var d K8sBundleData
	if err := DecodePluginData(p, &d); err != nil {
		return d, err
	}
	if d.Remain != nil {
		attrs, diags := d.Remain.JustAttributes()
		if diags.HasErrors() {
			return d, fmt.Errorf("config: Notifier \"k8sbundle\": plugin_data: %s (the settings are namespace, config_map, config_map_key and kube_config_file_path)", diags.Error())
		}
		names := make([]string, 0, len(attrs))
		for name := range attrs {
			names = append(names, name)
		}
		sort.Strings(names)
		if len(names) > 0 {
			name := names[0]
			why, known := k8sBundleRefused[name]
			if !known {
				why = "unknown setting (the settings are namespace, config_map, config_map_key and kube_config_file_path)"
			}
			return d, fmt.Errorf("config: %s: Notifier \"k8sbundle\": plugin_data: %s is not supported: %s", attrs[name].Range.String(), name, why)
		}
	}
	for _, f := range []struct {
		v *string
		d string
	}{{&d.Namespace, "spire"}, {&d.ConfigMap, "spire-bundle"}, {&d.ConfigMapKey, "bundle.crt"}} {
		if *f.v == "" {
			*f.v = f.d
		}
	}
	return d, nil
}
