# One of three Signet servers sharing an external etcd cluster (mutual TLS),
# each on its own host, run by deploy/systemd/signet-server.service. The file
# is the same on the three hosts. Install as /etc/signet/server.hcl.
#
# The servers share the entries, agents and the CA: the CA is sealed in etcd
# with the key-encryption key in ca_kek_path, which must be the same file on
# every server. Create it once and copy it (never regenerate it: a new KEK
# cannot open the sealed CA):
#   head -c32 /dev/urandom > kek
#   install -o signet -g signet -m 0600 kek /etc/signet/kek
# The etcd client certificate's key likewise belongs to user signet, 0600.
# Put a TCP load balancer (or DNS name with the three addresses) in front of
# port 8081, or list the three servers in the agents' server_addresses.
server {
  trust_domain = "example.org"
  bind_address = "0.0.0.0"
  bind_port    = 8081
  # Local state only (the lock, the admin socket); entries and CA are in etcd.
  data_dir     = "/var/lib/signet/server"
  ca_kek_path  = "/etc/signet/kek"
  log_format   = "json"
}

etcd {
  # Your etcd cluster's client URLs (etcd --client-cert-auth).
  endpoints = [
    "https://etcd-1.example.org:2379",
    "https://etcd-2.example.org:2379",
    "https://etcd-3.example.org:2379",
  ]
  cert_file = "/etc/signet/etcd/client.crt"
  key_file  = "/etc/signet/etcd/client.key"
  ca_file   = "/etc/signet/etcd/ca.crt"
}

plugins {
  NodeAttestor "x509pop" {
    plugin_data {
      ca_bundle_path = "/etc/signet/node-ca.pem"
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
