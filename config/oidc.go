package config

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// OIDCDiscoveryProvider is the `oidc_discovery_provider` block: SPIRE's
// oidc-discovery-provider built into the server (docs/oidc.md). It serves
// the OIDC discovery document and the JWKS of the JWT-SVID keys.
type OIDCDiscoveryProvider struct {
	// ListenAddress is the listener's host:port, e.g. 0.0.0.0:8443 (flag
	// --oidc-address, which alone serves with the defaults). Required.
	ListenAddress string `hcl:"listen_address,optional"`
	// Domains are the host names the provider is reached at; requests for
	// another host are refused. The issuer defaults to https://<first>.
	Domains []string `hcl:"domains,optional"`
	// Issuer is the issuer URL, e.g. https://oidc.example.org (default
	// https://<first domain>); one of issuer and domains is required.
	// JWT-SVIDs carry it as iss unless server.jwt_issuer says otherwise.
	Issuer string `hcl:"issuer,optional"`
	// JWKSURI is the published jwks_uri (default <issuer>/keys).
	JWKSURI string `hcl:"jwks_uri,optional"`
	// SetKeyUse sets "use":"sig" on every published key.
	SetKeyUse bool `hcl:"set_key_use,optional"`
	// AllowInsecureHTTP serves plain HTTP, for a TLS-terminating proxy in
	// front; the issuer stays https unless set to an http URL.
	AllowInsecureHTTP bool `hcl:"allow_insecure_http,optional"`
	// RequirePQKeyExchange refuses classical-only TLS key exchange. By
	// default X25519MLKEM768 is preferred and X25519 and P-256 accepted,
	// because the documents are public and fetched by cloud services.
	RequirePQKeyExchange bool `hcl:"require_pq_key_exchange,optional"`
	// ServingCertFile is the serving certificate read from files (default:
	// the server's SVID, which only relying parties trusting the trust
	// domain's bundle accept).
	ServingCertFile *ServingCertFile `hcl:"serving_cert_file,block"`
	// HealthChecks serves /live and /ready on the provider's listener.
	HealthChecks *OIDCHealthChecks `hcl:"health_checks,block"`
}

// OIDCHealthChecks is the provider's `health_checks` block.
type OIDCHealthChecks struct {
	// LivePath answers 200 while the provider serves (default /live).
	LivePath string `hcl:"live_path,optional"`
	// ReadyPath answers 200 while the JWKS holds a key, 500 otherwise
	// (default /ready).
	ReadyPath string `hcl:"ready_path,optional"`
}

// Paths returns the live and ready paths with their defaults.
func (h *OIDCHealthChecks) Paths() (live, ready string) {
	return pick(h.LivePath, "/live"), pick(h.ReadyPath, "/ready")
}

func pick(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// check validates the block's syntax; the server checks the rest (URLs,
// conflicting settings, the certificate files) with the flags applied.
func (p *OIDCDiscoveryProvider) check() error {
	if p == nil {
		return nil
	}
	const block = "oidc_discovery_provider: "
	if p.ListenAddress == "" {
		return fmt.Errorf(block + "listen_address is required, e.g. listen_address = \"0.0.0.0:8443\"")
	}
	_, port, err := net.SplitHostPort(p.ListenAddress)
	if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 0 || n > 65535 {
		return fmt.Errorf(block+"listen_address %q is not host:port (e.g. 0.0.0.0:8443)", p.ListenAddress)
	}
	if p.Issuer == "" && len(p.Domains) == 0 {
		return fmt.Errorf(block + "set issuer (e.g. issuer = \"https://oidc.example.org\") or domains (e.g. domains = [\"oidc.example.org\"]): relying parties compare the issuer with the JWT-SVIDs' iss claim")
	}
	for _, d := range p.Domains {
		if d == "" || strings.ContainsAny(d, ":/?#@ []") {
			return fmt.Errorf(block+"domains: %q is not a host name (write oidc.example.org, without scheme, port or path)", d)
		}
	}
	if f := p.ServingCertFile; f != nil {
		if _, err := Duration(f.FileSyncInterval); err != nil {
			return fmt.Errorf(block+"serving_cert_file: file_sync_interval: %w", err)
		}
	}
	if h := p.HealthChecks; h != nil {
		live, ready := h.Paths()
		for _, path := range []string{live, ready} {
			if !strings.HasPrefix(path, "/") {
				return fmt.Errorf(block+"health_checks: path %q must start with /", path)
			}
		}
		if live == ready {
			return fmt.Errorf(block+"health_checks: live_path and ready_path are both %q", live)
		}
	}
	return nil
}
