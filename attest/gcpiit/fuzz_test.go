package gcpiit_test

import (
	"context"
	"testing"
	"time"

	"github.com/signet-id/signet/attest"
	"github.com/signet-id/signet/attest/gcpiit"
	"github.com/signet-id/signet/attest/gcpiit/gcpiittest"
	"google.golang.org/grpc/status"
)

// FuzzAttestPayload: any token is refused with a gRPC status or attested,
// never a panic.
func FuzzAttestPayload(f *testing.F) {
	g := gcpiittest.NewGoogle(f, "k")
	a, err := gcpiit.NewAttestor(gcpiit.Config{TrustDomain: td, ProjectIDs: []string{"p"}, CertsURL: g.CertsURL})
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(g.Sign(f, gcpiittest.Claims(gcpiittest.Instance("p", "z", "n", "1"), gcpiit.Audience, time.Now()))))
	f.Add([]byte("eyJhbGciOiJSUzI1NiJ9.e30.AAAA"))
	f.Add([]byte("..."))
	f.Fuzz(func(t *testing.T, payload []byte) {
		_, err := a.Attest(context.Background(), attest.NodeRequest{Payload: payload})
		if _, ok := status.FromError(err); err != nil && !ok {
			t.Fatalf("not a status: %v", err)
		}
	})
}

// FuzzParseCerts: Google's certificate document arrives from the network.
func FuzzParseCerts(f *testing.F) {
	f.Add([]byte(`{"k":"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		set, err := gcpiit.ParseCerts(b)
		if err == nil && set == nil {
			t.Fatal("nil set without an error")
		}
	})
}
