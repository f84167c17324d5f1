package azuremsi_test

import (
	"context"
	"testing"
	"time"

	"github.com/signet-id/signet/attest"
	"github.com/signet-id/signet/attest/azuremsi"
	"github.com/signet-id/signet/attest/azuremsi/azuremsitest"
	"google.golang.org/grpc/status"
)

// FuzzAttestPayload: any payload is refused with a gRPC status or
// attested, never a panic.
func FuzzAttestPayload(f *testing.F) {
	is := azuremsitest.NewIssuer(f, "k")
	a, err := azuremsi.NewAttestor(azuremsi.Config{TrustDomain: td, Tenants: map[string]string{"t": ""}, OIDCIssuer: is.URL})
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(`{"token":"` + is.Sign(f, azuremsitest.Claims(azuremsitest.Identity{TenantID: "t", PrincipalID: "p"}, azuremsi.DefaultResourceID, time.Now())) + `"}`))
	f.Add([]byte(`{"token":"eyJhbGciOiJSUzI1NiIsImtpZCI6ImsifQ.e30.AAAA"}`))
	f.Add([]byte(`{"token":""}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		_, err := a.Attest(context.Background(), attest.NodeRequest{Payload: payload})
		if _, ok := status.FromError(err); err != nil && !ok {
			t.Fatalf("not a status: %v", err)
		}
	})
}

// FuzzParseKeys: the discovery document and the key set arrive from the
// network.
func FuzzParseKeys(f *testing.F) {
	f.Add([]byte(`{"jwks_uri":"https://login.example/keys"}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","kid":"k","n":"AQAB","e":"AQAB"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = azuremsi.ParseDiscovery(b)
		if set, err := azuremsi.ParseKeySet(b); err == nil && set == nil {
			t.Fatal("nil set without an error")
		}
	})
}
