package agent_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/attest/azuremsi"
	"github.com/signet-id/signet/attest/azuremsi/azuremsitest"
	"github.com/signet-id/signet/server/store"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
)

// TestAttestAgentAzureMSI runs azure_msi over the real AttestAgent stream
// and store: the agent half asks a metadata service stand-in on loopback
// for a token that a test "Entra ID" key signed, the server half
// discovers and fetches that key from a loopback stand-in issuer. The
// agent ID is SPIRE's; forged, untrusted, expired, wrong-audience,
// foreign-tenant, malformed and replayed tokens get a precise code and
// store nothing.
func TestAttestAgentAzureMSI(t *testing.T) {
	const tenant = "00000000-1111-2222-3333-444444444444"
	is := azuremsitest.NewIssuer(t, "key-1")
	cfg, err := azuremsi.ConfigFromPluginData(td, azuremsi.ServerPluginData{
		Tenants:    map[string]map[string]string{tenant: {}, "55555555-0000-0000-0000-000000000000": {"resource_id": "api://signet"}},
		OIDCIssuer: is.URL,
	})
	if err != nil {
		t.Fatal(err)
	}
	a, err := azuremsi.NewAttestor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, a)

	vm := azuremsitest.Identity{TenantID: tenant, PrincipalID: "9f3c0a52-7d5e-4b6a-8c1d-2e4f6a8b0c1d",
		ResourceID: "/subscriptions/d5b40d61-272e-48da-beb9-05f295c42bd6/resourcegroups/frontend/providers/Microsoft.Compute/virtualMachines/blog"}
	ev, err := azuremsi.NewEvidence(azuremsi.AgentPluginData{MetadataEndpoint: azuremsitest.NewIMDS(t, is, vm, time.Now)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	good, err := ev.Payload(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.attestStream(t, azuremsi.Type, good, nil)
	if err != nil {
		t.Fatalf("attest: %v", err)
	}
	wantID := "spiffe://example.org/spire/agent/azure_msi/" + tenant + "/" + vm.PrincipalID
	if "spiffe://example.org"+res.GetSvid().GetId().GetPath() != wantID || res.Reattestable {
		t.Fatalf("result %v, want %s, not reattestable", res, wantID)
	}
	rec, err := e.store.GetAgent(testContext(t), spiffeid.RequireFromString(wantID))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"subscription-id:d5b40d61-272e-48da-beb9-05f295c42bd6", "vm-name:frontend:blog"}
	if rec.AttestationType != azuremsi.Type || rec.CanReattest || len(rec.Selectors) != len(want) {
		t.Fatalf("agent record %v", rec)
	}
	for i, s := range rec.Selectors {
		if s.Type != azuremsi.Type || s.Value != want[i] {
			t.Fatalf("selector %d = %v, want azure_msi:%s", i, s, want[i])
		}
	}

	wrap := func(tok string) string {
		b, _ := json.Marshal(azuremsi.AttestationData{Token: tok})
		return string(b)
	}
	fresh, err := ev.Payload(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	other := azuremsitest.Identity{TenantID: tenant, PrincipalID: "other"}
	rogue, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	var goodData azuremsi.AttestationData
	_ = json.Unmarshal(good, &goodData)
	parts := strings.Split(goodData.Token, ".")
	otherClaims := strings.Split(is.Sign(t, azuremsitest.Claims(other, azuremsi.DefaultResourceID, now)), ".")[1]
	tests := []struct {
		name    string
		payload string
		code    codes.Code
		msg     string
	}{
		{"replayed identity (fresh token)", string(fresh), codes.PermissionDenied, "attestation data has already been used to attest an agent"},
		{"replayed token", string(good), codes.PermissionDenied, "attestation data has already been used to attest an agent"},
		{"forged claims", wrap(parts[0] + "." + otherClaims + "." + parts[2]), codes.PermissionDenied, "unable to verify token"},
		{"signed by an untrusted key", wrap(azuremsitest.SignWith(t, rogue, "key-1", azuremsitest.Claims(other, azuremsi.DefaultResourceID, now))), codes.PermissionDenied, "unable to verify token"},
		{"unknown key ID", wrap(azuremsitest.SignWith(t, is.Key, "key-9", azuremsitest.Claims(other, azuremsi.DefaultResourceID, now))), codes.PermissionDenied, `key id "key-9" not found`},
		{"no key ID", wrap(azuremsitest.SignWith(t, is.Key, "", azuremsitest.Claims(other, azuremsi.DefaultResourceID, now))), codes.InvalidArgument, "token missing key id"},
		{"expired", wrap(is.Sign(t, azuremsitest.Claims(other, azuremsi.DefaultResourceID, now.Add(-25*time.Hour)))), codes.PermissionDenied, "token is expired"},
		{"wrong audience", wrap(is.Sign(t, azuremsitest.Claims(other, "https://vault.azure.net", now))), codes.PermissionDenied, "invalid audience claim"},
		{"another tenant's audience", wrap(is.Sign(t, azuremsitest.Claims(other, "api://signet", now))), codes.PermissionDenied, "invalid audience claim"},
		{"tenant not allowed", wrap(is.Sign(t, azuremsitest.Claims(azuremsitest.Identity{TenantID: "evil", PrincipalID: "p"}, azuremsi.DefaultResourceID, now))), codes.PermissionDenied, `tenant "evil" is not authorized`},
		{"no tenant claim", wrap(is.Sign(t, azuremsitest.Claims(azuremsitest.Identity{PrincipalID: "p"}, azuremsi.DefaultResourceID, now))), codes.PermissionDenied, "token missing tenant ID claim"},
		{"not a JWT", wrap("not-a-jwt"), codes.InvalidArgument, "unable to parse token"},
		{"no token", `{}`, codes.InvalidArgument, "missing token from attestation data"},
		{"malformed payload", `{`, codes.InvalidArgument, "failed to unmarshal data payload"},
		{"empty payload", "", codes.InvalidArgument, "missing attestation payload"},
		{"payload too large", strings.Repeat("a", azuremsi.MaxPayload+1), codes.InvalidArgument, "longer than the limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := e.attestStream(t, azuremsi.Type, []byte(tt.payload), nil)
			if res.GetSvid() != nil {
				t.Fatalf("an SVID was issued (%v)", err)
			}
			wantStatus(t, err, tt.code, tt.msg)
			if n, err := e.store.CountAgents(testContext(t), store.AgentFilter{}); err != nil || n != 1 {
				t.Fatalf("%d agents stored (%v), want only the first", n, err)
			}
		})
	}
}
