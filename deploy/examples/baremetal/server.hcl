# A single Signet server on a host, run by deploy/systemd/signet-server.service.
# Install as /etc/signet/server.hcl (root:root 0644: it holds no secret).
# etcd is embedded in data_dir; the CA keys are in data_dir/ca (0600).
server {
  trust_domain = "example.org"
  bind_address = "0.0.0.0"
  bind_port    = 8081
  # The unit's StateDirectory (0700, user signet); the unit also passes
  # --data-dir with this path. The admin socket is data_dir/private/api.sock:
  #   runuser -u signet -- signet entry show --socket-path /var/lib/signet/server/private/api.sock
  data_dir     = "/var/lib/signet/server"
  log_level    = "info"
  # The journal adds its own timestamps; json is easier to ship elsewhere.
  log_format   = "json"

  ca_ttl                = "168h"
  default_x509_svid_ttl = "1h"
  default_jwt_svid_ttl  = "5m"
}

plugins {
  # Join tokens are always served (`signet token generate`). Hosts with a
  # certificate from your machine CA attest with x509pop instead.
  NodeAttestor "x509pop" {
    plugin_data {
      ca_bundle_path = "/etc/signet/node-ca.pem"
    }
  }
}

# Loopback only: point your probes and Prometheus at the host.
health_checks {
  listener_enabled = true
  bind_address     = "127.0.0.1"
  bind_port        = "8080"
  live_path        = "/live"
  ready_path       = "/ready"
}

telemetry {
  Prometheus {
    host = "127.0.0.1"
    port = 9988
  }
}
