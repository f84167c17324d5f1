package config

import "fmt"

// Limits is the server's `limits` block: the agent listener's limits
// against abuse (docs/limits.md). Unset attributes keep the defaults; a
// negative max_conns_per_ip, attest_rate, sign_rate or
// max_unauthenticated_streams* disables that limit.
type Limits struct {
	HandshakeTimeout      string  `hcl:"handshake_timeout,optional"`
	MaxConcurrentStreams  int     `hcl:"max_concurrent_streams,optional"`
	MaxConnsPerIP         int     `hcl:"max_conns_per_ip,optional"`
	IdleTimeout           string  `hcl:"idle_timeout,optional"`
	KeepaliveMinTime      string  `hcl:"keepalive_min_time,optional"`
	AttestRate            float64 `hcl:"attest_rate,optional"`
	AttestBurst           int     `hcl:"attest_burst,optional"`
	FirstMessageTimeout   string  `hcl:"first_message_timeout,optional"`
	SignRate              float64 `hcl:"sign_rate,optional"`
	SignBurst             int     `hcl:"sign_burst,optional"`
	MaxUnauthStreamsPerIP int     `hcl:"max_unauthenticated_streams_per_ip,optional"`
	MaxUnauthStreams      int     `hcl:"max_unauthenticated_streams,optional"`
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
