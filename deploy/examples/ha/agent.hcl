# An agent of the HA servers (ha/server.hcl), run by
# deploy/systemd/signet-agent.service. Install as /etc/signet/agent.hcl.
# It attests with the host's certificate from your machine CA (x509pop),
# so there is no token to hand out per host.
agent {
  trust_domain = "example.org"
  # Tried in turn; any server serves any agent.
  server_addresses = [
    "signet-1.example.org:8081",
    "signet-2.example.org:8081",
    "signet-3.example.org:8081",
  ]
  data_dir          = "/var/lib/signet/agent"
  socket_path       = "/run/signet/agent/public/api.sock"
  trust_bundle_path = "/etc/signet/bundle.pem"
  log_format        = "json"
}

plugins {
  NodeAttestor "x509pop" {
    plugin_data {
      # Readable by user signet (key 0600, owned by signet).
      certificate_path = "/etc/signet/node.crt"
      private_key_path = "/etc/signet/node.key"
    }
  }
  WorkloadAttestor "unix" {
    plugin_data {}
  }
}

health_checks {
  listener_enabled = true
  bind_address     = "127.0.0.1"
  bind_port        = "8082"
  live_path        = "/live"
  ready_path       = "/ready"
}
