package pqbundle_test

import (
	"testing"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/pq/pqbundle"
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
			data, err := pqbundle.Marshal(m.Bundle(), m.MLDSAJWTKeys())
			if err != nil {
				t.Fatal(err)
			}
			// Unmodified go-spiffe still parses classic and hybrid bundles; a
			// pure pq bundle has nothing go-spiffe can use.
			if _, err := spiffebundle.Parse(td, data); (err == nil) != (p != ca.ProfilePQ) {
				t.Fatalf("go-spiffe parse: %v", err)
			}
			got, err := pqbundle.Parse(td, data)
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

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"keys":[],"signet_mldsa_keys":[]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = pqbundle.Parse(spiffeid.RequireTrustDomainFromString("example.org"), data)
	})
}
