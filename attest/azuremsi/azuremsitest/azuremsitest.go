// Package azuremsitest stands in for Azure in azure_msi tests: an Entra
// ID-like issuer on 127.0.0.1 (OIDC discovery and key set) and an
// instance metadata service that mints managed identity tokens with its
// key.
package azuremsitest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/signet-id/signet/attest/azuremsi"
)

// Issuer is a token signing key and the server that publishes it.
type Issuer struct {
	Key   *rsa.PrivateKey
	KeyID string
	// URL is the issuer (its discovery document is under
	// /.well-known/openid-configuration).
	URL string

	mu        sync.Mutex
	published jose.JSONWebKeySet
}

// Rotate replaces the signing key (and the published set) with a fresh
// one named kid.
func (is *Issuer) Rotate(t testing.TB, kid string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	is.Key, is.KeyID = key, kid
	is.published = jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: kid, Algorithm: "RS256", Use: "sig"}}}
}

// NewIssuer makes a signing key named kid and publishes it until the test
// ends.
func NewIssuer(t testing.TB, kid string) *Issuer {
	t.Helper()
	is := &Issuer{}
	is.Rotate(t, kid)
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	is.URL = srv.URL + "/common/"
	mux.HandleFunc("/common/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": is.URL, "jwks_uri": srv.URL + "/common/discovery/keys"})
	})
	mux.HandleFunc("/common/discovery/keys", func(w http.ResponseWriter, _ *http.Request) {
		is.mu.Lock()
		defer is.mu.Unlock()
		_ = json.NewEncoder(w).Encode(is.published)
	})
	return is
}

// Identity is a managed identity: its tenant, principal (sub) and the
// resource it belongs to (xms_mirid).
type Identity struct {
	TenantID, PrincipalID, ResourceID string
}

// Claims returns the claims of id's token for resource, issued at iat,
// valid for a day as Azure's.
func Claims(id Identity, resource string, iat time.Time) azuremsi.TokenClaims {
	return azuremsi.TokenClaims{
		Claims: jwt.Claims{Issuer: "https://sts.windows.net/" + id.TenantID + "/", Subject: id.PrincipalID,
			Audience: jwt.Audience{resource}, IssuedAt: jwt.NewNumericDate(iat), NotBefore: jwt.NewNumericDate(iat),
			Expiry: jwt.NewNumericDate(iat.Add(24 * time.Hour))},
		TenantID: id.TenantID, PrincipalID: id.PrincipalID, ResourceID: id.ResourceID,
	}
}

// Sign returns claims as an RS256 JWT with the issuer's key ID.
func (is *Issuer) Sign(t testing.TB, claims any) string {
	t.Helper()
	is.mu.Lock()
	key, kid := is.Key, is.KeyID
	is.mu.Unlock()
	return SignWith(t, key, kid, claims)
}

// SignWith signs claims with any key under kid (none when empty).
func SignWith(t testing.TB, key *rsa.PrivateKey, kid string, claims any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(sig).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// NewIMDS serves the managed identity token endpoint for id on 127.0.0.1
// and returns its URL. It answers only requests with Metadata: true and an
// api-version, minting a token for the resource asked, issued at now().
func NewIMDS(t testing.TB, is *Issuer, id Identity, now func() time.Time) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Metadata") != "true" {
			http.Error(w, `{"error":"bad_request","error_description":"Required metadata header not specified"}`, http.StatusBadRequest)
			return
		}
		res := r.URL.Query().Get("resource")
		if r.URL.Path != "/metadata/identity/oauth2/token" || r.URL.Query().Get("api-version") == "" || res == "" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"access_token": is.Sign(t, Claims(id, res, now())), "token_type": "Bearer", "resource": res})
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}
