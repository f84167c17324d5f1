# Copy of data.agent.conf of the ConfigMap signet-agent in deploy/kubernetes/base/agent-config.yaml,
# which is what the cluster runs; deploy/examples/examples_test.go keeps the
# two equal and validates this file. Edit the ConfigMap, then copy it here.

agent {
  trust_domain      = "example.org"
  server_address    = "signet-server.signet.svc"
  server_port       = 8081
  data_dir          = "/var/lib/signet/agent"
  # The host directory that workloads mount (hostPath, read-only).
  socket_path       = "/run/signet/agent/public/api.sock"
  # The signet-bundle ConfigMap, which the server writes (its Notifier
  # "k8sbundle"; deploy/kubernetes/README.md).
  trust_bundle_path = "/run/signet/bundle/bundle.pem"
  log_format        = "json"
}

plugins {
  NodeAttestor "k8s_psat" {
    plugin_data {
      cluster    = "cluster-1"
      # The projected token with audience signet-server.
      token_path = "/var/run/secrets/tokens/signet-agent"
    }
  }
  WorkloadAttestor "k8s" {
    plugin_data {
      # The kubelet is reached at the node's IP (status.hostIP), so the
      # agent needs no host network.
      node_name_env = "SIGNET_KUBELET_HOST"
      # Kubelet serving certificates are self-signed unless the cluster
      # runs serverTLSBootstrap; with certificates signed by the cluster
      # CA, remove this line to verify them against kubelet_ca_path.
      skip_kubelet_verification = true
    }
  }
  WorkloadAttestor "unix" {
    plugin_data {}
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
