package oidcdiscovery_test

import (
	"context"
	"crypto"
	"encoding/json"
	"net"
	"net/http"
	"testing"
	"time"

	vault "github.com/hashicorp/vault/api"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/issuer"
	"github.com/signet-id/signet/secrets"
	"github.com/signet-id/signet/server/oidcdiscovery"
	"github.com/signet-id/signet/secrets/vaulttest"
)

var (
	td    = spiffeid.RequireTrustDomainFromString("example.org")
	webID = spiffeid.RequireFromString("spiffe://example.org/ns/prod/web")
)

type provider struct {
	issuer *issuer.Issuer
	url    string
}

// serve runs a CA, an issuer and the OIDC handler on a loopback listener.
func serve(t *testing.T) *provider {
	t.Helper()
	m, err := ca.New(ca.Config{TrustDomain: td})
	if err != nil {
		t.Fatal(err)
	}
	iss, err := issuer.New(issuer.Config{TrustDomain: td, Authority: m})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + lis.Addr().String()
	h, err := oidcdiscovery.New(oidcdiscovery.Config{Issuer: url, Keys: func() map[string]crypto.PublicKey { return m.Bundle().JWTAuthorities() }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- oidcdiscovery.Serve(ctx, lis, nil, h, 5*time.Second) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return &provider{issuer: iss, url: url}
}

func (p *provider) token(t *testing.T, id spiffeid.ID, aud string) string {
	t.Helper()
	tok, _, err := p.issuer.JWTSVID(issuer.JWTParams{ID: id, Audience: []string{aud}})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestDiscoveryAndKeys(t *testing.T) {
	p := serve(t)
	var doc map[string]any
	getJSON(t, p.url+oidcdiscovery.DiscoveryPath, &doc)
	if doc["issuer"] != p.url || doc["jwks_uri"] != p.url+oidcdiscovery.KeysPath {
		t.Fatalf("discovery = %v", doc)
	}
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	getJSON(t, p.url+oidcdiscovery.KeysPath, &set)
	if len(set.Keys) != 1 || set.Keys[0]["kty"] != "EC" || set.Keys[0]["kid"] == "" || set.Keys[0]["use"] != "sig" {
		t.Fatalf("keys = %v", set.Keys)
	}
	resp, err := http.Post(p.url+oidcdiscovery.KeysPath, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST status = %d", resp.StatusCode)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// TestVaultJWTAuthWithJWTSVID configures a real Vault's jwt auth method with
// Signet's OIDC endpoints and logs in with Signet JWT-SVIDs.
func TestVaultJWTAuthWithJWTSVID(t *testing.T) {
	p := serve(t)
	vs := vaulttest.Start(t)
	vc := vs.Client(t)
	if err := vc.Sys().EnableAuthWithOptions("jwt", &vault.EnableAuthOptions{Type: "jwt"}); err != nil {
		t.Fatal(err)
	}
	// Vault fetches and accepts the discovery document...
	vs.Write(t, "auth/jwt/config", map[string]any{"oidc_discovery_url": p.url})
	// ...and verifies JWT-SVIDs (which carry no iss claim) with the JWKS.
	vs.Write(t, "auth/jwt/config", map[string]any{"jwks_url": p.url + oidcdiscovery.KeysPath})
	if err := vc.Sys().PutPolicy("web", `path "secret/data/web/*" { capabilities = ["read"] }`); err != nil {
		t.Fatal(err)
	}
	vs.Write(t, "auth/jwt/role/web", map[string]any{
		"role_type": "jwt", "user_claim": "sub", "bound_audiences": "vault",
		"bound_subject": webID.String(), "token_policies": "web", "token_ttl": "10m",
	})
	vs.PutKV(t, "secret", "web/config", map[string]any{"v": "read-with-a-jwt-svid"})
	vs.PutKV(t, "secret", "other/config", map[string]any{"v": "not-for-web"})

	login := func(id spiffeid.ID, aud string) (*secrets.Client, error) {
		c, err := secrets.NewClient(secrets.ClientConfig{Address: vs.Addr, Auth: secrets.JWTAuth{Role: "web",
			Token: func(context.Context) (string, error) { return p.token(t, id, aud), nil }}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		return c, c.Login(ctx)
	}

	c, err := login(webID, "vault")
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

	for name, tc := range map[string]struct {
		id  spiffeid.ID
		aud string
	}{
		"other subject":  {spiffeid.RequireFromString("spiffe://example.org/ns/prod/api"), "vault"},
		"other audience": {webID, "not-vault"},
	} {
		if _, err := login(tc.id, tc.aud); err == nil {
			t.Fatalf("%s: login succeeded", name)
		}
	}
}
