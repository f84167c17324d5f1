package config_test

import (
	"strings"
	"testing"

	"github.com/signet-id/signet/config"
)

func TestServerLimitsBlock(t *testing.T) {
	f, err := config.LoadServer(write(t, `
server {
  trust_domain = "example.org"
}
limits {
  handshake_timeout = "5s"
  max_conns_per_ip  = 64
  attest_rate       = 2
  attest_burst      = 20
  sign_rate         = -1
}
`))
	if err != nil {
		t.Fatal(err)
	}
	l := f.Limits
	if l == nil || l.HandshakeTimeout != "5s" || l.MaxConnsPerIP != 64 || l.AttestRate != 2 || l.AttestBurst != 20 || l.SignRate != -1 {
		t.Fatalf("decoded %+v", l)
	}
	for _, tc := range []struct{ src, want string }{
		{`idle_timeout = "soon"`, "limits.idle_timeout"},
		{`sign_burst = -3`, "limits.sign_burst"},
		{`max_streams = 3`, "max_streams"},
	} {
		_, err := config.LoadServer(write(t, "server {\n  trust_domain = \"example.org\"\n}\nlimits {\n  "+tc.src+"\n}\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %s", tc.src, err, tc.want)
		}
	}
}
