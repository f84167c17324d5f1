// Package gcpiittest stands in for Google in gcp_iit tests: a token
// signing key with its certificate document served on 127.0.0.1 (as
// www.googleapis.com/oauth2/v1/certs), and a metadata server (as
// metadata.google.internal) that mints identity tokens with it.
package gcpiittest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/signet-id/signet/attest/gcpiit"
)

// Google is a token signing key and the server that publishes it.
type Google struct {
	Key   *rsa.PrivateKey
	KeyID string
	// CertsURL serves {KeyID: PEM certificate}.
	CertsURL string
}

// NewGoogle makes a signing key named kid and publishes its certificate
// until the test ends.
func NewGoogle(t testing.TB, kid string) *Google {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: kid},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := json.Marshal(map[string]string{kid: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/oauth2/v1/certs" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	}))
	t.Cleanup(srv.Close)
	return &Google{Key: key, KeyID: kid, CertsURL: srv.URL + "/oauth2/v1/certs"}
}

// Instance returns a plausible instance's claims.
func Instance(project, zone, name, id string) gcpiit.ComputeEngine {
	return gcpiit.ComputeEngine{ProjectID: project, ProjectNumber: 424242, Zone: zone, InstanceID: id,
		InstanceName: name, InstanceCreationTimestamp: 1_700_000_000}
}

// Claims returns the claims Google gives ce's default service account's
// token for audience, issued at iat, valid for an hour.
func Claims(ce gcpiit.ComputeEngine, audience string, iat time.Time) gcpiit.IdentityToken {
	return gcpiit.IdentityToken{
		Claims: jwt.Claims{Issuer: "https://accounts.google.com", Subject: "104242424242424242424",
			Audience: jwt.Audience{audience}, IssuedAt: jwt.NewNumericDate(iat), Expiry: jwt.NewNumericDate(iat.Add(time.Hour))},
		AuthorizedParty: "104242424242424242424",
		Google:          gcpiit.Google{ComputeEngine: ce},
	}
}

// Sign returns claims as an RS256 JWT with the key's ID.
func (g *Google) Sign(t testing.TB, claims any) string {
	t.Helper()
	return SignWith(t, g.Key, g.KeyID, claims)
}

// SignWith signs claims with any key under kid.
func SignWith(t testing.TB, key *rsa.PrivateKey, kid string, claims any) string {
	t.Helper()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(sig).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// NewMetadata serves the metadata server's identity endpoint for ce on
// 127.0.0.1 and returns its host:port. It answers only requests with
// Metadata-Flavor: Google and format=full for the default service
// account, minting a token for the audience asked, issued at now().
func NewMetadata(t testing.TB, g *Google, ce gcpiit.ComputeEngine, now func() time.Time) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Metadata-Flavor") != "Google" {
			http.Error(w, "Missing Metadata-Flavor:Google header.", http.StatusForbidden)
			return
		}
		if r.URL.Path != "/computeMetadata/v1/instance/service-accounts/default/identity" {
			http.NotFound(w, r)
			return
		}
		aud := r.URL.Query().Get("audience")
		if aud == "" || r.URL.Query().Get("format") != "full" {
			http.Error(w, "non-empty audience and format=full wanted", http.StatusBadRequest)
			return
		}
		_, _ = w.Write([]byte(g.Sign(t, Claims(ce, aud, now()))))
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}
