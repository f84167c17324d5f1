# Copy of data.server.conf of the ConfigMap signet-server in deploy/kubernetes/base/server-config.yaml,
# which is what the cluster runs; deploy/examples/examples_test.go keeps the
# two equal and validates this file. Edit the ConfigMap, then copy it here.

server {
  trust_domain = "example.org"
  bind_address = "0.0.0.0"
  bind_port    = 8081
  data_dir     = "/var/lib/signet/server"
  # In the emptyDir shared with the registration controller sidecar.
  socket_path  = "/run/signet/admin/api.sock"
  log_format   = "json"
}

plugins {
  NodeAttestor "k8s_psat" {
    plugin_data {
      clusters = {
        "cluster-1" = {
          service_account_allow_list = ["signet:signet-agent"]
          # The audience of the agents' projected token (agent DaemonSet).
          audience = ["signet-server"]
        }
      }
    }
  }

  # The server keeps the agents' bootstrap bundle, the ConfigMap
  # signet-bundle (key bundle.pem), current: the leading server writes its
  # X.509 authorities there at start and on every CA change (RBAC:
  # Role signet-server-bundle).
  Notifier "k8sbundle" {
    plugin_data {
      namespace      = "signet"
      config_map     = "signet-bundle"
      config_map_key = "bundle.pem"
    }
  }
}

health_checks {
  listener_enabled = true
  bind_address     = "0.0.0.0"
  bind_port        = "8080"
  live_path        = "/live"
  ready_path       = "/ready"
}

telemetry {
  Prometheus {
    host = "0.0.0.0"
    port = 9988
  }
}
