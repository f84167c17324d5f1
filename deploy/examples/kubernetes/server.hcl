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
