package server_test

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/signet-id/signet/server"
)

// TestClassicalKeyExchangeOptOut: classical-only key exchange is refused
// by default and accepted with TLSPolicy.AllowClassical (the server's
// --allow-classical-key-exchange); post-quantum is accepted either way.
func TestClassicalKeyExchangeOptOut(t *testing.T) {
	for _, tt := range []struct {
		name      string
		allow     bool
		classical bool // whether a classical-only client connects
	}{
		{"default", false, false},
		{"opted out", true, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := startServerWith(t, func(c *server.Config) { c.TLS = server.TLSPolicy{AllowClassical: tt.allow} })
			dial := func(curves []tls.CurveID) (tls.ConnectionState, error) {
				d := &tls.Dialer{Config: &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: s.roots, ServerName: "localhost", CurvePreferences: curves, NextProtos: []string{"h2"}}}
				c, err := d.DialContext(testContext(t), "tcp", s.AgentAddr().String())
				if err != nil {
					return tls.ConnectionState{}, err
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				return c.(*tls.Conn).ConnectionState(), nil
			}
			st, err := dial([]tls.CurveID{tls.X25519MLKEM768})
			if err != nil || st.CurveID != tls.X25519MLKEM768 {
				t.Fatalf("post-quantum client: %v, negotiated %v", err, st.CurveID)
			}
			for _, curves := range [][]tls.CurveID{{tls.X25519}, {tls.CurveP256}} {
				st, err := dial(curves)
				if tt.classical && (err != nil || st.CurveID != curves[0]) {
					t.Fatalf("classical client %v refused with the opt-out: %v (negotiated %v)", curves, err, st.CurveID)
				}
				if !tt.classical && err == nil {
					t.Fatalf("classical client %v accepted without the opt-out (negotiated %v)", curves, st.CurveID)
				}
			}
		})
	}
}
