package cli

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bundlecodec "github.com/signet-id/signet/bundle"
	"github.com/signet-id/signet/ca"
	"github.com/signet-id/signet/issuer"
	pqjwt "github.com/signet-id/signet/pq/jwt"
	"github.com/signet-id/signet/pq/mldsa"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TestVerifyAttacks runs `signet verify` on tampered inputs made by a
// forger who holds the hybrid CA's classical (ECDSA) keys but not its
// ML-DSA keys (review findings 14 and 19): the bundle root presented as a
// workload SVID, a hybrid chain with its alternative signatures stripped
// and re-signed classically, and a hybrid JWT with the signet_mldsa claim
// stripped and re-signed with ES256.
func TestVerifyAttacks(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("hybrid.org")
	id := spiffeid.RequireFromPath(td, "/w")
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	writeCerts := func(name string, certs ...*x509.Certificate) string {
		var b []byte
		for _, c := range certs {
			b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
		}
		return write(name, b)
	}
	m, err := ca.New(ca.Config{TrustDomain: td, Profile: ca.ProfileHybrid})
	if err != nil {
		t.Fatal(err)
	}
	iss, err := issuer.New(issuer.Config{TrustDomain: td, Authority: m})
	if err != nil {
		t.Fatal(err)
	}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	a, _ := mldsa.GenerateKey(rand.Reader, mldsa.MLDSA44)
	chain, err := iss.X509SVID(issuer.X509Params{ID: id, PublicKey: k.Public(), AltPublicKey: a.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := iss.JWTSVID(issuer.JWTParams{ID: id, Audience: []string{"db"}})
	if err != nil {
		t.Fatal(err)
	}
	bj, err := bundlecodec.Marshal(m.Bundle(), m.MLDSAJWTKeys())
	if err != nil {
		t.Fatal(err)
	}
	bundle := write("bundle.json", bj)
	caCert, caKey := m.X509Authority()

	// The forger's inputs.
	rootAsLeaf := writeCerts("root-as-leaf.pem", m.Bundle().X509Authorities()...)
	tmpl := *chain[0] // ExtraExtensions empty: the alternative-signature extensions are not copied
	strippedDER, err := x509.CreateCertificate(rand.Reader, &tmpl, caCert, chain[0].PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	stripped, err := x509.ParseCertificate(strippedDER)
	if err != nil {
		t.Fatal(err)
	}
	strippedPEM := writeCerts("stripped.pem", append([]*x509.Certificate{stripped}, chain[1:]...)...)
	genuinePEM := writeCerts("genuine.pem", chain...)
	parsed, err := pqjwt.Parse(tok)
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]any{}
	for k, v := range parsed.Claims {
		claims[k] = v
	}
	delete(claims, pqjwt.ClaimName)
	kid, jwtKey := m.JWTKey()
	strippedJWT, err := pqjwt.SignClassic(claims, jwtKey, kid)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     string
	}{
		{"root as leaf", []string{"verify", "x509", "--bundle", bundle, rootAsLeaf}, 1, "leaf is a CA certificate"},
		{"root as leaf, require-pq", []string{"verify", "x509", "--bundle", bundle, "--require-pq", "--trust-domain", "hybrid.org", rootAsLeaf}, 1, "leaf is a CA certificate"},
		{"root as leaf, allow-classical", []string{"verify", "x509", "--bundle", bundle, "--allow-classical", "--trust-domain", "hybrid.org", rootAsLeaf}, 1, "leaf is a CA certificate"},
		{"stripped chain, default", []string{"verify", "x509", "--bundle", bundle, strippedPEM}, 1, "downgrade"},
		{"stripped chain, require-pq", []string{"verify", "x509", "--bundle", bundle, "--require-pq", strippedPEM}, 1, "post-quantum alternative signature or key missing"},
		{"stripped chain, allow-classical", []string{"verify", "x509", "--bundle", bundle, "--allow-classical", strippedPEM}, 0, "OK spiffe://hybrid.org/w profile=hybrid pq_verified=false"},
		{"genuine chain, default", []string{"verify", "x509", "--bundle", bundle, genuinePEM}, 0, "OK spiffe://hybrid.org/w profile=hybrid pq_verified=true"},
		{"stripped jwt, default", []string{"verify", "jwt", "--bundle", bundle, "--audience", "db", strippedJWT}, 1, "downgrade"},
		{"stripped jwt, require-pq", []string{"verify", "jwt", "--bundle", bundle, "--audience", "db", "--require-pq", strippedJWT}, 1, "requires an ML-DSA signature"},
		{"stripped jwt, allow-classical", []string{"verify", "jwt", "--bundle", bundle, "--audience", "db", "--allow-classical", strippedJWT}, 0, "OK spiffe://hybrid.org/w profile=classic"},
		{"genuine jwt, default", []string{"verify", "jwt", "--bundle", bundle, "--audience", "db", tok}, 0, "OK spiffe://hybrid.org/w profile=hybrid"},
		{"contradictory flags", []string{"verify", "jwt", "--bundle", bundle, "--audience", "db", "--require-pq", "--allow-classical", tok}, 2, "contradict"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := Main(context.Background(), tt.args, &out, &errb)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, out.String(), errb.String())
			}
			if got := out.String() + errb.String(); !strings.Contains(got, tt.want) {
				t.Fatalf("output %q lacks %q", got, tt.want)
			}
		})
	}
}
