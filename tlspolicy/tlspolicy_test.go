package tlspolicy

import (
	"crypto/tls"
	"slices"
	"testing"
)

func TestPolicy(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    Policy
		want []tls.CurveID
	}{
		{"default requires post-quantum", Policy{}, []tls.CurveID{tls.X25519MLKEM768}},
		{"classical allowed, hybrid first", Policy{AllowClassical: true}, []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.CurvePreferences(); !slices.Equal(got, tc.want) {
				t.Fatalf("CurvePreferences() = %v, want %v", got, tc.want)
			}
			c := tc.p.Config()
			if c.MinVersion != tls.VersionTLS13 || c.MaxVersion != 0 || !slices.Equal(c.CurvePreferences, tc.want) {
				t.Fatalf("Config() = versions %x-%x, groups %v", c.MinVersion, c.MaxVersion, c.CurvePreferences)
			}
			// Every call returns its own copy.
			c.CurvePreferences[0] = tls.CurveP384
			if got := tc.p.Config().CurvePreferences; !slices.Equal(got, tc.want) {
				t.Fatalf("a caller's edit leaked into the next Config: %v", got)
			}
		})
	}
}

func TestPublic(t *testing.T) {
	for _, tc := range []struct {
		name      string
		requirePQ bool
		min       uint16
		want      []tls.CurveID
	}{
		{"default accepts classical, prefers hybrid", false, tls.VersionTLS12, []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256}},
		{"post-quantum required", true, tls.VersionTLS13, []tls.CurveID{tls.X25519MLKEM768}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Public(tc.requirePQ)
			if c.MinVersion != tc.min || !slices.Equal(c.CurvePreferences, tc.want) {
				t.Fatalf("Public(%v) = min %x, groups %v", tc.requirePQ, c.MinVersion, c.CurvePreferences)
			}
		})
	}
}
