// Package tlspolicy is the TLS policy Signet's server and agent share: TLS
// 1.3 only, and post-quantum key exchange (X25519MLKEM768) required unless
// classical groups are allowed explicitly, in which case the hybrid group
// is still offered first. Public endpoints (OIDC discovery, the https_web
// bundle endpoint) use Public, and CertFile serves an operator's
// certificate read from files.
package tlspolicy

import "crypto/tls"

// MinVersion is the lowest TLS version Signet speaks.
const MinVersion = tls.VersionTLS13

// Policy is the key-exchange policy of a TLS endpoint (client or server).
// The zero Policy requires post-quantum key exchange.
type Policy struct {
	// AllowClassical permits classical-only key exchange (X25519, P-256)
	// in addition to X25519MLKEM768. Off by default.
	AllowClassical bool
}

// CurvePreferences returns the key-exchange groups the policy allows, most
// preferred first. It returns a new slice on every call.
func (p Policy) CurvePreferences() []tls.CurveID {
	if p.AllowClassical {
		return []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256}
	}
	return []tls.CurveID{tls.X25519MLKEM768}
}

// Config returns a new TLS configuration with the policy's version and
// key-exchange groups set, for the caller to add certificates and
// verification to.
func (p Policy) Config() *tls.Config {
	return &tls.Config{MinVersion: MinVersion, CurvePreferences: p.CurvePreferences()}
}

// Public returns the TLS configuration of an endpoint whose documents are
// public and fetched by clients Signet does not control (cloud token
// services, curl, browsers): X25519MLKEM768 preferred, classical X25519 and
// P-256 accepted, TLS 1.2 and up. With requirePQ it is the default Policy's
// (TLS 1.3, X25519MLKEM768 only). The caller adds the certificate.
func Public(requirePQ bool) *tls.Config {
	if requirePQ {
		return Policy{}.Config()
	}
	c := Policy{AllowClassical: true}.Config()
	c.MinVersion = tls.VersionTLS12
	return c
}
