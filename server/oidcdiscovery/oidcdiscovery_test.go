package oidcdiscovery_test

import (
	"crypto"
	"crypto/rand"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/signet-id/signet/pq/mldsa"
	"github.com/signet-id/signet/server/oidcdiscovery"
)

type keySet struct {
	Keys []map[string]any `json:"keys"`
}

func TestDiscoveryAndKeys(t *testing.T) {
	for _, tc := range []struct {
		name      string
		adjust    func(*oidcdiscovery.Config)
		jwksURI   func(base string) string
		prefix    string
		wantUse   any
		wantAlg   string
		wantCount int
	}{
		{"defaults", nil, func(b string) string { return b + "/keys" }, "", nil, "ES256", 1},
		{"set_key_use", func(c *oidcdiscovery.Config) { c.SetKeyUse = true }, func(b string) string { return b + "/keys" }, "", "sig", "ES256", 1},
		{"jwks_uri elsewhere", func(c *oidcdiscovery.Config) { c.JWKSURI = "https://cdn.example.org/signet/jwks.json" },
			func(string) string { return "https://cdn.example.org/signet/jwks.json" }, "", nil, "ES256", 1},
		{"issuer with a path", func(c *oidcdiscovery.Config) { c.Issuer += "/tenant-a/" },
			func(b string) string { return b + "/tenant-a/keys" }, "/tenant-a", nil, "ES256", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := serve(t, tc.adjust)
			var doc map[string]any
			if code := get(t, p.url+tc.prefix+oidcdiscovery.DiscoveryPath, &doc); code != http.StatusOK {
				t.Fatalf("discovery: %d", code)
			}
			if doc["issuer"] != p.url+tc.prefix || doc["jwks_uri"] != tc.jwksURI(p.url) {
				t.Fatalf("discovery = %v", doc)
			}
			var set keySet
			if code := get(t, p.url+tc.prefix+oidcdiscovery.KeysPath, &set); code != http.StatusOK {
				t.Fatalf("keys: %d", code)
			}
			if len(set.Keys) != tc.wantCount {
				t.Fatalf("keys = %v", set.Keys)
			}
			k := set.Keys[0]
			if k["kty"] != "EC" || k["kid"] == "" || k["use"] != tc.wantUse || k["alg"] != tc.wantAlg {
				t.Fatalf("key = %v, want use %v alg %s", k, tc.wantUse, tc.wantAlg)
			}
			if tc.prefix != "" {
				if code := get(t, p.url+oidcdiscovery.DiscoveryPath, nil); code != http.StatusNotFound {
					t.Fatalf("discovery outside the issuer's path: %d, want 404", code)
				}
			}
		})
	}
}

func TestMethodsAndDomains(t *testing.T) {
	p := serve(t, func(c *oidcdiscovery.Config) { c.Domains = []string{"oidc.example.org", "127.0.0.1"} })
	resp, err := http.Post(p.url+oidcdiscovery.KeysPath, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Fatalf("POST: %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	u, _ := url.Parse(p.url)
	for _, tc := range []struct {
		host string
		want int
	}{
		{u.Host, http.StatusOK},
		{"OIDC.example.org", http.StatusOK},
		{"oidc.example.org:443", http.StatusOK},
		{"evil.example.org", http.StatusBadRequest},
		{"oidc.example.org.evil.example", http.StatusBadRequest},
	} {
		for _, path := range []string{oidcdiscovery.DiscoveryPath, oidcdiscovery.KeysPath} {
			req, _ := http.NewRequest(http.MethodGet, p.url+path, nil)
			req.Host = tc.host
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("Host %q %s: %d, want %d", tc.host, path, resp.StatusCode, tc.want)
			}
		}
	}
}

// TestReadyReflectsKeys: /ready answers 500 while no key can be published
// (none, or only ML-DSA keys JOSE cannot represent) and 200 once one can;
// /live answers 200 throughout. ML-DSA keys never reach the JWKS.
func TestReadyReflectsKeys(t *testing.T) {
	sk, err := mldsa.GenerateKey(rand.Reader, mldsa.MLDSA44)
	if err != nil {
		t.Fatal(err)
	}
	pqOnly := map[string]crypto.PublicKey{"pq": sk.Public()}
	var keys map[string]crypto.PublicKey
	var real func() map[string]crypto.PublicKey
	p := serve(t, func(c *oidcdiscovery.Config) {
		real = c.Keys
		c.Keys = func() map[string]crypto.PublicKey { return keys }
		c.LivePath, c.ReadyPath = "/live", "/ready"
	})
	for _, tc := range []struct {
		name  string
		keys  map[string]crypto.PublicKey
		ready int
		n     int
	}{
		{"no keys", nil, http.StatusInternalServerError, 0},
		{"ML-DSA only", pqOnly, http.StatusInternalServerError, 0},
		{"an ECDSA key besides ML-DSA", merge(real(), pqOnly), http.StatusOK, 1},
	} {
		keys = tc.keys
		var body map[string]bool
		if code := get(t, p.url+"/ready", &body); code != tc.ready || body["ready"] != (tc.ready == http.StatusOK) {
			t.Errorf("%s: /ready %d %v, want %d", tc.name, code, body, tc.ready)
		}
		if code := get(t, p.url+"/live", &body); code != http.StatusOK || !body["live"] {
			t.Errorf("%s: /live %d %v", tc.name, code, body)
		}
		var set keySet
		get(t, p.url+oidcdiscovery.KeysPath, &set)
		if len(set.Keys) != tc.n {
			t.Errorf("%s: %d keys published, want %d", tc.name, len(set.Keys), tc.n)
		}
	}
}

func merge(ms ...map[string]crypto.PublicKey) map[string]crypto.PublicKey {
	out := map[string]crypto.PublicKey{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

func TestNewRefuses(t *testing.T) {
	keys := func() map[string]crypto.PublicKey { return nil }
	for _, tc := range []struct {
		name string
		cfg  oidcdiscovery.Config
		want string
	}{
		{"no keys", oidcdiscovery.Config{Issuer: "https://a.example"}, "key source is required"},
		{"no issuer", oidcdiscovery.Config{Keys: keys}, `issuer "" must be an http(s) URL`},
		{"bare host", oidcdiscovery.Config{Issuer: "oidc.example.org", Keys: keys}, "must be an http(s) URL"},
		{"query", oidcdiscovery.Config{Issuer: "https://a.example?x=1", Keys: keys}, "no user info, query or fragment"},
		{"user info", oidcdiscovery.Config{Issuer: "https://u:p@a.example", Keys: keys}, "no user info"},
		{"jwks_uri", oidcdiscovery.Config{Issuer: "https://a.example", JWKSURI: "/keys", Keys: keys}, `jwks_uri "/keys"`},
		{"health on /keys", oidcdiscovery.Config{Issuer: "https://a.example", Keys: keys, LivePath: "/keys", ReadyPath: "/ready"}, `path "/keys" is not a distinct`},
		{"pattern", oidcdiscovery.Config{Issuer: "https://a.example/{x}", Keys: keys}, "is not a distinct absolute path"},
	} {
		if _, err := oidcdiscovery.New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
