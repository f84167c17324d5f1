package k8spsat

import (
	"fmt"
	"slices"

	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/gocty"
)

// ServerPluginData is the server's plugin_data, with SPIRE's names:
//
//	clusters = {
//	  "name" = {
//	    service_account_allow_list = ["ns:sa"]
//	    audience = ["spire-server"]            # optional; [] means the API server's
//	    kube_config_file = "/path/kubeconfig"   # optional; "" means in-cluster
//	    allowed_node_label_keys = ["zone"]      # optional
//	    allowed_pod_label_keys = ["app"]        # optional
//	  }
//	}
//
// clusters is an object whose members have optional keys, which HCL's
// typed decoding cannot express, so it is kept as a value and read by
// ConfigFromPluginData.
type ServerPluginData struct {
	Clusters cty.Value `hcl:"clusters,optional"`
}

// The keys of one cluster's object.
const (
	keyAllowList      = "service_account_allow_list"
	keyAudience       = "audience"
	keyKubeConfigFile = "kube_config_file"
	keyNodeLabels     = "allowed_node_label_keys"
	keyPodLabels      = "allowed_pod_label_keys"
)

// clustersFromValue reads the clusters object.
func clustersFromValue(v cty.Value) (map[string]ClusterConfig, error) {
	out := map[string]ClusterConfig{}
	if v == cty.NilVal || v.IsNull() {
		return out, nil
	}
	if !v.IsWhollyKnown() || !(v.Type().IsObjectType() || v.Type().IsMapType()) {
		return nil, fmt.Errorf("k8spsat: clusters: an object of cluster name = { ... } is required")
	}
	for it := v.ElementIterator(); it.Next(); {
		k, cv := it.Element()
		name := k.AsString()
		c, err := clusterFromValue(cv)
		if err != nil {
			return nil, fmt.Errorf("k8spsat: cluster %q: %w", name, err)
		}
		out[name] = c
	}
	return out, nil
}

func clusterFromValue(v cty.Value) (ClusterConfig, error) {
	var c ClusterConfig
	if v.IsNull() || !(v.Type().IsObjectType() || v.Type().IsMapType()) {
		return c, fmt.Errorf("an object is required")
	}
	for it := v.ElementIterator(); it.Next(); {
		k, ev := it.Element()
		var err error
		switch key := k.AsString(); key {
		case keyAllowList:
			c.ServiceAccountAllowList, err = stringList(ev)
		case keyAudience:
			c.Audience, err = stringList(ev)
			if c.Audience == nil {
				c.Audience = []string{}
			}
		case keyKubeConfigFile:
			err = fromValue(ev, cty.String, &c.KubeConfigFile)
		case keyNodeLabels:
			c.AllowedNodeLabelKeys, err = stringList(ev)
		case keyPodLabels:
			c.AllowedPodLabelKeys, err = stringList(ev)
		default:
			known := []string{keyAllowList, keyAudience, keyKubeConfigFile, keyNodeLabels, keyPodLabels}
			slices.Sort(known)
			return c, fmt.Errorf("unsupported key %q (supported: %v)", key, known)
		}
		if err != nil {
			return c, fmt.Errorf("%s: %w", k.AsString(), err)
		}
	}
	return c, nil
}

func stringList(v cty.Value) ([]string, error) {
	var out []string
	if err := fromValue(v, cty.List(cty.String), &out); err != nil {
		return nil, err
	}
	return out, nil
}

func fromValue(v cty.Value, ty cty.Type, out any) error {
	if v.IsNull() {
		return fmt.Errorf("a %s is required, not null", ty.FriendlyName())
	}
	cv, err := convert.Convert(v, ty)
	if err != nil {
		return fmt.Errorf("a %s is required: %w", ty.FriendlyName(), err)
	}
	if err := gocty.FromCtyValue(cv, out); err != nil {
		return fmt.Errorf("a %s is required: %w", ty.FriendlyName(), err)
	}
	return nil
}
