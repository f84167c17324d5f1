package issuer_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/conformance/svidspec"
	"github.com/signet-id/signet/issuer"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

func newIssuer(t *testing.T, now func() time.Time) (*issuer.Issuer, *ca.Manager) {
	t.Helper()
	m, err := ca.New(ca.Config{TrustDomain: td, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	iss, err := issuer.New(issuer.Config{TrustDomain: td, Authority: m, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return iss, m
}

func TestX509SVIDConformsToSpec(t *testing.T) {
	iss, m := newIssuer(t, time.Now)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	id := spiffeid.RequireFromString("spiffe://example.org/web")
	chain, err := iss.X509SVID(issuer.X509Params{ID: id, PublicKey: key.Public(), DNSNames: []string{"web.local"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := svidspec.CheckX509SVID(chain); err != nil {
		t.Fatal(err)
	}
	caCert, _ := m.X509Authority()
	if err := svidspec.CheckCA(caCert); err != nil {
		t.Fatal(err)
	}
	gotID, _, err := x509svid.Verify(chain, m.Bundle())
	if err != nil {
		t.Fatalf("go-spiffe verify: %v", err)
	}
	if gotID != id {
		t.Fatalf("id = %v, want %v", gotID, id)
	}
	if got := chain[0].NotAfter.Sub(chain[0].NotBefore); got < time.Hour || got > time.Hour+time.Minute {
		t.Fatalf("default lifetime %v, want ~1h", got)
	}
}

func TestX509SVIDCappedByCA(t *testing.T) {
	iss, m := newIssuer(t, time.Now)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	chain, err := iss.X509SVID(issuer.X509Params{ID: spiffeid.RequireFromString("spiffe://example.org/w"), PublicKey: key.Public(), TTL: 1000 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := m.X509Authority()
	if chain[0].NotAfter.After(caCert.NotAfter) {
		t.Fatalf("leaf outlives CA: %v > %v", chain[0].NotAfter, caCert.NotAfter)
	}
}

func TestX509SVIDRejects(t *testing.T) {
	iss, _ := newIssuer(t, time.Now)
	good, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	weak, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	tests := []struct {
		name string
		p    issuer.X509Params
	}{
		{"zero id", issuer.X509Params{PublicKey: good.Public()}},
		{"other trust domain", issuer.X509Params{ID: spiffeid.RequireFromString("spiffe://other.org/w"), PublicKey: good.Public()}},
		{"no path", issuer.X509Params{ID: spiffeid.RequireFromString("spiffe://example.org"), PublicKey: good.Public()}},
		{"weak key", issuer.X509Params{ID: spiffeid.RequireFromString("spiffe://example.org/w"), PublicKey: weak.Public()}},
		{"no key", issuer.X509Params{ID: spiffeid.RequireFromString("spiffe://example.org/w")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := iss.X509SVID(tt.p); err == nil {
				t.Fatal("expected an error")
			}
		})
	}
}

func TestJWTSVIDConformsToSpec(t *testing.T) {
	iss, m := newIssuer(t, time.Now)
	id := spiffeid.RequireFromString("spiffe://example.org/web")
	tok, exp, err := iss.JWTSVID(issuer.JWTParams{ID: id, Audience: []string{"db", "cache"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := svidspec.CheckJWTSVID(tok); err != nil {
		t.Fatal(err)
	}
	if d := time.Until(exp); d > 5*time.Minute || d < 4*time.Minute {
		t.Fatalf("expiry in %v, want ~5m", d)
	}
	svid, err := jwtsvid.ParseAndValidate(tok, jwtbundle.FromJWTAuthorities(td, m.Bundle().JWTAuthorities()), []string{"db"})
	if err != nil {
		t.Fatalf("go-spiffe validate: %v", err)
	}
	if svid.ID != id {
		t.Fatalf("sub = %v", svid.ID)
	}
	if _, _, err := iss.JWTSVID(issuer.JWTParams{ID: id}); err == nil {
		t.Fatal("missing audience accepted")
	}
}

func TestParseCSR(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := issuer.ParseCSR(der); err != nil {
		t.Fatalf("valid CSR: %v", err)
	}
	bad := append([]byte(nil), der...)
	bad[len(bad)-3] ^= 0xff
	for name, in := range map[string][]byte{"empty": nil, "garbage": []byte("not a csr"), "bad signature": bad} {
		if _, err := issuer.ParseCSR(in); !errors.Is(err, issuer.ErrInvalidCSR) {
			t.Errorf("%s: err = %v, want ErrInvalidCSR", name, err)
		}
	}
}

// TestJWTIssuerClaim: iss is the configured JWTIssuer, absent without one
// (JWT-SVIDs need none; OIDC relying parties compare it with the
// discovery document's issuer).
func TestJWTIssuerClaim(t *testing.T) {
	m, err := ca.New(ca.Config{TrustDomain: td})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"", "https://oidc.example.org"} {
		iss, err := issuer.New(issuer.Config{TrustDomain: td, Authority: m, JWTIssuer: want})
		if err != nil {
			t.Fatal(err)
		}
		tok, _, err := iss.JWTSVID(issuer.JWTParams{ID: spiffeid.RequireFromString("spiffe://example.org/web"), Audience: []string{"db"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := svidspec.CheckJWTSVID(tok); err != nil {
			t.Fatal(err)
		}
		parts := strings.Split(tok, ".")
		payload, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil {
			t.Fatal(err)
		}
		var claims map[string]any
		if err := json.Unmarshal(payload, &claims); err != nil {
			t.Fatal(err)
		}
		got, has := claims["iss"]
		if want == "" && has {
			t.Fatalf("iss = %v without a JWTIssuer", got)
		}
		if want != "" && got != want {
			t.Fatalf("iss = %v, want %q", got, want)
		}
	}
}
