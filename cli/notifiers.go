package cli

import (
	"fmt"

	"github.com/signet-id/signet/config"
	"github.com/signet-id/signet/k8s/k8sbundle"
	"github.com/signet-id/signet/server"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// buildNotifiers reads the server's Notifier blocks (only "k8sbundle" is
// read; the plugin table refused the others when the file was loaded).
// The names and an explicit kubeconfig are checked here, so that
// `server validate` refuses them; the in-cluster configuration is read
// when the server starts.
func buildNotifiers(ps *config.Plugins) ([]server.NotifierFactory, error) {
	if ps == nil {
		return nil, nil
	}
	var out []server.NotifierFactory
	for _, p := range ps.Notifiers {
		if p.Type != "k8sbundle" {
			continue
		}
		d, err := config.DecodeK8sBundle(p)
		if err != nil {
			return nil, err
		}
		if err := k8sbundle.CheckNames(d.Namespace, d.ConfigMap, d.ConfigMapKey); err != nil {
			return nil, fmt.Errorf("plugins: Notifier \"k8sbundle\": plugin_data: %w", err)
		}
		var rc *rest.Config
		if d.KubeConfigFilePath != "" {
			if rc, err = k8sbundle.RESTConfig(d.KubeConfigFilePath); err != nil {
				return nil, fmt.Errorf("plugins: Notifier \"k8sbundle\": plugin_data: %w", err)
			}
		}
		out = append(out, server.NotifierFactory{Name: "k8sbundle", New: func(h server.NotifierHost) (server.Notifier, error) {
			cfg := rc
			if cfg == nil {
				var err error
				if cfg, err = k8sbundle.RESTConfig(""); err != nil {
					return nil, err
				}
			}
			kc, err := kubernetes.NewForConfig(cfg)
			if err != nil {
				return nil, fmt.Errorf("kubernetes client: %w", err)
			}
			return k8sbundle.New(k8sbundle.Config{
				Client: kc, Namespace: d.Namespace, ConfigMap: d.ConfigMap, Key: d.ConfigMapKey,
				Bundle: h.X509Authorities, Leader: h.Leader,
				Clock: h.Clock, Logger: h.Logger, Registry: h.Registry,
			})
		}})
	}
	return out, nil
}
