package azuremsi_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/attest"
	"github.com/signet-id/signet/attest/azuremsi"
	"github.com/signet-id/signet/attest/azuremsi/azuremsitest"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

func TestConfig(t *testing.T) {
	tests := []struct {
		name string
		d    azuremsi.ServerPluginData
		msg  string
	}{
		{"no tenants", azuremsi.ServerPluginData{}, "at least one tenant"},
		{"app credentials", azuremsi.ServerPluginData{Tenants: map[string]map[string]string{"t": {"app_secret": "s"}}}, "app_secret is not supported"},
		{"subscription", azuremsi.ServerPluginData{Tenants: map[string]map[string]string{"t": {"subscription_id": "s"}}}, "subscription_id is not supported"},
		{"unknown setting", azuremsi.ServerPluginData{Tenants: map[string]map[string]string{"t": {"resourceid": "s"}}}, `unknown setting "resourceid"`},
		{"bad template", azuremsi.ServerPluginData{Tenants: map[string]map[string]string{"t": {}}, AgentPathTemplate: "{{"}, "agent_path_template"},
		{"bad issuer", azuremsi.ServerPluginData{Tenants: map[string]map[string]string{"t": {}}, OIDCIssuer: "login.example"}, "not an http(s) URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := azuremsi.ConfigFromPluginData(td, tt.d)
			if err == nil {
				_, err = azuremsi.NewAttestor(cfg)
			}
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err %v, want %q", err, tt.msg)
			}
		})
	}
	if _, err := azuremsi.NewEvidence(azuremsi.AgentPluginData{MetadataEndpoint: "169.254.169.254"}, nil); err == nil {
		t.Fatal("an endpoint without a scheme was accepted")
	}
}

// TestSelectorsFromResourceID: a virtual machine's identity gives
// subscription-id and vm-name; a user-assigned identity only its
// subscription; none without xms_mirid.
func TestSelectorsFromResourceID(t *testing.T) {
	for _, tt := range []struct{ rid, want string }{
		{"/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1", "subscription-id:s1,vm-name:rg:vm1"},
		{"/subscriptions/s1/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1", "subscription-id:s1"},
		{"", ""},
		{"/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1/extra", "subscription-id:s1"},
	} {
		var got []string
		for _, s := range azuremsi.Selectors(&azuremsi.TokenClaims{ResourceID: tt.rid}) {
			got = append(got, s.Value)
		}
		if strings.Join(got, ",") != tt.want {
			t.Errorf("%q: %v, want %s", tt.rid, got, tt.want)
		}
	}
}

// TestKeysRefreshHourlyAndClock: the key set is fetched again after an
// hour (a rotated key is then found); the injected clock decides expiry
// with SPIRE's five-minute leeway.
func TestKeysRefreshHourlyAndClock(t *testing.T) {
	is := azuremsitest.NewIssuer(t, "k1")
	now := time.Now()
	clk := func() time.Time { return now }
	a, err := azuremsi.NewAttestor(azuremsi.Config{TrustDomain: td, Tenants: map[string]string{"t": ""}, OIDCIssuer: is.URL, Now: clk,
		AgentPathTemplate: "/{{ .PluginName }}/{{ .PrincipalID }}"})
	if err != nil {
		t.Fatal(err)
	}
	id := azuremsitest.Identity{TenantID: "t", PrincipalID: "p1"}
	tok := func(iat time.Time) []byte {
		return []byte(`{"token":"` + is.Sign(t, azuremsitest.Claims(id, azuremsi.DefaultResourceID, iat)) + `"}`)
	}
	res, err := a.Attest(context.Background(), attest.NodeRequest{Payload: tok(now)})
	if err != nil || res.AgentID.String() != "spiffe://example.org/spire/agent/azure_msi/p1" {
		t.Fatalf("%v %v", res.AgentID, err)
	}
	// Issued four minutes in the future: within the leeway.
	if _, err := a.Attest(context.Background(), attest.NodeRequest{Payload: tok(now.Add(4 * time.Minute))}); err != nil {
		t.Fatalf("within the leeway: %v", err)
	}
	// The key rotates: the cached set does not have it for an hour.
	is.Rotate(t, "k2")
	now = now.Add(30 * time.Minute)
	if _, err := a.Attest(context.Background(), attest.NodeRequest{Payload: tok(now)}); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), `key id "k2" not found`) {
		t.Fatalf("rotated key within the hour: %v, want k2 not found", err)
	}
	now = now.Add(31 * time.Minute)
	id.PrincipalID = "p2"
	if _, err := a.Attest(context.Background(), attest.NodeRequest{Payload: tok(now)}); err != nil {
		t.Fatalf("rotated key after the hour: %v", err)
	}
	old := now
	now = now.Add(24*time.Hour + 6*time.Minute)
	if _, err := a.Attest(context.Background(), attest.NodeRequest{Payload: tok(old)}); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("a day and more later: %v, want PermissionDenied expired", err)
	}
}
