package oidcdiscovery_test

import (
	"crypto"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/issuer"
	"github.com/signet-id/signet/server/oidcdiscovery"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

var (
	td    = spiffeid.RequireTrustDomainFromString("example.org")
	webID = spiffeid.RequireFromString("spiffe://example.org/ns/prod/web")
)

type provider struct {
	issuer *issuer.Issuer
	url    string
}

// serve runs a CA, an issuer whose JWT-SVIDs carry the provider's URL as
// iss, and the provider on a loopback httptest server (plain HTTP); adjust
// changes the provider's configuration.
func serve(t *testing.T, adjust func(*oidcdiscovery.Config)) *provider {
	t.Helper()
	m, err := ca.New(ca.Config{TrustDomain: td})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(nil)
	url := "http://" + ts.Listener.Addr().String()
	iss, err := issuer.New(issuer.Config{TrustDomain: td, Authority: m, JWTIssuer: url})
	if err != nil {
		t.Fatal(err)
	}
	cfg := oidcdiscovery.Config{Issuer: url, Keys: func() map[string]crypto.PublicKey { return m.Bundle().JWTAuthorities() }}
	if adjust != nil {
		adjust(&cfg)
	}
	h, err := oidcdiscovery.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts.Config.Handler = h
	ts.Start()
	t.Cleanup(ts.Close)
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

// get fetches url and returns the status and the decoded JSON body.
func get(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK && resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET %s: Content-Type %q", url, resp.Header.Get("Content-Type"))
	}
	if v != nil && resp.Header.Get("Content-Type") == "application/json" {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode
}
