# A Signet agent on a host, run by deploy/systemd/signet-agent.service.
# Install as /etc/signet/agent.hcl (root:root 0644).
agent {
  trust_domain   = "example.org"
  server_address = "signet.example.org"
  server_port    = 8081
  # The unit's StateDirectory (0700); the unit passes --data-dir too.
  data_dir       = "/var/lib/signet/agent"
  # The unit's RuntimeDirectory (0755); the unit passes --socket-path too.
  # Workloads: SPIFFE_ENDPOINT_SOCKET=unix:///run/signet/agent/public/api.sock
  socket_path    = "/run/signet/agent/public/api.sock"
  # First contact: the server's bundle (`signet bundle show > bundle.pem`
  # on the server) and a join token (`signet token generate`), both
  # readable by user signet: install -o signet -m 0600 token /etc/signet/join-token
  # The token is used once; after that the agent renews its own SVID.
  trust_bundle_path = "/etc/signet/bundle.pem"
  join_token_file   = "/etc/signet/join-token"
  log_format        = "json"
}

plugins {
  # uid, gid, user, group, and (the unit grants CAP_SYS_PTRACE for them)
  # path and sha256 of the connecting process.
  WorkloadAttestor "unix" {
    plugin_data {
      discover_workload_path = true
    }
  }
  # The caller's systemd unit (systemd:id:web.service), over the system bus.
  WorkloadAttestor "systemd" {
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

telemetry {
  Prometheus {
    host = "127.0.0.1"
    port = 9989
  }
}
