# Copy of data.server.conf of the ConfigMap signet-server in deploy/kubernetes/overlays/ha/server-config.yaml,
# which is what the cluster runs; deploy/examples/examples_test.go keeps the
# two equal and validates this file. Edit the ConfigMap, then copy it here.

server {
  trust_domain = "example.org"
  bind_address = "0.0.0.0"
  bind_port    = 8081
  data_dir     = "/var/lib/signet/server"
  socket_path  = "/run/signet/admin/api.sock"
  log_format   = "json"
  # Copied from the signet-ca-kek Secret by the init container (the
  # server wants the file 0600 and its own).
  ca_kek_path  = "/run/signet/secrets/kek"
}

etcd {
  # Your etcd cluster's client URLs.
  endpoints = [
    "https://etcd-0.etcd.etcd.svc:2379",
    "https://etcd-1.etcd.etcd.svc:2379",
    "https://etcd-2.etcd.etcd.svc:2379",
  ]
  cert_file = "/run/signet/secrets/etcd-client.crt"
  key_file  = "/run/signet/secrets/etcd-client.key"
  ca_file   = "/run/signet/secrets/etcd-ca.crt"
}

plugins {
  NodeAttestor "k8s_psat" {
    plugin_data {
      clusters = {
        "cluster-1" = {
          service_account_allow_list = ["signet:signet-agent"]
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
