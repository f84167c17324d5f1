package config

import "fmt"

// Limits is the server's `limits` block: the agent listener's limits
// against abuse (docs/limits.md). Unset attributes keep the defaults; a
// negative max_conns_per_ip, attest_rate, sign_rate or
// max_unauthenticated_streams* disables that limit.
type Limits struct {
	// HandshakeTimeout bounds a TLS handshake on the agent listener.
	HandshakeTimeout string `hcl:"handshake_timeout,optional"`
	// MaxConcurrentStreams bounds the RPCs in flight on one connection.
	MaxConcurrentStreams int `hcl:"max_concurrent_streams,optional"`
	// MaxConnsPerIP bounds the open connections from one IP address.
	MaxConnsPerIP int `hcl:"max_conns_per_ip,optional"`
	// IdleTimeout closes connections idle this long.
	IdleTimeout string `hcl:"idle_timeout,optional"`
	// KeepaliveMinTime is the least interval allowed between client pings.
	KeepaliveMinTime string `hcl:"keepalive_min_time,optional"`
	// AttestRate is the node attestations allowed per second and IP.
	AttestRate float64 `hcl:"attest_rate,optional"`
	// AttestBurst is the burst of attestations above attest_rate.
	AttestBurst int `hcl:"attest_burst,optional"`
	// FirstMessageTimeout bounds the wait for an attestation's first
	// message.
	FirstMessageTimeout string `hcl:"first_message_timeout,optional"`
	// SignRate is the SVIDs one agent may have signed per second.
	SignRate float64 `hcl:"sign_rate,optional"`
	// SignBurst is the burst of SVIDs above sign_rate.
	SignBurst int `hcl:"sign_burst,optional"`
	// MaxUnauthStreamsPerIP bounds the unauthenticated streams from one IP.
	MaxUnauthStreamsPerIP int `hcl:"max_unauthenticated_streams_per_ip,optional"`
	// MaxUnauthStreams bounds the unauthenticated streams in total.
	MaxUnauthStreams int `hcl:"max_unauthenticated_streams,optional"`
}

// check validates the block's durations and counts.
func (l *Limits) check() error {
	for _, d := range []struct{ name, v string }{
		{"handshake_timeout", l.HandshakeTimeout}, {"idle_timeout", l.IdleTimeout},
		{"keepalive_min_time", l.KeepaliveMinTime}, {"first_message_timeout", l.FirstMessageTimeout},
	} {
		if _, err := Duration(d.v); err != nil {
			return fmt.Errorf("limits.%s: %w", d.name, err)
		}
	}
	for _, n := range []struct {
		name string
		v    int
	}{{"max_concurrent_streams", l.MaxConcurrentStreams}, {"attest_burst", l.AttestBurst}, {"sign_burst", l.SignBurst}} {
		if n.v < 0 {
			return fmt.Errorf("limits.%s: %d must not be negative", n.name, n.v)
		}
	}
	return nil
}
