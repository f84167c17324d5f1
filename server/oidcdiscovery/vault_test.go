package oidcdiscovery_test

import (
	"context"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/signet-id/signet/secrets"
	"github.com/signet-id/signet/secrets/vaulttest"
	"github.com/signet-id/signet/server/oidcdiscovery"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TestVaultJWTAuthWithJWTSVID configures a real Vault's jwt auth method
// with the provider, by discovery (bound_issuer: the JWT-SVIDs' iss) and by
// jwks_url, and logs in with Signet JWT-SVIDs; other subjects, audiences
// and issuers are refused.
func TestVaultJWTAuthWithJWTSVID(t *testing.T) {
	p := serve(t, nil)
	other := serve(t, nil) // another trust domain's keys and issuer
	vs := vaulttest.Start(t)
	vc := vs.Client(t)
	if err := vc.Sys().EnableAuthWithOptions("jwt", &vault.EnableAuthOptions{Type: "jwt"}); err != nil {
		t.Fatal(err)
	}
	if err := vc.Sys().PutPolicy("web", `path "secret/data/web/*" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	vs.PutKV(t, "secret", "web/config", map[string]any{"v": "read-with-a-jwt-svid"})
	vs.PutKV(t, "secret", "other/config", map[string]any{"v": "not-for-web"})

	login := func(from *provider, id spiffeid.ID, aud string) (*secrets.Client, error) {
		c, err := secrets.NewClient(secrets.ClientConfig{Address: vs.Addr, Auth: secrets.JWTAuth{Role: "web",
			Token: func(context.Context) (string, error) { return from.token(t, id, aud), nil }}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		return c, c.Login(ctx)
	}
	for _, mode := range []struct {
		name   string
		config map[string]any
	}{
		// Vault reads the discovery document and checks iss against it.
		{"oidc_discovery_url", map[string]any{"oidc_discovery_url": p.url, "bound_issuer": p.url}},
		// Vault reads the JWKS alone.
		{"jwks_url", map[string]any{"jwks_url": p.url + oidcdiscovery.KeysPath}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			vs.Write(t, "auth/jwt/config", mode.config)
			vs.Write(t, "auth/jwt/role/web", map[string]any{
				"role_type": "jwt", "user_claim": "sub", "bound_audiences": "vault",
				"bound_subject": webID.String(), "token_policies": "web", "token_ttl": "10m",
			})
			c, err := login(p, webID, "vault")
			if err != nil {
				t.Fatalf("login with a JWT-SVID: %v", err)
			}
			api, err := c.API(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			sec, err := api.KVv2("secret").Get(context.Background(), "web/config")
			if err != nil || sec.Data["v"] != "read-with-a-jwt-svid" {
				t.Fatalf("read with the JWT-SVID's token: %v", err)
			}
			if _, err := api.KVv2("secret").Get(context.Background(), "other/config"); err == nil {
				t.Fatal("the token reads beyond its policy")
			}
			for _, tc := range []struct {
				name string
				from *provider
				id   spiffeid.ID
				aud  string
			}{
				{"other subject", p, spiffeid.RequireFromString("spiffe://example.org/ns/prod/api"), "vault"},
				{"other audience", p, webID, "not-vault"},
				{"other provider's keys and issuer", other, webID, "vault"},
			} {
				if _, err := login(tc.from, tc.id, tc.aud); err == nil {
					t.Errorf("%s: login succeeded", tc.name)
				}
			}
		})
	}
}
