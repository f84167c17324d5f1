package bundle_test

import (
	"testing"

	"github.com/signet-id/signet/bundle"
	"github.com/signet-id/signet/ca"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestRoundTripAndGoSpiffeCompat(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	for _, p := range []ca.Profile{ca.ProfileClassic, ca.ProfileHybrid, ca.ProfilePQ} {
		t.Run(string(p), func(t *testing.T) {
			m, err := ca.New(ca.Config{TrustDomain: td, Profile: p})
			if err != nil {
				t.Fatal(err)
			}
			data, err := bundle.Marshal(m.Bundle(), m.MLDSAJWTKeys())
			if err != nil {
				t.Fatal(err)
			}
			// Unmodified go-spiffe still parses classic and hybrid bundles; a
			// pure pq bundle has nothing go-spiffe can use.
			if _, err := spiffebundle.Parse(td, data); (err == nil) != (p != ca.ProfilePQ) {
				t.Fatalf("go-spiffe parse: %v", err)
			}
			got, err := bundle.Parse(td, data)
			if err != nil {
				t.Fatal(err)
			}
			want := m.MLDSAJWTKeys()
			if len(got.MLDSAKeys) != len(want) {
				t.Fatalf("%d ML-DSA keys, want %d", len(got.MLDSAKeys), len(want))
			}
			for kid, k := range want {
				if !got.MLDSAKeys[kid].Equal(k) {
					t.Fatalf("key %s differs", kid)
				}
			}
			if got, want := len(got.X509Authorities()), len(m.Bundle().X509Authorities()); got != want {
				t.Fatalf("%d X.509 authorities after round trip, want %d", got, want)
			}
			if (p == ca.ProfileClassic) != (len(want) == 0) {
				t.Fatalf("profile %s has %d ML-DSA keys", p, len(want))
			}
		})
	}
}

// FuzzParse fuzzes bundle JSON as `signet verify --bundle` reads it, with
// small seeds of each shape (classic keys, ML-DSA JWT keys, pure x509-svid
// authorities). An accepted bundle must marshal and parse again.
func FuzzParse(f *testing.F) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	m, err := ca.New(ca.Config{TrustDomain: td, Profile: ca.ProfileClassic})
	if err != nil {
		f.Fatal(err)
	}
	classic, err := bundle.Marshal(m.Bundle(), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(classic)
	f.Add([]byte(`{"keys":[],"signet_mldsa_keys":[]}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","use":"jwt-svid","kid":"k","x":"AAAA","y":"AAAA"}],"spiffe_sequence":1}`))
	f.Add([]byte(`{"signet_mldsa_keys":[{"kty":"AKP","alg":"ML-DSA-44","use":"x509-svid","x5c":["MAA="]}]}`))
	f.Add([]byte(`{"keys":[],"signet_mldsa_keys":[{"kty":"AKP","alg":"ML-DSA-44","kid":"a","use":"jwt-svid","pub":"AAAA"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := bundle.Parse(td, data)
		if err != nil {
			return
		}
		again, err := bundle.Marshal(b.Bundle, b.MLDSAKeys)
		if err != nil {
			return // e.g. a bundle go-spiffe cannot marshal
		}
		if _, err := bundle.Parse(td, again); err != nil {
			t.Fatalf("re-marshalled bundle does not parse: %v\n%s", err, again)
		}
	})
}

// TestParseEmpty: a document without any key is refused, as go-spiffe
// refuses one (found by FuzzParse: it parsed, but did not round-trip).
func TestParseEmpty(t *testing.T) {
	for _, in := range []string{`{"keys":[],"signet_mldsa_keys":[]}`, `{"signet_mldsa_keys":null}`} {
		if _, err := bundle.Parse(spiffeid.RequireTrustDomainFromString("example.org"), []byte(in)); err == nil {
			t.Errorf("%s accepted", in)
		}
	}
}
