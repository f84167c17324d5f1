package cli

import (
	"time"

	"github.com/signet-id/signet/config"
	"github.com/signet-id/signet/server/limits"
)

// limitsFromFile maps the configuration file's limits block (validated by
// config.LoadServer) to the server's limits.
func limitsFromFile(f *config.Limits) limits.Config {
	d := func(s string) (v time.Duration) {
		v, _ = config.Duration(s)
		return v
	}
	return limits.Config{
		HandshakeTimeout:      d(f.HandshakeTimeout),
		MaxConcurrentStreams:  uint32(f.MaxConcurrentStreams),
		MaxConnsPerIP:         f.MaxConnsPerIP,
		IdleTimeout:           d(f.IdleTimeout),
		KeepaliveMinTime:      d(f.KeepaliveMinTime),
		AttestRate:            f.AttestRate,
		AttestBurst:           f.AttestBurst,
		FirstMessageTimeout:   d(f.FirstMessageTimeout),
		SignRate:              f.SignRate,
		SignBurst:             f.SignBurst,
		MaxUnauthStreamsPerIP: f.MaxUnauthStreamsPerIP,
		MaxUnauthStreams:      f.MaxUnauthStreams,
	}
}
